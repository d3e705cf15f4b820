"""The Docker Compose deployment: preflight, render, load, launch, wait, verify.

Healthy means what the vendor documents: every container of the project is running (and
healthy when it has a healthcheck), and `workspace-migrations` has exited 0. Containers are
watched through the Docker API of the target; Compose itself is run on the target, in the
deployment directory, with the command the docker.compose check chose.

A re-run with nothing changed must not restart anything, yet `compose up -d` starts an exited
migrations job again. So after a successful deploy a small state file records what was
deployed (a hash of docker-compose.yml, .env and the Compose command, and the container ids);
when it still matches and the deployment is healthy, `up -d` is not run at all.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import posixpath
import re
import socket
import ssl
import tarfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from installer.answers import Answers, require
from installer.checks.base import Status
from installer.deploy import (
    DeployCancelled,
    DeployResult,
    EventSink,
    LogLine,
    ServiceState,
    StatusResult,
    StepFinished,
    StepStarted,
    gate_on_preflight,
)
from installer.deploy.images import load_images_archive
from installer.envfile import EnvFile, Flavour
from installer.errors import DeployError, InputError, InstallerError
from installer.target import CommandNotFound, LinkRefused, Target
from installer.userfiles import require_regular_file

if TYPE_CHECKING:
    from installer.redact import Redactor
    from installer.render import RenderPlan

log = logging.getLogger("installer.deploy.compose")

STATE_FILE = ".carto-installer-state.json"
UP_TIMEOUT = 1800.0  # pulling CARTO's images from a registry can take long
POLL_INTERVAL = 0.25
UP_POLL_INTERVAL = 0.5
SETTLE_SECONDS = 0.5  # a container without healthcheck must stay up this long
# status: a container that has crashed CRASH_RESTARTS times counts as recovered only after
# staying up this long (a restart loop spends most of its time "running" between crashes).
RECOVERED_SECONDS = 10.0
CRASH_RESTARTS = 3  # restarts that make a container "crash-looping"
LOG_LINES = 25
HTTPS_WAIT = 30.0  # the router may need a moment after it is up
_NOISE = re.compile(r"the attribute `version` is obsolete")


# --- reading the project ---------------------------------------------------------------------


def env_values(dotenv: bytes, flavour: Flavour | None) -> dict[str, str]:
    return EnvFile.parse(dotenv.decode("utf-8", "replace")).items(flavour or "v2")


def project_name(directory: str, env: dict[str, str]) -> str:
    """Compose's project name: COMPOSE_PROJECT_NAME from .env, else the folder's name, made
    lower-case with only [a-z0-9_-] kept (both Compose versions agree on this)."""
    raw = env.get("COMPOSE_PROJECT_NAME") or posixpath.basename(directory.rstrip("/"))
    return re.sub(r"[^-_a-z0-9]", "", raw.lower()).lstrip("_-")


_REFERENCE = re.compile(r"\$(?:\$|\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}|([A-Za-z_]\w*))")


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default}, $VAR and $$ in one compose-file value."""
    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1) or match.group(3)
        value = env.get(name, "")
        if match.group(2) is not None and not value:
            return match.group(2)
        return value

    return _REFERENCE.sub(replace, text)


def expected_services(compose_text: str, env: dict[str, str]) -> dict[str, int]:
    """Service -> number of containers docker-compose.yml asks for (scale 0 = none)."""
    import yaml

    try:
        data = yaml.safe_load(compose_text)
    except yaml.YAMLError as exc:
        raise InputError(f"docker-compose.yml does not parse: {exc}") from None
    services = (data or {}).get("services") if isinstance(data, dict) else None
    if not isinstance(services, dict):
        raise InputError("docker-compose.yml has no services")
    out: dict[str, int] = {}
    for name, spec in services.items():
        spec = spec if isinstance(spec, dict) else {}
        raw = spec.get("scale", (spec.get("deploy") or {}).get("replicas", 1))
        text = interpolate(str(raw), env) if isinstance(raw, str) else str(raw)
        out[str(name)] = int(text) if text.strip().isdigit() else 1
    return out


def is_job(service: str) -> bool:
    """Services that run once and must exit 0 (the vendor's migrations)."""
    return service == "migrations" or service.endswith("-migrations")


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


def list_containers(client: Any, project: str) -> list[ContainerView]:
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


# --- the deployment ---------------------------------------------------------------------------


class _Run:
    """One deployment's shared bits: where, with what, and how to report."""

    def __init__(self, answers: Answers, target: Target, redactor: Redactor, emit: EventSink,
                 cancel: threading.Event) -> None:
        self.answers = answers
        self.target = target
        self.redactor = redactor
        self.emit = emit
        self.cancel = cancel
        self.directory = posixpath.normpath(answers.compose.directory)
        # target.sudo: Compose runs as root when the SSH user may not use Docker itself.
        self.sudo = bool(answers.target and answers.target.sudo)
        self._client: Any = None

    def client(self, timeout: float = 30.0) -> Any:
        if self._client is None:
            try:
                self._client = self.target.docker_client(timeout=timeout)
            except Exception as exc:
                from installer.checks.docker import explain_engine_error

                message, fix = explain_engine_error(exc, self.target.is_local)
                raise DeployError(message, fix) from None
        return self._client

    def check_cancel(self) -> None:
        if self.cancel.is_set():
            raise DeployCancelled("cancelled: the deployment was stopped",
                                  "re-run `carto-installer deploy` to continue; it resumes")

    def log_lines(self, text: str, prefix: str = "") -> None:
        for line in text.splitlines():
            if line.strip() and not _NOISE.search(line):
                self.emit(LogLine(self.redactor(prefix + line)))

    def read(self, name: str) -> bytes | None:
        try:
            return self.target.read_deployment_file(posixpath.join(self.directory, name),
                                                    self.directory)
        except LinkRefused as exc:
            raise InputError(f"{exc.path} on {self.target.name} is a symbolic link: the "
                             "installer does not follow links in the deployment directory",
                             f"replace it with the real file (ls -l {exc.path})") from None
        except FileNotFoundError:
            return None


class _Step:
    """Reports a step's start and end (with its outcome) around a `with` block."""

    def __init__(self, run: _Run, name: str) -> None:
        self.run = run
        self.name = name
        self.detail = ""

    def __enter__(self) -> _Step:
        self.run.emit(StepStarted(self.name))
        log.info("step %s", self.name)
        return self

    def __exit__(self, kind: object, exc: BaseException | None, tb: object) -> None:
        ok = exc is None
        detail = self.detail if ok else self.run.redactor(
            getattr(exc, "message", None) or str(exc) or type(exc).__name__)
        self.run.emit(StepFinished(self.name, ok, detail))
        log.info("step %s %s: %s", self.name, "done" if ok else "failed", detail)


def deploy_compose(answers: Answers, target: Target, *, redactor: Redactor,
                   skip: Sequence[str], cancel: threading.Event, emit: EventSink,
                   confirm: Callable[[RenderPlan], bool] | None,
                   health_timeout: float) -> DeployResult:
    from installer.preflight import run_preflight
    from installer.render import apply_render, conflict_error, plan_render
    from installer.render.compose import check_inputs

    # Bad input stops the deployment before anything runs (exit 2, the key named).
    check_inputs(answers, target, redactor)
    assert answers.domain is not None
    run = _Run(answers, target, redactor, emit, cancel)
    url = f"https://{answers.domain}"

    with _Step(run, "preflight") as step:
        report = run_preflight(target, answers, "compose", redactor=redactor, cancel=cancel,
                               on_event=emit)
        run.check_cancel()
        accepted = gate_on_preflight(report, skip)
        compose_data = next((r.data for r in report.results if r.id == "docker.compose"
                             and r.status == Status.PASS), {})
        command = list(compose_data.get("command") or [])
        if not command:
            raise DeployError("no usable Docker Compose on the target (docker.compose did not "
                              "pass)", "install the docker compose v2 plugin or "
                              "docker-compose >= 1.29")
        summary = report.summary()
        step.detail = (f"{summary['pass']} passed, {summary['warn']} warnings, "
                       f"{summary['skip']} skipped" + (
                           f", accepted risks: {', '.join(r.id for r in accepted)}"
                           if accepted else ""))
    accepted_ids = [r.id for r in accepted]

    with _Step(run, "render") as step:
        plan = plan_render(answers, target, redactor=redactor, compose_command=command,
                           compose_version=str(compose_data.get("version", "")))
        if plan.conflicts:  # before asking anything: the answers must choose first (exit 2)
            raise conflict_error(plan)
        run.check_cancel()
        tool = " ".join(command)
        archive = answers.compose.images_archive
        images = archive_images(archive) if archive else {}
        env_now = env_values(plan_dotenv(plan, run), plan.flavour)  # type: ignore[arg-type]
        project = project_name(run.directory, env_now)
        up_to_date = (not _images_missing(run, images)
                      and _deployed_and_healthy(run, plan, command, project))
        current = plan.empty and up_to_date
        # Only files mounted into containers change (a renewed certificate): the Compose
        # configuration is what is running, so no `up -d` (it would start the exited
        # migrations job again); the services those files are mounted into are restarted.
        config_paths = {posixpath.join(run.directory, name) for name in (".env",
                                                                          "docker-compose.yml")}
        mounted_only = (up_to_date and not plan.empty
                        and not any(c.path in config_paths for c in plan.changes))
        if current:
            step.detail = "nothing to change: the files match the answers"
        else:
            if archive:
                plan.actions.append(f"docker load the images in {archive} (only those missing)")
            if answers.compose.registry_username:  # advanced answers: installer/registry.py
                plan.actions.append(f"`docker login {answers.compose.registry}` as "
                                    f"{answers.compose.registry_username} on {target.name}")
            plan.actions.append(f"run `{tool} up -d` in {run.directory} on {target.name}")
            if confirm is not None and not confirm(plan):
                raise DeployCancelled("not confirmed: nothing was changed")
            written = apply_render(plan, target) if not plan.empty else []
            for note in plan.notes:
                emit(LogLine(redactor(note)))
            step.detail = (f"wrote {len(written)} file(s)" if written
                           else "the files already match the answers")
    changed = not plan.empty

    # ---- advanced answers: a registry that needs a login (installer/registry.py)
    if answers.compose.registry_username and not current:
        from installer.registry import docker_login

        with _Step(run, "registry login") as step:
            step.detail = docker_login(answers, target, sudo=run.sudo) or ""
    # ---- end of advanced answers

    if archive and not current:
        with _Step(run, "load images") as step:
            loaded, step.detail = load_images(run, archive, images)
            changed = changed or loaded

    expected = expected_services((run.read("docker-compose.yml") or b"").decode(
        "utf-8", "replace"), env_now)
    if current:
        with _Step(run, "launch") as step:
            step.detail = "already up to date and healthy: nothing restarted"
    else:
        watcher = _Watcher(run, project, expected)
        with _Step(run, "launch") as step:
            before_up = {v.id: v.started_at for v in list_containers(run.client(), project)}
            if mounted_only:
                step.detail = "the Compose configuration is unchanged: no `up -d`"
            else:
                _compose_up(run, command, watcher)
                step.detail = f"`{tool} up -d` done"
            restarted = _reload_certificates(run, plan, command, project, expected, before_up)
            if restarted:
                step.detail += (f"; restarted {', '.join(restarted)} for the new certificates or "
                                "other files mounted into them")
        changed = True
        with _Step(run, "wait healthy") as step:
            step.detail = _wait_healthy(run, watcher, expected, health_timeout, command)
        _save_state(run, plan, command, project)

    with _Step(run, "verify https") as step:
        assert plan.trusted_certificate is not None
        healthy_views = list_containers(run.client(), project)
        step.detail = verify_https(run, answers.domain, plan.trusted_certificate)
        _still_healthy(run, project, expected, healthy_views, command)
    message = (f"CARTO answers at {url}" + (" (nothing changed)" if not changed else ""))
    return DeployResult(True, url, message, accepted_risks=accepted_ids, changed=changed)


def plan_dotenv(plan: RenderPlan, run: _Run) -> bytes:
    """.env as it will be after applying the plan."""
    for change in plan.changes:
        if change.path == posixpath.join(run.directory, ".env"):
            return change.after
    return run.read(".env") or b""


def _fingerprint(run: _Run, command: list[str]) -> str:
    digest = hashlib.sha256()
    for name in ("docker-compose.yml", ".env"):
        data = run.read(name) or b""
        digest.update(len(data).to_bytes(8, "big") + data)
    digest.update(json.dumps(command).encode())
    return digest.hexdigest()


def _save_state(run: _Run, plan: RenderPlan, command: list[str], project: str, *,
                action: str = "deploy", version: str = "") -> None:
    """What was deployed, to skip a needless `up -d`; also when, by which action, of which
    release and package (for `status`)."""
    from datetime import UTC, datetime

    from installer.render.merge import BASE_RECORD, BaseRecord

    views = list_containers(run.client(), project)
    base = BaseRecord.loads(run.read(BASE_RECORD))
    state = {"fingerprint": _fingerprint(run, command), "project": project,
             "containers": sorted(v.id for v in views),
             "at": datetime.now(UTC).isoformat(timespec="seconds"), "action": action,
             "release": version or (run.read("VERSION") or b"").decode("utf-8",
                                                                       "replace").strip(),
             "package": base.package_version if base else ""}
    run.target.write_deployment_file(posixpath.join(run.directory, STATE_FILE),
                                     (json.dumps(state, indent=1) + "\n").encode(), 0o600,
                                     run.directory)


def _deployed_and_healthy(run: _Run, plan: RenderPlan, command: list[str],
                          project: str) -> bool:
    """True when the last successful deploy left exactly this configuration running."""
    raw = run.read(STATE_FILE)
    if raw is None:
        return False
    try:
        state = json.loads(raw)
    except ValueError:
        return False
    if state.get("fingerprint") != _fingerprint(run, command):
        return False
    client = run.client()
    views = list_containers(client, project)
    if sorted(v.id for v in views) != state.get("containers"):
        return False
    for view in views:  # an image re-tagged since (e.g. a new `docker load`) needs `up -d`
        try:
            if client.images.get(view.image).id != view.image_id:
                return False
        except Exception:
            return False
    env = env_values(run.read(".env") or b"", plan.flavour)  # type: ignore[arg-type]
    expected = expected_services((run.read("docker-compose.yml") or b"").decode(), env)
    return assess(views, expected).healthy


def _compose_up(run: _Run, command: list[str], watcher: _Watcher) -> None:
    """`compose up -d`, while reporting each service's state as it changes."""
    outcome: dict[str, Any] = {}

    def launch() -> None:
        try:
            outcome["result"] = run.target.run([*command, "up", "-d"], cwd=run.directory,
                                               timeout=UP_TIMEOUT, sudo=run.sudo)
        except BaseException as exc:  # handed to the main thread
            outcome["error"] = exc

    worker = threading.Thread(target=launch, name="compose-up", daemon=True)
    worker.start()
    while worker.is_alive():
        # Progress only: a slower pace leaves the CPU to Compose and the engine.
        worker.join(UP_POLL_INTERVAL)
        if run.cancel.is_set():
            # compose keeps going on the target; a re-run picks up from there.
            raise DeployCancelled("cancelled while `up -d` was running",
                                  "re-run `carto-installer deploy` to finish; it resumes")
        watcher.poll()
    error = outcome.get("error")
    if isinstance(error, CommandNotFound):
        raise DeployError(f"{command[0]} is not installed on {run.target.name}",
                          "install Docker Compose (see the docker.compose check)")
    if isinstance(error, TimeoutError):
        raise DeployError(f"`{' '.join(command)} up -d` did not finish within "
                          f"{UP_TIMEOUT:.0f} s", "check the registry/network access and "
                          "re-run; it resumes")
    if error is not None:
        raise error
    result = outcome["result"]
    run.log_lines(result.output(), "compose: ")
    watcher.poll()
    if not result.ok:
        last = [ln for ln in result.output().splitlines() if ln.strip() and not _NOISE.search(ln)]
        raise DeployError(
            f"`{' '.join(command)} up -d` failed (exit {result.returncode}): "
            + run.redactor(last[-1] if last else "no output"),
            f"read the compose output above; after fixing, re-run `carto-installer deploy` "
            f"(it resumes). By hand: cd {run.directory} && {' '.join(command)} up -d")


def mounted_inputs(changed: Sequence[str], views: Sequence[ContainerView]
                   ) -> dict[str, list[str]]:
    """Service -> the changed files mounted into its running containers (a bind mount of
    the file itself or of a folder holding it). The mounts are the engine's own record of
    what docker-compose.yml's `volumes:` resolved to, so no path is assumed."""
    out: dict[str, list[str]] = {}
    for view in views:
        if is_job(view.service) or view.state != "running":
            continue
        for path in changed:
            if any(m and (path == m or path.startswith(m.rstrip("/") + "/"))
                   for m in view.mounts):
                files = out.setdefault(view.service, [])
                if path not in files:
                    files.append(path)
    return out


def _reload_certificates(run: _Run, plan: RenderPlan, command: list[str], project: str,
                         expected: dict[str, int], before_up: dict[str, str]) -> list[str]:
    """Services read mounted files (certs/, CA files) when they start, and Compose only
    recreates a container when its configuration changes: a renewed certificate in certs/
    would go unserved. Restart exactly the running services into which a changed file is
    mounted and that `up -d` did not already (re)start."""
    changed = [c.path for c in plan.changes if c.content_changed]
    views = [view for view in current_containers(list_containers(run.client(), project),
                                                 expected)
             if before_up.get(view.id) == view.started_at]
    stale = mounted_inputs(changed, views)
    if not stale:
        return []
    for service, files in sorted(stale.items()):
        names = ", ".join(posixpath.relpath(f, run.directory) for f in files)
        run.emit(LogLine(f"restarting {service}: {names} changed and is mounted into it"))
    services = sorted(stale)
    result = run.target.run([*command, "restart", *services], cwd=run.directory, timeout=300,
                            sudo=run.sudo)
    if not result.ok:
        raise DeployError(f"`{' '.join(command)} restart {' '.join(services)}` failed: "
                          f"{run.redactor(result.output()[-300:])}",
                          "restart them by hand, then re-run `carto-installer deploy`")
    return services


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


# --- images -----------------------------------------------------------------------------------


def archive_images(path: str) -> dict[str, list[str]]:
    """Image id -> tags, from a `docker save` archive's manifest.json."""
    try:
        require_regular_file(path)
        with tarfile.open(path) as archive:
            member = archive.extractfile("manifest.json")
            manifest = json.loads(member.read()) if member else []
    except (OSError, tarfile.TarError, KeyError, ValueError) as exc:
        raise InputError(f"compose.images_archive: {path} is not a `docker save` archive "
                         f"({exc})", "create it with `docker save -o carto-images.tar IMAGE...`"
                         ) from None
    images: dict[str, list[str]] = {}
    for entry in manifest if isinstance(manifest, list) else []:
        config = str(entry.get("Config", ""))
        digest = config.rsplit("/", 1)[-1].removesuffix(".json")
        images["sha256:" + digest] = list(entry.get("RepoTags") or [])
    return images


def _images_missing(run: _Run, images: dict[str, list[str]]) -> list[str]:
    """Images of the archive that the target's engine lacks (or lacks under their tags)."""
    client = run.client()
    missing = []
    for image_id, tags in images.items():
        try:
            present = client.images.get(image_id)
        except Exception:
            missing.append(image_id)
            continue
        if not set(tags) <= set(present.tags or []):
            missing.append(image_id)
    return missing


def load_images(run: _Run, path: str, images: dict[str, list[str]]) -> tuple[bool, str]:
    """`docker load` the archive on the target, unless every image in it is already there."""
    if images and not _images_missing(run, images):
        return False, f"all {len(images)} image(s) in {path} are already loaded"
    if not run.target.is_local:
        # Over SSH: a resumable, checksummed upload first, then `docker load` on the target,
        # so a dropped connection does not start gigabytes again from zero.
        shown = [-1]

        def progress(done: int, total: int) -> None:
            percent = done * 100 // total if total else 100
            if percent // 10 != shown[0] // 10 or done == total:
                shown[0] = percent
                run.emit(LogLine(f"uploading {os.path.basename(path)}: {percent}% "
                                 f"({done // 2**20} of {total // 2**20} MiB)"))

        try:
            sudo = bool(run.answers.target and run.answers.target.sudo)
            tags = sorted(load_images_archive(run.target, path, progress=progress, sudo=sudo))
        except InstallerError:
            raise
        except Exception as exc:  # paramiko's errors are not OSErrors
            raise DeployError(f"uploading or loading {path} failed: {exc}",
                              "run deploy again: the upload resumes where it stopped") from None
        for tag in tags:
            run.emit(LogLine(f"loaded {tag}"))
        return True, f"loaded {len(tags)} image tag(s) from {path}"
    loader = run.target.docker_client(timeout=UP_TIMEOUT)
    try:
        with open(path, "rb") as handle:
            loaded = loader.images.load(handle)
    except Exception as exc:
        raise DeployError(f"docker load of {path} failed: {exc}",
                          "check the archive (`docker load -i` it by hand to see why) and the "
                          "free disk space on the target") from None
    tags = sorted(tag for image in loaded for tag in (image.tags or []))
    for tag in tags:
        run.emit(LogLine(f"loaded {tag}"))
    return True, f"loaded {len(tags)} image tag(s) from {path}"


# --- HTTPS --------------------------------------------------------------------------------------


def _https_routes(run: _Run) -> list[tuple[str, Callable[[], socket.socket]]]:
    """Where to reach the router: this machine's 443, or the SSH host's 443 (falling back to
    the target's own loopback through the SSH connection when it is not reachable from here)."""
    if run.target.is_local:
        return [("127.0.0.1:443", lambda: socket.create_connection(("127.0.0.1", 443), 5))]
    host = run.answers.target.host if run.answers.target else run.target.name
    routes: list[tuple[str, Callable[[], socket.socket]]] = []
    if not (run.answers.target and run.answers.target.jump):
        routes.append((f"{host}:443", lambda: socket.create_connection((host, 443), 5)))
    routes.append((f"127.0.0.1:443 on {run.target.name} (through SSH)",
                   lambda: run.target.open_connection("127.0.0.1", 443, 5)))
    return routes


def probe_https(run: _Run, domain: str, trusted_pem: bytes) -> str:
    """One HTTPS request to the router, SNI and Host set to the domain, trusting exactly the
    certificate in use. Returns what was seen; raises OSError/ssl.SSLError/ValueError."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    leaf = x509.load_pem_x509_certificates(trusted_pem)[0].public_bytes(Encoding.DER)
    context = ssl.create_default_context(cadata=trusted_pem.decode("ascii", "replace"))
    # The certificate in use is the trust anchor, whether self-signed or from a CA.
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    last_error: Exception | None = None
    for route, connect in _https_routes(run):
        try:
            raw = connect()
        except OSError as exc:
            last_error = exc
            continue
        with context.wrap_socket(raw, server_hostname=domain) as tls:
            tls.settimeout(10)
            if tls.getpeercert(binary_form=True) != leaf:
                raise ValueError("the router serves another certificate than the one in "
                                 "certs/")
            tls.sendall(f"GET / HTTP/1.1\r\nHost: {domain}\r\nUser-Agent: carto-installer\r\n"
                        "Connection: close\r\n\r\n".encode())
            head = tls.recv(4096).split(b"\r\n", 1)[0].decode("latin-1")
        parts = head.split()
        if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
            raise ValueError(f"the router's answer is not HTTP ({head[:60]!r})")
        code = int(parts[1])
        if code >= 500:
            raise ValueError(f"the router answered HTTP {code}: a service behind it is not "
                             "ready")
        return (f"https://{domain} answered HTTP {code} via {route}, certificate verified "
                "(SNI and Host set to the domain, so DNS need not point here yet)")
    assert last_error is not None
    raise last_error


def verify_https(run: _Run, domain: str, trusted_pem: bytes) -> str:
    deadline = time.monotonic() + HTTPS_WAIT
    while True:
        run.check_cancel()
        try:
            return probe_https(run, domain, trusted_pem)
        except ssl.SSLCertVerificationError as exc:
            raise DeployError(f"https://{domain} presents a certificate that does not verify: "
                              f"{exc.verify_message}",
                              "check certs/ and ROUTER_SSL_CERTIFICATE_PATH in customer.env; "
                              "re-run `carto-installer render`") from None
        except (OSError, ValueError) as exc:
            if time.monotonic() > deadline:
                raise DeployError(f"https://{domain} does not answer through the router: {exc}",
                                  "check the router's logs and that port 443 is published "
                                  "and not firewalled; then re-run deploy") from None
            time.sleep(0.5)


# --- status -------------------------------------------------------------------------------------


def _parse_docker_time(text: str) -> float | None:
    """Docker's RFC 3339 times carry nanoseconds; datetime takes microseconds."""
    from datetime import datetime

    match = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)", text or "")
    if not match:
        return None
    fraction = (match.group(2) or ".0")[:7]
    zone = "+00:00" if match.group(3) == "Z" else match.group(3)
    return datetime.fromisoformat(match.group(1) + fraction + zone).timestamp()


def _settled_by_engine_clock(client: Any) -> Callable[[ContainerView], bool]:
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


def status_compose(answers: Answers, target: Target, *, redactor: Redactor) -> StatusResult:
    from installer.render.compose import detect_compose

    require(answers, "domain")
    assert answers.domain is not None
    run = _Run(answers, target, redactor, lambda event: None, threading.Event())
    compose_text = run.read("docker-compose.yml")
    dotenv = run.read(".env")
    if compose_text is None or dotenv is None:
        return StatusResult(False, [], "not checked",
                            f"nothing is deployed in {run.directory} (no docker-compose.yml "
                            "or .env): run `carto-installer deploy`")
    tool = detect_compose(target)
    env = env_values(dotenv, tool.flavour if tool else None)
    project = project_name(run.directory, env)
    expected = expected_services(compose_text.decode("utf-8", "replace"), env)
    client = run.client()
    views = list_containers(client, project)
    verdict = assess(views, expected, _settled_by_engine_clock(client))
    services = [ServiceState(v.service, v.state if v.state != "exited" else v.display, v.health)
                for v in views]
    services += [ServiceState(w.split(":", 1)[0], "missing") for w in verdict.waiting
                 if w.endswith("no container yet")]
    cert = run.read(posixpath.join("certs", f"{answers.domain}.crt"))
    https_ok = False
    if cert is None:
        https = f"not checked: certs/{answers.domain}.crt is missing"
    else:
        try:
            https = probe_https(run, answers.domain, cert)
            https_ok = True
        except (OSError, ValueError) as exc:
            https = f"https://{answers.domain} does not answer: {redactor(_words(exc))}"
    facts, warnings = installation_facts(run, cert)
    healthy = verdict.healthy and https_ok
    if healthy:
        message = f"healthy: {len(views)} container(s) up, CARTO answers at https://{answers.domain}"
    else:
        problems = [f"{v.service}: {reason}" for v, reason in verdict.failing] + verdict.waiting
        if not https_ok:
            problems.append(https)
        message = "unhealthy: " + "; ".join(problems)
    return StatusResult(healthy, services, https, redactor(message), facts, warnings)


CERT_WARN_DAYS = 30


def certificate_expiry(cert_pem: bytes | None, now: float | None = None,
                       where: str = "certs/") -> tuple[str, str | None]:
    """(a line about the certificate's expiry, a warning when under CERT_WARN_DAYS)."""
    from datetime import UTC, datetime

    from cryptography import x509

    if not cert_pem:
        return f"certificate: none in {where}", None
    try:
        cert = x509.load_pem_x509_certificates(cert_pem)[0]
    except ValueError:
        return "certificate: unreadable", f"the certificate in {where} cannot be read"
    expires = cert.not_valid_after_utc
    days = (expires - (datetime.fromtimestamp(now, UTC) if now else datetime.now(UTC))
            ).total_seconds() / 86400
    line = f"certificate: expires {expires:%Y-%m-%d %H:%M} UTC ({days:.0f} days)"
    if days < 0:
        return line, "the certificate has EXPIRED: renew it, then run `carto-installer deploy`"
    if days < CERT_WARN_DAYS:
        return line, (f"the certificate expires in {days:.0f} days (under {CERT_WARN_DAYS}): "
                      "renew it, point tls.* at the new files and run `carto-installer deploy`")
    return line, None


def installation_facts(run: _Run, cert: bytes | None) -> tuple[list[str], list[str]]:
    """What is installed and when: release, package, certificate expiry, last deploy/upgrade."""
    from installer.render.merge import BASE_RECORD, BaseRecord

    facts: list[str] = []
    warnings: list[str] = []
    release = (run.read("VERSION") or b"").decode("utf-8", "replace").strip() or "unknown"
    base = BaseRecord.loads(run.read(BASE_RECORD))
    package = base.package_version if base and base.package_version else "unknown"
    facts.append(f"release: {release}, package: {package}")
    line, warning = certificate_expiry(cert)
    facts.append(line)
    if warning:
        warnings.append(warning)
    try:
        state = json.loads(run.read(STATE_FILE) or b"{}")
    except ValueError:
        state = {}
    if isinstance(state, dict) and state.get("at"):
        facts.append(f"last {state.get('action', 'deploy')}: {state['at']} (release "
                     f"{state.get('release') or 'unknown'})")
    else:
        facts.append("last deploy or upgrade: not recorded")
    return facts, warnings


def _words(exc: BaseException) -> str:
    """Python's error text ("[Errno 111] ...") said in words."""
    from installer.errors import os_error_words

    return os_error_words(exc) if isinstance(exc, OSError) else str(exc)
