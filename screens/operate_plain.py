"""Plain prompts for an existing installation: upgrade, change settings, back up, support
bundle, uninstall.

Offered first when the answers point at an installation; the same core calls, plans and
confirmations as the CLI (a purge needs the domain typed).
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

import questionary

from installer.operate.events import OperationEvent, show_operation

if TYPE_CHECKING:
    from installer.checks.engine import CheckFinished, CheckStarted
    from installer.deploy.events import LogLine, ServiceState, StepFinished, StepStarted
    from installer.operate.events import Progress
    from installer.operate.installation import Installation
    from installer.upgrade import UpgradeReview
    from screens.plain import PlainWizard

log = logging.getLogger("installer.wizard.operate")

INSTALL = "Change settings (the wizard, pre-filled; restarts only what changed)"
UPGRADE = "Upgrade (a new package and/or release)"
BACKUP = "Back up"
BUNDLE = "Support bundle"
UNINSTALL = "Uninstall"


class PlainOperateView:
    """An operation's and an upgrade's events as lines of the plain prompts (an OperateView
    of installer.operate.events). Its lines are those of the CLI's operate commands, not
    the plain deploy's (screens/plain_deploy.py): a service's state and a check's start show
    nothing; byte progress shows every tenth."""

    def __init__(self, wizard: PlainWizard) -> None:
        self.wizard = wizard
        self.shown: dict[str, int] = {}  # the tenth of each step's progress last shown

    def __call__(self, event: OperationEvent) -> None:
        show_operation(event, self)

    def check_started(self, event: CheckStarted) -> None:
        """Nothing: a check shows when it finishes."""

    def check_finished(self, event: CheckFinished) -> None:
        """The upgrade's gates, and any check that did not pass."""
        result = event.result
        if str(result.status) != "pass" or result.id.startswith("upgrade."):
            self.wizard.say(f"    {str(result.status).upper():<5}{result.id}: {result.message}")
            if str(result.status) in ("warn", "fail", "error") and result.remediation:
                self.wizard.say(f"         fix: {result.remediation}")

    def step_started(self, event: StepStarted) -> None:
        self.wizard.say(f"==> {event.name}")

    def step_finished(self, event: StepFinished) -> None:
        self.wizard.say(f"    {'done' if event.ok else 'FAILED'}: {event.detail}")

    def service_state(self, event: ServiceState) -> None:
        """Nothing: the upgrade's step lines say how the services came up."""

    def log_line(self, event: LogLine) -> None:
        self.wizard.say(f"    {event.text}")

    def progress(self, event: Progress) -> None:
        tenth = int(10 * event.done / event.total) if event.total else event.done >> 27
        if self.shown.get(event.step) != tenth:
            self.shown[event.step] = tenth
            self.wizard.say(f"    {event.step}: {event.done / 1e6:.1f} MB"
                            + (f" of {event.total / 1e6:.1f} MB" if event.total else ""))


def offer_operations(wizard: PlainWizard) -> int | None:
    """Ask what to do with the installation; None means go on with the wizard."""
    from installer.errors import InstallerError
    from installer.operate.installation import Installation, is_installed

    state = wizard.state
    try:
        target = state.connect()
        inst = Installation(state.answers, target, state.redactor, PlainOperateView(wizard))
        installed = is_installed(inst)
    except InstallerError as exc:  # e.g. a host key to confirm: the wizard's target step asks
        log.info("no existing installation found: %s", exc.message)
        return None
    if not installed:
        return None
    choice = questionary.select(
        f"CARTO is installed on {target.name}. What do you want to do?",
        choices=[UPGRADE, INSTALL, BACKUP, BUNDLE, UNINSTALL]).unsafe_ask()
    if choice == INSTALL:
        return None
    try:
        if choice == UPGRADE:
            return _upgrade(wizard, inst)
        if choice == BACKUP:
            return _backup(wizard, inst)
        if choice == BUNDLE:
            return _bundle(wizard, inst)
        return _uninstall(wizard, inst)
    except InstallerError as exc:
        wizard.say(f"error: {exc}", "31")
        return int(exc.exit_code)
    finally:
        inst.close()


def _upgrade(wizard: PlainWizard, inst: Installation) -> int:
    """The same plan, gates and progress as `carto-installer upgrade`."""
    from installer.deploy import DeployCancelled
    from installer.preflight import validate_names
    from installer.upgrade import GATE_IDS, upgrade

    answers = inst.answers
    package = questionary.text("New installation package (folder or zip; Enter keeps the "
                               "current one):", default=answers.package or "").unsafe_ask()
    what = "release (folder or archive)" if answers.platform == "compose" else \
        "chart (.tgz, folder or repository reference)"
    release = questionary.text(f"New vendor {what} (Enter keeps the installed one):",
                               default="").unsafe_ask()
    accepted = questionary.text("Checks whose failure you accept as a risk (ids or "
                                "categories, comma-separated; Enter for none):",
                                default="").unsafe_ask()
    skip = validate_names([p.strip() for p in accepted.split(",") if p.strip()], "risks",
                          extra=[*GATE_IDS, "upgrade"])

    def confirm(plan: UpgradeReview) -> bool:
        wizard.say("The upgrade will:")
        wizard.say(plan.summary())
        return bool(questionary.confirm("Proceed with the upgrade?", default=False
                                        ).unsafe_ask())

    try:
        wizard.changes_started = True
        result = upgrade(answers, inst.target, redactor=inst.redactor,
                         package=package if package and package != answers.package else None,
                         release=release or None, skip=skip, on_event=PlainOperateView(wizard),
                         confirm=confirm)
    except DeployCancelled as exc:
        wizard.say(str(exc.message))
        return 0
    wizard.say(result.message)
    if result.ok and package and package != answers.package:
        # Later runs (deploy, change settings) must use the new package, not go back.
        wizard.state.answers.package = os.path.abspath(os.path.expanduser(package))
        wizard.say(f"Your answers now name the new package: {wizard.state.save_answers()}")
    return 0 if result.ok else 3


def _backup(wizard: PlainWizard, inst: Installation) -> int:
    from installer.operate.backup import backup, default_output

    passphrase = questionary.password(
        "Passphrase to encrypt the backup (Enter for none):").unsafe_ask()
    if passphrase:
        again = questionary.password("The passphrase again:").unsafe_ask()
        if again != passphrase:
            wizard.say("The passphrases differ: nothing was written.")
            return 2
        inst.redactor.add(passphrase)
    output = questionary.text("Write the backup to:", default=os.path.join(
        os.getcwd(), default_output(inst.answers.domain) + (".enc" if passphrase else ""))
    ).unsafe_ask()
    result = backup(inst, output, passphrase=passphrase or None)
    wizard.say(f"Backup written: {result.path} (sha256 {result.sha256})")
    return 0


def _bundle(wizard: PlainWizard, inst: Installation) -> int:
    from installer.operate.bundle import default_bundle_name, support_bundle

    output = questionary.text("Write the support bundle to:", default=os.path.join(
        os.getcwd(), default_bundle_name(inst.answers.domain))).unsafe_ask()
    result = support_bundle(inst, output)
    wizard.say(f"Support bundle written: {result.path} (secrets masked; "
               f"{len(result.failed)} item(s) could not be collected, see MANIFEST.txt)")
    return 0


def _uninstall(wizard: PlainWizard, inst: Installation) -> int:
    from installer.operate.uninstall import apply_uninstall, plan_uninstall

    purge = questionary.confirm("Also destroy the data (volumes, PVCs, the installer's "
                                "Secrets)?", default=False).unsafe_ask()
    plan = plan_uninstall(inst, purge=purge)
    wizard.say(plan.summary())
    if plan.empty:
        wizard.say("Nothing is installed: nothing to do.")
        return 0
    if purge:
        typed = questionary.text(f"This DESTROYS the data listed. Type the domain "
                                 f"({inst.answers.domain}) to confirm:").unsafe_ask()
        if typed != inst.answers.domain:
            wizard.say("The domain does not match: nothing was removed.")
            return 2
    elif not questionary.confirm("Remove the deployment (data is kept)?",
                                 default=False).unsafe_ask():
        wizard.say("Nothing was removed.")
        return 0
    wizard.changes_started = True
    wizard.say(apply_uninstall(inst, plan))
    return 0
