"""A small PostgreSQL 15 image built from this machine's own binaries (no registry).

It stands in for the vendor's bundled `workspace-postgres` service: it starts a cluster on
first run (as nobody, data in /tmp, the superuser and database from POSTGRES_USER /
WORKSPACE_POSTGRES_DB as the vendor's .env names them, local connections trusted) and carries
pg_dump, pg_restore and psql on PATH, like the official image.
"""

from __future__ import annotations

from pathlib import Path

import docker

PG_VERSION = "15"
PG_ROOT = Path(f"/usr/lib/postgresql/{PG_VERSION}")
PG_SHARE = Path(f"/usr/share/postgresql/{PG_VERSION}")
PG_IMAGE = f"carto-installer-test/postgres:{PG_VERSION}"
TOOLS = ("postgres", "initdb", "pg_ctl", "pg_dump", "pg_restore", "psql")

ENTRYPOINT = f"""#!/bin/sh
# First start: a cluster owned by the container's user, then the database CARTO uses.
set -eu
export PGDATA=/tmp/pgdata TZ=UTC
bin={PG_ROOT}/bin
user="${{POSTGRES_ADMIN_USER:-${{POSTGRES_USER:-postgres}}}}"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  "$bin/initdb" -D "$PGDATA" -U "$user" --auth=trust --no-locale -E UTF8 >/tmp/initdb.log
  "$bin/pg_ctl" -D "$PGDATA" -o "-k /tmp -c listen_addresses=''" -w start >/dev/null
  "$bin/psql" -h /tmp -U "$user" -d postgres -qc \\
    "CREATE DATABASE \\"${{WORKSPACE_POSTGRES_DB:-workspace}}\\""
  "$bin/pg_ctl" -D "$PGDATA" -w stop >/dev/null
fi
echo "postgres: ready"
exec "$bin/postgres" -D "$PGDATA" -k /tmp -c listen_addresses=''
"""


def _wrapper(tool: str) -> bytes:
    # The official image has the tools on PATH and a socket where libpq looks first.
    return (f'#!/bin/sh\nexport PGHOST="${{PGHOST:-/tmp}}" TZ=UTC\n'
            f'exec {PG_ROOT}/bin/{tool} "$@"\n').encode()


def build_postgres_image(client: docker.DockerClient) -> str:
    from tests.services.dockerd import build_image

    if not (PG_ROOT / "bin" / "postgres").is_file():
        raise RuntimeError(f"PostgreSQL {PG_VERSION} is not installed: apt-get install -y "
                           f"postgresql-{PG_VERSION}")
    files: dict[str, bytes | Path] = {"/bin/pg-entry": ENTRYPOINT.encode()}
    for library in (PG_ROOT / "lib").glob("*.so"):
        if "llvmjit" not in library.name:
            files[str(library)] = library
    for item in PG_SHARE.rglob("*"):
        if item.is_file():
            files[str(item)] = item
    for zone in ("UTC", "Etc/UTC"):
        files[f"/usr/share/zoneinfo/{zone}"] = Path("/usr/share/zoneinfo") / zone
    for tool in ("pg_dump", "pg_restore", "psql"):
        files[f"/usr/local/bin/{tool}"] = _wrapper(tool)
    return build_image(client, PG_IMAGE, files=files,
                       binaries=[str(PG_ROOT / "bin" / t) for t in TOOLS], cmd=["/bin/pg-entry"])

