"""`carto-installer`: the command line, and with no command the wizard.

The launcher sits above both packages: installer/ is the UI-free core (an import contract in
pyproject.toml forbids it any edge to textual, questionary, rich or screens), so it cannot
start the wizard itself. Its CLI takes the wizard as an argument instead; this module passes
the front ends. `python -m installer` is the same CLI without a wizard (the headless commands,
e.g. in scripts and CI); `python -m screens` is the same program as `carto-installer`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from installer.cli import main as cli_main
from installer.errors import InputError
from installer.redact import Redactor


def main(argv: Sequence[str] | None = None) -> int:
    return cli_main(argv, wizard=start_wizard)


def start_wizard(args: argparse.Namespace, redactor: Redactor) -> int:
    plain = args.plain or os.environ.get("TERM") == "dumb"
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise InputError(
            "the wizard needs a terminal",
            "for scripts use `carto-installer preflight|render|deploy --answers FILE`",
        )
    if plain:
        from screens.plain import run_plain

        return int(run_plain(args, redactor))
    from screens.app import run_app

    return int(run_app(args, redactor))
