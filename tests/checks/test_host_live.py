"""host.* checks measured live on this machine, through the real CLI."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.cli import cli_env, host_ports_lock, run_cli

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "hosts"


def checks_by_id(stdout: str) -> dict[str, dict]:
    report = json.loads(stdout)
    return {c["id"]: c for c in report["checks"]}


def test_cpu_count_follows_the_affinity_mask() -> None:
    usable = len(os.sched_getaffinity(0))
    free = run_cli("preflight", "--only", "host.cpu", "--format", "json")
    observed = checks_by_id(free.stdout)["host.cpu"]["observed"]
    # A cgroup quota may lower it further; it can never exceed the affinity mask.
    assert float(observed) <= usable
    pinned = subprocess.run(
        ["taskset", "-c", "0", sys.executable, "-m", "installer", "preflight", "--only",
         "host.cpu", "--format", "json"],
        env=cli_env(), capture_output=True, text=True, check=False,
    )
    check = checks_by_id(pinned.stdout)["host.cpu"]
    assert check["observed"] == "1"
    assert check["status"] == "fail"
    assert pinned.returncode == 3
    assert "4" in check["message"] and check["remediation"]


def test_memory_matches_proc_meminfo() -> None:
    kib = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
               if line.startswith("MemTotal:"))
    check = checks_by_id(run_cli("preflight", "--only", "host.memory", "--format", "json")
                         .stdout)["host.memory"]
    gib = f"{kib * 1024 / 2**30:.1f} GiB"
    limit_note = "cgroup" in check["message"]
    assert gib in check["observed"] or limit_note
    assert check["status"] == ("pass" if kib * 1024 >= 16e9 or limit_note else "fail")


def test_arch_is_this_machine() -> None:
    check = checks_by_id(run_cli("preflight", "--only", "host.arch", "--format", "json")
                         .stdout)["host.arch"]
    assert check["observed"] == platform.machine()


def test_disk_is_measured_on_the_filesystem_that_holds_docker_data() -> None:
    check = checks_by_id(run_cli("preflight", "--only", "host.disk", "--format", "json")
                         .stdout)["host.disk"]
    path = check["observed"].rsplit(" at ", 1)[1]
    assert path in ("/var/lib/docker", "/") or os.path.isdir(path)
    stats = os.statvfs(path)
    size_gb = stats.f_blocks * stats.f_frsize / 1e9
    assert f"{size_gb:.1f} GB" in check["observed"]


def _in_namespace_with_os_release(sample: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI in a private mount namespace whose /etc/os-release is `sample`."""
    script = 'mount --bind "$1" /etc/os-release && shift && exec "$@"'
    return subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh", str(sample),
         sys.executable, "-m", "installer", *args],
        env=cli_env(), capture_output=True, text=True, check=False,
    )


@pytest.mark.parametrize(("sample", "status"), [("os-release-ubuntu-22.04", "pass"),
                                                ("os-release-ubuntu-18.04", "fail"),
                                                ("os-release-rhel-9", "warn")])
def test_os_is_read_live_from_etc_os_release(sample: str, status: str) -> None:
    result = _in_namespace_with_os_release(SAMPLES / sample, "preflight", "--only", "host.os",
                                           "--format", "json")
    assert result.returncode in (0, 3, 4), result.stderr
    check = checks_by_id(result.stdout)["host.os"]
    assert check["status"] == status
    pretty = next(line.split("=", 1)[1].strip('"') for line in
                  (SAMPLES / sample).read_text().splitlines() if line.startswith("PRETTY_NAME"))
    assert pretty in check["observed"]


def test_strict_turns_a_warning_into_exit_4() -> None:
    sample = SAMPLES / "os-release-debian-12"
    relaxed = _in_namespace_with_os_release(sample, "preflight", "--only", "host.os")
    strict = _in_namespace_with_os_release(sample, "preflight", "--only", "host.os", "--strict")
    assert relaxed.returncode == 0, relaxed.stdout + relaxed.stderr
    assert strict.returncode == 4
    assert "warn" in strict.stdout


LISTENER = """
import socket, sys, time
socks = []
for port in map(int, sys.argv[1:]):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen(); socks.append(s)
print("ready", flush=True)
time.sleep(120)
"""


def _hold_ports(*ports: int) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", LISTENER, *map(str, ports)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def test_port_443_held_by_a_process_fails_and_names_it() -> None:
    with host_ports_lock():
        holder = _hold_ports(443, 80)
        try:
            result = run_cli("preflight", "--only", "host.ports", "--format", "json")
        finally:
            holder.kill()
            holder.wait()
    check = checks_by_id(result.stdout)["host.ports"]
    assert check["status"] == "fail"
    assert f"pid {holder.pid}" in check["message"]
    assert "python" in check["message"]
    assert "443" in check["message"] and check["remediation"]
    assert result.returncode == 3


def test_port_80_alone_is_a_warning() -> None:
    with host_ports_lock():
        holder = _hold_ports(80)
        try:
            result = run_cli("preflight", "--only", "host.ports", "--format", "json")
        finally:
            holder.kill()
            holder.wait()
        check = checks_by_id(result.stdout)["host.ports"]
        assert check["status"] == "warn"
        assert f"pid {holder.pid}" in check["message"]
        # Once the holder is gone the same check passes: the verdict is measured, not assumed.
        deadline = time.monotonic() + 5
        while True:
            again = checks_by_id(run_cli("preflight", "--only", "host.ports", "--format",
                                         "json").stdout)["host.ports"]
            if again["status"] == "pass" or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    assert again["status"] == "pass"


def test_ports_fall_back_to_proc_net_tcp_without_ss(tmp_path: Path) -> None:
    """Minimal images have no `ss`: the check still finds the listener (without its name)."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in ("sh", "nproc", "uname", "cat", "getconf", "df"):
        found = shutil.which(tool)
        if found:
            (bindir / tool).symlink_to(found)
    with host_ports_lock():
        holder = _hold_ports(443)
        try:
            result = run_cli("preflight", "--only", "host.ports", "--format", "json",
                             env={"PATH": str(bindir)})
        finally:
            holder.kill()
            holder.wait()
    check = checks_by_id(result.stdout)["host.ports"]
    assert check["status"] == "fail"
    assert "443" in check["message"]
