"""Throwaway PostgreSQL 15 clusters on loopback, with TLS from the test CA.

The database checks (connect, version, privileges, TLS) must meet a real server: real
scram-sha-256 authentication, real pg_hba rejections, a real certificate to verify.
"""

from __future__ import annotations

import contextlib
import pwd
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, LiteralString

import psycopg
import pytest
from psycopg import sql

from tests.services.tls_ca import LOOPBACK, TestCA, free_loopback_port, wait_until

PG_BIN = Path("/usr/lib/postgresql/15/bin")
PG_OS_USER = "postgres"
SUPERUSER = "postgres"
START_TIMEOUT = 30.0


@dataclass
class PostgresServer:
    host: str
    port: int
    superuser: str
    password: str
    ca_file: Path  # the test CA's root: verify-full with it must succeed
    data_dir: Path
    socket_dir: Path
    require_tls: bool  # pg_hba has only hostssl lines: plain TCP logins are refused

    def dsn_kwargs(self, **overrides: Any) -> dict[str, Any]:
        """Keyword arguments for `psycopg.connect` as the superuser with verify-full TLS.

        Override any of them, e.g. `user=`, `password=`, `dbname=`, `sslmode="disable"`.
        """
        kwargs: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "user": self.superuser,
            "password": self.password,
            "dbname": "postgres",
            "sslmode": "verify-full",
            "sslrootcert": str(self.ca_file),
            "connect_timeout": 5,
        }
        kwargs.update(overrides)
        return kwargs

    def execute(
        self, query: LiteralString | sql.SQL | sql.Composed, params: Any = None
    ) -> list[tuple[Any, ...]]:
        """Run one statement as the superuser (autocommit, so CREATE DATABASE works); its rows."""
        with psycopg.connect(**self.dsn_kwargs(), autocommit=True) as conn:
            cursor = conn.execute(query, params)
            return cursor.fetchall() if cursor.description else []

    def create_role(
        self,
        name: str,
        password: str,
        *,
        superuser: bool = False,
        createrole: bool = False,
        createdb: bool = False,
    ) -> None:
        """Create a login role, or reset an existing one to exactly these attributes.

        Idempotent because the server is shared by the whole session.
        """
        exists = self.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,))
        attributes = sql.SQL(" ").join(
            sql.SQL(a)
            for a in (
                "LOGIN",
                "SUPERUSER" if superuser else "NOSUPERUSER",
                "CREATEROLE" if createrole else "NOCREATEROLE",
                "CREATEDB" if createdb else "NOCREATEDB",
            )
        )
        verb = sql.SQL("ALTER ROLE" if exists else "CREATE ROLE")
        self.execute(
            sql.SQL("{} {} WITH {} PASSWORD {}").format(
                verb, sql.Identifier(name), attributes, sql.Literal(password)
            )
        )


def _run_as_postgres(*command: str) -> subprocess.CompletedProcess[str]:
    # The server refuses to run as root, and initdb/pg_ctl must own what they create.
    return subprocess.run(
        ["runuser", "-u", PG_OS_USER, "--", *command],
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT + 10,
    )


def _check_prerequisites() -> None:
    if not (PG_BIN / "initdb").is_file():
        raise RuntimeError(
            f"PostgreSQL 15 server binaries are missing from {PG_BIN}: "
            "apt-get install -y postgresql-15"
        )
    try:
        pwd.getpwnam(PG_OS_USER)
    except KeyError:
        raise RuntimeError(
            f"the {PG_OS_USER!r} OS user is missing: apt-get install -y postgresql-15 "
            "(its postinst creates it)"
        ) from None


def _chown_to_postgres(path: Path) -> None:
    shutil.chown(path, user=PG_OS_USER, group=PG_OS_USER)


def _hba_lines(require_tls: bool) -> str:
    lines = [
        "# written by tests/services/postgres.py",
        # Only root and postgres can reach the socket in the temp dir.
        "local all all trust",
        "hostssl all all 127.0.0.1/32 scram-sha-256",
    ]
    if not require_tls:
        lines.append("host all all 127.0.0.1/32 scram-sha-256")
    return "\n".join(lines) + "\n"


def _server_settings(port: int, socket_dir: Path) -> str:
    return (
        "\n".join(
            [
                "# written by tests/services/postgres.py",
                f"listen_addresses = '{LOOPBACK}'",
                f"port = {port}",
                f"unix_socket_directories = '{socket_dir}'",
                "ssl = on",
                "ssl_cert_file = 'server.crt'",
                "ssl_key_file = 'server.key'",
                "password_encryption = 'scram-sha-256'",
                # Durability is worthless for a throwaway cluster; speed on 2 cores is not.
                "fsync = off",
                "synchronous_commit = off",
                "full_page_writes = off",
            ]
        )
        + "\n"
    )


@contextlib.contextmanager
def run_postgres(ca: TestCA, *, require_tls: bool = False) -> Iterator[PostgresServer]:
    """Start a fresh cluster in a temp dir; stop it (immediate) and delete it afterwards."""
    _check_prerequisites()
    root = Path(tempfile.mkdtemp(prefix="carto-pg-"))
    _chown_to_postgres(root)
    data_dir, log_file = root / "data", root / "server.log"
    server = PostgresServer(
        host=LOOPBACK,
        port=free_loopback_port(),
        superuser=SUPERUSER,
        password=secrets.token_urlsafe(16),
        ca_file=ca.ca_file,
        data_dir=data_dir,
        socket_dir=root,
        require_tls=require_tls,
    )
    started = False
    try:
        password_file = root / "superuser.password"
        password_file.write_text(server.password)
        _chown_to_postgres(password_file)
        initdb = _run_as_postgres(
            str(PG_BIN / "initdb"),
            "-D",
            str(data_dir),
            "-U",
            SUPERUSER,
            f"--pwfile={password_file}",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "--encoding=UTF8",
            "--no-locale",
            "--no-sync",
            "--no-instructions",
        )
        if initdb.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{initdb.stdout}{initdb.stderr}")
        password_file.unlink()

        issued = ca.issue(["localhost", LOOPBACK])
        (data_dir / "server.crt").write_bytes(issued.fullchain)
        key_file = data_dir / "server.key"
        key_file.touch(mode=0o600)  # PostgreSQL refuses a group/world-readable key
        key_file.write_bytes(issued.key)
        for path in (data_dir / "server.crt", key_file):
            _chown_to_postgres(path)
        (data_dir / "pg_hba.conf").write_text(_hba_lines(require_tls))
        with (data_dir / "postgresql.conf").open("a") as conf:
            conf.write(_server_settings(server.port, root))

        start = _run_as_postgres(
            str(PG_BIN / "pg_ctl"),
            "start",
            "-D",
            str(data_dir),
            "-l",
            str(log_file),
            "-w",
            "-t",
            str(int(START_TIMEOUT)),
        )
        started = True  # even a failed start may have left a postmaster to stop
        if start.returncode != 0:
            raise RuntimeError(
                f"PostgreSQL did not start (pg_ctl: {start.stdout.strip()})\n{_tail(log_file)}"
            )
        _wait_for_tls_login(server, log_file)
        yield server
    finally:
        if started:
            _run_as_postgres(
                str(PG_BIN / "pg_ctl"),
                "stop",
                "-D",
                str(data_dir),
                "-m",
                "immediate",
                "-w",
            )
        shutil.rmtree(root, ignore_errors=True)


def _wait_for_tls_login(server: PostgresServer, log_file: Path) -> None:
    """pg_ctl -w saw the postmaster up; prove a verified TLS login over TCP works too."""

    def ready() -> bool:
        try:
            server.execute("SELECT 1")
            return True
        except psycopg.OperationalError:
            return False

    wait_until(
        ready,
        timeout=10,
        what=f"PostgreSQL on {server.host}:{server.port}",
        details=lambda: _tail(log_file),
    )


def _tail(path: Path, lines: int = 15) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


@pytest.fixture(scope="session")
def postgres_server(test_ca: TestCA) -> Iterator[PostgresServer]:
    """PostgreSQL 15 accepting password logins with or without TLS (hostssl and host lines)."""
    with run_postgres(test_ca) as server:
        yield server


@pytest.fixture(scope="session")
def postgres_tls_required(test_ca: TestCA) -> Iterator[PostgresServer]:
    """PostgreSQL 15 that refuses logins without TLS (hostssl lines only)."""
    with run_postgres(test_ca, require_tls=True) as server:
        yield server
