"""A one-line button for the Back/Next bar and dialogs. Enter or Space presses it (a click
too). Lighter than Textual's Button, whose style setup costs every screen a few tens of ms."""

from __future__ import annotations

from rich.text import Text
from textual.binding import Binding
from textual.events import Click
from textual.message import Message
from textual.widgets import Static


class NavButton(Static, can_focus=True):
    DEFAULT_CSS = """
    NavButton {
        width: auto;
        min-width: 10;
        height: 1;
        padding: 0 1;
        background: $panel;
        color: $text;
        content-align: center middle;
        text-style: bold;
    }
    NavButton.-primary {
        background: $primary;
    }
    NavButton.-error {
        background: $error;
    }
    NavButton:focus {
        background: $accent;
        text-style: bold reverse;
    }
    NavButton:disabled {
        color: $text-disabled;
        background: $panel;
        text-style: none;
    }
    """

    BINDINGS = [Binding("enter,space", "press", "Press", show=False)]

    class Pressed(Message):
        def __init__(self, button: NavButton) -> None:
            super().__init__()
            self.button = button

        @property
        def control(self) -> NavButton:
            return self.button

    def __init__(self, label: str, *, id: str | None = None, variant: str = "default",
                 disabled: bool = False) -> None:
        super().__init__(Text(label), id=id, disabled=disabled,
                         classes="" if variant == "default" else f"-{variant}")
        self._label = label

    @property
    def label(self) -> str:
        return self._label

    @label.setter
    def label(self, value: str) -> None:
        self._label = value
        self.update(Text(value))

    def action_press(self) -> None:
        if not self.disabled:
            self.post_message(self.Pressed(self))

    def on_click(self, event: Click) -> None:
        event.stop()
        self.action_press()
