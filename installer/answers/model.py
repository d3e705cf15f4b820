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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

from installer.errors import AnswersError
from installer.safetext import visible_line
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
from installer.yamldata import YAMLValue

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

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


# One answer's value as the Answers hold it (sections aside): what a validator returns, what a
# form field parses and shows.
AnswerValue: TypeAlias = str | int | float | bool | list[str] | Secret | None
# Checks a value from the answers file or parsed from what the user typed; ValueError if wrong.
Validator: TypeAlias = Callable[[YAMLValue], AnswerValue]


def setting(
    label: str,
    help: str = "",
    *,
    default: object = dataclasses.MISSING,
    factory: Callable[[], object] | None = None,
    validator: Validator | None = None,
    secret: bool = False,
    path: Literal["local", "target"] | None = None,
    choices: tuple[str, ...] | None = None,
    key: str | None = None,
) -> Any:  # as dataclasses.field: `port: int = setting(...)` must type-check
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


def _choice(choices: tuple[str, ...]) -> Callable[[YAMLValue], str]:
    def check(value: YAMLValue) -> str:
        if value not in choices:
            raise ValueError(f"{_shown(value)} is not one of: {', '.join(choices)}")
        return str(value)

    return check


def _choices(choices: tuple[str, ...]) -> Callable[[YAMLValue], list[str]]:
    one = _choice(choices)

    def check(value: YAMLValue) -> list[str]:
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


def _env_names(value: YAMLValue) -> list[str]:
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


def _dns_label(what: str, longest: int) -> Callable[[YAMLValue], str]:
    """Kubernetes names (namespaces, helm releases): lower-case letters, digits and '-'."""

    def check(value: YAMLValue) -> str:
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


def _node_port(value: YAMLValue) -> int:
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


def _collect_secrets(obj: DataclassInstance, found: list[Secret]) -> None:
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, Secret):
            found.append(value)
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            _collect_secrets(value, found)


def _shown(value: object) -> str:
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


def _kind(value: object) -> str:
    return {dict: "a mapping", list: "a list", str: "text", bool: "true/false"}.get(
        type(value), type(value).__name__
    )
