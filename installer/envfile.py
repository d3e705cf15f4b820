"""Reading and writing env files (customer.env, .env) the way Docker Compose reads them.

Two parsers read these files, and they disagree:

* docker-compose v1 (1.29, Debian's package) uses python-dotenv. Unquoted values lose a
  trailing `<spaces>#comment` and surrounding spaces; quoted values decode a few backslash
  escapes; then every `${NAME}` / `${NAME:-default}` is expanded, whatever the quoting, and
  nothing escapes it. `$NAME` without braces and `$$` stay as they are. Its quoted-value regex
  is greedy across lines, so a quoted value ending in a backslash swallows the lines after it.
* docker compose v2 (compose-go) cuts unquoted values at ` #`, expands `$NAME`, `${...}` in
  unquoted and double-quoted values with `$$` as the escape, decodes backslash escapes in
  double quotes, and keeps single-quoted values literal (only `\\'` is unescaped).

`encode()` picks, for one value, the first form that the parser(s) in question read back as
exactly that value: plain, then single quotes, then double quotes, then a form specific to the
detected Compose. Each candidate is checked against a model of the parser(s) below (the tests
hold the models to the real binaries), so a value is either written so that it reads back
byte for byte, or refused with the reason (`cannot_hold`).

`EnvFile` keeps a file's lines as they are (comments, order, unknown keys, line endings) and
changes only the entries it is asked to.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

Flavour = Literal["v1", "v2"]
FLAVOURS: tuple[Flavour, ...] = ("v1", "v2")
FLAVOUR_NAMES = {"v1": "docker-compose v1", "v2": "docker compose v2"}

# Plain values are written without quotes; everything else is quoted.
_PLAIN = re.compile(r"[A-Za-z0-9_./:@%+,=-]*")

# python-dotenv (as used by docker-compose 1.29): the pieces of its grammar that matter here.
_V1_SPACE = r"[^\S\r\n]*"
_V1_SINGLE = re.compile(r"'((?:\\'|[^'])*)'")
_V1_DOUBLE = re.compile(r'"((?:\\"|[^"])*)"')
_V1_TAIL = re.compile(_V1_SPACE + r"(?:#[^\r\n]*)?" + _V1_SPACE + r"(?:\r\n|\n|\r|$)")
_V1_DOUBLE_ESCAPES = re.compile(r"\\[\\'\"abfnrtv]")
_V1_SINGLE_ESCAPES = re.compile(r"\\[\\']")
_V1_VARIABLE = re.compile(r"\$\{[^}:]*(?::-[^}]*)?\}")
_V1_CONTROL = {"\\\\": "\\", "\\'": "'", '\\"': '"', "\\a": "\a", "\\b": "\b", "\\f": "\f",
               "\\n": "\n", "\\r": "\r", "\\t": "\t", "\\v": "\v"}

# compose-go: spaces it trims before a value, escapes it decodes in double quotes.
_V2_SPACE = "\t\v\f\r \x85\xa0"
_V2_ESCAPES = re.compile(r"\\(?:[abcfnrtv$\"\\]|0[0-7]{0,3})")
_V2_CONTROL = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v",
               '"': '"', "\\": "\\", "$": "$$"}
_V2_REFERENCE = re.compile(r"\$(\$|[A-Za-z_][A-Za-z0-9_]*|\{[^}]*\}|)")

# A line following the value in the models, full of quotes, so that a greedy quoted value
# that would run into the next line is caught.
_NEXT_LINE = "\nNEXT_KEY=\"q'q\" 'r\"r'\n"


class NotLiteral(ValueError):
    """The text does not read back as a literal value (expansion, syntax error)."""


def flavour_for(command: Sequence[str], version: str | None = None) -> Flavour:
    """Which parser a Compose command uses: `docker compose` and docker-compose >= 2 are v2."""
    if list(command[:2]) == ["docker", "compose"]:
        return "v2"
    if version and version.split(".", 1)[0].isdigit() and int(version.split(".", 1)[0]) >= 2:
        return "v2"
    return "v1"


# --- the parser models ---------------------------------------------------------------------


def _v1_read(text: str) -> str:
    """The value python-dotenv reads from `text` (what follows `KEY=`), before expansion."""
    # The `=` token takes the spaces after it (not line breaks).
    start = re.match(_V1_SPACE, text)
    body_start = start.end() if start else 0
    body = text[body_start:]
    if body[:1] in ("'", '"'):
        regex, escapes = (_V1_SINGLE, _V1_SINGLE_ESCAPES) if body[0] == "'" else (
            _V1_DOUBLE, _V1_DOUBLE_ESCAPES)
        match = regex.match(body)
        if match is None or not _V1_TAIL.match(body, match.end()):
            raise NotLiteral("docker-compose v1 cannot parse this quoted value")
        return escapes.sub(lambda m: _V1_CONTROL[m.group(0)], match.group(1))
    line = re.match(r"[^\r\n]*", body)
    part = line.group(0) if line else ""
    return re.sub(r"\s+#.*", "", part).rstrip()


def _v2_read(text: str) -> str:
    """The value compose-go reads from `text` (what follows `KEY=`), `$$` unescaped, or
    NotLiteral when it would expand a variable or cannot be parsed."""
    body = text.lstrip(_V2_SPACE)
    quote = body[:1]
    if quote not in ("'", '"'):
        value = body.split("\n", 1)[0].split(" #", 1)[0].rstrip()
        return _v2_unescape_dollars(value)
    chars: list[str] = []
    escaped = False
    for index in range(1, len(body)):
        char = body[index]
        if escaped:
            escaped = False
            if char != quote:
                chars.append("\\")
            chars.append(char)
            continue
        if char == "\\":
            escaped = True
        elif char == quote:
            tail = body[index + 1:].split("\n", 1)[0]
            if tail.strip(_V2_SPACE) and not tail.lstrip(_V2_SPACE).startswith("#"):
                raise NotLiteral("docker compose v2 reads text after the closing quote as "
                                 "another entry")
            value = "".join(chars)
            if quote == "'":
                return value
            return _v2_unescape_dollars(_V2_ESCAPES.sub(_v2_escape, value))
        else:
            chars.append(char)
    raise NotLiteral("unterminated quoted value")


def _v2_escape(match: re.Match[str]) -> str:
    code = match.group(0)[1:]
    if code[0] == "0":
        return chr(int(code[1:] or "0", 8))
    return _V2_CONTROL[code]


def _v2_unescape_dollars(value: str) -> str:
    def replace(match: re.Match[str]) -> str:
        if match.group(1) == "$":
            return "$"
        raise NotLiteral("docker compose v2 would expand the variable reference "
                         f"{match.group(0) or '$'}")

    return _V2_REFERENCE.sub(replace, value)


def read_value(text: str, flavour: Flavour) -> str:
    """The literal value a Compose flavour reads from `text`, the part after `KEY=`.

    Raises NotLiteral when the text is not read as a literal (a variable would be expanded,
    or it does not parse).
    """
    if flavour == "v1":
        value = _v1_read(text)
        if _V1_VARIABLE.search(value):
            raise NotLiteral("docker-compose v1 would expand " + _V1_VARIABLE.findall(value)[0])
        return value
    return _v2_read(text)


def _reads_back(raw: str, value: str, flavours: Iterable[Flavour]) -> bool:
    for flavour in flavours:
        try:
            if read_value(raw + _NEXT_LINE, flavour) != value:
                return False
        except NotLiteral:
            return False
    return True


# --- writing values ------------------------------------------------------------------------


def _escape_double(value: str, dollars: bool) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return escaped.replace("$", "$$") if dollars else escaped


def _candidates(value: str) -> list[str]:
    return [
        value,  # plain (only kept when it is in the plain alphabet, see encode)
        f"'{value}'",
        f'"{_escape_double(value, dollars=False)}"',
        f'"{_escape_double(value, dollars=True)}"',
    ]


def _basic_problem(value: str) -> str | None:
    if "\x00" in value:
        return "contains a NUL character, which no env file can hold"
    if "\n" in value or "\r" in value:
        return "contains a line break, which an env file cannot hold in one value"
    return None


def _flavours(flavour: Flavour | None) -> tuple[Flavour, ...]:
    return FLAVOURS if flavour is None else (flavour,)


def encode(value: str, flavour: Flavour | None = None) -> str:
    """The text to write after `KEY=` so that `flavour` (None: both) reads back `value`.

    Raises ValueError saying why when no such text exists.
    """
    text = None if _basic_problem(value) else _encode(value, _flavours(flavour))
    if text is None:
        raise ValueError(cannot_hold(value, flavour))
    return text


def _encode(value: str, flavours: tuple[Flavour, ...]) -> str | None:
    candidates = _candidates(value)
    if not _PLAIN.fullmatch(value):
        candidates = candidates[1:]
    for raw in candidates:
        if _reads_back(raw, value, flavours):
            return raw
    # Last resort, e.g. for a value ending in a backslash: unquoted, taken as written.
    if _reads_back(value, value, flavours):
        return value
    return None


def cannot_hold(value: str, flavour: Flavour | None = None) -> str | None:
    """Why `value` cannot be written for `flavour` (None: for both), or None when it can."""
    problem = _basic_problem(value)
    if problem:
        return problem
    if _encode(value, _flavours(flavour)) is not None:
        return None
    reasons = []
    for one in _flavours(flavour):
        if _encode(value, (one,)) is not None:
            continue
        reasons.append(_why(value, one))
    if not reasons:  # each can hold it, but not with the same text
        return ("no single way of writing it is read the same by docker-compose v1 and "
                "docker compose v2; the installer writes it for the Compose it detects")
    return "; ".join(reasons)


def _why(value: str, flavour: Flavour) -> str:
    if flavour == "v1":
        found = _V1_VARIABLE.search(value)
        if found:
            return (f"contains {found.group(0)}, which docker-compose v1 always expands when it "
                    "reads .env (its parser has no escape for it): choose a value without "
                    "'${', or install the `docker compose` v2 plugin")
        if value.endswith("\\"):
            return ("ends with a backslash and also has spaces at an end, a ' #' or a leading "
                    "quote: docker-compose v1 reads such a value back differently; choose "
                    "another value, or install the `docker compose` v2 plugin")
    return f"{FLAVOUR_NAMES[flavour]} cannot read this value back unchanged from an env file"


# --- files -----------------------------------------------------------------------------------

_KEY_LINE = re.compile(r"^[ \t]*(?:export[ \t]+)?([A-Za-z_][A-Za-z0-9_.\-]*)[ \t]*=[ \t]*(.*)$",
                       re.DOTALL)


@dataclass
class Entry:
    """One entry of an env file: its exact text (with line endings), and its key if any."""

    text: str
    key: str | None = None
    raw: str | None = None  # what follows `KEY=`, without the line ending

    @property
    def line_ending(self) -> str:
        if self.text.endswith("\r\n"):
            return "\r\n"
        return "\n" if self.text.endswith("\n") else ""


def _unterminated(raw: str) -> bool:
    """True when a quoted value continues on the next line."""
    if raw[:1] not in ("'", '"'):
        return False
    quote, escaped = raw[0], False
    for char in raw[1:]:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == quote:
            return False
    return True


class EnvFile:
    """An env file as entries; unchanged entries are written back byte for byte."""

    HEADER = "# Set by carto-installer (edit the answers file, then re-run it)"

    def __init__(self, entries: list[Entry]) -> None:
        self.entries = entries

    @classmethod
    def parse(cls, text: str) -> EnvFile:
        lines = text.split("\n")
        physical = [line + "\n" for line in lines[:-1]] + ([lines[-1]] if lines[-1] else [])
        entries: list[Entry] = []
        index = 0
        while index < len(physical):
            line = physical[index]
            index += 1
            body = line.rstrip("\n").rstrip("\r")
            match = _KEY_LINE.match(body)
            if not match or body.lstrip().startswith("#"):
                entries.append(Entry(line))
                continue
            raw = match.group(2)
            # A quoted value may span lines: keep them together as one entry.
            while _unterminated(raw) and index < len(physical):
                line += physical[index]
                raw = line.rstrip("\n").rstrip("\r").split("=", 1)[1].lstrip(" \t")
                index += 1
            entries.append(Entry(line, match.group(1), raw))
        return cls(entries)

    def text(self) -> str:
        return "".join(entry.text for entry in self.entries)

    def keys(self) -> list[str]:
        seen: list[str] = []
        for entry in self.entries:
            if entry.key and entry.key not in seen:
                seen.append(entry.key)
        return seen

    def _last(self, key: str) -> Entry | None:
        found = [entry for entry in self.entries if entry.key == key]
        return found[-1] if found else None

    def __contains__(self, key: str) -> bool:
        return self._last(key) is not None

    def raw(self, key: str) -> str | None:
        entry = self._last(key)
        return entry.raw if entry else None

    def get(self, key: str, flavour: Flavour = "v2") -> str | None:
        """The value the parser reads (the last entry wins, as in both parsers).

        A value holding variable references is returned as written (without expansion)."""
        entry = self._last(key)
        if entry is None or entry.raw is None:
            return None
        try:
            return read_value(entry.raw, flavour)
        except NotLiteral:
            return _strip_quotes(entry.raw)

    def items(self, flavour: Flavour = "v2") -> dict[str, str]:
        return {key: self.get(key, flavour) or "" for key in self.keys()}

    def holds(self, key: str, value: str, flavour: Flavour | None) -> bool:
        """True when every entry of `key` already reads as exactly `value`."""
        entries = [entry for entry in self.entries if entry.key == key]
        return bool(entries) and all(
            entry.raw is not None and _reads_back(entry.raw, value, _flavours(flavour))
            for entry in entries
        )

    def set(self, key: str, value: str, flavour: Flavour | None) -> bool:
        """Give `key` this value (every entry of it, in place; appended when absent).

        Returns True when the text changed. Raises ValueError when the value cannot be held.
        """
        if self.holds(key, value, flavour):
            return False
        return self.set_line(key, encode(value, flavour))

    def set_line(self, key: str, raw: str) -> bool:
        """Write `KEY=raw` in place of every entry of `key` (appended when absent)."""
        changed = False
        found = False
        for entry in self.entries:
            if entry.key != key:
                continue
            found = True
            text = f"{key}={raw}{entry.line_ending or ''}"
            if entry.text != text:
                entry.text, entry.raw = text, raw
                changed = True
        if not found:
            self._append(f"{key}={raw}", key, raw)
            changed = True
        return changed

    def _append(self, line: str, key: str, raw: str) -> None:
        crlf = sum(e.text.endswith("\r\n") for e in self.entries)
        newline = "\r\n" if crlf * 2 > len(self.entries) else "\n"  # the file's usual ending
        if self.entries and not self.entries[-1].text.endswith("\n"):
            self.entries[-1].text += newline
        if not any(entry.text.strip() == self.HEADER for entry in self.entries):
            if self.entries and self.entries[-1].text.strip():
                self.entries.append(Entry(newline))
            self.entries.append(Entry(self.HEADER + newline))
        self.entries.append(Entry(line + newline, key, raw))

    # --- the vendor's commented blocks ------------------------------------------------------

    def _paragraphs(self) -> list[int]:
        """For each entry, the number of the paragraph (blank-line separated) it is in."""
        numbers: list[int] = []
        current = 0
        for entry in self.entries:
            if not entry.text.strip():
                current += 1
                numbers.append(-1)
            else:
                numbers.append(current)
        return numbers

    def _commented(self, index: int) -> tuple[str, str] | None:
        """(key, value text) when entry `index` is a commented-out `# KEY=value` line."""
        entry = self.entries[index]
        if entry.key is not None:
            return None
        match = _COMMENTED_KEY.match(entry.text.rstrip("\r\n"))
        return (match.group(1), match.group(2)) if match else None

    def _uncomment(self, index: int, key: str, value: str, flavour: Flavour | None) -> None:
        entry = self.entries[index]
        raw = encode(value, flavour)
        self.entries[index] = Entry(f"{key}={raw}{entry.line_ending}", key, raw)

    def _comment_out(self, index: int) -> None:
        entry = self.entries[index]
        self.entries[index] = Entry("# " + entry.text)

    def place(self, key: str, value: str, flavour: Flavour | None) -> bool:
        """Give `key` this value where the vendor's file expects it: its active entries in
        place; else its commented placeholder (`# KEY=<FILL_ME>`, or a commented line already
        holding this value) uncommented and filled; else appended. True when changed."""
        if key in self:
            return self.set(key, value, flavour)
        for index in range(len(self.entries)):
            found = self._commented(index)
            if found and found[0] == key and _fits(found[1], value):
                self._uncomment(index, key, value, flavour)
                return True
        return self.set(key, value, flavour)

    def fill_block(self, settings: Sequence[tuple[str, str]], flavour: Flavour | None) -> bool:
        """Set a group of keys whose first one selects one of the vendor's alternative blocks
        (LOCAL_POSTGRES_SCALE=1 "local postgres" vs =0 "external postgres"). When the active
        selector already has its value, or no commented block offers the wanted one, the keys
        are set where they are. Otherwise the switch is made as the vendor's docs say: the
        active block's lines are commented out, the commented block's lines uncommented and
        filled, and the rest placed like `place`. True when the text changed."""
        if not settings:
            return False
        selector, wanted = settings[0]
        before = self.text()
        paragraphs = self._paragraphs()
        target = None
        if not self.holds(selector, wanted, flavour):
            for index in range(len(self.entries)):
                found = self._commented(index)
                if found and found[0] == selector and _fits(found[1], wanted):
                    target = paragraphs[index]
                    break
        if target is not None:
            members = {found[0] for index in range(len(self.entries))
                       if paragraphs[index] == target and (found := self._commented(index))}
            values = dict(settings)
            switched = members | set(values)
            # Comment out every active line of the block's keys outside the chosen block.
            for index, entry in enumerate(self.entries):
                if entry.key in switched and paragraphs[index] != target:
                    self._comment_out(index)
            # Uncomment the chosen block's lines of the keys that were active before (they
            # keep the block's own value) and of the wanted keys (they get the answer).
            was_active = {key for key in switched if key in EnvFile.parse(before)}
            done: set[str] = set()
            for index in range(len(self.entries)):
                found = self._commented(index)
                if (not found or paragraphs[index] != target or found[0] in done
                        or found[0] not in was_active | set(values)):
                    continue
                key, text = found
                if key in values:
                    self._uncomment(index, key, values[key], flavour)
                elif "<" not in text:
                    self.entries[index] = Entry(f"{key}={text}{self.entries[index].line_ending}",
                                                key, text)
                else:
                    continue  # a placeholder nobody fills stays commented
                done.add(key)
        for key, value in settings:
            self.place(key, value, flavour)
        return self.text() != before

    def rename(self, old: str, new: str) -> bool:
        """Rename every entry of `old` to `new`, keeping its value text."""
        changed = False
        for entry in self.entries:
            if entry.key == old and entry.raw is not None:
                entry.text = f"{new}={entry.raw}{entry.line_ending}"
                entry.key = new
                changed = True
        return changed

    def remove(self, key: str) -> bool:
        before = len(self.entries)
        self.entries = [entry for entry in self.entries if entry.key != key]
        return len(self.entries) != before


_COMMENTED_KEY = re.compile(r"^[ \t]*#[ \t]*(?:export[ \t]+)?([A-Za-z_][A-Za-z0-9_]*)=[ \t]*(.*)$")


def _fits(commented_value: str, value: str) -> bool:
    """A commented line is the place for `value` when it is a placeholder (`<FILL_ME>`,
    `<cert>`, `<1 to enable | 0 to disable>`) or already shows that value."""
    text = commented_value.strip()
    return "<" in text or _strip_quotes(text) == value


def _strip_quotes(raw: str) -> str:
    raw = raw.strip()
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
        return raw[1:-1]
    return raw.split(" #", 1)[0].rstrip()


def changed_keys(before: EnvFile, after: EnvFile) -> list[str]:
    """Keys whose entries differ between two versions of a file (names only, no values)."""
    def entries_of(env: EnvFile) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for entry in env.entries:
            if entry.key:
                out.setdefault(entry.key, []).append(entry.text.rstrip("\r\n"))
        return out

    old, new = entries_of(before), entries_of(after)
    return [key for key in list(dict.fromkeys([*old, *new])) if old.get(key) != new.get(key)]


SECRET_KEY_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|API_KEY|PRIVATE|CREDENTIAL|_KEY$")


def is_secret_key(key: str) -> bool:
    """Whether a variable's name says it holds a secret (its value is then redacted)."""
    upper = key.upper()
    return bool(SECRET_KEY_NAME.search(upper)) and not upper.endswith(("_PATH", "_FILE"))
