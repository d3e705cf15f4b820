"""The target machine over SSH: the same `Target` as `LocalTarget`, on one paramiko connection.

Nothing is installed on the target: commands run in exec channels, files move over SFTP, TCP
connections are opened *from the target* through `direct-tcpip` channels, and the Docker SDK
reaches the target's engine through `docker system dial-stdio` run there (what docker's own
`ssh://` support runs), over this same connection.

Security rules this module keeps:
- The host key is verified (installer.hostkeys) right after the key exchange, before any
  credential is sent. Never AutoAddPolicy, never silently.
- Commands are argument lists joined with `shlex.join`; user input never becomes shell code.
  Shell snippets used here are constants that take user values as positional parameters.
- Secrets never go on a command line (visible in `ps` on the target): the sudo password and
  environment values travel on the command's stdin.
- Files are written atomically (temp file in the same folder, named by installer.tempnames,
  mode set at creation and again before any data, fsync, rename over the old file). The
  rename happens only once the copy is known whole: its size over SFTP; its length and
  SHA-256, checked by the target itself, through sudo (end of input is not "all received").
- Links in the deployment directory are refused, never read, written or chowned through.
- Each host gets its own credentials: the target's password never goes to the jump host.
- A lost connection is reopened (host keys verified again) to repeat what is safe to repeat:
  reads, probes, and operations that had not reached the target yet.

Round trips matter over slow links: one exec costs about three (open the channel, start the
command, collect its output), so facts are gathered by one script, and `stats` counts channels,
commands and SFTP requests for the benchmark.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import getpass
import hashlib
import ipaddress
import logging
import os
import posixpath
import re
import shlex
import shutil
import socket
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from installer.errors import InputError, TargetError
from installer.hostkeys import ConfirmHostKey, HostKeyVerifier, parse_accepted
from installer.target import CommandNotFound, CommandResult, LinkRefused, StagedFile, Target
from installer.tempnames import temp_path_for

if TYPE_CHECKING:  # paramiko and docker are loaded only when a remote target is used
    import docker
    import paramiko

    from installer.answers import SSHTarget as SSHSettings
    from installer.redact import Redactor

log = logging.getLogger("installer.ssh")

PassphrasePrompt = Callable[[str], str]  # (question) -> passphrase
Progress = Callable[[int, int], None]  # (bytes done, bytes total)
_T = TypeVar("_T")

# OpenSSH allows 10 session channels per connection (MaxSessions); keep one spare.
_SESSION_LIMIT = 9
_CHUNK = 1 << 20
# Beyond this, stdin is fed from a thread so a command that answers while reading cannot
# deadlock against our writes (both windows full).
_INLINE_INPUT = 1 << 20
_KEEPALIVE_S = 15
_OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED = 1
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})(\.[A-Za-z0-9_-]{1,63})*\.?$")


def _paramiko() -> Any:
    import paramiko

    # paramiko logs through the root logger; without a handler of its own, Python's
    # last-resort handler would print its errors over our terminal output (or the TUI).
    logger = logging.getLogger("paramiko")
    if not logger.handlers:
        logger.addHandler(logging.NullHandler())
    return paramiko


@dataclass
class SSHStats:
    """What the connection cost. Each channel opened and each command started waits one
    network round trip; SFTP requests mostly do too (writes are pipelined)."""

    connections: int = 0
    channels: int = 0
    commands: int = 0
    sftp_requests: int = 0
    forwards: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, counter: str, n: int = 1) -> None:
        with self._lock:
            setattr(self, counter, getattr(self, counter) + n)

    def as_dict(self) -> dict[str, int]:
        with self._lock:
            return {k: getattr(self, k) for k in
                    ("connections", "channels", "commands", "sftp_requests", "forwards")}


def _local_user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return os.environ.get("USER", "root")


# --- connecting --------------------------------------------------------------------------------


def _tcp_connect(host: str, port: int, timeout: float, what: str) -> socket.socket:
    try:
        return socket.create_connection((host, port), timeout=timeout)
    except socket.gaierror:
        raise TargetError(f"cannot resolve {host} ({what})",
                          f"check the host name in {what}'s settings and this machine's DNS"
                          ) from None
    except ConnectionRefusedError:
        raise TargetError(f"{host}:{port} refused the connection: no SSH server listens there",
                          "check the port, and that sshd runs (`sudo systemctl status ssh`)"
                          ) from None
    except TimeoutError:
        raise TargetError(f"{host}:{port} did not answer within {timeout:g} s ({what})",
                          "check the address, firewalls and security groups on the way") from None
    except OSError as exc:
        raise TargetError(f"cannot connect to {host}:{port} ({what}): {exc.strerror or exc}",
                          "check the address and the network route to it") from None


def _start_transport(sock: Any, host: str, port: int, verifier: HostKeyVerifier,
                     description: str, timeout: float) -> paramiko.Transport:
    """Key exchange, then the host key check, before any credential leaves this machine."""
    paramiko = _paramiko()
    transport = paramiko.Transport(sock)
    transport.banner_timeout = timeout
    options = transport.get_security_options()
    options.key_types = verifier.preferred_algorithms(host, port, list(options.key_types))
    try:
        transport.start_client(timeout=timeout)
    except (paramiko.SSHException, EOFError, OSError) as exc:
        transport.close()
        raise TargetError(f"{host}:{port} did not complete an SSH handshake: {exc}",
                          "check that this is the SSH port (`ssh -p PORT host` from here)"
                          ) from None
    key = transport.get_remote_server_key()
    try:
        verifier.verify(host, port, key.asbytes(), description)
    except BaseException:
        transport.close()
        raise
    transport.set_keepalive(_KEEPALIVE_S)
    return transport  # type: ignore[no-any-return]


def _through_jump(jump: paramiko.Transport, host: str, port: int, timeout: float) -> Any:
    paramiko = _paramiko()
    try:
        return jump.open_channel("direct-tcpip", (host, port), ("127.0.0.1", 0), timeout=timeout)
    except paramiko.ChannelException as exc:
        if exc.code == _OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED:
            raise TargetError(
                "the jump host refuses to forward connections (AllowTcpForwarding is off)",
                "allow TCP forwarding for this user on the bastion (`AllowTcpForwarding yes` "
                "in its sshd_config), or reach the target without target.jump",
            ) from None
        raise TargetError(f"the jump host cannot reach {host}:{port}: {exc.text}",
                          "check target.host and target.port as seen from the bastion") from None
    except paramiko.SSHException as exc:
        raise TargetError(f"the jump host did not open a connection to {host}:{port}: {exc}",
                          "check that the bastion can reach the target") from None


def _identity_public_blob(path: str) -> bytes | None:
    """The public half of an identity file without its passphrase: from `path.pub`, or from
    the unencrypted header of an OpenSSH-format private key."""
    try:
        with open(path + ".pub", encoding="ascii", errors="replace") as handle:
            return base64.b64decode(handle.read().split()[1])
    except (OSError, IndexError, ValueError):
        pass
    try:
        with open(path, encoding="ascii", errors="replace") as handle:
            text = handle.read()
    except OSError:
        return None
    match = re.search(r"-----BEGIN OPENSSH PRIVATE KEY-----(.*?)-----END", text, re.S)
    if not match:
        return None
    try:
        data = base64.b64decode("".join(match.group(1).split()))
        magic = b"openssh-key-v1\x00"
        if not data.startswith(magic):
            return None
        msg = _paramiko().Message(data[len(magic):])
        msg.get_string()  # cipher
        msg.get_string()  # kdf
        msg.get_string()  # kdf options
        if msg.get_int() < 1:
            return None
        return bytes(msg.get_binary())
    except Exception:
        return None


class _Authenticator:
    """Logs in to one host like OpenSSH would with these settings: the identity file (or its
    key held by ssh-agent), else the agent's keys, then the password. A passphrase is asked
    for only when the agent does not hold the key.

    Each host has its own authenticator: the target's password is never offered to the jump
    host (a bastion that refuses keys would collect it). Public keys may be offered to both,
    since a key login proves possession without handing over anything reusable. `keys` is
    shared between them, so one identity file's passphrase is asked for once."""

    def __init__(self, identity_file: str | None, password: str | None,
                 passphrase_prompt: PassphrasePrompt | None, redactor: Redactor | None, *,
                 settings_prefix: str = "target",
                 keys: dict[str, Any] | None = None) -> None:
        self.identity_file = identity_file
        self.password = password
        self.prompt = passphrase_prompt
        self.redactor = redactor
        self.prefix = settings_prefix  # "target" or "target.jump": where the user sets it
        self._keys = keys if keys is not None else {}  # identity path -> its loaded key
        self._notes: list[str] = []

    def login(self, transport: paramiko.Transport, user: str, description: str) -> None:
        paramiko = _paramiko()
        tried: list[str] = []
        self._notes = []
        agent = paramiko.Agent()
        try:
            for label, kind, secret in self._methods(agent):
                tried.append(label)
                try:
                    if kind == "key":
                        transport.auth_publickey(user, secret)
                    else:
                        transport.auth_password(user, secret)
                except paramiko.BadAuthenticationType as exc:
                    log.info("%s: %s not allowed (server allows %s)", description, label,
                             exc.allowed_types)
                    self._notes.append(f"the server does not allow {label.split(' ')[0]} "
                                       f"logins (it allows: {', '.join(exc.allowed_types)})")
                except paramiko.AuthenticationException:
                    log.info("%s: %s refused", description, label)
                except (paramiko.SSHException, EOFError, OSError) as exc:
                    raise TargetError(f"the SSH connection to {description} failed during "
                                      f"login: {exc}", "run again; check the network") from None
                if transport.is_authenticated():
                    log.info("logged in to %s with %s", description, label)
                    return
        finally:
            agent.close()
        if not tried:
            raise TargetError(
                f"no way to log in to {description}: no identity file, no key in ssh-agent "
                "and no password",
                f"set {self.prefix}.identity_file, load a key with `ssh-add`, or set "
                f"{self.prefix}.password_env"
                + (": " + "; ".join(self._notes) if self._notes else ""),
            )
        raise TargetError(
            f"{description} refused the SSH login (tried {', '.join(tried)})",
            "; ".join(self._notes + [
                "check the user name, that the public key is in the user's "
                f"~/.ssh/authorized_keys on that host, or the password in "
                f"{self.prefix}.password_env",
            ]),
        )

    def _methods(self, agent: Any) -> Iterator[tuple[str, str, Any]]:
        path = self.identity_file
        agent_keys = list(agent.get_keys())
        if path:
            key = self._load_identity(path, agent_keys)
            if key is not None:
                yield f"publickey {path}", "key", key
            else:
                wanted = _identity_public_blob(path)
                for agent_key in agent_keys:
                    if wanted is None or agent_key.asbytes() == wanted:
                        yield f"publickey {path} (from ssh-agent)", "key", agent_key
                key = self._ask_passphrase(path)
                if key is not None:
                    yield f"publickey {path}", "key", key
        else:
            for agent_key in agent_keys:
                yield f"publickey {agent_key.get_name()} from ssh-agent", "key", agent_key
        if self.password is not None:
            yield "password", "password", self.password

    def _load_identity(self, path: str, agent_keys: list[Any]) -> Any:
        """The identity when it needs no passphrase; None when it is encrypted."""
        paramiko = _paramiko()
        if path in self._keys:
            return self._keys[path]
        try:
            key = paramiko.PKey.from_path(path)
        except FileNotFoundError:
            raise InputError(f"{self.prefix}.identity_file: {path} does not exist",
                             "give the path of your private key, e.g. ~/.ssh/id_ed25519"
                             ) from None
        except PermissionError:
            raise InputError(f"{self.prefix}.identity_file: cannot read {path} "
                             "(permission denied)",
                             "run as the user who owns the key") from None
        except paramiko.PasswordRequiredException:
            return None
        except TypeError as exc:
            # paramiko lets cryptography's "password-protected, but password was not
            # provided" through as a TypeError for encrypted OpenSSH-format keys.
            if "password" in str(exc).lower():
                return None
            raise
        except (paramiko.SSHException, ValueError) as exc:
            raise InputError(f"{self.prefix}.identity_file: {path} is not a private key this tool "
                             f"can read ({exc})",
                             "use an OpenSSH or PEM private key (ed25519, ecdsa or rsa)"
                             ) from None
        self._keys[path] = key
        return key

    def _ask_passphrase(self, path: str) -> Any:
        paramiko = _paramiko()
        if path in self._keys:
            return self._keys[path]
        if self.prompt is None:
            self._notes.append(f"{path} is protected by a passphrase and ssh-agent does not "
                               f"hold it: load it with `ssh-add {path}` before running")
            return None
        for _ in range(3):
            passphrase = self.prompt(f"Passphrase for {path}")
            if not passphrase:
                break
            if self.redactor is not None:
                self.redactor.add(passphrase)
            try:
                # cryptography (which from_path calls first) wants bytes.
                key = paramiko.PKey.from_path(path, passphrase.encode())
            except (paramiko.SSHException, ValueError, TypeError):
                log.info("wrong passphrase for %s", path)
                continue
            self._keys[path] = key
            return key
        self._notes.append(f"the passphrase for {path} was not accepted")
        return None


class _Connector:
    """Opens the connection to the target, and opens it again after it was lost: TCP (or a
    channel through the jump host), key exchange, host key verification, login. Every
    (re)connection verifies the host keys again, before any credential is sent."""

    def __init__(self, settings: SSHSettings, user: str, verifier: HostKeyVerifier,
                 target_auth: _Authenticator, jump_auth: _Authenticator | None,
                 timeout: float, stats: SSHStats) -> None:
        self.settings = settings
        self.user = user
        self.verifier = verifier
        self.target_auth = target_auth
        self.jump_auth = jump_auth
        self.timeout = timeout
        self.stats = stats

    def open(self, jump_transport: paramiko.Transport | None = None
             ) -> tuple[paramiko.Transport, paramiko.Transport | None]:
        """(target transport, jump transport); a still-working `jump_transport` is reused."""
        settings, timeout = self.settings, self.timeout
        opened_jump = None
        transport = None
        try:
            if settings.jump is not None:
                jump = settings.jump
                if jump_transport is None or not jump_transport.is_active():
                    jump_user = jump.user or self.user
                    described = f"{jump_user}@{jump.host}:{jump.port} (jump host)"
                    jump_sock = _tcp_connect(jump.host, jump.port, timeout, "target.jump")
                    opened_jump = _start_transport(jump_sock, jump.host, jump.port,
                                                   self.verifier, described, timeout)
                    assert self.jump_auth is not None
                    self.jump_auth.login(opened_jump, jump_user, described)
                    self.stats.add("connections")
                    jump_transport = opened_jump
                sock: Any = _through_jump(jump_transport, settings.host, settings.port, timeout)
            else:
                jump_transport = None
                sock = _tcp_connect(settings.host, settings.port, timeout, "target")
            described = f"{self.user}@{settings.host}:{settings.port}"
            transport = _start_transport(sock, settings.host, settings.port, self.verifier,
                                         described, timeout)
            self.target_auth.login(transport, self.user, described)
            self.stats.add("connections")
        except BaseException:
            for t in (transport, opened_jump):
                if t is not None:
                    t.close()
            raise
        return transport, jump_transport


class ConnectionLostError(TargetError):
    """The SSH connection went away. `started` tells whether the operation had already
    reached the target (then repeating it may not be safe)."""

    def __init__(self, message: str, remediation: str, *, started: bool,
                 transport: Any = None) -> None:
        super().__init__(message, remediation)
        self.started = started
        self.transport = transport  # the connection that was lost


class InterruptedWrite(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) during a write to the target; the text says what state each file
    was left in, for the CLI to show."""


# At most this many reconnections per run: a link that keeps dropping is reported, not
# retried forever.
_MAX_RECONNECTS = 3


# --- the target --------------------------------------------------------------------------------


class SSHTarget(Target):
    """A machine reached over SSH (optionally through a jump host), one connection per run."""

    is_local = False

    def __init__(self, settings: SSHSettings, user: str, connector: _Connector,
                 transport: paramiko.Transport, jump_transport: paramiko.Transport | None,
                 password: str | None, redactor: Redactor | None, stats: SSHStats) -> None:
        self.settings = settings
        self.user = user
        self.name = f"{user}@{settings.host}:{settings.port}"
        self.stats = stats
        self._connector = connector
        self._transport = transport
        self._jump = jump_transport
        self._reconnect_lock = threading.Lock()
        self._reconnects = 0
        self._reconnect_error: TargetError | None = None
        self._password = password
        self._redactor = redactor
        self._use_sudo = bool(settings.sudo) and user != "root"
        self._sudo_mode: str | None = None
        self._sudo_error: TargetError | None = None
        self._sudo_lock = threading.Lock()
        self._sftp: Any = None
        self._sftp_lock = threading.Lock()
        self._sessions = threading.Condition()
        self._sessions_open = 0
        self._session_limit = _SESSION_LIMIT
        self._forwarding_refused = False
        self._docker_bridge: _DockerBridge | None = None
        self._docker_clients: dict[int, Any] = {}
        self._docker_lock = threading.Lock()
        self._closed = False
        self._written: list[str] = []  # files replaced in full on the target, in order

    @classmethod
    def connect(
        cls,
        settings: SSHSettings,
        *,
        accept_host_key: str | None,
        confirm_host_key: ConfirmHostKey | None,
        redactor: Redactor | None,
        passphrase_prompt: PassphrasePrompt | None = None,
        timeout: float = 15.0,
    ) -> SSHTarget:
        """Connect, verify the host key(s), log in. Raises TargetError / InputError (and the
        host key errors of installer.hostkeys) with what to do."""
        verifier = HostKeyVerifier(settings.known_hosts, parse_accepted(accept_host_key),
                                   confirm_host_key)
        user = settings.user or _local_user()
        password = settings.password.value if settings.password is not None else None
        keys: dict[str, Any] = {}
        target_auth = _Authenticator(settings.identity_file, password, passphrase_prompt,
                                     redactor, keys=keys)
        jump_auth = None
        if settings.jump is not None:
            jump = settings.jump
            jump_password = jump.password.value if jump.password is not None else None
            jump_auth = _Authenticator(jump.identity_file or settings.identity_file,
                                       jump_password, passphrase_prompt, redactor,
                                       settings_prefix="target.jump", keys=keys)
            if redactor is not None and jump_password:
                redactor.add(jump_password)
        if redactor is not None and password:
            redactor.add(password)
        stats = SSHStats()
        connector = _Connector(settings, user, verifier, target_auth, jump_auth, timeout, stats)
        transport, jump_transport = connector.open()
        target = cls(settings, user, connector, transport, jump_transport, password, redactor,
                     stats)
        log.info("connected to %s%s", target.name,
                 f" through {settings.jump.host}:{settings.jump.port}" if settings.jump else "")
        if target._use_sudo:
            target._probe_sudo_early()
        return target

    def _reconnect(self, lost: ConnectionLostError, what: str) -> None:
        """Open the connection again after `lost` (host keys verified again, same logins),
        once per loss and at most _MAX_RECONNECTS times per run. Raises `lost` (or why the
        new connection failed) when that is not possible."""
        with self._reconnect_lock:
            if self._closed:
                raise lost
            if lost.transport is not None and lost.transport is not self._transport:
                return  # another thread has reconnected meanwhile
            if self._still_connected():
                return  # only a channel (the SFTP session) was lost
            if self._reconnect_error is not None:
                raise self._reconnect_error
            if self._reconnects >= _MAX_RECONNECTS:
                self._reconnect_error = lost
                raise lost
            self._reconnects += 1
            log.warning("%s; reconnecting (%d of at most %d) to repeat %s", lost.message,
                        self._reconnects, _MAX_RECONNECTS, what)
            with self._sftp_lock:
                self._drop_sftp()
            try:
                transport, jump = self._connector.open(self._jump)
            except Exception as exc:
                why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                log.warning("reconnecting to %s failed: %s", self.name, why)
                self._reconnect_error = ConnectionLostError(
                    f"{lost.message}; reconnecting failed: {why}", lost.remediation,
                    started=lost.started, transport=self._transport)
                raise self._reconnect_error from None
            old = self._transport
            self._transport, self._jump = transport, jump
            with contextlib.suppress(Exception):
                old.close()
            self._release_idle_docker()  # its pooled connections rode the old transport
            log.warning("reconnected to %s; repeating %s", self.name, what)

    def _transport_ends_within(self, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while self._transport.is_active():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)
        return True

    def _still_connected(self) -> bool:
        """Whether the transport works. Just after the server went away, paramiko may not
        have read the end of the connection yet: give it a moment to notice."""
        return not self._transport_ends_within(1.0)

    def _repeatable(self, what: str, operation: Callable[[], _T]) -> _T:
        """Run `operation`, which is safe to repeat (a read, a probe); if the connection was
        lost, reconnect once and run it again."""
        try:
            return operation()
        except ConnectionLostError as lost:
            self._reconnect(lost, what)
        return operation()

    def _unstarted(self, what: str, operation: Callable[[], _T]) -> _T:
        """Like `_repeatable`, for an operation that may not run twice: repeated only when
        the connection was found lost before it reached the target."""
        try:
            return operation()
        except ConnectionLostError as lost:
            if lost.started:
                raise
            self._reconnect(lost, what)
        return operation()

    # --- channels ------------------------------------------------------------------------------

    def _lost(self, exc: BaseException, *, started: bool = True) -> ConnectionLostError:
        why = str(exc) or type(exc).__name__
        return ConnectionLostError(f"the SSH connection to {self.name} was lost ({why})",
                                   "check the network and run again", started=started,
                                   transport=self._transport)

    def _open_session(self, deadline: float) -> Any:
        """A session channel, waiting for a free slot under the server's MaxSessions."""
        paramiko = _paramiko()
        first_refusal = 0.0
        while True:
            waited = 0.0
            with self._sessions:
                while self._sessions_open >= self._session_limit:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise TimeoutError(f"no free SSH session on {self.name} in time")
                    if waited >= 0.5:
                        # Idle Docker API connections hold sessions too: let them go (the
                        # SDK reconnects when it needs one).
                        self._release_idle_docker()
                        waited = -60.0
                    started = time.monotonic()
                    self._sessions.wait(min(remaining, 0.5))
                    waited += time.monotonic() - started
                self._sessions_open += 1
                log.debug("%s: SSH session opening (%d open)", self.name, self._sessions_open)
            try:
                channel = self._transport.open_session(
                    timeout=max(1.0, deadline - time.monotonic()))
            except (paramiko.SSHException, EOFError, OSError) as exc:
                if not self._transport.is_active():
                    with self._sessions:
                        self._sessions_open -= 1
                        self._sessions.notify()
                    raise self._lost(exc, started=False) from None
                # A refusal: a ChannelException, or, when several opens fail at once, the
                # plain "Unable to open channel." of a paramiko thread whose error another
                # thread's open already took.
                text = getattr(exc, "text", None) or str(exc)
                now = time.monotonic()
                first_refusal = first_refusal or now
                with self._sessions:
                    self._sessions_open -= 1
                    busy = self._sessions_open
                    if now < deadline and (busy > 0 or now - first_refusal < 3.0):
                        # Over the server's MaxSessions: it may be lower than we assume, or
                        # still counting sessions we just closed. Retry once one ends.
                        log.debug("%s refused a session with %d open (%s); retrying",
                                  self.name, busy, text)
                        self._sessions.wait(0.1)
                        continue
                raise TargetError(f"{self.name} refused to open an SSH session: {text}",
                                  "check MaxSessions and ForceCommand in the server's "
                                  "sshd_config") from None
            self.stats.add("channels")
            released = threading.Event()

            def release(channel: Any = channel, released: threading.Event = released) -> None:
                if not released.is_set():
                    released.set()
                    with contextlib.suppress(Exception):
                        channel.close()
                    with self._sessions:
                        self._sessions_open -= 1
                        self._sessions.notify()
                        log.debug("%s: SSH session closed (%d open)", self.name,
                                  self._sessions_open)

            channel._carto_release = release  # type: ignore[attr-defined]
            return channel

    @staticmethod
    def _release(channel: Any) -> None:
        release = getattr(channel, "_carto_release", None)
        if release is not None:
            release()
        else:
            channel.close()

    def _sudo_needs_password(self) -> bool:
        """Whether sudo asks this user for a password, found once per connection.

        Found by one probe (`sudo -k -n true`, then the password if one is needed, which also
        checks it). `-k` everywhere: sudo would otherwise remember a password per parent
        process, which is shared by every channel of one connection, and stop reading it from
        stdin: the password line would then reach the command itself.
        """
        with self._sudo_lock:
            if self._sudo_mode is None:
                if self._sudo_error is not None:
                    raise self._sudo_error
                try:
                    self._sudo_mode = self._probe_sudo()
                except TargetError as exc:
                    self._sudo_error = exc  # a refusal stays one: no second password try
                    raise
            return self._sudo_mode == "password"

    def _release_idle_docker(self) -> None:
        bridge = self._docker_bridge
        if bridge is not None and bridge.adapter is not None:
            log.debug("%s: closing idle Docker API connections to free SSH sessions", self.name)
            with contextlib.suppress(Exception):
                bridge.adapter.close()

    def _probe_sudo_early(self) -> None:
        """Start the sudo probe now, alongside the first checks, instead of in front of the
        first privileged command (three round trips saved on the critical path)."""
        def probe() -> None:
            with contextlib.suppress(Exception):  # raised again where sudo is used
                self._sudo_needs_password()

        threading.Thread(target=probe, daemon=True, name="ssh-sudo-probe").start()

    def _probe_sudo(self) -> str:
        script = ('if sudo -k -n true 2>/dev/null; then echo nopasswd; '
                  'elif [ -n "$1" ]; then sudo -k -S -p "" true && echo password; '
                  'else sudo -k -n true; fi')
        has_password = "1" if self._password is not None else ""
        stdin = (self._password + "\n").encode() if self._password is not None else b""
        code, out, err = self._exec(["sh", "-c", script, "sh", has_password], stdin, 30.0)
        said = out.decode("utf-8", "replace").strip()
        if said in ("nopasswd", "password"):
            log.info("sudo on %s: %s", self.name,
                     "no password needed" if said == "nopasswd" else "password accepted")
            return said
        text = err.decode("utf-8", "replace").strip()
        lowered = text.lower()
        if code == 127 or "sudo: not found" in lowered or "command not found" in lowered:
            raise TargetError(f"sudo is not installed on {self.name}",
                              "install it (`apt-get install sudo`), or log in as root")
        if "incorrect password" in lowered or "try again" in lowered:
            raise TargetError(f"sudo on {self.name} refused the password of {self.user}",
                              "check the password given in target.password_env")
        if "password is required" in lowered or "no password was provided" in lowered:
            raise TargetError(f"sudo on {self.name} needs the password of {self.user}",
                              "set target.password_env to that password, or allow this user "
                              "sudo without a password (NOPASSWD); if the user may not use "
                              "sudo at all, log in as root or set target.sudo: false")
        if "sudoers" in lowered or "may not run sudo" in lowered or "not allowed" in lowered:
            raise TargetError(f"{self.user} may not use sudo on {self.name}",
                              f"add {self.user} to the sudo group (`usermod -aG sudo "
                              f"{self.user}`), log in as root, or set target.sudo: false")
        raise TargetError(f"sudo does not work for {self.user} on {self.name}: "
                          f"{text.splitlines()[0] if text else f'exit {code}'}",
                          "run `sudo true` on the target as that user to see why")

    def _command(self, args: list[str], *, env: Mapping[str, str] | None, cwd: str | None,
                 sudo: bool) -> tuple[list[str], bytes]:
        """The argv to start and the bytes to send before the command's own stdin."""
        before = b""
        argv = list(args)
        if env or cwd:
            # Environment values may be secrets: they come on stdin, one NAME=value line each,
            # ended by an empty line; `export "$line"` assigns without evaluating anything.
            parts = []
            if env:
                parts.append('while IFS= read -r _kv && [ -n "$_kv" ]; do export "$_kv"; done')
                lines = []
                for key, value in env.items():
                    if not _ENV_NAME.match(key) or "\n" in value or "\0" in value:
                        raise ValueError(f"environment variable {key!r} cannot be passed")
                    lines.append(f"{key}={value}\n")
                before += ("".join(lines) + "\n").encode()
            if cwd:
                parts.append('cd -- "$1" || exit 1; shift')
            parts.append('exec "$@"')
            argv = ["sh", "-c", "; ".join(parts), "sh", *([cwd] if cwd else []), *argv]
        if sudo and self.user != "root":
            if self._sudo_needs_password():
                assert self._password is not None
                argv = ["sudo", "-k", "-S", "-p", "", "--", *argv]
                before = (self._password + "\n").encode() + before
            else:
                argv = ["sudo", "-n", "--", *argv]
        return argv, before

    def _exec(self, argv: list[str], stdin: bytes | None, timeout: float
              ) -> tuple[int, bytes, bytes]:
        """Run one command (already including any sudo); (exit code, stdout, stderr)."""
        paramiko = _paramiko()
        deadline = time.monotonic() + timeout
        channel = self._open_session(deadline)
        try:
            try:
                channel.exec_command(shlex.join(argv))
            except (paramiko.SSHException, EOFError, OSError) as exc:
                raise self._lost(exc) from None
            self.stats.add("commands")
            return self._communicate(channel, stdin or b"", deadline, argv[0], timeout)
        finally:
            self._release(channel)

    def _communicate(self, channel: Any, data: bytes, deadline: float, program: str,
                     timeout: float, *, sent: threading.Event | None = None
                     ) -> tuple[int, bytes, bytes]:
        """Feed `data`, collect the output and exit code; `sent` is set once every byte of
        `data` was handed to the channel."""
        channel.settimeout(0.5)
        failures: list[BaseException] = []

        def feed() -> None:
            try:
                if data:
                    channel.sendall(data)
                if sent is not None:
                    sent.set()
                channel.shutdown_write()
            except (OSError, EOFError) as exc:  # the command may exit without reading
                failures.append(exc)

        feeder = None
        if len(data) <= _INLINE_INPUT:
            feed()
        else:
            feeder = threading.Thread(target=feed, daemon=True, name="ssh-stdin")
            feeder.start()
        err = bytearray()

        def drain_stderr() -> None:
            while time.monotonic() < deadline:
                try:
                    chunk = channel.recv_stderr(65536)
                except TimeoutError:
                    continue
                except OSError:
                    return
                if not chunk:
                    return
                err.extend(chunk)

        err_reader = threading.Thread(target=drain_stderr, daemon=True, name="ssh-stderr")
        err_reader.start()
        out = bytearray()
        while True:
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{program} did not finish within {timeout:g} s on {self.name}")
            try:
                chunk = channel.recv(65536)
            except TimeoutError:
                continue
            if not chunk:
                break
            out.extend(chunk)
        while not channel.exit_status_ready():
            if not self._transport.is_active():
                raise self._lost(EOFError("connection closed"))
            if channel.closed and not channel.exit_status_ready():
                break  # killed by a signal: OpenSSH then sends no exit status
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{program} did not finish within {timeout:g} s on {self.name}")
            channel.status_event.wait(0.1)
        err_reader.join(max(0.0, deadline - time.monotonic()))
        if feeder is not None:
            feeder.join(max(0.0, deadline - time.monotonic()))
        if channel.exit_status == -1 and self._transport_ends_within(0.5):
            # Closed without an exit status (paramiko keeps -1): killed by a signal, or the
            # connection went away (paramiko closes the channels just before it says so).
            raise self._lost(EOFError("connection closed"))
        code = channel.recv_exit_status() if channel.exit_status_ready() else -1
        return code, bytes(out), bytes(err)

    # --- Target --------------------------------------------------------------------------------

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float = 30.0,
        input: bytes | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        sudo: bool = False,
    ) -> CommandResult:
        args = [str(a) for a in argv]
        if not args:
            raise ValueError("empty command")
        # A command may not be safe to run twice: repeated after a reconnection only when
        # the connection was found lost before the command reached the target.
        return self._unstarted(f"`{args[0]}`", lambda: self._run_once(
            args, timeout=timeout, input=input, env=env, cwd=cwd, sudo=sudo))

    def _run_once(self, args: list[str], *, timeout: float, input: bytes | None,
                  env: Mapping[str, str] | None, cwd: str | None, sudo: bool) -> CommandResult:
        full, before = self._command(args, env=env, cwd=cwd, sudo=sudo)
        log.info("run (%s%s): %s%s%s", self.name, ", sudo" if sudo else "", shlex.join(args),
                 f"  [cwd {cwd}]" if cwd else "",
                 f"  [env {', '.join(sorted(env))}]" if env else "")
        code, out, err = self._exec(full, before + (input or b""), timeout)
        result = CommandResult(full, code, out.decode("utf-8", "replace"),
                               err.decode("utf-8", "replace"))
        if _not_found(args[0], code, result.stderr):
            raise CommandNotFound(errno.ENOENT, f"{args[0]}: command not found on {self.name}")
        log.debug("exit %s: %s", result.returncode, result.output()[:2000])
        return result

    def _run_bytes(self, args: list[str], *, sudo: bool, input: bytes | None = None,
                   timeout: float = 60.0) -> tuple[int, bytes, bytes]:
        full, before = self._command(args, env=None, cwd=None, sudo=sudo)
        log.info("run (%s%s): %s", self.name, ", sudo" if sudo else "", shlex.join(args))
        return self._exec(full, before + (input or b""), timeout)

    @contextlib.contextmanager
    def _sftp_session(self) -> Iterator[Any]:
        """The shared SFTP session; paramiko's client is not safe for concurrent requests
        (one thread may swallow another's reply), so its users take turns."""
        paramiko = _paramiko()
        with self._sftp_lock:
            if self._sftp is None:
                self._sftp = self._new_sftp()
            try:
                yield self._sftp
            except KeyboardInterrupt:
                self._drop_sftp()  # requests may be in flight: the next user starts afresh
                raise
            except (paramiko.SSHException, EOFError) as exc:
                self._drop_sftp()
                raise self._lost(exc) from None
            except OSError as exc:
                if exc.errno is None and not self._transport.is_active():
                    self._drop_sftp()
                    raise self._lost(exc) from None
                raise

    def _drop_sftp(self) -> None:
        sftp, self._sftp = self._sftp, None
        if sftp is not None:
            with contextlib.suppress(Exception):
                sftp.close()
            self._release(sftp.get_channel())

    def _new_sftp(self) -> Any:
        paramiko = _paramiko()
        stats = self.stats

        class CountingSFTP(paramiko.SFTPClient):  # type: ignore[misc,name-defined]
            def _async_request(self, *args: Any) -> Any:
                stats.add("sftp_requests")
                return super()._async_request(*args)

        channel = self._open_session(time.monotonic() + 30)
        try:
            channel.invoke_subsystem("sftp")
            return CountingSFTP(channel)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            self._release(channel)
            if not self._transport.is_active():
                raise self._lost(exc, started=False) from None
            raise TargetError(f"{self.name} offers no SFTP ({exc})",
                              "enable the sftp subsystem in the server's sshd_config "
                              "(`Subsystem sftp internal-sftp`)") from None

    def read_file(self, path: str) -> bytes:
        return self._repeatable(f"reading {path}", lambda: self._read_once(path))

    def _read_once(self, path: str) -> bytes:
        try:
            with self._sftp_session() as sftp, sftp.open(path, "rb") as handle:
                return bytes(handle.read())
        except PermissionError:
            if not self._use_sudo:
                raise
        code, out, err = self._run_bytes(["cat", "--", path], sudo=True)
        if code != 0:
            raise _os_error(err, path)
        return out

    def is_link(self, path: str) -> bool:
        """Whether `path` itself is a symbolic link (lstat over SFTP, else `test -L` with
        sudo when the login user cannot look)."""
        return self._repeatable(f"checking {path}", lambda: self._is_link_once(path))

    def _is_link_once(self, path: str) -> bool:
        try:
            with self._sftp_session() as sftp:
                return stat.S_ISLNK(sftp.lstat(path).st_mode or 0)
        except FileNotFoundError:
            return False
        except PermissionError:
            if not self._use_sudo:
                raise
        code, _, _ = self._run_bytes(["test", "-L", path], sudo=True)
        return code == 0

    def read_deployment_file(self, path: str, root: str) -> bytes:
        """A file the installer manages below `root` (the deployment directory, which may
        itself be a link the admin made), never read through a link: LinkRefused when the
        file or a folder between `root` and it is one. SFTP has no O_NOFOLLOW, so each part
        is lstat-ed and the opened file must be the one lstat saw; through sudo, the same
        walk and `dd iflag=nofollow`."""
        parts = _parts_below(root, path)
        return self._repeatable(f"reading {path}", lambda: self._read_below_once(parts))

    def _read_below_once(self, parts: list[str]) -> bytes:
        path = parts[-1]
        try:
            with self._sftp_session() as sftp:
                for part in parts:
                    if stat.S_ISLNK(sftp.lstat(part).st_mode or 0):
                        raise LinkRefused(part)
                seen = sftp.lstat(path)
                with sftp.open(path, "rb") as handle:
                    opened = handle.stat()
                    if not _same_file(seen, opened):
                        raise LinkRefused(path)  # swapped for a link between lstat and open
                    return bytes(handle.read())
        except PermissionError:
            if not self._use_sudo:
                raise
        code, out, err = self._run_bytes(["sh", "-c", _SUDO_READ_SCRIPT, "sh", *parts],
                                         sudo=True)
        if code == _SUDO_READ_LINK or b"symbolic links" in err:
            said = err.decode("utf-8", "replace")
            raise LinkRefused(next((p for p in parts if f"carto-link: {p}\n" in said), path))
        if code != 0:
            raise _os_error(err, path)
        return out

    def write_file(self, path: str, data: bytes, mode: int = 0o600) -> None:
        """Atomically replace `path`: the target checks length and SHA-256 of what arrived
        before the rename, so an interrupted transfer never replaces the file. Refuses a
        symbolic link at `path` (InputError). Ctrl-C raises InterruptedWrite, which says
        what state the files written through this connection were left in."""
        log.info("write (%s): %s (%d bytes, mode %o)", self.name, path, len(data), mode)
        write = _RemoteWrite(self, path, data, mode)
        try:
            self._unstarted(f"writing {path}", write.run)
        except LinkRefused:
            raise InputError(f"{path} on {self.name} is a symbolic link: the installer does not "
                             "write through links in the deployment directory",
                             f"find out who made it (ls -l {path}); replace it with the real "
                             "file, or remove it so that it is created") from None
        except KeyboardInterrupt:
            state = self._state_after_interrupt(write)
            log.warning("interrupted while writing %s: %s", path, state)
            raise InterruptedWrite(state) from None
        self._written.append(path)

    # Staging: the new content checked in place beside each file first, then every file
    # switched by a rename, so a multi-file change is quick to switch and never half-sent.

    def stage_file(self, path: str, data: bytes, mode: int = 0o600) -> str:
        """Write `data` to a temporary copy beside `path` (length and SHA-256 checked on the
        target, fsynced, with `mode` and the owner a write would give it); returns the
        copy's path for `switch_file` or `discard_file`. `path` itself is not touched.
        LinkRefused when `path` is a symbolic link."""
        log.info("stage (%s): %s (%d bytes, mode %o)", self.name, path, len(data), mode)
        write = _RemoteWrite(self, path, data, mode)
        return self._unstarted(f"staging {path}", lambda: write.run(stage_only=True))

    def switch_file(self, staged: str, path: str) -> None:
        """Rename a copy made by `stage_file` over `path` (one atomic step); refuses a link
        that appeared at `path` since."""
        log.info("switch (%s): %s -> %s", self.name, staged, path)
        try:
            with self._sftp_session() as sftp:
                found = _lstat_or_none(sftp, path)
                if found is not None and stat.S_ISLNK(found.st_mode or 0):
                    raise LinkRefused(path)
                _replace(sftp, staged, path)
            self._written.append(path)
            return
        except PermissionError:
            if not self._use_sudo:
                raise
        code, _, err = self._run_bytes(["sh", "-c", _SUDO_SWITCH_SCRIPT, "sh", staged, path],
                                       sudo=True)
        if code == _SUDO_WRITE_LINK:
            raise LinkRefused(path)
        if code != 0:
            raise _os_error(err, path)
        self._written.append(path)

    def discard_file(self, staged: str) -> None:
        """Remove a copy made by `stage_file` that will not be switched."""
        with contextlib.suppress(FileNotFoundError):
            self.remove(staged)

    # The render's staging (installer.render.apply_render) through the verified copies above:
    # every file is sent and checked first, then the switch is one rename per file.
    def stage_deployment_file(self, path: str, data: bytes, mode: int, root: str) -> StagedFile:
        folder = posixpath.normpath(posixpath.dirname(path))
        if folder != posixpath.normpath(root):
            self._refuse_links(folder, root)
        return StagedFile(path, root, mode, temp_name=self.stage_file(path, data, mode))

    def switch_staged(self, staged: StagedFile) -> None:
        if staged.temp_name is None:
            super().switch_staged(staged)
            return
        self.switch_file(staged.temp_name, staged.path)

    def discard_staged(self, staged: StagedFile) -> None:
        if staged.temp_name is not None:
            self.discard_file(staged.temp_name)

    def _state_after_interrupt(self, write: _RemoteWrite) -> str:
        before = (f"written in full before it: {', '.join(self._written)}" if self._written
                  else "no other file was written on the target")
        return f"while writing {write.path} on {self.name}: {write.describe_outcome()}; {before}"

    def exists(self, path: str) -> bool:
        return self._repeatable(f"checking {path}", lambda: self._exists_once(path))

    def _exists_once(self, path: str) -> bool:
        try:
            with self._sftp_session() as sftp:
                sftp.lstat(path)
            return True
        except FileNotFoundError:
            return False
        except PermissionError:
            if not self._use_sudo:
                return False
        code, _, _ = self._run_bytes(["sh", "-c", '[ -e "$1" ] || [ -L "$1" ]', "sh", path],
                                     sudo=True)
        return code == 0

    def makedirs(self, path: str, mode: int = 0o755) -> None:
        return self._repeatable(f"creating {path}", lambda: self._makedirs_once(path, mode))

    def _makedirs_once(self, path: str, mode: int = 0o755) -> None:
        try:
            with self._sftp_session() as sftp:
                if stat.S_ISDIR(sftp.stat(path).st_mode or 0):
                    return
            raise FileExistsError(errno.EEXIST, f"{path} exists and is not a folder", path)
        except (FileNotFoundError, PermissionError):
            pass
        argv = ["mkdir", "-p", "-m", f"{mode:o}", "--", path]
        code, _, err = self._run_bytes(argv, sudo=False)
        if code != 0 and self._use_sudo and b"denied" in err:
            code, _, err = self._run_bytes(argv, sudo=True)
        if code != 0:
            raise _os_error(err, path)

    def listdir(self, path: str) -> list[str]:
        return self._repeatable(f"listing {path}", lambda: self._listdir_once(path))

    def _listdir_once(self, path: str) -> list[str]:
        try:
            with self._sftp_session() as sftp:
                return sorted(sftp.listdir(path))
        except PermissionError:
            if not self._use_sudo:
                raise
        start = path if path.startswith("/") else "./" + path
        code, out, err = self._run_bytes(
            ["find", start, "-mindepth", "1", "-maxdepth", "1", "-printf", "%f\\0"], sudo=True)
        if code != 0:
            raise _os_error(err, path)
        return sorted(name.decode("utf-8", "surrogateescape")
                      for name in out.split(b"\0") if name)

    def remove(self, path: str) -> None:
        return self._unstarted(f"removing {path}", lambda: self._remove_once(path))

    def _remove_once(self, path: str) -> None:
        is_folder = None
        try:
            with self._sftp_session() as sftp:
                is_folder = stat.S_ISDIR(sftp.lstat(path).st_mode or 0)
                if not is_folder:
                    sftp.remove(path)
                    return
        except PermissionError:
            if not self._use_sudo:
                raise
        argv = ["rm", "-rf", "--", path] if is_folder is not False else ["rm", "-f", "--", path]
        code, _, err = self._run_bytes(argv, sudo=bool(self._use_sudo and is_folder is None))
        if code != 0 and self._use_sudo and b"denied" in err:
            code, _, err = self._run_bytes(argv, sudo=True)
        if code != 0:
            raise _os_error(err, path)

    def disk_usage(self, path: str) -> tuple[int, int]:
        return self._repeatable(f"measuring the disk of {path}",
                                lambda: self._disk_usage_once(path))

    def _disk_usage_once(self, path: str) -> tuple[int, int]:
        script = 'df -B1 --output=size,avail -- "$1" 2>/dev/null || df -Pk -- "$1"'
        code, out, err = self._run_bytes(["sh", "-c", script, "sh", path], sudo=False)
        if code != 0 and self._use_sudo and b"denied" in err:
            code, out, err = self._run_bytes(["sh", "-c", script, "sh", path], sudo=True)
        if code != 0:
            raise _os_error(err, path)
        return parse_df(out.decode("utf-8", "replace"))

    def open_connection(self, host: str, port: int, timeout: float) -> socket.socket:
        """A socket whose bytes flow to host:port *from the target*: a `direct-tcpip` channel
        when the server allows forwarding; when it refuses (AllowTcpForwarding no), a small
        relay run on the target itself (python3, else bash's /dev/tcp), so egress is still
        measured where CARTO will run. Either way the result is a real socket, so
        `ssl.SSLContext.wrap_socket` works on it."""
        _check_endpoint(host, port)
        return self._repeatable(f"connecting to {host}:{port}",
                                lambda: self._open_connection_once(host, port, timeout))

    def _open_connection_once(self, host: str, port: int, timeout: float) -> socket.socket:
        paramiko = _paramiko()
        if not self._forwarding_refused:
            try:
                channel = self._transport.open_channel(
                    "direct-tcpip", (host, port), ("127.0.0.1", 0), timeout=timeout)
            except paramiko.ChannelException as exc:
                if exc.code == _OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED:
                    self._forwarding_refused = True
                    log.warning("%s refuses TCP forwarding; probing through a relay run on "
                                "the target instead", self.name)
                else:
                    error = self._connect_error(str(exc.text), host, port)
                    if error.errno != errno.ECONNABORTED:  # the server said why
                        raise error from None
                    # Often OpenSSH says only "Connect failed" (refused, unreachable alike):
                    # the relay, run on the target, tells which, or connects after all.
                    log.info("direct-tcpip to %s:%s from %s failed (%s); asking the target",
                             host, port, self.name, exc.text)
            except (paramiko.SSHException, EOFError, OSError) as exc:
                if "timeout" in str(exc).lower():
                    raise TimeoutError(errno.ETIMEDOUT, f"connecting to {host}:{port} from "
                                       f"{self.name} timed out after {timeout:g} s") from None
                if not self._transport.is_active():
                    raise self._lost(exc) from None
                # paramiko's "Unable to open channel." when failures race: ask the target.
                log.info("direct-tcpip to %s:%s from %s failed (%s); asking the target",
                         host, port, self.name, exc)
            else:
                self.stats.add("forwards")
                return _bridge_channel(channel, timeout)
        return self._relay_connection(host, port, timeout)

    def _relay_connection(self, host: str, port: int, timeout: float) -> socket.socket:
        paramiko = _paramiko()
        deadline = time.monotonic() + timeout + 5
        channel = self._open_session(deadline)
        ok = False
        try:
            try:
                channel.exec_command(shlex.join(
                    ["sh", "-c", _RELAY_SCRIPT, "sh", host, str(port), f"{timeout:g}", _PY_RELAY]))
            except (paramiko.SSHException, EOFError, OSError) as exc:
                raise self._lost(exc) from None
            self.stats.add("commands")
            channel.settimeout(0.2)
            said = b""
            while b"carto-relay: " not in said or not said.endswith(b"\n"):
                if time.monotonic() >= deadline:
                    raise TimeoutError(errno.ETIMEDOUT, f"connecting to {host}:{port} from "
                                       f"{self.name} timed out after {timeout:g} s")
                try:
                    chunk = channel.recv_stderr(4096)
                except TimeoutError:
                    continue
                if not chunk:
                    break
                said += chunk
            text = said.decode("utf-8", "replace")
            if "carto-relay: connected" not in text:
                if "neither python3 nor bash" in text and not self._forwarding_refused:
                    raise OSError(errno.ECONNABORTED, f"cannot connect to {host}:{port} from "
                                  f"{self.name} (the server said only: Connect failed)")
                if "neither python3 nor bash" in text:
                    raise OSError(errno.EOPNOTSUPP, f"{self.name} refuses TCP forwarding "
                                  "(AllowTcpForwarding no) and has neither python3 nor bash to "
                                  "probe connections with; allow forwarding in its sshd_config")
                raise self._connect_error(text.replace("carto-relay:", "").strip(), host, port)
            ok = True
            return _bridge_channel(channel, timeout, on_close=lambda: self._release(channel))
        finally:
            if not ok:
                self._release(channel)

    def _connect_error(self, text: str, host: str, port: int) -> OSError:
        """The OSError subclass a local connect would raise, from the target's message."""
        lowered = text.lower()
        where = f"from {self.name}"
        if any(s in lowered for s in ("name or service not known", "temporary failure in name",
                                      "no address associated", "nodename nor servname",
                                      "name does not resolve", "dns:", "unknown host")):
            return socket.gaierror(socket.EAI_NONAME, f"{host} does not resolve {where} ({text})")
        if "refused" in lowered:
            return ConnectionRefusedError(errno.ECONNREFUSED,
                                          f"{host}:{port} refused the connection {where}")
        if "timed out" in lowered or "timeout" in lowered:
            return TimeoutError(errno.ETIMEDOUT, f"connecting to {host}:{port} {where} timed out")
        if "no route" in lowered:
            return OSError(errno.EHOSTUNREACH, f"no route to {host} {where}")
        if "unreachable" in lowered:
            return OSError(errno.ENETUNREACH, f"network unreachable for {host} {where}")
        return OSError(errno.ECONNABORTED, f"cannot connect to {host}:{port} {where}: {text}")

    def docker_client(self, timeout: float = 10.0) -> docker.DockerClient:
        """The Docker SDK talking to the target's engine over this SSH connection.

        A private Unix socket here (in a 0700 folder) whose every connection is bridged to
        `docker system dial-stdio` run on the target, with sudo when target.sudo is set. The
        docker SDK's own ssh:// transport runs the same command but opens its own SSH
        connections with its own host key handling, so it could not reuse this verified,
        authenticated connection (jump host, passphrase, password, sudo).

        Each bridged connection holds one SSH session, so clients are shared (one per timeout)
        and all of them share one pool that keeps at most two idle connections."""
        import docker.errors
        import requests.exceptions

        with self._docker_lock:
            if self._closed:
                raise TargetError(f"the SSH connection to {self.name} is closed")
            if self._docker_bridge is None:
                self._docker_bridge = _DockerBridge(self)
            bridge = self._docker_bridge
            client = self._docker_clients.get(int(timeout))
            if client is not None:
                return client
            try:
                client = _docker_client_on(bridge, int(timeout))
            except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
                said = bridge.wait_for_error(2.0)
                if said:
                    raise docker.errors.DockerException(
                        f"{said} (from `docker system dial-stdio` on {self.name})") from None
                raise docker.errors.DockerException(
                    f"cannot reach the Docker engine on {self.name}: {exc}") from None
            self._docker_clients[int(timeout)] = client
            return client

    # --- big files -----------------------------------------------------------------------------

    def upload(self, local_path: str, remote_path: str, progress: Progress | None = None,
               resume: bool = True) -> str:
        """Copy a big local file (an images archive) to the target; returns its sha256.

        The data goes to `remote_path.partial` and is renamed into place only after the
        target's own `sha256sum` matches, so the final path only ever holds a whole file. After
        a dropped connection the next call appends from what reached the target (`resume`);
        a file already there with the right checksum is not sent again."""
        paramiko = _paramiko()
        size = os.path.getsize(local_path)
        digest = _sha256_file(local_path)
        partial = remote_path + ".partial"
        log.info("upload (%s): %s -> %s (%d bytes, sha256 %s)", self.name, local_path,
                 remote_path, size, digest)
        sftp = self._new_sftp()
        sent = [0]
        try:
            existing = _stat_or_none(sftp, remote_path)
            if existing is not None and existing.st_size == size \
                    and self._remote_sha256(remote_path) == digest:
                log.info("upload: %s is already on the target", remote_path)
                if progress:
                    progress(size, size)
                return digest
            offset = 0
            if resume:
                found = _stat_or_none(sftp, partial)
                if found is not None and 0 < (found.st_size or 0) <= size:
                    offset = int(found.st_size or 0)
                    log.info("upload: resuming %s at %d of %d bytes", partial, offset, size)
            while True:
                self._send_from(sftp, local_path, partial, offset, size, progress, sent)
                remote = self._remote_sha256(partial)
                if remote == digest:
                    break
                if offset == 0:
                    raise TargetError(
                        f"the copy of {local_path} on {self.name} differs from the original "
                        f"(sha256 {remote} instead of {digest})",
                        "check the target's disk (`df -h`, `dmesg`) and run again")
                log.warning("upload: the kept part of %s did not match; sending it all", partial)
                offset = 0
            _replace(sftp, partial, remote_path)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            if isinstance(exc, OSError) and exc.errno is not None and self._transport.is_active():
                raise
            raise TargetError(
                f"the connection to {self.name} dropped while uploading {local_path} "
                f"({sent[0]} of {size} bytes sent): {exc or type(exc).__name__}",
                "run the same command again: the upload resumes from what reached the target",
            ) from None
        finally:
            with contextlib.suppress(Exception):
                sftp.close()
            self._release(sftp.get_channel())
        if progress:
            progress(size, size)
        return digest

    def load_images_archive(self, local_path: str, progress: Progress | None = None,
                            timeout: float = 3600.0) -> list[str]:
        """`docker load` a local images archive on the target; the image tags loaded.

        The archive is uploaded first (resumable, checked with sha256) into the login user's
        ~/.cache/carto-installer, then loaded from there by the target's own `docker` (with
        sudo when target.sudo is set) and removed. Streaming it through the Docker API would
        start again from zero after a dropped connection; gigabytes over a slow link should
        not."""
        found = self.run(["sh", "-c", 'mkdir -p -m 700 -- "$HOME/.cache/carto-installer" && '
                          'cd -- "$HOME/.cache/carto-installer" && pwd -P'], timeout=30)
        if not found.ok or not found.stdout.strip().startswith("/"):
            raise TargetError(f"cannot make a folder for the images archive on {self.name}: "
                              f"{found.output()[:200]}",
                              "check that the login user has a writable home folder")
        remote = posixpath.join(found.stdout.strip(), os.path.basename(local_path))
        self.upload(local_path, remote, progress=progress)
        result = self.run(["docker", "load", "-i", remote], sudo=self._use_sudo,
                          timeout=timeout)
        if not result.ok:
            raise TargetError(f"docker load on {self.name} failed: "
                              f"{result.output().splitlines()[-1] if result.output() else ''}",
                              "check the free disk space on the target (`df -h`) and the "
                              f"archive (`docker load -i {remote}` by hand); the upload is "
                              "kept, so a re-run does not send it again")
        with contextlib.suppress(OSError):
            self.remove(remote)
        loaded = []
        for line in result.stdout.splitlines():
            name = line.partition("Loaded image:")[2].strip() or \
                line.partition("Loaded image ID:")[2].strip()
            if name:
                loaded.append(name)
        return loaded

    def _send_from(self, sftp: Any, local_path: str, remote: str, offset: int, size: int,
                   progress: Progress | None, sent: list[int]) -> None:
        if offset:
            handle = sftp.open(remote, "r+b")
            handle.seek(offset)
        else:
            handle = _create_private(sftp, remote, 0o600, exclusive=False)
        with handle, open(local_path, "rb") as source:
            handle.set_pipelined(True)
            source.seek(offset)
            done = offset
            while True:
                chunk = source.read(_CHUNK)
                if not chunk:
                    break
                handle.write(chunk)
                done += len(chunk)
                sent[0] = done
                if progress:
                    progress(done, size)
            handle.flush()
            _fsync(sftp, handle)

    def _remote_sha256(self, path: str) -> str:
        code, out, err = self._run_bytes(["sha256sum", "--", path], sudo=False, timeout=1800)
        if code != 0:
            raise _os_error(err, path)
        return out.split()[0].decode("ascii", "replace") if out.split() else ""

    # --- end -----------------------------------------------------------------------------------

    def close(self) -> None:
        with self._docker_lock:  # no Docker bridge may appear after this
            if self._closed:
                return
            self._closed = True
        with self._docker_lock:
            clients, self._docker_clients = list(self._docker_clients.values()), {}
            bridge, self._docker_bridge = self._docker_bridge, None
        for client in clients:
            with contextlib.suppress(Exception):
                client.close()
        if bridge is not None:
            bridge.close()
        with self._sftp_lock:
            self._drop_sftp()
        self._transport.close()
        if self._jump is not None:
            self._jump.close()
        log.info("closed the connection to %s (%s)", self.name, self.stats.as_dict())


# --- helpers -------------------------------------------------------------------------------------


def _not_found(program: str, code: int, stderr: str) -> bool:
    """Whether the shell (or sudo) said `program` does not exist."""
    name = re.escape(program)
    if code == 127:
        return re.search(rf"(^|: )(exec: )?{name}: (command )?not found|"
                         rf"command not found: {name}$|(^|: ){name}: No such file or directory",
                         stderr, re.M) is not None
    if code == 1:
        return re.search(rf"^sudo: {name}: command not found", stderr, re.M) is not None
    return False


def _os_error(stderr: bytes, path: str) -> OSError:
    text = stderr.decode("utf-8", "replace").strip()
    first = text.splitlines()[-1] if text else "failed"
    lowered = text.lower()
    if "no such file" in lowered:
        return FileNotFoundError(errno.ENOENT, first, path)
    if "permission denied" in lowered or "operation not permitted" in lowered:
        return PermissionError(errno.EACCES, first, path)
    if "not a directory" in lowered:
        return NotADirectoryError(errno.ENOTDIR, first, path)
    if "no space" in lowered:
        return OSError(errno.ENOSPC, first, path)
    return OSError(errno.EIO, first, path)


def parse_df(text: str) -> tuple[int, int]:
    """(size, available) in bytes from `df -B1 --output=size,avail` or `df -Pk`."""
    lines = [line.split() for line in text.strip().splitlines() if line.strip()]
    if len(lines) < 2:
        raise OSError(errno.EIO, f"unexpected df output: {text[:200]!r}")
    header, values = lines[0], lines[-1]
    if len(values) >= 6 and "Available" in header:  # df -P: fs, blocks, used, avail, ...
        unit = 1024 if header[1].lower().startswith(("1024", "1k")) else 512
        return int(values[1]) * unit, int(values[3]) * unit
    return int(values[0]), int(values[1])


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def _check_endpoint(host: str, port: int) -> None:
    if not (_is_ip(host) or _HOSTNAME.match(host)):
        raise ValueError(f"not a host name or address: {host!r}")
    if not 0 < int(port) < 65536:
        raise ValueError(f"not a TCP port: {port!r}")


def _create_private(sftp: Any, path: str, mode: int, *, exclusive: bool = True) -> Any:
    """Open `path` for writing, created with `mode` in the same request.

    paramiko's `open()` sends no permissions, so the server would create the file 0666 minus
    its umask: readable by others, and someone opening it in that instant keeps reading what
    we write later. The SFTP open request can carry the mode, so we send it there."""
    from paramiko import SFTPAttributes, SFTPFile
    from paramiko.sftp import (
        CMD_HANDLE,
        CMD_OPEN,
        SFTP_FLAG_CREATE,
        SFTP_FLAG_EXCL,
        SFTP_FLAG_TRUNC,
        SFTP_FLAG_WRITE,
    )

    attrs = SFTPAttributes()
    attrs.st_mode = mode
    flags = SFTP_FLAG_WRITE | SFTP_FLAG_CREATE
    flags |= SFTP_FLAG_EXCL if exclusive else SFTP_FLAG_TRUNC
    kind, msg = sftp._request(CMD_OPEN, path, flags, attrs)
    if kind != CMD_HANDLE:
        raise OSError(errno.EIO, f"unexpected SFTP reply opening {path}")
    handle = SFTPFile(sftp, msg.get_binary(), "wb")
    if not exclusive:
        handle.chmod(mode)  # an existing file keeps its old mode through O_TRUNC
    return handle


def _fsync(sftp: Any, handle: Any) -> None:
    """fsync@openssh.com when the server has it: the data is on disk before the rename."""
    from paramiko.sftp import CMD_EXTENDED

    try:
        sftp._request(CMD_EXTENDED, "fsync@openssh.com", handle.handle)
    except OSError as exc:  # not OpenSSH: the rename still keeps readers from a half file
        log.debug("no fsync over SFTP: %s", exc)


def _replace(sftp: Any, source: str, destination: str) -> None:
    try:
        sftp.posix_rename(source, destination)  # atomic, replaces (OpenSSH extension)
    except OSError as exc:
        if exc.errno is not None:
            raise
        # A server without posix-rename: SFTP v3 rename refuses an existing destination.
        log.warning("no posix-rename on the server; replacing %s in two steps", destination)
        with contextlib.suppress(FileNotFoundError):
            sftp.remove(destination)
        sftp.rename(source, destination)


def _lstat_or_none(sftp: Any, path: str) -> Any:
    try:
        return sftp.lstat(path)
    except FileNotFoundError:
        return None


def _stat_or_none(sftp: Any, path: str) -> Any:
    try:
        return sftp.stat(path)
    except FileNotFoundError:
        return None


def _sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


# --- links ---------------------------------------------------------------------------------------

# Reads the last argument without following links; every argument (the folders below the
# deployment directory, then the file) must not be a link.
_SUDO_READ_SCRIPT = r"""
for part in "$@"; do
  if [ -L "$part" ]; then printf 'carto-link: %s\n' "$part" >&2; exit 66; fi
done
for last in "$@"; do :; done
exec dd if="$last" iflag=nofollow bs=1M status=none
"""
_SUDO_READ_LINK = 66


def _parts_below(root: str, path: str) -> list[str]:
    """The folders from `root` (excluded) down to `path` (included); ValueError when `path`
    is not inside `root`."""
    root, path = posixpath.normpath(root), posixpath.normpath(path)
    relative = posixpath.relpath(path, root)
    if relative == "." or relative == ".." or relative.startswith("../"):
        raise ValueError(f"{path} is not inside {root}")
    names = relative.split("/")
    return [posixpath.join(root, *names[: i + 1]) for i in range(len(names))]


def _same_file(seen: Any, opened: Any) -> bool:
    """Whether an SFTP fstat matches the lstat made just before the open (SFTP shows no
    inode numbers; owner, mode, size and time together tell a swapped file apart)."""
    return all(getattr(seen, name) == getattr(opened, name)
               for name in ("st_uid", "st_gid", "st_mode", "st_size", "st_mtime"))


# --- atomic writes -----------------------------------------------------------------------------

# The target's side of a write through sudo (into a folder the login user cannot write).
# Positional parameters: $1 the file, $2 its mode (octal), $3 the temporary file next to it,
# $4 "replace", or "stage" to leave the checked copy for a later switch.
# Stdin: after sudo's password line, "LENGTH SHA256" on one line, then the content.
# End of input is never taken for "all data received": the copy is renamed into place only
# when its length and digest match, else it is deleted. So a client killed or interrupted
# mid-transfer (the channel closes, `head` sees end of input early) leaves the old file.
# A link at $1 is refused; the copy is owned like the old file only when root or the folder's
# owner owns it (one lstat, never --reference, which follows links), else like the folder.
# The copy is created exclusively (noclobber) and then only reached through that one open
# descriptor (fd 3, /dev/fd/3): in a folder others may write, swapping the copy's name for a
# link cannot make root write, chmod or chown some other file.
_SUDO_WRITE_SCRIPT = r"""
set -eu
umask 077
dest=$1 t=$3
IFS=' ' read -r size sum || { echo "carto-write: no header on stdin" >&2; exit 65; }
case $size in ''|*[!0-9]*) echo "carto-write: bad length" >&2; exit 65;; esac
case $sum in *[!0-9a-f]*) echo "carto-write: bad digest" >&2; exit 65;; esac
[ ${#sum} -eq 64 ] || { echo "carto-write: bad digest" >&2; exit 65; }
if [ -L "$dest" ]; then echo "carto-write: $dest is a symbolic link" >&2; exit 66; fi
dir=$(dirname -- "$dest")
set -C
exec 3> "$t"
set +C
trap 'rm -f -- "$t"' EXIT
trap 'exit 70' HUP INT TERM PIPE
chmod -- "$2" /dev/fd/3
folder_owner=$(stat -c %u -- "$dir/.")
owner=$(stat -c %u:%g -- "$dir/.")
if [ -e "$dest" ]; then
  old=$(stat -c %u:%g -- "$dest")
  case $old in 0:*|"$folder_owner":*) owner=$old;; esac
fi
chown -- "$owner" /dev/fd/3
head -c "$size" >&3
got=$(wc -c < /dev/fd/3)
if [ "$got" -ne "$size" ]; then
  echo "carto-write: only $got of $size bytes arrived; $dest is unchanged" >&2; exit 67
fi
got=$(sha256sum < /dev/fd/3)
if [ "${got%% *}" != "$sum" ]; then
  echo "carto-write: the copy differs from what was sent; $dest is unchanged" >&2; exit 68
fi
sync -- /dev/fd/3 2>/dev/null || sync
if [ "$4" = stage ]; then trap - EXIT; exit 0; fi
mv -f -T -- "$t" "$dest"
trap - EXIT
if [ "$(stat -c %d:%i -- "$dest")" != "$(stat -L -c %d:%i /dev/fd/3)" ]; then
  echo "carto-write: $dest was replaced by someone else during the write" >&2; exit 69
fi
"""
# Puts a staged copy ($1) in place of $2, unless $2 became a link meanwhile.
_SUDO_SWITCH_SCRIPT = r"""
if [ -L "$2" ]; then echo "carto-write: $2 is a symbolic link" >&2; exit 66; fi
if [ -L "$1" ] || [ ! -f "$1" ]; then echo "carto-write: $1 is not the staged copy" >&2; exit 1; fi
exec mv -f -T -- "$1" "$2"
"""
_SUDO_WRITE_LINK = 66
_SECONDS_TO_LEARN_THE_OUTCOME = 5.0


class _RemoteWrite:
    """One atomic replacement of `path` on the target, over SFTP or (where the login user may
    not write) through sudo, and how far it got: what an interrupted run reports."""

    def __init__(self, target: SSHTarget, path: str, data: bytes, mode: int) -> None:
        self.target = target
        self.path = path
        self.data = data
        self.mode = mode
        # "unchanged" (nothing is or will be renamed), "maybe" (the rename may have
        # happened: the file is whole, old or new), "replaced".
        self.outcome = "unchanged"
        self.leftover: str | None = None  # a temp file that could not be removed
        self.stage_only = False

    def describe_outcome(self) -> str:
        said = {
            "unchanged": "it is unchanged (the partial copy was discarded)",
            "maybe": "it is whole, either the old or the new version",
            "replaced": "it was replaced in full",
        }[self.outcome]
        if self.leftover:
            said += f"; the temporary {self.leftover} may remain (the next render removes it)"
        return said

    def run(self, *, stage_only: bool = False) -> str:
        """Write the copy next to the file, check it, and (unless `stage_only`) rename it
        over the file. Returns the copy's path (gone once renamed)."""
        target = self.target
        self.stage_only = stage_only
        temp = temp_path_for(self.path)
        try:
            with target._sftp_session() as sftp:
                self._refuse_link(sftp)
                self._over_sftp(sftp, temp, stage_only)
            return temp
        except PermissionError:
            if not target._use_sudo:
                raise
        temp = temp_path_for(self.path)
        self._with_sudo(temp, stage_only)
        return temp

    def _refuse_link(self, sftp: Any) -> None:
        try:
            found = sftp.lstat(self.path)
        except FileNotFoundError:
            return
        if stat.S_ISLNK(found.st_mode or 0):
            raise LinkRefused(self.path)

    def _over_sftp(self, sftp: Any, temp: str, stage_only: bool) -> None:
        handle = _create_private(sftp, temp, self.mode)
        try:
            with handle:
                handle.chmod(self.mode)  # umask may have cleared bits we want; before any data
                handle.set_pipelined(True)
                handle.write(self.data)
                handle.flush()
                _fsync(sftp, handle)
            # paramiko drops the replies to pipelined writes (a full disk would go unseen):
            # the size the server holds is the proof that every write landed.
            arrived = sftp.stat(temp).st_size
            if arrived != len(self.data):
                raise OSError(errno.EIO, f"only {arrived} of {len(self.data)} bytes reached "
                              f"the target; {self.path} is unchanged", self.path)
            if stage_only:
                return
            self.outcome = "maybe"
            _replace(sftp, temp, self.path)
            self.outcome = "replaced"
        except BaseException:
            if self.outcome != "replaced":
                try:
                    sftp.remove(temp)
                except FileNotFoundError:
                    pass
                except Exception:  # noqa: BLE001 - the connection may be gone; say so
                    self.leftover = temp
            raise

    def _with_sudo(self, temp: str, stage_only: bool) -> None:
        target = self.target
        paramiko = _paramiko()
        header = f"{len(self.data)} {hashlib.sha256(self.data).hexdigest()}\n".encode()
        args = ["sh", "-c", _SUDO_WRITE_SCRIPT, "sh", self.path, f"{self.mode:o}", temp,
                "stage" if stage_only else "replace"]
        argv, before = target._command(args, env=None, cwd=None, sudo=True)
        log.info("run (%s, sudo): atomic write of %s through %s (length and sha256 checked "
                 "on the target)", target.name, self.path, temp)
        timeout = 300.0
        deadline = time.monotonic() + timeout
        channel = target._open_session(deadline)
        everything_sent = threading.Event()
        try:
            try:
                channel.exec_command(shlex.join(argv))
            except (paramiko.SSHException, EOFError, OSError) as exc:
                raise target._lost(exc) from None
            target.stats.add("commands")
            code, _, err = target._communicate(channel, before + header + self.data, deadline,
                                               "sh", timeout, sent=everything_sent)
        except KeyboardInterrupt:
            self._learn_outcome(channel, everything_sent.is_set())
            raise
        except ConnectionLostError:
            self.outcome = "maybe" if everything_sent.is_set() else "unchanged"
            raise
        finally:
            target._release(channel)
        if code == _SUDO_WRITE_LINK:
            raise LinkRefused(self.path)
        if code != 0:
            raise _os_error(err, self.path)
        if not stage_only:
            self.outcome = "replaced"

    def _learn_outcome(self, channel: Any, everything_sent: bool) -> None:
        """After Ctrl-C: input cut short means the target discards its copy; if everything
        had been sent, wait a moment for the target's verdict."""
        if not everything_sent or self.stage_only:
            self.outcome = "unchanged"
            return
        self.outcome = "maybe"
        with contextlib.suppress(Exception):
            if channel.status_event.wait(_SECONDS_TO_LEARN_THE_OUTCOME) \
                    and channel.exit_status_ready():
                self.outcome = "replaced" if channel.recv_exit_status() == 0 else "unchanged"


def _bridge_channel(channel: Any, timeout: float,
                    on_close: Callable[[], None] | None = None) -> socket.socket:
    """A real socket whose other end is pumped to and from `channel` by two threads."""
    ours, theirs = socket.socketpair()
    theirs.settimeout(timeout)
    channel.settimeout(None)
    finished = threading.Barrier(2)
    lock = threading.Lock()
    closed = [False]

    def close_all() -> None:
        with lock:
            if closed[0]:
                return
            closed[0] = True
        with contextlib.suppress(Exception):
            channel.close()
        with contextlib.suppress(OSError):
            ours.close()
        if on_close is not None:
            on_close()

    def done() -> None:
        try:
            finished.wait(timeout=60)  # the other direction may still be delivering data
        except threading.BrokenBarrierError:
            pass
        close_all()

    def downstream() -> None:  # target -> caller
        try:
            while True:
                data = channel.recv(65536)
                if not data:
                    break
                ours.sendall(data)
            ours.shutdown(socket.SHUT_WR)
        except (OSError, EOFError):
            pass
        done()

    def upstream() -> None:  # caller -> target
        try:
            while True:
                data = ours.recv(65536)
                if not data:
                    break
                channel.sendall(data)
            channel.shutdown_write()
        except (OSError, EOFError):
            pass
        done()

    for pump in (downstream, upstream):
        threading.Thread(target=pump, daemon=True, name="ssh-bridge").start()
    return theirs


class _DockerBridge:
    """A private Unix socket; each connection to it becomes `docker system dial-stdio` on the
    target (with sudo when configured), so the Docker SDK speaks to the remote engine."""

    def __init__(self, target: SSHTarget) -> None:
        self.target = target
        self.folder = tempfile.mkdtemp(prefix="carto-ssh-docker-")  # 0700: ours alone
        self.path = os.path.join(self.folder, "docker.sock")
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(self.path)
        os.chmod(self.path, 0o600)
        self._listener.listen(16)
        self._errors: list[str] = []
        self._closed = False
        self.adapter: Any = None  # the one connection pool every client of this target uses
        self.api_version = ""
        threading.Thread(target=self._accept, daemon=True, name="ssh-docker").start()

    def wait_for_error(self, seconds: float) -> str:
        """What the last dial-stdio said on stderr (it may arrive just after its failure)."""
        deadline = time.monotonic() + seconds
        while not self._errors and time.monotonic() < deadline:
            time.sleep(0.05)
        return self._errors[-1] if self._errors else ""

    def _accept(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True,
                             name="ssh-docker-conn").start()

    def _serve(self, conn: socket.socket) -> None:
        target = self.target
        paramiko = _paramiko()
        try:
            argv, before = target._command(["docker", "system", "dial-stdio"], env=None,
                                           cwd=None, sudo=target._use_sudo)
            channel = target._unstarted("a Docker API connection", lambda: (
                target._open_session(time.monotonic() + 60)))
        except Exception as exc:
            self._errors.append(str(exc))
            conn.close()
            return
        try:
            log.info("run (%s): docker system dial-stdio (Docker API connection)", target.name)
            channel.exec_command(shlex.join(argv))
            target.stats.add("commands")
            if before:
                channel.sendall(before)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            self._errors.append(str(exc))
            target._release(channel)
            conn.close()
            return
        threading.Thread(target=self._collect_stderr, args=(channel,), daemon=True).start()
        _pump_socket(conn, channel, on_close=lambda: target._release(channel))

    def _collect_stderr(self, channel: Any) -> None:
        said = bytearray()
        with contextlib.suppress(Exception):
            while True:
                chunk = channel.recv_stderr(4096)
                if not chunk:
                    break
                said.extend(chunk)
        text = said.decode("utf-8", "replace").strip()
        if text:
            log.info("docker system dial-stdio on %s said: %s", self.target.name, text[:500])
            self._errors.append(text.splitlines()[-1])

    def close(self) -> None:
        self._closed = True
        if self.adapter is not None:
            with contextlib.suppress(Exception):
                self.adapter.close()
        with contextlib.suppress(OSError):
            self._listener.close()
        shutil.rmtree(self.folder, ignore_errors=True)


def _docker_client_on(bridge: _DockerBridge, timeout: int) -> docker.DockerClient:
    """A docker SDK client for the bridge's socket, on the bridge's one connection pool.

    docker-py keys its connection pools by the full request URL (its fix for requests 2.32),
    so every new endpoint opens a new connection: free on a local socket, but here each one is
    an SSH session and a `docker` process on the target, and idle ones pile up. One pool for
    every URL and every client keeps it to the connections actually in use."""
    import docker
    import docker.constants
    from docker.transport import UnixHTTPAdapter

    base_url = f"unix://{bridge.path}"
    if bridge.adapter is None:

        class OnePoolAdapter(UnixHTTPAdapter):  # type: ignore[misc]
            def get_connection(self, url: Any, proxies: Any = None) -> Any:
                return super().get_connection("http+docker://localhost", proxies)

        adapter = OnePoolAdapter(f"http+unix://{bridge.path}", timeout, max_pool_size=2)
        # Ask the engine's API version through our adapter (a client given a version makes
        # no request when built); the real clients are then built on the same adapter.
        probe = docker.APIClient(base_url=base_url, timeout=timeout,
                                 version=docker.constants.MINIMUM_DOCKER_API_VERSION)
        probe.mount("http+docker://", adapter)
        bridge.api_version = str(probe.version(api_version=False)["ApiVersion"])
        bridge.adapter = adapter
    client = docker.DockerClient(base_url=base_url, timeout=timeout,
                                 version=bridge.api_version)
    client.api.mount("http+docker://", bridge.adapter)
    return client


def _pump_socket(conn: socket.socket, channel: Any, on_close: Callable[[], None]) -> None:
    """Copy both ways between an accepted local connection and a channel until both end."""
    remaining = [2]
    lock = threading.Lock()

    def end() -> None:
        with lock:
            remaining[0] -= 1
            last = remaining[0] == 0
        if last:
            with contextlib.suppress(OSError):
                conn.close()
            on_close()

    def to_channel() -> None:
        try:
            while True:
                data = conn.recv(65536)
                if not data:
                    break
                channel.sendall(data)
            channel.shutdown_write()
        except (OSError, EOFError):
            with contextlib.suppress(Exception):
                channel.close()
        end()

    def to_conn() -> None:
        try:
            while True:
                data = channel.recv(65536)
                if not data:
                    break
                conn.sendall(data)
            conn.shutdown(socket.SHUT_WR)
        except (OSError, EOFError):
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        end()

    threading.Thread(target=to_channel, daemon=True, name="ssh-docker-up").start()
    to_conn()


# Connects to "$1":"$2" on the target and relays stdin/stdout; says "carto-relay: connected"
# (or why not) on stderr first. Host and port arrive as positional parameters, never as code.
_RELAY_SCRIPT = r"""
if command -v python3 >/dev/null 2>&1; then exec python3 -c "$4" "$1" "$2" "$3"; fi
if command -v bash >/dev/null 2>&1; then
  exec bash -c 'exec 3<>"/dev/tcp/$1/$2" || exit 4
echo "carto-relay: connected" >&2
cat <&3 & cat >&3; wait' bash "$1" "$2"
fi
echo "carto-relay: neither python3 nor bash on the target" >&2; exit 126
"""

_PY_RELAY = r"""
import os, select, socket, sys
host, port, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
def say(text):
    os.write(2, ("carto-relay: " + text + "\n").encode())
try:
    s = socket.create_connection((host, port), timeout=timeout)
except socket.gaierror as e:
    say("dns: %s" % (e.strerror or e)); sys.exit(2)
except socket.timeout:
    say("timed out"); sys.exit(3)
except OSError as e:
    say("connect: %s" % (e.strerror or e)); sys.exit(4)
say("connected")
s.settimeout(None)
sources = [0, s]
while sources:
    ready = select.select(sources, [], [], 600)[0]
    if not ready:
        break
    for f in ready:
        if f == 0:
            data = os.read(0, 65536)
            if data:
                s.sendall(data)
            else:
                s.shutdown(socket.SHUT_WR)
                sources.remove(0)
        else:
            data = s.recv(65536)
            if not data:
                sys.exit(0)
            view = memoryview(data)
            while view:
                view = view[os.write(1, view):]
"""


__all__ = ["SSHStats", "SSHTarget", "parse_df"]
