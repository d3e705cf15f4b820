"""The SSH test user's servers: sshd instances whose folders `cartossh` can enter, its account
and keys, a real ssh-agent, and a second user with a hostile password.

- `target_credentials`: keys and a password for `cartossh`, a user of these tests alone.
- `ssh_agent` fixture: a real `ssh-agent` (Debian openssh-client) on a private socket.
- `ssh_servers` / `one_ssh_server` / `shared_ssh_server`: sshd servers whose folders the test
  user can enter (the shared one lives for the session, for tests that neither restart it nor
  change its settings); `remote_dir`: a folder that user owns.
- `vm`: the target of an end-to-end deploy over SSH (an sshd that resolves no name), and
  `remote_folder`: a folder on it for the deployment directory.
- `hostile_ssh_user`: a second user whose password is full of shell syntax, with sudo.

Helpers that only use these servers (answers settings, known_hosts, /etc/hosts of the target)
are in tests/support/ssh_target.py.
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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.services.sshd import SSHCredentials, SSHServer, _make_client_keys
from tests.support.ssh_target import SSH_USER, open_folder, use_hosts

# A password made of everything a shell would act on; chpasswd forbids ':' and newlines.
HOSTILE_USER = "cartohostile"
CANARY = Path("/tmp/carto-ssh-tests-canary")
HOSTILE_PASSWORD = (
    f"q'u\"o`touch {CANARY}`te; touch {CANARY} && $(touch {CANARY}) ${{IFS}}|& \\ *?~ end"
)



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


@pytest.fixture
def vm(ssh_servers: SSHServers) -> SSHServer:
    """The deployment target of an end-to-end test over SSH: an "Ubuntu 22.04" sshd of this
    test alone whose /etc/hosts maps no name, so nothing it resolves leaves this machine."""
    server = ssh_servers()
    use_hosts(server, {})
    return server


@pytest.fixture
def remote_folder() -> Iterator[Path]:
    """A folder on the target (mode 755) for a deployment directory; removed at teardown."""
    folder = open_folder("carto-ssh-deploy-", 0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


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
