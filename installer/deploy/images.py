"""Images archives loaded on a target that is not this machine: uploaded first (resumable,
checked with sha256, through `Target.upload`), then `docker load`ed there by the target's own
docker. Streaming one through the Docker API would start again from zero after a dropped
connection; gigabytes over a slow link should not."""

from __future__ import annotations

import contextlib
import os
import posixpath

from installer.errors import TargetError
from installer.target import Progress, Target


def load_images_archive(target: Target, local_path: str, progress: Progress | None = None,
                        timeout: float = 3600.0, *, sudo: bool = False) -> list[str]:
    """`docker load` a local images archive on the target; the image tags loaded.

    The archive is uploaded first (resumable, checked with sha256) into the login user's
    ~/.cache/carto-installer, then loaded from there by the target's own `docker` (with
    sudo when `sudo`: the answers' target.sudo) and removed."""
    found = target.run(["sh", "-c", 'mkdir -p -m 700 -- "$HOME/.cache/carto-installer" && '
                        'cd -- "$HOME/.cache/carto-installer" && pwd -P'], timeout=30)
    if not found.ok or not found.stdout.strip().startswith("/"):
        raise TargetError(f"cannot make a folder for the images archive on {target.name}: "
                          f"{found.output()[:200]}",
                          "check that the login user has a writable home folder")
    remote = posixpath.join(found.stdout.strip(), os.path.basename(local_path))
    target.upload(local_path, remote, progress=progress)
    result = target.run(["docker", "load", "-i", remote], sudo=sudo, timeout=timeout)
    if not result.ok:
        raise TargetError(f"docker load on {target.name} failed: "
                          f"{result.output().splitlines()[-1] if result.output() else ''}",
                          "check the free disk space on the target (`df -h`) and the "
                          f"archive (`docker load -i {remote}` by hand); the upload is "
                          "kept, so a re-run does not send it again")
    with contextlib.suppress(OSError):
        target.remove(remote)
    loaded = []
    for line in result.stdout.splitlines():
        name = line.partition("Loaded image:")[2].strip() or \
            line.partition("Loaded image ID:")[2].strip()
        if name:
            loaded.append(name)
    return loaded
