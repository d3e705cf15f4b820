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

This module is the deployment itself (the release and the chart, a stuck release's fix, the
helm run, the Secrets' rollout, the outcome); beside it: progress.py (the release's pods
coming up), address.py (where CARTO answers), hooks.py (what a failed helm run or hook Job
said) and status.py (`carto-installer status`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shlex
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from installer.answers import Answers, validate
from installer.deploy import (
    DeployResult,
    EventSink,
    LogLine,
    safe_sink,
)
from installer.deploy.helm.address import (
    LOAD_BALANCER_WAIT,
    POLL_INTERVAL,
    Address,
    describe_address,
    router_address,
    wait_for_address,
)
from installer.deploy.helm.hooks import (
    VERSION_FIX,
    VERSION_WORDS,
    error_summary,
    hook_job_failure,
)
from installer.deploy.helm.progress import PodProgress, pod_state, workload_state
from installer.deploy.helm.status import kubernetes_facts, status_kubernetes
from installer.deploy.steps import (
    ADDRESS,
    FIX_STUCK_RELEASE,
    LAUNCH,
    PREFLIGHT,
    RENDER,
    RESTART,
    SECRETS,
    DeployRun,
)
from installer.errors import DeployError
from installer.helm_release import (  # the queries moved there; re-imported for callers
    GOOD,
    PENDING,
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
from installer.target import CommandResult, LocalTarget

if TYPE_CHECKING:
    from installer.checks.base import Resolver
    from installer.redact import Redactor
    from installer.render import RenderPlan
    from installer.target import Target
    from installer.yamldata import JSONObject

log = logging.getLogger("installer.deploy.helm")

HELM_TIMEOUT = "15m"  # CARTO's first install pulls many images
HELM_TIMEOUT_S = 15 * 60
DESCRIPTION_PREFIX = "carto-installer "


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


def fingerprint(chart: ChartInfo, files: Sequence[bytes], secrets: list[JSONObject],
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
    run = DeployRun(emit, redactor, cancel)
    k8s = answers.kubernetes
    kube = Kube(target, k8s)
    from installer.exposure import exposure  # advanced answers: NodePort / own ingress

    url = exposure(answers).url
    # A chart that cannot be used as given (no subcharts, not a chart) is bad input: exit 2
    # before anything runs.
    chart = chart_info(kube, k8s.chart)

    with run.step(PREFLIGHT) as step:
        _report, accepted = run.gated_preflight(step, target, answers, "kubernetes", skip=skip,
                                                resolver=resolver)
    accepted_ids = [r.id for r in accepted]

    with run.step(RENDER) as step:
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
        if not plan.empty or plan.actions:
            run.confirm(plan, confirm)
        written = run.apply(step, plan, LocalTarget())
    changed = bool(written)
    run.check_cancel()

    if up_to_date:
        assert last is not None
        with run.step(LAUNCH) as step:
            step.detail = (f"release {k8s.release} revision {last.number} is already deployed "
                           "with these values: helm not run")
        return _finish(kube, answers, url, run, accepted_ids, changed,
                       f"nothing changed: release {k8s.release} (revision {last.number}) is "
                       "deployed with these values")

    if stuck is not None:
        with run.step(FIX_STUCK_RELEASE) as step:
            emit(LogLine(redactor("$ " + shlex.join(stuck.argv))))
            log.info("running %s", shlex.join(stuck.argv))
            fixed = target.run(stuck.argv, timeout=HELM_TIMEOUT_S + 120)
            if not fixed.ok:
                raise DeployError(f"`{stuck.argv[1]}` failed: {first_error_line(fixed.output())}",
                                  f"run it by hand to see the whole error: "
                                  f"`{shlex.join(stuck.argv)}`")
            step.detail = f"release {k8s.release} is no longer {stuck.revision.status}"
        run.check_cancel()

    applied: dict[str, str] = {}
    if manifests:
        with run.step(SECRETS) as step:
            if ns_missing:
                kube.checked(kube.kubectl("create", "namespace", k8s.namespace))
                emit(LogLine(f"created namespace {k8s.namespace}"))
            applied = apply_secrets(kube, manifests)
            step.detail = ", ".join(f"{name} {what}" for name, what in applied.items())
        run.check_cancel()

    progress = PodProgress(kube, k8s.release, emit, redactor)
    argv = helm_upgrade_argv(kube, answers, chart, files, description, create_namespace)
    with run.step(LAUNCH) as step:
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
        with run.step(RESTART) as step:
            step.detail = roll_workloads_using(kube, k8s.release, replaced, progress, emit,
                                               redactor)
    return _finish(kube, answers, url, run, accepted_ids, changed,
                   f"CARTO is deployed as release {k8s.release} in namespace {k8s.namespace}")


def _secret_names_in(pod_spec: JSONObject) -> set[str]:
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


def roll_workloads_using(kube: Kube, release: str, secrets: list[str], progress: PodProgress,
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


def _run_watching(target: Target, argv: list[str], progress: PodProgress,
                  cancel: threading.Event, emit: EventSink) -> CommandResult:
    """Run helm in a thread while the release's pods and their warnings are reported."""
    results: list[CommandResult] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            results.append(target.run(argv, timeout=HELM_TIMEOUT_S + 120))
        except BaseException as exc:  # handed to the caller's thread
            errors.append(exc)

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
    if errors:
        error = errors[0]
        if isinstance(error, TimeoutError):
            raise DeployError(f"helm did not finish within {HELM_TIMEOUT_S + 120} s",
                              "see `helm status` and the pods' events") from None
        raise error
    if cancel.is_set():
        log.info("cancel was requested during helm; it finished")
    return results[0]



def _helm_failure(output: str, progress: PodProgress, kube: Kube, release: str,
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
            fix = (VERSION_FIX if VERSION_WORDS.search(said) else
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


def _finish(kube: Kube, answers: Answers, url: str, run: DeployRun, accepted: list[str],
            changed: bool, headline: str) -> DeployResult:
    assert answers.domain is not None
    with run.step(ADDRESS) as step:
        try:
            address = wait_for_address(kube, answers.kubernetes.release, run.cancel,
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
        run.emit(LogLine(f"next: {todo}"))
    return DeployResult(True, url, f"{headline}. {where}. Next: {todo}.",
                        accepted_risks=accepted, changed=changed)



deploy = deploy_kubernetes
status = status_kubernetes

# The names callers and the tests reach through this package.
__all__ = ["GOOD", "PENDING", "Address", "PodProgress", "deploy", "deploy_kubernetes",
           "describe_address", "error_summary", "hook_job_failure", "kubernetes_facts",
           "pod_state", "router_address", "status", "status_kubernetes", "workload_state"]
