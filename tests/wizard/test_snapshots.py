"""How every step looks at 80x24, with fixed inputs (pytest-textual-snapshot).

The screens run with `live=False`: nothing is checked or deployed, and the check lists are fed
fixed results, so no timing or machine-dependent value reaches a snapshot. The live behaviour
is covered by the Pilot tests. After an intended change of look, review the diff and update
with `pytest tests/wizard/test_snapshots.py --snapshot-update`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import Input

from installer.answers import JumpHost, Secret, SSHSettings
from installer.checks.base import CheckResult, Status
from installer.redact import Redactor
from installer.session import Session
from screens.app import WizardApp
from screens.widgets.check_list import CheckList

# A fixed, non-existent working directory: paths shown on screen never depend on the machine.
WORKDIR = Path("/srv/carto-installer")
STATE_DIR = Path("/home/admin/.local/state/carto-installer")  # never written: live=False


def result(check_id: str, title: str, status: Status, message: str, observed: str = "",
           required: str = "", remediation: str = "") -> CheckResult:
    return CheckResult(check_id, check_id.split(".")[0], title, status, required, observed,
                       message, remediation, 0.0)


REQUIREMENTS = [
    result("host.os", "Operating system", Status.PASS, "Ubuntu 22.04.4 LTS",
           "Ubuntu 22.04.4 LTS", "Ubuntu 20.04 or above"),
    result("host.arch", "CPU architecture", Status.PASS, "x86-64 CPUs", "x86_64", "x86_64"),
    result("host.cpu", "CPUs", Status.FAIL, "only 2 usable CPUs; CARTO needs at least 4", "2",
           ">= 4", "resize the VM to 4 or more vCPUs (or lift the container's CPU quota)"),
    result("host.memory", "Memory", Status.PASS, "16.8 GB (15.6 GiB) of memory", "16.8 GB",
           ">= 16 GB (16e9 bytes)"),
    result("host.disk", "Disk", Status.WARN, "only 12.0 GB free on /var/lib/docker",
           "64.4 GB size, 12.0 GB free", ">= 60 GB size, >= 20 GB free",
           "free space: `docker system prune`, or grow the filesystem"),
    result("host.ports", "Ports 443 and 80", Status.PASS, "ports 443 and 80 are free"),
    result("docker.engine", "Docker engine", Status.PASS, "Docker engine 24.0.7 answers"),
    result("docker.version", "Docker version", Status.PASS, "Docker 24.0.7 is supported"),
    result("docker.compose", "Docker Compose", Status.PASS,
           "will use `docker compose` (plugin v2.24.5)"),
]
DOMAIN_TLS = [
    result("net.domain", "Domain", Status.PASS, "carto.example.com is a valid domain"),
    result("net.dns", "DNS", Status.WARN, "carto.example.com does not resolve yet",
           "no address", "resolves to the target", "add an A record pointing at 203.0.113.10"),
    result("tls.certificate", "TLS certificate", Status.PASS,
           "valid until 2031-05-01, covers carto.example.com"),
]
DATABASE = [
    result("db.connect", "Connection", Status.PASS, "connected to db.example.internal:5432 with "
           "TLS (TLSv1.3)"),
    result("db.version", "PostgreSQL version", Status.PASS, "PostgreSQL 15.6"),
    result("db.privileges", "Admin privileges", Status.PASS, "postgres may create roles and "
           "databases (superuser)"),
    result("db.workspace", "CARTO user and database", Status.PASS,
           "workspace_admin and workspace will be created"),
    result("db.tls", "Server certificate", Status.PASS, "verify-full succeeded"),
]
LICENSE = [
    result("license.package", "Installation package", Status.PASS,
           "customer.env and key.json are complete"),
    result("license.version", "Package version", Status.PASS, "2026.4.1 >= 2025.1.1"),
]
NETWORK = [
    result("egress.auth.carto.com", "auth.carto.com", Status.PASS, "TLS handshake in 84 ms"),
    result("egress.pubsub.googleapis.com", "pubsub.googleapis.com", Status.PASS,
           "TLS handshake in 31 ms"),
    result("egress.www.googleapis.com", "www.googleapis.com", Status.PASS,
           "TLS handshake in 29 ms"),
    result("egress.bigquery.googleapis.com", "bigquery.googleapis.com", Status.FAIL,
           "connect to 443 timed out after 5 s", "timeout", "HTTPS reachable",
           "allow outbound 443 to bigquery.googleapis.com in the firewall"),
]


def state(platform: str = "compose", results: list[CheckResult] | None = None,
          workdir: Path = WORKDIR, state_dir: Path = STATE_DIR) -> Session:
    s = Session(redactor=Redactor(), workdir=workdir, state_dir=state_dir)
    a = s.answers
    a.platform = platform
    a.domain = "carto.example.com"
    a.package = "/home/admin/carto-selfhosted-docker-customer-package.zip"
    a.database.host = "db.example.internal"
    a.database.admin_password = Secret("correct horse battery", "inline")
    a.database.password = Secret("staple-staple-staple", "inline")
    a.network.cloud = "gcp"
    a.network.warehouses = ["bigquery"]
    for r in results or []:
        s.results[r.id] = r
    return s


def no_blink(then: Callable[[Any], Any] | None = None) -> Callable[[Any], Any]:
    """Steady cursors, so a snapshot never catches one mid-blink."""

    async def run_before(pilot: Any) -> None:
        await pilot.pause()
        for each in pilot.app.screen.query(Input):
            each.cursor_blink = False
        if then is not None:
            outcome = then(pilot)
            if hasattr(outcome, "__await__"):
                await outcome
        await pilot.pause()

    return run_before


def highlight(check_id: str) -> Callable[[Any], Any]:
    async def go(pilot: Any) -> None:
        check_list = pilot.app.screen.query_one(CheckList)
        check_list.highlighted = check_list.get_option_index(check_id)
        check_list.focus()

    return go


def test_welcome(snap_compare: Any) -> None:
    assert snap_compare(WizardApp(state(), live=False), run_before=no_blink())


def test_welcome_offers_to_resume(snap_compare: Any, tmp_path: Path) -> None:
    earlier = state(workdir=tmp_path, state_dir=tmp_path)
    earlier.save_session("database")
    app = WizardApp(state(workdir=tmp_path, state_dir=tmp_path), live=False)
    assert snap_compare(app, run_before=no_blink())


def test_platform(snap_compare: Any) -> None:
    assert snap_compare(WizardApp(state(), start="platform", live=False), run_before=no_blink())


def test_target_this_machine(snap_compare: Any) -> None:
    assert snap_compare(WizardApp(state(), start="target", live=False), run_before=no_blink())


def test_target_over_ssh_with_a_jump_host(snap_compare: Any) -> None:
    s = state()
    s.answers.target = SSHSettings(host="vm.example.internal", user="ubuntu",
                                 identity_file="/home/admin/.ssh/id_ed25519",
                                 jump=JumpHost(host="bastion.example.com", user="ops"))
    assert snap_compare(WizardApp(s, start="target", live=False), run_before=no_blink())


def test_target_kubernetes(snap_compare: Any) -> None:
    s = state("kubernetes")
    s.answers.kubernetes.context = "prod"
    assert snap_compare(WizardApp(s, start="target", live=False), run_before=no_blink())


def test_requirements_with_a_failure_selected(snap_compare: Any) -> None:
    app = WizardApp(state(results=REQUIREMENTS), start="requirements", live=False)
    assert snap_compare(app, run_before=no_blink(highlight("host.cpu")))


def test_requirements_with_the_risk_accepted(snap_compare: Any) -> None:
    s = state(results=REQUIREMENTS)
    s.accept_risk("host.cpu")
    app = WizardApp(s, start="requirements", live=False)
    assert snap_compare(app, run_before=no_blink(highlight("host.cpu")))


def test_domain_and_tls(snap_compare: Any) -> None:
    app = WizardApp(state(results=DOMAIN_TLS), start="domain_tls", live=False)
    assert snap_compare(app, run_before=no_blink())


def test_domain_rejected_as_typed(snap_compare: Any) -> None:
    s = state()
    s.answers.domain = None

    async def type_url(pilot: Any) -> None:
        from tests.support.wizard import paste

        await paste(pilot, "https://carto.example.com/x")

    app = WizardApp(s, start="domain_tls", live=False)
    assert snap_compare(app, run_before=no_blink(type_url))


def test_database_external_tested(snap_compare: Any) -> None:
    app = WizardApp(state(results=DATABASE), start="database", live=False)
    assert snap_compare(app, run_before=no_blink())


def test_database_bundled_warning(snap_compare: Any) -> None:
    s = state()
    s.answers.database.bundled = True
    assert snap_compare(WizardApp(s, start="database", live=False), run_before=no_blink())


def test_license(snap_compare: Any) -> None:
    app = WizardApp(state(results=LICENSE), start="license", live=False)
    assert snap_compare(app, run_before=no_blink())


def test_network(snap_compare: Any) -> None:
    app = WizardApp(state(results=NETWORK), start="network", live=False)
    assert snap_compare(app, run_before=no_blink())


@pytest.mark.parametrize("key", ["ctrl+q"])
def test_quit_confirmation(snap_compare: Any, key: str) -> None:
    app = WizardApp(state(), start="platform", live=False)
    assert snap_compare(app, press=[key], run_before=no_blink())


def review_plan() -> Any:
    from installer.render import FileChange, RenderPlan

    directory = "/opt/carto"
    old_env = b"SELFHOSTED_DOMAIN=old.example.com\nPOSTGRES_PASSWORD=legacy\n"
    cert = (b"-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUfixedfixedfixed\n"
            b"-----END CERTIFICATE-----\n")
    return RenderPlan(
        changes=[
            FileChange(f"{directory}/customer.env", old_env, b"x" * 1484, 0o600, True,
                       0o644, ["SELFHOSTED_DOMAIN", "POSTGRES_ADMIN_PASSWORD"]),
            FileChange(f"{directory}/.env", None, b"x" * 1843, 0o600, True),
            FileChange(f"{directory}/certs/key.json", None, b"x" * 2128, 0o600, True),
            FileChange(f"{directory}/certs/carto.example.com.crt", None, cert, 0o644, False),
            FileChange(f"{directory}/certs/carto.example.com.key", None, b"x" * 241, 0o600,
                       True),
        ],
        backups=[f"{directory}/customer.env.bak.20260426T101500"],
        notes=["renamed POSTGRES_PASSWORD to POSTGRES_ADMIN_PASSWORD"],
        directory=directory,
    )


def test_review(snap_compare: Any) -> None:
    s = state()
    s.reviewed_plan = review_plan()
    s.accept_risk("host.cpu")
    assert snap_compare(WizardApp(s, start="review", live=False), run_before=no_blink())


def deploy_events() -> list[Any]:
    from installer.checks.engine import CheckFinished
    from installer.deploy import LogLine, ServiceState, StepFinished, StepStarted

    events: list[Any] = [StepStarted("preflight")]
    events += [CheckFinished(r) for r in REQUIREMENTS]
    events += [StepFinished("preflight", True, "8 passed, 1 warning, accepted: host.cpu"),
               StepStarted("render"), LogLine("customer.env copied from the package"),
               StepFinished("render", True, "wrote 7 file(s)"), StepStarted("launch")]
    for name in ("redis", "router", "workspace-api", "workspace-migrations"):
        events.append(ServiceState(name, "running", "starting" if name == "router" else ""))
    events += [StepFinished("launch", True, "`docker compose up -d` done"),
               StepStarted("wait healthy"), ServiceState("router", "running", "healthy"),
               ServiceState("workspace-migrations", "exited (0)")]
    return events


def test_deploy_succeeded(snap_compare: Any) -> None:
    from installer.deploy import DeployResult, StepFinished, StepStarted

    async def run(pilot: Any) -> None:
        screen = pilot.app.screen
        for event in deploy_events() + [
                StepFinished("wait healthy", True, "4 containers healthy after 3.0 s"),
                StepStarted("verify https"),
                StepFinished("verify https", True, "HTTP 200, certificate verified")]:
            screen.show_event(event)
        screen.show_outcome(DeployResult(True, "https://carto.example.com", "CARTO answers",
                                         changed=True), None, False)

    s = state()
    s.accept_risk("host.cpu")
    assert snap_compare(WizardApp(s, start="deploy", live=False), run_before=no_blink(run))


def test_deploy_failed_with_the_fix(snap_compare: Any) -> None:
    from installer.deploy import StepFinished
    from installer.errors import DeployError

    async def run(pilot: Any) -> None:
        screen = pilot.app.screen
        for event in deploy_events() + [
                StepFinished("wait healthy", False, "workspace-api keeps restarting")]:
            screen.show_event(event)
        screen.show_outcome(None, DeployError(
            "service workspace-api keeps restarting (exit code 1, 5 restarts)",
            "its last log lines are above; fix WORKSPACE_POSTGRES_HOST in the answers, then "
            "Retry"), False)

    s = state()
    assert snap_compare(WizardApp(s, start="deploy", live=False), run_before=no_blink(run))


def test_deploy_in_progress(snap_compare: Any) -> None:
    async def run(pilot: Any) -> None:
        for event in deploy_events():
            pilot.app.screen.show_event(event)

    s = state()
    s.accept_risk("host.cpu")
    assert snap_compare(WizardApp(s, start="deploy", live=False), run_before=no_blink(run))


# --- issue 15: help, accepting all shown risks, Review's link to a step; and 120x40 ----------

BIG = (120, 40)


def open_help(pilot: Any) -> Any:
    return pilot.press("f1")


def accept_all(pilot: Any) -> Any:
    async def go() -> None:
        await highlight("host.cpu")(pilot)
        await pilot.press("A")

    return go()


def review_refused(pilot: Any) -> Any:
    from installer.errors import AnswersError
    from screens.review import PlanReady

    screen = pilot.app.screen
    screen.post_message(PlanReady(screen._checks_worker, error=AnswersError(
        "compose.directory", "/opt/carto on local does not exist: it must hold the vendor's "
        "Compose release (docker-compose.yml, env.tpl, VERSION, MIN_VERSION)",
        "get it from https://github.com/CartoDB/carto-selfhosted/releases")))
    return pilot.pause()


TWO_FAILURES = [r if r.id != "docker.engine" else
                result("docker.engine", "Docker engine", Status.FAIL,
                       "no Docker engine answers at /var/run/docker.sock",
                       remediation="sudo systemctl start docker")
                for r in REQUIREMENTS]


def test_help_panel(snap_compare: Any) -> None:
    app = WizardApp(state(), start="domain_tls", live=False)
    assert snap_compare(app, run_before=no_blink(open_help))


def test_accept_all_shown_risks_asks_once(snap_compare: Any) -> None:
    app = WizardApp(state(results=TWO_FAILURES), start="requirements", live=False)
    assert snap_compare(app, run_before=no_blink(accept_all))


def test_review_names_the_step_to_fix(snap_compare: Any) -> None:
    app = WizardApp(state(), start="review", live=False)
    assert snap_compare(app, run_before=no_blink(review_refused))


def test_database_bundled_on_kubernetes(snap_compare: Any) -> None:
    s = state("kubernetes")
    s.answers.database.bundled = True
    assert snap_compare(WizardApp(s, start="database", live=False), run_before=no_blink())


@pytest.mark.parametrize("step", ["welcome", "platform", "target", "database"])
def test_steps_at_120x40(snap_compare: Any, step: str) -> None:
    assert snap_compare(WizardApp(state(), start=step, live=False), run_before=no_blink(),
                        terminal_size=BIG)


def test_help_panel_at_120x40(snap_compare: Any) -> None:
    app = WizardApp(state(), start="database", live=False)
    assert snap_compare(app, run_before=no_blink(open_help), terminal_size=BIG)


def test_accept_all_at_120x40(snap_compare: Any) -> None:
    app = WizardApp(state(results=TWO_FAILURES), start="requirements", live=False)
    assert snap_compare(app, run_before=no_blink(accept_all), terminal_size=BIG)


def test_review_names_the_step_to_fix_at_120x40(snap_compare: Any) -> None:
    app = WizardApp(state(), start="review", live=False)
    assert snap_compare(app, run_before=no_blink(review_refused), terminal_size=BIG)
