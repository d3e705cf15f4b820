"""`carto-installer deploy` and `status` end to end on the real Docker engine, with the fixture
deployment directory (router serving HTTPS with the certificate from certs/, a migrations job,
a service reading .env) and the docker compose v2 plugin."""

from __future__ import annotations

import json
import re
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
import yaml

from installer.answers import dump_answers, load_answers
from tests.services.tls_ca import TestCA
from tests.support.cli import cli_env, host_ports_lock, run_cli
from tests.support.compose_deployment import (
    APP_IMAGE,
    ROUTER_IMAGE,
    build_images,
    compose_down,
    make_deployment,
    write_answers,
)
from tests.support.package import make_package

DOMAIN = "carto-e2e.example.com"
# Planted secrets, with the characters that break hand-written env files.
ADMIN_PASSWORD = 'pg-Admin$ecret "q" #1 \\ ${HOME}'
USER_PASSWORD = "wS-user'pw $PATH ünï"
REDIS_PASSWORD = "redis-Pass #word with spaces "
SKIP = "host.cpu,egress"  # the test machine has 2 CPUs and no Internet: accepted risks


@pytest.fixture(scope="module")
def images(docker_engine: docker.DockerClient, compose_v2: Path) -> dict[str, str]:
    return build_images(docker_engine)


def https_get(path: str, cert_pem: bytes, domain: str = DOMAIN) -> tuple[int, bytes, bytes]:
    """GET through the router on 127.0.0.1:443 with SNI and Host = domain, trusting exactly
    `cert_pem`; returns (status, body, the served certificate in DER)."""
    context = ssl.create_default_context(cadata=cert_pem.decode())
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    with socket.create_connection(("127.0.0.1", 443), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname=domain) as tls:
        served = tls.getpeercert(binary_form=True) or b""
        tls.sendall(f"GET {path} HTTP/1.0\r\nHost: {domain}\r\n\r\n".encode())
        data = b""
        while chunk := tls.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body, served


class Case:
    def __init__(self, tmp_path: Path, *, failing: bool = False) -> None:
        self.tmp = tmp_path
        self.package = make_package(tmp_path / "pkg")
        self.directory = make_deployment(tmp_path / "carto", failing=failing)
        (tmp_path / "redis-password").write_text(REDIS_PASSWORD + "\n")
        (tmp_path / "redis-password").chmod(0o600)
        self.answers = write_answers(
            tmp_path / "answers.yaml", package=self.package.path, directory=self.directory,
            domain=DOMAIN, extra={"redis": {"password_file": str(tmp_path / "redis-password")}})
        self.env = {"TEST_PG_ADMIN_PASSWORD": ADMIN_PASSWORD, "TEST_PG_PASSWORD": USER_PASSWORD}
        self.outputs: list[str] = []

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        result = run_cli(*args, "--answers", str(self.answers), cwd=self.tmp, env=self.env,
                         timeout=600)
        self.outputs += [result.stdout, result.stderr]
        return result

    def deploy(self) -> subprocess.CompletedProcess[str]:
        return self.cli("deploy", "--yes", "--skip", SKIP)

    def containers(self, client: docker.DockerClient) -> dict[str, tuple[str, str]]:
        found = client.containers.list(
            all=True, filters={"label": "com.docker.compose.project=carto"})
        return {c.name: (c.id, c.attrs["State"]["StartedAt"]) for c in found}

    def cert(self) -> bytes:
        return (self.directory / "certs" / f"{DOMAIN}.crt").read_bytes()

    @property
    def secrets(self) -> list[str]:
        return [ADMIN_PASSWORD, USER_PASSWORD, REDIS_PASSWORD.strip(), *self.package.secrets,
                (self.directory / "certs" / f"{DOMAIN}.key").read_text().splitlines()[1]]


@pytest.fixture()
def ports() -> Iterator[None]:
    with host_ports_lock():
        yield


def test_deploy_end_to_end(images: dict[str, str], ports: None, tmp_path: Path,
                           docker_engine: docker.DockerClient, test_ca: TestCA) -> None:
    case = Case(tmp_path)
    # The images come from an archive, as on a machine without registry access.
    archive = tmp_path / "carto-images.tar"
    subprocess.run(["docker", "save", "-o", str(archive), ROUTER_IMAGE, APP_IMAGE], check=True,
                   capture_output=True, timeout=120)
    docker_engine.images.remove(APP_IMAGE, force=True)
    data = yaml.safe_load(case.answers.read_text())
    data["compose"]["images_archive"] = str(archive)
    case.answers.write_text(yaml.safe_dump(data))
    try:
        result = case.deploy()
        assert result.returncode == 0, result.stdout + result.stderr
        out = result.stdout
        assert "==> load images" in out and f"loaded {APP_IMAGE}" in out
        assert "workspace-migrations: exited (0)" in out
        assert "router-http: running" in out
        assert "127.0.0.1:443, certificate verified (SNI and Host set to the domain" in out
        assert f"CARTO answers at https://{DOMAIN}" in out
        assert "accepted risks (--skip):\n  - host.cpu" in out

        # The router serves the generated certificate, and the service got .env's values
        # byte for byte (the passwords hold quotes, $, #, \ and unicode).
        status, body, served = https_get("/service-env.txt", case.cert())
        assert status == 200
        from cryptography import x509
        from cryptography.hazmat.primitives.serialization import Encoding

        assert served == x509.load_pem_x509_certificate(case.cert()).public_bytes(Encoding.DER)
        lines = body.decode().splitlines()
        assert f"POSTGRES_ADMIN_PASSWORD={ADMIN_PASSWORD}" in lines
        assert f"WORKSPACE_POSTGRES_PASSWORD={USER_PASSWORD}" in lines
        assert f"REDIS_PASSWORD={REDIS_PASSWORD}" in lines  # the final space kept
        assert f"WORKSPACE_TENANT_ID=onp-{case.package.client_id}" in lines
        assert "CARTO_SELFHOSTED_VERSION=2026.4.1" in lines

        status_result = case.cli("status")
        assert status_result.returncode == 0, status_result.stdout
        assert "healthy: 3 container(s) up" in status_result.stdout
        assert "valkey" not in status_result.stdout  # scale 0: external Redis

        # A re-deploy's preflight knows the running router as CARTO's own: the service that
        # docker-compose.yml publishes 443 with (router-http, the vendor's name).
        ports = case.cli("preflight", "--only", "host.ports", "--format", "json")
        check = {c["id"]: c for c in json.loads(ports.stdout)["checks"]}["host.ports"]
        assert check["status"] == "pass", check
        assert "CARTO's own router" in check["message"]

        # Again with the same answers: nothing written, nothing restarted.
        before = case.containers(docker_engine)
        files = {p: p.stat().st_mtime_ns for p in case.directory.rglob("*") if p.is_file()}
        again = case.deploy()
        assert again.returncode == 0, again.stdout + again.stderr
        assert "already up to date and healthy: nothing restarted" in again.stdout
        assert "(nothing changed)" in again.stdout
        assert case.containers(docker_engine) == before
        assert {p: p.stat().st_mtime_ns for p in case.directory.rglob("*") if p.is_file()} \
            == files

        # A stopped service: status says so (exit 3); deploy resumes.
        docker_engine.containers.get("carto-workspace-api-1").stop(timeout=1)
        unhealthy = case.cli("status")
        assert unhealthy.returncode == 3
        assert "unhealthy" in unhealthy.stdout and "workspace-api" in unhealthy.stdout
        resumed = case.deploy()
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        assert case.cli("status").returncode == 0

        generated_key = (case.directory / "certs" / f"{DOMAIN}.key").read_text()
        # A certificate from a CA replaces the generated one: the router is restarted to
        # serve it, and the check trusts exactly that certificate.
        issued = test_ca.issue([DOMAIN]).write(tmp_path / "tls")
        data = yaml.safe_load(case.answers.read_text())
        data["tls"] = {"certificate_file": str(issued.fullchain), "key_file": str(issued.key)}
        case.answers.write_text(yaml.safe_dump(data))
        renewed = case.deploy()
        assert renewed.returncode == 0, renewed.stdout + renewed.stderr
        assert "for the new certificates" in renewed.stdout
        _, _, served = https_get("/", test_ca.ca_pem)
        assert served == x509.load_pem_x509_certificate(issued.fullchain.read_bytes()
                                                        ).public_bytes(Encoding.DER)

        # No secret anywhere: output, log, a preflight report, saved answers.
        report = tmp_path / "report.json"
        assert case.cli("preflight", "--format", "json", "--output", str(report)).returncode \
            in (0, 3)
        saved = dump_answers(load_answers(case.answers, env=case.env))
        haystack = "\n".join([*case.outputs, (tmp_path / "carto-installer.log").read_text(),
                              report.read_text(), saved])
        for secret in [*case.secrets, generated_key.splitlines()[1]]:
            assert secret not in haystack, f"a secret leaked ({len(secret)} chars)"
        assert oct((tmp_path / "carto-installer.log").stat().st_mode & 0o777) == "0o600"
        log = (tmp_path / "carto-installer.log").read_text()
        assert "accepted risk (--skip): host.cpu" in log
        assert "docker compose up -d" in log  # every command run on the target is logged
    finally:
        compose_down(case.directory)


def test_a_failing_service_stops_the_deploy_with_its_logs(images: dict[str, str], ports: None,
                                                          tmp_path: Path) -> None:
    case = Case(tmp_path, failing=True)
    try:
        result = case.deploy()
        assert result.returncode == 3, result.stdout + result.stderr
        assert "service workspace-api is not running: it keeps failing" in result.stderr
        assert ("workspace-api | workspace-api: cannot connect to the database at "
                "workspace-postgres:5432") in result.stdout
        assert "re-run `carto-installer deploy`, which resumes" in result.stderr
        assert "docker compose logs workspace-api" in result.stderr
        status = case.cli("status")
        assert status.returncode == 3
        assert "unhealthy" in status.stdout
    finally:
        compose_down(case.directory)


def test_a_blocking_preflight_failure_stops_before_anything_changes(
        images: dict[str, str], ports: None, tmp_path: Path) -> None:
    case = Case(tmp_path)
    (case.directory / "MIN_VERSION").write_text("2099.1.1\n")  # the package is too old
    before = {str(p): p.read_bytes() for p in case.directory.rglob("*") if p.is_file()}
    result = case.deploy()
    assert result.returncode == 3
    assert ("license.version: the installation package 2026.4.1 is older than the "
            "deployment's MIN_VERSION 2099.1.1") in result.stderr
    assert re.search(r"--skip \S*license\.version", result.stderr)
    assert "==> render" not in result.stdout
    assert {str(p): p.read_bytes() for p in case.directory.rglob("*") if p.is_file()} == before


def test_without_yes_the_terminal_is_asked_and_no_changes_nothing(
        images: dict[str, str], ports: None, tmp_path: Path,
        docker_engine: docker.DockerClient) -> None:
    import pexpect

    case = Case(tmp_path)
    before = {str(p): p.read_bytes() for p in case.directory.rglob("*") if p.is_file()}
    child = pexpect.spawn(sys.executable, ["-m", "installer", "deploy", "--answers",
                                           str(case.answers), "--skip", SKIP],
                          cwd=str(tmp_path), env=cli_env(case.env), encoding="utf-8",
                          timeout=180)
    child.expect(r"Proceed\? \[y/N\] ")
    shown = child.before
    child.sendline("n")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 130
    assert f"write {case.directory}/customer.env" in shown
    assert f"then run `docker compose up -d` in {case.directory}" in shown
    assert "not confirmed: nothing was changed" in child.before
    assert {str(p): p.read_bytes() for p in case.directory.rglob("*") if p.is_file()} == before
    assert not case.containers(docker_engine)


def test_status_sees_a_restart_loop_even_while_the_container_is_briefly_running() -> None:
    """Between two crashes a looping container is "running": status must still call it
    failing (a race the end-to-end test once lost), judged by the engine's clock."""
    from installer.deploy.compose.health import CRASH_RESTARTS, ContainerView, assess

    def view(restarts: int, started: str) -> ContainerView:
        return ContainerView(id="1", name="p-api-1", service="api", state="running", health="",
                             exit_code=1, restarts=restarts, started_at=started,
                             restart_policy="always", image="i", image_id="sha")

    class Engine:
        def info(self) -> dict[str, str]:
            return {"SystemTime": "2026-11-26T07:30:05.000000001Z"}

    from installer.deploy.compose.health import _settled_by_engine_clock

    settled = _settled_by_engine_clock(Engine())
    just_restarted = view(CRASH_RESTARTS, "2026-11-26T07:30:04.5Z")
    verdict = assess([just_restarted], {"api": 1}, settled)
    assert not verdict.healthy
    assert "keeps failing" in verdict.failing[0][1]
    recovered = view(CRASH_RESTARTS, "2026-11-26T07:29:00Z")
    assert assess([recovered], {"api": 1}, settled).healthy
    fresh = view(0, "2026-11-26T07:30:04Z")
    assert assess([fresh], {"api": 1}, settled).healthy
