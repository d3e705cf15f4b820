"""Run programs with their own /etc/hosts, so real names resolve to loopback and nothing else.

Egress and DNS tests use real host names (auth.carto.com, ...). The code under test resolves
them through an injected resolver, but a proxy (tinyproxy) or the CLI resolves with the
system's resolver; these helpers run such a process in a private mount namespace where
/etc/hosts maps the names to loopback and /etc/resolv.conf is empty (so a name that is not
listed is looked up on 127.0.0.1:53, never on a server off this machine). With `network=True`
the process also gets its own network namespace, holding only a loopback interface: then it
cannot send a single packet off the machine, and it may bind port 443 without colliding with
anything else on the host.

Needs root (or user namespaces), util-linux `unshare`, and iproute2 `ip`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.services.tls_ca import LOOPBACK, free_loopback_port, wait_until

# Mount the files, bring loopback up when there is a new network namespace, then exec argv.
_SETUP = (
    "set -e; hosts=$1; resolv=$2; net=$3; shift 3; "
    'mount --bind "$hosts" /etc/hosts; mount --bind "$resolv" /etc/resolv.conf; '
    'if [ "$net" = 1 ]; then ip link set lo up; fi; exec "$@"'
)


def hosts_file_text(names: Mapping[str, str]) -> str:
    lines = ["127.0.0.1 localhost", "::1 localhost ip6-localhost"]
    lines += [f"{address} {name}" for name, address in names.items()]
    return "\n".join(lines) + "\n"


def namespaced(
    argv: Sequence[str], names: Mapping[str, str], directory: Path, *, network: bool = False
) -> list[str]:
    """`argv` wrapped to run with `names` in /etc/hosts (files written into `directory`)."""
    for tool in ("unshare", "mount", "ip"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} is missing: apt-get install -y util-linux iproute2")
    directory.mkdir(parents=True, exist_ok=True)
    hosts = directory / "hosts"
    resolv = directory / "resolv.conf"
    hosts.write_text(hosts_file_text(names))
    resolv.write_text("# empty: unknown names fail on this machine\n")
    for path in (hosts, resolv):
        path.chmod(0o644)  # tinyproxy drops to nobody and must still read them
    flags = ["--mount", "--net"] if network else ["--mount"]
    return [
        "unshare",
        *flags,
        "--",
        "sh",
        "-c",
        _SETUP,
        "sh",
        str(hosts),
        str(resolv),
        "1" if network else "0",
        *argv,
    ]


@dataclass(frozen=True)
class NamedProxy:
    host: str
    port: int
    log_file: Path

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def log(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")
        except OSError:
            return ""


@contextlib.contextmanager
def tinyproxy_with_hosts(
    names: Mapping[str, str], *, deny_connect: bool = False
) -> Iterator[NamedProxy]:
    """A real tinyproxy on loopback that resolves `names` through its private /etc/hosts.

    `deny_connect` refuses every CONNECT (tinyproxy answers 403), as a locked-down corporate
    proxy does for hosts not on its list.
    """
    binary = shutil.which("tinyproxy")
    if binary is None:
        raise RuntimeError("tinyproxy is not installed: apt-get install -y tinyproxy")
    directory = Path(tempfile.mkdtemp(prefix="carto-netdb-proxy-"))
    directory.chmod(0o755)
    proxy = NamedProxy(LOOPBACK, free_loopback_port(), directory / "tinyproxy.log")
    lines = [
        f"Port {proxy.port}",
        f"Listen {LOOPBACK}",
        f"Allow {LOOPBACK}",
        "Timeout 30",
        "MaxClients 50",
        "LogLevel Info",
    ]
    if os.geteuid() == 0:
        lines += ["User nobody", "Group nogroup"]
    # Without ConnectPort lines tinyproxy allows CONNECT to any port (the test servers use
    # random ones); "ConnectPort 0" matches no port, so every CONNECT is refused.
    if deny_connect:
        lines.append("ConnectPort 0")
    config = directory / "tinyproxy.conf"
    config.write_text("\n".join(lines) + "\n")
    argv = namespaced([binary, "-d", "-c", str(config)], names, directory / "ns")
    with proxy.log_file.open("wb") as log:
        process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
        )

    def ready() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"tinyproxy exited with code {process.returncode}:\n{proxy.log()}")
        try:
            socket.create_connection((proxy.host, proxy.port), timeout=1).close()
            return True
        except OSError:
            return False

    try:
        wait_until(
            ready, timeout=10, what=f"tinyproxy on {proxy.host}:{proxy.port}", details=proxy.log
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
