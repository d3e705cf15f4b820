"""The installation package from CARTO (a folder or the zip), validated at once."""

from __future__ import annotations

from collections.abc import Iterable

from textual.containers import Vertical
from textual.widget import Widget
from textual.widgets import Static

from installer.answers.sections import PACKAGE
from screens.base import StepScreen
from screens.sections import section_widgets
from screens.widgets.check_list import CheckList
from screens.widgets.field_input import FieldInput


class LicenseScreen(StepScreen):
    STEP = "license"
    AUTO_CHECKS = True
    RECHECK_AS_YOU_TYPE = True
    HINT = "The folder or zip CARTO sent you. Ctrl+O browses for it."

    def compose_body(self) -> Iterable[Widget]:
        a = self.state.answers
        kind = ("customer.env and key.json" if a.platform == "compose"
                else "carto-values.yaml and carto-secrets.yaml")
        yield Static(PACKAGE.title, classes="section-title first")
        yield Static(f"It holds {kind}: your license and environment settings.",
                     classes="note")
        with Vertical(classes="form"):
            yield from section_widgets(PACKAGE, a)  # the images archive on Compose only
        yield CheckList(is_accepted=self.state.is_accepted, classes="inline-checks",
                        empty_text="The package's validation appears here.")

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#f-package", FieldInput).input.focus()

    def checks_wanted(self) -> bool:
        return self.validate() is None and self.checks_stale()
