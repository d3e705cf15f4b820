"""Helm releases and charts as the cluster and the chart files tell them: the release's
history, the chart's identity and minimum package version, the namespace and the Secrets the
release reads. Queries (and the Secrets' apply) beside installer.kube, used by the checks and
by the deployment alike, so a check never imports the deployment."""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from installer.errors import DeployError
from installer.kube import Kube, KubeError
from installer.yamldata import YAMLMapping

if TYPE_CHECKING:
    from installer.chart import ChartFiles

log = logging.getLogger("installer.deploy.helm")  # the name its log lines always had

# A release's statuses: left mid-operation (helm refuses another one), and good to go back to.
PENDING = ("pending-install", "pending-upgrade", "pending-rollback")
GOOD = ("deployed", "superseded")


@dataclass(frozen=True)
class Revision:
    number: int
    status: str
    chart: str
    app_version: str
    description: str


def release_history(kube: Kube, release: str) -> list[Revision]:
    """Every stored revision of the release, oldest first ([] when it is not installed)."""
    result = kube.helm("history", release, "-o", "json", namespace=True)
    if not result.ok:
        if re.search(r"release: not found", result.output()):
            return []
        raise KubeError(kube.failure(result.output(), "helm"))
    try:
        items = json.loads(result.stdout or "[]")
    except json.JSONDecodeError:
        raise DeployError("`helm history` printed something that is not JSON",
                          "check that `helm` is the real Helm 3") from None
    return sorted((Revision(int(i.get("revision", 0)), str(i.get("status", "")),
                            str(i.get("chart", "")), str(i.get("app_version", "")),
                            str(i.get("description", ""))) for i in items),
                  key=lambda r: r.number)


@dataclass(frozen=True)
class ChartInfo:
    reference: str  # what helm is given: a repository reference or an absolute local path
    name: str
    version: str
    files: ChartFiles  # what the chart's own files say (its minimum among them)
    identity: str  # changes whenever the chart does

    @property
    def minimum(self) -> str | None:
        """The oldest package version the chart accepts, when it says."""
        found = self.files.minimum
        return found[1] if found else None


def _content_digest(path: Path) -> str:
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        digest.update(str(file.relative_to(path) if path.is_dir() else file.name).encode())
        digest.update(file.stat().st_size.to_bytes(8, "big"))
        with open(file, "rb") as handle:  # streamed: a chart of any size costs no memory
            for chunk in iter(lambda: handle.read(1024 * 1024), b""):  # noqa: B023
                digest.update(chunk)
    return digest.hexdigest()


def chart_info(kube: Kube, reference: str) -> ChartInfo:
    """Read the chart's own files (a local .tgz/folder, or `helm pull` of a repository
    reference). Raises ChartError (exit 2) for a chart that cannot be used as given, such as
    a folder without its subcharts."""
    from installer.chart import fetch_chart, local_chart_path

    local = local_chart_path(reference)
    fetched = fetch_chart(kube, reference)
    try:
        identity = _content_digest(fetched.files.path)
    finally:
        fetched.cleanup()
    return ChartInfo(str(local) if local else reference, fetched.files.name,
                     fetched.files.version, fetched.files, identity)


def namespace_exists(kube: Kube) -> bool:
    """Whether the namespace is there. One we may not even look at counts as there: we could
    not create it either, and asking helm to (--create-namespace) would fail with Forbidden
    for an admin whose rights stop at the namespace."""
    found = kube.kubectl("get", "namespace", kube.namespace, "-o", "name")
    if found.ok:
        return True
    failure = kube.failure(found.output())
    if failure.kind == "not-found":
        return False
    if failure.kind == "forbidden":
        log.info("cannot see namespace %s: %s", kube.namespace, failure.message)
        return True
    raise KubeError(failure)


def missing_secrets(kube: Kube, manifests: list[YAMLMapping]) -> list[str]:
    names = [m["metadata"]["name"] for m in manifests]
    if not names:
        return []
    result = kube.kubectl("get", "secrets", *names, "--ignore-not-found", "-o", "name",
                          namespace=True)
    if not result.ok:
        return names
    present = {line.strip().split("/", 1)[-1] for line in result.stdout.splitlines()}
    return [n for n in names if n not in present]


def apply_secrets(kube: Kube, manifests: list[YAMLMapping]) -> dict[str, str]:
    """kubectl apply, reading the Secrets from standard input. Returns name -> created /
    configured / unchanged."""
    if not manifests:
        return {}
    document = {"apiVersion": "v1", "kind": "List", "items": manifests}
    result = kube.checked(kube.kubectl("apply", "-f", "-", namespace=True,
                                       input=json.dumps(document).encode()))
    outcome: dict[str, str] = {}
    for line in result.stdout.splitlines():
        match = re.match(r"^secret/(\S+) (created|configured|unchanged)", line.strip())
        if match:
            outcome[match.group(1)] = match.group(2)
    return outcome
