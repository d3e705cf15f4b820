"""egress.<host>: outbound HTTPS from the target to each host the deployment needs.

Egress probes start on the target (see installer/egress/probe.py) and run as one check per host, so
the engine runs them all at once: twenty unreachable hosts cost about one per-host timeout.

Test seam: `ctx.cache[EGRESS_PORT_KEY]` may hold a port (int) for every host, or a mapping
host -> port, so tests can point probes at TLS servers on loopback ports. Nothing else sets
it; a real run probes 443, or the port of a registry mirror (registry.internal:5000).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from installer.checks.base import (
    Check,
    CheckContext,
    Outcome,
    failed,
    passed,
    skipped,
    warned,
)
from installer.validators import PROBE_TIMEOUT_MAX

if TYPE_CHECKING:
    from installer.egress.hosts import EgressHost, Proxy
    from installer.egress.probe import ProbeResult

log = logging.getLogger("installer.checks.network")  # the name its log lines always had

EGRESS_PORT_KEY = "egress.port"
# The family's own id, reported only when it has no members (no answers file); each member is
# egress.<host>.
EGRESS_FAMILY_ID = "egress.hosts"
# A probe bounds itself to `network.egress_timeout` (at most PROBE_TIMEOUT_MAX, enforced by the
# answers validator); the engine's limit sits above that bound so it never cuts a probe short.
EGRESS_CHECK_TIMEOUT = PROBE_TIMEOUT_MAX + 5.0


# --- egress.<host> ---------------------------------------------------------------------------


def _egress_applies(ctx: CheckContext) -> str | None:
    if ctx.answers is None:
        return (
            "no answers file: the hosts to check depend on the features, warehouses and "
            "proxy in the answers"
        )
    return None


def expand_egress(ctx: CheckContext) -> list[tuple[str, str, EgressHost]]:
    if ctx.answers is None:
        return []
    from installer.chart import registry_endpoint
    from installer.egress.hosts import egress_hosts

    if ctx.platform == "kubernetes":
        registries, reason = kubernetes_registries(ctx)
    else:
        names = compose_registries(ctx)
        registries = None if names is None else [registry_endpoint(name) for name in names]
        reason = ("the registry the deployment pulls its images from" if names is not None
                  else "container images (the vendor's usual registry: the deployment's own "
                  "files could not be read)")
    return [(h.check_id, f"HTTPS to {h.host}", h)
            for h in egress_hosts(ctx.answers, registries, reason)]


def compose_registries(ctx: CheckContext) -> list[str] | None:
    """The registries of the images the deployment directory will run: docker-compose.yml's
    `image:` values expanded with the `.env` that customer.env, VERSION and env.tpl make (the
    vendor's env.tpl sets DOCKER_REGISTRY_BASE_PATH). None when those files are not there."""
    from installer.vendor import dotenv_values, image_registries

    assert ctx.answers is not None

    def read(name: str) -> str | None:
        try:
            return ctx.deployment_file(name)
        except OSError:
            return None

    compose, template = read("docker-compose.yml"), read("env.tpl")
    if not compose or template is None:
        return None
    customer = read("customer.env")
    if customer is None and ctx.answers.package:
        customer = _package_customer_env(ctx)
    values = dotenv_values(customer or "", read("VERSION") or "", template)
    return image_registries(compose, values) or None


def _package_customer_env(ctx: CheckContext) -> str | None:
    from installer.errors import InputError
    from installer.package import read_package

    assert ctx.answers is not None and ctx.answers.package
    try:
        package = read_package(ctx.answers.package, "compose", ctx.redactor)
    except InputError:
        return None
    data = package.files.get("customer.env")
    return data.decode("utf-8-sig", "replace") if data is not None else None


def kubernetes_registries(ctx: CheckContext) -> tuple[list[tuple[str, int]] | None, str]:
    """(host, port) of the registries the chart's rendered workloads pull from (the mirror
    in kubernetes.image_registry included, as the chart applies it), and why; None (the
    requirements page's registry) when the chart cannot be rendered."""
    from installer.chart import registry_endpoint
    from installer.checks.k8s import chart_facts_for
    from installer.errors import InstallerError

    try:
        facts = chart_facts_for(ctx)
    except InstallerError as exc:
        log.info("egress: the chart's registries are unknown: %s", exc.message)
        return None, ("container images (the requirements page's registry: the chart could "
                      "not be rendered, see license.version)")
    return ([registry_endpoint(r) for r in facts.registries],
            f"container images of the {facts.label}")


def _egress_port(ctx: CheckContext, host: EgressHost) -> int:
    value = ctx.cache.get(EGRESS_PORT_KEY)
    if value is None:
        return host.port
    if isinstance(value, dict):
        return int(value.get(host.host, host.port))
    return int(value)


def check_egress(ctx: CheckContext, host: EgressHost) -> Outcome:
    from installer.egress.hosts import proxy_for
    from installer.egress.probe import probe_host, tls_context

    answers = ctx.answers
    assert answers is not None
    if host.missing_answer:
        return skipped(
            f"{host.why} needs outbound HTTPS to {host.host}; give the exact host in "
            f"{host.missing_answer} to check it"
        )
    settings = answers.network.proxy
    ca_file = settings.ca_file if settings else None
    try:
        context = ctx.cached("egress.tls_context", lambda: tls_context(ca_file))
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        return failed(
            f"the proxy CA file {ca_file} cannot be used: {exc}",
            observed=str(ca_file),
            remediation="set network.proxy.ca_file to a readable PEM file holding the CA "
            "certificate of the proxy or firewall that inspects TLS",
        )
    proxy = proxy_for(host, settings)
    result = probe_host(
        host.host,
        target=ctx.target,
        resolver=ctx.resolver,
        context=context,
        port=_egress_port(ctx, host),
        timeout=answers.network.egress_timeout,
        proxy=proxy,
    )
    route = f"via proxy {proxy.url}" if proxy else "direct"
    if host.bypass_proxy and settings and (settings.https or settings.http):
        route += " (the vendor says this service bypasses the proxy)"
    data = {
        "stage": result.stage,
        "ok": result.ok,
        "timed_out": result.timed_out,
        "elapsed_s": result.elapsed,
        "proxy": result.proxy,
        "kind": result.kind,
    }
    if result.ok:
        return passed(
            f"{host.host} answers over HTTPS ({result.tls_version}, certificate verified), {route}",
            observed=f"DNS + connect + TLS in {result.elapsed * 1000:.0f} ms, {route}",
            **data,
        )
    where = f"{result.stage} failed"
    observed = f"failed at {result.stage} after {result.elapsed:.1f} s, {route}"
    message = f"{host.host}: {where}: {result.detail}"
    fix = egress_remediation(result, host, proxy)
    if not host.required:
        return warned(
            f"optional host {message} ({host.why})", observed=observed, remediation=fix, **data
        )
    return failed(f"{message} (needed for {host.why})", observed=observed, remediation=fix, **data)


def egress_remediation(result: ProbeResult, host: EgressHost, proxy: Proxy | None) -> str:
    from installer.egress.probe import CONNECT, DNS, PROXY, PROXY_CONNECT, TLS

    name = host.host
    allow = f"allow outbound HTTPS (TCP {host.port}) from the target to {name}"
    if result.stage == DNS:
        return (
            f"the target cannot resolve {name}: check its DNS servers (/etc/resolv.conf or "
            "systemd-resolved); if this network only reaches the internet through a proxy, "
            "set network.proxy.https"
        )
    if result.stage == CONNECT:
        if result.kind == "timeout":
            return (
                f"a firewall is probably dropping the traffic: {allow} (security group, "
                "firewall rules), or set network.proxy.https if a proxy is mandatory"
            )
        return (
            f"the connection was rejected (a firewall, or a host that refuses port "
            f"{host.port}): {allow}, or set network.proxy.https if outbound traffic must go "
            "through a proxy"
        )
    if result.stage == PROXY:
        return (
            f"the target cannot reach the proxy {proxy.url if proxy else ''}: check "
            "network.proxy.https (host and port) and that the proxy is running"
        )
    if result.stage == PROXY_CONNECT:
        if result.kind == "status 403":
            return (
                f"the proxy's rules refuse {name}: ask its administrators to allow CONNECT "
                f"to {name}:{host.port}, or add {name} to network.proxy.no_proxy if the target may "
                "reach it directly"
            )
        if result.kind == "status 407":
            return (
                "the proxy asks for a login, which CARTO cannot give: have the target's "
                "address allowed without authentication"
            )
        if result.kind in ("status 500", "status 502", "status 503", "status 504", "timeout"):
            return (
                f"the proxy could not reach {name} itself: ask its administrators to allow "
                f"{name}:{host.port} beyond the proxy"
            )
        return f"check the proxy {proxy.url if proxy else ''} allows CONNECT to {name}:{host.port}"
    if result.stage == TLS:
        if result.kind == "verify":
            return (
                "something between the target and the host presents its own certificate: "
                "if a proxy or firewall inspects TLS, put its CA certificate in "
                "network.proxy.ca_file (CARTO's services must trust it too); otherwise "
                f"the connection to {name} is being intercepted"
            )
        if result.kind == "timeout":
            return (
                f"the TCP connection opened but nothing answered the TLS handshake: a "
                f"firewall that filters by name (SNI) may be holding it; {allow}"
            )
        return (
            f"the TLS handshake was cut: a firewall that filters by name (SNI) may be "
            f"blocking {name}; {allow}"
        )
    return allow


CHECKS = [
    Check(
        EGRESS_FAMILY_ID,
        "Outbound HTTPS",
        "DNS + TCP 443 + verified TLS to each host the deployment needs",
        check_egress,
        applies=_egress_applies,
        expand=expand_egress,
        timeout=EGRESS_CHECK_TIMEOUT,
    ),
]
