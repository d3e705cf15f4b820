"""One typed event stream from the deployment, shown by each front end from one mapping.

The event types are read from the core (installer.deploy.events.EVENT_TYPES, the members of
the DeployEvent union), never listed here: a new event type makes these tests demand a
rendering for it in the wizard's deploy screen, the plain prompts and the CLI.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import typing
from typing import Any

import pytest

from installer.checks.base import CheckResult, Status
from installer.deploy import events
from installer.deploy.events import EVENT_TYPES, DeployView, show
from installer.deploy.steps import steps_for
from installer.redact import Redactor
from tests.support.cli import REPO

VIEW_METHODS = sorted(name for name, member in vars(DeployView).items()
                      if inspect.isfunction(member) and not name.startswith("_"))


def _front_ends() -> dict[str, type]:
    from installer.cli.deployment import _Printer
    from screens.deploy import DeployScreen
    from screens.plain import PlainDeployView

    return {"wizard": DeployScreen, "plain": PlainDeployView, "cli": _Printer}


def _sample(kind: type) -> Any:
    """An instance of an event type, its fields filled by their declared types."""
    hints = typing.get_type_hints(kind, vars(events) | {"CheckResult": CheckResult})
    values: dict[str, Any] = {}
    for field in dataclasses.fields(kind):
        hint = hints[field.name]
        if hint is str:
            values[field.name] = f"{field.name} of {kind.__qualname__}"
        elif hint is bool:
            values[field.name] = False
        elif hint is CheckResult:
            values[field.name] = CheckResult("host.cpu", "host", "CPU", Status.FAIL, ">= 4",
                                             "2", "2 CPUs", "add CPUs", 0.1, {})
        else:
            raise AssertionError(f"{kind.__qualname__}.{field.name}: no sample for {hint}")
    return kind(**values)


class _Recorder:
    """A DeployView that remembers which of its methods got which event."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def __getattr__(self, name: str) -> Any:
        if name not in VIEW_METHODS:
            raise AttributeError(name)
        return lambda event: self.calls.append((name, event))


def test_the_core_names_more_than_one_event_type_and_a_method_for_each() -> None:
    assert len(EVENT_TYPES) >= 6
    assert len(VIEW_METHODS) == len(EVENT_TYPES), (VIEW_METHODS, EVENT_TYPES)


def test_show_hands_each_event_type_to_its_own_view_method() -> None:
    chosen: dict[type, str] = {}
    for kind in EVENT_TYPES:
        event = _sample(kind)
        recorder = _Recorder()
        show(event, typing.cast(DeployView, recorder))
        assert len(recorder.calls) == 1, (kind, recorder.calls)
        method, got = recorder.calls[0]
        assert got is event
        # The method takes exactly this type (its annotation names it).
        parameter = list(inspect.signature(getattr(DeployView, method)).parameters.values())[1]
        assert parameter.annotation == kind.__name__, (method, parameter.annotation, kind)
        chosen[kind] = method
    assert sorted(chosen.values()) == VIEW_METHODS  # one method per type, none shared


def test_show_refuses_what_is_not_a_deploy_event() -> None:
    with pytest.raises(AssertionError):
        show(typing.cast(Any, "a string"), typing.cast(DeployView, _Recorder()))


@pytest.mark.parametrize("front_end", ["wizard", "plain", "cli"])
def test_each_front_end_has_a_rendering_for_every_event_type(front_end: str) -> None:
    view = _front_ends()[front_end]
    for method in VIEW_METHODS:
        own = next((klass for klass in view.__mro__ if method in vars(klass)), None)
        assert own is not None and own is not DeployView, f"{view.__name__} lacks {method}"
        expected = list(inspect.signature(getattr(DeployView, method)).parameters)
        assert list(inspect.signature(getattr(view, method)).parameters) == expected


def test_the_cli_prints_every_event_type_but_a_check_start(
        capsys: pytest.CaptureFixture[str]) -> None:
    """The CLI's rendering, run for real: each event type gives its line (a check is shown
    once it finished, so its start prints nothing)."""
    from installer.cli.deployment import _Printer

    printer = _Printer(Redactor())
    for kind in EVENT_TYPES:
        printer(_sample(kind))
        printed = capsys.readouterr().out
        if kind is events.CheckStarted:
            assert printed == ""
        else:
            assert printed.strip(), kind


FRONT_END_SOURCES = ("screens/deploy.py", "screens/plain.py", "installer/cli/deployment.py")


@pytest.mark.parametrize("source", FRONT_END_SOURCES)
def test_no_front_end_tells_events_apart_by_class_name(source: str) -> None:
    tree = ast.parse((REPO / source).read_text(encoding="utf-8"))
    names = {kind.__name__ for kind in EVENT_TYPES}
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            assert node.attr != "__name__", f"{source}:{node.lineno} reads a class name"
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            assert node.value not in names, f"{source}:{node.lineno} names {node.value!r}"
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                and node.func.id == "type":
            raise AssertionError(f"{source}:{node.lineno} calls type()")


def test_the_wizard_lists_the_deploy_steps_the_core_declares() -> None:
    """No step name of a deploy is written in screens/: the list comes from steps_for()."""
    step_names = set(steps_for("compose")) | set(steps_for("kubernetes"))
    for path in sorted((REPO / "screens").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        literals = {node.value for node in ast.walk(tree)
                    if isinstance(node, ast.Constant) and isinstance(node.value, str)}
        assert not literals & step_names, (path.name, literals & step_names)


def test_one_judge_compares_package_versions() -> None:
    """CARTO's versions (`sort -V`, as the vendor compares them) are compared only inside
    installer.package (the judge) and by the upgrade's no-downgrade gate; every "package >=
    minimum" of the preflight, the Helm deploy and the upgrade goes through the judge.
    (Docker's and Kubernetes' own versions are the checks' business.)"""
    allowed = {("installer/package.py", "compare_versions"),
               ("installer/package.py", "version_at_least"),
               ("installer/upgrade/gates.py", "compare_versions")}
    found = set()
    for path in sorted((REPO / "installer").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
                if name in ("compare_versions", "version_at_least"):
                    found.add((str(path.relative_to(REPO)), name))
    assert found <= allowed, found - allowed
    judged = {str(path.relative_to(REPO)) for path in (REPO / "installer").rglob("*.py")
              if "judge_package_version(" in path.read_text(encoding="utf-8")
              or "judge_chart_minimum(" in path.read_text(encoding="utf-8")}
    assert {"installer/checks/license.py", "installer/deploy/helm/__init__.py",
            "installer/upgrade/gates.py"} <= judged, judged
