"""The `preflight` command: run the checks that apply and print or write the report."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from installer.cli.contract import EXIT_OK
from installer.cli.prompts import terminal_passphrase_prompt
from installer.errors import InputError
from installer.redact import Redactor

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


def _preflight(args: argparse.Namespace, redactor: Redactor) -> int:
    from installer.answers import Answers, load_answers
    from installer.checks.catalog import all_checks
    from installer.checks.engine import is_named, select
    from installer.preflight import open_target, run_preflight, validate_names
    from installer.session import load_answers_arg

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
                     redactor=redactor) as target:
        report = run_preflight(target, answers, platform, only=only, skip=skip,
                               redactor=redactor)
    if args.format == "json":
        text = report.to_json()
    elif args.format == "junit":
        text = report.to_junit()
    else:
        color = (not args.output and sys.stdout.isatty() and not os.environ.get("NO_COLOR")
                 and os.environ.get("TERM") != "dumb")
        text = report.to_text(color=color)
    text = redactor(text)
    if args.output:
        from installer.target import atomic_write

        atomic_write(args.output, text.encode("utf-8"), 0o644)
        sys.stderr.write(f"report written to {args.output}\n")
    else:
        sys.stdout.write(text)
    return report.exit_code(strict=args.strict)


def _check_writable(path: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
        raise InputError(f"--output: cannot write to {path} (no such folder or not writable)")
