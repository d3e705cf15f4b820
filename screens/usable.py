"""Whether an answer can be used, not only whether it is well formed.

A form shows ✔ beside a field only when this says so: a certificate path must name a file
that holds a certificate, a kubeconfig must exist. UI-free: the Textual form and the plain
prompts both use it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from installer.answers.model import AnswerValue

# The value looks right but cannot be judged here (a folder on a remote machine): no mark.
UNKNOWN = "unknown"
READ_LIMIT = 4 * 1024 * 1024  # certificates and kubeconfigs are small; never read a huge file


def _file(value: str, what: str) -> tuple[Path | None, str | None]:
    path = Path(os.path.expanduser(value))
    if not path.exists():
        return None, f"{path} does not exist"
    if path.is_dir():
        return None, f"{path} is a folder, not a {what}"
    if not path.is_file():
        return None, f"{path} is not a regular file"
    if not os.access(path, os.R_OK):
        return None, f"{path} cannot be read (permission denied)"
    return path, None


def _read(path: Path) -> bytes:
    with path.open("rb") as handle:
        return handle.read(READ_LIMIT)


def certificate_file(value: str) -> str | None:
    path, problem = _file(value, "certificate file")
    if path is None:
        return problem
    from installer.checks.tls import CertificateFileError, load_certificates

    try:
        load_certificates(_read(path), str(path))
    except (CertificateFileError, ValueError) as exc:
        return str(exc)
    return None


def key_file(value: str) -> str | None:
    path, problem = _file(value, "key file")
    if path is None:
        return problem
    from installer.checks.tls import CertificateFileError, load_private_key

    try:
        info = load_private_key(_read(path), str(path))
    except (CertificateFileError, ValueError) as exc:
        return str(exc)
    if info.encrypted:
        return f"{path} is protected by a passphrase; CARTO needs an unencrypted key"
    return None


def existing_file(value: str) -> str | None:
    return _file(value, "file")[1]


def kubeconfig(value: str) -> str | None:
    path, problem = _file(value, "kubeconfig")
    if path is None:
        return problem
    import yaml

    try:
        data = yaml.safe_load(_read(path))
    except yaml.YAMLError:
        return f"{path} is not a kubeconfig (not YAML)"
    if not isinstance(data, dict) or "clusters" not in data:
        return f"{path} is not a kubeconfig (it names no clusters)"
    return None


def package(value: str) -> str | None:
    path = Path(os.path.expanduser(value))
    if not path.exists():
        return f"{path} does not exist"
    if not (path.is_dir() or path.is_file()):
        return f"{path} is neither a folder nor a zip file"
    return None


def local_deployment_directory(value: str) -> str | None:
    from installer.deployment_dir import inspect_deployment_directory
    from installer.target import LocalTarget

    verdict = inspect_deployment_directory(LocalTarget(), value)
    return None if verdict.usable else verdict.message


PROBES: dict[str, Callable[[str], str | None]] = {
    "tls.certificate_file": certificate_file,
    "tls.key_file": key_file,
    "kubernetes.kubeconfig": kubeconfig,
    "package": package,
    "compose.images_archive": existing_file,
    "target.identity_file": existing_file,
    "database.ssl.ca_file": certificate_file,
    "network.proxy.ca_file": certificate_file,
    "redis.tls_ca_file": certificate_file,
}


def problem_with(path: str, value: AnswerValue, *, remote: bool = False) -> str | None:
    """Why this (well formed) value cannot be used, None when it can, or UNKNOWN.

    `remote`: the target is another machine, so its folders cannot be looked at from here."""
    if value in (None, ""):
        return None
    if path == "compose.directory":
        return UNKNOWN if remote else local_deployment_directory(str(value))
    probe = PROBES.get(path)
    return probe(str(value)) if probe is not None else None
