"""The target machine over SSH: the same `Target` as `LocalTarget`, on one paramiko connection.

Nothing is installed on the target: commands run in exec channels, files move over SFTP, TCP
connections are opened *from the target* through `direct-tcpip` channels, and the Docker SDK
reaches the target's engine through `docker system dial-stdio` run there (what docker's own
`ssh://` support runs), over this same connection.

Security rules this module keeps:
- The host key is verified (installer.hostkeys) right after the key exchange, before any
  credential is sent. Never AutoAddPolicy, never silently.
- Commands are argument lists joined with `shlex.join`; user input never becomes shell code.
  Shell snippets used here are constants that take user values as positional parameters.
- Secrets never go on a command line (visible in `ps` on the target): the sudo password and
  environment values travel on the command's stdin.
- Files are written atomically (temp file in the same folder, named by installer.tempnames,
  mode set at creation and again before any data, fsync, rename over the old file). The
  rename happens only once the copy is known whole: its size over SFTP; its length and
  SHA-256, checked by the target itself, through sudo (end of input is not "all received").
- Links in the deployment directory are refused, never read, written or chowned through.
- Each host gets its own credentials: the target's password never goes to the jump host.
- A lost connection is reopened (host keys verified again) to repeat what is safe to repeat:
  reads, probes, and operations that had not reached the target yet.

Round trips matter over slow links: one exec costs about three (open the channel, start the
command, collect its output), so facts are gathered by one script, and `stats` counts channels,
commands and SFTP requests for the benchmark.
"""
from __future__ import annotations

import contextlib
import errno
import logging
import re
import shlex
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from installer.hostkeys import ConfirmHostKey, HostKeyVerifier, parse_accepted
from installer.ssh.channels import SSHStats
from installer.ssh.connect import PassphrasePrompt, _Authenticator, _Connector, _local_user
from installer.ssh.docker_bridge import DockerAccess
from installer.ssh.forward import Forwarding
from installer.ssh.sftp import SFTPFiles
from installer.target import CommandNotFound, CommandResult

if TYPE_CHECKING:  # paramiko and docker are loaded only when a remote target is used

    from installer.answers import SSHSettings
    from installer.redact import Redactor

log = logging.getLogger("installer.ssh")


class SSHTarget(Forwarding, DockerAccess, SFTPFiles):
    """A machine reached over SSH (optionally through a jump host), one connection per run."""

    is_local = False

    @classmethod
    def connect(
        cls,
        settings: SSHSettings,
        *,
        accept_host_key: str | None,
        confirm_host_key: ConfirmHostKey | None,
        redactor: Redactor | None,
        passphrase_prompt: PassphrasePrompt | None = None,
        timeout: float = 15.0,
    ) -> SSHTarget:
        """Connect, verify the host key(s), log in. Raises TargetError / InputError (and the
        host key errors of installer.hostkeys) with what to do."""
        verifier = HostKeyVerifier(settings.known_hosts, parse_accepted(accept_host_key),
                                   confirm_host_key)
        user = settings.user or _local_user()
        password = settings.password.value if settings.password is not None else None
        keys: dict[str, Any] = {}
        target_auth = _Authenticator(settings.identity_file, password, passphrase_prompt,
                                     redactor, keys=keys)
        jump_auth = None
        if settings.jump is not None:
            jump = settings.jump
            jump_password = jump.password.value if jump.password is not None else None
            jump_auth = _Authenticator(jump.identity_file or settings.identity_file,
                                       jump_password, passphrase_prompt, redactor,
                                       settings_prefix="target.jump", keys=keys)
            if redactor is not None and jump_password:
                redactor.add(jump_password)
        if redactor is not None and password:
            redactor.add(password)
        stats = SSHStats()
        connector = _Connector(settings, user, verifier, target_auth, jump_auth, timeout, stats)
        transport, jump_transport = connector.open()
        target = cls(settings, user, connector, transport, jump_transport, password, redactor,
                     stats)
        log.info("connected to %s%s", target.name,
                 f" through {settings.jump.host}:{settings.jump.port}" if settings.jump else "")
        if target._use_sudo:
            target._probe_sudo_early()
        return target

    # --- Target --------------------------------------------------------------------------------

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
        if not args:
            raise ValueError("empty command")
        # A command may not be safe to run twice: repeated after a reconnection only when
        # the connection was found lost before the command reached the target.
        return self._unstarted(f"`{args[0]}`", lambda: self._run_once(
            args, timeout=timeout, input=input, env=env, cwd=cwd, sudo=sudo))

    def _run_once(self, args: list[str], *, timeout: float, input: bytes | None,
                  env: Mapping[str, str] | None, cwd: str | None, sudo: bool) -> CommandResult:
        full, before = self._command(args, env=env, cwd=cwd, sudo=sudo)
        log.info("run (%s%s): %s%s%s", self.name, ", sudo" if sudo else "", shlex.join(args),
                 f"  [cwd {cwd}]" if cwd else "",
                 f"  [env {', '.join(sorted(env))}]" if env else "")
        code, out, err = self._exec(full, before + (input or b""), timeout)
        result = CommandResult(full, code, out.decode("utf-8", "replace"),
                               err.decode("utf-8", "replace"))
        if _not_found(args[0], code, result.stderr):
            raise CommandNotFound(errno.ENOENT, f"{args[0]}: command not found on {self.name}")
        log.debug("exit %s: %s", result.returncode, result.output()[:2000])
        return result

    def close(self) -> None:
        with self._docker_lock:  # no Docker bridge may appear after this
            if self._closed:
                return
            self._closed = True
        with self._docker_lock:
            clients, self._docker_clients = list(self._docker_clients.values()), {}
            bridge, self._docker_bridge = self._docker_bridge, None
        for client in clients:
            with contextlib.suppress(Exception):
                client.close()
        if bridge is not None:
            bridge.close()
        with self._sftp_lock:
            self._drop_sftp()
        self._transport.close()
        if self._jump is not None:
            self._jump.close()
        log.info("closed the connection to %s (%s)", self.name, self.stats.as_dict())


# --- helpers -------------------------------------------------------------------------------------


def _not_found(program: str, code: int, stderr: str) -> bool:
    """Whether the shell (or sudo) said `program` does not exist."""
    name = re.escape(program)
    if code == 127:
        return re.search(rf"(^|: )(exec: )?{name}: (command )?not found|"
                         rf"command not found: {name}$|(^|: ){name}: No such file or directory",
                         stderr, re.M) is not None
    if code == 1:
        return re.search(rf"^sudo: {name}: command not found", stderr, re.M) is not None
    return False

