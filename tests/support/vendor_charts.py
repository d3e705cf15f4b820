"""The vendor's REAL Helm charts (../shared/vendor/carto-1.266.1.tgz and carto-1.280.1.tgz)
and installation packages made for them in the vendor's format (carto-values.yaml with every
`cartoConfigValues` key of the chart's values.yaml, carto-secrets.yaml with every
`cartoSecrets` key, all with fake values), deployed in this process into the fixture API
server: shared by the vendor and upgrade tests. Nothing of the vendor is copied into the
project.
"""

from __future__ import annotations

import secrets
import tarfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from installer.answers import parse_answers
from installer.deploy.helm import deploy_kubernetes
from installer.redact import Redactor
from installer.target import LocalTarget
from tests.services.k8s_apiserver import FakeCluster, NodeSpec, decode_release, release_secrets
from tests.support.k8s_package import client_environment, self_signed_pair
from tests.support.package import service_account_json
from tests.support.vendor_files import VENDOR, vendor_missing

OLD_CHART, NEW_CHART = VENDOR / "carto-1.266.1.tgz", VENDOR / "carto-1.280.1.tgz"
# The package versions the two charts ship with (their appVersion).
OLD_PACKAGE, NEW_PACKAGE = "2026.5.14", "2026.7.16"
SKIP = ("egress", "net", "db", "tls")
DOMAIN = "carto.example.com"


def chart_values(chart: Path) -> dict[str, Any]:
    """The chart's own values.yaml, read from the packaged .tgz."""
    with tarfile.open(chart) as archive:
        member = archive.extractfile("carto/values.yaml")
        assert member is not None
        values = yaml.safe_load(member.read())
    assert isinstance(values, dict)
    return values


def chart_annotation(chart: Path, key: str) -> str:
    with tarfile.open(chart) as archive:
        member = archive.extractfile("carto/Chart.yaml")
        assert member is not None
        return str(yaml.safe_load(member.read())["annotations"][key])


def make_vendor_package(dest: Path, chart: Path, version: str) -> list[str]:
    """carto-values.yaml + carto-secrets.yaml in the vendor's format for `chart`; returns
    every secret value, for leak searches."""
    values = chart_values(chart)
    tenant = f"onp-{secrets.token_hex(4)}"
    config: dict[str, Any] = {}
    for key, default in values["cartoConfigValues"].items():
        config[key] = f"fake-{key.lower()}" if isinstance(default, str) else default
    config.update(selfHostedTenantId=tenant, selfHostedGcpProjectId=f"carto-tnt-{tenant}",
                  customerPackageVersion=version)
    account = service_account_json(f"carto-tnt-{tenant}")
    carto_secrets = {key: {"value": secrets.token_urlsafe(18)}
                     for key in values["cartoSecrets"]}
    carto_secrets["defaultGoogleServiceAccount"] = {"value": account}
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "carto-values.yaml").write_text(yaml.safe_dump({"cartoConfigValues": config}))
    secrets_file = dest / "carto-secrets.yaml"
    secrets_file.write_text(yaml.safe_dump({"cartoSecrets": carto_secrets}))
    secrets_file.chmod(0o600)
    return [v["value"] for k, v in carto_secrets.items() if k != "defaultGoogleServiceAccount"]


def loopback(name: str) -> list[str]:
    return ["127.0.0.1"]


def answers_for(cluster: FakeCluster, tmp_path: Path, chart: Path, version: str,
                tls_name: str = "tls") -> dict[str, Any]:
    package = tmp_path / f"package-{version}"
    if not package.exists():
        make_vendor_package(package, chart, version)
    cert, key = self_signed_pair(tmp_path / tls_name, DOMAIN)
    return {"platform": "kubernetes", "package": str(package),
            "kubernetes": {"kubeconfig": str(cluster.kubeconfig), "context": "fixture",
                           "namespace": "carto", "release": "carto", "chart": str(chart)},
            "domain": DOMAIN, "database": {"bundled": True},
            "tls": {"certificate_file": str(cert), "key_file": str(key)}}


def deploy(data: dict[str, Any], events: list[Any] | None = None,
           skip: tuple[str, ...] = SKIP, **options: Any) -> Any:
    redactor = Redactor()
    answers = parse_answers(data, redactor=redactor)
    return deploy_kubernetes(answers, LocalTarget(), redactor=redactor, skip=skip,
                             resolver=loopback,
                             on_event=events.append if events is not None else None,
                             **options)


def revisions(cluster: FakeCluster) -> list[dict[str, Any]]:
    return [decode_release(s) for s in release_secrets(cluster, "carto", "carto")]


def require_vendor_charts() -> None:
    """Called at a test module's top: skip the module without ../shared/vendor; under
    CI=true its absence is a failure."""
    if not VENDOR.is_dir():
        vendor_missing(f"the vendor's files are not here: {VENDOR}", module=True)


def vendor_cluster(k8s_cluster: FakeCluster, helm_bin: Path, kubectl_bin: Path,
                   monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeCluster:
    """The fixture API server made ready for the vendor's chart (the body of the tests'
    `cluster` fixture)."""
    client_environment(k8s_cluster, monkeypatch, helm_bin.parent, kubectl_bin.parent)
    # CARTO's pods request ~5 CPUs in all: three 4-CPU nodes hold them.
    k8s_cluster.set_nodes([NodeSpec(f"node-{n}", cpu="4", memory="16Gi") for n in (1, 2, 3)])
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return k8s_cluster
