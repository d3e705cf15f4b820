"""The deployment with visible progress: each step, each service, the log, the
elapsed time; on failure the reason and the fix, on success the URL and what to do next."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from rich.text import Text
from textual import on, work
from textual.containers import Horizontal
from textual.message import Message
from textual.widget import Widget
from textual.widgets import DataTable, RichLog, Static
from textual.worker import Worker, get_current_worker

from installer.checks.base import Status
from installer.checks.engine import CheckFinished, CheckStarted
from installer.deploy import DeployResult
from installer.deploy.events import (
    DeployEvent,
    LogLine,
    ServiceState,
    StepFinished,
    StepStarted,
    show,
)
from installer.deploy.steps import PREFLIGHT, steps_for
from installer.safetext import visible
from installer.session import describe_error
from screens.base import StepScreen, ask_from_thread
from screens.widgets.check_list import MARKS, SPINNER
from screens.widgets.nav_button import NavButton

if TYPE_CHECKING:
    from installer.render import RenderPlan
    from screens.app import WizardApp

NEXT_STEPS = (
    "Open {url} and sign in with your CARTO account.",
    "Re-run or upgrade: carto-installer deploy --answers {answers}",
    "Health: carto-installer status --answers {answers}",
)


def shown_path(path: Path) -> str:
    """A path as short as it can be shown: relative to the working directory when inside."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


class DeployEventMessage(Message):
    def __init__(self, worker: Worker[None], event: DeployEvent) -> None:
        super().__init__()
        self.worker = worker
        self.event = event


class DeployEnded(Message):
    def __init__(self, worker: Worker[None], result: DeployResult | None = None,
                 error: BaseException | None = None, cancelled: bool = False) -> None:
        super().__init__()
        self.worker = worker
        self.result = result
        self.error = error
        self.cancelled = cancelled


class DeployScreen(StepScreen):
    STEP = "deploy"
    NEXT_LABEL = "Finish"
    HINT = "Ctrl+C stops the deployment at a safe point."

    def compose_body(self) -> Iterable[Widget]:
        with Horizontal(id="deploy-top"):
            yield Static("", id="deploy-steps")
            table: DataTable[str] = DataTable(id="deploy-services", cursor_type="none",
                                              zebra_stripes=False)
            yield table
        yield RichLog(id="deploy-log", wrap=True, markup=False, highlight=False)
        yield Static("", id="deploy-outcome")

    @property
    def step_names(self) -> tuple[str, ...]:
        return steps_for(self.state.answers.platform)

    @property
    def wizard(self) -> WizardApp:
        """The app this screen runs in, with the outcome it reports when leaving."""
        from screens.app import WizardApp

        app = self.app
        assert isinstance(app, WizardApp)
        return app

    def on_mount(self) -> None:
        self.steps: dict[str, tuple[str, str]] = {name: ("pending", "")
                                                  for name in self.step_names}
        self.checks = {s: 0 for s in Status}
        self.deploying = False
        self.finished_ok: bool | None = None
        self._started = 0.0
        self._elapsed = 0.0
        self._frame = 0
        self._done = threading.Event()
        table = self.query_one("#deploy-services", DataTable)
        table.add_column("Service", key="service", width=18)
        table.add_column("State", key="state", width=10)
        table.add_column("Health", key="health", width=8)
        self.query_one("#deploy-outcome").display = False
        super().on_mount()
        self.query_one("#next").disabled = True
        self.query_one("#back").disabled = True
        self._draw_steps()
        if self.live:
            self.start_deploy()

    # --- running -------------------------------------------------------------------------

    def start_deploy(self) -> None:
        self.steps = {name: ("pending", "") for name in self.step_names}
        self.checks = {s: 0 for s in Status}
        self.deploying = True
        self.finished_ok = None
        self._started = time.monotonic()
        self.query_one("#deploy-outcome").display = False
        self.query_one("#next").disabled = True
        self.query_one("#back").disabled = True
        self.query_one("#next", NavButton).label = self.NEXT_LABEL
        self.query_one(RichLog).write(Text("Deployment started.", style="bold"))
        self._ticker = self.set_interval(0.2, self._tick)
        self._checks_worker = self._deploy()

    @work(thread=True, exclusive=True, exit_on_error=False, group="deploy")
    def _deploy(self) -> None:
        worker = get_current_worker()
        cancel = worker.cancelled_event
        try:
            def post(event: DeployEvent) -> None:
                self.post_message(DeployEventMessage(worker, event))

            result = self.state.deploy(cancel=cancel, on_event=post,
                                       confirm=lambda plan: self._confirm_plan(plan, cancel))
        except BaseException as exc:  # every outcome must reach the screen
            self.post_message(DeployEnded(worker, error=exc, cancelled=cancel.is_set()))
        else:
            self.post_message(DeployEnded(worker, result=result, cancelled=cancel.is_set()))

    def _confirm_plan(self, plan: RenderPlan, cancel: threading.Event) -> bool:
        """The deploy asks before writing: yes when it is what the Review step showed."""
        from screens.review import relative
        from screens.widgets.modals import ConfirmModal

        needed = self.state.confirmation_needed(plan)
        if not needed.needed:
            return True
        directory = plan.directory
        if not needed.changed_since_review:
            body = Text("Before deploying, the installer needs to:\n\n")
        else:
            body = Text("The files on the target changed since you reviewed them. Writing "
                        "now would change:\n\n")
            for change in plan.changes[:8]:
                body.append(f"  {relative(change.describe(), directory)}\n")
            if len(plan.changes) > 8:
                body.append(f"  … and {len(plan.changes) - 8} more\n")
        for action in needed.actions:
            body.append(f"  {self.state.redactor(action.text)}\n", style="bold")
        for note in plan.notes:
            body.append(f"  note: {self.state.redactor(note)}\n", style="italic")
        body.append("\nStop to leave everything as it is.", style="dim")
        answer = ask_from_thread(
            self.app, lambda: ConfirmModal("Go ahead?", body, yes="Go ahead",
                                           no="Stop"), cancel)
        return answer is True

    def cancel_work(self) -> bool:
        worker = self._checks_worker
        if not self.deploying or worker is None:
            return False
        worker.cancel()
        self.query_one(RichLog).write(Text("Stopping at the next safe point…", style="yellow"))
        self.set_status(Text("Stopping…", style="yellow"))
        return True

    # --- events ---------------------------------------------------------------------------

    @on(DeployEventMessage)
    def _event(self, message: DeployEventMessage) -> None:
        if message.worker is self._checks_worker:
            self.show_event(message.event)

    def show_event(self, event: DeployEvent) -> None:
        """Show one progress event of the deploy (a step, a service, a log line, a check):
        the core's one mapping picks the method below that shows its kind."""
        show(event, self)

    # The DeployView methods (installer.deploy.events), one per kind of event.

    def check_started(self, event: CheckStarted) -> None:
        """Nothing: a check shows when it finishes."""

    def check_finished(self, event: CheckFinished) -> None:
        r = event.result
        self.checks[r.status] += 1
        if r.status not in (Status.PASS, Status.SKIP):
            mark, colour = MARKS[r.status]
            accepted = " (risk accepted)" if self.state.is_accepted(r.id) else ""
            self.query_one(RichLog).write(
                Text(visible(f"{mark} {r.id}: {r.message}{accepted}"), style=colour))
        self._draw_steps()

    def step_started(self, event: StepStarted) -> None:
        self.steps[event.name] = ("running", "")
        self.query_one(RichLog).write(Text(f"▶ {event.name}", style="bold"))
        self._draw_steps()

    def step_finished(self, event: StepFinished) -> None:
        self.steps[event.name] = ("ok" if event.ok else "failed", event.detail)
        if event.detail:
            self.query_one(RichLog).write(
                Text(visible(f"{'✔' if event.ok else '✘'} {event.name}: {event.detail}"),
                     style="green" if event.ok else "red"))
        self._draw_steps()

    def service_state(self, event: ServiceState) -> None:
        self._service(event.name, event.state, event.health)
        self._draw_steps()

    def log_line(self, event: LogLine) -> None:
        self.query_one(RichLog).write(Text(visible(self.state.redactor(event.text))))
        self._draw_steps()

    def _service(self, name: str, state: str, health: str) -> None:
        table = self.query_one("#deploy-services", DataTable)
        colour = {"running": "green", "exited": "yellow", "dead": "red"}.get(state, "")
        health_colour = {"healthy": "green", "unhealthy": "red", "starting": "cyan"}.get(health, "")
        cells = (Text(name), Text(state, style=colour), Text(health or "-", style=health_colour))
        if name in table.rows:
            table.update_cell(name, "state", cells[1])
            table.update_cell(name, "health", cells[2])
        else:
            table.add_row(*cells, key=name)

    def _draw_steps(self) -> None:
        text = Text()
        width = max(20, self.query_one("#deploy-steps").size.width or 36)
        for name, (state, detail) in self.steps.items():
            line = Text(no_wrap=True)
            if state == "running":
                line.append(f" {SPINNER[self._frame % len(SPINNER)]} ", style="cyan")
            elif state == "ok":
                line.append(" ✔ ", style="green")
            elif state == "failed":
                line.append(" ✘ ", style="red")
            elif state == "skipped":
                line.append(" - ", style="dim")
            else:
                line.append(" · ", style="dim")
            line.append(f"{name:<13}", style="bold" if state == "running" else "")
            if name == PREFLIGHT and any(self.checks.values()):
                c = self.checks
                line.append(f"{c[Status.PASS]}✔ {c[Status.WARN]}! "
                            f"{c[Status.FAIL] + c[Status.ERROR]}✘", style="dim")
            elif detail:
                line.append(detail, style="dim")
            line.truncate(width - 1, overflow="ellipsis")  # one line per step
            text.append_text(line)
            text.append("\n")
        text.rstrip()
        self.query_one("#deploy-steps", Static).update(text)

    def _tick(self) -> None:
        self._frame += 1
        if self.deploying:
            self._elapsed = time.monotonic() - self._started
        minutes, seconds = divmod(int(self._elapsed), 60)
        label = {None: "Deploying", True: "Deployed", False: "Stopped"}[self.finished_ok]
        if self.deploying:
            self.set_status(Text(f"{label} · elapsed {minutes}:{seconds:02d}", style="cyan"))
        self._draw_steps()

    @on(DeployEnded)
    def _ended(self, message: DeployEnded) -> None:
        if message.worker is not self._checks_worker:
            return
        self.deploying = False
        self._ticker.stop()
        self._elapsed = time.monotonic() - self._started
        self.show_outcome(message.result, message.error, message.cancelled)

    def show_outcome(self, result: DeployResult | None, error: BaseException | None,
                     cancelled: bool) -> None:
        """The end of a deployment: the URL and next steps, or the reason and the fix."""
        for name, (state, _detail) in self.steps.items():
            if state == "pending":
                self.steps[name] = ("skipped", "")
            elif state == "running":
                self.steps[name] = ("failed", "stopped")
        outcome = self.query_one("#deploy-outcome", Static)
        outcome.display = True
        minutes, seconds = divmod(int(self._elapsed), 60)
        elapsed = f"{minutes}:{seconds:02d}"
        text = Text()
        ok = error is None and result is not None and result.ok
        self.finished_ok = ok
        outcome.set_class(ok, "-ok")
        outcome.set_class(not ok, "-failed")
        nxt = self.query_one("#next", NavButton)
        if ok:
            assert result is not None
            self.wizard.deployed = True
            answers = shown_path(self.state.answers_path)
            text.append(f"✔ CARTO is running at {result.url}\n", style="bold green")
            if not result.changed:
                text.append("Nothing needed changing: it was already deployed like this.\n")
            for line in NEXT_STEPS:
                text.append(" • " + line.format(url=result.url, answers=answers) + "\n")
            nxt.label = "Finish"
            self.set_status(Text(f"Deployed in {elapsed}.", style="green"))
            self.set_hint("Ctrl+N (Finish) leaves the installer.")
            self.state.clear_session()
            self.wizard.farewell[:] = [
                f"CARTO is running at {result.url}",
                f"Answers saved to {answers}: carto-installer deploy --answers {answers} "
                "re-runs it.",
            ]
            if result.accepted_risks:
                self.wizard.farewell.append(
                    "Accepted risks: " + ", ".join(result.accepted_risks))
        else:
            if cancelled:
                message, fix = ("Deployment stopped at your request.",
                                "files written so far are complete; Retry picks up from there")
            elif error is not None:
                message, fix = describe_error(error)
            else:
                assert result is not None  # the worker ends with a result or an error
                message, fix = result.message, result.remediation
            text.append(f"✘ {self.state.redactor(message)}\n", style="bold red")
            if fix:
                text.append("Fix: ", style="bold")
                text.append(self.state.redactor(fix) + "\n")
            text.append("Retry (Ctrl+N) runs it again; Esc goes back to change answers.",
                        style="dim")
            nxt.label = "Retry"
            self.set_hint("Ctrl+N retries · Esc goes back to change the answers · Ctrl+Q quits.")
            self.set_status(Text(f"{'Stopped' if cancelled else 'Failed'} after {elapsed}.",
                                 style="red"))
            self.wizard.deploy_failed = True
            self.wizard.farewell[:] = [
                f"Deployment {'stopped' if cancelled else 'failed'}: {message}",
            ] + ([f"fix: {fix}"] if fix else [])
        text.rstrip()
        outcome.update(text)
        nxt.disabled = False
        self.query_one("#back").disabled = ok
        self._draw_steps()

    # --- navigation -----------------------------------------------------------------------

    def action_next(self) -> None:
        if self.deploying or self.query_one("#next").disabled:
            return
        if self.finished_ok:
            self.wizard.finish(0)
            return
        self.query_one(RichLog).clear()
        self.query_one("#deploy-services", DataTable).clear()
        self.start_deploy()

    def action_back(self) -> None:
        if self.deploying or self.finished_ok:
            return
        super().action_back()
