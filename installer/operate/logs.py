"""`logs [SERVICE] [--tail N] [--follow]` by the vendor's service names.

Compose: the services of docker-compose.yml, read through the target's Docker engine (so the
same code works locally and over SSH). Kubernetes: the release's Deployments and StatefulSets,
named without the release prefix, read with `kubectl logs`. Every line passes the redactor.
With --follow the streams run until Ctrl-C, which the caller turns into exit 130.
"""

from __future__ import annotations

import queue
import subprocess
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from installer.errors import InputError
from installer.operate.installation import Installation

if TYPE_CHECKING:
    from installer.deploy.compose.health import ContainerView

Write = Callable[[str], None]


def service_names(inst: Installation) -> list[str]:
    if inst.platform == "compose":
        return list(inst.compose_services())
    return list(inst.kube_workloads())


def _pick(inst: Installation, service: str | None) -> list[str]:
    names = service_names(inst)
    if service is None:
        return names
    if service not in names:
        raise InputError(f"no service named {service!r}; the deployment has: {', '.join(names)}",
                         "give one of those names (as in docker-compose.yml or the chart)")
    return [service]


def stream_logs(inst: Installation, service: str | None, *, tail: int, follow: bool,
                write: Write) -> None:
    services = _pick(inst, service)
    if inst.platform == "compose":
        _compose_logs(inst, services, tail, follow, write)
    else:
        _kube_logs(inst, services, tail, follow, write)


def _compose_logs(inst: Installation, services: list[str], tail: int, follow: bool,
                  write: Write) -> None:
    views = [v for v in inst.containers() if v.service in services]
    client = inst.client()
    width = max((len(v.service) for v in views), default=0)
    prefix = len(services) > 1
    if not follow:
        for view in views:
            text = bytes(client.containers.get(view.id).logs(tail=tail)).decode("utf-8",
                                                                                "replace")
            for line in text.splitlines():
                write(f"{view.service:{width}} | {line}" if prefix else line)
        return
    lines: queue.Queue[str | None] = queue.Queue(maxsize=10000)

    def pump(view: ContainerView) -> None:
        try:
            stream = client.containers.get(view.id).logs(tail=tail, stream=True, follow=True)
            pending = b""
            for chunk in stream:
                pending += chunk
                *complete, pending = pending.split(b"\n")
                for raw in complete:
                    line = raw.decode("utf-8", "replace")
                    lines.put(f"{view.service:{width}} | {line}" if prefix else line)
        except Exception as exc:  # the container went away: say so and stop this stream
            lines.put(f"{view.service:{width}} | (log stream ended: {exc})")

    threads = [threading.Thread(target=pump, args=(view,), daemon=True,
                                name=f"logs-{view.service}") for view in views]
    for thread in threads:
        thread.start()
    # Until Ctrl-C (KeyboardInterrupt, which the caller handles), or every stream has ended
    while True:
        try:
            item = lines.get(timeout=0.5)
        except queue.Empty:
            if not any(t.is_alive() for t in threads):
                return
            continue
        if item is not None:
            write(item)


def _kube_logs(inst: Installation, services: list[str], tail: int, follow: bool,
               write: Write) -> None:
    workloads = inst.kube_workloads()
    kube = inst.kube()
    for service in services:
        args = ("logs", workloads[service], "--all-containers", "--prefix", f"--tail={tail}")
        argv = kube.kubectl_argv(*args, namespace=True)
        if not follow:
            result = kube.kubectl(*args, namespace=True, timeout=120)
            if not result.ok:
                raise InputError(f"kubectl logs {workloads[service]}: "
                                 f"{kube.failure(result.output()).message}")
            for line in result.stdout.splitlines():
                write(line)
            continue
        if not inst.target.is_local:
            raise InputError("logs --follow on Kubernetes runs kubectl on this machine only",
                             "run without --follow, or use kubectl logs -f on the target")
        if len(services) > 1:
            raise InputError("logs --follow on Kubernetes takes one SERVICE",
                             f"name one of: {', '.join(services)}")
        with subprocess.Popen([*argv, "--follow"], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT) as process:
            try:
                assert process.stdout is not None
                for raw in process.stdout:
                    write(raw.decode("utf-8", "replace").rstrip("\n"))
            finally:
                process.terminate()
