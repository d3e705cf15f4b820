"""The metadata database: a dump that really holds everything, and putting it back.

pg_dump refuses to read a server newer than itself, and a dump made around that (an older tool
forced, a plain `COPY` of some tables) misses objects without saying so. So the tool is chosen
by major version: the bundled database is dumped by its own container's pg_dump; an external
one by the target's pg_dump when its major version is at least the server's, else by the
pg_dump of the PostgreSQL image the deployment already has (run in a throwaway container on the
host network), and when neither can, the backup stops with what to install.

Dumps use pg_dump's custom format (compressed by pg_dump as it dumps, restorable object by
object) and are written to
a file first, then streamed back in chunks, so their size never matters for memory. Passwords
reach pg_dump through the environment (the SSH target passes it on stdin) or a 0600 .pgpass
inside the throwaway container, never on a command line.
"""

from __future__ import annotations

import io
import logging
import os
import posixpath
import re
import shlex
import tarfile
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from installer.errors import DeployError, InputError
from installer.operate.installation import Installation
from installer.target import CommandNotFound

if TYPE_CHECKING:
    from docker.models.containers import Container

log = logging.getLogger("installer.operate.database")

CHUNK = 1 << 20
DUMP_TIMEOUT = 6 * 3600.0
Progress = Callable[[int, int], None]
_VERSION = re.compile(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?")
RESTORE_FLAGS = ["--clean", "--if-exists", "--single-transaction", "--exit-on-error"]


@dataclass
class DumpInfo:
    database: str
    method: str  # how it was dumped, for the manifest and the report
    server_version: str
    tool_version: str

    def as_dict(self) -> dict[str, str]:
        return dict(vars(self))


def tool_major(version_output: str) -> int | None:
    """12 from "pg_dump (PostgreSQL) 12.4 (Debian 12.4-1)"."""
    match = _VERSION.search(version_output)
    return int(match.group(1)) if match else None


def choose_external_tool(server_major: int, target_major: int | None,
                         image_major: int | None, image: str | None) -> str:
    """"target" or "image", or DeployError when no pg_dump there can dump this server."""
    if target_major is not None and target_major >= server_major:
        return "target"
    if image is not None and image_major is not None and image_major >= server_major:
        return "image"
    found = []
    if target_major is not None:
        found.append(f"pg_dump {target_major} on the target")
    if image is not None:
        found.append(f"pg_dump {image_major if image_major else '?'} in the image {image}")
    have = ", ".join(found) or ("pg_dump is not installed on the target and the deployment "
                                "has no PostgreSQL image")
    raise DeployError(
        f"no pg_dump here can dump PostgreSQL {server_major}: {have} (an older pg_dump would "
        "miss objects, so none is used)",
        f"install the PostgreSQL {server_major} client tools on the target (e.g. "
        f"apt-get install postgresql-client-{server_major}), or back up with --no-database "
        "and dump the database with your own tools")


# ---- describing ----------------------------------------------------------------------------


def describe_database(inst: Installation) -> str:
    """e.g. "workspace on db.example.com:5432" or "workspace in the bundled container"."""
    db = inst.answers.database
    if db.bundled:
        if inst.platform == "compose":
            service, _, _, name, _ = _bundled(inst, need_running=False)
            return f"'{name}' in the bundled PostgreSQL container (service {service})"
        return f"'{db.database}' in the chart's bundled PostgreSQL"
    return f"'{db.database}' on {db.host}:{db.port}"


# ---- the bundled database (Compose) ---------------------------------------------------------


def _bundled(inst: Installation, *, need_running: bool = True
             ) -> tuple[str, Any, str, str, str]:
    """(service, container or None, admin user, database, admin password)."""
    env = inst.dotenv()
    services = inst.compose_services()
    named = env.get("WORKSPACE_POSTGRES_HOST", "")
    service = named if named in services else next(
        (name for name, spec in services.items() if "postgres" in str(spec.get("image", ""))),
        None)
    if service is None:
        raise DeployError("database.bundled is true, but docker-compose.yml has no PostgreSQL "
                          "service", "set database.bundled: false and the database's address")
    user = env.get("POSTGRES_ADMIN_USER") or env.get("POSTGRES_USER") or "postgres"
    name = env.get("WORKSPACE_POSTGRES_DB") or inst.answers.database.database
    password = env.get("POSTGRES_ADMIN_PASSWORD", "")
    container = None
    if need_running:
        running = [v for v in inst.containers() if v.service == service and v.state == "running"]
        if not running:
            raise DeployError(f"the bundled database container (service {service}) is not "
                              "running", "start the deployment (carto-installer deploy), then "
                              "run the backup again")
        container = inst.client().containers.get(running[0].id)
    return service, container, user, name, password


def _exec(container: Container, argv: list[str], env: dict[str, str] | None = None,
          user: str = "") -> tuple[int, str]:
    log.info("docker exec %s: %s", container.name, shlex.join(argv))
    code, output = container.exec_run(argv, environment=env, user=user, demux=False)
    return int(code), (output or b"").decode("utf-8", "replace")


class _ChunkReader:
    """A file-like object over an iterator of byte chunks (docker's archive stream)."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks: Iterator[bytes] = iter(chunks)
        self._pending = b""

    def read(self, n: int = -1) -> bytes:
        while n < 0 or len(self._pending) < n:
            try:
                self._pending += next(self._chunks)
            except StopIteration:
                break
        if n < 0:
            data, self._pending = self._pending, b""
        else:
            data, self._pending = self._pending[:n], self._pending[n:]
        return data


def fetch_from_container(container: Container, path: str, dest: str, progress: Progress) -> int:
    """Stream one file out of a container into `dest` (0600). Returns its size."""
    chunks, stat = container.get_archive(path)
    total = int(stat.get("size", 0))
    # typeshed asks any tar file object for write/seek/tell too; a stream ("r|") only reads.
    with tarfile.open(fileobj=_ChunkReader(chunks), mode="r|") as tar:  # type: ignore[call-overload]
        for info in tar:
            handle = tar.extractfile(info)
            if handle is None:
                continue
            return _copy_stream(handle, dest, total, progress)
    raise DeployError(f"{path} could not be read back from the container {container.name}")


def _copy_stream(handle: Any, dest: str, total: int, progress: Progress) -> int:
    done = 0
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        while block := handle.read(CHUNK):
            out.write(block)
            done += len(block)
            progress(done, total)
    return done


def put_into_container(container: Container, folder: str, files: dict[str, str | bytes],
                       mode: int = 0o600, owner: tuple[int, int] = (0, 0)) -> None:
    """Copy local files (path) or contents (bytes) into `folder` of a container."""
    _unpack_in_container(container, folder, files, mode, owner)


def _unpack_in_container(container: Container, at: str, files: dict[str, str | bytes],
                         mode: int, owner: tuple[int, int], new_folder: str | None = None) -> None:
    """Tar `files` (local path or contents, by name) and unpack them at `at` in a container;
    `new_folder`, a path inside the tar, is made first (0700) when the files go into it."""
    with tempfile.TemporaryFile() as spool:
        with tarfile.open(fileobj=spool, mode="w") as tar:
            if new_folder is not None:
                folder_info = tarfile.TarInfo(new_folder)
                folder_info.type, folder_info.mode = tarfile.DIRTYPE, 0o700
                tar.addfile(folder_info)
            for name, source in files.items():
                info = tarfile.TarInfo(name)
                info.mode = mode
                info.uid, info.gid = owner
                if isinstance(source, bytes):
                    info.size = len(source)
                    tar.addfile(info, io.BytesIO(source))
                else:
                    info.size = os.path.getsize(source)
                    with open(source, "rb") as handle:
                        tar.addfile(info, handle)
        spool.seek(0)
        if not container.put_archive(at, spool):
            raise DeployError(f"could not copy files into the container {container.name}")


def _container_user(container: Container, inst: Installation) -> tuple[int, int]:
    code, out = _exec(container, ["id", "-u"])
    uid = int(out.strip()) if code == 0 and out.strip().isdigit() else 0
    code, out = _exec(container, ["id", "-g"])
    gid = int(out.strip()) if code == 0 and out.strip().isdigit() else 0
    return uid, gid


def _dump_bundled(inst: Installation, dest: str, progress: Progress) -> DumpInfo:
    service, container, user, name, password = _bundled(inst)
    code, version = _exec(container, ["pg_dump", "--version"])
    if code != 0:
        raise DeployError(f"the bundled database container has no pg_dump: {version.strip()}")
    inside = "/tmp/carto-installer-backup.dump"  # noqa: S108 - inside the container
    code, output = _exec(container, ["pg_dump", "-U", user, "-d", name, "-Fc", "-f", inside],
                         env={"PGPASSWORD": password})
    try:
        if code != 0:
            raise DeployError(f"pg_dump in the bundled database container failed: "
                              f"{inst.redactor(output.strip())[-800:]}")
        fetch_from_container(container, inside, dest, progress)
    finally:
        _exec(container, ["rm", "-f", inside])
    major = tool_major(version)
    return DumpInfo(name, f"pg_dump of the bundled container (service {service})",
                    str(major or "?"), version.strip())


def _restore_bundled(inst: Installation, dump: str, progress: Progress) -> str:
    service, container, user, name, password = _bundled(inst)
    inside = "/tmp/carto-installer-restore.dump"  # noqa: S108 - inside the container
    progress(0, os.path.getsize(dump))
    put_into_container(container, posixpath.dirname(inside),
                       {posixpath.basename(inside): dump}, owner=_container_user(container, inst))
    progress(os.path.getsize(dump), os.path.getsize(dump))
    try:
        code, output = _exec(container, ["pg_restore", "-U", user, "-d", name, *RESTORE_FLAGS,
                                         inside], env={"PGPASSWORD": password})
    finally:
        _exec(container, ["rm", "-f", inside])
    if code != 0:
        raise DeployError(f"pg_restore into the bundled database failed: "
                          f"{inst.redactor(output.strip())[-800:]}",
                          "the database is as it was (the restore runs in one transaction)")
    return f"restored into '{name}' in the bundled container (service {service})"


# ---- an external database -----------------------------------------------------------------


@dataclass
class _External:
    host: str
    port: int
    user: str
    password: str
    database: str
    sslmode: str
    ca_on_target: str | None
    ca_local: str | None


def _external(inst: Installation) -> _External:
    from installer.postgres import sslmode_for

    db = inst.answers.database
    if not db.host:
        raise InputError("database.host is not set", "give the database's address")
    ca_target: str | None = None
    if db.ssl.enabled and db.ssl.ca_file:
        if inst.target.is_local:
            ca_target = db.ssl.ca_file
        elif inst.platform == "compose":
            # render placed the CA in certs/ on the target
            ca_target = posixpath.join(inst.directory, "certs", "postgresql-ssl-ca.crt")
    return _External(db.host, db.port, db.admin_user,
                     db.admin_password.value if db.admin_password else "", db.database,
                     sslmode_for(db), ca_target, db.ssl.ca_file)


def server_version(inst: Installation) -> tuple[int, str]:
    """(major, "15.4") of the external server, asked over the same path CARTO uses."""
    from installer.checks.base import CheckContext
    from installer.postgres import ConnectFailure, admin_connection

    ctx = CheckContext(target=inst.target, platform=inst.platform, answers=inst.answers,
                       redactor=inst.redactor)
    try:
        with admin_connection(ctx) as conn:
            number = int(conn.info.server_version)
    except ConnectFailure as failure:
        raise DeployError(f"cannot connect to the database to back it up: {failure.message}",
                          failure.remediation) from None
    major = number // 10000
    return major, f"{major}.{number % 10000}"


def _target_tool(inst: Installation, tool: str) -> tuple[int | None, str]:
    try:
        result = inst.target.run([tool, "--version"], timeout=20)
    except (CommandNotFound, TimeoutError):
        return None, ""
    return (tool_major(result.stdout), result.stdout.strip()) if result.ok else (None, "")


def _postgres_image(inst: Installation) -> str | None:
    """The PostgreSQL image the deployment already has (docker-compose.yml), if present."""
    if inst.platform != "compose":
        return None
    for name, spec in inst.compose_services().items():
        image = inst.service_image(name)
        if "postgres" in image or "postgres" in str(spec.get("image", "")):
            try:
                inst.client().images.get(image)
            except Exception:
                log.info("the PostgreSQL image %s is not on the target", image)
                continue
            return image
    return None


def _image_tool_version(inst: Installation, image: str, tool: str) -> tuple[int | None, str]:
    client = inst.client()
    try:
        output = client.containers.run(image, [tool, "--version"], remove=True,
                                       network_mode="none")
    except Exception as exc:
        log.info("%s --version in %s failed: %s", tool, image, exc)
        return None, ""
    text = output.decode("utf-8", "replace") if isinstance(output, bytes) else str(output)
    return tool_major(text), text.strip()


def _libpq_env(ext: _External, ca: str | None) -> dict[str, str]:
    env = {"PGPASSWORD": ext.password, "PGSSLMODE": ext.sslmode, "PGCONNECT_TIMEOUT": "15"}
    if ca:
        env["PGSSLROOTCERT"] = ca
    return env


def _pick_tool(inst: Installation, tool: str, ext: _External, server_major: int,
               forced: str | None) -> tuple[str, str, str | None]:
    """("target" | "image", tool version text, image)."""
    target_major, target_text = _target_tool(inst, tool)
    image = _postgres_image(inst)
    image_major, image_text = (None, "")
    if image is not None and (forced == "image" or target_major is None
                              or target_major < server_major):
        image_major, image_text = _image_tool_version(inst, image, tool)
    if forced == "image":
        target_major = None
    where = choose_external_tool(server_major, target_major, image_major, image)
    return where, target_text if where == "target" else image_text, image


def _dump_external(inst: Installation, dest: str, progress: Progress,
                   forced: str | None) -> DumpInfo:
    ext = _external(inst)
    major, version = server_version(inst)
    where, tool_text, image = _pick_tool(inst, "pg_dump", ext, major, forced)
    argv = ["pg_dump", "-h", ext.host, "-p", str(ext.port), "-U", ext.user, "-d", ext.database,
            "-Fc"]
    if where == "target":
        _run_on_target_to_file(inst, argv, _libpq_env(ext, ext.ca_on_target), dest, progress)
        method = f"{tool_text} on {inst.target.name}"
    else:
        assert image is not None
        _run_in_image(inst, image, argv, ext, dest, progress)
        method = f"{tool_text} in a container of {image}"
    return DumpInfo(ext.database, method, version, tool_text)


def _run_on_target_to_file(inst: Installation, argv: list[str], env: dict[str, str],
                           dest: str, progress: Progress) -> None:
    target = inst.target
    made = target.run(["mktemp", "-d"], timeout=20)
    if not made.ok:
        raise DeployError(f"cannot make a temporary folder on {target.name}: {made.output()}")
    folder = made.stdout.strip()
    remote = posixpath.join(folder, "backup.dump")
    try:
        result = target.run([*argv, "-f", remote], env=env, timeout=DUMP_TIMEOUT)
        if not result.ok:
            raise DeployError(f"pg_dump failed: {inst.redactor(result.output())[-800:]}")
        download(inst, remote, dest, progress)
    finally:
        target.run(["rm", "-rf", folder], timeout=60)


def download(inst: Installation, remote: str, dest: str, progress: Progress) -> None:
    """Copy a file of the target to this machine in chunks."""
    from installer.target import LocalTarget

    target = inst.target
    if isinstance(target, LocalTarget):
        with open(remote, "rb") as handle:
            _copy_stream(handle, dest, os.path.getsize(remote), progress)
        return
    from installer.ssh import SSHTarget

    assert isinstance(target, SSHTarget)
    with target._sftp_session() as sftp:  # noqa: SLF001 - the SSH target's own SFTP channel
        total = int(sftp.stat(remote).st_size or 0)
        with sftp.open(remote, "rb") as handle:
            handle.prefetch(total)
            _copy_stream(handle, dest, total, progress)


def upload(inst: Installation, local: str, remote_folder: str, progress: Progress) -> str:
    """Copy a local file into a folder of the target; its path there."""
    from installer.target import LocalTarget

    target = inst.target
    remote = posixpath.join(remote_folder, os.path.basename(local))
    if isinstance(target, LocalTarget):
        with open(local, "rb") as handle:
            _copy_stream(handle, remote, os.path.getsize(local), progress)
        return remote
    from installer.ssh import SSHTarget

    assert isinstance(target, SSHTarget)
    target.upload(local, remote, progress=progress)
    return remote


def _run_in_image(inst: Installation, image: str, argv: list[str], ext: _External,
                  dest: str | None, progress: Progress, upload_file: str | None = None) -> str:
    """Run pg_dump/pg_restore in a throwaway container of `image` on the host network."""
    client = inst.client()
    home = "/tmp/carto-installer"  # noqa: S108 - inside the throwaway container
    escaped = ext.password.replace("\\", "\\\\").replace(":", "\\:")  # .pgpass escapes
    passfile = f"*:*:*:*:{escaped}\n"
    env = {"PGPASSFILE": f"{home}/pgpass", "PGSSLMODE": ext.sslmode, "PGCONNECT_TIMEOUT": "15"}
    files: dict[str, str | bytes] = {"pgpass": passfile.encode()}
    if ext.ca_local and ext.sslmode != "disable":
        with open(ext.ca_local, "rb") as handle:
            files["ca.crt"] = handle.read()
        env["PGSSLROOTCERT"] = f"{home}/ca.crt"
    if upload_file:
        files["restore.dump"] = upload_file
        argv = [*argv, f"{home}/restore.dump"]
    else:
        argv = [*argv, "-f", f"{home}/backup.dump"]
    container = client.containers.create(image, argv, environment=env, network_mode="host",
                                         user="0:0")
    try:
        _put_folder(container, home, files)
        container.start()
        outcome = container.wait(timeout=DUMP_TIMEOUT)
        output = container.logs().decode("utf-8", "replace")
        if int(outcome.get("StatusCode", 1)) != 0:
            raise DeployError(f"{argv[0]} in a container of {image} failed: "
                              f"{inst.redactor(output.strip())[-800:]}")
        if dest is not None:
            fetch_from_container(container, f"{home}/backup.dump", dest, progress)
        return str(output)
    finally:
        container.remove(force=True)


def _put_folder(container: Container, folder: str, files: dict[str, str | bytes]) -> None:
    """Create `folder` (0700) in a stopped container and put `files` in it."""
    inside = folder.lstrip("/")
    _unpack_in_container(container, "/", {f"{inside}/{name}": source
                                          for name, source in files.items()},
                         0o600, (0, 0), new_folder=inside)


def _restore_external(inst: Installation, dump: str, progress: Progress,
                      forced: str | None) -> str:
    ext = _external(inst)
    major, _ = server_version(inst)
    where, tool_text, image = _pick_tool(inst, "pg_restore", ext, major, forced)
    argv = ["pg_restore", "-h", ext.host, "-p", str(ext.port), "-U", ext.user, "-d",
            ext.database, *RESTORE_FLAGS]
    if where == "target":
        made = inst.target.run(["mktemp", "-d"], timeout=20)
        if not made.ok:
            raise DeployError(f"cannot make a temporary folder on {inst.target.name}")
        folder = made.stdout.strip()
        try:
            remote = upload(inst, dump, folder, progress)
            result = inst.target.run([*argv, remote], env=_libpq_env(ext, ext.ca_on_target),
                                     timeout=DUMP_TIMEOUT)
        finally:
            inst.target.run(["rm", "-rf", folder], timeout=60)
        if not result.ok:
            raise DeployError(f"pg_restore failed: {inst.redactor(result.output())[-800:]}",
                              "the database is as it was (the restore runs in one transaction)")
    else:
        assert image is not None
        _run_in_image(inst, image, argv, ext, None, progress, upload_file=dump)
    return f"restored '{ext.database}' on {ext.host}:{ext.port} with {tool_text}"


# ---- entry points -------------------------------------------------------------------------


def dump_database(inst: Installation, dest: str, progress: Progress,
                  tool: str | None = None) -> DumpInfo:
    """Dump the metadata database into the local file `dest` (0600).

    `tool` forces where an external database's pg_dump runs ("target" or "image"); by
    default the target's, when it is recent enough.
    """
    db = inst.answers.database
    if db.bundled:
        if inst.platform != "compose":
            raise DeployError("backing up the chart's bundled PostgreSQL is not supported",
                              "the bundled database is for trials only; back up with "
                              "--no-database, or move to an external database")
        return _dump_bundled(inst, dest, progress)
    return _dump_external(inst, dest, progress, tool)


def restore_database(inst: Installation, dump: str, progress: Progress,
                     tool: str | None = None) -> str:
    db = inst.answers.database
    if db.bundled:
        if inst.platform != "compose":
            raise DeployError("restoring the chart's bundled PostgreSQL is not supported")
        return _restore_bundled(inst, dump, progress)
    return _restore_external(inst, dump, progress, tool)
