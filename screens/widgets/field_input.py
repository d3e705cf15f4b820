"""One answer as a one-line input: label, input, validity mark.

Built from a `FieldSpec` (installer/answers/form.py), so the validator is the one declared with the
answer in installer/answers/model.py. Help and errors go to the screen's hint line (one line per
field keeps forms usable at 80x24). Local paths can be picked with Ctrl+O.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypedDict

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.message import Message
from textual.validation import ValidationResult, Validator
from textual.widgets import Input, Label, Static

from installer.answers import FieldSpec, Secret
from installer.answers.model import AnswerValue
from screens.usable import UNKNOWN, problem_with


class FieldOptions(TypedDict, total=False):
    """FieldInput's optional arguments, given per answer path by a screen (see
    screens/sections.py)."""

    usable: Callable[[AnswerValue], str | None]
    unusable_blocks: bool


class SpecValidator(Validator):
    """Textual's face of the answer's own validator."""

    def __init__(self, field_input: FieldInput) -> None:
        super().__init__()
        self.field_input = field_input

    def validate(self, value: str) -> ValidationResult:
        error = self.field_input.error_for(value)
        return self.success() if error is None else self.failure(error)


class FieldInput(Horizontal):
    DEFAULT_CSS = """
    FieldInput {
        height: 1;
        width: 1fr;
    }
    FieldInput > .field-label {
        width: 30;
        height: 1;
        padding: 0 1 0 0;
        color: $text-muted;
    }
    FieldInput:focus-within > .field-label {
        color: $text;
        text-style: bold;
    }
    FieldInput > Input {
        width: 1fr;
        height: 1;
    }
    FieldInput > .field-mark {
        width: 2;
        height: 1;
        padding: 0 0 0 1;
    }
    FieldInput.-invalid > .field-mark {
        color: $error;
    }
    FieldInput.-invalid > Input {
        color: $error;
    }
    FieldInput.-valid > .field-mark {
        color: $success;
    }
    """

    BINDINGS = [Binding("ctrl+o", "browse", "Browse", show=True)]

    class Changed(Message):
        """The text changed; `error` is None when the value is acceptable."""

        def __init__(self, field_input: FieldInput, error: str | None) -> None:
            super().__init__()
            self.field_input = field_input
            self.error = error

        @property
        def control(self) -> FieldInput:
            return self.field_input

    def __init__(self, spec: FieldSpec, value: AnswerValue = None, *, required: bool = False,
                 label: str | None = None, id: str | None = None,
                 disabled: bool = False,
                 usable: Callable[[AnswerValue], str | None] | None = None,
                 unusable_blocks: bool = False) -> None:
        super().__init__(id=id or "f-" + spec.path.replace(".", "-"), disabled=disabled)
        self.spec = spec
        self.required = required
        # Whether a well-formed value can be used (the file exists and parses...): ✔ only
        # then. Returns a problem, None, or UNKNOWN (cannot be told from here: no mark).
        self.usable = usable or (lambda v: problem_with(spec.path, v))
        # Whether an unusable value also refuses Next (when no check of the step would
        # catch it), or only loses its ✔ and says why.
        self.unusable_blocks = unusable_blocks
        self._unknown = False
        self.unusable: str | None = None
        self._label = label or spec.label
        self._original = value
        self._initial = spec.format(value)
        # Why Next was refused because of this field, until it is edited (see StepScreen).
        self.refused: str | None = None

    def compose(self) -> ComposeResult:
        yield Label(self._label, classes="field-label")
        suggester = None
        if self.spec.choices:
            from textual.suggester import SuggestFromList

            # Type the first letters, → completes: a choice is typed like any other answer.
            suggester = SuggestFromList(self.spec.choices, case_sensitive=False)
        yield Input(
            value=self._initial,
            placeholder=self.spec.placeholder,
            password=self.spec.secret,
            suggester=suggester,
            compact=True,
            validators=[SpecValidator(self)],
            validate_on=["changed", "submitted"],
            valid_empty=False,
            id="input",
        )
        yield Static("", classes="field-mark")

    def on_mount(self) -> None:
        self._show(self.error)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "browse":
            return self.spec.path_kind == "local"
        return True

    # --- value -------------------------------------------------------------------------

    @property
    def input(self) -> Input:
        return self.query_one("#input", Input)

    @property
    def text(self) -> str:
        return self.input.value

    @text.setter
    def text(self, value: str) -> None:
        self.input.value = value

    def error_for(self, text: str) -> str | None:
        """Why `text` is refused (None: accepted). Sets `unusable` when the value is well
        formed but cannot be used (a file that is not there)."""
        self._unknown = False
        self.unusable = None
        try:
            value = self.spec.parse(text)
        except ValueError as exc:
            return str(exc)
        if self.required and value is None:
            return f"{self.spec.label} is required"
        if value is not None and not isinstance(value, Secret):
            problem = self.usable(value)
            if problem == UNKNOWN:
                self._unknown = True
            elif problem is not None:
                self.unusable = problem
                if self.unusable_blocks:
                    return problem
        return None

    @property
    def error(self) -> str | None:
        if self.disabled:
            return None
        return self.error_for(self.text if self.is_mounted else self._initial)

    @property
    def value(self) -> AnswerValue:
        """The parsed value; raises ValueError when the text is not acceptable.

        A secret left as it came (from `*_env` or `*_file` in an answers file) keeps its
        origin, so the saved answers still name the variable or file, never the value."""
        value = self.spec.parse(self.text)
        if (isinstance(value, Secret) and isinstance(self._original, Secret)
                and value.value == self._original.value):
            return self._original
        return value

    @property
    def help(self) -> str:
        return self.spec.help

    def _show(self, error: str | None) -> None:
        if not self.is_mounted:
            return
        empty = self.text == ""
        bad = (error is not None and not (empty and not self.required)) or (
            error is None and self.unusable is not None)
        self.set_class(bad, "-invalid")
        self.set_class(not bad and not empty and not self._unknown, "-valid")
        mark = self.query_one(".field-mark", Static)
        if bad:
            mark.update("✘")
        elif error is None and not empty and not self._unknown:
            mark.update("✔")
        else:
            mark.update("")

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        self.refused = None
        error = self.error
        self._show(error)
        self.post_message(self.Changed(self, error))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        # Enter moves on to the next field, as in any form.
        event.stop()
        self.screen.focus_next()

    def action_browse(self) -> None:
        from screens.widgets.modals import FilePicker

        def picked(path: str | None) -> None:
            if path:
                self.text = path
                self.input.focus()

        self.app.push_screen(FilePicker(self.spec.label, self.text), picked)
