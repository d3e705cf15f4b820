"""`carto-installer upgrade` over SSH once: the release folder and the new package are read
on the workstation, the deployment directory is only reached over SFTP and exec channels."""

from __future__ import annotations

import datetime
import hashlib
import subprocess
import sys
from pathlib import Path

import docker
import yaml

from installer.answers import load_answers
from installer.operate.backup import BackupRecord, record_backup
from installer.operate.installation import Installation
from installer.redact import Redactor
from installer.target import LocalTarget
from tests.services.netdb_namespaces import namespaced
from tests.services.sshd import SSHCredentials, SSHServer
from tests.support.cli import cli_env, host_ports_lock
from tests.support.compose_deployment import (
    compose_down,
    make_release,
    served_fingerprint,
    write_answers,
)
from tests.support.package import make_package
from tests.support.vendor_compose import NEW_RELEASE, NEW_VERSION, OLD_RELEASE, OLD_VERSION

DOMAIN = "carto-upgrade.example.com"
ENV = {"TEST_PG_ADMIN_PASSWORD": "remote-adm1n $x", "TEST_PG_PASSWORD": "remote-us3r 'q'"}
SKIP = "host.cpu,egress"


def test_upgrade_over_ssh(vm: SSHServer, target_credentials: SSHCredentials, images: None,
                          docker_engine: docker.DockerClient, remote_folder: Path,
                          tmp_path: Path) -> None:
    package = make_package(tmp_path / "pkg-old", version="2026.4.1")
    directory = make_release(remote_folder / "carto", OLD_RELEASE)
    answers = write_answers(
        tmp_path / "answers.yaml", package=package.path, directory=directory, domain=DOMAIN,
        extra={"target": {"host": vm.host, "port": vm.port, "user": "root",
                          "identity_file": str(target_credentials.ed25519_key),
                          "known_hosts": str(tmp_path / "known_hosts")}})
    outputs: list[str] = []

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        argv = namespaced([sys.executable, "-m", "installer", *args, "--answers", str(answers)],
                          {DOMAIN: "127.0.0.1"}, tmp_path / "workstation-names")
        result = subprocess.run(argv, env=cli_env(ENV), cwd=tmp_path, capture_output=True,
                                text=True, timeout=600, check=False, stdin=subprocess.DEVNULL)
        outputs.extend([result.stdout, result.stderr])
        return result

    with host_ports_lock():
        try:
            deployed = cli("deploy", "--yes", "--skip", SKIP, "--accept-host-key",
                           vm.host_key_fingerprint())
            assert deployed.returncode == 0, deployed.stdout + deployed.stderr
            served = served_fingerprint(DOMAIN)
            # The record `backup` keeps in the deployment directory (read over SFTP).
            archive = tmp_path / "backup.tar"
            archive.write_bytes(b"backup")
            record_backup(Installation(load_answers(answers, env=ENV), LocalTarget(),
                                       Redactor()),
                          BackupRecord(datetime.datetime.now(datetime.UTC), str(archive),
                                       hashlib.sha256(b"backup").hexdigest(), True))
            new_package = make_package(tmp_path / "pkg-new", version="2026.7.1",
                                       client_id=package.client_id)
            release = make_release(tmp_path / "release-new", NEW_RELEASE)
            result = cli("upgrade", "--release", str(release), "--package",
                         str(new_package.path), "--yes", "--skip", SKIP)
            out = result.stdout
            assert result.returncode == 0, out + result.stderr
            assert f"root@127.0.0.1:{vm.port}" in out
            assert f"release: {OLD_VERSION} -> {NEW_VERSION}" in out
            assert "ok   upgrade.backup" in out
            assert f"upgraded to {NEW_VERSION}" in out
            assert (directory / "VERSION").read_text().strip() == NEW_VERSION
            previous = directory / ".carto-installer-previous"
            assert previous.stat().st_mode & 0o777 == 0o700
            assert (previous / "files" / "VERSION").read_text().strip() == OLD_VERSION
            assert served_fingerprint(DOMAIN) == served  # the same certificate, served again
            assert yaml.safe_load(answers.read_text())["package"] == str(new_package.path)
            status = cli("status")
            assert status.returncode == 0, status.stdout + status.stderr
            assert f"release: {NEW_VERSION}, package: 2026.7.1" in status.stdout
            log = (tmp_path / "carto-installer.log").read_text()
            assert f"run (root@127.0.0.1:{vm.port}): docker compose up -d" in log
            for secret in [*ENV.values(), *package.secrets, *new_package.secrets]:
                for text in [log, *outputs]:
                    assert secret not in text, f"a secret leaked ({len(secret)} chars)"
        finally:
            compose_down(directory)
