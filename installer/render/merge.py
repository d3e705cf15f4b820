"""A new installation package meets an existing customer.env: a three-way merge.

The three sides: the package the current customer.env came from (the *base*, remembered in
the deployment directory as key names with salted SHA-256 digests of their values, never the
values), the new package, and the current customer.env. The vendor's own upgrade procedure is
"start from the new customer.env and re-apply your settings"; this does the same key by key:

* keys the installer owns (domain, TLS, database, Redis, proxy) follow the answers and are
  never taken from a package: a new package's random bundled-database password must not
  replace the one the running database was created with;
* every other key a package has (in the base or the new one) follows the new package when the
  admin left it as the base had it: new keys come in, changed values change, dropped keys go;
* a key the admin edited keeps the admin's value while the package leaves it alone;
* a key both the admin and the new package changed (to different values) is a conflict: the
  admin chooses with `compose.take_package` or `compose.keep_mine` in the answers; until then
  render and deploy refuse.

To know whether a value changed, digests suffice; the salt (random per installation, kept in
the record) stops a digest from being looked up in a table of common values.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field

from installer.envfile import Entry, EnvFile

BASE_RECORD = ".carto-installer-package-base.json"
RECORD_VERSION = 1

# Every customer.env key the installer may write from the answers (render/compose.py
# owned_settings), and the legacy name of one of them: a package never decides these.
INSTALLER_KEYS = frozenset({
    "SELFHOSTED_DOMAIN", "ROUTER_SSL_AUTOGENERATE", "ROUTER_SSL_CERTIFICATE_PATH",
    "ROUTER_SSL_CERTIFICATE_KEY_PATH",
    "LOCAL_POSTGRES_SCALE", "WORKSPACE_POSTGRES_HOST", "WORKSPACE_POSTGRES_PORT",
    "WORKSPACE_POSTGRES_USER", "WORKSPACE_POSTGRES_PASSWORD", "WORKSPACE_POSTGRES_DB",
    "WORKSPACE_POSTGRES_SSL_ENABLED", "WORKSPACE_POSTGRES_SSL_MODE", "WORKSPACE_POSTGRES_SSL_CA",
    "WORKSPACE_POSTGRES_INTERNAL_USER", "POSTGRES_ADMIN_USER", "POSTGRES_ADMIN_PASSWORD",
    "POSTGRES_PASSWORD", "POSTGRES_ADMIN_DB", "POSTGRES_LOGIN_USER",
    "LOCAL_REDIS_SCALE", "REDIS_HOST", "REDIS_PORT", "REDIS_PASSWORD", "REDIS_TLS_ENABLED",
    "REDIS_TLS_CA",
    "HTTP_PROXY", "HTTPS_PROXY", "GRPC_PROXY", "NO_PROXY", "http_proxy", "https_proxy",
    "grpc_proxy", "no_proxy", "NODE_EXTRA_CA_CERTS",
})
ADDED_HEADER = "# Added by a newer installation package (carto-installer)"


@dataclass
class BaseRecord:
    """What is remembered of the package the current customer.env came from."""

    salt: str
    digests: dict[str, str]
    package_version: str = ""

    def digest(self, key: str, value: str | None) -> str | None:
        if value is None:
            return None
        return hashlib.sha256(f"{self.salt}\0{key}\0{value}".encode()).hexdigest()

    @classmethod
    def of(cls, env: EnvFile, package_version: str, salt: str | None = None) -> BaseRecord:
        record = cls(salt or secrets.token_hex(16), {}, package_version)
        for key in env.keys():
            digest = record.digest(key, env.get(key))
            if digest is not None:
                record.digests[key] = digest
        return record

    def dumps(self) -> bytes:
        return (json.dumps({"version": RECORD_VERSION, "package_version": self.package_version,
                            "salt": self.salt, "sha256": self.digests},
                           indent=1, sort_keys=True) + "\n").encode()

    @classmethod
    def loads(cls, data: bytes | None) -> BaseRecord | None:
        """The record, or None when absent or not one of ours (then nothing is known)."""
        if not data:
            return None
        try:
            raw = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            return None
        if (not isinstance(raw, dict) or raw.get("version") != RECORD_VERSION
                or not isinstance(raw.get("salt"), str) or not isinstance(raw.get("sha256"), dict)):
            return None
        digests = {str(k): str(v) for k, v in raw["sha256"].items()}
        return cls(raw["salt"], digests, str(raw.get("package_version") or ""))


@dataclass
class MergeResult:
    added: list[str] = field(default_factory=list)  # new in the package
    changed: list[str] = field(default_factory=list)  # the package changed the value
    dropped: list[str] = field(default_factory=list)  # the package no longer has it
    kept: list[str] = field(default_factory=list)  # the admin's edit, the package unchanged
    taken: list[str] = field(default_factory=list)  # conflicts resolved: the package's value
    kept_by_choice: list[str] = field(default_factory=list)  # conflicts resolved: the admin's
    conflicts: list[str] = field(default_factory=list)  # unresolved: render refuses
    note: str = ""

    def classes(self) -> list[str]:
        """One line per kind of change, naming the keys (never their values)."""
        named = [("new from the package", self.added), ("changed by the package", self.changed),
                 ("dropped by the package", self.dropped),
                 ("your edits kept (the package left them alone)", self.kept),
                 ("conflicts resolved with the package's value (compose.take_package)",
                  self.taken),
                 ("conflicts resolved with your value (compose.keep_mine)", self.kept_by_choice),
                 ("CONFLICTS: edited by you and changed by the package (choose in "
                  "compose.take_package or compose.keep_mine)", self.conflicts)]
        return [f"{label}: {', '.join(keys)}" for label, keys in named if keys]


def merge_package(current: EnvFile, new: EnvFile, base: BaseRecord | None, *,
                  take_package: Iterable[str] = (), keep_mine: Iterable[str] = (),
                  license_keys: Iterable[str] = ()) -> MergeResult:
    """Bring the new package's keys into `current` (changed in place); see the module doc.

    Without a record of the base (an installation the installer did not render before), the
    license's keys follow the new package and keys it adds come in; nothing else is touched."""
    result = MergeResult()
    take, keep = set(take_package), set(keep_mine)
    if base is None:
        licensed = set(license_keys)
        for key in new.keys():
            if key in INSTALLER_KEYS:
                continue
            if key not in current:
                _bring(current, new, key)
                result.added.append(key)
            elif key in licensed and current.raw(key) != new.raw(key):
                current.set_line(key, new.raw(key) or "")
                result.changed.append(key)
        result.note = ("no record of the package the current customer.env came from: the "
                       "license's keys follow the new package, new keys were added, every other "
                       "value was kept")
        return result
    keys = [*new.keys(), *(k for k in base.digests if k not in new)]
    for key in keys:
        if key in INSTALLER_KEYS:
            continue
        was = base.digests.get(key)
        mine = current.get(key) if key in current else None
        theirs = new.get(key) if key in new else None
        if base.digest(key, theirs) == was:
            if base.digest(key, mine) != was:
                result.kept.append(key)
            continue  # the package left it alone: whatever the admin has stays
        if mine == theirs:
            continue  # both made the same change
        if base.digest(key, mine) != was:  # the admin changed it too
            if key in keep:
                result.kept_by_choice.append(key)
                continue
            if key not in take:
                result.conflicts.append(key)
                continue
            result.taken.append(key)
        elif theirs is None:
            result.dropped.append(key)
        elif mine is None:
            result.added.append(key)
        else:
            result.changed.append(key)
        if theirs is None:
            current.remove(key)
        elif key in current:
            current.set_line(key, new.raw(key) or "")
        else:
            _bring(current, new, key)
    return result


def _bring(current: EnvFile, new: EnvFile, key: str) -> None:
    """Insert the new package's line for `key` after the key that precedes it there (when the
    current file has that one), else at the end under a header saying where it came from."""
    raw = new.raw(key) or ""
    order = new.keys()
    index = order.index(key)
    for previous in reversed(order[:index]):
        positions = [i for i, entry in enumerate(current.entries) if entry.key == previous]
        if positions:
            at = positions[-1]
            ending = current.entries[at].line_ending or "\n"
            if not current.entries[at].line_ending:
                current.entries[at].text += ending
            current.entries.insert(at + 1, Entry(f"{key}={raw}{ending}", key, raw))
            return
    if current.entries and not current.entries[-1].text.endswith("\n"):
        current.entries[-1].text += "\n"
    if not any(entry.text.strip() == ADDED_HEADER for entry in current.entries):
        current.entries += [Entry("\n"), Entry(ADDED_HEADER + "\n")]
    current.entries.append(Entry(f"{key}={raw}\n", key, raw))
