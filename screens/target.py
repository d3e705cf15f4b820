"""Where CARTO goes. This machine, or another one over SSH (with a jump host); for
Kubernetes, the kubeconfig, context and namespace. Next opens the connection, asking in a
dialog before trusting an SSH host key seen for the first time."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rich.text import Text
from textual import on, work
from textual.containers import Vertical, VerticalScroll
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Checkbox, RadioSet, Static
from textual.worker import Worker, get_current_worker

from installer.answers.model import AnswerValue
from installer.answers.sections import DEPLOYMENT, JUMP, KUBERNETES, SSH
from installer.deployment_dir import RELEASES_URL, DirectoryVerdict, inspect_deployment_directory
from installer.session import Cancelled, describe_error, run_cancellable
from screens.base import StepScreen
from screens.sections import section_widgets, store_ticks
from screens.usable import UNKNOWN, problem_with
from screens.widgets.field_input import FieldInput
from screens.widgets.toggles import Choice, Choices, Tick


class Connected(Message):
    def __init__(self, worker: Worker[Any], error: BaseException | None, name: str = "",
                 directory: DirectoryVerdict | None = None) -> None:
        super().__init__()
        self.worker = worker
        self.error = error
        self.name = name
        self.directory = directory


RELEASE_NOTE = ("Needs the vendor's Compose release here (docker-compose.yml, env.tpl, VERSION, "
                "MIN_VERSION), from " + RELEASES_URL.removeprefix("https://"))


class TargetScreen(StepScreen):
    STEP = "target"

    @property
    def kubernetes(self) -> bool:
        return self.state.answers.platform == "kubernetes"

    @property
    def default_hint(self) -> str:
        if self.kubernetes:
            return "Helm and kubectl run from this machine with this kubeconfig."
        return "Next connects to the machine (SSH host keys are always verified)."

    def compose_body(self) -> Iterable[Widget]:
        a = self.state.answers
        with VerticalScroll(classes="scroll-body"):
            if self.kubernetes:
                yield Static("Kubernetes cluster", classes="section-title first")
                with Vertical(classes="form"):
                    yield from section_widgets(KUBERNETES, a, every=True)
                return
            remote = a.target is not None
            yield Static("Which machine will run CARTO?", classes="section-title first")
            yield Choices(
                Choice("This machine (where the installer runs)", value=not remote,
                            id="local"),
                Choice("Another machine, over SSH", value=remote, id="remote"),
                id="target-choice", compact=True,
            )
            with Vertical(id="ssh-form", classes="form"):
                yield from section_widgets(SSH, a, every=True)
                has_jump = remote and a.target is not None and a.target.jump is not None
                yield Tick("Go through a jump host (bastion)", has_jump, id="use-jump",
                               compact=True)
                with Vertical(id="jump-form", classes="form"):
                    yield from section_widgets(JUMP, a, every=True)
            yield Static(DEPLOYMENT.title, classes="section-title")
            with Vertical(classes="form"):
                # The folder must hold the vendor's release: judged as typed (or on connect).
                yield from section_widgets(DEPLOYMENT, a, every=True, options={
                    "compose.directory": {"usable": self._directory_problem,
                                          "unusable_blocks": True}})
            yield Static(RELEASE_NOTE, id="directory-note", classes="note")

    def on_mount(self) -> None:
        super().on_mount()
        self._sync_visibility()
        if self.kubernetes:
            self.query(FieldInput).first().input.focus()
        else:
            self.query_one(RadioSet).focus()

    @property
    def remote(self) -> bool:
        if self.kubernetes:
            return False
        pressed = self.query_one(RadioSet).pressed_button
        return pressed is not None and pressed.id == "remote"

    def _directory_problem(self, value: AnswerValue) -> str | None:
        """The deployment directory on this machine is looked at as it is typed; on another
        machine, once Next has connected to it."""
        try:
            remote = self.remote
        except Exception:  # not mounted yet: go by the answers
            remote = self.state.answers.target is not None
        problem = problem_with("compose.directory", value, remote=remote)
        notes = self.query("#directory-note")
        if notes and problem not in (None, UNKNOWN):
            notes.first(Static).update(
                Text("✘ " + str(problem) + ". Get it from " + RELEASES_URL
                     + " (or point this field at the folder where it is).", style="red"))
        elif notes:
            notes.first(Static).update(RELEASE_NOTE)
        return problem

    def _sync_visibility(self) -> None:
        if self.kubernetes:
            return
        remote = self.remote
        self.query_one("#ssh-form").display = remote
        self.query_one("#jump-form").display = remote and self.query_one("#use-jump",
                                                                         Checkbox).value
        directory = self.query_one("#f-compose-directory", FieldInput)
        directory._show(directory.error)  # local and remote judge the folder differently

    @on(RadioSet.Changed)
    def _choice(self, event: RadioSet.Changed) -> None:
        self._sync_visibility()

    @on(Checkbox.Changed, "#use-jump")
    def _jump(self, event: Checkbox.Changed) -> None:
        self._sync_visibility()

    def commit(self) -> None:
        a = self.state.answers
        if not self.kubernetes and not self.remote:
            a.target = None
        self.store(self.shown_fields())
        if not self.kubernetes and self.remote:
            assert a.target is not None
            store_ticks(self, SSH, a)
            if not self.query_one("#use-jump", Checkbox).value:
                a.target.jump = None

    # --- connecting ----------------------------------------------------------------------

    def action_next(self) -> None:
        if self.busy:
            return
        if not self.commit_if_valid():
            return
        if not self.live or self.kubernetes or self.state.answers.target is None:
            # This machine's folder was judged as it was typed (validate refuses it).
            self.app.advance(self.STEP)
            return
        self.set_status(Text(f"Connecting to {self.state.answers.target.describe()}… "
                             "(Ctrl+C stops)", style="cyan"))
        self._checks_worker = self._connect()

    @work(thread=True, exclusive=True, exit_on_error=False, group="checks")
    def _connect(self) -> None:
        worker = get_current_worker()
        cancel = worker.cancelled_event
        try:
            target = run_cancellable(
                lambda: self.state.connect(self.host_key_confirmer(cancel),
                                           self.passphrase_asker(cancel)), cancel)
            a = self.state.answers
            verdict = run_cancellable(
                lambda: inspect_deployment_directory(target, a.compose.directory, a), cancel)
        except Cancelled:
            return
        except Exception as exc:
            self.post_message(Connected(worker, exc))
            return
        self.post_message(Connected(worker, None, target.name, verdict))

    def cancel_work(self) -> bool:
        if not self._cancel_checks_worker():
            return False
        self.set_status(Text("Connection stopped.", style="yellow"))
        return True

    @on(Connected)
    def _connected(self, message: Connected) -> None:
        if message.worker is not self._checks_worker:
            return
        if message.error is not None:
            text, fix = describe_error(message.error)
            self.set_status(Text("Could not connect.", style="red"))
            self.set_hint(Text(f"✘ {text}" + (f" — fix: {fix}" if fix else "")), error=True)
            return
        verdict = message.directory
        if verdict is not None and not verdict.usable:
            self.set_status(Text(f"Connected to {message.name}.", style="green"))
            field = self.query_one("#f-compose-directory", FieldInput)
            self.query_one("#directory-note", Static).update(
                Text(f"✘ {verdict.message}. Fix: {verdict.remediation}.", style="red"))
            self.show_problem(field, verdict.message)
            field.query_one(".field-mark", Static).update("✘")
            return
        self.set_status(Text(f"Connected to {message.name}"
                             + (f"; {verdict.message}." if verdict else "."), style="green"))
        self.app.advance(self.STEP)
