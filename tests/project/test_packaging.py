"""The wheel and install.sh: a fresh machine gets a working program, also without an index."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.cli import REPO

IGNORE = shutil.ignore_patterns(".git", ".venv", ".test-venv", ".cache", "__pycache__",
                                "*.egg-info", "build", "dist", ".pytest_cache", "*.log")


def copy_repo(dest: Path) -> Path:
    shutil.copytree(REPO, dest, ignore=IGNORE)
    return dest


def run(argv: list[str], cwd: Path, env: dict[str, str] | None = None,
        timeout: float = 600) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "VIRTUAL_ENV",
                                                                     "PYTHONPATH"))}
    full.update(env or {})
    return subprocess.run(argv, cwd=cwd, env=full, capture_output=True, text=True,
                          timeout=timeout, check=False, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """./install.sh --download-wheels on a copy of this checkout (needs the package index)."""
    source = copy_repo(tmp_path_factory.mktemp("online") / "carto-installer")
    wheels = tmp_path_factory.mktemp("wheels")
    result = run(["./install.sh", "--download-wheels", str(wheels)], cwd=source)
    assert result.returncode == 0, result.stderr
    names = [p.name for p in wheels.glob("*.whl")]
    assert any(n.startswith("carto_installer-") for n in names), names
    for dependency in ("textual", "questionary", "docker", "paramiko", "cryptography",
                       "psycopg", "PyYAML"):
        assert any(n.lower().startswith(dependency.lower()) for n in names), dependency
    return wheels


@pytest.fixture(scope="module")
def offline_install(wheelhouse: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = copy_repo(tmp_path_factory.mktemp("offline") / "carto-installer")
    # An index that cannot answer: the install must not need one.
    env = {"PIP_INDEX_URL": "http://127.0.0.1:9/simple", "PIP_NO_INDEX": ""}
    result = run(["./install.sh", "--offline", str(wheelhouse), "--version"], cwd=target, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("carto-installer ")
    return target


def test_offline_install_runs_a_preflight_from_the_wheel(offline_install: Path,
                                                         tmp_path: Path) -> None:
    exe = offline_install / ".venv" / "bin" / "carto-installer"
    result = run([str(exe), "preflight", "--only", "host", "--format", "json"], cwd=tmp_path)
    assert result.returncode in (0, 3, 4), result.stderr
    report = json.loads(result.stdout)
    assert {c["id"] for c in report["checks"]} >= {"host.os", "host.cpu", "host.memory"}
    # It really runs the installed wheel, not this checkout.
    where = run([str(offline_install / ".venv" / "bin" / "python"), "-c",
                 "import installer; print(installer.__file__)"], cwd=tmp_path)
    assert "site-packages" in where.stdout


def test_the_wheel_ships_every_asset(offline_install: Path, tmp_path: Path) -> None:
    expected = sorted(p.name for p in (REPO / "assets").iterdir()
                      if p.is_file() and p.suffix in (".tcss", ".json", ".yaml", ".txt"))
    assert expected
    code = ("import importlib.resources as r, json; "
            "print(json.dumps(sorted(p.name for p in r.files('assets').iterdir())))")
    result = run([str(offline_install / ".venv" / "bin" / "python"), "-c", code], cwd=tmp_path)
    shipped = json.loads(result.stdout)
    assert set(expected) <= set(shipped), set(expected) - set(shipped)


def test_rerunning_install_sh_is_quick_and_installs_nothing(offline_install: Path,
                                                            wheelhouse: Path) -> None:
    start = time.monotonic()
    result = run(["./install.sh", "--offline", str(wheelhouse), "--version"], cwd=offline_install)
    elapsed = time.monotonic() - start
    assert result.returncode == 0
    assert "installing" not in result.stderr
    assert elapsed < 5, f"re-run took {elapsed:.1f} s"


def test_install_sh_without_python_311_says_what_to_install(tmp_path: Path) -> None:
    source = copy_repo(tmp_path / "carto-installer")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in ("bash", "dirname", "cat", "sha256sum", "cut", "find", "sort", "xargs", "mktemp",
                 "rm", "sed", "grep", "mkdir", "printf", "env"):
        found = shutil.which(tool)
        if found:
            (bindir / tool).symlink_to(found)
    result = run(["bash", "./install.sh", "--version"], cwd=source,
                 env={"PATH": str(bindir), "PYTHON": ""})
    assert result.returncode == 2
    assert "Python 3.11 or newer is required" in result.stderr
    assert not (source / ".venv").exists()
