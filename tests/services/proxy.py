"""A real HTTP CONNECT proxy (tinyproxy) on loopback, for egress checks behind a proxy."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.services.tls_ca import LOOPBACK, free_loopback_port, wait_until

START_TIMEOUT = 10.0


@dataclass(frozen=True)
class HTTPProxy:
    host: str
    port: int
    # CONNECT is allowed to these ports, to every port when None, to none when deny_connect.
    connect_ports: tuple[int, ...] | None
    deny_connect: bool
    log_file: Path

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


def _config(port: int, connect_ports: tuple[int, ...] | None, deny_connect: bool) -> str:
    lines = [
        f"Port {port}",
        f"Listen {LOOPBACK}",
        f"Allow {LOOPBACK}",
        "Timeout 30",
        "MaxClients 50",
        "LogLevel Info",  # logs each CONNECT and refusal: useful when a test fails
    ]
    if os.geteuid() == 0:
        lines += [
            "User nobody",
            "Group nogroup",
        ]  # drop root after binding, as packaged
    # tinyproxy allows CONNECT to every port unless ConnectPort lines exist; a single
    # "ConnectPort 0" matches no real port, so it refuses every CONNECT with 403.
    if deny_connect:
        lines.append("ConnectPort 0")
    elif connect_ports is not None:
        lines += [f"ConnectPort {p}" for p in (443, *connect_ports)]
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def run_tinyproxy(
    *, connect_ports: Iterable[int] | None = None, deny_connect: bool = False
) -> Iterator[HTTPProxy]:
    """tinyproxy in the foreground on a free loopback port; stopped and cleaned up after.

    `connect_ports`: None allows CONNECT to any port (test servers use random ports);
    a list allows 443 plus those; `deny_connect` refuses every CONNECT.
    """
    binary = shutil.which("tinyproxy")
    if binary is None:
        raise RuntimeError("tinyproxy is not installed: apt-get install -y tinyproxy")
    directory = Path(tempfile.mkdtemp(prefix="carto-proxy-"))
    ports = None if connect_ports is None else tuple(connect_ports)
    proxy = HTTPProxy(
        LOOPBACK, free_loopback_port(), ports, deny_connect, directory / "tinyproxy.log"
    )
    config = directory / "tinyproxy.conf"
    config.write_text(_config(proxy.port, ports, deny_connect))
    with proxy.log_file.open("wb") as log:
        # -d: stay in the foreground, so the Popen is the proxy and logs go to stdout.
        process = subprocess.Popen(
            [binary, "-d", "-c", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )

    def ready() -> bool:
        if process.poll() is not None:
            raise RuntimeError(
                f"tinyproxy exited with code {process.returncode}:\n"
                f"{proxy.log_file.read_text(errors='replace')}"
            )
        try:
            socket.create_connection((proxy.host, proxy.port), timeout=1).close()
            return True
        except OSError:
            return False

    try:
        wait_until(
            ready,
            timeout=START_TIMEOUT,
            what=f"tinyproxy on {proxy.host}:{proxy.port}",
            details=lambda: proxy.log_file.read_text(errors="replace"),
        )
        yield proxy
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def http_proxy() -> Iterator[str]:
    """URL ("http://127.0.0.1:PORT") of a proxy that allows CONNECT to any port."""
    with run_tinyproxy() as proxy:
        yield proxy.url


HTTPProxyFactory = Callable[..., HTTPProxy]


@pytest.fixture
def http_proxy_factory() -> Iterator[HTTPProxyFactory]:
    """Start proxies with `http_proxy_factory(connect_ports=[...], deny_connect=False)`."""
    with contextlib.ExitStack() as stack:

        def start(
            *, connect_ports: Iterable[int] | None = None, deny_connect: bool = False
        ) -> HTTPProxy:
            return stack.enter_context(
                run_tinyproxy(connect_ports=connect_ports, deny_connect=deny_connect)
            )

        yield start
