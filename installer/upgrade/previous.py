"""The files an upgrade replaces, kept in `.carto-installer-previous/` (0700) with a manifest
of their modes and groups, and put back when the upgrade fails before the migrations ran."""

from __future__ import annotations

import json
import logging
import posixpath
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from installer.errors import DeployError

if TYPE_CHECKING:
    from installer.target import Target

log = logging.getLogger("installer.upgrade")

PREVIOUS_DIR = ".carto-installer-previous"
PREVIOUS_MANIFEST = "manifest.json"


def _read(target: Target, path: str, root: str) -> bytes | None:
    """A file below the deployment directory `root` (a link there is refused, never
    followed), None when absent."""
    from installer.render.compose import _read_target

    return _read_target(target, path, root)


def _text(data: bytes | None) -> str:
    return (data or b"").decode("utf-8", "replace").strip()



def keep_previous(target: Target, directory: str, paths: Sequence[str], version: str,
                  sudo: bool = False) -> str:
    """Copy the files an upgrade will replace into PREVIOUS_DIR (0700), with a manifest of
    their modes and groups and of the files that did not exist (removed when put back)."""
    from installer.render.compose import _stats

    keep = posixpath.join(directory, PREVIOUS_DIR)
    if target.exists(keep):
        for name in _walk(target, keep):
            target.remove(name)
    target.makedirs(keep, 0o700)
    target.run(["chmod", "700", keep], timeout=15, sudo=sudo)
    existing = [p for p in dict.fromkeys(paths) if _read(target, p, directory) is not None]
    stats = _stats(target, existing)
    entries: list[dict[str, Any]] = []
    for path in dict.fromkeys(paths):
        relative = posixpath.relpath(path, directory)
        data = _read(target, path, directory)
        if data is None:
            entries.append({"path": relative, "absent": True})
            continue
        copy = posixpath.join(keep, "files", relative)
        target.makedirs(posixpath.dirname(copy), 0o700)
        target.write_deployment_file(copy, data, 0o600, directory)
        bits, gid = stats.get(path, (0o600, -1))
        entries.append({"path": relative, "mode": bits, "gid": gid})
    manifest = {"version": version, "saved_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "files": entries}
    target.write_deployment_file(posixpath.join(keep, PREVIOUS_MANIFEST),
                                 (json.dumps(manifest, indent=1) + "\n").encode(), 0o600,
                                 directory)
    log.info("kept %d file(s) of release %s in %s", len(entries), version, keep)
    return keep


def _walk(target: Target, folder: str) -> list[str]:
    """Files under `folder` (deepest first is not needed: only files are removed)."""
    out: list[str] = []
    for name in target.listdir(folder):
        path = posixpath.join(folder, name)
        try:
            target.listdir(path)
        except (NotADirectoryError, OSError):
            out.append(path)
            continue
        out += _walk(target, path)
    return out


def put_back_previous(target: Target, directory: str, sudo: bool = False) -> list[str]:
    """Restore what keep_previous saved; files that did not exist are removed. Returns the
    paths put back."""
    keep = posixpath.join(directory, PREVIOUS_DIR)
    raw = _read(target, posixpath.join(keep, PREVIOUS_MANIFEST), directory)
    if raw is None:
        raise DeployError(f"{keep}/{PREVIOUS_MANIFEST} is missing: the previous files cannot "
                          "be put back automatically")
    restored: list[str] = []
    for entry in json.loads(raw)["files"]:
        path = posixpath.join(directory, entry["path"])
        if entry.get("absent"):
            try:
                target.remove(path)
            except FileNotFoundError:
                pass
            continue
        data = target.read_deployment_file(posixpath.join(keep, "files", entry["path"]),
                                           directory)
        mode, gid = int(entry.get("mode", 0o600)), int(entry.get("gid", -1))
        target.write_deployment_file(path, data, mode & 0o700 if gid >= 0 else mode,
                                     directory)
        if gid >= 0:
            for argv in (["chgrp", "--", str(gid), path], ["chmod", "--", f"{mode:o}", path]):
                try:
                    target.run(argv, timeout=15, sudo=sudo)
                except (OSError, TimeoutError):
                    log.warning("could not restore the group/mode of %s", path)
        restored.append(path)
    return restored

