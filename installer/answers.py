"""The answers: every choice the user makes, declared once.

Each setting is a dataclass field whose metadata carries its label, help text and validator.
The YAML loader, the JSON Schema, the wizard screens and the plain prompts all read the same
declarations, so a value accepted by one door is accepted by all three.

Secrets (`secret=True`) may be given inline (`password: ...`), from the environment
(`password_env: VAR`) or from a file (`password_file: PATH`). They are held in `Secret`, whose
repr never shows the value, and each resolved value is handed to the run's `Redactor`.
"""

from __future__ import annotations

import dataclasses
import os
import re
import stat
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import yaml

from installer.errors import AnswersError, AnswersErrors, one_or_all
from installer.redact import Redactor
from installer.safetext import visible_line
from installer.safeyaml import YamlError, load_yaml
from installer.userfiles import ANSWERS_LIMIT, SECRET_LIMIT, read_user_file
from installer.validators import (
    validate_bucket_name,
    validate_domain,
    validate_endpoint_url,
    validate_env_value,
    validate_hostname,
    validate_identifier,
    validate_port,
    validate_probe_timeout,
    validate_proxy_url,
    validate_registry_host,
    validate_storage_account,
    validate_target_directory,
)

ANSWERS_VERSION = 1
PLATFORMS = ("compose", "kubernetes")
CLOUDS = ("gcp", "aws", "azure", "other")
WAREHOUSES = ("bigquery", "carto-dw", "snowflake", "databricks", "postgres", "redshift", "oracle")
FEATURES = ("ai_agents", "lds", "feature_flags", "workload_identity")
SERVICE_TYPES = ("LoadBalancer", "ClusterIP", "NodePort")
STORAGE_PROVIDERS = ("gcp", "s3", "azure-blob")
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


class Secret:
    """A secret value and where it came from. Never printed."""

    __slots__ = ("value", "source")

    def __init__(self, value: str, source: str) -> None:
        self.value = value
        self.source = source  # "inline", "env:NAME" or "file:PATH"

    def __repr__(self) -> str:
        return f"Secret(<hidden>, from {self.source})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other.value == self.value

    def __hash__(self) -> int:
        return hash(self.value)


def setting(
    label: str,
    help: str = "",
    *,
    default: Any = dataclasses.MISSING,
    factory: Callable[[], Any] | None = None,
    validator: Callable[[Any], Any] | None = None,
    secret: bool = False,
    path: Literal["local", "target"] | None = None,
    choices: tuple[str, ...] | None = None,
    key: str | None = None,
) -> Any:
    """Declare one answer: how it is labelled, explained and checked. `key` is its name in the
    file when that cannot be a Python name (`import`)."""
    metadata = {
        "label": label,
        "help": help,
        "validator": validator,
        "secret": secret,
        "path": path,
        "choices": choices,
        "key": key,
    }
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def _choice(choices: tuple[str, ...]) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if value not in choices:
            raise ValueError(f"{_shown(value)} is not one of: {', '.join(choices)}")
        return str(value)

    return check


def _choices(choices: tuple[str, ...]) -> Callable[[Any], list[str]]:
    one = _choice(choices)

    def check(value: Any) -> list[str]:
        if not isinstance(value, list):
            raise ValueError(f"expected a list of: {', '.join(choices)}")
        return [one(item) for item in value]

    return check


@dataclass
class JumpHost:
    host: str = setting("Jump host", "Bastion to go through", validator=validate_hostname)
    port: int = setting("Jump host SSH port", default=22, validator=validate_port)
    user: str | None = setting("Jump host user", "Defaults to the target's user", default=None)
    # The jump host's own credentials: the target's password is never offered to it.
    identity_file: str | None = setting(
        "Jump host identity file", "Private key for the jump host; defaults to the target's",
        default=None, path="local",
    )
    password: Secret | None = setting("Jump host SSH password", default=None, secret=True)


@dataclass
class SSHSettings:
    host: str = setting(
        "Target host", "The machine that will run CARTO, reached over SSH",
        validator=validate_hostname,
    )
    port: int = setting("SSH port", default=22, validator=validate_port)
    user: str | None = setting("SSH user", "Defaults to your local user name", default=None)
    identity_file: str | None = setting(
        "Identity file", "Private key; else ssh-agent, else the password", default=None,
        path="local",
    )
    password: Secret | None = setting("SSH password", default=None, secret=True)
    known_hosts: str = setting(
        "known_hosts file", "Host keys are always verified against it",
        default="~/.ssh/known_hosts", path="local",
    )
    jump: JumpHost | None = setting("Jump host", default=None)
    sudo: bool = setting("Use sudo", "Run privileged commands with sudo", default=False)

    def describe(self) -> str:
        user = self.user or os.environ.get("USER", "root")
        return f"{user}@{self.host}:{self.port}"


def _env_names(value: Any) -> list[str]:
    if not isinstance(value, list):
        raise ValueError("expected a list of customer.env key names")
    for item in value:
        if not isinstance(item, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", item):
            raise ValueError(f"{item!r} is not a customer.env key name")
    return [str(item) for item in value]


@dataclass
class ComposeSettings:
    directory: str = setting(
        "Deployment directory", "The vendor's Compose release, on the target",
        default="/opt/carto", path="target",
        validator=validate_target_directory,
    )
    release: str | None = setting(
        "Vendor release", "Optional: the vendor's release (zip, tar.gz or folder), laid down "
        "as the deployment directory when that is absent", default=None, path="local",
    )
    images_archive: str | None = setting(
        "Images archive", "Optional: `docker load` this archive on the target (no registry)",
        default=None, path="local",
    )
    take_package: list[str] = setting(
        "Take the package's value", "customer.env keys you edited that a newer package also "
        "changed: use the package's value", factory=list, validator=_env_names)
    keep_mine: list[str] = setting(
        "Keep my value", "customer.env keys you edited that a newer package also changed: "
        "keep your value", factory=list, validator=_env_names)
    registry: str | None = setting(
        "Registry needing a login",
        "Optional: the registry host the images come from (e.g. a mirror) when it needs "
        "`docker login`", default=None, validator=validate_registry_host,
    )
    registry_username: str | None = setting("Registry user", default=None)
    registry_password: Secret | None = setting(
        "Registry password", "Given to `docker login --password-stdin` on the target",
        default=None, secret=True,
    )


def _dns_label(what: str, longest: int) -> Callable[[Any], str]:
    """Kubernetes names (namespaces, helm releases): lower-case letters, digits and '-'."""

    def check(value: Any) -> str:
        if not isinstance(value, str) or not value:
            raise ValueError(f"the {what} is empty")
        if len(value) > longest:
            raise ValueError(f"{value!r} is {len(value)} characters; a {what} has at most "
                             f"{longest}")
        if not re.fullmatch(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?", value):
            raise ValueError(f"{value!r} is not a valid {what}: use lower-case letters, digits "
                             "and '-', starting and ending with a letter or digit")
        return value

    return check


def _node_port(value: Any) -> int:
    # Typed text (the wizard) or a number (YAML), like validate_port.
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or not 30000 <= value <= 32767:
        raise ValueError(f"{value!r} is not a node port: Kubernetes gives NodePorts from "
                         "30000 to 32767")
    return value


@dataclass
class KubernetesSettings:
    kubeconfig: str = setting("kubeconfig", default="~/.kube/config", path="local")
    context: str | None = setting("Context", "Defaults to the kubeconfig's current context",
                                  default=None)
    # helm stores a release in a Secret named after it and labels objects with it: at most
    # 53 characters, DNS-label form; a namespace is a DNS label (63).
    namespace: str = setting("Namespace", default="carto", validator=_dns_label("namespace", 63))
    release: str = setting("Release name", default="carto",
                           validator=_dns_label("release name", 53))
    service_type: str = setting(
        "Router service type",
        "LoadBalancer: the cluster gives CARTO an address to point the domain at; ClusterIP: "
        "you expose it yourself (ingress, gateway); NodePort: on a port of every node",
        default="LoadBalancer", validator=_choice(SERVICE_TYPES), choices=SERVICE_TYPES,
    )
    node_port: int | None = setting(
        "HTTPS node port", "NodePort only: the port (30000-32767) every node serves CARTO on",
        default=None, validator=_node_port,
    )
    external_tls: bool = setting(
        "TLS ends at your ingress or gateway",
        "ClusterIP only: your own Ingress/Gateway terminates TLS for the domain and forwards "
        "to the router service; the installer then verifies https://<domain> through it",
        default=False,
    )
    image_pull_username: str | None = setting(
        "Registry user", "When the image registry mirror needs a login", default=None,
    )
    image_pull_password: Secret | None = setting(
        "Registry password", "Stored only in the pull Secret the installer creates",
        default=None, secret=True,
    )
    chart: str = setting("Chart", "carto/carto, or a local .tgz for restricted networks",
                         default="carto/carto")
    image_registry: str | None = setting(
        "Image registry mirror", "Optional: sets global.imageRegistry", default=None,
    )


@dataclass
class TLSSettings:
    certificate_file: str | None = setting(
        "Certificate file",
        "PEM: the domain's certificate first, then its intermediates (leave both files "
        "out for a generated self-signed one)",
        default=None, path="local",
    )
    key_file: str | None = setting(
        "Private key file", "Unencrypted PEM key matching the certificate", default=None,
        path="local",
    )


@dataclass
class DatabaseSSL:
    enabled: bool = setting("Use TLS to the database", default=False)
    mode: str = setting(
        "sslmode", "libpq sslmode; verify-full checks the server's name and CA",
        default="require", validator=_choice(SSL_MODES), choices=SSL_MODES,
    )
    ca_file: str | None = setting("Database CA file", default=None, path="local")


@dataclass
class DatabaseSettings:
    bundled: bool = setting(
        "Bundled PostgreSQL",
        "The vendor's PostgreSQL container is for debugging only and will be removed",
        default=False,
    )
    host: str | None = setting("Database host", default=None, validator=validate_hostname)
    port: int = setting("Database port", default=5432, validator=validate_port)
    admin_user: str = setting(
        "Admin user", "Must be able to create users and databases", default="postgres",
        validator=validate_identifier,
    )
    admin_password: Secret | None = setting("Admin password", default=None, secret=True)
    admin_database: str = setting("Admin database", default="postgres",
                                  validator=validate_identifier)
    user: str = setting("CARTO database user", default="workspace_admin",
                        validator=validate_identifier)
    password: Secret | None = setting("CARTO database user password", default=None, secret=True)
    database: str = setting("CARTO database", default="workspace", validator=validate_identifier)
    ssl: DatabaseSSL = setting("TLS", factory=DatabaseSSL)


@dataclass
class RedisSettings:
    bundled: bool = setting("Bundled Redis", default=True)
    host: str | None = setting("Redis host", default=None, validator=validate_hostname)
    port: int = setting("Redis port", default=6379, validator=validate_port)
    password: Secret | None = setting("Redis password", default=None, secret=True)
    tls_enabled: bool = setting("Redis TLS", default=False)
    tls_ca_file: str | None = setting("Redis CA file", default=None, path="local")


@dataclass
class ProxySettings:
    http: str | None = setting("HTTP proxy", default=None, validator=validate_proxy_url)
    https: str | None = setting("HTTPS proxy", default=None, validator=validate_proxy_url)
    no_proxy: str | None = setting("No proxy for", "Comma-separated hosts and .domains",
                                   default=None, validator=validate_env_value)
    ca_file: str | None = setting("Proxy CA file", "When the proxy inspects TLS", default=None,
                                  path="local")


@dataclass
class StorageBuckets:
    imports: str | None = setting(
        "Client (imports) bucket", "Workspace imports and customization assets",
        default=None, validator=validate_bucket_name,
    )
    thumbnails: str | None = setting(
        "Thumbnails bucket", "Map thumbnails", default=None, validator=validate_bucket_name,
    )
    import_bucket: str | None = setting(
        "Import bucket", "Optional: the older three-bucket layout's import bucket (IMPORT_*); "
        "without it imports use the client bucket", default=None,
        validator=validate_bucket_name, key="import",
    )


@dataclass
class StorageSettings:
    provider: str | None = setting(
        "Storage provider", "gcp (Cloud Storage), s3 (Amazon S3 or an S3-compatible store) or "
        "azure-blob", default=None, validator=_choice(STORAGE_PROVIDERS),
        choices=STORAGE_PROVIDERS,
    )
    endpoint: str | None = setting(
        "S3-compatible endpoint", "s3 only, for stores other than AWS (e.g. "
        "https://minio.internal:9000)", default=None, validator=validate_endpoint_url,
    )
    region: str | None = setting("S3 region", "s3: the buckets' region (e.g. eu-west-1)",
                                 default=None, validator=validate_env_value)
    path_style: bool | None = setting(
        "Path-style S3 addressing", "Most S3-compatible stores need it; on by default with an "
        "endpoint", default=None,
    )
    buckets: StorageBuckets = setting("Buckets", factory=StorageBuckets)
    thumbnails_public: bool = setting(
        "Public thumbnails", "true (the vendor's default): the thumbnails bucket must allow "
        "public objects; false: CARTO signs URLs instead", default=True,
    )
    key_file: str | None = setting(
        "Service-account key file", "gcp: a JSON key that may read, write and sign URLs",
        default=None, path="local",
    )
    project_id: str | None = setting(
        "Google Cloud project", "gcp: defaults to the key file's project_id", default=None,
        validator=validate_env_value,
    )
    access_key_id: Secret | None = setting("AWS access key id", "s3", default=None,
                                           secret=True)
    secret_access_key: Secret | None = setting("AWS secret access key", "s3", default=None,
                                               secret=True)
    account: str | None = setting(
        "Azure storage account", "azure-blob: the account holding the containers",
        default=None, validator=validate_storage_account,
    )
    account_key: Secret | None = setting("Azure storage access key", "azure-blob",
                                         default=None, secret=True)


@dataclass
class NetworkSettings:
    proxy: ProxySettings | None = setting("Proxy", default=None)
    cloud: str = setting("Cloud for buckets", default="other", validator=_choice(CLOUDS),
                         choices=CLOUDS)
    warehouses: list[str] = setting("Data warehouses", factory=list,
                                    validator=_choices(WAREHOUSES), choices=WAREHOUSES)
    features: list[str] = setting("Features", factory=list, validator=_choices(FEATURES),
                                  choices=FEATURES)
    snowflake_account_url: str | None = setting(
        "Snowflake account host", "e.g. acme.snowflakecomputing.com", default=None,
        validator=validate_hostname,
    )
    databricks_host: str | None = setting(
        "Databricks workspace host", "e.g. dbc-1234.cloud.databricks.com", default=None,
        validator=validate_hostname,
    )
    bucket_host: str | None = setting(
        "Bucket endpoint host", "AWS or Azure bucket endpoint, e.g. acme.blob.core.windows.net",
        default=None, validator=validate_hostname,
    )
    trusted_ca_file: str | None = setting(
        "Private CA to trust", "PEM CA certificate(s) CARTO must trust for outbound TLS (a "
        "TLS-inspecting proxy, an S3-compatible store with its own CA)", default=None,
        path="local",
    )
    egress_timeout: float = setting(
        "Egress probe timeout (s)", "Per host, for DNS + connect + TLS; hosts are probed at "
        "the same time", default=5.0, validator=validate_probe_timeout,
    )


@dataclass
class Answers:
    version: int = setting("Answers format version", default=ANSWERS_VERSION)
    platform: str = setting("Platform", "compose (Single VM) or kubernetes (Helm)",
                            default="compose", validator=_choice(PLATFORMS), choices=PLATFORMS)
    target: SSHSettings | None = setting("Target", "Omit for this machine", default=None)
    package: str | None = setting(
        "Installation package", "Folder or zip from CARTO", default=None, path="local",
    )
    compose: ComposeSettings = setting("Docker Compose", factory=ComposeSettings)
    kubernetes: KubernetesSettings = setting("Kubernetes", factory=KubernetesSettings)
    domain: str | None = setting("Domain", "A full domain such as carto.example.com",
                                 default=None, validator=validate_domain)
    tls: TLSSettings = setting("TLS", factory=TLSSettings)
    database: DatabaseSettings = setting("Database", factory=DatabaseSettings)
    redis: RedisSettings = setting("Redis", factory=RedisSettings)
    network: NetworkSettings = setting("Network", factory=NetworkSettings)
    storage: StorageSettings | None = setting(
        "Own buckets", "Optional: your own buckets instead of the ones CARTO provides",
        default=None,
    )
    google_maps_api_key: Secret | None = setting(
        "Google Maps API key", "Optional: enables Google Maps basemaps (Maps JavaScript API)",
        default=None, secret=True,
    )

    # Not part of the file: where it came from and what loading it noticed.
    source: Path | None = field(default=None, metadata={"internal": True}, compare=False)
    warnings: list[str] = field(default_factory=list, metadata={"internal": True}, compare=False)
    # Secrets named by `*_env` whose variable is not set: only an error once something that
    # uses them runs (see require_secrets), so `status` needs no database password.
    unresolved: dict[str, AnswersError] = field(default_factory=dict,
                                                metadata={"internal": True}, compare=False)

    def secrets(self) -> list[Secret]:
        found: list[Secret] = []
        _collect_secrets(self, found)
        return found


def _collect_secrets(obj: Any, found: list[Secret]) -> None:
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, Secret):
            found.append(value)
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            _collect_secrets(value, found)


# --- loading -----------------------------------------------------------------------------------


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, globalns=globals())


def _public_fields(cls: type) -> list[dataclasses.Field[Any]]:
    return [f for f in dataclasses.fields(cls) if not f.metadata.get("internal")]


def file_key(f: dataclasses.Field[Any]) -> str:
    """The field's name in the answers file (`key=` when it cannot be a Python name)."""
    return str(f.metadata.get("key") or f.name)


class _Loader:
    def __init__(self, base: Path, redactor: Redactor | None, env: Mapping[str, str],
                 file_is_private: bool) -> None:
        self.base = base
        self.redactor = redactor
        self.env = env
        self.file_is_private = file_is_private
        self.warnings: list[str] = []
        # Every problem found, so one run reports them all.
        self.problems: list[AnswersError] = []
        self.unresolved: dict[str, AnswersError] = {}

    def build(self, cls: type, data: Any, path: str) -> Any:
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise AnswersError(path or "answers", f"expected a mapping, got {_kind(data)}")
        hints = _field_types(cls)
        fields = {file_key(f): f for f in _public_fields(cls)}
        secret_keys: dict[str, str] = {}
        for name, f in fields.items():
            if f.metadata.get("secret"):
                for suffix in ("", "_env", "_file"):
                    secret_keys[name + suffix] = name
        for key in data:
            if not isinstance(key, str) or (key not in fields and key not in secret_keys):
                self.problems.append(unknown_key_problem(path, key,
                                                         set(fields) | set(secret_keys)))
        values: dict[str, Any] = {}
        for name, f in fields.items():
            sub = _join(path, name)
            try:
                if f.metadata.get("secret"):
                    given = [k for k in (name, name + "_env", name + "_file") if k in data]
                    if len(given) > 1:
                        raise AnswersError(sub, f"give only one of {', '.join(given)}")
                    if given:
                        values[name] = self.secret(given[0], data[given[0]],
                                                   _join(path, given[0]))
                    continue
                if name not in data:
                    continue
                values[f.name] = self.value(hints[f.name], f, data[name], sub)
            except AnswersError as problem:
                self.problems.append(problem)
        try:
            return cls(**values)
        except TypeError:  # a required value was refused above; that problem is reported
            return None

    def value(self, tp: Any, f: dataclasses.Field[Any], raw: Any, path: str) -> Any:
        inner, optional = _unwrap_optional(tp)
        if raw is None:
            if optional:
                return None
            raise AnswersError(path, "must not be empty")
        if isinstance(inner, type) and dataclasses.is_dataclass(inner):
            return self.build(inner, raw, path)
        validator = f.metadata.get("validator")
        if inner is bool:
            if not isinstance(raw, bool):
                raise AnswersError(path, f"expected true or false, got {_shown(raw)}")
            value: Any = raw
        elif inner is int and validator is None:
            if isinstance(raw, bool) or not isinstance(raw, int):
                raise AnswersError(path, f"expected a whole number, got {_shown(raw)}")
            value = raw
        elif inner is float:
            if isinstance(raw, bool) or not isinstance(raw, int | float) or raw <= 0:
                raise AnswersError(path, f"expected a positive number, got {_shown(raw)}")
            value = float(raw)
        elif get_origin(inner) is list:
            if not isinstance(raw, list):
                raise AnswersError(path, f"expected a list, got {_kind(raw)}")
            value = raw
        elif inner is str:
            if isinstance(raw, bool) or not isinstance(raw, str | int | float):
                raise AnswersError(path, f"expected text, got {_kind(raw)}")
            value = str(raw)
        else:
            value = raw
        if validator is not None:
            try:
                value = validator(value)
            except ValueError as exc:
                raise AnswersError(path, str(exc)) from None
        elif isinstance(value, str):
            try:
                validate_env_value(value)
            except ValueError as exc:
                raise AnswersError(path, str(exc)) from None
        kind = f.metadata.get("path")
        if kind == "local" and isinstance(value, str):
            value = str(self.local_path(value))
        return value

    def local_path(self, value: str) -> Path:
        p = Path(os.path.expanduser(value))
        return p if p.is_absolute() else (self.base / p)

    def secret(self, key: str, raw: Any, path: str) -> Secret | None:
        if not isinstance(raw, str) or raw == "":
            raise AnswersError(path, "expected text")
        if key.endswith("_env"):
            if raw not in self.env:
                # Not an error yet: only a command or check that uses this secret needs it.
                self.unresolved[path] = AnswersError(
                    path, f"the environment variable {raw} is not set",
                    f"export {raw}=... before running, or use a *_file")
                return None
            value, source = self.env[raw], f"env:{raw}"
        elif key.endswith("_file"):
            file = self.local_path(raw)
            try:
                value = read_user_file(file, limit=SECRET_LIMIT).decode("utf-8").rstrip("\r\n")
            except OSError as exc:
                raise AnswersError(path, f"cannot read {file}: {exc.strerror or exc}") from None
            except UnicodeDecodeError:
                raise AnswersError(path, f"{file} is not UTF-8 text") from None
            source = f"file:{file}"
        else:
            value, source = raw, "inline"
            if not self.file_is_private:
                self.warnings.append(
                    f"{path} is written inline in a file that others can read: "
                    f"use {key}_env or {key}_file, or chmod 600 the answers file"
                )
        try:
            validate_env_value(value)
        except ValueError as exc:
            raise AnswersError(path, f"the secret {exc}") from None
        if value == "":
            raise AnswersError(path, "the secret is empty")
        if self.redactor is not None:
            self.redactor.add(value)
        return Secret(value, source)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _shown(value: Any) -> str:
    """A value quoted in a message: a short scalar as written, anything else by its kind
    only (a structure from the file is never printed: an alias bomb would be expanded)."""
    if isinstance(value, bool | float):
        return repr(value)
    if isinstance(value, int):
        return repr(value) if abs(value) < 10**30 else "a number too large to show"
    if isinstance(value, str):
        text = visible_line(value)
        return repr(text if len(text) <= 60 else text[:60] + "...")
    return _kind(value)


def _kind(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "text", bool: "true/false"}.get(
        type(value), type(value).__name__
    )


def parse_answers(
    data: Any, *, base: Path | None = None, redactor: Redactor | None = None,
    env: Mapping[str, str] | None = None, file_is_private: bool = True,
) -> Answers:
    """Build Answers from already-parsed YAML data, validating every value."""
    loader = _Loader(base or Path.cwd(), redactor, os.environ if env is None else env,
                     file_is_private)
    if not isinstance(data, dict):
        raise AnswersError("", "the answers file must be a YAML mapping (key: value lines)")
    version = data.get("version", ANSWERS_VERSION)
    if isinstance(version, bool) or version != ANSWERS_VERSION:
        raise AnswersError("version", f"unsupported version {_shown(version)}; this tool "
                           "reads 1")
    answers = loader.build(Answers, data, "")
    if loader.problems:
        raise one_or_all(loader.problems)
    assert isinstance(answers, Answers)
    answers.warnings.extend(check_advanced_answers(answers))
    answers.warnings.extend(loader.warnings)
    answers.unresolved.update(loader.unresolved)
    return answers


def check_advanced_answers(answers: Answers) -> list[str]:
    """The advanced settings judged together (the loader and the wizard both call this):
    own buckets, registry logins, the Kubernetes exposure. Raises AnswersError; returns
    warnings. (Files are read, and so checked, when they are used.)"""
    notes: list[str] = []
    if answers.storage is not None:
        notes += check_storage_answers(answers.storage)
    _check_registry_login(answers)
    _check_exposure(answers.kubernetes)
    return notes


# What each provider needs: (answer key, why). Checked once at load, so every command and the
# wizard refuse an incomplete `storage:` the same way (exit 2, nothing written).
_STORAGE_NEEDS: dict[str, tuple[tuple[str, str], ...]] = {
    "gcp": (("key_file", "the service-account key that reads, writes and signs URLs"),),
    "s3": (("access_key_id", "the access key id"),
           ("secret_access_key", "the secret access key")),
    "azure-blob": (("account", "the storage account"), ("account_key", "its access key")),
}
# Secrets given inline in the wizard are not saved with a session, so a resumed session lacks
# them until asked again: like the database passwords, they are required when used
# (`require_storage_secrets`), not when loaded.
_STORAGE_SECRETS = ("access_key_id", "secret_access_key", "account_key")


def missing_storage_secrets(storage: StorageSettings) -> list[str]:
    """The provider's secret answers that are not given, as dotted keys."""
    assert storage.provider is not None
    return [f"storage.{name}" for name, _ in _STORAGE_NEEDS[storage.provider]
            if name in _STORAGE_SECRETS and getattr(storage, name) is None]


def require_storage_secrets(storage: StorageSettings) -> None:
    for key in missing_storage_secrets(storage):
        raise AnswersError(key, f"is required for {storage.provider}",
                           f"add {key}_env: VARIABLE or {key}_file: PATH")
_STORAGE_ONLY: dict[str, str] = {
    "endpoint": "s3", "region": "s3", "path_style": "s3", "access_key_id": "s3",
    "secret_access_key": "s3", "key_file": "gcp", "project_id": "gcp",
    "account": "azure-blob", "account_key": "azure-blob",
}


def check_storage_answers(storage: StorageSettings) -> list[str]:
    """A `storage:` section names one provider, both main buckets and that provider's
    credentials, and nothing of another provider."""
    if storage.provider is None:
        raise AnswersError("storage.provider", "is required with storage:",
                           f"set storage.provider to one of {', '.join(STORAGE_PROVIDERS)}")
    for name in ("imports", "thumbnails"):
        if not getattr(storage.buckets, name):
            raise AnswersError(f"storage.buckets.{name}", "is required with storage:",
                               "create the bucket (see the vendor's custom buckets guide) and "
                               "name it here")
    for name, what in _STORAGE_NEEDS[storage.provider]:
        if name in _STORAGE_SECRETS:
            continue  # required when used: see require_storage_secrets
        if getattr(storage, name) is None:
            hint = f"{name}_env: VARIABLE or {name}_file: PATH" \
                if name in ("access_key_id", "secret_access_key", "account_key") else name
            raise AnswersError(f"storage.{name}", f"is required for {storage.provider}: {what}",
                               f"add storage.{hint}")
    if storage.provider == "s3" and not storage.endpoint and not storage.region:
        raise AnswersError("storage.region", "is required for Amazon S3",
                           "set storage.region to the buckets' region, e.g. eu-west-1")
    # Another provider's settings are left unused: say so rather than refuse, so switching
    # providers in the wizard keeps what was typed for the other one.
    return [f"storage.{name} applies to {provider} only and is ignored for "
            f"{storage.provider}" for name, provider in _STORAGE_ONLY.items()
            if getattr(storage, name) is not None and provider != storage.provider]


def _check_exposure(k8s: KubernetesSettings) -> None:
    if k8s.service_type == "NodePort" and k8s.node_port is None:
        raise AnswersError("kubernetes.node_port", "is required with service_type: NodePort",
                           "choose a free port from 30000 to 32767; CARTO's address is then "
                           "https://<domain>:<port>")
    if k8s.node_port is not None and k8s.service_type != "NodePort":
        raise AnswersError("kubernetes.node_port", "applies to service_type: NodePort only",
                           "remove kubernetes.node_port or set service_type: NodePort")
    if k8s.external_tls and k8s.service_type != "ClusterIP":
        raise AnswersError("kubernetes.external_tls", "applies to service_type: ClusterIP "
                           "(your own Ingress or Gateway in front of the router)",
                           "set service_type: ClusterIP, or remove external_tls")


def _check_registry_login(answers: Answers) -> None:
    """A registry login is a user and a password together, for a named registry."""
    pairs = (("compose.registry_username", answers.compose.registry_username,
              "compose.registry_password", answers.compose.registry_password),
             ("kubernetes.image_pull_username", answers.kubernetes.image_pull_username,
              "kubernetes.image_pull_password", answers.kubernetes.image_pull_password))
    for user_key, user, password_key, password in pairs:
        if (user is None) != (password is None):
            missing = password_key + "_env" if user is not None else user_key
            raise AnswersError(missing, "a registry login needs both the user and the password",
                               f"add {missing}, or remove the other half")
    if answers.compose.registry_username and not answers.compose.registry:
        raise AnswersError("compose.registry", "names no registry to log in to",
                           "set compose.registry to the host the images come from")
    if answers.kubernetes.image_pull_username and not answers.kubernetes.image_registry:
        raise AnswersError("kubernetes.image_registry", "names no registry for the pull Secret",
                           "set kubernetes.image_registry to your mirror")


def unknown_key_problem(path: str, key: Any, known: set[str]) -> AnswersError:
    """An unknown key, with the known key it most likely meant (a typo never passes)."""
    import difflib

    name = str(key)
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    if close:
        return AnswersError(_join(path, name), f"unknown key; did you mean {close[0]!r}?",
                            f"rename it to {_join(path, close[0])}")
    return AnswersError(_join(path, name),
                        f"unknown key (known here: {', '.join(sorted(known))})")


def yaml_error_problem(file: Path, text: str, exc: YamlError) -> AnswersError:
    """Where a YAML file stops parsing, at a line that exists, with the parser's reason and
    the line itself (secret-looking values masked, control characters made visible)."""
    from installer.redact import mask_secret_values

    fix = "check the indentation (spaces, not tabs) and that each line is `key: value`"
    if exc.line is None:  # nesting, a number out of range: the message says what
        return AnswersError("", f"{file} {exc}", fix)
    reason = str(exc.problem or "").strip()
    where = ""
    if exc.line is not None:
        lines = text.splitlines() or [""]
        line, column = exc.line, exc.column or 1
        if line > len(lines):  # the parser reports the end of the file as one line past it
            line = len(lines)
            column = len(lines[-1]) + 1
            where = f" at line {line} (the end of the file)"
        else:
            where = f" at line {line}, column {column}"
        shown = visible_line(mask_secret_values(lines[line - 1]).rstrip())
        if shown:
            reason = (reason + "; " if reason else "") + f"the line reads: {shown[:60]!r}"
    return AnswersError("", f"{file} is not valid YAML{where}" + (f": {reason}" if reason else ""),
                        fix)


def require_secrets(answers: Answers, prefixes: tuple[str, ...] | None = None) -> None:
    """Raise for the secrets named by an unset variable that this work uses (`prefixes` of
    answer paths, e.g. ("database.",); None: every one). An SSH password is not needed when
    an identity file is given."""
    problems = []
    for path, problem in answers.unresolved.items():
        if path.startswith("target.password") and answers.target is not None \
                and answers.target.identity_file:
            continue
        if prefixes is None or path.startswith(prefixes):
            problems.append(problem)
    if problems:
        raise one_or_all(problems)


def load_answers(path: str | Path, *, redactor: Redactor | None = None,
                 env: Mapping[str, str] | None = None) -> Answers:
    """Read and validate an answers file. Raises AnswersError (exit 2) on any defect."""
    file = Path(path)
    try:
        text = read_user_file(file, limit=ANSWERS_LIMIT).decode("utf-8")
        mode = file.stat().st_mode
    except FileNotFoundError:
        raise AnswersError("", f"answers file {file} does not exist") from None
    except OSError as exc:
        raise AnswersError("", f"cannot read answers file {file}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise AnswersError("", f"answers file {file} is not UTF-8 text") from None
    try:
        data = load_yaml(text)
    except YamlError as exc:
        raise yaml_error_problem(file, text, exc) from None
    private = not (mode & (stat.S_IRGRP | stat.S_IROTH))
    try:
        answers = parse_answers(data, base=file.resolve().parent, redactor=redactor, env=env,
                                file_is_private=private)
    except AnswersErrors as exc:
        raise AnswersErrors(exc.problems, str(file)) from None
    answers.source = file
    return answers


# --- saving and schema ---------------------------------------------------------------------------


def answers_to_dict(obj: Any) -> dict[str, Any]:
    """The answers as YAML-ready data. Inline secrets are left out; references are kept."""
    out: dict[str, Any] = {}
    defaults = type(obj)() if _all_defaults(type(obj)) else None
    for f in _public_fields(type(obj)):
        value = getattr(obj, f.name)
        if isinstance(value, Secret):
            kind, _, ref = value.source.partition(":")
            if kind in ("env", "file"):
                out[f"{f.name}_{kind}"] = ref
            continue
        if value is None:
            continue
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            sub = answers_to_dict(value)
            if sub:
                out[file_key(f)] = sub
            continue
        always = f.name in ("version", "platform")
        if defaults is not None and getattr(defaults, f.name) == value and not always:
            continue
        out[file_key(f)] = list(value) if isinstance(value, list) else value
    return out


def _all_defaults(cls: type) -> bool:
    return all(
        f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        for f in dataclasses.fields(cls)
    )


def dump_answers(answers: Answers) -> str:
    header = (
        "# carto-installer answers (version 1). Secrets are not stored here: give them as\n"
        "# *_env: VARIABLE or *_file: PATH.\n"
    )
    return header + yaml.safe_dump(answers_to_dict(answers), sort_keys=False, allow_unicode=True)


def json_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of the answers file, generated from the declarations."""
    schema = _schema_for(Answers)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "carto-installer answers"
    return schema


def _schema_for(cls: type) -> dict[str, Any]:
    hints = _field_types(cls)
    props: dict[str, Any] = {}
    required: list[str] = []
    for f in _public_fields(cls):
        inner, _ = _unwrap_optional(hints[f.name])
        meta = f.metadata
        desc = meta.get("label", "") + (f": {meta['help']}" if meta.get("help") else "")
        if meta.get("secret"):
            for suffix, text in (("", "inline (discouraged)"), ("_env", "environment variable"),
                                 ("_file", "file holding it")):
                props[f.name + suffix] = {"type": "string", "description": f"{desc} ({text})"}
            continue
        if dataclasses.is_dataclass(inner):
            prop = _schema_for(inner)  # type: ignore[arg-type]
            prop = {"anyOf": [prop, {"type": "null"}]} if inner is not cls else prop
        elif inner is bool:
            prop = {"type": "boolean"}
        elif inner is int:
            prop = {"type": "integer"}
            if meta.get("validator") is validate_port:
                prop.update(minimum=1, maximum=65535)
        elif inner is float:
            prop = {"type": "number", "exclusiveMinimum": 0}
        elif get_origin(inner) is list:
            prop = {"type": "array", "items": {"type": "string"}}
            if meta.get("choices"):
                prop["items"]["enum"] = list(meta["choices"])
        else:
            prop = {"type": ["string", "null"]}
            if meta.get("choices"):
                prop = {"enum": list(meta["choices"])}
        prop["description"] = desc
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            required.append(file_key(f))
        props[file_key(f)] = prop
    out: dict[str, Any] = {"type": "object", "additionalProperties": False, "properties": props}
    if required:
        out["required"] = required
    return out


def require(answers: Answers, *paths: str) -> None:
    """Raise AnswersError for the first dotted path whose value is missing."""
    for dotted in paths:
        obj: Any = answers
        for part in dotted.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                break
        if obj is None or obj == "":
            raise AnswersError(dotted, "is required for this command",
                               f"add {dotted} to the answers file")
