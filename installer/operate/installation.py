"""What is installed where the answers point, as the operations see it.

Each operation (backup, restore, support bundle, logs, uninstall) reads what is installed
through one `Installation` (the answers, the target, and the deployment directory or the Helm
release) and reports progress with the deployment's plain events plus `Progress` for long
transfers, so every front end shows them its own way. Service names always come from the
vendor's files (docker-compose.yml) or the release's workloads, never from a list of our own.
"""

from __future__ import annotations

import logging
import posixpath
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from installer.deploy import LogLine, StepFinished, StepStarted
from installer.errors import DeployError, InputError
from installer.operate.events import OperateEvent, Progress, Sink

if TYPE_CHECKING:
    from docker import DockerClient

    from installer.answers import Answers
    from installer.deploy.compose.health import ContainerView
    from installer.kube import Kube
    from installer.redact import Redactor
    from installer.render.compose import ComposeTool
    from installer.target import Target
    from installer.yamldata import YAMLMapping

log = logging.getLogger("installer.operate")

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by=carto-installer"


class Installation:
    """What is installed where the answers point, read on demand."""

    def __init__(self, answers: Answers, target: Target, redactor: Redactor,
                 on_event: Sink | None = None) -> None:
        self.answers = answers
        self.target = target
        self.redactor = redactor
        self._sink = on_event
        self.platform = answers.platform
        self.directory = posixpath.normpath(answers.compose.directory)
        self.sudo = bool(answers.target and answers.target.sudo)
        self._client: DockerClient | None = None
        self._tool: ComposeTool | None = None
        self._tool_known = False

    # ---- events ---------------------------------------------------------------------------

    def emit(self, event: OperateEvent) -> None:
        if self._sink is None:
            return
        try:
            self._sink(event)
        except Exception:  # a front end's display bug must not stop a backup
            log.exception("event handler failed")

    def say(self, text: str) -> None:
        self.emit(LogLine(self.redactor(text)))

    @contextmanager
    def step(self, name: str) -> Iterator[list[str]]:
        """StepStarted/StepFinished around a block; append to the yielded list for the detail."""
        detail: list[str] = []
        self.emit(StepStarted(name))
        log.info("step %s", name)
        try:
            yield detail
        except BaseException as exc:
            text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
            self.emit(StepFinished(name, False, self.redactor(text)))
            log.info("step %s failed: %s", name, self.redactor(text))
            raise
        self.emit(StepFinished(name, True, self.redactor("; ".join(detail))))

    def progress(self, step: str) -> Callable[[int, int], None]:
        def report(done: int, total: int) -> None:
            self.emit(Progress(step, done, total))

        return report

    # ---- Compose --------------------------------------------------------------------------

    def read(self, name: str) -> bytes | None:
        """A file of the deployment directory, None when absent."""
        try:
            return self.target.read_file(posixpath.join(self.directory, name))
        except FileNotFoundError:
            return None

    def refuse_links(self, names: list[str]) -> None:
        """InputError when any of these deployment files (or certs/) is a symbolic link: the
        installer never follows links in the deployment directory (CONTRACT.md)."""
        paths = [posixpath.join(self.directory, name) for name in names]
        try:
            found = self.target.run(["find", *paths, "-maxdepth", "1", "-type", "l"],
                                    timeout=30, sudo=self.sudo)
        except Exception:  # no find: the reads below still work on the files themselves
            log.info("could not look for symbolic links", exc_info=True)
            return
        links = [line for line in found.stdout.splitlines() if line.strip()]
        if links:
            raise InputError(f"symbolic link(s) in the deployment directory: {', '.join(links)}; "
                             "the installer never follows links there",
                             "replace each link by the file itself, then run again")

    def dotenv(self) -> dict[str, str]:
        from installer.deploy.compose.project import env_values

        tool = self.compose_tool()
        return env_values(self.read(".env") or b"", tool.flavour if tool else None)

    def compose_text(self) -> str:
        data = self.read("docker-compose.yml")
        if data is None:
            raise InputError(f"{self.directory} has no docker-compose.yml: nothing is "
                             "installed there", "check compose.directory in the answers")
        return data.decode("utf-8", "replace")

    def compose_services(self) -> dict[str, YAMLMapping]:
        """Service name -> its docker-compose.yml entry (the vendor's names)."""
        import yaml

        try:
            data = yaml.safe_load(self.compose_text())
        except yaml.YAMLError as exc:
            raise InputError(f"docker-compose.yml does not parse: {exc}") from None
        services = data.get("services") if isinstance(data, dict) else None
        if not isinstance(services, dict):
            raise InputError("docker-compose.yml has no services")
        return {str(k): (v if isinstance(v, dict) else {}) for k, v in services.items()}

    def project(self) -> str:
        from installer.deploy.compose.project import project_name

        return project_name(self.directory, self.dotenv())

    def compose_tool(self) -> ComposeTool | None:
        if not self._tool_known:
            from installer.render.compose import detect_compose

            self._tool = detect_compose(self.target)
            self._tool_known = True
        return self._tool

    def client(self) -> DockerClient:
        if self._client is None:
            try:
                self._client = self.target.docker_client(timeout=60)
            except Exception as exc:
                from installer.checks.docker import explain_engine_error

                message, fix = explain_engine_error(exc, self.target.is_local)
                raise DeployError(message, fix) from None
        return self._client

    def containers(self) -> list[ContainerView]:
        """ContainerView of every container of the Compose project."""
        from installer.deploy.compose.health import list_containers

        return list_containers(self.client(), self.project())

    def service_image(self, service: str) -> str:
        from installer.deploy.compose.project import interpolate

        spec = self.compose_services().get(service, {})
        return interpolate(str(spec.get("image", "")), self.dotenv())

    # ---- Kubernetes -----------------------------------------------------------------------

    def kube(self) -> Kube:
        from installer.kube import Kube

        return Kube(self.target, self.answers.kubernetes)

    @property
    def release(self) -> str:
        return self.answers.kubernetes.release

    def kube_workloads(self) -> dict[str, str]:
        """Service name -> workload ("deployment/carto-router") of the Helm release.

        The service name is the workload's name without the release prefix, as the chart
        names them (`<release>-<component>`)."""
        kube = self.kube()
        found = kube.kubectl_json("get", "deployments,statefulsets", "-l",
                                  f"app.kubernetes.io/instance={self.release}", namespace=True)
        out: dict[str, str] = {}
        for item in found.get("items", []):
            name = item["metadata"]["name"]
            kind = item.get("kind", "Deployment").lower()
            service = name[len(self.release) + 1:] if name.startswith(self.release + "-") \
                else name
            out[service] = f"{kind}/{name}"
        return dict(sorted(out.items()))

    def kube_folder(self) -> Path:
        """Where `render` keeps customizations.yaml (the working directory): on Kubernetes
        the deployment's own folder, which also holds the backup record."""
        from installer.render.helm import working_directory

        return working_directory()

    def close(self) -> None:
        if self._client is not None:
            try:
                self._client.close()
            except Exception:
                log.debug("closing the docker client failed", exc_info=True)


def is_installed(inst: Installation) -> bool:
    """Whether the answers point at an installation (files rendered, or a Helm release)."""
    if inst.platform == "compose":
        return inst.read(".env") is not None and inst.read("docker-compose.yml") is not None
    try:
        return inst.kube().helm("status", inst.release, namespace=True, timeout=30).ok
    except Exception:  # no helm, no cluster: nothing to manage from here
        log.info("helm status failed", exc_info=True)
        return False


__all__ = ["Installation", "is_installed", "OperateEvent", "Progress", "Sink", "MANAGED_BY_LABEL"]
