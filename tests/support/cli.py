"""Small helpers shared by tests."""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def cli_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for running this checkout's CLI in a subprocess."""
    env = dict(os.environ)
    previous = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + previous if previous else "")
    env.setdefault("NO_COLOR", "1")
    if extra:
        env.update(extra)
    return env


def run_cli(*args: str, env: Mapping[str, str] | None = None, cwd: str | Path | None = None,
            input: str | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run `python -m installer ARGS` from this checkout; never raises on a non-zero exit."""
    return subprocess.run(
        [sys.executable, "-m", "installer", *args],
        env=cli_env(env),
        cwd=str(cwd) if cwd else None,
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        stdin=None if input is not None else subprocess.DEVNULL,
    )


@contextlib.contextmanager
def host_ports_lock() -> Iterator[None]:
    """Held by every test that binds or publishes the host's ports 80/443 (listeners on them,
    the fixture deployment's router), so such tests never collide, even across processes."""
    with open("/tmp/carto-installer-tests-ports.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
