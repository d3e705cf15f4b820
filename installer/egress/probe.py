"""One probe per egress host: the stages a real client walks, naming the one that failed.

`probe_host(...)` goes DNS -> TCP -> (proxy CONNECT) -> TLS handshake with SNI and certificate
verification. The socket always comes from `Target.open_connection`, so for a remote target the
connection starts on that machine (an SSH direct-tcpip channel) and only the TLS arithmetic
happens here; that is why the handshake runs over memory BIOs instead of `wrap_socket`, which
needs a kernel socket.

Each probe has one deadline for all its stages and is enforced from outside the worker
thread, so a resolver or a target that ignores timeouts still cannot hold a check past it.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from installer.egress.hosts import HTTPS_PORT, Proxy, as_ip_address

if TYPE_CHECKING:
    from installer.target import Target

DEFAULT_TIMEOUT = 5.0
_MAX_PROXY_RESPONSE = 16384

# Stage names, as REQUIREMENTS.md asks the messages to say them.
DNS, CONNECT, PROXY, PROXY_CONNECT, TLS = "DNS", "connect", "proxy", "proxy CONNECT", "TLS"


def tls_context(extra_ca_file: str | None = None) -> ssl.SSLContext:
    """The system trust store (SSL_CERT_FILE honoured), plus a CA that inspects TLS, if any."""
    from installer.userfiles import CERTIFICATE_LIMIT, read_user_file

    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if extra_ca_file:
        # Read with the limits every user-named file gets (a FIFO would hang OpenSSL).
        data = read_user_file(extra_ca_file, limit=CERTIFICATE_LIMIT)
        if b"-----BEGIN" in data:
            context.load_verify_locations(cadata=data.decode("ascii", "replace"))
        else:
            context.load_verify_locations(cadata=data)
    return context


class ProbeFailure(Exception):
    def __init__(self, stage: str, detail: str, *, timed_out: bool = False, kind: str = "") -> None:
        super().__init__(f"{stage}: {detail}")
        self.stage = stage
        self.detail = detail
        self.timed_out = timed_out
        # e.g. "refused", "verify", "status 403": lets the check pick the right remediation.
        self.kind = kind


@dataclass
class ProbeResult:
    host: str
    port: int
    ok: bool
    stage: str  # the stage that failed, or "TLS" (the last one) when everything passed
    detail: str = ""
    kind: str = ""
    timed_out: bool = False
    elapsed: float = 0.0
    addresses: list[str] = field(default_factory=list)
    proxy: str | None = None
    tls_version: str | None = None
    stages_done: list[str] = field(default_factory=list)


class ByteStream(Protocol):
    """What the probe reads and writes: a socket, an SSH channel, or TLS over one of them."""

    def send(self, data: bytes) -> None: ...
    def recv(self, size: int) -> bytes: ...


@dataclass
class _Progress:
    """What the worker thread has reached; read by the waiter when the deadline passes."""

    stage: str = ""  # "" until the first stage starts
    sockets: list[socket.socket] = field(default_factory=list)
    done: list[str] = field(default_factory=list)
    addresses: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def enter(self, stage: str) -> None:
        with self.lock:
            if self.stage and self.stage != stage and self.stage not in self.done:
                self.done.append(self.stage)
            self.stage = stage

    def close_all(self) -> None:
        with self.lock:
            sockets = list(self.sockets)
        for sock in sockets:
            try:
                sock.close()
            except OSError:
                pass


class _Deadline:
    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds
        self.seconds = seconds

    def left(self, stage: str) -> float:
        remaining = self.end - time.monotonic()
        if remaining <= 0:
            raise ProbeFailure(
                stage, f"no answer within {self.seconds:g} s", timed_out=True, kind="timeout"
            )
        return remaining


class _SocketStream:
    def __init__(self, sock: socket.socket, deadline: _Deadline, progress: _Progress) -> None:
        self.sock = sock
        self.deadline = deadline
        self.progress = progress

    def send(self, data: bytes) -> None:
        self.sock.settimeout(self.deadline.left(self.progress.stage))
        self.sock.sendall(data)

    def recv(self, size: int) -> bytes:
        self.sock.settimeout(self.deadline.left(self.progress.stage))
        return self.sock.recv(size)


class TLSStream:
    """TLS over any stream (a socket, an SSH channel, another TLS stream) via memory BIOs."""

    # Whether the peer closing the stream (with no TLS close_notify) ends a read, as b"",
    # instead of failing it.
    close_ends_read = False

    def __init__(
        self, inner: ByteStream, context: ssl.SSLContext, server_name: str, pending: bytes = b""
    ) -> None:
        self.inner = inner
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        if pending:
            self.incoming.write(pending)
        self.tls = context.wrap_bio(self.incoming, self.outgoing, server_hostname=server_name)

    def _flush(self) -> None:
        data = self.outgoing.read()
        if data:
            self.inner.send(data)

    def _fill(self, *, close_ends: bool = False) -> bool:
        """Feed what the peer sent to TLS; False when it closed and `close_ends`."""
        data = self.inner.recv(65536)
        if not data:
            if close_ends:
                return False
            raise ConnectionResetError("the server closed the connection during the handshake")
        self.incoming.write(data)
        return True

    def handshake(self) -> None:
        while True:
            try:
                self.tls.do_handshake()
                self._flush()
                return
            except ssl.SSLWantReadError:
                self._flush()
                self._fill()

    def send(self, data: bytes) -> None:
        self.tls.write(data)
        self._flush()

    def recv(self, size: int) -> bytes:
        while True:
            try:
                return self.tls.read(size)
            except ssl.SSLWantReadError:
                self._flush()
                if not self._fill(close_ends=self.close_ends_read):
                    return b""
            except ssl.SSLZeroReturnError:
                return b""

    @property
    def version(self) -> str | None:
        return self.tls.version()


Resolver = Callable[[str], list[str]]


def probe_host(
    host: str,
    *,
    target: Target,
    resolver: Resolver,
    context: ssl.SSLContext,
    port: int = HTTPS_PORT,
    timeout: float = DEFAULT_TIMEOUT,
    proxy: Proxy | None = None,
    proxy_context: ssl.SSLContext | None = None,
) -> ProbeResult:
    """DNS -> connect -> (proxy CONNECT) -> TLS to `host`:`port`, within `timeout` seconds.

    For a local target names are resolved with `resolver`, then each address is tried; for a
    remote one the target resolves them itself (inside `open_connection`). Never raises for a
    network failure: the result says which stage failed and why.
    """
    started = time.monotonic()
    progress = _Progress()
    outcome: list[ProbeResult] = []

    def work() -> None:
        try:
            outcome.append(
                _walk(
                    host,
                    port,
                    target,
                    resolver,
                    context,
                    proxy,
                    proxy_context,
                    _Deadline(timeout),
                    progress,
                    started,
                )
            )
        except ProbeFailure as exc:
            outcome.append(_failure(host, port, proxy, exc, progress, started))
        except Exception as exc:  # an unexpected error still ends as a named stage
            outcome.append(
                _failure(
                    host,
                    port,
                    proxy,
                    ProbeFailure(progress.stage or DNS, _describe(exc)),
                    progress,
                    started,
                )
            )
        finally:
            progress.close_all()

    worker = threading.Thread(target=work, name=f"egress-{host}", daemon=True)
    worker.start()
    worker.join(timeout)
    if outcome:
        return outcome[0]
    # The stage is stuck past the deadline (a resolver or target ignoring its timeout):
    # report it now; closing the sockets makes the worker end soon after.
    with progress.lock:
        stage = progress.stage or DNS
    progress.close_all()
    return _failure(
        host,
        port,
        proxy,
        ProbeFailure(stage, f"no answer within {timeout:g} s", timed_out=True, kind="timeout"),
        progress,
        started,
    )


def _failure(
    host: str,
    port: int,
    proxy: Proxy | None,
    exc: ProbeFailure,
    progress: _Progress,
    started: float,
) -> ProbeResult:
    with progress.lock:
        done = list(progress.done)
        addresses = list(progress.addresses)
    return ProbeResult(
        host,
        port,
        False,
        exc.stage,
        exc.detail,
        exc.kind,
        exc.timed_out,
        time.monotonic() - started,
        addresses,
        proxy.url if proxy else None,
        None,
        done,
    )


def _walk(
    host: str,
    port: int,
    target: Target,
    resolver: Resolver,
    context: ssl.SSLContext,
    proxy: Proxy | None,
    proxy_context: ssl.SSLContext | None,
    deadline: _Deadline,
    progress: _Progress,
    started: float,
) -> ProbeResult:
    if proxy is None:
        sock = _connect_direct(host, port, target, resolver, deadline, progress)
        stream: ByteStream = _SocketStream(sock, deadline, progress)
        pending = b""
    else:
        progress.enter(PROXY)
        sock = _open(
            target,
            resolver,
            proxy.host,
            proxy.port,
            deadline,
            progress,
            PROXY,
            what=f"the proxy {proxy.url}",
        )
        stream = _SocketStream(sock, deadline, progress)
        if proxy.scheme == "https":
            proxy_tls = TLSStream(stream, proxy_context or context, proxy.host)
            try:
                proxy_tls.handshake()
            except ssl.SSLError as exc:
                raise ProbeFailure(
                    PROXY,
                    f"TLS to the proxy {proxy.url} failed: {_ssl_reason(exc)}",
                    kind="proxy-tls",
                ) from None
            stream = proxy_tls
        progress.enter(PROXY_CONNECT)
        pending = proxy_connect(stream, host, port, proxy)
    progress.enter(TLS)
    tls = TLSStream(stream, context, host, pending)
    try:
        tls.handshake()
    except ssl.SSLCertVerificationError as exc:
        reason = exc.verify_message or _ssl_reason(exc)
        raise ProbeFailure(
            TLS, f"the certificate presented for {host} was rejected: {reason}", kind="verify"
        ) from None
    except ssl.SSLError as exc:
        raise ProbeFailure(
            TLS, f"the handshake failed: {_ssl_reason(exc)}", kind="handshake"
        ) from None
    except (ConnectionError, OSError) as exc:
        if isinstance(exc, TimeoutError | socket.timeout):
            raise ProbeFailure(
                TLS, f"no answer within {deadline.seconds:g} s", timed_out=True, kind="timeout"
            ) from None
        raise ProbeFailure(
            TLS, f"the connection was cut during the handshake ({_describe(exc)})", kind="reset"
        ) from None
    with progress.lock:
        done = [*progress.done, TLS]
        addresses = list(progress.addresses)
    return ProbeResult(
        host,
        port,
        True,
        TLS,
        "",
        "",
        False,
        time.monotonic() - started,
        addresses,
        proxy.url if proxy else None,
        tls.version,
        done,
    )


def _connect_direct(
    host: str,
    port: int,
    target: Target,
    resolver: Resolver,
    deadline: _Deadline,
    progress: _Progress,
) -> socket.socket:
    if not target.is_local:
        # The target resolves and connects in one step; the error text tells which failed.
        progress.enter(CONNECT)
        return _open(target, None, host, port, deadline, progress, CONNECT, what=host)
    progress.enter(DNS)
    addresses = _resolve(resolver, host, deadline, DNS)
    with progress.lock:
        progress.addresses = list(addresses)
    progress.enter(CONNECT)
    errors: list[ProbeFailure] = []
    for address in addresses:
        try:
            return _open(target, None, address, port, deadline, progress, CONNECT, what=host)
        except ProbeFailure as exc:
            if exc.timed_out:
                raise
            errors.append(exc)
    first = errors[0]
    detail = first.detail
    if len(addresses) > 1:
        detail += f" (tried {', '.join(addresses)})"
    raise ProbeFailure(CONNECT, detail, kind=first.kind)


def _resolve(resolver: Resolver, host: str, deadline: _Deadline, stage: str) -> list[str]:
    try:
        addresses = resolver(host)
    except socket.gaierror as exc:
        raise ProbeFailure(
            stage, f"{host} does not resolve ({exc.strerror or exc})", kind="nxdomain"
        ) from None
    except OSError as exc:
        raise ProbeFailure(
            stage, f"{host} could not be resolved ({_describe(exc)})", kind="resolver"
        ) from None
    deadline.left(stage)
    if not addresses:
        raise ProbeFailure(stage, f"{host} has no address", kind="nxdomain")
    return addresses


def _open(
    target: Target,
    resolver: Resolver | None,
    host: str,
    port: int,
    deadline: _Deadline,
    progress: _Progress,
    stage: str,
    *,
    what: str,
) -> socket.socket:
    address = host
    if resolver is not None and target.is_local and as_ip_address(host) is None:
        address = _resolve(resolver, host, deadline, stage)[0]
    try:
        sock = target.open_connection(address, port, deadline.left(stage))
    except ProbeFailure:
        raise
    except TimeoutError:
        raise ProbeFailure(
            stage,
            f"no answer from {what} ({address} port {port}) within {deadline.seconds:g} s",
            timed_out=True,
            kind="timeout",
        ) from None
    except ConnectionRefusedError:
        raise ProbeFailure(
            stage, f"{what} ({address}) refused the connection on port {port}", kind="refused"
        ) from None
    except socket.gaierror as exc:
        raise ProbeFailure(
            DNS if stage == CONNECT else stage,
            f"{host} does not resolve ({exc.strerror or exc})",
            kind="nxdomain",
        ) from None
    except OSError as exc:
        raise _connect_failure(
            exc, stage, host, f"cannot connect to {what} ({address} port {port})"
        ) from None
    except Exception as exc:  # an SSH channel error from a remote target, for instance
        raise _connect_failure(
            exc, stage, host, f"cannot connect to {what} (port {port}) from the target"
        ) from None
    with progress.lock:
        progress.sockets.append(sock)
    return sock


def _connect_failure(exc: Exception, stage: str, host: str, cannot: str) -> ProbeFailure:
    """A failed connect as a ProbeFailure: a name that does not resolve on the target (some
    targets say so only in the error's text), else refused or unreachable after `cannot`."""
    text = _describe(exc)
    if stage == CONNECT and _looks_like_dns(text):
        return ProbeFailure(DNS, f"{host} does not resolve on the target ({text})",
                            kind="nxdomain")
    kind = "refused" if "refused" in text.lower() else "unreachable"
    return ProbeFailure(stage, f"{cannot}: {text}", kind=kind)


def _looks_like_dns(text: str) -> bool:
    lowered = text.lower()
    return any(
        s in lowered
        for s in (
            "resolve",
            "name or service",
            "nodename",
            "getaddrinfo",
            "no address",
            "unknown host",
            "temporary failure in name",
        )
    )


def proxy_connect(stream: ByteStream, host: str, port: int, proxy: Proxy) -> bytes:
    """Ask the proxy for a tunnel. Returns any bytes that arrived after its answer."""
    from installer import __version__

    authority = f"{host}:{port}"
    request = (
        f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n"
        f"User-Agent: carto-installer/{__version__}\r\n\r\n"
    )
    try:
        stream.send(request.encode("ascii"))
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = stream.recv(4096)
            if not chunk:
                break
            answer += chunk
            if len(answer) > _MAX_PROXY_RESPONSE:
                break
    except TimeoutError:
        raise ProbeFailure(
            PROXY_CONNECT,
            f"the proxy {proxy.url} did not answer CONNECT {authority}",
            timed_out=True,
            kind="timeout",
        ) from None
    except OSError as exc:
        raise ProbeFailure(
            PROXY_CONNECT,
            f"the proxy {proxy.url} dropped the connection ({_describe(exc)})",
            kind="reset",
        ) from None
    head, sep, rest = answer.partition(b"\r\n\r\n")
    if not sep:
        raise ProbeFailure(
            PROXY_CONNECT,
            f"the proxy {proxy.url} closed the connection without answering CONNECT {authority}",
            kind="reset",
        )
    status_line = head.split(b"\r\n", 1)[0].decode("latin-1").strip()
    parts = status_line.split(" ", 2)
    code = parts[1] if len(parts) > 1 and parts[1].isdigit() else ""
    if code != "200":
        raise ProbeFailure(
            PROXY_CONNECT,
            f'the proxy {proxy.url} answered "{status_line}" to CONNECT {authority}',
            kind=f"status {code or '?'}",
        )
    return rest


def _ssl_reason(exc: ssl.SSLError) -> str:
    return str(exc.reason or exc).replace("_", " ").lower() if exc.reason else _describe(exc)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    if isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror
    return text.splitlines()[0] if text else type(exc).__name__
