"""Making untrusted text safe to show: control characters become visible.

Text from outside the program (a remote /etc/os-release, a certificate's names, a database
server's error, container log lines) can carry terminal escape sequences: clear the screen,
set the window title, recolour what follows. Shown raw, they rewrite what the user sees; put
in a JUnit report, they make it invalid XML. `visible` spells every control character out
(ESC becomes ``\\x1b``), keeping only the line break and the tab, so the text still reads and
nothing in it acts on the terminal. It is idempotent: the result holds no control character.
"""

from __future__ import annotations

import re

# C0 controls except tab and line feed, DEL, C1 controls, and the Unicode format characters
# that reorder what is shown (bidirectional overrides and isolates: "Trojan Source").
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_C1 = re.compile("[\x7f-\x9f]")


def _spell(match: re.Match[str]) -> str:
    code = ord(match.group(0))
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(text: str) -> str:
    """`text` with every control character but newline and tab written out as an escape."""
    if not isinstance(text, str):
        text = str(text)
    return _CONTROL.sub(_spell, text)


def visible_line(text: str) -> str:
    """Like `visible`, for text that must stay on one line (a newline is spelled out too)."""
    return visible(text).replace("\n", "\\n")


def json_safe(text: str) -> str:
    """JSON text (as json.dumps makes it) with C1 controls and DEL as \\u escapes: the same
    data, but a terminal that prints the JSON never sees a raw control character."""
    return _C1.sub(lambda m: f"\\u{ord(m.group(0)):04x}", text)


__all__ = ["json_safe", "visible", "visible_line"]
