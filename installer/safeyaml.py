"""Reading YAML the user or the vendor gives us, with limits.

`yaml.safe_load` refuses arbitrary objects but still expands aliases (ten lines of
"billion laughs" become gigabytes once walked), recurses without bound on deep nesting
(RecursionError), turns a 5,000-digit number into a ValueError, and lets a repeated key
silently replace the first one. `load_yaml` refuses all four with a `YamlError` naming the
line, so every caller can turn it into a clear message and exit code 2.
"""

from __future__ import annotations

from collections.abc import Hashable

import yaml
from yaml.composer import ComposerError
from yaml.constructor import ConstructorError
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, Node

from installer.safetext import visible_line
from installer.yamldata import YAMLValue

MAX_DEPTH = 64  # far deeper than any answers file or Helm values file needs
_SHOWN_KEY = 60  # characters of a duplicate key quoted in a message


class YamlError(ValueError):
    """The text is not YAML we accept; the message says why and where (no content quoted
    beyond a duplicate key's name). `line` and `column` (1-based) say where the parser
    stopped, when it knows; `problem` is the parser's own reason."""

    def __init__(self, message: str, line: int | None = None, column: int | None = None,
                 problem: str | None = None) -> None:
        super().__init__(message)
        self.line, self.column, self.problem = line, column, problem


class _LimitedLoader(yaml.SafeLoader):
    """SafeLoader without aliases, with a nesting limit and no duplicate keys."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        if self.check_event(AliasEvent):
            # types-PyYAML leaves peek_event unannotated.
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise ComposerError(None, None, "aliases (*name) are not accepted: write the "
                                "value out in full", event.start_mark)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                event = self.peek_event()  # type: ignore[no-untyped-call]  # as above
                raise ComposerError(None, None, f"nested more than {MAX_DEPTH} levels deep",
                                    event.start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: MappingNode, deep: bool = False
                          ) -> dict[Hashable, YAMLValue]:
        seen: set[Hashable] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<:` merges another mapping: the base class handles it
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:
                continue  # an unhashable key; the base class reports it
            if duplicate:
                shown = visible_line(str(key))
                if len(shown) > _SHOWN_KEY:
                    shown = shown[:_SHOWN_KEY] + "..."
                raise ConstructorError(None, None, f"the key {shown!r} appears twice in the "
                                       "same mapping (remove one)", key_node.start_mark)
        return super().construct_mapping(node, deep)


def load_yaml(text: str) -> YAMLValue:
    """Parse one YAML document with the limits above. Raises YamlError."""
    try:
        return yaml.load(text, Loader=_LimitedLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = exc.problem if isinstance(exc, ComposerError | ConstructorError) else None
        raise YamlError(f"is not valid YAML{where}" + (f": {problem}" if problem else ""),
                        mark.line + 1 if mark else None, mark.column + 1 if mark else None,
                        exc.problem) from None
    except yaml.YAMLError:
        raise YamlError("is not valid YAML") from None
    except RecursionError:
        raise YamlError(f"is nested too deeply (more than {MAX_DEPTH} levels)") from None
    except (ValueError, OverflowError):
        # int() of a number with thousands of digits, or a float/date out of range.
        raise YamlError("holds a number or date that is out of range") from None


__all__ = ["MAX_DEPTH", "YamlError", "load_yaml"]
