"""The preflight as every front end uses it: open the target, pick the checks, run them."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from installer.answers import Answers
from installer.checks.base import CheckContext, Resolver, system_resolver
from installer.checks.catalog import all_checks
from installer.checks.engine import Event, run_checks, select
from installer.errors import InputError
from installer.redact import Redactor
from installer.report import CATEGORY_TITLES, Report
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


def validate_names(names: Sequence[str], option: str, extra: Sequence[str] = ()) -> list[str]:
    """Check --only/--skip names: categories, check ids, or egress.<host>; `extra` are more
    ids a command knows (upgrade's gates)."""
    known_ids = {c.id for c in all_checks()} | set(extra)
    out = []
    for name in names:
        name = name.strip()
        if not name:
            continue
        if name in CATEGORY_TITLES or name in known_ids or name.startswith("egress."):
            out.append(name)
            continue
        raise InputError(
            f"{option}: unknown check or category {name!r}",
            "categories: " + ", ".join(CATEGORY_TITLES) + "; ids as in the report",
        )
    return out


def run_preflight(
    target: Target,
    answers: Answers | None,
    platform: str,
    *,
    only: Sequence[str] = (),
    skip: Sequence[str] = (),
    redactor: Redactor | None = None,
    cancel: threading.Event | None = None,
    on_event: Callable[[Event], None] | None = None,
    resolver: Resolver | None = None,
) -> Report:
    ctx = CheckContext(
        target=target,
        platform=platform,
        answers=answers,
        redactor=redactor,
        cancel=cancel or threading.Event(),
        resolver=resolver or system_resolver,
    )
    started_at = datetime.now(UTC)
    start = time.monotonic()
    checks = select(all_checks(), platform, only)
    results = run_checks(ctx, checks, skip=skip, on_event=on_event)
    return Report(platform=platform, target=target.name, results=results,
                  started_at=started_at, duration_s=time.monotonic() - start)
