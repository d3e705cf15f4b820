"""The answers file a command names with --answers, and the target those answers point at.

The screens load their --answers through `load_answers_arg` too.
"""

from __future__ import annotations

import sys
from typing import Any

from installer.safetext import visible


def load_answers_arg(path: str | None, redactor: object,
                     secrets: tuple[str, ...] | None = None) -> object:
    """The answers file named on the command line, or None.

    `secrets` says which secrets the command uses (answer path prefixes, e.g. ("database.",));
    one named by an unset variable is an error only there. None: all of them."""
    if not path:
        return None
    from installer.answers import load_answers, require_secrets

    answers = load_answers(path, redactor=redactor)  # type: ignore[arg-type]
    for warning in answers.warnings:
        sys.stderr.write(visible(f"warning: {warning}") + "\n")
    require_secrets(answers, secrets)
    return answers


def load_command_answers(args: Any, redactor: Any, secrets: tuple[str, ...] | None = None) -> Any:
    """The answers of a command that requires --answers (argparse made sure it was given)."""
    from installer.answers import Answers

    answers = load_answers_arg(args.answers, redactor, secrets)
    assert isinstance(answers, Answers)
    return answers


def open_command_target(args: Any, answers: Any, redactor: Any) -> Any:
    """The target the answers point at, opened with the command's --accept-host-key and a
    passphrase asked on the terminal when an identity file needs one."""
    from installer.cli.prompts import terminal_passphrase_prompt
    from installer.preflight import open_target

    return open_target(answers, accept_host_key=getattr(args, "accept_host_key", None),
                       redactor=redactor, passphrase_prompt=terminal_passphrase_prompt())
