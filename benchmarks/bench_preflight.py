#!/usr/bin/env python3
"""Preflight concurrency and start-up time, measured in one run.

    python benchmarks/bench_preflight.py [--runs N]

1. A full local preflight: its wall time against the time of its slowest single check
   (goal: at most 1.25x; checks run concurrently, so the slowest one should dominate).
2. `carto-installer --version` start-up time (goal: under 0.3 s), next to the bare
   interpreter's start-up as the floor.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(REPO)
    return e


def timed(argv: list[str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, env=env(), check=False)
    return time.perf_counter() - start, proc


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    ratios, walls, slowest_ids = [], [], []
    for _ in range(args.runs):
        _, proc = timed([sys.executable, "-m", "installer", "preflight", "--format", "json"])
        report = json.loads(proc.stdout)
        slowest = max(report["checks"], key=lambda c: c["duration_s"])
        walls.append(report["duration_s"])
        ratios.append(report["duration_s"] / max(slowest["duration_s"], 1e-3))
        slowest_ids.append(f"{slowest['id']} {slowest['duration_s']:.3f}s")
    print(f"preflight ({len(report['checks'])} checks), {args.runs} runs")
    print(f"  wall time (engine):      median {statistics.median(walls):.3f} s")
    print(f"  slowest single check:    {', '.join(slowest_ids)}")
    print(f"  wall / slowest check:    median {statistics.median(ratios):.2f}x "
          f"(max {max(ratios):.2f}x; goal <= 1.25x)")

    floor = [timed([sys.executable, "-c", "pass"])[0] for _ in range(10)]
    version = [timed([sys.executable, "-m", "installer", "--version"])[0] for _ in range(10)]
    helptext = [timed([sys.executable, "-m", "installer", "--help"])[0] for _ in range(10)]
    print("start-up, 10 runs each (median)")
    print(f"  python -c pass (floor):  {statistics.median(floor):.3f} s")
    print(f"  carto-installer --version: {statistics.median(version):.3f} s "
          f"({statistics.median(version) / statistics.median(floor):.1f}x the floor; goal < 0.3 s)")
    print(f"  carto-installer --help:  {statistics.median(helptext):.3f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
