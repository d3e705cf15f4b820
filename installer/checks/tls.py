"""tls.certificate: the certificate and key the admin gives for the domain (files on this
machine, named in the answers), judged the way browsers and CARTO's router will judge them.

The router (nginx) takes the first certificate in the file as its own and checks the key
against it, so order matters; browsers ignore the Common Name, accept a wildcard for exactly
one label, and need the intermediates sent by the server. "Trusted" means: completes to a
root in the system trust store (`ssl.get_default_verify_paths()`, so SSL_CERT_FILE is
honoured, which is also how tests supply their own root).
"""

from __future__ import annotations

import datetime
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from installer.answers.sections import TLS, unpaired_tls_file
from installer.checks.base import Check, CheckContext, Outcome, failed, passed, skipped, warned
from installer.userfiles import CERTIFICATE_LIMIT, SECRET_LIMIT, read_user_file
from installer.validators import validate_domain

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric.types import (
        PrivateKeyTypes,
        PublicKeyTypes,
    )

EXPIRY_WARN_DAYS = 30
MIN_RSA_BITS = 2048
GOOD_CURVES = {"secp256r1": "P-256", "secp384r1": "P-384"}
_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n(.*?)-----END \1-----", re.DOTALL)
REQUIREMENT = (
    "optional certificate for the domain; key must not be passphrase-protected; "
    "self-signed generated when none"
)
DECRYPT_FIX = (
    "remove the passphrase: `openssl pkey -in {key} -out {key}.nopass` (asks for it "
    "once), then point tls.key_file at the new file and keep it private (chmod 600)"
)


class CertificateFileError(ValueError):
    """A certificate or key file that cannot be used, with the reason in words."""


@dataclass
class Findings:
    problems: list[str] = field(default_factory=list)  # -> fail
    concerns: list[str] = field(default_factory=list)  # -> warn
    fixes: list[str] = field(default_factory=list)

    def fail(self, problem: str, fix: str) -> None:
        self.problems.append(problem)
        self._fix(fix)

    def warn(self, concern: str, fix: str) -> None:
        self.concerns.append(concern)
        self._fix(fix)

    def _fix(self, fix: str) -> None:
        if fix and fix not in self.fixes:
            self.fixes.append(fix)


# --- reading files ---------------------------------------------------------------------------


def pem_blocks(data: bytes) -> list[tuple[str, bytes]]:
    """(label, whole block) for every PEM block in `data`."""
    return [(m.group(1).decode("ascii"), m.group(0)) for m in _PEM_BLOCK.finditer(data)]


def load_certificates(data: bytes, name: str = "the certificate file") -> list[x509.Certificate]:
    """Every certificate in a PEM file (in file order), or the one in a DER file."""
    from cryptography import x509

    if not data.strip():
        raise CertificateFileError(f"{name} is empty")
    blocks = pem_blocks(data)
    if blocks:
        certs = []
        for label, block in blocks:
            if label in _CERTIFICATE_LABELS:
                try:
                    certs.append(
                        x509.load_pem_x509_certificate(
                            block.replace(b"TRUSTED CERTIFICATE", b"CERTIFICATE")
                        )
                    )
                except ValueError as exc:
                    raise CertificateFileError(
                        f"{name} has a damaged certificate (#{len(certs) + 1}): {exc}"
                    ) from None
        if not certs:
            kinds = ", ".join(sorted({label for label, _ in blocks}))
            hint = (
                " (it looks like the private key: swap the two files)"
                if "PRIVATE KEY" in kinds
                else ""
            )
            raise CertificateFileError(f"{name} holds no certificate, only: {kinds}{hint}")
        return certs
    try:
        return [x509.load_der_x509_certificate(data)]
    except ValueError:
        raise CertificateFileError(
            f"{name} is neither a PEM nor a DER certificate (no -----BEGIN CERTIFICATE----- "
            "block, and not valid DER)"
        ) from None


_CERTIFICATE_LABELS = ("CERTIFICATE", "X509 CERTIFICATE", "TRUSTED CERTIFICATE")


def certificates_pem(data: bytes, certs: list[x509.Certificate]) -> bytes:
    """The certificates as the PEM file to install: `data` itself when it is already PEM
    holding certificates only, else each certificate re-encoded (DER input, or a file that
    also holds other blocks, which must not be copied along)."""
    from cryptography.hazmat.primitives import serialization

    blocks = pem_blocks(data)
    if blocks and all(label == "CERTIFICATE" for label, _ in blocks):
        return data
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def load_ca_certificates(data: bytes, name: str = "the CA file") -> bytes:
    """The one verdict on a CA file (database, Redis, proxy), shared by preflight and render:
    PEM or DER certificates, never a private key. Returns the PEM to install; raises
    CertificateFileError."""
    if any("PRIVATE KEY" in label for label, _ in pem_blocks(data)):
        raise CertificateFileError(
            f"{name} holds a private key: a CA file must hold certificates only (it is "
            "copied where every service, and every user of the machine, can read it)")
    return certificates_pem(data, load_certificates(data, name))


@dataclass
class KeyInfo:
    key: PrivateKeyTypes | None
    encrypted: bool
    encoding: str  # "PKCS#8", "traditional (RSA/EC PRIVATE KEY)", "DER"


def load_private_key(data: bytes, name: str = "the key file") -> KeyInfo:
    """The private key, or `encrypted=True` when a passphrase protects it (either encoding)."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization

    if not data.strip():
        raise CertificateFileError(f"{name} is empty")
    blocks = [(label, block) for label, block in pem_blocks(data) if "PRIVATE KEY" in label]
    if blocks:
        label, block = blocks[0]
        if label == "OPENSSH PRIVATE KEY":
            raise CertificateFileError(f"{name} holds an SSH key, not a TLS private key")
        if label == "ENCRYPTED PRIVATE KEY":
            return KeyInfo(None, True, "PKCS#8")
        encoding = "PKCS#8" if label == "PRIVATE KEY" else f"traditional {label} format"
        if b"Proc-Type: 4,ENCRYPTED" in block:
            return KeyInfo(None, True, encoding)
        try:
            key = serialization.load_pem_private_key(block, password=None)
        except TypeError:  # "Password was not given but private key is encrypted"
            return KeyInfo(None, True, encoding)
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise CertificateFileError(f"{name} has a damaged or unsupported key: {exc}") from None
        return KeyInfo(key, False, encoding)
    if pem_blocks(data):
        raise CertificateFileError(
            f"{name} holds no private key (it looks like a certificate: swap the two files)"
        )
    try:
        key = serialization.load_der_private_key(data, password=None)
    except TypeError:
        return KeyInfo(None, True, "DER")
    except Exception:  # ValueError, UnsupportedAlgorithm: not a key we can read
        raise CertificateFileError(
            f"{name} is not a private key (no -----BEGIN PRIVATE KEY----- block, and not DER)"
        ) from None
    return KeyInfo(key, False, "DER")


# --- judging the certificate -----------------------------------------------------------------


def dns_names(cert: x509.Certificate) -> list[str] | None:
    """The subjectAltName DNS names, or None when the certificate has no SAN extension."""
    from cryptography import x509

    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return None
    return [n.lower().rstrip(".") for n in ext.value.get_values_for_type(x509.DNSName)]


def name_matches(pattern: str, domain: str) -> bool:
    """Browser rules: exact, or `*.` standing for exactly one whole leftmost label."""
    pattern, domain = pattern.lower().rstrip("."), domain.lower().rstrip(".")
    if pattern == domain:
        return True
    if not pattern.startswith("*."):
        return False
    first, _, rest = domain.partition(".")
    return bool(first) and rest == pattern[2:] and "*" not in rest and rest.count(".") >= 1


def common_name(name: x509.Name) -> str:
    from cryptography.x509.oid import NameOID

    values = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    if values:
        return str(values[0].value)
    return name.rfc4514_string() or "(empty name)"


def is_ca(cert: x509.Certificate) -> bool:
    from cryptography import x509

    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    if cert.issuer != issuer.subject:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except Exception:
        return False
    return True


def key_description(public_key: PublicKeyTypes) -> tuple[str, str | None]:
    """('RSA 2048 bits', None) or ('RSA 1024 bits', 'why it is weak')."""
    from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa

    if isinstance(public_key, rsa.RSAPublicKey):
        bits = public_key.key_size
        desc = f"RSA {bits} bits"
        if bits < MIN_RSA_BITS:
            return desc, (
                f"the key is RSA {bits} bits: browsers refuse RSA keys under {MIN_RSA_BITS} bits"
            )
        return desc, None
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        curve = public_key.curve.name
        desc = f"EC {GOOD_CURVES.get(curve, curve)}"
        if curve not in GOOD_CURVES:
            return desc, (
                f"the key uses the curve {curve}, which browsers do not all accept "
                "for certificates: use P-256 or P-384"
            )
        return desc, None
    if isinstance(public_key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return "EdDSA", "browsers do not accept EdDSA (Ed25519/Ed448) server certificates"
    if isinstance(public_key, dsa.DSAPublicKey):
        return "DSA", "DSA keys are obsolete and refused by browsers"
    return type(public_key).__name__, "unknown key type"


def same_public_key(a: PublicKeyTypes, b: PublicKeyTypes) -> bool:
    from cryptography.hazmat.primitives import serialization

    fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    try:
        return bool(a.public_bytes(*fmt) == b.public_bytes(*fmt))
    except Exception:
        return False


def _date(value: datetime.datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC")


def trusted_roots() -> list[x509.Certificate]:
    """Roots of the system trust store (SSL_CERT_FILE / SSL_CERT_DIR honoured)."""
    import ssl

    from cryptography import x509

    paths = ssl.get_default_verify_paths()
    files: list[Path] = []
    if paths.cafile:
        files.append(Path(paths.cafile))
    else:
        files += [
            Path(p)
            for p in ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt")
            if Path(p).is_file()
        ]
    if not files and paths.capath and Path(paths.capath).is_dir():
        files += sorted(p for p in Path(paths.capath).iterdir() if p.suffix in (".pem", ".crt"))
    roots: list[x509.Certificate] = []
    for file in files:
        try:
            data = file.read_bytes()
        except OSError:
            continue
        for label, block in pem_blocks(data):
            if label != "CERTIFICATE":
                continue
            try:
                # Some long-lived roots have quirks (a negative serial) that cryptography
                # warns about; they are the system's choice, not the user's problem.
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    roots.append(x509.load_pem_x509_certificate(block))
            except ValueError:
                continue  # one odd entry must not hide the others
    return roots


def verify_chain(
    leaf: x509.Certificate,
    intermediates: list[x509.Certificate],
    domain: str,
    roots: list[x509.Certificate],
    now: datetime.datetime,
) -> str | None:
    """None when `leaf` + `intermediates` complete to one of `roots` for `domain`, else why."""
    from cryptography.x509 import DNSName
    from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

    if not roots:
        return "no trusted root certificates were found on this machine"
    try:
        verifier = (
            PolicyBuilder().store(Store(roots)).time(now).build_server_verifier(DNSName(domain))
        )
        verifier.verify(leaf, intermediates)
    except VerificationError as exc:
        return str(exc)
    except ValueError as exc:
        return str(exc)
    return None


def judge(
    certs: list[x509.Certificate],
    key: KeyInfo,
    domain: str,
    *,
    now: datetime.datetime | None = None,
    roots: list[x509.Certificate] | None = None,
    cert_file: str = "the certificate file",
    key_file: str = "the key file",
) -> Findings:
    """Every problem with this certificate chain and key for `domain`, worst first."""
    from cryptography.hazmat.primitives import hashes

    now = now or datetime.datetime.now(datetime.UTC)
    found = Findings()
    leaf = certs[0]
    # Order: the router presents the file as is and pairs the key with the first certificate.
    if is_ca(leaf):
        real_leaf = next((c for c in certs if not is_ca(c)), None)
        if real_leaf is None:
            # Refused rather than served with a warning: Firefox rejects a CA certificate
            # used as the server's own (MOZILLA_PKIX_ERROR_CA_CERT_USED_AS_END_ENTITY), and
            # OpenSSL's strict checks (used by some Node clients) do too. A plain
            # `openssl req -x509` makes exactly this, since OpenSSL 3 sets CA:TRUE.
            subjects = ", ".join(common_name(c.subject) for c in certs)
            if len(certs) == 1 and leaf.issuer == leaf.subject:
                found.fail(
                    f"{cert_file} is a self-signed certificate marked as a CA "
                    f"(basicConstraints CA:TRUE, subject {subjects}), so browsers refuse it as "
                    f"the certificate for {domain}; plain `openssl req -x509` makes such a "
                    "certificate",
                    "leave the certificate and key out to have a proper self-signed one "
                    "generated, or make one marked CA:FALSE: `openssl req -x509 -newkey "
                    f"rsa:2048 -nodes -days 365 -keyout {domain}.key -out {domain}.crt "
                    f"-subj /CN={domain} -addext subjectAltName=DNS:{domain} -addext "
                    "basicConstraints=critical,CA:FALSE -addext extendedKeyUsage=serverAuth`",
                )
                return found
            found.fail(
                f"{cert_file} holds only CA certificates (basicConstraints CA:TRUE: {subjects}), "
                f"not the certificate for {domain}",
                "use the server certificate your CA issued for the domain (CA:FALSE), "
                "followed by its intermediates",
            )
            return found
        position = certs.index(real_leaf) + 1
        found.fail(
            f"the certificates are in the wrong order: the file starts with the CA "
            f"certificate '{common_name(leaf.subject)}', and the server certificate "
            f"'{common_name(real_leaf.subject)}' is #{position}",
            "put the server certificate first, then the intermediates: "
            "`cat server.crt intermediate.crt > fullchain.pem`",
        )
        leaf = real_leaf
    if key.encrypted:
        found.fail(
            f"the private key is protected by a passphrase ({key.encoding}); CARTO needs "
            "an unencrypted key, since nothing can type the passphrase when it starts",
            DECRYPT_FIX.format(key=key_file),
        )
    elif key.key is not None and not same_public_key(key.key.public_key(), leaf.public_key()):
        other = next(
            (
                i
                for i, c in enumerate(certs)
                if c is not leaf and same_public_key(key.key.public_key(), c.public_key())
            ),
            None,
        )
        where = (
            f" (it belongs to certificate #{other + 1}, '{common_name(certs[other].subject)}')"
            if other is not None
            else ""
        )
        found.fail(
            f"the private key does not match the certificate for "
            f"'{common_name(leaf.subject)}'{where}",
            "use the key generated with this certificate's request (compare "
            "`openssl x509 -noout -pubkey -in CERT` with `openssl pkey -pubout -in KEY`)",
        )
    names = dns_names(leaf)
    if names is None:
        found.fail(
            f"the certificate names '{common_name(leaf.subject)}' only in its Common "
            "Name and has no subjectAltName: browsers ignore the Common Name",
            f"reissue the certificate with a subjectAltName DNS entry for {domain}",
        )
    elif not any(name_matches(n, domain) for n in names):
        deep = [n for n in names if n.startswith("*.") and domain.endswith(n[1:])]
        if deep:
            found.fail(
                f"the wildcard {deep[0]} does not cover {domain}: a wildcard stands for "
                "exactly one label",
                f"reissue with {domain} (or *.{domain.partition('.')[2]}) in the subjectAltName",
            )
        else:
            found.fail(
                f"the certificate does not cover {domain} (it is for "
                f"{', '.join(names) or 'no DNS name'})",
                f"reissue the certificate with {domain} in its subjectAltName, or set "
                "domain: to a name it covers",
            )
    not_before, not_after = leaf.not_valid_before_utc, leaf.not_valid_after_utc
    if now < not_before:
        found.fail(
            f"the certificate is not valid yet: it starts on {_date(not_before)}",
            "wait until then, or check this machine's clock (`timedatectl`), or "
            "reissue the certificate",
        )
    elif now > not_after:
        days = (now - not_after).days
        found.fail(
            f"the certificate expired on {_date(not_after)} ({days} days ago)",
            "renew the certificate with your CA and give the new files",
        )
    elif not_after - now < datetime.timedelta(days=EXPIRY_WARN_DAYS):
        days = (not_after - now).days
        found.warn(
            f"the certificate expires in {days} days ({_date(not_after)})",
            "renew it now and give the new files; plan automatic renewal",
        )
    _, weakness = key_description(leaf.public_key())
    if weakness:
        found.fail(weakness, "reissue with an RSA 2048+ or EC P-256/P-384 key")
    algorithm = leaf.signature_hash_algorithm
    if isinstance(algorithm, hashes.SHA1 | hashes.MD5):
        found.fail(
            f"the certificate is signed with {algorithm.name.upper()}, which browsers refuse",
            "reissue it signed with SHA-256",
        )
    if found.problems:
        return found
    chain = certs[1:] if certs[0] is leaf else [c for c in certs if c is not leaf]
    self_signed = issued_by(leaf, leaf)
    if self_signed:
        found.warn(
            "the certificate is self-signed: browsers will warn every user until they "
            "trust it by hand",
            "use a certificate from a public CA (e.g. Let's Encrypt) or your company "
            "CA trusted by your users' browsers",
        )
        return found
    for i in range(len(certs) - 1):  # the leaf is first here: problems returned above
        if not issued_by(certs[i], certs[i + 1]):
            found.warn(
                f"certificate #{i + 2} ('{common_name(certs[i + 1].subject)}') did "
                f"not issue #{i + 1} ('{common_name(certs[i].subject)}'): the chain "
                "is out of order or holds an unrelated certificate",
                "order the file as: server certificate, then the intermediate that "
                "signed it, then the next one up",
            )
            break
    reason = verify_chain(leaf, chain, domain, trusted_roots() if roots is None else roots, now)
    if reason is not None:
        last = chain[-1] if chain else leaf
        detail = "" if "exhausted" in reason else f" ({reason})"
        found.warn(
            f"the chain cannot be completed to a trusted root: no certificate in the "
            f"file or the trust store issued '{common_name(last.subject)}' (its issuer "
            f"is '{common_name(last.issuer)}'){detail}",
            "append the intermediate certificates to the certificate file, leaf first "
            "(`cat server.crt intermediate.crt > fullchain.pem`); your CA provides them "
            "as the 'chain' or 'CA bundle'. If your users' browsers trust a private CA, "
            "this warning may be expected",
        )
    return found


def describe(leaf: x509.Certificate, now: datetime.datetime) -> str:
    names = dns_names(leaf)
    key, _ = key_description(leaf.public_key())
    left = leaf.not_valid_after_utc - now
    if left.total_seconds() < 0:
        until = f"expired {leaf.not_valid_after_utc:%Y-%m-%d} ({(-left).days} days ago)"
    else:
        until = f"valid until {leaf.not_valid_after_utc:%Y-%m-%d} ({left.days} days left)"
    san = ", ".join(names) if names else "none (CN only)"
    return (
        f"{common_name(leaf.subject)}; SAN {san}; {key}; {until}; issued by "
        f"{common_name(leaf.issuer)}"
    )


# --- the check -------------------------------------------------------------------------------


def _applies(ctx: CheckContext) -> str | None:
    if ctx.answers is None:
        return "no answers file: give one with --answers to check the TLS certificate"
    if not ctx.answers.domain:
        return "the answers give no domain, which the certificate must cover"
    return None


def check_certificate(ctx: CheckContext) -> Outcome:
    assert ctx.answers is not None and ctx.answers.domain is not None
    try:
        domain = validate_domain(ctx.answers.domain)
    except ValueError:
        return skipped("the domain is not valid (see net.domain), so coverage cannot be checked")
    tls = ctx.answers.tls
    if not tls.certificate_file and not tls.key_file:
        return warned(
            f"no certificate given: a self-signed certificate for {domain} will be generated, "
            "and browsers will warn every user until it is replaced",
            observed="none given (a self-signed one will be generated)",
            remediation="give tls.certificate_file and tls.key_file (PEM, server certificate "
            "first, then the intermediates) from a public CA such as Let's Encrypt, or from "
            "your company CA",
        )
    missing = unpaired_tls_file(ctx.answers)  # both or neither: the one rule
    if missing is not None:
        given = next(p for p in TLS.paths if p != missing)
        return failed(
            f"{given} is set but {missing} is not: both are needed",
            observed=f"{given} only",
            remediation=f"add {missing} to the answers, or remove {given} to have a "
            "self-signed certificate generated",
        )
    cert_path, key_path = tls.certificate_file, tls.key_file
    assert cert_path is not None and key_path is not None
    try:
        cert_data = read_user_file(cert_path, limit=CERTIFICATE_LIMIT)
        key_data = read_user_file(key_path, limit=SECRET_LIMIT)
    except OSError as exc:
        return failed(
            f"cannot read {exc.filename}: {exc.strerror}",
            observed=f"{exc.filename}: {exc.strerror}",
            remediation="check tls.certificate_file and tls.key_file name readable files",
        )
    if ctx.redactor is not None:
        ctx.redactor.add(key_data)
        for label, block in pem_blocks(cert_data):
            if "PRIVATE KEY" in label:  # a combined file: the key in it is a secret too
                ctx.redactor.add(block)
    sizes = f"certificate file {len(cert_data)} bytes, key file {len(key_data)} bytes"
    try:
        certs = load_certificates(cert_data, f"the certificate file {cert_path}")
    except CertificateFileError as exc:
        return failed(
            str(exc),
            observed=sizes,
            remediation="give tls.certificate_file as PEM (-----BEGIN CERTIFICATE-----"
            ", server certificate first, then the intermediates) or DER",
        )
    try:
        key = load_private_key(key_data, f"the key file {key_path}")
    except CertificateFileError as exc:
        return failed(
            str(exc),
            observed=sizes,
            remediation="give tls.key_file as the unencrypted PEM private key "
            "(-----BEGIN PRIVATE KEY-----) made with this certificate's request",
        )
    now = datetime.datetime.now(datetime.UTC)
    roots: list[x509.Certificate] = ctx.cached("tls.trusted_roots", trusted_roots)
    found = judge(certs, key, domain, now=now, roots=roots, cert_file=cert_path, key_file=key_path)
    leaf = next((c for c in certs if not is_ca(c)), certs[0])
    observed = describe(leaf, now) + f"; {len(certs)} certificate(s) in the file"
    remediation = "; ".join(found.fixes)
    if found.problems:
        items = found.problems + found.concerns
        head = items[0] if len(items) == 1 else f"{len(items)} problems: " + "; ".join(items)
        return failed(head, observed=observed, remediation=remediation)
    if found.concerns:
        return warned("; ".join(found.concerns), observed=observed, remediation=remediation)
    return passed(
        f"valid certificate for {domain}: key matches, chain complete, valid until "
        f"{leaf.not_valid_after_utc:%Y-%m-%d}",
        observed=observed,
    )


CHECKS = [
    Check(
        "tls.certificate",
        "TLS certificate",
        REQUIREMENT,
        check_certificate,
        applies=_applies,
        timeout=15.0,
    ),
]
