"""The Kubernetes deployment: preflight, render, Secrets, `helm upgrade --install`, address.

What it guards against, in order:
- a chart that cannot be used as given (a git checkout without its subcharts): refused,
  exit 2, before anything runs;
- a package older than the chart's minimum (the chart's pre-install hook would fail with
  BackoffLimitExceeded): the minimum is the annotation the chart's own check reads (its
  files, local .tgz/folder or `helm pull`ed), judged like license.version, before anything
  changes;
- credentials nothing uses: the chart is rendered (`helm template`) and the database admin's
  password goes into the Secret only when its workloads read it;
- a release stuck in pending-install/-upgrade/-rollback ("another operation is in
  progress"): the fix (`helm rollback` to the last good revision, or `helm uninstall` when
  there never was one) is offered and needs a yes; without one (--yes, scripts) it stops with
  the exact command and exit 3, and never starts a second operation;
- secrets in values files: passwords and the TLS pair go into Kubernetes Secrets through
  `kubectl apply` reading standard input, never a command line or a file.

"No change" detection: a second identical `helm upgrade` still makes a new revision (and
re-runs the chart's hooks), so helm is not run again when nothing changed. Each install or
upgrade is stored with `--description "carto-installer <fingerprint>"`; the fingerprint is a
SHA-256 over the chart (its metadata, and the bytes of a local chart), the three values files
and the Secrets' content. When the latest revision is `deployed` with the same fingerprint and
the Secrets exist, the deploy reports "nothing changed" and runs no helm command that changes
anything. (The fingerprint is as sensitive as the release data itself: reading `helm history`
needs read access to the release's Secrets in that namespace.) Comparing `helm get values`
instead would print every secret of carto-secrets.yaml into our process and log.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shlex
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from installer.answers import Answers, validate
from installer.answers.sections import DOMAIN
from installer.deploy import (
    DeployCancelled,
    DeployResult,
    EventSink,
    LogLine,
    ServiceState,
    StatusResult,
    safe_sink,
)
from installer.deploy.steps import Step, check_cancel, gated_preflight
from installer.errors import DeployError
from installer.helm_release import (  # the queries moved there; re-imported for callers
    ChartInfo,
    Revision,
    apply_secrets,
    chart_info,
    missing_secrets,
    namespace_exists,
    release_history,
)
from installer.kube import Kube, KubeError, first_error_line
from installer.render.actions import Action, ActionKind
from installer.target import LocalTarget

if TYPE_CHECKING:
    from installer.checks.base import Resolver
    from installer.redact import Redactor
    from installer.render import RenderPlan
    from installer.target import Target

log = logging.getLogger("installer.deploy.helm")

HELM_TIMEOUT = "15m"  # CARTO's first install pulls many images
HELM_TIMEOUT_S = 15 * 60
POLL_INTERVAL = 2.0
LOAD_BALANCER_WAIT = 120.0
DESCRIPTION_PREFIX = "carto-installer "
PENDING = ("pending-install", "pending-upgrade", "pending-rollback")
GOOD = ("deployed", "superseded")


# ---- the release and the chart ----------------------------------------------------------------


def check_package_version(package_version: str | None, chart: ChartInfo) -> str:
    """Refuse a package older than the chart's minimum (the same judge as license.version);
    return what was found, for the log."""
    from installer.chart import judge_chart_minimum

    verdict = judge_chart_minimum(package_version, chart.files)
    if not verdict.ok:
        raise DeployError(verdict.message, verdict.remediation)
    if verdict.status == "unknown":
        return f"{verdict.message}; its own pre-install check will decide"
    return verdict.message


def fingerprint(chart: ChartInfo, files: Sequence[bytes], secrets: list[dict[str, Any]],
                answers: Answers) -> str:
    digest = hashlib.sha256()
    parts = [chart.identity.encode(), *files,
             json.dumps(secrets, sort_keys=True).encode(),
             f"{answers.kubernetes.namespace}/{answers.kubernetes.release}".encode()]
    for part in parts:
        digest.update(len(part).to_bytes(8, "big") + part)
    return digest.hexdigest()


# ---- the fix for a stuck release -------------------------------------------------------------


@dataclass(frozen=True)
class StuckRelease:
    revision: Revision
    argv: list[str]  # the fix: helm rollback to the last good revision, or helm uninstall
    action: str


def stuck_release(kube: Kube, release: str, history: list[Revision]) -> StuckRelease | None:
    if not history or history[-1].status not in PENDING:
        return None
    last = history[-1]
    good = [r for r in history[:-1] if r.status in GOOD]
    if good:
        deployed = [r for r in good if r.status == "deployed"]
        to = (deployed or good)[-1]
        argv = kube.helm_argv("rollback", release, str(to.number), "--wait", "--timeout",
                              HELM_TIMEOUT, namespace=True)
        action = (f"roll back release {release} (stuck in {last.status} at revision "
                  f"{last.number}) to revision {to.number}: `{shlex.join(argv)}`")
    else:
        argv = kube.helm_argv("uninstall", release, "--wait", "--timeout", HELM_TIMEOUT,
                              namespace=True)
        action = (f"uninstall release {release} (stuck in {last.status} at revision "
                  f"{last.number}, never deployed): `{shlex.join(argv)}`")
    return StuckRelease(last, argv, action)


def failed_release_note(kube: Kube, release: str, history: list[Revision]) -> str | None:
    """A failed last revision needs no fix first (helm upgrades over it), but say so and how
    to go back instead."""
    if not history or history[-1].status != "failed":
        return None
    last = history[-1]
    good = [r for r in history[:-1] if r.status in GOOD]
    back = ""
    if good:
        argv = kube.helm_argv("rollback", release, str(good[-1].number), namespace=True)
        back = f"; to return to revision {good[-1].number} instead: `{shlex.join(argv)}`"
    return (f"the last operation on release {release} failed (revision {last.number}: "
            f"{last.description}); this upgrade replaces it{back}")


# ---- Secrets --------------------------------------------------------------------------------


# ---- progress --------------------------------------------------------------------------------


class _Progress:
    """Pods of the release coming up, and the warnings that keep them Pending."""

    def __init__(self, kube: Kube, release: str, emit: EventSink,
                 redactor: Redactor) -> None:
        self.kube = kube
        self.selector = f"app.kubernetes.io/instance={release}"
        self.emit = emit
        self.redactor = redactor
        self.states: dict[str, tuple[str, str]] = {}
        self.warnings: dict[tuple[str, str, str], None] = {}
        self.stuck: dict[str, str] = {}  # pod -> last reason it is not ready

    def poll(self) -> list[ServiceState]:
        try:
            pods = self.kube.kubectl_json("get", "pods", "-l", self.selector, namespace=True)
        except KubeError as exc:
            log.info("progress: cannot list pods: %s", exc.failure.message)
            return []
        states = [pod_state(p) for p in pods.get("items") or []]
        for state in states:
            if self.states.get(state.name) != (state.state, state.health):
                self.states[state.name] = (state.state, state.health)
                self.emit(state)
        waiting = {s.name for s in states if not _healthy(s)}
        if waiting:
            self._warnings(waiting)
        return states

    def _warnings(self, pods: set[str]) -> None:
        try:
            events = self.kube.kubectl_json("get", "events", "--field-selector", "type=Warning",
                                            namespace=True)
        except KubeError as exc:
            log.info("progress: cannot list events: %s", exc.failure.message)
            return
        for event in events.get("items") or []:
            pod = (event.get("involvedObject") or {}).get("name", "")
            if pod not in pods:
                continue
            reason = str(event.get("reason", ""))
            message = " ".join(str(event.get("message", "")).split())
            key = (pod, reason, message)
            # The kubelet follows a pull failure with bare "Error: ErrImagePull" /
            # "Error: ImagePullBackOff" warnings: keep the one that says why.
            if not (re.fullmatch(r"Error: \w+", message) and pod in self.stuck):
                self.stuck[pod] = f"{reason}: {message}"
            if key not in self.warnings:
                self.warnings[key] = None
                phase = self.states.get(pod, ("?", ""))[0]
                self.emit(LogLine(self.redactor(f"{pod} {phase}: {reason}: {message}")))

    def problems(self) -> str:
        """Why pods are not ready, for an error message."""
        lines = []
        for pod, (state, health) in sorted(self.states.items()):
            if state != "Running" or not health.startswith("ready"):
                why = self.stuck.get(pod) or health
                lines.append(f"{pod} {state}" + (f" ({why})" if why else ""))
        return "; ".join(lines)


def pod_state(pod: dict[str, Any]) -> ServiceState:
    name = str((pod.get("metadata") or {}).get("name", "?"))
    status = pod.get("status") or {}
    phase = str(status.get("phase", "Unknown"))
    containers = status.get("containerStatuses") or []
    total = len((pod.get("spec") or {}).get("containers") or containers) or len(containers)
    ready = sum(1 for c in containers if c.get("ready"))
    reasons = [str((c.get("state") or {}).get("waiting", {}).get("reason"))
               for c in containers if (c.get("state") or {}).get("waiting")]
    conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
    if not containers and total == 0:  # no container statuses reported yet
        ready_text = "ready" if conditions.get("Ready") == "True" else "not ready"
    else:
        ready_text = f"ready {ready}/{total}" if ready == total and total else \
            f"{ready}/{total} ready"
    health = ready_text + (f", {', '.join(reasons)}" if reasons else "")
    if phase == "Pending" and conditions.get("PodScheduled") == "False":
        health += ", unschedulable"
    return ServiceState(name, phase, health)


def workload_state(workload: dict[str, Any]) -> ServiceState:
    """A Deployment or StatefulSet by the chart's own name: ready when every desired replica
    is ready and up to date with its current spec."""
    meta = workload.get("metadata") or {}
    kind = str(workload.get("kind", "workload")).lower()
    desired = int((workload.get("spec") or {}).get("replicas", 1))
    status = workload.get("status") or {}
    ready = int(status.get("readyReplicas", 0))
    updated = int(status.get("updatedReplicas", 0))
    current = status.get("observedGeneration", 0) >= meta.get("generation", 0)
    ok = ready >= desired and updated >= desired and current
    return ServiceState(f"{kind} {meta.get('name', '?')}", "ready" if ok else "not ready",
                        f"{ready}/{desired} replicas ready"
                        + ("" if updated >= desired else f", {updated}/{desired} updated"))


def _healthy(state: ServiceState) -> bool:
    return state.state in ("Running", "Succeeded") and state.health.startswith("ready")


# ---- the service address ----------------------------------------------------------------------


@dataclass
class Address:
    service: str
    kind: str  # LoadBalancer, ClusterIP, NodePort
    external: str | None  # IP or host name of the load balancer
    cluster_ip: str | None
    ports: list[int] = field(default_factory=list)

    def dns_record(self, domain: str) -> str | None:
        if not self.external:
            return None
        if re.fullmatch(r"[0-9.]+", self.external):
            return f"{domain}. A {self.external}"
        if ":" in self.external:
            return f"{domain}. AAAA {self.external}"
        return f"{domain}. CNAME {self.external}."


def router_address(kube: Kube, release: str) -> Address | None:
    services = kube.kubectl_json("get", "services", "-l", f"app.kubernetes.io/instance={release}",
                                 namespace=True).get("items") or []
    if not services:
        return None

    def rank(svc: dict[str, Any]) -> tuple[int, int]:
        name = str(svc.get("metadata", {}).get("name", ""))
        kind = (svc.get("spec") or {}).get("type")
        return (0 if name.endswith("-router") else 1, 0 if kind == "LoadBalancer" else 1)

    svc = sorted(services, key=rank)[0]
    spec = svc.get("spec") or {}
    ingress = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    external = None
    if ingress:
        external = ingress[0].get("ip") or ingress[0].get("hostname")
    return Address(str(svc["metadata"]["name"]), str(spec.get("type", "ClusterIP")),
                   external, spec.get("clusterIP"),
                   [int(p["port"]) for p in spec.get("ports") or [] if "port" in p])


def wait_for_address(kube: Kube, release: str, cancel: threading.Event,
                     wait: float) -> Address | None:
    deadline = time.monotonic() + wait
    while True:
        address = router_address(kube, release)
        if address is None or address.kind != "LoadBalancer" or address.external:
            return address
        if time.monotonic() >= deadline or cancel.wait(POLL_INTERVAL):
            return address


def describe_address(address: Address | None, domain: str, namespace: str) -> tuple[str, str]:
    """(where CARTO answers, what the admin must do next) in words."""
    if address is None:
        return ("the release has no Service labelled with its name",
                f"find CARTO's router with `kubectl get svc -n {namespace}` and point "
                f"{domain} at it")
    if address.kind == "LoadBalancer":
        record = address.dns_record(domain)
        if record:
            return (f"service {address.service}: load balancer {address.external}",
                    f"create the DNS record `{record}`, then open https://{domain}")
        return (f"service {address.service}: the load balancer has no address yet",
                f"watch `kubectl get svc {address.service} -n {namespace} -w`; when "
                f"EXTERNAL-IP appears, point {domain} at it (A record for an IP, CNAME for a "
                "host name)")
    ports = "/".join(str(p) for p in address.ports) or "?"
    return (f"service {address.service}: {address.kind} {address.cluster_ip} (ports {ports}), "
            "not reachable from outside the cluster",
            f"expose it through your ingress controller or gateway and point {domain} at "
            f"that; to try it now: `kubectl port-forward -n {namespace} svc/{address.service} "
            "8443:443` and open https://localhost:8443")


# ---- the deployment ----------------------------------------------------------------------------


def _customizations_after(plan: RenderPlan, path: str) -> bytes:
    for change in plan.changes:
        if change.path == path:
            return change.after
    from installer.target import LocalTarget

    try:  # never through a link (render refused one; it may have appeared since)
        return LocalTarget().read_deployment_file(path, str(Path(path).parent))
    except OSError:
        return b""


def helm_upgrade_argv(kube: Kube, answers: Answers, chart: ChartInfo, files: list[str],
                      description: str, create_namespace: bool) -> list[str]:
    """The one helm command. --create-namespace only when the namespace is missing: helm
    then tries to create it even when it exists, which an admin limited to the namespace may
    not do (the install fails with Forbidden)."""
    k8s = answers.kubernetes
    argv = ["helm", "upgrade", "--install", k8s.release, chart.reference, "-n", k8s.namespace]
    if create_namespace:
        argv.append("--create-namespace")
    for file in files:
        argv += ["-f", file]
    argv += ["--wait", "--timeout", HELM_TIMEOUT, "--description", description]
    return argv + kube.helm_argv()[1:]  # the kubeconfig and context flags


def deploy_kubernetes(answers: Answers, target: Target, *, redactor: Redactor,
                      skip: Sequence[str] = (), cancel: threading.Event | None = None,
                      on_event: EventSink | None = None,
                      confirm: Callable[[RenderPlan], bool] | None = None,
                      resolver: Resolver | None = None,
                      repair_stuck: bool = False) -> DeployResult:
    """Preflight, render, fix a stuck release (with consent), Secrets, helm, address.

    A release left pending is fixed only when `confirm` accepts the plan that names the fix,
    or without asking when `repair_stuck` is set (--repair-stuck-release); with neither
    (--yes alone) the deploy stops and prints the exact command.

    `resolver` is handed to the preflight's name lookups (tests keep them on loopback).
    Raises DeployError (exit 3) on failure, DeployCancelled when `confirm` says no or
    `cancel` is set, InputError (exit 2) for bad input.
    """
    from installer.render import apply_render
    from installer.render.helm import (
        chart_facts,
        plan_render_kubernetes,
        read_kubernetes_package,
        require_local,
        secret_manifests,
        values_files,
    )

    require_local(answers, target)
    validate(answers, "kubernetes")
    assert answers.domain is not None
    cancel = cancel or threading.Event()
    emit = safe_sink(on_event)
    k8s = answers.kubernetes
    kube = Kube(target, k8s)
    from installer.exposure import exposure  # advanced answers: NodePort / own ingress

    url = exposure(answers).url
    # A chart that cannot be used as given (no subcharts, not a chart) is bad input: exit 2
    # before anything runs.
    chart = chart_info(kube, k8s.chart)

    with Step(emit, redactor, "preflight") as step:
        _report, accepted = gated_preflight(step, target, answers, "kubernetes", skip=skip,
                                            cancel=cancel, resolver=resolver)
    accepted_ids = [r.id for r in accepted]

    with Step(emit, redactor, "render") as step:
        package = read_kubernetes_package(answers, redactor)
        emit(LogLine(check_package_version(package.version, chart)))
        facts = (None if answers.database.bundled
                 else chart_facts(answers, target, redactor=redactor))
        plan = plan_render_kubernetes(answers, target, redactor=redactor, facts=facts)
        manifests = secret_manifests(
            answers, redactor,
            admin_credentials=facts.admin_credentials_used if facts is not None else True)
        files = values_files(answers)
        contents = [package.files["carto-values.yaml"], package.files["carto-secrets.yaml"],
                    _customizations_after(plan, files[2])]
        description = DESCRIPTION_PREFIX + fingerprint(chart, contents, manifests, answers)
        history = release_history(kube, k8s.release)
        last = history[-1] if history else None
        up_to_date = (last is not None and last.status == "deployed"
                      and last.description == description
                      and not missing_secrets(kube, manifests))
        stuck = stuck_release(kube, k8s.release, history)
        if stuck is not None and confirm is None and not repair_stuck:
            # Never start a second operation on a release helm considers busy.
            raise DeployError(
                f"release {k8s.release} in namespace {k8s.namespace} is stuck in "
                f"{stuck.revision.status} (revision {stuck.revision.number}): helm refuses "
                "any new operation while another one is in progress",
                f"if no helm command is still running on it, run `{shlex.join(stuck.argv)}`, "
                "then re-run the deploy (or re-run it with --repair-stuck-release, or "
                "interactively without --yes, and accept the offered fix)")
        # The Secrets step creates a missing namespace itself; otherwise helm does.
        ns_missing = not up_to_date and not namespace_exists(kube)
        create_namespace = ns_missing and not manifests
        if not up_to_date:
            if stuck is not None:
                plan.actions.append(Action(ActionKind.REPAIR_RELEASE, stuck.action))
            note = failed_release_note(kube, k8s.release, history)
            if note:
                plan.notes.append(note)
            if manifests:
                names = ", ".join(m["metadata"]["name"] for m in manifests)
                plan.actions.append(Action(
                    ActionKind.APPLY_SECRETS,
                    (f"create namespace {k8s.namespace}, then " if ns_missing else "")
                    + f"create or update the Secrets {names} in namespace {k8s.namespace} "
                    "(kubectl apply, from standard input)"))
            upgrade = helm_upgrade_argv(kube, answers, chart, files, description,
                                        create_namespace)
            plan.actions.append(Action(ActionKind.HELM_UPGRADE, f"run `{shlex.join(upgrade)}`"))
        if (not plan.empty or plan.actions) and confirm is not None and not confirm(plan):
            raise DeployCancelled("not confirmed: nothing was changed")
        written = apply_render(plan, LocalTarget()) if not plan.empty else []
        for note in plan.notes:
            emit(LogLine(redactor(note)))
        step.detail = (f"wrote {len(written)} file(s)" if written
                       else "the files already match the answers")
    changed = bool(written)
    check_cancel(cancel)

    if up_to_date:
        assert last is not None
        with Step(emit, redactor, "launch") as step:
            step.detail = (f"release {k8s.release} revision {last.number} is already deployed "
                           "with these values: helm not run")
        return _finish(kube, answers, url, emit, redactor, cancel, accepted_ids, changed,
                       f"nothing changed: release {k8s.release} (revision {last.number}) is "
                       "deployed with these values")

    if stuck is not None:
        with Step(emit, redactor, "fix stuck release") as step:
            emit(LogLine(redactor("$ " + shlex.join(stuck.argv))))
            log.info("running %s", shlex.join(stuck.argv))
            fixed = target.run(stuck.argv, timeout=HELM_TIMEOUT_S + 120)
            if not fixed.ok:
                raise DeployError(f"`{stuck.argv[1]}` failed: {first_error_line(fixed.output())}",
                                  f"run it by hand to see the whole error: "
                                  f"`{shlex.join(stuck.argv)}`")
            step.detail = f"release {k8s.release} is no longer {stuck.revision.status}"
        check_cancel(cancel)

    applied: dict[str, str] = {}
    if manifests:
        with Step(emit, redactor, "secrets") as step:
            if ns_missing:
                kube.checked(kube.kubectl("create", "namespace", k8s.namespace))
                emit(LogLine(f"created namespace {k8s.namespace}"))
            applied = apply_secrets(kube, manifests)
            step.detail = ", ".join(f"{name} {what}" for name, what in applied.items())
        check_cancel(cancel)

    progress = _Progress(kube, k8s.release, emit, redactor)
    argv = helm_upgrade_argv(kube, answers, chart, files, description, create_namespace)
    with Step(emit, redactor, "launch") as step:
        command = shlex.join(argv)
        emit(LogLine(redactor(f"$ {command}")))
        log.info("running %s", command)
        result = _run_watching(target, argv, progress, cancel, emit)
        if not result.ok:
            raise _helm_failure(result.stderr or result.stdout, progress, kube, k8s.release,
                                redactor)
        for line in result.stdout.splitlines():
            if line.strip():
                emit(LogLine(redactor(line)))
        step.detail = f"helm upgrade --install {k8s.release} done"
    changed = True
    replaced = [name for name, what in applied.items() if what == "configured"]
    if last is not None and replaced:
        with Step(emit, redactor, "restart") as step:
            step.detail = roll_workloads_using(kube, k8s.release, replaced, progress, emit,
                                               redactor)
    return _finish(kube, answers, url, emit, redactor, cancel, accepted_ids, changed,
                   f"CARTO is deployed as release {k8s.release} in namespace {k8s.namespace}")


def _secret_names_in(pod_spec: dict[str, Any]) -> set[str]:
    """The Secrets a pod template reads: volumes (also projected) and env/envFrom."""
    names: set[str] = set()
    for volume in pod_spec.get("volumes") or []:
        if (volume.get("secret") or {}).get("secretName"):
            names.add(str(volume["secret"]["secretName"]))
        for source in (volume.get("projected") or {}).get("sources") or []:
            if (source.get("secret") or {}).get("name"):
                names.add(str(source["secret"]["name"]))
    for container in (pod_spec.get("containers") or []) + (pod_spec.get("initContainers") or []):
        for env in container.get("env") or []:
            ref = (env.get("valueFrom") or {}).get("secretKeyRef") or {}
            if ref.get("name"):
                names.add(str(ref["name"]))
        for source in container.get("envFrom") or []:
            if (source.get("secretRef") or {}).get("name"):
                names.add(str(source["secretRef"]["name"]))
    return names


def roll_workloads_using(kube: Kube, release: str, secrets: list[str], progress: _Progress,
                         emit: EventSink, redactor: Redactor) -> str:
    """Restart the release's Deployments/StatefulSets whose pods read one of `secrets`, and
    wait for their rollout.

    The chart mounts the TLS pair with subPath (which the kubelet never refreshes) and has no
    checksum of an existingSecret in its pod templates, so after a changed certificate or
    password nothing rolls by itself: `kubectl rollout restart` changes the pod template
    (annotation kubectl.kubernetes.io/restartedAt), which makes new pods."""
    workloads = kube.kubectl_json("get", "deployments,statefulsets", "-l",
                                  f"app.kubernetes.io/instance={release}",
                                  namespace=True).get("items") or []
    wanted = set(secrets)
    targets = sorted(f"{str(w.get('kind', '')).lower()}/{w['metadata']['name']}"
                     for w in workloads
                     if _secret_names_in(((w.get("spec") or {}).get("template") or {})
                                         .get("spec") or {}) & wanted)
    if not targets:
        return f"no workload reads {', '.join(secrets)}"
    restart = kube.kubectl("rollout", "restart", *targets, namespace=True)
    if not restart.ok:
        raise DeployError(f"could not restart {', '.join(targets)} to load the changed "
                          f"Secrets: {first_error_line(restart.output())}",
                          f"run `kubectl rollout restart -n {kube.namespace} "
                          f"{' '.join(targets)}` once the cause is fixed")
    emit(LogLine(redactor(f"restarting {', '.join(targets)}: they read the changed Secrets "
                          f"{', '.join(secrets)}")))
    for target in targets:
        done = kube.kubectl("rollout", "status", target, f"--timeout={HELM_TIMEOUT}",
                            namespace=True, timeout=HELM_TIMEOUT_S + 60)
        progress.poll()
        if not done.ok:
            pods = progress.problems()
            raise DeployError(
                f"{target} did not finish rolling out with the changed Secrets: "
                f"{first_error_line(done.output())}" + (f"; not ready: {pods}" if pods else ""),
                f"see why with `kubectl describe {target} -n {kube.namespace}`; the previous "
                "pods keep serving until the new ones are ready")
    return f"restarted {', '.join(targets)} (they read {', '.join(secrets)})"


def _run_watching(target: Target, argv: list[str], progress: _Progress,
                  cancel: threading.Event, emit: EventSink) -> Any:
    """Run helm in a thread while the release's pods and their warnings are reported."""
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["result"] = target.run(argv, timeout=HELM_TIMEOUT_S + 120)
        except BaseException as exc:  # handed to the caller's thread
            box["error"] = exc

    worker = threading.Thread(target=work, name="helm", daemon=True)
    worker.start()
    told = False
    while worker.is_alive():
        worker.join(POLL_INTERVAL)
        if cancel.is_set() and not told:
            # Killing helm mid-upgrade is what leaves a release stuck in pending-upgrade.
            emit(LogLine("cancel requested: letting helm finish its operation so the release "
                         "is not left pending"))
            told = True
        if worker.is_alive():
            progress.poll()
    progress.poll()
    if "error" in box:
        error = box["error"]
        if isinstance(error, TimeoutError):
            raise DeployError(f"helm did not finish within {HELM_TIMEOUT_S + 120} s",
                              "see `helm status` and the pods' events") from None
        raise error
    if cancel.is_set():
        log.info("cancel was requested during helm; it finished")
    return box["result"]


def error_summary(output: str) -> str:
    """helm's error, its nested lines joined ("failed pre-install: 1 error occurred: job x
    failed: BackoffLimitExceeded"), without warnings."""
    lines = [re.sub(r"^(Error:|\*)\s*", "", line.strip()) for line in output.splitlines()]
    lines = [line for line in lines if line and not line.upper().startswith("WARNING")]
    return " ".join(lines)[:600] or "no output"


_VERSION_WORDS = re.compile(r"version is (outdated|older|too old)|older than|minimum version",
                            re.IGNORECASE)
_VERSION_FIX = ("the installation package is older than this chart accepts: download a newer "
                "package (CARTO Workspace > Settings > Self-Hosted, or ask CARTO support), point "
                "`package:` at it and re-run the deploy; or deploy an older chart version")


def hook_job_failure(kube: Kube, job: str) -> str | None:
    """What a failed hook Job's container said, read the way `kubectl logs job/NAME` and
    `kubectl describe` find it: the Job's pods (by its job-name label), the newest failed
    one's terminated state (exit code, reason, termination message), else its log's tail.
    None when nothing can be read (the Job was deleted, or no access)."""
    try:
        pods = kube.kubectl_json("get", "pods", "-l", f"job-name={job}",
                                 namespace=True).get("items") or []
    except KubeError as exc:
        log.info("cannot list the pods of job %s: %s", job, exc.failure.message)
        return None
    failed = [p for p in pods if (p.get("status") or {}).get("phase") == "Failed"] or pods
    if not failed:
        return None
    pod = max(failed, key=lambda p: str((p.get("metadata") or {}).get("creationTimestamp", "")))
    pod_name = str(pod["metadata"]["name"])
    parts = []
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        state = status.get("state") or {}
        if "terminated" in state:
            ended = state["terminated"]
            text = " ".join(str(ended.get("message") or "").split())
            if not text:
                got = kube.kubectl("logs", pod_name, "-c", str(status.get("name")),
                                   "--tail", "20", namespace=True)
                text = " ".join(got.stdout.split()) if got.ok else ""
            parts.append(f"container {status.get('name')} exited with code "
                         f"{ended.get('exitCode')} ({ended.get('reason', '?')})"
                         + (f": {text[-600:]}" if text else ""))
        elif "waiting" in state:
            waiting = state["waiting"]
            parts.append(f"container {status.get('name')} is waiting: "
                         f"{waiting.get('reason', '?')} {waiting.get('message', '')}".strip())
    return f"pod {pod_name}: " + "; ".join(parts) if parts else None


def _helm_failure(output: str, progress: _Progress, kube: Kube, release: str,
                  redactor: Redactor) -> DeployError:
    line = error_summary(output)
    pods = progress.problems()
    if "another operation" in output:
        return DeployError(
            f"helm refused: {line}",
            "another helm operation started on this release meanwhile; wait for it, then "
            "re-run the deploy (it offers the rollback if the release stays pending)")
    if "BackoffLimitExceeded" in output or re.search(r"(pre|post)-(install|upgrade)", output):
        job = re.search(r"job (\S+) failed(?:: (\w+))?", output)
        name = job.group(1) if job else "<name>"
        logs = f"`kubectl logs -n {kube.namespace} job/{name}`"
        said = hook_job_failure(kube, name) if job else None
        reason = (job.group(2) if job and job.group(2) else "failed")
        if said is not None:
            fix = (_VERSION_FIX if _VERSION_WORDS.search(said) else
                   f"fix what the hook reports (whole log: {logs}), then re-run the deploy")
            return DeployError(
                f"the chart's hook job {name} failed ({reason}): {redactor(said)}", fix)
        if pods and not job:  # helm names no job when it timed out waiting for one
            return DeployError(
                f"a chart hook did not finish: {line}; not ready: {pods}",
                f"see why with `kubectl describe pod <pod> -n {kube.namespace}` "
                "(ImagePullBackOff: registry access, image pull secrets or "
                "kubernetes.image_registry; Insufficient cpu/memory: add nodes); then re-run "
                "the deploy")
        return DeployError(
            f"a chart hook failed: {line}",
            f"read the hook's log: {logs}"
            + ("" if job else f" (names: `kubectl get jobs -n {kube.namespace}`)")
            + "; a failing version check means the package is older than the chart accepts")
    if "timed out" in output or "deadline exceeded" in output:
        return DeployError(
            f"the release did not become ready within {HELM_TIMEOUT}: {line}"
            + (f"; not ready: {pods}" if pods else ""),
            f"see why with `kubectl get pods -n {kube.namespace}` and `kubectl describe pod "
            f"<pod> -n {kube.namespace}` (Insufficient cpu/memory: add nodes; ImagePullBackOff: "
            "registry access or kubernetes.image_registry); then re-run the deploy")
    failure = kube.failure(output, "helm")
    return DeployError(f"helm upgrade --install {release} failed: {line}",
                       failure.remediation if failure.kind != "other" else
                       "the whole output is in carto-installer.log; fix the cause and re-run")


def _finish(kube: Kube, answers: Answers, url: str, emit: EventSink, redactor: Redactor,
            cancel: threading.Event, accepted: list[str], changed: bool,
            headline: str) -> DeployResult:
    assert answers.domain is not None
    with Step(emit, redactor, "address") as step:
        try:
            address = wait_for_address(kube, answers.kubernetes.release, cancel,
                                       LOAD_BALANCER_WAIT)
        except KubeError as exc:
            address = None
            log.info("cannot read the service: %s", exc.failure.message)
        where, todo = describe_address(address, answers.domain, kube.namespace)
        # ---- advanced answers: NodePort or the user's own ingress (installer/exposure.py)
        from installer.exposure import next_step

        todo = next_step(answers, address.service if address else f"{answers.kubernetes.release}"
                         "-router", kube.namespace) or todo
        # ---- end of advanced answers
        step.detail = where
        emit(LogLine(f"next: {todo}"))
    return DeployResult(True, url, f"{headline}. {where}. Next: {todo}.",
                        accepted_risks=accepted, changed=changed)


def status_kubernetes(answers: Answers, target: Target, *, redactor: Redactor) -> StatusResult:
    """The release's state, its pods and where it answers."""
    DOMAIN.check(answers)  # status reads the domain only (no secrets)
    assert answers.domain is not None
    k8s = answers.kubernetes
    kube = Kube(target, k8s)
    history = release_history(kube, k8s.release)
    if not history:
        return StatusResult(False, [], "not checked",
                            f"release {k8s.release} is not installed in namespace "
                            f"{k8s.namespace}: run `carto-installer deploy`")
    last = history[-1]
    pods = kube.kubectl_json("get", "pods", "-l", f"app.kubernetes.io/instance={k8s.release}",
                             namespace=True).get("items") or []
    workloads = kube.kubectl_json("get", "deployments,statefulsets", "-l",
                                  f"app.kubernetes.io/instance={k8s.release}",
                                  namespace=True).get("items") or []
    services = [ServiceState(f"release {k8s.release}", last.status,
                             f"revision {last.number}, {last.chart}")]
    states = [workload_state(w) for w in workloads]
    services += states
    services += [pod_state(p) for p in pods]
    address = router_address(kube, k8s.release)
    where, todo = describe_address(address, answers.domain, k8s.namespace)
    unhealthy = [s.name for s in states if s.state != "ready"]
    unhealthy += [s.name for s in services[1 + len(states):] if not _healthy(s)]
    healthy = last.status == "deployed" and not unhealthy
    if last.status in PENDING:
        message = (f"release {k8s.release} is stuck in {last.status}: run "
                   "`carto-installer deploy` to get the fix offered (with --yes, add "
                   "--repair-stuck-release)")
    elif last.status != "deployed":
        message = f"release {k8s.release} revision {last.number} is {last.status}"
    elif unhealthy:
        message = f"pods not ready: {', '.join(unhealthy)}"
    else:
        message = f"release {k8s.release} revision {last.number} is deployed; {todo}"
    facts, warnings = kubernetes_facts(kube, answers, last)
    return StatusResult(healthy, services, f"not probed from here ({where})", message, facts,
                        warnings)


def kubernetes_facts(kube: Kube, answers: Answers, last: Revision
                     ) -> tuple[list[str], list[str]]:
    """Release and package versions, the TLS certificate's expiry, the last deploy/upgrade.
    Each read is best effort: a fact that cannot be read is said to be unknown."""
    import base64

    from installer.deploy.https import certificate_expiry
    from installer.render.helm import secret_names

    release = answers.kubernetes.release
    package = "unknown"
    values = kube.helm("get", "values", release, "-o", "json", namespace=True)
    if values.ok:
        try:  # only the package's version is kept: the values also hold the package's secrets
            config = (json.loads(values.stdout or "{}") or {}).get("cartoConfigValues") or {}
            package = str(config.get("customerPackageVersion") or "unknown")
        except (ValueError, AttributeError):
            pass
    facts = [f"release: chart {last.chart} (app {last.app_version or 'unknown'}), package: "
             f"{package}"]
    warnings: list[str] = []
    tls_secret = secret_names(answers).tls
    try:
        secret = kube.kubectl_json("get", "secret", tls_secret, namespace=True)
        cert = base64.b64decode((secret.get("data") or {}).get("tls.crt", ""))
    except (KubeError, ValueError):
        cert = b""
    line, warning = certificate_expiry(cert or None, where=f"the Secret {tls_secret}")
    facts.append(line)
    if warning:
        warnings.append(warning.replace("carto-installer deploy", "carto-installer deploy "
                                        "(the router is rolled with it)"))
    history = kube.helm("history", release, "-o", "json", "--max", "1", namespace=True)
    updated = ""
    if history.ok:
        try:
            items = json.loads(history.stdout or "[]")
            updated = str(items[-1].get("updated", "")) if items else ""
        except (ValueError, AttributeError, IndexError):
            pass
    facts.append(f"last deploy or upgrade: revision {last.number} ({last.description or '-'})"
                 + (f" at {updated}" if updated else ""))
    return facts, warnings


# The dispatch in installer/deploy/__init__.py calls `helm.deploy` and `helm.status`.
deploy = deploy_kubernetes
status = status_kubernetes

__all__ = ["deploy", "deploy_kubernetes", "status", "status_kubernetes"]
