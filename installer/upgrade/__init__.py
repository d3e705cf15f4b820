"""`carto-installer upgrade`: move a running installation to a new package and/or release.

Migrations are forward-only, so the order matters:

1. plan: the new VERSION and MIN_VERSION, the three-way merge of customer.env (conflicts
   shown), variables the new env.tpl needs that the package lacks, images to pull or to load,
   renamed variables (installer.vendor.RENAMES);
2. gates, as checks with ids and fixes, reported and skippable like the preflight's:
   `upgrade.package` (package >= the release's MIN_VERSION), `upgrade.version` (no downgrade),
   `upgrade.backup` (a backup by `carto-installer backup` within 24 hours);
3. apply: the files the upgrade replaces are kept in `.carto-installer-previous/` (0700),
   the new release and files are written (each atomically), images are pulled or loaded while
   the old stack still runs, then `up -d`, wait healthy with the migrations exiting 0, HTTPS;
4. failure: before the migrations ran, the previous files are put back, the previous release
   started and proven to answer; after they ran, nothing is put back automatically: the
   database must be restored from the backup, and the exact commands are printed.

Here: the entry point for both platforms and the answers file's `package:` line; the gates
in gates.py, the kept files in previous.py, and each platform's upgrade in compose.py and
helm.py. Both run in the deploy's scaffold (installer.deploy.steps).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from installer.deploy import DeployResult, EventSink, LogLine
from installer.upgrade.compose import (
    UpgradePlan,
    bundled_database_service,
    restore_needed,
    upgrade_compose,
)
from installer.upgrade.gates import GATE_IDS, gate_backup_record, gate_package, gate_version
from installer.upgrade.helm import HelmUpgradePlan, upgrade_helm

# What the person confirms before an upgrade changes anything (its summary() says it all).
UpgradeReview = UpgradePlan | HelmUpgradePlan

if TYPE_CHECKING:
    from installer.answers import Answers
    from installer.checks.base import Resolver
    from installer.redact import Redactor
    from installer.target import Target

def upgrade(answers: Answers, target: Target, *, redactor: Redactor,
            package: str | None = None, release: str | None = None,
            skip: Sequence[str] = (), cancel: threading.Event | None = None,
            on_event: EventSink | None = None,
            confirm: Callable[[UpgradeReview], bool] | None = None,
            health_timeout: float = 900.0, repair_stuck: bool = False,
            resolver: Resolver | None = None) -> DeployResult:
    """The `upgrade` command's core; see the module doc. Raises DeployError (exit 3) on a
    failed gate or upgrade, InputError (exit 2) on bad input, DeployCancelled when not
    confirmed."""
    from installer.deploy import safe_sink

    answers = _with_overrides(answers, package, release)
    emit = safe_sink(on_event)
    cancel = cancel or threading.Event()
    if answers.platform != "compose":
        result = upgrade_helm(answers, target, redactor=redactor, skip=skip, cancel=cancel,
                              emit=emit, confirm=confirm, repair_stuck=repair_stuck,
                              resolver=resolver)
    else:
        result = upgrade_compose(answers, target, redactor=redactor, release=release, skip=skip,
                                 cancel=cancel, emit=emit, confirm=confirm,
                                 health_timeout=health_timeout)
    if package and answers.source is not None and answers.package:
        emit(LogLine(redactor(record_new_package(str(answers.source), answers.package))))
    if release and answers.platform != "compose":
        emit(LogLine(redactor(f"give kubernetes.chart: {answers.kubernetes.chart} in the "
                              "answers file, so that a later deploy keeps this chart")))
    return result


def _with_overrides(answers: Answers, package: str | None, release: str | None) -> Answers:
    import os

    changed = answers
    if package:
        changed = replace(changed, package=os.path.abspath(os.path.expanduser(package)))
    if release and changed.platform == "compose":
        changed = replace(changed, compose=replace(
            changed.compose, release=os.path.abspath(os.path.expanduser(release))))
    elif release:  # kubernetes: the new chart, a local .tgz/folder or a repository reference
        local = os.path.expanduser(release)
        chart = os.path.abspath(local) if os.path.exists(local) else release
        changed = replace(changed, kubernetes=replace(changed.kubernetes, chart=chart))
    return changed


def record_new_package(answers_file: str, package: str) -> str:
    """After an upgrade with --package, point the answers file's `package:` at the new
    package (only that line changes, comments and order stay), so that a later `deploy`
    does not render the old package back. Returns what was done, for the output."""
    import os
    import re

    import yaml

    from installer.target import atomic_write

    try:
        text = open(answers_file, encoding="utf-8").read()
        mode = os.stat(answers_file).st_mode & 0o777
    except OSError as exc:
        return f"{answers_file} could not be changed ({exc}): give it `package: {package}`"
    line = re.compile(r"^package:[ \t]*(?:[^#\n]*?)([ \t]+#[^\n]*)?$", re.MULTILINE)
    matches = list(line.finditer(text))
    value = yaml.safe_dump(package, default_flow_style=True).strip().removesuffix("...").strip()
    if len(matches) != 1:
        return f"give {answers_file} `package: {package}` (its package line is not a single " \
               "plain line, so it was left as it is)"
    match = matches[0]
    new_text = text[:match.start()] + f"package: {value}{match.group(1) or ''}" + \
        text[match.end():]
    atomic_write(answers_file, new_text.encode("utf-8"), mode)
    return f"{answers_file} now names the new package ({package})"


__all__ = ["GATE_IDS", "HelmUpgradePlan", "UpgradePlan", "UpgradeReview",
           "bundled_database_service", "gate_backup_record", "gate_package", "gate_version",
           "record_new_package", "restore_needed", "upgrade"]
