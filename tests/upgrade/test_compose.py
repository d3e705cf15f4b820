"""`carto-installer upgrade` on Compose, end to end on the real Docker engine.

The installation is built from release folders shaped like the vendor's: the real releases'
files (VERSION, MIN_VERSION, install.sh, scripts/) from ../shared/vendor (2026.5.14, then
2026.7.16), with the fixture's docker-compose.yml and env.tpl (the vendor's service names,
tiny images tagged per release). The router is a real TLS server (socat with the certificate
mounted from certs/), so what it serves is checked by its SHA-256 fingerprint.
"""

from __future__ import annotations

import datetime
import hashlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from tests.services.tls_ca import TestCA
from tests.support.cli import host_ports_lock, run_cli
from tests.support.compose_deployment import (
    compose_down,
    make_release,
    served_fingerprint,
    write_answers,
)
from tests.support.package import GeneratedPackage, make_package
from tests.support.vendor_compose import (
    NEW_RELEASE,
    NEW_VERSION,
    OLD_RELEASE,
    OLD_VERSION,
    vendor_release,
)

DOMAIN = "carto-upgrade.example.com"
SKIP = "host.cpu,egress"  # 2 CPUs and no Internet on the test machine: accepted risks
ENV = {"TEST_PG_ADMIN_PASSWORD": "adm1n-Pw $x #y", "TEST_PG_PASSWORD": "us3r-Pw 'q'"}


@pytest.fixture()
def ports() -> Iterator[None]:
    with host_ports_lock():
        yield


def fingerprint_of(pem: bytes) -> str:
    return hashlib.sha256(x509.load_pem_x509_certificate(pem).public_bytes(Encoding.DER)
                          ).hexdigest()


class Installation:
    def __init__(self, tmp: Path, test_ca: TestCA, *, expires_in_days: int = 365) -> None:
        self.tmp = tmp
        self.test_ca = test_ca
        self.package: GeneratedPackage = make_package(tmp / "pkg-old", version="2026.4.1")
        self.directory = make_release(tmp / "carto", OLD_RELEASE)
        self.tls_dir = tmp / "tls"
        self.issue(expires_in_days)
        self.answers = write_answers(
            tmp / "answers.yaml", package=self.package.path, directory=self.directory,
            domain=DOMAIN, extra={"tls": {"certificate_file": str(self.tls_dir / "server.crt"),
                                          "key_file": str(self.tls_dir / "server.key")}})
        self.outputs: list[str] = []

    def issue(self, days: int) -> bytes:
        now = datetime.datetime.now(datetime.UTC)
        issued = self.test_ca.issue([DOMAIN], not_after=now + datetime.timedelta(days=days))
        files = issued.write(self.tls_dir)
        if files.fullchain != self.tls_dir / "server.crt":
            (self.tls_dir / "server.crt").write_bytes(files.fullchain.read_bytes())
        return (self.tls_dir / "server.crt").read_bytes()

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        result = run_cli(*args, "--answers", str(self.answers), cwd=self.tmp, env=ENV,
                         timeout=600)
        self.outputs += [result.stdout, result.stderr]
        return result

    def new_package(self, version: str = "2026.7.1") -> GeneratedPackage:
        package = make_package(self.tmp / f"pkg-{version}", version=version,
                               client_id=self.package.client_id)
        with (package.path / "customer.env").open("a") as handle:
            handle.write("NEW_PACKAGE_SETTING=from-the-new-package\n")
        return package

    def files(self) -> dict[str, bytes]:
        return {str(p.relative_to(self.directory)): p.read_bytes()
                for p in self.directory.rglob("*")
                if p.is_file() and ".carto-installer-previous" not in p.parts}

    def record_backup(self, hours_ago: float, database: bool = True) -> Path:
        """Record a backup as `carto-installer backup` does (its own record_backup): the
        fixture deployment has no database container to dump, so the archive is a stand-in."""
        from installer.answers import load_answers
        from installer.operate.backup import BackupRecord, record_backup
        from installer.operate.installation import Installation as Installed
        from installer.redact import Redactor
        from installer.target import LocalTarget

        archive = self.tmp / "carto-backup.tar"
        archive.write_bytes(b"a backup archive")
        when = datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=hours_ago)
        answers = load_answers(self.answers, env=ENV)
        record_backup(Installed(answers, LocalTarget(), Redactor()),
                      BackupRecord(when, str(archive),
                                   hashlib.sha256(archive.read_bytes()).hexdigest(), database))
        return archive

    def containers(self, client: docker.DockerClient) -> dict[str, tuple[str, str, str]]:
        found = client.containers.list(all=True,
                                       filters={"label": "com.docker.compose.project=carto"})
        return {c.attrs["Config"]["Labels"]["com.docker.compose.service"]:
                (c.id, c.attrs["State"]["StartedAt"], c.attrs["Config"]["Image"])
                for c in found}


def test_upgrade_to_the_next_release_with_a_new_package_then_renew_the_certificate(
        images: None, ports: None, tmp_path: Path, test_ca: TestCA,
        docker_engine: docker.DockerClient) -> None:
    inst = Installation(tmp_path, test_ca, expires_in_days=10)
    try:
        deployed = inst.cli("deploy", "--yes", "--skip", SKIP)
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr

        # status: versions, the certificate's expiry (warned under 30 days), the last deploy.
        status = inst.cli("status")
        assert status.returncode == 0, status.stdout + status.stderr
        assert f"release: {OLD_VERSION}, package: 2026.4.1" in status.stdout
        assert "warning: the certificate expires in" in status.stdout
        assert "last deploy: " in status.stdout

        # The admin edits a package setting by hand; the new package leaves it alone.
        customer = inst.directory / "customer.env"
        customer.write_text(customer.read_text().replace(
            "CARTO_AUTH0_CUSTOM_DOMAIN=auth.carto.com",
            "CARTO_AUTH0_CUSTOM_DOMAIN=auth.example.internal"))
        new_package = inst.new_package()
        new_release = make_release(tmp_path / "release-new", NEW_RELEASE)
        args = ("upgrade", "--release", str(new_release), "--package", str(new_package.path),
                "--yes", "--skip", SKIP)

        # No backup yet: the upgrade.backup gate stops it before anything changes.
        before = inst.files()
        refused = inst.cli(*args)
        assert refused.returncode == 3, refused.stdout + refused.stderr
        assert "upgrade.backup: no backup made by `carto-installer backup` is recorded" \
            in refused.stdout
        assert "--skip upgrade.backup" in refused.stderr
        assert inst.files() == before

        # A real `backup --no-database`: recorded, but the gate wants the database in it.
        no_db = inst.cli("backup", "--no-database", "--output", str(tmp_path / "conf.tar"))
        assert no_db.returncode == 0, no_db.stdout + no_db.stderr
        before = inst.files()
        without_db = inst.cli(*args)
        assert without_db.returncode == 3
        assert "holds no database dump" in without_db.stdout
        assert inst.files() == before

        archive = inst.record_backup(hours_ago=1)
        containers_before = inst.containers(docker_engine)
        upgraded = inst.cli(*args)
        out = upgraded.stdout
        assert upgraded.returncode == 0, out + upgraded.stderr
        assert f"release: {OLD_VERSION} -> {NEW_VERSION} (MIN_VERSION 2026.4.1), package " \
               "2026.7.1" in out
        assert "renamed variable: POSTGRES_PASSWORD -> POSTGRES_ADMIN_PASSWORD" in out
        assert f"upgrade.backup: backup {archive} made" in out
        assert "upgrade.package: package 2026.7.1 is not older" in out
        assert f"upgrade.version: release {OLD_VERSION} -> {NEW_VERSION}" in out
        assert "new from the package: NEW_PACKAGE_SETTING" in out
        assert "your edits kept (the package left them alone): CARTO_AUTH0_CUSTOM_DOMAIN" in out
        assert ("images already on the target: carto-installer-test/router:2026.7.16, "
                "carto-installer-test/app:2026.7.16") in out
        assert "workspace-migrations: exited (0)" in out
        assert f"upgraded to {NEW_VERSION}: CARTO answers at https://{DOMAIN}" in out

        assert (inst.directory / "VERSION").read_text().strip() == NEW_VERSION
        text = customer.read_text()
        assert "CARTO_AUTH0_CUSTOM_DOMAIN=auth.example.internal" in text
        assert "NEW_PACKAGE_SETTING=from-the-new-package" in text
        assert "CARTO_SELFHOSTED_CUSTOMER_PACKAGE_VERSION=2026.7.1" in text
        assert f"{inst.answers} now names the new package" in out
        assert yaml.safe_load(inst.answers.read_text())["package"] == str(new_package.path)
        after = inst.containers(docker_engine)
        for service in ("router-http", "workspace-api", "workspace-migrations"):
            assert after[service][2].endswith(f":{NEW_VERSION}"), after[service]
            assert after[service][0] != containers_before[service][0]
        # The previous release's files are kept, private, to be put back.
        previous = inst.directory / ".carto-installer-previous"
        assert previous.stat().st_mode & 0o777 == 0o700
        assert (previous / "files" / "VERSION").read_text().strip() == OLD_VERSION
        assert (previous / "files" / "customer.env").stat().st_mode & 0o777 == 0o600

        # The same upgrade again changes nothing, and keeps the previous release's copy.
        kept = {p: p.read_bytes() for p in previous.rglob("*") if p.is_file()}
        running = inst.containers(docker_engine)
        again = inst.cli("upgrade", "--release", str(new_release), "--yes", "--skip", SKIP)
        assert again.returncode == 0, again.stdout + again.stderr
        assert f"nothing to upgrade: release {NEW_VERSION} with package 2026.7.1" in again.stdout
        assert {p: p.read_bytes() for p in previous.rglob("*") if p.is_file()} == kept
        assert inst.containers(docker_engine) == running

        status = inst.cli("status")
        assert f"release: {NEW_VERSION}, package: 2026.7.1" in status.stdout
        assert "last upgrade: " in status.stdout and f"(release {NEW_VERSION})" in status.stdout

        # A downgrade is refused by its gate, nothing changed.
        before = inst.files()
        old_release = make_release(tmp_path / "release-old", OLD_RELEASE)
        down = inst.cli("upgrade", "--release", str(old_release), "--yes", "--skip", SKIP)
        assert down.returncode == 3
        assert f"upgrade.version: {OLD_VERSION} is older than the installed release " \
               f"{NEW_VERSION}" in down.stdout
        assert inst.files() == before

        # Renewal in place (as certbot does): the same files, a new certificate. deploy
        # restarts exactly the running services the changed files are mounted into.
        assert served_fingerprint(DOMAIN) != ""
        renewed_pem = inst.issue(365)
        old_fingerprint = served_fingerprint(DOMAIN)
        assert old_fingerprint != fingerprint_of(renewed_pem)
        running = inst.containers(docker_engine)
        renewal = inst.cli("deploy", "--yes", "--skip", SKIP)
        assert renewal.returncode == 0, renewal.stdout + renewal.stderr
        assert "restarting router-http: certs/" in renewal.stdout, renewal.stdout
        assert served_fingerprint(DOMAIN) == fingerprint_of(renewed_pem)
        now = inst.containers(docker_engine)
        assert now["router-http"][1] != running["router-http"][1]  # restarted
        assert now["workspace-migrations"][1] == running["workspace-migrations"][1]
        status = inst.cli("status")
        assert status.returncode == 0
        assert "warning: the certificate" not in status.stdout

        # No secret in any output or the log.
        haystack = "\n".join([*inst.outputs, (tmp_path / "carto-installer.log").read_text()])
        for secret in [*ENV.values(), *inst.package.secrets, *new_package.secrets]:
            assert secret not in haystack, f"a secret leaked ({len(secret)} chars)"
    finally:
        compose_down(inst.directory)


def test_a_failure_before_the_migrations_puts_the_previous_release_back_and_after_them_says_restore(
        images: None, ports: None, tmp_path: Path, test_ca: TestCA,
        docker_engine: docker.DockerClient) -> None:
    inst = Installation(tmp_path, test_ca)
    try:
        deployed = inst.cli("deploy", "--yes", "--skip", SKIP)
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr
        archive = inst.record_backup(hours_ago=2)
        served = served_fingerprint(DOMAIN)
        before_files = inst.files()
        before_containers = inst.containers(docker_engine)

        # Without --yes, on a terminal: the plan with its gates, then a question; "n" changes
        # nothing.
        import pexpect

        from tests.support.cli import cli_env

        newer = make_release(tmp_path / "release-asked", NEW_RELEASE)
        child = pexpect.spawn(sys.executable, ["-m", "installer", "upgrade", "--answers",
                                               str(inst.answers), "--release", str(newer),
                                               "--skip", SKIP],
                              cwd=str(tmp_path), env=cli_env(ENV), encoding="utf-8",
                              timeout=180)
        child.expect(r"Proceed\? \[y/N\] ")
        shown = child.before
        child.sendline("n")
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == 130
        assert "The upgrade will:" in shown
        assert "gate upgrade.backup: pass" in shown and "gate upgrade.version: pass" in shown
        assert f"release: {OLD_VERSION} -> {NEW_VERSION}" in shown
        assert inst.files() == before_files

        # Before: the new release's images come from a registry that does not answer.
        unreachable = make_release(tmp_path / "release-unreachable", NEW_RELEASE,
                                   registry="127.0.0.1:9/carto-installer-test")
        failed = inst.cli("upgrade", "--release", str(unreachable), "--yes", "--skip", SKIP)
        assert failed.returncode == 3, failed.stdout + failed.stderr
        assert "images to pull before stopping anything: 127.0.0.1:9/" in failed.stdout
        assert "==> put the previous release back" in failed.stdout
        assert "failed before the migrations ran" in failed.stderr
        assert f"the previous release {OLD_VERSION} was put back and answers" in failed.stderr
        after_files = inst.files()
        for name in ("VERSION", "docker-compose.yml", "env.tpl", ".env", "customer.env"):
            assert after_files[name] == before_files[name], name
        # Nothing was stopped: the same containers, and the old stack answers.
        after = inst.containers(docker_engine)
        assert after["router-http"][:2] == before_containers["router-http"][:2]
        assert served_fingerprint(DOMAIN) == served
        assert inst.cli("status").returncode == 0

        # After: the new release's migrations fail. Nothing is put back; the database must
        # be restored from the backup, with the exact commands.
        failing = make_release(tmp_path / "release-failing", NEW_RELEASE,
                               migrations_command="/bin/fail")
        broken = inst.cli("upgrade", "--release", str(failing), "--yes", "--skip", SKIP)
        assert broken.returncode == 3, broken.stdout + broken.stderr
        err = broken.stderr
        assert "failed after the database migrations ran" in err
        assert f"the database must be restored from the backup {archive}" in err
        assert (f"carto-installer restore --answers {inst.answers} --from {archive} "
                "--database --yes") in err
        assert f"cp -a {inst.directory}/.carto-installer-previous/files/. {inst.directory}/" \
            in err
        assert (inst.directory / "VERSION").read_text().strip() == NEW_VERSION
        kept = inst.directory / ".carto-installer-previous" / "files"
        assert (kept / "VERSION").read_text().strip() == OLD_VERSION
    finally:
        compose_down(inst.directory)


def test_gates_unit() -> None:
    """The gates' verdicts at their edges (the end-to-end tests cover their wiring)."""
    from installer.checks.base import Status
    from installer.operate.backup import BackupRecord
    from installer.upgrade import gate_backup_record, gate_package, gate_version

    assert gate_package("2026.4.1", "2026.4.1", "release x").status == Status.PASS
    assert gate_package("2026.04.1", "2026.4.1", "release x").status == Status.FAIL
    assert gate_package(None, "2026.4.1", "release x").status == Status.FAIL
    assert gate_package("2026.4.1", None, "release x").status == Status.WARN
    assert gate_version("2026.7.16", "2026.7.16").status == Status.PASS
    assert gate_version("2026.7.16", "2026.5.14").status == Status.FAIL
    now = datetime.datetime(2026, 7, 1, 12, tzinfo=datetime.UTC)

    def record(hours: float, database: bool = True) -> BackupRecord:
        return BackupRecord(now - datetime.timedelta(hours=hours), "/b/a.tar", "0" * 64,
                            database)

    assert gate_backup_record(record(23), now).status == Status.PASS
    assert gate_backup_record(record(25), now).status == Status.FAIL
    assert gate_backup_record(record(1, database=False), now).status == Status.FAIL
    assert gate_backup_record(None, now).status == Status.FAIL


def test_unknown_upgrade_flags_and_missing_installation_are_input_errors(tmp_path: Path
                                                                         ) -> None:
    package = make_package(tmp_path / "pkg")
    directory = tmp_path / "nothing-here"
    answers = write_answers(tmp_path / "a.yaml", package=package.path, directory=directory,
                            domain=DOMAIN)
    result = run_cli("upgrade", "--answers", str(answers), "--yes", "--skip", "upgrade.nope",
                     cwd=tmp_path, env=ENV)
    assert result.returncode == 2 and "unknown check" in result.stderr
    result = run_cli("upgrade", "--answers", str(answers), "--yes", cwd=tmp_path, env=ENV)
    assert result.returncode == 2, result.stderr
    assert "there is nothing to upgrade" in result.stderr
    assert not directory.exists()
    data = yaml.safe_load(answers.read_text())
    assert data["compose"]["directory"] == str(directory)


def test_the_wizard_offers_upgrade_with_the_same_plan_gates_and_progress(
        images: None, ports: None, tmp_path: Path, test_ca: TestCA,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Plain prompts: Upgrade to the next release with a new package; then the Textual
    screen: the plan first (nothing changes), then Apply, for a newer package alone."""
    import asyncio
    import io

    from installer.answers import load_answers
    from screens.app import WizardApp
    from screens.operate import OperateScreen
    from screens.operate_plain import UPGRADE
    from screens.plain import PlainWizard
    from tests.support.scripted_prompts import ScriptedPrompts
    from tests.support.wizard import new_state

    inst = Installation(tmp_path, test_ca)
    try:
        assert inst.cli("deploy", "--yes", "--skip", SKIP).returncode == 0
        inst.record_backup(hours_ago=1)
        monkeypatch.chdir(tmp_path)
        for name, value in ENV.items():
            monkeypatch.setenv(name, value)
        (tmp_path / "wizard").mkdir()
        state = new_state(tmp_path / "wizard")
        state.answers = load_answers(inst.answers, env=ENV)
        state.prefilled_from = inst.answers
        package = inst.new_package()
        release = make_release(tmp_path / "release-new", NEW_RELEASE)
        prompts = ScriptedPrompts({
            "CARTO is installed on local. What do you want to do?": [UPGRADE],
            "New installation package": [str(package.path)],
            "New vendor release": [str(release)],
            "Checks whose failure you accept as a risk": [SKIP],
            "Proceed with the upgrade?": [True],
        }).install(monkeypatch)
        out = io.StringIO()
        assert PlainWizard(state, out=out).run() == 0, out.getvalue()
        text = out.getvalue()
        assert f"release: {OLD_VERSION} -> {NEW_VERSION}" in text
        assert "gate upgrade.backup: pass: backup" in text
        assert "==> wait healthy" in text and f"upgraded to {NEW_VERSION}" in text
        assert prompts.unanswered() == []
        assert state.answers.package == str(package.path)
        assert (inst.directory / "VERSION").read_text().strip() == NEW_VERSION

        newer = inst.new_package("2026.7.2")

        async def tui() -> None:
            app = WizardApp(state, live=False)
            async with app.run_test(size=(110, 48)) as pilot:
                app.push_screen(OperateScreen(state))
                await pilot.pause()
                screen = app.screen
                assert isinstance(screen, OperateScreen)
                screen.query_one("#op-up-package").value = str(newer.path)
                screen.query_one("#op-up-skip").value = SKIP
                screen.query_one("#op-upgrade-plan").focus()
                await pilot.press("enter")
                for _ in range(600):
                    if any("nothing was changed yet" in line or line.startswith("✘")
                           for line in screen.lines):
                        break
                    await asyncio.sleep(0.1)
                plan = str(screen.query_one("#operate-plan").render())
                assert f"release: {NEW_VERSION} -> {NEW_VERSION}" in plan, screen.lines
                assert "changed by the package: CARTO_SELFHOSTED_CUSTOMER_PACKAGE_VERSION" in plan
                assert "gate upgrade.package: pass: package 2026.7.2 is not older" in plan
                assert "2026.7.2" not in (inst.directory / "customer.env").read_text()
                assert screen.query_one("#op-upgrade-apply").display
                screen.query_one("#op-upgrade-apply").focus()
                await pilot.press("enter")
                for _ in range(1200):
                    if any(line.startswith(("upgraded to", "✘ upgrade"))
                           for line in screen.lines):
                        break
                    await asyncio.sleep(0.1)
                assert any(line.startswith(f"upgraded to {NEW_VERSION}")
                           for line in screen.lines), screen.lines

        asyncio.run(tui())
        assert "CARTO_SELFHOSTED_CUSTOMER_PACKAGE_VERSION=2026.7.2" in \
            (inst.directory / "customer.env").read_text()
    finally:
        compose_down(inst.directory)


def test_images_from_the_archive_are_loaded_before_anything_stops(
        images: None, ports: None, tmp_path: Path, test_ca: TestCA,
        docker_engine: docker.DockerClient) -> None:
    """No registry access: the new release's images come from compose.images_archive and
    are loaded while the old containers still run. The release's VERSION is made unique to
    this test so that removing its tags never touches what another session uses."""
    import contextlib
    import os

    inst = Installation(tmp_path, test_ca)
    version = f"2026.7.{20 + os.getpid() % 9}"
    release = make_release(tmp_path / "release-archive", NEW_RELEASE)
    (release / "VERSION").write_text(version + "\n")
    tags = []
    for name in ("router", "app"):
        image = docker_engine.images.get(f"carto-installer-test/{name}:{NEW_VERSION}")
        tag = f"carto-installer-test/{name}:{version}"
        image.tag(tag)
        tags.append(tag)
    archive = tmp_path / "carto-images.tar"
    try:
        subprocess.run(["docker", "save", "-o", str(archive), *tags], check=True,
                       capture_output=True, timeout=120)
        for tag in tags:
            docker_engine.images.remove(tag)  # only untags
        assert inst.cli("deploy", "--yes", "--skip", SKIP).returncode == 0
        inst.record_backup(hours_ago=1)
        old_router = inst.containers(docker_engine)["router-http"]
        data = yaml.safe_load(inst.answers.read_text())
        data["compose"]["images_archive"] = str(archive)
        inst.answers.write_text(yaml.safe_dump(data))
        result = inst.cli("upgrade", "--release", str(release), "--yes", "--skip", SKIP)
        out = result.stdout
        assert result.returncode == 0, out + result.stderr
        assert (f"images to load from compose.images_archive: carto-installer-test/router:"
                f"{version}, carto-installer-test/app:{version}") in out
        loaded = out.index("==> load images")
        assert f"loaded carto-installer-test/app:{version}" in out
        # loaded before `up -d` replaced anything: the old router was still the one running
        assert loaded < out.index("==> launch")
        assert old_router[0] not in {c[0] for c in inst.containers(docker_engine).values()}
        assert inst.containers(docker_engine)["router-http"][2] == \
            f"carto-installer-test/router:{version}"
    finally:
        compose_down(inst.directory)
        for tag in tags:
            with contextlib.suppress(docker.errors.ImageNotFound):
                docker_engine.images.remove(tag)


def test_the_restore_commands_start_the_vendors_bundled_database_first() -> None:
    """With the vendor's real docker-compose.yml (its bundled PostgreSQL service), the
    commands after a failure past the migrations start that service before the restore."""
    from installer.answers import parse_answers
    from installer.upgrade import bundled_database_service, restore_needed

    compose = (vendor_release(NEW_RELEASE) / "docker-compose.yml").read_text()
    bundled = parse_answers({"version": 1, "domain": DOMAIN, "database": {"bundled": True}})
    external = parse_answers({"version": 1, "domain": DOMAIN,
                              "database": {"bundled": False, "host": "db.example.com"}})
    env = {"WORKSPACE_POSTGRES_HOST": "workspace-postgres"}
    assert bundled_database_service(bundled, compose, env) == "workspace-postgres"
    assert bundled_database_service(bundled, compose, {}) == "workspace-postgres"  # by image
    assert bundled_database_service(external, compose, env) is None
    error = restore_needed(bundled, "/opt/carto", OLD_VERSION, NEW_VERSION, "x",
                           "/b/a.tar", "docker compose", "workspace-postgres")
    lines = error.remediation.splitlines()
    start = lines.index("    cd /opt/carto && docker compose start workspace-postgres")
    restore = next(i for i, line in enumerate(lines) if "carto-installer restore" in line)
    assert lines.index("    cd /opt/carto && docker compose stop") < start < restore
    assert "--from /b/a.tar --database --yes" in lines[restore]
