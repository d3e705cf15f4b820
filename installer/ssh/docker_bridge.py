"""The target's Docker engine for the Docker SDK, over this same SSH connection: a private
Unix socket here whose connections become `docker system dial-stdio` on the target."""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from installer.errors import TargetError
from installer.ssh.connect import _paramiko
from installer.ssh.forward import _pump_socket
from installer.ssh.sudo import SudoCommands

if TYPE_CHECKING:  # paramiko and docker are loaded only when a remote target is used
    import docker
    import paramiko
    from urllib3.connectionpool import HTTPConnectionPool


log = logging.getLogger("installer.ssh")


class DockerAccess(SudoCommands):
    """`docker_client` for an SSH target."""

    def docker_client(self, timeout: float = 10.0) -> docker.DockerClient:
        """The Docker SDK talking to the target's engine over this SSH connection.

        A private Unix socket here (in a 0700 folder) whose every connection is bridged to
        `docker system dial-stdio` run on the target, with sudo when target.sudo is set. The
        docker SDK's own ssh:// transport runs the same command but opens its own SSH
        connections with its own host key handling, so it could not reuse this verified,
        authenticated connection (jump host, passphrase, password, sudo).

        Each bridged connection holds one SSH session, so clients are shared (one per timeout)
        and all of them share one pool that keeps at most two idle connections."""
        import docker.errors
        import requests.exceptions

        with self._docker_lock:
            if self._closed:
                raise TargetError(f"the SSH connection to {self.name} is closed")
            if self._docker_bridge is None:
                self._docker_bridge = _DockerBridge(self)
            bridge = self._docker_bridge
            client = self._docker_clients.get(int(timeout))
            if client is not None:
                return client
            try:
                client = _docker_client_on(bridge, int(timeout))
            except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
                said = bridge.wait_for_error(2.0)
                if said:
                    raise docker.errors.DockerException(
                        f"{said} (from `docker system dial-stdio` on {self.name})") from None
                raise docker.errors.DockerException(
                    f"cannot reach the Docker engine on {self.name}: {exc}") from None
            self._docker_clients[int(timeout)] = client
            return client



class _DockerBridge:
    """A private Unix socket; each connection to it becomes `docker system dial-stdio` on the
    target (with sudo when configured), so the Docker SDK speaks to the remote engine."""

    def __init__(self, target: DockerAccess) -> None:
        self.target = target
        self.folder = tempfile.mkdtemp(prefix="carto-ssh-docker-")  # 0700: ours alone
        self.path = os.path.join(self.folder, "docker.sock")
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(self.path)
        os.chmod(self.path, 0o600)
        self._listener.listen(16)
        self._errors: list[str] = []
        self._closed = False
        self.adapter: Any = None  # the one connection pool every client of this target uses
        self.api_version = ""
        threading.Thread(target=self._accept, daemon=True, name="ssh-docker").start()

    def wait_for_error(self, seconds: float) -> str:
        """What the last dial-stdio said on stderr (it may arrive just after its failure)."""
        deadline = time.monotonic() + seconds
        while not self._errors and time.monotonic() < deadline:
            time.sleep(0.05)
        return self._errors[-1] if self._errors else ""

    def _accept(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True,
                             name="ssh-docker-conn").start()

    def _serve(self, conn: socket.socket) -> None:
        target = self.target
        paramiko = _paramiko()
        try:
            argv, before = target._command(["docker", "system", "dial-stdio"], env=None,
                                           cwd=None, sudo=target._use_sudo)
            channel = target._unstarted("a Docker API connection", lambda: (
                target._open_session(time.monotonic() + 60)))
        except Exception as exc:
            self._errors.append(str(exc))
            conn.close()
            return
        try:
            log.info("run (%s): docker system dial-stdio (Docker API connection)", target.name)
            channel.exec_command(shlex.join(argv))
            target.stats.add("commands")
            if before:
                channel.sendall(before)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            self._errors.append(str(exc))
            target._release(channel)
            conn.close()
            return
        threading.Thread(target=self._collect_stderr, args=(channel,), daemon=True).start()
        _pump_socket(conn, channel, on_close=lambda: target._release(channel))

    def _collect_stderr(self, channel: paramiko.Channel) -> None:
        said = bytearray()
        with contextlib.suppress(Exception):
            while True:
                chunk = channel.recv_stderr(4096)
                if not chunk:
                    break
                said.extend(chunk)
        text = said.decode("utf-8", "replace").strip()
        if text:
            log.info("docker system dial-stdio on %s said: %s", self.target.name, text[:500])
            self._errors.append(text.splitlines()[-1])

    def close(self) -> None:
        self._closed = True
        if self.adapter is not None:
            with contextlib.suppress(Exception):
                self.adapter.close()
        with contextlib.suppress(OSError):
            self._listener.close()
        shutil.rmtree(self.folder, ignore_errors=True)


def _docker_client_on(bridge: _DockerBridge, timeout: int) -> docker.DockerClient:
    """A docker SDK client for the bridge's socket, on the bridge's one connection pool.

    docker-py keys its connection pools by the full request URL (its fix for requests 2.32),
    so every new endpoint opens a new connection: free on a local socket, but here each one is
    an SSH session and a `docker` process on the target, and idle ones pile up. One pool for
    every URL and every client keeps it to the connections actually in use."""
    import docker
    import docker.constants
    from docker.transport import UnixHTTPAdapter

    base_url = f"unix://{bridge.path}"
    if bridge.adapter is None:

        # docker ships no type information: its adapter is Any to mypy.
        class OnePoolAdapter(UnixHTTPAdapter):  # type: ignore[misc]
            def get_connection(self, url: str, proxies: Mapping[str, str] | None = None
                               ) -> HTTPConnectionPool:
                pool: HTTPConnectionPool = super().get_connection("http+docker://localhost",
                                                                  proxies)
                return pool

        adapter = OnePoolAdapter(f"http+unix://{bridge.path}", timeout, max_pool_size=2)
        # Ask the engine's API version through our adapter (a client given a version makes
        # no request when built); the real clients are then built on the same adapter.
        probe = docker.APIClient(base_url=base_url, timeout=timeout,
                                 version=docker.constants.MINIMUM_DOCKER_API_VERSION)
        probe.mount("http+docker://", adapter)
        bridge.api_version = str(probe.version(api_version=False)["ApiVersion"])
        bridge.adapter = adapter
    client = docker.DockerClient(base_url=base_url, timeout=timeout,
                                 version=bridge.api_version)
    client.api.mount("http+docker://", bridge.adapter)
    return client
