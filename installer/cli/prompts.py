"""The terminal prompts the commands share: passphrases (never echoed) and yes/no questions."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from installer.errors import InputError
from installer.safetext import visible

if TYPE_CHECKING:
    import argparse

    from installer.redact import Redactor


def out(redactor: Redactor, text: str) -> None:
    """One line for the person at the terminal: secrets redacted, control characters made
    visible (the text may quote a container's log, a remote host or a server)."""
    sys.stdout.write(visible(redactor(text)) + "\n")
    sys.stdout.flush()


def terminal_passphrase_prompt() -> Callable[[str], str] | None:
    """Ask for an identity file's passphrase on the terminal (never echoed), if there is one."""
    if not sys.stdin.isatty():
        return None

    def ask(question: str) -> str:
        import getpass

        return getpass.getpass(f"{question}: ")

    return ask


def backup_passphrase(args: argparse.Namespace, *, ask: bool, confirm: bool) -> str | None:
    """A backup archive's passphrase: from --passphrase-env, else asked on the terminal (twice
    with `confirm`) when `ask`, else None (no encryption)."""
    variable = getattr(args, "passphrase_env", None)
    if variable:
        value = os.environ.get(variable)
        if not value:
            raise InputError(f"--passphrase-env: the environment variable {variable} is not "
                             "set or empty", f"export {variable}=... first")
        return value
    if not ask:
        return None
    if not sys.stdin.isatty():
        raise InputError("a passphrase is needed and there is no terminal to ask on",
                         "give --passphrase-env VARIABLE")
    import getpass

    first = getpass.getpass("Backup passphrase: ")
    if not first:
        raise InputError("the passphrase is empty")
    if confirm and getpass.getpass("Passphrase again: ") != first:
        raise InputError("the two passphrases differ: nothing was written")
    return first


def ask_yes_no(question: str) -> bool:
    """Ask on the terminal; anything but y/yes is no."""
    sys.stdout.write(question + " [y/N] ")
    sys.stdout.flush()
    return sys.stdin.readline().strip().lower() in ("y", "yes")
