"""The PostgreSQL client the database checks use: one read-only session (as the admin, or as
the CARTO user in its database), the facts gathered in it, and libpq's errors named by class
with the fix for each.

Connections use libpq keyword parameters (never a URL built from strings). The name is
resolved with the run's resolver and passed as `hostaddr`, while `host` stays the name, so
`sslmode=verify-full` still checks the certificate against the name. For a remote target the
connection starts on the target: a loopback relay here forwards libpq's bytes through
`Target.open_connection` (an SSH channel), so reachability is measured from the machine that
will run CARTO.
"""

from __future__ import annotations

import contextlib
import logging
import re
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from installer.validators import is_ip

if TYPE_CHECKING:
    import psycopg
    from psycopg.rows import TupleRow

    from installer.answers import DatabaseSettings
    from installer.checks.base import CheckContext

log = logging.getLogger("installer.checks.database")  # the name its log lines always had

CONNECT_TIMEOUT = 10  # seconds, libpq's connect_timeout (per address)
APPLICATION_NAME = "carto-installer preflight"


# --- failure classes -------------------------------------------------------------------------


@dataclass
class ConnectFailure(Exception):
    kind: str  # dns, refused, timeout, password, tls-required, tls-off, certificate, ...
    message: str
    remediation: str
    detail: str = ""

    def __str__(self) -> str:
        return self.message


_PREAMBLE = re.compile(
    r'(?:connection failed:\s*)?connection to server at "[^"]*"'
    r"(?: \([^)]*\))?, port \d+ failed:\s*"
)


def _libpq_reason(text: str) -> str:
    """The server's or libpq's own words, without the 'connection to server at ...' preamble
    (the last attempt's, when libpq tried several addresses)."""
    pieces = [p.strip() for p in _PREAMBLE.split(text) if p.strip()]
    reason = pieces[-1] if pieces else text
    reason = re.sub(r"^connection failed:\s*", "", reason)
    reason = re.sub(r"\bFATAL:\s+", "", reason)
    reason = reason.split("\n\t")[0]  # libpq's hint lines ("Is the server running ...")
    return " ".join(reason.split())


def classify_error(
    text: str, db: DatabaseSettings, *, user: str, dbname: str, sslmode: str, where: str
) -> ConnectFailure:
    """Name the failure class of a libpq connection error, with the fix for it."""
    lowered = text.lower()
    reason = _libpq_reason(text)
    at = f"{db.host}:{db.port}"
    if "does not match host name" in lowered:
        return ConnectFailure(
            "certificate",
            f"certificate rejected: the server's certificate does not name {db.host} ({reason})",
            f"connect with the name the certificate was issued for (database.host), or have "
            f"the certificate reissued with {db.host}; sslmode verify-ca skips the name check",
            reason,
        )
    if "root certificate file" in lowered and "does not exist" in lowered:
        return ConnectFailure(
            "certificate",
            f"certificate rejected: sslmode {sslmode} needs the CA that signed "
            "the server's certificate, and no database.ssl.ca_file is given",
            "set database.ssl.ca_file to your provider's CA bundle (e.g. the RDS global bundle "
            "or the Cloud SQL server CA), or use sslmode require (encrypted, not verified)",
            reason,
        )
    if "could not read root certificate" in lowered or "could not load" in lowered:
        return ConnectFailure(
            "certificate",
            f"the CA file {db.ssl.ca_file} cannot be used ({reason})",
            "point database.ssl.ca_file at a readable PEM file with the CA certificate",
            reason,
        )
    if "certificate verify failed" in lowered or "certificate" in lowered and "ssl" in lowered:
        return ConnectFailure(
            "certificate",
            f"certificate rejected: the server's certificate is not signed by the "
            f"CA in {db.ssl.ca_file or 'the default location'} ({reason})",
            "set database.ssl.ca_file to the CA that issued the server's certificate (ask your "
            "provider for its CA bundle)",
            reason,
        )
    if "server does not support ssl" in lowered:
        return ConnectFailure(
            "tls-off",
            f"the server at {at} has TLS turned off, but sslmode is {sslmode}",
            "enable ssl on the server (ssl = on in postgresql.conf), or set "
            "database.ssl.enabled: false if the network path is private",
            reason,
        )
    if "no pg_hba.conf entry" in lowered:
        if "no encryption" in lowered:
            return ConnectFailure(
                "tls-required",
                f"TLS required by the server: {at} refuses connections without encryption",
                "set database.ssl.enabled: true (mode require, or verify-full with "
                "database.ssl.ca_file)",
                reason,
            )
        return ConnectFailure(
            "hba",
            f"the server refuses this client: {reason}",
            f"add a pg_hba.conf line allowing user {user} to database {dbname} from {where} "
            "(host/hostssl ... scram-sha-256), then reload the server",
            reason,
        )
    if "password authentication failed" in lowered:
        return ConnectFailure(
            "password",
            f"bad password: the server refused the password for {user} (or that "
            "user does not exist)",
            f"check database.admin_user and the password in database.admin_password_env / "
            f"_file; test with `psql -h {db.host} -p {db.port} -U {user} -d {dbname}`",
            reason,
        )
    if "no password supplied" in lowered:
        return ConnectFailure(
            "password",
            f"bad password: the server asks for {user}'s password and the answers give none",
            "set database.admin_password_env (or admin_password_file)",
            reason,
        )
    if re.search(r'database ".*" does not exist', lowered):
        return ConnectFailure(
            "database-missing",
            f"database missing: {dbname} does not exist on {at}",
            "set database.admin_database to a database the admin can log in to (usually postgres)",
            reason,
        )
    if re.search(r'role ".*" does not exist', lowered):
        return ConnectFailure(
            "password",
            f"bad user: the role {user} does not exist on {at}",
            "check database.admin_user",
            reason,
        )
    if "connection refused" in lowered:
        return ConnectFailure(
            "refused",
            f"connection refused: nothing listens on {at} (as seen from {where})",
            f"check database.host and database.port, that PostgreSQL runs and listens on that "
            f"address (listen_addresses), and that no firewall rejects port {db.port}",
            reason,
        )
    if "timeout expired" in lowered or "timed out" in lowered:
        return ConnectFailure(
            "timeout",
            f"timeout: {at} did not answer within {CONNECT_TIMEOUT} s (as seen from {where})",
            f"a firewall or security group is probably dropping the traffic: allow TCP "
            f"{db.port} from {where} to {db.host}",
            reason,
        )
    if any(
        s in lowered
        for s in (
            "could not translate host name",
            "failed to resolve host",
            "name or service not known",
            "does not resolve",
        )
    ):
        return ConnectFailure(
            "dns",
            f"DNS: {db.host} does not resolve (from {where})",
            "check database.host for typos, and that the machine's DNS knows the name "
            "(private DNS zones must be reachable from it)",
            reason,
        )
    if "too many connections" in lowered or "remaining connection slots" in lowered:
        return ConnectFailure(
            "full",
            f"the server is out of connection slots ({reason})",
            "raise max_connections or close idle sessions; CARTO needs its own connections too",
            reason,
        )
    return ConnectFailure(
        "other",
        f"could not connect to {at}: {reason}",
        "check database.host, port, admin_user and the password; the server log says more",
        reason,
    )



# --- connecting ------------------------------------------------------------------------------


def sslmode_for(db: DatabaseSettings) -> str:
    """What CARTO will use: no TLS unless enabled, then the configured libpq mode."""
    return db.ssl.mode if db.ssl.enabled else "disable"


class _Relay:
    """127.0.0.1:<port> here, forwarded to host:port opened *from the target*."""

    def __init__(self, ctx: CheckContext, host: str, port: int, timeout: float) -> None:
        self.ctx, self.host, self.port, self.timeout = ctx, host, port, timeout
        self.error: BaseException | None = None
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.local_port = int(self.listener.getsockname()[1])
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._sockets: list[Any] = [self.listener]
        threading.Thread(target=self._accept, daemon=True, name="db-relay").start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = self.ctx.target.open_connection(self.host, self.port, self.timeout)
            except Exception as exc:  # reported through `error`, libpq sees a closed socket
                self.error = exc
                client.close()
                continue
            upstream.settimeout(None)
            self._sockets += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                t = threading.Thread(target=self._pump, args=(src, dst), daemon=True)
                t.start()
                self._threads.append(t)

    @staticmethod
    def _pump(src: Any, dst: Any) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self._stop.set()
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.close()


@contextlib.contextmanager
def admin_connection(
    ctx: CheckContext, *, sslmode: str | None = None, sslrootcert: str | None = None,
    as_carto_user: bool = False,
) -> Iterator[psycopg.Connection[TupleRow]]:
    """A read-only session as database.admin_user (or, `as_carto_user`, as database.user in
    its own database), or ConnectFailure naming the class."""
    import psycopg

    assert ctx.answers is not None
    db = ctx.answers.database
    assert db.host is not None
    mode = sslmode or sslmode_for(db)
    user, dbname = (db.user, db.database) if as_carto_user else (db.admin_user,
                                                                 db.admin_database)
    password = db.password if as_carto_user else db.admin_password
    where = "this machine" if ctx.target.is_local else f"the target {ctx.target.name}"
    if "," in db.host:
        raise ConnectFailure(
            "other",
            f"database.host {db.host!r} names several hosts",
            "give one host name or address in database.host",
        )
    params: dict[str, Any] = {
        "host": db.host,
        "port": db.port,
        "user": user,
        "dbname": dbname,
        "sslmode": mode,
        "connect_timeout": CONNECT_TIMEOUT,
        "application_name": APPLICATION_NAME,
    }
    if password is not None:
        params["password"] = password.value
    else:
        params["password"] = ""  # never fall back to a PGPASSWORD meant for something else
    root = sslrootcert if sslrootcert is not None else db.ssl.ca_file
    if root and mode != "disable":
        params["sslrootcert"] = root
    relay: _Relay | None = None
    if not ctx.target.is_local:
        relay = _Relay(ctx, db.host, db.port, CONNECT_TIMEOUT)
        params["hostaddr"], params["port"] = "127.0.0.1", relay.local_port
    elif not is_ip(db.host):
        try:
            addresses = ctx.resolver(db.host)
        except OSError as exc:
            raise classify_error(
                f"could not translate host name: {exc}",
                db,
                user=user,
                dbname=dbname,
                sslmode=mode,
                where=where,
            ) from None
        if not addresses:
            raise classify_error(
                "could not translate host name",
                db,
                user=user,
                dbname=dbname,
                sslmode=mode,
                where=where,
            )
        # One entry per address: libpq tries them in turn and checks the certificate
        # against `host` for each.
        params["host"] = ",".join([db.host] * len(addresses))
        params["hostaddr"] = ",".join(addresses)
        params["port"] = ",".join([str(db.port)] * len(addresses))
    try:
        try:
            conn = psycopg.connect(**params)
        except psycopg.Error as exc:
            text = str(exc)
            if relay is not None and relay.error is not None:
                text = f"{_describe(relay.error)} ({text})"
            raise classify_error(
                text, db, user=user, dbname=dbname, sslmode=mode, where=where
            ) from None
        try:
            # Every statement runs in a READ ONLY transaction that is rolled back on close:
            # a preflight changes nothing, even by mistake.
            conn.read_only = True
            yield conn
        finally:
            conn.close()
    finally:
        if relay is not None:
            relay.close()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "Connection refused"
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timeout expired"
    if isinstance(exc, socket.gaierror):
        return f"could not translate host name: {exc.strerror}"
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


# --- facts -----------------------------------------------------------------------------------


@dataclass
class DatabaseFacts:
    user: str
    version_num: int
    version: str
    superuser: bool
    createrole: bool
    createdb: bool
    memberships: list[str] = field(default_factory=list)
    tls: bool = False
    tls_version: str | None = None
    workspace_role_exists: bool = False
    workspace_db_owner: str | None = None  # None: the database does not exist
    # Logged in as the CARTO user: may it create schemas in its database and tables in
    # `public` (None: no schema public)?
    create_in_database: bool | None = None
    create_in_public: bool | None = None


_MEMBERSHIPS = """
WITH RECURSIVE granted(oid) AS (
    SELECT oid FROM pg_roles WHERE rolname = current_user
    UNION
    SELECT m.roleid FROM pg_auth_members m JOIN granted g ON m.member = g.oid
)
SELECT r.rolname FROM pg_roles r JOIN granted g ON r.oid = g.oid
WHERE r.rolname <> current_user ORDER BY r.rolname
"""


def gather_facts(conn: psycopg.Connection[TupleRow], db: DatabaseSettings) -> DatabaseFacts:
    row = conn.execute(
        "SELECT current_user, current_setting('server_version_num')::int, "
        "current_setting('server_version'), r.rolsuper, r.rolcreaterole, r.rolcreatedb "
        "FROM pg_roles r WHERE r.rolname = current_user"
    ).fetchone()
    assert row is not None
    facts = DatabaseFacts(
        str(row[0]), int(row[1]), str(row[2]), bool(row[3]), bool(row[4]), bool(row[5])
    )
    facts.memberships = [str(r[0]) for r in conn.execute(_MEMBERSHIPS).fetchall()]
    facts.workspace_role_exists = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = %s)", (db.user,)
    ).fetchone() == (True,)
    owner = conn.execute(
        "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s", (db.database,)
    ).fetchone()
    facts.workspace_db_owner = str(owner[0]) if owner else None
    if facts.user == db.user:
        row = conn.execute(
            "SELECT has_database_privilege(current_database(), 'CREATE'), "
            "(SELECT has_schema_privilege(n.oid, 'CREATE') FROM pg_namespace n "
            "WHERE n.nspname = 'public')"
        ).fetchone()
        assert row is not None
        facts.create_in_database = bool(row[0])
        facts.create_in_public = None if row[1] is None else bool(row[1])
    facts.tls = bool(conn.pgconn.ssl_in_use)
    if facts.tls:
        # Last, in a savepoint: pg_stat_ssl may be hidden on managed servers.
        with contextlib.suppress(Exception), conn.transaction():
            tls_row = conn.execute(
                "SELECT version FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
            ).fetchone()
            facts.tls_version = str(tls_row[0]) if tls_row and tls_row[0] else None
    return facts


def quote_ident(name: str) -> str:
    """A role or database name as SQL, quoted when it would not survive unquoted."""
    if re.fullmatch(r"[a-z_][a-z0-9_$]*", name):
        return name
    return '"' + name.replace('"', '""') + '"'
