"""Where CARTO's router answers once the release is up (its Service: a load balancer's
address, a NodePort or a ClusterIP), and what the admin must do next to reach it."""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from installer.kube import Kube

if TYPE_CHECKING:
    from installer.yamldata import JSONObject

POLL_INTERVAL = 2.0
LOAD_BALANCER_WAIT = 120.0


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

    def rank(svc: JSONObject) -> tuple[int, int]:
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
