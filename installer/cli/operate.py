"""The `backup`, `restore`, `support-bundle`, `logs` and `uninstall` commands, for people.

Arguments are declared here and registered in installer/cli/parser.py; the work is done by the
modules beside this one. Progress of long steps is one line, rewritten in place on a terminal.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

from installer.cli.answers_arg import load_command_answers, open_command_target
from installer.cli.contract import EXIT_INTERRUPTED
from installer.cli.deployment import DeployPrinter
from installer.cli.prompts import ask_yes_no, backup_passphrase
from installer.cli.prompts import out as _out
from installer.errors import InputError
from installer.operate.events import OperationEvent, show_operation

if TYPE_CHECKING:
    from installer.answers import Answers
    from installer.deploy.events import LogLine, StepFinished
    from installer.operate.events import Progress
    from installer.redact import Redactor
    from installer.target import Target


class OperatePrinter(DeployPrinter):
    """Steps as lines; byte progress as one line rewritten in place on a terminal, else a
    line per 10 %. An OperateView (installer.operate.events): the deploy events an operation
    shares with a deployment print as the deploy command prints them, but for the two below."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__(redactor)
        self.tty = sys.stdout.isatty()
        self._last: dict[str, int] = {}

    def __call__(self, event: OperationEvent) -> None:
        show_operation(event, self)

    def step_finished(self, event: StepFinished) -> None:
        if self.tty and event.name in self._last:
            sys.stdout.write("\r\033[K")
        word = "done" if event.ok else "FAILED"
        _out(self.redactor, f"    {word}: {event.detail}" if event.detail else f"    {word}")
        self._last.pop(event.name, None)

    def log_line(self, event: LogLine) -> None:
        _out(self.redactor, f"    {event.text}")

    def progress(self, event: Progress) -> None:
        size = f"{event.done / 1e6:.1f} MB" + (f" of {event.total / 1e6:.1f} MB"
                                                if event.total else "")
        if self.tty:
            sys.stdout.write(f"\r\033[K    {event.step}: {size}")
            sys.stdout.flush()
            self._last[event.step] = event.done
            return
        tenth = int(10 * event.done / event.total) if event.total else event.done >> 27
        if self._last.get(event.step, -1) != tenth:
            self._last[event.step] = tenth
            _out(self.redactor, f"    {event.step}: {size}")


def _session(args: argparse.Namespace, redactor: Redactor) -> tuple[Answers, Target]:
    answers = load_command_answers(args, redactor)
    return answers, open_command_target(args, answers, redactor)


# ---- backup ---------------------------------------------------------------------------------


def backup_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", metavar="FILE",
                        help="the archive to write (default carto-backup-<domain>-<time>.tar "
                        "here; .enc is added when encrypted)")
    parser.add_argument("--no-database", action="store_true",
                        help="configuration only: no dump of the metadata database")
    parser.add_argument("--encrypt", action="store_true",
                        help="encrypt with a passphrase asked on the terminal")
    parser.add_argument("--passphrase-env", metavar="VAR",
                        help="encrypt with the passphrase in this environment variable")


def run_backup(args: argparse.Namespace, redactor: Redactor) -> int:
    from installer.operate.backup import backup, default_output
    from installer.operate.installation import Installation

    passphrase = backup_passphrase(args, ask=args.encrypt, confirm=True)
    if passphrase:
        redactor.add(passphrase)
    answers, target = _session(args, redactor)
    output = args.output or default_output(answers.domain) + (".enc" if passphrase else "")
    with target:
        inst = Installation(answers, target, redactor, OperatePrinter(redactor))
        try:
            result = backup(inst, output, passphrase=passphrase,
                            include_database=not args.no_database)
        finally:
            inst.close()
    _out(redactor, f"backup written: {result.path} (mode 0600, "
         f"{'encrypted' if result.encrypted else 'NOT encrypted: keep it safe, it holds secrets'})")
    _out(redactor, f"  sha256 {result.sha256}")
    _out(redactor, f"  database: {result.database}")
    return 0


# ---- restore --------------------------------------------------------------------------------


def restore_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="source", metavar="ARCHIVE", required=True,
                        help="the backup archive")
    parser.add_argument("--database", action="store_true",
                        help="also restore the metadata database (replaces its contents)")
    parser.add_argument("--yes", action="store_true",
                        help="do not ask before restoring the database (scripts)")
    parser.add_argument("--passphrase-env", metavar="VAR",
                        help="the encrypted archive's passphrase is in this variable")


def run_restore(args: argparse.Namespace, redactor: Redactor) -> int:
    from installer.operate.archive import is_encrypted
    from installer.operate.installation import Installation
    from installer.operate.restore import restore

    if not os.path.isfile(args.source):
        raise InputError(f"--from: {args.source} does not exist or is not a file")
    if args.database and not args.yes and not sys.stdin.isatty():
        raise InputError("restore --database asks before replacing the database, and there is "
                         "no terminal to ask on", "add --yes (scripts)")
    passphrase = backup_passphrase(args, ask=is_encrypted(args.source), confirm=False)
    if passphrase:
        redactor.add(passphrase)
    answers, target = _session(args, redactor)

    def confirm(description: str) -> bool:
        return ask_yes_no(redactor(f"Replace every object of the database {description} with the "
                             "backup's?"))

    with target:
        inst = Installation(answers, target, redactor, OperatePrinter(redactor))
        try:
            result = restore(inst, args.source, passphrase=passphrase, database=args.database,
                             confirm_database=None if args.yes else confirm)
        finally:
            inst.close()
    _out(redactor, f"restored {len(result.restored)} item(s); the previous files are in "
         f"{result.kept}")
    if result.database:
        _out(redactor, result.database)
    _out(redactor, "next: carto-installer deploy --answers ... to run with the restored files")
    return 0


# ---- support bundle ---------------------------------------------------------------------------


def bundle_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", metavar="FILE",
                        help="default carto-support-<domain>-<time>.tar.gz here")
    parser.add_argument("--tail", type=int, default=500, metavar="N",
                        help="log lines per service (default 500)")


def run_bundle(args: argparse.Namespace, redactor: Redactor) -> int:
    from installer.operate.bundle import default_bundle_name, support_bundle
    from installer.operate.installation import Installation

    if args.tail < 0:
        raise InputError("--tail must be 0 or more")
    answers, target = _session(args, redactor)
    output = args.output or default_bundle_name(answers.domain)
    with target:
        inst = Installation(answers, target, redactor, OperatePrinter(redactor))
        try:
            result = support_bundle(inst, output, tail=args.tail)
        finally:
            inst.close()
    _out(redactor, f"support bundle written: {result.path} (mode 0600, secrets masked)")
    _out(redactor, f"  collected {len(result.collected)}, could not collect {len(result.failed)}"
         " (see MANIFEST.txt inside)")
    return 0


# ---- logs -----------------------------------------------------------------------------------


def logs_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("service", nargs="?", metavar="SERVICE",
                        help="the vendor's service name (docker-compose.yml, or the chart's "
                        "workload without the release prefix); default all")
    parser.add_argument("--tail", type=int, default=100, metavar="N",
                        help="lines per service (default 100)")
    parser.add_argument("--follow", "-f", action="store_true",
                        help="keep printing new lines until Ctrl-C (which exits with 130)")


def run_logs(args: argparse.Namespace, redactor: Redactor) -> int:
    from installer.operate.bundle import learn_secrets, mask
    from installer.operate.installation import Installation
    from installer.operate.logs import stream_logs

    if args.tail < 0:
        raise InputError("--tail must be 0 or more")
    answers, target = _session(args, redactor)
    with target:
        inst = Installation(answers, target, redactor)
        try:
            # Services print what they like: mask the known secrets and secret-shaped text
            learn_secrets(inst)
            stream_logs(inst, args.service, tail=args.tail, follow=args.follow,
                        write=lambda line: _out(redactor, mask(line, redactor)))
        except KeyboardInterrupt:
            # Ctrl-C is how --follow ends: quietly, with the contract's "interrupted" code
            return EXIT_INTERRUPTED
        finally:
            inst.close()
    return 0


# ---- uninstall ------------------------------------------------------------------------------


def uninstall_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--purge-data", action="store_true",
                        help="also destroy the data (volumes, PVCs, the installer's Secrets): "
                        "listed first, then you type the domain to confirm")
    parser.add_argument("--yes", action="store_true",
                        help="do not ask before removing the deployment; never enough to purge "
                        "data")
    parser.add_argument("--confirm-domain", metavar="DOMAIN",
                        help="with --purge-data and no terminal: the deployment's domain, "
                        "typed out as the confirmation")


def run_uninstall(args: argparse.Namespace, redactor: Redactor) -> int:
    from installer.operate.installation import Installation
    from installer.operate.uninstall import apply_uninstall, plan_uninstall

    interactive = sys.stdin.isatty()
    if args.purge_data and not args.confirm_domain and not interactive:
        raise InputError("--purge-data destroys data and needs the domain typed as "
                         "confirmation; --yes alone never purges",
                         "add --confirm-domain DOMAIN (scripts), or run it on a terminal")
    if not args.yes and not interactive and not args.purge_data:
        raise InputError("uninstall asks before removing anything, and there is no terminal "
                         "to ask on", "add --yes (scripts)")
    answers, target = _session(args, redactor)
    with target:
        inst = Installation(answers, target, redactor, OperatePrinter(redactor))
        try:
            plan = plan_uninstall(inst, purge=args.purge_data)
            _out(redactor, plan.summary())
            if plan.empty:
                _out(redactor, "nothing is installed: nothing to do")
                return 0
            if args.purge_data:
                typed = args.confirm_domain
                if typed is None:
                    sys.stdout.write(f"This DESTROYS the data listed above. Type the domain "
                                     f"({answers.domain}) to confirm: ")
                    sys.stdout.flush()
                    typed = sys.stdin.readline().strip()
                if typed != answers.domain:
                    raise InputError("the domain typed does not match: nothing was removed")
            elif not args.yes and not ask_yes_no("Remove the deployment (data is kept)?"):
                _out(redactor, "nothing was removed")
                return EXIT_INTERRUPTED
            result = apply_uninstall(inst, plan)
        finally:
            inst.close()
    _out(redactor, result)
    return 0
