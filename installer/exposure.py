"""How CARTO is reached on Kubernetes, and so where the installer verifies it over HTTPS.

LoadBalancer: the cluster's load balancer, at https://<domain>. NodePort: every node, at
https://<domain>:<node port> (the vendor appends the port to the domain). ClusterIP: nothing
outside the cluster reaches the router until the user exposes it; with `external_tls` the
user's own Ingress or Gateway terminates TLS for the domain, so https://<domain> is verified
through it, with the system's trust store (their certificate, not ours).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from installer.answers import Answers


@dataclass(frozen=True)
class Exposure:
    kind: str  # "load-balancer", "node-port", "own-ingress", "cluster-only"
    url: str  # what users open
    verify_host: str | None  # where the HTTPS verification connects; None: not reachable
    verify_port: int
    own_certificate: bool  # verified with the system store (TLS ends at the user's ingress)


def exposure(answers: Answers) -> Exposure:
    assert answers.domain is not None
    domain = answers.domain
    k8s = answers.kubernetes
    if k8s.service_type == "NodePort":
        port = k8s.node_port or 443
        return Exposure("node-port", f"https://{domain}:{port}", domain, port, False)
    if k8s.service_type == "ClusterIP":
        if k8s.external_tls:
            return Exposure("own-ingress", f"https://{domain}", domain, 443, True)
        return Exposure("cluster-only", f"https://{domain}", None, 443, False)
    return Exposure("load-balancer", f"https://{domain}", domain, 443, False)


def next_step(answers: Answers, service: str, namespace: str) -> str | None:
    """What the admin does next for the non-LoadBalancer choices (None: the default text)."""
    ex = exposure(answers)
    if ex.kind == "node-port":
        return (f"point {answers.domain} at your nodes (or a load balancer in front of them, "
                f"port {ex.verify_port}) and open {ex.url}")
    if ex.kind == "own-ingress":
        return (f"route {answers.domain} in your Ingress/Gateway (TLS terminated there) to "
                f"service {service} port 443 in namespace {namespace} (backend protocol "
                f"HTTPS), then open {ex.url}")
    return None
