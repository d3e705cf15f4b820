"""A self-signed certificate for the domain, for when the admin gives none.

Rendering writes it as certs/<domain>.crt and certs/<domain>.key through its plan (atomically,
the key readable only by its owner and the router's group, see installer/render/compose.py);
the key goes to the run's redactor as soon as it exists.
"""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING

from installer.validators import validate_domain

if TYPE_CHECKING:
    from installer.redact import Redactor

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
