"""The vendor's real Compose deployment directories, pinned in `<project root>/../shared/vendor`.

They are never copied into the project: tests copy them into a temporary folder at run time.
A clone of the project alone has no such folder; its tests then skip saying why, except under
CI=true, where the folder is part of the checkout and its absence is a failure.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.support.vendor_files import VENDOR, vendor_missing

OLD_RELEASE, NEW_RELEASE = "compose-2026.5.14", "compose-2026.7.16"
# Their VERSION files.
OLD_VERSION, NEW_VERSION = "2026.5.14", "2026.7.16"


def vendor_release(name: str) -> Path:
    """The folder of one pinned release (read-only), or skip/fail when it is not there."""
    path = VENDOR / name
    if not (path / "docker-compose.yml").is_file():
        message = (f"the vendor's deployment directory {path} is absent (it lives beside the "
                   "project, in ../shared/vendor)")
        vendor_missing(message)
    return path


def releases() -> list[str]:
    """Every pinned Compose release (for tests parametrised over them)."""
    found = sorted(p.name for p in VENDOR.glob("compose-*") if p.is_dir())
    return found or [OLD_RELEASE, NEW_RELEASE]


def copy_release(name: str, dest: Path) -> Path:
    """A writable copy of a release at `dest` (the files' read-only modes are not kept)."""
    source = vendor_release(name)
    shutil.copytree(source, dest, copy_function=shutil.copyfile)
    for path in [dest, *dest.rglob("*")]:
        path.chmod(0o755 if path.is_dir() or path.suffix == ".sh" else 0o644)
    return dest
