"""k8s.* checks with the REAL kubectl 1.30 and helm 3.17 against the fixture API server.

Only the old-helm case uses a stand-in (a script answering `helm version` like helm 3.5.4),
since no real helm that old ships in a package this machine can install.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest

from installer.answers import parse_answers
from installer.checks.base import CheckResult
from installer.kube import classify, parse_quantity
from installer.preflight import run_preflight
from installer.target import LocalTarget
from tests.services.k8s_apiserver import FakeCluster, NodeSpec, good_nodes
from tests.support.cli import run_cli
from tests.support.k8s_tools import fake_helm_binary


def use_cluster(cluster: FakeCluster, monkeypatch: pytest.MonkeyPatch, *bin_dirs: Path) -> None:
    """The installer runs kubectl/helm from PATH with this process's environment: point that
    environment at the fixture cluster's isolated client dirs and the given binaries."""
    env = cluster.client_env()
    for key in ("KUBECACHEDIR", "HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME"):
        monkeypatch.setenv(key, env[key])
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("PATH", ":".join([*(str(d) for d in bin_dirs), env["PATH"]]))


@pytest.fixture
def cluster(k8s_cluster: FakeCluster, helm_bin: Path, kubectl_bin: Path,
            monkeypatch: pytest.MonkeyPatch) -> FakeCluster:
    use_cluster(k8s_cluster, monkeypatch, helm_bin.parent, kubectl_bin.parent)
    return k8s_cluster


def answers_for(cluster: FakeCluster, **kubernetes: Any) -> Any:
    data: dict[str, Any] = {
        "platform": "kubernetes",
        "kubernetes": {"kubeconfig": str(cluster.kubeconfig), "context": "fixture",
                       "namespace": "carto", **kubernetes},
        "database": {"bundled": True},
    }
    return parse_answers(data)


def run(cluster: FakeCluster, only: str, answers: Any = None) -> dict[str, CheckResult]:
    report = run_preflight(LocalTarget(), answers or answers_for(cluster), "kubernetes",
                           only=[only])
    return {r.id: r for r in report.results}


# ---- k8s.nodes ------------------------------------------------------------------------------


def test_three_good_nodes_pass_and_each_node_is_listed(cluster: FakeCluster) -> None:
    nodes = run(cluster, "k8s.nodes")["k8s.nodes"]
    assert nodes.status == "pass", nodes
    for name in ("node-1", "node-2", "node-3"):
        assert f"{name} 2 CPU 17.2 GB, allocatable 2 CPU 17.2 GB" in nodes.observed
    assert nodes.observed.startswith("3 of 3 nodes qualify")


def test_two_nodes_fail(cluster: FakeCluster) -> None:
    cluster.set_nodes(good_nodes(2))
    nodes = run(cluster, "k8s.nodes")["k8s.nodes"]
    assert nodes.status == "fail"
    assert "only 2 of the 3 nodes" in nodes.message
    assert "add 1 node of at least 2 vCPU and 16 GB" in nodes.remediation


def test_a_node_of_8_gb_fails_and_says_what_it_lacks(cluster: FakeCluster) -> None:
    cluster.set_nodes([NodeSpec("big-1"), NodeSpec("big-2"),
                       NodeSpec("small", memory="8Gi", allocatable_memory="7Gi")])
    nodes = run(cluster, "k8s.nodes")["k8s.nodes"]
    assert nodes.status == "fail"
    assert "small: memory 8.6 GB (8.0 GiB) < 16 GB" in nodes.message
    assert "big-1" not in nodes.message  # only the nodes that lack something are named
    assert "small 2 CPU 8.6 GB, allocatable 2 CPU 7.5 GB" in nodes.observed
    assert nodes.observed.startswith("2 of 3 nodes qualify")


def test_a_node_short_of_cpu_is_named(cluster: FakeCluster) -> None:
    cluster.set_nodes([*good_nodes(2), NodeSpec("tiny", cpu="1500m")])
    nodes = run(cluster, "k8s.nodes")["k8s.nodes"]
    assert nodes.status == "fail"
    assert "tiny: CPU 1.5 < 2" in nodes.message


@pytest.mark.parametrize("spec, word", [
    (NodeSpec("node-3", ready=False), "NotReady"),
    (NodeSpec("node-3", unschedulable=True), "cordoned"),
])
def test_one_node_not_ready_or_cordoned_warns(cluster: FakeCluster, spec: NodeSpec,
                                              word: str) -> None:
    cluster.set_nodes([*good_nodes(2), spec])
    nodes = run(cluster, "k8s.nodes")["k8s.nodes"]
    assert nodes.status == "warn", nodes
    assert f"node-3: {word}" in nodes.message
    assert "only 2 can take pods" in nodes.message
    assert "uncordon" in nodes.remediation


def test_a_tainted_node_does_not_count(cluster: FakeCluster) -> None:
    cluster.set_nodes([*good_nodes(2), NodeSpec("gpu", taints=[
        {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}])])
    nodes = run(cluster, "k8s.nodes")["k8s.nodes"]
    assert nodes.status == "warn"
    assert "gpu: taint dedicated=gpu:NoSchedule" in nodes.message


def test_a_vm_sold_as_16_gb_passes(cluster: FakeCluster) -> None:
    """16 GB decimal as the kubelet reports it (15625000Ki = 16.0e9 bytes) must pass; one
    KiB less must not."""
    cluster.set_nodes([NodeSpec(f"n{i}", memory="15625000Ki") for i in range(3)])
    assert run(cluster, "k8s.nodes")["k8s.nodes"].status == "pass"
    cluster.set_nodes([NodeSpec(f"n{i}", memory="15624999Ki") for i in range(3)])
    assert run(cluster, "k8s.nodes")["k8s.nodes"].status == "fail"


def test_more_good_nodes_than_needed_pass_and_name_the_bad_one(cluster: FakeCluster) -> None:
    cluster.set_nodes([*good_nodes(3), NodeSpec("down", ready=False)])
    nodes = run(cluster, "k8s.nodes")["k8s.nodes"]
    assert nodes.status == "pass"
    assert "not counted: down: NotReady" in nodes.message


# ---- k8s.version / k8s.helm ----------------------------------------------------------------------


@pytest.mark.parametrize("version, minor, status", [
    ("v1.11.10", None, "fail"), ("v1.12.0", None, "pass"), ("v1.30.2", None, "pass"),
    ("v1.30.5-eks-ce1d5eb", "30+", "pass"),
])
def test_kubernetes_version(cluster: FakeCluster, version: str, minor: str | None,
                            status: str) -> None:
    cluster.set_version(version, minor=minor)
    result = run(cluster, "k8s.version")["k8s.version"]
    assert result.status == status, result
    assert result.observed == version
    if status == "fail":
        assert "older than 1.12" in result.message and result.remediation


def test_real_helm_3_17_passes(cluster: FakeCluster) -> None:
    helm = run(cluster, "k8s.helm")["k8s.helm"]
    assert helm.status == "pass"
    assert helm.observed == "v3.17.1"


def test_helm_3_5_fails(cluster: FakeCluster, tmp_path: Path,
                        monkeypatch: pytest.MonkeyPatch, kubectl_bin: Path) -> None:
    old = fake_helm_binary(tmp_path, "v3.5.4")
    use_cluster(cluster, monkeypatch, old.parent, kubectl_bin.parent)
    helm = run(cluster, "k8s.helm")["k8s.helm"]
    assert helm.status == "fail"
    assert helm.observed == "v3.5.4"
    assert "older than 3.6.0" in helm.message and "helm.sh" in helm.remediation


def test_missing_helm_and_kubectl_fail_with_how_to_install(
        cluster: FakeCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))  # (this machine has a kubectl in /usr/bin)
    results = run(cluster, "k8s")
    assert results["k8s.helm"].status == "fail"
    assert "`helm` is not installed" in results["k8s.helm"].message
    assert results["k8s.cluster"].status == "fail"
    assert "`kubectl` is not installed" in results["k8s.cluster"].message
    assert "kubernetes.io/docs/tasks/tools" in results["k8s.cluster"].remediation
    assert results["k8s.nodes"].status == "skip"


# ---- k8s.cluster --------------------------------------------------------------------------------


def test_reachable_cluster_names_server_and_context(cluster: FakeCluster) -> None:
    result = run(cluster, "k8s.cluster")["k8s.cluster"]
    assert result.status == "pass"
    assert result.observed == f"v1.30.2 at {cluster.url}"
    assert "context fixture" in result.message


def test_wrong_token_is_auth_refused(cluster: FakeCluster, tmp_path: Path) -> None:
    bad = cluster.write_kubeconfig(tmp_path / "bad-token", token="wrong")
    results = run(cluster, "k8s", answers_for(cluster, kubeconfig=str(bad)))
    result = results["k8s.cluster"]
    assert result.status == "fail"
    assert "refused the credentials" in result.message
    assert result.observed == "401 Unauthorized"
    assert "get-credentials" in result.remediation
    for dependent in ("k8s.version", "k8s.nodes", "k8s.permissions", "k8s.storage"):
        assert results[dependent].status == "skip"
        assert "k8s.cluster" in results[dependent].message


def test_unknown_context(cluster: FakeCluster) -> None:
    result = run(cluster, "k8s.cluster", answers_for(cluster, context="nope"))["k8s.cluster"]
    assert result.status == "fail"
    assert result.message == f"no context 'nope' in kubeconfig {cluster.kubeconfig}"
    assert "kubectl config get-contexts" in result.remediation


def test_untrusted_certificate(cluster: FakeCluster, tmp_path: Path) -> None:
    untrusted = cluster.write_kubeconfig(tmp_path / "untrusted", trusted=False)
    result = run(cluster, "k8s.cluster",
                 answers_for(cluster, kubeconfig=str(untrusted)))["k8s.cluster"]
    assert result.status == "fail"
    assert "certificate is not trusted" in result.message
    assert "insecure-skip-tls-verify" in result.remediation


def test_connection_refused(cluster: FakeCluster, tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = tmp_path / "refused"
    text = cluster.kubeconfig.read_text().replace(f"127.0.0.1:{cluster.port}",
                                                  f"127.0.0.1:{port}")
    config.write_text(text)
    result = run(cluster, "k8s.cluster", answers_for(cluster, kubeconfig=str(config)))
    assert result["k8s.cluster"].status == "fail"
    assert result["k8s.cluster"].observed == "connection refused"
    assert "nothing answers" in result["k8s.cluster"].message


def test_missing_kubeconfig(cluster: FakeCluster, tmp_path: Path) -> None:
    result = run(cluster, "k8s.cluster",
                 answers_for(cluster, kubeconfig=str(tmp_path / "none")))["k8s.cluster"]
    assert result.status == "fail"
    assert "does not exist" in result.message
    assert "kubernetes.kubeconfig" in result.remediation


# ---- k8s.permissions -----------------------------------------------------------------------------


def test_all_allowed(cluster: FakeCluster) -> None:
    result = run(cluster, "k8s.permissions")["k8s.permissions"]
    assert result.status == "pass"
    assert result.observed == "41 of 41 allowed"


def test_denied_kind_fails_naming_verb_and_resource(cluster: FakeCluster) -> None:
    cluster.deny("create", "deployments", "apps", "carto")
    result = run(cluster, "k8s.permissions")["k8s.permissions"]
    assert result.status == "fail"
    assert result.message == "denied: create deployments.apps in namespace carto"
    assert "--clusterrole=admin" in result.remediation and "-n carto" in result.remediation


def test_denied_in_another_namespace_does_not_matter(cluster: FakeCluster) -> None:
    cluster.deny("*", "*", "*", "kube-system")
    result = run(cluster, "k8s.permissions")["k8s.permissions"]
    assert result.status == "pass"


def test_no_namespace_creation_is_fine_when_the_namespace_exists(cluster: FakeCluster) -> None:
    cluster.deny("create", "namespaces")
    result = run(cluster, "k8s.permissions")["k8s.permissions"]
    assert result.status == "fail"
    assert "create namespaces (cluster scope)" in result.message
    assert "kubectl create namespace carto" in result.remediation
    cluster.put_object({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "carto"}})
    result = run(cluster, "k8s.permissions")["k8s.permissions"]
    assert result.status == "pass"
    assert "namespace carto exists" in result.message


# ---- k8s.storage --------------------------------------------------------------------------------


def test_storage_default_class(cluster: FakeCluster) -> None:
    assert run(cluster, "k8s.storage")["k8s.storage"].status == "pass"
    cluster.set_storage_classes([("slow", False), ("fast", False)])
    result = run(cluster, "k8s.storage")["k8s.storage"]
    assert result.status == "warn"
    assert result.observed == "no default among fast, slow"
    assert "kubectl patch storageclass fast" in result.remediation


def test_storage_is_skipped_with_an_external_database(cluster: FakeCluster) -> None:
    answers = answers_for(cluster)
    answers.database.bundled = False
    result = run(cluster, "k8s.storage", answers)["k8s.storage"]
    assert result.status == "skip"
    assert "external PostgreSQL" in result.message


# ---- through the CLI ----------------------------------------------------------------------------


def test_cli_preflight_reports_every_k8s_check(k8s_cluster: FakeCluster, helm_bin: Path,
                                               kubectl_bin: Path, tmp_path: Path) -> None:
    k8s_cluster.set_nodes([*good_nodes(2), NodeSpec("small", memory="8Gi")])
    answers = tmp_path / "answers.yaml"
    answers.write_text(f"platform: kubernetes\nkubernetes:\n  kubeconfig: {k8s_cluster.kubeconfig}"
                       "\n  context: fixture\n")
    env = k8s_cluster.client_env()
    env["PATH"] = f"{helm_bin.parent}:{kubectl_bin.parent}:{env['PATH']}"
    result = run_cli("preflight", "--answers", str(answers), "--only", "k8s", "--format",
                     "json", env=env, cwd=tmp_path)
    report = json.loads(result.stdout)
    statuses = {c["id"]: c["status"] for c in report["checks"]}
    assert statuses == {"k8s.cluster": "pass", "k8s.version": "pass", "k8s.helm": "pass",
                        "k8s.nodes": "fail", "k8s.permissions": "pass", "k8s.storage": "skip"}
    assert result.returncode == 3


def test_cli_preflight_without_answers_uses_kubeconfig_from_the_environment(
        k8s_cluster: FakeCluster, helm_bin: Path, kubectl_bin: Path, tmp_path: Path) -> None:
    env = k8s_cluster.client_env()  # KUBECONFIG points at the fixture's kubeconfig
    env["PATH"] = f"{helm_bin.parent}:{kubectl_bin.parent}:{env['PATH']}"
    result = run_cli("preflight", "--platform", "kubernetes", "--only", "k8s", "--format",
                     "json", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    statuses = {c["id"]: c["status"] for c in json.loads(result.stdout)["checks"]}
    assert statuses["k8s.cluster"] == "pass" and statuses["k8s.nodes"] == "pass"
    assert statuses["k8s.storage"] == "skip"


# ---- parsing ------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, value", [
    ("2", 2), ("1500m", 1.5), ("16Gi", 16 * 2**30), ("16G", 16e9), ("1e9", 1e9),
    ("15625000Ki", 16e9), ("0.5", 0.5), ("7.5Gi", 7.5 * 2**30),
])
def test_parse_quantity(text: str, value: float) -> None:
    assert float(parse_quantity(text)) == value


def test_parse_quantity_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        parse_quantity("16 GB")


@pytest.mark.parametrize("output, kind", [
    ("Error: Kubernetes cluster unreachable: the server has asked for the client to provide "
     "credentials", "auth"),
    ('Error: Kubernetes cluster unreachable: context "nope" does not exist', "no-context"),
    ("error: context was not found for specified context: nope", "no-context"),
    ("dial tcp 127.0.0.1:1: connect: connection refused", "refused"),
    ("The connection to the server 127.0.0.1:1 was refused - did you specify the right host "
     "or port?", "refused"),
    ("error: cannot locate context nope", "no-context"),
    ("dial tcp: lookup k8s.invalid: no such host", "dns"),
    ("Unable to connect to the server: dial tcp 10.0.0.1:443: i/o timeout", "timeout"),
    ('secrets is forbidden: User "x" cannot list resource "secrets"', "forbidden"),
])
def test_classify_helm_and_kubectl_errors(output: str, kind: str) -> None:
    assert classify(output).kind == kind


# ---- license.version against the chart's minimum -------------------------------------------


@pytest.mark.parametrize(("version", "status"), [("2024.6.1", "pass"), ("2023.12.1", "fail")])
def test_package_version_is_checked_against_the_charts_minimum(
        cluster: FakeCluster, tmp_path: Path, version: str, status: str) -> None:
    """Before any install: the test chart says 2024.1.1 is its minimum (an annotation read
    with the real `helm show chart`), so an older package fails at preflight instead of in
    the chart's pre-install hook."""
    from tests.support.k8s_package import k8s_answers, make_helm_package

    package = make_helm_package(tmp_path / "pkg", version=version)
    answers = parse_answers(k8s_answers(cluster, package.path))
    results = run(cluster, "license", answers)
    check = results["license.version"]
    assert check.status == status, check.message
    assert "2024.1.1" in check.message
    if status == "fail":
        assert "BackoffLimitExceeded" in check.message and check.remediation
    assert not cluster.mutating_requests()  # a preflight changes nothing in the cluster


def test_unreadable_chart_leaves_the_minimum_unknown(cluster: FakeCluster,
                                                    tmp_path: Path) -> None:
    from tests.support.k8s_package import k8s_answers, make_helm_package

    package = make_helm_package(tmp_path / "pkg")
    data = k8s_answers(cluster, package.path)
    data["kubernetes"]["chart"] = str(tmp_path / "no-such-chart.tgz")
    check = run(cluster, "license", parse_answers(data))["license.version"]
    assert check.status == "warn"
    assert "minimum unknown" in check.observed and check.remediation
