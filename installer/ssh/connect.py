"""Opening the SSH connection: TCP (or a channel through the jump host), key exchange, host key
verification before any credential is sent, then login with each host's own credentials."""

from __future__ import annotations

import base64
import getpass
import logging
import os
import re
import socket
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from installer.errors import InputError, TargetError
from installer.hostkeys import HostKeyVerifier

if TYPE_CHECKING:  # paramiko and docker are loaded only when a remote target is used
    import paramiko
    from paramiko import Transport

    from installer.answers import SSHSettings
    from installer.redact import Redactor
    from installer.ssh.channels import SSHStats

log = logging.getLogger("installer.ssh")


PassphrasePrompt = Callable[[str], str]  # (question) -> passphrase
_KEEPALIVE_S = 15
_OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED = 1


def _paramiko() -> Any:
    import paramiko

    # paramiko logs through the root logger; without a handler of its own, Python's
    # last-resort handler would print its errors over our terminal output (or the TUI).
    logger = logging.getLogger("paramiko")
    if not logger.handlers:
        logger.addHandler(logging.NullHandler())
    return paramiko


def _local_user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return os.environ.get("USER", "root")


# --- connecting --------------------------------------------------------------------------------


def _tcp_connect(host: str, port: int, timeout: float, what: str) -> socket.socket:
    try:
        return socket.create_connection((host, port), timeout=timeout)
    except socket.gaierror:
        raise TargetError(f"cannot resolve {host} ({what})",
                          f"check the host name in {what}'s settings and this machine's DNS"
                          ) from None
    except ConnectionRefusedError:
        raise TargetError(f"{host}:{port} refused the connection: no SSH server listens there",
                          "check the port, and that sshd runs (`sudo systemctl status ssh`)"
                          ) from None
    except TimeoutError:
        raise TargetError(f"{host}:{port} did not answer within {timeout:g} s ({what})",
                          "check the address, firewalls and security groups on the way") from None
    except OSError as exc:
        raise TargetError(f"cannot connect to {host}:{port} ({what}): {exc.strerror or exc}",
                          "check the address and the network route to it") from None


def _start_transport(sock: Any, host: str, port: int, verifier: HostKeyVerifier,
                     description: str, timeout: float) -> paramiko.Transport:
    """Key exchange, then the host key check, before any credential leaves this machine."""
    paramiko = _paramiko()
    transport: Transport = paramiko.Transport(sock)
    transport.banner_timeout = timeout
    options = transport.get_security_options()
    options.key_types = verifier.preferred_algorithms(host, port, list(options.key_types))
    try:
        transport.start_client(timeout=timeout)
    except (paramiko.SSHException, EOFError, OSError) as exc:
        transport.close()
        raise TargetError(f"{host}:{port} did not complete an SSH handshake: {exc}",
                          "check that this is the SSH port (`ssh -p PORT host` from here)"
                          ) from None
    key = transport.get_remote_server_key()
    try:
        verifier.verify(host, port, key.asbytes(), description)
    except BaseException:
        transport.close()
        raise
    transport.set_keepalive(_KEEPALIVE_S)
    return transport


def _through_jump(jump: paramiko.Transport, host: str, port: int, timeout: float
                  ) -> paramiko.Channel:
    paramiko = _paramiko()
    try:
        return jump.open_channel("direct-tcpip", (host, port), ("127.0.0.1", 0), timeout=timeout)
    except paramiko.ChannelException as exc:
        if exc.code == _OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED:
            raise TargetError(
                "the jump host refuses to forward connections (AllowTcpForwarding is off)",
                "allow TCP forwarding for this user on the bastion (`AllowTcpForwarding yes` "
                "in its sshd_config), or reach the target without target.jump",
            ) from None
        raise TargetError(f"the jump host cannot reach {host}:{port}: {exc.text}",
                          "check target.host and target.port as seen from the bastion") from None
    except paramiko.SSHException as exc:
        raise TargetError(f"the jump host did not open a connection to {host}:{port}: {exc}",
                          "check that the bastion can reach the target") from None


def _identity_public_blob(path: str) -> bytes | None:
    """The public half of an identity file without its passphrase: from `path.pub`, or from
    the unencrypted header of an OpenSSH-format private key."""
    try:
        with open(path + ".pub", encoding="ascii", errors="replace") as handle:
            return base64.b64decode(handle.read().split()[1])
    except (OSError, IndexError, ValueError):
        pass
    try:
        with open(path, encoding="ascii", errors="replace") as handle:
            text = handle.read()
    except OSError:
        return None
    match = re.search(r"-----BEGIN OPENSSH PRIVATE KEY-----(.*?)-----END", text, re.S)
    if not match:
        return None
    try:
        data = base64.b64decode("".join(match.group(1).split()))
        magic = b"openssh-key-v1\x00"
        if not data.startswith(magic):
            return None
        msg = _paramiko().Message(data[len(magic):])
        msg.get_string()  # cipher
        msg.get_string()  # kdf
        msg.get_string()  # kdf options
        if msg.get_int() < 1:
            return None
        return bytes(msg.get_binary())
    except Exception:
        return None


class _Authenticator:
    """Logs in to one host like OpenSSH would with these settings: the identity file (or its
    key held by ssh-agent), else the agent's keys, then the password. A passphrase is asked
    for only when the agent does not hold the key.

    Each host has its own authenticator: the target's password is never offered to the jump
    host (a bastion that refuses keys would collect it). Public keys may be offered to both,
    since a key login proves possession without handing over anything reusable. `keys` is
    shared between them, so one identity file's passphrase is asked for once."""

    def __init__(self, identity_file: str | None, password: str | None,
                 passphrase_prompt: PassphrasePrompt | None, redactor: Redactor | None, *,
                 settings_prefix: str = "target",
                 keys: dict[str, Any] | None = None) -> None:
        self.identity_file = identity_file
        self.password = password
        self.prompt = passphrase_prompt
        self.redactor = redactor
        self.prefix = settings_prefix  # "target" or "target.jump": where the user sets it
        self._keys = keys if keys is not None else {}  # identity path -> its loaded key
        self._notes: list[str] = []

    def login(self, transport: paramiko.Transport, user: str, description: str) -> None:
        paramiko = _paramiko()
        tried: list[str] = []
        self._notes = []
        agent = paramiko.Agent()
        try:
            for label, kind, secret in self._methods(agent):
                tried.append(label)
                try:
                    if kind == "key":
                        transport.auth_publickey(user, secret)
                    else:
                        transport.auth_password(user, secret)
                except paramiko.BadAuthenticationType as exc:
                    log.info("%s: %s not allowed (server allows %s)", description, label,
                             exc.allowed_types)
                    self._notes.append(f"the server does not allow {label.split(' ')[0]} "
                                       f"logins (it allows: {', '.join(exc.allowed_types)})")
                except paramiko.AuthenticationException:
                    log.info("%s: %s refused", description, label)
                except (paramiko.SSHException, EOFError, OSError) as exc:
                    raise TargetError(f"the SSH connection to {description} failed during "
                                      f"login: {exc}", "run again; check the network") from None
                if transport.is_authenticated():
                    log.info("logged in to %s with %s", description, label)
                    return
        finally:
            agent.close()
        if not tried:
            raise TargetError(
                f"no way to log in to {description}: no identity file, no key in ssh-agent "
                "and no password",
                f"set {self.prefix}.identity_file, load a key with `ssh-add`, or set "
                f"{self.prefix}.password_env"
                + (": " + "; ".join(self._notes) if self._notes else ""),
            )
        raise TargetError(
            f"{description} refused the SSH login (tried {', '.join(tried)})",
            "; ".join(self._notes + [
                "check the user name, that the public key is in the user's "
                f"~/.ssh/authorized_keys on that host, or the password in "
                f"{self.prefix}.password_env",
            ]),
        )

    def _methods(self, agent: Any) -> Iterator[tuple[str, str, Any]]:
        path = self.identity_file
        agent_keys = list(agent.get_keys())
        if path:
            key = self._load_identity(path, agent_keys)
            if key is not None:
                yield f"publickey {path}", "key", key
            else:
                wanted = _identity_public_blob(path)
                for agent_key in agent_keys:
                    if wanted is None or agent_key.asbytes() == wanted:
                        yield f"publickey {path} (from ssh-agent)", "key", agent_key
                key = self._ask_passphrase(path)
                if key is not None:
                    yield f"publickey {path}", "key", key
        else:
            for agent_key in agent_keys:
                yield f"publickey {agent_key.get_name()} from ssh-agent", "key", agent_key
        if self.password is not None:
            yield "password", "password", self.password

    def _load_identity(self, path: str, agent_keys: list[Any]) -> Any:
        """The identity when it needs no passphrase; None when it is encrypted."""
        paramiko = _paramiko()
        if path in self._keys:
            return self._keys[path]
        try:
            key = paramiko.PKey.from_path(path)
        except FileNotFoundError:
            raise InputError(f"{self.prefix}.identity_file: {path} does not exist",
                             "give the path of your private key, e.g. ~/.ssh/id_ed25519"
                             ) from None
        except PermissionError:
            raise InputError(f"{self.prefix}.identity_file: cannot read {path} "
                             "(permission denied)",
                             "run as the user who owns the key") from None
        except paramiko.PasswordRequiredException:
            return None
        except TypeError as exc:
            # paramiko lets cryptography's "password-protected, but password was not
            # provided" through as a TypeError for encrypted OpenSSH-format keys.
            if "password" in str(exc).lower():
                return None
            raise
        except (paramiko.SSHException, ValueError) as exc:
            raise InputError(f"{self.prefix}.identity_file: {path} is not a private key this tool "
                             f"can read ({exc})",
                             "use an OpenSSH or PEM private key (ed25519, ecdsa or rsa)"
                             ) from None
        self._keys[path] = key
        return key

    def _ask_passphrase(self, path: str) -> Any:
        paramiko = _paramiko()
        if path in self._keys:
            return self._keys[path]
        if self.prompt is None:
            self._notes.append(f"{path} is protected by a passphrase and ssh-agent does not "
                               f"hold it: load it with `ssh-add {path}` before running")
            return None
        for _ in range(3):
            passphrase = self.prompt(f"Passphrase for {path}")
            if not passphrase:
                break
            if self.redactor is not None:
                self.redactor.add(passphrase)
            try:
                # cryptography (which from_path calls first) wants bytes.
                key = paramiko.PKey.from_path(path, passphrase.encode())
            except (paramiko.SSHException, ValueError, TypeError):
                log.info("wrong passphrase for %s", path)
                continue
            self._keys[path] = key
            return key
        self._notes.append(f"the passphrase for {path} was not accepted")
        return None



class _Connector:
    """Opens the connection to the target, and opens it again after it was lost: TCP (or a
    channel through the jump host), key exchange, host key verification, login. Every
    (re)connection verifies the host keys again, before any credential is sent."""

    def __init__(self, settings: SSHSettings, user: str, verifier: HostKeyVerifier,
                 target_auth: _Authenticator, jump_auth: _Authenticator | None,
                 timeout: float, stats: SSHStats) -> None:
        self.settings = settings
        self.user = user
        self.verifier = verifier
        self.target_auth = target_auth
        self.jump_auth = jump_auth
        self.timeout = timeout
        self.stats = stats

    def open(self, jump_transport: paramiko.Transport | None = None
             ) -> tuple[paramiko.Transport, paramiko.Transport | None]:
        """(target transport, jump transport); a still-working `jump_transport` is reused."""
        settings, timeout = self.settings, self.timeout
        opened_jump = None
        transport = None
        try:
            if settings.jump is not None:
                jump = settings.jump
                if jump_transport is None or not jump_transport.is_active():
                    jump_user = jump.user or self.user
                    described = f"{jump_user}@{jump.host}:{jump.port} (jump host)"
                    jump_sock = _tcp_connect(jump.host, jump.port, timeout, "target.jump")
                    opened_jump = _start_transport(jump_sock, jump.host, jump.port,
                                                   self.verifier, described, timeout)
                    assert self.jump_auth is not None
                    self.jump_auth.login(opened_jump, jump_user, described)
                    self.stats.add("connections")
                    jump_transport = opened_jump
                sock: Any = _through_jump(jump_transport, settings.host, settings.port, timeout)
            else:
                jump_transport = None
                sock = _tcp_connect(settings.host, settings.port, timeout, "target")
            described = f"{self.user}@{settings.host}:{settings.port}"
            transport = _start_transport(sock, settings.host, settings.port, self.verifier,
                                         described, timeout)
            self.target_auth.login(transport, self.user, described)
            self.stats.add("connections")
        except BaseException:
            for t in (transport, opened_jump):
                if t is not None:
                    t.close()
            raise
        return transport, jump_transport
