"""Managing an existing installation from the wizard: upgrade, back up, support bundle,
uninstall.

Reached from the welcome step when the answers were pre-filled. The same core calls, plans
and confirmations as the CLI: the uninstall plan is shown before anything is removed, and
destroying data needs the domain typed. Work runs in a thread worker; its events (steps,
byte progress) are shown as they come.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Input, ProgressBar, Static

from installer.operate.events import OperationEvent, show_operation
from installer.session import Session
from screens.widgets.keybar import KeyBar
from screens.widgets.nav_button import NavButton

if TYPE_CHECKING:
    from installer.checks.engine import CheckFinished, CheckStarted
    from installer.deploy.events import LogLine, ServiceState, StepFinished, StepStarted
    from installer.operate.events import Progress
    from installer.operate.installation import Installation
    from installer.operate.uninstall import UninstallPlan
    from installer.upgrade import UpgradeReview

LOG_LINES = 12


class OperateScreen(Screen[None]):
    DEFAULT_CSS = """
    OperateScreen #operate-body { padding: 0 1; height: 1fr; }
    OperateScreen .operate-row { height: 1; margin: 1 0 0 0; }
    OperateScreen .operate-row NavButton { margin: 0 2 0 0; }
    OperateScreen Input { width: 60; }
    OperateScreen #operate-plan { height: auto; margin: 1 0 0 0; }
    OperateScreen #operate-log { height: auto; color: $text-muted; }
    OperateScreen ProgressBar { margin: 1 0 0 0; }
    """
    BINDINGS = [Binding("escape", "close", "Back")]

    def __init__(self, state: Session) -> None:
        super().__init__()
        self.state = state
        self.busy = False
        self.lines: list[str] = []
        self.plan: UninstallPlan | None = None

    def compose(self) -> ComposeResult:
        with Vertical(id="operate-body"):
            yield Static(Text("Manage the existing installation", style="bold"))
            yield Static(self._where(), id="operate-where")
            with Horizontal(classes="operate-row"):
                yield NavButton("Back up", id="op-backup", variant="primary")
                yield NavButton("Support bundle", id="op-bundle")
                yield NavButton("Uninstall…", id="op-uninstall")
                yield NavButton("◀ Back", id="op-close")
            yield Input(placeholder="backup passphrase (optional: encrypts the backup)",
                        password=True, id="op-passphrase")
            # Upgrade: the plan (with its gates) first, then apply, as `carto-installer
            # upgrade` does; "Change settings" is the wizard itself (Back, then go on).
            yield Input(placeholder="upgrade: new package (folder or zip; empty keeps the "
                        "current one)", id="op-up-package")
            yield Input(placeholder="upgrade: new release (compose) or chart (kubernetes); "
                        "empty keeps the installed one", id="op-up-release")
            yield Input(placeholder="upgrade: accepted risks (check ids, comma-separated)",
                        id="op-up-skip")
            with Horizontal(classes="operate-row"):
                yield NavButton("Upgrade: show the plan", id="op-upgrade-plan")
                yield NavButton("Apply the upgrade", id="op-upgrade-apply", variant="warning")
            yield Static("", id="operate-plan")
            with Horizontal(classes="operate-row", id="op-confirm-row"):
                yield NavButton("Remove (keep data)", id="op-remove")
                yield NavButton("Destroy data too", id="op-purge", variant="error")
            yield Input(placeholder="type the domain to destroy data", id="op-domain")
            yield ProgressBar(total=None, show_eta=False, id="op-progress")
            yield Static("", id="operate-log")
        yield KeyBar()

    def on_mount(self) -> None:
        # Workers post back through the app; `self.app` is not reachable from their thread.
        self._app = self.app
        self.query_one("#op-confirm-row").display = False
        self.query_one("#op-domain").display = False
        self.query_one("#op-progress").display = False
        self.query_one("#op-upgrade-apply").display = False
        self.query_one("#op-backup").focus()

    def _where(self) -> str:
        answers = self.state.answers
        if answers.platform == "compose":
            host = answers.target.describe() if answers.target else "this machine"
            return f"Docker Compose in {answers.compose.directory} on {host}"
        return f"Helm release {answers.kubernetes.release} in namespace " \
               f"{answers.kubernetes.namespace}"

    # ---- events from the core ------------------------------------------------------------

    # The OperateView methods (installer.operate.events), one per kind of event.

    def _show(self, event: OperationEvent) -> None:
        show_operation(event, self)

    def check_started(self, event: CheckStarted) -> None:
        """Nothing: a check shows when it finishes."""

    def check_finished(self, event: CheckFinished) -> None:
        """The upgrade's gates, and any failing check."""
        result = event.result
        if str(result.status) != "pass" or result.id.startswith("upgrade."):
            mark = {"pass": "✔", "warn": "!", "skip": "-"}.get(str(result.status), "✘")
            self._log(f"{mark} {result.id}: {result.message}")

    def progress(self, event: Progress) -> None:
        bar = self.query_one("#op-progress", ProgressBar)
        bar.display = True
        bar.update(total=event.total or None, progress=event.done)

    def step_started(self, event: StepStarted) -> None:
        self._log(f"▶ {event.name}")

    def step_finished(self, event: StepFinished) -> None:
        self.query_one("#op-progress", ProgressBar).display = False
        self._log(f"{'✔' if event.ok else '✘'} {event.name}: {event.detail}")

    def service_state(self, event: ServiceState) -> None:
        """Nothing: the upgrade's step lines say how the services came up."""

    def log_line(self, event: LogLine) -> None:
        self._log(f"  {event.text}")

    def _log(self, line: str) -> None:
        self.lines = [*self.lines, self.state.redactor(line)][-LOG_LINES:]
        self.query_one("#operate-log", Static).update(Text("\n".join(self.lines)))

    def _emit(self, event: OperationEvent) -> None:
        self._app.call_from_thread(self._show, event)

    # ---- actions -----------------------------------------------------------------------

    @work(thread=True, exclusive=True, exit_on_error=False)
    def _run(self, what: str, job: Callable[[Installation], str]) -> None:
        from installer.errors import InstallerError
        from installer.operate.installation import Installation

        self.busy = True
        inst = None
        try:
            inst = Installation(self.state.answers, self.state.connect(), self.state.redactor,
                                self._emit)
            message = job(inst)
            self._app.call_from_thread(self._log, message)
            self._app.call_from_thread(self.app.notify, self.state.redactor(message), timeout=8)
        except InstallerError as exc:
            self._app.call_from_thread(self._log, f"✘ {what}: {exc}")
        except Exception as exc:  # shown, and in the log with the traceback
            import logging

            logging.getLogger("installer.wizard").exception("%s failed", what)
            self._app.call_from_thread(self._log, f"✘ {what}: {exc}")
        finally:
            if inst is not None:
                inst.close()
            self.busy = False

    @on(NavButton.Pressed, "#op-backup")
    def _backup_pressed(self) -> None:
        if self.busy:
            return
        from installer.operate.backup import backup, default_output

        passphrase = self.query_one("#op-passphrase", Input).value or None
        if passphrase:
            self.state.redactor.add(passphrase)
        output = os.path.join(str(self.state.workdir), default_output(self.state.answers.domain)
                              + (".enc" if passphrase else ""))

        def job(inst: Installation) -> str:
            result = backup(inst, output, passphrase=passphrase)
            return f"backup written: {result.path}"

        self._run("backup", job)

    def _upgrade_job(self, apply: bool) -> Callable[[Installation], str]:
        from installer.deploy import DeployCancelled
        from installer.preflight import validate_names
        from installer.upgrade import GATE_IDS, upgrade

        package = self.query_one("#op-up-package", Input).value.strip() or None
        release = self.query_one("#op-up-release", Input).value.strip() or None
        risks = self.query_one("#op-up-skip", Input).value.split(",")

        def show_plan(plan: UpgradeReview) -> bool:
            self._app.call_from_thread(self._show_upgrade_plan, plan)
            return apply

        def job(inst: Installation) -> str:
            skip = validate_names(risks, "accepted risks", extra=[*GATE_IDS, "upgrade"])
            try:
                result = upgrade(self.state.answers, inst.target, redactor=self.state.redactor,
                                 package=package, release=release, skip=skip,
                                 on_event=self._emit, confirm=show_plan)
            except DeployCancelled:
                return "the upgrade plan is shown: nothing was changed yet"
            if package:
                self.state.answers.package = os.path.abspath(os.path.expanduser(package))
                self.state.save_answers()
            return result.message

        return job

    def _show_upgrade_plan(self, plan: UpgradeReview) -> None:
        self.query_one("#operate-plan", Static).update(Text(plan.summary()))
        self.query_one("#op-upgrade-apply").display = True

    @on(NavButton.Pressed, "#op-upgrade-plan")
    def _upgrade_plan_pressed(self) -> None:
        if not self.busy:
            self._run("upgrade plan", self._upgrade_job(apply=False))

    @on(NavButton.Pressed, "#op-upgrade-apply")
    def _upgrade_apply_pressed(self) -> None:
        if not self.busy:
            self.query_one("#op-upgrade-apply").display = False
            self._run("upgrade", self._upgrade_job(apply=True))

    @on(NavButton.Pressed, "#op-bundle")
    def _bundle_pressed(self) -> None:
        if self.busy:
            return
        from installer.operate.bundle import default_bundle_name, support_bundle

        output = os.path.join(str(self.state.workdir),
                              default_bundle_name(self.state.answers.domain))

        def job(inst: Installation) -> str:
            result = support_bundle(inst, output)
            return f"support bundle written: {result.path} ({len(result.failed)} not collected)"

        self._run("support bundle", job)

    @on(NavButton.Pressed, "#op-uninstall")
    def _uninstall_pressed(self) -> None:
        if self.busy:
            return
        from installer.operate.uninstall import plan_uninstall

        def job(inst: Installation) -> str:
            plan = plan_uninstall(inst, purge=False)
            self._app.call_from_thread(self._show_plan, plan)
            return "the plan is shown: nothing was removed yet"

        self._run("uninstall plan", job)

    def _show_plan(self, plan: UninstallPlan) -> None:
        self.plan = plan
        self.query_one("#operate-plan", Static).update(Text(plan.summary()))
        self.query_one("#op-confirm-row").display = bool(plan.remove) or plan.has_data
        self.query_one("#op-remove").display = bool(plan.remove)
        self.query_one("#op-purge").display = plan.has_data
        self.query_one("#op-domain").display = plan.has_data
        if plan.remove:
            self.query_one("#op-remove").focus()
        elif plan.empty and not plan.has_data:
            self._log("nothing is installed: nothing to remove")

    @on(NavButton.Pressed, "#op-remove")
    def _remove_pressed(self) -> None:
        self._uninstall(purge=False)

    @on(NavButton.Pressed, "#op-purge")
    def _purge_pressed(self) -> None:
        typed = self.query_one("#op-domain", Input).value.strip()
        if typed != self.state.answers.domain:
            self._log(f"✘ to destroy data, type the domain ({self.state.answers.domain}) "
                      "first: nothing was removed")
            self.query_one("#op-domain").focus()
            return
        self._uninstall(purge=True)

    def _uninstall(self, *, purge: bool) -> None:
        if self.busy or self.plan is None:
            return
        from installer.operate.uninstall import apply_uninstall, plan_uninstall

        def job(inst: Installation) -> str:
            # the data destroyed is listed again (it is what the plan marked "keep")
            plan = plan_uninstall(inst, purge=purge)
            self._app.call_from_thread(self._show_plan_done, plan)
            return str(apply_uninstall(inst, plan))

        self._run("uninstall", job)

    def _show_plan_done(self, plan: UninstallPlan) -> None:
        self.query_one("#operate-plan", Static).update(Text(plan.summary()))
        self.query_one("#op-confirm-row").display = False
        self.query_one("#op-domain").display = False
        self.plan = None

    @on(NavButton.Pressed, "#op-close")
    def action_close(self) -> None:
        if not self.busy:
            self.app.pop_screen()
