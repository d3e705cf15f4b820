"""What the commands print for people: one helper for every command family."""

from __future__ import annotations

import pytest

from installer.cli.prompts import out
from installer.redact import Redactor


def test_a_printed_line_is_redacted_and_shows_control_characters(
        capsys: pytest.CaptureFixture[str]) -> None:
    """A container's log line (`logs`), a remote host's text: no escape sequence reaches the
    terminal raw, and a known secret never does."""
    redactor = Redactor()
    redactor.add("s3cr3t-value-123")
    out(redactor, "worker | \x1b]0;pwned\x07\x1b[2J password s3cr3t-value-123\tok")
    printed = capsys.readouterr().out
    assert "\x1b" not in printed and "\x07" not in printed
    assert "s3cr3t-value-123" not in printed
    assert "pwned" in printed and "\tok\n" in printed
