"""The one SSH connection and its channels: what it cost (`SSHStats`), reconnection after a
loss, the pool of session channels under the server's MaxSessions, commands run in them
(`_exec`/`_communicate`) and the shared SFTP session."""

from __future__ import annotations

import contextlib
import logging
import shlex
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from installer.errors import TargetError
from installer.ssh.connect import _Connector, _paramiko
from installer.target import Target

if TYPE_CHECKING:  # paramiko and docker are loaded only when a remote target is used
    import paramiko
    from paramiko import Channel, SFTPClient

    from installer.answers import SSHSettings
    from installer.redact import Redactor
    from installer.ssh.docker_bridge import _DockerBridge

log = logging.getLogger("installer.ssh")


_T = TypeVar("_T")

# OpenSSH allows 10 session channels per connection (MaxSessions); keep one spare.
_SESSION_LIMIT = 9
# Beyond this, stdin is fed from a thread so a command that answers while reading cannot
# deadlock against our writes (both windows full).
_INLINE_INPUT = 1 << 20


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


class SSHConnection(Target):
    """The connection state of an SSH target, and the session channels opened on it; the
    commands, files, forwarding and Docker access of `SSHTarget` are built on these."""

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
        self._sftp: SFTPClient | None = None
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

    def _open_session(self, deadline: float) -> Channel:
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

            def release(channel: Channel = channel,
                        released: threading.Event = released) -> None:
                if not released.is_set():
                    released.set()
                    with contextlib.suppress(Exception):
                        channel.close()
                    with self._sessions:
                        self._sessions_open -= 1
                        self._sessions.notify()
                        log.debug("%s: SSH session closed (%d open)", self.name,
                                  self._sessions_open)

            # The release travels with the channel, so whoever ends up closing it (SFTP hands
            # its channel back through get_channel()) frees the session; paramiko's Channel
            # declares no such attribute.
            channel._carto_release = release  # type: ignore[attr-defined]
            return channel

    @staticmethod
    def _release(channel: Channel | None) -> None:
        if channel is None:  # SFTPClient.get_channel() may say None; ours always has one
            return
        release = getattr(channel, "_carto_release", None)
        if release is not None:
            release()
        else:
            channel.close()


    def _release_idle_docker(self) -> None:
        bridge = self._docker_bridge
        if bridge is not None and bridge.adapter is not None:
            log.debug("%s: closing idle Docker API connections to free SSH sessions", self.name)
            with contextlib.suppress(Exception):
                bridge.adapter.close()

    def _exec(self, argv: list[str], stdin: bytes | None, timeout: float
              ) -> tuple[int, bytes, bytes]:
        """Run one command (already including any sudo); (exit code, stdout, stderr)."""
        deadline = time.monotonic() + timeout
        channel = self._open_session(deadline)
        try:
            self._start(channel, argv)
            return self._communicate(channel, stdin or b"", deadline, argv[0], timeout)
        finally:
            self._release(channel)

    def _start(self, channel: Channel, argv: list[str]) -> None:
        """Start `argv` on a session channel and count it; failing to start it means the
        connection is gone."""
        paramiko = _paramiko()
        try:
            channel.exec_command(shlex.join(argv))
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise self._lost(exc) from None
        self.stats.add("commands")

    def _communicate(self, channel: Channel, data: bytes, deadline: float, program: str,
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

    @contextlib.contextmanager
    def _sftp_session(self) -> Iterator[SFTPClient]:
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

    def _new_sftp(self) -> SFTPClient:
        paramiko = _paramiko()
        from paramiko import SFTPClient  # loaded: _paramiko() imported it

        stats = self.stats

        class CountingSFTP(SFTPClient):
            def _async_request(self, *args: Any) -> Any:
                stats.add("sftp_requests")
                # Every SFTP request passes here; types-paramiko leaves this private method out.
                return super()._async_request(*args)  # type: ignore[misc]

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
