"""Radio buttons and checkboxes whose state shows in the glyph, not only in colour, so they
read correctly with NO_COLOR and on monochrome terminals."""

from __future__ import annotations

from textual.events import Mount
from textual.widgets import Checkbox, RadioButton, RadioSet


class Choice(RadioButton):
    """A radio button: ● when chosen, ○ when not."""

    # Textual declares BUTTON_INNER a plain attribute and reads it at every render: a read-only
    # property is the one hook that makes the glyph follow the value.
    @property
    def BUTTON_INNER(self) -> str:  # type: ignore[override]  # noqa: N802 - Textual's name
        return "●" if self.value else "○"


class Tick(Checkbox):
    """A checkbox: ✔ when ticked, blank when not."""

    @property
    def BUTTON_INNER(self) -> str:  # type: ignore[override]  # noqa: N802 - as Choice's
        return "✔" if self.value else " "


class Choices(RadioSet):
    """A radio set where the highlighted choice is the chosen one: ↑↓ (or ←→) choose, as
    the hint says, so "↓ then Ctrl+N" goes on with what the user moved to."""

    def on_mount(self, event: Mount) -> None:
        # Start on the chosen button, not the first one (after RadioSet's own mount handler,
        # which moves to the first).
        self.call_after_refresh(self._start_on_chosen)

    def _start_on_chosen(self) -> None:
        if not self.is_mounted:
            return  # its screen was already replaced (fast Back/Next)
        try:
            index = self.pressed_index
        except ValueError:
            return
        if index >= 0:
            self._selected = index

    def action_previous_button(self) -> None:
        super().action_previous_button()
        self._choose_highlighted()

    def action_next_button(self) -> None:
        super().action_next_button()
        self._choose_highlighted()

    def _choose_highlighted(self) -> None:
        if not self.is_mounted or self._selected is None or not self.has_focus:
            return  # RadioSet's own mount moves the highlight too: that is not a choice
        button = self._nodes[self._selected]
        if isinstance(button, RadioButton) and not button.value:
            button.value = True
