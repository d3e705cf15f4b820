"""What an operation (backup, restore, support bundle, uninstall) reports while it runs, and
the one mapping from each kind of report to the front end's way of showing it.

An operation reports the deployment's own step and log events plus `Progress` for long
transfers; the front ends that manage an installation also run upgrades, which report every
deploy event. So an `OperateView` is a `DeployView` with one more method, and
`show_operation` adds the one more type to `installer.deploy.events.show` (mypy proves it
names every type of `OperationEvent` with `assert_never`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, assert_never, get_args

from installer.deploy.events import (
    DeployEvent,
    DeployView,
    LogLine,
    StepFinished,
    StepStarted,
    show,
)


@dataclass(frozen=True)
class Progress:
    """A long step moving on: `done` of `total` bytes (total 0 when unknown)."""

    step: str
    done: int
    total: int


# What an Installation emits (backup, restore, support bundle, uninstall).
OperateEvent = StepStarted | StepFinished | LogLine | Progress
Sink = Callable[[OperateEvent], None]

# What a front end that manages an installation is handed: an operation's or an upgrade's.
OperationEvent = DeployEvent | Progress

# Every type an operate front end renders, read from the union above (tests iterate it).
OPERATION_EVENT_TYPES: tuple[type[OperationEvent], ...] = get_args(OperationEvent)


class OperateView(DeployView, Protocol):
    """How one front end shows each kind of event of an operation or an upgrade."""

    def progress(self, event: Progress) -> None: ...


def show_operation(event: OperationEvent, view: OperateView) -> None:
    """Hand `event` to the method of `view` that shows its kind: the one mapping (the deploy
    events through installer.deploy.events.show)."""
    if isinstance(event, Progress):
        view.progress(event)
    elif isinstance(event, DeployEvent):
        show(event, view)
    else:
        assert_never(event)


__all__ = ["OPERATION_EVENT_TYPES", "OperateEvent", "OperateView", "OperationEvent",
           "Progress", "Sink", "show_operation"]
