"""Rendering: from the answers to the files the deployment reads.

`plan_render` reads what is on the target and computes every file's new content without
writing anything; `apply_render` writes the plan (backups first, then each file atomically
with its mode). A plan holds only the files whose content or mode would change, so an empty
plan means a re-run changes nothing.
"""

from __future__ import annotations

import difflib
import logging
import posixpath
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from installer.answers import Answers
    from installer.redact import Redactor
    from installer.target import Target

log = logging.getLogger("installer.render")


@dataclass
class FileChange:
    path: str  # absolute path on the target (compose) or local (kubernetes)
    before: bytes | None  # current content, None when the file does not exist
    after: bytes
    mode: int  # 0o600 for secrets
    secret: bool  # content must never be displayed
    mode_before: int | None = None  # current permission bits, None when unknown/absent
    keys_changed: list[str] = field(default_factory=list)  # env files: names only

    @property
    def content_changed(self) -> bool:
        return self.before != self.after

    def describe(self) -> str:
        """One line: what happens to this file (no content)."""
        if self.before is None:
            what = "new"
        elif self.content_changed:
            what = "changed"
        else:
            what = f"mode {self.mode_before:o} -> {self.mode:o}" if self.mode_before else "mode"
        extra = f": {', '.join(self.keys_changed)}" if self.keys_changed else ""
        return f"{self.path} ({what}, mode {self.mode:o}{extra})"

    def diff(self, redactor: Redactor) -> str:
        """A unified diff; a secret file only as "(secret file, N bytes, changed)"."""
        old_name = "/dev/null" if self.before is None else self.path
        header = f"--- {old_name}\n+++ {self.path}\n"
        if not self.content_changed:
            old_mode = self.mode_before or 0
            return header + f"(mode {old_mode:o} -> {self.mode:o}, content unchanged)\n"
        if self.secret:
            state = "new" if self.before is None else "changed"
            keys = f"; keys changed: {', '.join(self.keys_changed)}" if self.keys_changed else ""
            text = header + f"(secret file, {len(self.after)} bytes, {state}{keys})\n"
            if self.before is None and posixpath.basename(self.path).endswith(".env"):
                # A new env file: its keys, values masked, so the admin can review it.
                text += "".join(f"+{key}=****\n" for key in env_keys(self.after))
            return text
        before = (self.before or b"").decode("utf-8", "replace").splitlines(keepends=True)
        after = self.after.decode("utf-8", "replace").splitlines(keepends=True)
        lines = list(difflib.unified_diff(before, after, fromfile=old_name, tofile=self.path))
        text = "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n"
                       for line in lines)
        return redactor(text)


@dataclass
class RenderPlan:
    changes: list[FileChange]  # only files whose content or mode would change
    backups: list[str]  # backups that applying would create
    notes: list[str]  # e.g. "renamed POSTGRES_PASSWORD to POSTGRES_ADMIN_PASSWORD"
    directory: str = ""  # where the files go (compose: the deployment directory)
    backup_sources: dict[str, bytes] = field(default_factory=dict, repr=False)
    directories: list[str] = field(default_factory=list)  # folders to create first
    compose_command: list[str] = field(default_factory=list)  # compose: the tool chosen
    flavour: str | None = None  # compose: "v1" / "v2" env-file parser written for
    trusted_certificate: bytes | None = field(default=None, repr=False)  # what HTTPS must serve
    actions: list[str] = field(default_factory=list)  # what a deploy does after writing
    stale: list[str] = field(default_factory=list)  # temp files of interrupted writes
    # Files no longer used, removed after the writes (the previous domain's certificate/key).
    removals: list[str] = field(default_factory=list)

    def diff(self, redactor: Redactor) -> str:
        removed = "".join(f"--- {path}\n+++ /dev/null\n(removed: no longer used)\n"
                          for path in self.removals)
        return "".join(change.diff(redactor) for change in self.changes) + removed

    @property
    def empty(self) -> bool:
        return not self.changes and not self.backups and not self.stale and not self.removals

    def summary(self) -> str:
        """What applying would do, one file per line, without any content."""
        if self.empty and not self.actions:
            return "nothing to change: the files already match the answers"
        lines = [f"  write {change.describe()}" for change in self.changes]
        lines += [f"  back up the current customer.env as {b}" for b in self.backups]
        lines += [f"  remove {s} (left by an interrupted run)" for s in self.stale]
        lines += [f"  remove {r} (no longer used)" for r in self.removals]
        lines += [f"  note: {note}" for note in self.notes]
        lines += [f"  then {action}" for action in self.actions]
        return "\n".join(lines)


def plan_render(answers: Answers, target: Target, *, redactor: Redactor,
                compose_command: Sequence[str] | None = None,
                compose_version: str | None = None) -> RenderPlan:
    """Read what is there and compute the new files; writes nothing.

    Raises InputError (exit 2) for bad input. For compose, `compose_command` is the tool the
    docker.compose check chose (detected on the target when not given).
    """
    if answers.platform == "kubernetes":
        try:
            from installer.render import helm
        except ImportError:
            from installer.errors import InputError

            raise InputError("rendering for Kubernetes is not part of this build",
                             "use platform: compose, or a build with Helm support") from None
        plan: RenderPlan = helm.plan_render(answers, target, redactor=redactor)
        return plan
    from installer.render.compose import plan_compose

    return plan_compose(answers, target, redactor=redactor, compose_command=compose_command,
                        compose_version=compose_version)


# Temporary files that an interrupted atomic write can leave behind (mkstemp's pattern).
_STALE_TEMP = re.compile(r"^\.(?P<name>.+)\.[a-z0-9_]{8}\.tmp$")


def apply_render(plan: RenderPlan, target: Target) -> list[str]:
    """Write backups, then the files, each atomically with its mode; return the paths."""
    for folder in plan.directories:
        target.makedirs(folder, 0o755)
    for stale in plan.stale:
        try:
            target.remove(stale)
            log.info("removed %s, left by an interrupted write", stale)
        except FileNotFoundError:
            pass
    written: list[str] = []
    for backup in plan.backups:
        target.write_file(backup, plan.backup_sources[backup], 0o600)
        log.info("backed up to %s", backup)
        written.append(backup)
    for change in plan.changes:
        target.write_file(change.path, change.after, change.mode)
        log.info("wrote %s (mode %o, %d bytes)", change.path, change.mode, len(change.after))
        written.append(change.path)
    for path in plan.removals:
        try:
            target.remove(path)
            log.info("removed %s (no longer used)", path)
        except FileNotFoundError:
            pass
    return written


def env_keys(data: bytes) -> list[str]:
    """The variable names an env file sets, in order (values never read out)."""
    keys: list[str] = []
    for line in data.decode("utf-8", "replace").splitlines():
        match = _ENV_KEY.match(line)
        if match and match.group(1) not in keys:
            keys.append(match.group(1))
    return keys


_ENV_KEY = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=")


def stale_temp_files(target: Target, managed: Sequence[str]) -> list[str]:
    """Temporary files that a killed write (SIGKILL, power loss) left next to the files we
    manage or their backups; removing them leaves only whole files in the folder."""
    names: dict[str, set[str]] = {}
    for path in managed:
        folder, name = posixpath.split(path)
        names.setdefault(folder, set()).add(name)
    found: list[str] = []
    for folder, ours in names.items():
        try:
            entries = target.listdir(folder)
        except OSError:
            continue
        for entry in entries:
            match = _STALE_TEMP.match(entry)
            if match and (match.group("name") in ours
                          or match.group("name").startswith("customer.env.bak.")):
                found.append(posixpath.join(folder, entry))
    return found


__all__ = ["FileChange", "RenderPlan", "apply_render", "plan_render"]
