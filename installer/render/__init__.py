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
import signal
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeAlias

from installer.errors import InputError, TargetError
from installer.render.actions import Action
from installer.tempnames import temp_file_owner

if TYPE_CHECKING:
    from types import FrameType

    from installer.answers import Answers
    from installer.envfile import Flavour
    from installer.redact import Redactor
    from installer.release import ReleaseFile
    from installer.target import StagedFile, Target

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
            text = header + f"(secret file, {len(self.after)} bytes, {state}{keys})\n" + classes
            if self.before is None and posixpath.basename(self.path).endswith(".env"):
                # A new env file: its keys, values masked, so the admin can review it.
                text += "".join(f"+{key}=****\n" for key in env_keys(self.after))
            return text
        from installer.redact import mask_secret_values
        from installer.safetext import visible

        # Both sides masked before diffing: a file not marked secret (customizations.yaml,
        # a certificate) may still hold an old password or key pasted into it by hand.
        before = mask_secret_values((self.before or b"").decode("utf-8", "replace"))
        after = mask_secret_values(self.after.decode("utf-8", "replace"))
        lines = list(difflib.unified_diff(before.splitlines(keepends=True),
                                          after.splitlines(keepends=True),
                                          fromfile=old_name, tofile=self.path))
        text = "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n"
                       for line in lines)
        return visible(redactor(text))


@dataclass
class RenderPlan:
    changes: list[FileChange]  # only files whose content or mode would change
    backups: list[str]  # backups that applying would create
    notes: list[str]  # e.g. "renamed POSTGRES_PASSWORD to POSTGRES_ADMIN_PASSWORD"
    directory: str = ""  # where the files go (compose: the deployment directory)
    backup_sources: dict[str, bytes] = field(default_factory=dict, repr=False)
    directories: list[str] = field(default_factory=list)  # folders to create first
    compose_command: list[str] = field(default_factory=list)  # compose: the tool chosen
    flavour: Flavour | None = None  # compose: "v1" / "v2" env-file parser written for
    trusted_certificate: bytes | None = field(default=None, repr=False)  # what HTTPS must serve
    actions: list[Action] = field(default_factory=list)  # what a deploy does after writing
    stale: list[str] = field(default_factory=list)  # temp files of interrupted writes
    conflicts: list[str] = field(default_factory=list)  # customer.env keys needing a choice
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
        lines += [f"    {line}" for change in self.changes for line in change.classes]
        lines += [f"  back up the current {_backed_up_file(b)} as {b}" for b in self.backups]
        lines += [f"  remove {s} (left by an interrupted run)" for s in self.stale]
        lines += [f"  remove {r} (no longer used)" for r in self.removals]
        lines += [f"  note: {note}" for note in self.notes]
        lines += [f"  then {action.text}" for action in self.actions]
        return "\n".join(lines)


def _backed_up_file(backup: str) -> str:
    """customer.env for customer.env.bak.<stamp>, customizations.yaml for its backup."""
    name = posixpath.basename(backup)
    return name.split(".bak.", 1)[0] if ".bak." in name else name


def plan_render(answers: Answers, target: Target, *, redactor: Redactor,
                compose_command: Sequence[str] | None = None,
                compose_version: str | None = None,
                new_release: Sequence[ReleaseFile] | None = None) -> RenderPlan:
    """Read what is there and compute the new files; writes nothing.

    Raises InputError (exit 2) for bad input. For compose, `compose_command` is the tool the
    docker.compose check chose (detected on the target when not given).
    """
    if answers.platform == "kubernetes":
        from installer.render import helm

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


class WriteInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM while writing the files; `state` says exactly what was left."""

    def __init__(self, state: str) -> None:
        super().__init__(state)
        self.state = state


class WriteFailed(TargetError):
    """Writing a file failed once the switch began; the message says what state was left
    (rolled back, or which files are new)."""

    def __init__(self, state: str, cause: BaseException) -> None:
        super().__init__(f"writing the files failed ({cause}): {state}",
                         "fix the cause (disk space, permissions), then run the command again")
        self.state = state
        self.cause = cause


# What signal.signal() takes and returns: a function, SIG_DFL/SIG_IGN, or None for a handler
# not installed from Python.
SignalHandler: TypeAlias = (
    "Callable[[int, FrameType | None], object] | int | signal.Handlers | None")


class _DeferredSignals:
    """SIGINT and SIGTERM wait while the files are switched: the switch is a few renames,
    done or undone as one step. Only the main thread can hold signals (the wizard's workers
    are stopped through their cancel event, never by a signal)."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, SignalHandler] = {}

    def __enter__(self) -> _DeferredSignals:
        if threading.current_thread() is threading.main_thread():
            for number in (signal.SIGINT, signal.SIGTERM):
                self._previous[number] = signal.signal(number, self._hold)
        return self

    def _hold(self, number: int, _frame: object) -> None:
        self.received = number

    def __exit__(self, *exc: object) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)


def _root_for(plan: RenderPlan, path: str) -> str:
    """The folder below which links are refused: the deployment directory when the file is
    in it, else the file's own folder."""
    directory = posixpath.normpath(plan.directory) if plan.directory else ""
    if directory and posixpath.normpath(path).startswith(directory.rstrip("/") + "/"):
        return directory
    return posixpath.dirname(path)


def apply_render(plan: RenderPlan, target: Target) -> list[str]:
    """Write the backups, stage every file (temp files written and fsynced), then switch them
    all into place in one step: renames in a fixed order with signals held, and the files
    already switched restored if one fails. Returns the paths written.

    Raises WriteInterrupted (a KeyboardInterrupt) when interrupted, and WriteFailed when a
    write fails once the switch began; both say exactly what state was left.

    Refuses (InputError, exit 2, nothing written) while customer.env has unresolved
    conflicts between the admin's edits and a new package.
    """
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
    staged: list[StagedFile] = []
    try:
        for backup in plan.backups:
            target.write_deployment_file(backup, plan.backup_sources[backup], 0o600,
                                         _root_for(plan, backup))
            log.info("backed up to %s", backup)
            written.append(backup)
        for change in plan.changes:
            # A file for a container's group is private until the group is set (below).
            mode = change.mode if change.group is None else change.mode & 0o700
            staged.append(target.stage_deployment_file(change.path, change.after, mode,
                                                       _root_for(plan, change.path)))
    except BaseException as exc:
        with _DeferredSignals():
            for item in staged:
                target.discard_staged(item)
            _remove_temp_files(plan, target)
        if isinstance(exc, KeyboardInterrupt):
            log.info("interrupted before the switch: no file was changed")
            raise WriteInterrupted("no file was changed" + _backups_note(written)) from None
        raise
    backed_up = _backups_note(written)
    switched: list[FileChange] = []
    with _DeferredSignals() as held:
        try:
            for item, change in zip(staged, plan.changes, strict=True):
                target.switch_staged(item)
                switched.append(change)
                log.info("wrote %s (mode %o, %d bytes)", change.path, change.mode,
                         len(change.after))
        except BaseException as exc:
            for item in staged[len(switched):]:
                target.discard_staged(item)
            _remove_temp_files(plan, target)
            state = _roll_back(plan, target, switched) + backed_up
            log.error("writing the files failed (%s): %s", exc, state)
            if isinstance(exc, KeyboardInterrupt):
                raise WriteInterrupted(state) from None
            raise WriteFailed(state, exc) from exc
    written += [change.path for change in plan.changes]
    for change in plan.changes:
        if change.group is not None:
            _give_group(plan, target, change)
    for path in plan.removals:  # files no longer used (the previous domain's pair)
        try:
            target.remove(path)
            log.info("removed %s (no longer used)", path)
        except FileNotFoundError:
            pass
    if held.received is not None:
        log.info("interrupted (signal %d) during the switch; it was completed first",
                 held.received)
        raise WriteInterrupted(f"every file had been written: {', '.join(written)}")
    return written


def _remove_temp_files(plan: RenderPlan, target: Target) -> None:
    """Temp files of this render that an interrupt caught between their creation and their
    registration (a temp file is only ever ours to remove when the render stops)."""
    for stale in stale_temp_files(target, [c.path for c in plan.changes] + plan.backups):
        try:
            target.remove(stale)
        except OSError as exc:
            log.warning("could not remove %s: %s", stale, exc)


def _backups_note(backups: list[str]) -> str:
    if not backups:
        return ""
    return (f" (the backup {', '.join(backups)} was written; it is a copy of customer.env "
            "as it is, nothing reads it)")


def _roll_back(plan: RenderPlan, target: Target, switched: list[FileChange]) -> str:
    """Put back what the switched files held; say what state that left."""
    still_new: list[str] = []
    for change in reversed(switched):
        try:
            if change.before is None:
                target.remove(change.path)
            else:
                target.write_deployment_file(change.path, change.before,
                                             change.mode_before or change.mode,
                                             _root_for(plan, change.path))
            log.info("restored %s", change.path)
        except Exception as exc:  # noqa: BLE001 - every file gets its chance to be restored
            log.error("could not restore %s: %s", change.path, exc)
            still_new.append(change.path)
    if not switched:
        return "no file was changed"
    if not still_new:
        return (f"no file was changed: the {len(switched)} file(s) already switched were put "
                "back as they were")
    old = [c.path for c in plan.changes if c.path not in still_new]
    return (f"HALF-WRITTEN: {', '.join(still_new)} hold the new content but "
            f"{', '.join(old) or 'no other file'} the old; run `carto-installer render` "
            "again to finish")


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
            made_for = temp_file_owner(entry)
            if made_for is not None and (made_for in ours
                                         or made_for.startswith("customer.env.bak.")):
                found.append(posixpath.join(folder, entry))
    return found


__all__ = ["FileChange", "RenderPlan", "WriteFailed", "WriteInterrupted", "apply_render",
           "plan_render"]
