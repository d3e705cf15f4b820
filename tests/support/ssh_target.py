"""Helpers for tests that log in to the real sshd of tests/services/sshd.py as the SSH test user.

- `target_settings(...)`: answers `target:` settings built through the real answers loader
  (validators, `password_env`), so tests log in exactly as a user's answers file would.
- `trust(known_hosts, *servers)`: a known_hosts file that already knows the servers.
- `kill_ssh_sessions(server)`: SIGKILL the per-connection sshd processes, as a dropped
  network link would end a session mid-transfer.
- `open_folder(prefix)`: a folder in /tmp the test user can enter.
- `use_hosts(server, names)`: the server's own /etc/hosts, so the target resolves real names
  to loopback (and no other name leaves this machine).

The servers, the user's account and an ssh-agent are started by the fixtures of
tests/services/sshd_target_user.py.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from installer.answers import SSHSettings, parse_answers
from tests.services.sshd import SSHServer

SSH_USER = "cartossh"


def trust(known_hosts: Path, *servers: SSHServer) -> Path:
    known_hosts.parent.mkdir(parents=True, exist_ok=True)
    known_hosts.write_text("".join(s.known_hosts_line() + "\n" for s in servers))
    return known_hosts


def target_settings(server: SSHServer, known_hosts: Path, *, user: str | None = None,
                    identity_file: Path | None = None, password_env: str | None = None,
                    env: dict[str, str] | None = None, sudo: bool = False,
                    jump: SSHServer | None = None, jump_user: str | None = None) -> SSHSettings:
    data: dict[str, Any] = {
        "host": server.host,
        "port": server.port,
        "user": user or server.user,
        "known_hosts": str(known_hosts),
        "sudo": sudo,
    }
    if identity_file is not None:
        data["identity_file"] = str(identity_file)
    if password_env is not None:
        data["password_env"] = password_env
    if jump is not None:
        data["jump"] = {"host": jump.host, "port": jump.port, "user": jump_user or jump.user}
    answers = parse_answers({"version": 1, "target": data}, env=env or {})
    assert answers.target is not None
    return answers.target


def _children(pid: int) -> list[int]:
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            text = Path(f"/proc/{pid}/task/{task}/children").read_text()
            found += [int(p) for p in text.split()]
    return found


def _descendants(pid: int) -> list[int]:
    found: list[int] = []
    pending = _children(pid)
    while pending:
        child = pending.pop()
        found.append(child)
        pending += _children(child)
    return found


def kill_ssh_sessions(server: SSHServer) -> int:
    """SIGKILL every connection handler of `server` and what they started (the privileged
    monitor, the network-facing child, the user's commands); the listener lives on.
    Returns how many processes were killed."""
    process = server._process
    assert process is not None, "the server is not running"
    # Stop first, then look again, until no new process appears: a child forked between a
    # look and a kill (sudo starting its shell) would otherwise survive and clean up after
    # itself, which is not the crash this stands for. Then kill what was stopped.
    stopped: list[int] = []
    while True:
        found = [pid for pid in _descendants(process.pid) if pid not in stopped]
        if not found:
            break
        for pid in found:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
            stopped.append(pid)
    killed = 0
    for pid in stopped:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
            killed += 1
    return killed


def open_folder(prefix: str, mode: int = 0o711) -> Path:
    """A folder in /tmp that other users can traverse.

    pytest's temp folders sit under /tmp/pytest-of-<user> (0700), which the SSH test user cannot
    enter: sshd reads authorized_keys as that user (so key logins would fail), and SFTP as that
    user could not reach test files."""
    folder = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    folder.chmod(mode)
    return folder


def use_hosts(server: SSHServer, names: Mapping[str, str]) -> None:
    """Give the server's machine its own /etc/hosts (`names` -> addresses) and an empty
    /etc/resolv.conf, bind-mounted into its mount namespace with nsenter: the target then
    resolves real host names to loopback, and any other name fails on this machine (glibc
    asks 127.0.0.1:53, where nothing answers) instead of reaching a DNS server off it."""
    process = server._process
    assert process is not None, "the server is not running"
    if shutil.which("nsenter") is None:
        raise RuntimeError("nsenter is missing: apt-get install -y util-linux")
    hosts = server.directory / "hosts"
    hosts.write_text("127.0.0.1 localhost\n::1 localhost\n"
                     + "".join(f"{address} {name}\n" for name, address in names.items()))
    resolv = server.directory / "resolv.conf"
    resolv.write_text("# empty: names not in /etc/hosts fail on this machine\n")
    for source, target in ((hosts, "/etc/hosts"), (resolv, "/etc/resolv.conf")):
        source.chmod(0o644)
        subprocess.run(["nsenter", f"--target={process.pid}", "--mount", "--", "mount",
                        "--bind", str(source), target], check=True, capture_output=True)


def wait_for(predicate: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return bool(predicate())
