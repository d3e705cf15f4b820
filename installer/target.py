"""The machine that will run CARTO, behind one interface.

Checks and the deployment reach the machine only through a `Target`: run a command (always an
argument list, never a shell string), read and write files, open a TCP connection from it, talk
to its Docker engine. `LocalTarget` is this machine; the SSH target implements the same methods
over one SSH connection. Every command run is logged, with secrets redacted by the log filter.
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import socket
import subprocess
import tempfile
import threading
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the docker SDK is imported lazily: it costs start-up time
    import docker

log = logging.getLogger("installer.target")


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
    "LocalTarget",
    "Target",
    "atomic_write",
    "describe_exception",
]


