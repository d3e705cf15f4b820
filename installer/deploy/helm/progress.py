"""The release's pods (and workloads) as they come up, and the warnings that keep them
Pending: shown while helm waits, and named in an error when they never get ready."""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING

from installer.deploy.events import EventSink, LogLine, ServiceState
from installer.kube import Kube, KubeError

if TYPE_CHECKING:
    from installer.redact import Redactor
    from installer.yamldata import JSONObject

log = logging.getLogger("installer.deploy.helm")


class PodProgress:
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
        waiting = {s.name for s in states if not is_healthy(s)}
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


def pod_state(pod: JSONObject) -> ServiceState:
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


def workload_state(workload: JSONObject) -> ServiceState:
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


def is_healthy(state: ServiceState) -> bool:
    return state.state in ("Running", "Succeeded") and state.health.startswith("ready")
