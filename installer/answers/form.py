"""Reading the declarations: the type and file key of each answer, and each answer as a form
field for every front end.

A field is named by its dotted path in `Answers` ("database.port"). Its label, help, default,
choices and validator come from the `setting(...)` metadata in model.py, so the Textual inputs,
the plain prompts and the answers-file loader accept exactly the same values. UI-free: the
front ends (screens/) build their widgets and prompts from a `FieldSpec`.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union, cast, get_args, get_origin

from installer.answers.model import Answers, AnswerValue, Secret, Validator
from installer.validators import validate_env_value


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _public_fields(cls: type) -> list[dataclasses.Field[Any]]:
    return [f for f in dataclasses.fields(cls) if not f.metadata.get("internal")]


def file_key(f: dataclasses.Field[object]) -> str:
    """The field's name in the answers file (`key=` when it cannot be a Python name)."""
    return str(f.metadata.get("key") or f.name)


@dataclass(frozen=True)
class FieldSpec:
    """One answer as a form field."""

    path: str  # dotted path from Answers, e.g. "database.admin_password"
    name: str
    owner: type
    label: str
    help: str
    default: object  # dataclasses.MISSING when the answer has none
    validator: Validator | None
    secret: bool
    path_kind: str | None  # "local", "target" or None
    choices: tuple[str, ...] | None
    kind: str  # "text", "int", "float", "bool", "list", "secret"
    optional: bool

    @property
    def placeholder(self) -> str:
        if self.secret:
            return "(hidden as you type)"
        if self.choices:
            return " | ".join(self.choices)
        if self.default not in (None, dataclasses.MISSING, [], ""):
            return str(self.default)
        return ""

    def parse(self, text: str, *, base: Path | None = None) -> AnswerValue:
        """Turn what the user typed into the answer's value, or raise ValueError (shown as is).

        Empty text means "no value": None for optional answers, the default for the others.
        """
        if self.secret:
            if text == "":
                return None
            validate_env_value(text)
            return Secret(text, "inline")
        raw = text.strip()
        if raw == "":
            if self.optional:
                return None
            if self.default is not dataclasses.MISSING:
                return cast(AnswerValue, self.default)  # a declared default is an answer
            raise ValueError(f"{self.label} is required")
        value: AnswerValue
        if self.kind == "int":
            value = raw if self.validator is not None else _whole_number(raw)
        elif self.kind == "float":
            value = _positive_number(raw)
        elif self.kind == "bool":
            value = raw.lower() in ("1", "true", "yes", "y", "on")
        elif self.kind == "list":
            value = [part.strip() for part in raw.split(",") if part.strip()]
        else:
            value = raw
        if self.validator is not None:
            value = self.validator(value)
        elif isinstance(value, str):
            validate_env_value(value)
        if self.path_kind == "local" and isinstance(value, str):
            value = str(local_path(value, base))
        return value

    def validate(self, text: str) -> str | None:
        """The error for `text`, or None when it is acceptable."""
        try:
            self.parse(text)
        except ValueError as exc:
            return str(exc)
        return None

    def format(self, value: object) -> str:
        """The text an input shows for a value (secrets included: inputs mask them)."""
        if value is None or value is dataclasses.MISSING:
            return ""
        if isinstance(value, Secret):
            return value.value
        if isinstance(value, list):
            return ", ".join(str(v) for v in value)
        return str(value)

    def get(self, answers: Answers) -> AnswerValue:
        obj: object = answers
        for part in self.path.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                return None
        return cast(AnswerValue, obj)  # a field's path ends at one answer, not a section

    def set(self, answers: Answers, value: AnswerValue) -> None:
        """Store `value`, creating an optional section (target, jump, proxy) when it is absent."""
        parts = self.path.split(".")
        obj: Any = answers
        for part in parts[:-1]:
            child = getattr(obj, part)
            if child is None:
                child = blank_section(_section_type(type(obj), part))
                setattr(obj, part, child)
            obj = child
        setattr(obj, parts[-1], value)


def local_path(value: str, base: Path | None = None) -> Path:
    """A local path as the answers loader stores it: ~ expanded, absolute."""
    p = Path(os.path.expanduser(value))
    return p if p.is_absolute() else (base or Path.cwd()) / p


def _whole_number(raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{raw!r} is not a whole number") from None


def _positive_number(raw: str) -> float:
    try:
        number = float(raw)
    except ValueError:
        raise ValueError(f"{raw!r} is not a number") from None
    if number <= 0:
        raise ValueError(f"{raw!r} must be more than 0")
    return number


def _section_type(cls: type, name: str) -> type:
    inner, _ = _unwrap_optional(_field_types(cls)[name])
    if not (isinstance(inner, type) and dataclasses.is_dataclass(inner)):
        raise KeyError(f"{cls.__name__}.{name} is not a section")
    return inner


def blank_section(cls: type) -> object:
    """A section with its defaults; fields without a default start empty ("")."""
    values = {
        f.name: ""
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }
    return cls(**values)


def field_spec(path: str) -> FieldSpec:
    """The form field for an answer, from its declaration in model.py."""
    cls: type = Answers
    parts = path.split(".")
    for part in parts[:-1]:
        cls = _section_type(cls, part)
    name = parts[-1]
    declared = {f.name: f for f in dataclasses.fields(cls)}
    if name not in declared:
        raise KeyError(f"no answer named {path}")
    f = declared[name]
    tp, optional = _unwrap_optional(_field_types(cls)[name])
    meta = f.metadata
    if meta.get("secret"):
        kind = "secret"
    elif tp is bool:
        kind = "bool"
    elif tp is int:
        kind = "int"
    elif tp is float:
        kind = "float"
    elif get_origin(tp) is list:
        kind = "list"
    else:
        kind = "text"
    if f.default is not dataclasses.MISSING:
        default: Any = f.default
    elif f.default_factory is not dataclasses.MISSING:
        default = f.default_factory()
    else:
        default = dataclasses.MISSING
    return FieldSpec(
        path=path,
        name=name,
        owner=cls,
        label=str(meta.get("label") or name),
        help=str(meta.get("help") or ""),
        default=default,
        validator=meta.get("validator"),
        secret=bool(meta.get("secret")),
        path_kind=meta.get("path"),
        choices=meta.get("choices"),
        kind=kind,
        optional=optional,
    )
