"""SSH host keys: checked against known_hosts, never trusted silently.

A server's key is looked up in the user's known_hosts file (plain, wildcard and hashed entries,
`[host]:port` for ports other than 22, `@revoked` markers, as OpenSSH writes and reads them).

- Known and equal: the connection goes on.
- Known with a different key (or only keys of other types): refused, always. The message says
  that someone may be intercepting the connection and how to clear a legitimately replaced key.
  `HostKeyChangedError`, a `TargetError`: exit code 3.
- Unknown: shown as its SHA256 fingerprint and accepted only when the user confirms it (the
  wizard passes `confirm`) or gave exactly that fingerprint with `--accept-host-key`; then it is
  appended to known_hosts. With neither, `UnknownHostKeyError`, an `InputError`: exit code 2,
  because what is missing is an input of the user's (the confirmation), the target did nothing
  wrong, and nothing was written. A fingerprint given that does not match is a refusal
  (`HostKeyMismatchError`, exit 3): it is what an intercepted connection looks like.

No credential is sent before the key is accepted: the caller verifies right after the key
exchange and authenticates only afterwards.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
import re
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from installer.errors import InputError, TargetError

log = logging.getLogger("installer.hostkeys")

# (description such as "ops@vm.example.com:22", "SHA256:...") -> the user accepts?
ConfirmHostKey = Callable[[str, str], bool]

_FINGERPRINT = re.compile(r"^SHA256:[A-Za-z0-9+/]{43}$")
# Algorithms a server may sign with, by the key type known_hosts stores.
_ALGORITHMS_FOR_TYPE = {"ssh-rsa": ["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"]}


class UnknownHostKeyError(InputError):
    """The host is not in known_hosts and the user has not accepted its key (exit 2)."""


class HostKeyChangedError(TargetError):
    """known_hosts holds a different key for this host (exit 3)."""


class HostKeyMismatchError(TargetError):
    """The key is not the one the user accepted with --accept-host-key (exit 3)."""


def fingerprint(blob: bytes) -> str:
    """'SHA256:...' of a public key blob, exactly as `ssh-keygen -l` prints it."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def key_type_of(blob: bytes) -> str:
    """The type name an SSH public key blob starts with (e.g. 'ssh-ed25519')."""
    if len(blob) < 4:
        return ""
    (length,) = struct.unpack(">I", blob[:4])
    return blob[4 : 4 + length].decode("ascii", "replace")


def parse_accepted(value: str | None) -> list[str]:
    """The fingerprints given with --accept-host-key ("SHA256:..."; a comma-separated list
    accepts a jump host's and the target's at once). Raises InputError when malformed."""
    if not value:
        return []
    out = []
    for part in value.split(","):
        part = part.strip().rstrip("=")
        if not _FINGERPRINT.match(part):
            raise InputError(
                f"--accept-host-key: {part!r} is not a SHA256 host key fingerprint",
                "give it as printed by `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` on "
                "the machine, e.g. SHA256:Zm9v... (43 characters after SHA256:)",
            )
        out.append(part)
    return out


def known_hosts_name(host: str, port: int) -> str:
    """How OpenSSH names a host in known_hosts: `host`, or `[host]:port` off port 22."""
    host = host.lower()
    return host if port == 22 else f"[{host}]:{port}"


@dataclass(frozen=True)
class KnownHost:
    line_number: int
    marker: str  # "", "@revoked" or "@cert-authority"
    patterns: str
    key_type: str
    blob: bytes


def parse_known_hosts(text: str) -> list[KnownHost]:
    """Entries of a known_hosts file; lines we cannot read are skipped (OpenSSH does too)."""
    entries: list[KnownHost] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        marker = ""
        if fields[0].startswith("@"):
            marker, fields = fields[0], fields[1:]
        if len(fields) < 3:
            continue
        try:
            blob = base64.b64decode(fields[2], validate=True)
        except (binascii.Error, ValueError):
            continue
        entries.append(KnownHost(number, marker, fields[0], fields[1], blob))
    return entries


def _wildcard(pattern: str, name: str) -> bool:
    """OpenSSH patterns: `*` and `?` only (brackets are literal, as in `[host]:2222`)."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, name, flags=re.IGNORECASE) is not None


def host_matches(patterns: str, name: str) -> bool:
    """Whether a known_hosts host field names `name` (hashed, list, wildcards, negation)."""
    if patterns.startswith("|1|"):
        try:
            _, _, salt_b64, hash_b64 = patterns.split("|")
            salt = base64.b64decode(salt_b64)
            expected = base64.b64decode(hash_b64)
        except (ValueError, binascii.Error):
            return False
        digest = hmac.new(salt, name.encode(), hashlib.sha1).digest()
        return hmac.compare_digest(digest, expected)
    matched = False
    for pattern in patterns.split(","):
        negated = pattern.startswith("!")
        if _wildcard(pattern[1:] if negated else pattern, name):
            if negated:
                return False  # a negated match excludes the host whatever else matches
            matched = True
    return matched


class HostKeyVerifier:
    """Checks each server key against one known_hosts file and records accepted keys there."""

    def __init__(self, known_hosts: str, accepted: Sequence[str] = (),
                 confirm: ConfirmHostKey | None = None) -> None:
        self.path = os.path.expanduser(known_hosts)
        self.accepted = list(accepted)
        self.confirm = confirm

    def _entries(self) -> list[KnownHost]:
        try:
            from installer.userfiles import CERTIFICATE_LIMIT, read_user_file

            text = read_user_file(self.path, limit=CERTIFICATE_LIMIT)
            return parse_known_hosts(text.decode("utf-8", "replace"))
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise InputError(f"cannot read the known_hosts file {self.path}: {exc.strerror}",
                             "fix its permissions, or set target.known_hosts to another file"
                             ) from None

    def _for_host(self, name: str) -> list[KnownHost]:
        return [e for e in self._entries()
                if e.marker != "@cert-authority" and host_matches(e.patterns, name)]

    def preferred_algorithms(self, host: str, port: int, available: Sequence[str]) -> list[str]:
        """`available` host key algorithms reordered so that the types already known for the
        host come first, so the server shows the key we can check (as OpenSSH does)."""
        known = [e.key_type for e in self._for_host(known_hosts_name(host, port)) if not e.marker]
        first: list[str] = []
        for key_type in known:
            for algorithm in _ALGORITHMS_FOR_TYPE.get(key_type, [key_type]):
                if algorithm in available and algorithm not in first:
                    first.append(algorithm)
        return first + [a for a in available if a not in first]

    def verify(self, host: str, port: int, blob: bytes, description: str) -> None:
        """Return when the key may be trusted; raise the matching error otherwise."""
        name = known_hosts_name(host, port)
        key_type = key_type_of(blob)
        shown = fingerprint(blob)
        entries = self._for_host(name)
        if any(e.marker == "@revoked" and e.blob == blob for e in entries):
            raise HostKeyChangedError(
                f"the SSH host key of {description} ({shown}) is marked @revoked in "
                f"{self.path}: it must not be trusted",
                "ask the machine's administrator for its current host key",
            )
        known = [e for e in entries if not e.marker]
        if any(e.blob == blob for e in known):
            log.info("host key of %s verified (%s, %s)", name, key_type, shown)
            return
        if known:
            same_type = [e for e in known if e.key_type == key_type]
            where = ", ".join(f"line {e.line_number}" for e in (same_type or known))
            was = ", ".join(f"{e.key_type} {fingerprint(e.blob)}" for e in (same_type or known))
            raise HostKeyChangedError(
                f"the SSH host key of {description} has CHANGED. {self.path} ({where}) holds "
                f"{was}, but the server now presents {key_type} {shown}. Someone may be "
                "intercepting this connection (a man-in-the-middle attack), or the machine "
                "was reinstalled. Nothing was sent to the server and nothing was changed",
                "ask the machine's administrator whether its host keys were regenerated; only "
                f"if so, remove the old key with `ssh-keygen -R '{name}' -f {self.path}` and "
                "run again to check and accept the new one",
            )
        self._accept_unknown(name, key_type, blob, shown, description)

    def _accept_unknown(self, name: str, key_type: str, blob: bytes, shown: str,
                        description: str) -> None:
        if self.accepted:
            if shown not in self.accepted:
                raise HostKeyMismatchError(
                    f"the SSH host key of {description} is {shown} ({key_type}), not the "
                    f"fingerprint given with --accept-host-key ({', '.join(self.accepted)}). "
                    "Someone may be intercepting this connection, or the fingerprint was "
                    "copied from another machine. Nothing was sent to the server",
                    "compare with `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` run on "
                    "the machine itself (its console), then pass that fingerprint (with a "
                    "jump host, both fingerprints, separated by a comma)",
                )
            log.info("host key of %s accepted with --accept-host-key (%s)", name, shown)
        elif self.confirm is not None:
            if not self.confirm(description, shown):
                raise UnknownHostKeyError(
                    f"the SSH host key of {description} ({shown}) was not accepted",
                    "accept it only after comparing it with the fingerprint shown on the "
                    "machine itself (`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub`)",
                )
            log.info("host key of %s accepted by the user (%s)", name, shown)
        else:
            raise UnknownHostKeyError(
                f"the SSH host key of {description} is not in {self.path}; its fingerprint "
                f"is {shown} ({key_type})",
                "compare it with `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` run on the "
                f"machine itself; if they match, run again with --accept-host-key {shown}",
            )
        self.record(name, key_type, blob)

    def record(self, name: str, key_type: str, blob: bytes) -> None:
        """Append `name key_type base64` to known_hosts (made 0600, folder 0700, if new)."""
        folder = os.path.dirname(self.path) or "."
        try:
            os.makedirs(folder, mode=0o700, exist_ok=True)
            line = f"{name} {key_type} {base64.b64encode(blob).decode()}\n".encode()
            # O_APPEND keeps lines other programs add meanwhile; one write() of one line.
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                size = os.fstat(fd).st_size
                if size:
                    with open(self.path, "rb") as handle:
                        handle.seek(size - 1)
                        if handle.read(1) != b"\n":
                            line = b"\n" + line
                os.write(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise InputError(
                f"cannot record the accepted host key in {self.path}: {exc.strerror}",
                "fix the file's permissions, or set target.known_hosts to a writable file",
            ) from None
        log.info("recorded the host key of %s in %s", name, self.path)


__all__ = [
    "ConfirmHostKey",
    "HostKeyChangedError",
    "HostKeyMismatchError",
    "HostKeyVerifier",
    "UnknownHostKeyError",
    "fingerprint",
    "host_matches",
    "known_hosts_name",
    "parse_accepted",
    "parse_known_hosts",
]
