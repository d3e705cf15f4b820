"""tls.certificate against a hostile corpus generated at test time, and the self-signed
certificate generator.

The trust store is the test CA (SSL_CERT_FILE, which the check honours like OpenSSL does), so
a complete chain can pass and an incomplete one cannot; every other verdict does not depend
on trust.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from installer.answers import Answers, TLSSettings
from installer.checks import tls
from installer.checks.base import CheckContext, Outcome, Status
from installer.checks.engine import run_checks
from installer.redact import Redactor
from installer.target import LocalTarget
from installer.tlsgen import generate_self_signed
from tests.services.tls_ca import Issued, TestCA

DOMAIN = "carto.example.com"
NOW = datetime.datetime.now(datetime.UTC)
DAY = datetime.timedelta(days=1)


@pytest.fixture(autouse=True)
def trust_only_the_test_ca(test_ca: TestCA, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(test_ca.ca_file))


def run_check(
    tmp_path: Path,
    cert: bytes | None,
    key: bytes | None,
    *,
    domain: str = DOMAIN,
    redactor: Redactor | None = None,
) -> Outcome:
    settings = TLSSettings()
    if cert is not None:
        (tmp_path / "cert.pem").write_bytes(cert)
        settings.certificate_file = str(tmp_path / "cert.pem")
    if key is not None:
        (tmp_path / "key.pem").write_bytes(key)
        settings.key_file = str(tmp_path / "key.pem")
    ctx = CheckContext(
        target=LocalTarget(), answers=Answers(domain=domain, tls=settings), redactor=redactor
    )
    return tls.check_certificate(ctx)


def traditional_encrypted(issued: Issued) -> bytes:
    return issued.private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.BestAvailableEncryption(b"correct horse"),
    )


def cn_only_certificate() -> tuple[bytes, bytes]:
    """A certificate naming the domain only in its CN, as old tools made them."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, DOMAIN)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - DAY)
        .not_valid_after(NOW + 300 * DAY)
        .sign(key, hashes.SHA256())
    )
    return (
        cert.public_bytes(serialization.Encoding.PEM),
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


@dataclass(frozen=True)
class Case:
    name: str
    make: Callable[[TestCA], tuple[bytes | None, bytes | None]]
    status: Status
    says: tuple[str, ...]  # every one of these appears in the message (lower case)
    domain: str = DOMAIN


def _pair(issued: Issued) -> tuple[bytes, bytes]:
    return issued.fullchain, issued.key


CASES = [
    Case(
        "rsa 2048 from the trusted CA",
        lambda ca: _pair(ca.issue([DOMAIN])),
        Status.PASS,
        ("valid certificate", DOMAIN),
    ),
    Case(
        "ec p-256",
        lambda ca: _pair(ca.issue([DOMAIN], key_type="ec256")),
        Status.PASS,
        ("valid certificate",),
    ),
    Case(
        "complete chain with intermediate",
        lambda ca: _pair(ca.issue([DOMAIN], intermediate=True)),
        Status.PASS,
        ("chain complete",),
    ),
    Case(
        "wildcard one label deep",
        lambda ca: _pair(ca.issue(["*.example.com"])),
        Status.PASS,
        ("valid certificate",),
    ),
    Case(
        "expired",
        lambda ca: _pair(ca.issue([DOMAIN], not_before=NOW - 400 * DAY, not_after=NOW - 2 * DAY)),
        Status.FAIL,
        ("expired",),
    ),
    Case(
        "not yet valid",
        lambda ca: _pair(ca.issue([DOMAIN], not_before=NOW + 10 * DAY, not_after=NOW + 400 * DAY)),
        Status.FAIL,
        ("not valid yet",),
    ),
    Case(
        "expires in 10 days",
        lambda ca: _pair(ca.issue([DOMAIN], not_after=NOW + 10 * DAY)),
        Status.WARN,
        ("expires in",),
    ),
    Case(
        "key mismatch",
        lambda ca: (ca.issue([DOMAIN]).fullchain, ca.issue([DOMAIN]).key),
        Status.FAIL,
        ("does not match",),
    ),
    Case(
        "encrypted key pkcs8",
        lambda ca: (lambda i: (i.fullchain, i.encrypted_key(b"pw")))(ca.issue([DOMAIN])),
        Status.FAIL,
        ("passphrase", "pkcs#8"),
    ),
    Case(
        "encrypted key traditional",
        lambda ca: (lambda i: (i.fullchain, traditional_encrypted(i)))(ca.issue([DOMAIN])),
        Status.FAIL,
        ("passphrase", "traditional"),
    ),
    Case(
        "san missing the domain",
        lambda ca: _pair(ca.issue(["other.example.org"])),
        Status.FAIL,
        ("does not cover", DOMAIN, "other.example.org"),
    ),
    Case(
        "wildcard too deep",
        lambda ca: _pair(ca.issue(["*.example.com"])),
        Status.FAIL,
        ("wildcard", "one label"),
        domain="carto.eu.example.com",
    ),
    Case(
        "cn only", lambda ca: cn_only_certificate(), Status.FAIL, ("common name", "subjectaltname")
    ),
    Case(
        "rsa 1024", lambda ca: _pair(ca.issue([DOMAIN], key_type="rsa1024")), Status.FAIL, ("1024",)
    ),
    Case(
        "chain in the wrong order",
        lambda ca: (lambda i: (i.chain + i.leaf, i.key))(ca.issue([DOMAIN], intermediate=True)),
        Status.FAIL,
        ("wrong order",),
    ),
    Case(
        "chain missing its intermediate",
        lambda ca: (lambda i: (i.leaf, i.key))(ca.issue([DOMAIN], intermediate=True)),
        Status.WARN,
        ("cannot be completed", "intermediate ca"),
    ),
    Case(
        "der input",
        lambda ca: (
            lambda i: (
                x509.load_pem_x509_certificate(i.leaf).public_bytes(serialization.Encoding.DER),
                i.key,
            )
        )(ca.issue([DOMAIN])),
        Status.PASS,
        ("valid certificate",),
    ),
    Case(
        "self-signed given",
        lambda ca: _pair(ca.issue([DOMAIN], self_signed=True)),
        Status.WARN,
        ("self-signed",),
    ),
    Case(
        "garbage bytes",
        lambda ca: (bytes(range(256)) * 3, ca.issue([DOMAIN]).key),
        Status.FAIL,
        ("neither a pem nor a der",),
    ),
    Case(
        "empty certificate file", lambda ca: (b"", ca.issue([DOMAIN]).key), Status.FAIL, ("empty",)
    ),
    Case("empty key file", lambda ca: (ca.issue([DOMAIN]).fullchain, b""), Status.FAIL, ("empty",)),
    Case(
        "files swapped",
        lambda ca: (lambda i: (i.key, i.fullchain))(ca.issue([DOMAIN])),
        Status.FAIL,
        ("swap",),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_corpus_verdicts(case: Case, test_ca: TestCA, tmp_path: Path) -> None:
    cert, key = case.make(test_ca)
    outcome = run_check(tmp_path, cert, key, domain=case.domain)
    assert outcome.status == case.status, outcome
    for words in case.says:
        assert words.lower() in outcome.message.lower(), outcome.message
    assert outcome.observed, outcome
    if outcome.status in (Status.WARN, Status.FAIL):
        assert outcome.remediation, outcome


def test_encrypted_key_remediation_says_how_to_remove_the_passphrase(
    test_ca: TestCA, tmp_path: Path
) -> None:
    issued = test_ca.issue([DOMAIN])
    outcome = run_check(tmp_path, issued.fullchain, issued.encrypted_key(b"pw"))
    assert "openssl pkey" in outcome.remediation
    assert "carto needs an unencrypted key" in outcome.message.lower()


def test_incomplete_chain_fix_says_append_the_intermediates_leaf_first(
    test_ca: TestCA, tmp_path: Path
) -> None:
    issued = test_ca.issue([DOMAIN], intermediate=True)
    outcome = run_check(tmp_path, issued.leaf, issued.key)
    assert "append the intermediate" in outcome.remediation
    assert "leaf first" in outcome.remediation


def test_key_mismatch_names_the_certificate_the_key_belongs_to(
    test_ca: TestCA, tmp_path: Path
) -> None:
    ours, other = test_ca.issue([DOMAIN]), test_ca.issue(["other.example.com"])
    outcome = run_check(tmp_path, ours.leaf + other.leaf, other.key)
    assert outcome.status == Status.FAIL
    assert "belongs to certificate #2" in outcome.message


def test_untrusted_root_warns_without_the_test_ca(
    test_ca: TestCA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other_ca = TestCA(tmp_path / "other-ca", "some other root")
    monkeypatch.setenv("SSL_CERT_FILE", str(other_ca.ca_file))
    issued = test_ca.issue([DOMAIN])
    outcome = run_check(tmp_path, issued.fullchain, issued.key)
    assert outcome.status == Status.WARN
    assert "trusted root" in outcome.message


def test_several_problems_are_all_named(test_ca: TestCA, tmp_path: Path) -> None:
    issued = test_ca.issue(
        ["other.example.org"], key_type="rsa1024", not_before=NOW - 400 * DAY, not_after=NOW - DAY
    )
    outcome = run_check(tmp_path, issued.fullchain, issued.key)
    assert outcome.status == Status.FAIL
    message = outcome.message.lower()
    assert "problems" in message
    assert "does not cover" in message and "expired" in message and "1024" in message


def test_no_files_warns_that_a_self_signed_certificate_will_be_generated(tmp_path: Path) -> None:
    outcome = run_check(tmp_path, None, None)
    assert outcome.status == Status.WARN
    assert "self-signed" in outcome.message and "tls.certificate_file" in outcome.remediation


def test_certificate_without_key_fails(test_ca: TestCA, tmp_path: Path) -> None:
    outcome = run_check(tmp_path, test_ca.issue([DOMAIN]).fullchain, None)
    assert outcome.status == Status.FAIL
    assert "tls.key_file" in outcome.message


def test_unreadable_file_fails_naming_it(tmp_path: Path) -> None:
    settings = TLSSettings(
        certificate_file=str(tmp_path / "missing.pem"), key_file=str(tmp_path / "missing.key")
    )
    ctx = CheckContext(target=LocalTarget(), answers=Answers(domain=DOMAIN, tls=settings))
    outcome = tls.check_certificate(ctx)
    assert outcome.status == Status.FAIL and "missing.pem" in outcome.message


def test_key_contents_never_reach_the_report(test_ca: TestCA, tmp_path: Path) -> None:
    issued = test_ca.issue([DOMAIN])
    redactor = Redactor()
    settings = TLSSettings(
        certificate_file=str(tmp_path / "c.pem"), key_file=str(tmp_path / "k.pem")
    )
    (tmp_path / "c.pem").write_bytes(issued.fullchain)
    (tmp_path / "k.pem").write_bytes(issued.key)
    ctx = CheckContext(
        target=LocalTarget(), answers=Answers(domain=DOMAIN, tls=settings), redactor=redactor
    )
    results = run_checks(ctx, tls.CHECKS)
    assert results[0].status == Status.PASS
    key_line = issued.key.decode().splitlines()[1]
    assert redactor(f"leak {key_line}") == "leak ********"


def test_skips_without_answers_or_domain() -> None:
    results = run_checks(CheckContext(target=LocalTarget()), tls.CHECKS)
    assert results[0].status == Status.SKIP and "answers" in results[0].message
    results = run_checks(CheckContext(target=LocalTarget(), answers=Answers()), tls.CHECKS)
    assert results[0].status == Status.SKIP and "domain" in results[0].message


@pytest.mark.parametrize(
    ("pattern", "name", "matches"),
    [
        ("carto.example.com", "carto.example.com", True),
        ("CARTO.example.com.", "carto.example.com", True),
        ("*.example.com", "carto.example.com", True),
        ("*.example.com", "a.carto.example.com", False),
        ("*.example.com", "example.com", False),
        ("*.com", "example.com", False),
        ("c*.example.com", "carto.example.com", False),
        ("other.example.com", "carto.example.com", False),
    ],
)
def test_name_matching_follows_browser_rules(pattern: str, name: str, matches: bool) -> None:
    assert tls.name_matches(pattern, name) is matches


# --- the generator ---------------------------------------------------------------------------


def test_generated_certificate_covers_the_domain_for_365_days() -> None:
    cert_pem, key_pem = generate_self_signed(DOMAIN)
    cert = x509.load_pem_x509_certificate(cert_pem)
    assert tls.dns_names(cert) == [DOMAIN]
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert datetime.timedelta(days=365) <= lifetime <= datetime.timedelta(days=365, minutes=10)
    key = serialization.load_pem_private_key(key_pem, password=None)
    assert tls.same_public_key(key.public_key(), cert.public_key())
    found = tls.judge([cert], tls.KeyInfo(key, False, "PKCS#8"), DOMAIN)
    assert found.problems == []
    assert len(found.concerns) == 1 and "self-signed" in found.concerns[0]


def test_generated_certificate_for_an_idn_uses_punycode() -> None:
    cert_pem, _ = generate_self_signed("bücher.example.com", days=30)
    cert = x509.load_pem_x509_certificate(cert_pem)
    assert tls.dns_names(cert) == ["xn--bcher-kva.example.com"]


def test_generator_refuses_a_bad_domain() -> None:
    with pytest.raises(ValueError, match="path"):
        generate_self_signed("example.com/carto")


def test_the_generated_key_is_redacted_and_the_check_accepts_the_pair(tmp_path: Path) -> None:
    # Rendering writes the pair (modes and owners: tests/render/test_compose.py); here, what it
    # holds.
    redactor = Redactor()
    cert_pem, key_pem = generate_self_signed(DOMAIN, redactor=redactor)
    cert_path, key_path = tmp_path / "carto.crt", tmp_path / "carto.key"
    cert_path.write_bytes(cert_pem)
    key_path.write_bytes(key_pem)
    line = key_pem.decode().splitlines()[2]
    assert redactor(line) == "********"
    (tmp_path / "check").mkdir()
    outcome = run_check(tmp_path / "check", cert_path.read_bytes(), key_path.read_bytes())
    assert outcome.status == Status.WARN
    assert "self-signed" in outcome.message
