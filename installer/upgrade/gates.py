"""The upgrade's gates, reported and skippable like the preflight's checks: `upgrade.package`
(the package is at least the new release's minimum), `upgrade.version` (no downgrade) and
`upgrade.backup` (a backup by `carto-installer backup` within 24 hours)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from installer.checks.base import CheckResult, Status

if TYPE_CHECKING:
    from installer.answers import Answers
    from installer.chart import ChartFiles
    from installer.operate.backup import BackupRecord
    from installer.package import PackageVersionVerdict
    from installer.redact import Redactor
    from installer.target import Target

GATE_IDS = ("upgrade.package", "upgrade.version", "upgrade.backup")
GATE_TITLES = {"upgrade.package": "Package version for the new release",
               "upgrade.version": "No downgrade of the release",
               "upgrade.backup": "A recent backup"}
BACKUP_WINDOW = timedelta(hours=24)


def _gate(check_id: str, status: Status, required: str, observed: str, message: str,
          remediation: str = "", **data: Any) -> CheckResult:
    return CheckResult(check_id, "upgrade", GATE_TITLES[check_id], status, required, observed,
                       message, remediation if status != Status.PASS else "", 0.0, dict(data))


def gate_package(package_version: str | None, minimum: str | None, where: str) -> CheckResult:
    """upgrade.package: the package is at least the new release's minimum, judged by the one
    judge license.version and the Helm deploy use (installer.package.judge_package_version)."""
    from installer.package import judge_package_version

    verdict = judge_package_version(package_version, minimum, f"{where}'s MIN_VERSION")
    return verdict_gate(verdict, f">= {minimum or 'the minimum'}")


def gate_chart_minimum(package_version: str | None, chart_files: ChartFiles
                       ) -> CheckResult:
    """upgrade.package on Kubernetes: the package is at least the new chart's minimum (the
    annotation its own pre-install check reads), by the same judge."""
    from installer.chart import judge_chart_minimum

    return verdict_gate(judge_chart_minimum(package_version, chart_files), "the chart's minimum")


def verdict_gate(verdict: PackageVersionVerdict, required: str) -> CheckResult:
    status = {"pass": Status.PASS, "unknown": Status.WARN}.get(verdict.status, Status.FAIL)
    return _gate("upgrade.package", status, required, verdict.observed, verdict.message,
                 verdict.remediation or "check the release notes for the minimum package "
                 "version")


def gate_version(current: str, new: str, what: str = "release") -> CheckResult:
    """upgrade.version: the new release is not older than the installed one (migrations are
    forward-only: an older release's services do not know the newer schema)."""
    from installer.package import compare_versions

    if not current:
        return _gate("upgrade.version", Status.WARN, f">= the installed {what}", new,
                     f"the installed {what} is unknown; cannot tell whether {new} is a downgrade",
                     "check VERSION in the deployment directory")
    if compare_versions(new, current) >= 0:
        same = " (the same release: only the package or settings change)" \
            if compare_versions(new, current) == 0 else ""
        return _gate("upgrade.version", Status.PASS, f">= {current}", new,
                     f"{what} {current} -> {new}{same}")
    return _gate("upgrade.version", Status.FAIL, f">= {current}", f"{new} < {current}",
                 f"{new} is older than the installed {what} {current}: a downgrade, which the "
                 "database's forward-only migrations do not allow",
                 "give a release not older than the installed one; to go back, restore a "
                 "backup made before the upgrade (`carto-installer restore --database`)")


def newest_backup(answers: Answers, target: Target, redactor: Redactor
                  ) -> BackupRecord | None:
    """The newest backup recorded by `carto-installer backup` that holds the database, else
    the newest at all (which the gate then names as lacking it); None without any."""
    from installer.operate.backup import read_records
    from installer.operate.installation import Installation

    records = sorted(read_records(Installation(answers, target, redactor)),
                     key=lambda r: r.time)
    with_database = [r for r in records if r.database]
    chosen = with_database or records
    return chosen[-1] if chosen else None


def gate_backup_record(newest: BackupRecord | None, now: datetime | None = None
                       ) -> CheckResult:
    """upgrade.backup: a backup of the metadata database made within BACKUP_WINDOW; `newest`
    is the newest record (installer.operate.backup.latest_backup), None when there is none."""
    now = now or datetime.now(UTC)
    fix = ("run `carto-installer backup --answers FILE` first (it dumps the metadata database), "
           "or accept the risk with --skip upgrade.backup: the migrations cannot be undone "
           "without a backup")
    if newest is None:
        return _gate("upgrade.backup", Status.FAIL, "a backup within 24 h", "no backup recorded",
                     "no backup made by `carto-installer backup` is recorded", fix)
    age = now - newest.time
    hours = age.total_seconds() / 3600
    observed = f"{newest.archive}, {hours:.1f} h old"
    if age > BACKUP_WINDOW:
        return _gate("upgrade.backup", Status.FAIL, "a backup within 24 h", observed,
                     f"the newest backup ({newest.archive}) is {hours:.0f} hours old", fix,
                     archive=newest.archive)
    if not newest.database:
        return _gate("upgrade.backup", Status.FAIL, "a backup within 24 h, with the database",
                     observed, f"the newest backup ({newest.archive}) holds no database dump "
                     "(made with --no-database)", fix, archive=newest.archive)
    return _gate("upgrade.backup", Status.PASS, "a backup within 24 h", observed,
                 f"backup {newest.archive} made {hours:.1f} hours ago (with the database)",
                 archive=newest.archive)

