"""What a failed helm run says: its error in one line, and what a failed chart hook Job's
container reported (the vendor's pre-install version check among them)."""

from __future__ import annotations

import logging
import re

from installer.kube import Kube, KubeError

log = logging.getLogger("installer.deploy.helm")


def error_summary(output: str) -> str:
    """helm's error, its nested lines joined ("failed pre-install: 1 error occurred: job x
    failed: BackoffLimitExceeded"), without warnings."""
    lines = [re.sub(r"^(Error:|\*)\s*", "", line.strip()) for line in output.splitlines()]
    lines = [line for line in lines if line and not line.upper().startswith("WARNING")]
    return " ".join(lines)[:600] or "no output"


VERSION_WORDS = re.compile(r"version is (outdated|older|too old)|older than|minimum version",
                            re.IGNORECASE)
VERSION_FIX = ("the installation package is older than this chart accepts: download a newer "
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
