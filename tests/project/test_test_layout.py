"""The tests mirror the source, and keep their kinds apart (issue 12, item 8).

- a test module sits in `tests/<folder>/`, where the folder names a part of `installer/` (a
  package or a module), or is `wizard` (the front ends in screens/) or `project` (the
  repository's own rules); never directly in tests/;
- tests/services/ holds only modules that start something real (a process or a server);
- tests/support/ holds helpers imported by name: no pytest fixtures (those would have to be
  loaded as plugins), and nothing anywhere is imported with `*`;
- no module imports a test module: what tests of several modules share lives in tests/support/
  (helpers), tests/services/ (fixtures that start something) or a folder's conftest.py (its
  other fixtures); an imported test module would also bring its tests into the importer's
  namespace, where pytest collects them a second time;
- tests/data/ holds data files only, no Python;
- a snapshot folder belongs to a test module next to it (syrupy looks for
  `<module folder>/__snapshots__/<module name>/`), so a moved module takes its snapshots along.

Each rule is a function of a tests folder, run on this checkout's and on a small broken tree.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.support.cli import REPO

TESTS = REPO / "tests"
# Test folders that mirror no part of installer/: the front ends and the repository itself.
FRONT_AND_PROJECT = {"wizard": "screens/", "project": "the repository's own rules"}
# Calls that start a process or a server thread.
STARTERS = {
    ("subprocess", "Popen"), ("subprocess", "run"), ("subprocess", "call"),
    ("subprocess", "check_call"), ("subprocess", "check_output"), ("threading", "Thread"),
}


def _python_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)


def source_parts(installer: Path) -> set[str]:
    """Names of installer's packages and modules (tests/<name>/ may mirror any of them)."""
    return {p.stem for p in installer.glob("*.py") if not p.name.startswith("_")} | {
        p.name for p in installer.iterdir() if (p / "__init__.py").is_file()}


def misplaced_tests(tests: Path, parts: set[str]) -> list[str]:
    problems = []
    for module in sorted(tests.rglob("test_*.py")):
        relative = module.relative_to(tests)
        if len(relative.parts) != 2:
            problems.append(f"{relative}: a test module belongs in tests/<part>/")
            continue
        folder = relative.parts[0]
        if folder not in parts and folder not in FRONT_AND_PROJECT:
            problems.append(f"{relative}: tests/{folder}/ mirrors no part of installer/")
        if not (tests / folder / "__init__.py").is_file():
            problems.append(f"{relative}: tests/{folder}/ has no __init__.py")
    return problems


def _calls(tree: ast.AST) -> set[tuple[str, str]]:
    """(module, name) of the calls `module.name(...)` and `name(...)` imported from module."""
    imported: dict[str, tuple[str, str]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                imported[alias.asname or alias.name] = (node.module, alias.name)
    found = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
            found.add((func.value.id, func.attr))
        elif isinstance(func, ast.Name) and func.id in imported:
            found.add(imported[func.id])
    return found


def services_that_start_nothing(services: Path) -> list[str]:
    return [f"services/{module.name}: starts no process or server; it belongs in tests/support/"
            for module in _python_files(services)
            if module.name != "__init__.py"
            and not _calls(ast.parse(module.read_text())) & STARTERS]


def _is_fixture(decorator: ast.expr) -> bool:
    target = decorator.func if isinstance(decorator, ast.Call) else decorator
    return isinstance(target, ast.Attribute) and target.attr == "fixture"


def support_fixtures(support: Path) -> list[str]:
    problems = []
    for module in _python_files(support):
        for node in ast.walk(ast.parse(module.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and any(
                    _is_fixture(d) for d in node.decorator_list):
                problems.append(f"support/{module.name}: fixture {node.name} (support modules "
                                "are imported by name, never loaded as plugins)")
    return problems


def star_imports(*folders: Path) -> list[str]:
    return [f"{module}:{node.lineno}: import *"
            for folder in folders for module in _python_files(folder)
            for node in ast.walk(ast.parse(module.read_text()))
            if isinstance(node, ast.ImportFrom) and any(a.name == "*" for a in node.names)]


def _is_test_module(dotted: str) -> bool:
    return any(part.startswith("test_") for part in dotted.split("."))


def imports_of_test_modules(root: Path, *folders: Path) -> list[str]:
    """`from tests.x.test_y import ...`, `import tests.x.test_y`, `from tests.x import test_y`
    and relative forms of them, in every module of `folders` (paths shown from `root`)."""
    problems = []
    for folder in folders:
        for module in _python_files(folder):
            for node in ast.walk(ast.parse(module.read_text())):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names if _is_test_module(a.name)]
                elif isinstance(node, ast.ImportFrom):
                    base = "." * node.level + (node.module or "")
                    joint = "" if base.endswith(".") else "."
                    names = ([base] if _is_test_module(base) else
                             [f"{base}{joint}{a.name}" for a in node.names
                              if a.name.startswith("test_")])
                else:
                    continue
                problems += [f"{module.relative_to(root)}:{node.lineno}: imports the test "
                             f"module {name}; shared code goes to tests/support/ (fixtures: "
                             "tests/services/ or a conftest.py)" for name in names]
    return problems


def python_in_data(data: Path) -> list[str]:
    return [f"{path.relative_to(data.parent)}: code in tests/data/; builders go to tests/support/"
            for path in sorted(data.rglob("*")) if path.suffix in {".py", ".pyc"}]


def orphan_snapshots(tests: Path) -> list[str]:
    return [f"{folder.relative_to(tests)}: no {folder.name}.py next to __snapshots__/"
            for snapshots in sorted(tests.rglob("__snapshots__"))
            for folder in sorted(snapshots.iterdir())
            if folder.is_dir() and not (snapshots.parent / f"{folder.name}.py").is_file()]


def layout_problems(tests: Path, installer: Path) -> list[str]:
    return (misplaced_tests(tests, source_parts(installer))
            + services_that_start_nothing(tests / "services")
            + support_fixtures(tests / "support")
            + star_imports(tests, tests.parent / "benchmarks")
            + imports_of_test_modules(tests.parent, tests, tests.parent / "benchmarks")
            + python_in_data(tests / "data")
            + orphan_snapshots(tests))


def test_this_checkout_keeps_the_layout() -> None:
    assert layout_problems(TESTS, REPO / "installer") == []


def test_every_kind_of_misplacement_is_found(tmp_path: Path) -> None:
    installer = tmp_path / "installer"
    (installer / "checks").mkdir(parents=True)
    (installer / "checks" / "__init__.py").write_text("")
    (installer / "envfile.py").write_text("")
    tests = tmp_path / "tests"
    files = {
        "test_flat.py": "",
        "checks/__init__.py": "",
        "checks/test_ok.py": "",
        "envfile/test_no_init.py": "",
        "nowhere/__init__.py": "",
        "nowhere/test_x.py": "",
        "checks/deeper/test_too_deep.py": "",
        "wizard/__init__.py": "",
        "wizard/test_screens.py": "from tests.support.wizard import *\n",
        "wizard/test_prompts.py": "import os\n\n"
                                  "from tests.checks.test_ok import shared_helper\n",
        "wizard/test_flows.py": "import tests.checks.test_ok\nfrom tests.checks import test_ok\n",
        "wizard/conftest.py": "from .test_screens import a_fixture as a_fixture\n",
        "services/__init__.py": "",
        "services/real.py": "import subprocess\n\ndef start():\n    subprocess.Popen(['x'])\n",
        "services/thread.py": "from threading import Thread\n\nThread(target=print).start()\n",
        "services/helper.py": "import subprocess\n\ndef argv():\n    return ['x']\n",
        "support/__init__.py": "",
        "support/builder.py": "import pytest\n\n@pytest.fixture(scope='session')\n"
                              "def built():\n    return 1\n",
        "data/charts/build.py": "",
        "checks/__snapshots__/test_ok/a.svg": "",
        "checks/__snapshots__/test_gone/a.svg": "",
    }
    for name, text in files.items():
        (tests / name).parent.mkdir(parents=True, exist_ok=True)
        (tests / name).write_text(text)
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "bench_x.py").write_text("from tests.checks.test_ok import x\n")

    assert layout_problems(tests, installer) == [
        "checks/deeper/test_too_deep.py: a test module belongs in tests/<part>/",
        "envfile/test_no_init.py: tests/envfile/ has no __init__.py",
        "nowhere/test_x.py: tests/nowhere/ mirrors no part of installer/",
        "test_flat.py: a test module belongs in tests/<part>/",
        "services/helper.py: starts no process or server; it belongs in tests/support/",
        "support/builder.py: fixture built (support modules are imported by name, never "
        "loaded as plugins)",
        f"{tests / 'wizard' / 'test_screens.py'}:1: import *",
        *(f"{where}: imports the test module {name}; shared code goes to tests/support/ "
          "(fixtures: tests/services/ or a conftest.py)" for where, name in [
              ("tests/wizard/conftest.py:1", ".test_screens"),
              ("tests/wizard/test_flows.py:1", "tests.checks.test_ok"),
              ("tests/wizard/test_flows.py:2", "tests.checks.test_ok"),
              ("tests/wizard/test_prompts.py:3", "tests.checks.test_ok"),
              ("benchmarks/bench_x.py:1", "tests.checks.test_ok")]),
        "data/charts/build.py: code in tests/data/; builders go to tests/support/",
        "checks/__snapshots__/test_gone: no test_gone.py next to __snapshots__/",
    ]
