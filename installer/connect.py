"""Opening the machine the answers name: the door every command and the wizard go through to
reach a `Target` (this machine, or one over SSH)."""

from __future__ import annotations

from collections.abc import Callable

from installer.answers import Answers
from installer.redact import Redactor
from installer.target import LocalTarget, Target

HostKeyConfirm = Callable[[str, str], bool]  # (host description, "SHA256:...") -> accept?


def open_target(
    answers: Answers | None,
    *,
    accept_host_key: str | None = None,
    confirm_host_key: HostKeyConfirm | None = None,
    redactor: Redactor | None = None,
    passphrase_prompt: Callable[[str], str] | None = None,
) -> Target:
    """The machine the answers name: this one, or a remote one over SSH."""
    if answers is None or answers.target is None:
        return LocalTarget()
    from installer.ssh import SSHTarget  # paramiko is only loaded for remote targets

    target: Target = SSHTarget.connect(
        answers.target,
        accept_host_key=accept_host_key,
        confirm_host_key=confirm_host_key,
        redactor=redactor,
        passphrase_prompt=passphrase_prompt,
    )
    return target


__all__ = ["HostKeyConfirm", "open_target"]
