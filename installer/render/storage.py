"""What the advanced answers write: own buckets, a private CA, the Google Maps key, a registry
login, the Kubernetes exposure.

Kept apart from render/compose.py and render/helm.py, which call in at one place each:
- Compose: `compose_settings` (customer.env keys) and `compose_files` (files in certs/).
- Helm: `helm_values` (keys merged into customizations.yaml: names and references only) and
  `helm_secret_manifests` (the Kubernetes Secrets those references name).

The variable names are the vendor's. Compose: the "Custom buckets" section of the
carto-selfhosted README (`WORKSPACE_THUMBNAILS_*`, `WORKSPACE_IMPORTS_*`, and `IMPORT_*` for
the import worker, named as the chart's import-worker ConfigMap names them), `GOOGLE_MAPS_API_KEY`,
`NODE_EXTRA_CA_CERTS`. Helm: the chart's values.yaml (`appConfigValues.storageProvider`,
`workspaceImportsBucket`, `workspaceThumbnailsBucket`, `workspaceThumbnailsPublic`,
`googleCloudStorageProjectId`, `awsS3Region`, `s3Endpoint`, `s3ForcePathStyle`,
`azureStorageAccount`; `appSecrets.*.existingSecret`; `global.imagePullSecrets`;
`externalProxy.sslCA`; `router.service.*`).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from installer.errors import AnswersError
from installer.yamldata import YAMLMapping

if TYPE_CHECKING:
    from installer.answers import Answers, Secret, StorageSettings

SERVICE_CERT_DIR = "/usr/src/certs"  # where the services see ./certs (docker-compose.yml)
STORAGE_KEY_NAME = "storage-key.json"  # the buckets' service-account key, in certs/
TRUSTED_CA_NAME = "trusted-ca.crt"  # the CA bundle NODE_EXTRA_CA_CERTS names, in certs/
MAX_FILE = 1 << 20

# The three variable families of the Compose services, and which bucket each one names.
COMPOSE_FAMILIES = (("WORKSPACE_THUMBNAILS", "thumbnails"), ("WORKSPACE_IMPORTS", "imports"),
                    ("IMPORT", "imports"))

# Keys inside the Secrets deploy creates for Helm.
GCS_KEY_KEY = "key.json"
AWS_KEY_ID_KEY, AWS_SECRET_KEY = "access-key-id", "secret-access-key"
AZURE_KEY_KEY = "access-key"
MAPS_KEY_KEY = "api-key"


@dataclass(frozen=True)
class AdvancedSecretNames:
    storage: str
    google_maps: str
    registry: str
    trusted_ca: str


def secret_names(answers: Answers) -> AdvancedSecretNames:
    release = answers.kubernetes.release
    return AdvancedSecretNames(storage=f"{release}-storage-credentials",
                               google_maps=f"{release}-google-maps",
                               registry=f"{release}-registry",
                               trusted_ca=f"{release}-trusted-ca")


def _read(path: str, key: str, what: str) -> bytes:
    from installer.userfiles import FileRefused, read_user_file

    try:
        return read_user_file(path, limit=MAX_FILE)
    except FileRefused as exc:
        raise AnswersError(key, f"the {what} {path} is refused: {exc}") from None
    except OSError as exc:
        raise AnswersError(key, f"cannot read the {what} {path}: {exc.strerror or exc}") from None


def gcp_key_bytes(storage: StorageSettings) -> bytes:
    """The service-account key file, checked to be one."""
    from installer.storage import read_gcp_key

    assert storage.key_file is not None
    try:
        read_gcp_key(storage.key_file)
    except ValueError as exc:
        raise AnswersError("storage.key_file", str(exc),
                           "give the JSON key of the service account that may use the "
                           "buckets (IAM > Service Accounts > Keys)") from None
    return _read(storage.key_file, "storage.key_file", "service-account key")


def gcp_project(storage: StorageSettings) -> str:
    if storage.project_id:
        return storage.project_id
    data = json.loads(gcp_key_bytes(storage))
    project = str(data.get("project_id") or "")
    if not project:
        raise AnswersError("storage.project_id", "the key file names no project_id",
                           "set storage.project_id to the buckets' Google Cloud project")
    return project


def trusted_ca_bundle(answers: Answers) -> bytes | None:
    """The proxy CA and `network.trusted_ca_file`, concatenated: Node reads one file."""
    if not answers.network.trusted_ca_file:
        return None
    parts: list[bytes] = []
    proxy = answers.network.proxy
    if proxy is not None and proxy.ca_file:
        parts.append(_read(proxy.ca_file, "network.proxy.ca_file", "proxy CA file"))
    own = _read(answers.network.trusted_ca_file, "network.trusted_ca_file", "CA file")
    if b"-----BEGIN CERTIFICATE-----" not in own:
        raise AnswersError("network.trusted_ca_file",
                           f"{answers.network.trusted_ca_file} holds no PEM certificate",
                           "give the CA certificate(s) in PEM form")
    if b"PRIVATE KEY" in own:
        raise AnswersError("network.trusted_ca_file", f"{answers.network.trusted_ca_file} "
                           "also holds a private key, which must never be copied to the "
                           "deployment", "give a file with certificates only")
    parts.append(own)
    return b"".join(part if part.endswith(b"\n") else part + b"\n" for part in parts)


def check_advanced_files(answers: Answers) -> None:
    """Read and judge the files the advanced answers name (the CA bundle, the buckets' key),
    so the wizard can refuse a wrong file at Next rather than at render."""
    trusted_ca_bundle(answers)
    if answers.storage is not None and answers.storage.provider == "gcp" \
            and answers.storage.key_file:
        gcp_key_bytes(answers.storage)


def _value(secret: Secret | None) -> str:
    assert secret is not None
    return secret.value


# --- Docker Compose ------------------------------------------------------------------------------


def compose_settings(answers: Answers) -> list[tuple[str, str, str]]:
    """(answer key, customer.env key, value) for the advanced answers, in a stable order."""
    from installer.answers import require_storage_secrets

    out: list[tuple[str, str, str]] = []
    storage = answers.storage
    if storage is not None:
        require_storage_secrets(storage)
        out += _compose_storage(storage)
    if answers.google_maps_api_key is not None:
        out.append(("google_maps_api_key", "GOOGLE_MAPS_API_KEY",
                    answers.google_maps_api_key.value))
    if answers.network.trusted_ca_file:
        out.append(("network.trusted_ca_file", "NODE_EXTRA_CA_CERTS",
                    f"{SERVICE_CERT_DIR}/{TRUSTED_CA_NAME}"))
    return out


def _compose_storage(storage: StorageSettings) -> list[tuple[str, str, str]]:
    provider = storage.provider
    assert provider is not None
    buckets = storage.buckets
    out: list[tuple[str, str, str]] = []
    for family, which in COMPOSE_FAMILIES:
        bucket = getattr(buckets, which)
        key = f"storage.buckets.{which}"
        out.append(("storage.provider", f"{family}_PROVIDER", provider))
        if family == "IMPORT":
            # The import worker names the client bucket so (chart: IMPORT_DATA_IMPORTS_BUCKET);
            # the older three-bucket layout adds IMPORT_BUCKET.
            out.append((key, "IMPORT_DATA_IMPORTS_BUCKET", bucket))
            if buckets.import_bucket:
                out.append(("storage.buckets.import", "IMPORT_BUCKET", buckets.import_bucket))
        else:
            out.append((key, f"{family}_BUCKET", bucket))
        if provider == "gcp":
            out.append(("storage.key_file", f"{family}_KEYFILENAME",
                        f"{SERVICE_CERT_DIR}/{STORAGE_KEY_NAME}"))
            out.append(("storage.project_id", f"{family}_PROJECTID", gcp_project(storage)))
        elif provider == "s3":
            out.append(("storage.access_key_id", f"{family}_ACCESSKEYID",
                        _value(storage.access_key_id)))
            out.append(("storage.secret_access_key", f"{family}_SECRETACCESSKEY",
                        _value(storage.secret_access_key)))
            out.append(("storage.region", f"{family}_REGION", storage.region or "us-east-1"))
            if storage.endpoint:
                out.append(("storage.endpoint", f"{family}_ENDPOINT", storage.endpoint))
            if _path_style(storage):
                out.append(("storage.path_style", f"{family}_FORCE_PATH_STYLE", "true"))
        else:
            out.append(("storage.account", f"{family}_STORAGE_ACCOUNT", storage.account or ""))
            out.append(("storage.account_key", f"{family}_STORAGE_ACCESSKEY",
                        _value(storage.account_key)))
    out.append(("storage.thumbnails_public", "WORKSPACE_THUMBNAILS_PUBLIC",
                "true" if storage.thumbnails_public else "false"))
    return out


def _path_style(storage: StorageSettings) -> bool:
    return storage.path_style if storage.path_style is not None else bool(storage.endpoint)


def compose_files(answers: Answers) -> list[tuple[str, bytes, int]]:
    """(name in certs/, content, mode) the advanced answers need."""
    out: list[tuple[str, bytes, int]] = []
    storage = answers.storage
    if storage is not None and storage.provider == "gcp":
        out.append((STORAGE_KEY_NAME, gcp_key_bytes(storage), 0o600))
    bundle = trusted_ca_bundle(answers)
    if bundle is not None:
        out.append((TRUSTED_CA_NAME, bundle, 0o644))
    return out


# --- Helm ----------------------------------------------------------------------------------------


def helm_values(answers: Answers, delete: object) -> YAMLMapping:
    """Keys to merge into customizations.yaml; `delete` marks a key that must be absent."""
    from installer.answers import require_storage_secrets

    names = secret_names(answers)
    values: YAMLMapping = {}
    storage = answers.storage
    if storage is not None:
        require_storage_secrets(storage)
    app_config: YAMLMapping = {}
    app_secrets: YAMLMapping = {}
    if storage is not None:
        provider = storage.provider
        app_config.update({
            "storageProvider": provider,
            "workspaceImportsBucket": storage.buckets.imports,
            "workspaceThumbnailsBucket": storage.buckets.thumbnails,
            "workspaceThumbnailsPublic": storage.thumbnails_public,
            "googleCloudStorageProjectId": gcp_project(storage) if provider == "gcp" else delete,
            "awsS3Region": (storage.region or "us-east-1") if provider == "s3" else delete,
            # The chart refuses to render these with another provider (_validators.tpl).
            "s3Endpoint": storage.endpoint if provider == "s3" and storage.endpoint else delete,
            "s3ForcePathStyle": True if provider == "s3" and _path_style(storage) else delete,
            "azureStorageAccount": storage.account if provider == "azure-blob" else delete,
        })

        def ref(key: str) -> YAMLMapping:
            return {"value": delete, "existingSecret": {"name": names.storage, "key": key}}

        app_secrets.update({
            "googleCloudStorageServiceAccountKey": ref(GCS_KEY_KEY) if provider == "gcp"
            else delete,
            "awsAccessKeyId": ref(AWS_KEY_ID_KEY) if provider == "s3" else delete,
            "awsAccessKeySecret": ref(AWS_SECRET_KEY) if provider == "s3" else delete,
            "azureStorageAccessKey": ref(AZURE_KEY_KEY) if provider == "azure-blob" else delete,
        })
    if answers.google_maps_api_key is not None:
        app_secrets["googleMapsApiKey"] = {
            "value": delete, "existingSecret": {"name": names.google_maps, "key": MAPS_KEY_KEY}}
    if app_config:
        values["appConfigValues"] = app_config
    if app_secrets:
        values["appSecrets"] = app_secrets
    k8s = answers.kubernetes
    if k8s.image_pull_username:
        values["global"] = {"imagePullSecrets": [names.registry]}
    bundle = trusted_ca_bundle(answers)
    if bundle is not None:
        proxy = answers.network.proxy
        if proxy is None or not (proxy.https or proxy.http):
            raise AnswersError(
                "network.trusted_ca_file",
                "the CARTO chart trusts an extra CA only through externalProxy.sslCA, which it "
                "applies only when a proxy is set (no chart setting trusts one without a proxy)",
                "set network.proxy too, or add the CA to the images' trust yourself "
                "(extraVolumes/extraEnvVars per component)")
        # A CA is public: it may sit in the values (the chart mounts it from a ConfigMap).
        values["externalProxy"] = {"sslCA": bundle.decode("utf-8", "replace")}
    router: YAMLMapping = {}
    if k8s.service_type == "NodePort":
        router = {"service": {"nodePorts": {"https": str(k8s.node_port) if k8s.node_port
                                            else delete}}}
        if k8s.node_port:
            # The vendor: with a NodePort service the port is part of the domain.
            values.setdefault("appConfigValues", {})["selfHostedDomain"] = \
                f"{answers.domain}:{k8s.node_port}"
    else:
        router = {"service": {"nodePorts": {"https": delete}}}
    values["router"] = router
    return values


def _b64(data: str | bytes) -> str:
    return base64.b64encode(data.encode("utf-8") if isinstance(data, str) else data).decode()


# Builds one Secret manifest from its name, base64 data and type, with the caller's labels and
# namespace.
SecretMaker = Callable[[str, dict[str, str], str], YAMLMapping]


def docker_config_json(registry: str, username: str, password: str) -> str:
    """The `.dockerconfigjson` of a kubernetes.io/dockerconfigjson Secret."""
    auth = _b64(f"{username}:{password}")
    return json.dumps({"auths": {registry: {"username": username, "password": password,
                                            "auth": auth}}}, separators=(",", ":"))


def helm_secret_manifests(answers: Answers, make: SecretMaker) -> list[YAMLMapping]:
    """The Secrets `helm_values` references. `make(name, data, type)` builds one (the caller's
    labels and namespace); data values are base64."""
    names = secret_names(answers)
    out: list[YAMLMapping] = []
    storage = answers.storage
    if storage is not None:
        if storage.provider == "gcp":
            data = {GCS_KEY_KEY: _b64(gcp_key_bytes(storage))}
        elif storage.provider == "s3":
            data = {AWS_KEY_ID_KEY: _b64(_value(storage.access_key_id)),
                    AWS_SECRET_KEY: _b64(_value(storage.secret_access_key))}
        else:
            data = {AZURE_KEY_KEY: _b64(_value(storage.account_key))}
        out.append(make(names.storage, data, "Opaque"))
    if answers.google_maps_api_key is not None:
        out.append(make(names.google_maps, {MAPS_KEY_KEY: _b64(answers.google_maps_api_key.value)},
                        "Opaque"))
    k8s = answers.kubernetes
    if k8s.image_pull_username and k8s.image_pull_password and k8s.image_registry:
        registry = k8s.image_registry.split("/", 1)[0]
        config = docker_config_json(registry, k8s.image_pull_username,
                                    k8s.image_pull_password.value)
        out.append(make(names.registry, {".dockerconfigjson": _b64(config)},
                        "kubernetes.io/dockerconfigjson"))
    return out
