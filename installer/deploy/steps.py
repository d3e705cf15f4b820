"""The scaffold every deployment runs its steps in (Compose and Helm, deploy and upgrade): the
steps' names, a step reported from start to end, the check that the person has not
cancelled, the preflight gate (with an upgrade's own gates), the confirmation and the apply."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, TypeVar

from installer.checks.engine import CheckFinished
from installer.deploy import DeployCancelled
from installer.deploy.events import EventSink, LogLine, StepFinished, StepStarted

if TYPE_CHECKING:
    from installer.answers import Answers
    from installer.checks.base import CheckResult, Resolver
    from installer.redact import Redactor
    from installer.render import RenderPlan
    from installer.report import Report
    from installer.target import Target

log = logging.getLogger("installer.deploy")

RERUN_TO_CONTINUE = "re-run `carto-installer deploy` to continue"

# --- the steps' names: the deployers report them, the front ends list them --------------------

PREFLIGHT = "preflight"
RENDER = "render"
REGISTRY_LOGIN = "registry login"
LOAD_IMAGES = "load images"
FIX_STUCK_RELEASE = "fix stuck release"
SECRETS = "secrets"
LAUNCH = "launch"
RESTART = "restart"
WAIT_HEALTHY = "wait healthy"
VERIFY_HTTPS = "verify https"
ADDRESS = "address"

_STEPS_SHOWN = {
    "compose": (PREFLIGHT, RENDER, LOAD_IMAGES, LAUNCH, WAIT_HEALTHY, VERIFY_HTTPS),
    "kubernetes": (PREFLIGHT, RENDER, SECRETS, LAUNCH, ADDRESS),
}


def steps_for(platform: str) -> tuple[str, ...]:
    """The steps a deploy on `platform` goes through, in order, for a front end to list before
    they run. Steps that only some runs need (a registry login, fixing a stuck release, a
    restart for changed Secrets) are reported when they start."""
    return _STEPS_SHOWN.get(platform, _STEPS_SHOWN["compose"])


# --- the scaffold --------------------------------------------------------------------------------

PlanT = TypeVar("PlanT")


class Step:
    """Reports a step's start and end (with its outcome) around a `with` block."""

    def __init__(self, emit: EventSink, redactor: Redactor, name: str) -> None:
        self.emit = emit
        self.redactor = redactor
        self.name = name
        self.detail = ""

    def __enter__(self) -> Step:
        self.emit(StepStarted(self.name))
        log.info("step %s", self.name)
        return self

    def __exit__(self, kind: object, exc: BaseException | None, tb: object) -> None:
        ok = exc is None
        detail = self.detail if ok else self.redactor(
            getattr(exc, "message", None) or str(exc) or type(exc).__name__)
        self.emit(StepFinished(self.name, ok, detail))
        log.info("step %s %s: %s", self.name, "done" if ok else "failed", detail)


def check_cancel(cancel: threading.Event, fix: str = RERUN_TO_CONTINUE) -> None:
    """Stop between two pieces of work once the person asked to stop."""
    if cancel.is_set():
        raise DeployCancelled("cancelled: the deployment was stopped", fix)


def gate_on_preflight(report: Report, skip: Sequence[str]) -> list[CheckResult]:
    """Stop the deployment on a failed (or unrunnable) check unless `--skip` names it.

    Returns the accepted risks, which are logged. The error carries each blocking check's own
    remediation, so a caller without the report at hand (the wizard, a script) still gets it.
    """
    from installer.checks.base import Status
    from installer.checks.engine import is_named
    from installer.errors import DeployError

    bad = [r for r in report.results if r.status in (Status.FAIL, Status.ERROR)]
    accepted = [r for r in bad if is_named(r.id, skip)]
    blocking = [r for r in bad if not is_named(r.id, skip)]
    for result in accepted:
        log.warning("accepted risk (--skip): %s %s: %s", result.id, result.status,
                    result.message)
    if blocking:
        listing = "; ".join(f"{r.id}: {r.message}" for r in blocking)
        fixes = "; ".join(f"{r.id}: {r.remediation}" for r in blocking if r.remediation)
        raise DeployError(
            f"the preflight found {len(blocking)} blocking problem"
            f"{'s' if len(blocking) > 1 else ''}: {listing}",
            (f"fix {fixes}; " if fixes else "fix each one; ")
            + "or accept the risk by naming it: --skip " + ",".join(r.id for r in blocking))
    return accepted


class DeployRun:
    """One run of a deployment: how it reports (redacted), when it stops, and the parts every
    deployer shares: steps, the preflight gate, the confirmation and the apply."""

    def __init__(self, emit: EventSink, redactor: Redactor, cancel: threading.Event,
                 cancel_fix: str = RERUN_TO_CONTINUE) -> None:
        self.emit = emit
        self.redactor = redactor
        self.cancel = cancel
        self.cancel_fix = cancel_fix

    def step(self, name: str) -> Step:
        return Step(self.emit, self.redactor, name)

    def check_cancel(self) -> None:
        check_cancel(self.cancel, self.cancel_fix)

    def gated_preflight(self, step: Step, target: Target, answers: Answers, platform: str, *,
                        skip: Sequence[str],
                        gates: Callable[[], Sequence[CheckResult]] | None = None,
                        resolver: Resolver | None = None
                        ) -> tuple[Report, list[CheckResult]]:
        """The preflight step's work: run the checks (and then `gates`, an upgrade's own),
        stop on a blocking one unless `--skip` names it, and say in the step's detail what
        passed and which risks were accepted."""
        from installer.preflight import run_preflight

        report = run_preflight(target, answers, platform, redactor=self.redactor,
                               cancel=self.cancel, on_event=self.emit, resolver=resolver)
        self.check_cancel()
        report, accepted = self.gate(report, gates() if gates is not None else (), skip)
        summary = report.summary()
        step.detail = (f"{summary['pass']} passed, {summary['warn']} warnings, "
                       f"{summary['skip']} skipped" + (
                           f", accepted risks: {', '.join(r.id for r in accepted)}"
                           if accepted else ""))
        return report, accepted

    def gate(self, report: Report, gates: Sequence[CheckResult], skip: Sequence[str]
             ) -> tuple[Report, list[CheckResult]]:
        """Report `gates` like checks, add them to `report`, and stop on a blocking result
        of either unless `--skip` names it. Returns the report and the accepted risks."""
        for gate in gates:
            self.emit(CheckFinished(gate))
        if gates:
            report = replace(report, results=[*report.results, *gates])
        return report, gate_on_preflight(report, skip)

    def confirm(self, plan: PlanT, confirm: Callable[[PlanT], bool] | None) -> None:
        """Ask before changing anything (None = yes); a no changes nothing."""
        if confirm is not None and not confirm(plan):
            raise DeployCancelled("not confirmed: nothing was changed")

    def apply(self, step: Step, plan: RenderPlan, target: Target, *,
              say_notes: bool = True) -> list[str]:
        """Write the rendered files (none when nothing changed), say the plan's notes, and
        tell in the step's detail what was written."""
        from installer.render import apply_render

        written = apply_render(plan, target) if not plan.empty else []
        if say_notes:
            for note in plan.notes:
                self.emit(LogLine(self.redactor(note)))
        step.detail = (f"wrote {len(written)} file(s)" if written
                       else "the files already match the answers")
        return written
