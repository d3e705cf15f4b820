"""net.domain, net.dns and egress.<host> against real TLS servers and a real proxy on loopback.

No test sends a packet off this machine: in-process checks get a resolver that maps the real
host names to 127.0.0.1 (unknown names fail as NXDOMAIN), and probes go to loopback ports
through the documented `egress.port` cache entry. tinyproxy and the CLI, which use the
system's resolver, run with a private /etc/hosts (tests/services/netdb_namespaces.py); the
CLI run also gets its own network namespace, so it can serve port 443 and cannot reach out.
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from installer.answers import Answers, NetworkSettings, ProxySettings
from installer.checks import egress, net
from installer.checks.base import CheckContext, CheckResult, Status
from installer.checks.engine import run_checks
from installer.egress.hosts import EgressHost, bypasses_proxy, egress_hosts
from installer.egress.probe import probe_host, tls_context
from installer.target import LocalTarget
from installer.validators import validate_domain
from tests.services.netdb_namespaces import namespaced, tinyproxy_with_hosts
from tests.services.tls_ca import (
    LoopbackServer,
    TestCA,
    free_loopback_port,
    silent_server,
    tls_server,
    wait_until,
)
from tests.support.cli import REPO, cli_env
from tests.support.host_network import own_address

BASE_HOSTS = [
    "auth.carto.com",
    "pubsub.googleapis.com",
    "www.googleapis.com",
    "storage.googleapis.com",
    "gcr.io",
    "cloudresourcemanager.googleapis.com",
]
EXTRA_HOSTS = [
    "api.openai.com",
    "bigquery.googleapis.com",
    "oauth2.googleapis.com",
    "bigquerydatatransfer.googleapis.com",
    "sts.googleapis.com",
    "api.tomtom.com",
    "isoline.router.hereapi.com",
    "events.launchdarkly.com",
    "stream.launchdarkly.com",
    "clientstream.launchdarkly.com",
    "acme.snowflakecomputing.com",
    "dbc-1.cloud.databricks.com",
]
EGRESS = [c for c in egress.CHECKS if c.id == egress.EGRESS_FAMILY_ID]


def loopback_resolver(names: Mapping[str, str] | None = None):  # type: ignore[no-untyped-def]
    """Every known egress name -> 127.0.0.1 (or as `names` says); anything else: NXDOMAIN."""
    table = {name: "127.0.0.1" for name in BASE_HOSTS + EXTRA_HOSTS}
    table.update(names or {})

    def resolve(name: str) -> list[str]:
        if name in table:
            return [table[name]]
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    return resolve


@pytest.fixture(scope="module")
def egress_server(test_ca: TestCA) -> Iterator[LoopbackServer]:
    """One TLS server whose certificate names every egress host (signed by the test CA)."""
    issued = test_ca.issue(BASE_HOSTS + EXTRA_HOSTS)
    with tls_server(issued.fullchain, issued.key) as server:
        yield server


def egress_context(
    ca: TestCA,
    port: int | dict[str, int],
    *,
    timeout: float = 2.0,
    resolver=None,
    **network_settings,
) -> CheckContext:  # type: ignore[no-untyped-def]
    proxy = network_settings.pop("proxy", None) or ProxySettings()
    # The test CA plays the part of a TLS-inspecting firewall's CA (network.proxy.ca_file).
    proxy.ca_file = str(ca.ca_file)
    answers = Answers(
        domain="carto.example.com",
        network=NetworkSettings(proxy=proxy, egress_timeout=timeout, **network_settings),
    )
    ctx = CheckContext(
        target=LocalTarget(), answers=answers, resolver=resolver or loopback_resolver()
    )
    ctx.cache[egress.EGRESS_PORT_KEY] = port
    return ctx


def by_id(results: list[CheckResult]) -> dict[str, CheckResult]:
    return {r.id: r for r in results}


def assert_actionable(result: CheckResult) -> None:
    if result.status in (Status.WARN, Status.FAIL):
        assert result.observed, result
        assert result.remediation, result


# --- net.domain ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "status", "says"),
    [
        ("carto.example.com", Status.PASS, "valid"),
        ("Bücher.Example.com", Status.PASS, "xn--bcher-kva.example.com"),
        ("https://carto.example.com", Status.FAIL, "scheme"),
        ("example.com/carto", Status.FAIL, "path"),
        ("carto.example.com:8443", Status.FAIL, "port"),
        ("10.0.0.5", Status.FAIL, "IP address"),
        ("carto", Status.FAIL, "single label"),
        ("carto_app.example.com", Status.FAIL, "not allowed"),
        ("*.example.com", Status.FAIL, "wildcard"),
        ("-bad.example.com", Status.FAIL, "hyphen"),
        ("a" * 64 + ".example.com", Status.FAIL, "63"),
        ("xn--zz.example.com", Status.FAIL, "punycode"),
        ("", Status.FAIL, "empty"),
    ],
)
def test_domain_syntax(raw: str, status: Status, says: str) -> None:
    ctx = CheckContext(target=LocalTarget(), answers=Answers(domain=raw or " "))
    outcome = net.check_domain(ctx)
    assert outcome.status == status, outcome
    assert says in outcome.message, outcome.message
    if status == Status.FAIL:
        assert outcome.remediation and outcome.observed


def test_domain_skips_without_answers_or_domain() -> None:
    checks = list(net.CHECKS)
    results = run_checks(CheckContext(target=LocalTarget()), checks)
    assert {r.status for r in results} == {Status.SKIP}
    results = run_checks(CheckContext(target=LocalTarget(), answers=Answers()), checks)
    assert "no domain" in by_id(results)["net.domain"].message
    assert by_id(results)["net.dns"].status == Status.SKIP


def test_validator_is_shared_with_the_answers_loader() -> None:
    assert validate_domain("CARTO.Example.com.") == "carto.example.com"
    with pytest.raises(ValueError, match="space"):
        validate_domain("carto example.com")


# --- net.dns ---------------------------------------------------------------------------------


def dns_result(resolve, platform: str = "compose") -> CheckResult:  # type: ignore[no-untyped-def]
    ctx = CheckContext(
        target=LocalTarget(),
        platform=platform,
        answers=Answers(domain="carto.example.com"),
        resolver=resolve,
    )
    checks = list(net.CHECKS)
    return by_id(run_checks(ctx, checks))["net.dns"]


def test_dns_points_at_this_machine_passes() -> None:
    address = own_address()
    result = dns_result(lambda name: [address])
    assert result.status == Status.PASS, result
    assert address in result.observed


def test_dns_pointing_elsewhere_warns_and_says_where() -> None:
    result = dns_result(lambda name: ["198.51.100.7"])
    assert result.status == Status.WARN
    assert "198.51.100.7" in result.message and own_address() in result.message
    assert_actionable(result)


def test_dns_with_one_record_elsewhere_warns_about_that_record() -> None:
    address = own_address()
    result = dns_result(lambda name: [address, "2001:db8::7"])
    assert result.status == Status.WARN
    assert "2001:db8::7" in result.message and "partly" in result.message


def test_dns_to_loopback_warns() -> None:
    result = dns_result(lambda name: ["127.0.0.1"])
    assert result.status == Status.WARN and "loopback" in result.message
    assert_actionable(result)


def test_dns_not_resolving_yet_warns_with_the_record_to_create() -> None:
    def nxdomain(name: str) -> list[str]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    result = dns_result(nxdomain)
    assert result.status == Status.WARN and "does not resolve" in result.message
    assert "A record" in result.remediation and own_address() in result.remediation


def test_dns_on_kubernetes_only_needs_to_resolve() -> None:
    result = dns_result(lambda name: ["198.51.100.7"], platform="kubernetes")
    assert result.status == Status.PASS and "ingress" in result.message


def test_parse_ip_addr_reads_both_formats() -> None:
    text = (
        "1: lo    inet 127.0.0.1/8 scope host lo\\\n"
        "4: eth0    inet6 fe80::1%eth0/64 scope link\\\n"
        "4: eth0    inet 192.0.2.2/24 brd 192.0.2.255 scope global eth0\\\n"
    )
    assert net.parse_ip_addr(text) == ["127.0.0.1", "fe80::1", "192.0.2.2"]
    assert net.parse_ip_addr("192.0.2.2 fd00::2 \n") == ["192.0.2.2", "fd00::2"]


# --- which hosts -----------------------------------------------------------------------------


def hosts_for(**settings) -> dict[str, EgressHost]:  # type: ignore[no-untyped-def]
    return {h.host: h for h in egress_hosts(Answers(network=NetworkSettings(**settings)))}


def test_base_hosts_are_always_required() -> None:
    hosts = hosts_for()
    assert list(hosts) == BASE_HOSTS
    assert all(h.required for h in hosts.values())


def test_the_registries_read_from_the_deployment_replace_the_documented_one() -> None:
    """The caller reads the registries from the deployment's own files (the chart's images,
    a mirror with its port); only without them is the requirements page's gcr.io probed."""
    read = egress_hosts(Answers(), [("registry.internal", 5000), ("gcr.io", 443)],
                        "container images of chart carto 1.280.1")
    hosts = {h.host: h for h in read}
    assert hosts["registry.internal"].port == 5000 and hosts["registry.internal"].required
    assert "container images of chart carto 1.280.1" in hosts["gcr.io"].why
    mirror_only = {h.host for h in egress_hosts(Answers(), [("registry.internal", 5000)])}
    assert "gcr.io" not in mirror_only


def test_hosts_follow_features_warehouses_and_cloud() -> None:
    hosts = hosts_for(
        cloud="gcp",
        warehouses=["bigquery", "snowflake", "databricks"],
        features=["ai_agents", "lds", "feature_flags", "workload_identity"],
        snowflake_account_url="acme.snowflakecomputing.com",
        databricks_host="dbc-1.cloud.databricks.com",
    )
    assert set(hosts) == set(BASE_HOSTS + EXTRA_HOSTS)
    assert not hosts["events.launchdarkly.com"].required
    assert hosts["acme.snowflakecomputing.com"].bypass_proxy
    assert hosts["dbc-1.cloud.databricks.com"].bypass_proxy
    assert not hosts["auth.carto.com"].bypass_proxy
    assert "buckets on Google Cloud Storage" in hosts["storage.googleapis.com"].reasons


def test_sts_only_with_workload_identity_and_bigquery_only_when_chosen() -> None:
    assert "sts.googleapis.com" not in hosts_for(warehouses=["bigquery"])
    assert "bigquery.googleapis.com" not in hosts_for(warehouses=["snowflake"])
    assert "bigquery.googleapis.com" in hosts_for(warehouses=["carto-dw"])


def test_wildcard_hosts_need_the_concrete_name() -> None:
    hosts = hosts_for(cloud="azure", warehouses=["snowflake"])
    assert hosts["*.blob.core.windows.net"].missing_answer == "network.bucket_host"
    assert hosts["*.snowflakecomputing.com"].missing_answer == "network.snowflake_account_url"
    hosts = hosts_for(cloud="aws", bucket_host="acme.s3.amazonaws.com")
    assert "acme.s3.amazonaws.com" in hosts and not hosts["acme.s3.amazonaws.com"].missing_answer


@pytest.mark.parametrize(
    ("host", "no_proxy", "bypass"),
    [
        ("auth.carto.com", None, False),
        ("auth.carto.com", "*", True),
        ("auth.carto.com", "carto.com", True),
        ("auth.carto.com", ".carto.com", True),
        ("auth.carto.com", "localhost, .internal ,carto.com:443", True),
        ("notcarto.com", "carto.com", False),
        ("10.1.2.3", "10.0.0.0/8", True),
        ("gcr.io", ".googleapis.com", False),
    ],
)
def test_no_proxy_rules(host: str, no_proxy: str | None, bypass: bool) -> None:
    assert bypasses_proxy(host, no_proxy) is bypass


# --- probes against real servers -------------------------------------------------------------


def test_egress_passes_for_every_base_host(test_ca: TestCA, egress_server: LoopbackServer) -> None:
    results = run_checks(egress_context(test_ca, egress_server.port), EGRESS)
    assert [r.id for r in results] == [f"egress.{h}" for h in BASE_HOSTS]
    for result in results:
        assert result.status == Status.PASS, result
        assert "certificate verified" in result.message and "ms" in result.observed


def test_wrong_hostname_in_the_server_certificate_fails_at_tls(test_ca: TestCA) -> None:
    issued = test_ca.issue(["somewhere.else.example"])
    with tls_server(issued.fullchain, issued.key) as server:
        result = by_id(run_checks(egress_context(test_ca, server.port), EGRESS))["egress.gcr.io"]
    assert result.status == Status.FAIL
    assert "TLS failed" in result.message and "gcr.io" in result.message
    assert result.data["stage"] == "TLS"
    assert "network.proxy.ca_file" in result.remediation
    assert_actionable(result)


def test_untrusted_certificate_fails_at_tls(
    test_ca: TestCA, tmp_path: Path, egress_server: LoopbackServer
) -> None:
    other = TestCA(tmp_path / "other", "unrelated root")
    ctx = egress_context(test_ca, egress_server.port)
    ctx.answers.network.proxy.ca_file = str(other.ca_file)  # type: ignore[union-attr]
    result = by_id(run_checks(ctx, EGRESS))["egress.auth.carto.com"]
    assert result.status == Status.FAIL and result.data["stage"] == "TLS"
    assert "certificate" in result.message


def test_connection_refused_fails_at_connect(test_ca: TestCA) -> None:
    port = free_loopback_port()  # nothing listens there
    result = by_id(run_checks(egress_context(test_ca, port), EGRESS))["egress.gcr.io"]
    assert result.status == Status.FAIL and result.data["stage"] == "connect"
    assert "refused" in result.message
    assert "firewall" in result.remediation


def test_name_that_does_not_resolve_fails_at_dns(
    test_ca: TestCA, egress_server: LoopbackServer
) -> None:
    resolve = loopback_resolver()

    def without_gcr(name: str) -> list[str]:
        if name == "gcr.io":
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return resolve(name)

    ctx = egress_context(test_ca, egress_server.port, resolver=without_gcr)
    results = by_id(run_checks(ctx, EGRESS))
    assert results["egress.gcr.io"].status == Status.FAIL
    assert results["egress.gcr.io"].data["stage"] == "DNS"
    assert "does not resolve" in results["egress.gcr.io"].message
    assert results["egress.auth.carto.com"].status == Status.PASS


def test_listener_that_never_answers_times_out_within_the_bound(test_ca: TestCA) -> None:
    with silent_server() as server:
        ctx = egress_context(test_ca, server.port, timeout=1.0)
        start = time.monotonic()
        results = run_checks(ctx, EGRESS)
        elapsed = time.monotonic() - start
    assert elapsed <= 1.3, f"six silent hosts took {elapsed:.2f} s with a 1 s timeout"
    for result in results:
        assert result.status == Status.FAIL
        assert result.data["stage"] == "TLS" and result.data["timed_out"]
        assert "no answer within 1 s" in result.message
        assert "SNI" in result.remediation


def test_unresolvable_slow_resolver_is_cut_at_the_deadline(test_ca: TestCA) -> None:
    def hanging(name: str) -> list[str]:
        time.sleep(5)
        return ["127.0.0.1"]

    start = time.monotonic()
    result = probe_host(
        "gcr.io",
        target=LocalTarget(),
        resolver=hanging,
        context=tls_context(str(test_ca.ca_file)),
        port=1,
        timeout=0.5,
    )
    assert time.monotonic() - start < 0.9
    assert not result.ok and result.stage == "DNS" and result.timed_out


def test_optional_host_failure_is_a_warning(test_ca: TestCA, egress_server: LoopbackServer) -> None:
    ports = {h: egress_server.port for h in BASE_HOSTS}
    ports["events.launchdarkly.com"] = free_loopback_port()
    ctx = egress_context(test_ca, ports, features=["feature_flags"])
    results = by_id(run_checks(ctx, EGRESS))
    flagged = results["egress.events.launchdarkly.com"]
    assert flagged.status == Status.WARN and "optional" in flagged.message
    assert_actionable(flagged)
    assert results["egress.auth.carto.com"].status == Status.PASS


def test_wildcard_without_a_concrete_name_is_skipped_with_the_answer_to_give(
    test_ca: TestCA, egress_server: LoopbackServer
) -> None:
    ctx = egress_context(test_ca, egress_server.port, warehouses=["snowflake"])
    result = by_id(run_checks(ctx, EGRESS))["egress.*.snowflakecomputing.com"]
    assert result.status == Status.SKIP
    assert "network.snowflake_account_url" in result.message


def test_no_answers_skips_egress() -> None:
    results = run_checks(CheckContext(target=LocalTarget()), EGRESS)
    assert [(r.id, r.status) for r in results] == [("egress.hosts", Status.SKIP)]
    assert "answers" in results[0].message


# --- through a proxy -------------------------------------------------------------------------


def refuse_local_dns(name: str) -> list[str]:
    raise AssertionError(f"with a proxy the target must not resolve {name} itself")


def test_through_a_real_proxy_passes(test_ca: TestCA, egress_server: LoopbackServer) -> None:
    names = {h: "127.0.0.1" for h in BASE_HOSTS}
    with tinyproxy_with_hosts(names) as proxy:
        before = egress_server.handshakes
        ctx = egress_context(
            test_ca,
            egress_server.port,
            resolver=refuse_local_dns,
            proxy=ProxySettings(https=proxy.url),
        )
        results = run_checks(ctx, EGRESS)
        for result in results:
            assert result.status == Status.PASS, result
            assert f"via proxy {proxy.url}" in result.observed
        wait_until(
            lambda: egress_server.handshakes >= before + len(BASE_HOSTS),
            timeout=5,
            what="the handshakes through the proxy",
        )
        assert "CONNECT auth.carto.com" in proxy.log()


def test_proxy_refusing_connect_fails_naming_the_proxy(
    test_ca: TestCA, egress_server: LoopbackServer
) -> None:
    with tinyproxy_with_hosts({"gcr.io": "127.0.0.1"}, deny_connect=True) as proxy:
        ctx = egress_context(
            test_ca,
            egress_server.port,
            resolver=refuse_local_dns,
            proxy=ProxySettings(https=proxy.url),
        )
        result = by_id(run_checks(ctx, EGRESS))["egress.gcr.io"]
    assert result.status == Status.FAIL
    assert result.data["stage"] == "proxy CONNECT"
    assert proxy.url in result.message and "403" in result.message
    assert "refuse" in result.remediation and "gcr.io" in result.remediation


def test_unreachable_proxy_fails_at_the_proxy_stage(
    test_ca: TestCA, egress_server: LoopbackServer
) -> None:
    dead = f"http://127.0.0.1:{free_loopback_port()}"
    ctx = egress_context(
        test_ca, egress_server.port, resolver=refuse_local_dns, proxy=ProxySettings(https=dead)
    )
    result = by_id(run_checks(ctx, EGRESS))["egress.gcr.io"]
    assert result.status == Status.FAIL and result.data["stage"] == "proxy"
    assert dead in result.message and "network.proxy.https" in result.remediation


def test_no_proxy_and_vendor_bypass_go_direct(
    test_ca: TestCA, egress_server: LoopbackServer
) -> None:
    dead = f"http://127.0.0.1:{free_loopback_port()}"
    ctx = egress_context(
        test_ca,
        egress_server.port,
        proxy=ProxySettings(https=dead, no_proxy=".carto.com"),
        warehouses=["snowflake"],
        snowflake_account_url="acme.snowflakecomputing.com",
    )
    results = by_id(run_checks(ctx, EGRESS))
    assert results["egress.auth.carto.com"].status == Status.PASS
    assert "direct" in results["egress.auth.carto.com"].observed
    snowflake = results["egress.acme.snowflakecomputing.com"]
    assert snowflake.status == Status.PASS and "bypasses the proxy" in snowflake.message
    assert results["egress.gcr.io"].status == Status.FAIL  # not exempt: the dead proxy


def test_unreadable_proxy_ca_file_fails_with_the_setting(
    test_ca: TestCA, tmp_path: Path, egress_server: LoopbackServer
) -> None:
    ctx = egress_context(test_ca, egress_server.port)
    ctx.answers.network.proxy.ca_file = str(tmp_path / "nope.pem")  # type: ignore[union-attr]
    result = by_id(run_checks(ctx, EGRESS))["egress.gcr.io"]
    assert result.status == Status.FAIL and "network.proxy.ca_file" in result.remediation


@contextlib.contextmanager
def tls_front(ca: TestCA, backend_port: int) -> Iterator[int]:
    """A TLS terminator on 127.0.0.1 (certificate for the IP, from the test CA) that pipes
    each connection to a plain backend: with tinyproxy behind it, an https:// proxy."""
    issued = ca.issue(["127.0.0.1"])
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with tempfile.TemporaryDirectory() as tmp:
        files = issued.write(Path(tmp))
        context.load_cert_chain(files.fullchain, files.key)
    listener = socket.create_server(("127.0.0.1", 0))

    def pipe(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def serve(conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            tls = context.wrap_socket(conn, server_side=True)
            backend = socket.create_connection(("127.0.0.1", backend_port))
            threading.Thread(target=pipe, args=(backend, tls), daemon=True).start()
            pipe(tls, backend)

    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)
        listener.close()


def test_through_an_https_proxy_passes(test_ca: TestCA, egress_server: LoopbackServer) -> None:
    """TLS to the proxy, CONNECT inside it, then the host's own TLS inside that."""
    with (
        tinyproxy_with_hosts({"gcr.io": "127.0.0.1"}) as proxy,
        tls_front(test_ca, proxy.port) as front,
    ):
        url = f"https://127.0.0.1:{front}"
        ctx = egress_context(
            test_ca,
            egress_server.port,
            resolver=refuse_local_dns,
            proxy=ProxySettings(https=url),
        )
        result = by_id(run_checks(ctx, EGRESS))["egress.gcr.io"]
        assert result.status == Status.PASS, result
        assert f"via proxy {url}" in result.observed
        assert "CONNECT gcr.io" in proxy.log()


# --- a remote target -------------------------------------------------------------------------


class NamedRemote(LocalTarget):
    """A target reached "remotely": it resolves names itself inside open_connection, as the
    SSH target's direct-tcpip channel does, here from its own hosts table (loopback only)."""

    is_local = False

    def __init__(self, hosts: Mapping[str, str]) -> None:
        super().__init__()
        self.name = "tester@remote:22"
        self.hosts = dict(hosts)
        self.opened: list[str] = []

    def open_connection(self, host: str, port: int, timeout: float) -> socket.socket:
        self.opened.append(host)
        if host not in self.hosts:
            raise OSError(f"open failed: could not resolve {host}: Name or service not known")
        return socket.create_connection((self.hosts[host], port), timeout=timeout)


def test_remote_target_resolves_and_connects_itself(
    test_ca: TestCA, egress_server: LoopbackServer
) -> None:
    target = NamedRemote({h: "127.0.0.1" for h in BASE_HOSTS if h != "gcr.io"})
    ctx = egress_context(test_ca, egress_server.port, resolver=refuse_local_dns)
    ctx.target = target
    results = by_id(run_checks(ctx, EGRESS))
    assert results["egress.auth.carto.com"].status == Status.PASS
    assert "auth.carto.com" in target.opened  # the name, not an address resolved here
    assert results["egress.gcr.io"].data["stage"] == "DNS"
    assert "on the target" in results["egress.gcr.io"].message


# --- the CLI, in its own network namespace ---------------------------------------------------

DRIVER = """
import subprocess, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from tests.services.tls_ca import tls_server
cert, key, *argv = sys.argv[2:]
with tls_server(Path(cert), Path(key), port=443):
    sys.exit(subprocess.run(argv).returncode)
"""


def test_cli_json_report_for_net_tls_db_egress(test_ca: TestCA, tmp_path: Path) -> None:
    """The real CLI, system resolver and all: /etc/hosts maps the names to loopback, where a
    TLS server listens on 443; nothing outside the namespace is reachable."""
    hosts = BASE_HOSTS + ["api.openai.com"]
    issued = test_ca.issue(hosts)
    files = issued.write(tmp_path / "server")
    domain_cert = test_ca.issue(["carto.example.com"], not_after=None).write(tmp_path / "site")
    names = {h: "127.0.0.1" for h in hosts} | {
        "carto.example.com": "127.0.0.1",
        "api.tomtom.com": "127.0.0.2",
    }
    answers = tmp_path / "answers.yaml"
    answers.write_text(f"""
domain: carto.example.com
tls: {{certificate_file: {domain_cert.fullchain}, key_file: {domain_cert.key}}}
database:
  host: 127.0.0.1
  port: 1
  admin_password_env: NETDB_TEST_PW
network:
  features: [ai_agents, lds]
  egress_timeout: 2
""")
    answers.chmod(0o600)
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    argv = namespaced(
        [
            sys.executable,
            str(driver),
            str(REPO),
            str(files.fullchain),
            str(files.key),
            sys.executable,
            "-m",
            "installer",
            "preflight",
            "--answers",
            str(answers),
            "--format",
            "json",
            "--only",
            "net,tls,db,egress",
        ],
        names,
        tmp_path / "ns",
        network=True,
    )
    env = cli_env({"SSL_CERT_FILE": str(test_ca.ca_file), "NETDB_TEST_PW": "not-a-real-pw"})
    proc = subprocess.run(
        argv, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60, check=False
    )
    assert proc.returncode == 3, proc.stderr
    report = json.loads(proc.stdout)
    checks = {c["id"]: c for c in report["checks"]}
    for check in checks.values():
        if check["status"] in ("warn", "fail"):
            assert check["observed"] and check["remediation"], check
    for host in hosts:
        assert checks[f"egress.{host}"]["status"] == "pass", checks[f"egress.{host}"]
    assert checks["egress.api.tomtom.com"]["status"] == "fail"
    assert "connect failed" in checks["egress.api.tomtom.com"]["message"]
    hereapi = checks["egress.isoline.router.hereapi.com"]
    assert hereapi["status"] == "fail" and "DNS failed" in hereapi["message"]
    assert checks["net.domain"]["status"] == "pass"
    assert checks["net.dns"]["status"] == "warn" and "loopback" in checks["net.dns"]["message"]
    assert checks["tls.certificate"]["status"] == "pass"
    assert checks["db.connect"]["status"] == "fail"
    assert "connection refused" in checks["db.connect"]["message"]
    assert checks["db.privileges"]["status"] == "skip"
    assert "not-a-real-pw" not in proc.stdout


def test_egress_timeout_is_bounded_by_the_answers_loader() -> None:
    from installer.answers import parse_answers
    from installer.errors import AnswersError

    assert parse_answers({"network": {"egress_timeout": 2}}).network.egress_timeout == 2.0
    with pytest.raises(AnswersError, match="network.egress_timeout: 120 s is out of range"):
        parse_answers({"network": {"egress_timeout": 120}})
    # The engine's limit for each egress check sits above the largest allowed probe time.
    egress = EGRESS[0]
    assert egress.timeout > 60.0


# --- the registry, read from the deployment directory ------------------------------------------


def _egress_ids(directory: Path, **answers: object) -> list[str]:
    from installer.answers import ComposeSettings

    ctx = CheckContext(target=LocalTarget(), answers=Answers(
        compose=ComposeSettings(directory=str(directory)), **answers))  # type: ignore[arg-type]
    return [check_id for check_id, _title, _host in egress.expand_egress(ctx)]


def test_egress_probes_the_registry_the_vendors_env_tpl_names(tmp_path: Path) -> None:
    from tests.support.vendor_compose import NEW_RELEASE, copy_release

    directory = copy_release(NEW_RELEASE, tmp_path / "carto")
    (directory / "customer.env").write_text("LOCAL_POSTGRES_SCALE=0\nLOCAL_REDIS_SCALE=1\n")
    ids = _egress_ids(directory)
    assert "egress.gcr.io" in ids  # DOCKER_REGISTRY_BASE_PATH=gcr.io/carto-onprem-artifacts
    assert "egress.registry-1.docker.io" not in ids  # the bundled postgres is scaled to 0

    # Another release (or a mirror) names another registry: that one is probed, not gcr.io.
    template = directory / "env.tpl"
    template.write_text(template.read_text().replace(
        "DOCKER_REGISTRY_BASE_PATH=gcr.io/carto-onprem-artifacts",
        "DOCKER_REGISTRY_BASE_PATH=us-docker.pkg.dev/carto-onprem-artifacts/gcr.io"))
    (directory / "customer.env").write_text("LOCAL_POSTGRES_SCALE=1\nLOCAL_REDIS_SCALE=1\n")
    ids = _egress_ids(directory)
    assert "egress.us-docker.pkg.dev" in ids and "egress.gcr.io" not in ids
    assert "egress.registry-1.docker.io" in ids  # the bundled postgres:13.2-alpine


def test_egress_hosts_take_the_registries_they_are_given() -> None:
    """The hook the Kubernetes side feeds with the chart's registries."""
    given = egress_hosts(Answers(), [("registry.internal", 5000), ("quay.io", 443)])
    ports = {h.host: h.port for h in given}
    assert ports.get("registry.internal") == 5000 and ports.get("quay.io") == 443
    assert "gcr.io" not in ports
