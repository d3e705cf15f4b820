"""The plain prompts' deploy: each deploy event as a line (installer.deploy.events.DeployView)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from installer.checks.base import Status
from installer.checks.engine import CheckFinished, CheckStarted
from installer.deploy.events import LogLine, ServiceState, StepFinished, StepStarted

if TYPE_CHECKING:
    from screens.plain import PlainWizard


class PlainDeployView:
    """The deploy's events as the plain prompts' lines (installer.deploy.events.DeployView)."""

    def __init__(self, wizard: PlainWizard) -> None:
        self.wizard = wizard
        self.services: dict[str, tuple[str, str]] = {}  # shown once per change

    def check_started(self, event: CheckStarted) -> None:
        """Nothing: a check shows when it finishes."""

    def check_finished(self, event: CheckFinished) -> None:
        r = event.result
        if r.status not in (Status.PASS, Status.SKIP):
            # Already explained on its step; the fix is repeated only if it is new.
            self.wizard.show_result(r, detail=r.id not in self.wizard.state.results)

    def step_started(self, event: StepStarted) -> None:
        self.wizard.say(f"▶ {event.name}", "1")

    def step_finished(self, event: StepFinished) -> None:
        mark = "✔" if event.ok else "✘"
        self.wizard.say(f"{mark} {event.name}" + (f": {event.detail}" if event.detail else ""),
                        "32" if event.ok else "31")

    def service_state(self, event: ServiceState) -> None:
        state = (event.state, event.health)
        if self.services.get(event.name) != state:
            self.services[event.name] = state
            self.wizard.say(f"    {event.name}: {event.state}"
                            + (f" ({event.health})" if event.health else ""), "2")

    def log_line(self, event: LogLine) -> None:
        self.wizard.say(f"    {event.text}", "2")
