"""The `render`, `deploy`, `status` and `upgrade` commands: the core calls, printed for people.

Everything printed goes through the run's redactor. Errors the user can act on propagate as
InstallerError, which the CLI shows with their fix and exit code.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

from installer.checks.base import CheckResult
from installer.cli.answers_arg import load_command_answers, open_command_target
from installer.cli.prompts import out as _out
from installer.deploy.events import DeployEvent, show
from installer.errors import InputError

if TYPE_CHECKING:
    from installer.checks.engine import CheckFinished, CheckStarted
    from installer.deploy.events import LogLine, ServiceState, StepFinished, StepStarted
    from installer.redact import Redactor

log = logging.getLogger("installer.deploy.cli")  # the name its log lines always had

MARK = {"pass": "ok  ", "warn": "WARN", "fail": "FAIL", "skip": "skip", "error": "ERR "}


class Summarised(Protocol):
    """A plan the person confirms on the terminal: a deploy's RenderPlan or an upgrade's."""

    def summary(self) -> str: ...


def run_render(args: argparse.Namespace, redactor: Redactor) -> int:
    from installer.answers import validate
    from installer.render import apply_render, plan_render

    answers = load_command_answers(args, redactor)
    validate(answers, answers.platform)  # bad answers: exit 2 before any machine is opened
    with open_command_target(args, answers, redactor) as target:
        plan = plan_render(answers, target, redactor=redactor)
        if args.dry_run:
            if plan.empty:
                _out(redactor, "render --dry-run: nothing would change")
                return 0
            _out(redactor, f"render --dry-run: {len(plan.changes)} file(s) would change on "
                 f"{target.name} (nothing written)")
            _out(redactor, plan.summary())
            sys.stdout.write(plan.diff(redactor))
            if plan.conflicts:
                from installer.render import conflict_error

                raise conflict_error(plan)
            _out(redactor, f"Next: run `carto-installer render --answers {args.answers}` to "
                 "write these files")
            return 0
        if plan.empty:
            _out(redactor, "render: nothing to change, the files already match the answers")
            _out(redactor, _next_after_render(args))
            return 0
        written = apply_render(plan, target)
    for path in written:
        _out(redactor, f"wrote {path}")
    for path in plan.removals:
        _out(redactor, f"removed {path} (no longer used)")
    for note in plan.notes:
        _out(redactor, f"note: {note}")
    _out(redactor, _next_after_render(args))
    return 0


def _next_after_render(args: argparse.Namespace) -> str:
    return (f"Next: `carto-installer deploy --answers {args.answers}` starts CARTO with these "
            "files and verifies it over HTTPS (it renders again first: nothing changes twice)")


class DeployPrinter:
    """Shows deploy events as lines (a DeployView of installer.deploy.events); remembers check
    results to name accepted risks."""

    def __init__(self, redactor: Redactor) -> None:
        self.redactor = redactor
        self.results: dict[str, CheckResult] = {}

    def __call__(self, event: DeployEvent) -> None:
        show(event, self)

    def check_started(self, event: CheckStarted) -> None:
        """Nothing: a check shows when it finishes."""

    def check_finished(self, event: CheckFinished) -> None:
        result = event.result
        self.results[result.id] = result
        line = f"    {MARK.get(str(result.status), '?   ')} {result.id}: {result.message}"
        if str(result.status) in ("warn", "fail", "error") and result.remediation:
            line += f"\n           fix: {result.remediation}"
        _out(self.redactor, line)

    def step_started(self, event: StepStarted) -> None:
        _out(self.redactor, f"==> {event.name}")

    def step_finished(self, event: StepFinished) -> None:
        word = "done" if event.ok else "FAILED"
        _out(self.redactor, f"    {word}: {event.detail}" if event.detail else f"    {word}")

    def service_state(self, event: ServiceState) -> None:
        health = f", {event.health}" if event.health and event.health not in event.state else ""
        _out(self.redactor, f"    {event.name}: {event.state}{health}")

    def log_line(self, event: LogLine) -> None:
        _out(self.redactor, f"    | {event.text}")


def _confirm_on_terminal(redactor: Redactor, what: str) -> Callable[[Summarised], bool]:
    """Show the plan of `what` ("deployment", "upgrade") and ask before applying it."""
    def confirm(plan: Summarised) -> bool:
        _out(redactor, f"\nThe {what} will:")
        _out(redactor, plan.summary())
        sys.stdout.write("Proceed? [y/N] ")
        sys.stdout.flush()
        answer = sys.stdin.readline().strip().lower()
        return answer in ("y", "yes")

    return confirm


def run_deploy(args: argparse.Namespace, redactor: Redactor) -> int:
    from installer.answers import validate
    from installer.deploy import deploy
    from installer.preflight import validate_names

    if not args.yes and not sys.stdin.isatty():
        raise InputError("deploy asks before changing anything, and there is no terminal to "
                         "ask on: use --yes",
                         "add --yes to deploy without asking (scripts, CI)")
    skip = validate_names(args.skip, "--skip")
    answers = load_command_answers(args, redactor)
    validate(answers, answers.platform)  # bad answers: exit 2 before any machine is opened
    printer = DeployPrinter(redactor)
    with open_command_target(args, answers, redactor) as target:
        result = deploy(answers, target, redactor=redactor, skip=skip, on_event=printer,
                        confirm=None if args.yes else _confirm_on_terminal(redactor, "deployment"),
                        repair_stuck=bool(getattr(args, "repair_stuck_release", False)))
    _report_accepted_risks(printer, result.accepted_risks, redactor, "deployed")
    _out(redactor, result.message)
    return 0 if result.ok else 3


def run_upgrade(args: argparse.Namespace, redactor: Redactor) -> int:
    from installer.preflight import validate_names
    from installer.upgrade import GATE_IDS, upgrade

    if not args.yes and not sys.stdin.isatty():
        raise InputError("upgrade asks before changing anything, and there is no terminal to "
                         "ask on: use --yes",
                         "add --yes to upgrade without asking (scripts, CI)")
    skip = validate_names(args.skip, "--skip", extra=[*GATE_IDS, "upgrade"])
    answers = load_command_answers(args, redactor)
    printer = DeployPrinter(redactor)

    with open_command_target(args, answers, redactor) as target:
        result = upgrade(answers, target, redactor=redactor, package=args.package,
                         release=args.release, skip=skip, on_event=printer,
                         confirm=None if args.yes else _confirm_on_terminal(redactor, "upgrade"),
                         repair_stuck=bool(args.repair_stuck_release))
    _report_accepted_risks(printer, result.accepted_risks, redactor, "upgraded")
    _out(redactor, result.message)
    return 0 if result.ok else 3


def _report_accepted_risks(printer: DeployPrinter, accepted: Sequence[str],
                           redactor: Redactor, done: str) -> None:
    """The failed checks the user named in --skip, with what they found, on the terminal and
    in the log."""
    if not accepted:
        return
    _out(redactor, "accepted risks (--skip):")
    for check_id in accepted:
        found = printer.results.get(check_id)
        detail = f" ({found.status}: {found.message})" if found else ""
        _out(redactor, f"  - {check_id}{detail}")
        log.warning("%s with the accepted risk %s%s", done, check_id, detail)


def run_status(args: argparse.Namespace, redactor: Redactor) -> int:
    from installer.deploy import status

    # health needs no DB password
    answers = load_command_answers(args, redactor, secrets=("target.",))
    with open_command_target(args, answers, redactor) as target:
        result = status(answers, target, redactor=redactor)
    for service in result.services:
        health = f" ({service.health})" if service.health and service.health not in service.state \
            else ""
        _out(redactor, f"  {service.name}: {service.state}{health}")
    _out(redactor, f"  https: {result.https}")
    for fact in result.facts:
        _out(redactor, f"  {fact}")
    for warning in result.warnings:
        _out(redactor, f"warning: {warning}")
    _out(redactor, result.message)
    return 0 if result.healthy else 3
