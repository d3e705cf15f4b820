"""Files on the target: SFTP first (atomic replace, staging, links refused), sudo where the
login user may not read or write, and resumable, checksummed uploads of big files."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import posixpath
import stat
import threading
import time
from typing import TYPE_CHECKING, Any

from installer.errors import InputError, TargetError
from installer.ssh.channels import ConnectionLostError, InterruptedWrite
from installer.ssh.connect import _paramiko
from installer.ssh.sudo import (
    _SUDO_READ_LINK,
    _SUDO_READ_SCRIPT,
    _SUDO_SWITCH_SCRIPT,
    _SUDO_WRITE_LINK,
    _SUDO_WRITE_SCRIPT,
    SudoCommands,
)
from installer.target import LinkRefused, Progress, StagedFile, sha256_file
from installer.tempnames import temp_path_for

if TYPE_CHECKING:  # paramiko is loaded only when a remote target is used
    from paramiko import Channel, SFTPAttributes, SFTPClient, SFTPFile

log = logging.getLogger("installer.ssh")


_CHUNK = 1 << 20
_SECONDS_TO_LEARN_THE_OUTCOME = 5.0


class SFTPFiles(SudoCommands):
    """The file methods of `Target` over SFTP (or sudo), and big-file uploads."""

    def read_file(self, path: str) -> bytes:
        return self._repeatable(f"reading {path}", lambda: self._read_once(path))

    def _read_once(self, path: str) -> bytes:
        try:
            with self._sftp_session() as sftp, sftp.open(path, "rb") as handle:
                return bytes(handle.read())
        except PermissionError:
            if not self._use_sudo:
                raise
        code, out, err = self._run_bytes(["cat", "--", path], sudo=True)
        if code != 0:
            raise _os_error(err, path)
        return out

    def is_link(self, path: str) -> bool:
        """Whether `path` itself is a symbolic link (lstat over SFTP, else `test -L` with
        sudo when the login user cannot look)."""
        return self._repeatable(f"checking {path}", lambda: self._is_link_once(path))

    def _is_link_once(self, path: str) -> bool:
        try:
            with self._sftp_session() as sftp:
                return stat.S_ISLNK(sftp.lstat(path).st_mode or 0)
        except FileNotFoundError:
            return False
        except PermissionError:
            if not self._use_sudo:
                raise
        code, _, _ = self._run_bytes(["test", "-L", path], sudo=True)
        return code == 0

    def read_deployment_file(self, path: str, root: str) -> bytes:
        """A file the installer manages below `root` (the deployment directory, which may
        itself be a link the admin made), never read through a link: LinkRefused when the
        file or a folder between `root` and it is one. SFTP has no O_NOFOLLOW, so each part
        is lstat-ed and the opened file must be the one lstat saw; through sudo, the same
        walk and `dd iflag=nofollow`."""
        parts = _parts_below(root, path)
        return self._repeatable(f"reading {path}", lambda: self._read_below_once(parts))

    def _read_below_once(self, parts: list[str]) -> bytes:
        path = parts[-1]
        try:
            with self._sftp_session() as sftp:
                for part in parts:
                    if stat.S_ISLNK(sftp.lstat(part).st_mode or 0):
                        raise LinkRefused(part)
                seen = sftp.lstat(path)
                with sftp.open(path, "rb") as handle:
                    opened = handle.stat()
                    if not _same_file(seen, opened):
                        raise LinkRefused(path)  # swapped for a link between lstat and open
                    return bytes(handle.read())
        except PermissionError:
            if not self._use_sudo:
                raise
        code, out, err = self._run_bytes(["sh", "-c", _SUDO_READ_SCRIPT, "sh", *parts],
                                         sudo=True)
        if code == _SUDO_READ_LINK or b"symbolic links" in err:
            said = err.decode("utf-8", "replace")
            raise LinkRefused(next((p for p in parts if f"carto-link: {p}\n" in said), path))
        if code != 0:
            raise _os_error(err, path)
        return out

    def write_file(self, path: str, data: bytes, mode: int = 0o600) -> None:
        """Atomically replace `path`: the target checks length and SHA-256 of what arrived
        before the rename, so an interrupted transfer never replaces the file. Refuses a
        symbolic link at `path` (InputError). Ctrl-C raises InterruptedWrite, which says
        what state the files written through this connection were left in."""
        log.info("write (%s): %s (%d bytes, mode %o)", self.name, path, len(data), mode)
        write = _RemoteWrite(self, path, data, mode)
        try:
            self._unstarted(f"writing {path}", write.run)
        except LinkRefused:
            raise InputError(f"{path} on {self.name} is a symbolic link: the installer does not "
                             "write through links in the deployment directory",
                             f"find out who made it (ls -l {path}); replace it with the real "
                             "file, or remove it so that it is created") from None
        except KeyboardInterrupt:
            state = self._state_after_interrupt(write)
            log.warning("interrupted while writing %s: %s", path, state)
            raise InterruptedWrite(state) from None
        self._written.append(path)

    # Staging: the new content checked in place beside each file first, then every file
    # switched by a rename, so a multi-file change is quick to switch and never half-sent.

    def stage_file(self, path: str, data: bytes, mode: int = 0o600) -> str:
        """Write `data` to a temporary copy beside `path` (length and SHA-256 checked on the
        target, fsynced, with `mode` and the owner a write would give it); returns the
        copy's path for `switch_file` or `discard_file`. `path` itself is not touched.
        LinkRefused when `path` is a symbolic link."""
        log.info("stage (%s): %s (%d bytes, mode %o)", self.name, path, len(data), mode)
        write = _RemoteWrite(self, path, data, mode)
        return self._unstarted(f"staging {path}", lambda: write.run(stage_only=True))

    def switch_file(self, staged: str, path: str) -> None:
        """Rename a copy made by `stage_file` over `path` (one atomic step); refuses a link
        that appeared at `path` since."""
        log.info("switch (%s): %s -> %s", self.name, staged, path)
        try:
            with self._sftp_session() as sftp:
                found = _lstat_or_none(sftp, path)
                if found is not None and stat.S_ISLNK(found.st_mode or 0):
                    raise LinkRefused(path)
                _replace(sftp, staged, path)
            self._written.append(path)
            return
        except PermissionError:
            if not self._use_sudo:
                raise
        code, _, err = self._run_bytes(["sh", "-c", _SUDO_SWITCH_SCRIPT, "sh", staged, path],
                                       sudo=True)
        if code == _SUDO_WRITE_LINK:
            raise LinkRefused(path)
        if code != 0:
            raise _os_error(err, path)
        self._written.append(path)

    def discard_file(self, staged: str) -> None:
        """Remove a copy made by `stage_file` that will not be switched."""
        with contextlib.suppress(FileNotFoundError):
            self.remove(staged)

    # The render's staging (installer.render.apply_render) through the verified copies above:
    # every file is sent and checked first, then the switch is one rename per file.
    def stage_deployment_file(self, path: str, data: bytes, mode: int, root: str) -> StagedFile:
        folder = posixpath.normpath(posixpath.dirname(path))
        if folder != posixpath.normpath(root):
            self._refuse_links(folder, root)
        return StagedFile(path, root, mode, temp_name=self.stage_file(path, data, mode))

    def switch_staged(self, staged: StagedFile) -> None:
        if staged.temp_name is None:
            super().switch_staged(staged)
            return
        self.switch_file(staged.temp_name, staged.path)

    def discard_staged(self, staged: StagedFile) -> None:
        if staged.temp_name is not None:
            self.discard_file(staged.temp_name)

    def _state_after_interrupt(self, write: _RemoteWrite) -> str:
        before = (f"written in full before it: {', '.join(self._written)}" if self._written
                  else "no other file was written on the target")
        return f"while writing {write.path} on {self.name}: {write.describe_outcome()}; {before}"

    def exists(self, path: str) -> bool:
        return self._repeatable(f"checking {path}", lambda: self._exists_once(path))

    def _exists_once(self, path: str) -> bool:
        try:
            with self._sftp_session() as sftp:
                sftp.lstat(path)
            return True
        except FileNotFoundError:
            return False
        except PermissionError:
            if not self._use_sudo:
                return False
        code, _, _ = self._run_bytes(["sh", "-c", '[ -e "$1" ] || [ -L "$1" ]', "sh", path],
                                     sudo=True)
        return code == 0

    def makedirs(self, path: str, mode: int = 0o755) -> None:
        return self._repeatable(f"creating {path}", lambda: self._makedirs_once(path, mode))

    def _makedirs_once(self, path: str, mode: int = 0o755) -> None:
        try:
            with self._sftp_session() as sftp:
                if stat.S_ISDIR(sftp.stat(path).st_mode or 0):
                    return
            raise FileExistsError(errno.EEXIST, f"{path} exists and is not a folder", path)
        except (FileNotFoundError, PermissionError):
            pass
        argv = ["mkdir", "-p", "-m", f"{mode:o}", "--", path]
        code, _, err = self._run_bytes(argv, sudo=False)
        if code != 0 and self._use_sudo and b"denied" in err:
            code, _, err = self._run_bytes(argv, sudo=True)
        if code != 0:
            raise _os_error(err, path)

    def listdir(self, path: str) -> list[str]:
        return self._repeatable(f"listing {path}", lambda: self._listdir_once(path))

    def _listdir_once(self, path: str) -> list[str]:
        try:
            with self._sftp_session() as sftp:
                return sorted(sftp.listdir(path))
        except PermissionError:
            if not self._use_sudo:
                raise
        start = path if path.startswith("/") else "./" + path
        code, out, err = self._run_bytes(
            ["find", start, "-mindepth", "1", "-maxdepth", "1", "-printf", "%f\\0"], sudo=True)
        if code != 0:
            raise _os_error(err, path)
        return sorted(name.decode("utf-8", "surrogateescape")
                      for name in out.split(b"\0") if name)

    def remove(self, path: str) -> None:
        return self._unstarted(f"removing {path}", lambda: self._remove_once(path))

    def _remove_once(self, path: str) -> None:
        is_folder = None
        try:
            with self._sftp_session() as sftp:
                is_folder = stat.S_ISDIR(sftp.lstat(path).st_mode or 0)
                if not is_folder:
                    sftp.remove(path)
                    return
        except PermissionError:
            if not self._use_sudo:
                raise
        argv = ["rm", "-rf", "--", path] if is_folder is not False else ["rm", "-f", "--", path]
        code, _, err = self._run_bytes(argv, sudo=bool(self._use_sudo and is_folder is None))
        if code != 0 and self._use_sudo and b"denied" in err:
            code, _, err = self._run_bytes(argv, sudo=True)
        if code != 0:
            raise _os_error(err, path)

    def disk_usage(self, path: str) -> tuple[int, int]:
        return self._repeatable(f"measuring the disk of {path}",
                                lambda: self._disk_usage_once(path))

    def _disk_usage_once(self, path: str) -> tuple[int, int]:
        script = 'df -B1 --output=size,avail -- "$1" 2>/dev/null || df -Pk -- "$1"'
        code, out, err = self._run_bytes(["sh", "-c", script, "sh", path], sudo=False)
        if code != 0 and self._use_sudo and b"denied" in err:
            code, out, err = self._run_bytes(["sh", "-c", script, "sh", path], sudo=True)
        if code != 0:
            raise _os_error(err, path)
        return parse_df(out.decode("utf-8", "replace"))

    def upload(self, local_path: str, remote_path: str, progress: Progress | None = None,
               resume: bool = True) -> str:
        """Copy a big local file (an images archive) to the target; returns its sha256.

        The data goes to `remote_path.partial` and is renamed into place only after the
        target's own `sha256sum` matches, so the final path only ever holds a whole file. After
        a dropped connection the next call appends from what reached the target (`resume`);
        a file already there with the right checksum is not sent again."""
        paramiko = _paramiko()
        size = os.path.getsize(local_path)
        digest = sha256_file(local_path)
        partial = remote_path + ".partial"
        log.info("upload (%s): %s -> %s (%d bytes, sha256 %s)", self.name, local_path,
                 remote_path, size, digest)
        sftp = self._new_sftp()
        sent = [0]
        try:
            existing = _stat_or_none(sftp, remote_path)
            if existing is not None and existing.st_size == size \
                    and self._remote_sha256(remote_path) == digest:
                log.info("upload: %s is already on the target", remote_path)
                if progress:
                    progress(size, size)
                return digest
            offset = 0
            if resume:
                found = _stat_or_none(sftp, partial)
                if found is not None and 0 < (found.st_size or 0) <= size:
                    offset = int(found.st_size or 0)
                    log.info("upload: resuming %s at %d of %d bytes", partial, offset, size)
            while True:
                self._send_from(sftp, local_path, partial, offset, size, progress, sent)
                remote = self._remote_sha256(partial)
                if remote == digest:
                    break
                if offset == 0:
                    raise TargetError(
                        f"the copy of {local_path} on {self.name} differs from the original "
                        f"(sha256 {remote} instead of {digest})",
                        "check the target's disk (`df -h`, `dmesg`) and run again")
                log.warning("upload: the kept part of %s did not match; sending it all", partial)
                offset = 0
            _replace(sftp, partial, remote_path)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            if isinstance(exc, OSError) and exc.errno is not None and self._transport.is_active():
                raise
            raise TargetError(
                f"the connection to {self.name} dropped while uploading {local_path} "
                f"({sent[0]} of {size} bytes sent): {exc or type(exc).__name__}",
                "run the same command again: the upload resumes from what reached the target",
            ) from None
        finally:
            with contextlib.suppress(Exception):
                sftp.close()
            self._release(sftp.get_channel())
        if progress:
            progress(size, size)
        return digest

    def _send_from(self, sftp: SFTPClient, local_path: str, remote: str, offset: int,
                   size: int, progress: Progress | None, sent: list[int]) -> None:
        if offset:
            handle = sftp.open(remote, "r+b")
            handle.seek(offset)
        else:
            handle = _create_private(sftp, remote, 0o600, exclusive=False)
        with handle, open(local_path, "rb") as source:
            handle.set_pipelined(True)
            source.seek(offset)
            done = offset
            while True:
                chunk = source.read(_CHUNK)
                if not chunk:
                    break
                handle.write(chunk)
                done += len(chunk)
                sent[0] = done
                if progress:
                    progress(done, size)
            handle.flush()
            _fsync(sftp, handle)

    def _remote_sha256(self, path: str) -> str:
        code, out, err = self._run_bytes(["sha256sum", "--", path], sudo=False, timeout=1800)
        if code != 0:
            raise _os_error(err, path)
        return out.split()[0].decode("ascii", "replace") if out.split() else ""


def _os_error(stderr: bytes, path: str) -> OSError:
    text = stderr.decode("utf-8", "replace").strip()
    first = text.splitlines()[-1] if text else "failed"
    lowered = text.lower()
    if "no such file" in lowered:
        return FileNotFoundError(errno.ENOENT, first, path)
    if "permission denied" in lowered or "operation not permitted" in lowered:
        return PermissionError(errno.EACCES, first, path)
    if "not a directory" in lowered:
        return NotADirectoryError(errno.ENOTDIR, first, path)
    if "no space" in lowered:
        return OSError(errno.ENOSPC, first, path)
    return OSError(errno.EIO, first, path)


def parse_df(text: str) -> tuple[int, int]:
    """(size, available) in bytes from `df -B1 --output=size,avail` or `df -Pk`."""
    lines = [line.split() for line in text.strip().splitlines() if line.strip()]
    if len(lines) < 2:
        raise OSError(errno.EIO, f"unexpected df output: {text[:200]!r}")
    header, values = lines[0], lines[-1]
    if len(values) >= 6 and "Available" in header:  # df -P: fs, blocks, used, avail, ...
        unit = 1024 if header[1].lower().startswith(("1024", "1k")) else 512
        return int(values[1]) * unit, int(values[3]) * unit
    return int(values[0]), int(values[1])


# `sftp` is Any in the next two: they send raw requests through paramiko's private `_request`,
# which types-paramiko leaves out.
def _create_private(sftp: Any, path: str, mode: int, *, exclusive: bool = True
                    ) -> SFTPFile:
    """Open `path` for writing, created with `mode` in the same request.

    paramiko's `open()` sends no permissions, so the server would create the file 0666 minus
    its umask: readable by others, and someone opening it in that instant keeps reading what
    we write later. The SFTP open request can carry the mode, so we send it there."""
    from paramiko import SFTPAttributes, SFTPFile
    from paramiko.sftp import (
        CMD_HANDLE,
        CMD_OPEN,
        SFTP_FLAG_CREATE,
        SFTP_FLAG_EXCL,
        SFTP_FLAG_TRUNC,
        SFTP_FLAG_WRITE,
    )

    attrs = SFTPAttributes()
    attrs.st_mode = mode
    flags = SFTP_FLAG_WRITE | SFTP_FLAG_CREATE
    flags |= SFTP_FLAG_EXCL if exclusive else SFTP_FLAG_TRUNC
    kind, msg = sftp._request(CMD_OPEN, path, flags, attrs)
    if kind != CMD_HANDLE:
        raise OSError(errno.EIO, f"unexpected SFTP reply opening {path}")
    handle = SFTPFile(sftp, msg.get_binary(), "wb")
    if not exclusive:
        handle.chmod(mode)  # an existing file keeps its old mode through O_TRUNC
    return handle


def _fsync(sftp: Any, handle: SFTPFile) -> None:
    """fsync@openssh.com when the server has it: the data is on disk before the rename."""
    from paramiko.sftp import CMD_EXTENDED

    try:
        sftp._request(CMD_EXTENDED, "fsync@openssh.com", handle.handle)
    except OSError as exc:  # not OpenSSH: the rename still keeps readers from a half file
        log.debug("no fsync over SFTP: %s", exc)


def _replace(sftp: SFTPClient, source: str, destination: str) -> None:
    try:
        sftp.posix_rename(source, destination)  # atomic, replaces (OpenSSH extension)
    except OSError as exc:
        if exc.errno is not None:
            raise
        # A server without posix-rename: SFTP v3 rename refuses an existing destination.
        log.warning("no posix-rename on the server; replacing %s in two steps", destination)
        with contextlib.suppress(FileNotFoundError):
            sftp.remove(destination)
        sftp.rename(source, destination)


def _lstat_or_none(sftp: SFTPClient, path: str) -> SFTPAttributes | None:
    try:
        return sftp.lstat(path)
    except FileNotFoundError:
        return None


def _stat_or_none(sftp: SFTPClient, path: str) -> SFTPAttributes | None:
    try:
        return sftp.stat(path)
    except FileNotFoundError:
        return None


def _parts_below(root: str, path: str) -> list[str]:
    """The folders from `root` (excluded) down to `path` (included); ValueError when `path`
    is not inside `root`."""
    root, path = posixpath.normpath(root), posixpath.normpath(path)
    relative = posixpath.relpath(path, root)
    if relative == "." or relative == ".." or relative.startswith("../"):
        raise ValueError(f"{path} is not inside {root}")
    names = relative.split("/")
    return [posixpath.join(root, *names[: i + 1]) for i in range(len(names))]


def _same_file(seen: SFTPAttributes, opened: SFTPAttributes) -> bool:
    """Whether an SFTP fstat matches the lstat made just before the open (SFTP shows no
    inode numbers; owner, mode, size and time together tell a swapped file apart)."""
    return all(getattr(seen, name) == getattr(opened, name)
               for name in ("st_uid", "st_gid", "st_mode", "st_size", "st_mtime"))


class _RemoteWrite:
    """One atomic replacement of `path` on the target, over SFTP or (where the login user may
    not write) through sudo, and how far it got: what an interrupted run reports."""

    def __init__(self, target: SFTPFiles, path: str, data: bytes, mode: int) -> None:
        self.target = target
        self.path = path
        self.data = data
        self.mode = mode
        # "unchanged" (nothing is or will be renamed), "maybe" (the rename may have
        # happened: the file is whole, old or new), "replaced".
        self.outcome = "unchanged"
        self.leftover: str | None = None  # a temp file that could not be removed
        self.stage_only = False

    def describe_outcome(self) -> str:
        said = {
            "unchanged": "it is unchanged (the partial copy was discarded)",
            "maybe": "it is whole, either the old or the new version",
            "replaced": "it was replaced in full",
        }[self.outcome]
        if self.leftover:
            said += f"; the temporary {self.leftover} may remain (the next render removes it)"
        return said

    def run(self, *, stage_only: bool = False) -> str:
        """Write the copy next to the file, check it, and (unless `stage_only`) rename it
        over the file. Returns the copy's path (gone once renamed)."""
        target = self.target
        self.stage_only = stage_only
        temp = temp_path_for(self.path)
        try:
            with target._sftp_session() as sftp:
                self._refuse_link(sftp)
                self._over_sftp(sftp, temp, stage_only)
            return temp
        except PermissionError:
            if not target._use_sudo:
                raise
        temp = temp_path_for(self.path)
        self._with_sudo(temp, stage_only)
        return temp

    def _refuse_link(self, sftp: SFTPClient) -> None:
        try:
            found = sftp.lstat(self.path)
        except FileNotFoundError:
            return
        if stat.S_ISLNK(found.st_mode or 0):
            raise LinkRefused(self.path)

    def _over_sftp(self, sftp: SFTPClient, temp: str, stage_only: bool) -> None:
        handle = _create_private(sftp, temp, self.mode)
        try:
            with handle:
                handle.chmod(self.mode)  # umask may have cleared bits we want; before any data
                handle.set_pipelined(True)
                handle.write(self.data)
                handle.flush()
                _fsync(sftp, handle)
            # paramiko drops the replies to pipelined writes (a full disk would go unseen):
            # the size the server holds is the proof that every write landed.
            arrived = sftp.stat(temp).st_size
            if arrived != len(self.data):
                raise OSError(errno.EIO, f"only {arrived} of {len(self.data)} bytes reached "
                              f"the target; {self.path} is unchanged", self.path)
            if stage_only:
                return
            self.outcome = "maybe"
            _replace(sftp, temp, self.path)
            self.outcome = "replaced"
        except BaseException:
            if self.outcome != "replaced":
                try:
                    sftp.remove(temp)
                except FileNotFoundError:
                    pass
                except Exception:  # noqa: BLE001 - the connection may be gone; say so
                    self.leftover = temp
            raise

    def _with_sudo(self, temp: str, stage_only: bool) -> None:
        target = self.target
        header = f"{len(self.data)} {hashlib.sha256(self.data).hexdigest()}\n".encode()
        args = ["sh", "-c", _SUDO_WRITE_SCRIPT, "sh", self.path, f"{self.mode:o}", temp,
                "stage" if stage_only else "replace"]
        argv, before = target._command(args, env=None, cwd=None, sudo=True)
        log.info("run (%s, sudo): atomic write of %s through %s (length and sha256 checked "
                 "on the target)", target.name, self.path, temp)
        timeout = 300.0
        deadline = time.monotonic() + timeout
        channel = target._open_session(deadline)
        everything_sent = threading.Event()
        try:
            target._start(channel, argv)
            code, _, err = target._communicate(channel, before + header + self.data, deadline,
                                               "sh", timeout, sent=everything_sent)
        except KeyboardInterrupt:
            self._learn_outcome(channel, everything_sent.is_set())
            raise
        except ConnectionLostError:
            self.outcome = "maybe" if everything_sent.is_set() else "unchanged"
            raise
        finally:
            target._release(channel)
        if code == _SUDO_WRITE_LINK:
            raise LinkRefused(self.path)
        if code != 0:
            raise _os_error(err, self.path)
        if not stage_only:
            self.outcome = "replaced"

    def _learn_outcome(self, channel: Channel, everything_sent: bool) -> None:
        """After Ctrl-C: input cut short means the target discards its copy; if everything
        had been sent, wait a moment for the target's verdict."""
        if not everything_sent or self.stage_only:
            self.outcome = "unchanged"
            return
        self.outcome = "maybe"
        with contextlib.suppress(Exception):
            if channel.status_event.wait(_SECONDS_TO_LEARN_THE_OUTCOME) \
                    and channel.exit_status_ready():
                self.outcome = "replaced" if channel.recv_exit_status() == 0 else "unchanged"
