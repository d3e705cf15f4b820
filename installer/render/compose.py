"""Rendering for Docker Compose: customer.env, certs/ and .env in the deployment directory.

What the vendor's install.sh does by hand, done so that it can be repeated: customer.env is
updated in place (only the keys listed in `owned_settings` and the license's keys change),
the legacy POSTGRES_PASSWORD line is renamed, the certificates and CA files are placed in
certs/, and .env is built as customer.env, then CARTO_SELFHOSTED_VERSION=<VERSION>, then
env.tpl. Values are encoded for the Compose that will read them (see installer.envfile).
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import logging
import posixpath
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from installer.answers import Answers, validate
from installer.envfile import (
    FLAVOUR_NAMES,
    EnvFile,
    Flavour,
    cannot_hold,
    changed_keys,
    flavour_for,
    is_secret_key,
)
from installer.errors import AnswersError, InputError
from installer.package import LICENSE_KEYS, Package, read_package
from installer.release import ReleaseFile, folders, release_file
from installer.render import FileChange, RenderPlan, stale_temp_files
from installer.render.merge import BASE_RECORD, BaseRecord, MergeResult, merge_package
from installer.userfiles import CERTIFICATE_LIMIT, SECRET_LIMIT, read_user_file
from installer.vendor import GAPS_FIX, describe_gaps, package_gaps

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

    from installer.redact import Redactor
    from installer.target import Target

log = logging.getLogger("installer.render.compose")

VENDOR_FILES = ("docker-compose.yml", "env.tpl", "VERSION", "MIN_VERSION")
ROUTER_CERT_DIR = "/etc/nginx/ssl"  # where the router sees ./certs
SERVICE_CERT_DIR = "/usr/src/certs"  # where the other services see ./certs
DB_CA_NAME = "postgresql-ssl-ca.crt"
REDIS_CA_NAME = "redis-tls-ca.crt"
PROXY_CA_NAME = "proxy-ca.crt"
SELF_SIGNED_DAYS = 365
RENEW_BEFORE = datetime.timedelta(days=30)
# Which users read the secret files in the vendor's containers. docker-compose.yml sets no
# `user:`, so each runs as its image's own user; the vendor's Helm chart, for the same images,
# runs router-http (nginx) as uid/gid 101 and the Node.js backends (workspace-api, maps-api,
# import-api, router-metrics, workspace-migrations, ...) as uid/gid 1000. Compose gives a
# container no supplementary groups, so a file that is group-readable by exactly that gid is
# readable by exactly those containers (and the installing user, its owner).
ROUTER_GID = 101  # reads certs/<domain>.key at /etc/nginx/ssl/
BACKEND_GID = 1000  # read certs/key.json at /usr/src/certs/ (GOOGLE_APPLICATION_CREDENTIALS)
READER_MODE = 0o640
VERSION_BANNER = "# ---- set by carto-installer from VERSION, as the vendor's install.sh does ----"
TEMPLATE_BANNER = "# ---- env.tpl follows ----"


@dataclass(frozen=True)
class ComposeTool:
    command: list[str]
    version: str
    flavour: Flavour

    @property
    def display(self) -> str:
        return " ".join(self.command)


def detect_compose(target: Target) -> ComposeTool | None:
    """The Compose the docker.compose check would choose on the target, or None."""
    from installer.checks.base import CheckContext, Status
    from installer.checks.docker import check_compose

    outcome = check_compose(CheckContext(target=target))
    if outcome.status != Status.PASS:
        return None
    command = list(outcome.data["command"])
    version = str(outcome.data.get("version", ""))
    return ComposeTool(command, version, flavour_for(command, version))


def tool_from(command: Sequence[str] | None, version: str | None) -> ComposeTool | None:
    if not command:
        return None
    return ComposeTool(list(command), version or "", flavour_for(command, version))


def owned_settings(answers: Answers) -> list[tuple[str, str, str]]:
    """(answer key, customer.env key, value) for every key the installer owns.

    Keys whose answer is absent are left as they are in customer.env.
    """
    validate(answers, "compose")  # every value below is there
    assert answers.domain is not None
    domain = answers.domain
    out: list[tuple[str, str, str]] = [
        ("domain", "SELFHOSTED_DOMAIN", domain),
        # The installer always places the certificate itself (given or generated), so the
        # router never makes one of its own that nobody could verify.
        ("tls", "ROUTER_SSL_AUTOGENERATE", "0"),
        ("tls", "ROUTER_SSL_CERTIFICATE_PATH", f"{ROUTER_CERT_DIR}/{domain}.crt"),
        ("tls", "ROUTER_SSL_CERTIFICATE_KEY_PATH", f"{ROUTER_CERT_DIR}/{domain}.key"),
    ]
    db = answers.database
    if db.bundled:
        out.append(("database.bundled", "LOCAL_POSTGRES_SCALE", "1"))
        if db.admin_password is not None:
            out.append(("database.admin_password", "POSTGRES_ADMIN_PASSWORD",
                        db.admin_password.value))
        if db.password is not None:
            out.append(("database.password", "WORKSPACE_POSTGRES_PASSWORD", db.password.value))
    else:
        assert db.host is not None and db.password is not None and db.admin_password is not None
        out += [
            ("database.bundled", "LOCAL_POSTGRES_SCALE", "0"),
            ("database.host", "WORKSPACE_POSTGRES_HOST", db.host),
            ("database.port", "WORKSPACE_POSTGRES_PORT", str(db.port)),
            ("database.user", "WORKSPACE_POSTGRES_USER", db.user),
            ("database.password", "WORKSPACE_POSTGRES_PASSWORD", db.password.value),
            ("database.database", "WORKSPACE_POSTGRES_DB", db.database),
            ("database.admin_user", "POSTGRES_ADMIN_USER", db.admin_user),
            ("database.admin_password", "POSTGRES_ADMIN_PASSWORD", db.admin_password.value),
            ("database.admin_database", "POSTGRES_ADMIN_DB", db.admin_database),
            # The vendor's stack knows two settings only: TLS with `require`, or none with
            # `disable` (see ssl_note); a stricter mode is the installer's own check.
            ("database.ssl.enabled", "WORKSPACE_POSTGRES_SSL_ENABLED",
             "true" if db.ssl.enabled else "false"),
            ("database.ssl.enabled", "WORKSPACE_POSTGRES_SSL_MODE",
             "require" if db.ssl.enabled else "disable"),
        ]
        if db.ssl.enabled:
            if db.ssl.ca_file:
                out.append(("database.ssl.ca_file", "WORKSPACE_POSTGRES_SSL_CA",
                            f"{SERVICE_CERT_DIR}/{DB_CA_NAME}"))
        # Azure Database for PostgreSQL: logins are user@server, the role itself is `user`.
        if "@" in db.user:
            out.append(("database.user", "WORKSPACE_POSTGRES_INTERNAL_USER",
                        db.user.split("@", 1)[0]))
        if "@" in db.admin_user:
            out.append(("database.admin_user", "POSTGRES_LOGIN_USER",
                        db.admin_user.split("@", 1)[0]))
    redis = answers.redis
    if redis.bundled:
        out.append(("redis.bundled", "LOCAL_REDIS_SCALE", "1"))
    else:
        assert redis.host is not None
        out += [
            ("redis.bundled", "LOCAL_REDIS_SCALE", "0"),
            ("redis.host", "REDIS_HOST", redis.host),
            ("redis.port", "REDIS_PORT", str(redis.port)),
            ("redis.tls_enabled", "REDIS_TLS_ENABLED", "true" if redis.tls_enabled else "false"),
        ]
        if redis.password is not None:
            out.append(("redis.password", "REDIS_PASSWORD", redis.password.value))
        if redis.tls_ca_file:
            out.append(("redis.tls_ca_file", "REDIS_TLS_CA", f"{SERVICE_CERT_DIR}/{REDIS_CA_NAME}"))
    proxy = answers.network.proxy
    if proxy is not None:
        for name, value in (("HTTP_PROXY", proxy.http), ("HTTPS_PROXY", proxy.https),
                            ("GRPC_PROXY", proxy.https or proxy.http),
                            ("NO_PROXY", proxy.no_proxy)):
            if value:
                path = {"HTTP_PROXY": "network.proxy.http", "NO_PROXY": "network.proxy.no_proxy"
                        }.get(name, "network.proxy.https")
                out.append((path, name, value))
                out.append((path, name.lower(), value))
        if proxy.ca_file:
            out.append(("network.proxy.ca_file", "NODE_EXTRA_CA_CERTS",
                        f"{SERVICE_CERT_DIR}/{PROXY_CA_NAME}"))
    # ---- advanced answers (own buckets, private CA, Maps key): installer/render/storage.py
    from installer.render.storage import compose_settings

    advanced = compose_settings(answers)
    replaced = {key for _, key, _ in advanced}  # NODE_EXTRA_CA_CERTS: one bundle, not two
    out = [item for item in out if item[1] not in replaced] + advanced
    # ---- end of advanced answers
    return out


def setting_groups(settings: Sequence[tuple[str, str, str]]) -> list[list[tuple[str, str]]]:
    """The installer's keys in the groups the vendor's customer.env keeps as blocks: the
    database, Redis and TLS settings each go together (their first key selects the block:
    LOCAL_POSTGRES_SCALE, LOCAL_REDIS_SCALE, ROUTER_SSL_AUTOGENERATE); any other key alone."""
    groups: list[list[tuple[str, str]]] = []
    previous = ""
    for answer_key, key, value in settings:
        root = answer_key.split(".", 1)[0]
        if groups and root == previous and root in ("database", "redis", "tls"):
            groups[-1].append((key, value))
        else:
            groups.append([(key, value)])
        previous = root
    return groups


def ssl_note(answers: Answers) -> str | None:
    """What CARTO's own services will do with the database connection, said plainly."""
    db = answers.database
    if db.bundled:
        return None
    if not db.ssl.enabled:
        return ("database TLS is off: CARTO's services connect to PostgreSQL without "
                "encryption (WORKSPACE_POSTGRES_SSL_ENABLED=false, "
                "WORKSPACE_POSTGRES_SSL_MODE=disable)")
    ca = (" and trust the CA in certs/postgresql-ssl-ca.crt" if db.ssl.ca_file else "")
    stricter = (f"; database.ssl.mode {db.ssl.mode} is applied by the installer's own "
                "database checks only" if db.ssl.mode != "require" else "")
    return ("CARTO's services connect to PostgreSQL with WORKSPACE_POSTGRES_SSL_MODE=require "
            f"(the only TLS mode the vendor's stack uses): encrypted{ca}{stricter}")


def _read_local(path: str, answer_key: str, what: str, limit: int = CERTIFICATE_LIMIT) -> bytes:
    """A file the answers name, read with a size limit (devices and FIFOs refused)."""
    try:
        return read_user_file(path, limit=limit)
    except FileNotFoundError:
        raise AnswersError(answer_key, f"the {what} {path} does not exist") from None
    except IsADirectoryError:
        raise AnswersError(answer_key, f"{path} is a folder, not the {what}") from None
    except OSError as exc:
        raise AnswersError(answer_key, f"cannot read the {what} {path}: "
                           f"{exc.strerror or exc}") from None


def read_ca_file(path: str, answer_key: str, what: str) -> bytes:
    """A CA file as PEM to install, judged by the same parser as the preflight checks:
    certificates only (PEM or DER), never a private key."""
    from installer.checks.tls import CertificateFileError, load_ca_certificates

    data = _read_local(path, answer_key, what)
    try:
        return load_ca_certificates(data, f"the {what} {path}")
    except CertificateFileError as exc:
        raise AnswersError(answer_key, str(exc),
                           "give a file with the CA certificate(s) only, in PEM "
                           "(-----BEGIN CERTIFICATE-----) or DER") from None


def _given_certificate(answers: Answers, redactor: Redactor) -> tuple[bytes, bytes]:
    """The certificate chain and key to install, as PEM, judged by the same parser as the
    tls.certificate check (so a file preflight accepts, PEM or DER, render accepts too)."""
    from cryptography.hazmat.primitives import serialization

    from installer.checks.tls import (
        CertificateFileError,
        certificates_pem,
        load_certificates,
        load_private_key,
    )

    tls = answers.tls
    assert tls.certificate_file and tls.key_file
    cert_data = _read_local(tls.certificate_file, "tls.certificate_file", "certificate file")
    key_data = _read_local(tls.key_file, "tls.key_file", "key file", SECRET_LIMIT)
    redactor.add(key_data)
    try:
        chain = load_certificates(cert_data, f"the certificate file {tls.certificate_file}")
    except CertificateFileError as exc:
        raise AnswersError("tls.certificate_file",
                           f"{tls.certificate_file} holds no PEM certificate usable ({exc})",
                           "give the certificate in PEM form (-----BEGIN CERTIFICATE-----), "
                           "leaf first, then intermediates") from None
    try:
        key = load_private_key(key_data, f"the key file {tls.key_file}")
    except CertificateFileError as exc:
        raise AnswersError("tls.key_file", str(exc),
                           "give the unencrypted private key in PEM form") from None
    if key.encrypted or key.key is None:
        raise AnswersError("tls.key_file", f"{tls.key_file} is protected by a passphrase, "
                           "which CARTO's router cannot use",
                           f"remove it: `openssl pkey -in {tls.key_file} -out key-plain.pem`, "
                           "then point tls.key_file at key-plain.pem (keep it private)")
    if _public_der(key.key.public_key()) != _public_der(chain[0].public_key()):
        raise AnswersError("tls.key_file", "the key does not belong to the certificate "
                           f"{tls.certificate_file} (its first certificate, the leaf)",
                           "give the key the certificate was issued for")
    if key.encoding == "DER":
        key_pem = key.key.private_bytes(serialization.Encoding.PEM,
                                        serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption())
        redactor.add(key_pem)
    else:
        key_pem = key_data
    return certificates_pem(cert_data, chain), key_pem


@functools.lru_cache(maxsize=8)
def _key_public_der(key_pem: bytes) -> bytes:
    """The public half of a PEM private key. Loading checks the key's consistency, which
    is slow for RSA; a run loads the same key several times (preflight, render, re-render)."""
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    return _public_der(load_pem_private_key(key_pem, password=None).public_key())


def _public_der(public_key: PublicKeyTypes) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def reusable_self_signed(cert_pem: bytes | None, key_pem: bytes | None, domain: str) -> bool:
    """True when a certificate we generated earlier still fits: self-signed for this
    domain, key matching, valid for at least 30 more days."""
    if not cert_pem or not key_pem:
        return False
    from cryptography import x509

    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
        key_public = _key_public_der(key_pem)
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except (ValueError, TypeError, x509.ExtensionNotFound):
        return False
    now = datetime.datetime.now(datetime.UTC)
    return (
        cert.issuer == cert.subject
        and domain in names.value.get_values_for_type(x509.DNSName)
        and cert.not_valid_before_utc <= now
        and cert.not_valid_after_utc - now > RENEW_BEFORE
        and key_public == _public_der(cert.public_key())
    )


def _generate(domain: str, redactor: Redactor) -> tuple[bytes, bytes]:
    from installer.tlsgen import generate_self_signed

    cert, key = generate_self_signed(domain, days=SELF_SIGNED_DAYS, redactor=redactor)
    return bytes(cert), bytes(key)


def build_dotenv(customer_env: bytes, version: bytes, env_tpl: bytes) -> bytes:
    """.env as the vendor's install.sh builds it: customer.env, a line break (so a
    customer.env without a final newline still ends its last line), the version block, then
    env.tpl verbatim. VERSION loses its trailing line breaks, as `$(cat VERSION)` does."""
    number = version.decode("utf-8", "replace").rstrip("\n")
    block = (f"\n{VERSION_BANNER}\n\nCARTO_SELFHOSTED_VERSION={number}\n\n"
             f"{TEMPLATE_BANNER}\n\n").encode()
    return customer_env + block + env_tpl


def _modes(target: Target, paths: list[str]) -> dict[str, int]:
    """Permission bits of existing files on the target (one `stat` for all)."""
    return {path: bits for path, (bits, _gid) in _stats(target, paths).items()}


def _stats(target: Target, paths: list[str]) -> dict[str, tuple[int, int]]:
    """(permission bits, group id) of existing files on the target (one `stat` for all)."""
    if not paths:
        return {}
    try:
        result = target.run(["stat", "-c", "%a %g %n", "--", *paths], timeout=15)
    except (OSError, TimeoutError):
        return {}
    stats: dict[str, tuple[int, int]] = {}
    for line in result.stdout.splitlines():
        bits, _, rest = line.partition(" ")
        gid, _, name = rest.partition(" ")
        if bits.isdigit() and gid.isdigit():
            stats[name] = (int(bits, 8), int(gid))
    return stats


def _read_target(target: Target, path: str, root: str) -> bytes | None:
    """A managed file below the deployment directory `root`, None when absent. A link there
    is refused, never followed (it could show another file in the diff, or make a secret
    the base of customer.env)."""
    from installer.target import LinkRefused

    try:
        return target.read_deployment_file(path, root)
    except LinkRefused as exc:
        raise InputError(f"{exc.path} on {target.name} is a symbolic link: the installer does "
                         "not follow links in the deployment directory",
                         f"find out who made it (ls -l {exc.path}); replace it with the real "
                         "file or folder, or remove it so that it is created") from None
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        raise InputError(f"{path} is a folder where a file is expected") from None
    except PermissionError:
        raise InputError(f"cannot read {path}: permission denied",
                         "run as the user that owns the deployment directory, or set "
                         "target.sudo") from None


@dataclass
class Inputs:
    """The answers' local inputs, read and checked before anything else happens."""

    directory: str
    package: Package
    settings: list[tuple[str, str, str]]
    certificate: tuple[bytes, bytes] | None  # given (cert, key), None to generate/reuse
    extra_files: list[tuple[str, bytes]]  # (name in certs/, content): CA files
    release: list[ReleaseFile] | None = None  # the vendor's release, to lay down first
    # (name in certs/, content, mode): the advanced answers' files (render/storage.py)
    advanced_files: list[tuple[str, bytes, int]] = dataclasses.field(default_factory=list)


def check_inputs(answers: Answers, target: Target, redactor: Redactor,
                 new_release: list[ReleaseFile] | None = None) -> Inputs:
    """Everything about the input that does not depend on the Compose version: required
    answers, the deployment directory, the package, the TLS and CA files. Raises
    AnswersError naming the key; reads, never writes.

    `new_release` (upgrade): the vendor's release whose files replace those of the existing
    deployment directory."""
    validate(answers, "compose")  # the one judgement the CLI and the wizard apply too
    assert answers.package is not None and answers.domain is not None
    directory = answers.compose.directory
    if not posixpath.isabs(directory):
        raise AnswersError("compose.directory", f"{directory!r} is not an absolute path",
                           "give the full path of the deployment directory on the target, "
                           "e.g. /opt/carto")
    directory = posixpath.normpath(directory)
    settings = owned_settings(answers)
    tls = answers.tls
    certificate = None
    if tls.certificate_file and tls.key_file:  # both or neither (validate)
        certificate = _given_certificate(answers, redactor)
    extra: list[tuple[str, bytes]] = []
    db = answers.database
    if not db.bundled and db.ssl.enabled and db.ssl.ca_file:
        extra.append((DB_CA_NAME, read_ca_file(db.ssl.ca_file, "database.ssl.ca_file",
                                               "database CA file")))
    if not answers.redis.bundled and answers.redis.tls_ca_file:
        extra.append((REDIS_CA_NAME, read_ca_file(answers.redis.tls_ca_file,
                                                  "redis.tls_ca_file", "Redis CA file")))
    proxy = answers.network.proxy
    if proxy is not None and proxy.ca_file:
        extra.append((PROXY_CA_NAME, read_ca_file(proxy.ca_file, "network.proxy.ca_file",
                                                  "proxy CA file")))
    release = new_release
    if release is None and answers.compose.release and _absent_or_empty(target, directory):
        from installer.release import read_release

        release = read_release(answers.compose.release)
    # ---- advanced answers: the buckets' key and the trusted CA bundle (render/storage.py)
    from installer.render.storage import compose_files

    advanced_files = compose_files(answers)
    for _name, secret_data, mode in advanced_files:
        if mode == 0o600:
            redactor.add(secret_data)
    # ---- end of advanced answers
    missing = [name for name in VENDOR_FILES
               if release is None and not target.exists(posixpath.join(directory, name))]
    if missing:
        where = "does not exist" if not target.exists(directory) else f"lacks {', '.join(missing)}"
        raise AnswersError(
            "compose.directory",
            f"{directory} on {target.name} {where}: it must be the vendor's deployment "
            "directory (docker-compose.yml, env.tpl, VERSION, MIN_VERSION)",
            "unpack CARTO's carto-selfhosted release there, point compose.directory at it, "
            "or name the release (zip, tar.gz or folder) in compose.release to have it laid "
            "down in an absent or empty compose.directory",
        )
    package = read_package(answers.package, "compose", redactor)
    if package.defects:
        raise AnswersError("package", f"the installation package has defects: "
                           f"{package.summary()}", package.remediation())
    return Inputs(directory, package, settings, certificate, extra, release,
                  advanced_files)


def _absent_or_empty(target: Target, directory: str) -> bool:
    if not target.exists(directory):
        return True
    try:
        return not target.listdir(directory)
    except OSError:
        return False


def plan_compose(answers: Answers, target: Target, *, redactor: Redactor,
                 compose_command: Sequence[str] | None = None,
                 compose_version: str | None = None,
                 new_release: list[ReleaseFile] | None = None) -> RenderPlan:
    inputs = check_inputs(answers, target, redactor, new_release)
    assert answers.domain is not None
    directory, package, settings = inputs.directory, inputs.package, inputs.settings
    tool = tool_from(compose_command, compose_version) or detect_compose(target)
    flavour: Flavour | None = tool.flavour if tool else None
    for answer_key, _key, value in settings:
        problem = cannot_hold(value, flavour)
        if problem:
            reader = FLAVOUR_NAMES[flavour] if flavour else "Docker Compose (v1 or v2)"
            raise AnswersError(answer_key, f"the value cannot be written to customer.env for "
                               f"{reader}: {problem}")

    notes: list[str] = []
    customer_path = posixpath.join(directory, "customer.env")
    current_customer = _read_target(target, customer_path, directory)
    base_text = (current_customer if current_customer is not None
                 else package.files["customer.env"]).decode("utf-8", "replace")
    env = EnvFile.parse(base_text)
    before_env = EnvFile.parse(base_text)
    if current_customer is None:
        notes.append("customer.env copied from the installation package")

    note = _rename_legacy(env)
    if note:
        notes.append(note)

    # A new package meets the current customer.env: a three-way merge against the package
    # the current file came from (see installer.render.merge).
    package_env = EnvFile.parse(package.files["customer.env"].decode("utf-8-sig", "replace"))
    _rename_legacy(package_env)
    record_path = posixpath.join(directory, BASE_RECORD)
    base = BaseRecord.loads(_read_target(target, record_path, directory))
    merge = MergeResult()
    if current_customer is not None:
        merge = merge_package(env, package_env, base,
                              take_package=answers.compose.take_package,
                              keep_mine=answers.compose.keep_mine, license_keys=LICENSE_KEYS)
        if merge.note and merge.classes():
            notes.append(merge.note)
    record = BaseRecord.of(package_env, package.version or "", base.salt if base else None)

    for group in setting_groups(settings):
        env.fill_block(group, flavour)
    ssl = ssl_note(answers)
    if ssl:
        notes.append(ssl)

    new_customer = env.text().encode("utf-8")
    for key in env.keys():
        if is_secret_key(key):
            redactor.add(env.get(key, flavour or "v2"))

    def vendor_file(name: str) -> bytes:
        if inputs.release is not None:
            return release_file(inputs.release, name) or b""
        return _read_target(target, posixpath.join(directory, name), directory) or b""

    version = vendor_file("VERSION")
    env_tpl = vendor_file("env.tpl")
    compose_yml = vendor_file("docker-compose.yml")
    template_text = env_tpl.decode("utf-8", "replace")
    missing = package_gaps(template_text, compose_yml.decode("utf-8", "replace"), env, [])
    if missing:
        raise AnswersError("package", describe_gaps(missing, template_text), GAPS_FIX)
    dotenv = build_dotenv(new_customer, version, env_tpl)
    for key, value in EnvFile.parse(dotenv.decode("utf-8", "replace")).items(
            flavour or "v2").items():
        if is_secret_key(key):
            redactor.add(value)

    certs = posixpath.join(directory, "certs")
    domain = answers.domain
    cert_path = posixpath.join(certs, f"{domain}.crt")
    key_path = posixpath.join(certs, f"{domain}.key")
    wanted: list[tuple[str, bytes, int, bool]] = [
        (posixpath.join(directory, file.name), file.data, file.mode, False)
        for file in inputs.release or []]
    if inputs.release and new_release is None:
        notes.append(f"the deployment directory is laid down from the vendor's release "
                     f"{answers.compose.release} ({len(inputs.release)} files)")
    wanted += [
        (posixpath.join(certs, "key.json"), package.files["key.json"], 0o600, True),
        (posixpath.join(directory, "key.json"), package.files["key.json"], 0o600, True),
    ]
    if inputs.certificate is not None:
        cert_pem, key_pem = inputs.certificate
    else:
        existing_cert = _read_target(target, cert_path, directory)
        existing_key = _read_target(target, key_path, directory)
        if existing_key:
            redactor.add(existing_key)
        if reusable_self_signed(existing_cert, existing_key, domain):
            assert existing_cert is not None and existing_key is not None
            cert_pem, key_pem = existing_cert, existing_key
        else:
            cert_pem, key_pem = _generate(domain, redactor)
            redactor.add(key_pem)
            notes.append(f"generated a self-signed certificate for {domain} "
                         f"(valid {SELF_SIGNED_DAYS} days); browsers will warn until you "
                         "give a certificate from a trusted CA")
    wanted += [(cert_path, cert_pem, 0o644, False), (key_path, key_pem, 0o600, True)]
    wanted += [(posixpath.join(certs, name), data, 0o644, False)
               for name, data in inputs.extra_files]
    wanted += [(posixpath.join(certs, name), data, mode, mode == 0o600)
               for name, data, mode in inputs.advanced_files]
    wanted += [(customer_path, new_customer, 0o600, True),
               (posixpath.join(directory, ".env"), dotenv, 0o600, True),
               (record_path, record.dumps(), 0o600, True)]

    release_paths = {posixpath.join(directory, f.name) for f in inputs.release or []}
    # A release laid down in an absent directory replaces nothing; an upgrade's does.
    current = {path: (current_customer if path == customer_path
                      else None if path in release_paths and new_release is None
                      else _read_target(target, path, directory))
               for path, *_ in wanted}
    # Files a container reads as its own non-root user: group-readable by exactly its group.
    readers = {posixpath.join(certs, "key.json"): BACKEND_GID, key_path: ROUTER_GID}
    stats = _stats(target, [path for path, data in current.items() if data is not None])
    modes = {path: bits for path, (bits, _gid) in stats.items()}
    changes: list[FileChange] = []
    for path, data, mode, secret in wanted:
        reader_gid = readers.get(path)
        if reader_gid is not None:
            mode = READER_MODE
        before = current[path]
        if before == data and modes.get(path) == mode and (
                reader_gid is None or stats.get(path, (0, -1))[1] == reader_gid):
            continue
        change = FileChange(path, before, data, mode, secret, modes.get(path), group=reader_gid,
                            from_release=path in release_paths)
        if path == customer_path and before is not None:
            change.keys_changed = changed_keys(before_env if before is not None
                                               else EnvFile([]), env)
            owned_keys = {key for _answer, key, _value in settings}
            from_answers = [key for key in change.keys_changed if key in owned_keys]
            change.classes = merge.classes() + (
                [f"set from the answers: {', '.join(from_answers)}"] if from_answers else [])
        elif path == record_path:
            change.classes = ["records which package customer.env now comes from (key "
                              "names and salted SHA-256 digests of the values, no values)"]
        elif path.endswith("/.env") and before is not None:
            change.keys_changed = changed_keys(EnvFile.parse(before.decode("utf-8", "replace")),
                                               EnvFile.parse(data.decode("utf-8", "replace")))
        changes.append(change)

    backups: list[str] = []
    backup_sources: dict[str, bytes] = {}
    customer_change = next((c for c in changes if c.path == customer_path), None)
    if (current_customer is not None and customer_change and customer_change.content_changed
            and not _already_backed_up(target, directory, current_customer)):
        backup = _backup_name(target, directory)
        backups.append(backup)
        backup_sources[backup] = current_customer
    if tool is None:
        notes.append("no Docker Compose found on the target: values were written so that "
                     "both docker-compose v1 and docker compose v2 read them")
    stale = stale_temp_files(target, [path for path, *_ in wanted])
    if merge.conflicts and not changes:
        changes.append(FileChange(customer_path, current_customer, new_customer, 0o600, True,
                                  modes.get(customer_path), classes=merge.classes()))
    removals = _previous_domain_files(target, certs, before_env if current_customer else None,
                                      domain)
    plan = RenderPlan(changes, backups, notes, directory=directory, stale=stale,
                      conflicts=merge.conflicts, removals=removals,
                      backup_sources=backup_sources,
                      directories=[directory, *folders(directory, inputs.release or []), certs],
                      compose_command=tool.command if tool else [],
                      flavour=flavour, trusted_certificate=cert_pem)
    log.info("render plan for %s: %d file(s) to write, %d backup(s)", directory, len(changes),
             len(backups))
    return plan


def _previous_domain_files(target: Target, certs: str, before: EnvFile | None,
                           domain: str) -> list[str]:
    """The certificate and key of the domain customer.env named before, when it changes:
    left in certs/ they would be a stale private key nobody uses."""
    old = before.get("SELFHOSTED_DOMAIN") if before is not None else None
    if not old or old == domain or "/" in old or old.startswith("."):
        return []
    paths = [posixpath.join(certs, f"{old}.crt"), posixpath.join(certs, f"{old}.key")]
    return [path for path in paths if target.exists(path)]


def _rename_legacy(env: EnvFile) -> str | None:
    """The vendor renames variables (installer.vendor.RENAMES); install.sh renames the line in
    place, so do we."""
    from installer.vendor import renames_in

    notes: list[str] = []
    for rename in renames_in(env.keys()):
        if rename.new in env:
            env.remove(rename.old)
            notes.append(f"removed the legacy {rename.old} line ({rename.new} is set)")
        else:
            env.rename(rename.old, rename.new)
            notes.append(f"renamed {rename.old} to {rename.new}")
    return "; ".join(notes) or None


def _already_backed_up(target: Target, directory: str, content: bytes) -> bool:
    """True when the newest backup holds exactly this content (a run interrupted after its
    backup but before customer.env itself must not leave a second copy on the next run)."""
    try:
        names = sorted((n for n in target.listdir(directory) if n.startswith("customer.env.bak.")),
                       key=_backup_order)
    except OSError:
        return False
    newest = posixpath.join(directory, names[-1]) if names else ""
    return bool(names) and _read_target(target, newest, directory) == content


def _backup_order(name: str) -> tuple[str, int]:
    stamp, _, counter = name.removeprefix("customer.env.bak.").partition("-")
    return stamp, int(counter) if counter.isdigit() else 1


def _backup_name(target: Target, directory: str) -> str:
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    try:
        existing = set(target.listdir(directory))
    except OSError:
        existing = set()
    name, counter = f"customer.env.bak.{stamp}", 1
    while name in existing:
        counter += 1
        name = f"customer.env.bak.{stamp}-{counter}"
    return posixpath.join(directory, name)
