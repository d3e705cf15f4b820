"""The plain (questionary) wizard: the flow with a scripted prompt fake keyed by prompt text.

The core underneath is real: live checks on this machine, a real PostgreSQL, the real render
plan of the fixture deployment. The one real run through a pseudo-terminal is in
tests/wizard/test_terminal.py.
"""

from __future__ import annotations

import argparse
import io
import stat
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from installer.session import SESSION_NAME, state_directory
from screens.plain import PlainWizard, run_plain
from tests.services.tls_ca import free_loopback_port
from tests.support.scripted_prompts import ALL, Always, ScriptedPrompts
from tests.support.wizard import new_state


def loopback(name: str) -> list[str]:
    """Every name resolves to this machine: no test sends traffic elsewhere."""
    return ["127.0.0.1"]


def _closed_docker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"tcp://127.0.0.1:{free_loopback_port()}")


def test_ctrl_c_at_any_prompt_says_no_changes_were_made(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    prompts = ScriptedPrompts({
        "Where will CARTO run?": ["compose"],
        "Which machine will run CARTO?": [KeyboardInterrupt],
    }).install(monkeypatch)
    code = run_plain(argparse.Namespace(answers=None, accept_host_key=None),
                     new_state(tmp_path).redactor)
    out = capsys.readouterr().out
    assert code == 130
    session = state_directory() / SESSION_NAME
    assert "No changes were made. Your progress is saved in" in out
    assert str(session) in out.replace("\n", " ") or "resume" in out
    assert prompts.unanswered() == []
    # Only the progress so far is kept (to resume), in the state directory; nothing is
    # written where the installer was started.
    assert list(tmp_path.iterdir()) == []
    assert yaml.safe_load(session.read_text())["step"] == "target"


def test_a_bad_answer_is_refused_by_the_fields_validator_and_asked_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from installer.tlsgen import generate_self_signed

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_pem, key_pem = generate_self_signed("carto.example.com")
    cert.write_bytes(cert_pem)
    key.write_bytes(key_pem)
    key.chmod(0o600)
    prompts = ScriptedPrompts({
        "Domain:": ["https://carto.example.com/", "carto", "Carto.Example.com"],
        "TLS certificate:": ["Use my certificate and key files"],
        # A file that is not there, or is not a certificate, is refused at the prompt.
        "Certificate file:": [str(tmp_path / "missing.pem"), str(key), str(cert)],
        "Private key file:": [""],  # required here: refused, then given
    }).install(monkeypatch)
    prompts.script["Private key file:"].append(str(key))  # type: ignore[union-attr]
    wizard = PlainWizard(new_state(tmp_path, resolver=loopback), out=io.StringIO())
    wizard.ask_field("domain", required=True)
    assert wizard.state.answers.domain == "carto.example.com"
    reasons = [reason for message, _, reason in prompts.rejected if message == "Domain:"]
    assert len(reasons) == 2
    assert "scheme" in reasons[0] and "single label" in reasons[1]
    own = wizard.choose("TLS certificate:", [("Generate", False),
                                             ("Use my certificate and key files", True)])
    assert own is True
    wizard.ask_field("tls.certificate_file", required=True)
    wizard.ask_field("tls.key_file", required=True)
    assert wizard.state.answers.tls.key_file == str(key)
    assert wizard.state.answers.tls.certificate_file == str(cert)
    assert ("Private key file:", "", "Private key file is required") in prompts.rejected
    refused = [reason for message, _, reason in prompts.rejected
               if message == "Certificate file:"]
    assert refused[0] == f"{tmp_path / 'missing.pem'} does not exist"
    assert "certificate" in refused[1].lower() and len(refused) == 2


def test_checks_print_live_and_a_failure_needs_a_named_accepted_risk(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _closed_docker(monkeypatch)  # docker.engine fails the same way on every machine
    prompts = ScriptedPrompts({
        "What now?": ["rerun", "accept", "accept"],
        "Accept the risk of these failed checks": [ALL, ALL],
        "Deploy despite": [False, True],  # one confirmation listing them; No keeps them
    }).install(monkeypatch)
    out = io.StringIO()
    wizard = PlainWizard(new_state(tmp_path, resolver=loopback), out=out)
    wizard.requirements()
    text = out.getvalue()
    assert text.count("✘ docker.engine") == 2  # the first run, then the re-run
    assert "fix for docker.engine" in text
    confirmations = [m for kind, m, _ in prompts.asked if m.startswith("Deploy despite")]
    assert len(confirmations) == 2 and "docker.engine" in confirmations[0]
    assert prompts.unanswered() == []
    assert "docker.engine" in wizard.state.accepted_risks
    assert wizard.state.blocking("requirements") == []
    assert "\x1b[" not in text  # not a terminal: no colour


def test_colour_only_on_a_terminal_and_never_with_no_color(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("NO_COLOR", raising=False)
    out = Terminal()
    PlainWizard(new_state(tmp_path), out=out).heading("database")
    assert "\x1b[1m" in out.getvalue()
    monkeypatch.setenv("NO_COLOR", "1")
    out = Terminal()
    PlainWizard(new_state(tmp_path), out=out).heading("database")
    assert "\x1b[" not in out.getvalue() and "Step 6 of 10: Database" in out.getvalue()


def test_the_session_is_saved_step_by_step_without_secrets(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.support.compose_deployment import make_deployment

    _closed_docker(monkeypatch)
    monkeypatch.chdir(tmp_path)
    deploy_dir = make_deployment(tmp_path / "deploy")
    ScriptedPrompts({
        "Where will CARTO run?": ["compose"],
        "Which machine will run CARTO?": ["local"],
        "Deployment directory:": [str(deploy_dir)],
        "What now?": Always("accept"),
        "Accept the risk of these failed checks": Always(ALL),
        "Deploy despite": Always(True),
        "Domain:": ["carto.example.com"],
        "TLS certificate:": [False],
        "Which PostgreSQL?": [False],
        "Database host:": ["db.example.internal"],
        "Database port:": ["5432"],
        "Admin user:": ["postgres"],
        "Admin password:": ["s3cret-admin-password"],
        "Admin database:": ["postgres"],
        "CARTO database user:": ["workspace_admin"],
        "CARTO database user password:": [KeyboardInterrupt],
    }).install(monkeypatch)
    state = new_state(tmp_path, resolver=loopback)
    wizard = PlainWizard(state, out=io.StringIO())
    with pytest.raises(KeyboardInterrupt):
        wizard.run()
    session = state.session_path
    saved = yaml.safe_load(session.read_text())
    assert saved["step"] == "database"  # the last step completed was Domain and TLS
    assert saved["answers"]["domain"] == "carto.example.com"
    assert "docker.engine" in saved["accepted_risks"]
    assert "s3cret-admin-password" not in session.read_text()
    assert stat.S_IMODE(session.stat().st_mode) == 0o600


def test_the_whole_flow_to_the_review_with_real_checks_and_render_plan(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, docker_engine: object,
        compose_v2: Path, postgres_server: Any) -> None:
    from tests.support.compose_deployment import make_deployment
    from tests.support.package import make_package

    deploy_dir = make_deployment(tmp_path / "deploy")
    before = {p: p.read_bytes() for p in deploy_dir.rglob("*") if p.is_file()}
    package = make_package(tmp_path / "package", as_zip=True)
    workdir = tmp_path / "work"
    workdir.mkdir()
    carto_password = "plain 'pa$$' #2"
    prompts = ScriptedPrompts({
        "Where will CARTO run?": ["Single VM with Docker Compose"],
        "Which machine will run CARTO?": ["This machine"],
        "Deployment directory:": ["relative/not/absolute/is/fine", str(deploy_dir)],
        "What now?": Always("accept"),
        "Accept the risk of these failed checks": Always(ALL),
        "Deploy despite": Always(True),
        "Domain:": ["carto.plain.test"],
        "TLS certificate:": [False],
        "Which PostgreSQL?": [False],
        "Database host:": [postgres_server.host],
        "Database port:": ["99999", str(postgres_server.port)],
        "Admin user:": [postgres_server.superuser],
        "Admin password:": [postgres_server.password],
        "Admin database:": ["postgres"],
        "CARTO database user:": ["workspace_admin"],
        "CARTO database user password:": [carto_password],
        "CARTO database:": ["workspace"],
        "Connect with TLS?": [True],
        "sslmode:": ["verify-full"],
        "Database CA file:": [str(postgres_server.ca_file)],
        "Installation package:": [str(package.path)],
        "Images archive:": [""],
        "Cloud for storage buckets:": ["Google Cloud"],
        "Data warehouses": [["bigquery"]],
        "Features": [[]],
        "Does outbound traffic go through an HTTP proxy?": [False],
        "Advanced settings? (own buckets, private CA, registry login, Maps key)": [False],
        "Deploy now?": [False],
    }).install(monkeypatch)
    out = io.StringIO()
    state = new_state(workdir, resolver=loopback)
    code = PlainWizard(state, out=out).run()
    text = out.getvalue()
    assert code == 0, text
    assert prompts.unanswered() == []
    assert any(m == "Database port:" for m, _, _ in prompts.rejected)  # 99999 refused
    # Every step's checks ran live and printed their verdicts.
    for check_id in ("host.cpu", "docker.engine", "net.domain", "tls.certificate",
                     "db.connect", "db.privileges", "license.package"):
        assert check_id in state.results, check_id
        assert f" {check_id}: " in text
    assert state.results["db.connect"].status.value == "pass"
    assert state.results["license.package"].status.value == "pass"
    # Failures were only passed by naming them as accepted risks.
    for result in state.results.values():
        if result.status.value in ("fail", "error"):
            assert state.is_accepted(result.id), result.id
    # The review printed the plan, secrets only by name; nothing was written there.
    assert "customer.env" in text and "(secret file" in text
    assert carto_password not in text and postgres_server.password not in text
    assert {p: p.read_bytes() for p in deploy_dir.rglob("*") if p.is_file()} == before
    assert "No changes were made" in text
    saved = yaml.safe_load((workdir / "carto-answers.yaml").read_text())
    assert saved["database"]["host"] == postgres_server.host
    assert "password" not in yaml.safe_dump(saved["database"]).replace("password_", "")
    assert saved["package"] == str(package.path)


# --- one real run through a pseudo-terminal ----------------------------------------------

PTY_DOMAIN = "carto.pty.test"
DOWN, CLEAR_LINE = "\x1b[B", "\x15"  # arrow down; Ctrl+U clears a prompt_toolkit line


def _plain_text(text: str) -> str:
    """A terminal transcript without its control sequences, for failure messages."""
    import re

    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[=>]|\r", "", text)


def bracketed(text: str) -> str:
    """What a terminal sends when the user pastes `text`."""
    return f"\x1b[200~{text}\x1b[201~"


@pytest.mark.timeout(240)
def test_a_real_install_through_a_pseudo_terminal(
        tmp_path: Path, docker_engine: object, compose_v2: Path, postgres_server: Any) -> None:
    """`carto-installer --plain` in a real pty, typed and pasted into like a person would,
    to the end: a real deployment on the Docker engine, verified over HTTPS."""
    import pexpect

    from tests.services.netdb_namespaces import namespaced
    from tests.support.cli import cli_env, host_ports_lock
    from tests.support.compose_deployment import build_images, compose_down, make_deployment
    from tests.support.package import make_package

    build_images(docker_engine)
    deploy_dir = make_deployment(tmp_path / "deploy")
    package = make_package(tmp_path / "package")
    workdir = tmp_path / "work"
    workdir.mkdir()
    carto_password = "pty-carto-db-Secret-1"
    # Its own /etc/hosts: the domain is this machine, and no other name resolves at all,
    # so nothing leaves the machine (egress checks fail fast and are accepted as risks).
    argv = namespaced([sys.executable, "-m", "screens", "--plain"], {PTY_DOMAIN: "127.0.0.1"},
                      tmp_path / "ns")
    env = cli_env({"TERM": "xterm-256color", "NO_COLOR": "1", "COLUMNS": "80", "LINES": "24"})
    env.pop("DOCKER_HOST", None)
    replies: list[tuple[str, str]] = [
        ("Where will CARTO run\\?", "\r"),
        ("Which machine will run CARTO\\?", "\r"),
        ("Deployment directory:", CLEAR_LINE + str(deploy_dir) + "\r"),
        ("What now\\?", DOWN + "\r"),  # "Accept the risk and go on" is always second
        ("Accept the risk of these failed checks", "a\r"),  # a: tick them all
        ("Deploy despite", "y"),  # one confirmation, listing them
        ("Domain:", bracketed(PTY_DOMAIN) + "\r"),
        ("TLS certificate:", "\r"),  # generate a self-signed one
        ("Which PostgreSQL\\?", "\r"),  # external
        ("Database host:", postgres_server.host + "\r"),
        ("Database port:", CLEAR_LINE + str(postgres_server.port) + "\r"),
        ("Admin user:", CLEAR_LINE + postgres_server.superuser + "\r"),
        ("Admin password:", bracketed(postgres_server.password) + "\r"),
        ("Admin database:", "\r"),
        ("CARTO database user:", "\r"),
        ("CARTO database user password:", bracketed(carto_password) + "\r"),
        ("CARTO database:", "\r"),
        ("Connect with TLS\\?", "y"),
        ("sslmode:", CLEAR_LINE + "verify-full\r"),
        ("Database CA file:", str(postgres_server.ca_file) + "\r"),
        ("Installation package:", str(package.path) + "\r"),
        ("Images archive:", "\r"),
        ("Cloud for storage buckets:", "\r"),
        ("Data warehouses", "\r"),
        ("Features", "\r"),
        ("Does outbound traffic go through an HTTP proxy\\?", "n"),
        ("Advanced settings\\?", "n"),
        ("Deploy now\\?", "y"),
    ]
    # The terminal's side of the conversation: prompt_toolkit asks where the cursor is
    # (CPR, ESC [6n) before each prompt, and a real terminal answers.
    cursor_query = "\x1b\\[6n"
    patterns = [p for p, _ in replies] + ["CARTO is running at (https://\\S+)", pexpect.EOF,
                                          cursor_query]
    transcript = io.StringIO()
    seen: list[str] = []
    url = ""
    with host_ports_lock():
        child = pexpect.spawn(argv[0], argv[1:], cwd=str(workdir), env=env, encoding="utf-8",
                              dimensions=(24, 80), timeout=60)
        child.logfile_read = transcript
        try:
            child.delaybeforesend = 0.05
            while True:
                index = child.expect(patterns)
                if index == len(replies) + 2:
                    child.send("\x1b[24;1R")
                    continue
                if index == len(replies):  # success line
                    url = child.match.group(1).strip()
                    child.expect(pexpect.EOF)
                    break
                if index == len(replies) + 1:
                    raise AssertionError("the wizard ended early:\n" + transcript.getvalue())
                pattern, keys = replies[index]
                if seen and seen[-1] == pattern:
                    continue  # the answered prompt redrawn with its answer, not a new one
                seen.append(pattern)
                child.send(keys)
            child.close()
            assert child.exitstatus == 0, transcript.getvalue()[-3000:]
        except (pexpect.TIMEOUT, AssertionError) as exc:
            tail = _plain_text(transcript.getvalue())[-4000:]
            raise AssertionError(f"after {seen[-3:]}:\n{tail}") from exc
        finally:
            if child.isalive():
                child.terminate(force=True)
            compose_down(deploy_dir)
    out = transcript.getvalue()
    assert url == f"https://{PTY_DOMAIN}"
    for pattern in ("Domain:", "Admin password:", "Deploy now\\?", "What now\\?"):
        assert pattern in seen
    assert postgres_server.password not in out and carto_password not in out  # masked input
    assert "verify https" in out
    saved = (workdir / "carto-answers.yaml").read_text()
    assert PTY_DOMAIN in saved and carto_password not in saved
    assert "SELFHOSTED_DOMAIN" in (deploy_dir / "customer.env").read_text()
    assert not (state_directory() / SESSION_NAME).exists()  # finished: nothing to resume


def test_a_remote_machine_over_ssh_with_host_key_and_passphrase_prompts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ssh_servers: Any,
        target_credentials: Any) -> None:
    from tests.support.wizard import PASSPHRASE, encrypted_copy

    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    identity = encrypted_copy(target_credentials.ed25519_key, tmp_path / "id_ed25519")
    vm = ssh_servers()
    known_hosts = tmp_path / "known_hosts"
    prompts = ScriptedPrompts({
        "Which machine will run CARTO?": ["Another machine, over SSH"],
        "Target host:": [vm.host],
        "SSH port:": [str(vm.port)],
        "SSH user:": ["root"],
        "Identity file:": [str(identity)],
        "SSH password:": [""],
        "known_hosts file:": [str(known_hosts)],
        "Run privileged commands with sudo?": [False],
        "Go through a jump host (bastion)?": [False],
        # Refused first: nothing is trusted, and the user may try again.
        f"Accept the host key {vm.host_key_fingerprint()}?": [False, True],
        "Change the connection settings and try again?": [True],
        f"Passphrase for {identity}:": [PASSPHRASE],
        "Deployment directory:": [KeyboardInterrupt],
    }).install(monkeypatch)
    prompts.script["Target host:"].append(vm.host)  # type: ignore[union-attr]
    for key in ("SSH port:", "SSH user:", "Identity file:", "SSH password:",
                "known_hosts file:", "Run privileged commands with sudo?",
                "Go through a jump host (bastion)?"):
        prompts.script[key].append(prompts.script[key][0])  # type: ignore[union-attr]
    out = io.StringIO()
    state = new_state(tmp_path)
    wizard = PlainWizard(state, out=out)
    with pytest.raises(KeyboardInterrupt):
        wizard.target()
    text = out.getvalue()
    assert "host key" in text.lower() and vm.host_key_fingerprint() in text
    assert f"✔ connected to root@{vm.host}:{vm.port}" in text
    assert vm.host_public_key.split()[1] in known_hosts.read_text()
    assert PASSPHRASE not in text and PASSPHRASE in state.redactor._secrets
    assert prompts.unanswered() == []
    state.close()


# --- issue 15: what a first-time admin meets in plain mode ----------------------------------


def test_a_resumed_session_shows_the_plan_and_enter_alone_does_not_deploy(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.support.compose_deployment import make_deployment
    from tests.support.package import make_package

    deploy_dir = make_deployment(tmp_path / "deploy")
    before = {p: p.read_bytes() for p in deploy_dir.rglob("*") if p.is_file()}
    earlier = new_state(tmp_path)
    a = earlier.answers
    a.compose.directory = str(deploy_dir)
    a.package = str(make_package(tmp_path / "package").path)
    a.domain = "carto.resume.test"
    a.database.bundled = True
    earlier.save_session("review")
    prompts = ScriptedPrompts({
        "Resume the saved session": [True],
        "Deploy now?": [False],
    }).install(monkeypatch)
    out = io.StringIO()
    code = PlainWizard(new_state(tmp_path, resolver=loopback), out=out).run()
    text = out.getvalue()
    assert code == 0 and prompts.unanswered() == []
    assert prompts.defaults["Deploy now? This writes the files above and starts CARTO."] is False
    assert "file(s) will be written" in text  # the plan is shown again before the question
    assert "You resumed a saved session: read the plan above before deploying." in text
    assert {p: p.read_bytes() for p in deploy_dir.rglob("*") if p.is_file()} == before


def test_the_deployment_directory_is_judged_at_its_step_with_where_the_release_is(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.support.compose_deployment import make_deployment

    release = make_deployment(tmp_path / "release")
    empty = tmp_path / "empty"
    empty.mkdir()
    prompts = ScriptedPrompts({
        "Which machine will run CARTO?": ["local"],
        "Deployment directory:": [str(tmp_path / "missing"), str(empty), str(release)],
        "What now?": ["change", "change"],
    }).install(monkeypatch)
    out = io.StringIO()
    wizard = PlainWizard(new_state(tmp_path), out=out)
    wizard.target()
    text = " ".join(out.getvalue().split())
    assert f"✘ {tmp_path / 'missing'} does not exist on local" in text
    assert "lacks docker-compose.yml, env.tpl, VERSION, MIN_VERSION" in text
    assert "https://github.com/CartoDB/carto-selfhosted/releases" in text
    assert f"✔ {release} holds the vendor's release" in text
    assert wizard.state.answers.compose.directory == str(release)
    assert prompts.unanswered() == []


def test_an_empty_certificate_answer_means_a_self_signed_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    prompts = ScriptedPrompts({
        "Domain:": ["carto.example.com"],
        "TLS certificate:": ["Use my certificate and key files"],
        "Certificate file:": [""],
    }).install(monkeypatch)
    out = io.StringIO()
    wizard = PlainWizard(new_state(tmp_path, resolver=loopback), out=out)
    monkeypatch.setattr(wizard, "settle", lambda step, ask=None: None)  # no checks here
    wizard.domain_tls()
    assert wizard.state.answers.tls.certificate_file is None
    assert wizard.state.answers.tls.key_file is None
    assert prompts.rejected == []  # no "Certificate file is required"
    assert "A self-signed certificate will be generated." in out.getvalue()


@pytest.mark.timeout(120)
def test_term_dumb_plain_mode_wraps_long_lines_and_sends_no_colour(tmp_path: Path) -> None:
    import pexpect

    from tests.support.cli import cli_env

    env = cli_env({"TERM": "dumb", "COLUMNS": "60", "LINES": "24"})
    env.pop("NO_COLOR", None)  # TERM=dumb alone must be enough
    child = pexpect.spawn(sys.executable, ["-m", "screens"], cwd=str(tmp_path), env=env,
                          encoding="utf-8", dimensions=(24, 60), timeout=60)
    transcript = io.StringIO()
    child.logfile_read = transcript
    try:
        child.expect_exact("Where will CARTO run?")
        child.send("\x03")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    out = transcript.getvalue()
    welcome = out.split("Where will CARTO run?")[0]
    for code in ("\x1b[1m", "\x1b[2m", "\x1b[31m", "\x1b[32m", "\x1b[33m"):
        assert code not in welcome, repr(code)
    lines = [line for line in welcome.replace("\r", "").split("\n") if line.strip()]
    assert max(len(line) for line in lines) <= 60, lines
    assert any(line.startswith("CARTO Self-Hosted installer") for line in lines)
    words = " ".join(" ".join(lines).split())
    assert "Nothing changes until you confirm the deployment." in words  # not cut in a word
