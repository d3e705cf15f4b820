"""docker.*: the Docker engine and Compose on the target (Single VM only)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from packaging.version import InvalidVersion, Version

from installer.checks.base import Check, CheckContext, Outcome, errored, failed, passed
from installer.target import CommandNotFound
from installer.yamldata import JSONObject

if TYPE_CHECKING:
    from docker import DockerClient

MIN_DOCKER = Version("20.10")
MIN_COMPOSE = Version("1.29")
COMPOSE_ONLY = frozenset({"compose"})


def version_prefix(text: str) -> Version | None:
    """The leading dotted number of a version string: '20.10.24+dfsg1' -> 20.10.24."""
    match = re.search(r"(\d+(?:\.\d+){0,3})", text or "")
    if not match:
        return None
    try:
        return Version(match.group(1))
    except InvalidVersion:
        return None


def parse_compose_version(text: str) -> Version | None:
    """Both formats: 'docker-compose version 1.29.2, build 5becea4c' (v1) and
    'Docker Compose version v2.27.0' / '2.27.0' (v2, also `--short`)."""
    match = re.search(r"(?i)compose version:?\s+v?(\d+\.\d+(?:\.\d+)?)", text)
    if match:
        return Version(match.group(1))
    stripped = text.strip()
    if re.fullmatch(r"v?\d+\.\d+(\.\d+)?(-[\w.]+)?", stripped):
        return version_prefix(stripped)
    return None


def _client(ctx: CheckContext) -> DockerClient:
    return ctx.cached("docker.client", lambda: ctx.target.docker_client(timeout=10))


def engine_info(ctx: CheckContext) -> JSONObject:
    """`docker info` of the target's engine, once per run."""
    info: JSONObject = ctx.cached("docker.info", lambda: _client(ctx).info())
    return info


def engine_version(ctx: CheckContext) -> JSONObject:
    version: JSONObject = ctx.cached("docker.version", lambda: _client(ctx).version())
    return version


def published_ports(ctx: CheckContext) -> list[tuple[str, dict[str, str], set[int]]]:
    """(container name, labels, published host ports) of running containers."""
    found = []
    for container in _client(ctx).containers.list():
        ports: set[int] = set()
        for bindings in (container.attrs.get("NetworkSettings", {}).get("Ports") or {}).values():
            for binding in bindings or []:
                if str(binding.get("HostPort", "")).isdigit():
                    ports.add(int(binding["HostPort"]))
        found.append((container.name, dict(container.labels or {}), ports))
    return found


def explain_engine_error(exc: BaseException, target_is_local: bool) -> tuple[str, str]:
    text = str(exc)
    lowered = text.lower()
    if "permission denied" in lowered:
        return (
            "permission denied on the Docker socket",
            "add your user to the docker group: `sudo usermod -aG docker $USER`, then log "
            "out and in again (or set target.sudo)",
        )
    if any(s in lowered for s in ("no such file", "connection refused", "filenotfound",
                                  "connection aborted", "cannot connect")):
        return (
            "no Docker engine answers (is the daemon running?)",
            "start it: `sudo systemctl enable --now docker`; if Docker is not installed: "
            "`sudo apt-get install -y docker.io docker-compose`",
        )
    if "timed out" in lowered or "timeout" in lowered:
        return ("the Docker engine did not answer in time",
                "check `sudo systemctl status docker` and the daemon's log")
    return (f"cannot talk to the Docker engine: {text.splitlines()[0] if text else exc!r}",
            "check that `docker info` works for this user")


def check_engine(ctx: CheckContext) -> Outcome:
    try:
        version = engine_version(ctx)
    except Exception as exc:
        message, fix = explain_engine_error(exc, ctx.target.is_local)
        return failed(message, observed="unreachable", remediation=fix)
    return passed(
        f"Docker engine {version.get('Version', '?')} answers "
        f"(API {version.get('ApiVersion', '?')})",
        observed=f"Docker {version.get('Version', '?')}",
        version=version.get("Version"),
    )


def check_version(ctx: CheckContext) -> Outcome:
    raw = str(ctx.data("docker.engine").get("version") or engine_version(ctx).get("Version", ""))
    version = version_prefix(raw)
    if version is None:
        return errored(f"cannot read the engine's version ({raw!r})")
    if version >= MIN_DOCKER:
        return passed(f"Docker {raw} is supported", observed=raw)
    return failed(
        f"Docker {raw} is older than 20.10",
        observed=raw,
        remediation="upgrade Docker: `sudo apt-get install -y docker.io` on Ubuntu 20.04+, or "
        "Docker's own packages (docker-ce)",
    )


def _probe(ctx: CheckContext, argv: list[str]) -> tuple[Version | None, str]:
    try:
        # The deployment runs Compose with sudo when target.sudo is set, and root may have
        # another Compose (e.g. the v2 plugin under /root/.docker): ask the same user.
        sudo = bool(ctx.answers and ctx.answers.target and ctx.answers.target.sudo)
        result = ctx.target.run(argv, timeout=20, sudo=sudo)
    except (CommandNotFound, TimeoutError) as exc:
        return None, str(exc)
    if not result.ok:
        return None, result.output().splitlines()[0] if result.output() else "failed"
    return parse_compose_version(result.stdout), result.stdout.strip()


def check_compose(ctx: CheckContext) -> Outcome:
    # The v2 plugin answers in milliseconds; v1 (a Python program) takes half a second to
    # start, so it is only asked when the plugin cannot be used.
    plugin, _ = _probe(ctx, ["docker", "compose", "version"])
    standalone = None
    if plugin is None or plugin < Version("2"):
        standalone, _ = _probe(ctx, ["docker-compose", "version"])
    found = []
    if plugin is not None:
        found.append(f"docker compose v{plugin}")
    if standalone is not None:
        found.append(f"docker-compose v{standalone}")
    observed = ", ".join(found) or "none"
    # The v2 plugin is preferred: v1 is unmaintained; both read the vendor's format 2.4 file.
    if plugin is not None and plugin >= Version("2"):
        return passed(f"will use `docker compose` (plugin v{plugin})", observed=observed,
                      command=["docker", "compose"], version=str(plugin))
    if standalone is not None and standalone >= MIN_COMPOSE:
        return passed(f"will use `docker-compose` v{standalone}", observed=observed,
                      command=["docker-compose"], version=str(standalone))
    if found:
        return failed(
            f"Docker Compose is too old ({observed}); CARTO needs 1.29 or above",
            observed=observed,
            remediation="install the Compose v2 plugin (`sudo apt-get install "
            "docker-compose-plugin` from Docker's repository) or docker-compose >= 1.29",
        )
    return failed(
        "neither `docker compose` nor `docker-compose` is installed",
        observed=observed,
        remediation="install Compose: `sudo apt-get install -y docker-compose` (1.29 on "
        "Ubuntu 22.04+) or the docker-compose-plugin package",
    )


CHECKS: list[Check] = [
    Check("docker.engine", "Docker engine", "a reachable Docker engine", check_engine,
          platforms=COMPOSE_ONLY, timeout=20),
    Check("docker.version", "Docker version", ">= 20.10", check_version,
          platforms=COMPOSE_ONLY, timeout=20, needs=("docker.engine",)),
    Check("docker.compose", "Docker Compose", ">= 1.29, or the compose v2 plugin", check_compose,
          platforms=COMPOSE_ONLY, timeout=25),
]
