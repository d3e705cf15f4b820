"""What every wizard step shares: header, hint line, Back/Next bar, and running checks.

Checks run in a thread worker that posts the engine's events back as messages; the worker's
cancelled event is the `cancel` handed to the core, so Ctrl-C, Back or Quit stops the checks.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from rich.text import Text
from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen, Screen
from textual.timer import Timer
from textual.widget import Widget
from textual.widgets import Static
from textual.worker import Worker, get_current_worker

from installer.session import (
    STEP_CATEGORIES,
    STEP_TITLES,
    STEPS,
    Cancelled,
    Handoff,
    Session,
    describe_error,
)
from screens.widgets.keybar import KeyBar
from screens.widgets.nav_button import NavButton

# Forms and check lists are imported when a step uses them: the first screen has neither,
# and the less it imports the sooner it is interactive.
if TYPE_CHECKING:
    from textual import getters
    from textual.dom import DOMNode
    from textual.events import DescendantFocus
    from textual.widgets import OptionList

    from installer.checks.base import CheckResult
    from installer.checks.engine import CheckFinished, CheckStarted
    from screens.app import WizardApp
    from screens.widgets.check_list import CheckList
    from screens.widgets.field_input import FieldInput


class CheckEvent(Message):
    def __init__(self, worker: Worker[Any], event: CheckStarted | CheckFinished) -> None:
        super().__init__()
        self.worker = worker
        self.event = event


class ChecksEnded(Message):
    """A check run ended: `results` on success, else `error`, else it was cancelled."""

    def __init__(self, worker: Worker[Any], results: list[CheckResult] | None = None,
                 error: BaseException | None = None, then_next: bool = False) -> None:
        super().__init__()
        self.worker = worker
        self.results = results
        self.error = error
        self.then_next = then_next


Answer = TypeVar("Answer")  # what a modal screen gives back
AppResult = TypeVar("AppResult")  # what the app returns when it exits


def ask_from_thread(app: App[AppResult], make_screen: Callable[[], ModalScreen[Answer]],
                    cancel: threading.Event) -> Answer | None:
    """Show a modal from a worker thread and wait for its answer (None if cancelled)."""
    answer: Handoff[Answer | None] = Handoff()
    screen = make_screen()
    app.call_from_thread(app.push_screen, screen, answer.give)
    try:
        return answer.wait(cancel)
    except Cancelled:
        app.call_from_thread(lambda: screen.dismiss(None) if screen.is_current else None)
        return None


def answers_key(state: Session) -> str:
    """A fingerprint of everything the checks read, to know when results went stale."""
    import hashlib

    import yaml

    from installer.answers import answers_to_dict

    data = answers_to_dict(state.answers)
    secrets = sorted(hashlib.sha256(s.value.encode()).hexdigest() for s in state.answers.secrets())
    text = yaml.safe_dump([data, secrets], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


class StepHeader(Static):
    DEFAULT_CSS = """
    StepHeader {
        height: 1;
        width: 1fr;
        background: $primary;
        color: $text;
        padding: 0 1;
    }
    """

    def __init__(self, step: str) -> None:
        number = STEPS.index(step) + 1
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append("CARTO Self-Hosted installer", style="bold")
        text.append(f"   Step {number} of {len(STEPS)} · {STEP_TITLES[step]}")
        super().__init__(text)


class StepScreen(Screen[None]):
    """A wizard step. Subclasses set STEP and implement compose_body, and may override
    load/commit/validate and the check hooks."""

    STEP: ClassVar[str] = ""
    AUTO_CHECKS: ClassVar[bool] = False  # run this step's checks when it is shown
    # Re-run this step's checks once typing pauses for RECHECK_DELAY s and the form is valid.
    RECHECK_AS_YOU_TYPE: ClassVar[bool] = False
    RECHECK_DELAY: ClassVar[float] = 0.6
    NEXT_LABEL: ClassVar[str] = "Next ▶"
    HINT: ClassVar[str] = ""  # the hint line when nothing more specific applies

    if TYPE_CHECKING:
        # Steps only ever run inside the wizard: its navigation (goto, advance, go_back)
        # type-checks through this, while at run time Textual's own `app` property serves.
        app = getters.app(WizardApp)

    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("ctrl+n", "next", "Next"),
        Binding("f1", "help", "Help"),
        Binding("question_mark", "help", "Help", show=False),
        Binding("ctrl+r", "rerun_all", "Re-run checks"),
    ]

    def __init__(self, state: Session, *, live: bool = True) -> None:
        # No id: a step shown again (Back then Next) may meet its previous screen still
        # being removed, and two screens may not share an id.
        super().__init__(classes=f"step-{self.STEP}")
        self.state = state
        self.live = live
        self._checks_worker: Worker[Any] | None = None
        self._recheck_timer: Timer | None = None
        self._blocking_hint = False  # the hint says which checks block Next

    # --- layout ------------------------------------------------------------------------

    @property
    def default_hint(self) -> str:
        """The hint line when nothing more specific applies: HINT, unless a step computes it."""
        return self.HINT

    def compose(self) -> ComposeResult:
        yield StepHeader(self.STEP)
        with Vertical(id="body"):
            yield from self.compose_body()
        yield Static("", id="hint")
        with Horizontal(id="nav"):
            yield NavButton("◀ Back", id="back", disabled=self.STEP == STEPS[0])
            yield Static("", id="status")
            yield NavButton(self.NEXT_LABEL, id="next", variant="primary")
        yield KeyBar()

    def compose_body(self) -> Iterable[Widget]:
        return ()

    def on_mount(self) -> None:
        self.set_hint(self.default_hint)
        self.refresh_checks_view()
        if self.live and self.AUTO_CHECKS and self.checks_wanted():
            self.start_checks()

    # --- hint and status lines ---------------------------------------------------------

    def set_hint(self, text: str | Text, error: bool = False) -> None:
        hint = self.query_one("#hint", Static)
        hint.update(text)
        hint.set_class(error, "-error")

    def show_problem(self, field: FieldInput | None, message: str) -> None:
        """Why Next did not go on: the reason on the hint line, the field focused. The field
        remembers it was refused, so its hint shows the error (not its help) even when
        empty, until it is edited."""
        self.set_hint(Text("✘ " + message), error=True)
        if field is not None:
            field.refused = message
            field.input.focus()

    def set_status(self, text: str | Text) -> None:
        self.query_one("#status", Static).update(text)

    def action_help(self) -> None:
        """The step's help panel: what it asks, where to find the values, the vendor's rules."""
        from screens.help import step_help
        from screens.widgets.modals import HelpModal

        text = Text()
        for heading, body in step_help(self.STEP, self.state.answers.platform):
            if heading:
                text.append(f"\n{heading}: ", style="bold")
                text.append(body)
            else:
                text.append(body + "\n")
        text.append("\n\nKeys: Ctrl+N next · Esc back · Tab moves · Ctrl+O browses for a "
                    "file · Ctrl+Q quits (your answers are kept)", style="dim")
        self.app.push_screen(HelpModal(f"Help · {STEP_TITLES[self.STEP]}", text))

    def on_descendant_focus(self, event: DescendantFocus) -> None:
        field = self._field_of(self.focused)
        if field is not None:
            self._hint_for(field)
        elif not self.query_one("#hint", Static).has_class("-error"):
            self.set_hint(self._focus_hint())

    def _focus_hint(self) -> str:
        """The hint for what has focus: a check list says what its keys do, and, where the
        step has no detail pane, that Enter opens a check's whole message and fix."""
        check_list = self._check_list()
        if check_list is not None and self.focused is check_list:
            from screens.widgets.check_list import CheckDetail

            enter = "" if self.query(CheckDetail) else "Enter: full message and fix · "
            return (f"↑↓ select · {enter}r re-run · a accept a failed check's risk · "
                    "A accept all shown")
        return self.default_hint

    def _field_of(self, widget: Widget | None) -> FieldInput | None:
        if "screens.widgets.field_input" not in sys.modules:
            return None  # no form on this step
        from screens.widgets.field_input import FieldInput

        node: DOMNode | None = widget
        while node is not None and not isinstance(node, Screen):
            if isinstance(node, FieldInput):
                return node
            node = node.parent
        return None

    def _hint_for(self, field: FieldInput) -> None:
        error = field.error
        if field.refused is not None:
            self.set_hint(Text("✘ " + field.refused), error=True)
        elif error is not None and field.text:
            self.set_hint(Text("✘ " + error), error=True)
        elif field.unusable is not None and field.text:
            self.set_hint(Text("✘ " + field.unusable), error=True)
        else:
            extra = "  (Ctrl+O to browse)" if field.spec.path_kind == "local" else ""
            if field.spec.choices:
                extra = f"  One of: {', '.join(field.spec.choices)} (→ completes)"
            self.set_hint((field.help or field.spec.label) + extra)

    def on_field_input_changed(self, event: FieldInput.Changed) -> None:
        if self._field_of(self.focused) is event.field_input:
            self._hint_for(event.field_input)
        self.form_changed(event.field_input)

    def form_changed(self, field: FieldInput) -> None:
        """A field's text changed (already validated)."""
        if self.RECHECK_AS_YOU_TYPE:
            self.schedule_recheck()

    def schedule_recheck(self) -> None:
        """Re-check once the user pauses typing (each keystroke restarts the wait)."""
        if not self.live:
            return
        if self._recheck_timer is not None:
            self._recheck_timer.stop()
        self._recheck_timer = self.set_timer(self.RECHECK_DELAY, self._recheck)

    def _recheck(self) -> None:
        self._recheck_timer = None
        if self.validate() is not None or self.busy:
            return
        self.commit()
        if self.checks_stale():
            self.start_checks()

    # --- navigation --------------------------------------------------------------------

    @on(NavButton.Pressed, "#back")
    def _back_pressed(self, event: NavButton.Pressed) -> None:
        event.stop()
        self.action_back()

    @on(NavButton.Pressed, "#next")
    def _next_pressed(self, event: NavButton.Pressed) -> None:
        event.stop()
        self.action_next()

    def action_back(self) -> None:
        if self.STEP == STEPS[0]:
            return
        self.cancel_work()
        self.try_commit()  # keep what was typed, even if incomplete
        self.app.go_back(self.STEP)

    def action_next(self) -> None:
        if self.busy:
            self.app.notify("Checks are still running: wait, or press Ctrl+C to stop them.",
                            timeout=4)
            return
        if not self.commit_if_valid():
            return
        if self.has_checks and self.live and self.checks_stale():
            self.start_checks(then_next=True)
            return
        self.advance_if_clear()

    def commit_if_valid(self) -> bool:
        """Store the form in the answers, or point at its first problem and return False."""
        problem = self.validate()
        if problem is not None:
            field, message = problem
            self.show_problem(field, message)
            return False
        self.commit()
        return True

    def advance_if_clear(self) -> None:
        blocking = self.state.blocking(self.STEP)
        if blocking:
            names = ", ".join(r.id for r in blocking[:3]) + ("…" if len(blocking) > 3 else "")
            check_list = self._check_list()
            if check_list is not None:
                # On the first blocking check, so `a` accepts the risk of that one.
                check_list.focus()
                if blocking[0].id in check_list.rows:
                    check_list.highlighted = check_list.get_option_index(blocking[0].id)
            self.set_hint(Text(f"✘ {len(blocking)} failed check(s) block Next ({names}): fix "
                               "and re-run (r), or accept the risk (a; A for all)."),
                          error=True)
            self._blocking_hint = True
            return
        self.app.advance(self.STEP)

    def shown_fields(self) -> list[FieldInput]:
        """The form's inputs the user can see: not disabled, and neither hidden themselves
        nor inside a hidden part (a section the step's choices do not call for)."""
        from screens.widgets.field_input import FieldInput

        shown: list[FieldInput] = []
        for field in self.query(FieldInput):
            node: Any = field
            while node is not None and node is not self and node.display:
                node = node.parent
            if not field.disabled and (node is None or node is self):
                shown.append(field)
        return shown

    def validate(self) -> tuple[FieldInput | None, str] | None:
        """The first problem with the form, or None. Default: every shown field is valid."""
        for field in self.shown_fields():
            error = field.error
            if error is not None:
                return field, f"{field.spec.label}: {error}"
        return None

    def store(self, fields: Iterable[FieldInput]) -> None:
        """Set each field's answer (a typed secret is masked in the log from then on)."""
        for field in fields:
            value = field.value
            self.state.remember_secret(value)
            field.spec.set(self.state.answers, value)

    def commit(self) -> None:
        """Store the form's values in the answers (called only after validate passed).
        Default: every shown field."""
        self.store(self.shown_fields())

    def try_commit(self) -> None:
        if self.validate() is None:
            self.commit()

    # --- checks ------------------------------------------------------------------------

    @property
    def has_checks(self) -> bool:
        return self.STEP in STEP_CATEGORIES

    @property
    def busy(self) -> bool:
        return self._checks_worker is not None and self._checks_worker.is_running

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "rerun_all":
            return self.has_checks
        return True

    def checks_wanted(self) -> bool:
        """Whether to run the checks now (on show): by default when stale."""
        return self.checks_stale()

    def checks_stale(self) -> bool:
        return self.state_key() != self.state.checked.get(self.STEP)

    def state_key(self) -> str:
        return answers_key(self.state)

    def check_names(self) -> list[str]:
        return list(STEP_CATEGORIES.get(self.STEP, ()))

    def start_checks(self, names: list[str] | None = None, *, then_next: bool = False) -> None:
        names = names or self.check_names()
        check_list = self._check_list()
        if check_list is not None and names == self.check_names():
            check_list.clear_checks("Starting the checks…")
        self.set_status(Text("Checking… (Ctrl+C stops)", style="cyan"))
        self._checks_worker = self._run_checks(names, then_next)

    @work(thread=True, exclusive=True, exit_on_error=False, group="checks")
    def _run_checks(self, names: list[str], then_next: bool) -> None:
        worker = get_current_worker()
        cancel = worker.cancelled_event
        key = self.state_key()
        try:
            def show(event: CheckStarted | CheckFinished) -> None:
                self.post_message(CheckEvent(worker, event))

            results = self.state.run_checks(names, cancel=cancel, on_event=show,
                                            confirm_host_key=self.host_key_confirmer(cancel),
                                            passphrase_prompt=self.passphrase_asker(cancel))
        except Cancelled:
            self.post_message(ChecksEnded(worker))
            return
        except Exception as exc:
            self.post_message(ChecksEnded(worker, error=exc))
            return
        if names == self.check_names():
            self.state.checked[self.STEP] = key
        self.post_message(ChecksEnded(worker, results=results, then_next=then_next))

    def host_key_confirmer(self, cancel: threading.Event) -> Callable[[str, str], bool]:
        from screens.widgets.modals import HostKeyModal

        def confirm(host: str, fingerprint: str) -> bool:
            return ask_from_thread(self.app, lambda: HostKeyModal(host, fingerprint),
                                   cancel) is True

        return confirm

    def passphrase_asker(self, cancel: threading.Event) -> Callable[[str], str]:
        from screens.widgets.modals import SecretModal

        def ask(question: str) -> str:
            answer = ask_from_thread(
                self.app, lambda: SecretModal("SSH key passphrase", question), cancel)
            return answer or ""

        return ask

    def _cancel_checks_worker(self) -> bool:
        """Cancel this screen's background work when it runs; True when it did."""
        worker = self._checks_worker
        if worker is None or not worker.is_running:
            return False
        worker.cancel()
        return True

    def cancel_work(self) -> bool:
        """Stop running checks. True when something was running."""
        if not self._cancel_checks_worker():
            return False
        check_list = self._check_list()
        if check_list is not None:
            check_list.mark_running_cancelled()
        self.set_status(Text("Checks stopped.", style="yellow"))
        self.set_hint("Checks stopped. Press Ctrl+R to run them again.")
        return True

    @on(CheckEvent)
    def _check_event(self, message: CheckEvent) -> None:
        if message.worker is not self._checks_worker or message.worker.is_cancelled:
            return
        check_list = self._check_list()
        if check_list is not None:
            check_list.handle(message.event)
        self._update_detail()

    @on(ChecksEnded)
    def _checks_ended(self, message: ChecksEnded) -> None:
        if message.worker is not self._checks_worker:
            return
        if message.error is not None:
            text, fix = describe_error(message.error)
            check_list = self._check_list()
            if check_list is not None:
                check_list.mark_running_cancelled()
            self.set_status(Text("Checks could not run.", style="red"))
            self.set_hint(Text(f"✘ {text}" + (f" — fix: {fix}" if fix else "")), error=True)
            return
        if message.results is None:
            return  # cancelled: cancel_work already said so
        if not self.state.blocking(self.STEP) and self._blocking_hint:
            self._blocking_hint = False
            self.set_hint(self.default_hint)  # the checks that blocked Next pass now
        self.refresh_checks_view()
        self.checks_finished(message.results)
        if message.then_next:
            self.advance_if_clear()

    def checks_finished(self, results: list[CheckResult]) -> None:
        """Hook for steps that show more than the list."""

    def _check_list(self) -> CheckList | None:
        if "screens.widgets.check_list" not in sys.modules:
            return None  # never imported, so this step has none
        from screens.widgets.check_list import CheckList

        found = self.query(CheckList)
        return found.first() if found else None

    def refresh_checks_view(self) -> None:
        check_list = self._check_list()
        if check_list is None:
            return
        results = self.state.step_results(self.STEP)
        if results or not check_list.running:
            check_list.set_results(results)
        self._update_detail()
        self.set_status(self.summary(results))

    def summary(self, results: list[CheckResult]) -> Text:
        from installer.checks.base import Status

        if not results:
            return Text("")
        counts = {s: sum(1 for r in results if r.status == s) for s in Status}
        text = Text(no_wrap=True, overflow="ellipsis")
        parts = [(counts[Status.PASS], "passed", "green"),
                 (counts[Status.WARN], "warned", "yellow"),
                 (counts[Status.FAIL] + counts[Status.ERROR], "failed", "red"),
                 (counts[Status.SKIP], "skipped", "dim")]
        first = True
        for n, word, colour in parts:
            if n:
                text.append(("" if first else " · ") + f"{n} {word}", style=colour)
                first = False
        blocking = self.state.blocking(self.STEP)
        if blocking:
            text.append(f" — {len(blocking)} blocking", style="bold red")
        return text

    def _update_detail(self) -> None:
        if "screens.widgets.check_list" not in sys.modules:
            return
        from screens.widgets.check_list import CheckDetail

        found = self.query(CheckDetail)
        if not found:
            return
        detail = found.first()
        check_list = self._check_list()
        from screens.widgets.check_list import same_fix

        row = check_list.highlighted_row if check_list else None
        detail.show(row, accepted=bool(row and self.state.is_accepted(row.id)),
                    same_fix=same_fix(check_list.rows.values(), row) if check_list else None)

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        self._update_detail()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        from screens.widgets.check_list import CheckDetail, CheckList

        # Steps without a detail panel show it in a dialog.
        if self.query(CheckDetail):
            return
        check_list = event.control
        if not isinstance(check_list, CheckList):
            return
        row = check_list.highlighted_row
        if row is None or row.result is None:
            return
        from screens.widgets.check_list import detail_text, same_fix
        from screens.widgets.modals import InfoModal

        self.app.push_screen(InfoModal(row.title, detail_text(
            row, accepted=self.state.is_accepted(row.id),
            same_fix=same_fix(check_list.rows.values(), row))))

    def on_check_list_accept_risk_toggled(self, event: CheckList.AcceptRiskToggled) -> None:
        if self.state.is_accepted(event.check_id):
            self.state.withdraw_risk(event.check_id)
            self.app.notify(f"Risk withdrawn: {event.check_id} blocks the deployment again.")
        else:
            self.state.accept_risk(event.check_id)
            self.app.notify(f"Risk accepted: {event.check_id} will not stop the deployment.",
                            severity="warning")
        event.check_list.refresh_marks()
        self._update_detail()
        self.set_status(self.summary(self.state.step_results(self.STEP)))
        if not self.state.blocking(self.STEP):
            self.set_hint(self.default_hint)

    def on_check_list_accept_all_requested(self, event: CheckList.AcceptAllRequested) -> None:
        """A: accept the risk of every failed check shown, after one confirmation that
        lists them."""
        from screens.widgets.modals import ConfirmModal

        blocking = self.state.blocking(self.STEP)
        if not blocking:
            self.app.notify("No failed check here waits for a decision.", timeout=3)
            return
        body = Text("Deploy even though these checks failed:\n")
        for r in blocking:
            body.append(f" ✘ {r.id}", style="bold red")
            body.append(f": {r.message}\n")
        body.append("Each stays listed as an accepted risk (Review, log, output).", style="dim")

        def answered(yes: bool | None) -> None:
            if not yes:
                return
            for r in blocking:
                self.state.accept_risk(r.id)
            self.app.notify(f"Accepted {len(blocking)} risk(s): "
                            + ", ".join(r.id for r in blocking), severity="warning")
            event.check_list.refresh_marks()
            self._update_detail()
            self.set_status(self.summary(self.state.step_results(self.STEP)))
            self.set_hint(self.default_hint)

        self.app.push_screen(ConfirmModal(f"Accept {len(blocking)} risk(s)?", body,
                                          yes="Accept all", no="Cancel", danger=True),
                             answered)

    def on_check_list_rerun_requested(self, event: CheckList.RerunRequested) -> None:
        if self.busy:
            return
        self.try_commit()
        self.start_checks([event.check_id] if event.check_id else None)

    def action_rerun_all(self) -> None:
        if self.busy or not self.has_checks:
            return
        if self.validate() is None:
            self.commit()
        self.start_checks()
