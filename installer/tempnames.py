"""Names of the temporary files an atomic write leaves next to its destination.

An atomic write puts the new content in a temporary file in the destination's folder and
renames it over the destination. A write killed in between (SIGKILL, a dropped SSH
connection, power loss) leaves that temporary file behind, so the next render must recognise
it: every writer names its temporary files with `temp_path_for`, and the cleaner asks
`temp_file_owner` which file an entry was made for. One definition, so they cannot drift apart
(they did: SFTP wrote 12 hex digits where the cleaner expected 8 characters).
"""

from __future__ import annotations

import posixpath
import re
import secrets

_RANDOM_BYTES = 6  # 12 hex digits: unguessable, so nobody can plant a file under that name
TEMP_SUFFIX = ".tmp"

_TEMP_NAME = re.compile(
    r"^\.(?P<name>.+)\.(?:"
    r"[0-9a-f]{12}"  # temp_path_for (SSH: SFTP and sudo writes)
    r"|[a-z0-9_]{8}"  # tempfile.mkstemp(prefix=".NAME.", suffix=".tmp"), local atomic_write
    r")\.tmp$"
)


def temp_path_for(path: str) -> str:
    """A fresh temporary path beside `path` (same folder, so the rename stays atomic)."""
    folder, name = posixpath.split(path)
    return posixpath.join(folder, f".{name}.{secrets.token_hex(_RANDOM_BYTES)}{TEMP_SUFFIX}")


def temp_file_owner(entry: str) -> str | None:
    """The file name an interrupted write's temporary `entry` (a bare name) was made for,
    or None when `entry` is not such a temporary file."""
    match = _TEMP_NAME.match(entry)
    return match.group("name") if match else None


__all__ = ["TEMP_SUFFIX", "temp_file_owner", "temp_path_for"]
