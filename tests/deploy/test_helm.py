"""The guided `helm upgrade --install`: the REAL helm 3.17 and kubectl 1.30 against the fixture
API server, with the test chart and values rendered by the installer.

Name lookups stay on this machine: in-process deploys get a resolver mapping every name to
127.0.0.1, and CLI runs happen in a private mount namespace whose resolv.conf points at
127.0.0.1 (no DNS server there, so a lookup fails without leaving the machine).
"""

from __future__ import annotations

import base64
import shlex
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from installer.answers import parse_answers
from installer.deploy import (
    DeployCancelled,
    LogLine,
    ServiceState,
    StepFinished,
)
from installer.deploy.helm import (
    Address,
    describe_address,
    status_kubernetes,
)
from installer.errors import DeployError, InputError
from installer.redact import Redactor
from installer.target import LocalTarget
from tests.services.k8s_apiserver import (
    FakeCluster,
    decode_release,
    release_secrets,
    set_release_status,
)
from tests.support.cli import cli_env
from tests.support.helm_deploy import (
    ADMIN_PASSWORD,
    DB_PASSWORD,
    SKIP,
    deploy,
    external_db_answers,
    run_cli_offline,
)
from tests.support.k8s_package import (
    CHART,
    HelmPackage,
    client_environment,
    k8s_answers,
    make_helm_package,
    self_signed_pair,
)


@pytest.fixture
def cluster(k8s_cluster: FakeCluster, helm_bin: Path, kubectl_bin: Path,
            monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeCluster:
    client_environment(k8s_cluster, monkeypatch, helm_bin.parent, kubectl_bin.parent)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return k8s_cluster


@pytest.fixture
def package(tmp_path: Path) -> HelmPackage:
    return make_helm_package(tmp_path / "package")


def latest_release(cluster: FakeCluster) -> dict[str, Any]:
    return decode_release(release_secrets(cluster, "carto", "carto")[-1])


def secret_data(cluster: FakeCluster, name: str) -> dict[str, bytes]:
    secret = cluster.get_object("secrets", name, "carto")
    assert secret is not None, f"Secret {name} was not created"
    return {k: base64.b64decode(v) for k, v in secret["data"].items()}


# ---- install, then a re-run that changes nothing -------------------------------------------------


def test_install_stores_the_release_creates_the_secrets_and_a_rerun_changes_nothing(
        cluster: FakeCluster, tmp_path: Path, package: HelmPackage) -> None:
    data = external_db_answers(cluster, tmp_path, package)
    events: list[Any] = []
    result = deploy(data, events=events)
    assert result.ok and result.changed
    assert result.url == "https://carto.example.com"
    assert "carto.example.com. A 203.0.113.10" in result.message

    secrets = release_secrets(cluster, "carto", "carto")
    assert len(secrets) == 1
    release = decode_release(secrets[0])
    assert release["info"]["status"] == "deployed"
    assert release["info"]["description"].startswith("carto-installer ")
    assert release["chart"]["metadata"]["name"] == "carto"
    assert release["config"]["appConfigValues"]["selfHostedDomain"] == "carto.example.com"
    assert release["config"]["externalPostgresql"]["existingSecret"] == \
        "carto-external-postgresql"
    assert cluster.get_object("deployments", "carto-router", "carto") is not None

    tls = cluster.get_object("secrets", "carto-tls-certificate", "carto")
    assert tls is not None and tls["type"] == "kubernetes.io/tls"
    assert secret_data(cluster, "carto-tls-certificate")["tls.crt"] == \
        (tmp_path / "tls" / "fullchain.pem").read_bytes()
    assert secret_data(cluster, "carto-external-postgresql") == {
        "carto-password": DB_PASSWORD.encode(), "admin-password": ADMIN_PASSWORD.encode()}
    # The Secrets reached the API server only as request bodies: no kubectl argument held one.
    assert all(r.method != "POST" or r.resource != "secrets" or "dryRun" not in r.query
               for r in cluster.requests)

    values = Path("customizations.yaml").read_text()
    key_lines = [line for line in (tmp_path / "tls" / "privkey.pem").read_text().splitlines()
                 if "-----" not in line]
    for secret in [DB_PASSWORD, ADMIN_PASSWORD, *key_lines, *package.secrets]:
        assert secret not in values

    launched = [e for e in events if isinstance(e, LogLine) and e.text.startswith("$ helm")]
    assert len(launched) == 1
    argv = shlex.split(launched[0].text[2:])
    work = Path.cwd()
    # The Secrets step created the namespace, so helm is not asked to.
    assert argv[:16] == ["helm", "upgrade", "--install", "carto", str(CHART), "-n", "carto",
                         "-f", str(package.path / "carto-values.yaml"),
                         "-f", str(package.path / "carto-secrets.yaml"),
                         "-f", str(work / "customizations.yaml"), "--wait", "--timeout", "15m"]
    assert any(isinstance(e, LogLine) and e.text == "created namespace carto" for e in events)

    cluster.reset_requests()
    events.clear()
    again = deploy(data, events=events)
    assert again.ok and not again.changed
    assert "nothing changed" in again.message
    assert cluster.mutation_counts() == Counter()
    assert len(release_secrets(cluster, "carto", "carto")) == 1
    launch = next(e for e in events if isinstance(e, StepFinished) and e.name == "launch")
    assert "helm not run" in launch.detail


def helm_command(events: list[Any]) -> list[str]:
    line = next(e.text for e in events if isinstance(e, LogLine) and e.text.startswith("$ helm"))
    return shlex.split(line[2:])


def test_changed_answers_upgrade_the_release(cluster: FakeCluster, tmp_path: Path,
                                             package: HelmPackage) -> None:
    data = k8s_answers(cluster, package.path)
    events: list[Any] = []
    deploy(data, events=events)
    # No Secret to create first (bundled database, generated certificate): helm makes the
    # namespace.
    assert helm_command(events)[5:8] == ["-n", "carto", "--create-namespace"]
    data["domain"] = "maps.example.com"
    result = deploy(data)
    assert result.changed
    assert latest_release(cluster)["version"] == 2
    config = cluster.get_object("configmaps", "carto-config", "carto")
    assert config is not None and config["data"]["SELFHOSTED_DOMAIN"] == "maps.example.com"


def test_a_new_certificate_updates_the_secret_and_restarts_the_pods(
        cluster: FakeCluster, tmp_path: Path, package: HelmPackage) -> None:
    data = external_db_answers(cluster, tmp_path, package)
    deploy(data)
    cert, key = self_signed_pair(tmp_path / "renewed", "carto.example.com")
    data["tls"] = {"certificate_file": str(cert), "key_file": str(key)}
    events: list[Any] = []
    result = deploy(data, events=events)
    assert result.changed
    assert secret_data(cluster, "carto-tls-certificate")["tls.crt"] == cert.read_bytes()
    router = cluster.get_object("deployments", "carto-router", "carto")
    assert router is not None
    annotations = router["spec"]["template"]["metadata"].get("annotations") or {}
    assert "kubectl.kubernetes.io/restartedAt" in annotations
    assert any(isinstance(e, LogLine) and "restarting deployment/carto-router" in e.text
               for e in events)
    # The new pods are the ones serving: the old ReplicaSet was scaled down.
    pods = cluster.objects("pods", "carto", "app.kubernetes.io/component=router")
    assert [p["metadata"]["annotations"].get("kubectl.kubernetes.io/restartedAt")
            for p in pods] == [annotations["kubectl.kubernetes.io/restartedAt"]]


def test_a_chart_whose_workloads_read_no_admin_password_gets_none_and_needs_none(
        cluster: FakeCluster, tmp_path: Path, package: HelmPackage) -> None:
    """Decided from the rendered chart: without admin credentials in the answers the deploy
    goes through, and neither the Secret nor the values carry any."""
    Path("customizations.yaml").write_text(
        "testDouble:\n  adminPasswordToMigrations: false\n")
    data = external_db_answers(cluster, tmp_path, package)
    del data["database"]["admin_password"]
    events: list[Any] = []
    result = deploy(data, events=events)
    assert result.ok
    assert secret_data(cluster, "carto-external-postgresql") == {
        "carto-password": DB_PASSWORD.encode()}
    config = latest_release(cluster)["config"]
    assert "adminUser" not in config["externalPostgresql"]
    assert "existingSecretAdminPasswordKey" not in config["externalPostgresql"]
    assert config["testDouble"] == {"adminPasswordToMigrations": False}  # the admin's key kept
    assert any(isinstance(e, LogLine) and "nothing creates the user workspace_admin" in e.text
               for e in events)


def test_a_chart_whose_workloads_read_the_admin_password_makes_it_required(
        cluster: FakeCluster, tmp_path: Path, package: HelmPackage) -> None:
    data = external_db_answers(cluster, tmp_path, package)
    del data["database"]["admin_password"]
    cluster.reset_requests()
    with pytest.raises(InputError) as caught:
        deploy(data)
    assert "database.admin_password" in caught.value.message
    assert caught.value.exit_code == 2
    assert cluster.mutation_counts() == Counter()


# ---- refused before anything changes -------------------------------------------------------------


def test_a_package_older_than_the_chart_minimum_is_refused_before_installing(
        cluster: FakeCluster, tmp_path: Path) -> None:
    old = make_helm_package(tmp_path / "old-package", version="2023.12.1")
    cluster.reset_requests()
    with pytest.raises(DeployError) as caught:
        deploy(k8s_answers(cluster, old.path))
    assert "2023.12.1 is older than the chart's minimum 2024.1.1" in caught.value.message
    assert "BackoffLimitExceeded" in caught.value.message
    assert "newer installation package" in caught.value.remediation
    assert caught.value.exit_code == 3
    assert cluster.mutation_counts() == Counter()
    assert cluster.get_object("namespaces", "carto") is None
    assert not Path("customizations.yaml").exists()


def test_a_failed_preflight_stops_the_deploy(cluster: FakeCluster,
                                             package: HelmPackage) -> None:
    cluster.deny("create", "deployments", "apps", "carto")
    cluster.reset_requests()
    with pytest.raises(DeployError) as caught:
        deploy(k8s_answers(cluster, package.path))
    assert "k8s.permissions: denied: create deployments.apps" in caught.value.message
    assert "--skip k8s.permissions" in caught.value.remediation
    assert cluster.mutation_counts() == Counter()


def test_an_admin_limited_to_an_existing_namespace_can_install(
        cluster: FakeCluster, package: HelmPackage) -> None:
    """helm --create-namespace fails with Forbidden for such an admin even when the namespace
    exists, so the flag is left out then."""
    cluster.put_object({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "carto"}})
    cluster.deny("create", "namespaces")
    events: list[Any] = []
    result = deploy(k8s_answers(cluster, package.path), events=events)
    assert result.ok
    assert "--create-namespace" not in helm_command(events)
    assert latest_release(cluster)["info"]["status"] == "deployed"


def test_a_cancel_stops_before_anything_changes(cluster: FakeCluster,
                                                package: HelmPackage) -> None:
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(DeployCancelled):
        deploy(k8s_answers(cluster, package.path), cancel=cancel)
    assert cluster.mutation_counts() == Counter()
    assert not Path("customizations.yaml").exists()


# ---- a stuck release -----------------------------------------------------------------------------


def stuck_at_revision_2(cluster: FakeCluster, package: HelmPackage) -> dict[str, Any]:
    """Revision 1 deployed, then revision 2 left pending-upgrade (helm killed mid-upgrade)."""
    data = k8s_answers(cluster, package.path)
    deploy(data)
    data["domain"] = "maps.example.com"
    deploy(data)
    set_release_status(cluster, "carto", "carto", "pending-upgrade")
    data["domain"] = "carto.example.com"
    return data


def test_a_pending_upgrade_is_refused_with_the_exact_rollback_command(
        cluster: FakeCluster, package: HelmPackage, helm_bin: Path) -> None:
    data = stuck_at_revision_2(cluster, package)
    cluster.reset_requests()
    with pytest.raises(DeployError) as caught:
        deploy(data)  # no confirm: non-interactive (--yes)
    error = caught.value
    assert error.exit_code == 3
    assert "stuck in pending-upgrade (revision 2)" in error.message
    command = (f"helm rollback carto 1 --wait --timeout 15m -n carto --kubeconfig "
               f"{cluster.kubeconfig} --kube-context fixture")
    assert f"`{command}`" in error.remediation
    # No second operation was started: nothing was written to the cluster at all.
    assert cluster.mutation_counts() == Counter()
    assert [decode_release(s)["info"]["status"]
            for s in release_secrets(cluster, "carto", "carto")] == \
        ["superseded", "pending-upgrade"]
    # The command given is the real fix.
    fixed = cluster.run(helm_bin, *shlex.split(command)[1:])
    assert fixed.returncode == 0, fixed.stderr
    assert latest_release(cluster)["info"]["status"] == "deployed"


def test_interactively_the_rollback_is_offered_then_the_upgrade_runs(
        cluster: FakeCluster, package: HelmPackage) -> None:
    data = stuck_at_revision_2(cluster, package)
    shown: list[str] = []

    def refuse(plan: Any) -> bool:
        shown.append(plan.summary())
        return False

    cluster.reset_requests()
    with pytest.raises(DeployCancelled):
        deploy(data, confirm=refuse)
    assert "roll back release carto (stuck in pending-upgrade at revision 2) to revision 1" \
        in shown[0]
    assert cluster.mutation_counts() == Counter()

    def accept(plan: Any) -> bool:
        shown.append(plan.summary())
        return True

    result = deploy(data, confirm=accept)
    assert result.ok and result.changed
    history = [decode_release(s) for s in release_secrets(cluster, "carto", "carto")]
    assert [r["version"] for r in history] == [1, 2, 3, 4]
    assert history[2]["info"]["description"] == "Rollback to 1"
    assert history[3]["info"]["status"] == "deployed"
    assert history[3]["config"]["appConfigValues"]["selfHostedDomain"] == "carto.example.com"


def test_a_pending_first_install_offers_uninstall(cluster: FakeCluster,
                                                  package: HelmPackage) -> None:
    data = k8s_answers(cluster, package.path)
    deploy(data)
    set_release_status(cluster, "carto", "carto", "pending-install")
    with pytest.raises(DeployError) as caught:
        deploy(data)
    assert "stuck in pending-install (revision 1)" in caught.value.message
    assert "`helm uninstall carto --wait --timeout 15m -n carto" in caught.value.remediation


def test_a_failed_release_is_upgraded_again(cluster: FakeCluster,
                                            package: HelmPackage) -> None:
    data = k8s_answers(cluster, package.path)
    deploy(data)
    set_release_status(cluster, "carto", "carto", "failed")
    shown: list[str] = []
    result = deploy(data, confirm=lambda plan: shown.append(plan.summary()) or True)
    assert "the last operation on release carto failed (revision 1" in shown[0]
    assert result.changed
    assert latest_release(cluster)["version"] == 2
    assert latest_release(cluster)["info"]["status"] == "deployed"


# ---- progress and failures --------------------------------------------------------------------


def test_pending_pods_are_reported_with_the_reason(cluster: FakeCluster, package: HelmPackage,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # A pod written with a status keeps it (the fixture decides the fate only of pods that
    # come without one), so this one stays Pending as on a cluster short of memory.
    cluster.put_object({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "carto"}})
    cluster.put_object({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "carto-workspace-api-7d9f", "namespace": "carto",
                     "labels": {"app.kubernetes.io/instance": "carto"}},
        "spec": {"containers": [{"name": "api", "image": "carto/workspace-api"}]},
        "status": {"phase": "Pending", "conditions": [
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}]}})
    cluster.put_object({
        "apiVersion": "v1", "kind": "Event", "type": "Warning", "reason": "FailedScheduling",
        "message": "0/3 nodes are available: 3 Insufficient memory.",
        "metadata": {"name": "carto-workspace-api-7d9f.1", "namespace": "carto"},
        "involvedObject": {"kind": "Pod", "name": "carto-workspace-api-7d9f",
                           "namespace": "carto"}})
    events: list[Any] = []
    deploy(k8s_answers(cluster, package.path), events=events)
    states = [e for e in events if isinstance(e, ServiceState)]
    assert ServiceState("carto-workspace-api-7d9f", "Pending", "0/1 ready, unschedulable") \
        in states
    lines = [e.text for e in events if isinstance(e, LogLine)]
    assert "carto-workspace-api-7d9f Pending: FailedScheduling: 0/3 nodes are available: 3 " \
        "Insufficient memory." in lines


def test_a_failing_chart_hook_is_explained(cluster: FakeCluster, package: HelmPackage) -> None:
    cluster.fail_job("carto-check-package-version", "cannot reach the license server\n")
    with pytest.raises(DeployError) as caught:
        deploy(k8s_answers(cluster, package.path))
    assert "the chart's hook job carto-check-package-version failed (BackoffLimitExceeded)" \
        in caught.value.message
    # No termination message (policy File): the log's tail, read with kubectl logs.
    assert "container check exited with code 1 (Error): cannot reach the license server" in \
        caught.value.message
    assert "`kubectl logs -n carto job/carto-check-package-version`" in \
        caught.value.remediation
    assert latest_release(cluster)["info"]["status"] == "failed"


def test_a_release_that_never_gets_ready_names_the_pending_pods(
        cluster: FakeCluster, package: HelmPackage, monkeypatch: pytest.MonkeyPatch) -> None:
    """A pod Pending for lack of memory and the router's image not pulled: helm --wait times
    out, and the error says why for each."""
    monkeypatch.setattr("installer.deploy.helm.HELM_TIMEOUT", "3s")
    cluster.unpullable_images["carto/router:"] = "rpc error: code = NotFound desc = not found"
    cluster.put_object({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "carto"}})
    cluster.put_object({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "carto-router-5c7b", "namespace": "carto",
                     "labels": {"app.kubernetes.io/instance": "carto"}},
        "spec": {"containers": [{"name": "router", "image": "carto/router"}]},
        "status": {"phase": "Pending", "conditions": [
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}]}})
    cluster.put_object({
        "apiVersion": "v1", "kind": "Event", "type": "Warning", "reason": "FailedScheduling",
        "message": "0/3 nodes are available: 3 Insufficient memory.",
        "metadata": {"name": "carto-router-5c7b.1", "namespace": "carto"},
        "involvedObject": {"kind": "Pod", "name": "carto-router-5c7b", "namespace": "carto"}})
    with pytest.raises(DeployError) as caught:
        deploy(k8s_answers(cluster, package.path))
    message = caught.value.message
    assert "did not become ready within 3s" in message
    assert "carto-router-5c7b Pending (FailedScheduling: 0/3 nodes are available: " \
        "3 Insufficient memory.)" in message
    assert 'Failed to pull image "carto/router:2024.1.1": rpc error: code = NotFound' in message
    assert "Insufficient cpu/memory: add nodes" in caught.value.remediation
    assert latest_release(cluster)["info"]["status"] == "failed"


def test_cluster_ip_service_says_how_to_expose_it(cluster: FakeCluster,
                                                  package: HelmPackage) -> None:
    data = k8s_answers(cluster, package.path)
    data["kubernetes"]["service_type"] = "ClusterIP"
    result = deploy(data)
    assert "ClusterIP" in result.message
    assert "kubectl port-forward -n carto svc/carto-router 8443:443" in result.message


def test_address_words() -> None:
    pending = Address("carto-router", "LoadBalancer", None, "10.96.0.10", [80, 443])
    where, todo = describe_address(pending, "carto.example.com", "carto")
    assert "no address yet" in where and "kubectl get svc carto-router -n carto -w" in todo
    named = Address("carto-router", "LoadBalancer", "abc.elb.amazonaws.com", None, [443])
    assert describe_address(named, "carto.example.com", "carto")[1].startswith(
        "create the DNS record `carto.example.com. CNAME abc.elb.amazonaws.com.`")


def test_status_reports_release_and_pods(cluster: FakeCluster, package: HelmPackage) -> None:
    data = k8s_answers(cluster, package.path)
    answers = parse_answers(data)
    before = status_kubernetes(answers, LocalTarget(), redactor=Redactor())
    assert not before.healthy and "not installed" in before.message
    deploy(data)
    after = status_kubernetes(answers, LocalTarget(), redactor=Redactor())
    assert after.healthy
    assert after.services[0] == ServiceState("release carto", "deployed",
                                             "revision 1, carto-1.0.0")
    assert "203.0.113.10" in after.https
    set_release_status(cluster, "carto", "carto", "pending-upgrade")
    stuck = status_kubernetes(answers, LocalTarget(), redactor=Redactor())
    assert not stuck.healthy and "stuck in pending-upgrade" in stuck.message


# ---- through the CLI --------------------------------------------------------------------------


def test_cli_deploy_prints_and_logs_the_command_and_leaks_no_secret(
        k8s_cluster: FakeCluster, helm_bin: Path, kubectl_bin: Path, tmp_path: Path,
        package: HelmPackage) -> None:
    data = external_db_answers(k8s_cluster, tmp_path, package)
    del data["database"]["password"], data["database"]["admin_password"]
    data["database"].update(password_env="WORKSPACE_DB_PASSWORD",
                            admin_password_env="PGADMIN_PASSWORD")
    answers = tmp_path / "answers.yaml"
    answers.write_text(yaml.safe_dump(data))
    env = k8s_cluster.client_env()
    env.update(PATH=f"{helm_bin.parent}:{kubectl_bin.parent}:{env['PATH']}",
               WORKSPACE_DB_PASSWORD=DB_PASSWORD, PGADMIN_PASSWORD=ADMIN_PASSWORD)
    work = tmp_path / "cli"
    work.mkdir()
    args = ("deploy", "--answers", str(answers), "--yes", "--skip", ",".join(SKIP))
    first = run_cli_offline(tmp_path, *args, env=env, cwd=work)
    assert first.returncode == 0, first.stdout + first.stderr
    command = next(line for line in first.stdout.splitlines() if "| $ helm upgrade" in line)
    command = command.split("| $ ", 1)[1]
    assert command.startswith(f"helm upgrade --install carto {CHART} -n carto -f ")
    log = (work / "carto-installer.log").read_text()
    assert f"running {command}" in log
    second = run_cli_offline(tmp_path, *args, env=env, cwd=work)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "nothing changed" in second.stdout
    status = run_cli_offline(tmp_path, "status", "--answers", str(answers), env=env, cwd=work)
    assert status.returncode == 0, status.stdout + status.stderr

    key_lines = [line for line in (tmp_path / "tls" / "privkey.pem").read_text().splitlines()
                 if "-----" not in line]
    everything = "".join([log, first.stdout, first.stderr, second.stdout, second.stderr,
                          status.stdout, (tmp_path / "customizations.yaml").read_text()])
    assert not (work / "customizations.yaml").exists()  # next to the answers (CONTRACT.md)
    for secret in [DB_PASSWORD, ADMIN_PASSWORD, *key_lines, *package.secrets]:
        assert secret not in everything
    assert (work / "carto-installer.log").stat().st_mode & 0o077 == 0


def test_cli_deploy_with_yes_refuses_a_stuck_release_with_exit_3(
        k8s_cluster: FakeCluster, helm_bin: Path, kubectl_bin: Path, tmp_path: Path,
        package: HelmPackage) -> None:
    answers = tmp_path / "answers.yaml"
    answers.write_text(yaml.safe_dump(k8s_answers(k8s_cluster, package.path)))
    env = k8s_cluster.client_env()
    env["PATH"] = f"{helm_bin.parent}:{kubectl_bin.parent}:{env['PATH']}"
    # A release left pending by an interrupted helm upgrade.
    install = k8s_cluster.run(helm_bin, "upgrade", "--install", "carto", str(CHART), "-n",
                              "carto", "--create-namespace", "-f",
                              str(package.path / "carto-values.yaml"), "--set",
                              "appConfigValues.selfHostedDomain=carto.example.com")
    assert install.returncode == 0, install.stderr
    set_release_status(k8s_cluster, "carto", "carto", "pending-upgrade")
    k8s_cluster.reset_requests()
    work = tmp_path / "cli"
    work.mkdir()
    result = run_cli_offline(tmp_path, "deploy", "--answers", str(answers), "--yes", "--skip",
                             ",".join(SKIP), env=env, cwd=work)
    assert result.returncode == 3, result.stdout + result.stderr
    assert "stuck in pending-upgrade (revision 1)" in result.stderr
    assert "helm uninstall carto --wait --timeout 15m -n carto" in result.stderr
    assert k8s_cluster.mutation_counts() == Counter()


def test_cli_deploy_on_a_terminal_offers_the_rollback_and_applies_it(
        k8s_cluster: FakeCluster, helm_bin: Path, kubectl_bin: Path, tmp_path: Path,
        package: HelmPackage) -> None:
    import pexpect

    answers = tmp_path / "answers.yaml"
    answers.write_text(yaml.safe_dump(k8s_answers(k8s_cluster, package.path)))
    env = k8s_cluster.client_env()
    env["PATH"] = f"{helm_bin.parent}:{kubectl_bin.parent}:{env['PATH']}"
    for domain in ("carto.example.com", "maps.example.com"):  # revisions 1 and 2
        result = k8s_cluster.run(helm_bin, "upgrade", "--install", "carto", str(CHART), "-n",
                                 "carto", "--create-namespace", "-f",
                                 str(package.path / "carto-values.yaml"), "--set",
                                 f"appConfigValues.selfHostedDomain={domain}")
        assert result.returncode == 0, result.stderr
    set_release_status(k8s_cluster, "carto", "carto", "pending-upgrade")
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
    work = tmp_path / "tty"
    work.mkdir()
    script = 'mount --bind "$1" /etc/resolv.conf && shift && exec "$@"'
    child = pexpect.spawn(
        "unshare", ["-m", "--propagation", "private", "sh", "-c", script, "sh", str(resolv),
                    sys.executable, "-m", "installer", "deploy", "--answers", str(answers),
                    "--skip", ",".join(SKIP)],
        env=cli_env(env), cwd=str(work), encoding="utf-8", timeout=120, dimensions=(50, 200))
    child.expect(r"Proceed\? \[y/N\]")
    offer = child.before
    assert "roll back release carto (stuck in pending-upgrade at revision 2) to revision 1" \
        in offer
    assert "helm upgrade --install carto" in offer
    child.sendline("y")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, child.before
    history = [decode_release(s)["info"] for s in release_secrets(k8s_cluster, "carto", "carto")]
    # (helm leaves the abandoned revision 2 marked pending-upgrade; only the latest counts)
    assert history[2]["description"] == "Rollback to 1"
    assert [h["status"] for h in history[2:]] == ["superseded", "deployed"]
