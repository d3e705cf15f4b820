"""A section of answers (installer/answers/sections.py) as form widgets: one input per
answer, a tick for a yes/no answer, the required marker from the declaration. Screens yield
these and keep only the widgets a step truly needs of its own (choices, tests, notes)."""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping

from textual.dom import DOMNode
from textual.widget import Widget

from installer.answers import Answers, Section
from screens.widgets.field_input import FieldInput, FieldOptions
from screens.widgets.toggles import Tick


def input_id(path: str) -> str:
    return "f-" + path.replace(".", "-")


def section_widgets(section: Section, answers: Answers, *, every: bool = False,
                    options: Mapping[str, FieldOptions] | None = None) -> Iterator[Widget]:
    """The section's inputs: those shown for `answers`, or `every` one (the screen then
    shows and hides them with `show_section` as choices change). `options`: extra
    FieldInput arguments by path (a usability check, say)."""
    asks = section.asks if every else section.shown_asks(answers)
    for ask in asks:
        spec = ask.spec
        value = spec.get(answers)
        if spec.kind == "bool":
            label = f"{spec.label} ({spec.help})" if spec.help else spec.label
            yield Tick(label, bool(value), id=input_id(ask.path), compact=True)
            continue
        yield FieldInput(spec, value, required=section.is_required(ask.path, answers),
                         **(options or {}).get(ask.path, FieldOptions()))


def show_section(screen: DOMNode, section: Section, probe: Answers) -> None:
    """Show each of the section's inputs the answers `probe` (what the form says now) call
    for, and hide the others."""
    for ask in section.asks:
        found = screen.query("#" + input_id(ask.path))
        if found:
            found.first().display = ask.shown(probe)


def store_ticks(screen: DOMNode, section: Section, answers: Answers) -> None:
    """Set each yes/no answer of the section from its tick on screen."""
    for ask in section.asks:
        if ask.spec.kind == "bool":
            ask.spec.set(answers, screen.query_one("#" + input_id(ask.path), Tick).value)


def section_fields(screen: DOMNode, section: Section) -> list[FieldInput]:
    """The section's inputs that are on screen and shown."""
    out: list[FieldInput] = []
    for path in section.paths:
        found = screen.query("#" + input_id(path))
        if found and isinstance(found.first(), FieldInput) and found.first().display:
            out.append(found.first(FieldInput))
    return out


def section_problem(screen: DOMNode, section: Section,
                    answers: Answers) -> tuple[FieldInput, str] | None:
    """What the section's own rules (beyond each input's) refuse in the form as it stands,
    the section taken as shown: the input to fix and why. Call it once every input of the
    section is acceptable (their values are parsed here)."""
    if not section.one_of:
        return None
    probe = copy.deepcopy(answers)
    for field in section_fields(screen, section):
        field.spec.set(probe, field.value)
    path = section.none_of(probe)
    if path is None:
        return None
    return screen.query_one("#" + input_id(path), FieldInput), section.one_of_missing
