"""A scripted stand-in for questionary, keyed by the prompt text.

Only the terminal interaction is replaced: the wizard's own validators still run on every
scripted answer (a rejected answer is recorded and the next one is tried, as a person would
retype), select/checkbox answers must be among the offered choices, and a prompt the script
does not know fails the test.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

ALL = object()  # checkbox answer: tick every offered choice


@dataclass
class Always:
    """An answer given every time the prompt appears (zero or more times)."""

    value: Any


@dataclass
class ScriptedPrompts:
    script: dict[str, list[Any] | Always]
    asked: list[tuple[str, str, Any]] = field(default_factory=list)
    rejected: list[tuple[str, Any, str]] = field(default_factory=list)
    # The default each prompt offered (what Enter alone would answer), by prompt text.
    defaults: dict[str, Any] = field(default_factory=dict)

    def install(self, monkeypatch: pytest.MonkeyPatch) -> ScriptedPrompts:
        import questionary

        for kind in ("text", "password", "path", "select", "confirm", "checkbox"):
            monkeypatch.setattr(questionary, kind, self._factory(kind))
        return self

    def _factory(self, kind: str) -> Any:
        def make(message: str, *args: Any, **kwargs: Any) -> _Question:
            if args and kind in ("select", "checkbox"):
                kwargs.setdefault("choices", args[0])
            if "default" in kwargs:
                self.defaults[message] = kwargs["default"]
            return _Question(self, kind, message, kwargs)

        return make

    def _key(self, message: str) -> str:
        if message in self.script:
            return message
        matches = [k for k in self.script if message.startswith(k)]
        if not matches:
            raise AssertionError(f"the wizard asked a prompt the script does not know: "
                                 f"{message!r}")
        return max(matches, key=len)

    def unanswered(self) -> list[str]:
        """Prompts the script expected that were never asked (Always ones excepted)."""
        return [k for k, v in self.script.items() if isinstance(v, list) and v]


class _Question:
    def __init__(self, owner: ScriptedPrompts, kind: str, message: str,
                 kwargs: dict[str, Any]) -> None:
        self.owner = owner
        self.kind = kind
        self.message = message
        self.kwargs = kwargs

    def ask(self) -> Any:  # the wizard must never use ask(): it swallows Ctrl-C
        raise AssertionError(f"{self.message!r} used ask(); use unsafe_ask()")

    def unsafe_ask(self) -> Any:
        key = self.owner._key(self.message)
        answers = self.owner.script[key]
        while True:
            if isinstance(answers, Always):
                answer = answers.value
            elif answers:
                answer = answers.pop(0)
            else:
                raise AssertionError(f"the script has no more answers for {self.message!r}")
            if answer is KeyboardInterrupt:
                raise KeyboardInterrupt
            value = self._convert(answer)
            validate = self.kwargs.get("validate")
            if validate is not None and self.kind in ("text", "password", "path"):
                verdict = validate(value)
                if verdict is not True:
                    self.owner.rejected.append((self.message, value, str(verdict)))
                    if isinstance(answers, Always):
                        raise AssertionError(f"{self.message!r} rejects {value!r}: {verdict}")
                    continue
            self.owner.asked.append((self.kind, self.message, value))
            return value

    def _convert(self, answer: Any) -> Any:
        if self.kind == "select":
            choices = [(getattr(c, "title", c), getattr(c, "value", c))
                       for c in self.kwargs["choices"]]
            for title, value in choices:
                if answer == value or answer == title:
                    return value
            # A choice may be named by the start of its title, as a person reads it.
            starting = [v for t, v in choices if isinstance(answer, str)
                        and str(t).startswith(answer)]
            if len(starting) == 1:
                return starting[0]
            raise AssertionError(f"{answer!r} is not a choice of {self.message!r}: "
                                 f"{[getattr(c, 'title', c) for c in self.kwargs['choices']]}")
        if self.kind == "checkbox":
            values = [getattr(c, "value", c) for c in self.kwargs["choices"]]
            if answer is ALL:
                return values
            for item in answer:
                assert item in values, f"{item!r} is not a choice of {self.message!r}"
            return list(answer)
        if self.kind == "confirm":
            assert isinstance(answer, bool), f"{self.message!r} wants yes/no, got {answer!r}"
        return answer
