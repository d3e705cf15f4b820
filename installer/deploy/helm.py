"""The Kubernetes deployment: preflight, render, Secrets, `helm upgrade --install`, address.

What it guards against, in order:
- a package older than the chart's minimum (the chart's pre-install hook would fail with
  BackoffLimitExceeded): the minimum is read from the chart (`helm show chart`, local .tgz or
  repository) and compared before anything changes;
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

from installer.answers import Answers, require
from installer.deploy import (
    DeployCancelled,
    DeployResult,
    EventSink,
    LogLine,
    ServiceState,
    StatusResult,
    StepFinished,
    StepStarted,
    gate_on_preflight,
)
from installer.errors import DeployError, InputError
from installer.kube import Kube, KubeError, first_error_line
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
MIN_VERSION_ANNOTATION = "carto.com/minCustomerPackageVersion"
PENDING = ("pending-install", "pending-upgrade", "pending-rollback")
GOOD = ("deployed", "superseded")


# ---- the release and the chart ----------------------------------------------------------------


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
    minimum: str | None  # the oldest package version the chart accepts, when it says
    identity: str  # changes whenever the chart does


def _local_chart(reference: str) -> Path | None:
    path = Path(reference).expanduser()
    looks_local = reference.endswith((".tgz", ".tar.gz")) or reference.startswith(
        ("/", "./", "../", "~")) or path.exists()
    if not looks_local:
        return None
    if not path.exists():
        raise InputError(f"kubernetes.chart: {reference} does not exist",
                         "give the chart's .tgz (e.g. from `helm pull carto/carto`) or a "
                         "repository reference such as carto/carto")
    return path.resolve()


def _content_digest(path: Path) -> str:
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        data = file.read_bytes()
        digest.update(str(file.relative_to(path) if path.is_dir() else file.name).encode())
        digest.update(len(data).to_bytes(8, "big") + data)
    return digest.hexdigest()


def chart_info(kube: Kube, reference: str) -> ChartInfo:
    """Read the chart's metadata (`helm show chart`) from the local .tgz/folder or the repo."""
    import yaml

    local = _local_chart(reference)
    given = str(local) if local else reference
    result = kube.helm("show", "chart", given, timeout=120)
    if not result.ok:
        text = result.output()
        if re.search(r"repo .* not found|no repo named|failed to fetch|not found in .* index",
                     text):
            repo = reference.split("/", 1)[0]
            raise DeployError(
                f"helm cannot find the chart {reference}: {first_error_line(text)}",
                f"add the repository: `helm repo add {repo} https://helm.carto.com && helm repo "
                "update`, or set kubernetes.chart to a local .tgz (restricted networks)")
        raise KubeError(kube.failure(text, "helm"))
    try:
        meta = yaml.safe_load(result.stdout) or {}
    except yaml.YAMLError:
        meta = {}
    if not isinstance(meta, dict) or not meta.get("name"):
        raise DeployError(f"{reference} is not a Helm chart (`helm show chart` gave no name)",
                          "give the CARTO chart: carto/carto or its .tgz")
    minimum = (meta.get("annotations") or {}).get(MIN_VERSION_ANNOTATION)
    identity = hashlib.sha256(result.stdout.encode()).hexdigest()
    if local is not None:
        identity += ":" + _content_digest(local)
    return ChartInfo(given, str(meta["name"]), str(meta.get("version", "?")),
                     str(minimum).strip() if minimum else None, identity)


def check_package_version(package_version: str | None, chart: ChartInfo) -> str:
    """Refuse a package older than the chart's minimum; return what was found, for the log."""
    from installer.package import version_at_least

    if not package_version:
        raise DeployError("carto-values.yaml has no cartoConfigValues.customerPackageVersion",
                          "download the installation package again from CARTO")
    if chart.minimum is None:
        return (f"the chart {chart.name} {chart.version} does not state its minimum package "
                f"version; its own pre-install check will decide")
    if version_at_least(package_version, chart.minimum):
        return (f"package {package_version} >= {chart.minimum}, the minimum of chart "
                f"{chart.name} {chart.version}")
    raise DeployError(
        f"the installation package {package_version} is older than {chart.minimum}, the "
        f"minimum of chart {chart.name} {chart.version}: its pre-install hook would fail with "
        "BackoffLimitExceeded",
        "download a newer installation package (CARTO Workspace > Settings > Self-Hosted, or "
        "ask CARTO support) and point `package:` at it, or install an older chart version")


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


def missing_secrets(kube: Kube, manifests: list[dict[str, Any]]) -> list[str]:
    names = [m["metadata"]["name"] for m in manifests]
    if not names:
        return []
    result = kube.kubectl("get", "secrets", *names, "--ignore-not-found", "-o", "name",
                          namespace=True)
    if not result.ok:
        return names
    present = {line.strip().split("/", 1)[-1] for line in result.stdout.splitlines()}
    return [n for n in names if n not in present]


def apply_secrets(kube: Kube, manifests: list[dict[str, Any]]) -> dict[str, str]:
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


class _Step:
    def __init__(self, emit: EventSink, redactor: Redactor, name: str) -> None:
        self.emit, self.redactor, self.name, self.detail = emit, redactor, name, ""

    def __enter__(self) -> _Step:
        self.emit(StepStarted(self.name))
        log.info("step %s", self.name)
        return self

    def __exit__(self, kind: object, exc: BaseException | None, tb: object) -> None:
        ok = exc is None
        detail = self.detail if ok else self.redactor(
            getattr(exc, "message", None) or str(exc) or type(exc).__name__)
        self.emit(StepFinished(self.name, ok, detail))
        log.info("step %s %s: %s", self.name, "done" if ok else "failed", detail)


def _safe(on_event: EventSink | None) -> EventSink:
    def emit(event: Any) -> None:
        if on_event is None:
            return
        try:
            on_event(event)
        except Exception:  # a front end's display bug must not stop a deployment
            log.exception("event handler failed")

    return emit


def _check_cancel(cancel: threading.Event) -> None:
    if cancel.is_set():
        raise DeployCancelled("cancelled: the deployment was stopped",
                              "re-run `carto-installer deploy` to continue")


def _customizations_after(plan: RenderPlan, path: str) -> bytes:
    for change in plan.changes:
        if change.path == path:
            return change.after
    try:
        return Path(path).read_bytes()
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
                      resolver: Resolver | None = None) -> DeployResult:
    """Preflight, render, fix a stuck release (with consent), Secrets, helm, address.

    `resolver` is handed to the preflight's name lookups (tests keep them on loopback).
    Raises DeployError (exit 3) on failure, DeployCancelled when `confirm` says no or
    `cancel` is set, InputError (exit 2) for bad input.
    """
    from installer.preflight import run_preflight
    from installer.render import apply_render
    from installer.render.helm import (
        plan_render_kubernetes,
        read_kubernetes_package,
        require_local,
        secret_manifests,
        values_files,
    )

    require_local(answers, target)
    require(answers, "package", "domain")
    assert answers.domain is not None
    cancel = cancel or threading.Event()
    emit = _safe(on_event)
    k8s = answers.kubernetes
    kube = Kube(target, k8s)
    from installer.exposure import exposure  # advanced answers: NodePort / own ingress

    url = exposure(answers).url

    with _Step(emit, redactor, "preflight") as step:
        report = run_preflight(target, answers, "kubernetes", redactor=redactor, cancel=cancel,
                               on_event=emit, resolver=resolver)
        _check_cancel(cancel)
        accepted = gate_on_preflight(report, skip)
        summary = report.summary()
        step.detail = (f"{summary['pass']} passed, {summary['warn']} warnings, "
                       f"{summary['skip']} skipped" + (
                           f", accepted risks: {', '.join(r.id for r in accepted)}"
                           if accepted else ""))
    accepted_ids = [r.id for r in accepted]

    with _Step(emit, redactor, "render") as step:
        plan = plan_render_kubernetes(answers, target, redactor=redactor)
        package = read_kubernetes_package(answers, redactor)
        chart = chart_info(kube, k8s.chart)
        emit(LogLine(check_package_version(package.version, chart)))
        manifests = secret_manifests(answers, redactor)
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
        if stuck is not None and confirm is None:
            # Never start a second operation on a release helm considers busy.
            raise DeployError(
                f"release {k8s.release} in namespace {k8s.namespace} is stuck in "
                f"{stuck.revision.status} (revision {stuck.revision.number}): helm refuses "
                "any new operation while another one is in progress",
                f"if no helm command is still running on it, run `{shlex.join(stuck.argv)}`, "
                "then re-run the deploy (or run the deploy interactively, without --yes, and "
                "accept the offered fix)")
        # The Secrets step creates a missing namespace itself; otherwise helm does.
        ns_missing = not up_to_date and not namespace_exists(kube)
        create_namespace = ns_missing and not manifests
        if not up_to_date:
            if stuck is not None:
                plan.actions.append(stuck.action)
            note = failed_release_note(kube, k8s.release, history)
            if note:
                plan.notes.append(note)
            if manifests:
                names = ", ".join(m["metadata"]["name"] for m in manifests)
                plan.actions.append(
                    (f"create namespace {k8s.namespace}, then " if ns_missing else "")
                    + f"create or update the Secrets {names} in namespace {k8s.namespace} "
                    "(kubectl apply, from standard input)")
            upgrade = helm_upgrade_argv(kube, answers, chart, files, description,
                                        create_namespace)
            plan.actions.append(f"run `{shlex.join(upgrade)}`")
        if (not plan.empty or plan.actions) and confirm is not None and not confirm(plan):
            raise DeployCancelled("not confirmed: nothing was changed")
        written = apply_render(plan, LocalTarget()) if not plan.empty else []
        for note in plan.notes:
            emit(LogLine(redactor(note)))
        step.detail = (f"wrote {len(written)} file(s)" if written
                       else "the files already match the answers")
    changed = bool(written)
    _check_cancel(cancel)

    if up_to_date:
        assert last is not None
        with _Step(emit, redactor, "launch") as step:
            step.detail = (f"release {k8s.release} revision {last.number} is already deployed "
                           "with these values: helm not run")
        return _finish(kube, answers, url, emit, redactor, cancel, accepted_ids, changed,
                       f"nothing changed: release {k8s.release} (revision {last.number}) is "
                       "deployed with these values")

    if stuck is not None:
        with _Step(emit, redactor, "fix stuck release") as step:
            emit(LogLine(redactor("$ " + shlex.join(stuck.argv))))
            log.info("running %s", shlex.join(stuck.argv))
            fixed = target.run(stuck.argv, timeout=HELM_TIMEOUT_S + 120)
            if not fixed.ok:
                raise DeployError(f"`{stuck.argv[1]}` failed: {first_error_line(fixed.output())}",
                                  f"run it by hand to see the whole error: "
                                  f"`{shlex.join(stuck.argv)}`")
            step.detail = f"release {k8s.release} is no longer {stuck.revision.status}"
        _check_cancel(cancel)

    applied: dict[str, str] = {}
    if manifests:
        with _Step(emit, redactor, "secrets") as step:
            if ns_missing:
                kube.checked(kube.kubectl("create", "namespace", k8s.namespace))
                emit(LogLine(f"created namespace {k8s.namespace}"))
            applied = apply_secrets(kube, manifests)
            step.detail = ", ".join(f"{name} {what}" for name, what in applied.items())
        _check_cancel(cancel)

    progress = _Progress(kube, k8s.release, emit, redactor)
    argv = helm_upgrade_argv(kube, answers, chart, files, description, create_namespace)
    with _Step(emit, redactor, "launch") as step:
        command = shlex.join(argv)
        emit(LogLine(redactor(f"$ {command}")))
        log.info("running %s", command)
        result = _run_watching(target, argv, progress, cancel, emit)
        if not result.ok:
            raise _helm_failure(result.stderr or result.stdout, progress, kube, k8s.release)
        for line in result.stdout.splitlines():
            if line.strip():
                emit(LogLine(redactor(line)))
        step.detail = f"helm upgrade --install {k8s.release} done"
    changed = True
    if last is not None and any(what == "configured" for what in applied.values()):
        # The chart does not watch the Secrets it reads: restart the pods so a new
        # certificate or password is used.
        restart = kube.kubectl("rollout", "restart", "deployment,statefulset", "-l",
                               f"app.kubernetes.io/instance={k8s.release}", namespace=True)
        emit(LogLine(redactor(
            "restarted the pods to load the changed Secrets" if restart.ok
            else f"could not restart the pods: {first_error_line(restart.output())}")))
    return _finish(kube, answers, url, emit, redactor, cancel, accepted_ids, changed,
                   f"CARTO is deployed as release {k8s.release} in namespace {k8s.namespace}")


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


def _helm_failure(output: str, progress: _Progress, kube: Kube, release: str) -> DeployError:
    line = error_summary(output)
    pods = progress.problems()
    if "another operation" in output:
        return DeployError(
            f"helm refused: {line}",
            "another helm operation started on this release meanwhile; wait for it, then "
            "re-run the deploy (it offers the rollback if the release stays pending)")
    if "BackoffLimitExceeded" in output or re.search(r"(pre|post)-(install|upgrade)", output):
        job = re.search(r"job (\S+) failed", output)
        name = job.group(1) if job else "<name>"
        return DeployError(
            f"a chart hook failed: {line}",
            f"read the hook's log: `kubectl logs -n {kube.namespace} job/{name}`"
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
    with _Step(emit, redactor, "address") as step:
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
    require(answers, "domain")
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
    services = [ServiceState(f"release {k8s.release}", last.status,
                             f"revision {last.number}, {last.chart}")]
    services += [pod_state(p) for p in pods]
    address = router_address(kube, k8s.release)
    where, todo = describe_address(address, answers.domain, k8s.namespace)
    unhealthy = [s.name for s in services[1:] if not _healthy(s)]
    healthy = last.status == "deployed" and not unhealthy
    if last.status in PENDING:
        message = (f"release {k8s.release} is stuck in {last.status}: run "
                   "`carto-installer deploy` to get the fix offered")
    elif last.status != "deployed":
        message = f"release {k8s.release} revision {last.number} is {last.status}"
    elif unhealthy:
        message = f"pods not ready: {', '.join(unhealthy)}"
    else:
        message = f"release {k8s.release} revision {last.number} is deployed; {todo}"
    return StatusResult(healthy, services, f"not probed from here ({where})", message)


# The dispatch in installer/deploy/__init__.py calls `helm.deploy` and `helm.status`.
deploy = deploy_kubernetes
status = status_kubernetes

__all__ = ["deploy", "deploy_kubernetes", "status", "status_kubernetes"]
