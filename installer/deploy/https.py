"""Does CARTO answer over HTTPS: one request to the router with SNI and Host set to the
domain, trusting exactly the certificate in use (so DNS need not point here yet), retried for
a while after a launch; and how long that certificate has left."""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from installer.errors import DeployError

if TYPE_CHECKING:
    from installer.answers import Answers
    from installer.target import Target


class RouterSite(Protocol):
    """Where the router runs, as a deployment knows it (Compose's run satisfies this)."""

    answers: Answers
    target: Target

    def check_cancel(self) -> None: ...

HTTPS_WAIT = 30.0  # the router may need a moment after it is up


def _https_routes(run: RouterSite) -> list[tuple[str, Callable[[], socket.socket]]]:
    """Where to reach the router: this machine's 443, or the SSH host's 443 (falling back to
    the target's own loopback through the SSH connection when it is not reachable from here)."""
    if run.target.is_local:
        return [("127.0.0.1:443", lambda: socket.create_connection(("127.0.0.1", 443), 5))]
    host = run.answers.target.host if run.answers.target else run.target.name
    routes: list[tuple[str, Callable[[], socket.socket]]] = []
    if not (run.answers.target and run.answers.target.jump):
        routes.append((f"{host}:443", lambda: socket.create_connection((host, 443), 5)))
    routes.append((f"127.0.0.1:443 on {run.target.name} (through SSH)",
                   lambda: run.target.open_connection("127.0.0.1", 443, 5)))
    return routes


def probe_https(run: RouterSite, domain: str, trusted_pem: bytes) -> str:
    """One HTTPS request to the router, SNI and Host set to the domain, trusting exactly the
    certificate in use. Returns what was seen; raises OSError/ssl.SSLError/ValueError."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    leaf = x509.load_pem_x509_certificates(trusted_pem)[0].public_bytes(Encoding.DER)
    context = ssl.create_default_context(cadata=trusted_pem.decode("ascii", "replace"))
    # The certificate in use is the trust anchor, whether self-signed or from a CA.
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    last_error: Exception | None = None
    for route, connect in _https_routes(run):
        try:
            raw = connect()
        except OSError as exc:
            last_error = exc
            continue
        with context.wrap_socket(raw, server_hostname=domain) as tls:
            tls.settimeout(10)
            if tls.getpeercert(binary_form=True) != leaf:
                raise ValueError("the router serves another certificate than the one in "
                                 "certs/")
            tls.sendall(f"GET / HTTP/1.1\r\nHost: {domain}\r\nUser-Agent: carto-installer\r\n"
                        "Connection: close\r\n\r\n".encode())
            head = tls.recv(4096).split(b"\r\n", 1)[0].decode("latin-1")
        parts = head.split()
        if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
            raise ValueError(f"the router's answer is not HTTP ({head[:60]!r})")
        code = int(parts[1])
        if code >= 500:
            raise ValueError(f"the router answered HTTP {code}: a service behind it is not "
                             "ready")
        return (f"https://{domain} answered HTTP {code} via {route}, certificate verified "
                "(SNI and Host set to the domain, so DNS need not point here yet)")
    assert last_error is not None
    raise last_error


def verify_https(run: RouterSite, domain: str, trusted_pem: bytes) -> str:
    deadline = time.monotonic() + HTTPS_WAIT
    while True:
        run.check_cancel()
        try:
            return probe_https(run, domain, trusted_pem)
        except ssl.SSLCertVerificationError as exc:
            raise DeployError(f"https://{domain} presents a certificate that does not verify: "
                              f"{exc.verify_message}",
                              "check certs/ and ROUTER_SSL_CERTIFICATE_PATH in customer.env; "
                              "re-run `carto-installer render`") from None
        except (OSError, ValueError) as exc:
            if time.monotonic() > deadline:
                raise DeployError(f"https://{domain} does not answer through the router: {exc}",
                                  "check the router's logs and that port 443 is published "
                                  "and not firewalled; then re-run deploy") from None
            time.sleep(0.5)


CERT_WARN_DAYS = 30


def certificate_expiry(cert_pem: bytes | None, now: float | None = None,
                       where: str = "certs/") -> tuple[str, str | None]:
    """(a line about the certificate's expiry, a warning when under CERT_WARN_DAYS)."""
    from datetime import UTC, datetime

    from cryptography import x509

    if not cert_pem:
        return f"certificate: none in {where}", None
    try:
        cert = x509.load_pem_x509_certificates(cert_pem)[0]
    except ValueError:
        return "certificate: unreadable", f"the certificate in {where} cannot be read"
    expires = cert.not_valid_after_utc
    days = (expires - (datetime.fromtimestamp(now, UTC) if now else datetime.now(UTC))
            ).total_seconds() / 86400
    line = f"certificate: expires {expires:%Y-%m-%d %H:%M} UTC ({days:.0f} days)"
    if days < 0:
        return line, "the certificate has EXPIRED: renew it, then run `carto-installer deploy`"
    if days < CERT_WARN_DAYS:
        return line, (f"the certificate expires in {days:.0f} days (under {CERT_WARN_DAYS}): "
                      "renew it, point tls.* at the new files and run `carto-installer deploy`")
    return line, None
