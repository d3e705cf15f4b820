"""Rendering for Kubernetes: `customizations.yaml` next to the answers file, without secrets.

The vendor's two package files (carto-values.yaml, carto-secrets.yaml) are used as they are:
straight from the package folder, or extracted next to customizations.yaml when the package is
a zip (carto-secrets.yaml with mode 0600). helm reads the three files in that order, the
right-most winning.

No secret goes into customizations.yaml: the TLS pair and the database and Redis passwords
go into Kubernetes Secrets that deploy creates (`secret_manifests`), referenced by name
through the chart's `existingSecret` keys. An existing customizations.yaml is kept: only the
keys the installer owns change (the admin's own customisations stay), passwords pasted into
it are removed, and the previous file is backed up once when anything changes. Rendering
needs no cluster.
"""

from __future__ import annotations

import base64
import copy
import shutil
import stat
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from installer.answers import Answers, Secret, require, require_tls_pair, validate
from installer.errors import InputError
from installer.render import FileChange, RenderPlan
from installer.userfiles import CERTIFICATE_LIMIT
from installer.yamldata import YAMLMapping, overlay

if TYPE_CHECKING:
    from installer.chart import ChartFiles
    from installer.package import Package
    from installer.redact import Redactor
    from installer.target import Target

CUSTOMIZATIONS = "customizations.yaml"
VALUES = "carto-values.yaml"
SECRETS = "carto-secrets.yaml"
# Keys inside the Secrets; the chart is told each name through existingSecret*Key.
TLS_CERT_KEY, TLS_KEY_KEY = "tls.crt", "tls.key"
DB_PASSWORD_KEY, DB_ADMIN_PASSWORD_KEY = "carto-password", "admin-password"
REDIS_PASSWORD_KEY = "carto-redis-password"  # noqa: S105 - a key name, not a password
# Always excluded from the proxy: in-cluster service traffic must never go through it.
PROXY_EXCLUDED_ALWAYS = (".svc.cluster.local", "localhost", "127.0.0.1")
ADMIN_KEYS = tuple(f"externalPostgresql.{k}" for k in (
    "adminUser", "adminDatabase", "adminPassword", "existingSecretAdminPasswordKey"))
_DELETE = object()  # marks an owned key that must not be in the file
HEADER = (
    "# customizations.yaml for the CARTO Helm chart, kept by carto-installer.\n"
    "# The installer owns the keys it writes here and leaves any other key alone. No secrets:\n"
    "# the TLS pair and passwords are in Kubernetes Secrets referenced by existingSecret.\n"
)


@dataclass(frozen=True)
class SecretNames:
    tls: str
    postgresql: str
    redis: str


def secret_names(answers: Answers) -> SecretNames:
    release = answers.kubernetes.release
    return SecretNames(tls=f"{release}-tls-certificate",
                       postgresql=f"{release}-external-postgresql",
                       redis=f"{release}-external-redis")


def working_directory(answers: Answers | None = None) -> Path:
    """Where customizations.yaml goes: next to the answers file (CONTRACT.md), else here."""
    if answers is not None and answers.source is not None:
        return Path(answers.source).resolve().parent
    return Path.cwd()


def require_local(answers: Answers, target: Target) -> None:
    if answers.target is not None or not target.is_local:
        raise InputError(
            "for Kubernetes, kubectl and helm run on this machine: the answers must not name "
            "a `target:`",
            "remove the `target:` section (it is for the Docker Compose VM) and make sure this "
            "machine reaches the cluster with the kubeconfig given in kubernetes.kubeconfig")


def _ca_text(path: str | None, key: str, what: str) -> str | None:
    """A CA certificate file's PEM text (public: it may go into the values file), judged by
    the same parser as Compose and the preflight checks."""
    if not path:
        return None
    from installer.render.compose import read_ca_file

    return read_ca_file(path, key, what).decode("ascii", "replace")


def read_kubernetes_package(answers: Answers, redactor: Redactor) -> Package:
    from installer.package import read_package

    validate(answers, "kubernetes", secrets=False)
    assert answers.package is not None
    package = read_package(answers.package, "kubernetes", redactor)
    if not package.ok:
        raise InputError(f"the installation package is not usable: {package.summary()}",
                         package.remediation())
    return package


def tls_pair(answers: Answers, redactor: Redactor) -> tuple[bytes, bytes] | None:
    """(certificate chain, key) checked like for Compose, or None for a generated one."""
    tls = answers.tls
    if not tls.certificate_file and not tls.key_file:
        return None
    require_tls_pair(answers)  # one rule with Compose and the wizard's Domain and TLS step
    from installer.render.compose import _given_certificate

    return _given_certificate(answers, redactor)


def _proxy_values(answers: Answers) -> YAMLMapping:
    proxy = answers.network.proxy
    url = (proxy.https or proxy.http) if proxy else None
    if proxy is None or not url:
        return {"enabled": False}
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    excluded = list(PROXY_EXCLUDED_ALWAYS)
    for item in (proxy.no_proxy or "").split(","):
        item = item.strip()
        if item and item not in excluded:
            excluded.append(item)
    values: YAMLMapping = {"enabled": True, "host": parts.hostname, "port": port,
                              "type": parts.scheme, "excludedDomains": excluded,
                              "sslRejectUnauthorized": True}
    ca = _ca_text(proxy.ca_file, "network.proxy.ca_file", "proxy CA file")
    values["sslCA"] = ca if ca else _DELETE
    return values


def database_tls_enabled(answers: Answers) -> bool:
    """The chart knows TLS on (it then connects with sslmode `require`) or off (`disable`):
    `disable` in the answers means off whatever `enabled` says."""
    ssl = answers.database.ssl
    return ssl.enabled and ssl.mode != "disable"


def owned_values(answers: Answers, *, admin_credentials: bool = True) -> YAMLMapping:
    """The keys the installer sets in customizations.yaml (`_DELETE`: must be absent).

    `admin_credentials`: whether the chart's workloads read the database admin's name and
    password (see `ChartFacts`); when they do not, none is written, so the chart keeps its
    own default (no admin) and nothing is demanded that nothing uses.
    """
    validate(answers, "kubernetes", secrets=False)  # the secrets go into Secrets, not here
    names = secret_names(answers)
    k8s = answers.kubernetes
    given_tls = bool(answers.tls.certificate_file and answers.tls.key_file)
    tls: YAMLMapping = {"httpsEnabled": True, "autoGenerate": not given_tls}
    tls["existingSecret"] = ({"name": names.tls, "keyKey": TLS_KEY_KEY, "certKey": TLS_CERT_KEY}
                             if given_tls else _DELETE)
    values: YAMLMapping = {
        "appConfigValues": {"selfHostedDomain": answers.domain},
        "tlsCerts": tls,
        # The other TLS style holds the private key in the values: never, and never both.
        "router": {"service": {"type": k8s.service_type}, "tlsCertificates": _DELETE},
        "global": {"imageRegistry": k8s.image_registry or _DELETE},
        "externalProxy": _proxy_values(answers),
    }
    db = answers.database
    if db.bundled:
        values["internalPostgresql"] = {"enabled": True}
        values["externalPostgresql"] = {"password": _DELETE, "adminPassword": _DELETE}
    else:
        tls_on = database_tls_enabled(answers)
        ca = _ca_text(db.ssl.ca_file, "database.ssl.ca_file", "database CA file") \
            if tls_on else None
        values["internalPostgresql"] = {"enabled": False}
        values["externalPostgresql"] = {
            "host": db.host, "port": str(db.port), "user": db.user, "database": db.database,
            "adminUser": db.admin_user if admin_credentials else _DELETE,
            "adminDatabase": db.admin_database if admin_credentials else _DELETE,
            "sslEnabled": tls_on, "sslCA": ca if ca else _DELETE,
            "existingSecret": names.postgresql,
            "existingSecretPasswordKey": DB_PASSWORD_KEY,
            "existingSecretAdminPasswordKey": DB_ADMIN_PASSWORD_KEY if admin_credentials
            else _DELETE,
            "password": _DELETE, "adminPassword": _DELETE,
        }
    redis = answers.redis
    if redis.bundled:
        values["internalRedis"] = {"enabled": True}
        values["externalRedis"] = {"password": _DELETE}
    else:
        ca = _ca_text(redis.tls_ca_file, "redis.tls_ca_file", "Redis CA file") \
            if redis.tls_enabled else None
        values["internalRedis"] = {"enabled": False}
        values["externalRedis"] = {
            "host": redis.host, "port": str(redis.port), "tlsEnabled": redis.tls_enabled,
            "tlsCA": ca if ca else _DELETE,
            "existingSecret": names.redis if redis.password else _DELETE,
            "existingSecretPasswordKey": REDIS_PASSWORD_KEY if redis.password else _DELETE,
            "password": _DELETE,
        }
    # ---- advanced answers (own buckets, Maps key, pull secret, private CA, exposure):
    # installer/render/storage.py; merged last, so they refine the keys above.
    from installer.render.storage import helm_values

    values = overlay(values, helm_values(answers, _DELETE))
    # ---- end of advanced answers
    return values


# ---- what the chart does with these values ---------------------------------------------------


@dataclass(frozen=True)
class ChartFacts:
    """What the chart the answers name does with the values the installer would write, read
    from its files and from `helm template` (offline) of those values."""

    chart: ChartFiles
    registries: list[str]  # of every image its workloads run (host[:port])
    external_database: bool  # rendered with an external PostgreSQL
    # Workloads reading each key of the database Secret (external database only).
    password_readers: list[str] = field(default_factory=list)
    admin_password_readers: list[str] = field(default_factory=list)
    # WORKSPACE_POSTGRES_SSL_MODE values the stack is given -> where.
    database_ssl_modes: dict[str, list[str]] = field(default_factory=dict)

    @property
    def admin_credentials_used(self) -> bool:
        return bool(self.admin_password_readers)

    @property
    def label(self) -> str:
        return f"chart {self.chart.name} {self.chart.version}"


def _private_folder() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="carto-render-"))
    folder.chmod(0o700)
    return folder


def chart_facts(answers: Answers, target: Target, *, redactor: Redactor) -> ChartFacts:
    """Fetch the chart (`helm pull` for a repository reference) and render it with the
    package and the customizations the installer would write; collect what it consumes.

    The values files go to a private temporary folder (0700, files 0600) removed at once.
    Raises ChartError (exit 2) for a chart that cannot be used, InstallerError otherwise."""
    from installer.chart import (
        ALL_KEYS,
        env_values,
        fetch_chart,
        image_registries,
        render_manifests,
        secret_keys_consumed,
    )
    from installer.kube import Kube

    package = read_kubernetes_package(answers, redactor)
    kube = Kube(target, answers.kubernetes)
    fetched = fetch_chart(kube, answers.kubernetes.chart)
    folder = _private_folder()
    try:
        _, existing = _existing_customizations(working_directory() / CUSTOMIZATIONS)
        # Rendered as if the admin credentials were passed: whether any workload then reads
        # them is what decides if they are needed at all.
        customizations = merge_owned(existing, owned_values(answers, admin_credentials=True))
        files = []
        for name, data in ((VALUES, package.files[VALUES]), (SECRETS, package.files[SECRETS]),
                           (CUSTOMIZATIONS, _dump(customizations))):
            path = folder / name
            path.touch(mode=0o600)
            path.write_bytes(data)
            files.append(path)
        manifests = render_manifests(kube, fetched.files.path, answers.kubernetes.release,
                                     answers.kubernetes.namespace, files, folder / "rendered")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        fetched.cleanup()
    external = not answers.database.bundled
    readers: dict[str, list[str]] = {}
    if external:
        readers = secret_keys_consumed(manifests, secret_names(answers).postgresql)
    whole = readers.get(ALL_KEYS, [])
    return ChartFacts(
        chart=fetched.files, registries=image_registries(manifests),
        external_database=external,
        password_readers=readers.get(DB_PASSWORD_KEY, []) + whole,
        admin_password_readers=readers.get(DB_ADMIN_PASSWORD_KEY, []) + whole,
        database_ssl_modes=env_values(manifests, "WORKSPACE_POSTGRES_SSL_MODE"),
    )


def database_notes(answers: Answers, facts: ChartFacts) -> list[str]:
    """Plain statements of what the chart will do with the database, for the plan."""
    db = answers.database
    notes: list[str] = []
    if db.bundled or not facts.external_database:
        return notes
    if facts.admin_credentials_used:
        notes.append(
            f"database: the {facts.label} gives the admin password to "
            f"{', '.join(facts.admin_password_readers[:3])}; it creates the user {db.user} "
            f"and the database {db.database} as {db.admin_user} when they are absent")
    else:
        notes.append(
            f"database: the {facts.label} gives no workload the admin credentials, so "
            f"nothing creates the user {db.user} or the database {db.database}: both must "
            f"exist, {db.user} able to log in to {db.database} and create objects there "
            "(db.workspace checks it); no admin user or password is passed to the chart")
    modes = sorted(facts.database_ssl_modes)
    stack = " or ".join(f"sslmode {m}" for m in modes) if modes else "the chart's default"
    if database_tls_enabled(answers):
        notes.append(
            f"database TLS: CARTO's services connect with {stack} (the chart knows no other "
            "mode): traffic is encrypted, the server's certificate is not checked by them"
            + (f"; the installer verifies it with {db.ssl.ca_file} (verify-full, db.tls) "
               "and passes that CA to the chart (externalPostgresql.sslCA)"
               if db.ssl.ca_file else "; give database.ssl.ca_file to have the installer "
               "verify it")
            + (f"; database.ssl.mode {db.ssl.mode} applies to the installer's own check only"
               if db.ssl.mode != "require" else ""))
    else:
        notes.append(f"database TLS: off; CARTO's services connect with {stack}")
    return notes


def require_admin_credentials(answers: Answers, facts: ChartFacts | None) -> None:
    """The admin's password, when the chart's workloads read it (exit 2 otherwise): the one
    database answer the chart decides about (`validate` requires the others)."""
    if answers.database.bundled:
        return
    if facts is None or facts.admin_credentials_used:
        require(answers, "database.admin_password")


def merge_owned(existing: YAMLMapping, owned: YAMLMapping,
                removed: list[str] | None = None, prefix: str = "") -> YAMLMapping:
    """`existing` with the owned keys set (maps merge, `_DELETE` removes); names the removed
    keys that held something in `removed`."""
    out = copy.deepcopy(existing)
    for key, value in owned.items():
        path = f"{prefix}{key}"
        if value is _DELETE:
            if key in out:
                if removed is not None and out[key] not in (None, "", {}, []):
                    removed.append(path)
                del out[key]
        elif isinstance(value, dict):
            current = out.get(key)
            merged = merge_owned(current if isinstance(current, dict) else {}, value, removed,
                                 path + ".")
            if merged or key in out:
                out[key] = merged
        else:
            out[key] = value
    return out


def _dump(values: YAMLMapping) -> bytes:
    import yaml

    return (HEADER + yaml.safe_dump(values, sort_keys=False, allow_unicode=True,
                                    default_flow_style=False)).encode("utf-8")


def _mode_of(path: Path) -> int | None:
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return None


def _read_own(path: Path) -> bytes | None:
    """A file the installer manages in the working directory, None when absent; a link is
    refused, never followed."""
    from installer.target import LinkRefused, LocalTarget

    try:
        return LocalTarget().read_deployment_file(str(path), str(path.parent))
    except FileNotFoundError:
        return None
    except LinkRefused:
        raise InputError(f"{path} is a symbolic link: the installer does not follow links to "
                         "the files it manages",
                         f"find out who made it (ls -l {path}); replace it with the real file, "
                         "or remove it so that it is created") from None
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None


def _existing_customizations(path: Path) -> tuple[bytes | None, YAMLMapping]:
    from installer.safeyaml import YamlError, load_yaml

    before = _read_own(path)
    if before is None:
        return None, {}
    if len(before) > CERTIFICATE_LIMIT:
        raise InputError(f"{path} is larger than {CERTIFICATE_LIMIT // 2**20} MiB",
                         "fix or move the file")
    try:
        data = load_yaml(before.decode("utf-8", "replace"))
    except YamlError as exc:
        raise InputError(f"{path} {exc}",
                         "fix or move the file; the installer keeps the keys it does not own "
                         "and so must be able to read it") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InputError(f"{path} is not a YAML mapping", "fix or move the file")
    return before, data


def values_files(answers: Answers, directory: Path | None = None) -> list[str]:
    """The -f files for helm, in order: carto-values.yaml, carto-secrets.yaml (from the
    package folder, or extracted next to customizations.yaml), customizations.yaml."""
    folder = directory or working_directory(answers)
    assert answers.package is not None
    package = Path(answers.package)
    source = package if package.is_dir() else folder
    return [str(source / VALUES), str(source / SECRETS), str(folder / CUSTOMIZATIONS)]


def plan_render_kubernetes(answers: Answers, target: Target, *, redactor: Redactor,
                           facts: ChartFacts | None = None) -> RenderPlan:
    """Compute customizations.yaml (and the extracted package files for a zip); write nothing.

    With an external database the chart is rendered first (`chart_facts`, unless `facts` is
    given) to learn which database credentials its workloads read."""
    require_local(answers, target)
    validate(answers, "kubernetes")  # the one judgement the CLI and the wizard apply too
    package = read_kubernetes_package(answers, redactor)
    tls_pair(answers, redactor)  # refuse a bad certificate or key now, before anything runs
    unrendered: str | None = None
    if facts is None and not answers.database.bundled:
        from installer.chart import ChartIncomplete
        from installer.errors import InstallerError

        try:
            facts = chart_facts(answers, target, redactor=redactor)
        except ChartIncomplete:
            raise
        except InstallerError as exc:
            # `render` alone may run where helm or the chart is not at hand; deploy always
            # renders the chart first. Without it, write what older charts needed.
            unrendered = (f"the chart {answers.kubernetes.chart} could not be rendered "
                          f"({exc.message}): the database admin's credentials are passed as "
                          "older charts need; `deploy` decides from the chart itself")
    elif facts is None:
        from installer.chart import local_chart_path, read_chart_files

        local = local_chart_path(answers.kubernetes.chart)
        if local is not None:
            read_chart_files(local)  # a folder without its subcharts: exit 2 now, not in helm
    require_admin_credentials(answers, facts)
    folder = working_directory(answers)
    changes: list[FileChange] = []
    notes: list[str] = database_notes(answers, facts) if facts is not None else []
    if unrendered:
        notes.append(unrendered)
    backups: list[str] = []
    backup_sources: dict[str, bytes] = {}

    if package.kind == "zip":
        for name, mode, secret in ((VALUES, 0o644, False), (SECRETS, 0o600, True)):
            path = folder / name
            data = package.files[name]
            before = _read_own(path)
            if secret and before is not None:
                redactor.add(before)
            mode_before = _mode_of(path)
            if before != data or mode_before != mode:
                changes.append(FileChange(str(path), before, data, mode, secret,
                                          mode_before=mode_before))
    else:
        secrets_path = Path(package.path) / SECRETS
        secrets_mode = _mode_of(secrets_path)
        if secrets_mode is not None and secrets_mode & (stat.S_IRGRP | stat.S_IROTH):
            notes.append(f"{secrets_path} is readable by other users (mode {secrets_mode:o}): "
                         f"`chmod 600 {secrets_path}`")

    path = folder / CUSTOMIZATIONS
    before, existing = _existing_customizations(path)
    removed: list[str] = []
    admin = facts.admin_credentials_used if facts is not None else True
    merged = merge_owned(existing, owned_values(answers, admin_credentials=admin), removed)
    for key in removed:
        unused_admin = not admin and key in ADMIN_KEYS
        notes.append(f"removed {key} from {CUSTOMIZATIONS}: "
                     + ("the chart's workloads read no database admin credentials"
                        if unused_admin else "secrets live in Kubernetes Secrets now"
                        if "assword" in key or "tlsCertificates" in key
                        else "the answers no longer set it"))
    after = _dump(merged)
    mode_before = _mode_of(path)
    # An unchanged meaning keeps the file as it is (with the admin's comments and layout).
    if before is not None and merged == existing:
        after = before
    if before != after or (mode_before is not None and mode_before != 0o644):
        changes.append(FileChange(str(path), before, after, 0o644, False,
                                  mode_before=mode_before))
        if before is not None and before != after:
            backup = f"{path}.bak.{time.strftime('%Y%m%d-%H%M%S')}"
            backups.append(backup)
            backup_sources[backup] = before
    return RenderPlan(changes=changes, backups=backups, notes=notes, directory=str(folder),
                      backup_sources=backup_sources)


# The render dispatch (installer/render/__init__.py) calls `helm.plan_render`.
plan_render = plan_render_kubernetes


# ---- the Secrets deploy creates -------------------------------------------------------------


def _b64(value: str | bytes) -> str:
    raw = value.encode("utf-8") if isinstance(value, str) else value
    return base64.b64encode(raw).decode("ascii")


def _secret_value(secret: Secret | None) -> str:
    assert secret is not None
    return secret.value


def secret_manifests(answers: Answers, redactor: Redactor, *,
                     admin_credentials: bool = True) -> list[YAMLMapping]:
    """The Secrets customizations.yaml references, as API objects (data base64-encoded);
    the admin password only when the chart's workloads read it (`admin_credentials`).

    Only ever sent to `kubectl apply` on its standard input: never on a command line, never
    in a file.
    """
    names = secret_names(answers)
    labels = {"app.kubernetes.io/managed-by": "carto-installer",
              "app.kubernetes.io/instance": answers.kubernetes.release}
    namespace = answers.kubernetes.namespace

    def secret(name: str, data: dict[str, str], kind: str = "Opaque") -> YAMLMapping:
        return {"apiVersion": "v1", "kind": "Secret", "type": kind,
                "metadata": {"name": name, "namespace": namespace, "labels": labels},
                "data": data}

    out: list[YAMLMapping] = []
    pair = tls_pair(answers, redactor)
    if pair is not None:
        cert, key = pair
        out.append(secret(names.tls, {TLS_CERT_KEY: _b64(cert), TLS_KEY_KEY: _b64(key)},
                          "kubernetes.io/tls"))
    db = answers.database
    if not db.bundled:
        data = {DB_PASSWORD_KEY: _b64(_secret_value(db.password))}
        if admin_credentials:
            data[DB_ADMIN_PASSWORD_KEY] = _b64(_secret_value(db.admin_password))
        out.append(secret(names.postgresql, data))
    if not answers.redis.bundled and answers.redis.password is not None:
        out.append(secret(names.redis, {REDIS_PASSWORD_KEY: _b64(answers.redis.password.value)}))
    # ---- advanced answers' Secrets (render/storage.py)
    from installer.render.storage import helm_secret_manifests

    out += helm_secret_manifests(answers, secret)
    # ---- end of advanced answers
    for manifest in out:
        for value in manifest["data"].values():
            redactor.add(value)  # the base64 forms too, should a tool ever echo them
    return out


__all__ = ["CUSTOMIZATIONS", "ChartFacts", "SecretNames", "chart_facts", "database_notes",
           "owned_values", "plan_render",
           "plan_render_kubernetes", "secret_manifests", "secret_names", "values_files"]
