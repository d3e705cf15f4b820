"""The customer's installation package, as CARTO ships it: a folder or a zip.

Docker Compose: `customer.env` (the license's settings) and `key.json` (a Google Cloud
service-account key, the license credential). Kubernetes: `carto-values.yaml` and
`carto-secrets.yaml`. Everything is read into memory (the package is on the admin's machine,
the deployment may be remote); every secret found is handed to the run's redactor at once.
Defects are collected, each with a fix, rather than stopping at the first.
"""

from __future__ import annotations

import errno
import functools
import json
import os
import re
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from installer.envfile import EnvFile, is_secret_key
from installer.errors import AnswersError
from installer.redact import Redactor
from installer.safetext import visible_line
from installer.safeyaml import YamlError, load_yaml
from installer.userfiles import (
    PACKAGE_FILE_LIMIT,
    FileRefused,
    read_user_file,
    read_zip_member,
)
from installer.yamldata import YAMLMapping, YAMLValue

COMPOSE_FILES = ("customer.env", "key.json")
KUBERNETES_FILES = ("carto-values.yaml", "carto-secrets.yaml")
# customer.env keys the license cannot work without.
REQUIRED_ENV_KEYS = (
    "SELFHOSTED_TENANT_ID",
    "SELFHOSTED_GCP_PROJECT_ID",
    "CARTO_SELFHOSTED_CUSTOMER_PACKAGE_VERSION",
)
# Keys that come from the license: a newer package replaces them when rendering.
LICENSE_KEYS = (
    *REQUIRED_ENV_KEYS,
    "CARTO_AUTH0_CLIENT_ID",
    "CARTO_AUTH0_CUSTOM_DOMAIN",
    "ACC_DOMAIN",
    "ACC_GCP_PROJECT_ID",
    "ACC_GCP_PROJECT_REGION",
    "DO_API_DOMAIN",
    "DO_ASSETS_DOMAIN",
)
REQUIRED_VALUES = ("selfHostedTenantId", "selfHostedGcpProjectId", "customerPackageVersion")
SERVICE_ACCOUNT_FIELDS = ("project_id", "private_key_id", "private_key", "client_email")
MAX_FILE_BYTES = PACKAGE_FILE_LIMIT  # far above any real package file; stops a zip bomb
DOWNLOAD_FIX = ("download the installation package again from the CARTO Workspace "
                "(Settings > Self-Hosted) or ask CARTO support for it, and point `package:` at it")


@dataclass
class Defect:
    file: str
    message: str
    remediation: str = DOWNLOAD_FIX


@dataclass
class Package:
    path: str
    kind: str  # "folder" or "zip"
    platform: str
    files: dict[str, bytes] = field(default_factory=dict, repr=False)
    defects: list[Defect] = field(default_factory=list)
    customer_env: EnvFile | None = field(default=None, repr=False)
    service_account: YAMLMapping | None = field(default=None, repr=False)
    values: YAMLMapping | None = field(default=None, repr=False)
    secrets: YAMLMapping | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return not self.defects

    @property
    def version(self) -> str | None:
        """The package version, as the vendor compares it (double quotes removed)."""
        raw: YAMLValue = None
        if self.customer_env is not None:
            raw = self.customer_env.get("CARTO_SELFHOSTED_CUSTOMER_PACKAGE_VERSION")
        elif self.values is not None:
            raw = _dig(self.values, "cartoConfigValues", "customerPackageVersion")
        if raw is None or str(raw).strip() == "":
            return None
        return str(raw).replace('"', "").strip()

    @property
    def tenant_id(self) -> str | None:
        if self.customer_env is not None:
            return self.customer_env.get("SELFHOSTED_TENANT_ID")
        value = _dig(self.values or {}, "cartoConfigValues", "selfHostedTenantId")
        return None if value is None else str(value)

    def summary(self) -> str:
        return "; ".join(f"{d.file}: {d.message}" for d in self.defects)

    def remediation(self) -> str:
        return "; ".join(dict.fromkeys(d.remediation for d in self.defects))


def _dig(data: YAMLValue, *keys: str) -> YAMLValue:
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def expected_files(platform: str) -> tuple[str, ...]:
    return KUBERNETES_FILES if platform == "kubernetes" else COMPOSE_FILES


def read_package(path: str, platform: str, redactor: Redactor | None = None) -> Package:
    """Read and check the package. Raises AnswersError (key `package`) when it cannot be
    opened at all; otherwise returns it with its defects listed."""
    source = Path(os.path.expanduser(path))
    wanted = expected_files(platform)
    if source.is_dir():
        package = Package(str(source), "folder", platform)
        for name in wanted:
            file = source / name
            if not file.is_file():
                package.defects.append(_missing(name, source, platform))
                continue
            try:
                package.files[name] = _read_limited(file)
            except OSError as exc:
                package.defects.append(Defect(name, f"cannot be read: {exc.strerror or exc}",
                                              f"check the permissions of {file}"))
    elif source.is_file():
        package = Package(str(source), "zip", platform)
        _read_zip(source, wanted, package)
    elif source.exists():
        raise AnswersError("package", f"{source} is neither a folder nor a zip file")
    else:
        raise AnswersError("package", f"{source} does not exist",
                           "give the folder or zip CARTO sent you (customer.env and key.json, "
                           "or carto-values.yaml and carto-secrets.yaml)")
    if platform == "kubernetes":
        _check_kubernetes(package, redactor)
    else:
        _check_compose(package, redactor)
    return package


def _missing(name: str, where: Path, platform: str) -> Defect:
    hint = ("the Docker Compose package holds customer.env and key.json"
            if platform != "kubernetes"
            else "the Helm package holds carto-values.yaml and carto-secrets.yaml")
    return Defect(name, f"missing from {where} ({hint})", DOWNLOAD_FIX)


def _read_limited(file: Path) -> bytes:
    return read_user_file(file, limit=MAX_FILE_BYTES)


def _read_zip(source: Path, wanted: tuple[str, ...], package: Package) -> None:
    try:
        if not source.is_file():
            raise OSError(errno.EINVAL, "not a regular file")
        archive = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise AnswersError("package", f"{source} is not a folder or a readable zip file ({exc})",
                           DOWNLOAD_FIX) from None
    with archive:
        members = [m for m in archive.infolist() if not m.is_dir()]
        for name in wanted:
            # The vendor's zips may hold the files in a sub-folder: match by file name.
            found = [m for m in members if m.filename.rsplit("/", 1)[-1] == name]
            if not found:
                package.defects.append(_missing(name, source, package.platform))
                continue
            if len(found) > 1:
                package.defects.append(Defect(
                    name, f"appears {len(found)} times in the zip "
                    f"({', '.join(m.filename for m in found)})",
                    "unpack the zip and give the folder holding the right files as `package:`"))
                continue
            try:
                package.files[name] = read_zip_member(archive, found[0], limit=MAX_FILE_BYTES)
            except FileRefused as exc:
                package.defects.append(Defect(name, f"is too large to be a package file "
                                              f"({exc.strerror})"))
            except (zipfile.BadZipFile, OSError, RuntimeError, EOFError,
                    zlib.error, NotImplementedError) as exc:
                package.defects.append(Defect(name, f"cannot be extracted from the zip "
                                              f"({visible_line(str(exc))})"))


def _text(package: Package, name: str) -> str | None:
    data = package.files.get(name)
    if data is None:
        return None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        package.defects.append(Defect(name, "is not UTF-8 text"))
        return None


def _check_compose(package: Package, redactor: Redactor | None) -> None:
    key_text = _text(package, "key.json")
    if key_text is not None:
        if redactor is not None:
            redactor.add(key_text)
        account, problems = parse_service_account(key_text, redactor)
        package.service_account = account
        package.defects.extend(Defect("key.json", p) for p in problems)
    env_text = _text(package, "customer.env")
    if env_text is None:
        return
    env = EnvFile.parse(env_text)
    package.customer_env = env
    if redactor is not None:
        for key in env.keys():
            if is_secret_key(key):
                redactor.add(env.get(key))
    for key in REQUIRED_ENV_KEYS:
        value = env.get(key)
        if value is None:
            package.defects.append(Defect("customer.env", f"has no {key} line"))
        elif not value.strip():
            package.defects.append(Defect("customer.env", f"{key} is empty"))
    tenant = env.get("SELFHOSTED_TENANT_ID")
    if tenant and not re.fullmatch(r"onp-[A-Za-z0-9_-]+", tenant):
        package.defects.append(Defect(
            "customer.env", f"SELFHOSTED_TENANT_ID {tenant!r} is not of the form onp-<clientId>"))


def _check_kubernetes(package: Package, redactor: Redactor | None) -> None:
    loaded: YAMLMapping = {}
    for name in KUBERNETES_FILES:
        text = _text(package, name)
        if text is None:
            continue
        if name == "carto-secrets.yaml" and redactor is not None:
            redactor.add(text)
        try:
            data = load_yaml(text)
        except YamlError as exc:
            package.defects.append(Defect(name, str(exc)))
            continue
        if not isinstance(data, dict):
            package.defects.append(Defect(name, "is not a YAML mapping"))
            continue
        loaded[name] = data
    secrets = loaded.get("carto-secrets.yaml")
    values = loaded.get("carto-values.yaml")
    package.secrets, package.values = secrets, values
    if secrets is not None:
        if redactor is not None:
            for leaf in _string_leaves(secrets):
                redactor.add(leaf)
        account_text = _dig(secrets, "cartoSecrets", "defaultGoogleServiceAccount", "value")
        if account_text is None:
            account_text = _dig(secrets, "cartoSecrets", "defaultGoogleServiceAccount")
        if not isinstance(account_text, str):
            package.defects.append(Defect(
                "carto-secrets.yaml", "has no cartoSecrets.defaultGoogleServiceAccount.value "
                "(the license's service-account key)"))
        else:
            account, problems = parse_service_account(account_text, redactor)
            package.service_account = account
            package.defects.extend(
                Defect("carto-secrets.yaml", f"defaultGoogleServiceAccount: {p}") for p in problems)
    if values is not None:
        config = values.get("cartoConfigValues")
        if not isinstance(config, dict):
            package.defects.append(Defect("carto-values.yaml", "has no cartoConfigValues"))
        else:
            for key in REQUIRED_VALUES:
                if config.get(key) in (None, ""):
                    package.defects.append(Defect("carto-values.yaml",
                                                  f"cartoConfigValues.{key} is missing"))


def _string_leaves(data: YAMLValue) -> list[str]:
    if isinstance(data, str):
        return [data]
    if isinstance(data, dict):
        return [leaf for value in data.values() for leaf in _string_leaves(value)]
    if isinstance(data, list):
        return [leaf for value in data for leaf in _string_leaves(value)]
    return []


def parse_service_account(text: str, redactor: Redactor | None = None
                          ) -> tuple[YAMLMapping | None, list[str]]:
    """A Google Cloud service-account key: (the parsed JSON, problems). Messages never quote
    the key's contents."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, [f"is not valid JSON (line {exc.lineno}, column {exc.colno})"]
    if not isinstance(data, dict):
        return None, ["is not a JSON object"]
    if redactor is not None:
        for key in ("private_key", "private_key_id"):
            if isinstance(data.get(key), str):
                redactor.add(data[key])
    problems: list[str] = []
    kind = data.get("type")
    if kind != "service_account":
        shown = kind if isinstance(kind, str) and len(kind) < 40 else "missing"
        problems.append(f"is not a service-account key (type is {shown!r}, "
                        "expected 'service_account')")
    missing = [name for name in SERVICE_ACCOUNT_FIELDS
               if not isinstance(data.get(name), str) or not data[name]]
    if missing:
        problems.append(f"lacks {', '.join(missing)}")
    pem = data.get("private_key")
    if isinstance(pem, str) and pem:
        problem = _private_key_problem(pem)
        if problem:
            problems.append(problem)
    email = data.get("client_email")
    if isinstance(email, str) and email and "@" not in email:
        problems.append("client_email is not an e-mail address")
    return data, problems


@functools.lru_cache(maxsize=4)
def _private_key_problem(pem: str) -> str | None:
    # Parsing checks the RSA key's consistency, which takes tens of milliseconds: the
    # preflight and the render of one run read the same key, so remember the verdict.
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        load_pem_private_key(pem.encode("utf-8"), password=None)
    except TypeError:
        return "its private_key is encrypted; a service-account key never is"
    except (ValueError, UnicodeError) as exc:
        # cryptography's messages name the format problem, never the key material.
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return f"its private_key does not parse as a PEM private key ({reason[:120]})"
    return None


# --- versions compared like `sort -V` (GNU filevercmp) -----------------------------------------

_SUFFIX = re.compile(r"(?:\.[A-Za-z~][A-Za-z0-9~]*)*$")


def _order(char: str) -> int:
    if char.isdigit():
        return 0
    if char.isascii() and char.isalpha():
        return ord(char)
    if char == "~":
        return -1
    return ord(char) + 256


def _verrevcmp(a: str, b: str) -> int:
    i = j = 0
    while i < len(a) or j < len(b):
        first_diff = 0
        while (i < len(a) and not a[i].isdigit()) or (j < len(b) and not b[j].isdigit()):
            ca = _order(a[i]) if i < len(a) else 0
            cb = _order(b[j]) if j < len(b) else 0
            if ca != cb:
                return ca - cb
            i += 1
            j += 1
        while i < len(a) and a[i] == "0":
            i += 1
        while j < len(b) and b[j] == "0":
            j += 1
        while i < len(a) and a[i].isdigit() and j < len(b) and b[j].isdigit():
            if not first_diff:
                first_diff = ord(a[i]) - ord(b[j])
            i += 1
            j += 1
        if i < len(a) and a[i].isdigit():
            return 1
        if j < len(b) and b[j].isdigit():
            return -1
        if first_diff:
            return first_diff
    return 0


def _without_suffix(version: str) -> str:
    """The version without its trailing file-name-like suffix (sort -V compares that first)."""
    found = _SUFFIX.search(version)  # always matches, if only the empty end
    return version[: found.start()] if found else version


def compare_versions(a: str, b: str) -> int:
    """Negative, zero or positive as `a` sorts before, with or after `b` under `sort -V`
    (GNU version sort, C locale, ties broken by plain byte order as sort does)."""
    if a == b:
        return 0
    if not a or not b:
        return -1 if not a else 1
    prefix_a, prefix_b = _without_suffix(a), _without_suffix(b)
    result = _verrevcmp(prefix_a, prefix_b) if prefix_a != prefix_b else 0
    if result == 0:
        result = _verrevcmp(a, b)
    if result == 0:
        result = (a.encode() > b.encode()) - (a.encode() < b.encode())
    return result


def version_at_least(version: str, minimum: str) -> bool:
    """True when `minimum` sorts first (or equal), as the vendor decides: its Compose
    install.sh and the chart's pre-install check both run
    `echo MIN PKG | tr ' ' '\\n' | sort -V | head -n1` and accept when MIN comes out.

    Not packaging.version: it agrees on the vendor's plain `YYYY.M.D` versions, but calls
    `2026.4` equal to `2026.4.0` and `2026.04.1` equal to `2026.4.1`, where `sort -V` (and so
    the vendor's check) puts the package first and refuses it."""
    return compare_versions(minimum, version) <= 0


NEW_PACKAGE_FIX = (
    "download a newer installation package (CARTO Workspace > Settings > Self-Hosted, or the "
    "vendor's tools/carto-download-customer-package.sh) and point `package:` at it")


@dataclass(frozen=True)
class PackageVersionVerdict:
    """One judgement of "package >= the deployment's minimum", for checks and deploys."""

    status: str  # "pass", "unknown" (no minimum stated), "fail"
    message: str
    observed: str
    remediation: str = ""

    @property
    def ok(self) -> bool:
        return self.status != "fail"


def judge_package_version(version: str | None, minimum: str | None, what: str, *,
                          source: str = "", unknown_reason: str = "", consequence: str = ""
                          ) -> PackageVersionVerdict:
    """Judge the package version against a minimum. `what` names the minimum ("the
    deployment's MIN_VERSION", "the chart's minimum"), `source` where it was read."""
    where = f" ({source})" if source else ""
    if not version:
        return PackageVersionVerdict(
            "fail", "the package does not state its version", "no version", DOWNLOAD_FIX)
    if minimum is None:
        return PackageVersionVerdict(
            "unknown", f"package {version}: "
            + (unknown_reason or f"{what} is not stated{where}"),
            f"package {version}, minimum unknown")
    if version_at_least(version, minimum):
        return PackageVersionVerdict(
            "pass", f"package {version} is not older than {what} {minimum}{where}", version)
    return PackageVersionVerdict(
        "fail", f"the installation package {version} is older than {what} {minimum}{where}"
        + (f": {consequence}" if consequence else ""),
        f"{version} < {minimum}", NEW_PACKAGE_FIX)
