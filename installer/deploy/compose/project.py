"""The Compose project as deployed on the target: the values in .env, Compose's project name,
the services docker-compose.yml asks for (and which of them are one-off jobs), and one
deployment's shared bits (target, directory, Docker client, reporting)."""

from __future__ import annotations

import posixpath
import re
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from installer.answers import Answers
from installer.deploy.events import EventSink, LogLine
from installer.deploy.steps import DeployRun
from installer.envfile import EnvFile, Flavour
from installer.errors import DeployError, InputError
from installer.target import LinkRefused, Target

if TYPE_CHECKING:
    from docker import DockerClient

    from installer.redact import Redactor
    from installer.report import Report

UP_TIMEOUT = 1800.0  # pulling CARTO's images from a registry can take long
# A cancelled Compose deployment picks up where it stopped: the state file and `up -d` see to it.
RESUMES = "re-run `carto-installer deploy` to continue; it resumes"
_NOISE = re.compile(r"the attribute `version` is obsolete")


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


class _Run(DeployRun):
    """One Compose deployment's shared bits: where, with what, and how to report."""

    def __init__(self, answers: Answers, target: Target, redactor: Redactor, emit: EventSink,
                 cancel: threading.Event) -> None:
        super().__init__(emit, redactor, cancel, RESUMES)
        self.answers = answers
        self.target = target
        self.directory = posixpath.normpath(answers.compose.directory)
        # target.sudo: Compose runs as root when the SSH user may not use Docker itself.
        self.sudo = bool(answers.target and answers.target.sudo)
        self._client: DockerClient | None = None

    def client(self, timeout: float = 30.0) -> DockerClient:
        if self._client is None:
            try:
                self._client = self.target.docker_client(timeout=timeout)
            except Exception as exc:
                from installer.checks.docker import explain_engine_error

                message, fix = explain_engine_error(exc, self.target.is_local)
                raise DeployError(message, fix) from None
        return self._client

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



@dataclass(frozen=True)
class ComposeCommand:
    """The Compose the docker.compose check chose on the target, as the deployment runs it."""

    argv: list[str]  # ["docker", "compose"] or ["docker-compose"]
    version: str


def compose_command(report: Report) -> ComposeCommand:
    """The Compose command of a preflight `report` (its passed docker.compose check); a
    deployment cannot go on without one."""
    from installer.checks.base import Status

    data = next((r.data for r in report.results if r.id == "docker.compose"
                 and r.status == Status.PASS), {})
    argv = [str(part) for part in data.get("command") or []]
    if not argv:
        raise DeployError("no usable Docker Compose on the target (docker.compose did not "
                          "pass)", "install the docker compose v2 plugin or "
                          "docker-compose >= 1.29")
    return ComposeCommand(argv, str(data.get("version", "")))
