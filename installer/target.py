"""The machine that will run CARTO, behind one interface.

Checks and the deployment reach the machine only through a `Target`: run a command (always an
argument list, never a shell string), read and write files, open a TCP connection from it, talk
to its Docker engine. `LocalTarget` is this machine; the SSH target implements the same methods
over one SSH connection. Every command run is logged, with secrets redacted by the log filter.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import posixpath
import shlex
import shutil
import socket
import stat
import subprocess
import tempfile
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from installer.errors import TargetError

if TYPE_CHECKING:  # the docker SDK is imported lazily: it costs start-up time
    import docker

log = logging.getLogger("installer.target")

Progress = Callable[[int, int], None]  # (bytes done, bytes total)
_CHUNK = 1 << 20


@dataclass
class CommandResult:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def output(self) -> str:
        return (self.stdout + self.stderr).strip()


class CommandNotFound(OSError):
    """The program does not exist on the target."""


class LinkRefused(OSError):
    """A file or folder of the deployment is a symbolic link, which the installer does not
    follow: whoever made it could point a read at a secret or a write at any file."""

    def __init__(self, path: str) -> None:
        super().__init__(errno.ELOOP, "is a symbolic link, which the installer does not follow "
                         "in the deployment directory", path)
        self.path = path


def _components_below(root: str, path: str) -> list[str]:
    """The folders from `root` (excluded) down to `path` (included), or ValueError when
    `path` is not inside `root`."""
    root = posixpath.normpath(root)
    path = posixpath.normpath(path)
    relative = posixpath.relpath(path, root)
    if relative == "." or relative.startswith("../") or relative == "..":
        raise ValueError(f"{path} is not inside {root}")
    parts = relative.split("/")
    return [posixpath.join(root, *parts[: i + 1]) for i in range(len(parts))]


@dataclass
class StagedFile:
    """A managed file's new content, ready to be switched into place."""

    path: str
    root: str
    mode: int
    data: bytes | None = None  # held in memory (targets without staging on disk)
    temp_name: str | None = None  # the fsynced temp file next to `path` (LocalTarget)


class Target(ABC):
    """Where checks look and deployments happen."""

    #: "local" or "user@host:port", as shown in reports.
    name: str
    is_local: bool

    @abstractmethod
    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float = 30.0,
        input: bytes | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        sudo: bool = False,
    ) -> CommandResult:
        """Run a program. Raises CommandNotFound when it does not exist, TimeoutError on timeout."""

    @abstractmethod
    def read_file(self, path: str) -> bytes:
        """Whole file contents; FileNotFoundError / PermissionError as usual."""

    @abstractmethod
    def write_file(self, path: str, data: bytes, mode: int = 0o600) -> None:
        """Atomically replace `path` (temp file in the same folder, fsync, rename)."""

    @abstractmethod
    def exists(self, path: str) -> bool: ...

    @abstractmethod
    def makedirs(self, path: str, mode: int = 0o755) -> None: ...

    @abstractmethod
    def listdir(self, path: str) -> list[str]: ...

    @abstractmethod
    def remove(self, path: str) -> None: ...

    @abstractmethod
    def disk_usage(self, path: str) -> tuple[int, int]:
        """(size, free) in bytes of the filesystem holding `path`."""

    @abstractmethod
    def open_connection(self, host: str, port: int, timeout: float) -> socket.socket:
        """A connected TCP socket opened *from the target* (egress is measured there)."""

    @abstractmethod
    def docker_client(self, timeout: float = 10.0) -> docker.DockerClient:
        """A Docker SDK client for the target's engine."""

    def is_link(self, path: str) -> bool:
        """True when `path` itself is a symbolic link (not followed)."""
        try:
            return self.run(["test", "-L", path], timeout=15).ok
        except (CommandNotFound, TimeoutError):
            return False

    def _refuse_links(self, path: str, root: str) -> None:
        components = _components_below(root, path)
        if type(self).is_link is not Target.is_link:
            for component in components:
                if self.is_link(component):
                    raise LinkRefused(component)
            return
        # One command for all the components (a remote target pays a round trip each).
        script = 'for p; do if [ -L "$p" ]; then printf "%s\\n" "$p"; fi; done'
        try:
            result = self.run(["sh", "-c", script, "sh", *components], timeout=15)
        except (CommandNotFound, TimeoutError):
            return
        linked = [line for line in result.stdout.splitlines() if line in components]
        if linked:
            raise LinkRefused(linked[0])

    def read_deployment_file(self, path: str, root: str) -> bytes:
        """A file the installer manages below `root` (the deployment directory, which may
        itself be a link the admin made). Raises LinkRefused when the file or a folder
        between `root` and it is a symbolic link. This default checks with `test -L` before
        reading; LocalTarget opens without following links at all."""
        self._refuse_links(path, root)
        return self.read_file(path)

    def write_deployment_file(self, path: str, data: bytes, mode: int, root: str) -> None:
        """Atomically replace a managed file below `root`; LinkRefused as for reads."""
        folder = posixpath.normpath(posixpath.dirname(path))
        if folder != posixpath.normpath(root):
            self._refuse_links(folder, root)
        self.write_file(path, data, mode)

    def stage_deployment_file(self, path: str, data: bytes, mode: int, root: str) -> StagedFile:
        """Prepare the replacement of a managed file so that `switch_staged` is quick and
        cannot half-happen. This default only holds the content (its switch is a whole
        atomic write); LocalTarget writes and fsyncs a temp file next to the file."""
        return StagedFile(path, root, mode, data=data)

    def switch_staged(self, staged: StagedFile) -> None:
        """Put a staged file in place (one rename where the target can)."""
        assert staged.data is not None
        self.write_deployment_file(staged.path, staged.data, staged.mode, staged.root)

    def discard_staged(self, staged: StagedFile) -> None:  # noqa: B027 - nothing to undo here
        """Remove what `stage_deployment_file` left, when the switch will not happen."""

    @abstractmethod
    def upload(self, local_path: str, remote_path: str, progress: Progress | None = None,
               resume: bool = True) -> str:
        """Copy a big local file (an images archive) to `remote_path`; returns its sha256.

        The data goes to `remote_path.partial`, renamed into place only once its checksum
        matches, so `remote_path` only ever holds a whole file. With `resume`, a partial copy
        left by an interrupted call is continued; a file already there with the right
        checksum is not copied again."""

    def read_text(self, path: str) -> str | None:
        """Text of a file, or None when it does not exist or cannot be read."""
        try:
            return self.read_file(path).decode("utf-8", "replace")
        except OSError:
            return None

    def which(self, program: str) -> str | None:
        try:
            result = self.run(["sh", "-c", 'command -v "$1"', "sh", program], timeout=10)
        except (CommandNotFound, TimeoutError):
            return None
        return result.stdout.strip() or None if result.ok else None

    def close(self) -> None:  # noqa: B027 - optional hook, most targets hold nothing
        """Release connections. The default has none."""

    def __enter__(self) -> Target:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LocalTarget(Target):
    """This machine."""

    is_local = True

    def __init__(self, *, docker_host: str | None = None, sudo_password: str | None = None) -> None:
        self.name = "local"
        self._docker_host = docker_host
        self._sudo_password = sudo_password
        self._lock = threading.Lock()

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float = 30.0,
        input: bytes | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        sudo: bool = False,
    ) -> CommandResult:
        args = [str(a) for a in argv]
        if sudo and os.geteuid() != 0:
            args = ["sudo", "-S", "-p", "", "--", *args]
            if self._sudo_password is not None:
                input = (self._sudo_password + "\n").encode() + (input or b"")
        full_env = None
        if env is not None:
            full_env = {**os.environ, **env}
        log.info("run (local): %s%s", shlex.join(args), f"  [cwd {cwd}]" if cwd else "")
        try:
            proc = subprocess.run(
                args,
                input=input,
                capture_output=True,
                timeout=timeout,
                env=full_env,
                cwd=cwd,
                check=False,
                stdin=None if input is not None else subprocess.DEVNULL,
            )
        except FileNotFoundError as exc:
            raise CommandNotFound(exc.errno, f"{args[0]}: command not found") from None
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"{args[0]} did not finish within {timeout:g} s") from None
        result = CommandResult(
            args,
            proc.returncode,
            proc.stdout.decode("utf-8", "replace"),
            proc.stderr.decode("utf-8", "replace"),
        )
        log.debug("exit %s: %s", result.returncode, result.output()[:2000])
        return result

    def read_file(self, path: str) -> bytes:
        with open(path, "rb") as handle:
            return handle.read()

    def write_file(self, path: str, data: bytes, mode: int = 0o600) -> None:
        atomic_write(path, data, mode)

    def is_link(self, path: str) -> bool:
        return os.path.islink(path)

    def read_deployment_file(self, path: str, root: str) -> bytes:
        with _open_folder_below(root, posixpath.dirname(path)) as folder:
            name = posixpath.basename(path)
            try:
                fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                             dir_fd=folder)
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise LinkRefused(path) from None
                raise
            try:
                info = os.fstat(fd)
                if stat.S_ISDIR(info.st_mode):
                    raise IsADirectoryError(errno.EISDIR, "is a folder", path)
                if not stat.S_ISREG(info.st_mode):
                    raise OSError(errno.EINVAL, "is not a regular file", path)
                os.set_blocking(fd, True)
                with os.fdopen(fd, "rb", closefd=False) as handle:
                    return handle.read()
            finally:
                os.close(fd)

    def write_deployment_file(self, path: str, data: bytes, mode: int, root: str) -> None:
        with _open_folder_below(root, posixpath.dirname(path)) as folder:
            atomic_write_in(folder, posixpath.basename(path), data, mode, shown=path)

    def stage_deployment_file(self, path: str, data: bytes, mode: int, root: str) -> StagedFile:
        with _open_folder_below(root, posixpath.dirname(path)) as folder:
            temp = _write_temp_in(folder, posixpath.basename(path), data, mode, shown=path)
        return StagedFile(path, root, mode, temp_name=temp)

    def switch_staged(self, staged: StagedFile) -> None:
        assert staged.temp_name is not None
        with _open_folder_below(staged.root, posixpath.dirname(staged.path)) as folder:
            os.replace(staged.temp_name, posixpath.basename(staged.path),
                       src_dir_fd=folder, dst_dir_fd=folder)
            staged.temp_name = None
            os.fsync(folder)

    def discard_staged(self, staged: StagedFile) -> None:
        if staged.temp_name is None:
            return
        try:
            with _open_folder_below(staged.root, posixpath.dirname(staged.path)) as folder:
                os.unlink(staged.temp_name, dir_fd=folder)
        except OSError as exc:
            log.warning("could not remove the temp file %s next to %s: %s", staged.temp_name,
                        staged.path, exc)
        staged.temp_name = None

    def exists(self, path: str) -> bool:
        return os.path.lexists(path)

    def makedirs(self, path: str, mode: int = 0o755) -> None:
        os.makedirs(path, mode=mode, exist_ok=True)

    def listdir(self, path: str) -> list[str]:
        return sorted(os.listdir(path))

    def remove(self, path: str) -> None:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)

    def disk_usage(self, path: str) -> tuple[int, int]:
        stats = os.statvfs(path)
        # f_bavail: what an unprivileged writer may use, the figure `df` shows as available.
        return stats.f_blocks * stats.f_frsize, stats.f_bavail * stats.f_frsize

    def open_connection(self, host: str, port: int, timeout: float) -> socket.socket:
        return socket.create_connection((host, port), timeout=timeout)

    def docker_client(self, timeout: float = 10.0) -> docker.DockerClient:
        import docker

        if self._docker_host:
            return docker.DockerClient(base_url=self._docker_host, timeout=int(timeout))
        return docker.from_env(timeout=int(timeout))

    def upload(self, local_path: str, remote_path: str, progress: Progress | None = None,
               resume: bool = True) -> str:
        size = os.path.getsize(local_path)
        digest = sha256_file(local_path)
        if os.path.isfile(remote_path) and os.path.getsize(remote_path) == size \
                and sha256_file(remote_path) == digest:
            if progress:
                progress(size, size)
            return digest
        partial = remote_path + ".partial"
        offset = 0
        if resume and os.path.isfile(partial) and 0 < os.path.getsize(partial) <= size:
            offset = os.path.getsize(partial)
        log.info("upload (local): %s -> %s (%d bytes from %d)", local_path, remote_path, size,
                 offset)
        while True:
            _copy_from(local_path, partial, offset, size, progress)
            if sha256_file(partial) == digest:
                break
            if offset == 0:
                raise TargetError(f"the copy of {local_path} at {partial} differs from the "
                                  "original", "check the disk (`df -h`, `dmesg`) and run again")
            log.warning("upload: the kept part of %s did not match; copying it all", partial)
            offset = 0
        os.replace(partial, remote_path)
        if progress:
            progress(size, size)
        return digest


def _copy_from(source_path: str, partial: str, offset: int, size: int,
               progress: Progress | None) -> None:
    """Copy `source_path` from `offset` on into `partial` (created 0600, or appended to)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | (0 if offset else os.O_TRUNC)
    fd = os.open(partial, flags, 0o600)
    with os.fdopen(fd, "wb") as handle, open(source_path, "rb") as source:
        handle.seek(offset)
        handle.truncate()
        source.seek(offset)
        done = offset
        while chunk := source.read(_CHUNK):
            handle.write(chunk)
            done += len(chunk)
            if progress:
                progress(done, size)
        handle.flush()
        os.fsync(handle.fileno())


def sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def atomic_write(path: str, data: bytes, mode: int = 0o600) -> None:
    """Write `data` to `path` so that readers see the old file or the new one, never a part.

    The temporary file is created with `mode` from the start, so a secret is never readable
    by others even for an instant.
    """
    folder = os.path.dirname(os.path.abspath(path)) or "."
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class _open_folder_below:  # noqa: N801 - used as a context manager, like open()
    """A descriptor of `folder`, reached from `root` one component at a time with
    O_NOFOLLOW, so no link below `root` is followed (LinkRefused names the link)."""

    def __init__(self, root: str, folder: str) -> None:
        self.root, self.folder = posixpath.normpath(root), posixpath.normpath(folder)
        self.fd = -1

    def __enter__(self) -> int:
        self.fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        if self.folder == self.root:
            return self.fd
        try:
            components = _components_below(self.root, self.folder)
        except ValueError:
            os.close(self.fd)
            raise
        for component in components:
            try:
                child = os.open(posixpath.basename(component),
                                os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                                dir_fd=self.fd)
            except OSError as exc:
                os.close(self.fd)
                if exc.errno in (errno.ELOOP, errno.ENOTDIR) and os.path.islink(component):
                    raise LinkRefused(component) from None
                raise
            os.close(self.fd)
            self.fd = child
        return self.fd

    def __exit__(self, *exc: object) -> None:
        if self.fd >= 0:
            os.close(self.fd)


def atomic_write_in(folder_fd: int, name: str, data: bytes, mode: int, *, shown: str) -> None:
    """`atomic_write` relative to an open folder: the temp file is created there with
    O_EXCL|O_NOFOLLOW and renamed over `name` (a link at `name` is replaced, never
    written through)."""
    tmp = _write_temp_in(folder_fd, name, data, mode, shown=shown)
    try:
        os.replace(tmp, name, src_dir_fd=folder_fd, dst_dir_fd=folder_fd)
    except BaseException:
        try:
            os.unlink(tmp, dir_fd=folder_fd)
        except FileNotFoundError:
            pass
        raise
    os.fsync(folder_fd)


def _write_temp_in(folder_fd: int, name: str, data: bytes, mode: int, *, shown: str) -> str:
    """A new temp file `.<name>.<8 hex>.tmp` in the folder, holding `data` with `mode`,
    fsynced; its name is returned. (The pattern is the one stale_temp_files clears.)"""
    for _attempt in range(100):
        tmp = f".{name}.{os.urandom(4).hex()}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                         mode, dir_fd=folder_fd)
            break
        except FileExistsError:
            continue
    else:
        raise FileExistsError(errno.EEXIST, "cannot create a temporary file", shown)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        try:
            os.unlink(tmp, dir_fd=folder_fd)
        except FileNotFoundError:
            pass
        raise
    return tmp


def describe_exception(exc: BaseException) -> str:
    """A one-line description for a report (no traceback), OS errors said in words."""
    if isinstance(exc, OSError):
        from installer.errors import os_error_words

        return os_error_words(exc)
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0] if text else type(exc).__name__


__all__ = [
    "CommandNotFound",
    "CommandResult",
    "LinkRefused",
    "LocalTarget",
    "StagedFile",
    "Progress",
    "Target",
    "atomic_write",
    "describe_exception",
    "sha256_file",
]


