"""Reading files the user names (answers, secrets, certificates, CA bundles, the package),
with limits: a device, a FIFO or a socket is refused before it is opened for reading, and
no read takes more than a fixed number of bytes, whatever the file or a zip header claims.

A `FileRefused` is an `OSError` whose `strerror` says what is wrong, so callers that already
turn an OSError into a message ("cannot read X: <strerror>") need no change.
"""

from __future__ import annotations

import errno
import os
import stat
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import zipfile

KIB, MIB = 1024, 1024 * 1024
SECRET_LIMIT = 1 * MIB  # a password, a token, a key.json
ANSWERS_LIMIT = 1 * MIB
PACKAGE_FILE_LIMIT = 16 * MIB
# A CA bundle can be large (a whole system trust store is under 1 MiB, but some
# organisations ship tens of MiB); still bounded.
CERTIFICATE_LIMIT = 64 * MIB
_CHUNK = 1 * MIB


class FileRefused(OSError):
    """A file the installer will not read (not a regular file, or too large)."""


def _kind(mode: int) -> str:
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _size_text(limit: int) -> str:
    return f"{limit // MIB} MiB" if limit >= MIB else f"{limit // KIB} KiB"


def require_regular_file(path: str | os.PathLike[str]) -> os.stat_result:
    """Refuse at once what is not a regular file (a FIFO would block whoever opens it); the
    file's stat when it is one."""
    name = os.fspath(path)
    info = os.stat(name)
    if stat.S_ISDIR(info.st_mode):
        raise IsADirectoryError(errno.EISDIR, "is a folder, not a file", name)
    if not stat.S_ISREG(info.st_mode):
        raise FileRefused(errno.EINVAL, f"{_kind(info.st_mode)}, not a file", name)
    return info


def read_user_file(path: str | os.PathLike[str], *, limit: int) -> bytes:
    """The whole content of a regular file of at most `limit` bytes.

    Raises FileNotFoundError / PermissionError / IsADirectoryError as usual, and FileRefused
    for a device, FIFO or socket (decided from stat, so a FIFO never blocks) or a file
    larger than `limit` (decided from the bytes actually read, so /proc-like files that
    report size 0 are bounded too).
    """
    name = os.fspath(path)
    info = require_regular_file(name)
    too_large = FileRefused(errno.EFBIG, f"larger than {_size_text(limit)}", name)
    if info.st_size > limit:
        raise too_large
    # O_NONBLOCK: should the path be swapped for a FIFO after the stat, open does not wait
    # for a writer; fstat below then refuses it.
    fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise FileRefused(errno.EINVAL, f"{_kind(os.fstat(fd).st_mode)}, not a file", name)
        os.set_blocking(fd, True)
        chunks: list[bytes] = []
        total = 0
        while True:
            chunk = os.read(fd, min(_CHUNK, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:
                raise too_large
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_zip_member(archive: zipfile.ZipFile, member: zipfile.ZipInfo, *, limit: int) -> bytes:
    """A zip member's content, refusing it once more than `limit` bytes come out of it
    (counted as they are inflated: a header that lies about the size does not matter)."""
    if member.file_size > limit:
        raise FileRefused(errno.EFBIG, f"larger than {_size_text(limit)}", member.filename)
    chunks: list[bytes] = []
    total = 0
    with archive.open(member) as stream:
        while True:
            chunk = stream.read(min(_CHUNK, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:
                raise FileRefused(errno.EFBIG, f"inflates to more than {_size_text(limit)}",
                                  member.filename)
    return b"".join(chunks)


__all__ = ["ANSWERS_LIMIT", "CERTIFICATE_LIMIT", "PACKAGE_FILE_LIMIT", "SECRET_LIMIT",
           "FileRefused", "read_user_file", "read_zip_member", "require_regular_file"]
