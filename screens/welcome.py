"""What will happen, what to have ready, and resuming a saved session."""

from __future__ import annotations

from collections.abc import Iterable

from rich.text import Text
from textual import on
from textual.containers import Vertical
from textual.widget import Widget
from textual.widgets import RadioButton, Static

from installer.errors import InstallerError
from installer.session import STEP_TITLES, SavedSession
from screens.base import StepScreen
from screens.widgets.nav_button import NavButton
from screens.widgets.toggles import Choice, Choices

WELCOME = (
    "This wizard installs CARTO Self-Hosted on a single VM with Docker Compose, or on "
    "Kubernetes with Helm. It checks every requirement live, checks each setting as you "
    "type, shows exactly which files it will write, then deploys and verifies CARTO over "
    "HTTPS. Nothing changes until you press Deploy.\n"
)

READY = [
    ("Release", "on a VM, CARTO's github.com/CartoDB/carto-selfhosted, unpacked"),
    ("Package", "the folder or zip CARTO sent you (your license)"),
    ("Domain", "e.g. carto.example.com, pointing at the machine"),
    ("Certificate", "and key for that domain (or one is generated)"),
    ("Database", "a PostgreSQL 14+ admin who may create users and DBs"),
]


class WelcomeScreen(StepScreen):
    STEP = "welcome"
    HINT = ("Tab moves between controls, Enter activates, Ctrl+N goes on, F1 (or ?) helps, "
            "Ctrl+Q quits.")

    def compose_body(self) -> Iterable[Widget]:
        text = Text(WELCOME)
        text.append("\nHave ready:\n", style="bold")
        for name, what in READY:
            text.append(f"  • {name}: ", style="bold")
            text.append(f"{what}\n")
        if self.state.prefilled_from is not None:
            text.append(f"\nAnswers pre-filled from {self.state.prefilled_from}.", style="italic")
        yield Static(text, id="welcome-text")
        if self.state.prefilled_from is not None:
            # An existing installation: back up, support bundle, uninstall (screens/operate.py)
            yield NavButton("Manage this installation…", id="manage")
        self.session: SavedSession | None = None
        self.session_error: str | None = None
        try:
            self.session = self.state.saved_session()
        except InstallerError as exc:
            self.session_error = str(exc)
        if self.session is not None:
            with Vertical(id="resume-box"):
                over = (f" Resuming uses its answers, not those of "
                        f"{self.state.prefilled_from}." if self.state.prefilled_from else "")
                yield Static(Text(f"A saved session stopped at "
                                  f"'{STEP_TITLES[self.session.step]}'.{over}", style="bold"))
                yield Choices(
                    Choice("Resume where I stopped", value=True, id="resume"),
                    Choice("Start again from the beginning", id="fresh"),
                    id="resume-choice", compact=True,
                )
        elif self.session_error:
            yield Static(Text(self.session_error, style="yellow"), classes="note")

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#next").focus()

    @on(NavButton.Pressed, "#manage")
    def _manage(self) -> None:
        from screens.operate import OperateScreen

        self.app.push_screen(OperateScreen(self.state))

    @property
    def resume_chosen(self) -> bool:
        if self.session is None:
            return False
        return self.query_one("#resume", RadioButton).value

    def action_next(self) -> None:
        if self.session is not None and self.resume_chosen:
            step = self.state.resume(self.session)
            self.app.notify(f"Resumed at '{STEP_TITLES[step]}'. Secrets typed earlier are "
                            "never saved: you will be asked for them again.", timeout=6)
            self.app.goto(step)
            return
        super().action_next()
