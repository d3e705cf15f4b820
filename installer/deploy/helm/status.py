"""`carto-installer status` on Kubernetes: the release's state, its workloads and pods, where
it answers, and the facts (versions, certificate expiry, last deploy)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from installer.answers import Answers
from installer.answers.sections import DOMAIN
from installer.deploy import StatusResult
from installer.deploy.events import ServiceState
from installer.deploy.helm.address import describe_address, router_address
from installer.deploy.helm.progress import is_healthy, pod_state, workload_state
from installer.helm_release import PENDING, Revision, release_history
from installer.kube import Kube, KubeError

if TYPE_CHECKING:
    from installer.redact import Redactor
    from installer.target import Target


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
    unhealthy += [s.name for s in services[1 + len(states):] if not is_healthy(s)]
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
