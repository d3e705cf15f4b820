"""The answers judged together: own buckets, registry logins, the Kubernetes exposure, and
what a command needs. The loader and the wizard both call these, so each rule is stated once."""

from __future__ import annotations

from typing import Any

from installer.answers.model import (
    STORAGE_PROVIDERS,
    Answers,
    KubernetesSettings,
    StorageSettings,
)
from installer.errors import AnswersError


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
STORAGE_NEEDS: dict[str, tuple[tuple[str, str], ...]] = {
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
    return [f"storage.{name}" for name, _ in STORAGE_NEEDS[storage.provider]
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
    for name, what in STORAGE_NEEDS[storage.provider]:
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
