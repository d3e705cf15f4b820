"""The Compose deployment driven over SSH, end to end, on the real Docker engine.

The sshd poses as an Ubuntu 22.04 machine; its Docker engine is this machine's (the remote
`docker` talks to it), and the deployment directory is a path on the "remote" filesystem, which
the installer only reaches over SFTP and exec channels. The workstation side is the CLI run
from this checkout.
"""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import docker
import pytest
import yaml

from installer.deploy.compose.images import load_images_archive
from installer.errors import TargetError
from installer.ssh import SSHTarget
from tests.services.dockerd import build_image
from tests.services.netdb_namespaces import namespaced
from tests.services.sshd import SSHCredentials, SSHServer
from tests.services.sshd_target_user import SSHServers
from tests.support.cli import cli_env, host_ports_lock
from tests.support.compose_deployment import (
    APP_IMAGE,
    build_images,
    compose_down,
    make_deployment,
    write_answers,
)
from tests.support.package import make_package
from tests.support.ssh_target import (
    SSH_USER,
    kill_ssh_sessions,
    target_settings,
    trust,
)

DOMAIN = "carto-remote.example.com"
ADMIN_PASSWORD = 'remote-Admin$ecret "q" #1 \\ ${HOME}'
USER_PASSWORD = "remote-user'pw $PATH ünï"
# The test machine has 2 CPUs and no Internet (the target resolves no name: see `vm`).
SKIP = "host.cpu,egress"


def https_from(sock: socket.socket, cert_pem: bytes) -> tuple[int, bytes]:
    """GET / with SNI and Host = DOMAIN over `sock`, trusting exactly `cert_pem`."""
    context = ssl.create_default_context(cadata=cert_pem.decode())
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    with context.wrap_socket(sock, server_hostname=DOMAIN) as tls:
        tls.sendall(f"GET /service-env.txt HTTP/1.0\r\nHost: {DOMAIN}\r\n\r\n".encode())
        data = b""
        while chunk := tls.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def test_remote_deploy_end_to_end(vm: SSHServer, target_credentials: SSHCredentials,
                                  docker_engine: docker.DockerClient, compose_v2: Path,
                                  remote_folder: Path, tmp_path: Path) -> None:
    # Images under tags of this test alone (the deployment's VERSION picks them), so the
    # archive load below never untags what a concurrent test session uses.
    built = build_images(docker_engine)
    version = f"2026.4.{90 + os.getpid() % 9}"
    tags = {}
    for shared, image_id in built.items():
        mine = shared.rsplit(":", 1)[0] + ":" + version
        docker_engine.images.get(image_id).tag(mine)
        tags[shared] = mine
    package = make_package(tmp_path / "pkg")
    directory = make_deployment(remote_folder / "carto-remote")
    (directory / "VERSION").write_text(version + "\n")
    known = tmp_path / "known_hosts"
    answers = write_answers(
        tmp_path / "answers.yaml", package=package.path, directory=directory, domain=DOMAIN,
        extra={"target": {"host": vm.host, "port": vm.port, "user": "root",
                          "identity_file": str(target_credentials.ed25519_key),
                          "known_hosts": str(known)}})
    archive = tmp_path / "carto-images.tar"
    env = {"TEST_PG_ADMIN_PASSWORD": ADMIN_PASSWORD, "TEST_PG_PASSWORD": USER_PASSWORD}
    outputs: list[str] = []

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        # The workstation resolves the domain (net.dns) with a private /etc/hosts: no DNS
        # query leaves this machine.
        argv = namespaced([sys.executable, "-m", "installer", *args, "--answers", str(answers)],
                          {DOMAIN: "127.0.0.1"}, tmp_path / "workstation-names")
        result = subprocess.run(argv, env=cli_env(env), cwd=tmp_path, capture_output=True,
                                text=True, timeout=600, check=False, stdin=subprocess.DEVNULL)
        outputs.extend([result.stdout, result.stderr])
        return result

    with host_ports_lock():
        try:
            # The images come from an archive, as on a machine without registry access.
            subprocess.run(["docker", "save", "-o", str(archive), *tags.values()],
                           check=True, capture_output=True, timeout=120)
            for mine in tags.values():
                docker_engine.images.remove(mine)  # only untags: the shared tags stay
            data = yaml.safe_load(answers.read_text())
            data["compose"]["images_archive"] = str(archive)
            answers.write_text(yaml.safe_dump(data))

            unknown = cli("deploy", "--yes", "--skip", SKIP)
            assert unknown.returncode == 2, unknown.stdout + unknown.stderr
            assert f"--accept-host-key {vm.host_key_fingerprint()}" in unknown.stderr
            assert not (directory / ".env").exists()

            result = cli("deploy", "--yes", "--skip", SKIP, "--accept-host-key",
                         vm.host_key_fingerprint())
            out = result.stdout
            assert result.returncode == 0, out + result.stderr
            assert f"root@127.0.0.1:{vm.port}" in out
            assert f"loaded {tags[APP_IMAGE]}" in out
            # Over SSH the archive travels as a resumable upload with progress, then loads.
            assert f"uploading {archive.name}: 100%" in out
            assert "router-http: running" in out and "workspace-migrations: exited (0)" in out
            assert "certificate verified" in out
            assert f"CARTO answers at https://{DOMAIN}" in out

            # The files reached the remote directory whole, private, written by the target.
            for name in (".env", "customer.env"):
                path = directory / name
                assert oct(path.stat().st_mode & 0o777) == "0o600", name
            # Read by the containers as their own users: the group of exactly those.
            for name, gid in ((f"certs/{DOMAIN}.key", 101), ("certs/key.json", 1000)):
                info = (directory / name).stat()
                assert (oct(info.st_mode & 0o777), info.st_gid) == ("0o640", gid), name
            assert not [p.name for p in directory.rglob("*") if p.name.endswith(".tmp")]
            cert = (directory / "certs" / f"{DOMAIN}.crt").read_bytes()

            # HTTPS from the workstation, and from the target itself (through the SSH
            # connection): the router serves the certificate and the values arrived intact.
            with socket.create_connection(("127.0.0.1", 443), timeout=10) as raw:
                status, body = https_from(raw, cert)
            assert status == 200
            lines = body.decode().splitlines()
            assert f"POSTGRES_ADMIN_PASSWORD={ADMIN_PASSWORD}" in lines
            assert f"WORKSPACE_POSTGRES_PASSWORD={USER_PASSWORD}" in lines
            settings = target_settings(vm, known, user="root",
                                       identity_file=target_credentials.ed25519_key)
            with SSHTarget.connect(settings, accept_host_key=None, confirm_host_key=None,
                                   redactor=None) as target:
                status, _ = https_from(target.open_connection("127.0.0.1", 443, 10), cert)
            assert status == 200

            status_result = cli("status")
            assert status_result.returncode == 0, status_result.stdout + status_result.stderr
            assert "healthy" in status_result.stdout

            # A re-run over SSH changes nothing and restarts nothing.
            mtimes = {p: p.stat().st_mtime_ns for p in directory.rglob("*") if p.is_file()}
            again = cli("deploy", "--yes", "--skip", SKIP)
            assert again.returncode == 0, again.stdout + again.stderr
            assert "nothing restarted" in again.stdout and "(nothing changed)" in again.stdout
            assert {p: p.stat().st_mtime_ns for p in directory.rglob("*") if p.is_file()} \
                == mtimes

            log = (tmp_path / "carto-installer.log").read_text()
            assert f"run (root@127.0.0.1:{vm.port}): docker compose up -d" in log
            secrets_ = [ADMIN_PASSWORD, USER_PASSWORD, *package.secrets,
                        (directory / "certs" / f"{DOMAIN}.key").read_text().splitlines()[1]]
            for secret in secrets_:
                for text in [log, *outputs]:
                    assert secret not in text, f"a secret leaked ({len(secret)} chars)"
        finally:
            compose_down(directory)
            for mine in tags.values():
                with contextlib.suppress(docker.errors.ImageNotFound):
                    docker_engine.images.remove(mine)


def test_remote_deploy_as_a_sudo_user(vm: SSHServer, target_credentials: SSHCredentials,
                                      docker_engine: docker.DockerClient, compose_v2: Path,
                                      remote_folder: Path, tmp_path: Path) -> None:
    """The usual VM: log in as an ordinary user who may not use Docker and cannot write the
    root-owned deployment directory; target.sudo with its password does both."""
    build_images(docker_engine)
    package = make_package(tmp_path / "pkg")
    directory = make_deployment(remote_folder / "carto-sudo")  # root-owned, 0755
    known = trust(tmp_path / "known_hosts", vm)
    answers = write_answers(
        tmp_path / "answers.yaml", package=package.path, directory=directory, domain=DOMAIN,
        extra={"target": {"host": vm.host, "port": vm.port, "user": SSH_USER, "sudo": True,
                          "password_env": "SSH_PASSWORD",
                          "identity_file": str(target_credentials.ed25519_key),
                          "known_hosts": str(known)}})
    # Without `${`: as this user, the target may only offer docker-compose v1 (the test
    # machine's v2 plugin is root's), whose .env parser cannot hold it.
    env = {"TEST_PG_ADMIN_PASSWORD": "sudo-Admin 'q' #1", "TEST_PG_PASSWORD": "sudo user ünï",
           "SSH_PASSWORD": target_credentials.password}
    argv = namespaced([sys.executable, "-m", "installer", "deploy", "--yes", "--skip", SKIP,
                       "--answers", str(answers)], {DOMAIN: "127.0.0.1"}, tmp_path / "names")
    with host_ports_lock():
        try:
            result = subprocess.run(argv, env=cli_env(env), cwd=tmp_path, capture_output=True,
                                    text=True, timeout=600, check=False,
                                    stdin=subprocess.DEVNULL)
            assert result.returncode == 0, result.stdout + result.stderr
            assert f"CARTO answers at https://{DOMAIN}" in result.stdout
            for name in (".env", "customer.env"):
                info = (directory / name).stat()
                assert (info.st_uid, oct(info.st_mode & 0o777)) == (0, "0o600"), name
            # The router's key: root's, readable by the router's group only (chgrp by sudo).
            info = (directory / f"certs/{DOMAIN}.key").stat()
            assert (info.st_uid, info.st_gid, oct(info.st_mode & 0o777)) == (0, 101, "0o640")
            log = (tmp_path / "carto-installer.log").read_text()
            assert f"run ({SSH_USER}@127.0.0.1:{vm.port}, sudo): docker" in log
            for text in (log, result.stdout, result.stderr):
                assert target_credentials.password not in text
                assert env["TEST_PG_ADMIN_PASSWORD"] not in text
        finally:
            for command in (["docker", "compose"], ["docker-compose"]):
                compose_down(directory, command)


def test_images_archive_upload_resumes_and_loads(ssh_servers: SSHServers,
                                                 target_credentials: SSHCredentials,
                                                 docker_engine: docker.DockerClient,
                                                 tmp_path: Path) -> None:
    # An image of this test alone, made big enough to be cut in the middle.
    tag = f"carto-installer-test/ssh-load:{os.getpid()}"
    build_image(docker_engine, tag, files={"/blob": os.urandom(12 * 2**20)}, cmd=["true"])
    archive = tmp_path / "images.tar"
    subprocess.run(["docker", "save", "-o", str(archive), tag], check=True,
                   capture_output=True, timeout=120)
    docker_engine.images.remove(tag, force=True)
    server = ssh_servers()
    known = trust(tmp_path / "known_hosts", server)
    # A user who needs sudo for Docker: `docker load` runs with the password on stdin.
    settings = target_settings(server, known, identity_file=target_credentials.ed25519_key,
                               sudo=True, password_env="PW",
                               env={"PW": target_credentials.password})
    cut = []

    def cut_once(done: int, total: int) -> None:
        if not cut and done >= total // 3:
            cut.append(done)
            kill_ssh_sessions(server)

    try:
        with SSHTarget.connect(settings, accept_host_key=None, confirm_host_key=None,
                               redactor=None) as target, pytest.raises(TargetError) as dropped:
            load_images_archive(target, str(archive), progress=cut_once, sudo=True)
        assert "resumes" in dropped.value.remediation
        with pytest.raises(docker.errors.ImageNotFound):
            docker_engine.images.get(tag)

        progress: list[int] = []
        with SSHTarget.connect(settings, accept_host_key=None, confirm_host_key=None,
                               redactor=None) as target:
            loaded = load_images_archive(target, str(archive), sudo=True,
                                         progress=lambda d, t: progress.append(d))
            home = target.run(["sh", "-c", 'echo "$HOME"']).stdout.strip()
        assert loaded == [tag]
        assert progress[0] > cut[0] // 2  # it went on from what had arrived
        image = docker_engine.images.get(tag)
        assert tag in image.tags
        # The upload was checked and then removed from the target.
        assert os.listdir(Path(home) / ".cache" / "carto-installer") == []
    finally:
        try:
            docker_engine.images.remove(tag, force=True)
        except docker.errors.ImageNotFound:
            pass
