"""The vendor's REAL Helm charts (../shared/vendor/carto-1.266.1.tgz and carto-1.280.1.tgz)
deployed through carto-installer, with the real helm 3.17 and kubectl 1.30, into the fixture
API server: install and wait, an identical re-run, a new TLS pair, the upgrade between the
two charts through their own pre-upgrade check Job, a release left pending, status, and the
failure paths (a hook Job that fails, pods that never become ready).

The installation package is made in the vendor's format by tests/support/vendor_charts.py.
Nothing of the vendor is copied into the project.
"""

from __future__ import annotations

import base64
import json
import ssl
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from installer.answers import parse_answers
from installer.deploy import LogLine
from installer.deploy.helm import status_kubernetes
from installer.errors import DeployError
from installer.redact import Redactor
from installer.target import LocalTarget
from tests.services.k8s_apiserver import (
    FakeCluster,
    NodeSpec,
    release_secrets,
    set_release_status,
)
from tests.support.helm_deploy import run_cli_offline
from tests.support.vendor_charts import (
    DOMAIN,
    NEW_CHART,
    NEW_PACKAGE,
    OLD_CHART,
    OLD_PACKAGE,
    SKIP,
    answers_for,
    chart_annotation,
    deploy,
    require_vendor_charts,
    revisions,
    vendor_cluster,
)

require_vendor_charts()


@pytest.fixture
def cluster(k8s_cluster: FakeCluster, helm_bin: Path, kubectl_bin: Path,
            monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeCluster:
    return vendor_cluster(k8s_cluster, helm_bin, kubectl_bin, monkeypatch, tmp_path)


def rendered_workloads(cluster: FakeCluster, helm_bin: Path, data: dict[str, Any]) -> set[str]:
    """The Deployments and StatefulSets the chart renders for these answers (helm template
    with the three values files the installer uses)."""
    work = Path.cwd()
    package = Path(data["package"])
    result = cluster.run(helm_bin, "template", "carto", data["kubernetes"]["chart"], "-n",
                         "carto", "-f", str(package / "carto-values.yaml"), "-f",
                         str(package / "carto-secrets.yaml"), "-f",
                         str(work / "customizations.yaml"))
    assert result.returncode == 0, result.stderr
    return {f'{d["kind"].lower()} {d["metadata"]["name"]}'
            for d in yaml.safe_load_all(result.stdout)
            if d and d["kind"] in ("Deployment", "StatefulSet")}


# ---- install, re-run, status ---------------------------------------------------------------


@pytest.mark.parametrize("chart, version", [(OLD_CHART, OLD_PACKAGE), (NEW_CHART, NEW_PACKAGE)],
                         ids=["1.266.1", "1.280.1"])
def test_the_real_chart_installs_waits_and_a_rerun_changes_nothing(
        cluster: FakeCluster, tmp_path: Path, helm_bin: Path, chart: Path,
        version: str) -> None:
    data = answers_for(cluster, tmp_path, chart, version)
    events: list[Any] = []
    result = deploy(data, events)
    assert result.ok and result.changed
    [release] = revisions(cluster)
    assert release["info"]["status"] == "deployed"
    assert release["chart"]["metadata"]["version"] == chart.name[len("carto-"):-len(".tgz")]
    # helm --wait really waited: every Deployment's current ReplicaSet has ready pods.
    deployments = cluster.objects("deployments", "carto")
    assert len(deployments) >= 10
    for deployment in deployments:
        status = deployment["status"]
        assert status["readyReplicas"] == deployment["spec"]["replicas"], deployment["metadata"]
        assert {c["reason"] for c in status["conditions"]} == \
            {"MinimumReplicasAvailable", "NewReplicaSetAvailable"}
    # The chart's own pre-install check ran (the real script, from its ConfigMap) and passed.
    [(pod, code, log)] = cluster.job_runs("carto-pre-install")
    assert code == 0 and "Release version is OK" in log

    before = Counter(cluster.mutation_counts())
    again = deploy(data)
    assert again.ok and not again.changed
    assert "nothing changed" in again.message
    assert len(revisions(cluster)) == 1
    assert cluster.mutation_counts() == before

    status = status_kubernetes(parse_answers(data, redactor=Redactor()), LocalTarget(),
                               redactor=Redactor())
    assert status.healthy, status.message
    names = {s.name for s in status.services}
    # Every workload of the chart, by the chart's own name, and its pods.
    expected = rendered_workloads(cluster, helm_bin, data)
    assert "deployment carto-router" in expected and "statefulset carto-postgresql" in expected
    assert expected <= names
    workload_rows = {s.name: s for s in status.services if s.name in expected}
    assert all(s.state == "ready" for s in workload_rows.values())
    router_pods = [n for n in names if n.startswith("carto-router-")]
    assert len(router_pods) == 1
    assert "carto-postgresql-0" in names


def test_a_new_tls_pair_rolls_the_router(cluster: FakeCluster, tmp_path: Path) -> None:
    """The chart mounts the pair from our existingSecret with subPath and has no checksum of
    it in the router's pod template: the installer must roll the router itself."""
    data = answers_for(cluster, tmp_path, NEW_CHART, NEW_PACKAGE)
    deploy(data)
    router = cluster.get_object("deployments", "carto-router", "carto")
    assert router is not None
    old_pods = {p["metadata"]["name"] for p in
                cluster.objects("pods", "carto", "app.kubernetes.io/component=router")}
    renewed = answers_for(cluster, tmp_path, NEW_CHART, NEW_PACKAGE, tls_name="renewed")
    events: list[Any] = []
    result = deploy(renewed, events)
    assert result.ok and result.changed
    tls = cluster.get_object("secrets", "carto-tls-certificate", "carto")
    assert tls is not None
    assert base64.b64decode(tls["data"]["tls.crt"]) == \
        (tmp_path / "renewed" / "fullchain.pem").read_bytes()
    rolled = cluster.get_object("deployments", "carto-router", "carto")
    assert rolled is not None
    assert rolled["metadata"]["generation"] > router["metadata"]["generation"]
    assert "kubectl.kubernetes.io/restartedAt" in \
        rolled["spec"]["template"]["metadata"]["annotations"]
    new_pods = {p["metadata"]["name"] for p in
                cluster.objects("pods", "carto", "app.kubernetes.io/component=router")}
    assert new_pods and not new_pods & old_pods
    assert rolled["status"]["updatedReplicas"] == rolled["status"]["readyReplicas"] == 1
    # Only what reads the pair rolls: the API workers do not mount it.
    maps = cluster.get_object("deployments", "carto-maps-api", "carto")
    assert maps is not None
    assert "kubectl.kubernetes.io/restartedAt" not in \
        (maps["spec"]["template"]["metadata"].get("annotations") or {})
    lines = [e.text for e in events if isinstance(e, LogLine)]
    assert any("restarting deployment/carto-router" in line for line in lines)


def test_a_router_that_cannot_roll_to_the_new_pair_is_reported(
        cluster: FakeCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    deploy(answers_for(cluster, tmp_path, NEW_CHART, NEW_PACKAGE))
    monkeypatch.setattr("installer.deploy.helm.HELM_TIMEOUT", "3s")
    # The router pod's second image (the hook Job runs the first, router-http).
    image = f"gcr.io/carto-onprem-artifacts/router/router-metrics:{NEW_PACKAGE}"
    cluster.unpullable_images[image] = "rpc error: code = Unknown desc = 401 Unauthorized"
    with pytest.raises(DeployError) as caught:
        deploy(answers_for(cluster, tmp_path, NEW_CHART, NEW_PACKAGE, tls_name="renewed"))
    message = caught.value.message
    assert message.startswith("deployment/carto-router did not finish rolling out with the "
                              "changed Secrets")
    assert f'Failed to pull image "{image}": rpc error: code = Unknown desc = 401 ' \
        "Unauthorized" in message
    assert "the previous pods keep serving" in caught.value.remediation
    # As on a real cluster: the old router pod is still there and ready.
    router = cluster.get_object("deployments", "carto-router", "carto")
    assert router is not None and router["status"]["availableReplicas"] == 1
    assert router["status"]["updatedReplicas"] == 1  # the new, unready pod


def test_a_hook_whose_image_cannot_be_pulled_is_named_with_its_event(
        cluster: FakeCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The version-check Job runs the router's image: without access to the registry it never
    starts, and helm only says it timed out."""
    monkeypatch.setattr("installer.deploy.helm.HELM_TIMEOUT", "3s")
    image = f"gcr.io/carto-onprem-artifacts/router/router-http:{NEW_PACKAGE}"
    cluster.unpullable_images[image] = "rpc error: code = Unknown desc = 401 Unauthorized"
    with pytest.raises(DeployError) as caught:
        deploy(answers_for(cluster, tmp_path, NEW_CHART, NEW_PACKAGE))
    message = caught.value.message
    assert message.startswith("a chart hook did not finish: ")
    assert "timed out waiting for the condition" in message
    assert "carto-pre-install-" in message
    assert f'Failed to pull image "{image}": rpc error: code = Unknown desc = 401 ' \
        "Unauthorized" in message
    assert "image pull secrets" in caught.value.remediation


# ---- upgrade 1.266.1 -> 1.280.1 ------------------------------------------------------------


def test_upgrade_between_the_real_charts_runs_the_charts_own_check(
        cluster: FakeCluster, tmp_path: Path) -> None:
    deploy(answers_for(cluster, tmp_path, OLD_CHART, OLD_PACKAGE))
    router_before = cluster.get_object("deployments", "carto-router", "carto")
    assert router_before is not None
    result = deploy(answers_for(cluster, tmp_path, NEW_CHART, NEW_PACKAGE))
    assert result.ok and result.changed
    history = revisions(cluster)
    assert [r["info"]["status"] for r in history] == ["superseded", "deployed"]
    assert history[-1]["chart"]["metadata"]["version"] == "1.280.1"
    runs = cluster.job_runs("carto-pre-install")
    assert len(runs) == 2  # pre-install of 1.266.1, then pre-upgrade of 1.280.1
    assert runs[-1][1] == 0 and "Release version is OK" in runs[-1][2]
    router = cluster.get_object("deployments", "carto-router", "carto")
    assert router is not None
    assert router["spec"]["template"]["spec"]["containers"][0]["image"].endswith(
        f":{NEW_PACKAGE}")
    assert router["status"]["updatedReplicas"] == 1
    # The old ReplicaSet was scaled down: only pods of the new images are left.
    images = {c["image"] for p in cluster.objects("pods", "carto")
              for c in p["spec"]["containers"]}
    assert images and all(image.endswith(f":{NEW_PACKAGE}") for image in images
                          if "carto-onprem-artifacts" in image)


def test_a_package_below_the_charts_minimum_fails_before_any_change(
        cluster: FakeCluster, tmp_path: Path) -> None:
    """Needs license.version/deploy to read the chart's `minVersion` annotation (issue 10):
    without it the chart's own hook Job is what stops the upgrade, after helm has started it
    (a failed revision is recorded)."""
    deploy(answers_for(cluster, tmp_path, OLD_CHART, OLD_PACKAGE))
    minimum = chart_annotation(NEW_CHART, "minVersion")
    assert minimum == "2026.4.1"
    cluster.reset_requests()
    with pytest.raises(DeployError) as caught:
        deploy(answers_for(cluster, tmp_path, NEW_CHART, "2026.1.1"))
    assert "2026.1.1" in caught.value.message and minimum in caught.value.message
    assert [r["info"]["status"] for r in revisions(cluster)] == ["deployed"]
    assert len(cluster.job_runs("carto-pre-install")) == 1  # only the first install's
    assert cluster.mutation_counts() == Counter()


# ---- a release left pending -------------------------------------------------------------------


def test_a_release_left_pending_upgrade_is_rolled_back_only_when_allowed(
        cluster: FakeCluster, tmp_path: Path, helm_bin: Path, kubectl_bin: Path) -> None:
    data = answers_for(cluster, tmp_path, OLD_CHART, OLD_PACKAGE)
    deploy(data)
    upgrade = answers_for(cluster, tmp_path, NEW_CHART, NEW_PACKAGE)
    deploy(upgrade)
    # As if helm had been killed during a third operation.
    set_release_status(cluster, "carto", "carto", "pending-upgrade")
    answers_file = tmp_path / "answers.yaml"
    answers_file.write_text(yaml.safe_dump(upgrade))
    env = cluster.client_env()
    env["PATH"] = f"{helm_bin.parent}:{kubectl_bin.parent}:{env['PATH']}"
    args = ("deploy", "--answers", str(answers_file), "--yes", "--skip", ",".join(SKIP))
    cluster.reset_requests()
    refused = run_cli_offline(tmp_path, *args, env=env, cwd=Path.cwd())
    assert refused.returncode == 3, refused.stdout + refused.stderr
    assert "stuck in pending-upgrade (revision 2)" in refused.stderr
    command = f"helm rollback carto 1 --wait --timeout 15m -n carto --kubeconfig " \
              f"{cluster.kubeconfig} --kube-context fixture"
    assert command in refused.stderr
    assert "--repair-stuck-release" in refused.stderr
    assert not [r for r in cluster.mutating_requests() if r.resource == "secrets"]

    repaired = run_cli_offline(tmp_path, *args, "--repair-stuck-release", env=env,
                               cwd=Path.cwd())
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert "release carto is no longer pending-upgrade" in repaired.stdout
    history = revisions(cluster)
    # 2 stays as it was left (pending), 3 is the rollback to 1, 4 the deploy itself.
    assert [r["version"] for r in history] == [1, 2, 3, 4]
    assert history[2]["info"]["description"] == "Rollback to 1"
    assert history[3]["info"]["status"] == "deployed"
    assert history[3]["chart"]["metadata"]["version"] == "1.280.1"
    status = run_cli_offline(tmp_path, "status", "--answers", str(answers_file), env=env,
                             cwd=Path.cwd())
    assert status.returncode == 0, status.stdout + status.stderr
    assert "  release carto: deployed (revision 4, carto-1.280.1)" in status.stdout
    assert "  deployment carto-router: ready (1/1 replicas ready)" in status.stdout
    assert "  statefulset carto-postgresql: ready (1/1 replicas ready)" in status.stdout
    assert "  carto-postgresql-0: Running (ready 1/1)" in status.stdout


def test_a_first_install_left_pending_is_removed_and_installed_again_when_allowed(
        cluster: FakeCluster, tmp_path: Path) -> None:
    """pending-install has no earlier revision to roll back to: the fix is `helm uninstall`
    (the chart's objects go, our Secrets stay), then the install runs again."""
    data = answers_for(cluster, tmp_path, NEW_CHART, NEW_PACKAGE)
    deploy(data)
    set_release_status(cluster, "carto", "carto", "pending-install")
    with pytest.raises(DeployError) as caught:
        deploy(data)
    assert "stuck in pending-install (revision 1)" in caught.value.message
    assert "helm uninstall carto --wait" in caught.value.remediation
    events: list[Any] = []
    result = deploy(data, events, repair_stuck=True)
    assert result.ok and result.changed
    lines = [e.text for e in events if isinstance(e, LogLine)]
    assert any(line.startswith("$ helm uninstall carto --wait") for line in lines)
    [release] = revisions(cluster)
    assert (release["version"], release["info"]["status"]) == (1, "deployed")
    assert cluster.get_object("secrets", "carto-tls-certificate", "carto") is not None
    assert cluster.get_object("deployments", "carto-router", "carto") is not None


# ---- failure paths ------------------------------------------------------------------------------


def test_a_failing_version_check_job_is_explained_with_its_own_words(
        cluster: FakeCluster, tmp_path: Path) -> None:
    """The vendor's pre-install Job fails (here: made to, so that the test does not depend on
    what the installer's own version check decides first); the error quotes the container's
    termination message (FallbackToLogsOnError) read through the API, and gives the fix."""
    cluster.fail_job("carto-pre-install",
                     "Checking release version\nRelease version is outdated. Please follow the "
                     "upgrade guide to update your CARTO Self-Hosted installation\n")
    with pytest.raises(DeployError) as caught:
        deploy(answers_for(cluster, tmp_path, NEW_CHART, NEW_PACKAGE))
    message = caught.value.message
    assert "the chart's hook job carto-pre-install failed (BackoffLimitExceeded)" in message
    assert "container pre-upgrade-version-check exited with code 1 (Error)" in message
    assert "Release version is outdated" in message
    assert "download a newer package" in caught.value.remediation
    assert [r["info"]["status"] for r in revisions(cluster)] == ["failed"]


def test_an_image_that_cannot_be_pulled_is_named_with_its_event(
        cluster: FakeCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("installer.deploy.helm.HELM_TIMEOUT", "4s")
    image = f"gcr.io/carto-onprem-artifacts/maps-api:{NEW_PACKAGE}"
    cluster.unpullable_images[image] = (
        "rpc error: code = Unknown desc = failed to pull and unpack image: 403 Forbidden")
    with pytest.raises(DeployError) as caught:
        deploy(answers_for(cluster, tmp_path, NEW_CHART, NEW_PACKAGE))
    message = caught.value.message
    assert "did not become ready within 4s" in message
    assert f'Failed to pull image "{image}": rpc error: code = Unknown desc = failed to pull ' \
        "and unpack image: 403 Forbidden" in message
    assert "carto-maps-api-" in message
    assert "ImagePullBackOff" in caught.value.remediation


def test_pods_pending_for_lack_of_cpu_are_named_with_the_schedulers_event(
        cluster: FakeCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("installer.deploy.helm.HELM_TIMEOUT", "4s")
    # Enough for the preflight's totals check to be skipped, not for CARTO's requests.
    cluster.set_nodes([NodeSpec(f"node-{n}", cpu="1", memory="16Gi") for n in (1, 2, 3)])
    with pytest.raises(DeployError) as caught:
        deploy(answers_for(cluster, tmp_path, NEW_CHART, NEW_PACKAGE), skip=(*SKIP, "k8s"))
    message = caught.value.message
    assert "did not become ready within 4s" in message
    assert "Pending (FailedScheduling: 0/3 nodes are available: 3 Insufficient cpu." in message
    assert "Insufficient cpu/memory: add nodes" in caught.value.remediation


def test_the_fixture_answers_unknown_kinds_like_a_real_server(
        cluster: FakeCluster, kubectl_bin: Path, helm_bin: Path, tmp_path: Path) -> None:
    """The chart's optional Gateway API objects need CRDs this cluster does not have: helm
    stops with the real server's "no matches for kind" before creating anything."""
    data = answers_for(cluster, tmp_path, NEW_CHART, NEW_PACKAGE)
    package = Path(data["package"])
    extra = tmp_path / "gateway.yaml"
    extra.write_text(yaml.safe_dump({"gateway": {"enabled": True, "gatewayClassName": "gke-l7",
                                                 "staticIP": {"enabled": False}}}))
    result = cluster.run(helm_bin, "install", "carto", str(NEW_CHART), "-n", "default",
                         "-f", str(package / "carto-values.yaml"),
                         "-f", str(package / "carto-secrets.yaml"), "-f", str(extra))
    assert result.returncode == 1
    assert 'no matches for kind "Gateway" in version "gateway.networking.k8s.io/v1beta1"' in \
        result.stderr
    assert cluster.objects("deployments", "default") == []
    raw = cluster.run(kubectl_bin, "get", "--raw", "/apis/gateway.networking.k8s.io/v1")
    assert raw.returncode == 1 and "NotFound" in raw.stderr
    # The body of an unknown path is a Status, as client-go expects.
    context = ssl.create_default_context(cadata=cluster.ca_pem.decode())
    request = urllib.request.Request(
        f"{cluster.url}/apis/gateway.networking.k8s.io/v1/namespaces/x/gateways",
        headers={"Authorization": f"Bearer {cluster.token}"})
    with pytest.raises(urllib.error.HTTPError) as answer:
        urllib.request.urlopen(request, context=context, timeout=10)
    assert answer.value.code == 404
    body = json.loads(answer.value.read())
    assert (body["kind"], body["status"], body["reason"], body["code"]) == \
        ("Status", "Failure", "NotFound", 404)


def test_the_charts_optional_kinds_install_with_wait(
        cluster: FakeCluster, helm_bin: Path, kubectl_bin: Path, tmp_path: Path) -> None:
    """HPAs (autoscaling/v1), a PDB, an Ingress, the bundled PostgreSQL's Role, RoleBinding
    and NetworkPolicy: the kinds the charts create only when asked, straight through helm."""
    data = answers_for(cluster, tmp_path, NEW_CHART, NEW_PACKAGE)
    package = Path(data["package"])
    extra = tmp_path / "optional.yaml"
    extra.write_text(yaml.safe_dump({
        "appConfigValues": {"selfHostedDomain": DOMAIN},
        "router": {"autoscaling": {"enabled": True}, "podDisruptionBudget": {
            "enabled": True, "minAvailable": 1}, "ingress": {"enabled": True}},
        "internalPostgresql": {"rbac": {"create": True}, "networkPolicy": {
            "enabled": True, "metrics": {"enabled": True}}}}))
    result = cluster.run(helm_bin, "install", "carto", str(NEW_CHART), "-n", "carto",
                         "--create-namespace", "-f", str(package / "carto-values.yaml"),
                         "-f", str(package / "carto-secrets.yaml"), "-f", str(extra), "--wait",
                         "--timeout", "60s")
    assert result.returncode == 0, result.stderr
    [hpa] = cluster.objects("horizontalpodautoscalers", "carto")
    assert hpa["apiVersion"] == "autoscaling/v2"  # stored as v2, sent as v1
    assert hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] == 75
    [pdb] = cluster.objects("poddisruptionbudgets", "carto")
    # The vendor's router PDB selects app.kubernetes.io/name=carto-router, but the router's
    # pods are labelled app.kubernetes.io/name=carto: it covers no pod (a real cluster's
    # disruption controller reports the same).
    assert pdb["spec"]["selector"] == {"matchLabels": {"app.kubernetes.io/name": "carto-router"}}
    status = pdb["status"]
    assert (status["expectedPods"], status["currentHealthy"], status["desiredHealthy"],
            status["disruptionsAllowed"]) == (0, 0, 1, 0)
    assert [i["metadata"]["name"] for i in cluster.objects("ingresses", "carto")] == \
        ["carto-router"]
    assert cluster.objects("roles", "carto") and cluster.objects("networkpolicies", "carto")
    [binding] = cluster.objects("rolebindings", "carto")
    assert binding["subjects"][0]["apiGroup"] == ""  # ServiceAccount subjects default to ""


# ---- uninstall ---------------------------------------------------------------------------


def test_uninstall_removes_the_real_release_and_lists_what_is_left(
        cluster: FakeCluster, tmp_path: Path) -> None:
    """carto-installer's uninstall on the vendor's chart: helm uninstall removes the
    release's workloads; the bundled database's claim (made by the StatefulSet controller,
    never deleted by helm) and the Secret the installer made stay, and are named."""
    from installer.operate.installation import Installation
    from installer.operate.uninstall import apply_uninstall, plan_uninstall

    data = answers_for(cluster, tmp_path, NEW_CHART, NEW_PACKAGE)
    assert deploy(data).ok
    claims = [c["metadata"]["name"] for c in cluster.objects("persistentvolumeclaims", "carto")]
    assert claims, "the chart's PostgreSQL StatefulSet made no claim"
    redactor = Redactor()
    inst = Installation(parse_answers(data, redactor=redactor), LocalTarget(), redactor,
                        lambda event: None)

    plan = plan_uninstall(inst, purge=False)
    assert plan.release_present and not plan.destroy
    assert {f"persistentvolumeclaim {name}" for name in claims} <= set(plan.keep)
    assert any(item.startswith("secret ") and "made by carto-installer" in item
               for item in plan.keep), plan.keep
    message = apply_uninstall(inst, plan)

    assert release_secrets(cluster, "carto", "carto") == []
    assert cluster.objects("deployments", "carto") == []
    assert cluster.objects("statefulsets", "carto") == []
    for name in claims:  # the data is kept, and the message says where it is
        assert cluster.get_object("persistentvolumeclaims", name, "carto") is not None
        assert name in message
    assert plan_uninstall(inst, purge=False).release_present is False
