"""Radio buttons and checkboxes whose state shows in the glyph, not only in colour, so they
read correctly with NO_COLOR and on monochrome terminals."""

from __future__ import annotations

from textual.widgets import Checkbox, RadioButton


class Choice(RadioButton):
    """A radio button: ● when chosen, ○ when not."""

    @property
    def BUTTON_INNER(self) -> str:  # type: ignore[override]  # noqa: N802 - Textual's name
        return "●" if self.value else "○"


class Tick(Checkbox):
    """A checkbox: ✔ when ticked, blank when not."""

    @property
    def BUTTON_INNER(self) -> str:  # type: ignore[override]  # noqa: N802
        return "✔" if self.value else " "
