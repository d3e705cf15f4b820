"""What a deployment (Compose or Helm, deploy or upgrade) reports while it runs, and the one
mapping from each kind of report to the front end's way of showing it.

A front end (the wizard's deploy screen, the plain prompts, the CLI) implements `DeployView`,
one method per event type, and hands each event to `show`. `show` is the only place that
tells the event types apart, and it names every type of `DeployEvent` (mypy proves it with
`assert_never`), so a new event type cannot reach a front end that has no rendering for it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, assert_never, get_args

from installer.checks.engine import CheckFinished, CheckStarted
from installer.safetext import visible, visible_line

log = logging.getLogger("installer.deploy")


@dataclass(frozen=True)
class StepStarted:
    name: str  # one of installer.deploy.steps' step names


@dataclass(frozen=True)
class StepFinished:
    name: str
    ok: bool
    detail: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "detail", visible(self.detail))


@dataclass(frozen=True)
class ServiceState:
    name: str  # per container / pod
    state: str
    health: str = ""

    def __post_init__(self) -> None:
        for name in ("name", "state", "health"):
            object.__setattr__(self, name, visible_line(getattr(self, name)))


@dataclass(frozen=True)
class LogLine:
    text: str  # already redacted; control characters are made visible here

    def __post_init__(self) -> None:
        # Container log lines are the outside world's text, echoed to the terminal.
        object.__setattr__(self, "text", visible(self.text))


DeployEvent = StepStarted | StepFinished | ServiceState | LogLine | CheckStarted | CheckFinished
EventSink = Callable[[DeployEvent], None]

# Every event type a deployment can emit, read from the union above (tests iterate it).
EVENT_TYPES: tuple[type[DeployEvent], ...] = get_args(DeployEvent)


class DeployView(Protocol):
    """How one front end shows each kind of deploy event."""

    def step_started(self, event: StepStarted) -> None: ...

    def step_finished(self, event: StepFinished) -> None: ...

    def service_state(self, event: ServiceState) -> None: ...

    def log_line(self, event: LogLine) -> None: ...

    def check_started(self, event: CheckStarted) -> None: ...

    def check_finished(self, event: CheckFinished) -> None: ...


def show(event: DeployEvent, view: DeployView) -> None:
    """Hand `event` to the method of `view` that shows its kind: the one mapping."""
    if isinstance(event, StepStarted):
        view.step_started(event)
    elif isinstance(event, StepFinished):
        view.step_finished(event)
    elif isinstance(event, ServiceState):
        view.service_state(event)
    elif isinstance(event, LogLine):
        view.log_line(event)
    elif isinstance(event, CheckStarted):
        view.check_started(event)
    elif isinstance(event, CheckFinished):
        view.check_finished(event)
    else:
        assert_never(event)


def safe_sink(on_event: EventSink | None) -> EventSink:
    """`on_event`, made harmless: a front end's failure is logged, never raised."""
    def emit(event: DeployEvent) -> None:
        if on_event is None:
            return
        try:
            on_event(event)
        except Exception:  # a front end's display bug must not stop a deployment
            log.exception("event handler failed")

    return emit


__all__ = ["EVENT_TYPES", "DeployEvent", "DeployView", "EventSink", "LogLine", "ServiceState",
           "StepFinished", "StepStarted", "safe_sink", "show"]
