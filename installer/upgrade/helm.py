"""The Helm upgrade: its gates and the values it changes against the release's current ones
(secrets masked), then the deploy's own path; on failure nothing is rolled back."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from installer.checks.base import CheckResult
from installer.deploy import DeployResult, EventSink, LogLine
from installer.deploy.steps import DeployRun
from installer.errors import DeployError, InputError
from installer.upgrade.gates import (
    GATE_IDS,
    gate_backup_record,
    gate_chart_minimum,
    gate_version,
    newest_backup,
)
from installer.yamldata import overlay

if TYPE_CHECKING:
    from installer.answers import Answers
    from installer.checks.base import Resolver
    from installer.redact import Redactor
    from installer.render import RenderPlan
    from installer.target import Target
    from installer.yamldata import YAMLMapping, YAMLValue

# The Helm upgrade's own steps before the deploy's (installer.deploy.steps names those).
GATES = "gates"
VALUES_DIFF = "values diff"

_SECRET_WORDS = ("password", "secret", "token", "key", "credential", "private")


def _flatten(value: YAMLValue, prefix: str = "") -> dict[str, YAMLValue]:
    if isinstance(value, dict) and value:
        out: dict[str, YAMLValue] = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value}


def values_diff(current: YAMLMapping, new: YAMLMapping, secret_paths: set[str]
                ) -> list[str]:
    """One line per value path that differs; values under a secret path (carto-secrets.yaml,
    or a key naming a password, token, key ...) shown only as "(secret)"."""
    def is_secret(path: str) -> bool:
        last = path.rsplit(".", 1)[-1].lower()
        return (path in secret_paths or any(path.startswith(p + ".") for p in secret_paths)
                or any(word in last for word in _SECRET_WORDS))

    def show(path: str, value: YAMLValue) -> str:
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
    render: RenderPlan | None = None  # the deploy's plan, once known
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


def upgrade_helm(answers: Answers, target: Target, *, redactor: Redactor,
                 skip: Sequence[str], cancel: threading.Event, emit: EventSink,
                 confirm: Callable[[HelmUpgradePlan], bool] | None, repair_stuck: bool,
                 resolver: Resolver | None) -> DeployResult:
    """Gates and values diff first, then the deploy's own path (stuck-release repair with
    consent, Secrets, `helm upgrade`, wait for pods and Jobs). On failure nothing is rolled
    back: a `helm rollback` past the chart's migrations would need the database restored."""
    import yaml

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

    run = DeployRun(emit, redactor, cancel)
    with run.step(GATES) as step:
        newest = newest_backup(answers, target, redactor)
        gates = [gate_chart_minimum(package.version, chart.files),
                 gate_version(installed, chart.version, what="chart"),
                 gate_backup_record(newest)]
        _report, accepted = run.gate(Report("kubernetes", target.name, []), gates, skip)
        step.detail = ", ".join(f"{g.id} {g.status}" for g in gates)
    archive = newest.archive if newest else ""

    with run.step(VALUES_DIFF) as step:
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
        new = overlay(overlay(values, secrets_values), yaml.safe_load(custom) or {})
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

    def confirm_render(render_plan: RenderPlan) -> bool:
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


