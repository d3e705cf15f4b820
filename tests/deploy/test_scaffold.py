"""The deploy scaffold every deployment runs in (installer.deploy.steps.DeployRun): a step
reported from start to end with its secrets redacted, a cancel between two pieces of work,
the gate that stops on a blocking check unless `--skip` names it (an upgrade's gates
reported like checks), the confirmation, and the Compose command read from the preflight.
The deployers that use it run end to end in test_deploy_compose.py, test_k8s_deploy.py and
the upgrade tests."""

from __future__ import annotations

import threading

import pytest

from installer.checks.base import CheckResult, Status
from installer.checks.engine import CheckFinished
from installer.deploy import DeployCancelled
from installer.deploy.compose.project import compose_command
from installer.deploy.events import DeployEvent, StepFinished, StepStarted
from installer.deploy.steps import DeployRun
from installer.errors import DeployError
from installer.redact import Redactor
from installer.report import Report


def result(check_id: str, status: Status, **data: object) -> CheckResult:
    return CheckResult(check_id, check_id.split(".")[0], check_id, status, "", "",
                       f"{check_id} is {status}", f"fix {check_id}", 0.0, dict(data))


def scaffold(cancel: threading.Event | None = None) -> tuple[DeployRun, list[DeployEvent]]:
    seen: list[DeployEvent] = []
    redactor = Redactor()
    redactor.add("s3cr3t-value")
    return DeployRun(seen.append, redactor, cancel or threading.Event(), "resume it"), seen


def test_a_failed_step_is_reported_with_its_error_redacted() -> None:
    run, seen = scaffold()
    with pytest.raises(DeployError), run.step("launch"):
        raise DeployError("the password s3cr3t-value was refused")
    assert seen[0] == StepStarted("launch")
    assert isinstance(seen[1], StepFinished) and not seen[1].ok
    assert "s3cr3t-value" not in seen[1].detail and "refused" in seen[1].detail


def test_a_step_that_ends_well_reports_its_detail() -> None:
    run, seen = scaffold()
    with run.step("render") as step:
        step.detail = "wrote 2 file(s)"
    assert seen == [StepStarted("render"), StepFinished("render", True, "wrote 2 file(s)")]


def test_cancel_stops_with_the_deployers_own_fix() -> None:
    cancel = threading.Event()
    run, _seen = scaffold(cancel)
    run.check_cancel()  # not asked to stop: goes on
    cancel.set()
    with pytest.raises(DeployCancelled) as caught:
        run.check_cancel()
    assert caught.value.remediation == "resume it"


def test_the_gate_reports_an_upgrades_gates_and_stops_on_a_blocking_one() -> None:
    run, seen = scaffold()
    preflight = Report("compose", "local", [result("host.cpu", Status.PASS)])
    gates = [result("upgrade.version", Status.PASS), result("upgrade.backup", Status.FAIL)]
    with pytest.raises(DeployError) as caught:
        run.gate(preflight, gates, skip=())
    assert [e.result.id for e in seen if isinstance(e, CheckFinished)] == [
        "upgrade.version", "upgrade.backup"]
    assert "upgrade.backup" in caught.value.message
    assert "--skip upgrade.backup" in caught.value.remediation


def test_a_skipped_gate_is_an_accepted_risk_and_joins_the_report() -> None:
    run, _seen = scaffold()
    preflight = Report("compose", "local", [result("host.cpu", Status.PASS)])
    report, accepted = run.gate(preflight, [result("upgrade.backup", Status.FAIL)],
                                skip=("upgrade.backup",))
    assert [r.id for r in accepted] == ["upgrade.backup"]
    assert [r.id for r in report.results] == ["host.cpu", "upgrade.backup"]


def test_a_no_to_the_confirmation_changes_nothing() -> None:
    run, _seen = scaffold()
    asked: list[str] = []

    def say_no(plan: str) -> bool:
        asked.append(plan)
        return False

    run.confirm("the plan", None)  # nobody to ask (--yes): goes on
    with pytest.raises(DeployCancelled) as caught:
        run.confirm("the plan", say_no)
    assert asked == ["the plan"] and "nothing was changed" in caught.value.message


def test_the_compose_command_comes_from_the_passed_docker_compose_check() -> None:
    passed = Report("compose", "local", [result("docker.compose", Status.PASS,
                                                command=["docker", "compose"],
                                                version="2.29.1")])
    command = compose_command(passed)
    assert command.argv == ["docker", "compose"] and command.version == "2.29.1"
    failed = Report("compose", "local", [result("docker.compose", Status.FAIL,
                                                command=["docker", "compose"])])
    with pytest.raises(DeployError) as caught:
        compose_command(failed)
    assert "docker.compose did not pass" in caught.value.message
