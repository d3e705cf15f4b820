"""Which hosts on 443 a CARTO deployment must reach, and whether each goes through a proxy.

`egress_hosts(answers)` picks the hosts of REQUIREMENTS.md (network section) from the cloud,
warehouses and features the user chose; `proxy_for(host, settings)` decides, as curl reads
HTTPS_PROXY and NO_PROXY, whether a request to a host goes direct or through the proxy.
Reaching them is `installer.egress.probe`'s job.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from installer.answers import Answers, ProxySettings

HTTPS_PORT = 443


@dataclass(frozen=True)
class EgressHost:
    """One host the deployment must (or may) reach on 443."""

    host: str  # the name probed; for a wildcard without a concrete name, the pattern itself
    required: bool
    reasons: tuple[str, ...]
    # For "*.snowflakecomputing.com"-style entries: the answer that gives the concrete name.
    # When it is missing, `host` is the pattern and the check is skipped with this key named.
    missing_answer: str | None = None
    # The vendor says these go direct even when a proxy is configured.
    bypass_proxy: bool = False
    port: int = HTTPS_PORT  # a registry mirror may listen elsewhere (registry.internal:5000)

    @property
    def check_id(self) -> str:
        return f"egress.{self.host}"

    @property
    def why(self) -> str:
        return "; ".join(self.reasons)


_ALWAYS = ("auth.carto.com", "pubsub.googleapis.com", "www.googleapis.com")
_DEPLOYMENT = ("storage.googleapis.com", "cloudresourcemanager.googleapis.com")
# The requirements page's registry: probed only when no registry could be read from the
# deployment's own files (the chart's images, env.tpl).
DOCUMENTED_REGISTRY = "gcr.io"
_BIGQUERY = (
    "bigquery.googleapis.com",
    "oauth2.googleapis.com",
    "bigquerydatatransfer.googleapis.com",
)
_LDS = ("api.tomtom.com", "isoline.router.hereapi.com")
_FEATURE_FLAGS = (
    "events.launchdarkly.com",
    "stream.launchdarkly.com",
    "clientstream.launchdarkly.com",
)


def egress_hosts(answers: Answers, registries: Sequence[tuple[str, int]] | None = None,
                 registry_reason: str = "container images") -> list[EgressHost]:
    """The hosts to probe for these answers, in a stable order, each listed once.

    `registries`: (host, port) of the registries the deployment's images come from, read
    from its own files by the caller; None falls back to the requirements page's gcr.io."""
    network = answers.network
    wanted: dict[str, EgressHost] = {}

    def add(
        host: str,
        reason: str,
        *,
        required: bool = True,
        missing: str | None = None,
        bypass: bool = False,
        port: int = HTTPS_PORT,
    ) -> None:
        host = host.strip().rstrip(".").lower()
        old = wanted.get(host)
        if old is None:
            wanted[host] = EgressHost(host, required, (reason,), missing, bypass, port)
        elif reason not in old.reasons:
            wanted[host] = EgressHost(
                host,
                old.required or required,
                (*old.reasons, reason),
                old.missing_answer,
                old.bypass_proxy or bypass,
                old.port,
            )

    for host in _ALWAYS:
        add(host, "CARTO platform services")
    storage, metadata = _DEPLOYMENT
    add(storage, "deployment metadata")
    for host, port in registries if registries is not None else [(DOCUMENTED_REGISTRY, 443)]:
        add(host, registry_reason, port=port)
    add(metadata, "deployment metadata")
    features = set(network.features)
    warehouses = set(network.warehouses)
    if "ai_agents" in features:
        add("api.openai.com", "AI Agents")
    if warehouses & {"bigquery", "carto-dw"}:
        for host in _BIGQUERY:
            add(host, "BigQuery / CARTO Data Warehouse")
        if "workload_identity" in features:
            add("sts.googleapis.com", "Workload Identity Federation")
    if network.cloud == "gcp":
        add("storage.googleapis.com", "buckets on Google Cloud Storage")
    elif network.cloud in ("aws", "azure"):
        pattern, label = {
            "aws": ("*.amazonaws.com", "buckets on Amazon S3"),
            "azure": ("*.blob.core.windows.net", "buckets on Azure Blob"),
        }[network.cloud]
        add(
            network.bucket_host or pattern,
            label,
            missing=None if network.bucket_host else "network.bucket_host",
        )
    if "snowflake" in warehouses:
        add(
            network.snowflake_account_url or "*.snowflakecomputing.com",
            "Snowflake",
            missing=None if network.snowflake_account_url else "network.snowflake_account_url",
            bypass=True,
        )
    if "databricks" in warehouses:
        add(
            network.databricks_host or "*.databricks.com",
            "Databricks",
            missing=None if network.databricks_host else "network.databricks_host",
            bypass=True,
        )
    if "lds" in features:
        for host in _LDS:
            add(host, "Location Data Services")
    if "feature_flags" in features:
        for host in _FEATURE_FLAGS:
            add(host, "feature flags (optional: CARTO falls back to defaults)", required=False)
    return list(wanted.values())


# --- proxy ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Proxy:
    url: str
    scheme: str  # "http" (CONNECT in clear) or "https" (TLS to the proxy first)
    host: str
    port: int

    @classmethod
    def parse(cls, url: str) -> Proxy:
        parts = urlsplit(url)
        scheme = parts.scheme or "http"
        host = parts.hostname or ""
        port = parts.port or (443 if scheme == "https" else 80)
        return cls(url, scheme, host, port)


def bypasses_proxy(host: str, no_proxy: str | None) -> bool:
    """NO_PROXY as curl and most tools read it: `*`, host names matching themselves and their
    subdomains (with or without a leading dot), IP addresses and CIDR ranges; ports ignored."""
    if not no_proxy:
        return False
    host = host.lower().rstrip(".")
    address = as_ip_address(host)
    for raw in no_proxy.split(","):
        entry = raw.strip().lower()
        if not entry:
            continue
        if entry == "*":
            return True
        if address is not None and "/" in entry:
            try:
                if address in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                pass
            continue
        if entry.startswith("[") and "]" in entry:
            entry = entry[1 : entry.index("]")]
        elif entry.count(":") == 1:
            entry = entry.split(":", 1)[0]
        entry = entry.lstrip("*").lstrip(".").rstrip(".")
        if entry and (host == entry or host.endswith("." + entry)):
            return True
    return False


def as_ip_address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def proxy_for(host: EgressHost, settings: ProxySettings | None) -> Proxy | None:
    """The proxy a request to `host` goes through, or None for a direct connection."""
    if settings is None or host.bypass_proxy:
        return None
    url = settings.https or settings.http
    if not url or bypasses_proxy(host.host, settings.no_proxy):
        return None
    return Proxy.parse(url)
