"""A small HTTP/1.1 client whose connections start on the target.

The storage checks must measure what CARTO will see: from the target machine (over SSH when it
is remote), through the proxy when one is set, trusting the CAs CARTO will trust. No HTTP
library takes a socket from someone else's `open_connection` and a proxy and a TLS layer over
memory BIOs at the same time, so this module does the little that is needed itself: one request
per connection (`Connection: close`), Content-Length or chunked bodies, a size cap and one
deadline for the whole exchange. TLS and the proxy CONNECT are the egress probe's own
(installer/egress/probe.py), so both paths behave the same way through the same proxies.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlsplit

from installer.egress.hosts import Proxy, bypasses_proxy
from installer.egress.probe import ProbeFailure, TLSStream, proxy_connect

if TYPE_CHECKING:
    from installer.answers import ProxySettings
    from installer.target import Target

MAX_RESPONSE = 4 << 20  # an API answer or a probe object; anything larger is not ours


class TransportError(Exception):
    """The request never got an HTTP answer: the message names the stage that failed."""

    def __init__(self, stage: str, detail: str) -> None:
        super().__init__(f"{stage}: {detail}")
        self.stage = stage
        self.detail = detail


@dataclass
class HttpResponse:
    status: int
    reason: str
    headers: dict[str, str] = field(default_factory=dict)  # names in lower case
    body: bytes = b""

    def header(self, name: str) -> str:
        return self.headers.get(name.lower(), "")

    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


class _Stream(Protocol):
    def send(self, data: bytes) -> None: ...
    def recv(self, size: int) -> bytes: ...


class _Socket:
    """A socket that gives up when the request's single deadline has passed."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock = sock
        self.deadline = deadline

    def _left(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no answer in time")
        return left

    def send(self, data: bytes) -> None:
        self.sock.settimeout(self._left())
        self.sock.sendall(data)

    def recv(self, size: int) -> bytes:
        self.sock.settimeout(self._left())
        return self.sock.recv(size)


class _TLS(TLSStream):
    """The egress probe's TLS over any stream, reading an answer to its end: servers often
    close without a TLS close_notify after `Connection: close`, which ends the answer (a cut
    body is caught by its Content-Length in `_parse`)."""

    close_ends_read = True


@dataclass
class Transport:
    """How requests leave: from `target`, through `proxy` (unless NO_PROXY says otherwise),
    trusting the system store plus `extra_ca_files`."""

    target: Target
    proxy: ProxySettings | None = None
    extra_ca_files: tuple[str, ...] = ()
    timeout: float = 10.0

    def context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        for path in self.extra_ca_files:
            context.load_verify_locations(cafile=path)
        return context

    def proxy_for(self, scheme: str, host: str) -> Proxy | None:
        settings = self.proxy
        if settings is None:
            return None
        url = (settings.https or settings.http) if scheme == "https" else settings.http
        if not url or bypasses_proxy(host, settings.no_proxy):
            return None
        return Proxy.parse(url)

    def request(self, method: str, url: str, headers: Mapping[str, str] | None = None,
                body: bytes = b"") -> HttpResponse:
        parts = urlsplit(url)
        scheme, host = parts.scheme, parts.hostname or ""
        port = parts.port or (443 if scheme == "https" else 80)
        target_path = parts.path or "/"
        if parts.query:
            target_path += "?" + parts.query
        deadline = time.monotonic() + self.timeout
        proxy = self.proxy_for(scheme, host)
        sock = self._open(proxy.host if proxy else host, proxy.port if proxy else port,
                          deadline, f"the proxy {proxy.url}" if proxy else f"{host}:{port}")
        try:
            stream: _Stream = _Socket(sock, deadline)
            request_target = target_path
            if proxy is not None and proxy.scheme == "https":
                stream = self._tls(stream, proxy.host, f"the proxy {proxy.url}")
            if proxy is not None and scheme == "https":
                try:
                    pending = proxy_connect(stream, host, port, proxy)
                except ProbeFailure as exc:
                    raise TransportError("proxy CONNECT", exc.detail) from None
                stream = self._tls(stream, host, host, pending)
            elif proxy is not None:
                request_target = url  # a plain-HTTP request through a proxy names the URL
            elif scheme == "https":
                stream = self._tls(stream, host, host)
            all_headers = {"Host": parts.netloc, "Connection": "close",
                           "User-Agent": "carto-installer-storage-check"}
            all_headers.update(headers or {})
            if body or method in ("PUT", "POST"):
                all_headers["Content-Length"] = str(len(body))
            head = f"{method} {request_target} HTTP/1.1\r\n" + "".join(
                f"{name}: {value}\r\n" for name, value in all_headers.items()) + "\r\n"
            try:
                stream.send(head.encode("latin-1") + body)
                raw = _read_all(stream)
            except TimeoutError:
                raise TransportError("HTTP", f"{host} did not answer within "
                                     f"{self.timeout:g} s") from None
            except ssl.SSLError as exc:
                raise TransportError("TLS", f"{host}: {exc}") from None
            except OSError as exc:
                raise TransportError("HTTP", f"{host} dropped the connection "
                                     f"({exc.strerror or exc})") from None
        finally:
            sock.close()
        return _parse(raw, method)

    def _open(self, host: str, port: int, deadline: float, what: str) -> socket.socket:
        try:
            return self.target.open_connection(host, port, max(deadline - time.monotonic(),
                                                                0.1))
        except TimeoutError:
            raise TransportError("connect", f"no answer from {what} within "
                                 f"{self.timeout:g} s") from None
        except ConnectionRefusedError:
            raise TransportError("connect", f"{what} refused the connection") from None
        except socket.gaierror as exc:
            raise TransportError("DNS", f"{host} does not resolve "
                                 f"({exc.strerror or exc})") from None
        except Exception as exc:  # an OSError, or an SSH channel error from a remote target
            raise TransportError("connect", f"cannot connect to {what}: {exc}") from None

    def _tls(self, inner: _Stream, server_name: str, what: str,
             pending: bytes = b"") -> _Stream:
        tls = _TLS(inner, self.context(), server_name, pending)
        try:
            tls.handshake()
        except ssl.SSLCertVerificationError as exc:
            raise TransportError("TLS", f"the certificate of {what} was rejected: "
                                 f"{exc.verify_message or exc.reason}") from None
        except ssl.SSLError as exc:
            raise TransportError("TLS", f"the handshake with {what} failed: "
                                 f"{exc.reason or exc}") from None
        except TimeoutError:
            raise TransportError("TLS", f"{what} did not finish the handshake in "
                                 f"{self.timeout:g} s") from None
        except OSError as exc:
            raise TransportError("TLS", f"{what} cut the connection during the handshake "
                                 f"({exc})") from None
        return tls


def _read_all(stream: _Stream) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = stream.recv(65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_RESPONSE:
            raise TransportError("HTTP", f"the answer is larger than {MAX_RESPONSE} bytes")


def _parse(raw: bytes, method: str) -> HttpResponse:
    head, sep, rest = raw.partition(b"\r\n\r\n")
    if not sep:
        raise TransportError("HTTP", "the server closed the connection without an answer")
    lines = head.decode("latin-1").split("\r\n")
    status_parts = lines[0].split(" ", 2)
    if len(status_parts) < 2 or not status_parts[1].isdigit():
        raise TransportError("HTTP", f"not an HTTP answer: {lines[0][:80]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    status = int(status_parts[1])
    if method == "HEAD" or status in (204, 304):
        body = b""
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        body = _unchunk(rest)
    elif headers.get("content-length", "").isdigit():
        length = int(headers["content-length"])
        if len(rest) < length:
            raise TransportError("HTTP", f"the answer was cut short ({len(rest)} of {length} "
                                 "bytes)")
        body = rest[:length]
    else:
        body = rest
    return HttpResponse(status, status_parts[2] if len(status_parts) > 2 else "", headers, body)


def _unchunk(data: bytes) -> bytes:
    out = bytearray()
    while data:
        line, sep, data = data.partition(b"\r\n")
        if not sep:
            break
        size = int(line.split(b";", 1)[0].strip() or b"0", 16)
        if size == 0:
            break
        out += data[:size]
        data = data[size + 2:]
    return bytes(out)
