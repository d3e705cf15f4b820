"""The command line: `carto-installer [preflight|render|deploy|status]`.

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
from typing import TYPE_CHECKING, NoReturn

from installer import __version__
from installer.commands import comma_list
from installer.errors import InputError, InstallerError
from installer.safetext import visible

if TYPE_CHECKING:
    from installer.redact import Redactor

EXIT_OK, EXIT_BUG, EXIT_INPUT, EXIT_FAILED, EXIT_STRICT, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 130
LOG_NAME = "carto-installer.log"


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit code 2, never a traceback."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message} (see --help)\n")
        raise SystemExit(EXIT_INPUT)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="carto-installer",
        description="Check, configure, deploy and verify CARTO Self-Hosted (legacy) with "
        "Docker Compose on a single VM or with Helm on Kubernetes, locally or over SSH. "
        "With no command, starts the interactive wizard.",
        epilog="Exit codes: 0 ok (warnings allowed), 3 a check or the deployment failed, "
        "4 only warnings with --strict, 2 invalid input, 1 internal error, 130 interrupted. "
        f"Every run logs to ./{LOG_NAME} (secrets redacted).",
    )
    parser.add_argument("--version", action="version", version=f"carto-installer {__version__}")
    parser.add_argument("--plain", action="store_true",
                        help="wizard with plain prompts instead of the full-screen interface")
    parser.add_argument("--answers", metavar="FILE", help="pre-fill the wizard from this file")
    parser.add_argument("--save-answers", metavar="FILE",
                        help="where the wizard saves your answers (default: carto-answers.yaml "
                        "beside --answers, else in the current folder, or in "
                        "~/.local/state/carto-installer/ when started inside the installer's "
                        "own folder)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def common(p: argparse.ArgumentParser, answers_required: bool) -> None:
        p.add_argument("--answers", metavar="FILE", required=answers_required,
                       help="answers file (YAML, see README)")
        p.add_argument("--accept-host-key", metavar="SHA256:...",
                       help="accept this SSH host key fingerprint (as `ssh-keygen -l` prints "
                       "it) if the target is not yet in known_hosts; with a jump host, give "
                       "both fingerprints separated by a comma. A changed key is always "
                       "refused")

    pre = sub.add_parser("preflight", help="check every requirement and print a report",
                         description="Run the requirement checks that apply and print a report. "
                         "Without --answers, checks this machine and skips the answer-dependent "
                         "checks.")
    common(pre, answers_required=False)
    pre.add_argument("--platform", choices=["compose", "kubernetes"],
                     help="default: the answers file's, else compose")
    pre.add_argument("--format", choices=["text", "json", "junit"], default="text")
    pre.add_argument("--output", metavar="FILE", help="write the report here instead of stdout")
    pre.add_argument("--only", type=comma_list, default=[], metavar="CATEGORY|ID[,..]",
                     help="run only these categories or checks (and what they need)")
    pre.add_argument("--skip", type=comma_list, default=[], metavar="CATEGORY|ID[,..]",
                     help="do not run these categories or checks")
    pre.add_argument("--strict", action="store_true", help="exit 4 when there are warnings")
    pre.add_argument("--list", action="store_true",
                     help="list every check id with its title and category (for --only and "
                     "--skip), then exit")

    from installer.commands import COMMANDS

    for name, (text, add_arguments, _) in COMMANDS.items():
        p = sub.add_parser(name, help=text, description=text)
        common(p, answers_required=True)
        add_arguments(p)
    return parser


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
        from installer.commands import COMMANDS

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


# Which answers' secrets the checks of a category read (the others read none).
SECRETS_BY_CATEGORY: dict[str, tuple[str, ...]] = {"db": ("database.",)}


def secrets_for_checks(checks: Sequence[object]) -> tuple[str, ...]:
    """The secret answer paths the selected checks use; the SSH password is handled by
    require_secrets itself (needed only without an identity file)."""
    out: list[str] = ["target."]
    for check in checks:
        out.extend(SECRETS_BY_CATEGORY.get(str(getattr(check, "category", "")), ()))
    return tuple(dict.fromkeys(out))


def list_checks() -> str:
    """`preflight --list`: every check id, its category and title, as a table."""
    from installer.checks.catalog import all_checks

    checks = all_checks()
    width = max(len(c.id) for c in checks)
    lines = [f"{'ID':<{width}}  {'CATEGORY':<8}  {'PLATFORMS':<18}  TITLE"]
    for check in checks:
        platforms = ",".join(sorted(check.platforms))
        lines.append(f"{check.id:<{width}}  {check.category:<8}  {platforms:<18}  {check.title}")
    lines.append("")
    lines.append("egress.<host> ids are made per host from the answers")
    lines.append("(e.g. egress.auth.carto.com). --only and --skip take ids or categories.")
    return "\n".join(lines) + "\n"


def _preflight(args: argparse.Namespace, redactor: object) -> int:
    from installer.answers import Answers, load_answers
    from installer.checks.catalog import all_checks
    from installer.checks.engine import is_named, select
    from installer.preflight import open_target, run_preflight, validate_names

    if args.list:
        sys.stdout.write(list_checks())
        return EXIT_OK
    only = validate_names(args.only, "--only")
    skip = validate_names(args.skip, "--skip")
    platform = args.platform
    if platform is None and args.answers:
        platform = load_answers(args.answers).platform
    platform = platform or "compose"
    chosen = [c for c in select(all_checks(), platform, only) if not is_named(c.id, skip)]
    answers = load_answers_arg(args.answers, redactor, secrets_for_checks(chosen))
    assert answers is None or isinstance(answers, Answers)
    if args.output:
        _check_writable(args.output)
    with open_target(answers, accept_host_key=args.accept_host_key,
                     passphrase_prompt=terminal_passphrase_prompt(),
                     redactor=redactor) as target:  # type: ignore[arg-type]
        report = run_preflight(target, answers, platform, only=only, skip=skip,
                               redactor=redactor)  # type: ignore[arg-type]
    if args.format == "json":
        text = report.to_json()
    elif args.format == "junit":
        text = report.to_junit()
    else:
        color = (not args.output and sys.stdout.isatty() and not os.environ.get("NO_COLOR")
                 and os.environ.get("TERM") != "dumb")
        text = report.to_text(color=color)
    text = redactor(text)  # type: ignore[operator]
    if args.output:
        from installer.target import atomic_write

        atomic_write(args.output, text.encode("utf-8"), 0o644)
        sys.stderr.write(f"report written to {args.output}\n")
    else:
        sys.stdout.write(text)
    return report.exit_code(strict=args.strict)


def terminal_passphrase_prompt() -> Callable[[str], str] | None:
    """Ask for an identity file's passphrase on the terminal (never echoed), if there is one."""
    if not sys.stdin.isatty():
        return None

    def ask(question: str) -> str:
        import getpass

        return getpass.getpass(f"{question}: ")

    return ask


def _check_writable(path: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
        raise InputError(f"--output: cannot write to {path} (no such folder or not writable)")
