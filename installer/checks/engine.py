"""Running the catalog: selection, dependencies, concurrency, timeouts.

Independent checks run at the same time in a thread pool, so a preflight takes about as long as
its slowest check. A check starts as soon as the checks it needs have finished; when one of
those did not pass, it is skipped with the reason instead of failing a second time. A check
that raises becomes `error` with the cause; one that overruns its timeout becomes `error`
("did not finish within N s") and the run goes on without waiting for it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass
from typing import Any

from installer.checks.base import (
    Check,
    CheckContext,
    CheckResult,
    Outcome,
    Status,
    category_of,
)
from installer.target import describe_exception

log = logging.getLogger("installer.checks")


@dataclass(frozen=True)
class CheckStarted:
    id: str
    title: str


@dataclass(frozen=True)
class CheckFinished:
    result: CheckResult


Event = CheckStarted | CheckFinished


@dataclass(frozen=True)
class _Instance:
    id: str
    title: str
    check: Check
    argument: Any = None
    has_argument: bool = False


def select(catalog: Iterable[Check], platform: str, only: Sequence[str] = ()) -> list[Check]:
    """The checks for `platform`, limited by `--only` (ids or categories) plus what they need."""
    by_id = {c.id: c for c in catalog if platform in c.platforms}
    if not only:
        return list(by_id.values())
    wanted = {c.id for c in by_id.values() if _matches(c.id, only)}
    pending = list(wanted)
    while pending:
        for need in by_id[pending.pop()].needs:
            if need in by_id and need not in wanted:
                wanted.add(need)
                pending.append(need)
    return [c for c in by_id.values() if c.id in wanted]


def _matches(check_id: str, names: Sequence[str]) -> bool:
    """True when an id is named in --only/--skip, by itself, its family or its category."""
    for name in names:
        if check_id == name or category_of(check_id) == name or check_id.startswith(name + "."):
            return True
    return False


def is_named(check_id: str, names: Sequence[str]) -> bool:
    return _matches(check_id, names)


def run_checks(
    ctx: CheckContext,
    checks: Sequence[Check],
    *,
    skip: Sequence[str] = (),
    on_event: Callable[[Event], None] | None = None,
    max_workers: int = 32,
) -> list[CheckResult]:
    """Run `checks` against `ctx.target`; results come back in catalog order."""
    instances, early = _expand(ctx, checks)
    results: dict[str, CheckResult] = {r.id: r for r in early}
    order = [i.id for i in instances] + [r.id for r in early]

    def emit(event: Event) -> None:
        if on_event is not None:
            try:
                on_event(event)
            except Exception:  # a front end's display bug must not stop the checks
                log.exception("event handler failed")

    for result in early:
        ctx.results[result.id] = result
        emit(CheckFinished(result))

    pending = {i.id: i for i in instances}
    running: dict[Future[Outcome], tuple[_Instance, float]] = {}
    limit = max(1, max_workers)
    while pending or running:
        if ctx.cancel.is_set():
            for inst in list(pending.values()):
                _finish(ctx, results, emit, inst, Outcome(Status.SKIP, "cancelled"), 0.0)
            pending.clear()
            for future, (inst, started) in list(running.items()):
                future.cancel()
                _finish(ctx, results, emit, inst, Outcome(Status.SKIP, "cancelled"),
                        time.monotonic() - started)
            running.clear()
            break
        for inst in list(pending.values()):
            if len(running) >= limit:
                break
            if is_named(inst.id, skip):
                del pending[inst.id]
                _finish(ctx, results, emit, inst,
                        Outcome(Status.SKIP, "skipped on request (--skip)"), 0.0)
                continue
            blocker = _blocked(inst, results, pending, running)
            if blocker == "wait":
                continue
            del pending[inst.id]
            if blocker is not None:
                _finish(ctx, results, emit, inst, Outcome(Status.SKIP, blocker), 0.0)
                continue
            reason = inst.check.applies(ctx) if inst.check.applies else None
            if reason:
                _finish(ctx, results, emit, inst, Outcome(Status.SKIP, reason), 0.0)
                continue
            emit(CheckStarted(inst.id, inst.title))
            future = _start(inst, ctx)
            running[future] = (inst, time.monotonic())
        if not running:
            continue
        now = time.monotonic()
        next_deadline = min(start + inst.check.timeout for inst, start in running.values())
        # Wake at least every 0.1 s so a cancel (Ctrl-C, Back) is honoured promptly.
        done, _ = wait(list(running), timeout=min(max(0.0, next_deadline - now) + 0.01, 0.1),
                       return_when=FIRST_COMPLETED)
        now = time.monotonic()
        for future in list(running):
            inst, started = running[future]
            if future in done:
                del running[future]
                _finish(ctx, results, emit, inst, _outcome_of(future), now - started)
            elif now - started >= inst.check.timeout:
                del running[future]
                _finish(ctx, results, emit, inst, Outcome(
                    Status.ERROR,
                    f"the check did not finish within {inst.check.timeout:g} s",
                    remediation="re-run; if it persists, the target may be overloaded "
                    "or a service it queries is hanging",
                ), now - started)
    return [results[i] for i in order if i in results]


def _start(inst: _Instance, ctx: CheckContext) -> Future[Outcome]:
    """Run one check in a daemon thread. A check that overran its timeout (or a run that
    was cancelled or interrupted) never holds the program's exit: nobody waits for it."""
    future: Future[Outcome] = Future()

    def runner() -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(_call(inst, ctx))
        except BaseException as exc:  # delivered to the engine through the future
            future.set_exception(exc)

    threading.Thread(target=runner, name=f"check-{inst.id}", daemon=True).start()
    return future


def _expand(
    ctx: CheckContext, checks: Sequence[Check]
) -> tuple[list[_Instance], list[CheckResult]]:
    instances: list[_Instance] = []
    early: list[CheckResult] = []
    for check in checks:
        if check.expand is None:
            instances.append(_Instance(check.id, check.title, check))
            continue
        try:
            members = check.expand(ctx)
        except Exception as exc:  # the family could not even be listed
            log.exception("expanding %s failed", check.id)
            early.append(_result(check.id, check.title, check,
                                 Outcome(Status.ERROR, describe_exception(exc)), 0.0))
            continue
        if not members:
            reason = (check.applies(ctx) if check.applies else None) or "nothing to check"
            early.append(_result(check.id, check.title, check, Outcome(Status.SKIP, reason), 0.0))
        for member_id, title, argument in members:
            instances.append(_Instance(member_id, title, check, argument, True))
    return instances, early


def _blocked(inst: _Instance, results: dict[str, CheckResult], pending: dict[str, Any],
             running: dict[Future[Outcome], tuple[_Instance, float]]) -> str | None:
    running_ids = {i.id for i, _ in running.values()}
    for need in inst.check.needs:
        if need in pending or need in running_ids:
            return "wait"
        result = results.get(need)
        if result is None:
            continue  # not selected for this platform: nothing to wait for
        if result.status not in (Status.PASS, Status.WARN):
            verb = {Status.SKIP: "was skipped", Status.ERROR: "could not run"}.get(
                result.status, "failed")
            return f"needs {need}, which {verb}"
    return None


def _call(inst: _Instance, ctx: CheckContext) -> Outcome:
    if inst.has_argument:
        return inst.check.run(ctx, inst.argument)
    return inst.check.run(ctx)


def _outcome_of(future: Future[Outcome]) -> Outcome:
    try:
        outcome = future.result()
    except Exception as exc:
        log.exception("check raised")
        return Outcome(Status.ERROR, f"the check could not run: {describe_exception(exc)}",
                       remediation="see carto-installer.log for details")
    if not isinstance(outcome, Outcome):
        return Outcome(Status.ERROR, f"internal error: check returned {type(outcome).__name__}")
    return outcome


def _result(check_id: str, title: str, check: Check, outcome: Outcome,
            duration: float) -> CheckResult:
    return CheckResult(
        id=check_id,
        category=category_of(check_id),
        title=title,
        status=outcome.status,
        required=outcome.required if outcome.required is not None else check.required,
        observed=outcome.observed,
        message=outcome.message,
        remediation=outcome.remediation,
        duration_s=duration,
        data=outcome.data,
    )


def _finish(ctx: CheckContext, results: dict[str, CheckResult],
            emit: Callable[[Event], None], inst: _Instance, outcome: Outcome,
            duration: float) -> None:
    result = _result(inst.id, inst.title, inst.check, outcome, duration)
    if ctx.redactor is not None:
        result.message = ctx.redactor(result.message)
        result.observed = ctx.redactor(result.observed)
        result.remediation = ctx.redactor(result.remediation)
    results[inst.id] = result
    ctx.results[inst.id] = result
    log.info("%s: %s (%s) observed=%r", result.id, result.status, result.message, result.observed)
    emit(CheckFinished(result))
