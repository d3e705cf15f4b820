"""The scaffold both deployers (Compose and Helm) run their steps in: a step reported from
start to end, the check that the person has not cancelled, and the preflight gate step."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from installer.deploy import (
    DeployCancelled,
    EventSink,
    StepFinished,
    StepStarted,
    gate_on_preflight,
)

if TYPE_CHECKING:
    from installer.answers import Answers
    from installer.checks.base import CheckResult, Resolver
    from installer.redact import Redactor
    from installer.report import Report
    from installer.target import Target

log = logging.getLogger("installer.deploy")

RERUN_TO_CONTINUE = "re-run `carto-installer deploy` to continue"


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


def gated_preflight(step: Step, target: Target, answers: Answers, platform: str, *,
                    skip: Sequence[str], cancel: threading.Event,
                    cancel_fix: str = RERUN_TO_CONTINUE, resolver: Resolver | None = None
                    ) -> tuple[Report, list[CheckResult]]:
    """The preflight step's work: run the checks, stop on a blocking one unless `--skip`
    names it, and say in the step's detail what passed and which risks were accepted."""
    from installer.preflight import run_preflight

    report = run_preflight(target, answers, platform, redactor=step.redactor, cancel=cancel,
                           on_event=step.emit, resolver=resolver)
    check_cancel(cancel, cancel_fix)
    accepted = gate_on_preflight(report, skip)
    summary = report.summary()
    step.detail = (f"{summary['pass']} passed, {summary['warn']} warnings, "
                   f"{summary['skip']} skipped" + (
                       f", accepted risks: {', '.join(r.id for r in accepted)}"
                       if accepted else ""))
    return report, accepted
