"""How long a remote preflight takes over a slow link, and how many round trips it makes.

A real sshd (posing as Ubuntu 22.04, tests/services/sshd.py) sits behind a TCP relay that delays
every chunk by --delay seconds each way (DelayRelay), so one round trip costs 2 x delay. The
Docker engine behind the "remote" is this machine's real one. The answers name a package, a
deployment directory on the target, a domain and the egress hosts, so every check of the catalog
runs; egress is probed from the target (it resolves the vendor's host names to a loopback TLS
server through its own /etc/hosts), and no packet leaves this machine.

Measured, each on a fresh connection so no cache helps:
  - connect: TCP, key exchange, host key check, login;
  - every check alone (with the checks it needs), on an open connection;
  - the full preflight on an open connection, and with its connect.
Round trips are counted twice: by the relay (each time data flows back to the client after it
sent something: the waits a latency-bound protocol makes; concurrent requests share turns) and
by the SSH target (channels opened, commands started, SFTP requests, forwarded connections).

Goal (issue 5): full preflight <= slowest single check + 10 round trips.

    python benchmarks/bench_remote.py [--delay 0.05] [--user root|sudo] [--json FILE]

Needs root (it starts sshd and creates the test user) and the packages of scripts/test.sh.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from installer.answers import parse_answers  # noqa: E402
from installer.checks import egress  # noqa: E402
from installer.checks.base import CheckContext  # noqa: E402
from installer.checks.catalog import all_checks  # noqa: E402
from installer.checks.engine import run_checks, select  # noqa: E402
from installer.preflight import open_target  # noqa: E402
from installer.redact import Redactor  # noqa: E402
from tests.services.dockerd import compose_v2_plugin, ensure_docker_engine  # noqa: E402
from tests.services.sshd import DelayRelay, SSHServer  # noqa: E402
from tests.services.sshd_target_user import (  # noqa: E402
    make_target_credentials,
    start_target_server,
)
from tests.services.tls_ca import TestCA, tls_server  # noqa: E402
from tests.support.compose_deployment import make_deployment  # noqa: E402
from tests.support.package import make_package  # noqa: E402
from tests.support.ssh_target import SSH_USER, open_folder, use_hosts  # noqa: E402

DOMAIN = "carto.example.com"
EGRESS = ["auth.carto.com", "pubsub.googleapis.com", "www.googleapis.com",
          "storage.googleapis.com", "gcr.io", "cloudresourcemanager.googleapis.com"]
FAKE_MEMINFO = "MemTotal:       33000000 kB\nMemFree:        30000000 kB\n"


def workstation_resolver(name: str) -> list[str]:
    """The workstation resolves only the domain (net.dns); egress names resolve on the target."""
    if name == DOMAIN:
        return ["127.0.0.1"]
    raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")


def measure(answers: Any, relay: DelayRelay, egress_port: int, only: list[str],
            skip: list[str]) -> dict[str, Any]:
    """Connect, then run the checks (all, or `only` minus `skip`); times and round trips."""
    redactor = Redactor()
    trips0 = relay.round_trips
    started = time.monotonic()
    with open_target(answers, redactor=redactor) as target:
        connected = time.monotonic()
        trips1 = relay.round_trips
        # What run_preflight does, plus the loopback port for the egress probes.
        ctx = CheckContext(target=target, platform="compose", answers=answers,
                           redactor=redactor, resolver=workstation_resolver)
        ctx.cache[egress.EGRESS_PORT_KEY] = egress_port
        results = run_checks(ctx, select(all_checks(), "compose", only), skip=skip)
        finished = time.monotonic()
        trips2 = relay.round_trips
        stats = target.stats.as_dict()  # type: ignore[attr-defined]
    return {
        "connect_s": connected - started,
        "connect_round_trips": trips1 - trips0,
        "checks_s": finished - connected,
        "checks_round_trips": trips2 - trips1,
        "ssh": stats,
        "results": {r.id: (str(r.status), round(r.duration_s, 3)) for r in results},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--delay", type=float, default=0.05, help="one-way delay (s)")
    parser.add_argument("--user", choices=["root", "sudo"], default="sudo",
                        help="log in as root, or as a user who needs sudo (with a password)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="carto-bench-"))
    remote = open_folder("carto-bench-remote-", 0o755)
    engine = ensure_docker_engine()
    compose_v2_plugin()
    credentials = make_target_credentials(work)
    server: SSHServer = start_target_server(credentials, meminfo=FAKE_MEMINFO)
    use_hosts(server, {name: "127.0.0.1" for name in EGRESS})
    ca = TestCA(work / "ca")
    issued = ca.issue(EGRESS)
    rtt = 2 * args.delay
    try:
        with DelayRelay((server.host, server.port), one_way_delay=args.delay) as relay, \
                tls_server(issued.fullchain, issued.key) as https:
            known = work / "known_hosts"
            known.write_text(f"[{relay.host}]:{relay.port} {server.host_public_key}\n")
            target: dict[str, Any] = {
                "host": relay.host, "port": relay.port,
                "identity_file": str(credentials.ed25519_key), "known_hosts": str(known),
            }
            env = {"BENCH_PG_ADMIN": "admin-password", "BENCH_PG_USER": "user-password"}
            if args.user == "root":
                target["user"] = "root"
            else:
                target.update(user=SSH_USER, sudo=True,
                              password_env="BENCH_SSH_PASSWORD")  # noqa: S106 (a variable name)
                env["BENCH_SSH_PASSWORD"] = credentials.password
            answers = parse_answers({
                "version": 1, "platform": "compose", "target": target,
                "package": str(make_package(work / "pkg").path),
                "compose": {"directory": str(make_deployment(remote / "carto"))},
                "domain": DOMAIN,
                "database": {"bundled": True, "admin_password_env": "BENCH_PG_ADMIN",
                             "password_env": "BENCH_PG_USER"},
                "network": {"proxy": {"ca_file": str(ca.ca_file)}, "egress_timeout": 5},
            }, env=env)

            def measure_one(only: list[str], skip: list[str]) -> dict[str, Any]:
                return measure(answers, relay, https.port, only, skip)

            singles: dict[str, dict[str, Any]] = {}
            for check in all_checks():
                if "compose" not in check.platforms:
                    continue
                if check.id == egress.EGRESS_FAMILY_ID:
                    for host in EGRESS:  # one member alone: the others skipped
                        others = [f"egress.{h}" for h in EGRESS if h != host]
                        singles[f"egress.{host}"] = measure_one([check.id], others)
                else:
                    singles[check.id] = measure_one([check.id], [])
            full = measure_one([], [])
    finally:
        server.stop()
        shutil.rmtree(server.directory, ignore_errors=True)
        engine.stop()
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(remote, ignore_errors=True)

    slowest_id = max(singles, key=lambda k: singles[k]["checks_s"])
    slowest = singles[slowest_id]["checks_s"]
    budget = slowest + 10 * rtt
    print(f"one-way delay {args.delay * 1000:.0f} ms (round trip {rtt * 1000:.0f} ms), "
          f"login as {'root' if args.user == 'root' else SSH_USER + ' with sudo'}")
    print(f"{'check (alone, on an open connection)':40} {'time':>7} {'trips':>6} "
          f"{'chan':>5} {'cmds':>5} {'sftp':>5} {'fwd':>4}  result")
    for check_id, m in singles.items():
        ssh = m["ssh"]
        status = m["results"].get(check_id, ("?",))[0]
        print(f"{check_id:40} {m['checks_s']:6.2f}s {m['checks_round_trips']:6d} "
              f"{ssh['channels']:5d} {ssh['commands']:5d} {ssh['sftp_requests']:5d} "
              f"{ssh['forwards']:4d}  {status}")
    ssh = full["ssh"]
    print(f"{'connect (TCP, kex, host key, login)':40} {full['connect_s']:6.2f}s "
          f"{full['connect_round_trips']:6d}")
    print(f"{'FULL preflight (open connection)':40} {full['checks_s']:6.2f}s "
          f"{full['checks_round_trips']:6d} {ssh['channels']:5d} {ssh['commands']:5d} "
          f"{ssh['sftp_requests']:5d} {ssh['forwards']:4d}")
    total = full["connect_s"] + full["checks_s"]
    print(f"{'FULL preflight with connect':40} {total:6.2f}s "
          f"{full['connect_round_trips'] + full['checks_round_trips']:6d}")
    verdict = "met" if full["checks_s"] <= budget else "NOT met"
    print(f"goal: full <= slowest single ({slowest_id}, {slowest:.2f}s) + 10 round trips "
          f"({10 * rtt:.2f}s) = {budget:.2f}s: {verdict} ({full['checks_s']:.2f}s)")
    statuses = ", ".join(f"{k}={v[0]}" for k, v in full["results"].items())
    print(f"results: {statuses}")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "delay_s": args.delay, "user": args.user, "singles": singles, "full": full,
            "slowest": slowest_id, "budget_s": budget, "goal_met": verdict == "met",
        }, indent=2))
    return 0 if verdict == "met" else 1


if __name__ == "__main__":
    raise SystemExit(main())
