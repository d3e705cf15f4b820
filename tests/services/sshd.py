"""Real OpenSSH servers on loopback that pose as a different machine, and a delaying relay.

Each sshd runs in its own mount namespace where a wrapper bind-mounts a fake /etc/os-release
(Ubuntu 22.04 by default), optionally fake /proc/meminfo and /proc/cpuinfo, and its own
/etc/sudoers.d. So remote checks see a "remote" host that differs from this Debian machine,
while nothing outside the namespace changes.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import pwd
import queue
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from tests.services.tls_ca import LOOPBACK, free_loopback_port, machine_lock, wait_until

SSHD = Path("/usr/sbin/sshd")
PRIVSEP_DIR = Path("/run/sshd")  # sshd refuses to start without it; normally made by systemd
TEST_USER = "cartotest"
TEST_USER_PASSWORD_FILE = Path("/tmp/carto-tests-cartotest.password")
START_TIMEOUT = 10.0

UBUNTU_2204_OS_RELEASE = """\
PRETTY_NAME="Ubuntu 22.04.4 LTS"
NAME="Ubuntu"
VERSION_ID="22.04"
VERSION="22.04.4 LTS (Jammy Jellyfish)"
VERSION_CODENAME=jammy
ID=ubuntu
ID_LIKE=debian
HOME_URL="https://www.ubuntu.com/"
SUPPORT_URL="https://help.ubuntu.com/"
BUG_REPORT_URL="https://bugs.launchpad.net/ubuntu/"
PRIVACY_POLICY_URL="https://www.ubuntu.com/legal/terms-and-policies/privacy-policy"
UBUNTU_CODENAME=jammy
"""

# How `cartotest` may use sudo on a server: "password" asks for its password, "nopasswd"
# does not, "none" has no sudo rule at all.
SudoMode = Literal["password", "nopasswd", "none"]


def _openssh_public_line(
    public_key: ed25519.Ed25519PublicKey | rsa.RSAPublicKey,
) -> str:
    return public_key.public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    ).decode()


def _write_private(path: Path, data: bytes) -> Path:
    path.touch(mode=0o600)  # ssh clients and sshd refuse keys others can read
    path.write_bytes(data)
    return path


@dataclass(frozen=True)
class SSHCredentials:
    """What a client needs to log in; the same for every server of the session."""

    user: str  # non-root user, logs in with `password` (or with either key)
    password: str
    root_user: str  # logs in with either key only (PermitRootLogin prohibit-password)
    ed25519_key: Path  # unencrypted private key, OpenSSH format
    rsa_key: Path  # RSA private key encrypted with `rsa_passphrase`
    rsa_passphrase: str
    authorized_keys: str  # both public keys, authorized for both users


def _make_client_keys(directory: Path) -> tuple[Path, Path, str, str]:
    ed_key = ed25519.Ed25519PrivateKey.generate()
    ed_path = _write_private(
        directory / "id_ed25519",
        ed_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        ),
    )
    passphrase = secrets.token_urlsafe(12)
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=3072)  # ssh-keygen's default
    rsa_path = _write_private(
        directory / "id_rsa",
        rsa_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.BestAvailableEncryption(passphrase.encode()),
        ),
    )
    authorized = "".join(
        f"{_openssh_public_line(k.public_key())} carto-test\n" for k in (ed_key, rsa_key)
    )
    return ed_path, rsa_path, passphrase, authorized


def _ensure_test_user() -> str:
    """Create `cartotest` on this machine if missing; its password.

    The password is made once and kept in a root-only file, so parallel pytest processes
    (xdist workers) agree on it instead of resetting it under each other.
    """
    with machine_lock("test-user"):
        try:
            pwd.getpwnam(TEST_USER)
        except KeyError:
            subprocess.run(
                ["useradd", "--create-home", "--shell", "/bin/bash", TEST_USER],
                check=True,
                capture_output=True,
            )
        if not TEST_USER_PASSWORD_FILE.is_file():
            TEST_USER_PASSWORD_FILE.touch(mode=0o600)
            TEST_USER_PASSWORD_FILE.write_text(secrets.token_urlsafe(12))
        password = TEST_USER_PASSWORD_FILE.read_text().strip()
        subprocess.run(
            ["chpasswd"],
            input=f"{TEST_USER}:{password}\n",
            text=True,
            check=True,
            capture_output=True,
        )
    return password


def _check_prerequisites(needs_sudo: bool) -> None:
    if not SSHD.is_file():
        raise RuntimeError(f"{SSHD} is missing: apt-get install -y openssh-server")
    if shutil.which("unshare") is None:
        raise RuntimeError("unshare is missing: apt-get install -y util-linux")
    if needs_sudo and not Path("/etc/sudoers.d").is_dir():
        raise RuntimeError("sudo is missing: apt-get install -y sudo")


def host_key_fingerprint(public_line: str) -> str:
    """'SHA256:...' exactly as `ssh-keygen -l` and OpenSSH's prompts print it."""
    blob = base64.b64decode(public_line.split()[1])
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode()
    return "SHA256:" + digest.rstrip("=")  # OpenSSH drops the base64 padding


@dataclass
class SSHServer:
    """One sshd in its own mount namespace; `credentials` log in to it."""

    credentials: SSHCredentials
    directory: Path
    os_release: str = UBUNTU_2204_OS_RELEASE
    meminfo: str | None = None  # fake /proc/meminfo content, else the real one shows
    cpuinfo: str | None = None  # fake /proc/cpuinfo content
    sudo: SudoMode = "password"
    allow_tcp_forwarding: bool = True  # what makes it usable as a jump host
    host: str = LOOPBACK
    port: int = field(default_factory=free_loopback_port)
    host_public_key: str = ""
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def user(self) -> str:
        return self.credentials.user

    @property
    def log_file(self) -> Path:
        return self.directory / "sshd.log"

    def host_key_fingerprint(self) -> str:
        return host_key_fingerprint(self.host_public_key)

    def known_hosts_line(self) -> str:
        # OpenSSH writes non-22 ports as [host]:port.
        return f"[{self.host}]:{self.port} {self.host_public_key}"

    def start(self, *, new_host_key: bool = False) -> None:
        _check_prerequisites(self.sudo != "none")
        PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
        if new_host_key or not self.host_public_key:
            self._new_host_key()
        self._write_files()
        self.log_file.write_bytes(b"")
        with self.log_file.open("ab") as log:
            # unshare execs the wrapper, which execs sshd: the Popen pid is sshd itself.
            self._process = subprocess.Popen(
                [
                    "unshare",
                    "--mount",
                    "--propagation",
                    "private",
                    "/bin/sh",
                    str(self.directory / "wrapper.sh"),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        try:
            wait_until(
                self._answers,
                timeout=START_TIMEOUT,
                what=f"sshd on {self.host}:{self.port}",
                details=lambda: self.log_file.read_text(errors="replace"),
            )
        except RuntimeError:
            self.stop()  # a half-started sshd must not outlive the failed test
            raise

    def restart(self, *, new_host_key: bool = True) -> None:
        """Same port, same users; by default a new host key, as after a reinstall."""
        self.stop()
        self.start(new_host_key=new_host_key)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        # Connection handlers forked by sshd may still be in its process group.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGTERM)

    def _answers(self) -> bool:
        if self._process is not None and self._process.poll() is not None:
            raise RuntimeError(
                f"sshd exited with code {self._process.returncode}:\n"
                f"{self.log_file.read_text(errors='replace')}"
            )
        try:
            with socket.create_connection((self.host, self.port), timeout=1) as probe:
                return probe.recv(8).startswith(b"SSH-2.0")
        except OSError:
            return False

    def _new_host_key(self) -> None:
        key = ed25519.Ed25519PrivateKey.generate()
        _write_private(
            self.directory / "ssh_host_ed25519_key",
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.OpenSSH,
                serialization.NoEncryption(),
            ),
        )
        self.host_public_key = _openssh_public_line(key.public_key())

    def _write_files(self) -> None:
        d = self.directory
        keys_dir = d / "authorized_keys"
        keys_dir.mkdir(exist_ok=True)
        for user in (self.credentials.root_user, self.credentials.user):
            (keys_dir / user).write_text(self.credentials.authorized_keys)
        (d / "sshd_config").write_text(
            "\n".join(
                [
                    f"Port {self.port}",
                    f"ListenAddress {self.host}",
                    f"HostKey {d / 'ssh_host_ed25519_key'}",
                    "PidFile none",
                    # Keys live in the temp dir, never in /root/.ssh; %u picks the file per user.
                    f"AuthorizedKeysFile {keys_dir}/%u",
                    # /tmp above the key files would fail StrictModes' ownership walk.
                    "StrictModes no",
                    "PermitRootLogin prohibit-password",
                    "PubkeyAuthentication yes",
                    "PasswordAuthentication yes",
                    "KbdInteractiveAuthentication no",
                    # Like Ubuntu; also skips sshd's own "account locked" check for root.
                    "UsePAM yes",
                    f"AllowTcpForwarding {'yes' if self.allow_tcp_forwarding else 'no'}",
                    "PrintMotd no",
                    "Subsystem sftp internal-sftp",
                    "LogLevel VERBOSE",
                ]
            )
            + "\n"
        )
        (d / "os-release").write_text(self.os_release)
        sudoers = d / "sudoers.d"
        sudoers.mkdir(mode=0o755, exist_ok=True)
        rule = {
            "password": f"{TEST_USER} ALL=(ALL:ALL) ALL\n",
            "nopasswd": f"{TEST_USER} ALL=(ALL:ALL) NOPASSWD: ALL\n",
            "none": "",
        }[self.sudo]
        drop_in = sudoers / TEST_USER
        drop_in.write_text(rule)
        drop_in.chmod(0o440)  # sudo ignores drop-ins that are writable
        mounts = [(d / "os-release", "/etc/os-release"), (sudoers, "/etc/sudoers.d")]
        for content, target in (
            (self.meminfo, "/proc/meminfo"),
            (self.cpuinfo, "/proc/cpuinfo"),
        ):
            if content is not None:
                fake = d / Path(target).name
                fake.write_text(content)
                mounts.append((fake, target))
        # Runs inside the new mount namespace, so none of these mounts is visible outside.
        # /etc/os-release is a symlink on Debian: the bind lands on its target, also private.
        (d / "wrapper.sh").write_text(
            "\n".join(
                [
                    "set -e",
                    *(
                        f"mount --bind {shlex.quote(str(src))} {shlex.quote(dst)}"
                        for src, dst in mounts
                    ),
                    f"exec {SSHD} -D -e -f {shlex.quote(str(d / 'sshd_config'))}",
                ]
            )
            + "\n"
        )


@pytest.fixture(scope="session")
def ssh_credentials(tmp_path_factory: pytest.TempPathFactory) -> SSHCredentials:
    """Client keys generated for this session, and the `cartotest` user with its password."""
    directory = tmp_path_factory.mktemp("ssh-client")
    password = _ensure_test_user()
    ed_path, rsa_path, passphrase, authorized = _make_client_keys(directory)
    return SSHCredentials(
        user=TEST_USER,
        password=password,
        root_user="root",
        ed25519_key=ed_path,
        rsa_key=rsa_path,
        rsa_passphrase=passphrase,
        authorized_keys=authorized,
    )


class SSHServerFactory(Protocol):
    def __call__(
        self,
        *,
        os_release: str = UBUNTU_2204_OS_RELEASE,
        meminfo: str | None = None,
        cpuinfo: str | None = None,
        sudo: SudoMode = "password",
        allow_tcp_forwarding: bool = True,
    ) -> SSHServer: ...


@pytest.fixture
def ssh_server_factory(
    ssh_credentials: SSHCredentials, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SSHServerFactory]:
    """Start sshd servers, each on its own port with a fresh host key; all stopped at
    teardown. See SSHServer for what each option fakes."""
    servers: list[SSHServer] = []

    def start(
        *,
        os_release: str = UBUNTU_2204_OS_RELEASE,
        meminfo: str | None = None,
        cpuinfo: str | None = None,
        sudo: SudoMode = "password",
        allow_tcp_forwarding: bool = True,
    ) -> SSHServer:
        server = SSHServer(
            ssh_credentials,
            tmp_path_factory.mktemp("sshd"),
            os_release=os_release,
            meminfo=meminfo,
            cpuinfo=cpuinfo,
            sudo=sudo,
            allow_tcp_forwarding=allow_tcp_forwarding,
        )
        servers.append(server)
        server.start()
        return server

    try:
        yield start
    finally:
        for server in servers:
            server.stop()


@pytest.fixture
def ssh_server(ssh_server_factory: SSHServerFactory) -> SSHServer:
    """An "Ubuntu 22.04" sshd where `cartotest` needs its password for sudo."""
    return ssh_server_factory()


# --- latency ---------------------------------------------------------------------------


class DelayRelay:
    """A loopback TCP relay to `target` that delays every chunk by `one_way_delay` seconds.

    Each direction is delayed independently and in order, so a request/response exchange
    costs 2 x one_way_delay, as on a real high-latency link, while bulk data still streams.
    `round_trips` counts the times data flowed back to the client after it had sent
    something: about the number of waits a chatty protocol makes.

        with DelayRelay((server.host, server.port), one_way_delay=0.05) as relay:
            connect to relay.host, relay.port
    """

    def __init__(self, target: tuple[str, int], one_way_delay: float) -> None:
        self.target = target
        self.one_way_delay = one_way_delay
        self.round_trips = 0
        self._lock = threading.Lock()
        self._listener = socket.create_server((LOOPBACK, 0))
        self.host, self.port = LOOPBACK, int(self._listener.getsockname()[1])
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept_loop, daemon=True)

    def __enter__(self) -> DelayRelay:
        self._acceptor.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes accept()
        self._listener.close()
        self._acceptor.join(timeout=5)
        with self._lock:
            sockets, threads = list(self._sockets), list(self._threads)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        for thread in threads:
            thread.join(timeout=5)

    def _accept_loop(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            # Latest direction per connection, to count client->server->client turns.
            last = ["down"]
            with self._lock:
                self._sockets += [client, upstream]
                for source, sink, direction in (
                    (client, upstream, "up"),
                    (upstream, client, "down"),
                ):
                    self._start_direction(source, sink, direction, last)

    def _start_direction(
        self,
        source: socket.socket,
        sink: socket.socket,
        direction: str,
        last: list[str],
    ) -> None:
        chunks: queue.Queue[tuple[float, bytes]] = queue.Queue()

        def read() -> None:
            while True:
                try:
                    data = source.recv(65536)
                except OSError:
                    data = b""
                with self._lock:
                    if data and direction == "down" and last[0] == "up":
                        self.round_trips += 1
                    if data:
                        last[0] = direction
                chunks.put((time.monotonic() + self.one_way_delay, data))
                if not data:
                    return

        def write() -> None:
            while True:
                due, data = chunks.get()
                time.sleep(max(0.0, due - time.monotonic()))
                try:
                    if not data:  # pass the half-close on, after the same delay
                        sink.shutdown(socket.SHUT_WR)
                        return
                    sink.sendall(data)
                except OSError:
                    return

        for target in (read, write):
            thread = threading.Thread(target=target, daemon=True)
            self._threads.append(thread)
            thread.start()
