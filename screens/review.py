"""Exactly what will be written, as a diff against what is there (secret files only
named, never shown), and the answers saved for re-runs and automation."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import on, work
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Static
from textual.worker import Worker, get_current_worker

from installer.safetext import visible
from installer.session import (
    STEP_TITLES,
    STEPS,
    Cancelled,
    describe_error,
    plan_fingerprint,
    run_cancellable,
    step_for_answer,
    step_for_check,
)
from screens.base import StepScreen

if TYPE_CHECKING:
    from installer.render import RenderPlan


class PlanReady(Message):
    def __init__(self, worker: Worker[Any], plan: Any = None,
                 error: BaseException | None = None) -> None:
        super().__init__()
        self.worker = worker
        self.plan = plan
        self.error = error


def relative(path: str, directory: str) -> str:
    """A path inside the deployment directory, shown relative to it (80 columns are few)."""
    prefix = directory.rstrip("/") + "/"
    return path[len(prefix):] if directory and path.startswith(prefix) else path


def diff_text(diff: str, directory: str = "") -> Text:
    """A unified diff, coloured; file names relative to the deployment directory."""
    text = Text(no_wrap=False)
    for line in diff.splitlines():
        if line.startswith(("+++ ", "--- ")):
            line = line[:4] + relative(line[4:], directory)
            style = "bold"
        elif line.startswith("@@"):
            style = "cyan"
        elif line.startswith("+"):
            style = "green"
        elif line.startswith("-"):
            style = "red"
        else:
            style = ""
        text.append(visible(line) + "\n", style=style)
    return text


class ReviewScreen(StepScreen):
    STEP = "review"
    NEXT_LABEL = "Deploy ▶"
    HINT = "↑↓ PgUp PgDn scroll the changes. Deploy (Ctrl+N) writes them and starts CARTO."
    BINDINGS = [Binding("g", "go_to_problem", "Go to the step")]

    # The step where the problem Review found is fixed (g goes there).
    problem_step: str | None = None

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "go_to_problem":
            return self.problem_step is not None
        return super().check_action(action, parameters)

    def action_go_to_problem(self) -> None:
        if self.problem_step is not None:
            self.app.goto(self.problem_step)

    def compose_body(self) -> Iterable[Widget]:
        with VerticalScroll(id="review-diff", can_focus=True):
            yield Static("Working out what would change…", id="review-summary")
            yield Static("", id="review-diff-text")

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#next").disabled = True
        if self.live:
            try:
                self.saved_to = str(self.state.save_answers())
            except OSError as exc:
                self.saved_to = ""
                self.app.notify(f"Could not save the answers file: {exc}", severity="error")
            self.set_status(Text("Reading the current files…", style="cyan"))
            self._checks_worker = self._plan()
        else:
            self.saved_to = str(self.state.answers_path)
            self.show_plan(self.state.reviewed_plan)

    @work(thread=True, exclusive=True, exit_on_error=False, group="checks")
    def _plan(self) -> None:
        worker = get_current_worker()
        cancel = worker.cancelled_event
        try:
            plan = run_cancellable(lambda: self.state.plan(self.host_key_confirmer(cancel),
                                                           self.passphrase_asker(cancel)),
                                   cancel)
        except Cancelled:
            return
        except Exception as exc:
            self.post_message(PlanReady(worker, error=exc))
            return
        self.post_message(PlanReady(worker, plan))

    def cancel_work(self) -> bool:
        if not self._cancel_checks_worker():
            return False
        self.set_status(Text("Stopped.", style="yellow"))
        return True

    @on(PlanReady)
    def _plan_ready(self, message: PlanReady) -> None:
        if message.worker is not self._checks_worker:
            return
        if message.error is not None:
            text, fix = describe_error(message.error)
            summary = Text(f"✘ {text}\n" + (f"Fix: {fix}\n" if fix else ""), style="red")
            paths = [p.path for p in getattr(message.error, "problems", [])] or [
                getattr(message.error, "path", "")]
            steps = [s for s in dict.fromkeys(step_for_answer(p) for p in paths if p) if s]
            if steps:
                self.problem_step = steps[0]
                for step in steps:
                    summary.append(f"→ set on step {STEPS.index(step) + 1} · "
                                   f"{STEP_TITLES[step]}\n", style="bold")
                self.set_hint(f"Press g to go to {STEP_TITLES[steps[0]]} and fix it, then "
                              "come back with Ctrl+N.")
                self.refresh_bindings()
            else:
                self.set_hint("Go Back to the step concerned (Esc), then return here.")
            self.query_one("#review-summary", Static).update(summary)
            self.set_status(Text("Cannot deploy with these answers.", style="red"))
            return
        self.state.reviewed_plan = message.plan
        self.state.reviewed_fingerprint = plan_fingerprint(message.plan)
        self.show_plan(message.plan)

    def show_plan(self, plan: RenderPlan | None) -> None:
        redactor = self.state.redactor
        summary = Text()
        if plan is None:
            summary.append("Nothing to show.", style="dim")
            self.query_one("#review-summary", Static).update(summary)
            return
        if plan.empty:
            summary.append("The configuration files are already as they should be: nothing "
                           "will be rewritten. Deploy starts (or keeps) CARTO and verifies it.\n")
        else:
            directory = getattr(plan, "directory", "")
            summary.append(f"{len(plan.changes)} file(s) to write", style="bold")
            summary.append(f" in {redactor(directory)}" if directory else "")
            summary.append(" (secret ones are never shown):\n")
            for change in plan.changes:
                summary.append(" + " if change.before is None else " ~ ",
                               style="green" if change.before is None else "yellow")
                summary.append(redactor(relative(change.describe(), directory)))
                if change.secret:
                    summary.append("  [secret]", style="dim")
                summary.append("\n")
        directory = getattr(plan, "directory", "")
        for removed in getattr(plan, "removals", []):
            summary.append(" - ", style="red")
            summary.append(f"{redactor(relative(removed, directory))} (removed: no longer "
                           "used)\n")
        for backup in plan.backups:
            summary.append(f"  backup  {redactor(backup)}\n", style="dim")
        for note in plan.notes:
            summary.append(f"  note: {redactor(note)}\n", style="italic")
        if self.state.accepted_risks:
            summary.append("Accepted risks: ", style="yellow")
            summary.append(", ".join(
                f"{risk} ({STEP_TITLES[step]})" if (step := step_for_check(risk)) else risk
                for risk in self.state.accepted_risks) + "\n", style="yellow")
        if self.saved_to:
            summary.append(f"Answers saved to {self.saved_to}", style="dim")
            if self.state.kept_other_platform is not None:
                summary.append(f" ({self.state.kept_other_platform}, which holds another "
                               "platform's answers, was kept)", style="dim")
            unsaved = self.state.unsaved_secrets()
            if unsaved:
                summary.append(" (typed secrets are not saved: for re-runs give "
                               + ", ".join(p + "_env" for p in unsaved) + ")", style="dim")
        summary.rstrip()
        self.query_one("#review-summary", Static).update(summary)
        diff = plan.diff(redactor)
        self.state.reviewed_diff = diff
        self.query_one("#review-diff-text", Static).update(
            diff_text(diff, getattr(plan, "directory", "")) if diff
            else Text("No differences.", style="dim"))
        self.query_one("#review-diff").focus()
        self.query_one("#next").disabled = False
        self.set_status(Text("Ready to deploy.", style="green"))

    def action_next(self) -> None:
        if self.query_one("#next").disabled:
            return
        self.app.advance(self.STEP)
