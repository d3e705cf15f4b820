#!/usr/bin/env python3
"""Egress probes run concurrently: twenty hosts, ten of them silent, cost about one timeout.

    python benchmarks/bench_egress.py [--timeout SECONDS] [--runs N]

Runs the real egress check family through the real check engine (installer/checks/engine.py,
32 workers) against servers on loopback: 10 host names reach a TLS server (certificate from a
throwaway test CA), 10 reach a listener that accepts TCP and never says a word, so their
probes wait until the per-host timeout. Names resolve to 127.0.0.1 through an injected
resolver: nothing leaves this machine.

Figures, all measured in this run:
  wall / per-host timeout   goal <= 1.3x (all hosts probed at once, not one after another)
  sum of check times / wall how many probes overlapped (~10x: the silent ones all at once)
  20 answering hosts: wall / per-host timeout, the engine's own overhead
Needs the test extras (it borrows the test CA and loopback servers from tests/services).
"""

from __future__ import annotations

import argparse
import dataclasses
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from installer.answers import Answers, NetworkSettings, ProxySettings  # noqa: E402
from installer.checks import egress  # noqa: E402
from installer.checks.base import CheckContext, CheckResult, Status  # noqa: E402
from installer.checks.engine import run_checks  # noqa: E402
from installer.egress.hosts import EgressHost  # noqa: E402
from installer.target import LocalTarget  # noqa: E402
from tests.services.tls_ca import TestCA, silent_server, tls_server  # noqa: E402

HOSTS = 20
SILENT = 10


def family(names: list[str]):  # type: ignore[no-untyped-def]
    """The catalog's egress check, expanded to `names` instead of the answers' host list."""
    family_check = next(c for c in egress.CHECKS if c.id == egress.EGRESS_FAMILY_ID)
    members = [(f"egress.{n}", f"HTTPS to {n}", EgressHost(n, True, ("benchmark",))) for n in names]
    return dataclasses.replace(family_check, expand=lambda ctx: members)


def run_once(
    names: list[str], ports: dict[str, int], ca_file: Path, timeout: float
) -> tuple[float, list[CheckResult]]:
    answers = Answers(
        domain="carto.example.com",
        network=NetworkSettings(proxy=ProxySettings(ca_file=str(ca_file)), egress_timeout=timeout),
    )

    def resolve(name: str) -> list[str]:
        if name in ports:
            return ["127.0.0.1"]
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    ctx = CheckContext(target=LocalTarget(), answers=answers, resolver=resolve)
    ctx.cache[egress.EGRESS_PORT_KEY] = ports
    start = time.perf_counter()
    results = run_checks(ctx, [family(names)])
    return time.perf_counter() - start, results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--timeout",
        type=float,
        default=2.0,
        help="per-host probe timeout, network.egress_timeout (default 2 s)",
    )
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    names = [f"svc-{i:02d}.egress-bench.test" for i in range(HOSTS)]
    with tempfile.TemporaryDirectory(prefix="bench-egress-") as tmp:
        ca = TestCA(Path(tmp))
        issued = ca.issue(names, key_type="ec256")
        with tls_server(issued.fullchain, issued.key) as answering, silent_server() as silent:
            mixed = {n: (silent.port if i % 2 else answering.port) for i, n in enumerate(names)}
            all_answer = {n: answering.port for n in names}
            run_once(names, all_answer, ca.ca_file, args.timeout)  # warm up imports, CA store

            ratios, overlaps, walls = [], [], []
            for _ in range(args.runs):
                wall, results = run_once(names, mixed, ca.ca_file, args.timeout)
                statuses = [r.status for r in results]
                if (
                    statuses.count(Status.PASS) != HOSTS - SILENT
                    or statuses.count(Status.FAIL) != SILENT
                ):
                    print(f"unexpected verdicts: {[(r.id, r.status, r.message) for r in results]}")
                    return 1
                walls.append(wall)
                ratios.append(wall / args.timeout)
                overlaps.append(sum(r.duration_s for r in results) / wall)
            quick = [
                run_once(names, all_answer, ca.ca_file, args.timeout)[0] for _ in range(args.runs)
            ]

    goal = max(ratios) <= 1.3
    print(
        f"egress: {HOSTS} hosts, {SILENT} never answer, per-host timeout {args.timeout:g} s, "
        f"{args.runs} runs"
    )
    print(
        f"  wall time:                  median {statistics.median(walls):.3f} s "
        f"(max {max(walls):.3f} s)"
    )
    print(
        f"  wall / per-host timeout:    median {statistics.median(ratios):.2f}x "
        f"(max {max(ratios):.2f}x; goal <= 1.3x) {'OK' if goal else 'MISSED'}"
    )
    print(
        f"  sum of check times / wall:  median {statistics.median(overlaps):.1f}x "
        f"(~{SILENT}x when the {SILENT} silent probes wait at the same time; 1x if in turn)"
    )
    print(
        f"  {HOSTS} answering hosts:         median {statistics.median(quick) * 1000:.0f} ms "
        f"= {statistics.median(quick) / args.timeout:.2f}x the timeout"
    )
    return 0 if goal else 1


if __name__ == "__main__":
    sys.exit(main())
