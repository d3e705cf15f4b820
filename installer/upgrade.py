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
"""

from __future__ import annotations

import json
import logging
import posixpath
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from installer.checks.base import CheckResult, Status
from installer.checks.engine import CheckFinished
from installer.deploy import (
    DeployCancelled,
    DeployResult,
    EventSink,
    LogLine,
    gate_on_preflight,
)
from installer.errors import DeployError, InputError

if TYPE_CHECKING:
    from installer.answers import Answers
    from installer.redact import Redactor
    from installer.release import ReleaseFile
    from installer.render import RenderPlan
    from installer.target import Target
    from installer.vendor import Rename

log = logging.getLogger("installer.upgrade")

GATE_IDS = ("upgrade.package", "upgrade.version", "upgrade.backup")
GATE_TITLES = {"upgrade.package": "Package version for the new release",
               "upgrade.version": "No downgrade of the release",
               "upgrade.backup": "A recent backup"}
BACKUP_WINDOW = timedelta(hours=24)
PREVIOUS_DIR = ".carto-installer-previous"
PREVIOUS_MANIFEST = "manifest.json"


# --- the gates ----------------------------------------------------------------------------------


def _gate(check_id: str, status: Status, required: str, observed: str, message: str,
          remediation: str = "", **data: Any) -> CheckResult:
    return CheckResult(check_id, "upgrade", GATE_TITLES[check_id], status, required, observed,
                       message, remediation if status != Status.PASS else "", 0.0, dict(data))


def gate_package(package_version: str | None, minimum: str | None, where: str) -> CheckResult:
    """upgrade.package: the package is at least the new release's minimum, judged by the one
    judge license.version and the Helm deploy use (installer.package.judge_package_version)."""
    from installer.package import judge_package_version

    verdict = judge_package_version(package_version, minimum, f"{where}'s MIN_VERSION")
    return _verdict_gate(verdict, f">= {minimum or 'the minimum'}")


def _verdict_gate(verdict: Any, required: str) -> CheckResult:
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


def newest_backup(answers: Answers, target: Target, redactor: Redactor) -> Any:
    """The newest backup recorded by `carto-installer backup` that holds the database, else
    the newest at all (which the gate then names as lacking it); None without any."""
    from installer.operate.backup import read_records
    from installer.operate.installation import Installation

    records = sorted(read_records(Installation(answers, target, redactor)),
                     key=lambda r: r.time)
    with_database = [r for r in records if r.database]
    chosen = with_database or records
    return chosen[-1] if chosen else None


def gate_backup_record(newest: Any, now: datetime | None = None) -> CheckResult:
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


# --- the plan -----------------------------------------------------------------------------------


@dataclass
class UpgradePlan:
    directory: str
    current_version: str
    new_version: str
    min_version: str
    package_version: str
    render: RenderPlan
    renames: list[Rename] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # variables the new env.tpl needs
    images: dict[str, str] = field(default_factory=dict)  # image -> present|load|pull
    services_to_pull: list[str] = field(default_factory=list)
    gates: list[CheckResult] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"  gate {g.id}: {g.status}: {g.message}" for g in self.gates]
        lines += [f"  release: {self.current_version} -> {self.new_version} "
                 f"(MIN_VERSION {self.min_version or 'unknown'}), package "
                 f"{self.package_version or 'unknown'}"]
        for rename in self.renames:
            lines.append(f"  renamed variable: {rename.old} -> {rename.new} (since "
                         f"{rename.since}; {rename.source})")
        if self.missing:
            lines.append("  MISSING from the package (the new env.tpl or docker-compose.yml "
                         f"use them): {', '.join(self.missing)}")
        counts: dict[str, list[str]] = {}
        for image, how in self.images.items():
            counts.setdefault(how, []).append(image)
        for how, label in (("load", "load from compose.images_archive"),
                           ("pull", "pull before stopping anything"),
                           ("present", "already on the target")):
            if counts.get(how):
                lines.append(f"  images to {label}: " if how != "present" else
                             f"  images {label}: ")
                lines[-1] += ", ".join(counts[how])
        lines.append(f"  keep the files it replaces in {self.directory}/{PREVIOUS_DIR}/ (0700) "
                     "to put them back if the upgrade fails before the migrations run")
        lines.append(self.render.summary())
        return "\n".join(lines)


def _read(target: Target, path: str, root: str) -> bytes | None:
    """A file below the deployment directory `root` (a link there is refused, never
    followed), None when absent."""
    from installer.render.compose import _read_target

    return _read_target(target, path, root)


def _text(data: bytes | None) -> str:
    return (data or b"").decode("utf-8", "replace").strip()


def images_needed(compose_text: str, dotenv: bytes) -> dict[str, list[str]]:
    """image reference -> the services using it (services scaled to 0 left out)."""
    from installer.vendor import expand, expanded_env, load_compose

    values = expanded_env(dotenv.decode("utf-8", "replace"))
    out: dict[str, list[str]] = {}
    for name, service in load_compose(compose_text).items():
        if not isinstance(service, dict) or "image" not in service:
            continue
        if expand(str(service.get("scale", "1")), values).strip() == "0":
            continue
        image = expand(str(service["image"]), values).strip()
        if image:
            out.setdefault(image, []).append(str(name))
    return out


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


# --- keeping and putting back the previous files ---------------------------------------------


def keep_previous(target: Target, directory: str, paths: Sequence[str], version: str,
                  sudo: bool = False) -> str:
    """Copy the files an upgrade will replace into PREVIOUS_DIR (0700), with a manifest of
    their modes and groups and of the files that did not exist (removed when put back)."""
    from installer.render.compose import _stats

    keep = posixpath.join(directory, PREVIOUS_DIR)
    if target.exists(keep):
        for name in _walk(target, keep):
            target.remove(name)
    target.makedirs(keep, 0o700)
    target.run(["chmod", "700", keep], timeout=15, sudo=sudo)
    existing = [p for p in dict.fromkeys(paths) if _read(target, p, directory) is not None]
    stats = _stats(target, existing)
    entries: list[dict[str, Any]] = []
    for path in dict.fromkeys(paths):
        relative = posixpath.relpath(path, directory)
        data = _read(target, path, directory)
        if data is None:
            entries.append({"path": relative, "absent": True})
            continue
        copy = posixpath.join(keep, "files", relative)
        target.makedirs(posixpath.dirname(copy), 0o700)
        target.write_deployment_file(copy, data, 0o600, directory)
        bits, gid = stats.get(path, (0o600, -1))
        entries.append({"path": relative, "mode": bits, "gid": gid})
    manifest = {"version": version, "saved_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "files": entries}
    target.write_deployment_file(posixpath.join(keep, PREVIOUS_MANIFEST),
                                 (json.dumps(manifest, indent=1) + "\n").encode(), 0o600,
                                 directory)
    log.info("kept %d file(s) of release %s in %s", len(entries), version, keep)
    return keep


def _walk(target: Target, folder: str) -> list[str]:
    """Files under `folder` (deepest first is not needed: only files are removed)."""
    out: list[str] = []
    for name in target.listdir(folder):
        path = posixpath.join(folder, name)
        try:
            target.listdir(path)
        except (NotADirectoryError, OSError):
            out.append(path)
            continue
        out += _walk(target, path)
    return out


def put_back_previous(target: Target, directory: str, sudo: bool = False) -> list[str]:
    """Restore what keep_previous saved; files that did not exist are removed. Returns the
    paths put back."""
    keep = posixpath.join(directory, PREVIOUS_DIR)
    raw = _read(target, posixpath.join(keep, PREVIOUS_MANIFEST), directory)
    if raw is None:
        raise DeployError(f"{keep}/{PREVIOUS_MANIFEST} is missing: the previous files cannot "
                          "be put back automatically")
    restored: list[str] = []
    for entry in json.loads(raw)["files"]:
        path = posixpath.join(directory, entry["path"])
        if entry.get("absent"):
            try:
                target.remove(path)
            except FileNotFoundError:
                pass
            continue
        data = target.read_deployment_file(posixpath.join(keep, "files", entry["path"]),
                                           directory)
        mode, gid = int(entry.get("mode", 0o600)), int(entry.get("gid", -1))
        target.write_deployment_file(path, data, mode & 0o700 if gid >= 0 else mode,
                                     directory)
        if gid >= 0:
            for argv in (["chgrp", "--", str(gid), path], ["chmod", "--", f"{mode:o}", path]):
                try:
                    target.run(argv, timeout=15, sudo=sudo)
                except (OSError, TimeoutError):
                    log.warning("could not restore the group/mode of %s", path)
        restored.append(path)
    return restored


# --- the Helm upgrade ---------------------------------------------------------------------------

_SECRET_WORDS = ("password", "secret", "token", "key", "credential", "private")


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value}


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def values_diff(current: dict[str, Any], new: dict[str, Any], secret_paths: set[str]
                ) -> list[str]:
    """One line per value path that differs; values under a secret path (carto-secrets.yaml,
    or a key naming a password, token, key ...) shown only as "(secret)"."""
    def is_secret(path: str) -> bool:
        last = path.rsplit(".", 1)[-1].lower()
        return (path in secret_paths or any(path.startswith(p + ".") for p in secret_paths)
                or any(word in last for word in _SECRET_WORDS))

    def show(path: str, value: Any) -> str:
        if is_secret(path):
            return "(secret)"
        text = json.dumps(value, sort_keys=True, default=str)
        return text if len(text) <= 80 else text[:77] + "..."

    old, now = _flatten(current), _flatten(new)
    lines: list[str] = []
    for path in sorted(set(old) | set(now)):
        if path not in old:
            lines.append(f"+ {path}: {show(path, now[path])}")
        elif path not in now:
            lines.append(f"- {path}")
        elif old[path] != now[path]:
            lines.append(f"~ {path}: {show(path, old[path])} -> {show(path, now[path])}"
                         if not is_secret(path) else f"~ {path}: (secret, changed)")
    return lines


@dataclass
class HelmUpgradePlan:
    release: str
    current_chart: str
    new_chart: str
    package_version: str
    diff: list[str]
    render: Any = None  # the deploy's RenderPlan, once known
    gates: list[CheckResult] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"  gate {g.id}: {g.status}: {g.message}" for g in self.gates]
        lines += [f"  release {self.release}: chart {self.current_chart} -> {self.new_chart}, "
                 f"package {self.package_version or 'unknown'}",
                 f"  values against the release's current ones (`helm get values`, secrets "
                 f"masked): {len(self.diff)} difference(s)"]
        lines += [f"    {line}" for line in self.diff]
        if self.render is not None:
            lines.append(self.render.summary())
        return "\n".join(lines)


def _upgrade_helm(answers: Answers, target: Target, *, redactor: Redactor,
                  skip: Sequence[str], cancel: threading.Event, emit: EventSink,
                  confirm: Callable[[Any], bool] | None, repair_stuck: bool,
                  resolver: Any) -> DeployResult:
    """Gates and values diff first, then the deploy's own path (stuck-release repair with
    consent, Secrets, `helm upgrade`, wait for pods and Jobs). On failure nothing is rolled
    back: a `helm rollback` past the chart's migrations would need the database restored."""
    import yaml

    from installer.chart import judge_chart_minimum
    from installer.deploy.helm import deploy_kubernetes
    from installer.helm_release import chart_info, release_history
    from installer.kube import Kube
    from installer.render.helm import (
        CUSTOMIZATIONS,
        plan_render_kubernetes,
        read_kubernetes_package,
        require_local,
        working_directory,
    )
    from installer.report import Report

    require_local(answers, target)
    k8s = answers.kubernetes
    kube = Kube(target, k8s)
    history = release_history(kube, k8s.release)
    if not history:
        raise InputError(f"there is no release {k8s.release} in namespace {k8s.namespace}: "
                         "there is nothing to upgrade",
                         "install first with `carto-installer deploy --answers FILE`")
    chart = chart_info(kube, k8s.chart)
    package = read_kubernetes_package(answers, redactor)
    last = history[-1]
    installed = last.chart[len(chart.name) + 1:] if last.chart.startswith(chart.name + "-") \
        else last.chart.rsplit("-", 1)[-1]

    with _HelmStep(emit, "gates") as step:
        package_gate = _verdict_gate(judge_chart_minimum(package.version, chart.files),
                                     "the chart's minimum")
        version_gate = gate_version(installed, chart.version, what="chart")
        newest = newest_backup(answers, target, redactor)
        backup_gate = gate_backup_record(newest)
        gates = [package_gate, version_gate, backup_gate]
        for gate in gates:
            emit(CheckFinished(gate))
        accepted = gate_on_preflight(Report("kubernetes", target.name, gates), skip)
        step.detail = ", ".join(f"{g.id} {g.status}" for g in gates)
    archive = newest.archive if newest else ""

    with _HelmStep(emit, "values diff") as step:
        current_raw = kube.helm("get", "values", k8s.release, "-o", "json", namespace=True)
        try:
            current = json.loads(current_raw.stdout or "{}") if current_raw.ok else {}
        except ValueError:
            current = {}
        values = yaml.safe_load(package.files["carto-values.yaml"]) or {}
        secrets_values = yaml.safe_load(package.files["carto-secrets.yaml"]) or {}
        render = plan_render_kubernetes(answers, target, redactor=redactor)
        custom_path = str(working_directory() / CUSTOMIZATIONS)
        custom = next((c.after for c in render.changes if c.path == custom_path), None)
        if custom is None:
            try:
                custom = (working_directory() / CUSTOMIZATIONS).read_bytes()
            except OSError:
                custom = b""
        new = _deep_merge(_deep_merge(values, secrets_values), yaml.safe_load(custom) or {})
        for leaf in _flatten(secrets_values).values():
            if isinstance(leaf, str) and leaf:
                redactor.add(leaf)
        plan = HelmUpgradePlan(k8s.release, last.chart, f"{chart.name}-{chart.version}",
                               package.version or "",
                               values_diff(current or {}, new, set(_flatten(secrets_values))),
                               gates=gates)
        if confirm is None:  # otherwise the confirmation shows it
            for line in plan.summary().splitlines():
                emit(LogLine(redactor(line)))
        step.detail = f"{len(plan.diff)} value(s) differ"

    def confirm_render(render_plan: Any) -> bool:
        plan.render = render_plan
        return confirm(plan) if confirm is not None else True

    try:
        result: DeployResult = deploy_kubernetes(
            answers, target, redactor=redactor, skip=[*skip, *GATE_IDS], cancel=cancel,
            on_event=emit, confirm=confirm_render if confirm is not None else None,
            resolver=resolver, repair_stuck=repair_stuck)
    except DeployError as exc:
        after = release_history(kube, k8s.release)
        if len(after) > len(history):
            where = archive or "the backup you made before the upgrade"
            exc.remediation = (
                f"{exc.remediation}; do NOT `helm rollback` to revision {last.number} on its "
                f"own: the new chart's migrations may have run, and the old release needs the "
                f"database as it was: restore it first (`carto-installer restore --answers "
                f"{answers.source or 'ANSWERS.yaml'} --from {where} --database --yes`)")
        raise
    result.accepted_risks = [*[r.id for r in accepted], *result.accepted_risks]
    result.message = f"upgraded release {k8s.release} to chart {chart.version}: " + \
        result.message
    return result


class _HelmStep:
    def __init__(self, emit: EventSink, name: str) -> None:
        self.emit, self.name, self.detail = emit, name, ""

    def __enter__(self) -> _HelmStep:
        from installer.deploy import StepStarted

        self.emit(StepStarted(self.name))
        return self

    def __exit__(self, kind: object, exc: BaseException | None, tb: object) -> None:
        from installer.deploy import StepFinished

        message = getattr(exc, "message", None) or (str(exc) if exc else "")
        self.emit(StepFinished(self.name, exc is None, self.detail if exc is None else message))


# --- the Compose upgrade ------------------------------------------------------------------------


def upgrade(answers: Answers, target: Target, *, redactor: Redactor,
            package: str | None = None, release: str | None = None,
            skip: Sequence[str] = (), cancel: threading.Event | None = None,
            on_event: EventSink | None = None,
            confirm: Callable[[Any], bool] | None = None,
            health_timeout: float = 900.0, repair_stuck: bool = False,
            resolver: Any = None) -> DeployResult:
    """The `upgrade` command's core; see the module doc. Raises DeployError (exit 3) on a
    failed gate or upgrade, InputError (exit 2) on bad input, DeployCancelled when not
    confirmed."""
    from installer.deploy import safe_sink

    answers = _with_overrides(answers, package, release)
    emit = safe_sink(on_event)
    if answers.platform != "compose":
        result = _upgrade_helm(answers, target, redactor=redactor, skip=skip,
                               cancel=cancel or threading.Event(), emit=emit, confirm=confirm,
                               repair_stuck=repair_stuck, resolver=resolver)
        if package and answers.source is not None and answers.package:
            emit(LogLine(redactor(record_new_package(str(answers.source), answers.package))))
        if release:
            emit(LogLine(redactor(f"give kubernetes.chart: {answers.kubernetes.chart} in the "
                                  "answers file, so that a later deploy keeps this chart")))
        return result
    return _upgrade_compose(answers, target, redactor=redactor, release=release,
                            package_given=bool(package), skip=skip,
                            cancel=cancel or threading.Event(), emit=emit, confirm=confirm,
                            health_timeout=health_timeout)


def _upgrade_compose(answers: Answers, target: Target, *, redactor: Redactor,
                     release: str | None, package_given: bool, skip: Sequence[str],
                     cancel: threading.Event,
                     emit: EventSink, confirm: Callable[[Any], bool] | None,
                     health_timeout: float) -> DeployResult:
    from installer.deploy import compose as dc
    from installer.preflight import run_preflight
    from installer.release import read_release, release_file
    from installer.render import apply_render, conflict_error, plan_render
    from installer.render.compose import check_inputs

    directory = posixpath.normpath(answers.compose.directory)
    if _read(target, posixpath.join(directory, ".env"), directory) is None or \
            _read(target, posixpath.join(directory, "docker-compose.yml"), directory) is None:
        raise InputError(f"nothing is installed in {directory} on {target.name} (no .env or "
                         "docker-compose.yml): there is nothing to upgrade",
                         "install first with `carto-installer deploy --answers FILE`")
    new_release: list[ReleaseFile] | None = None
    if release:
        new_release = read_release(answers.compose.release or release)
    inputs = check_inputs(answers, target, redactor, new_release)
    assert answers.domain is not None
    run = dc._Run(answers, target, redactor, emit, cancel)
    current_version = _text(run.read("VERSION"))

    def vendor(name: str) -> bytes:
        if new_release is not None:
            return release_file(new_release, name) or b""
        return run.read(name) or b""

    new_version = _text(vendor("VERSION")) or current_version
    min_version = _text(vendor("MIN_VERSION"))

    with dc._Step(run, "preflight and gates") as step:
        report = run_preflight(target, answers, "compose", redactor=redactor, cancel=cancel,
                               on_event=emit)
        run.check_cancel()
        gates = [
            gate_package(inputs.package.version, min_version or None,
                         f"release {new_version}"),
            gate_version(current_version, new_version),
            gate_backup_record(newest_backup(answers, target, redactor)),
        ]
        for gate in gates:
            emit(CheckFinished(gate))
        report = replace(report, results=[*report.results, *gates])
        accepted = gate_on_preflight(report, skip)
        compose_data = next((r.data for r in report.results if r.id == "docker.compose"
                             and r.status == Status.PASS), {})
        command = list(compose_data.get("command") or [])
        if not command:
            raise DeployError("no usable Docker Compose on the target (docker.compose did not "
                              "pass)", "install the docker compose v2 plugin or "
                              "docker-compose >= 1.29")
        step.detail = ", ".join(f"{g.id} {g.status}" for g in gates) + (
            f"; accepted risks: {', '.join(r.id for r in accepted)}" if accepted else "")
    accepted_ids = [r.id for r in accepted]
    backup_archive = next((str(g.data.get("archive")) for g in gates
                           if g.id == "upgrade.backup" and g.data.get("archive")), "")

    with dc._Step(run, "plan") as step:
        from installer.envfile import EnvFile
        from installer.render.merge import INSTALLER_KEYS
        from installer.vendor import package_gaps, renames_in

        current_customer = EnvFile.parse(_text(run.read("customer.env")))
        package_env = EnvFile.parse(inputs.package.files["customer.env"].decode(
            "utf-8-sig", "replace"))
        renames = renames_in([*current_customer.keys(), *package_env.keys()])
        missing = package_gaps(vendor("env.tpl").decode("utf-8", "replace"),
                               vendor("docker-compose.yml").decode("utf-8", "replace"),
                               package_env,
                               [*INSTALLER_KEYS, *(k for k in current_customer.keys()
                                                   if k not in package_env)])
        if missing:
            from installer.vendor import GAPS_FIX, describe_gaps

            raise InputError(describe_gaps(missing, vendor("env.tpl").decode(
                "utf-8", "replace")) + f" (release {new_version})", GAPS_FIX)
        render = plan_render(answers, target, redactor=redactor, compose_command=command,
                             compose_version=str(compose_data.get("version", "")),
                             new_release=new_release)
        dotenv = dc.plan_dotenv(render, run)
        needed = images_needed(vendor("docker-compose.yml").decode("utf-8", "replace"),
                               dotenv)
        archive = answers.compose.images_archive
        in_archive = {tag for tags in (dc.archive_images(archive) if archive else {}).values()
                      for tag in tags}
        images: dict[str, str] = {}
        to_pull: list[str] = []
        client = run.client()
        for image, services in needed.items():
            try:
                client.images.get(image)
                images[image] = "present"
            except Exception:
                images[image] = "load" if image in in_archive else "pull"
                if images[image] == "pull":
                    to_pull += services
        plan = UpgradePlan(directory, current_version, new_version, min_version,
                           inputs.package.version or "", render, renames, missing, images,
                           sorted(set(to_pull)), gates)
        if confirm is None:  # otherwise the confirmation shows it
            for line in plan.summary().splitlines():
                emit(LogLine(redactor(line)))
        if render.conflicts:
            raise conflict_error(render)
        step.detail = f"{len(render.changes)} file(s) to write"
    if render.empty and not plan.services_to_pull and "load" not in images.values():
        # Already at this release with this package: keep the previous release's copy as it
        # is (a second run must not overwrite it with the current files), change nothing.
        with dc._Step(run, "verify https") as step:
            assert render.trusted_certificate is not None
            step.detail = dc.verify_https(run, answers.domain, render.trusted_certificate)
        return DeployResult(True, f"https://{answers.domain}",
                            f"nothing to upgrade: release {new_version} with package "
                            f"{plan.package_version or 'unknown'} is what runs",
                            accepted_risks=accepted_ids, changed=False)
    if confirm is not None and not confirm(plan):
        raise DeployCancelled("not confirmed: nothing was changed")
    run.check_cancel()

    env_now = dc.env_values(dotenv, render.flavour)  # type: ignore[arg-type]
    project = dc.project_name(directory, env_now)
    tool = " ".join(command)
    state_path = posixpath.join(directory, dc.STATE_FILE)
    with dc._Step(run, "keep the previous release") as step:
        paths = [c.path for c in render.changes] + [state_path]
        keep = keep_previous(target, directory, paths, current_version, run.sudo)
        step.detail = f"{len(paths)} file(s) kept in {keep}"

    def put_back(reason: str) -> DeployError:
        """Before the migrations ran: the previous files back, the previous release up."""
        emit(LogLine(redactor(f"putting release {current_version} back: {reason}")))
        with dc._Step(run, "put the previous release back") as back:
            put_back_previous(target, directory, run.sudo)
            watcher = dc._Watcher(run, project, expected_old)
            dc._compose_up(run, command, watcher)
            dc._wait_healthy(run, watcher, expected_old, health_timeout, command)
            assert render.trusted_certificate is not None
            old_cert = run.read(posixpath.join("certs", f"{answers.domain}.crt")) \
                or render.trusted_certificate
            answered = dc.verify_https(run, str(answers.domain), old_cert)
            dc._save_state(run, render, command, project, action="rollback",
                           version=current_version)
            back.detail = answered
        return DeployError(
            f"the upgrade to {new_version} failed before the migrations ran ({reason}); the "
            f"previous release {current_version} was put back and answers: {answered}",
            "fix the cause shown above, then run `carto-installer upgrade` again")

    expected_old = dc.expected_services(_text(run.read("docker-compose.yml")),
                                        dc.env_values(run.read(".env") or b"",
                                                      render.flavour))  # type: ignore[arg-type]
    with dc._Step(run, "write the new release") as step:
        written = apply_render(render, target)
        step.detail = f"wrote {len(written)} file(s)"

    try:
        if archive and any(how == "load" for how in images.values()):
            with dc._Step(run, "load images") as step:
                _loaded, step.detail = dc.load_images(run, archive,
                                                      dc.archive_images(archive))
        if plan.services_to_pull:
            with dc._Step(run, "pull images") as step:
                result = target.run([*command, "pull", *plan.services_to_pull], cwd=directory,
                                    timeout=dc.UP_TIMEOUT, sudo=run.sudo)
                run.log_lines(result.output(), "compose: ")
                if not result.ok:
                    raise DeployError(f"`{tool} pull` failed (exit {result.returncode})",
                                      "check the registry access (egress checks) or give "
                                      "compose.images_archive")
                step.detail = f"pulled the images of {', '.join(plan.services_to_pull)}"
    except DeployError as exc:
        raise put_back(f"the new images could not be had: {exc.message}") from None

    compose_now = vendor("docker-compose.yml").decode("utf-8", "replace")
    expected = dc.expected_services(compose_now, env_now)
    jobs_before = {v.id: v.started_at for v in dc.list_containers(run.client(), project)
                   if dc.is_job(v.service)}
    try:
        watcher = dc._Watcher(run, project, expected)
        with dc._Step(run, "launch") as step:
            before_up = {v.id: v.started_at for v in dc.list_containers(run.client(), project)}
            dc._compose_up(run, command, watcher)
            step.detail = f"`{tool} up -d` done"
            restarted = dc._reload_certificates(run, render, command, project, expected,
                                                before_up)
            if restarted:
                step.detail += (f"; restarted {', '.join(restarted)} for the new certificates or "
                                "other files mounted into them")
        with dc._Step(run, "wait healthy") as step:
            step.detail = dc._wait_healthy(run, watcher, expected, health_timeout, command)
        with dc._Step(run, "verify https") as step:
            assert render.trusted_certificate is not None
            healthy_views = dc.list_containers(run.client(), project)
            step.detail = dc.verify_https(run, answers.domain, render.trusted_certificate)
            dc._still_healthy(run, project, expected, healthy_views, command)
    except DeployError as exc:
        if not migrations_ran(run, project, jobs_before):
            raise put_back(exc.message) from None
        raise restore_needed(answers, directory, current_version, new_version, exc.message,
                             backup_archive, tool,
                             bundled_database_service(answers, compose_now, env_now)
                             ) from None
    dc._save_state(run, render, command, project, action="upgrade", version=new_version)
    if package_given and answers.source is not None and answers.package:
        emit(LogLine(redactor(record_new_package(str(answers.source), answers.package))))
    url = f"https://{answers.domain}"
    return DeployResult(True, url, f"upgraded to {new_version}: CARTO answers at {url}",
                        accepted_risks=accepted_ids, changed=True)


def migrations_ran(run: Any, project: str, jobs_before: dict[str, str]) -> bool:
    """Whether a migrations job started since `jobs_before` (its container is new, or was
    started again): from then on the database may hold the new schema."""
    from installer.deploy import compose as dc

    for view in dc.list_containers(run.client(), project):
        if dc.is_job(view.service) and view.started_at and \
                not view.started_at.startswith("0001-") and \
                jobs_before.get(view.id) != view.started_at:
            return True
    return False


def bundled_database_service(answers: Answers, compose_text: str, env: dict[str, str]
                             ) -> str | None:
    """The bundled PostgreSQL's service (as `backup`/`restore` find it: the service named by
    WORKSPACE_POSTGRES_HOST, else one whose image is PostgreSQL), None for an external one."""
    from installer.vendor import load_compose

    if not answers.database.bundled:
        return None
    services = load_compose(compose_text)
    named = env.get("WORKSPACE_POSTGRES_HOST", "")
    if named in services:
        return named
    return next((str(name) for name, spec in services.items()
                 if isinstance(spec, dict) and "postgres" in str(spec.get("image", ""))), None)


def restore_needed(answers: Answers, directory: str, old: str, new: str, reason: str,
                   archive: str, tool: str, database_service: str | None = None
                   ) -> DeployError:
    """After the migrations ran, nothing is put back on its own: the old release's services
    may not run against a database the new migrations changed."""
    where = archive or "ARCHIVE (the backup you made before the upgrade)"
    answers_file = str(answers.source or "ANSWERS.yaml")
    steps = [f"cd {directory} && {tool} stop"]
    if database_service:  # the restore loads the dump through the running database
        steps.append(f"cd {directory} && {tool} start {database_service}")
    steps += [
        f"carto-installer restore --answers {answers_file} --from {where} --database --yes",
        f"cp -a {directory}/{PREVIOUS_DIR}/files/. {directory}/   # the files of {old}",
        f"cd {directory} && {tool} up -d",
        f"carto-installer status --answers {answers_file}",
    ]
    return DeployError(
        f"the upgrade to {new} failed after the database migrations ran ({reason}). The "
        f"migrations cannot be undone: the database must be restored from the backup "
        f"{where} before release {old} can run again. Nothing was put back automatically.",
        "either fix the cause and run `carto-installer upgrade` again, or go back to "
        f"{old}:\n    " + "\n    ".join(steps))


__all__ = ["GATE_IDS", "UpgradePlan", "gate_backup_record", "gate_package", "gate_version",
           "upgrade"]
