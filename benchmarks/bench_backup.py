#!/usr/bin/env python3
"""`backup` of a database of a few hundred MB against a bare `pg_dump | gzip`, in one run.

    python benchmarks/bench_backup.py [--mb 300]

Starts a throwaway PostgreSQL 15 (tests/services/postgres.py), fills one database with about
--mb MB of table data, then times on the same machine:

1. the floor: `pg_dump -d DB | gzip -6 > file` (plain SQL, one compression pass);
2. the installer's backup of the same database (pg_dump custom format, the tar.gz archive
   with the manifest of SHA-256 sums, the backup record), without and with encryption.

Prints the times, the archive sizes and the ratios to the floor. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from installer.answers import parse_answers  # noqa: E402
from installer.operate.backup import backup  # noqa: E402
from installer.operate.installation import Installation  # noqa: E402
from installer.redact import Redactor  # noqa: E402
from installer.target import LocalTarget  # noqa: E402
from tests.services.postgres import run_postgres  # noqa: E402
from tests.services.tls_ca import TestCA  # noqa: E402
from tests.support.compose_deployment import make_deployment  # noqa: E402

DATABASE = "bench_workspace"


def fill(server: object, megabytes: int) -> int:
    """Rows of mixed text, json and numbers until the table holds about `megabytes` MB."""
    import psycopg

    rows = megabytes * 1024 * 1024 // 230
    with psycopg.connect(**server.dsn_kwargs(dbname=DATABASE),  # type: ignore[attr-defined]
                         autocommit=True) as conn:
        conn.execute("CREATE TABLE maps (id bigint PRIMARY KEY, title text, body text, "
                     "settings jsonb, created timestamptz DEFAULT now())")
        conn.execute(
            "INSERT INTO maps (id, title, body, settings) SELECT g, 'map ' || g, "
            "md5(g::text) || md5((g * 7)::text) || repeat(chr(97 + g %% 26), 40), "
            "jsonb_build_object('zoom', g %% 20, 'lat', (g %% 180) - 90.5, 'owner', "
            "'user' || (g %% 5000) || '@example.com') FROM generate_series(1, %s) g",
            (rows,))
        size = conn.execute("SELECT pg_database_size(%s)", (DATABASE,)).fetchone()
        return int(size[0]) if size else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=300, help="table data to dump, in MB")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-backup-") as work:
        root = Path(work)
        ca = TestCA(root / "ca")
        with run_postgres(ca) as server:
            server.execute(f"CREATE DATABASE {DATABASE}")
            started = time.monotonic()
            size = fill(server, args.mb)
            print(f"database {DATABASE}: {size / 1e6:.0f} MB on disk "
                  f"(filled in {time.monotonic() - started:.0f} s)")
            env = {**os.environ, "PGPASSWORD": server.password, "PGSSLMODE": "verify-full",
                   "PGSSLROOTCERT": str(server.ca_file)}
            floor_file = root / "floor.sql.gz"
            started = time.monotonic()
            with floor_file.open("wb") as out:
                dump = subprocess.Popen(["pg_dump", "-h", server.host, "-p", str(server.port),
                                         "-U", server.superuser, "-d", DATABASE],
                                        stdout=subprocess.PIPE, env=env)
                gzip = subprocess.run(["gzip", "-6"], stdin=dump.stdout, stdout=out,
                                      check=True)
                assert dump.stdout is not None
                dump.stdout.close()
                if dump.wait() != 0 or gzip.returncode != 0:
                    raise SystemExit("pg_dump | gzip failed")
            floor = time.monotonic() - started
            print(f"pg_dump | gzip -6:            {floor:6.1f} s  "
                  f"{floor_file.stat().st_size / 1e6:7.1f} MB")

            directory = make_deployment(root / "carto")
            (directory / "customer.env").write_text("SELFHOSTED_DOMAIN=bench.example.com\n")
            (directory / ".env").write_text("SELFHOSTED_DOMAIN=bench.example.com\n")
            data = {"version": 1, "platform": "compose", "domain": "bench.example.com",
                    "compose": {"directory": str(directory)},
                    "database": {"bundled": False, "host": server.host, "port": server.port,
                                 "admin_user": server.superuser,
                                 "admin_password": server.password, "database": DATABASE,
                                 "ssl": {"enabled": True, "mode": "verify-full",
                                         "ca_file": str(server.ca_file)}}}
            for label, passphrase in (("backup", None), ("backup, encrypted", "bench pass")):
                redactor = Redactor()
                inst = Installation(parse_answers(data, redactor=redactor), LocalTarget(),
                                    redactor)
                output = root / f"backup-{bool(passphrase)}.tar"
                started = time.monotonic()
                backup(inst, str(output), passphrase=passphrase)
                took = time.monotonic() - started
                print(f"carto-installer {label + ':':18} {took:6.1f} s  "
                      f"{output.stat().st_size / 1e6:7.1f} MB   ratio {took / floor:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
