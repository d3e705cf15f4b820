"""The metadata database. An external PostgreSQL (with a connection test showing the
server version, TLS and the admin's privileges), or the vendor's bundled container, which is
for debugging only."""

from __future__ import annotations

from collections.abc import Iterable

from rich.text import Text
from textual import on
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widget import Widget
from textual.widgets import Checkbox, RadioSet, Static

from installer.answers.sections import DATABASE, DATABASE_TLS
from installer.session import bundled_warning
from screens.base import StepScreen
from screens.sections import section_widgets
from screens.widgets.check_list import CheckList
from screens.widgets.field_input import FieldInput
from screens.widgets.nav_button import NavButton
from screens.widgets.toggles import Choice, Choices, Tick


class DatabaseScreen(StepScreen):
    STEP = "database"
    HINT = "Fill in the connection, then Ctrl+T tests it (Next tests it too)."
    BINDINGS = [Binding("ctrl+t", "test", "Test connection")]

    def compose_body(self) -> Iterable[Widget]:
        db = self.state.answers.database
        with VerticalScroll(classes="scroll-body"):
            yield Choices(
                Choice("External PostgreSQL 14+ (recommended)", value=not db.bundled,
                            id="external"),
                Choice("Bundled PostgreSQL container (debug only)", value=db.bundled,
                            id="bundled"),
                id="db-choice", compact=True,
            )
            yield Static(Text("⚠ " + bundled_warning(self.state.answers.platform)),
                         id="bundled-warning", classes="warning")
            with Vertical(id="db-form", classes="form"):
                yield from section_widgets(DATABASE, self.state.answers, every=True)
                yield Tick("Connect with TLS", db.ssl.enabled, id="db-ssl", compact=True)
                with Vertical(id="db-ssl-form", classes="form"):
                    yield from section_widgets(DATABASE_TLS, self.state.answers, every=True)
                with Horizontal(classes="form"):
                    yield NavButton("Test connection", id="db-test")
            yield CheckList(is_accepted=self.state.is_accepted, classes="inline-checks",
                            empty_text="Connection test results appear here.")

    def on_mount(self) -> None:
        self._sync()
        super().on_mount()
        self.query_one(RadioSet).focus()

    @property
    def bundled(self) -> bool:
        pressed = self.query_one("#db-choice", RadioSet).pressed_button
        return pressed is not None and pressed.id == "bundled"

    def _sync(self) -> None:
        bundled = self.bundled
        self.query_one("#bundled-warning").display = bundled
        self.query_one("#db-form").display = not bundled
        self.query_one("#db-ssl-form").display = self.query_one("#db-ssl", Checkbox).value

    @on(RadioSet.Changed)
    @on(Checkbox.Changed)
    def _changed(self, event: object) -> None:
        self._sync()

    def commit(self) -> None:
        db = self.state.answers.database
        db.bundled = self.bundled
        if db.bundled:
            return
        self.store(self.shown_fields())  # the TLS ones only when ticked
        db.ssl.enabled = self.query_one("#db-ssl", Checkbox).value

    @on(NavButton.Pressed, "#db-test")
    def _test_pressed(self, event: NavButton.Pressed) -> None:
        event.stop()
        self.action_test()

    def action_test(self) -> None:
        """Test the connection. It logs in as the admin only, so the CARTO user's password
        (needed later, to write the configuration) is not asked for yet."""
        if self.busy:
            return
        carto_password = self.query_one("#f-database-password", FieldInput)
        required, carto_password.required = carto_password.required, False
        try:
            valid = self.commit_if_valid()
        finally:
            carto_password.required = required
        if valid:
            self.start_checks()
