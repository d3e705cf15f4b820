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

# open_target moved to installer.connect; re-exported here for the callers that still import
# it from its old home.
from installer.connect import HostKeyConfirm as HostKeyConfirm
from installer.connect import open_target as open_target
from installer.errors import InputError
from installer.redact import Redactor
from installer.report import CATEGORY_TITLES, Report
from installer.target import Target


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
