"""The command line: `carto-installer [COMMAND]`; with no command, the wizard it is given.

Exit codes (CONTRACT.md): 0 success, 3 a check or the deployment failed, 4 warnings with
--strict, 2 invalid input (nothing written), 1 our own bug (with the log path), 130 interrupted.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from installer import __version__
from installer.cli.contract import EXIT_BUG, EXIT_INPUT, EXIT_INTERRUPTED, EXIT_OK, LOG_NAME
from installer.cli.parser import COMMANDS, build_parser
from installer.cli.preflight import _preflight
from installer.errors import InputError, InstallerError
from installer.safetext import visible

if TYPE_CHECKING:
    from installer.redact import Redactor


# The wizard, given by the launcher above both packages (screens.launch): the core has no edge
# to any user interface, so it cannot start one itself.
Wizard = Callable[[argparse.Namespace, "Redactor"], int]


def _terminate_as_interrupt(_signum: int, _frame: object) -> None:
    """SIGTERM (a `kill`, a CI runner's timeout) is handled as Ctrl-C is: same clean-up,
    same message, same exit code."""
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None, *, wizard: Wizard | None = None) -> int:
    if threading.current_thread() is not threading.main_thread():
        return _main(argv, wizard)
    previous = signal.signal(signal.SIGTERM, _terminate_as_interrupt)
    try:
        return _main(argv, wizard)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _main(argv: Sequence[str] | None, wizard: Wizard | None) -> int:
    from installer.redact import Redactor, setup_logging

    parser = build_parser()
    args = parser.parse_args(argv)
    redactor = Redactor()
    try:
        log_path = setup_logging(_log_candidates(), redactor)
    except OSError as exc:
        sys.stderr.write(f"error: cannot open a log file safely ({exc.strerror or exc}); "
                         "run from a folder you own, or set TMPDIR to one\n")
        return EXIT_INPUT
    log = logging.getLogger("installer.cli")
    log.info("carto-installer %s: %s", __version__, " ".join(sys.argv[1:] if argv is None
                                                             else list(argv)))
    try:
        if args.command is None:
            if wizard is None:
                raise InputError(
                    "`python -m installer` runs the commands only; the wizard is not part of it",
                    "start the wizard with `carto-installer` (or `python -m screens`); for "
                    "scripts use `carto-installer preflight|render|deploy --answers FILE`",
                )
            return wizard(args, redactor)
        if args.command == "preflight":
            return _preflight(args, redactor)
        _, _, run = COMMANDS[args.command]
        return int(run(args, redactor))
    except InstallerError as exc:
        log.info("stopped: %s", exc)
        sys.stderr.write(visible(redactor(f"error: {exc}")) + "\n")
        return exc.exit_code
    except KeyboardInterrupt as exc:
        # A write interrupted on the target, or a render interrupted while switching its
        # files, says what state it left; anything else was interrupted before a file was
        # written (every write is atomic).
        state = getattr(exc, "state", None) or str(exc) or "no file was left half-written"
        log.info("interrupted: %s", state)
        sys.stderr.write(visible(redactor(f"\ninterrupted: {state}")) + "\n")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_OK
    except Exception:
        log.exception("internal error")
        sys.stderr.write(
            f"internal error: this is a bug in carto-installer. Details are in {log_path}\n"
        )
        return EXIT_BUG


def _log_candidates() -> list[Path]:
    """./carto-installer.log, else a file of this user's own in the temp folder (never a
    shared name another user could create first)."""
    private = Path(tempfile.gettempdir()) / f"carto-installer-{os.getuid()}" / LOG_NAME
    return [Path.cwd() / LOG_NAME, private]
