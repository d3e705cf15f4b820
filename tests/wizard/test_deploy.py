"""The whole wizard, by keyboard, installing for real: a Compose deployment on this machine's
Docker engine, from the fixture deployment directory and a generated package, with the
metadata database on a real PostgreSQL 15 over verified TLS.

Asserts on what matters: the saved answers, the files written and their modes, the check
states and the accepted risks, the containers running and HTTPS answering; and that Ctrl+C
during a deployment stops it promptly, leaving only whole files.
"""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import installer.preflight
from installer.checks.base import Status
from installer.session import ANSWERS_NAME, SESSION_NAME
from screens.app import WizardApp
from tests.support.cli import host_ports_lock
from tests.support.compose_deployment import build_images, compose_down, make_deployment
from tests.support.package import make_package
from tests.support.wizard import (
    fill,
    loopback,
    new_state,
    next_step,
    no_dialog,
    screen_text,
    settle_checks,
    sync,
    wait_until,
)

SIZE = (80, 24)
DOMAIN = "carto.wizard.test"
CARTO_DB_PASSWORD = "W1zard 'db' pass$word #1"


@pytest.fixture(scope="module")
def fixture_images(docker_engine: Any, compose_v2: Path) -> dict[str, str]:
    return build_images(docker_engine)


@pytest.fixture
def ports_443_and_80() -> Iterator[None]:
    with host_ports_lock():
        yield


@pytest.fixture
def loopback_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    # The deploy runs its own preflight with the system resolver: point it at loopback too.
    monkeypatch.setattr(installer.preflight, "system_resolver", loopback)


def slow_to_start(deploy_dir: Path) -> Path:
    """The fixture deployment, but its router's healthcheck stays "starting" for minutes, as
    CARTO's services do on a first start: the deploy sits in "wait healthy"."""
    compose = deploy_dir / "docker-compose.yml"
    text = compose.read_text()
    slow = text.replace("""test: ["CMD-SHELL", "netstat -ltn | grep -q ':8443 '"]""",
                        """test: ["CMD-SHELL", "false"]""").replace(
        "retries: 30", "retries: 100000")
    assert slow != text, "the fixture's router healthcheck changed: update this test"
    compose.write_text(slow)
    return deploy_dir


async def walk_to_review(pilot: Any, state: Any, deploy_dir: Path, package: Path,
                         postgres: Any) -> None:
    app = pilot.app
    await next_step(pilot, "platform")
    assert state.answers.platform == "compose"
    await next_step(pilot, "target")
    await fill(pilot, "compose.directory", str(deploy_dir))
    await next_step(pilot, "requirements")
    await settle_checks(pilot, state, "requirements")
    assert state.results["docker.engine"].status == Status.PASS
    assert state.results["docker.compose"].status == Status.PASS
    await next_step(pilot, "domain_tls")
    await fill(pilot, "domain", DOMAIN)
    await settle_checks(pilot, state, "domain_tls")  # run by themselves once typing pauses
    assert state.results["net.domain"].status == Status.PASS
    dns = state.results["net.dns"]  # resolved through the wizard's resolver: loopback here
    assert dns.status == Status.WARN and "loopback" in dns.message and dns.remediation
    assert state.results["tls.certificate"].status == Status.WARN  # self-signed
    await next_step(pilot, "database")
    await fill(pilot, "database.host", postgres.host)
    await fill(pilot, "database.port", str(postgres.port))
    await fill(pilot, "database.admin_user", postgres.superuser)
    await fill(pilot, "database.admin_password", postgres.password)
    await fill(pilot, "database.password", CARTO_DB_PASSWORD)
    app.screen.query_one("#db-ssl").focus()
    await pilot.press("space")  # TLS on
    await fill(pilot, "database.ssl.mode", "verify-full")
    await fill(pilot, "database.ssl.ca_file", str(postgres.ca_file))
    await pilot.press("ctrl+t")  # test the connection
    await settle_checks(pilot, state, "database")
    for check_id in ("db.connect", "db.version", "db.privileges", "db.tls"):
        assert state.results[check_id].status == Status.PASS, state.results[check_id]
    assert "TLS" in state.results["db.connect"].message
    await next_step(pilot, "license")
    await fill(pilot, "package", str(package))
    await settle_checks(pilot, state, "license")
    assert state.results["license.package"].status == Status.PASS
    assert state.results["license.version"].status == Status.PASS
    await next_step(pilot, "network")
    await pilot.press("ctrl+r")  # egress: every host is loopback here, so each one fails
    await settle_checks(pilot, state, "network")
    assert any(r.id.startswith("egress.") for r in state.step_results("network"))
    await next_step(pilot, "review")
    screen = app.screen
    await wait_until(pilot, lambda: not screen.query_one("#next").disabled, timeout=30,
                     what="the render plan")


@sync
async def test_the_wizard_installs_carto_with_compose_for_real(
        tmp_path: Path, fixture_images: dict[str, str], postgres_server: Any,
        loopback_dns: None, ports_443_and_80: None) -> None:
    deploy_dir = make_deployment(tmp_path / "deploy")
    package = make_package(tmp_path / "package")
    workdir = tmp_path / "work"
    workdir.mkdir()
    state = new_state(workdir, resolver=loopback)
    app = WizardApp(state)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await walk_to_review(pilot, state, deploy_dir, package.path, postgres_server)
            review = screen_text(app)
            summary = str(app.screen.query_one("#review-summary").render())
            for name in ("customer.env", ".env", "certs/key.json", f"certs/{DOMAIN}.crt",
                         f"certs/{DOMAIN}.key", "certs/postgresql-ssl-ca.crt"):
                assert f" {name} (new" in summary, summary
            assert CARTO_DB_PASSWORD not in review and postgres_server.password not in review
            # The answers are saved when the review is shown, with no secret in them.
            saved = workdir / ANSWERS_NAME
            text = saved.read_text()
            assert postgres_server.password not in text and CARTO_DB_PASSWORD not in text
            data = yaml.safe_load(text)
            assert data["domain"] == DOMAIN and data["compose"]["directory"] == str(deploy_dir)
            assert data["database"]["ssl"]["mode"] == "verify-full"
            assert stat.S_IMODE(saved.stat().st_mode) == 0o600
            assert not (deploy_dir / ".env").exists()  # nothing written before Deploy

            await next_step(pilot, "deploy")
            deploy = app.screen
            await wait_until(pilot, lambda: no_dialog(app) and not deploy.deploying,
                             timeout=240, what="the deployment")
            assert deploy.finished_ok, screen_text(app)
            # The outcome shows once the screen has been laid out again after the worker ends.
            await wait_until(pilot, lambda: f"CARTO is running at https://{DOMAIN}"
                             in screen_text(app), timeout=5, what="the outcome to show")
            assert all(s in ("ok", "skipped") for s, _ in deploy.steps.values()), deploy.steps
            assert deploy.steps["verify https"][0] == "ok"
            services = deploy.query_one("#deploy-services").rows
            assert {"router-http", "workspace-api"} <= {str(k.value) for k in services}
            await pilot.press("ctrl+n")  # Finish
            await wait_until(pilot, lambda: not app.is_running, timeout=10, what="the exit")
        assert app.return_value == 0
        assert any(f"https://{DOMAIN}" in line for line in app.farewell)

        # What was written, and how.
        customer_env = (deploy_dir / "customer.env").read_text()
        assert f"SELFHOSTED_DOMAIN={DOMAIN}" in customer_env.replace('"', "").replace("'", "")
        assert "WORKSPACE_POSTGRES_HOST" in customer_env
        for name in ("customer.env", ".env"):
            mode = stat.S_IMODE((deploy_dir / name).stat().st_mode)
            assert mode == 0o600, f"{name} is {mode:o}"
        for name in ("certs/key.json", f"certs/{DOMAIN}.key"):  # the reading container's group
            mode = stat.S_IMODE((deploy_dir / name).stat().st_mode)
            assert mode == 0o640, f"{name} is {mode:o}"
        assert (deploy_dir / f"certs/{DOMAIN}.crt").exists()
        assert (deploy_dir / "certs/postgresql-ssl-ca.crt").read_bytes() == \
            postgres_server.ca_file.read_bytes()
        assert not list(deploy_dir.rglob(".*.tmp"))  # no half-written temp file left
        # The accepted risks were named, and only failed checks were accepted.
        assert state.accepted_risks
        for check_id in state.accepted_risks:
            assert state.results[check_id].status in (Status.FAIL, Status.ERROR)
        assert not (workdir / SESSION_NAME).exists()  # done: nothing left to resume
        log = (workdir / ANSWERS_NAME).read_text()
        assert CARTO_DB_PASSWORD not in log
    finally:
        compose_down(deploy_dir)


def answered_state(workdir: Path, deploy_dir: Path, package: Path, postgres: Any) -> Any:
    """A state as the steps before Review leave it (the walk itself is tested above): the
    answers, and each failed check run and accepted by name."""
    import threading

    from installer.answers import Secret

    state = new_state(workdir, resolver=loopback)
    a = state.answers
    a.compose.directory = str(deploy_dir)
    a.domain = DOMAIN
    a.package = str(package)
    db = a.database
    db.host, db.port, db.admin_user = postgres.host, postgres.port, postgres.superuser
    db.admin_password = Secret(postgres.password, "inline")
    db.password = Secret(CARTO_DB_PASSWORD, "inline")
    db.ssl.enabled, db.ssl.mode, db.ssl.ca_file = True, "verify-full", str(postgres.ca_file)
    for secret in a.secrets():
        state.remember_secret(secret)
    results = state.run_checks(["host", "docker", "db", "net", "tls", "license", "egress"],
                               cancel=threading.Event())
    for result in results:
        if result.status in (Status.FAIL, Status.ERROR):
            state.accept_risk(result.id)
    return state


@sync
async def test_ctrl_c_during_the_deployment_stops_it_promptly_and_cleanly(
        tmp_path: Path, fixture_images: dict[str, str], postgres_server: Any,
        loopback_dns: None, ports_443_and_80: None) -> None:
    deploy_dir = slow_to_start(make_deployment(tmp_path / "deploy"))
    package = make_package(tmp_path / "package")
    workdir = tmp_path / "work"
    workdir.mkdir()
    state = answered_state(workdir, deploy_dir, package.path, postgres_server)
    app = WizardApp(state, start="review")
    try:
        async with app.run_test(size=SIZE) as pilot:
            review = app.screen
            await wait_until(pilot, lambda: not review.query_one("#next").disabled, timeout=30,
                             what="the render plan")
            await next_step(pilot, "deploy")
            deploy = app.screen
            await wait_until(pilot, lambda: no_dialog(app)
                             and deploy.steps["wait healthy"][0] == "running",
                             timeout=120, what="the deployment to be waiting for health")
            await pilot.press("ctrl+c")
            took = await wait_until(pilot, lambda: not deploy.deploying, timeout=10,
                                    what="the deployment to stop")
            assert took < 3.0, f"the deployment took {took:.1f} s to stop"
            assert deploy.finished_ok is False
            # The outcome is written once the worker's last message is handled.
            await wait_until(pilot, lambda: "Deployment stopped at your request"
                             in screen_text(app), timeout=5, what="the stop to be explained")
            assert app.screen.query_one("#next").label == "Retry"
            # Retry, then quit in the middle: the dialog says a deployment is running, and
            # quitting stops it at a safe point before the installer exits.
            await pilot.press("ctrl+n")
            await wait_until(pilot, lambda: no_dialog(app) and deploy.deploying
                             and deploy.steps["wait healthy"][0] == "running",
                             timeout=120, what="the retried deployment")
            await pilot.press("ctrl+q")
            assert "The deployment is running" in screen_text(app)
            await pilot.press("y")
            took = await wait_until(pilot, lambda: not app.is_running, timeout=10,
                                    what="the exit")
            assert took < 3.0
        assert app.return_value == 130
        assert any("every file written so far is complete" in line for line in app.farewell)
        # Every file the render wrote is whole (atomic writes) and private.
        for name in ("customer.env", ".env"):
            assert stat.S_IMODE((deploy_dir / name).stat().st_mode) == 0o600
        # key.json: private, or (once its group is the backends') readable by that group.
        assert stat.S_IMODE((deploy_dir / "certs/key.json").stat().st_mode) in (0o600, 0o640)
        assert not list(deploy_dir.rglob(".*.tmp"))
    finally:
        compose_down(deploy_dir)
