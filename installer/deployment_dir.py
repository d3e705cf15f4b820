"""Is the deployment directory the vendor's Compose release? Asked at the step that names it,
not first at Review, with where the release comes from.

The vendor ships the Compose deployment directory (docker-compose.yml, env.tpl, VERSION,
MIN_VERSION, install.sh) as its public repository CartoDB/carto-selfhosted, one tag per
release; the customer package (customer.env, key.json) comes separately from CARTO.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from installer.answers import Answers
    from installer.target import Target

VENDOR_FILES = ("docker-compose.yml", "env.tpl", "VERSION", "MIN_VERSION")
RELEASES_URL = "https://github.com/CartoDB/carto-selfhosted/releases"
WHERE_FROM = (
    "CARTO's Compose release is public: download a release from "
    f"{RELEASES_URL} and unpack it there, or `git clone --branch <release> "
    "https://github.com/CartoDB/carto-selfhosted.git {directory}`; your package from CARTO "
    "(customer.env, key.json) is a separate thing, asked for later"
)


@dataclass(frozen=True)
class DirectoryVerdict:
    usable: bool
    message: str
    remediation: str = ""


def inspect_deployment_directory(target: Target, directory: str,
                                 answers: Answers | None = None) -> DirectoryVerdict:
    """Whether `directory` on the target holds the vendor's release (or a release given in
    the answers, `compose.release`, can lay it down there)."""
    directory = posixpath.normpath(directory)
    release = getattr(answers.compose, "release", None) if answers is not None else None
    fix = (WHERE_FROM.format(directory=directory)
           + "; or point the deployment directory at the folder where it is")
    if not target.exists(directory):
        if release:
            return DirectoryVerdict(True, f"{directory} will be made from the release {release}")
        return DirectoryVerdict(False, f"{directory} does not exist on {target.name}: it must "
                                "hold the vendor's Compose release (docker-compose.yml, "
                                "env.tpl, VERSION, MIN_VERSION)", fix)
    missing = [n for n in VENDOR_FILES if not target.exists(posixpath.join(directory, n))]
    if missing:
        if release:
            return DirectoryVerdict(True, f"{directory} will be filled from the release "
                                    f"{release}")
        return DirectoryVerdict(False, f"{directory} on {target.name} is not the vendor's "
                                f"Compose release: it lacks {', '.join(missing)}", fix)
    version = _read_version(target, posixpath.join(directory, "VERSION"))
    return DirectoryVerdict(True, f"{directory} holds the vendor's release"
                            + (f" {version}" if version else ""))


def _read_version(target: Target, path: str) -> str:
    try:
        text = target.read_file(path)[:200].decode("utf-8", "replace")
    except OSError:
        return ""
    first = text.strip().splitlines()[0] if text.strip() else ""
    return first if first.replace(".", "").replace("-", "").isalnum() else ""
