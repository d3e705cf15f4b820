"""An external metadata database backed up and restored into a fresh database: with the
target's pg_dump, and with the pg_dump of the deployment's PostgreSQL image in a throwaway
container; row counts and a checksum of every table must match. Real PostgreSQL 15 over
verify-full TLS (tests/services/postgres.py)."""

from __future__ import annotations

import json
import shutil
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
import yaml
from psycopg import sql

from installer.answers import parse_answers
from installer.errors import DeployError
from installer.operate.backup import backup, latest_backup
from installer.operate.bundle import support_bundle
from installer.operate.database import choose_external_tool, tool_major
from installer.operate.installation import Installation, Progress
from installer.operate.restore import restore
from installer.redact import Redactor
from installer.target import LocalTarget
from tests.services.postgres import PostgresServer
from tests.services.sshd import SSHCredentials, SSHServer
from tests.support.compose_deployment import make_deployment
from tests.support.package import make_package
from tests.support.ssh_target import trust

DATABASE = "ops_metadata"
SCHEMA = """
CREATE TABLE accounts (id serial PRIMARY KEY, email text UNIQUE NOT NULL, settings jsonb);
CREATE TABLE maps (id bigserial PRIMARY KEY, account int REFERENCES accounts(id),
                   title text, body bytea, created timestamptz DEFAULT now());
CREATE INDEX maps_title ON maps (title);
CREATE VIEW recent_maps AS SELECT id, title FROM maps ORDER BY id DESC LIMIT 10;
CREATE FUNCTION map_count(a int) RETURNS bigint LANGUAGE sql AS
  'SELECT count(*) FROM maps WHERE account = a';
COMMENT ON TABLE maps IS 'a comment must survive too';
INSERT INTO accounts (email, settings)
  SELECT 'user' || g || '@example.com', jsonb_build_object('n', g, 'ü', 'ünï') FROM
  generate_series(1, 400) g;
INSERT INTO maps (account, title, body)
  SELECT 1 + g % 400, 'map ' || g, decode(md5(g::text), 'hex') FROM generate_series(1, 3000) g;
"""


def fingerprint(server: PostgresServer) -> dict[str, Any]:
    """Row count and checksum of every table, plus the other objects by name."""
    import psycopg

    out: dict[str, Any] = {}
    with psycopg.connect(**server.dsn_kwargs(dbname=DATABASE), autocommit=True) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")]
        for table in tables:
            row = conn.execute(sql.SQL(
                "SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), ''))"
                " FROM {} t").format(sql.Identifier(table))).fetchone()
            out[table] = row
        out["objects"] = conn.execute(
            "SELECT array_agg(c.relname || ':' || c.relkind::text ORDER BY c.relname) "
            "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public'"
        ).fetchone()
        out["function"] = conn.execute("SELECT map_count(7)").fetchone()
        out["comment"] = conn.execute("SELECT obj_description('maps'::regclass)").fetchone()
    return out


def fresh_database(server: PostgresServer) -> None:
    server.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
        sql.Identifier(DATABASE)))
    server.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))


@pytest.fixture(scope="module")
def setup(postgres_server: PostgresServer, postgres_image: str, compose_v2: Path,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    import psycopg

    tmp = tmp_path_factory.mktemp("extdb")
    fresh_database(postgres_server)
    with psycopg.connect(**postgres_server.dsn_kwargs(dbname=DATABASE), autocommit=True) as conn:
        conn.execute(SCHEMA)  # type: ignore[arg-type]
    directory = make_deployment(tmp / "carto")
    compose = yaml.safe_load((directory / "docker-compose.yml").read_text())
    compose["services"]["workspace-postgres"] = {"image": postgres_image, "scale": 0}
    (directory / "docker-compose.yml").write_text(yaml.safe_dump(compose))
    (directory / "customer.env").write_text("SELFHOSTED_DOMAIN=ops.example.com\n")
    (directory / ".env").write_text("SELFHOSTED_DOMAIN=ops.example.com\n")
    package = make_package(tmp / "pkg")
    data = {"version": 1, "platform": "compose", "package": str(package.path),
            "compose": {"directory": str(directory)}, "domain": "ops.example.com",
            "database": {"bundled": False, "host": postgres_server.host,
                         "port": postgres_server.port, "admin_user": postgres_server.superuser,
                         "admin_password": postgres_server.password, "database": DATABASE,
                         "ssl": {"enabled": True, "mode": "verify-full",
                                 "ca_file": str(postgres_server.ca_file)}}}
    yield {"tmp": tmp, "data": data, "before": fingerprint(postgres_server)}


def installation(data: dict[str, Any], events: list[Any]) -> Installation:
    redactor = Redactor()
    return Installation(parse_answers(data, redactor=redactor), LocalTarget(), redactor,
                        events.append)


@pytest.mark.parametrize("tool", ["target", "image"])
def test_external_database_round_trip_into_a_fresh_database(
        setup: dict[str, Any], postgres_server: PostgresServer, tool: str,
        docker_engine: docker.DockerClient) -> None:
    events: list[Any] = []
    inst = installation(setup["data"], events)
    archive = setup["tmp"] / f"backup-{tool}.tar"
    result = backup(inst, str(archive), dump_tool=tool)
    assert "on local" in result.database if tool == "target" else \
        "in a container of carto-installer-test/postgres:15" in result.database
    assert any(isinstance(e, Progress) and e.step == "dump database" for e in events)
    with tarfile.open(archive) as tar:
        info = json.load(tar.extractfile("database/INFO.json"))  # type: ignore[arg-type]
        assert tar.getmember(f"database/{DATABASE}.dump").size > 10000
    assert info["server_version"].startswith("15.")
    assert postgres_server.password not in archive.read_bytes().decode("latin-1")
    assert latest_backup(inst) is not None and latest_backup(inst).sha256 == result.sha256  # type: ignore[union-attr]

    fresh_database(postgres_server)
    assert fingerprint_tables(postgres_server) == []
    asked: list[str] = []
    restored = restore(inst, str(archive), database=True,
                       confirm_database=lambda what: asked.append(what) or True,
                       dump_tool=tool)
    assert asked == [f"'{DATABASE}' on {postgres_server.host}:{postgres_server.port}"]
    assert DATABASE in restored.database
    assert fingerprint(postgres_server) == setup["before"]
    inst.close()


def fingerprint_tables(server: PostgresServer) -> list[str]:
    import psycopg

    with psycopg.connect(**server.dsn_kwargs(dbname=DATABASE)) as conn:
        return [r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]


def test_declining_the_confirmation_changes_nothing(setup: dict[str, Any],
                                                    postgres_server: PostgresServer) -> None:
    from installer.deploy import DeployCancelled

    inst = installation(setup["data"], [])
    archive = setup["tmp"] / "decline.tar"
    backup(inst, str(archive))
    env = Path(setup["data"]["compose"]["directory"]) / "customer.env"
    env.write_text("CHANGED=1\n")
    with pytest.raises(DeployCancelled):
        restore(inst, str(archive), database=True, confirm_database=lambda what: False)
    assert env.read_text() == "CHANGED=1\n"  # the configuration was not touched either


def test_no_pg_dump_that_can_read_the_server_means_no_dump() -> None:
    assert tool_major("pg_dump (PostgreSQL) 13.2") == 13
    assert choose_external_tool(15, 16, None, None) == "target"
    assert choose_external_tool(15, 13, 15, "postgres:15") == "image"
    with pytest.raises(DeployError) as caught:
        choose_external_tool(16, 15, 13, "postgres:13.2-alpine")
    message = str(caught.value)
    assert "PostgreSQL 16" in message and "pg_dump 15 on the target" in message
    assert "postgresql-client-16" in message
    with pytest.raises(DeployError, match="not installed"):
        choose_external_tool(14, None, None, None)


def test_over_ssh_the_dump_is_made_on_the_target_and_streamed_back(
        setup: dict[str, Any], postgres_server: PostgresServer,
        shared_ssh_server: SSHServer, target_credentials: SSHCredentials) -> None:
    """pg_dump runs on the remote target (password on stdin, CA from certs/ there), the dump
    comes back over SFTP, and the restore uploads it again."""
    from installer.ssh import SSHTarget

    data = json.loads(json.dumps(setup["data"]))
    directory = Path(data["compose"]["directory"])
    (directory / "certs").mkdir(exist_ok=True)
    shutil.copy(postgres_server.ca_file, directory / "certs" / "postgresql-ssl-ca.crt")
    known = trust(setup["tmp"] / "known_hosts", shared_ssh_server)
    data["target"] = {"host": shared_ssh_server.host, "port": shared_ssh_server.port,
                      "user": "root", "identity_file": str(target_credentials.ed25519_key),
                      "known_hosts": str(known)}
    redactor = Redactor()
    answers = parse_answers(data, redactor=redactor)
    assert answers.target is not None
    events: list[Any] = []
    with SSHTarget.connect(answers.target, accept_host_key=None, confirm_host_key=None,
                           redactor=redactor) as target:
        inst = Installation(answers, target, redactor, events.append)
        archive = setup["tmp"] / "backup-ssh.tar"
        result = backup(inst, str(archive))
        assert f"on root@{shared_ssh_server.host}" in result.database
        assert "deployment/certs/postgresql-ssl-ca.crt" in result.members
        fresh_database(postgres_server)
        restore(inst, str(archive), database=True)
        assert fingerprint(postgres_server) == setup["before"]
        record = json.loads((directory / ".carto-installer-backups.json").read_text())
        assert record["backups"][-1]["sha256"] == result.sha256

        # the support bundle over the same connection: host facts and files read remotely
        bundle = setup["tmp"] / "support-ssh.tar.gz"
        found = support_bundle(inst, str(bundle), preflight=False)
        with tarfile.open(bundle) as tar:
            content = {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}  # type: ignore[union-attr]
        assert {"host.txt", "configuration/customer.env", "certificates.txt",
                "docker-version.txt", "MANIFEST.txt"} <= set(content), found.failed
        assert b"## uname" in content["host.txt"]
        assert postgres_server.password.encode() not in b"".join(content.values())
