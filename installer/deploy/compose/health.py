"""Is the Compose project healthy: the containers as the engine sees them, the judgement
(running, healthy when there is a healthcheck, jobs exited 0, no restart loop), the watcher
that reports each change during a deployment, the waits, and the log tails shown on failure."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from installer.deploy import LogLine, ServiceState
from installer.deploy.compose.project import is_job
from installer.errors import DeployError

if TYPE_CHECKING:
    from docker import DockerClient

    from installer.deploy.compose.project import _Run

log = logging.getLogger("installer.deploy.compose")

POLL_INTERVAL = 0.25
SETTLE_SECONDS = 0.5  # a container without healthcheck must stay up this long
# status: a container that has crashed CRASH_RESTARTS times counts as recovered only after
# staying up this long (a restart loop spends most of its time "running" between crashes).
RECOVERED_SECONDS = 10.0
CRASH_RESTARTS = 3  # restarts that make a container "crash-looping"
LOG_LINES = 25


@dataclass
class ContainerView:
    id: str
    name: str
    service: str
    state: str  # created, running, restarting, exited, paused, dead
    health: str  # "", starting, healthy, unhealthy
    exit_code: int
    restarts: int
    started_at: str
    restart_policy: str
    image: str  # the image reference it was created from
    image_id: str
    created: str = ""
    mounts: tuple[str, ...] = ()  # host paths mounted into it

    @property
    def display(self) -> str:
        if self.state == "exited":
            return f"exited ({self.exit_code})"
        return self.state + (f" ({self.health})" if self.health else "")


def list_containers(client: DockerClient, project: str) -> list[ContainerView]:
    views: list[ContainerView] = []
    for container in client.containers.list(
            all=True, filters={"label": f"com.docker.compose.project={project}"}):
        attrs = container.attrs
        labels = attrs.get("Config", {}).get("Labels") or {}
        if labels.get("com.docker.compose.oneoff") == "True":
            continue
        state = attrs.get("State", {})
        views.append(ContainerView(
            id=attrs.get("Id", container.id),
            name=attrs.get("Name", "").lstrip("/") or container.name,
            service=labels.get("com.docker.compose.service", container.name),
            state=state.get("Status", "unknown"),
            health=(state.get("Health") or {}).get("Status", ""),
            exit_code=int(state.get("ExitCode", 0) or 0),
            restarts=int(attrs.get("RestartCount", 0) or 0),
            started_at=state.get("StartedAt", ""),
            restart_policy=(attrs.get("HostConfig", {}).get("RestartPolicy") or {}).get(
                "Name", "") or "no",
            image=attrs.get("Config", {}).get("Image", ""),
            image_id=attrs.get("Image", ""),
            created=attrs.get("Created", ""),
            mounts=tuple(str(m.get("Source", "")) for m in attrs.get("Mounts") or []),
        ))
    return sorted(views, key=lambda v: v.name)


def current_containers(views: list[ContainerView], expected: dict[str, int]
                       ) -> list[ContainerView]:
    """The containers that count: while Compose recreates a service, the old container
    (renamed, being stopped) sits next to the new one; only the newest `scale` count."""
    out: list[ContainerView] = []
    for service in dict.fromkeys(v.service for v in views):
        mine = sorted((v for v in views if v.service == service), key=lambda v: v.created,
                      reverse=True)
        keep = expected.get(service, len(mine))
        out += mine[: max(keep, 1)] if service in expected else mine
    return sorted(out, key=lambda v: v.name)


@dataclass
class Assessment:
    healthy: bool
    failing: list[tuple[ContainerView, str]] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)


def assess(views: list[ContainerView], expected: dict[str, int],
           settled: Callable[[ContainerView], bool] = lambda v: True) -> Assessment:
    """Is the project healthy, and if not, what fails and what is still coming up."""
    result = Assessment(healthy=False)
    views = current_containers(views, expected)
    for service, count in expected.items():
        present = [v for v in views if v.service == service]
        if count > 0 and len(present) < count:
            result.waiting.append(f"{service}: no container yet")
    for view in views:
        if view.service not in expected:
            continue  # an orphan from an older docker-compose.yml: not ours to judge
        job = is_job(view.service)
        if view.state == "exited" and job and view.exit_code == 0:
            continue
        if view.state == "running" and not job:
            if view.health == "unhealthy":
                result.failing.append((view, "its healthcheck reports unhealthy"))
            elif view.restarts >= CRASH_RESTARTS and not settled(view):
                # Caught between two crashes of a restart loop: running, but not for long.
                result.failing.append((view, f"it keeps failing (restarted {view.restarts} "
                                       f"times, last exit code {view.exit_code})"))
            elif view.health == "starting" or not settled(view):
                result.waiting.append(f"{view.service}: {view.display}")
            continue
        if view.state in ("dead", "removing"):
            result.failing.append((view, f"it is {view.state}"))
        elif view.restarts >= CRASH_RESTARTS and view.state in ("restarting", "exited"):
            result.failing.append((view, f"it keeps failing (restarted {view.restarts} "
                                   f"times, last exit code {view.exit_code})"))
        elif view.state == "exited" and view.exit_code != 0 and view.restart_policy == "no":
            result.failing.append((view, f"it exited with code {view.exit_code}"))
        else:
            result.waiting.append(f"{view.service}: {view.display}")
    result.healthy = not result.failing and not result.waiting
    return result


class _Watcher:
    """Polls the project's containers and reports each change of state once."""

    def __init__(self, run: _Run, project: str, expected: dict[str, int]) -> None:
        self.run = run
        self.project = project
        self.expected = expected
        self.seen: dict[str, tuple[str, str]] = {}
        self.running_since: dict[tuple[str, str], float] = {}

    def poll(self) -> list[ContainerView]:
        try:
            views = list_containers(self.run.client(), self.project)
        except DeployError:
            raise
        except Exception as exc:  # the engine hiccupped: try again at the next poll
            log.debug("listing containers failed: %s", exc)
            return []
        now = time.monotonic()
        shown_views = current_containers(views, self.expected)
        for view in shown_views:
            single = sum(v.service == view.service for v in shown_views) == 1
            key = view.service if single else view.name
            shown = (view.display, view.health)
            if self.seen.get(key) != shown:
                self.seen[key] = shown
                self.run.emit(ServiceState(key, view.state if view.state != "exited"
                                           else view.display, view.health))
            if view.state == "running":
                self.running_since.setdefault((view.id, view.started_at), now)
        return views

    def settled(self, view: ContainerView) -> bool:
        since = self.running_since.get((view.id, view.started_at))
        return since is not None and time.monotonic() - since >= SETTLE_SECONDS


def _wait_healthy(run: _Run, watcher: _Watcher, expected: dict[str, int], timeout: float,
                  command: list[str]) -> str:
    deadline = time.monotonic() + timeout
    started = time.monotonic()
    while True:
        run.check_cancel()
        views = watcher.poll()
        verdict = assess(views, expected, watcher.settled)
        if verdict.failing:
            view, reason = verdict.failing[0]
            _show_logs(run, view)
            raise DeployError(
                f"service {view.service} is not running: {reason}",
                f"its last log lines are above; fix the cause (often a setting in the answers "
                f"file or customer.env), then re-run `carto-installer deploy`, which resumes. "
                f"All its logs: cd {run.directory} && {' '.join(command)} logs {view.service}")
        if verdict.healthy:
            count = len(views)
            return f"{count} container{'s' if count != 1 else ''} healthy after " \
                   f"{time.monotonic() - started:.1f} s"
        if time.monotonic() > deadline:
            waiting = "; ".join(verdict.waiting)
            for view in views:
                if any(w.startswith(view.service + ":") for w in verdict.waiting):
                    _show_logs(run, view)
            raise DeployError(
                f"not healthy after {timeout:.0f} s: {waiting}",
                f"check the log lines above (cd {run.directory} && {' '.join(command)} ps / "
                "logs), then re-run `carto-installer deploy`; it resumes")
        time.sleep(POLL_INTERVAL)


def _still_healthy(run: _Run, project: str, expected: dict[str, int],
                   earlier: list[ContainerView], command: list[str]) -> None:
    """A last look after the HTTPS check: a service that crashed in the meantime (restarted,
    or stopped) fails the deployment instead of passing for healthy."""
    restarts = {v.id: v.restarts for v in earlier}
    for view in current_containers(list_containers(run.client(), project), expected):
        crashed = view.restarts > restarts.get(view.id, view.restarts)
        stopped = view.state != "running" and not is_job(view.service)
        if crashed or stopped:
            _show_logs(run, view)
            raise DeployError(
                f"service {view.service} stopped being healthy ({view.display}, restarted "
                f"{view.restarts} times)",
                f"its last log lines are above; fix the cause, then re-run `carto-installer "
                f"deploy`. All its logs: cd {run.directory} && {' '.join(command)} logs "
                f"{view.service}")


def _show_logs(run: _Run, view: ContainerView) -> None:
    try:
        container = run.client().containers.get(view.id)
        text = container.logs(tail=LOG_LINES, stdout=True, stderr=True).decode("utf-8", "replace")
    except Exception as exc:
        run.emit(LogLine(f"{view.service}: (its logs cannot be read: {exc})"))
        return
    run.emit(LogLine(f"last log lines of {view.service} ({view.name}):"))
    run.log_lines(text, f"{view.service} | ")


def _parse_docker_time(text: str) -> float | None:
    """Docker's RFC 3339 times carry nanoseconds; datetime takes microseconds."""
    from datetime import datetime

    match = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)", text or "")
    if not match:
        return None
    fraction = (match.group(2) or ".0")[:7]
    zone = "+00:00" if match.group(3) == "Z" else match.group(3)
    return datetime.fromisoformat(match.group(1) + fraction + zone).timestamp()


def _settled_by_engine_clock(client: DockerClient) -> Callable[[ContainerView], bool]:
    """For a one-off look (status): a container counts as settled once it has been running
    long enough by the engine's own clock (the target's clock may differ from ours)."""
    try:
        now = _parse_docker_time(str(client.info().get("SystemTime", "")))
    except Exception:  # no clock to compare with: judge by state alone
        now = None

    def settled(view: ContainerView) -> bool:
        started = _parse_docker_time(view.started_at)
        needed = RECOVERED_SECONDS if view.restarts >= CRASH_RESTARTS else SETTLE_SECONDS
        return now is None or started is None or now - started >= needed

    return settled
