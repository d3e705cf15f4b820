"""The answers file a command names with --answers, and the target those answers point at.

The file is loaded by `installer.session.load_answers_arg`, which the wizard uses too.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from installer.answers import Answers
    from installer.redact import Redactor
    from installer.target import Target


def load_command_answers(args: argparse.Namespace, redactor: Redactor,
                         secrets: tuple[str, ...] | None = None) -> Answers:
    """The answers of a command that requires --answers (argparse made sure it was given)."""
    from installer.answers import Answers
    from installer.session import load_answers_arg

    answers = load_answers_arg(args.answers, redactor, secrets)
    assert isinstance(answers, Answers)
    return answers


def open_command_target(args: argparse.Namespace, answers: Answers,
                        redactor: Redactor) -> Target:
    """The target the answers point at, opened with the command's --accept-host-key and a
    passphrase asked on the terminal when an identity file needs one."""
    from installer.cli.prompts import terminal_passphrase_prompt
    from installer.preflight import open_target

    return open_target(answers, accept_host_key=getattr(args, "accept_host_key", None),
                       redactor=redactor, passphrase_prompt=terminal_passphrase_prompt())
