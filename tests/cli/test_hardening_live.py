"""Hostile text from live sources, and interrupts (issue 11, local items 5 and 11).

A fake PostgreSQL server answers the startup with an ErrorResponse full of escape sequences;
the full-screen wizard checks a certificate whose names carry them; a real render process is
sent SIGINT or SIGTERM while it stages its files and while it switches them into place."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from installer.envfile import EnvFile
from tests.services.tls_ca import TestCA
from tests.support.cli import cli_env, run_cli
from tests.support.compose_deployment import make_deployment
from tests.support.package import make_package
from tests.support.wizard import new_state, screen_text, sync, wait_until

DOMAIN = "carto.example.com"
ESCAPES = "\x1b]0;pwned\x07\x1b[2J\x1b[31m"


def assert_no_raw_controls(text: str) -> None:
    bad = [c for c in text if (ord(c) < 32 and c not in "\n\t") or 0x7f <= ord(c) <= 0x9f]
    assert not bad, f"raw control characters: {bad!r}"


# ---- a database server's error -----------------------------------------------------------------


@contextlib.contextmanager
def hostile_postgres(message: str) -> Iterator[int]:
    """A server speaking just enough of the PostgreSQL protocol to refuse every login with
    an ErrorResponse carrying `message` (after declining SSL/GSS encryption requests)."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            while True:
                header = conn.recv(8, socket.MSG_WAITALL)
                if len(header) < 8:
                    return
                length, code = struct.unpack("!ii", header)
                if length > 8:
                    conn.recv(length - 8, socket.MSG_WAITALL)
                if code in (80877103, 80877104):  # SSLRequest, GSSENCRequest
                    conn.sendall(b"N")
                    continue
                fields = b"".join(kind + text.encode() + b"\0" for kind, text in (
                    (b"S", "FATAL"), (b"V", "FATAL"), (b"C", "28P01"), (b"M", message)))
                body = fields + b"\0"
                conn.sendall(b"E" + struct.pack("!i", len(body) + 4) + body)
                return

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        server.close()
        thread.join(timeout=5)


def test_database_error_with_escape_sequences_is_shown_inert(tmp_path: Path) -> None:
    with hostile_postgres(f"password authentication failed {ESCAPES}RED") as port:
        answers = tmp_path / "a.yaml"
        answers.write_text(yaml.safe_dump({
            "version": 1, "database": {"bundled": False, "host": "127.0.0.1", "port": port,
                                       "admin_password_env": "ADMIN", "password_env": "USER",
                                       "ssl": {"enabled": False}}}))
        for fmt in ("text", "junit"):
            result = run_cli("preflight", "--answers", str(answers), "--only", "db.connect",
                             "--format", fmt, cwd=tmp_path,
                             env={"ADMIN": "admin-pw-1", "USER": "user-pw-2"})
            assert result.returncode == 3, result.stdout + result.stderr
            assert "\\x1b[2J" in result.stdout, result.stdout
            assert_no_raw_controls(result.stdout + result.stderr)
    assert_no_raw_controls((tmp_path / "carto-installer.log").read_text())


# ---- the full-screen wizard --------------------------------------------------------------------


@sync
async def test_wizard_shows_a_hostile_certificate_name_inert(tmp_path: Path,
                                                             test_ca: TestCA) -> None:
    from installer.answers import parse_answers
    from screens.app import WizardApp
    from screens.widgets.check_list import CheckList

    issued = test_ca.issue([f"x{ESCAPES}.example.com"], common_name=f"CN{ESCAPES}")
    files = issued.write(tmp_path / "tls")
    answers = parse_answers({"version": 1, "domain": DOMAIN, "tls": {
        "certificate_file": str(files.fullchain), "key_file": str(files.key)}})
    state = new_state(tmp_path, answers=answers)
    app = WizardApp(state, start="domain_tls", live=True)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: "tls.certificate" in state.results,
                         timeout=30, what="the certificate check")
        check_list = app.screen.query_one(CheckList)
        check_list.highlighted = check_list.get_option_index("tls.certificate")
        check_list.focus()
        await pilot.pause()
        shown = screen_text(app)
        assert "x\\x1b]0;" in shown, shown
        assert "\x1b" not in shown and "\x07" not in shown
        # Also the widget itself, should a result ever arrive unsanitised.
        result = state.results["tls.certificate"]
        result.message = f"raw {ESCAPES} message"
        check_list.set_results([result])
        await pilot.pause()
        assert_no_raw_controls(screen_text(app))


# ---- interrupts --------------------------------------------------------------------------------

# Runs the real CLI with the two write phases slowed down and announced on stderr, so a
# signal can be aimed at one of them. Nothing else is changed.
SLOW_RENDER = """
import os, sys, time
import installer.target as target
write_temp, replace = target._write_temp_in, os.replace
def slow_temp(*args, **kwargs):
    name = write_temp(*args, **kwargs)
    sys.stderr.write("STAGED " + name + "\\n"); sys.stderr.flush(); time.sleep(0.5)
    return name
def slow_replace(src, dst, **kwargs):
    replace(src, dst, **kwargs)
    if (kwargs.get("src_dir_fd") is not None and not str(dst).startswith(".")
            and ".bak." not in str(dst)):
        sys.stderr.write("SWITCHED " + str(dst) + "\\n"); sys.stderr.flush(); time.sleep(0.5)
target._write_temp_in, os.replace = slow_temp, slow_replace
from installer.cli import main
sys.exit(main(sys.argv[1:]))
"""


def files_of(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*"))
            if p.is_file() and ".bak." not in p.name}


def write_answers(path: Path, package: Path, directory: Path) -> None:
    path.write_text(yaml.safe_dump({
        "version": 1, "package": str(package), "compose": {"directory": str(directory)},
        "domain": DOMAIN,
        "database": {"bundled": True, "admin_password_env": "ADMIN", "password_env": "USER"}}))


def signalled_render(answers: Path, cwd: Path, when: str, signum: int,
                     env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    process = subprocess.Popen(
        [sys.executable, "-c", SLOW_RENDER, "render", "--answers", str(answers)],
        env=cli_env(env), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        stdin=subprocess.DEVNULL)
    assert process.stderr is not None
    seen: list[str] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            break
        seen.append(line)
        if line.startswith(when):
            process.send_signal(signum)
            break
    out, err = process.communicate(timeout=60)
    return subprocess.CompletedProcess(process.args, process.returncode, out,
                                       "".join(seen) + err)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("when", ["STAGED", "SWITCHED"])
def test_a_signalled_render_says_exactly_what_it_left(tmp_path: Path, when: str,
                                                      signum: int) -> None:
    package = make_package(tmp_path / "pkg")
    directory = make_deployment(tmp_path / "deploy")
    answers = tmp_path / "answers.yaml"
    write_answers(answers, package.path, directory)
    first = run_cli("render", "--answers", str(answers), cwd=tmp_path,
                    env={"ADMIN": "admin-old-1", "USER": "user-old-2"})
    assert first.returncode == 0, first.stderr
    before = files_of(directory)
    result = signalled_render(answers, tmp_path, when, signum,
                              {"ADMIN": "admin-new-1", "USER": "user-new-2"})
    assert result.returncode == 130, result.stderr
    assert "Traceback" not in result.stderr
    after = files_of(directory)
    assert not [name for name in after if name.endswith(".tmp")], after
    customer = EnvFile.parse(after["customer.env"].decode())
    dotenv = EnvFile.parse(after[".env"].decode())
    if when == "STAGED":
        assert "interrupted: no file was changed" in result.stderr
        assert after == before
    else:
        assert "interrupted: every file had been written" in result.stderr
        assert customer.get("POSTGRES_ADMIN_PASSWORD") == "admin-new-1"
    # Whatever happened, .env was built from the customer.env that is there now.
    assert dotenv.get("POSTGRES_ADMIN_PASSWORD") == customer.get("POSTGRES_ADMIN_PASSWORD")
    assert "nothing was left half-written" not in result.stderr


def test_a_failed_switch_puts_back_what_it_had_switched(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from installer.answers import parse_answers
    from installer.redact import Redactor
    from installer.render import WriteFailed, apply_render, plan_render
    from installer.target import LocalTarget

    package = make_package(tmp_path / "pkg")
    directory = make_deployment(tmp_path / "deploy")
    data: dict[str, Any] = {
        "version": 1, "package": str(package.path), "compose": {"directory": str(directory)},
        "domain": DOMAIN, "database": {"bundled": True, "admin_password_env": "ADMIN",
                                       "password_env": "USER"}}

    def plan(admin: str) -> Any:
        answers = parse_answers(data, env={"ADMIN": admin, "USER": "user-pw-2"})
        return plan_render(answers, LocalTarget(), redactor=Redactor(),
                           compose_command=["docker", "compose"], compose_version="2.40.3")

    apply_render(plan("admin-old-1"), LocalTarget())
    before = files_of(directory)
    second = plan("admin-new-1")
    switch = LocalTarget.switch_staged

    def failing_switch(self: LocalTarget, staged: Any) -> None:
        if staged.path.endswith("/.env"):
            raise OSError(28, "No space left on device")
        switch(self, staged)

    monkeypatch.setattr(LocalTarget, "switch_staged", failing_switch)
    with pytest.raises(WriteFailed) as caught:
        apply_render(second, LocalTarget())
    assert "put back as they were" in str(caught.value)
    assert files_of(directory) == before
    assert not list(directory.rglob("*.tmp"))
    assert os.path.exists(directory / "customer.env")


# ---- a remote /etc/os-release ------------------------------------------------------------------


def test_remote_os_release_with_escape_sequences_is_shown_inert(
        ssh_servers: Any, target_credentials: Any, tmp_path: Path) -> None:
    from tests.support.ssh_target import SSH_USER, use_hosts

    server = ssh_servers(os_release=f'NAME="Evil"\nID=evil\nVERSION_ID="1"\n'
                                    f'PRETTY_NAME="Evil{ESCAPES}RED OS"\n')
    use_hosts(server, {})
    answers = tmp_path / "answers.yaml"
    answers.write_text(yaml.safe_dump({"version": 1, "platform": "compose", "target": {
        "host": server.host, "port": server.port, "user": SSH_USER,
        "identity_file": str(target_credentials.ed25519_key),
        "known_hosts": str(tmp_path / "known_hosts")}}))
    for fmt in ("text", "junit"):
        result = run_cli("preflight", "--answers", str(answers), "--only", "host.os",
                         "--format", fmt, "--accept-host-key", server.host_key_fingerprint(),
                         cwd=tmp_path)
        assert result.returncode in (0, 3, 4), result.stderr
        assert "RED OS" in result.stdout and "\\x1b]0;pwned\\x07" in result.stdout
        assert_no_raw_controls(result.stdout + result.stderr)
    assert_no_raw_controls((tmp_path / "carto-installer.log").read_text())
