"""The house rules that tools can check: ruff on all code, mypy --strict on the core and the
front ends (installer/ and screens/, as pyproject.toml lists them)."""

from __future__ import annotations

import subprocess
import sys

from tests.support.cli import REPO


def run_tool(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *argv], cwd=REPO, capture_output=True,
                          text=True, check=False, timeout=300)


def test_ruff_finds_nothing() -> None:
    result = run_tool("ruff", "check", "installer", "screens", "tests", "benchmarks")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_on_the_core_and_the_front_ends() -> None:
    result = run_tool("mypy", "--no-incremental")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success" in result.stdout
