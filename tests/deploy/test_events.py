"""One typed event stream from the deployment, shown by each front end from one mapping.

The event types are read from the core (installer.deploy.events.EVENT_TYPES, the members of
the DeployEvent union), never listed here: a new event type makes these tests demand a
rendering for it in the wizard's deploy screen, the plain prompts and the CLI. The same holds
for the front ends that manage an installation (upgrade, backup, support bundle, uninstall):
they render installer.operate.events.OPERATION_EVENT_TYPES (the deploy's types and byte
progress) through `show_operation`.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import io
import typing
from pathlib import Path
from typing import Any

import pytest

from installer.checks.base import CheckResult, Status
from installer.deploy import events
from installer.deploy.events import EVENT_TYPES, DeployView, show
from installer.deploy.steps import steps_for
from installer.operate import events as operate_events
from installer.operate.events import OPERATION_EVENT_TYPES, OperateView, show_operation
from installer.redact import Redactor
from tests.support.cli import REPO


def _view_methods(protocol: type) -> list[str]:
    """The methods a view protocol declares, its own and those of the protocols it extends."""
    return sorted({name for klass in protocol.__mro__ if klass not in (typing.Protocol,
                                                                        typing.Generic, object)
                   for name, member in vars(klass).items()
                   if inspect.isfunction(member) and not name.startswith("_")})


VIEW_METHODS = _view_methods(DeployView)
OPERATE_VIEW_METHODS = _view_methods(OperateView)


def _front_ends() -> dict[str, type]:
    from installer.cli.deployment import DeployPrinter
    from screens.deploy import DeployScreen
    from screens.plain_deploy import PlainDeployView

    return {"wizard": DeployScreen, "plain": PlainDeployView, "cli": DeployPrinter}


def _operate_front_ends() -> dict[str, type]:
    from installer.cli.operate import OperatePrinter
    from screens.operate import OperateScreen
    from screens.operate_plain import PlainOperateView

    return {"wizard": OperateScreen, "plain": PlainOperateView, "cli": OperatePrinter}


def _sample(kind: type) -> Any:
    """An instance of an event type, its fields filled by their declared types."""
    hints = typing.get_type_hints(kind, vars(events) | vars(operate_events)
                                  | {"CheckResult": CheckResult})
    values: dict[str, Any] = {}
    for field in dataclasses.fields(kind):
        hint = hints[field.name]
        if hint is str:
            values[field.name] = f"{field.name} of {kind.__qualname__}"
        elif hint is bool:
            values[field.name] = False
        elif hint is int:
            values[field.name] = 3_000_000
        elif hint is CheckResult:
            values[field.name] = CheckResult("host.cpu", "host", "CPU", Status.FAIL, ">= 4",
                                             "2", "2 CPUs", "add CPUs", 0.1, {})
        else:
            raise AssertionError(f"{kind.__qualname__}.{field.name}: no sample for {hint}")
    return kind(**values)


class _Recorder:
    """A view (DeployView, or OperateView) that remembers which of its methods got which
    event."""

    def __init__(self, methods: list[str] = VIEW_METHODS) -> None:
        self.methods = methods
        self.calls: list[tuple[str, Any]] = []

    def __getattr__(self, name: str) -> Any:
        if name not in self.methods:
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


def test_an_operation_renders_every_deploy_event_type_and_byte_progress() -> None:
    assert set(EVENT_TYPES) < set(OPERATION_EVENT_TYPES)
    assert operate_events.Progress in OPERATION_EVENT_TYPES
    assert set(VIEW_METHODS) < set(OPERATE_VIEW_METHODS)
    assert len(OPERATE_VIEW_METHODS) == len(OPERATION_EVENT_TYPES), (OPERATE_VIEW_METHODS,
                                                                     OPERATION_EVENT_TYPES)


def test_show_operation_hands_each_event_type_to_its_own_view_method() -> None:
    chosen: dict[type, str] = {}
    for kind in OPERATION_EVENT_TYPES:
        event = _sample(kind)
        recorder = _Recorder(OPERATE_VIEW_METHODS)
        show_operation(event, typing.cast(OperateView, recorder))
        assert len(recorder.calls) == 1, (kind, recorder.calls)
        method, got = recorder.calls[0]
        assert got is event
        parameter = list(inspect.signature(getattr(OperateView, method)).parameters.values())[1]
        assert parameter.annotation == kind.__name__, (method, parameter.annotation, kind)
        chosen[kind] = method
    assert sorted(chosen.values()) == OPERATE_VIEW_METHODS


def test_show_operation_refuses_what_is_not_an_event() -> None:
    with pytest.raises(AssertionError):
        show_operation(typing.cast(Any, "a string"),
                       typing.cast(OperateView, _Recorder(OPERATE_VIEW_METHODS)))


def test_show_refuses_what_is_not_a_deploy_event() -> None:
    with pytest.raises(AssertionError):
        show(typing.cast(Any, "a string"), typing.cast(DeployView, _Recorder()))


@pytest.mark.parametrize("front_end", ["wizard", "plain", "cli", "wizard-operate",
                                       "plain-operate", "cli-operate"])
def test_each_front_end_has_a_rendering_for_every_event_type(front_end: str) -> None:
    if front_end.endswith("-operate"):
        view = _operate_front_ends()[front_end.removesuffix("-operate")]
        protocol, methods = OperateView, OPERATE_VIEW_METHODS
    else:
        view = _front_ends()[front_end]
        protocol, methods = DeployView, VIEW_METHODS
    for method in methods:
        own = next((klass for klass in view.__mro__ if method in vars(klass)), None)
        assert own is not None and own not in (DeployView, OperateView), \
            f"{view.__name__} lacks {method}"
        expected = list(inspect.signature(getattr(protocol, method)).parameters)
        assert list(inspect.signature(getattr(view, method)).parameters) == expected


def test_the_cli_prints_every_event_type_but_a_check_start(
        capsys: pytest.CaptureFixture[str]) -> None:
    """The CLI's rendering, run for real: each event type gives its line (a check is shown
    once it finished, so its start prints nothing)."""
    from installer.cli.deployment import DeployPrinter

    printer = DeployPrinter(Redactor())
    for kind in EVENT_TYPES:
        printer(_sample(kind))
        printed = capsys.readouterr().out
        if kind is events.CheckStarted:
            assert printed == ""
        else:
            assert printed.strip(), kind


def test_the_cli_operate_commands_print_every_event_type_but_a_check_start(
        capsys: pytest.CaptureFixture[str]) -> None:
    """The backup/restore/bundle/uninstall printer, run for real (not on a terminal): byte
    progress is a line, a log line has no "|" (unlike the deploy's), the rest as the deploy
    command prints them."""
    from installer.cli.operate import OperatePrinter

    printer = OperatePrinter(Redactor())
    for kind in OPERATION_EVENT_TYPES:
        event = _sample(kind)
        printer(event)
        printed = capsys.readouterr().out
        if kind is events.CheckStarted:
            assert printed == ""
        elif kind is operate_events.Progress:
            assert printed == "    step of Progress: 3.0 MB of 3.0 MB\n"
        elif kind is events.LogLine:
            assert printed == "    text of LogLine\n"
        else:
            assert printed.strip(), kind


def test_the_plain_operate_view_shows_what_the_operate_prompts_show(tmp_path: Path) -> None:
    """The plain prompts' operate view, run for real on a PlainWizard: a service's state and a
    check's start show nothing (as before the one mapping), every other type one line or
    more; byte progress only when it moved on by a tenth."""
    from installer.session import Session
    from screens.operate_plain import PlainOperateView
    from screens.plain import PlainWizard

    out = io.StringIO()
    view = PlainOperateView(PlainWizard(Session(redactor=Redactor(), workdir=tmp_path), out=out,
                                        color=False))
    for kind in OPERATION_EVENT_TYPES:
        view(_sample(kind))
        printed, _ = out.getvalue(), out.truncate(0)
        out.seek(0)
        if kind in (events.CheckStarted, events.ServiceState):
            assert printed == "", kind
        else:
            assert printed.strip(), kind
    view(_sample(operate_events.Progress))  # the same tenth again: not repeated
    assert out.getvalue() == ""


FRONT_END_SOURCES = ("screens/deploy.py", "screens/plain.py", "installer/cli/deployment.py",
                     "screens/operate.py", "screens/operate_plain.py", "installer/cli/operate.py")
# Where a front end may still test an event's type: the plain check runner reads the checks'
# own stream (installer.checks.engine.Event, not a deploy's), where only a finished check shows.
ISINSTANCE_ALLOWED = {("screens/plain.py", "run_checks")}


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


@pytest.mark.parametrize("source", FRONT_END_SOURCES)
def test_no_front_end_tells_events_apart_with_isinstance(source: str) -> None:
    """The one mapping (show, show_operation) is the only place an event's type is tested."""
    tree = ast.parse((REPO / source).read_text(encoding="utf-8"))
    names = {kind.__name__ for kind in OPERATION_EVENT_TYPES}
    allowed: set[ast.AST] = set()
    for function in ast.walk(tree):
        if isinstance(function, ast.FunctionDef) and (source, function.name) in \
                ISINSTANCE_ALLOWED:
            allowed |= set(ast.walk(function))
    for node in ast.walk(tree):
        if node in allowed or not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                                   and node.func.id == "isinstance" and len(node.args) == 2):
            continue
        tested = {n.id if isinstance(n, ast.Name) else getattr(n, "attr", "")
                  for n in ast.walk(node.args[1])}
        assert not tested & names, f"{source}:{node.lineno} tests {tested & names}"


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
