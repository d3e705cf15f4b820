"""Commands as root on the target: the sudo probe (once per connection), the argv and stdin
wrapping that keeps the password and environment values off the command line, and the shell
scripts the verified reads and writes through sudo run on the target."""

from __future__ import annotations

import contextlib
import logging
import re
import shlex
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING

from installer.errors import TargetError
from installer.ssh.channels import SSHConnection

if TYPE_CHECKING:  # paramiko and docker are loaded only when a remote target is used

    pass

log = logging.getLogger("installer.ssh")


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class SudoCommands(SSHConnection):
    """Commands on the target, with sudo where asked for and configured."""

    def _sudo_needs_password(self) -> bool:
        """Whether sudo asks this user for a password, found once per connection.

        Found by one probe (`sudo -k -n true`, then the password if one is needed, which also
        checks it). `-k` everywhere: sudo would otherwise remember a password per parent
        process, which is shared by every channel of one connection, and stop reading it from
        stdin: the password line would then reach the command itself.
        """
        with self._sudo_lock:
            if self._sudo_mode is None:
                if self._sudo_error is not None:
                    raise self._sudo_error
                try:
                    self._sudo_mode = self._probe_sudo()
                except TargetError as exc:
                    self._sudo_error = exc  # a refusal stays one: no second password try
                    raise
            return self._sudo_mode == "password"

    def _probe_sudo_early(self) -> None:
        """Start the sudo probe now, alongside the first checks, instead of in front of the
        first privileged command (three round trips saved on the critical path)."""
        def probe() -> None:
            with contextlib.suppress(Exception):  # raised again where sudo is used
                self._sudo_needs_password()

        threading.Thread(target=probe, daemon=True, name="ssh-sudo-probe").start()

    def _probe_sudo(self) -> str:
        script = ('if sudo -k -n true 2>/dev/null; then echo nopasswd; '
                  'elif [ -n "$1" ]; then sudo -k -S -p "" true && echo password; '
                  'else sudo -k -n true; fi')
        has_password = "1" if self._password is not None else ""
        stdin = (self._password + "\n").encode() if self._password is not None else b""
        code, out, err = self._exec(["sh", "-c", script, "sh", has_password], stdin, 30.0)
        said = out.decode("utf-8", "replace").strip()
        if said in ("nopasswd", "password"):
            log.info("sudo on %s: %s", self.name,
                     "no password needed" if said == "nopasswd" else "password accepted")
            return said
        text = err.decode("utf-8", "replace").strip()
        lowered = text.lower()
        if code == 127 or "sudo: not found" in lowered or "command not found" in lowered:
            raise TargetError(f"sudo is not installed on {self.name}",
                              "install it (`apt-get install sudo`), or log in as root")
        if "incorrect password" in lowered or "try again" in lowered:
            raise TargetError(f"sudo on {self.name} refused the password of {self.user}",
                              "check the password given in target.password_env")
        if "password is required" in lowered or "no password was provided" in lowered:
            raise TargetError(f"sudo on {self.name} needs the password of {self.user}",
                              "set target.password_env to that password, or allow this user "
                              "sudo without a password (NOPASSWD); if the user may not use "
                              "sudo at all, log in as root or set target.sudo: false")
        if "sudoers" in lowered or "may not run sudo" in lowered or "not allowed" in lowered:
            raise TargetError(f"{self.user} may not use sudo on {self.name}",
                              f"add {self.user} to the sudo group (`usermod -aG sudo "
                              f"{self.user}`), log in as root, or set target.sudo: false")
        raise TargetError(f"sudo does not work for {self.user} on {self.name}: "
                          f"{text.splitlines()[0] if text else f'exit {code}'}",
                          "run `sudo true` on the target as that user to see why")

    def _command(self, args: list[str], *, env: Mapping[str, str] | None, cwd: str | None,
                 sudo: bool) -> tuple[list[str], bytes]:
        """The argv to start and the bytes to send before the command's own stdin."""
        before = b""
        argv = list(args)
        if env or cwd:
            # Environment values may be secrets: they come on stdin, one NAME=value line each,
            # ended by an empty line; `export "$line"` assigns without evaluating anything.
            parts = []
            if env:
                parts.append('while IFS= read -r _kv && [ -n "$_kv" ]; do export "$_kv"; done')
                lines = []
                for key, value in env.items():
                    if not _ENV_NAME.match(key) or "\n" in value or "\0" in value:
                        raise ValueError(f"environment variable {key!r} cannot be passed")
                    lines.append(f"{key}={value}\n")
                before += ("".join(lines) + "\n").encode()
            if cwd:
                parts.append('cd -- "$1" || exit 1; shift')
            parts.append('exec "$@"')
            argv = ["sh", "-c", "; ".join(parts), "sh", *([cwd] if cwd else []), *argv]
        if sudo and self.user != "root":
            if self._sudo_needs_password():
                assert self._password is not None
                argv = ["sudo", "-k", "-S", "-p", "", "--", *argv]
                before = (self._password + "\n").encode() + before
            else:
                argv = ["sudo", "-n", "--", *argv]
        return argv, before

    def _run_bytes(self, args: list[str], *, sudo: bool, input: bytes | None = None,
                   timeout: float = 60.0) -> tuple[int, bytes, bytes]:
        full, before = self._command(args, env=None, cwd=None, sudo=sudo)
        log.info("run (%s%s): %s", self.name, ", sudo" if sudo else "", shlex.join(args))
        return self._exec(full, before + (input or b""), timeout)


# Reads the last argument without following links; every argument (the folders below the
# deployment directory, then the file) must not be a link.
_SUDO_READ_SCRIPT = r"""
for part in "$@"; do
  if [ -L "$part" ]; then printf 'carto-link: %s\n' "$part" >&2; exit 66; fi
done
for last in "$@"; do :; done
exec dd if="$last" iflag=nofollow bs=1M status=none
"""
_SUDO_READ_LINK = 66


# The target's side of a write through sudo (into a folder the login user cannot write).
# Positional parameters: $1 the file, $2 its mode (octal), $3 the temporary file next to it,
# $4 "replace", or "stage" to leave the checked copy for a later switch.
# Stdin: after sudo's password line, "LENGTH SHA256" on one line, then the content.
# End of input is never taken for "all data received": the copy is renamed into place only
# when its length and digest match, else it is deleted. So a client killed or interrupted
# mid-transfer (the channel closes, `head` sees end of input early) leaves the old file.
# A link at $1 is refused; the copy is owned like the old file only when root or the folder's
# owner owns it (one lstat, never --reference, which follows links), else like the folder.
# The copy is created exclusively (noclobber) and then only reached through that one open
# descriptor (fd 3, /dev/fd/3): in a folder others may write, swapping the copy's name for a
# link cannot make root write, chmod or chown some other file.
_SUDO_WRITE_SCRIPT = r"""
set -eu
umask 077
dest=$1 t=$3
IFS=' ' read -r size sum || { echo "carto-write: no header on stdin" >&2; exit 65; }
case $size in ''|*[!0-9]*) echo "carto-write: bad length" >&2; exit 65;; esac
case $sum in *[!0-9a-f]*) echo "carto-write: bad digest" >&2; exit 65;; esac
[ ${#sum} -eq 64 ] || { echo "carto-write: bad digest" >&2; exit 65; }
if [ -L "$dest" ]; then echo "carto-write: $dest is a symbolic link" >&2; exit 66; fi
dir=$(dirname -- "$dest")
set -C
exec 3> "$t"
set +C
trap 'rm -f -- "$t"' EXIT
trap 'exit 70' HUP INT TERM PIPE
chmod -- "$2" /dev/fd/3
folder_owner=$(stat -c %u -- "$dir/.")
owner=$(stat -c %u:%g -- "$dir/.")
if [ -e "$dest" ]; then
  old=$(stat -c %u:%g -- "$dest")
  case $old in 0:*|"$folder_owner":*) owner=$old;; esac
fi
chown -- "$owner" /dev/fd/3
head -c "$size" >&3
got=$(wc -c < /dev/fd/3)
if [ "$got" -ne "$size" ]; then
  echo "carto-write: only $got of $size bytes arrived; $dest is unchanged" >&2; exit 67
fi
got=$(sha256sum < /dev/fd/3)
if [ "${got%% *}" != "$sum" ]; then
  echo "carto-write: the copy differs from what was sent; $dest is unchanged" >&2; exit 68
fi
sync -- /dev/fd/3 2>/dev/null || sync
if [ "$4" = stage ]; then trap - EXIT; exit 0; fi
mv -f -T -- "$t" "$dest"
trap - EXIT
if [ "$(stat -c %d:%i -- "$dest")" != "$(stat -L -c %d:%i /dev/fd/3)" ]; then
  echo "carto-write: $dest was replaced by someone else during the write" >&2; exit 69
fi
"""
# Puts a staged copy ($1) in place of $2, unless $2 became a link meanwhile.
_SUDO_SWITCH_SCRIPT = r"""
if [ -L "$2" ]; then echo "carto-write: $2 is a symbolic link" >&2; exit 66; fi
if [ -L "$1" ] || [ ! -f "$1" ]; then echo "carto-write: $1 is not the staged copy" >&2; exit 1; fi
exec mv -f -T -- "$1" "$2"
"""
_SUDO_WRITE_LINK = 66
