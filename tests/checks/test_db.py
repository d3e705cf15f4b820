"""db.* against a real PostgreSQL 15 (scram-sha-256, TLS from the test CA) on loopback.

Names other than IP addresses are resolved by an injected resolver that maps them to
127.0.0.1, so no lookup leaves the machine; the CLI test runs with a private /etc/hosts.
"""

from __future__ import annotations

import datetime
import json
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from installer.answers import Answers, DatabaseSettings, DatabaseSSL, Secret
from installer.checks import db
from installer.checks.base import CheckContext, CheckResult, Status
from installer.checks.engine import run_checks
from installer.redact import Redactor
from installer.target import LocalTarget
from tests.services.netdb_namespaces import namespaced
from tests.services.postgres import PostgresServer
from tests.services.tls_ca import TestCA, free_loopback_port, silent_server
from tests.support.cli import cli_env

ROLES = {  # name -> attributes
    "netdb_super": {"superuser": True},
    "netdb_both": {"createrole": True, "createdb": True},
    "netdb_createdb": {"createdb": True},
    "netdb_createrole": {"createrole": True},
    "netdb_plain": {},
}


@pytest.fixture(scope="module")
def roles(postgres_server: PostgresServer) -> dict[str, str]:
    """The five kinds of admin, each with its own password."""
    passwords = {}
    for name, attributes in ROLES.items():
        passwords[name] = secrets.token_urlsafe(12)
        postgres_server.create_role(name, passwords[name], **attributes)
    return passwords


def resolver_for(names: Mapping[str, str]) -> Callable[[str], list[str]]:
    def resolve(name: str) -> list[str]:
        if name in names:
            return [names[name]]
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    return resolve


def db_context(
    server: PostgresServer,
    admin: str,
    password: str | None,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    tls: str | None = None,
    ca_file: Path | str | None = None,
    names: Mapping[str, str] | None = None,
    redactor: Redactor | None = None,
    **settings: Any,
) -> CheckContext:
    ssl = DatabaseSSL(
        enabled=tls is not None, mode=tls or "require", ca_file=str(ca_file) if ca_file else None
    )
    db = DatabaseSettings(
        host=host,
        port=port or server.port,
        admin_user=admin,
        admin_password=Secret(password, "inline") if password else None,
        ssl=ssl,
        **settings,
    )
    return CheckContext(
        target=LocalTarget(),
        answers=Answers(database=db),
        resolver=resolver_for(names or {}),
        redactor=redactor,
    )


def run_db(ctx: CheckContext) -> dict[str, CheckResult]:
    return {r.id: r for r in run_checks(ctx, db.CHECKS)}


def assert_actionable(results: Mapping[str, CheckResult]) -> None:
    for result in results.values():
        if result.status in (Status.WARN, Status.FAIL):
            assert result.observed and result.remediation, result


# --- privileges ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "status", "statement"),
    [
        ("netdb_super", Status.PASS, None),
        ("netdb_both", Status.PASS, None),
        ("netdb_createdb", Status.FAIL, "ALTER ROLE netdb_createdb CREATEROLE;"),
        ("netdb_createrole", Status.FAIL, "ALTER ROLE netdb_createrole CREATEDB;"),
        ("netdb_plain", Status.FAIL, "ALTER ROLE netdb_plain CREATEROLE CREATEDB;"),
    ],
)
def test_privileges_verdict_per_role(
    postgres_server: PostgresServer,
    roles: dict[str, str],
    role: str,
    status: Status,
    statement: str | None,
) -> None:
    results = run_db(db_context(postgres_server, role, roles[role]))
    assert results["db.connect"].status == Status.PASS, results["db.connect"]
    privileges = results["db.privileges"]
    assert privileges.status == status, privileges
    if statement:
        assert statement in privileges.remediation
        missing = statement.split(role, 1)[1].strip(" ;").split()
        assert all(word in privileges.message for word in missing)
        assert f"CREATEROLE {'yes' if 'CREATEROLE' not in missing else 'no'}" in privileges.observed
    assert_actionable(results)


def test_managed_cloud_admin_role_is_recognised_and_named(
    postgres_server: PostgresServer, roles: dict[str, str]
) -> None:
    if not postgres_server.execute("SELECT 1 FROM pg_roles WHERE rolname = 'rds_superuser'"):
        postgres_server.execute("CREATE ROLE rds_superuser NOLOGIN")
    postgres_server.execute("GRANT rds_superuser TO netdb_both")
    postgres_server.execute("GRANT rds_superuser TO netdb_plain")
    try:
        ok = run_db(db_context(postgres_server, "netdb_both", roles["netdb_both"]))
        assert ok["db.privileges"].status == Status.PASS
        assert "rds_superuser" in ok["db.privileges"].message
        assert "Amazon RDS" in ok["db.privileges"].observed
        lacking = run_db(db_context(postgres_server, "netdb_plain", roles["netdb_plain"]))
        assert lacking["db.privileges"].status == Status.FAIL
        assert "alone does not grant" in lacking["db.privileges"].message
        assert "RDS master user" in lacking["db.privileges"].remediation
    finally:
        postgres_server.execute("REVOKE rds_superuser FROM netdb_both")
        postgres_server.execute("REVOKE rds_superuser FROM netdb_plain")


def test_quote_ident_quotes_only_when_needed() -> None:
    assert db.quote_ident("workspace_admin") == "workspace_admin"
    assert db.quote_ident("Admin") == '"Admin"'
    assert db.quote_ident('we"ird') == '"we""ird"'


# --- connection failure classes --------------------------------------------------------------


def connect_result(ctx: CheckContext) -> CheckResult:
    results = run_db(ctx)
    assert_actionable(results)
    return results["db.connect"]


def test_wrong_password(postgres_server: PostgresServer, roles: dict[str, str]) -> None:
    result = connect_result(db_context(postgres_server, "netdb_both", "not-the-password"))
    assert result.status == Status.FAIL and result.message.startswith("bad password")
    assert "admin_password_env" in result.remediation


def test_missing_password(postgres_server: PostgresServer, roles: dict[str, str]) -> None:
    result = connect_result(db_context(postgres_server, "netdb_both", None))
    assert result.status == Status.FAIL and "answers give none" in result.message


def test_closed_port(postgres_server: PostgresServer, roles: dict[str, str]) -> None:
    result = connect_result(
        db_context(postgres_server, "netdb_both", roles["netdb_both"], port=free_loopback_port())
    )
    assert result.status == Status.FAIL and result.message.startswith("connection refused")


def test_missing_database(postgres_server: PostgresServer, roles: dict[str, str]) -> None:
    result = connect_result(
        db_context(
            postgres_server, "netdb_both", roles["netdb_both"], admin_database="netdb_no_such_db"
        )
    )
    assert result.status == Status.FAIL and result.message.startswith("database missing")
    assert "netdb_no_such_db" in result.message
    assert "database.admin_database" in result.remediation


def test_dns_failure(postgres_server: PostgresServer, roles: dict[str, str]) -> None:
    result = connect_result(
        db_context(postgres_server, "netdb_both", roles["netdb_both"], host="db.unknown.example")
    )
    assert result.status == Status.FAIL and result.message.startswith("DNS")
    assert "db.unknown.example" in result.message


def test_timeout(
    postgres_server: PostgresServer, roles: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("installer.postgres.CONNECT_TIMEOUT", 2)  # libpq's smallest
    with silent_server() as silent:
        start = time.monotonic()
        result = connect_result(db_context(postgres_server, "netdb_both", "pw", port=silent.port))
        elapsed = time.monotonic() - start
    assert result.status == Status.FAIL and result.message.startswith("timeout")
    assert elapsed < 5, elapsed
    assert "firewall" in result.remediation


def test_tls_required_by_the_server(postgres_tls_required: PostgresServer) -> None:
    server = postgres_tls_required
    result = connect_result(db_context(server, server.superuser, server.password))
    assert result.status == Status.FAIL
    assert result.message.startswith("TLS required by the server")
    assert "database.ssl.enabled: true" in result.remediation
    # ... and with TLS on, the same server is fine.
    ok = connect_result(db_context(server, server.superuser, server.password, tls="require"))
    assert ok.status == Status.PASS and "TLS" in ok.observed


def test_verify_full_with_the_right_ca(
    postgres_server: PostgresServer, roles: dict[str, str], test_ca: TestCA
) -> None:
    results = run_db(
        db_context(
            postgres_server,
            "netdb_both",
            roles["netdb_both"],
            tls="verify-full",
            ca_file=test_ca.ca_file,
        )
    )
    assert results["db.connect"].status == Status.PASS
    assert "TLSv1.3" in results["db.connect"].observed
    assert "verify-full" in results["db.connect"].observed
    assert results["db.tls"].status == Status.PASS
    assert "verified" in results["db.tls"].message


def test_verify_full_with_a_wrong_ca(
    postgres_server: PostgresServer, roles: dict[str, str], tmp_path: Path
) -> None:
    wrong = TestCA(tmp_path / "wrong", "some other CA")
    results = run_db(
        db_context(
            postgres_server,
            "netdb_both",
            roles["netdb_both"],
            tls="verify-full",
            ca_file=wrong.ca_file,
        )
    )
    assert results["db.connect"].status == Status.FAIL
    assert results["db.connect"].message.startswith("certificate rejected")
    assert "not signed by the CA" in results["db.connect"].message
    assert results["db.tls"].status == Status.FAIL
    assert results["db.privileges"].status == Status.SKIP
    assert_actionable(results)


def test_verify_full_checks_the_name_against_the_certificate(
    postgres_server: PostgresServer, roles: dict[str, str], test_ca: TestCA
) -> None:
    # The server's certificate names localhost and 127.0.0.1.
    good = run_db(
        db_context(
            postgres_server,
            "netdb_both",
            roles["netdb_both"],
            host="localhost",
            names={"localhost": "127.0.0.1"},
            tls="verify-full",
            ca_file=test_ca.ca_file,
        )
    )
    assert good["db.connect"].status == Status.PASS, good["db.connect"]
    bad = run_db(
        db_context(
            postgres_server,
            "netdb_both",
            roles["netdb_both"],
            host="db.internal.example",
            names={"db.internal.example": "127.0.0.1"},
            tls="verify-full",
            ca_file=test_ca.ca_file,
        )
    )
    assert bad["db.connect"].status == Status.FAIL
    assert "does not name db.internal.example" in bad["db.connect"].message
    # With verify-ca the connection works; db.tls says verify-full would not.
    relaxed = run_db(
        db_context(
            postgres_server,
            "netdb_both",
            roles["netdb_both"],
            host="db.internal.example",
            names={"db.internal.example": "127.0.0.1"},
            tls="verify-ca",
            ca_file=test_ca.ca_file,
        )
    )
    assert relaxed["db.connect"].status == Status.PASS
    assert relaxed["db.tls"].status == Status.WARN
    assert "does not name db.internal.example" in relaxed["db.tls"].message


def test_plain_connection_to_a_remote_name_warns(
    postgres_server: PostgresServer, roles: dict[str, str]
) -> None:
    result = connect_result(
        db_context(
            postgres_server,
            "netdb_both",
            roles["netdb_both"],
            host="db.internal.example",
            names={"db.internal.example": "127.0.0.1"},
        )
    )
    assert result.status == Status.WARN and "without TLS" in result.message
    loopback = connect_result(db_context(postgres_server, "netdb_both", roles["netdb_both"]))
    assert loopback.status == Status.PASS and "no TLS" in loopback.observed


def test_tls_without_ca_file_warns_and_unreadable_ca_fails(
    postgres_server: PostgresServer, roles: dict[str, str], tmp_path: Path
) -> None:
    no_ca = run_db(db_context(postgres_server, "netdb_both", roles["netdb_both"], tls="require"))
    assert no_ca["db.connect"].status == Status.PASS
    assert no_ca["db.tls"].status == Status.WARN and "without a CA file" in no_ca["db.tls"].message
    missing = run_db(
        db_context(
            postgres_server,
            "netdb_both",
            roles["netdb_both"],
            tls="require",
            ca_file=tmp_path / "missing-ca.pem",
        )
    )
    assert missing["db.tls"].status == Status.FAIL
    assert "cannot be read" in missing["db.tls"].message
    not_a_cert = tmp_path / "notes.txt"
    not_a_cert.write_text("hello\n")
    garbage = run_db(
        db_context(
            postgres_server, "netdb_both", roles["netdb_both"], tls="require", ca_file=not_a_cert
        )
    )
    assert garbage["db.tls"].status == Status.FAIL
    assert_actionable(garbage)


def test_password_never_reaches_the_results(
    postgres_server: PostgresServer, roles: dict[str, str]
) -> None:
    redactor = Redactor([roles["netdb_plain"]])
    results = run_db(
        db_context(postgres_server, "netdb_plain", roles["netdb_plain"], redactor=redactor)
    )
    text = json.dumps([r.to_dict() for r in results.values()])
    assert roles["netdb_plain"] not in text


# --- version, workspace, bundled -------------------------------------------------------------


@pytest.mark.parametrize(
    ("num", "status", "shown"),
    [
        (90624, Status.FAIL, "9.6"),
        (100023, Status.FAIL, "10"),
        (110022, Status.WARN, "11"),
        (130018, Status.WARN, "13"),
        (140015, Status.PASS, "14"),
        (160006, Status.PASS, "16"),
    ],
)
def test_version_verdicts(num: int, status: Status, shown: str) -> None:
    outcome = db.judge_version(num)
    assert outcome.status == status
    assert f"PostgreSQL {shown} " in outcome.observed
    if status != Status.PASS:
        assert outcome.remediation and "14" in outcome.remediation


def test_live_server_version_is_15(postgres_server: PostgresServer, roles: dict[str, str]) -> None:
    result = run_db(db_context(postgres_server, "netdb_super", roles["netdb_super"]))
    assert result["db.version"].status == Status.PASS
    assert "PostgreSQL 15" in result["db.version"].observed


def test_workspace_absent_foreign_and_owned(
    postgres_server: PostgresServer, roles: dict[str, str]
) -> None:
    ctx_args = ("netdb_super", roles["netdb_super"])
    absent = run_db(
        db_context(postgres_server, *ctx_args, user="netdb_ws_user", database="netdb_ws_absent")
    )["db.workspace"]
    assert absent.status == Status.PASS and "will be created" in absent.message

    postgres_server.create_role("netdb_ws_user", secrets.token_urlsafe(8))
    for name, owner in (("netdb_ws_foreign", "netdb_plain"), ("netdb_ws_owned", "netdb_ws_user")):
        if not postgres_server.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)):
            postgres_server.execute(f"CREATE DATABASE {name} OWNER {owner}")
    foreign = run_db(
        db_context(postgres_server, *ctx_args, user="netdb_ws_user", database="netdb_ws_foreign")
    )["db.workspace"]
    assert foreign.status == Status.WARN and "owned by netdb_plain" in foreign.message
    assert "ALTER DATABASE netdb_ws_foreign OWNER TO netdb_ws_user;" in foreign.remediation
    owned = run_db(
        db_context(postgres_server, *ctx_args, user="netdb_ws_user", database="netdb_ws_owned")
    )["db.workspace"]
    assert owned.status == Status.PASS and "re-run" in owned.message


def test_preflight_changes_nothing(
    postgres_server: PostgresServer, roles: dict[str, str], test_ca: TestCA
) -> None:
    snapshot = (
        "SELECT string_agg(rolname || rolcreaterole::text || rolcreatedb::text, ',' "
        "ORDER BY rolname) FROM pg_roles UNION ALL "
        "SELECT string_agg(datname || datdba::text, ',' ORDER BY datname) "
        "FROM pg_database"
    )
    before = postgres_server.execute(snapshot)
    for role in ROLES:
        run_db(
            db_context(
                postgres_server,
                role,
                roles[role],
                tls="verify-full",
                ca_file=test_ca.ca_file,
                user="netdb_never_created",
                database="netdb_never_created",
            )
        )
    assert postgres_server.execute(snapshot) == before


def test_bundled_database_warns_and_skips_the_rest() -> None:
    ctx = CheckContext(
        target=LocalTarget(), answers=Answers(database=DatabaseSettings(bundled=True))
    )
    results = run_db(ctx)
    assert results["db.bundled"].status == Status.WARN
    assert "debugging only" in results["db.bundled"].message
    assert_actionable(results)
    for check_id in ("db.connect", "db.version", "db.privileges", "db.workspace", "db.tls"):
        assert results[check_id].status == Status.SKIP
        assert (
            "bundled" in results[check_id].message
            or "needs db.connect" in results[check_id].message
        )


def test_absent_inputs_skip_with_the_reason() -> None:
    results = run_db(CheckContext(target=LocalTarget()))
    assert all(r.status == Status.SKIP for r in results.values())
    assert "no answers file" in results["db.connect"].message
    results = run_db(CheckContext(target=LocalTarget(), answers=Answers()))
    assert "database.host is not set" in results["db.connect"].message
    assert results["db.bundled"].status == Status.SKIP


# --- a remote target: the connection starts on the target ------------------------------------


class RelayingRemote(LocalTarget):
    """A target flagged remote: its open_connection is a real TCP connect made for the
    relay, as the SSH target's direct-tcpip channel would be, and it records each call."""

    is_local = False

    def __init__(self) -> None:
        super().__init__()
        self.name = "tester@remote:22"
        self.opened: list[tuple[str, int]] = []

    def open_connection(self, host: str, port: int, timeout: float) -> socket.socket:
        self.opened.append((host, port))
        return socket.create_connection((host, port), timeout=timeout)


def test_remote_target_carries_the_connection(
    postgres_server: PostgresServer, roles: dict[str, str], test_ca: TestCA
) -> None:
    ctx = db_context(
        postgres_server,
        "netdb_both",
        roles["netdb_both"],
        tls="verify-full",
        ca_file=test_ca.ca_file,
    )
    ctx.target = RelayingRemote()
    results = run_db(ctx)
    assert results["db.connect"].status == Status.PASS, results["db.connect"]
    assert results["db.privileges"].status == Status.PASS
    assert ("127.0.0.1", postgres_server.port) in ctx.target.opened  # type: ignore[attr-defined]

    closed = db_context(
        postgres_server, "netdb_both", roles["netdb_both"], port=free_loopback_port()
    )
    closed.target = RelayingRemote()
    result = run_db(closed)["db.connect"]
    assert result.status == Status.FAIL and result.message.startswith("connection refused")
    assert "tester@remote:22" in result.message


# --- the CLI ---------------------------------------------------------------------------------


def test_cli_json_report_with_a_real_database(
    postgres_server: PostgresServer, roles: dict[str, str], test_ca: TestCA, tmp_path: Path
) -> None:
    """`preflight --only net,tls,db --format json` with the system resolver: a private
    /etc/hosts maps the domain to this machine's own address (nothing else is looked up)."""
    from tests.support.host_network import own_address

    now = datetime.datetime.now(datetime.UTC)
    expired = test_ca.issue(
        ["carto.example.com"],
        not_before=now - datetime.timedelta(days=90),
        not_after=now - datetime.timedelta(days=3),
    ).write(tmp_path / "tls")
    answers = tmp_path / "answers.yaml"
    answers.write_text(f"""
domain: carto.example.com
tls: {{certificate_file: {expired.fullchain}, key_file: {expired.key}}}
database:
  host: 127.0.0.1
  port: {postgres_server.port}
  admin_user: netdb_createdb
  admin_password_env: NETDB_ADMIN_PW
  ssl: {{enabled: true, mode: verify-full, ca_file: {test_ca.ca_file}}}
""")
    answers.chmod(0o600)
    argv = namespaced(
        [
            sys.executable,
            "-m",
            "installer",
            "preflight",
            "--answers",
            str(answers),
            "--format",
            "json",
            "--only",
            "net,tls,db",
        ],
        {"carto.example.com": own_address()},
        tmp_path / "ns",
    )
    env = cli_env(
        {"NETDB_ADMIN_PW": roles["netdb_createdb"], "SSL_CERT_FILE": str(test_ca.ca_file)}
    )
    proc = subprocess.run(
        argv, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60, check=False
    )
    assert proc.returncode == 3, proc.stderr
    report = json.loads(proc.stdout)
    checks = {c["id"]: c for c in report["checks"]}
    statuses = {i: c["status"] for i, c in checks.items()}
    assert statuses == {
        "db.bundled": "skip",
        "db.connect": "pass",
        "db.version": "pass",
        "db.privileges": "fail",
        "db.workspace": "pass",
        "db.tls": "pass",
        "net.domain": "pass",
        "net.dns": "pass",
        "tls.certificate": "fail",
    }, statuses
    for check in checks.values():
        if check["status"] in ("warn", "fail"):
            assert check["observed"] and check["remediation"], check
    assert "ALTER ROLE netdb_createdb CREATEROLE;" in checks["db.privileges"]["remediation"]
    assert "expired" in checks["tls.certificate"]["message"]
    assert roles["netdb_createdb"] not in proc.stdout
    log = (tmp_path / "carto-installer.log").read_text()
    assert roles["netdb_createdb"] not in log


def test_on_kubernetes_the_chart_says_who_creates_an_absent_user_and_database(
    postgres_server: PostgresServer, roles: dict[str, str], helm_bin: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The test chart's workloads read the admin password (as charts before 2025 did): the
    absent user and database are said to be created by it. A chart that cannot be rendered
    leaves that unknown, and nothing is promised."""
    from installer.answers import parse_answers
    from tests.support.k8s_package import CHART, k8s_answers, make_helm_package

    monkeypatch.setenv("PATH", f"{helm_bin.parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.chdir(tmp_path)
    package = make_helm_package(tmp_path / "package")

    def workspace(chart: str) -> CheckResult:
        data = k8s_answers(None, package.path)
        data["kubernetes"]["chart"] = chart
        data["database"] = {"bundled": False, "host": "127.0.0.1", "port": postgres_server.port,
                            "admin_user": "netdb_super",
                            "admin_password": roles["netdb_super"], "password": "x" * 12,
                            "user": "netdb_k8s_user", "database": "netdb_k8s_absent"}
        redactor = Redactor()
        ctx = CheckContext(LocalTarget(), "kubernetes", parse_answers(data, redactor=redactor),
                           redactor)
        return run_db(ctx)["db.workspace"]

    known = workspace(str(CHART))
    assert known.status == Status.PASS, known
    assert "will be created by the chart carto 1.0.0" in known.message
    unknown = workspace(str(tmp_path / "missing-chart.tgz"))
    assert unknown.status == Status.WARN, unknown
    assert "will be created" not in unknown.message and "CREATE ROLE" in unknown.remediation
