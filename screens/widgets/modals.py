"""Modal dialogs: confirmations, the SSH host-key fingerprint, a file picker."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static

from screens.widgets.nav_button import NavButton

if TYPE_CHECKING:  # the file picker's tree loads with the picker
    from textual.widgets import DirectoryTree

DialogResult = TypeVar("DialogResult")


class Dialog(ModalScreen[DialogResult]):
    """The frame the small dialogs share: a bordered panel in the middle of the screen, a bold
    title, then what `compose_body` yields. Subclasses' CSS adds to this (and wins over it)."""

    DEFAULT_CSS = """
    Dialog {
        align: center middle;
    }
    Dialog > Vertical {
        width: 64;
        max-width: 100%;
        height: auto;
        border: thick $primary;
        background: $panel;
        padding: 0 1;
    }
    Dialog .modal-title {
        text-style: bold;
        padding: 0 0 1 0;
    }
    Dialog Horizontal {
        height: 1;
        align: right middle;
    }
    """

    def __init__(self, title: str) -> None:
        super().__init__()
        self.title_text = title

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.title_text, classes="modal-title")
            yield from self.compose_body()

    def compose_body(self) -> ComposeResult:
        """What stands under the title."""
        yield from ()


class ConfirmModal(Dialog[bool]):
    """A question with two answers. Escape means no."""

    DEFAULT_CSS = """
    ConfirmModal .modal-title {
        width: 1fr;
    }
    ConfirmModal .modal-body {
        width: 1fr;
        padding: 0 0 1 0;
    }
    ConfirmModal NavButton {
        margin: 0 0 0 2;
    }
    """

    BINDINGS = [
        Binding("escape", "answer(False)", "No"),
        Binding("y", "answer(True)", "Yes", show=False),
        Binding("n", "answer(False)", "No", show=False),
    ]

    def __init__(self, title: str, body: str | Text, *, yes: str = "Yes", no: str = "No",
                 default_yes: bool = False, danger: bool = False) -> None:
        super().__init__(title)
        self.body = body
        self.yes = yes
        self.no = no
        self.default_yes = default_yes
        self.danger = danger
        # Textual focuses this right after composing, before any key can dismiss the dialog;
        # focusing from on_mount raced a quick answer (the children were already gone).
        # Textual declares AUTO_FOCUS a ClassVar yet reads it through the instance, and which
        # button starts focused is per dialog.
        self.AUTO_FOCUS = "#yes" if default_yes else "#no"  # type: ignore[misc]

    def compose_body(self) -> ComposeResult:
        yield Static(self.body, classes="modal-body")
        with Horizontal():
            yield NavButton(self.no, id="no")
            yield NavButton(self.yes, id="yes", variant="error" if self.danger else "primary")

    def on_nav_button_pressed(self, event: NavButton.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id == "yes")

    def action_answer(self, value: bool) -> None:
        self.dismiss(value)


class HostKeyModal(ConfirmModal):
    """An SSH host seen for the first time: accept its key only when the fingerprint matches."""

    def __init__(self, host: str, fingerprint: str) -> None:
        body = Text()
        body.append(f"{host} is not in your known_hosts file yet. Its host key is:\n\n")
        body.append(f"  {fingerprint}\n\n", style="bold")
        body.append("Accept it only if it matches the fingerprint the machine's administrator "
                    "reads there with `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub`. "
                    "Accepting adds it to known_hosts.")
        super().__init__("Confirm the SSH host key", body, yes="Accept key", no="Reject",
                         default_yes=False)
        self.host = host
        self.fingerprint = fingerprint


class FilePicker(ModalScreen[str | None]):
    """Pick a local file: type a path, or walk the folders (Enter opens, Enter on a file picks)."""

    DEFAULT_CSS = """
    FilePicker {
        align: center middle;
    }
    FilePicker > Vertical {
        width: 76;
        max-width: 100%;
        height: 20;
        max-height: 100%;
        border: thick $primary;
        background: $panel;
    }
    FilePicker .modal-title {
        text-style: bold;
    }
    FilePicker Input {
        margin: 0 0 1 0;
    }
    FilePicker DirectoryTree {
        height: 1fr;
    }
    FilePicker .picker-help {
        color: $text-muted;
        height: 1;
    }
    """

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, label: str, current: str = "") -> None:
        super().__init__()
        self.label = label
        self.current = current
        start = Path(current).expanduser() if current else Path.cwd()
        while not start.is_dir() and start != start.parent:
            start = start.parent
        self.start = start if start.is_dir() else Path.cwd()

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(f"Choose: {self.label}", classes="modal-title")
            yield Input(value=self.current or str(self.start) + "/", compact=True,
                        id="picker-path")
            from textual.widgets import DirectoryTree

            yield DirectoryTree(str(self.start), id="picker-tree")
            yield Static("Enter on a file picks it · Tab moves between the path and the tree "
                         "· Esc cancels", classes="picker-help")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        path = Path(event.value).expanduser()
        if path.is_dir():
            from textual.widgets import DirectoryTree  # loaded already: compose() built one

            tree = self.query_one("#picker-tree", DirectoryTree)
            tree.path = path
            tree.focus()
            return
        self.dismiss(str(path))

    def on_directory_tree_file_selected(self, event: DirectoryTree.FileSelected) -> None:
        event.stop()
        self.dismiss(str(event.path))

    def action_cancel(self) -> None:
        self.dismiss(None)


class InfoModal(Dialog[None]):
    """A message with a single OK."""

    DEFAULT_CSS = """
    InfoModal > Vertical {
        width: 70;
        max-height: 100%;
    }
    """

    AUTO_FOCUS = "#ok"
    BINDINGS = [Binding("escape", "close", "Close")]

    def __init__(self, title: str, body: str | Text) -> None:
        super().__init__(title)
        self.body = body

    def compose_body(self) -> ComposeResult:
        yield Static(self.body)
        with Horizontal():
            yield NavButton("OK", id="ok", variant="primary")

    def on_nav_button_pressed(self, event: NavButton.Pressed) -> None:
        event.stop()
        self.dismiss(None)

    def action_close(self) -> None:
        self.dismiss(None)


class SecretModal(Dialog[str | None]):
    """Ask for a secret (an identity file's passphrase): masked as typed, Esc gives up."""

    DEFAULT_CSS = """
    SecretModal .modal-help {
        color: $text-muted;
        padding: 1 0 0 0;
    }
    """

    AUTO_FOCUS = "#secret"
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str, question: str) -> None:
        super().__init__(title)
        self.question = question

    def compose_body(self) -> ComposeResult:
        yield Static(self.question)
        yield Input(password=True, compact=True, id="secret")
        yield Static("Enter to continue · Esc to give up", classes="modal-help")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.dismiss(event.value)

    def action_cancel(self) -> None:
        self.dismiss(None)


class HelpModal(Dialog[None]):
    """The help panel of a step (? or F1): scrolls, Esc / ? / F1 close it."""

    DEFAULT_CSS = """
    HelpModal > Vertical {
        width: 90;
        max-height: 100%;
    }
    HelpModal VerticalScroll {
        height: auto;
        max-height: 18;
    }
    """

    AUTO_FOCUS = "#help-scroll"
    BINDINGS = [Binding("escape,question_mark,f1", "close", "Close")]

    def __init__(self, title: str, body: Text) -> None:
        super().__init__(title)
        self.body = body

    def compose_body(self) -> ComposeResult:
        from textual.containers import VerticalScroll

        with VerticalScroll(id="help-scroll"):
            yield Static(self.body, id="help-body")
        yield Static(Text("↑↓ scroll · Esc closes", style="dim"))

    def action_close(self) -> None:
        self.dismiss(None)
