"""Hostile input on this machine (issue 11, local items): credentials in URLs, secrets in
diffs, escape sequences from outside, links in the deployment directory and at the log,
YAML bombs, devices and lying zips, a private key as a CA file, proxy ports.

Each test reproduces the attack with real parts: real files and links made by another user
(`nobody`), a real certificate, a real /etc/os-release bind-mounted in a mount namespace,
the real CLI in a subprocess (memory capped with RLIMIT_AS where a bomb could grow)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from installer.answers import load_answers
from installer.errors import AnswersError, InputError
from installer.redact import Redactor, mask_secret_values, mask_url_credentials
from installer.render import apply_render, plan_render
from installer.render.compose import READER_MODE, ROUTER_GID
from installer.safetext import visible
from installer.safeyaml import YamlError, load_yaml
from installer.target import LinkRefused, LocalTarget
from installer.userfiles import FileRefused, read_user_file, read_zip_member
from installer.validators import validate_proxy_url
from tests.services.tls_ca import TestCA
from tests.support.cli import cli_env, run_cli
from tests.support.compose_deployment import make_deployment
from tests.support.k8s_package import HelmPackage, k8s_answers, make_helm_package
from tests.support.package import GeneratedPackage, make_package

DOMAIN = "carto.example.com"
HOSTILE = "Evil\x1b]0;pwned\x07\x1b[2J\x1b[31mRED\x9b31m OS"
NOBODY = "nobody"


def compose_answers(tmp_path: Path, package: Path, directory: Path, **extra: Any) -> Path:
    data: dict[str, Any] = {
        "version": 1, "package": str(package), "compose": {"directory": str(directory)},
        "domain": DOMAIN,
        "database": {"bundled": True, "admin_password_env": "ADMIN", "password_env": "USER"},
    }
    data.update(extra)
    path = tmp_path / "answers.yaml"
    path.write_text(yaml.safe_dump(data))
    path.chmod(0o600)
    return path


SECRET_ENV = {"ADMIN": "admin-Secret-1", "USER": "user-Secret-2"}


def snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): (p.read_bytes() if p.is_file() and not p.is_symlink()
                                           else os.readlink(p).encode() if p.is_symlink()
                                           else b"<dir>")
            for p in sorted(directory.rglob("*"))}


def as_nobody(*argv: str) -> None:
    subprocess.run(["runuser", "-u", NOBODY, "--", *argv], check=True, capture_output=True)


@pytest.fixture()
def package(tmp_path: Path) -> GeneratedPackage:
    return make_package(tmp_path / "pkg")


@pytest.fixture()
def deployment(tmp_path: Path) -> Path:
    return make_deployment(tmp_path / "deploy")


@pytest.fixture()
def open_tmp() -> Iterator[Path]:
    """A folder another local user can reach (pytest's own tmp folder is private to root),
    for the attacks made by `nobody`."""
    folder = Path(tempfile.mkdtemp(prefix="carto-hardening-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# ---- 3: credentials in URLs -------------------------------------------------------------------


@pytest.mark.parametrize("url", ["http://user:s3cr3t-PW@proxy:31x28",
                                 "http://user:s3cr3t-PW@proxy:3128/path",
                                 "socks5://user:s3cr3t-PW@proxy:1080",
                                 "http://user:s3cr3t-PW@proxy:3128"])
def test_proxy_credentials_never_printed_or_logged(tmp_path: Path, package: GeneratedPackage,
                                                   deployment: Path, url: str) -> None:
    answers = compose_answers(tmp_path, package.path, deployment,
                              network={"proxy": {"http": url}})
    work = tmp_path / "work"
    work.mkdir()
    result = run_cli("render", "--answers", str(answers), "--dry-run", cwd=work,
                     env=SECRET_ENV)
    assert result.returncode == 2, result.stderr
    assert "network.proxy.http" in result.stderr
    log = (work / "carto-installer.log").read_text()
    for text in (result.stdout, result.stderr, log):
        assert "s3cr3t-PW" not in text
    assert "********@proxy" in result.stderr


def test_mask_url_credentials_any_scheme_any_shape() -> None:
    assert mask_url_credentials("see 'http://a:b@h:x' and ftp://tok@h/p") == \
        "see 'http://********@h:x' and ftp://********@h/p"
    assert mask_url_credentials("https://example.com/a@b") == "https://example.com/a@b"
    redactor = Redactor()
    assert "pw" not in redactor("proxy https://u:pw@10.0.0.1:3128 refused")


# ---- 12: proxy ports ---------------------------------------------------------------------------


@pytest.mark.parametrize("port", ["0", "99999", "65536", "00000"])
def test_proxy_port_out_of_range_is_refused(port: str) -> None:
    with pytest.raises(ValueError, match="port"):
        validate_proxy_url(f"http://proxy.internal:{port}")
    assert validate_proxy_url("http://proxy.internal:65535") == "http://proxy.internal:65535"
    assert validate_proxy_url("http://proxy.internal:1/") == "http://proxy.internal:1/"


@pytest.mark.parametrize("port", ["0", "99999"])
def test_kubernetes_render_refuses_a_bad_proxy_port_with_exit_2(tmp_path: Path, port: str) -> None:
    package: HelmPackage = make_helm_package(tmp_path / "hpkg")
    data = k8s_answers(None, package.path,
                       network={"proxy": {"http": f"http://proxy.internal:{port}"}})
    answers = tmp_path / "k8s.yaml"
    answers.write_text(yaml.safe_dump(data))
    work = tmp_path / "work"
    work.mkdir()
    result = run_cli("render", "--answers", str(answers), cwd=work)
    assert result.returncode == 2, result.stderr
    assert "network.proxy.http" in result.stderr and "internal error" not in result.stderr
    assert sorted(p.name for p in work.iterdir()) == ["carto-installer.log"]


# ---- 4: secrets in diffs -----------------------------------------------------------------------


def test_kubernetes_dry_run_masks_old_secrets_in_customizations(tmp_path: Path,
                                                                  test_ca: TestCA) -> None:
    package = make_helm_package(tmp_path / "hpkg")
    issued = test_ca.issue([DOMAIN])
    key_line = issued.key.decode().splitlines()[1]
    work = tmp_path / "work"
    work.mkdir()
    import base64

    key_b64 = base64.b64encode(issued.key).decode()
    (work / "customizations.yaml").write_text(textwrap.dedent(f"""\
        externalPostgresql:
          host: old-db
          password: OLD_DB_PASSWORD_LEAKME
          adminPassword: OLD_ADMIN_PASSWORD_LEAKME
        externalRedis:
          password: OLD_REDIS_PASSWORD_LEAKME
        router:
          tlsCertificates:
            privateKeyValueBase64: {key_b64}
            extraKey: |
        """) + textwrap.indent(issued.key.decode(), "      "))
    answers = work / "k8s.yaml"  # customizations.yaml lives next to the answers file
    answers.write_text(yaml.safe_dump(k8s_answers(None, package.path)))
    result = run_cli("render", "--answers", str(answers), "--dry-run", cwd=work)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "customizations.yaml" in out and "-  password: ********" in out
    for leaked in ("OLD_DB_PASSWORD_LEAKME", "OLD_ADMIN_PASSWORD_LEAKME",
                   "OLD_REDIS_PASSWORD_LEAKME", key_b64[:40], key_line):
        assert leaked not in out
    assert "back up the current customizations.yaml as" in out
    assert "current customer.env" not in out


def test_mask_secret_values_keeps_references_and_hides_values() -> None:
    text = textwrap.dedent("""\
        existingSecretPasswordKey: carto-password
        password_file: /run/pw
        POSTGRES_ADMIN_PASSWORD=hunter2-hunter2
        "private_key": "-----BEGIN PRIVATE KEY-----\\nMIIE\\n",
        tokenValue: abcdef
        -----BEGIN EC PRIVATE KEY-----
        MHcCAQEEIBODYBODYBODYBODYBODY
        -----END EC PRIVATE KEY-----
        """)
    masked = mask_secret_values(text)
    assert "existingSecretPasswordKey: carto-password" in masked
    assert "password_file: /run/pw" in masked
    for secret in ("hunter2", "MIIE", "abcdef", "BODYBODY"):
        assert secret not in masked


# ---- 5: hostile text ---------------------------------------------------------------------------


def assert_no_raw_controls(text: str) -> None:
    bad = [c for c in text if (ord(c) < 32 and c not in "\n\t") or 0x7f <= ord(c) <= 0x9f]
    assert not bad, f"raw control characters: {bad!r}"


def test_visible_spells_out_controls_and_is_idempotent() -> None:
    shown = visible(HOSTILE + "\ttab\nline\r\x00")
    assert_no_raw_controls(shown)
    assert "\\x1b]0;pwned\\x07" in shown and "\\x9b" in shown and "\ttab\nline\\x0d" in shown
    assert visible(shown) == shown


def test_hostile_certificate_names_stay_inert_in_every_report(tmp_path: Path,
                                                              test_ca: TestCA) -> None:
    evil_san = "evil\x1b]0;pwned\x07\x1b[2J.example.com"
    issued = test_ca.issue([evil_san], common_name="CN\x1b[31m\x1b]2;title\x07")
    files = issued.write(tmp_path / "tls")
    answers = tmp_path / "a.yaml"
    answers.write_text(yaml.safe_dump({
        "version": 1, "domain": DOMAIN,
        "tls": {"certificate_file": str(files.fullchain), "key_file": str(files.key)}}))
    outputs = {}
    for fmt in ("text", "json", "junit"):
        result = run_cli("preflight", "--answers", str(answers), "--only", "tls.certificate",
                         "--format", fmt, cwd=tmp_path,
                         env={"SSL_CERT_FILE": str(test_ca.ca_file)})
        assert result.returncode == 3, result.stdout + result.stderr
        assert "\x1b" not in result.stdout and "\x07" not in result.stdout
        outputs[fmt] = result.stdout
    assert "\\x1b]0;pwned\\x07" in outputs["text"]
    checks = json.loads(outputs["json"])["checks"]
    assert "\x1b]0;pwned" in json.dumps(checks[0], ensure_ascii=False) or \
        "pwned" in checks[0]["observed"]
    suite = ET.fromstring(outputs["junit"].split("\n", 1)[1])
    failure = suite.find(".//failure")
    assert failure is not None and "\\x1b" in (failure.text or "")
    assert "\x1b" not in (tmp_path / "carto-installer.log").read_text()


def test_junit_and_json_stay_valid_with_c0_and_c1_characters() -> None:
    from installer.checks.base import CheckResult, Status
    from installer.report import Report

    nasty = "".join(chr(c) for c in range(0, 0xa0)) + "\u202e"
    result = CheckResult("host.os", "host", "OS", Status.FAIL, nasty, nasty, nasty, nasty, 0.1)
    report = Report("compose", "local", [result])
    ET.fromstring(report.to_junit().split("\n", 1)[1])
    parsed = json.loads(report.to_json())
    assert_no_raw_controls(report.to_json())
    assert_no_raw_controls(report.to_text())
    assert parsed["checks"][0]["message"] == visible(nasty)


def test_hostile_os_release_is_shown_inert(tmp_path: Path) -> None:
    sample = tmp_path / "os-release"
    sample.write_text(f'NAME="Evil"\nID=evil\nVERSION_ID="1"\nPRETTY_NAME="{HOSTILE}"\n')
    script = 'mount --bind "$1" /etc/os-release && shift && exec "$@"'
    for fmt in ("text", "junit"):
        result = subprocess.run(
            ["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh", str(sample),
             sys.executable, "-m", "installer", "preflight", "--only", "host.os",
             "--format", fmt],
            env=cli_env(), capture_output=True, text=True, check=False, cwd=tmp_path)
        assert result.returncode in (0, 3, 4), result.stderr
        assert "RED" in result.stdout and "\\x1b[2J" in result.stdout
        assert_no_raw_controls(result.stdout + result.stderr)
        if fmt == "junit":
            ET.fromstring(result.stdout.split("\n", 1)[1])
    assert_no_raw_controls((tmp_path / "carto-installer.log").read_text())


def test_deploy_log_lines_and_events_are_inert(capsys: pytest.CaptureFixture[str]) -> None:
    from installer.cli.deployment import DeployPrinter
    from installer.deploy import LogLine, StepFinished

    printer = DeployPrinter(Redactor())
    printer(LogLine(f"app | {HOSTILE}"))
    printer(StepFinished("launch", False, HOSTILE))
    out = capsys.readouterr().out
    assert "RED" in out
    assert_no_raw_controls(out)


# ---- 6: links in the deployment directory ------------------------------------------------------


def shared_deployment(deployment: Path) -> None:
    """A deployment directory others may write to (the precondition of the attack)."""
    (deployment / "certs").mkdir(exist_ok=True)
    for folder in (deployment, deployment / "certs"):
        folder.chmod(0o777)
    deployment.parent.chmod(0o755)


def test_linked_certificate_is_refused_not_shown(tmp_path: Path, package: GeneratedPackage,
                                                 open_tmp: Path) -> None:
    deployment = make_deployment(open_tmp / "deploy")
    shared_deployment(deployment)
    secret = tmp_path / "root-only-secret"
    secret.write_text("root:SHADOW-LIKE-SECRET:19000:0:99999:7:::\n")
    secret.chmod(0o600)
    as_nobody("ln", "-s", str(secret), str(deployment / "certs" / f"{DOMAIN}.crt"))
    answers = compose_answers(tmp_path, package.path, deployment)
    before = snapshot(deployment)
    result = run_cli("render", "--answers", str(answers), "--dry-run", cwd=tmp_path,
                     env=SECRET_ENV)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "SHADOW-LIKE-SECRET" not in result.stdout + result.stderr
    assert "symbolic link" in result.stderr and f"{DOMAIN}.crt" in result.stderr
    result = run_cli("render", "--answers", str(answers), cwd=tmp_path, env=SECRET_ENV)
    assert result.returncode == 2
    assert snapshot(deployment) == before


def test_linked_customer_env_is_not_adopted(tmp_path: Path, package: GeneratedPackage,
                                            open_tmp: Path) -> None:
    deployment = make_deployment(open_tmp / "deploy")
    shared_deployment(deployment)
    creds = tmp_path / "rt-creds"
    creds.write_text("aws_secret_access_key=AWS-SECRET-LEAKME\n")
    creds.chmod(0o600)
    as_nobody("ln", "-s", str(creds), str(deployment / "customer.env"))
    answers = compose_answers(tmp_path, package.path, deployment)
    before = snapshot(deployment)
    result = run_cli("render", "--answers", str(answers), cwd=tmp_path, env=SECRET_ENV)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "customer.env" in result.stderr and "symbolic link" in result.stderr
    assert snapshot(deployment) == before
    assert not list(deployment.glob("customer.env.bak.*"))
    assert "AWS-SECRET-LEAKME" not in (tmp_path / "carto-installer.log").read_text()


def test_linked_certs_folder_receives_no_write(tmp_path: Path, package: GeneratedPackage,
                                               open_tmp: Path) -> None:
    deployment = make_deployment(open_tmp / "deploy")
    elsewhere = open_tmp / "elsewhere"
    elsewhere.mkdir()
    elsewhere.chmod(0o777)
    deployment.chmod(0o777)
    as_nobody("ln", "-s", str(elsewhere), str(deployment / "certs"))
    answers = compose_answers(tmp_path, package.path, deployment)
    result = run_cli("render", "--answers", str(answers), cwd=tmp_path, env=SECRET_ENV)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "certs" in result.stderr and "symbolic link" in result.stderr
    assert list(elsewhere.iterdir()) == []


def test_local_target_refuses_a_link_swapped_in_after_the_plan(tmp_path: Path) -> None:
    root = tmp_path / "d"
    (root / "certs").mkdir(parents=True)
    target = LocalTarget()
    target.write_deployment_file(str(root / "certs/a.key"), b"k", 0o600, str(root))
    shutil.rmtree(root / "certs")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (root / "certs").symlink_to(elsewhere)
    with pytest.raises(LinkRefused):
        target.write_deployment_file(str(root / "certs/a.key"), b"k", 0o600, str(root))
    with pytest.raises(LinkRefused):
        target.read_deployment_file(str(root / "certs/a.key"), str(root))
    (elsewhere / "f").write_text("x")
    (root / "f").symlink_to(elsewhere / "f")
    with pytest.raises(LinkRefused):
        target.read_deployment_file(str(root / "f"), str(root))
    assert list(elsewhere.iterdir()) == [elsewhere / "f"]


# ---- 7: the log file ----------------------------------------------------------------------------


def test_linked_log_file_is_not_followed(tmp_path: Path, open_tmp: Path) -> None:
    work = open_tmp / "work"
    work.mkdir()
    work.chmod(0o777)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    victim.chmod(0o644)
    as_nobody("ln", "-s", str(victim), str(work / "carto-installer.log"))
    private_tmp = tmp_path / "tmp"
    private_tmp.mkdir()
    result = run_cli("preflight", "--only", "host.arch", cwd=work,
                     env={"TMPDIR": str(private_tmp)})
    assert result.returncode == 0, result.stderr
    assert victim.read_text() == "precious\n"
    assert stat.S_IMODE(victim.stat().st_mode) == 0o644
    fallback = private_tmp / f"carto-installer-{os.getuid()}" / "carto-installer.log"
    assert "host.arch" in fallback.read_text()
    assert stat.S_IMODE(fallback.parent.stat().st_mode) == 0o700


def test_log_fallback_owned_by_another_user_ends_cleanly(open_tmp: Path) -> None:
    tmp_path = open_tmp
    work = tmp_path / "work"
    work.mkdir()
    work.chmod(0o777)
    as_nobody("ln", "-s", "/nonexistent-target", str(work / "carto-installer.log"))
    private_tmp = tmp_path / "tmp"
    private_tmp.mkdir()
    private_tmp.chmod(0o1777)
    planted = private_tmp / f"carto-installer-{os.getuid()}"
    as_nobody("mkdir", "-m", "0777", str(planted))
    as_nobody("touch", str(planted / "carto-installer.log"))
    result = run_cli("preflight", "--only", "host.arch", cwd=work,
                     env={"TMPDIR": str(private_tmp)})
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "cannot open a log file safely" in result.stderr
    assert (planted / "carto-installer.log").read_text() == ""


# ---- 8: YAML ------------------------------------------------------------------------------------

BOMB = textwrap.dedent("""\
    a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
    b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
    c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
    d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
    e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
    f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
    g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
    h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
    i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
    version: *i
    """)


def run_capped(*args: str, cwd: Path, memory_mb: int = 600, timeout: float = 60,
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The CLI with its address space capped (ulimit -v): a bomb cannot grow past it."""
    limit = memory_mb * 1024 * 1024

    def cap() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    return subprocess.run([sys.executable, "-m", "installer", *args], env=cli_env(env),
                          cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          preexec_fn=cap, check=False, stdin=subprocess.DEVNULL)


def test_alias_bomb_in_answers_exits_2_with_bounded_memory(tmp_path: Path) -> None:
    answers = tmp_path / "bomb.yaml"
    answers.write_text(BOMB)
    started = time.monotonic()
    result = run_capped("render", "--answers", str(answers), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "aliases" in result.stderr and "line 2" in result.stderr
    assert time.monotonic() - started < 30


def test_alias_bomb_in_kubernetes_package_exits_2_with_bounded_memory(tmp_path: Path) -> None:
    package = make_helm_package(tmp_path / "hpkg")
    (package.path / "carto-secrets.yaml").write_text(BOMB.replace("version: *i",
                                                                  "cartoSecrets: *i"))
    answers = tmp_path / "k8s.yaml"
    answers.write_text(yaml.safe_dump(k8s_answers(None, package.path)))
    result = run_capped("render", "--answers", str(answers), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "carto-secrets.yaml" in result.stderr and "aliases" in result.stderr


@pytest.mark.parametrize(("text", "expected"), [
    ("[" * 5000 + "]" * 5000, "nested"),
    ("version: 1\ndomain: " + "{a: " * 3000 + "1" + "}" * 3000, "nested"),
    ("version: 1\ncompose: {directory: /opt}\ndatabase:\n  port: " + "9" * 5000, "out of range"),
    ("version: 1\ndomain: a.example.com\ndomain: b.example.com\n", "'domain' appears twice"),
    ("version: 1\ndatabase:\n  port: 5432\n  host: x\n  port: 6543\n", "line 5"),
])
def test_yaml_limits_exit_2(tmp_path: Path, text: str, expected: str) -> None:
    answers = tmp_path / "a.yaml"
    answers.write_text(text)
    result = run_capped("render", "--answers", str(answers), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert expected in result.stderr and "Traceback" not in result.stderr


def test_load_yaml_accepts_ordinary_documents() -> None:
    assert load_yaml("a: {b: [1, 2]}\n<<: {c: 3}\n") == {"a": {"b": [1, 2]}, "c": 3}
    with pytest.raises(YamlError, match="appears twice"):
        load_yaml("a: 1\nb: {x: 1, x: 2}\n")


def test_unsupported_version_never_prints_the_structure(tmp_path: Path) -> None:
    answers = tmp_path / "a.yaml"
    answers.write_text("version: [" + ", ".join(["lolololol"] * 2000) + "]\n")
    with pytest.raises(AnswersError) as caught:
        load_answers(answers)
    assert "lolololol" not in str(caught.value) and "a list" in str(caught.value)


# ---- 9: files the user names -------------------------------------------------------------------


def test_password_file_dev_zero_and_fifo_are_refused_at_once(tmp_path: Path,
                                                             package: GeneratedPackage,
                                                             deployment: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    for source in ("/dev/zero", str(fifo)):
        answers = compose_answers(tmp_path, package.path, deployment, database={
            "bundled": True, "admin_password_file": source, "password_env": "USER"})
        started = time.monotonic()
        result = run_capped("render", "--answers", str(answers), cwd=tmp_path, timeout=30,
                            env=SECRET_ENV)
        assert result.returncode == 2, result.stderr
        assert "database.admin_password_file" in result.stderr
        assert ("device" in result.stderr) or ("FIFO" in result.stderr)
        assert time.monotonic() - started < 15


def test_oversized_files_are_refused_by_the_bytes_read(tmp_path: Path) -> None:
    big = tmp_path / "big"
    big.write_bytes(b"x" * 2048)
    with pytest.raises(FileRefused, match="larger than"):
        read_user_file(big, limit=1024)
    assert read_user_file(big, limit=4096) == b"x" * 2048
    with pytest.raises(IsADirectoryError):
        read_user_file(tmp_path, limit=10)


def lying_zip(path: Path, name: str, real_size: int, claimed: int) -> None:
    """A zip whose member inflates to `real_size` bytes while its headers claim `claimed`."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(name, b"\0" * real_size)
    data = bytearray(path.read_bytes())
    real = real_size.to_bytes(4, "little")
    fake = claimed.to_bytes(4, "little")
    # The uncompressed size sits in the local header (offset 22) and the central directory.
    assert data[22:26] == real
    data[22:26] = fake
    central = data.rfind(b"PK\x01\x02")
    assert data[central + 24:central + 28] == real
    data[central + 24:central + 28] = fake
    path.write_bytes(bytes(data))


def test_zip_member_capped_by_bytes_actually_inflated(tmp_path: Path) -> None:
    archive_path = tmp_path / "lie.zip"
    lying_zip(archive_path, "customer.env", 40 * 1024 * 1024, 100)
    with zipfile.ZipFile(archive_path) as archive:
        member = archive.getinfo("customer.env")
        assert member.file_size == 100
        with pytest.raises((FileRefused, zipfile.BadZipFile)):
            read_zip_member(archive, member, limit=1024 * 1024)


def test_lying_zip_package_exits_2_with_bounded_memory(tmp_path: Path,
                                                       deployment: Path) -> None:
    archive_path = tmp_path / "package.zip"
    lying_zip(archive_path, "customer.env", 300 * 1024 * 1024, 100)
    with zipfile.ZipFile(archive_path, "a") as archive:
        archive.writestr("key.json", "{}")
    answers = compose_answers(tmp_path, archive_path, deployment)
    result = run_capped("render", "--answers", str(answers), cwd=tmp_path, memory_mb=400,
                        env=SECRET_ENV)
    assert result.returncode == 2, result.stderr
    assert "customer.env" in result.stderr and "internal error" not in result.stderr


# ---- 10: a private key as a CA file ------------------------------------------------------------


def test_private_key_as_database_ca_is_refused_everywhere(tmp_path: Path, test_ca: TestCA,
                                                          package: GeneratedPackage,
                                                          deployment: Path) -> None:
    from installer.answers import parse_answers
    from installer.checks.base import CheckContext, Status
    from installer.checks.db import check_tls

    issued = test_ca.issue(["db.internal"])
    key_file = tmp_path / "client-key.pem"
    key_file.write_bytes(issued.key)
    combined = tmp_path / "ca-plus-key.pem"
    combined.write_bytes(test_ca.ca_pem + issued.key)
    for ca in (key_file, combined):
        database = {"bundled": False, "host": "db.internal", "admin_password_env": "ADMIN",
                    "password_env": "USER", "ssl": {"enabled": True, "mode": "verify-full",
                                                    "ca_file": str(ca)}}
        answers = compose_answers(tmp_path, package.path, deployment, database=database)
        before = snapshot(deployment)
        result = run_cli("render", "--answers", str(answers), cwd=tmp_path, env=SECRET_ENV)
        assert result.returncode == 2, result.stdout + result.stderr
        assert "database.ssl.ca_file" in result.stderr and "private key" in result.stderr
        assert snapshot(deployment) == before
        parsed = parse_answers(yaml.safe_load(answers.read_text()), env=SECRET_ENV)
        outcome = check_tls(CheckContext(target=LocalTarget(), answers=parsed))
        assert outcome.status == Status.FAIL and "private key" in outcome.message


def test_der_certificate_accepted_by_preflight_is_rendered_as_pem(tmp_path: Path,
                                                                  test_ca: TestCA,
                                                                  package: GeneratedPackage,
                                                                  deployment: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    issued = test_ca.issue([DOMAIN])
    der = tmp_path / "server.der"
    der.write_bytes(x509.load_pem_x509_certificate(issued.leaf)
                    .public_bytes(serialization.Encoding.DER))
    key_der = tmp_path / "server-key.der"
    key_der.write_bytes(issued.private_key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    answers = compose_answers(tmp_path, package.path, deployment,
                              tls={"certificate_file": str(der), "key_file": str(key_der)})
    pre = run_cli("preflight", "--answers", str(answers), "--only", "tls.certificate",
                  "--format", "json", cwd=tmp_path,
                  env={**SECRET_ENV, "SSL_CERT_FILE": str(test_ca.ca_file)})
    assert json.loads(pre.stdout)["checks"][0]["status"] == "pass", pre.stdout
    result = run_cli("render", "--answers", str(answers), cwd=tmp_path, env=SECRET_ENV)
    assert result.returncode == 0, result.stderr
    written = (deployment / "certs" / f"{DOMAIN}.crt").read_bytes()
    assert x509.load_pem_x509_certificate(written) == x509.load_der_x509_certificate(
        der.read_bytes())
    key_written = deployment / "certs" / f"{DOMAIN}.key"
    assert key_written.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    # Readable by its owner and the router's group only (as every rendered TLS key is).
    assert stat.S_IMODE(key_written.stat().st_mode) == READER_MODE
    assert key_written.stat().st_gid == ROUTER_GID


def test_apply_render_in_process_writes_through_no_link(tmp_path: Path,
                                                        package: GeneratedPackage,
                                                        deployment: Path) -> None:
    """The plan was made; then certs/ is swapped for a link before applying: refused."""
    from installer.answers import parse_answers

    data = yaml.safe_load(compose_answers(tmp_path, package.path, deployment).read_text())
    answers = parse_answers(data, env=SECRET_ENV)
    plan = plan_render(answers, LocalTarget(), redactor=Redactor(),
                       compose_command=["docker", "compose"], compose_version="2.40.3")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (deployment / "certs").mkdir(exist_ok=True)
    (deployment / "certs").rmdir()
    (deployment / "certs").symlink_to(elsewhere)
    with pytest.raises((LinkRefused, InputError, OSError)):
        apply_render(plan, LocalTarget())
    assert list(elsewhere.iterdir()) == []


def test_linked_min_version_is_not_read_by_preflight(tmp_path: Path, package: GeneratedPackage,
                                                     open_tmp: Path) -> None:
    deployment = make_deployment(open_tmp / "deploy")
    shared_deployment(deployment)
    secret = tmp_path / "root-only"
    secret.write_text("SHADOW-FIRST-LINE\n")
    secret.chmod(0o600)
    (deployment / "MIN_VERSION").unlink()
    as_nobody("ln", "-s", str(secret), str(deployment / "MIN_VERSION"))
    answers = compose_answers(tmp_path, package.path, deployment)
    result = run_cli("preflight", "--answers", str(answers), "--only", "license.version",
                     "--format", "json", cwd=tmp_path, env=SECRET_ENV)
    assert "SHADOW-FIRST-LINE" not in result.stdout + result.stderr
    check = {c["id"]: c for c in json.loads(result.stdout)["checks"]}["license.version"]
    assert check["status"] == "fail" and "symbolic link" in check["message"]
