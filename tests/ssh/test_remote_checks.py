"""The preflight over SSH reports the *target's* values, not this workstation's.

The sshd poses as an Ubuntu 22.04 machine with 4 GB of memory (bind-mounted /etc/os-release and
/proc/meminfo in its own mount namespace) while this machine is Debian with more memory, so a
check that looked locally would be caught. The Docker engine behind the target is this machine's
real engine, reached over the SSH connection.
"""

from __future__ import annotations

import json
import os
import platform
import socket
from pathlib import Path

import docker
import pytest
import yaml

from installer.answers import parse_answers
from installer.checks import egress
from installer.checks.base import CheckContext, Status
from installer.checks.engine import run_checks
from installer.preflight import open_target, run_preflight
from installer.redact import Redactor
from installer.ssh import SSHTarget
from installer.units import format_bytes
from tests.services.sshd import SSHCredentials, SSHServer
from tests.services.sshd_target_user import SSHServers
from tests.services.tls_ca import TestCA, tls_server
from tests.support.cli import run_cli
from tests.support.ssh_target import SSH_USER, target_settings, trust, use_hosts, wait_for

FAKE_MEMINFO = ("MemTotal:        4000000 kB\nMemFree:         3000000 kB\n"
                "MemAvailable:    3500000 kB\n")
REMOTE_OS = "Ubuntu 22.04.4 LTS"


def local_pretty_name() -> str:
    for line in Path("/etc/os-release").read_text().splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip('"')
    return ""


@pytest.fixture
def ubuntu_vm(ssh_servers: SSHServers) -> SSHServer:
    assert local_pretty_name() != REMOTE_OS, "this test needs a machine that is not it"
    server = ssh_servers(meminfo=FAKE_MEMINFO)
    use_hosts(server, {})  # no name the target looks up may leave this machine
    return server


def answers_data(server: SSHServer, known_hosts: Path, credentials: SSHCredentials, *,
                 user: str = "root", password_env: str | None = None) -> dict:
    target = {"host": server.host, "port": server.port, "user": user,
              "identity_file": str(credentials.ed25519_key), "known_hosts": str(known_hosts)}
    if password_env:
        target.update(password_env=password_env, sudo=True)
    return {"version": 1, "platform": "compose", "target": target}


def by_id(results) -> dict:
    return {r.id: r for r in results}


def test_remote_host_facts_are_the_targets(ubuntu_vm: SSHServer,
                                           target_credentials: SSHCredentials,
                                           docker_engine: docker.DockerClient,
                                           compose_v2: Path, tmp_path: Path) -> None:
    known = trust(tmp_path / "known_hosts", ubuntu_vm)
    answers = parse_answers(answers_data(ubuntu_vm, known, target_credentials))
    redactor = Redactor()
    with open_target(answers, redactor=redactor) as target:
        report = run_preflight(target, answers, "compose", redactor=redactor,
                               skip=["egress"])  # see test_egress_is_probed_from_the_target
        stats = target.stats.as_dict()
    checks = by_id(report.results)
    assert report.target == f"root@127.0.0.1:{ubuntu_vm.port}"

    assert checks["host.os"].status == Status.PASS
    assert checks["host.os"].observed == REMOTE_OS  # this machine is Debian
    memory = checks["host.memory"]
    assert memory.status == Status.FAIL
    assert memory.observed == format_bytes(4_000_000 * 1024)  # the target's, not ours
    assert checks["host.arch"].observed == platform.machine()
    assert checks["host.cpu"].observed == f"{len(os.sched_getaffinity(0)):g}" or \
        "cgroup" in checks["host.cpu"].message

    # The remote engine is this machine's real one: same data root, same version.
    info = docker_engine.info()
    assert checks["docker.engine"].status == Status.PASS
    assert checks["docker.version"].observed == docker_engine.version()["Version"]
    assert checks["docker.compose"].status == Status.PASS
    assert "docker compose" in checks["docker.compose"].message
    disk = checks["host.disk"]
    assert disk.status in (Status.PASS, Status.WARN, Status.FAIL)
    assert f"at {info['DockerRootDir']}" in disk.observed
    stats_fs = os.statvfs(info["DockerRootDir"])
    assert format_bytes(stats_fs.f_blocks * stats_fs.f_frsize) in disk.observed
    assert checks["host.ports"].status in (Status.PASS, Status.WARN, Status.FAIL)
    assert all(r.status != Status.ERROR for r in report.results), [
        (r.id, r.message) for r in report.results if r.status == Status.ERROR]
    # One connection; the host facts came from one script, not one command per fact.
    assert stats["connections"] == 1
    assert stats["commands"] <= 10, stats


def test_preflight_cli_over_ssh(ubuntu_vm: SSHServer, target_credentials: SSHCredentials,
                                docker_engine: docker.DockerClient, tmp_path: Path) -> None:
    known = tmp_path / "ssh" / "known_hosts"
    answers_file = tmp_path / "answers.yaml"
    data = answers_data(ubuntu_vm, known, target_credentials, user=SSH_USER,
                        password_env="SSH_PASSWORD")
    answers_file.write_text(yaml.safe_dump(data))
    env = {"SSH_PASSWORD": target_credentials.password}
    fingerprint = ubuntu_vm.host_key_fingerprint()
    args = ("preflight", "--answers", str(answers_file), "--format", "json", "--only", "host")

    # Unknown host, nobody to ask: exit 2, the fingerprint and the exact flag to pass.
    unknown = run_cli(*args, env=env, cwd=tmp_path)
    assert unknown.returncode == 2, unknown.stderr
    assert f"--accept-host-key {fingerprint}" in unknown.stderr
    assert unknown.stdout == "" and not known.exists()

    accepted = run_cli(*args, "--accept-host-key", fingerprint, env=env, cwd=tmp_path)
    assert accepted.returncode == 3, accepted.stderr  # 4 GB of memory fails
    report = json.loads(accepted.stdout)
    assert report["target"] == f"{SSH_USER}@127.0.0.1:{ubuntu_vm.port}"
    checks = {c["id"]: c for c in report["checks"]}
    assert checks["host.os"]["observed"] == REMOTE_OS
    assert checks["host.memory"]["status"] == "fail"
    assert checks["host.ports"]["status"] != "error"  # `ss` ran through sudo
    assert known.read_text() == ubuntu_vm.known_hosts_line() + "\n"

    again = run_cli(*args, env=env, cwd=tmp_path)  # now known: no flag needed
    assert again.returncode == 3 and json.loads(again.stdout)["target"] == report["target"]

    log = (tmp_path / "carto-installer.log").read_text()
    assert f"run ({SSH_USER}@127.0.0.1:{ubuntu_vm.port}" in log
    assert "sudo" in log and "ss -Hltnp" in log
    for output in (log, accepted.stdout, accepted.stderr, again.stdout):
        assert target_credentials.password not in output

    ubuntu_vm.restart(new_host_key=True)
    changed = run_cli(*args, "--accept-host-key", ubuntu_vm.host_key_fingerprint(), env=env,
                      cwd=tmp_path)
    assert changed.returncode == 3
    assert "CHANGED" in changed.stderr and "Traceback" not in changed.stderr
    assert changed.stdout == ""

    bad_flag = run_cli(*args, "--accept-host-key", "MD5:00:11", env=env, cwd=tmp_path)
    assert bad_flag.returncode == 2 and "SHA256" in bad_flag.stderr


# --- egress, probed from the target ----------------------------------------------------------

EGRESS_HOSTS = ["auth.carto.com", "pubsub.googleapis.com", "www.googleapis.com",
                "storage.googleapis.com", "gcr.io", "cloudresourcemanager.googleapis.com"]


def nothing_resolves_here(name: str) -> list[str]:
    """The workstation's resolver in these tests: if a probe used it, it would fail."""
    raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")


@pytest.mark.parametrize("forwarding", [True, False], ids=["direct-tcpip", "relay-on-target"])
def test_egress_is_probed_from_the_target(forwarding: bool, ssh_servers: SSHServers,
                                          target_credentials: SSHCredentials, test_ca: TestCA,
                                          tmp_path: Path) -> None:
    server = ssh_servers(allow_tcp_forwarding=forwarding)
    # Only the target knows these names (all but gcr.io), through its own /etc/hosts.
    use_hosts(server, {name: "127.0.0.1" for name in EGRESS_HOSTS if name != "gcr.io"})
    known = trust(tmp_path / "known_hosts", server)
    issued = test_ca.issue(EGRESS_HOSTS)
    answers = parse_answers({
        "version": 1, "domain": "carto.example.com",
        "network": {"proxy": {"ca_file": str(test_ca.ca_file)}, "egress_timeout": 3},
    })
    settings = target_settings(server, known, identity_file=target_credentials.ed25519_key)
    with tls_server(issued.fullchain, issued.key) as https, \
            SSHTarget.connect(settings, accept_host_key=None, confirm_host_key=None,
                              redactor=None) as target:
        ctx = CheckContext(target=target, answers=answers, resolver=nothing_resolves_here)
        ctx.cache[egress.EGRESS_PORT_KEY] = https.port
        results = by_id(run_checks(ctx, [c for c in egress.CHECKS
                                         if c.id == egress.EGRESS_FAMILY_ID]))
        # A channel per reachable host (gcr.io fails on the target before one opens).
        assert target.stats.forwards == (len(EGRESS_HOSTS) - 1 if forwarding else 0)
        # The server counts a handshake once its side of it is done: give it a moment.
        assert wait_for(lambda: https.handshakes == len(EGRESS_HOSTS) - 1), https.handshakes
    for name in EGRESS_HOSTS:
        result = results[f"egress.{name}"]
        if name == "gcr.io":
            assert result.status == Status.FAIL, result
            assert result.data["stage"] == "DNS" and "gcr.io" in result.message
        else:
            assert result.status == Status.PASS, result
            assert "certificate verified" in result.message
