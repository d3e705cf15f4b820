"""What a new admin meets first, through the real commands (issue 15): every answers-file
error in one run, secrets only where they are used, `preflight --list`, grouped fixes, OS
errors said in words, a CA:TRUE certificate named as such, render's next step, a new
customer.env reviewed by key name, the previous domain's certificates removed, Kubernetes
files next to the answers, one platform's answers never replaced by another's, install.sh's
help, and where the wizard keeps its session.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from installer.checks.catalog import all_checks
from tests.support.cli import REPO, cli_env, run_cli

ENV_NAMES = {"TEST_PG_ADMIN_PASSWORD": "admin-Secret-1", "TEST_PG_PASSWORD": "carto-Secret-2"}


def without(*names: str) -> dict[str, str]:
    env = cli_env()
    for name in names:
        env.pop(name, None)
    return env


# --- 11: every answers-file error in one run ----------------------------------------------


def test_every_answers_file_error_is_reported_in_one_run_with_did_you_mean(
        tmp_path: Path) -> None:
    bad = tmp_path / "answers.yaml"
    bad.write_text("version: 1\nplatform: compose\ncompose: {directroy: /opt/carto}\n"
                   "domain: -bad.example.com\n"
                   "database:\n  admin_pasword_env: PGADMIN_PASSWORD\n  port: 99999\n"
                   "package: ./carto-pakage\n")
    result = run_cli("render", "--answers", str(bad), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    err = result.stderr
    assert "4 problems" in err, err
    assert "compose.directroy: unknown key; did you mean 'directory'?" in err
    assert "database.admin_pasword_env: unknown key; did you mean 'admin_password_env'?" in err
    assert "domain:" in err and "hyphen" in err
    assert "database.port:" in err and "99999" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["answers.yaml", "carto-installer.log"]


@pytest.mark.parametrize("text, line", [
    ("version: 1\nplatform: compose\ndomain: [unclosed\n", 3),  # error at the very end
    ("version: 1\n  platform: compose\ndomain: x\n", 2),
])
def test_a_yaml_error_points_at_a_line_that_exists(tmp_path: Path, text: str,
                                                    line: int) -> None:
    bad = tmp_path / "answers.yaml"
    bad.write_text(text)
    result = run_cli("preflight", "--answers", str(bad), cwd=tmp_path)
    assert result.returncode == 2
    found = re.search(r"line (\d+)", result.stderr)
    assert found, result.stderr
    assert 1 <= int(found.group(1)) <= len(text.splitlines())
    assert int(found.group(1)) == line
    assert "the line reads" in result.stderr


# --- 12: secrets only when something uses them ------------------------------------------


@pytest.fixture
def compose_files(tmp_path: Path) -> tuple[Path, Path]:
    from tests.support.compose_deployment import make_deployment, write_answers
    from tests.support.package import make_package

    deploy = make_deployment(tmp_path / "deploy")
    package = make_package(tmp_path / "package")
    answers = write_answers(tmp_path / "answers.yaml", package=package.path, directory=deploy,
                            domain="carto.example.com",
                            extra={"database": {"bundled": False, "host": "db.example.com"}})
    return answers, deploy


def test_status_and_host_checks_run_without_the_database_passwords(
        tmp_path: Path, compose_files: tuple[Path, Path]) -> None:
    answers, _ = compose_files
    env = without(*ENV_NAMES)
    pre = run_cli("preflight", "--answers", str(answers), "--only", "host", "--format", "json",
                  env=env, cwd=tmp_path)
    assert pre.returncode in (0, 3), pre.stderr  # ran: a check may fail on this machine
    assert "TEST_PG" not in pre.stderr
    assert {c["category"] for c in yaml.safe_load(pre.stdout)["checks"]} == {"host"}
    status = run_cli("status", "--answers", str(answers), env=env, cwd=tmp_path)
    assert status.returncode == 3, status.stderr  # nothing deployed there: unhealthy, not 2
    assert "nothing is deployed" in status.stdout and "TEST_PG" not in status.stderr
    # The checks that use them, and render, still need them: both named in one run.
    db = run_cli("preflight", "--answers", str(answers), "--only", "db", env=env, cwd=tmp_path)
    assert db.returncode == 2 and "TEST_PG_ADMIN_PASSWORD" in db.stderr
    render = run_cli("render", "--answers", str(answers), "--dry-run", env=env, cwd=tmp_path)
    assert render.returncode == 2
    assert "TEST_PG_ADMIN_PASSWORD" in render.stderr and "TEST_PG_PASSWORD" in render.stderr


def test_the_example_answers_need_no_ssh_password_and_cite_only_files_that_exist() -> None:
    from installer.answers import load_answers, require_secrets

    example = REPO / "examples" / "answers.yaml"
    # The secrets the example really uses (database, its own S3 buckets); no SSH password.
    env = {"PGADMIN_PASSWORD": "a", "WORKSPACE_DB_PASSWORD": "b", "CARTO_S3_KEY_ID": "c",
           "CARTO_S3_SECRET": "d"}
    answers = load_answers(example, env=env)
    assert answers.target is not None and answers.target.identity_file
    require_secrets(answers)  # SSH_PASSWORD unset: not needed with an identity file
    text = example.read_text()
    for cited in re.findall(r"[\w./-]+\.md\b", text):
        assert (REPO / cited).exists() or (example.parent / cited).exists(), cited


# --- 16: preflight --list, render's next step, masked keys, old certificates --------------


def test_preflight_list_names_every_check_with_its_category_and_title(tmp_path: Path) -> None:
    result = run_cli("preflight", "--list", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line for line in result.stdout.splitlines()[1:] if line.strip()}
    for check in all_checks():
        assert check.id in rows, check.id
        assert check.category in rows[check.id].split()[1]
        assert rows[check.id].rstrip().endswith(check.title)
    assert not (tmp_path / "carto-installer.log").read_text().count("internal error")


def test_render_reviews_a_new_customer_env_by_key_says_what_next_and_drops_old_certs(
        tmp_path: Path, compose_files: tuple[Path, Path]) -> None:
    answers, deploy = compose_files
    env = cli_env(ENV_NAMES)
    dry = run_cli("render", "--answers", str(answers), "--dry-run", env=env, cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    block = dry.stdout.split(f"+++ {deploy}/customer.env", 1)[1].split("--- ", 1)[0]
    assert "+SELFHOSTED_DOMAIN=****" in block and "+WORKSPACE_POSTGRES_PASSWORD=****" in block
    assert "carto.example.com" not in block and ENV_NAMES["TEST_PG_PASSWORD"] not in dry.stdout
    assert "Next:" in dry.stdout
    first = run_cli("render", "--answers", str(answers), env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "Next: `carto-installer deploy --answers" in first.stdout
    assert (deploy / "certs" / "carto.example.com.key").exists()
    data = yaml.safe_load(answers.read_text())
    data["domain"] = "maps.example.com"
    answers.write_text(yaml.safe_dump(data))
    second = run_cli("render", "--answers", str(answers), env=env, cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert sorted(p.name for p in (deploy / "certs").iterdir() if "example" in p.name) == [
        "maps.example.com.crt", "maps.example.com.key"]
    assert f"removed {deploy}/certs/carto.example.com.key" in second.stdout


# --- 15: words, not Python's error text; a CA:TRUE certificate named ----------------------


def test_os_errors_are_said_in_words() -> None:
    from installer.target import describe_exception

    with pytest.raises(socket.gaierror) as unknown:
        socket.getaddrinfo("no-such-host.invalid", 443)
    assert "does not resolve" in describe_exception(unknown.value) or \
        "could not be looked up" in describe_exception(unknown.value)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()  # nothing listens there now
    with pytest.raises(ConnectionRefusedError) as refused:
        socket.create_connection(("127.0.0.1", port), timeout=5)
    words = describe_exception(refused.value)
    assert "refused" in words and "Errno" not in words
    with pytest.raises(FileNotFoundError) as missing:
        open("/nonexistent/answers.yaml")  # noqa: SIM115
    assert describe_exception(missing.value) == "/nonexistent/answers.yaml: no such file or folder"


def test_a_plain_openssl_certificate_is_named_ca_true_and_the_offered_command_works(
        tmp_path: Path) -> None:
    domain = "carto.example.com"

    def answers_with(cert: Path, key: Path) -> Path:
        path = tmp_path / f"answers-{cert.stem}.yaml"
        path.write_text(yaml.safe_dump({"version": 1, "domain": domain,
                                        "tls": {"certificate_file": str(cert),
                                                "key_file": str(key)}}))
        return path

    plain_cert, plain_key = tmp_path / "plain.crt", tmp_path / "plain.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
                    "-keyout", str(plain_key), "-out", str(plain_cert), "-subj", f"/CN={domain}"],
                   check=True, capture_output=True)
    result = run_cli("preflight", "--answers", str(answers_with(plain_cert, plain_key)),
                     "--only", "tls", "--format", "json", cwd=tmp_path)
    check = next(c for c in yaml.safe_load(result.stdout)["checks"]
                 if c["id"] == "tls.certificate")
    assert check["status"] == "fail"
    assert "basicConstraints CA:TRUE" in check["message"]
    command = re.search(r"`(openssl req [^`]+)`", check["remediation"])
    assert command, check["remediation"]
    # The command the fix gives makes a certificate the same check accepts.
    subprocess.run(command.group(1).split(), cwd=tmp_path, check=True, capture_output=True)
    good = run_cli("preflight", "--answers",
                   str(answers_with(tmp_path / f"{domain}.crt", tmp_path / f"{domain}.key")),
                   "--only", "tls", "--format", "json", cwd=tmp_path)
    fixed = next(c for c in yaml.safe_load(good.stdout)["checks"]
                 if c["id"] == "tls.certificate")
    assert fixed["status"] in ("pass", "warn"), fixed  # self-signed: a warning, not refused
    assert "CA:TRUE" not in fixed["message"]


# --- 10: one fix for many checks, in the text report --------------------------------------


def test_hosts_that_fail_the_same_way_share_one_fix_in_the_report(tmp_path: Path) -> None:
    from tests.services.netdb_namespaces import namespaced

    answers = tmp_path / "answers.yaml"
    answers.write_text(yaml.safe_dump({"version": 1, "domain": "carto.example.com",
                                       "network": {"cloud": "gcp",
                                                   "warehouses": ["bigquery"]}}))
    argv = namespaced([sys.executable, "-m", "installer", "preflight", "--answers",
                       str(answers), "--only", "egress"], {}, tmp_path / "ns")
    result = subprocess.run(argv, cwd=tmp_path, env=cli_env(), capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 3, result.stderr
    failed = re.findall(r"✘ fail\s+(egress\.\S+):", result.stdout)
    assert len(failed) >= 6
    assert result.stdout.count("check its DNS servers") == 1, result.stdout
    assert "fix for egress.auth.carto.com" in result.stdout
    assert "each of these hosts" in result.stdout


# --- 14 and 1: where the wizard writes ------------------------------------------------


def test_answers_of_another_platform_are_never_replaced(tmp_path: Path) -> None:
    from tests.support.wizard import new_state

    compose = new_state(tmp_path)
    compose.answers.domain = "carto.example.com"
    first = compose.save_answers()
    assert first == tmp_path / "carto-answers.yaml"
    kept = first.read_text()
    k8s = new_state(tmp_path)
    k8s.answers.platform = "kubernetes"
    second = k8s.save_answers()
    assert second == tmp_path / "carto-answers.kubernetes.yaml"
    assert k8s.kept_other_platform == first and first.read_text() == kept
    assert yaml.safe_load(second.read_text())["platform"] == "kubernetes"
    again = new_state(tmp_path)
    again.answers.domain = "maps.example.com"
    assert again.save_answers() == first  # the same platform's file is updated in place


def test_started_inside_the_installer_nothing_is_written_into_the_checkout(
        tmp_path: Path) -> None:
    from installer.redact import Redactor
    from installer.session import INSTALLER_HOME, Session, state_directory

    state = Session(redactor=Redactor(), workdir=INSTALLER_HOME)
    assert state.session_path == state_directory() / "session.yaml"
    assert state.answers_path == state_directory() / "carto-answers.yaml"
    assert str(state_directory()).startswith(os.environ["XDG_STATE_HOME"])
    elsewhere = Session(redactor=Redactor(), workdir=tmp_path)
    assert elsewhere.answers_path == tmp_path / "carto-answers.yaml"
    tracked = subprocess.run(["git", "ls-files", ".carto-installer-session.yaml"], cwd=REPO,
                             capture_output=True, text=True)
    assert tracked.stdout.strip() == ""  # no saved session ships with the installer


def test_kubernetes_customizations_go_next_to_the_answers_file(tmp_path: Path) -> None:
    from tests.support.k8s_package import k8s_answers, make_helm_package

    package = make_helm_package(tmp_path / "package")
    folder = tmp_path / "site"
    folder.mkdir()
    answers = folder / "answers.yaml"
    answers.write_text(yaml.safe_dump(k8s_answers(None, package.path)))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = run_cli("render", "--answers", str(answers), cwd=elsewhere)
    assert result.returncode == 0, result.stderr
    assert (folder / "customizations.yaml").is_file()
    assert not (elsewhere / "customizations.yaml").exists()


# --- 13: install.sh ---------------------------------------------------------------------


def test_install_sh_gives_the_same_help_for_h_and_help_without_installing(
        tmp_path: Path) -> None:
    copy = tmp_path / "checkout"
    shutil.copytree(REPO, copy, ignore=shutil.ignore_patterns(
        ".venv", ".test-venv", ".git", "__pycache__", ".mypy_cache", ".ruff_cache"))
    outputs = []
    for flag in ("-h", "--help"):
        done = subprocess.run([str(copy / "install.sh"), flag], capture_output=True, text=True,
                              timeout=60, env=without("PYTHONPATH"))
        assert done.returncode == 0, done.stderr
        outputs.append(done.stdout)
    assert outputs[0] == outputs[1]
    assert "--download-wheels" in outputs[0] and "preflight" in outputs[0]
    assert not (copy / ".venv").exists()  # help installs nothing
