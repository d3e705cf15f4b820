"""A throwaway certificate authority and loopback TLS servers for tests.

The CA issues real X.509 chains with `cryptography`, so the installer's TLS checks, the
PostgreSQL fixture and the Docker image test all verify certificates the way production code
does, against a CA file, never with verification turned off.

This module also holds the small helpers every service fixture needs (`free_loopback_port`,
`wait_until`, `machine_lock`), because the other fixture modules import it anyway.

PYTEST_DONT_REWRITE: the other fixture modules import this one before pytest loads it as a
plugin, so pytest could not rewrite it anyway (and warned); it has no asserts.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import ipaddress
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

LOOPBACK = "127.0.0.1"

KeyType = Literal["rsa1024", "rsa2048", "rsa4096", "ec256", "ec384"]
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def free_loopback_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now.

    The kernel picks it; there is a small window before the service binds it, which is
    acceptable for tests on one machine.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def machine_lock(name: str) -> Iterator[None]:
    """An exclusive lock shared by every pytest process on this machine (xdist workers,
    parallel runs), held while a fixture changes machine-wide state."""
    with open(f"/tmp/carto-tests-{name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes
        yield


def wait_until(
    ready: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    interval: float = 0.1,
    details: Callable[[], str] = lambda: "",
) -> None:
    """Poll `ready` until it returns True; RuntimeError naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(interval)
    extra = details()
    raise RuntimeError(
        f"{what} was not ready after {timeout:.0f} s" + (f"\n{extra}" if extra else "")
    )


def _new_key(key_type: KeyType) -> PrivateKey:
    if key_type.startswith("rsa"):
        return rsa.generate_private_key(public_exponent=65537, key_size=int(key_type[3:]))
    curve = {"ec256": ec.SECP256R1(), "ec384": ec.SECP384R1()}[key_type]
    return ec.generate_private_key(curve)


def _key_pem(key: PrivateKey, passphrase: bytes | None = None) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _san(name: str) -> x509.GeneralName:
    """An IP SAN for addresses (clients match IPs only against IP SANs), else a DNS SAN."""
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


@dataclass(frozen=True)
class IssuedFiles:
    cert: Path  # leaf only
    key: Path
    chain: Path  # intermediates (empty file when the leaf is signed by the root)
    fullchain: Path  # leaf + intermediates: what a server should present
    ca: Path  # the root, for clients


@dataclass(frozen=True)
class Issued:
    """PEM bytes of one issued certificate."""

    leaf: bytes
    key: bytes  # unencrypted PKCS#8
    chain: bytes  # intermediates, leaf excluded, root excluded
    ca: bytes  # the root that signed the chain
    private_key: PrivateKey = field(repr=False)

    @property
    def fullchain(self) -> bytes:
        return self.leaf + self.chain

    def encrypted_key(self, passphrase: bytes) -> bytes:
        """The same key, passphrase-protected (CARTO refuses those: a test needs one)."""
        return _key_pem(self.private_key, passphrase)

    def write(self, directory: Path, stem: str = "server") -> IssuedFiles:
        directory.mkdir(parents=True, exist_ok=True)
        files = IssuedFiles(
            cert=directory / f"{stem}.crt",
            key=directory / f"{stem}.key",
            chain=directory / f"{stem}.chain.pem",
            fullchain=directory / f"{stem}.fullchain.pem",
            ca=directory / f"{stem}.ca.pem",
        )
        files.cert.write_bytes(self.leaf)
        files.key.touch(mode=0o600)  # create private before the secret lands in it
        files.key.write_bytes(self.key)
        files.chain.write_bytes(self.chain)
        files.fullchain.write_bytes(self.fullchain)
        files.ca.write_bytes(self.ca)
        return files


class TestCA:
    """A root CA (and, on demand, one intermediate) living in memory.

    `ca_file` is the root written to `directory`, ready for `ssl.create_default_context`,
    psycopg's `sslrootcert` or curl's `--cacert`.
    """

    # A helper, not a test class, even when imported into a test module.
    __test__ = False

    def __init__(self, directory: Path, common_name: str = "carto-installer test root CA") -> None:
        self._now = datetime.datetime.now(datetime.UTC)
        # EC keys for the CAs: generation is instant, and every TLS stack here accepts them.
        self._root_key: PrivateKey = _new_key("ec256")
        self.root = self._ca_cert(common_name, self._root_key, issuer=None)
        self._intermediate: tuple[x509.Certificate, PrivateKey] | None = None
        self.ca_pem = _cert_pem(self.root)
        directory.mkdir(parents=True, exist_ok=True)
        self.ca_file = directory / "test-ca.pem"
        self.ca_file.write_bytes(self.ca_pem)

    def _ca_cert(
        self,
        common_name: str,
        key: PrivateKey,
        issuer: tuple[x509.Certificate, PrivateKey] | None,
    ) -> x509.Certificate:
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        issuer_name, signing_key = (issuer[0].subject, issuer[1]) if issuer else (subject, key)
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(self._now - datetime.timedelta(days=1))
            .not_valid_after(self._now + datetime.timedelta(days=3650))
            .add_extension(
                x509.BasicConstraints(ca=True, path_length=None if issuer is None else 0),
                critical=True,
            )
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                critical=False,
            )
        )
        return builder.sign(signing_key, hashes.SHA256())

    def _intermediate_ca(self) -> tuple[x509.Certificate, PrivateKey]:
        if self._intermediate is None:
            key = _new_key("ec256")
            cert = self._ca_cert(
                "carto-installer test intermediate CA",
                key,
                issuer=(self.root, self._root_key),
            )
            self._intermediate = (cert, key)
        return self._intermediate

    def issue(
        self,
        names: list[str],
        *,
        key_type: KeyType = "rsa2048",
        not_before: datetime.datetime | None = None,
        not_after: datetime.datetime | None = None,
        intermediate: bool = False,
        self_signed: bool = False,
        common_name: str | None = None,
    ) -> Issued:
        """A server certificate for `names` (DNS names or IP addresses; the first is the CN).

        `not_before`/`not_after` make not-yet-valid or expired certificates; `intermediate`
        signs through an intermediate CA (returned in `chain`); `self_signed` makes the leaf
        its own issuer, as the installer's generated certificate is. `common_name` replaces
        the first name as the CN (a hostile name, for instance).
        """
        if not names:
            raise ValueError("issue() needs at least one name")
        key = _new_key(key_type)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name or names[0])])
        if self_signed:
            issuer_cert, issuer_key, chain_certs = None, key, []
        elif intermediate:
            issuer_cert, issuer_key = self._intermediate_ca()
            chain_certs = [issuer_cert]
        else:
            issuer_cert, issuer_key, chain_certs = self.root, self._root_key, []
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer_cert.subject if issuer_cert else subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before or self._now - datetime.timedelta(hours=1))
            .not_valid_after(not_after or self._now + datetime.timedelta(days=365))
            .add_extension(x509.SubjectAlternativeName([_san(n) for n in names]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        )
        if issuer_cert is not None:
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
                    issuer_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
                ),
                critical=False,
            )
        cert = builder.sign(issuer_key, hashes.SHA256())
        return Issued(
            leaf=_cert_pem(cert),
            key=_key_pem(key),
            chain=b"".join(_cert_pem(c) for c in chain_certs),
            ca=_cert_pem(cert) if self_signed else self.ca_pem,
            private_key=key,
        )


@pytest.fixture(scope="session")
def test_ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    """One CA per test session; `test_ca.ca_file` is its root certificate."""
    return TestCA(tmp_path_factory.mktemp("test-ca"))


@dataclass
class LoopbackServer:
    host: str
    port: int
    # TLS handshakes completed, so a test can prove its client really reached this server
    # (e.g. through a proxy) rather than something else on the port.
    handshakes: int = 0

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}/"


_HTTP_OK = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n"
    b"Connection: close\r\n\r\nok\n"
)


def _serve_tls_client(
    conn: socket.socket,
    context: ssl.SSLContext,
    server: LoopbackServer,
    lock: threading.Lock,
) -> None:
    conn.settimeout(5)
    try:
        with context.wrap_socket(conn, server_side=True) as tls:
            with lock:
                server.handshakes += 1
            # Read up to the end of the request headers (if the client sends any), then answer.
            request = b""
            while b"\r\n\r\n" not in request and len(request) < 65536:
                chunk = tls.recv(4096)
                if not chunk:
                    return
                request += chunk
            tls.sendall(_HTTP_OK)
    except (OSError, ssl.SSLError):
        pass  # clients that reject our certificate or hang up are part of the tests
    finally:
        conn.close()


@contextlib.contextmanager
def tls_server(cert: bytes | Path, key: bytes | Path, port: int = 0) -> Iterator[LoopbackServer]:
    """A threaded TLS server on 127.0.0.1 that completes handshakes and answers HTTP 200 "ok".

    `cert` should be the full chain (leaf first) as PEM bytes or a file; `key` unencrypted.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with tempfile.TemporaryDirectory(prefix="tls-server-") as tmp:
        # ssl only loads certificates from files.
        cert_file, key_file = Path(tmp) / "cert.pem", Path(tmp) / "key.pem"
        cert_file.write_bytes(cert.read_bytes() if isinstance(cert, Path) else cert)
        key_file.write_bytes(key.read_bytes() if isinstance(key, Path) else key)
        context.load_cert_chain(cert_file, key_file)

    listener = socket.create_server((LOOPBACK, port), backlog=32)
    server = LoopbackServer(LOOPBACK, listener.getsockname()[1])
    lock = threading.Lock()
    stopping = threading.Event()

    def accept_loop() -> None:
        while not stopping.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return  # listener closed at teardown
            # One thread per client so a client that never handshakes cannot block others.
            threading.Thread(
                target=_serve_tls_client,
                args=(conn, context, server, lock),
                daemon=True,
            ).start()

    acceptor = threading.Thread(target=accept_loop, name=f"tls-server-{server.port}", daemon=True)
    acceptor.start()
    try:
        yield server
    finally:
        stopping.set()
        # shutdown() wakes the blocked accept() on Linux; close() alone would not.
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        acceptor.join(timeout=5)


@contextlib.contextmanager
def silent_server() -> Iterator[LoopbackServer]:
    """A port where TCP connects succeed but nothing is ever said: for timeout tests.

    The socket listens but never calls accept(); the kernel completes the TCP handshake from
    the backlog, so clients hang in the TLS or HTTP exchange, like a black-holing firewall
    that lets SYNs through.
    """
    listener = socket.create_server((LOOPBACK, 0), backlog=64)
    try:
        yield LoopbackServer(LOOPBACK, listener.getsockname()[1])
    finally:
        listener.close()
