"""The core knows no UI: importing any installer module loads neither Textual, questionary nor
the screens; and the plain prompts do not pay for Textual either.

Two checks, like import-linter's "forbidden" contract plus a runtime proof: a static scan of
every import statement in installer/ (including imports inside functions), and a subprocess
that imports every module and looks at sys.modules.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

from tests.support.cli import REPO, cli_env

FORBIDDEN_IN_CORE = ("textual", "questionary", "screens", "prompt_toolkit", "rich")
# No door at all: the launcher (screens/launch.py) hands the wizard to installer.cli.main.
ALLOWED: set[tuple[str, str, str]] = set()


def _core_modules() -> list[str]:
    names = []
    for path in sorted((REPO / "installer").rglob("*.py")):
        if path.name == "__main__.py":
            continue  # running it starts the CLI
        parts = path.relative_to(REPO).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names.append(".".join(parts))
    return names


def _imports(path: Path) -> list[tuple[int, str, str]]:
    """(line, enclosing function or "", module) of every import, at any depth, including
    importlib.import_module("...") and __import__("...") with a literal name."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[tuple[int, str, str]] = []

    def visit(node: ast.AST, function: str) -> None:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            function = node.name
        if isinstance(node, ast.Import):
            found.extend((node.lineno, function, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, function, node.module))
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and ((isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                   or (isinstance(node.func, ast.Name) and node.func.id == "__import__"))):
            found.append((node.lineno, function, node.args[0].value))
        for child in ast.iter_child_nodes(node):
            visit(child, function)

    visit(tree, "")
    return found


def _offending(root: Path) -> list[str]:
    out = []
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(REPO).as_posix()
        for line, function, name in _imports(path):
            if name.split(".")[0] not in FORBIDDEN_IN_CORE:
                continue
            if (relative, function, name) in ALLOWED:
                continue
            out.append(f"{relative}:{line} ({function or 'module level'}) imports {name}")
    return out


def test_no_core_module_imports_a_user_interface_statically() -> None:
    assert _offending(REPO / "installer") == []


def test_the_static_scan_finds_nested_and_dynamic_imports(tmp_path: Path) -> None:
    # The scan must not be blind to the forms a lazy import takes.
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import os\n"
        "def later():\n"
        "    from textual.app import App\n"
        "    import importlib\n"
        "    importlib.import_module('questionary')\n"
        "    __import__('screens.app')\n"
    )
    names = [(function, name) for _, function, name in _imports(sample)]
    assert ("later", "textual.app") in names
    assert ("later", "questionary") in names
    assert ("later", "screens.app") in names
    assert ("", "os") in names


def _loaded_after_importing(modules: list[str]) -> list[str]:
    code = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "from installer.cli import build_parser\n"
        "build_parser()\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], env=cli_env(), cwd=REPO,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return list(json.loads(result.stdout))


def test_importing_every_core_module_loads_no_user_interface() -> None:
    modules = _core_modules()
    assert "installer.answers" in modules and "installer.preflight" in modules
    loaded = _loaded_after_importing(modules)
    ui = sorted(m for m in loaded if m.split(".")[0] in FORBIDDEN_IN_CORE)
    assert ui == [], f"importing the core loaded {ui}"


def test_the_plain_prompts_do_not_load_textual() -> None:
    loaded = _loaded_after_importing(["screens.plain"])
    assert "questionary" in loaded  # it did import what it needs
    assert sorted(m for m in loaded if m.split(".")[0] == "textual") == []


def test_the_shared_form_and_state_modules_load_no_ui_library() -> None:
    loaded = _loaded_after_importing(["screens.fields", "installer.session"])
    assert sorted(m for m in loaded if m.split(".")[0] in ("textual", "questionary")) == []


def test_the_import_contracts_hold() -> None:
    """import-linter's contracts in pyproject.toml: the core imports no user interface, and
    its layers (cli > session > upgrade > operate > deploy > preflight > connect > checks > ssh
    > target) import
    only downwards, with each exception listed and justified there (an exception that no
    longer matches is an error)."""
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint), "--no-cache", str(REPO / "pyproject.toml")],
                            env=cli_env(), cwd=REPO, capture_output=True, text=True,
                            timeout=240, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 2 kept, 0 broken." in result.stdout
