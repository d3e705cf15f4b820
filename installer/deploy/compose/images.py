"""The images a Compose deployment runs: which of an archive's images the target's engine
lacks, and loading an images archive there with `docker load`.

Images archives loaded on a target that is not this machine: uploaded first (resumable,
checked with sha256, through `Target.upload`), then `docker load`ed there by the target's own
docker. Streaming one through the Docker API would start again from zero after a dropped
connection; gigabytes over a slow link should not."""

from __future__ import annotations

import contextlib
import json
import os
import posixpath
import tarfile
from typing import TYPE_CHECKING

from installer.deploy import LogLine
from installer.deploy.compose.project import UP_TIMEOUT
from installer.errors import DeployError, InputError, InstallerError, TargetError
from installer.target import Progress, Target
from installer.userfiles import require_regular_file

if TYPE_CHECKING:
    from installer.deploy.compose.project import _Run


def archive_images(path: str) -> dict[str, list[str]]:
    """Image id -> tags, from a `docker save` archive's manifest.json."""
    try:
        require_regular_file(path)
        with tarfile.open(path) as archive:
            member = archive.extractfile("manifest.json")
            manifest = json.loads(member.read()) if member else []
    except (OSError, tarfile.TarError, KeyError, ValueError) as exc:
        raise InputError(f"compose.images_archive: {path} is not a `docker save` archive "
                         f"({exc})", "create it with `docker save -o carto-images.tar IMAGE...`"
                         ) from None
    images: dict[str, list[str]] = {}
    for entry in manifest if isinstance(manifest, list) else []:
        config = str(entry.get("Config", ""))
        digest = config.rsplit("/", 1)[-1].removesuffix(".json")
        images["sha256:" + digest] = list(entry.get("RepoTags") or [])
    return images


def _images_missing(run: _Run, images: dict[str, list[str]]) -> list[str]:
    """Images of the archive that the target's engine lacks (or lacks under their tags)."""
    client = run.client()
    missing = []
    for image_id, tags in images.items():
        try:
            present = client.images.get(image_id)
        except Exception:
            missing.append(image_id)
            continue
        if not set(tags) <= set(present.tags or []):
            missing.append(image_id)
    return missing


def load_images(run: _Run, path: str, images: dict[str, list[str]]) -> tuple[bool, str]:
    """`docker load` the archive on the target, unless every image in it is already there."""
    if images and not _images_missing(run, images):
        return False, f"all {len(images)} image(s) in {path} are already loaded"
    if not run.target.is_local:
        # Over SSH: a resumable, checksummed upload first, then `docker load` on the target,
        # so a dropped connection does not start gigabytes again from zero.
        shown = [-1]

        def progress(done: int, total: int) -> None:
            percent = done * 100 // total if total else 100
            if percent // 10 != shown[0] // 10 or done == total:
                shown[0] = percent
                run.emit(LogLine(f"uploading {os.path.basename(path)}: {percent}% "
                                 f"({done // 2**20} of {total // 2**20} MiB)"))

        try:
            sudo = bool(run.answers.target and run.answers.target.sudo)
            tags = sorted(load_images_archive(run.target, path, progress=progress, sudo=sudo))
        except InstallerError:
            raise
        except Exception as exc:  # paramiko's errors are not OSErrors
            raise DeployError(f"uploading or loading {path} failed: {exc}",
                              "run deploy again: the upload resumes where it stopped") from None
        for tag in tags:
            run.emit(LogLine(f"loaded {tag}"))
        return True, f"loaded {len(tags)} image tag(s) from {path}"
    loader = run.target.docker_client(timeout=UP_TIMEOUT)
    try:
        with open(path, "rb") as handle:
            loaded = loader.images.load(handle)
    except Exception as exc:
        raise DeployError(f"docker load of {path} failed: {exc}",
                          "check the archive (`docker load -i` it by hand to see why) and the "
                          "free disk space on the target") from None
    tags = sorted(tag for image in loaded for tag in (image.tags or []))
    for tag in tags:
        run.emit(LogLine(f"loaded {tag}"))
    return True, f"loaded {len(tags)} image tag(s) from {path}"


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
