"""Rendering for Docker Compose: customer.env, certs/ and .env in the deployment directory.

What the vendor's install.sh does by hand, done so that it can be repeated: customer.env is
updated in place (only the keys listed in `owned_settings` and the license's keys change),
the legacy POSTGRES_PASSWORD line is renamed, the certificates and CA files are placed in
certs/, and .env is built as customer.env, then CARTO_SELFHOSTED_VERSION=<VERSION>, then
env.tpl. Values are encoded for the Compose that will read them (see installer.envfile).
"""

from __future__ import annotations

import datetime
import functools
import logging
import posixpath
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from installer.answers import Answers, Secret, require
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
from installer.render import FileChange, RenderPlan, stale_temp_files

if TYPE_CHECKING:
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


def _secret(value: Secret | None) -> str | None:
    return None if value is None else value.value


def owned_settings(answers: Answers) -> list[tuple[str, str, str]]:
    """(answer key, customer.env key, value) for every key the installer owns.

    Keys whose answer is absent are left as they are in customer.env.
    """
    require(answers, "domain")
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
        require(answers, "database.host", "database.password", "database.admin_password")
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
            ("database.ssl.enabled", "WORKSPACE_POSTGRES_SSL_ENABLED",
             "true" if db.ssl.enabled else "false"),
        ]
        if db.ssl.enabled:
            out.append(("database.ssl.mode", "WORKSPACE_POSTGRES_SSL_MODE", db.ssl.mode))
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
        require(answers, "redis.host")
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
    return out


def _read_local(path: str, answer_key: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise AnswersError(answer_key, f"the {what} {path} does not exist") from None
    except IsADirectoryError:
        raise AnswersError(answer_key, f"{path} is a folder, not the {what}") from None
    except OSError as exc:
        raise AnswersError(answer_key, f"cannot read the {what} {path}: "
                           f"{exc.strerror or exc}") from None


def _given_certificate(answers: Answers, redactor: Redactor) -> tuple[bytes, bytes]:
    from cryptography import x509

    tls = answers.tls
    assert tls.certificate_file and tls.key_file
    cert_pem = _read_local(tls.certificate_file, "tls.certificate_file", "certificate file")
    key_pem = _read_local(tls.key_file, "tls.key_file", "key file")
    redactor.add(key_pem)
    try:
        chain = x509.load_pem_x509_certificates(cert_pem)
    except ValueError:
        raise AnswersError("tls.certificate_file",
                           f"{tls.certificate_file} holds no PEM certificate",
                           "give the certificate in PEM form (-----BEGIN CERTIFICATE-----), "
                           "leaf first, then intermediates") from None
    try:
        key_public = _key_public_der(key_pem)
    except TypeError:
        raise AnswersError("tls.key_file", f"{tls.key_file} is protected by a passphrase, "
                           "which CARTO's router cannot use",
                           f"remove it: `openssl pkey -in {tls.key_file} -out key-plain.pem`, "
                           "then point tls.key_file at key-plain.pem (keep it private)") from None
    except (ValueError, UnicodeError):
        raise AnswersError("tls.key_file", f"{tls.key_file} holds no PEM private key",
                           "give the unencrypted private key in PEM form") from None
    if key_public != _public_der(chain[0].public_key()):
        raise AnswersError("tls.key_file", "the key does not belong to the certificate "
                           f"{tls.certificate_file} (its first certificate, the leaf)",
                           "give the key the certificate was issued for")
    return cert_pem, key_pem


@functools.lru_cache(maxsize=8)
def _key_public_der(key_pem: bytes) -> bytes:
    """The public half of a PEM private key. Loading checks the key's consistency, which
    is slow for RSA; a run loads the same key several times (preflight, render, re-render)."""
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    return _public_der(load_pem_private_key(key_pem, password=None).public_key())


def _public_der(public_key: object) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return public_key.public_bytes(  # type: ignore[attr-defined,no-any-return]
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
    if not paths:
        return {}
    try:
        result = target.run(["stat", "-c", "%a %n", "--", *paths], timeout=15)
    except (OSError, TimeoutError):
        return {}
    modes: dict[str, int] = {}
    for line in result.stdout.splitlines():
        bits, _, name = line.partition(" ")
        if bits.isdigit():
            modes[name] = int(bits, 8)
    return modes


def _read_target(target: Target, path: str) -> bytes | None:
    try:
        return target.read_file(path)
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


def check_inputs(answers: Answers, target: Target, redactor: Redactor) -> Inputs:
    """Everything about the input that does not depend on the Compose version: required
    answers, the deployment directory, the package, the TLS and CA files. Raises
    AnswersError naming the key; reads, never writes."""
    require(answers, "package", "domain")
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
    if tls.certificate_file or tls.key_file:
        if not (tls.certificate_file and tls.key_file):
            missing_key = "tls.key_file" if tls.certificate_file else "tls.certificate_file"
            raise AnswersError(missing_key, "is required when the other TLS file is given",
                               "give both tls.certificate_file and tls.key_file, or neither "
                               "to have a self-signed certificate generated")
        certificate = _given_certificate(answers, redactor)
    extra: list[tuple[str, bytes]] = []
    db = answers.database
    if not db.bundled and db.ssl.enabled and db.ssl.ca_file:
        extra.append((DB_CA_NAME, _read_local(db.ssl.ca_file, "database.ssl.ca_file",
                                              "database CA file")))
    if not answers.redis.bundled and answers.redis.tls_ca_file:
        extra.append((REDIS_CA_NAME, _read_local(answers.redis.tls_ca_file,
                                                 "redis.tls_ca_file", "Redis CA file")))
    proxy = answers.network.proxy
    if proxy is not None and proxy.ca_file:
        extra.append((PROXY_CA_NAME, _read_local(proxy.ca_file, "network.proxy.ca_file",
                                                 "proxy CA file")))
    missing = [name for name in VENDOR_FILES
               if not target.exists(posixpath.join(directory, name))]
    if missing:
        where = "does not exist" if not target.exists(directory) else f"lacks {', '.join(missing)}"
        raise AnswersError(
            "compose.directory",
            f"{directory} on {target.name} {where}: it must be the vendor's deployment "
            "directory (docker-compose.yml, env.tpl, VERSION, MIN_VERSION)",
            "unpack CARTO's carto-selfhosted release there, or point compose.directory at it",
        )
    package = read_package(answers.package, "compose", redactor)
    if package.defects:
        raise AnswersError("package", f"the installation package has defects: "
                           f"{package.summary()}", package.remediation())
    return Inputs(directory, package, settings, certificate, extra)


def plan_compose(answers: Answers, target: Target, *, redactor: Redactor,
                 compose_command: Sequence[str] | None = None,
                 compose_version: str | None = None) -> RenderPlan:
    inputs = check_inputs(answers, target, redactor)
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
    current_customer = _read_target(target, customer_path)
    base_text = (current_customer if current_customer is not None
                 else package.files["customer.env"]).decode("utf-8", "replace")
    env = EnvFile.parse(base_text)
    before_env = EnvFile.parse(base_text)
    if current_customer is None:
        notes.append("customer.env copied from the installation package")

    note = _rename_legacy(env)
    if note:
        notes.append(note)

    # The license's keys follow the package, so a new package takes effect on re-render.
    package_env = EnvFile.parse(package.files["customer.env"].decode("utf-8-sig", "replace"))
    _rename_legacy(package_env)
    for key in package_env.keys():
        raw = package_env.raw(key)
        if raw is None:
            continue
        if key in LICENSE_KEYS or key not in env:
            if env.raw(key) != raw:
                env.set_line(key, raw)

    for _answer_key, key, value in settings:
        env.set(key, value, flavour)

    new_customer = env.text().encode("utf-8")
    for key in env.keys():
        if is_secret_key(key):
            redactor.add(env.get(key, flavour or "v2"))

    version = _read_target(target, posixpath.join(directory, "VERSION")) or b""
    env_tpl = _read_target(target, posixpath.join(directory, "env.tpl")) or b""
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
        (posixpath.join(certs, "key.json"), package.files["key.json"], 0o600, True),
        (posixpath.join(directory, "key.json"), package.files["key.json"], 0o600, True),
    ]
    if inputs.certificate is not None:
        cert_pem, key_pem = inputs.certificate
    else:
        existing_cert = _read_target(target, cert_path)
        existing_key = _read_target(target, key_path)
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
    wanted += [(customer_path, new_customer, 0o600, True),
               (posixpath.join(directory, ".env"), dotenv, 0o600, True)]

    current = {path: (current_customer if path == customer_path else _read_target(target, path))
               for path, *_ in wanted}
    modes = _modes(target, [path for path, data in current.items() if data is not None])
    changes: list[FileChange] = []
    for path, data, mode, secret in wanted:
        before = current[path]
        if before == data and modes.get(path) == mode:
            continue
        change = FileChange(path, before, data, mode, secret, modes.get(path))
        if path == customer_path and before is not None:
            change.keys_changed = changed_keys(before_env if before is not None
                                               else EnvFile([]), env)
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
    removals = _previous_domain_files(target, certs, before_env if current_customer else None,
                                      domain)
    plan = RenderPlan(changes, backups, notes, directory=directory, stale=stale,
                      removals=removals,
                      backup_sources=backup_sources, directories=[directory, certs],
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
    """The vendor renamed POSTGRES_PASSWORD; install.sh renames the line in place, so do we."""
    if "POSTGRES_PASSWORD" not in env:
        return None
    if "POSTGRES_ADMIN_PASSWORD" in env:
        env.remove("POSTGRES_PASSWORD")
        return "removed the legacy POSTGRES_PASSWORD line (POSTGRES_ADMIN_PASSWORD is set)"
    env.rename("POSTGRES_PASSWORD", "POSTGRES_ADMIN_PASSWORD")
    return "renamed POSTGRES_PASSWORD to POSTGRES_ADMIN_PASSWORD"


def _already_backed_up(target: Target, directory: str, content: bytes) -> bool:
    """True when the newest backup holds exactly this content (a run interrupted after its
    backup but before customer.env itself must not leave a second copy on the next run)."""
    try:
        names = sorted((n for n in target.listdir(directory) if n.startswith("customer.env.bak.")),
                       key=_backup_order)
    except OSError:
        return False
    return bool(names) and _read_target(target, posixpath.join(directory, names[-1])) == content


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
