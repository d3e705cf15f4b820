"""Reading an answers file: YAML to `Answers`, every value checked by its declaration, every
problem reported at once; secrets resolved from the file, the environment or a file; the YAML
parser's errors turned into a line the user can find."""

from __future__ import annotations

import dataclasses
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_origin

from installer.answers.checks import check_advanced_answers
from installer.answers.form import (
    _field_types,
    _public_fields,
    _unwrap_optional,
    file_key,
    local_path,
)
from installer.answers.model import ANSWERS_VERSION, Answers, Secret, _kind, _shown
from installer.errors import AnswersError, AnswersErrors, one_or_all
from installer.redact import Redactor
from installer.safetext import visible_line
from installer.userfiles import ANSWERS_LIMIT, SECRET_LIMIT, read_user_file
from installer.validators import validate_env_value
from installer.yamldata import YAMLValue

if TYPE_CHECKING:
    from installer.safeyaml import YamlError


class _Loader:
    def __init__(self, base: Path, redactor: Redactor | None, env: Mapping[str, str],
                 file_is_private: bool) -> None:
        self.base = base
        self.redactor = redactor
        self.env = env
        self.file_is_private = file_is_private
        self.warnings: list[str] = []
        # Every problem found, so one run reports them all.
        self.problems: list[AnswersError] = []
        self.unresolved: dict[str, AnswersError] = {}

    def build(self, cls: type, data: YAMLValue, path: str) -> object:
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise AnswersError(path or "answers", f"expected a mapping, got {_kind(data)}")
        hints = _field_types(cls)
        fields = {file_key(f): f for f in _public_fields(cls)}
        secret_keys: dict[str, str] = {}
        for name, f in fields.items():
            if f.metadata.get("secret"):
                for suffix in ("", "_env", "_file"):
                    secret_keys[name + suffix] = name
        for key in data:
            if not isinstance(key, str) or (key not in fields and key not in secret_keys):
                self.problems.append(unknown_key_problem(path, key,
                                                         set(fields) | set(secret_keys)))
        values: dict[str, Any] = {}
        for name, f in fields.items():
            sub = _join(path, name)
            try:
                if f.metadata.get("secret"):
                    given = [k for k in (name, name + "_env", name + "_file") if k in data]
                    if len(given) > 1:
                        raise AnswersError(sub, f"give only one of {', '.join(given)}")
                    if given:
                        values[name] = self.secret(given[0], data[given[0]],
                                                   _join(path, given[0]))
                    continue
                if name not in data:
                    continue
                values[f.name] = self.value(hints[f.name], f, data[name], sub)
            except AnswersError as problem:
                self.problems.append(problem)
        try:
            return cls(**values)
        except TypeError:  # a required value was refused above; that problem is reported
            return None

    def value(self, tp: object, f: dataclasses.Field[object], raw: YAMLValue,
              path: str) -> object:
        inner, optional = _unwrap_optional(tp)
        if raw is None:
            if optional:
                return None
            raise AnswersError(path, "must not be empty")
        if isinstance(inner, type) and dataclasses.is_dataclass(inner):
            return self.build(inner, raw, path)
        validator = f.metadata.get("validator")
        if inner is bool:
            if not isinstance(raw, bool):
                raise AnswersError(path, f"expected true or false, got {_shown(raw)}")
            value: Any = raw
        elif inner is int and validator is None:
            if isinstance(raw, bool) or not isinstance(raw, int):
                raise AnswersError(path, f"expected a whole number, got {_shown(raw)}")
            value = raw
        elif inner is float:
            if isinstance(raw, bool) or not isinstance(raw, int | float) or raw <= 0:
                raise AnswersError(path, f"expected a positive number, got {_shown(raw)}")
            value = float(raw)
        elif get_origin(inner) is list:
            if not isinstance(raw, list):
                raise AnswersError(path, f"expected a list, got {_kind(raw)}")
            value = raw
        elif inner is str:
            if isinstance(raw, bool) or not isinstance(raw, str | int | float):
                raise AnswersError(path, f"expected text, got {_kind(raw)}")
            value = str(raw)
        else:
            value = raw
        if validator is not None:
            try:
                value = validator(value)
            except ValueError as exc:
                raise AnswersError(path, str(exc)) from None
        elif isinstance(value, str):
            try:
                validate_env_value(value)
            except ValueError as exc:
                raise AnswersError(path, str(exc)) from None
        kind = f.metadata.get("path")
        if kind == "local" and isinstance(value, str):
            value = str(self.local_path(value))
        return value

    def local_path(self, value: str) -> Path:
        return local_path(value, self.base)

    def secret(self, key: str, raw: YAMLValue, path: str) -> Secret | None:
        if not isinstance(raw, str) or raw == "":
            raise AnswersError(path, "expected text")
        if key.endswith("_env"):
            if raw not in self.env:
                # Not an error yet: only a command or check that uses this secret needs it.
                self.unresolved[path] = AnswersError(
                    path, f"the environment variable {raw} is not set",
                    f"export {raw}=... before running, or use a *_file")
                return None
            value, source = self.env[raw], f"env:{raw}"
        elif key.endswith("_file"):
            file = self.local_path(raw)
            try:
                value = read_user_file(file, limit=SECRET_LIMIT).decode("utf-8").rstrip("\r\n")
            except OSError as exc:
                raise AnswersError(path, f"cannot read {file}: {exc.strerror or exc}") from None
            except UnicodeDecodeError:
                raise AnswersError(path, f"{file} is not UTF-8 text") from None
            source = f"file:{file}"
        else:
            value, source = raw, "inline"
            if not self.file_is_private:
                self.warnings.append(
                    f"{path} is written inline in a file that others can read: "
                    f"use {key}_env or {key}_file, or chmod 600 the answers file"
                )
        try:
            validate_env_value(value)
        except ValueError as exc:
            raise AnswersError(path, f"the secret {exc}") from None
        if value == "":
            raise AnswersError(path, "the secret is empty")
        if self.redactor is not None:
            self.redactor.add(value)
        return Secret(value, source)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def parse_answers(
    data: YAMLValue, *, base: Path | None = None, redactor: Redactor | None = None,
    env: Mapping[str, str] | None = None, file_is_private: bool = True,
) -> Answers:
    """Build Answers from already-parsed YAML data, validating every value."""
    loader = _Loader(base or Path.cwd(), redactor, os.environ if env is None else env,
                     file_is_private)
    if not isinstance(data, dict):
        raise AnswersError("", "the answers file must be a YAML mapping (key: value lines)")
    version = data.get("version", ANSWERS_VERSION)
    if isinstance(version, bool) or version != ANSWERS_VERSION:
        raise AnswersError("version", f"unsupported version {_shown(version)}; this tool "
                           "reads 1")
    answers = loader.build(Answers, data, "")
    if loader.problems:
        raise one_or_all(loader.problems)
    assert isinstance(answers, Answers)
    answers.warnings.extend(check_advanced_answers(answers))
    answers.warnings.extend(loader.warnings)
    answers.unresolved.update(loader.unresolved)
    return answers


def unknown_key_problem(path: str, key: object, known: set[str]) -> AnswersError:
    """An unknown key, with the known key it most likely meant (a typo never passes)."""
    import difflib

    name = str(key)
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    if close:
        return AnswersError(_join(path, name), f"unknown key; did you mean {close[0]!r}?",
                            f"rename it to {_join(path, close[0])}")
    return AnswersError(_join(path, name),
                        f"unknown key (known here: {', '.join(sorted(known))})")


def yaml_error_problem(file: Path, text: str, exc: YamlError) -> AnswersError:
    """Where a YAML file stops parsing, at a line that exists, with the parser's reason and
    the line itself (secret-looking values masked, control characters made visible)."""
    from installer.redact import mask_secret_values

    fix = "check the indentation (spaces, not tabs) and that each line is `key: value`"
    if exc.line is None:  # nesting, a number out of range: the message says what
        return AnswersError("", f"{file} {exc}", fix)
    reason = str(exc.problem or "").strip()
    where = ""
    if exc.line is not None:
        lines = text.splitlines() or [""]
        line, column = exc.line, exc.column or 1
        if line > len(lines):  # the parser reports the end of the file as one line past it
            line = len(lines)
            column = len(lines[-1]) + 1
            where = f" at line {line} (the end of the file)"
        else:
            where = f" at line {line}, column {column}"
        shown = visible_line(mask_secret_values(lines[line - 1]).rstrip())
        if shown:
            reason = (reason + "; " if reason else "") + f"the line reads: {shown[:60]!r}"
    return AnswersError("", f"{file} is not valid YAML{where}" + (f": {reason}" if reason else ""),
                        fix)


def require_secrets(answers: Answers, prefixes: tuple[str, ...] | None = None) -> None:
    """Raise for the secrets named by an unset variable that this work uses (`prefixes` of
    answer paths, e.g. ("database.",); None: every one). An SSH password is not needed when
    an identity file is given."""
    problems = []
    for path, problem in answers.unresolved.items():
        if path.startswith("target.password") and answers.target is not None \
                and answers.target.identity_file:
            continue
        if prefixes is None or path.startswith(prefixes):
            problems.append(problem)
    if problems:
        raise one_or_all(problems)


def load_answers(path: str | Path, *, redactor: Redactor | None = None,
                 env: Mapping[str, str] | None = None) -> Answers:
    """Read and validate an answers file. Raises AnswersError (exit 2) on any defect."""
    file = Path(path)
    try:
        text = read_user_file(file, limit=ANSWERS_LIMIT).decode("utf-8")
        mode = file.stat().st_mode
    except FileNotFoundError:
        raise AnswersError("", f"answers file {file} does not exist") from None
    except OSError as exc:
        raise AnswersError("", f"cannot read answers file {file}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise AnswersError("", f"answers file {file} is not UTF-8 text") from None
    from installer.safeyaml import YamlError, load_yaml  # not needed until a file is read

    try:
        data = load_yaml(text)
    except YamlError as exc:
        raise yaml_error_problem(file, text, exc) from None
    private = not (mode & (stat.S_IRGRP | stat.S_IROTH))
    try:
        answers = parse_answers(data, base=file.resolve().parent, redactor=redactor, env=env,
                                file_is_private=private)
    except AnswersErrors as exc:
        raise AnswersErrors(exc.problems, str(file)) from None
    answers.source = file
    return answers
