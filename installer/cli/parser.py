"""The command line's arguments: `build_parser()` and the COMMANDS table.

COMMANDS: name -> (help, add_arguments(parser), run(args, redactor) -> code), for every command
beyond preflight. Each command's module is imported only when the command runs, so `--version`
and `--help` stay fast.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, NoReturn, TypeAlias

from installer import __version__
from installer.cli.contract import EXIT_INPUT, LOG_NAME

if TYPE_CHECKING:
    from installer.redact import Redactor


def comma_list(value: str) -> list[str]:
    """An option's "a,b,c" as ["a", "b", "c"] (empty parts dropped); preflight's too."""
    return [part.strip() for part in value.split(",") if part.strip()]


def _render_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dry-run", action="store_true",
                        help="print a unified diff of what would change (secret files by name "
                        "only) and write nothing")


def _deploy_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--yes", action="store_true",
                        help="do not ask for confirmation (scripts, CI)")
    parser.add_argument("--skip", type=comma_list, default=[], metavar="ID|CATEGORY[,..]",
                        help="accept the risk of these failing checks: they no longer stop the "
                        "deployment (listed in the output and the log)")
    parser.add_argument("--repair-stuck-release", action="store_true",
                        help="Kubernetes: a release left pending (pending-install/-upgrade/"
                        "-rollback) is rolled back to its last deployed revision (or "
                        "uninstalled when it never deployed) without asking; use it only when "
                        "no other helm command is still working on the release. With --yes "
                        "and without this flag the deploy stops and prints the command instead")


def _upgrade_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--package", metavar="NEW",
                        help="the new installation package (folder or zip); default: the "
                        "answers file's")
    parser.add_argument("--release", metavar="DIR|ARCHIVE",
                        help="compose: the vendor's new release (folder, .zip or .tar.gz); "
                        "kubernetes: the new chart (.tgz, folder or repository reference); "
                        "default: keep the installed one")
    parser.add_argument("--repair-stuck-release", action="store_true",
                        help="kubernetes: when the release is stuck in pending-install/-upgrade, "
                        "apply the documented fix (helm rollback to the last deployed "
                        "revision) before upgrading, without asking")
    parser.add_argument("--yes", action="store_true",
                        help="do not ask for confirmation (scripts, CI)")
    parser.add_argument("--skip", type=comma_list, default=[], metavar="ID|CATEGORY[,..]",
                        help="accept the risk of these failing checks or gates "
                        "(upgrade.package, upgrade.version, upgrade.backup): listed in the "
                        "output and the log")


def _run_upgrade(args: argparse.Namespace, redactor: Redactor) -> int:
    from installer.cli.deployment import run_upgrade

    return run_upgrade(args, redactor)


def _no_args(parser: argparse.ArgumentParser) -> None:
    return None


def _run_render(args: argparse.Namespace, redactor: Redactor) -> int:
    from installer.cli.deployment import run_render

    return run_render(args, redactor)


def _run_deploy(args: argparse.Namespace, redactor: Redactor) -> int:
    from installer.cli.deployment import run_deploy

    return run_deploy(args, redactor)


def _run_status(args: argparse.Namespace, redactor: Redactor) -> int:
    from installer.cli.deployment import run_status

    return run_status(args, redactor)


# A command: the function that declares its arguments and the one that runs it.
AddArguments: TypeAlias = Callable[[argparse.ArgumentParser], None]
RunCommand: TypeAlias = "Callable[[argparse.Namespace, Redactor], int]"

COMMANDS: dict[str, tuple[str, AddArguments, RunCommand]] = {
    "render": ("write the configuration files (customer.env, .env, certs/) and nothing else",
               _render_args, _run_render),
    "deploy": ("preflight, render, launch, wait until healthy and verify over HTTPS",
               _deploy_args, _run_deploy),
    "status": ("health of an installed deployment: containers, the HTTPS answer, release "
               "and package versions, certificate expiry, last deploy or upgrade",
               _no_args, _run_status),
    "upgrade": ("move a running installation to a new package and/or release: gates "
                "(package >= minimum, no downgrade, a recent backup), plan with the merged "
                "customer.env, apply, wait healthy, verify over HTTPS; puts the previous "
                "release back when it fails before the migrations ran",
                _upgrade_args, _run_upgrade),
}

# Operating an installation (installer/operate/): backup, restore, support-bundle, logs,
# uninstall.
def _operate(name: str) -> tuple[AddArguments, RunCommand]:
    def add(parser: argparse.ArgumentParser) -> None:
        from installer.cli import operate as cli

        getattr(cli, f"{name}_args")(parser)

    def run(args: argparse.Namespace, redactor: Redactor) -> int:
        from installer.cli import operate as cli

        return int(getattr(cli, f"run_{name}")(args, redactor))

    return add, run


for _command, _name, _help in (
    ("backup", "backup", "one archive (0600) to rebuild the installation: answers, package, "
     "configuration, certificates and a dump of the metadata database"),
    ("restore", "restore", "put the configuration back from a backup; with --database, the "
     "metadata database too"),
    ("support-bundle", "bundle", "one redacted archive (0600) for a support request"),
    ("logs", "logs", "the services' logs, by the vendor's service names"),
    ("uninstall", "uninstall", "stop and remove the deployment; data is kept unless "
     "--purge-data"),
):
    COMMANDS[_command] = (_help, *_operate(_name))


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

    for name, (text, add_arguments, _) in COMMANDS.items():
        p = sub.add_parser(name, help=text, description=text)
        common(p, answers_required=True)
        add_arguments(p)
    return parser
