"""`carto-installer upgrade` on Kubernetes: the vendor's real charts (1.266.1 -> 1.280.1)
with the real helm and kubectl against the fixture API server, a release left in
pending-upgrade, the gates, and the values diff against `helm get values` (secrets masked)."""

from __future__ import annotations

import datetime
from collections import Counter
from pathlib import Path

import pytest
import yaml

from installer.answers import parse_answers
from installer.operate.backup import BackupRecord, record_backup
from installer.operate.installation import Installation
from installer.redact import Redactor
from installer.target import LocalTarget
from tests.services.k8s_apiserver import FakeCluster, set_release_status
from tests.support.helm_deploy import run_cli_offline
from tests.support.vendor_charts import (
    NEW_CHART,
    NEW_PACKAGE,
    OLD_CHART,
    OLD_PACKAGE,
    SKIP,
    answers_for,
    deploy,
    make_vendor_package,
    require_vendor_charts,
    revisions,
    vendor_cluster,
)

require_vendor_charts()


@pytest.fixture
def cluster(k8s_cluster: FakeCluster, helm_bin: Path, kubectl_bin: Path,
            monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeCluster:
    return vendor_cluster(k8s_cluster, helm_bin, kubectl_bin, monkeypatch, tmp_path)


def test_helm_upgrade_gates_values_diff_and_a_release_left_pending_upgrade(
        cluster: FakeCluster, tmp_path: Path, helm_bin: Path, kubectl_bin: Path) -> None:
    old = answers_for(cluster, tmp_path, OLD_CHART, OLD_PACKAGE)
    deploy(old)
    deploy(answers_for(cluster, tmp_path, OLD_CHART, OLD_PACKAGE, tls_name="tls-2"))
    assert [r["version"] for r in revisions(cluster)] == [1, 2]
    answers_file = tmp_path / "answers.yaml"
    answers_file.write_text(yaml.safe_dump(
        answers_for(cluster, tmp_path, OLD_CHART, OLD_PACKAGE, tls_name="tls-2")))
    env = cluster.client_env()
    env["PATH"] = f"{helm_bin.parent}:{kubectl_bin.parent}:{env['PATH']}"
    skip = ",".join(SKIP)
    new_package = tmp_path / "package-new"
    new_secrets = make_vendor_package(new_package, NEW_CHART, NEW_PACKAGE)
    too_old = tmp_path / "package-too-old"
    make_vendor_package(too_old, NEW_CHART, "2026.1.1")

    def upgrade(package: Path, *extra: str) -> tuple[int, str, str]:
        result = run_cli_offline(tmp_path, "upgrade", "--answers", str(answers_file),
                                 "--release", str(NEW_CHART), "--package", str(package),
                                 "--yes", "--skip", skip, *extra, env=env, cwd=Path.cwd())
        return result.returncode, result.stdout, result.stderr

    # No backup recorded: upgrade.backup stops it before anything changes.
    cluster.reset_requests()
    code, out, err = upgrade(new_package)
    assert code == 3, out + err
    assert "FAIL upgrade.backup: no backup made by `carto-installer backup`" in out
    assert cluster.mutation_counts() == Counter()

    answers = parse_answers(old, redactor=Redactor())
    record_backup(Installation(answers, LocalTarget(), Redactor()),
                  BackupRecord(datetime.datetime.now(datetime.UTC), str(tmp_path / "b.tar"),
                               "0" * 64, True))

    # A package below the chart's minimum (its minVersion annotation): refused by the gate
    # before anything runs.
    code, out, err = upgrade(too_old)
    assert code == 3, out + err
    assert "FAIL upgrade.package: the installation package 2026.1.1 is older than the " \
           "chart's minimum 2026.4.1" in out
    assert cluster.mutation_counts() == Counter()

    # As if helm had been killed during an upgrade: revision 2 left pending-upgrade.
    set_release_status(cluster, "carto", "carto", "pending-upgrade")
    code, out, err = upgrade(new_package)
    assert code == 3, out + err
    assert "ok   upgrade.package: package 2026.7.16 is not older than the chart's minimum" \
        in out
    assert "ok   upgrade.version: chart 1.266.1 -> 1.280.1" in out
    assert "release carto: chart carto-1.266.1 -> carto-1.280.1, package 2026.7.16" in out
    assert '~ cartoConfigValues.customerPackageVersion: "2026.5.14" -> "2026.7.16"' in out
    assert "(secret, changed)" in out
    assert "stuck in pending-upgrade (revision 2)" in err
    assert "--repair-stuck-release" in err
    assert not [r for r in cluster.mutating_requests() if r.resource == "secrets"]

    code, out, err = upgrade(new_package, "--repair-stuck-release")
    assert code == 0, out + err
    assert "release carto is no longer pending-upgrade" in out
    assert "upgraded release carto to chart 1.280.1" in out
    history = revisions(cluster)
    assert history[-2]["info"]["description"] == "Rollback to 1"
    assert history[-1]["info"]["status"] == "deployed"
    assert history[-1]["chart"]["metadata"]["version"] == "1.280.1"
    # The answers file now names the new package, so a later deploy does not go back.
    assert yaml.safe_load(answers_file.read_text())["package"] == str(new_package)
    assert f"kubernetes.chart: {NEW_CHART}" in out
    for secret in new_secrets:
        assert secret not in out and secret not in err
    status = run_cli_offline(tmp_path, "status", "--answers", str(answers_file), env=env,
                             cwd=Path.cwd())
    assert status.returncode == 0, status.stdout + status.stderr
    assert "  release: chart carto-1.280.1 (app 2026.7.16), package: 2026.7.16" in status.stdout
    assert "  certificate: expires " in status.stdout
    assert f"  last deploy or upgrade: revision {history[-1]['version']} " in status.stdout
    log = (Path.cwd() / "carto-installer.log").read_text()
    for secret in new_secrets:
        assert secret not in log
