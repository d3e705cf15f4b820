"""Helpers for testing `installer.ssh.SSHTarget` against the real sshd of tests/services/sshd.py.

- `target_credentials`: keys and a password for `cartossh`, a user of these tests alone.
- `target_settings(...)`: answers `target:` settings built through the real answers loader
  (validators, `password_env`), so tests log in exactly as a user's answers file would.
- `trust(known_hosts, *servers)`: a known_hosts file that already knows the servers.
- `kill_ssh_sessions(server)`: SIGKILL the per-connection sshd processes, as a dropped
  network link would end a session mid-transfer.
- `ssh_agent` fixture: a real `ssh-agent` (Debian openssh-client) on a private socket.
- `ssh_servers` / `one_ssh_server` / `shared_ssh_server`: sshd servers whose folders the test
  user can enter (the shared one lives for the session, for tests that neither restart it nor
  change its settings); `remote_dir`: a folder that user owns.
- `use_hosts(server, names)`: the server's own /etc/hosts, so the target resolves real names
  to loopback (and no other name leaves this machine).
- `hostile_ssh_user`: a second user whose password is full of shell syntax, with sudo.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from installer.answers import SSHSettings, parse_answers
from tests.services.sshd import SSHCredentials, SSHServer, _make_client_keys

# A password made of everything a shell would act on; chpasswd forbids ':' and newlines.
HOSTILE_USER = "cartohostile"
CANARY = Path("/tmp/carto-ssh-tests-canary")
HOSTILE_PASSWORD = (
    f"q'u\"o`touch {CANARY}`te; touch {CANARY} && $(touch {CANARY}) ${{IFS}}|& \\ *?~ end"
)


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


@dataclass
class SSHAgent:
    socket: Path
    pid: int

    def add(self, key: Path, passphrase: str | None, tmp: Path) -> None:
        """`ssh-add` the key; the passphrase comes from an askpass helper, never argv."""
        env = {**os.environ, "SSH_AUTH_SOCK": str(self.socket)}
        if passphrase is not None:
            askpass = tmp / "askpass.sh"
            askpass.write_text('#!/bin/sh\nprintf "%s\\n" "$CARTO_TEST_PASSPHRASE"\n')
            askpass.chmod(0o700)
            env.update(SSH_ASKPASS=str(askpass), SSH_ASKPASS_REQUIRE="force",
                       DISPLAY=":0", CARTO_TEST_PASSPHRASE=passphrase)
        added = subprocess.run(["ssh-add", str(key)], env=env, capture_output=True, text=True,
                               stdin=subprocess.DEVNULL, timeout=30, check=False)
        if added.returncode != 0:
            raise RuntimeError(f"ssh-add {key} failed: {added.stderr.strip()}")

    def keys(self) -> list[str]:
        listed = subprocess.run(["ssh-add", "-l"], env={**os.environ,
                                "SSH_AUTH_SOCK": str(self.socket)},
                                capture_output=True, text=True, timeout=10, check=False)
        return listed.stdout.splitlines()


@pytest.fixture
def ssh_agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SSHAgent]:
    """A real ssh-agent with no keys; stopped at teardown."""
    folder = tmp_path_factory.mktemp("agent")
    sock = folder / "agent.sock"
    try:
        started = subprocess.run(["ssh-agent", "-a", str(sock), "-s"], capture_output=True,
                                 text=True, timeout=10, check=False)
    except FileNotFoundError:
        raise RuntimeError("ssh-agent is missing: apt-get install -y openssh-client") from None
    if started.returncode != 0:
        raise RuntimeError(f"ssh-agent did not start: {started.stderr}")
    pid = next(int(part.split("=")[1].rstrip(";")) for part in started.stdout.split()
               if part.startswith("SSH_AGENT_PID="))
    try:
        yield SSHAgent(sock, pid)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)


SSH_USER = "cartossh"
_PASSWORD_FILE = Path("/tmp/carto-ssh-tests-user.pw")


def _stable_password() -> str:
    """The password of SSH_USER, the same for every test session on this machine.

    Sessions run concurrently (several suites at once); if each set a new password, one would
    break another's logins mid-run. The first session picks it and keeps it in a root-only
    file; the others read it."""
    with open("/tmp/carto-ssh-tests-user.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            text = _PASSWORD_FILE.read_text().strip()
            if text:
                return text
        except FileNotFoundError:
            pass
        password = secrets.token_urlsafe(12)
        fd = os.open(_PASSWORD_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(password + "\n")
        return password


def make_target_credentials(directory: Path) -> SSHCredentials:
    """SSH_USER (created if missing, with the stable password) and fresh client keys in
    `directory`."""
    password = _stable_password()
    try:
        pwd.getpwnam(SSH_USER)
    except KeyError:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", SSH_USER],
                       check=True, capture_output=True)
    subprocess.run(["chpasswd"], input=f"{SSH_USER}:{password}\n", text=True, check=True,
                   capture_output=True)
    ed_path, rsa_path, passphrase, authorized = _make_client_keys(directory)
    return SSHCredentials(user=SSH_USER, password=password, root_user="root",
                          ed25519_key=ed_path, rsa_key=rsa_path, rsa_passphrase=passphrase,
                          authorized_keys=authorized)


@pytest.fixture(scope="session")
def target_credentials(tmp_path_factory: pytest.TempPathFactory) -> SSHCredentials:
    """Like `ssh_credentials`, for a user of these tests alone (`cartossh`), whose password
    does not change under a concurrent test session."""
    return make_target_credentials(tmp_path_factory.mktemp("ssh-target-client"))


def start_target_server(credentials: SSHCredentials, **options: Any) -> SSHServer:
    """An sshd in a folder SSH_USER can enter, with SSH_USER's sudo rule; caller stops it."""
    server = SSHServer(credentials, open_folder("carto-sshd-"), **options)
    server.start()
    allow_sudo(server)
    return server


def allow_sudo(server: SSHServer) -> None:
    """The fixture's sudoers drop-in names `cartotest`; give SSH_USER the same rule."""
    rule = {"password": f"{SSH_USER} ALL=(ALL:ALL) ALL\n",
            "nopasswd": f"{SSH_USER} ALL=(ALL:ALL) NOPASSWD: ALL\n", "none": ""}[server.sudo]
    drop_in = server.directory / "sudoers.d" / SSH_USER
    drop_in.write_text(rule)
    drop_in.chmod(0o440)


def open_folder(prefix: str, mode: int = 0o711) -> Path:
    """A folder in /tmp that other users can traverse.

    pytest's temp folders sit under /tmp/pytest-of-<user> (0700), which the SSH test user cannot
    enter: sshd reads authorized_keys as that user (so key logins would fail), and SFTP as that
    user could not reach test files."""
    folder = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    folder.chmod(mode)
    return folder


SSHServers = Callable[..., SSHServer]


@pytest.fixture
def ssh_servers(target_credentials: SSHCredentials) -> Iterator[SSHServers]:
    """Like `ssh_server_factory`, with server folders the test user can read (key logins for
    SSH_USER work); all stopped and removed at teardown."""
    started: list[SSHServer] = []

    def start(**options: Any) -> SSHServer:
        server = start_target_server(target_credentials, **options)
        started.append(server)
        return server

    try:
        yield start
    finally:
        for server in started:
            server.stop()
            shutil.rmtree(server.directory, ignore_errors=True)


@pytest.fixture
def one_ssh_server(ssh_servers: SSHServers) -> SSHServer:
    """An "Ubuntu 22.04" sshd of this test alone (it may be restarted or killed)."""
    return ssh_servers()


@pytest.fixture(scope="session")
def shared_ssh_server(target_credentials: SSHCredentials) -> Iterator[SSHServer]:
    """One "Ubuntu 22.04" sshd for the whole session (sudo asks SSH_USER's password)."""
    server = SSHServer(target_credentials, open_folder("carto-sshd-shared-"))
    server.start()
    allow_sudo(server)
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.directory, ignore_errors=True)


@pytest.fixture
def remote_dir() -> Iterator[Path]:
    """An empty folder owned by SSH_USER, reachable by it (for SFTP without sudo)."""
    parent = open_folder("carto-ssh-files-")
    folder = parent / "home"
    folder.mkdir()
    shutil.chown(folder, SSH_USER, SSH_USER)
    try:
        yield folder
    finally:
        shutil.rmtree(parent, ignore_errors=True)


@pytest.fixture(scope="session")
def hostile_ssh_user(shared_ssh_server: SSHServer) -> Iterator[tuple[str, str]]:
    """(user, password) of an account whose password is shell syntax, allowed to use sudo
    with that password on `shared_ssh_server`."""
    try:
        pwd.getpwnam(HOSTILE_USER)
    except KeyError:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", HOSTILE_USER],
                       check=True, capture_output=True)
    subprocess.run(["chpasswd"], input=f"{HOSTILE_USER}:{HOSTILE_PASSWORD}\n", text=True,
                   check=True, capture_output=True)
    # The server's /etc/sudoers.d is its own folder, bind-mounted: a rule added here shows
    # inside its namespace only.
    rule = shared_ssh_server.directory / "sudoers.d" / HOSTILE_USER
    rule.write_text(f"{HOSTILE_USER} ALL=(ALL:ALL) ALL\n")
    rule.chmod(0o440)
    try:
        yield HOSTILE_USER, HOSTILE_PASSWORD
    finally:
        rule.unlink(missing_ok=True)


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
