"""`backup`: one archive (0600) that rebuilds the installation.

Members: `answers.yaml` (references to secrets, never inline ones), `package/...` (the
customer package as given), `deployment/customer.env`, `deployment/.env`, `deployment/certs/...`
(Compose), `kubernetes/customizations.yaml`, `kubernetes/values.yaml` and
`kubernetes/secrets.json` (the Secrets the installer created), `database/<name>.dump` (pg_dump's
custom format) with `database/INFO.json`, and `MANIFEST.json` listing every member's SHA-256.

Each backup is recorded (time, archive path, SHA-256; no secrets) in BACKUP_RECORD in the
deployment directory (Compose, on the target) or the working directory (Kubernetes), so an
upgrade can require a recent one (`latest_backup`).
"""

from __future__ import annotations

import json
import logging
import os
import posixpath
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from installer import __version__
from installer.errors import InputError
from installer.operate.archive import ArchiveWriter
from installer.operate.installation import MANAGED_BY_LABEL, Installation
from installer.target import sha256_file
from installer.yamldata import JSONObject

log = logging.getLogger("installer.operate.backup")

BACKUP_RECORD = ".carto-installer-backups.json"
KEEP_RECORDS = 50
MAX_CONFIG_FILE = 64 << 20  # configuration files are small; refuse anything else
COMPOSE_FILES = ("customer.env", ".env")


@dataclass
class BackupResult:
    path: str
    sha256: str
    members: list[str]
    database: str  # what the dump was, or why there is none
    encrypted: bool


@dataclass(frozen=True)
class BackupRecord:
    time: datetime
    archive: str
    sha256: str
    database: bool


def default_output(answers_domain: str | None) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"carto-backup-{answers_domain or 'carto'}-{stamp}.tar"


# ---- collecting -----------------------------------------------------------------------------


def package_members(package: str | None) -> dict[str, str]:
    """Archive name -> local path for the customer package (a folder's files, or the zip)."""
    if not package:
        return {}
    path = Path(package)
    if path.is_file():
        return {f"package/{path.name}": str(path)}
    if not path.is_dir():
        raise InputError(f"package: {package} does not exist", "fix `package` in the answers")
    out: dict[str, str] = {}
    for file in sorted(path.rglob("*")):
        if file.is_symlink() or not file.is_file():
            continue
        if file.stat().st_size > MAX_CONFIG_FILE:
            raise InputError(f"package: {file} is larger than a package file can be")
        out["package/" + file.relative_to(path).as_posix()] = str(file)
    return out


def compose_members(inst: Installation) -> dict[str, bytes]:
    inst.refuse_links([*COMPOSE_FILES, "certs"])
    out: dict[str, bytes] = {}
    for name in COMPOSE_FILES:
        data = inst.read(name)
        if data is not None:
            out[f"deployment/{name}"] = data
    certs = posixpath.join(inst.directory, "certs")
    if inst.target.exists(certs):
        for name in inst.target.listdir(certs):
            data = inst.read(posixpath.join("certs", name))
            if data is not None:
                out[f"deployment/certs/{name}"] = data
    if not out:
        raise InputError(f"{inst.directory} holds no customer.env, .env or certs/: nothing is "
                         "installed there", "check compose.directory in the answers")
    return out


def installer_secrets(inst: Installation) -> list[JSONObject]:
    """The Secrets the installer created for the release (labelled by it), as API objects
    without server-side fields."""
    kube = inst.kube()
    found = kube.kubectl_json("get", "secrets", "-l",
                              f"{MANAGED_BY_LABEL},app.kubernetes.io/instance={inst.release}",
                              namespace=True)
    out = []
    for item in found.get("items", []):
        meta = item.get("metadata", {})
        out.append({"apiVersion": "v1", "kind": "Secret", "type": item.get("type", "Opaque"),
                    "metadata": {"name": meta.get("name"), "namespace": meta.get("namespace"),
                                 "labels": meta.get("labels", {})},
                    "data": item.get("data", {})})
    return out


def kubernetes_members(inst: Installation) -> dict[str, bytes]:
    from installer.render.helm import CUSTOMIZATIONS

    out: dict[str, bytes] = {}
    custom = inst.kube_folder() / CUSTOMIZATIONS
    if custom.is_file():
        out[f"kubernetes/{CUSTOMIZATIONS}"] = custom.read_bytes()
    kube = inst.kube()
    values = kube.helm("get", "values", inst.release, "-o", "yaml", namespace=True)
    if values.ok:
        out["kubernetes/values.yaml"] = values.stdout.encode()
    else:
        log.info("helm get values failed: %s", values.output())
    secrets = installer_secrets(inst)
    out["kubernetes/secrets.json"] = (json.dumps({"apiVersion": "v1", "kind": "List",
                                                  "items": secrets}, indent=1) + "\n").encode()
    return out


# ---- the backup -----------------------------------------------------------------------------


def backup(inst: Installation, output: str, *, passphrase: str | None = None,
           include_database: bool = True, dump_tool: str | None = None) -> BackupResult:
    from installer.answers import dump_answers
    from installer.operate.database import dump_database

    folder = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
        raise InputError(f"--output: cannot write to {output} (no such folder or not writable)")
    with inst.step("collect configuration") as detail:
        files = package_members(inst.answers.package)
        contents: dict[str, bytes] = {"answers.yaml": dump_answers(inst.answers).encode()}
        if inst.platform == "compose":
            contents.update(compose_members(inst))
        else:
            contents.update(kubernetes_members(inst))
        detail.append(f"{len(files) + len(contents)} file(s)")
    with tempfile.TemporaryDirectory(prefix=".carto-backup-", dir=folder) as work:
        os.chmod(work, 0o700)
        dump_path: str | None = None
        database_note = "not included (--no-database)"
        info: JSONObject = {}
        if include_database:
            with inst.step("dump database") as detail:
                from installer.operate.database import describe_database

                dump_path = os.path.join(work, "database.dump")
                dumped = dump_database(inst, dump_path, inst.progress("dump database"),
                                       tool=dump_tool)
                info = dumped.as_dict()
                size = os.path.getsize(dump_path)
                database_note = f"{describe_database(inst)}: {dumped.method}, {size} bytes"
                detail.append(database_note)
        with inst.step("write archive") as detail:
            # not gzip'ed: the dump is compressed already (see archive.py)
            writer = ArchiveWriter(output, passphrase, inst.progress("write archive"),
                                   compress=False)
            with writer:
                for name_in, data in contents.items():
                    writer.add_bytes(name_in, data)
                for name_in, local in files.items():
                    writer.add_file(name_in, local)
                if dump_path is not None:
                    writer.add_bytes("database/INFO.json",
                                     (json.dumps(info, indent=1) + "\n").encode())
                    writer.add_file(f"database/{info.get('database', 'database')}.dump",
                                    dump_path)
                writer.add_manifest({
                    "format": 1, "kind": "carto-installer backup",
                    "tool_version": __version__,
                    "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
                    "platform": inst.platform, "target": inst.target.name,
                    "domain": inst.answers.domain,
                    "directory": inst.directory if inst.platform == "compose" else None,
                    "database": info or None,
                })
            digest = sha256_file(output)
            detail.append(f"{output}, {os.path.getsize(output)} bytes")
    record_backup(inst, BackupRecord(datetime.now(UTC), os.path.abspath(output), digest,
                                     dump_path is not None))
    return BackupResult(os.path.abspath(output), digest, [m.path for m in writer.members],
                        database_note, passphrase is not None)


# ---- the record of backups (for upgrade's "recent backup" gate) -----------------------------


def _record_location(inst: Installation) -> tuple[bool, str]:
    """(on the target?, path)."""
    if inst.platform == "compose":
        return True, posixpath.join(inst.directory, BACKUP_RECORD)
    return False, str(inst.kube_folder() / BACKUP_RECORD)


def read_records(inst: Installation) -> list[BackupRecord]:
    on_target, path = _record_location(inst)
    try:
        raw = inst.target.read_file(path) if on_target else Path(path).read_bytes()
        entries = json.loads(raw).get("backups", [])
        return [BackupRecord(datetime.fromisoformat(e["time"]), str(e["archive"]),
                             str(e["sha256"]), bool(e.get("database"))) for e in entries]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return []


def record_backup(inst: Installation, record: BackupRecord) -> None:
    from installer.target import atomic_write

    records = [*read_records(inst), record][-KEEP_RECORDS:]
    data = (json.dumps({"backups": [
        {"time": r.time.isoformat(timespec="seconds"), "archive": r.archive,
         "sha256": r.sha256, "database": r.database} for r in records]}, indent=1)
        + "\n").encode()
    on_target, path = _record_location(inst)
    if on_target:
        inst.target.write_file(path, data, 0o600)
    else:
        atomic_write(path, data, 0o600)
    log.info("recorded the backup %s in %s", record.archive, path)


def latest_backup(inst: Installation, within: timedelta | None = None,
                  now: datetime | None = None) -> BackupRecord | None:
    """The newest recorded backup (made within `within` of `now`, when given)."""
    records = sorted(read_records(inst), key=lambda r: r.time)
    if not records:
        return None
    newest = records[-1]
    if within is not None and (now or datetime.now(UTC)) - newest.time > within:
        return None
    return newest
