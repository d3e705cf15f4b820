"""A self-signed certificate for the domain, for when the admin gives none.

Rendering writes it as certs/<domain>.crt and certs/<domain>.key. The key never touches disk
readable by others: `write_certificate_pair` writes it 0600, atomically, through the target
(or locally), and hands it to the run's redactor.
"""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING

from installer.validators import validate_domain

if TYPE_CHECKING:
    from installer.redact import Redactor
    from installer.target import Target

DEFAULT_DAYS = 365


def generate_self_signed(
    domain: str, days: int = DEFAULT_DAYS, *, redactor: Redactor | None = None
) -> tuple[bytes, bytes]:
    """(certificate PEM, unencrypted PKCS#8 key PEM) for `domain`, valid for `days` days.

    RSA 2048 for the widest client support; the domain is in the subjectAltName (browsers
    ignore the Common Name), marked for server authentication, and the certificate is its
    own issuer, so `tls.certificate` reports it as self-signed.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    name = validate_domain(domain)
    if days < 1:
        raise ValueError("a certificate must be valid for at least one day")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        # A few minutes back, so a client whose clock is slightly behind still accepts it.
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_encipherment=True,
                content_commitment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    if redactor is not None:
        redactor.add(key_pem)
    return cert_pem, key_pem


def write_certificate_pair(
    cert_pem: bytes, key_pem: bytes, cert_path: str, key_path: str, target: Target | None = None
) -> None:
    """Write the certificate (0644) and the key (0600), each atomically; the key first, so a
    certificate never sits next to a missing key."""
    if target is None:
        from installer.target import atomic_write

        atomic_write(key_path, key_pem, 0o600)
        atomic_write(cert_path, cert_pem, 0o644)
        return
    target.write_file(key_path, key_pem, 0o600)
    target.write_file(cert_path, cert_pem, 0o644)


def write_self_signed(
    domain: str,
    cert_path: str,
    key_path: str,
    *,
    days: int = DEFAULT_DAYS,
    target: Target | None = None,
    redactor: Redactor | None = None,
) -> tuple[bytes, bytes]:
    """Generate a self-signed pair for `domain` and write it; returns the PEM bytes."""
    cert_pem, key_pem = generate_self_signed(domain, days, redactor=redactor)
    write_certificate_pair(cert_pem, key_pem, cert_path, key_path, target)
    return cert_pem, key_pem
