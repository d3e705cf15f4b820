"""backup, restore, support-bundle, logs and uninstall on the real Docker engine: the fixture
deployment plus a bundled PostgreSQL 15 container (tests/support/pg_image.py) and a service
whose logs print secrets, deployed once for the module by the installer itself."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
import yaml

from tests.support.cli import cli_env, host_ports_lock, run_cli
from tests.support.compose_deployment import (
    build_images,
    compose_down,
    make_deployment,
    write_answers,
)
from tests.support.package import GeneratedPackage, make_package

DOMAIN = "carto-ops.example.com"
ADMIN_PASSWORD = "pg-Admin-planted-7Qx$ecret"
USER_PASSWORD = "ws-user-planted-K2v9pw"
PASSPHRASE = "backup passphrase planted 4711"
BEARER = "planted-bearer-token-Zk38sQ0aLm"
URL_PASSWORD = "url-planted-pw-9Rt2"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJwbGFudGVkLWp3dCJ9.c2lnbmF0dXJlLXBsYW50ZWQtand0"
LOG_SECRET = "log-planted-secret-Hh71"
SKIP = "host.cpu,egress"
ROWS = 1500


class Deployed:
    def __init__(self, tmp: Path, package: GeneratedPackage, directory: Path,
                 answers: Path) -> None:
        self.tmp, self.package, self.directory, self.answers = tmp, package, directory, answers
        self.env = {"TEST_PG_ADMIN_PASSWORD": ADMIN_PASSWORD, "TEST_PG_PASSWORD": USER_PASSWORD,
                    "BACKUP_PASSPHRASE": PASSPHRASE}

    def cli(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return run_cli(*args, "--answers", str(self.answers), cwd=self.tmp, env=self.env,
                       timeout=timeout)

    def services(self) -> list[str]:
        data = yaml.safe_load((self.directory / "docker-compose.yml").read_text())
        return list(data["services"])

    def psql(self, client: docker.DockerClient, sql: str) -> str:
        container = client.containers.list(filters={
            "label": ["com.docker.compose.project=carto",
                      "com.docker.compose.service=workspace-postgres"]})[0]
        code, out = container.exec_run(["psql", "-U", "postgres", "-d", "workspace", "-At",
                                        "-v", "ON_ERROR_STOP=1", "-c", sql])
        assert code == 0, out.decode()
        return str(out.decode().strip())


def add_services(directory: Path, postgres_image: str) -> None:
    """The vendor's bundled database service, and one whose log prints secrets."""
    path = directory / "docker-compose.yml"
    data = yaml.safe_load(path.read_text())
    data["services"]["workspace-postgres"] = {
        "image": postgres_image, "scale": "${LOCAL_POSTGRES_SCALE:-1}", "env_file": [".env"],
        "user": "65534:65534", "init": True, "restart": "unless-stopped",
        "healthcheck": {"test": ["CMD", "psql", "-U", "postgres", "-d", "workspace", "-c",
                                 "SELECT 1"], "interval": "1s", "timeout": "3s", "retries": 60}}
    data["services"]["notifier"] = {
        "image": data["services"]["valkey"]["image"], "env_file": [".env"], "init": True,
        "restart": "unless-stopped",
        "command": ["sh", "-c",
                    "echo connecting with password=$$POSTGRES_ADMIN_PASSWORD; "
                    f"echo 'Authorization: Bearer {BEARER}'; "
                    f"echo 'calling https://carto:{URL_PASSWORD}@db.internal/x'; "
                    f"echo 'session {JWT}'; exec sleep 2147483647"]}
    path.write_text(yaml.safe_dump(data, sort_keys=False))


@pytest.fixture(scope="module")
def deployed(docker_engine: docker.DockerClient, compose_v2: Path, postgres_image: str,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployed]:
    build_images(docker_engine)
    tmp = tmp_path_factory.mktemp("ops")
    package = make_package(tmp / "pkg")
    directory = make_deployment(tmp / "carto")
    add_services(directory, postgres_image)
    answers = write_answers(tmp / "answers.yaml", package=package.path, directory=directory,
                            domain=DOMAIN)
    case = Deployed(tmp, package, directory, answers)
    with host_ports_lock():
        try:
            result = case.cli("deploy", "--yes", "--skip", SKIP)
            assert result.returncode == 0, result.stdout + result.stderr
            yield case
        finally:
            compose_down(directory)


def table_checksum(case: Deployed, client: docker.DockerClient) -> str:
    return case.psql(client, "SELECT count(*) || ':' || md5(string_agg(t::text, ',' ORDER BY id))"
                     " FROM accounts t")


def members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path, "r:*") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}  # type: ignore[union-attr]


def test_backup_then_restore_configuration_and_bundled_database(
        deployed: Deployed, docker_engine: docker.DockerClient) -> None:
    case = deployed
    case.psql(docker_engine, "DROP TABLE IF EXISTS accounts; CREATE TABLE accounts (id int "
              "PRIMARY KEY, name text, created timestamptz DEFAULT now()); INSERT INTO accounts "
              f"SELECT g, 'user ' || g FROM generate_series(1, {ROWS}) g")
    before = table_checksum(case, docker_engine)
    archive = case.tmp / "backup.tar.enc"
    result = case.cli("backup", "--output", str(archive), "--passphrase-env", "BACKUP_PASSPHRASE")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "==> dump database" in result.stdout and "bundled PostgreSQL container" in result.stdout
    assert archive.stat().st_mode & 0o777 == 0o600
    assert PASSPHRASE not in result.stdout + result.stderr
    assert (case.tmp / "carto-installer.log").read_text().count(PASSPHRASE) == 0
    raw = archive.read_bytes()
    assert ADMIN_PASSWORD.encode() not in raw and b"customer.env" not in raw  # encrypted
    # The backup is recorded for upgrade's gate: time, path, sha256, no secrets, 0600.
    record_file = case.directory / ".carto-installer-backups.json"
    record = json.loads(record_file.read_text())["backups"][-1]
    assert record["archive"] == str(archive)
    assert record["sha256"] == hashlib.sha256(raw).hexdigest() and record["database"] is True
    assert record_file.stat().st_mode & 0o777 == 0o600

    # Damage: the configuration changed and the table dropped.
    original_env = (case.directory / "customer.env").read_bytes()
    (case.directory / "customer.env").write_bytes(original_env + b"BROKEN=1\n")
    case.psql(docker_engine, "DROP TABLE accounts")

    # Without --yes and without a terminal, a database restore is refused (nothing written).
    refused = case.cli("restore", "--from", str(archive), "--database",
                       "--passphrase-env", "BACKUP_PASSPHRASE")
    assert refused.returncode == 2 and "--yes" in refused.stderr
    wrong = run_cli("restore", "--answers", str(case.answers), "--from", str(archive),
                    "--passphrase-env", "BACKUP_PASSPHRASE", cwd=case.tmp,
                    env={**case.env, "BACKUP_PASSPHRASE": "not-the-right-one"})
    assert wrong.returncode == 2 and "wrong passphrase" in wrong.stderr
    assert b"BROKEN=1" in (case.directory / "customer.env").read_bytes()

    result = case.cli("restore", "--from", str(archive), "--database", "--yes",
                      "--passphrase-env", "BACKUP_PASSPHRASE")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (case.directory / "customer.env").read_bytes() == original_env
    assert (case.directory / "customer.env").stat().st_mode & 0o777 == 0o600
    kept = sorted(case.directory.glob(".restore-kept-*"))
    assert kept and b"BROKEN=1" in (kept[-1] / "customer.env").read_bytes()
    assert table_checksum(case, docker_engine) == before
    assert before.startswith(f"{ROWS}:")


def test_backup_without_database_holds_the_configuration(deployed: Deployed) -> None:
    archive = deployed.tmp / "config-only.tar"
    result = deployed.cli("backup", "--output", str(archive), "--no-database")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "NOT encrypted" in result.stdout
    content = members(archive)
    manifest = json.loads(content.pop("MANIFEST.json"))
    assert {m["path"] for m in manifest["members"]} == set(content)
    for member in manifest["members"]:
        assert hashlib.sha256(content[member["path"]]).hexdigest() == member["sha256"]
    assert {"answers.yaml", "package/customer.env", "package/key.json", "deployment/.env",
            "deployment/customer.env", "deployment/certs/key.json",
            f"deployment/certs/{DOMAIN}.crt", f"deployment/certs/{DOMAIN}.key"} <= set(content)
    assert not any(name.startswith("database/") for name in content)
    answers = content["answers.yaml"].decode()
    assert ADMIN_PASSWORD not in answers and "admin_password_env: TEST_PG_ADMIN_PASSWORD" in answers


def test_support_bundle_holds_no_secret(deployed: Deployed) -> None:
    case = deployed
    with open(case.tmp / "carto-installer.log", "a") as log:  # as if something had leaked
        log.write(f"2026-01-01 DEBUG x: retrying with password={LOG_SECRET}\n")
    bundle = case.tmp / "support.tar.gz"
    result = case.cli("support-bundle", "--output", str(bundle), "--tail", "50")
    assert result.returncode == 0, result.stdout + result.stderr
    assert bundle.stat().st_mode & 0o777 == 0o600
    content = members(bundle)
    text = b"\n".join(content.values()).decode("utf-8", "replace")
    key_lines = [line for line in (case.directory / "certs" / f"{DOMAIN}.key").read_text()
                 .splitlines() if "-----" not in line]
    planted = [ADMIN_PASSWORD, USER_PASSWORD, BEARER, URL_PASSWORD, JWT, LOG_SECRET,
               *case.package.secrets, *key_lines]
    leaked = [secret for secret in planted if secret in text]
    assert leaked == []
    assert "PRIVATE KEY-----\n" not in text
    # What support needs is there: every service's log tail, keys of the env files, certs.
    manifest = content["MANIFEST.txt"].decode()
    for service in case.services():  # a log tail, or the reason there is none
        assert any(name.startswith(f"services/{service}/") for name in content) or \
            f"services/{service}: no container" in manifest, service
    assert "services/valkey: no container" in manifest  # the answers scale it to 0
    notifier = next(v for k, v in content.items() if k.startswith("services/notifier/")).decode()
    assert "Authorization: Bearer ********" in notifier and "password=********" in notifier
    env = content["configuration/customer.env"].decode()
    assert "POSTGRES_ADMIN_PASSWORD=********" in env and "SELFHOSTED_DOMAIN=" + DOMAIN in env
    assert "CUSTOM_UNKNOWN_SETTING=keep me" in env
    certs = content["certificates.txt"].decode()
    assert f"DNS:{DOMAIN}" in certs or DOMAIN in certs and "valid:" in certs
    assert "preflight.json" in manifest and "not collected:" in manifest
    assert json.loads(content["preflight.json"])["platform"] == "compose"
    assert "carto-installer" in content["installer-version.txt"].decode()


def test_logs_by_the_vendors_service_names(deployed: Deployed) -> None:
    case = deployed
    result = case.cli("logs", "workspace-api", "--tail", "5")
    assert result.returncode == 0, result.stderr
    assert f"workspace-api: ready for {DOMAIN}" in result.stdout
    everything = case.cli("logs", "--tail", "20")
    assert "notifier" in everything.stdout and "Bearer ********" in everything.stdout
    assert BEARER not in everything.stdout and ADMIN_PASSWORD not in everything.stdout
    unknown = case.cli("logs", "no-such-service")
    assert unknown.returncode == 2
    for service in case.services():
        assert service in unknown.stderr
    # --follow runs until Ctrl-C, then ends quietly with 130 (interrupted).
    process = subprocess.Popen(
        [sys.executable, "-m", "installer", "logs", "notifier", "--follow", "--tail", "2",
         "--answers", str(case.answers)], cwd=case.tmp, env=cli_env(case.env),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None
    first = process.stdout.readline()
    assert first.strip(), "no log line before the interrupt"
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 130, err
    assert "Traceback" not in err


def test_uninstall_keeps_data_unless_purged_with_the_domain(
        deployed: Deployed, docker_engine: docker.DockerClient) -> None:
    case = deployed

    def project_volumes() -> list[str]:
        return [v.name for v in docker_engine.volumes.list(
            filters={"label": "com.docker.compose.project=carto"})]

    assert project_volumes()
    no_terminal = case.cli("uninstall")
    assert no_terminal.returncode == 2 and "--yes" in no_terminal.stderr
    purge_with_yes = case.cli("uninstall", "--purge-data", "--yes")
    assert purge_with_yes.returncode == 2 and "--confirm-domain" in purge_with_yes.stderr
    assert docker_engine.containers.list(filters={"label": "com.docker.compose.project=carto"})

    result = case.cli("uninstall", "--yes")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "remove  container" in result.stdout and "keep    volume carto_www" in result.stdout
    assert not docker_engine.containers.list(
        all=True, filters={"label": "com.docker.compose.project=carto"})
    assert "carto_www" in project_volumes()
    assert (case.directory / "customer.env").exists()

    wrong = case.cli("uninstall", "--purge-data", "--confirm-domain", "other.example.com")
    assert wrong.returncode == 2 and "carto_www" in wrong.stdout  # listed, then refused
    assert "carto_www" in project_volumes()
    purged = case.cli("uninstall", "--purge-data", "--confirm-domain", DOMAIN)
    assert purged.returncode == 0, purged.stdout + purged.stderr
    assert "DESTROY volume carto_www" in purged.stdout
    deadline = time.monotonic() + 30
    while project_volumes() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert project_volumes() == []
    assert os.path.exists(case.directory / "docker-compose.yml")
