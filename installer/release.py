"""The vendor's Compose release (`compose.release`): a zip, a tar.gz or a folder.

When the deployment directory does not exist yet, render lays the release down there (through
the Target, so locally or over SSH). Everything is read into memory first and checked the way
the package is: regular files and folders only (no links, devices or FIFOs), no absolute
names and no `..`, a size limit per file, in total and on the number of members, so a hostile
or broken archive is refused before anything is written. A single top-level folder (GitHub's
`carto-selfhosted-2026.7.16/`) is taken as the release's root.
"""

from __future__ import annotations

import os
import posixpath
import stat
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from installer.errors import AnswersError

MAX_FILE_BYTES = 16 * 1024 * 1024
MAX_TOTAL_BYTES = 64 * 1024 * 1024
MAX_MEMBERS = 5000
REQUIRED = ("docker-compose.yml", "env.tpl", "VERSION", "MIN_VERSION")
KEY = "compose.release"
FIX = ("give the vendor's carto-selfhosted release as downloaded (the .zip or .tar.gz of a "
       "release tag) or its unpacked folder")


@dataclass(frozen=True)
class ReleaseFile:
    name: str  # relative, '/'-separated
    data: bytes
    executable: bool

    @property
    def mode(self) -> int:
        return 0o755 if self.executable else 0o644


def read_release(path: str) -> list[ReleaseFile]:
    """The release's files, checked; raises AnswersError (compose.release) naming the problem."""
    source = Path(os.path.expanduser(path))
    if source.is_symlink():
        raise AnswersError(KEY, f"{source} is a symbolic link", FIX)
    if source.is_dir():
        members = _from_folder(source)
    elif source.is_file():
        if zipfile.is_zipfile(source):
            members = _from_zip(source)
        else:
            members = _from_tar(source)
    else:
        raise AnswersError(KEY, f"{source} does not exist", FIX)
    files = _strip_top_folder(members)
    names = {f.name for f in files}
    missing = [name for name in REQUIRED if name not in names]
    if missing:
        raise AnswersError(KEY, f"{source} is not the vendor's Compose release: it lacks "
                           f"{', '.join(missing)} at its top", FIX)
    return files


def _check_name(name: str, source: Path) -> str:
    clean = name.replace("\\", "/")
    parts = [p for p in clean.split("/") if p not in ("", ".")]
    if clean.startswith("/") or any(p == ".." for p in parts) or not parts:
        raise AnswersError(KEY, f"{source} holds the member {name!r}, which points outside the "
                           "release (an absolute name or '..'): refused", FIX)
    return "/".join(parts)


class _Budget:
    def __init__(self, source: Path) -> None:
        self.source, self.total, self.count = source, 0, 0

    def take(self, name: str, size: int) -> None:
        self.count += 1
        self.total += size
        if size > MAX_FILE_BYTES:
            raise AnswersError(KEY, f"{self.source}: {name} is {size} bytes, more than any file "
                               f"of a release ({MAX_FILE_BYTES // 2**20} MiB): refused", FIX)
        if self.total > MAX_TOTAL_BYTES or self.count > MAX_MEMBERS:
            raise AnswersError(KEY, f"{self.source} is larger than a release "
                               f"({MAX_TOTAL_BYTES // 2**20} MiB, {MAX_MEMBERS} files): "
                               "refused", FIX)


def _from_folder(source: Path) -> list[ReleaseFile]:
    budget = _Budget(source)
    files: list[ReleaseFile] = []
    for root, dirs, names in os.walk(source, followlinks=False):
        dirs[:] = [d for d in dirs if d != ".git"]
        for name in sorted([*dirs, *names]):
            path = Path(root) / name
            info = path.lstat()
            relative = path.relative_to(source).as_posix()
            if stat.S_ISLNK(info.st_mode):
                raise AnswersError(KEY, f"{source} holds the link {relative}: refused", FIX)
            if stat.S_ISDIR(info.st_mode):
                continue
            if not stat.S_ISREG(info.st_mode):
                raise AnswersError(KEY, f"{source} holds {relative}, which is not a regular "
                                   "file: refused", FIX)
            budget.take(relative, info.st_size)
            with path.open("rb") as handle:
                data = handle.read(MAX_FILE_BYTES + 1)
            files.append(ReleaseFile(relative, data, bool(info.st_mode & 0o111)))
    return files


def _from_zip(source: Path) -> list[ReleaseFile]:
    budget = _Budget(source)
    files: list[ReleaseFile] = []
    try:
        archive = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError) as exc:
        raise AnswersError(KEY, f"{source} is not a readable zip ({exc})", FIX) from None
    with archive:
        for member in archive.infolist():
            name = _check_name(member.filename, source)
            unix_mode = member.external_attr >> 16
            if stat.S_ISLNK(unix_mode):
                raise AnswersError(KEY, f"{source} holds the link {name}: refused", FIX)
            if member.is_dir():
                continue
            if unix_mode and not stat.S_ISREG(unix_mode):
                raise AnswersError(KEY, f"{source} holds {name}, which is not a regular file: "
                                   "refused", FIX)
            budget.take(name, member.file_size)
            try:
                with archive.open(member) as handle:
                    data = handle.read(MAX_FILE_BYTES + 1)
            except (zipfile.BadZipFile, OSError, RuntimeError) as exc:
                raise AnswersError(KEY, f"{source}: {name} cannot be extracted ({exc})",
                                   FIX) from None
            if len(data) > member.file_size:  # the header lied about the size
                raise AnswersError(KEY, f"{source}: {name} is larger than its zip entry says: "
                                   "refused", FIX)
            files.append(ReleaseFile(name, data, bool(unix_mode & 0o111)))
    return files


def _from_tar(source: Path) -> list[ReleaseFile]:
    budget = _Budget(source)
    files: list[ReleaseFile] = []
    try:
        archive = tarfile.open(source, "r:*")
    except (tarfile.TarError, OSError) as exc:
        raise AnswersError(KEY, f"{source} is neither a zip nor a readable tar archive ({exc})",
                           FIX) from None
    with archive:
        try:
            for member in archive:
                name = _check_name(member.name, source)
                if member.issym() or member.islnk():
                    raise AnswersError(KEY, f"{source} holds the link {name}: refused", FIX)
                if member.isdir() or member.type in (tarfile.XHDTYPE, tarfile.XGLTYPE):
                    continue
                if not member.isfile():
                    raise AnswersError(KEY, f"{source} holds {name}, which is not a regular "
                                       "file: refused", FIX)
                budget.take(name, member.size)
                handle = archive.extractfile(member)
                data = handle.read(MAX_FILE_BYTES + 1) if handle else b""
                files.append(ReleaseFile(name, data, bool(member.mode & 0o111)))
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise AnswersError(KEY, f"{source} is a damaged archive ({exc})", FIX) from None
    return files


def _strip_top_folder(files: list[ReleaseFile]) -> list[ReleaseFile]:
    tops = {f.name.split("/", 1)[0] for f in files}
    if len(tops) == 1 and all("/" in f.name for f in files):
        top = tops.pop() + "/"
        return [ReleaseFile(f.name[len(top):], f.data, f.executable) for f in files]
    return files


def release_file(files: list[ReleaseFile], name: str) -> bytes | None:
    for file in files:
        if file.name == name:
            return file.data
    return None


def folders(directory: str, files: list[ReleaseFile]) -> list[str]:
    """The folders to create under `directory`, parents first."""
    out: list[str] = []
    for file in files:
        parent = posixpath.dirname(file.name)
        chain: list[str] = []
        while parent:
            chain.append(parent)
            parent = posixpath.dirname(parent)
        for folder in reversed(chain):
            path = posixpath.join(directory, folder)
            if path not in out:
                out.append(path)
    return out
