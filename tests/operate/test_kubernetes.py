"""backup, support bundle and uninstall of a Helm release: the real helm and kubectl against
the fixture API server (tests/services/k8s_apiserver.py), after a real deploy."""

from __future__ import annotations

import base64
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

from installer.answers import parse_answers
from installer.errors import InputError
from installer.operate.backup import backup
from installer.operate.bundle import support_bundle
from installer.operate.installation import Installation
from installer.operate.logs import service_names, stream_logs
from installer.operate.restore import restore
from installer.operate.uninstall import apply_uninstall, plan_uninstall
from installer.redact import Redactor
from installer.target import LocalTarget
from tests.services.k8s_apiserver import FakeCluster, release_secrets
from tests.support.helm_deploy import DB_PASSWORD, deploy, external_db_answers
from tests.support.k8s_package import make_helm_package


@pytest.fixture
def cluster(k8s_cluster: FakeCluster, helm_bin: Path, kubectl_bin: Path,
            monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeCluster:
    from tests.support.k8s_package import client_environment

    client_environment(k8s_cluster, monkeypatch, helm_bin.parent, kubectl_bin.parent)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return k8s_cluster


def members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path, "r:*") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}  # type: ignore[union-attr]


def test_backup_bundle_and_uninstall_of_a_release(cluster: FakeCluster, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # The fixture's "kubelet" makes every pod Running at once; keep the status given here so
    # a pod can stay Pending, as the bundle must describe a failing pod.
    make_ready = cluster._set_status

    def keep_pod_status(kind: Any, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        if kind.kind != "Pod" or not obj.get("status"):
            make_ready(kind, obj, old)

    monkeypatch.setattr(cluster, "_set_status", keep_pod_status)
    package = make_helm_package(tmp_path / "package")
    data = external_db_answers(cluster, tmp_path, package)
    assert deploy(data).ok
    # A StatefulSet's claim, which `helm uninstall` leaves behind (helm never deletes PVCs).
    cluster.put_object({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                        "metadata": {"name": "data-carto-postgresql-0", "namespace": "carto",
                                     "labels": {"app.kubernetes.io/instance": "carto"}},
                        "spec": {"accessModes": ["ReadWriteOnce"],
                                 "resources": {"requests": {"storage": "8Gi"}}}})
    cluster.put_object({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "carto-workspace-api-7d9f", "namespace": "carto",
                     "labels": {"app.kubernetes.io/instance": "carto"}},
        "spec": {"containers": [{"name": "api", "image": "carto/workspace-api"}]},
        "status": {"phase": "Pending"}})
    redactor = Redactor()
    events: list[Any] = []
    inst = Installation(parse_answers(data, redactor=redactor), LocalTarget(), redactor,
                        events.append)

    # backup: customizations.yaml, the values of the release, and the installer's Secrets
    archive = tmp_path / "backup.tar"
    result = backup(inst, str(archive), include_database=False)
    assert archive.stat().st_mode & 0o777 == 0o600
    content = members(archive)
    assert {"answers.yaml", "kubernetes/customizations.yaml", "kubernetes/values.yaml",
            "kubernetes/secrets.json", "package/carto-values.yaml",
            "package/carto-secrets.yaml"} <= set(content)
    saved = {s["metadata"]["name"]: s for s in
             json.loads(content["kubernetes/secrets.json"])["items"]}
    assert set(saved) == {"carto-tls-certificate", "carto-external-postgresql"}
    assert base64.b64decode(saved["carto-external-postgresql"]["data"]["carto-password"]) == \
        DB_PASSWORD.encode()
    assert (Path.cwd() / ".carto-installer-backups.json").exists()
    assert result.sha256 in (Path.cwd() / ".carto-installer-backups.json").read_text()

    # support bundle: helm status and history, pods, events, nodes; never a Secret's data
    bundle = tmp_path / "support.tar.gz"
    found = support_bundle(inst, str(bundle), preflight=False)
    content = members(bundle)
    text = b"\n".join(content.values()).decode("utf-8", "replace")
    assert DB_PASSWORD not in text and "ADMIN_PASSWORD" not in text
    for secret in package.secrets:
        assert secret not in text
    assert "carto" in content["helm/status.txt"].decode()
    assert "REVISION" in content["helm/history.txt"].decode()
    assert "capacity" in content["kubernetes/nodes.txt"].decode()
    assert "carto-workspace-api-7d9f" in content["kubernetes/pods.txt"].decode()
    assert "Pending" in content["kubernetes/pods.txt"].decode()
    manifest = content["MANIFEST.txt"].decode()
    # the failing pod is described (or the reason it could not be is recorded)
    assert "kubernetes/describe/carto-workspace-api-7d9f.txt" in manifest
    # the fixture server serves no pod logs: recorded as not collected, with the reason
    assert all(name in manifest for name, _ in found.failed)

    # logs: by the chart's workload names, without the release prefix
    with pytest.raises(InputError) as unknown:
        stream_logs(inst, "no-such-service", tail=5, follow=False, write=print)
    assert "router" in str(unknown.value)
    assert "router" in service_names(inst)

    # uninstall: the release goes, the PVC and the installer's Secrets are listed and kept
    plan = plan_uninstall(inst, purge=False)
    assert "persistentvolumeclaim data-carto-postgresql-0" in plan.keep
    assert "secret carto-external-postgresql (made by carto-installer)" in plan.keep
    message = apply_uninstall(inst, plan)
    assert release_secrets(cluster, "carto", "carto") == []
    assert cluster.get_object("deployments", "carto-router", "carto") is None
    assert cluster.get_object("persistentvolumeclaims", "data-carto-postgresql-0", "carto")
    assert cluster.get_object("secrets", "carto-external-postgresql", "carto")
    assert "pvc/data-carto-postgresql-0" in message

    # purge: exactly what the plan listed is destroyed
    purge = plan_uninstall(inst, purge=True)
    assert sorted(purge.destroy) == sorted(plan.keep) and not purge.remove
    apply_uninstall(inst, purge)
    assert cluster.get_object("persistentvolumeclaims", "data-carto-postgresql-0", "carto") \
        is None
    assert cluster.get_object("secrets", "carto-external-postgresql", "carto") is None
    assert cluster.get_object("secrets", "carto-tls-certificate", "carto") is None

    # restore: customizations.yaml and the installer's Secrets come back from the backup
    custom = Path.cwd() / "customizations.yaml"
    original = custom.read_bytes()
    custom.write_text("# edited since\n")
    restored = restore(inst, str(archive))
    assert custom.read_bytes() == original
    assert "secret/carto-external-postgresql" in restored.restored
    assert base64.b64decode(cluster.get_object("secrets", "carto-external-postgresql", "carto")
                            ["data"]["carto-password"]) == DB_PASSWORD.encode()
    assert (Path(restored.kept) / "customizations.yaml").read_text() == "# edited since\n"
