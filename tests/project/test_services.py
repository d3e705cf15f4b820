"""Proof that each service fixture starts a real, working service (tests/services/)."""

from __future__ import annotations

import base64
import contextlib
import datetime
import http.client
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import paramiko
import psycopg
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from packaging.version import Version

from tests.services.dockerd import build_image
from tests.services.postgres import PostgresServer
from tests.services.proxy import HTTPProxyFactory
from tests.services.sshd import (
    TEST_USER,
    DelayRelay,
    SSHCredentials,
    SSHServer,
    SSHServerFactory,
)
from tests.services.tls_ca import (
    LOOPBACK,
    KeyType,
    TestCA,
    free_loopback_port,
    silent_server,
    tls_server,
    wait_until,
)


def _https_get(address: tuple[str, int], ca_file: Path, server_name: str) -> bytes:
    context = ssl.create_default_context(cafile=str(ca_file))
    with (
        socket.create_connection(address, timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=server_name) as tls,
    ):
        tls.sendall(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
        return tls.recv(4096)


# --- TLS -------------------------------------------------------------------------------


@pytest.mark.parametrize(("key_type", "intermediate"), [("rsa2048", False), ("ec256", True)])
def test_issued_chain_is_verified_by_a_real_tls_client(
    test_ca: TestCA, key_type: KeyType, intermediate: bool
) -> None:
    issued = test_ca.issue(["localhost", LOOPBACK], key_type=key_type, intermediate=intermediate)

    with tls_server(issued.fullchain, issued.key) as server:
        for name in ("localhost", LOOPBACK):  # DNS SAN and IP SAN
            assert _https_get(server.address, test_ca.ca_file, name).startswith(b"HTTP/1.1 200 OK")
        assert server.handshakes == 2

    leaf = x509.load_pem_x509_certificate(issued.leaf)
    expected_key = rsa.RSAPublicKey if key_type == "rsa2048" else ec.EllipticCurvePublicKey
    assert isinstance(leaf.public_key(), expected_key)
    assert bool(issued.chain) is intermediate


def test_expired_and_self_signed_certificates_are_rejected(test_ca: TestCA) -> None:
    now = datetime.datetime.now(datetime.UTC)
    expired = test_ca.issue(
        ["localhost"],
        not_before=now - datetime.timedelta(days=30),
        not_after=now - datetime.timedelta(days=1),
    )
    self_signed = test_ca.issue(["localhost"], self_signed=True)

    for issued, reason in ((expired, "expired"), (self_signed, "self-signed")):
        with (
            tls_server(issued.fullchain, issued.key) as server,
            pytest.raises(ssl.SSLCertVerificationError, match=reason),
        ):
            _https_get(server.address, test_ca.ca_file, "localhost")


def test_issued_files_and_encrypted_key(test_ca: TestCA, tmp_path: Path) -> None:
    issued = test_ca.issue(["carto.example.com"], intermediate=True)

    files = issued.write(tmp_path)

    assert files.fullchain.read_bytes() == files.cert.read_bytes() + files.chain.read_bytes()
    assert files.key.stat().st_mode & 0o077 == 0
    assert b"ENCRYPTED" in issued.encrypted_key(b"secret")


def test_silent_server_accepts_tcp_but_never_answers(test_ca: TestCA) -> None:
    with silent_server() as server:
        started = time.monotonic()
        with (
            socket.create_connection(server.address, timeout=0.5) as raw,  # TCP works
            pytest.raises(TimeoutError),  # TLS never does
        ):
            ssl.create_default_context(cafile=str(test_ca.ca_file)).wrap_socket(
                raw, server_hostname="localhost"
            )
        assert time.monotonic() - started < 3


# --- Docker ----------------------------------------------------------------------------


def test_docker_engine_answers(docker_engine: docker.DockerClient) -> None:
    assert docker_engine.ping()
    assert Version(docker_engine.version()["Version"].split("+")[0]) >= Version("20.10")


# Certificates come in through a bind mount, so the image content is the same in every
# session and parallel runs share one cached image.
SERVE_TLS_SCRIPT = b"""#!/bin/sh
exec socat OPENSSL-LISTEN:8443,reuseaddr,fork,cert=/certs/server.fullchain.pem,\\
key=/certs/server.key,verify=0 "SYSTEM:echo hello-from-socat"
"""


def test_built_image_runs_socat_serving_tls(
    docker_engine: docker.DockerClient, test_ca: TestCA, tmp_path: Path
) -> None:
    files: dict[str, bytes | Path] = {"/usr/local/bin/serve-tls": SERVE_TLS_SCRIPT}
    image_id = build_image(docker_engine, "carto-test/socat:1", files, binaries=["socat"])
    cached = build_image(docker_engine, "carto-test/socat:1", files, binaries=["socat"])
    assert cached == image_id
    test_ca.issue(["localhost", LOOPBACK]).write(tmp_path)

    port = free_loopback_port()
    container = docker_engine.containers.run(
        image_id,
        ["serve-tls"],
        detach=True,
        ports={"8443/tcp": (LOOPBACK, port)},
        volumes={str(tmp_path): {"bind": "/certs", "mode": "ro"}},
    )
    try:
        answers: list[bytes] = []

        def served() -> bool:
            # docker-proxy accepts before socat listens, so early attempts see an EOF.
            try:
                reply = _https_get((LOOPBACK, port), test_ca.ca_file, "localhost")
            except (ssl.SSLError, OSError):
                container.reload()
                if container.status == "exited":
                    raise RuntimeError(container.logs().decode()) from None
                return False
            if not reply:  # docker-proxy's connection closed before socat answered
                return False
            answers.append(reply)
            return True

        wait_until(served, timeout=20, what="socat in the test container")
        assert answers == [b"hello-from-socat\n"]
    finally:
        container.remove(force=True)


def test_compose_v2_plugin_and_v1_standalone(compose_v2: Path) -> None:
    assert compose_v2 == Path.home() / ".docker" / "cli-plugins" / "docker-compose"
    # Both CLIs on the machine (Docker 28 in /usr/local/bin, Debian's 20.10) find the plugin.
    for docker_cli in ("/usr/local/bin/docker", "/usr/bin/docker"):
        if Path(docker_cli).exists():
            v2 = subprocess.run(
                [docker_cli, "compose", "version"],
                capture_output=True,
                text=True,
                check=True,
            )
            assert "Docker Compose version v2." in v2.stdout
    v1 = subprocess.run(["docker-compose", "version"], capture_output=True, text=True, check=True)
    assert "docker-compose version 1.29.2" in v1.stdout


# --- PostgreSQL ------------------------------------------------------------------------


def test_postgres_accepts_verified_tls_and_plain_logins(
    postgres_server: PostgresServer,
) -> None:
    postgres_server.create_role("svc_tls_user", "pw-1")

    with psycopg.connect(
        **postgres_server.dsn_kwargs(user="svc_tls_user", password="pw-1")
    ) as conn:
        assert conn.info.pgconn.ssl_in_use
        assert conn.info.server_version // 10000 == 15
    with psycopg.connect(**postgres_server.dsn_kwargs(sslmode="disable")) as conn:
        assert not conn.info.pgconn.ssl_in_use
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(**postgres_server.dsn_kwargs(password="wrong"))


def test_postgres_tls_required_refuses_plain_logins(
    postgres_tls_required: PostgresServer,
) -> None:
    with pytest.raises(psycopg.OperationalError, match="no encryption"):
        psycopg.connect(**postgres_tls_required.dsn_kwargs(sslmode="disable"))
    with psycopg.connect(**postgres_tls_required.dsn_kwargs()) as conn:
        assert conn.info.pgconn.ssl_in_use


def test_postgres_create_role_sets_exactly_the_asked_privileges(
    postgres_server: PostgresServer,
) -> None:
    query = "SELECT rolsuper, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = %s"

    postgres_server.create_role("svc_admin", "pw-2", createrole=True, createdb=True)
    assert postgres_server.execute(query, ("svc_admin",)) == [(False, True, True)]

    postgres_server.create_role("svc_admin", "pw-3", superuser=True)  # re-run: reset, not fail
    assert postgres_server.execute(query, ("svc_admin",)) == [(True, False, False)]
    psycopg.connect(**postgres_server.dsn_kwargs(user="svc_admin", password="pw-3")).close()


# --- SSH -------------------------------------------------------------------------------


def _connect(
    server: SSHServer, *, sock: paramiko.Channel | None = None, **auth: Any
) -> paramiko.SSHClient:
    client = paramiko.SSHClient()
    # Even in the fixture's own tests the host key is verified: the one the server was given.
    key_type, key_b64 = server.host_public_key.split()[:2]
    name = f"[{server.host}]:{server.port}" if server.port != 22 else server.host
    client.get_host_keys().add(name, key_type, paramiko.PKey.from_type_string(
        key_type, base64.b64decode(key_b64)))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(
        server.host,
        server.port,
        sock=sock,
        look_for_keys=False,
        allow_agent=False,
        timeout=10,
        **auth,
    )
    return client


def _run(client: paramiko.SSHClient, command: str, stdin: str = "") -> tuple[int, str, str]:
    channel_in, out, err = client.exec_command(command, timeout=20)
    if stdin:
        channel_in.write(stdin)
        channel_in.channel.shutdown_write()
    return out.channel.recv_exit_status(), out.read().decode(), err.read().decode()


def test_ssh_key_auth_for_root_with_both_client_keys(
    ssh_server: SSHServer, ssh_credentials: SSHCredentials
) -> None:
    rsa_key = paramiko.RSAKey.from_private_key_file(
        str(ssh_credentials.rsa_key), password=ssh_credentials.rsa_passphrase
    )
    auths: list[dict[str, Any]] = [
        {"key_filename": str(ssh_credentials.ed25519_key)},
        {"pkey": rsa_key},
    ]
    for auth in auths:
        with _connect(ssh_server, username="root", **auth) as client:
            assert _run(client, "id -un") == (0, "root\n", "")
    with pytest.raises(paramiko.AuthenticationException):  # root has no password login
        _connect(ssh_server, username="root", password=ssh_credentials.password)


def test_ssh_password_auth_and_sudo_modes(
    ssh_server_factory: SSHServerFactory, ssh_credentials: SSHCredentials
) -> None:
    password = ssh_credentials.password
    with _connect(
        ssh_server_factory(sudo="password"), username=TEST_USER, password=password
    ) as client:
        assert _run(client, "id -un")[1] == f"{TEST_USER}\n"
        assert _run(client, "sudo -n true")[0] != 0  # a password is required
        assert _run(client, "sudo -S -p '' id -un", stdin=password + "\n")[:2] == (
            0,
            "root\n",
        )
    with _connect(
        ssh_server_factory(sudo="nopasswd"), username=TEST_USER, password=password
    ) as client:
        assert _run(client, "sudo -n id -un")[:2] == (0, "root\n")


def test_ssh_remote_host_shows_its_own_os_release_and_proc_files(
    ssh_server_factory: SSHServerFactory, ssh_credentials: SSHCredentials
) -> None:
    local_os_release = Path("/etc/os-release").read_text()
    local_meminfo_first = Path("/proc/meminfo").read_text().splitlines()[0]
    server = ssh_server_factory(
        meminfo="MemTotal:       16384000 kB\n",
        cpuinfo="processor\t: 0\nmodel name\t: Fake CPU\n",
    )

    with _connect(server, username="root", key_filename=str(ssh_credentials.ed25519_key)) as client:
        _, os_release, _ = _run(client, "cat /etc/os-release")
        _, proc, _ = _run(client, "head -1 /proc/meminfo; grep 'model name' /proc/cpuinfo")

    assert 'PRETTY_NAME="Ubuntu 22.04.4 LTS"' in os_release
    assert proc == "MemTotal:       16384000 kB\nmodel name\t: Fake CPU\n"
    assert Path("/etc/os-release").read_text() == local_os_release
    assert "Ubuntu" not in local_os_release
    assert Path("/proc/meminfo").read_text().splitlines()[0] == local_meminfo_first


def test_ssh_host_key_fingerprint_known_hosts_and_restart(
    ssh_server: SSHServer, ssh_credentials: SSHCredentials, tmp_path: Path
) -> None:
    keygen = subprocess.run(
        ["ssh-keygen", "-lf", "-"],
        input=ssh_server.host_public_key,
        capture_output=True,
        text=True,
        check=True,
    )
    assert keygen.stdout.split()[1] == ssh_server.host_key_fingerprint()
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(ssh_server.known_hosts_line() + "\n")
    key_auth: dict[str, Any] = {
        "username": "root",
        "key_filename": str(ssh_credentials.ed25519_key),
    }

    def strict_client() -> paramiko.SSHClient:
        client = paramiko.SSHClient()
        client.load_host_keys(str(known_hosts))
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        return client

    with strict_client() as client:
        client.connect(
            ssh_server.host,
            ssh_server.port,
            look_for_keys=False,
            allow_agent=False,
            **key_auth,
        )
        remote_key = client.get_transport().get_remote_server_key()  # type: ignore[union-attr]
        assert remote_key.fingerprint == ssh_server.host_key_fingerprint()

    old_fingerprint, port = ssh_server.host_key_fingerprint(), ssh_server.port
    ssh_server.restart(new_host_key=True)

    assert (ssh_server.port, ssh_server.host_key_fingerprint() != old_fingerprint) == (
        port,
        True,
    )
    with strict_client() as client, pytest.raises(paramiko.BadHostKeyException):
        client.connect(
            ssh_server.host,
            ssh_server.port,
            look_for_keys=False,
            allow_agent=False,
            **key_auth,
        )


def test_ssh_jump_host_opens_direct_tcpip_to_the_target(
    ssh_server_factory: SSHServerFactory, ssh_credentials: SSHCredentials
) -> None:
    jump = ssh_server_factory(allow_tcp_forwarding=True)
    target = ssh_server_factory(
        allow_tcp_forwarding=False,
        os_release='PRETTY_NAME="Ubuntu 24.04 LTS"\nID=ubuntu\nVERSION_ID="24.04"\n',
    )
    key_auth: dict[str, Any] = {
        "username": "root",
        "key_filename": str(ssh_credentials.ed25519_key),
    }

    with _connect(jump, **key_auth) as jump_client:
        transport = jump_client.get_transport()
        assert transport is not None
        channel = transport.open_channel("direct-tcpip", (target.host, target.port), (LOOPBACK, 0))
        with _connect(target, sock=channel, **key_auth) as target_client:
            assert "24.04" in _run(target_client, "cat /etc/os-release")[1]
            no_forwarding = target_client.get_transport()
            assert no_forwarding is not None
            with pytest.raises(paramiko.ChannelException):  # AllowTcpForwarding no
                no_forwarding.open_channel("direct-tcpip", (jump.host, jump.port), (LOOPBACK, 0))


@pytest.fixture
def echo_server() -> Iterator[tuple[str, int]]:
    listener = socket.create_server((LOOPBACK, 0))

    def serve() -> None:
        with contextlib.suppress(OSError):  # the listener closes at teardown
            conn, _ = listener.accept()
            with conn:
                while data := conn.recv(4096):
                    conn.sendall(data)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()
    listener.close()
    thread.join(timeout=5)


def test_delay_relay_adds_one_way_delay_and_counts_round_trips(
    echo_server: tuple[str, int],
) -> None:
    with (
        DelayRelay(echo_server, one_way_delay=0.05) as relay,
        socket.create_connection((relay.host, relay.port), timeout=5) as conn,
    ):
        started = time.monotonic()
        for i in range(3):
            conn.sendall(b"ping%d" % i)
            assert conn.recv(100) == b"ping%d" % i
        elapsed = time.monotonic() - started

    assert 0.3 <= elapsed < 1.5  # 3 round trips x 2 x 50 ms
    assert relay.round_trips == 3


# --- HTTP proxy ------------------------------------------------------------------------


def _get_through_proxy(proxy_url: str, server_port: int, ca_file: Path) -> int:
    """Status of GET https://localhost:<port>/ tunnelled with CONNECT through the proxy."""
    host, port = proxy_url.removeprefix("http://").split(":")
    conn = http.client.HTTPSConnection(
        host,
        int(port),
        timeout=5,
        context=ssl.create_default_context(cafile=str(ca_file)),
    )
    conn.set_tunnel("localhost", server_port)
    try:
        conn.request("GET", "/")
        return conn.getresponse().status
    finally:
        conn.close()


def test_proxy_tunnels_a_verified_tls_handshake(http_proxy: str, test_ca: TestCA) -> None:
    issued = test_ca.issue(["localhost"])
    with tls_server(issued.fullchain, issued.key) as server:
        assert _get_through_proxy(http_proxy, server.port, test_ca.ca_file) == 200
        assert server.handshakes == 1


def test_proxy_connect_port_list_and_deny_variant(
    http_proxy_factory: HTTPProxyFactory, test_ca: TestCA
) -> None:
    issued = test_ca.issue(["localhost"])
    with (
        tls_server(issued.fullchain, issued.key) as allowed,
        tls_server(issued.fullchain, issued.key) as other,
    ):
        restricted = http_proxy_factory(connect_ports=[allowed.port])
        assert _get_through_proxy(restricted.url, allowed.port, test_ca.ca_file) == 200
        with pytest.raises(OSError, match="403"):
            _get_through_proxy(restricted.url, other.port, test_ca.ca_file)

        deny = http_proxy_factory(deny_connect=True)
        with pytest.raises(OSError, match="403"):
            _get_through_proxy(deny.url, allowed.port, test_ca.ca_file)
        assert other.handshakes == 0
