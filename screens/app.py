"""The Textual wizard: one screen per step, over the same core as the CLI.

Step screens are imported when first shown, so the first screen is interactive quickly.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from textual.app import App
from textual.binding import Binding

from installer.session import STEP_TITLES, STEPS, Session

if TYPE_CHECKING:  # step screens load when first shown
    from installer.redact import Redactor
    from screens.base import StepScreen

ASSETS = Path(__file__).resolve().parent.parent / "assets"
SCREEN_CLASSES = {
    "welcome": "WelcomeScreen",
    "platform": "PlatformScreen",
    "target": "TargetScreen",
    "requirements": "RequirementsScreen",
    "domain_tls": "DomainTLSScreen",
    "database": "DatabaseScreen",
    "license": "LicenseScreen",
    "network": "NetworkScreen",
    "review": "ReviewScreen",
    "deploy": "DeployScreen",
}
EXIT_OK, EXIT_FAILED, EXIT_INTERRUPTED = 0, 3, 130


def step_screen_class(step: str) -> type[StepScreen]:
    module = importlib.import_module(f"screens.{step}")
    screen_class: type[StepScreen] = getattr(module, SCREEN_CLASSES[step])
    return screen_class


class WizardApp(App[int]):
    CSS_PATH = str(ASSETS / "wizard.tcss")
    TITLE = "CARTO Self-Hosted installer"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS = [
        Binding("ctrl+q", "quit", "Quit", priority=True),
        Binding("ctrl+c", "interrupt", "Stop", priority=True, show=False),
    ]

    def __init__(self, state: Session, *, start: str = "welcome", live: bool = True) -> None:
        super().__init__()
        self.state = state
        self.start_step = start
        self.live = live
        self.step = start
        # What to print once the terminal is back (set by the steps).
        self.farewell: list[str] = []
        self.deployed = False
        self.deploy_failed = False
        self._quitting = False

    def on_mount(self) -> None:
        self.push_screen(self.make_screen(self.start_step))
        self.call_after_refresh(self._prefetch, self.start_step)

    def _prefetch(self, step: str) -> None:
        """Load the next step's code in the background while the user reads this one."""
        import threading

        index = STEPS.index(step)
        if index + 1 < len(STEPS):
            name = f"screens.{STEPS[index + 1]}"
            threading.Thread(target=importlib.import_module, args=(name,), daemon=True,
                             name="prefetch").start()

    def make_screen(self, step: str) -> StepScreen:
        return step_screen_class(step)(self.state, live=self.live)

    # --- navigation --------------------------------------------------------------------

    def goto(self, step: str) -> None:
        self.step = step
        if self.live and step not in ("welcome", "deploy"):
            # The session says where the user is now, so a later run resumes right here
            # (and the quit message and the next launch name the same step).
            self.state.save_session(step)
        self.switch_screen(self.make_screen(step))
        self.call_after_refresh(self._prefetch, step)

    def advance(self, step: str) -> None:
        self.goto(STEPS[STEPS.index(step) + 1])

    def go_back(self, step: str) -> None:
        index = STEPS.index(step)
        if index > 0:
            self.goto(STEPS[index - 1])

    # --- stopping and quitting ---------------------------------------------------------

    def _step_screen(self) -> StepScreen | None:
        from screens.base import StepScreen

        for screen in reversed(self.screen_stack):
            if isinstance(screen, StepScreen):
                return screen
        return None

    def action_interrupt(self) -> None:
        """Ctrl+C: stop what is running; when nothing runs, offer to quit."""
        screen = self._step_screen()
        if screen is not None and screen.cancel_work():
            return
        self.run_worker(self.action_quit(), exclusive=False)

    async def action_quit(self) -> None:
        from screens.widgets.modals import ConfirmModal

        if self._quitting or isinstance(self.screen, ConfirmModal):
            return
        screen = self._step_screen()
        deploying = bool(getattr(screen, "deploying", False))
        if deploying:
            body = ("The deployment is running. Quitting stops it after the current operation; "
                    "every file written so far is complete, and running it again picks up "
                    "from there.")
        elif self.deployed:
            body = "The deployment is done. Your answers are saved."
        else:
            body = ("Nothing has been changed on the target yet. Your answers so far are saved "
                    f"in {self.state.session_path}: run ./install.sh (or carto-installer) "
                    "again to resume.")

        def answered(yes: bool | None) -> None:
            if yes:
                self.run_worker(self._stop_and_exit(), exclusive=False)

        self.push_screen(ConfirmModal("Quit the installer?", body, yes="Quit", no="Stay",
                                      danger=True), answered)

    async def _stop_and_exit(self) -> None:
        self._quitting = True
        screen = self._step_screen()
        interrupted = bool(getattr(screen, "deploying", False))
        if screen is not None:
            screen.cancel_work()
            # The deploy stops at a safe point; wait for it so nothing is left half-done.
            while getattr(screen, "deploying", False):
                await asyncio.sleep(0.05)
        if interrupted:
            self.farewell[:] = ["Stopped at the user's request during the deployment: every "
                                "file written so far is complete. Run carto-installer again "
                                "to finish."]
        elif not self.deployed and not self.farewell:
            self.farewell.append("Stopped at the user's request. No changes were made to the "
                                 f"target. Run carto-installer again to resume at "
                                 f"'{STEP_TITLES[self.step]}'.")
        if self.deployed:
            self.exit(EXIT_OK)
        elif self.deploy_failed and not interrupted:
            self.exit(EXIT_FAILED)
        else:
            self.exit(EXIT_INTERRUPTED)

    def finish(self, code: int) -> None:
        self.exit(code)


def run_app(args: argparse.Namespace, redactor: Redactor) -> int:
    """`carto-installer` with a terminal: run the wizard, then say where things stand."""
    from installer.safetext import visible
    from installer.session import load_answers_arg

    # Secrets named by unset variables are simply asked for by the wizard.
    answers = load_answers_arg(getattr(args, "answers", None), redactor, secrets=())
    save_to = getattr(args, "save_answers", None)
    state = Session(redactor=redactor, answers=answers,
                        accept_host_key=getattr(args, "accept_host_key", None),
                        answers_path=Path(save_to).resolve() if save_to else None)
    app = WizardApp(state)
    try:
        code = app.run()
    finally:
        state.close()
    for line in app.farewell:
        sys.stdout.write(visible(redactor(line)) + "\n")
    if code is None:
        return app.return_code if app.return_code is not None else EXIT_INTERRUPTED
    return int(code)
