#!/usr/bin/env python3
"""Deploy overhead on the fixture deployment, measured in one run.

    python benchmarks/bench_deploy.py [--runs N] [--check]

For each run, on the same rendered fixture directory (tests/data/deployment), with the
same real Docker engine and the docker compose v2 plugin:

1. by hand: `docker compose up -d`, then poll the engine until every container is running
   (healthy when it has a healthcheck) and workspace-migrations has exited 0;
2. `carto-installer deploy --yes` (preflight, render, launch, wait healthy, verify HTTPS).

Between the two, the project is taken down. Prints both times, the overhead and the ratio
(goal <= 1.15x), and where the installer's time went. --check exits 1 when the goal is missed.
The machine's host.cpu check fails on small runners and egress has no Internet here: both
are accepted risks (--skip), as an admin would do.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.services.dockerd import compose_v2_plugin, ensure_docker_engine  # noqa: E402
from tests.support.cli import host_ports_lock  # noqa: E402
from tests.support.compose_deployment import (  # noqa: E402
    build_images,
    compose_down,
    make_deployment,
    write_answers,
)
from tests.support.package import make_package  # noqa: E402

DOMAIN = "carto-bench.example.com"
GOAL = 1.15
SKIP = "host.cpu,egress"
ENV = {"TEST_PG_ADMIN_PASSWORD": "bench-admin-pw", "TEST_PG_PASSWORD": "bench-user-pw"}


def cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **ENV, "PYTHONPATH": str(REPO), "NO_COLOR": "1"}
    return subprocess.run([sys.executable, "-m", "installer", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, check=False, timeout=900)


def healthy(client: object, project: str) -> bool:
    containers = client.containers.list(  # type: ignore[attr-defined]
        all=True, filters={"label": f"com.docker.compose.project={project}"})
    if len(containers) < 3:
        return False
    for container in containers:
        state = container.attrs["State"]
        service = container.labels.get("com.docker.compose.service", "")
        if service.endswith("migrations"):
            if state["Status"] != "exited" or state["ExitCode"] != 0:
                return False
        elif state["Status"] != "running" or (state.get("Health") or {}).get(
                "Status", "healthy") != "healthy":
            return False
    return True


def by_hand(client: object, directory: Path) -> float:
    start = time.perf_counter()
    subprocess.run(["docker", "compose", "up", "-d"], cwd=directory, check=True,
                   capture_output=True, timeout=600)
    while not healthy(client, directory.name):
        time.sleep(0.1)
    return time.perf_counter() - start


def with_installer(workdir: Path, answers: Path) -> tuple[float, dict[str, float]]:
    log = workdir / "carto-installer.log"
    log.unlink(missing_ok=True)
    start_wall = time.time()
    start = time.perf_counter()
    result = cli(["deploy", "--answers", str(answers), "--yes", "--skip", SKIP], workdir)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"deploy failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return elapsed, _steps(log.read_text(), start_wall)


def _steps(log: str, start_wall: float) -> dict[str, float]:
    """Seconds spent in each step, from the log's timestamps (start-up = before preflight)."""
    marks: list[tuple[str, float]] = []
    for line in log.splitlines():
        match = re.match(r"(\S+ \S+) INFO installer\.deploy(?:\.compose)?: step (.+?)( done|:|$)",
                         line)
        if match and not match.group(3).startswith(" done") and ":" not in match.group(2):
            stamp = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
            marks.append((match.group(2), stamp))
    steps: dict[str, float] = {}
    if marks:
        steps["start-up"] = marks[0][1] - start_wall
    last_done = None
    for line in log.splitlines():
        match = re.match(r"(\S+ \S+) INFO installer\.deploy(?:\.compose)?: step (.+?) done", line)
        if match:
            last_done = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
            begun = dict(marks).get(match.group(2))
            if begun is not None:
                steps[match.group(2)] = last_done - begun
    return steps


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--check", action="store_true", help="exit 1 when the goal is missed")
    args = parser.parse_args()

    engine = ensure_docker_engine()
    compose_v2_plugin()
    build_images(engine.client)
    workdir = Path(tempfile.mkdtemp(prefix="bench-deploy-"))
    try:
        package = make_package(workdir / "pkg")
        directory = make_deployment(workdir / "cartobench")
        answers = write_answers(workdir / "answers.yaml", package=package.path,
                                directory=directory, domain=DOMAIN)
        rendered = cli(["render", "--answers", str(answers)], workdir)
        if rendered.returncode != 0:
            raise SystemExit(f"render failed:\n{rendered.stderr}")
        manual, installer, all_steps = [], [], []
        with host_ports_lock():
            compose_down(directory)
            for _ in range(args.runs):
                manual.append(by_hand(engine.client, directory))
                compose_down(directory)
                (directory / ".carto-installer-state.json").unlink(missing_ok=True)
                elapsed, steps = with_installer(workdir, answers)
                installer.append(elapsed)
                all_steps.append(steps)
                compose_down(directory)
        hand, ours = statistics.median(manual), statistics.median(installer)
        ratio = ours / hand
        print(f"deploy on the fixture, {args.runs} run(s), medians")
        print(f"  by hand (up -d + health wait):   {hand:.2f} s   "
              f"({', '.join(f'{t:.2f}' for t in manual)})")
        print(f"  carto-installer deploy --yes:    {ours:.2f} s   "
              f"({', '.join(f'{t:.2f}' for t in installer)})")
        print(f"  overhead:                        {ours - hand:+.2f} s")
        print(f"  ratio:                           {ratio:.2f}x (goal <= {GOAL:.2f}x: "
              f"{'met' if ratio <= GOAL else 'missed'})")
        names = list(dict.fromkeys(name for steps in all_steps for name in steps))
        print("  where the installer's time went (median s):")
        for name in names:
            values = [steps[name] for steps in all_steps if name in steps]
            print(f"    {name:<14} {statistics.median(values):.2f}")
        return 1 if args.check and ratio > GOAL else 0
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
