"""docker.* and host.ports against the real Docker engine and real Compose binaries."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import docker
import docker.errors

from installer.vendor import services_publishing
from tests.services.dockerd import build_image
from tests.support.cli import cli_env, host_ports_lock, run_cli
from tests.support.vendor_compose import NEW_RELEASE, copy_release


def checks(result: subprocess.CompletedProcess[str]) -> dict[str, dict]:
    return {c["id"]: c for c in json.loads(result.stdout)["checks"]}


def test_engine_up_reports_the_real_version(docker_engine: docker.DockerClient) -> None:
    real = docker_engine.version()["Version"]
    result = checks(run_cli("preflight", "--only", "docker.version", "--format", "json"))
    assert result["docker.engine"]["status"] == "pass"
    assert real in result["docker.engine"]["observed"]
    assert result["docker.version"]["status"] == "pass"
    assert result["docker.version"]["observed"] == real


def test_unreachable_engine_fails_with_a_fix_and_version_is_skipped(tmp_path: Path) -> None:
    result = run_cli("preflight", "--only", "docker", "--format", "json",
                     env={"DOCKER_HOST": f"unix://{tmp_path}/no-such.sock"})
    found = checks(result)
    assert found["docker.engine"]["status"] == "fail"
    assert "systemctl" in found["docker.engine"]["remediation"]
    assert found["docker.version"]["status"] == "skip"
    assert "docker.engine" in found["docker.version"]["message"]
    assert result.returncode == 3


def test_socket_permission_denied_names_the_docker_group(tmp_path: Path) -> None:
    """The kernel refuses the socket (as for a user outside the docker group).

    Tests run as root, which bypasses file permissions; dropping CAP_DAC_OVERRIDE from the
    CLI's process brings the ordinary permission check back, against a socket of mode 000.
    """
    socket_path = tmp_path / "docker.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(socket_path))
    listener.listen()
    socket_path.chmod(0)
    try:
        result = subprocess.run(
            ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--",
             sys.executable, "-m", "installer", "preflight", "--only", "docker.engine",
             "--format", "json"],
            env=cli_env({"DOCKER_HOST": f"unix://{socket_path}"}), cwd=tmp_path,
            capture_output=True, text=True, check=False,
        )
    finally:
        listener.close()
    engine = checks(result)["docker.engine"]
    assert engine["status"] == "fail", result.stderr
    assert "permission denied" in engine["message"]
    assert "usermod -aG docker" in engine["remediation"]


def test_compose_prefers_the_v2_plugin_and_falls_back_to_v1(compose_v2: Path,
                                                            tmp_path: Path) -> None:
    with_plugin = checks(run_cli("preflight", "--only", "docker.compose", "--format", "json"))
    assert with_plugin["docker.compose"]["status"] == "pass"
    assert "docker compose" in with_plugin["docker.compose"]["message"]
    v2 = subprocess.run(["docker", "compose", "version", "--short"], capture_output=True,
                        text=True, check=True).stdout.strip().lstrip("v")
    assert v2 in with_plugin["docker.compose"]["observed"]

    # A HOME without the plugin: only Debian's docker-compose 1.29 is left.
    home = tmp_path / "home"
    home.mkdir()
    v1_only = checks(run_cli("preflight", "--only", "docker.compose", "--format", "json",
                             env={"HOME": str(home)}))
    assert v1_only["docker.compose"]["status"] == "pass"
    assert "docker-compose` v1.29" in v1_only["docker.compose"]["message"]


def test_no_compose_at_all_fails_with_install_advice(tmp_path: Path) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in ("sh",):
        (bindir / tool).symlink_to(shutil.which(tool))
    home = tmp_path / "home"
    home.mkdir()
    found = checks(run_cli("preflight", "--only", "docker.compose", "--format", "json",
                           env={"PATH": str(bindir), "HOME": str(home)}))
    assert found["docker.compose"]["status"] == "fail"
    assert "apt-get install" in found["docker.compose"]["remediation"]


def _serve_443(client: docker.DockerClient, name: str, labels: dict[str, str]):
    image = build_image(client, "carto-installer-test/listener:1")
    try:
        return client.containers.run(image, ["httpd", "-f", "-p", "8443"], name=name,
                                     detach=True, ports={"8443/tcp": 443}, labels=labels)
    except docker.errors.APIError:
        # Created but not started (e.g. 443 taken by a process outside the lock): clean up.
        for leftover in client.containers.list(all=True, filters={"name": name}):
            leftover.remove(force=True)
        raise


def _remove(container) -> None:
    container.remove(force=True)


def test_port_443_held_by_a_foreign_container_names_it(docker_engine: docker.DockerClient) -> None:
    with host_ports_lock():
        name = f"carto-test-foreign-{uuid.uuid4().hex[:8]}"
        container = _serve_443(docker_engine, name, {})
        try:
            result = run_cli("preflight", "--only", "host.ports", "--format", "json")
        finally:
            _remove(container)
    check = checks(result)["host.ports"]
    assert check["status"] == "fail"
    assert name in check["message"]
    assert f"docker stop {name}" in check["remediation"]


def _answers_for(tmp_path: Path, directory: Path) -> Path:
    answers = tmp_path / "answers.yaml"
    answers.write_text(f"version: 1\nplatform: compose\ncompose: {{directory: {directory}}}\n")
    return answers


def _ports_check(docker_engine: docker.DockerClient, answers: Path, name: str,
                 labels: dict[str, str]) -> dict:
    with host_ports_lock():
        container = _serve_443(docker_engine, name, labels)
        try:
            result = run_cli("preflight", "--answers", str(answers), "--only", "host.ports",
                             "--format", "json")
        finally:
            _remove(container)
    return checks(result)["host.ports"]


def test_port_443_held_by_the_vendors_router_passes(docker_engine: docker.DockerClient,
                                                    tmp_path: Path) -> None:
    """The router is whatever service the real docker-compose.yml publishes 443 with."""
    directory = copy_release(NEW_RELEASE, tmp_path / "carto")
    router = services_publishing((directory / "docker-compose.yml").read_text(), 443)
    assert router == ["router-http"]  # what the vendor calls it today; derived, not assumed
    check = _ports_check(docker_engine, _answers_for(tmp_path, directory),
                         f"carto-test-router-{uuid.uuid4().hex[:8]}",
                         {"com.docker.compose.service": router[0],
                          "com.docker.compose.project.working_dir": str(directory)})
    assert check["status"] == "pass", check
    assert "CARTO's own router" in check["message"]


def test_a_service_the_compose_file_does_not_publish_443_with_is_not_the_router(
        docker_engine: docker.DockerClient, tmp_path: Path) -> None:
    """Our old stand-in's name, `router`, is not the vendor's: such a container in the same
    project folder is something else holding 443."""
    directory = copy_release(NEW_RELEASE, tmp_path / "carto")
    name = f"carto-test-not-router-{uuid.uuid4().hex[:8]}"
    check = _ports_check(docker_engine, _answers_for(tmp_path, directory), name,
                         {"com.docker.compose.service": "router",
                          "com.docker.compose.project.working_dir": str(directory)})
    assert check["status"] == "fail"
    assert name in check["message"]


def test_another_projects_router_on_443_is_not_ours(docker_engine: docker.DockerClient,
                                                    tmp_path: Path) -> None:
    directory = copy_release(NEW_RELEASE, tmp_path / "carto")
    name = f"carto-test-other-router-{uuid.uuid4().hex[:8]}"
    check = _ports_check(docker_engine, _answers_for(tmp_path, directory), name,
                         {"com.docker.compose.service": "router-http",
                          "com.docker.compose.project.working_dir": "/srv/other-app"})
    assert check["status"] == "fail"
    assert name in check["message"]
