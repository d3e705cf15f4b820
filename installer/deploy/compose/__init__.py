"""The Docker Compose deployment: preflight, render, load, launch, wait, verify.

Healthy means what the vendor documents: every container of the project is running (and
healthy when it has a healthcheck), and `workspace-migrations` has exited 0. Containers are
watched through the Docker API of the target; Compose itself is run on the target, in the
deployment directory, with the command the docker.compose check chose.

A re-run with nothing changed must not restart anything, yet `compose up -d` starts an exited
migrations job again. So after a successful deploy a small state file records what was
deployed (a hash of docker-compose.yml, .env and the Compose command, and the container ids);
when it still matches and the deployment is healthy, `up -d` is not run at all.

This module is the orchestration (deploy, status) and that state file; the parts it runs are
project.py (.env, project name, services, one run's shared bits), health.py (containers,
judgement, watcher, waits, log tails), images.py (archives, presence, loading) and, shared
with Helm and upgrade, ../https.py (the router probe, certificate expiry) and ../steps.py.
"""

from __future__ import annotations

import hashlib
import json
import logging
import posixpath
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from installer.answers import Answers
from installer.answers.sections import DOMAIN
from installer.deploy import (
    DeployCancelled,
    DeployResult,
    EventSink,
    LogLine,
    ServiceState,
    StatusResult,
)
from installer.deploy.compose.health import (
    CRASH_RESTARTS,
    ContainerView,
    _settled_by_engine_clock,
    _still_healthy,
    _wait_healthy,
    _Watcher,
    assess,
    current_containers,
    list_containers,
)
from installer.deploy.compose.images import _images_missing, archive_images, load_images
from installer.deploy.compose.project import (
    _NOISE,
    UP_TIMEOUT,
    ComposeCommand,
    _Run,
    compose_command,
    env_values,
    expected_services,
    interpolate,
    is_job,
    project_name,
)
from installer.deploy.https import certificate_expiry, probe_https, verify_https
from installer.deploy.steps import (
    LAUNCH,
    LOAD_IMAGES,
    PREFLIGHT,
    REGISTRY_LOGIN,
    RENDER,
    VERIFY_HTTPS,
    WAIT_HEALTHY,
)
from installer.errors import DeployError
from installer.render.actions import Action, ActionKind
from installer.target import CommandNotFound, Target

if TYPE_CHECKING:
    from installer.redact import Redactor
    from installer.render import RenderPlan

# The names installer/upgrade/, operate/ and the tests reach through this package.
__all__ = [
    "CRASH_RESTARTS", "STATE_FILE", "UP_TIMEOUT", "ComposeCommand", "ContainerView", "_Run",
    "_Watcher", "compose_command",
    "_compose_up", "_reload_certificates", "_save_state", "_settled_by_engine_clock",
    "_still_healthy", "_wait_healthy", "archive_images", "assess", "certificate_expiry",
    "deploy_compose", "env_values", "expected_services", "interpolate", "is_job",
    "list_containers", "load_images", "mounted_inputs", "plan_dotenv", "project_name",
    "status_compose", "verify_https",
]

log = logging.getLogger("installer.deploy.compose")

STATE_FILE = ".carto-installer-state.json"
UP_POLL_INTERVAL = 0.5


# --- the deployment ---------------------------------------------------------------------------


def deploy_compose(answers: Answers, target: Target, *, redactor: Redactor,
                   skip: Sequence[str], cancel: threading.Event, emit: EventSink,
                   confirm: Callable[[RenderPlan], bool] | None,
                   health_timeout: float) -> DeployResult:
    from installer.render import conflict_error, plan_render
    from installer.render.compose import check_inputs

    # Bad input stops the deployment before anything runs (exit 2, the key named).
    check_inputs(answers, target, redactor)
    assert answers.domain is not None
    run = _Run(answers, target, redactor, emit, cancel)
    url = f"https://{answers.domain}"

    with run.step(PREFLIGHT) as step:
        report, accepted = run.gated_preflight(step, target, answers, "compose", skip=skip)
        compose = compose_command(report)
    accepted_ids = [r.id for r in accepted]
    command = compose.argv

    with run.step(RENDER) as step:
        plan = plan_render(answers, target, redactor=redactor, compose_command=command,
                           compose_version=compose.version)
        if plan.conflicts:  # before asking anything: the answers must choose first (exit 2)
            raise conflict_error(plan)
        run.check_cancel()
        tool = " ".join(command)
        archive = answers.compose.images_archive
        images = archive_images(archive) if archive else {}
        env_now = env_values(plan_dotenv(plan, run), plan.flavour)
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
                plan.actions.append(Action(ActionKind.LOAD_IMAGES, f"docker load the images in "
                                                              f"{archive} (only those missing)"))
            if answers.compose.registry_username:  # advanced answers: installer/registry.py
                plan.actions.append(Action(ActionKind.REGISTRY_LOGIN,
                                           f"`docker login {answers.compose.registry}` as "
                                           f"{answers.compose.registry_username} on "
                                           f"{target.name}"))
            plan.actions.append(Action(ActionKind.START_SERVICES,
                                       f"run `{tool} up -d` in {run.directory} on {target.name}"))
            run.confirm(plan, confirm)
            run.apply(step, plan, target)
    changed = not plan.empty

    # ---- advanced answers: a registry that needs a login (installer/registry.py)
    if answers.compose.registry_username and not current:
        from installer.registry import docker_login

        with run.step(REGISTRY_LOGIN) as step:
            step.detail = docker_login(answers, target, sudo=run.sudo) or ""
    # ---- end of advanced answers

    if archive and not current:
        with run.step(LOAD_IMAGES) as step:
            loaded, step.detail = load_images(run, archive, images)
            changed = changed or loaded

    expected = expected_services((run.read("docker-compose.yml") or b"").decode(
        "utf-8", "replace"), env_now)
    if current:
        with run.step(LAUNCH) as step:
            step.detail = "already up to date and healthy: nothing restarted"
    else:
        watcher = _Watcher(run, project, expected)
        with run.step(LAUNCH) as step:
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
        with run.step(WAIT_HEALTHY) as step:
            step.detail = _wait_healthy(run, watcher, expected, health_timeout, command)
        _save_state(run, plan, command, project)

    with run.step(VERIFY_HTTPS) as step:
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
    env = env_values(run.read(".env") or b"", plan.flavour)
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


# --- status -------------------------------------------------------------------------------------


def status_compose(answers: Answers, target: Target, *, redactor: Redactor) -> StatusResult:
    from installer.render.compose import detect_compose

    DOMAIN.check(answers)  # status reads the domain only (no secrets)
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
