"""Deploying and checking a deployment: the core every front end calls.

`deploy` runs the preflight, renders, launches, waits until the deployment is healthy and
proves it answers over HTTPS; progress flows back as the typed events of events.py, and the
steps run in the scaffold of steps.py. `status` reports the health of what is installed.
Both honour the platform in the answers.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from installer.deploy.events import (
    DeployEvent,
    EventSink,
    LogLine,
    ServiceState,
    StepFinished,
    StepStarted,
    safe_sink,
)
from installer.errors import InstallerError

if TYPE_CHECKING:
    from installer.answers import Answers
    from installer.redact import Redactor
    from installer.render import RenderPlan
    from installer.target import Target


DEFAULT_HEALTH_TIMEOUT = 900.0  # CARTO's services may take minutes on a first start


@dataclass
class DeployResult:
    ok: bool
    url: str  # https://<domain>
    message: str
    remediation: str = ""
    accepted_risks: list[str] = field(default_factory=list)
    changed: bool = False  # False when a re-run changed nothing


@dataclass
class StatusResult:
    healthy: bool
    services: list[ServiceState]
    https: str  # what the HTTPS probe found, one line
    message: str
    facts: list[str] = field(default_factory=list)  # release, package, certificate, last run
    warnings: list[str] = field(default_factory=list)  # e.g. the certificate expires soon


class DeployCancelled(InstallerError):
    """The user declined the confirmation or cancelled: nothing (more) was changed."""

    exit_code = 130


def deploy(answers: Answers, target: Target, *, redactor: Redactor,
           skip: Sequence[str] = (),
           cancel: threading.Event | None = None,
           on_event: EventSink | None = None,
           confirm: Callable[[RenderPlan], bool] | None = None,
           health_timeout: float = DEFAULT_HEALTH_TIMEOUT,
           repair_stuck: bool = False) -> DeployResult:
    """Preflight (a failure stops it unless named in `skip`), render (after `confirm`, None =
    yes), optional `docker load`, launch, wait healthy, verify HTTPS. `repair_stuck`
    (Kubernetes) allows fixing a release left pending without `confirm`.

    Raises DeployError (exit 3) with message and remediation on failure, DeployCancelled when
    `confirm` says no or `cancel` is set, InputError (exit 2) for bad input.
    """
    if answers.platform != "compose":
        from installer.deploy import helm

        result: DeployResult = helm.deploy(answers, target, redactor=redactor, skip=skip,
                                           cancel=cancel, on_event=on_event, confirm=confirm,
                                           repair_stuck=repair_stuck)
        return result
    from installer.deploy.compose import deploy_compose

    return deploy_compose(answers, target, redactor=redactor, skip=skip,
                          cancel=cancel or threading.Event(), emit=safe_sink(on_event),
                          confirm=confirm, health_timeout=health_timeout)


def status(answers: Answers, target: Target, *, redactor: Redactor) -> StatusResult:
    """Health of an installed deployment: containers (or pods) and the HTTPS answer."""
    if answers.platform != "compose":
        from installer.deploy import helm

        result: StatusResult = helm.status(answers, target, redactor=redactor)
        return result
    from installer.deploy.compose import status_compose

    return status_compose(answers, target, redactor=redactor)


__all__ = [
    "DeployCancelled",
    "DeployEvent",
    "DeployResult",
    "EventSink",
    "LogLine",
    "ServiceState",
    "StatusResult",
    "StepFinished",
    "StepStarted",
    "deploy",
    "safe_sink",
    "status",
]
