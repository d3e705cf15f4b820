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
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from installer.tempnames import temp_file_owner

if TYPE_CHECKING:
    from installer.answers import Answers
    from installer.redact import Redactor
    from installer.release import ReleaseFile
    from installer.target import Target

from installer.errors import InputError

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
    classes: list[str] = field(default_factory=list)  # customer.env: each kind of change, named
    group: int | None = None  # the group id that must be able to read it (a container's)
    from_release: bool = False  # a file of the vendor's release, laid down unchanged

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
        if self.from_release:
            return header + f"(from the vendor's release, {len(self.after)} bytes)\n"
        if self.secret:
            state = "new" if self.before is None else "changed"
            keys = f"; keys changed: {', '.join(self.keys_changed)}" if self.keys_changed else ""
            classes = "".join(f"  {line}\n" for line in self.classes)
            return header + f"(secret file, {len(self.after)} bytes, {state}{keys})\n" + classes
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
    conflicts: list[str] = field(default_factory=list)  # customer.env keys needing a choice

    def diff(self, redactor: Redactor) -> str:
        return "".join(change.diff(redactor) for change in self.changes)

    @property
    def empty(self) -> bool:
        return not self.changes and not self.backups and not self.stale

    def summary(self) -> str:
        """What applying would do, one file per line, without any content."""
        if self.empty and not self.actions:
            return "nothing to change: the files already match the answers"
        lines = [f"  write {change.describe()}" for change in self.changes]
        lines += [f"    {line}" for change in self.changes for line in change.classes]
        lines += [f"  back up the current customer.env as {b}" for b in self.backups]
        lines += [f"  remove {s} (left by an interrupted run)" for s in self.stale]
        lines += [f"  note: {note}" for note in self.notes]
        lines += [f"  then {action}" for action in self.actions]
        return "\n".join(lines)


def plan_render(answers: Answers, target: Target, *, redactor: Redactor,
                compose_command: Sequence[str] | None = None,
                compose_version: str | None = None,
                new_release: Sequence[ReleaseFile] | None = None) -> RenderPlan:
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
                        compose_version=compose_version,
                        new_release=list(new_release) if new_release is not None else None)


def conflict_error(plan: RenderPlan) -> InputError:
    keys = ", ".join(plan.conflicts)
    return InputError(
        f"customer.env: {keys} — edited by you and changed by the new installation package; "
        "the installer will not choose between them",
        f"add each key to compose.take_package (use the package's value) or "
        f"compose.keep_mine (keep yours) in the answers file, e.g. `compose: {{take_package: "
        f"[{plan.conflicts[0]}]}}`; `render --dry-run` shows every change")


def apply_render(plan: RenderPlan, target: Target) -> list[str]:
    """Write backups, then the files, each atomically with its mode; return the paths.

    Refuses (InputError, exit 2, nothing written) while customer.env has unresolved
    conflicts between the admin's edits and a new package."""
    if plan.conflicts:
        raise conflict_error(plan)
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
        if change.group is None:
            target.write_file(change.path, change.after, change.mode)
        else:  # private first; opened to the container's group once the group is set
            target.write_file(change.path, change.after, change.mode & 0o700)
            _give_group(plan, target, change)
        log.info("wrote %s (mode %o, %d bytes)", change.path, change.mode, len(change.after))
        written.append(change.path)
    return written


def _give_group(plan: RenderPlan, target: Target, change: FileChange) -> None:
    """chgrp the file to the reading container's gid, then open it to that group. Changing a
    file's group to one the user is not in needs root: with neither root nor sudo the file
    stays private and a note says which container cannot read it."""
    sudo = bool(getattr(target, "_use_sudo", False))
    for argv in (["chgrp", "--", str(change.group), change.path],
                 ["chmod", "--", f"{change.mode:o}", change.path]):
        try:
            result = target.run(argv, timeout=15, sudo=sudo)
            failed, reason = not result.ok, result.output().strip()
        except (OSError, TimeoutError) as exc:
            failed, reason = True, str(exc)
        if failed:
            plan.notes.append(
                f"could not let group {change.group} read {change.path} ({reason[:200]}): it "
                "stays readable by its owner only, so a container running as another user "
                "cannot read it; run the installer as root or with target.sudo")
            log.warning("chgrp/chmod of %s failed: %s", change.path, reason[:200])
            return


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
            made_for = temp_file_owner(entry)
            if made_for is not None and (made_for in ours
                                         or made_for.startswith("customer.env.bak.")):
                found.append(posixpath.join(folder, entry))
    return found


__all__ = ["FileChange", "RenderPlan", "apply_render", "plan_render"]
