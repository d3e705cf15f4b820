"""db.*: the external PostgreSQL that holds CARTO's metadata.

One read-only session as the admin user gathers every fact (version, role attributes and
memberships, whether the CARTO user and database exist); the other checks judge those facts,
so the server sees one login. Nothing is created or changed: the session is read-only and
runs SELECTs on the catalogs only.

The PostgreSQL client (connections, libpq's errors by class, the facts) is installer.postgres;
this module decides which login to use and judges what it finds.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import TYPE_CHECKING, Any

from installer.checks.base import (
    Check,
    CheckContext,
    Outcome,
    Status,
    failed,
    passed,
    skipped,
    warned,
)
from installer.postgres import (  # the client moved there; re-imported for the checks
    CONNECT_TIMEOUT,
    ConnectFailure,
    DatabaseFacts,
    admin_connection,
    gather_facts,
    quote_ident,
    sslmode_for,
)

if TYPE_CHECKING:
    from installer.answers import DatabaseSettings

log = logging.getLogger("installer.checks.database")

MIN_RECOMMENDED = 14
MIN_SUPPORTED = 11
# Admin roles of managed PostgreSQL services: membership is how their admins are recognised.
MANAGED_ADMIN_ROLES = {
    "rds_superuser": "Amazon RDS / Aurora admin role",
    "cloudsqlsuperuser": "Google Cloud SQL admin role",
    "alloydbsuperuser": "Google AlloyDB admin role",
    "azure_pg_admin": "Azure Database for PostgreSQL admin role",
}


def carto_user_login(ctx: CheckContext) -> str | None:
    """The reason to log in as the CARTO user instead of the admin, or None.

    On Kubernetes the chart decides: when its rendered workloads read no admin credentials
    (recent charts give the migrations the admin password only for the bundled database),
    nothing will create the CARTO user or database, and what matters is that the CARTO user
    can log in to its database and create objects there. Compose keeps the admin login: the
    vendor's init runs CREATE USER / CREATE DATABASE as the admin."""
    if ctx.platform != "kubernetes" or ctx.answers is None or ctx.answers.database.bundled:
        return None
    from installer.checks.k8s import chart_facts_for
    from installer.errors import InstallerError

    try:
        facts = chart_facts_for(ctx)
    except InstallerError as exc:
        log.info("db: the chart could not be rendered (%s): checking as the admin", exc.message)
        return None
    if facts.admin_credentials_used:
        return None
    return f"the {facts.label} gives no workload the database admin's credentials"




def _is_loopback_host(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# --- checks ----------------------------------------------------------------------------------


def _applies(ctx: CheckContext) -> str | None:
    if ctx.answers is None:
        return "no answers file: give one with --answers to check the database"
    db = ctx.answers.database
    if db.bundled:
        return "the bundled PostgreSQL container is chosen (see db.bundled)"
    if not db.host:
        return "database.host is not set"
    return None


def _bundled_applies(ctx: CheckContext) -> str | None:
    if ctx.answers is None:
        return "no answers file: give one with --answers to check the database"
    if not ctx.answers.database.bundled:
        return "an external PostgreSQL is configured (database.bundled: false)"
    return None


def check_bundled(ctx: CheckContext) -> Outcome:
    return warned(
        "the bundled PostgreSQL container is for debugging only, and the vendor will remove it",
        observed="database.bundled: true",
        remediation="for a real installation use an external PostgreSQL 14 or newer (a managed "
        "service such as Amazon RDS, Cloud SQL or Azure Database), then set database.bundled: "
        "false and database.host, admin_user and admin_password_env",
    )


def create_statements(db: DatabaseSettings) -> str:
    return (f"CREATE ROLE {quote_ident(db.user)} LOGIN PASSWORD '<the password in "
            f"database.password_env>'; CREATE DATABASE {quote_ident(db.database)} OWNER "
            f"{quote_ident(db.user)};")


def check_connect(ctx: CheckContext) -> Outcome:
    assert ctx.answers is not None
    db = ctx.answers.database
    mode = sslmode_for(db)
    carto_login = carto_user_login(ctx)
    login = db.user if carto_login else db.admin_user
    try:
        with admin_connection(ctx, as_carto_user=bool(carto_login)) as conn:
            facts = gather_facts(conn, db)
    except ConnectFailure as exc:
        outcome = failed(
            exc.message,
            observed=f"{db.host}:{db.port} as {login}, sslmode "
            f"{mode}: {exc.detail or exc.kind}",
            remediation=exc.remediation,
            kind=exc.kind,
        )
        if carto_login:
            outcome.required = f"reachable as the CARTO user {db.user} ({carto_login})"
            if exc.kind in ("password", "database-missing"):
                outcome.message += (f": nothing creates the user {db.user} or the database "
                                    f"{db.database} ({carto_login})")
                outcome.remediation = (
                    f"create both as an admin of the server: {create_statements(db)} Or "
                    "check database.user, database.database and database.password_env")
        return outcome
    tls = f"TLS {facts.tls_version or 'on'}" if facts.tls else "no TLS"
    observed = (
        f"connected to {db.host}:{db.port} as {facts.user}, {tls}, sslmode {mode}, "
        f"PostgreSQL {facts.version}"
    )
    data: dict[str, Any] = {"facts": facts, "carto_login": carto_login}
    required = (f"reachable as the CARTO user {db.user} ({carto_login})" if carto_login
                else None)
    if not facts.tls and not _is_loopback_host(db.host or ""):
        outcome = warned(
            f"connected to {db.host}:{db.port} without TLS: passwords and data cross the "
            "network in clear",
            observed=observed,
            remediation="set database.ssl.enabled: true with mode verify-full and "
            "database.ssl.ca_file (or require, if you have no CA file)",
            **data,
        )
    else:
        outcome = passed(
            f"connected to {db.host}:{db.port} as {facts.user} ({tls})", observed=observed,
            **data)
    outcome.required = required
    return outcome


def _facts(ctx: CheckContext) -> DatabaseFacts:
    facts = ctx.data("db.connect").get("facts")
    assert isinstance(facts, DatabaseFacts)
    return facts


def version_text(num: int) -> str:
    if num >= 100000:
        return f"{num // 10000}"
    return f"{num // 10000}.{num // 100 % 100}"


def judge_version(num: int) -> Outcome:
    """>= 14 pass, 11 to 13 warn, older fail (REQUIREMENTS.md, db.version)."""
    major = num // 10000
    text = version_text(num)
    observed = f"PostgreSQL {text} (server_version_num {num})"
    if major >= MIN_RECOMMENDED:
        return passed(f"PostgreSQL {text} is supported", observed=observed)
    if major >= MIN_SUPPORTED:
        return warned(
            f"PostgreSQL {text} works but is older than the recommended {MIN_RECOMMENDED}",
            observed=observed,
            remediation=f"plan an upgrade to PostgreSQL {MIN_RECOMMENDED} or newer (managed "
            "services offer an in-place major version upgrade)",
        )
    return failed(
        f"PostgreSQL {text} is too old: CARTO needs {MIN_SUPPORTED} at least, "
        f"{MIN_RECOMMENDED}+ recommended",
        observed=observed,
        remediation=f"upgrade the server to PostgreSQL {MIN_RECOMMENDED} or newer, or use a new "
        "server for CARTO",
    )


def check_version(ctx: CheckContext) -> Outcome:
    return judge_version(_facts(ctx).version_num)


def judge_privileges(facts: DatabaseFacts) -> Outcome:
    managed = [r for r in facts.memberships if r in MANAGED_ADMIN_ROLES]
    managed_text = ", ".join(f"{r} ({MANAGED_ADMIN_ROLES[r]})" for r in managed)
    yes = {True: "yes", False: "no"}
    observed = (
        f"role {facts.user}: superuser {yes[facts.superuser]}, CREATEROLE "
        f"{yes[facts.createrole]}, CREATEDB {yes[facts.createdb]}"
        + (f", member of {managed_text}" if managed else "")
    )
    if facts.superuser:
        return passed(f"{facts.user} is a superuser", observed=observed)
    missing = [
        name
        for name, has in (("CREATEROLE", facts.createrole), ("CREATEDB", facts.createdb))
        if not has
    ]
    if not missing:
        via = f" (as a member of {managed_text})" if managed else ""
        return passed(f"{facts.user} may create users and databases{via}", observed=observed)
    statement = f"ALTER ROLE {quote_ident(facts.user)} {' '.join(missing)};"
    who = (
        "your cloud's admin user (the RDS master user, Cloud SQL's postgres user, Azure's "
        "server admin)"
        if managed
        else "a superuser (e.g. `sudo -u postgres psql`)"
    )
    lacks = " and ".join(missing)
    return failed(
        f"{facts.user} lacks {lacks}: the installer must create CARTO's user "
        f"and database"
        + (f" (membership in {managed_text} alone does not grant it)" if managed else ""),
        observed=observed,
        remediation=f"run as {who}: {statement} Or set database.admin_user to a role that "
        "already has CREATEROLE and CREATEDB",
    )


def check_privileges(ctx: CheckContext) -> Outcome:
    carto_login = ctx.data("db.connect").get("carto_login")
    if carto_login:
        return skipped(f"{carto_login}: nothing creates users or databases, so no admin "
                       "privileges (CREATEROLE, CREATEDB) are needed; db.workspace checks "
                       "what the CARTO user may do")
    return judge_privileges(_facts(ctx))


def judge_carto_workspace(facts: DatabaseFacts, db: DatabaseSettings) -> Outcome:
    """Logged in as the CARTO user to its database (so both exist): may it create what the
    migrations create (schemas in the database, tables in public)?"""
    owner = facts.workspace_db_owner
    yes = {True: "yes", False: "no", None: "no schema public"}
    observed = (f"logged in as {facts.user} to {db.database} (owner {owner}); CREATE on the "
                f"database: {yes[facts.create_in_database]}, on schema public: "
                f"{yes[facts.create_in_public]}")
    if facts.superuser or (facts.create_in_database and facts.create_in_public):
        return passed(f"{facts.user} logs in to {db.database} and may create objects there",
                      observed=observed)
    grants = []
    if not facts.create_in_database:
        grants.append(f"GRANT CREATE ON DATABASE {quote_ident(db.database)} TO "
                      f"{quote_ident(db.user)};")
    if facts.create_in_public is not True:
        grants.append(("CREATE SCHEMA public; " if facts.create_in_public is None else "")
                      + f"GRANT CREATE ON SCHEMA public TO {quote_ident(db.user)};")
    return failed(
        f"{facts.user} logs in to {db.database} but may not create objects there: CARTO's "
        "migrations would fail",
        observed=observed,
        remediation=f"make {db.user} the database's owner (ALTER DATABASE "
        f"{quote_ident(db.database)} OWNER TO {quote_ident(db.user)};) or, as its owner, run: "
        + " ".join(grants),
    )


def _creator(ctx: CheckContext) -> str | None:
    """Who creates an absent CARTO user and database with the admin's credentials, or None
    when that cannot be known (a Kubernetes chart that could not be rendered)."""
    if ctx.platform != "kubernetes":
        return "the vendor's database init (as the admin)"
    from installer.checks.k8s import chart_facts_for
    from installer.errors import InstallerError

    try:
        facts = chart_facts_for(ctx)
    except InstallerError:
        return None
    readers = ", ".join(facts.admin_password_readers[:2]) or "its workloads"
    return f"the {facts.label} ({readers}, as the admin)"


def check_workspace(ctx: CheckContext) -> Outcome:
    assert ctx.answers is not None
    db = ctx.answers.database
    facts = _facts(ctx)
    if ctx.data("db.connect").get("carto_login"):
        return judge_carto_workspace(facts, db)
    user, name, owner = db.user, db.database, facts.workspace_db_owner
    role = "exists" if facts.workspace_role_exists else "absent"
    observed = f"user {user}: {role}; database {name}: " + (
        f"exists, owned by {owner}" if owner else "absent"
    )
    if owner is None:
        creator = _creator(ctx)
        if creator is None:
            return warned(
                f"user {user} or database {name} is absent, and whether the chart creates them "
                "is unknown: it could not be rendered to see if its workloads receive the "
                "admin credentials",
                observed=observed,
                remediation="make the chart readable (see license.version), or create them "
                f"yourself as the admin: {create_statements(db)}",
            )
        if facts.workspace_role_exists:
            return passed(
                f"database {name} will be created by {creator}; the user {user} already "
                "exists and will be used with the password in the answers",
                observed=observed,
            )
        return passed(
            f"user {user} and database {name} are absent: they will be created by {creator}",
            observed=observed,
        )
    if owner == user:
        return passed(
            f"database {name} exists and is owned by {user} (a re-run)", observed=observed
        )
    return warned(
        f"database {name} already exists but is owned by {owner}, not by {user}",
        observed=observed,
        remediation=f"if it is CARTO's from an earlier install, run as a superuser: ALTER "
        f"DATABASE {quote_ident(name)} OWNER TO {quote_ident(user)}; otherwise choose another "
        "name in database.database",
    )


def _tls_applies(ctx: CheckContext) -> str | None:
    reason = _applies(ctx)
    if reason:
        return reason
    assert ctx.answers is not None
    if not ctx.answers.database.ssl.enabled:
        return "database.ssl.enabled is false: no TLS to verify"
    return None


def stack_tls_note(ctx: CheckContext, verified: bool) -> str:
    """On Kubernetes, what CARTO's own services will do with database TLS, read from the
    rendered chart: the installer's verification is not theirs."""
    if ctx.platform != "kubernetes":
        return ""
    from installer.checks.k8s import chart_facts_for
    from installer.errors import InstallerError

    try:
        facts = chart_facts_for(ctx)
    except InstallerError:
        return ""
    modes = sorted(facts.database_ssl_modes)
    if not modes:
        return ""
    return (f"; CARTO's services themselves connect with sslmode {' or '.join(modes)} (set by "
            f"the {facts.label}, which knows no other mode): encrypted, but they do not check "
            + ("the certificate; this verification is the installer's own" if verified
               else "the certificate either"))


def check_tls(ctx: CheckContext) -> Outcome:
    outcome = verify_tls(ctx)
    if outcome.status in (Status.PASS, Status.WARN):
        outcome.message += stack_tls_note(ctx, verified=outcome.status == Status.PASS)
    return outcome


def verify_tls(ctx: CheckContext) -> Outcome:
    from installer.checks.tls import CertificateFileError, load_ca_certificates
    from installer.userfiles import CERTIFICATE_LIMIT, read_user_file

    assert ctx.answers is not None
    db = ctx.answers.database
    ca_file = db.ssl.ca_file
    if not ca_file:
        return warned(
            f"TLS is on (sslmode {db.ssl.mode}) without a CA file: the server's certificate is "
            "not verified, so an impostor could receive the password",
            observed=f"sslmode {db.ssl.mode}, no database.ssl.ca_file",
            remediation="download your provider's CA bundle (e.g. the RDS global bundle, the "
            "Cloud SQL server CA) and set database.ssl.ca_file to it, with mode verify-full",
        )
    try:
        load_ca_certificates(read_user_file(ca_file, limit=CERTIFICATE_LIMIT),
                             f"the CA file {ca_file}")
    except OSError as exc:
        return failed(
            f"the CA file {ca_file} cannot be read: {exc.strerror}",
            observed=f"{ca_file}: {exc.strerror}",
            remediation="point database.ssl.ca_file at a readable PEM file",
        )
    except CertificateFileError as exc:
        return failed(
            str(exc),
            observed=f"{ca_file}: not a CA certificate file",
            remediation="database.ssl.ca_file must hold the CA certificate(s) only, in PEM "
            "(or DER)",
        )
    try:
        with admin_connection(ctx, sslmode="verify-full", sslrootcert=ca_file,
                              as_carto_user=carto_user_login(ctx) is not None):
            pass
    except ConnectFailure as exc:
        if exc.kind == "certificate":
            name_only = "does not match host name" in exc.detail
            if name_only and db.ssl.mode != "verify-full":
                return warned(
                    f"the certificate is signed by the CA in {ca_file} but does not name "
                    f"{db.host}: sslmode {db.ssl.mode} works, verify-full would not",
                    observed=exc.detail,
                    remediation=f"reach the server by a name on its certificate, or have it "
                    f"reissued with {db.host}",
                )
            return failed(exc.message, observed=exc.detail, remediation=exc.remediation)
        if exc.kind == "tls-off":
            return failed(exc.message, observed=exc.detail, remediation=exc.remediation)
        if exc.kind in ("password", "database-missing", "hba", "full"):
            # The handshake (and so the verification) completed before the login failed.
            return passed(
                f"verify-full with {ca_file} succeeded (the login itself failed: see db.connect)",
                observed=f"certificate verified for {db.host}",
            )
        return skipped(
            f"the server could not be reached to verify its certificate "
            f"({exc.kind}; see db.connect)"
        )
    return passed(
        f"the server's certificate is verified (verify-full) with {ca_file}",
        observed=f"verify-full ok for {db.host} with {ca_file}",
    )


_BOTH = frozenset({"compose", "kubernetes"})

CHECKS = [
    Check(
        "db.bundled",
        "Bundled database",
        "an external PostgreSQL (the bundled one is for debugging only)",
        check_bundled,
        platforms=_BOTH,
        applies=_bundled_applies,
        timeout=5.0,
    ),
    Check(
        "db.connect",
        "Database connection",
        "reachable with the admin credentials",
        check_connect,
        platforms=_BOTH,
        applies=_applies,
        timeout=4.0 * CONNECT_TIMEOUT,
    ),
    Check(
        "db.version",
        "PostgreSQL version",
        "PostgreSQL 14 or above recommended",
        check_version,
        platforms=_BOTH,
        needs=("db.connect",),
        applies=_applies,
        timeout=5.0,
    ),
    Check(
        "db.privileges",
        "Database admin privileges",
        "admin may create users and databases",
        check_privileges,
        platforms=_BOTH,
        needs=("db.connect",),
        applies=_applies,
        timeout=5.0,
    ),
    Check(
        "db.workspace",
        "CARTO database and user",
        "the CARTO user and database absent, or owned by that user",
        check_workspace,
        platforms=_BOTH,
        needs=("db.connect",),
        applies=_applies,
        timeout=5.0,
    ),
    Check(
        "db.tls",
        "Database TLS",
        "server certificate trusted when TLS is on with a CA file",
        check_tls,
        platforms=_BOTH,
        applies=_tls_applies,
        timeout=4.0 * CONNECT_TIMEOUT,
    ),
]
