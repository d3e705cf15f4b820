"""Host facts parsing and verdicts, from samples of real machines (os-release, meminfo,
cgroup v1/v2 files) and from Compose version outputs."""

from __future__ import annotations

from pathlib import Path

import pytest
from packaging.version import Version

from installer.checks import host
from installer.checks.base import CheckContext, Status
from installer.checks.docker import parse_compose_version, version_prefix
from installer.target import LocalTarget

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "hosts"


def facts_text(*, os_release: str | None = None, meminfo: str = "", uname: str = "Linux x86_64",
               nproc: str = "8", cgroup_files: dict[str, str] | None = None) -> str:
    parts = [f"@@uname\n{uname}", f"@@nproc\n{nproc}"]
    parts.append("@@os-release\n" + (os_release or ""))
    parts.append("@@meminfo\n" + meminfo)
    parts.append("@@cgroup\n0::/system.slice/docker.service")
    for path, body in (cgroup_files or {}).items():
        parts.append(f"@@cgfile {path}\n{body}")
    parts.append("@@end")
    return "\n".join(parts) + "\n"


def verdict(check, text: str):
    ctx = CheckContext(target=LocalTarget())
    facts = host.parse_facts(text)
    ctx.cached("host.facts", lambda: facts)
    return check(ctx)


@pytest.mark.parametrize(
    ("sample", "status", "observed_part"),
    [
        ("os-release-ubuntu-18.04", Status.FAIL, "Ubuntu 18.04.6 LTS"),
        ("os-release-ubuntu-20.04", Status.PASS, "Ubuntu 20.04.6 LTS"),
        ("os-release-ubuntu-22.04", Status.PASS, "Ubuntu 22.04.4 LTS"),
        ("os-release-ubuntu-24.04", Status.PASS, "Ubuntu 24.04.1 LTS"),
        ("os-release-debian-12", Status.WARN, "Debian GNU/Linux 12 (bookworm)"),
        ("os-release-rhel-9", Status.WARN, "Red Hat Enterprise Linux 9.3 (Plow)"),
    ],
)
def test_os_release_verdicts(sample: str, status: Status, observed_part: str) -> None:
    outcome = verdict(host.check_os, facts_text(os_release=(SAMPLES / sample).read_text()))
    assert outcome.status == status
    assert observed_part in outcome.observed
    if status != Status.PASS:
        assert outcome.remediation


def test_missing_os_release_is_a_warning_that_says_so() -> None:
    outcome = verdict(host.check_os, facts_text(os_release=""))
    assert outcome.status == Status.WARN
    assert "os-release" in outcome.message


def test_not_linux_fails() -> None:
    outcome = verdict(host.check_os, facts_text(uname="Darwin arm64"))
    assert outcome.status == Status.FAIL
    assert "Darwin" in outcome.observed


def test_os_release_quoting_rules() -> None:
    parsed = host.parse_os_release('A="x \\"quoted\\" \\$HOME"\nB=\'single\'\n# c\nC=plain\n')
    assert parsed == {"A": 'x "quoted" $HOME', "B": "single", "C": "plain"}


@pytest.mark.parametrize(("machine", "status"), [("x86_64", Status.PASS), ("amd64", Status.PASS),
                                                 ("aarch64", Status.FAIL), ("arm64", Status.FAIL)])
def test_arch(machine: str, status: Status) -> None:
    assert verdict(host.check_arch, facts_text(uname=f"Linux {machine}")).status == status


def test_meminfo_of_a_16_gb_vm_passes_though_it_shows_15_6_gib() -> None:
    text = facts_text(meminfo=(SAMPLES / "meminfo-16gb-vm").read_text())
    assert host.parse_facts(text).meminfo["MemTotal"] == 16365736 * 1024
    outcome = verdict(host.check_memory, text)
    assert outcome.status == Status.PASS
    assert "15.6 GiB" in outcome.observed


def test_meminfo_8_gb_fails_with_units() -> None:
    outcome = verdict(host.check_memory, facts_text(meminfo=(SAMPLES / "meminfo-8gb").read_text()))
    assert outcome.status == Status.FAIL
    assert "GB" in outcome.observed and outcome.remediation


def test_cgroup_v2_memory_limit_lower_than_memtotal_wins() -> None:
    text = facts_text(
        meminfo=(SAMPLES / "meminfo-16gb-vm").read_text(),
        cgroup_files={"/sys/fs/cgroup/system.slice/memory.max": str(8 * 2**30),
                      "/sys/fs/cgroup/memory.max": "max"},
    )
    outcome = verdict(host.check_memory, text)
    assert outcome.status == Status.FAIL
    assert "cgroup" in outcome.message


def test_cgroup_v1_unlimited_memory_is_ignored() -> None:
    files = {"/sys/fs/cgroup/memory/memory.limit_in_bytes": "9223372036854771712"}
    assert host.cgroup_memory_limit(files) is None
    files["/sys/fs/cgroup/memory/docker/memory.limit_in_bytes"] = "4294967296"
    assert host.cgroup_memory_limit(files) == 4294967296


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"/sys/fs/cgroup/cpu.max": "max 100000"}, None),
        ({"/sys/fs/cgroup/cpu.max": "200000 100000"}, 2.0),
        ({"/sys/fs/cgroup/a/cpu.max": "150000 100000", "/sys/fs/cgroup/cpu.max": "400000 100000"},
         1.5),
        ({"/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us": "-1",
          "/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us": "100000"}, None),
        ({"/sys/fs/cgroup/cpu,cpuacct/docker/cpu.cfs_quota_us": "300000",
          "/sys/fs/cgroup/cpu,cpuacct/docker/cpu.cfs_period_us": "100000"}, 3.0),
    ],
)
def test_cgroup_cpu_quota(files: dict[str, str], expected: float | None) -> None:
    assert host.cgroup_cpu_limit(files) == expected


def test_cpu_quota_below_nproc_fails() -> None:
    text = facts_text(nproc="8", cgroup_files={"/sys/fs/cgroup/cpu.max": "200000 100000"})
    outcome = verdict(host.check_cpu, text)
    assert outcome.status == Status.FAIL
    assert outcome.observed == "2"
    assert "quota" in outcome.message


def test_cpu_enough() -> None:
    outcome = verdict(host.check_cpu, facts_text(nproc="4"))
    assert (outcome.status, outcome.observed) == (Status.PASS, "4")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("docker-compose version 1.29.2, build 5becea4c", "1.29.2"),
        ("docker-compose version 1.29.2, build unknown\ndocker-py version: 5.0.3\n", "1.29.2"),
        ("docker-compose version 1.25.0, build unknown", "1.25.0"),
        ("Docker Compose version v2.27.0", "2.27.0"),
        ("Docker Compose version 2.40.3", "2.40.3"),
        ("Docker Compose version v2.24.6-desktop.1", "2.24.6"),
        ("2.40.3", "2.40.3"),
        ("", None),
        ("docker: 'compose' is not a docker command.", None),
    ],
)
def test_compose_version_outputs(text: str, expected: str | None) -> None:
    parsed = parse_compose_version(text)
    assert parsed == (Version(expected) if expected else None)


def test_docker_version_strings() -> None:
    assert version_prefix("20.10.24+dfsg1") == Version("20.10.24")
    assert version_prefix("19.03.13") < Version("20.10")
    assert version_prefix("nonsense") is None


def test_ss_output_names_the_process() -> None:
    listeners = host.parse_ss(
        'LISTEN 0 511 0.0.0.0:443 0.0.0.0:* users:(("nginx",pid=812,fd=6),("nginx",pid=813,fd=6))\n'
        "LISTEN 0 4096 [::]:80 [::]:* \n"
    )
    assert [(lis.port, lis.process, lis.pid) for lis in listeners] == [(443, "nginx", 812),
                                                                       (80, "", None)]


def test_proc_net_tcp_listeners() -> None:
    text = (
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid\n"
        "   0: 00000000:01BB 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0\n"
        "   1: 0100007F:0050 0100007F:D2C4 01 00000000:00000000 00:00000000 00000000     0\n"
    )
    assert [lis.port for lis in host.parse_proc_net_tcp(text)] == [443]
