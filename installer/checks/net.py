"""net.domain and net.dns: the domain CARTO answers on, and whether it points at the machine."""

from __future__ import annotations

import ipaddress
import re
import socket

from installer.checks.base import (
    Check,
    CheckContext,
    Outcome,
    failed,
    passed,
    warned,
)
from installer.validators import validate_domain

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _no_answers_or_domain(ctx: CheckContext) -> str | None:
    if ctx.answers is None:
        return "no answers file: give one with --answers to check the domain"
    if not ctx.answers.domain:
        return "the answers give no domain (domain: carto.example.com)"
    return None


# --- net.domain ------------------------------------------------------------------------------


def check_domain(ctx: CheckContext) -> Outcome:
    assert ctx.answers is not None and ctx.answers.domain is not None
    raw = ctx.answers.domain
    try:
        domain = validate_domain(raw)
    except ValueError as exc:
        return failed(
            f"the domain is not usable: {exc}",
            observed=repr(raw),
            remediation="set domain: to a full domain or subdomain of its own, such as "
            "carto.example.com (no https://, no path, no port, not an IP address)",
        )
    note = f" (punycode of {raw.strip()})" if domain != raw.strip().lower().rstrip(".") else ""
    return passed(f"{domain} is a valid domain{note}", observed=domain, domain=domain)


# --- net.dns ---------------------------------------------------------------------------------

_ADDR = re.compile(r"\binet6?\s+([0-9A-Fa-f:.]+)(?:/\d+)?")


def parse_ip_addr(text: str) -> list[str]:
    """Addresses from `ip -o addr show` (or `hostname -I`), in order, without repeats."""
    found: list[str] = []
    matches = _ADDR.findall(text)
    if not matches:  # `hostname -I`: bare addresses separated by spaces
        matches = text.split()
    for candidate in matches:
        try:
            address = str(ipaddress.ip_address(candidate.split("%", 1)[0]))
        except ValueError:
            continue
        if address not in found:
            found.append(address)
    return found


def target_addresses(ctx: CheckContext) -> list[str]:
    """The target's own addresses (all interfaces), plus, for a remote target, the addresses
    its SSH host name resolves to (a public address behind NAT is often only known that way)."""

    def compute() -> list[str]:
        addresses: list[str] = []
        for argv in (["ip", "-o", "addr", "show"], ["hostname", "-I"]):
            try:
                result = ctx.target.run(argv, timeout=10)
            except (OSError, TimeoutError):
                continue
            if result.ok:
                addresses = parse_ip_addr(result.stdout)
                if addresses:
                    break
        if not ctx.target.is_local and ctx.answers and ctx.answers.target:
            try:
                for address in ctx.resolver(ctx.answers.target.host):
                    if address not in addresses:
                        addresses.append(address)
            except OSError:
                pass
        return addresses

    found: list[str] = ctx.cached("net.target_addresses", compute)
    return found


def _ip(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None


def check_dns(ctx: CheckContext) -> Outcome:
    assert ctx.answers is not None and ctx.answers.domain is not None
    domain = str(ctx.data("net.domain").get("domain") or validate_domain(ctx.answers.domain))
    try:
        resolved = ctx.resolver(domain)
    except socket.gaierror as exc:
        from installer.errors import os_error_words

        resolved = []
        error = ("no such name in DNS" if exc.errno == socket.EAI_NONAME
                 else os_error_words(exc))
    except OSError as exc:
        resolved, error = [], str(exc)
    else:
        error = "no address"
    if not resolved:
        where = _suggest_record(ctx)
        return warned(
            f"{domain} does not resolve yet ({error})",
            observed="no A or AAAA record",
            remediation=f"create a DNS A record for {domain}{where}; until it exists, users "
            "cannot reach CARTO by name",
        )
    observed = ", ".join(resolved)
    parsed = [(a, _ip(a)) for a in resolved]
    loopback = [a for a, ip in parsed if ip is not None and ip.is_loopback]
    if len(loopback) == len(resolved):
        return warned(
            f"{domain} resolves to {observed} (loopback): only this machine itself reaches it",
            observed=observed,
            remediation=f"point the DNS record for {domain} at the machine's network address"
            f"{_suggest_record(ctx)}, and remove any /etc/hosts entry mapping it to loopback",
        )
    if ctx.platform == "kubernetes":
        return passed(
            f"{domain} resolves to {observed}; make sure that is the address of the cluster's "
            "ingress or load balancer",
            observed=observed,
        )
    own = {ip for ip in (_ip(a) for a in target_addresses(ctx)) if ip is not None}
    elsewhere = [a for a, ip in parsed if ip not in own and a not in loopback]
    here = [a for a, ip in parsed if ip in own and a not in loopback]
    if not elsewhere:
        return passed(f"{domain} points at this machine ({', '.join(here)})", observed=observed)
    mine = ", ".join(a for a in target_addresses(ctx) if not _is_loopback_text(a)) or "unknown"
    if here:
        return warned(
            f"{domain} points partly elsewhere: {', '.join(elsewhere)} is not an address of "
            f"the target (its addresses: {mine})",
            observed=observed,
            remediation=f"remove the records for {', '.join(elsewhere)} from {domain}, or make "
            "sure they forward port 443 to this machine; browsers may pick any of them",
        )
    return warned(
        f"{domain} points at {observed}, which is not an address of the target (its "
        f"addresses: {mine})",
        observed=observed,
        remediation=f"if {observed} is a NAT, firewall or load-balancer address in front of "
        "the machine, make sure it forwards port 443 here; otherwise change the DNS record for "
        f"{domain}{_suggest_record(ctx)}",
    )


def _is_loopback_text(address: str) -> bool:
    ip = _ip(address)
    return bool(ip and (ip.is_loopback or ip.is_link_local))


def _suggest_record(ctx: CheckContext) -> str:
    if ctx.platform == "kubernetes":
        return " pointing at the ingress or load-balancer address"
    try:
        candidates = [a for a in target_addresses(ctx) if not _is_loopback_text(a)]
    except Exception:
        candidates = []
    return f" pointing at {candidates[0]}" if candidates else ""


CHECKS = [
    Check(
        "net.domain",
        "Domain",
        "a full domain or subdomain, never a path",
        check_domain,
        applies=_no_answers_or_domain,
        timeout=5.0,
    ),
    Check(
        "net.dns",
        "Domain resolves to the machine",
        "the domain points at the machine",
        check_dns,
        needs=("net.domain",),
        applies=_no_answers_or_domain,
    ),
]
