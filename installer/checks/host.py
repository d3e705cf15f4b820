"""host.*: the machine that will run CARTO with Docker Compose (local or over SSH).

Facts are gathered with one shell script run on the target (one round trip over SSH), then
parsed by pure functions that the tests feed with samples from many distributions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from installer.checks.base import (
    Check,
    CheckContext,
    Outcome,
    errored,
    failed,
    passed,
    warned,
)
from installer.units import format_bytes

MIN_CPUS = 4
MIN_MEMORY = 16 * 10**9
MIN_DISK = 60 * 10**9
MIN_FREE_DISK = 20 * 10**9
# cgroup v1 writes this (or larger) for "no limit".
_V1_UNLIMITED = 1 << 62

# A constant script (no user input in it): prints each fact under an @@ marker, then the cgroup
# limit files from the process's own cgroup up to the hierarchy root, since the effective limit
# is the smallest along that path.
FACTS_SCRIPT = r"""
echo "@@uname"; uname -sm
echo "@@nproc"; nproc 2>/dev/null || getconf _NPROCESSORS_ONLN
echo "@@os-release"; cat /etc/os-release 2>/dev/null || cat /usr/lib/os-release 2>/dev/null
echo "@@meminfo"; cat /proc/meminfo 2>/dev/null
echo "@@cgroup"; cat /proc/self/cgroup 2>/dev/null
while IFS=: read -r _ ctrl path; do
  case "$ctrl" in ""|*cpu*|*memory*) ;; *) continue ;; esac
  base=/sys/fs/cgroup; [ -n "$ctrl" ] && base=/sys/fs/cgroup/$ctrl
  [ -d "$base" ] || continue
  d=$base$path
  while :; do
    for f in cpu.max memory.max cpu.cfs_quota_us cpu.cfs_period_us memory.limit_in_bytes; do
      [ -r "$d/$f" ] && printf '@@cgfile %s\n%s\n' "$d/$f" "$(cat "$d/$f")"
    done
    [ "$d" = "$base" ] && break
    d=${d%/*}
    [ "${#d}" -lt "${#base}" ] && d=$base
  done
done < /proc/self/cgroup
echo "@@end"
"""


@dataclass
class HostFacts:
    kernel: str = ""
    machine: str = ""
    nproc: int | None = None
    os_release: dict[str, str] = field(default_factory=dict)
    meminfo: dict[str, int] = field(default_factory=dict)
    cgroup_files: dict[str, str] = field(default_factory=dict)


def split_sections(text: str) -> list[tuple[str, str]]:
    sections: list[tuple[str, str]] = []
    name: str | None = None
    lines: list[str] = []
    for line in text.splitlines():
        if line.startswith("@@"):
            if name is not None:
                sections.append((name, "\n".join(lines)))
            name, lines = line[2:], []
        else:
            lines.append(line)
    if name is not None:
        sections.append((name, "\n".join(lines)))
    return sections


def parse_facts(text: str) -> HostFacts:
    facts = HostFacts()
    for name, body in split_sections(text):
        if name == "uname":
            parts = body.split()
            facts.kernel = parts[0] if parts else ""
            facts.machine = parts[1] if len(parts) > 1 else ""
        elif name == "nproc":
            body = body.strip()
            facts.nproc = int(body) if body.isdigit() else None
        elif name == "os-release":
            facts.os_release = parse_os_release(body)
        elif name == "meminfo":
            facts.meminfo = parse_meminfo(body)
        elif name.startswith("cgfile "):
            facts.cgroup_files[name[len("cgfile "):]] = body.strip()
    return facts


def gather_facts(ctx: CheckContext) -> HostFacts:
    def compute() -> HostFacts:
        result = ctx.target.run(["sh", "-c", FACTS_SCRIPT], timeout=20)
        if "@@uname" not in result.stdout:
            raise RuntimeError(f"could not read the host's facts: {result.output()[:200]}")
        return parse_facts(result.stdout)

    facts: HostFacts = ctx.cached("host.facts", compute)
    return facts


def parse_os_release(text: str) -> dict[str, str]:
    """os-release(5): KEY=value lines, values optionally quoted with shell-like escapes."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, raw = line.partition("=")
        raw = raw.strip()
        if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "\"'":
            raw = raw[1:-1]
            if line.split("=", 1)[1].strip().startswith('"'):
                raw = re.sub(r'\\([\\$"`])', r"\1", raw)
        values[key.strip()] = raw
    return values


def parse_meminfo(text: str) -> dict[str, int]:
    """/proc/meminfo in bytes (the file says kB, meaning KiB)."""
    values: dict[str, int] = {}
    for line in text.splitlines():
        match = re.match(r"^(\w+(?:\(\w+\))?):\s+(\d+)(?:\s+kB)?\s*$", line)
        if match:
            factor = 1024 if line.rstrip().endswith("kB") else 1
            values[match.group(1)] = int(match.group(2)) * factor
    return values


def cgroup_cpu_limit(files: dict[str, str]) -> float | None:
    """The tightest CPU quota, in CPUs, from cgroup v2 cpu.max or v1 cfs files; None if none."""
    limits: list[float] = []
    for path, body in files.items():
        if path.endswith("/cpu.max"):
            parts = body.split()
            if len(parts) == 2 and parts[0] != "max" and parts[0].isdigit() and int(parts[1]) > 0:
                limits.append(int(parts[0]) / int(parts[1]))
        elif path.endswith("/cpu.cfs_quota_us"):
            folder = path.rsplit("/", 1)[0]
            period = files.get(folder + "/cpu.cfs_period_us", "")
            try:
                quota = int(body)
                period_us = int(period)
            except ValueError:
                continue
            if quota > 0 and period_us > 0:
                limits.append(quota / period_us)
    return min(limits) if limits else None


def cgroup_memory_limit(files: dict[str, str]) -> int | None:
    """The tightest memory limit in bytes from cgroup v2 memory.max or v1; None if none."""
    limits: list[int] = []
    for path, body in files.items():
        if path.endswith("/memory.max") or path.endswith("/memory.limit_in_bytes"):
            body = body.strip()
            if body.isdigit() and int(body) < _V1_UNLIMITED:
                limits.append(int(body))
    return min(limits) if limits else None


def usable_cpus(facts: HostFacts) -> tuple[float | None, str]:
    """CPUs the processes may use: affinity (nproc) capped by a cgroup quota."""
    count: float | None = float(facts.nproc) if facts.nproc else None
    note = ""
    quota = cgroup_cpu_limit(facts.cgroup_files)
    if quota is not None and (count is None or quota < count):
        count = quota
        note = f" (cgroup quota {quota:g})"
    return count, note


# --- checks ---------------------------------------------------------------------------------


def check_os(ctx: CheckContext) -> Outcome:
    facts = gather_facts(ctx)
    if facts.kernel and facts.kernel != "Linux":
        return failed(
            f"{facts.kernel} is not Linux; CARTO's Single VM deployment runs on Ubuntu",
            observed=facts.kernel,
            remediation="use an Ubuntu 20.04 (or newer) VM",
        )
    release = facts.os_release
    if not release:
        return warned(
            "cannot identify the Linux distribution (no /etc/os-release)",
            observed="Linux, unknown distribution",
            remediation="CARTO supports Ubuntu 20.04 or newer; other Linux may work untested",
        )
    name = release.get("PRETTY_NAME") or release.get("NAME", "Linux")
    if release.get("ID") == "ubuntu":
        version = release.get("VERSION_ID", "")
        parsed = _ubuntu_version(version)
        if parsed is None:
            return warned(f"{name}: cannot read the Ubuntu version ({version!r})", observed=name,
                          remediation="check /etc/os-release; CARTO needs Ubuntu 20.04 or newer")
        if parsed >= (20, 4):
            return passed(f"{name} is supported", observed=name)
        return failed(
            f"{name} is older than the supported Ubuntu 20.04",
            observed=name,
            remediation="upgrade the VM to Ubuntu 20.04 or newer (`do-release-upgrade`), "
            "or create a new VM from a current Ubuntu LTS image",
        )
    like = release.get("ID_LIKE", "")
    return warned(
        f"{name} is not the supported distribution (Ubuntu 20.04 or newer)",
        observed=name + (f" (like {like})" if like else ""),
        remediation="CARTO supports Ubuntu 20.04+; Docker-based deployments usually work on "
        "other Linux, but the vendor does not support them",
    )


def _ubuntu_version(text: str) -> tuple[int, int] | None:
    match = re.match(r"^(\d+)\.(\d+)", text)
    return (int(match.group(1)), int(match.group(2))) if match else None


def check_arch(ctx: CheckContext) -> Outcome:
    machine = gather_facts(ctx).machine
    if machine in ("x86_64", "amd64"):
        return passed("x86-64 CPUs", observed=machine)
    if not machine:
        return errored("could not read the CPU architecture (uname -m printed nothing)")
    return failed(
        f"CARTO's images are built for x86-64; this machine is {machine}",
        observed=machine,
        remediation="use an x86-64 (amd64) VM; arm64 instances cannot run CARTO's images",
    )


def check_cpu(ctx: CheckContext) -> Outcome:
    count, note = usable_cpus(gather_facts(ctx))
    if count is None:
        return errored("could not count the CPUs (nproc printed nothing)")
    observed = f"{count:g}"
    if count >= MIN_CPUS:
        return passed(f"{count:g} usable CPUs{note}", observed=observed)
    return failed(
        f"only {count:g} usable CPUs{note}; CARTO needs at least {MIN_CPUS}",
        observed=observed,
        remediation="resize the VM to 4 or more vCPUs (and lift any CPU affinity or cgroup "
        "quota on the Docker service)",
    )


def check_memory(ctx: CheckContext) -> Outcome:
    facts = gather_facts(ctx)
    total = facts.meminfo.get("MemTotal")
    if total is None:
        return errored("could not read MemTotal from /proc/meminfo")
    limit = cgroup_memory_limit(facts.cgroup_files)
    usable, note = total, ""
    if limit is not None and limit < total:
        usable, note = limit, " (cgroup limit)"
    observed = format_bytes(usable)
    if usable >= MIN_MEMORY:
        return passed(f"{observed} of memory{note}", observed=observed)
    return failed(
        f"{observed} of memory{note}; CARTO needs 16 GB ({format_bytes(MIN_MEMORY)})",
        observed=observed,
        remediation="resize the VM to at least 16 GB of memory"
        + (" and raise the cgroup memory limit" if note else ""),
    )


def docker_root_dir(ctx: CheckContext) -> tuple[str, str]:
    """Where Docker keeps its data, and how we know."""
    from installer.checks.docker import engine_info

    try:
        info = engine_info(ctx)
    except Exception:
        info = None
    if info and info.get("DockerRootDir"):
        return str(info["DockerRootDir"]), "Docker's data root"
    if ctx.target.exists("/var/lib/docker"):
        return "/var/lib/docker", "/var/lib/docker"
    return "/", "the root filesystem (Docker not found)"


def check_disk(ctx: CheckContext) -> Outcome:
    path, what = docker_root_dir(ctx)
    size, free = ctx.target.disk_usage(path)
    observed = f"{format_bytes(size)} size, {format_bytes(free)} free at {path}"
    if size < MIN_DISK:
        return failed(
            f"the filesystem holding {what} is {format_bytes(size)}; CARTO needs 60 GB",
            observed=observed,
            remediation=f"grow the disk holding {path} to at least 60 GB, or move Docker's "
            "data-root (/etc/docker/daemon.json) to a larger disk",
        )
    if free < MIN_FREE_DISK:
        return warned(
            f"only {format_bytes(free)} free on the filesystem holding {what}",
            observed=observed,
            remediation="free space (`docker system prune`) or grow the disk: images and "
            "logs need 20 GB or more",
        )
    return passed(f"{format_bytes(size)} with {format_bytes(free)} free for {what} ({path})",
                  observed=observed)


@dataclass
class Listener:
    port: int
    address: str
    process: str = ""
    pid: int | None = None
    container: str = ""
    is_carto_router: bool = False

    def holder(self) -> str:
        if self.container:
            return f"container {self.container}"
        if self.process:
            return f"process {self.process}" + (f" (pid {self.pid})" if self.pid else "")
        return "an unknown process"


_SS_PROCESS = re.compile(r'users:\(\("([^"]+)",pid=(\d+)')


def parse_ss(text: str) -> list[Listener]:
    """`ss -Hltnp` lines -> listeners (process known when ss could see it)."""
    listeners: list[Listener] = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 4:
            continue
        local = parts[3]
        address, _, port = local.rpartition(":")
        if not port.isdigit():
            continue
        listener = Listener(int(port), address)
        match = _SS_PROCESS.search(line)
        if match:
            listener.process, listener.pid = match.group(1), int(match.group(2))
        listeners.append(listener)
    return listeners


def parse_proc_net_tcp(text: str) -> list[Listener]:
    """/proc/net/tcp{,6} -> listeners (state 0A), for machines without ss."""
    listeners: list[Listener] = []
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) < 4 or parts[3] != "0A":
            continue
        address, _, port_hex = parts[1].partition(":")
        listeners.append(Listener(int(port_hex, 16), address))
    return listeners


def find_listeners(ctx: CheckContext, ports: tuple[int, ...]) -> dict[int, Listener]:
    listeners: list[Listener] = []
    try:
        result = ctx.target.run(["ss", "-Hltnp"], timeout=10, sudo=_use_sudo(ctx))
        if result.ok:
            listeners = parse_ss(result.stdout)
    except (OSError, TimeoutError):
        result = None
    if not listeners and (result is None or not result.ok):
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            listeners += parse_proc_net_tcp(ctx.target.read_text(table) or "")
    found = {lis.port: lis for lis in listeners if lis.port in ports}
    if found:
        _attach_containers(ctx, found)
    return found


def _use_sudo(ctx: CheckContext) -> bool:
    target = ctx.answers.target if ctx.answers else None
    return bool(target and target.sudo)


def _attach_containers(ctx: CheckContext, found: dict[int, Listener]) -> None:
    """Name the container publishing a port (docker-proxy or a host-network router)."""
    from installer.checks.docker import published_ports

    try:
        containers = published_ports(ctx)
    except Exception:
        return
    for port, listener in found.items():
        for name, labels, host_ports in containers:
            if port in host_ports:
                listener.container = name
                listener.is_carto_router = _is_ours(ctx, labels, port)
                break


def _deployment_directory(ctx: CheckContext) -> str:
    from installer.answers import ComposeSettings

    return (ctx.answers.compose if ctx.answers else ComposeSettings()).directory


def _publishers(ctx: CheckContext, port: int) -> list[str]:
    """The services of the deployment directory's docker-compose.yml that publish `port`
    (the vendor's router, `router-http` today): read from the file, never assumed."""
    from installer.vendor import services_publishing

    text = ctx.deployment_file("docker-compose.yml")
    return services_publishing(text, port) if text else []


def _is_ours(ctx: CheckContext, labels: dict[str, str], port: int) -> bool:
    """A container of the Compose project in *our* deployment directory, of the service its
    docker-compose.yml publishes `port` with.

    Another project's router on 443 would make `up -d` fail with "port is already
    allocated", so the project's folder must match too.
    """
    workdir = labels.get("com.docker.compose.project.working_dir", "")
    if workdir.rstrip("/") != _deployment_directory(ctx).rstrip("/"):
        return False
    return labels.get("com.docker.compose.service", "") in _publishers(ctx, port)


def check_ports(ctx: CheckContext) -> Outcome:
    found = find_listeners(ctx, (443, 80))
    https, http = found.get(443), found.get(80)
    ours = [lis for lis in found.values() if lis.is_carto_router]
    foreign = {p: lis for p, lis in found.items() if not lis.is_carto_router}
    observed = ", ".join(
        f"{p} held by {lis.holder()}" for p, lis in sorted(found.items())
    ) or "443 and 80 free"
    if 443 in foreign and https is not None:
        return failed(
            f"port 443 is already in use by {https.holder()}; CARTO's router must publish 443",
            observed=observed,
            remediation=_free_port_hint(https),
        )
    if 80 in foreign and http is not None:
        return warned(
            f"port 80 is in use by {http.holder()}; HTTP will not redirect to HTTPS",
            observed=observed,
            remediation=_free_port_hint(http) + " (optional: only the redirect is lost)",
        )
    if ours:
        return passed("443 and 80 are held by CARTO's own router container", observed=observed)
    return passed("ports 443 and 80 are free", observed=observed)


def _free_port_hint(listener: Listener) -> str:
    if listener.container:
        return f"stop it: `docker stop {listener.container}`"
    if listener.process:
        return (f"stop or reconfigure {listener.process} (e.g. `systemctl stop "
                f"{listener.process}` and `systemctl disable {listener.process}`)")
    return f"find the holder with `sudo ss -ltnp 'sport = :{listener.port}'` and stop it"



CHECKS: list[Check] = [
    Check("host.os", "Operating system", "Ubuntu 20.04 or above", check_os,
          platforms=frozenset({"compose"}), timeout=25),
    Check("host.arch", "CPU architecture", "x86_64", check_arch,
          platforms=frozenset({"compose"}), timeout=25),
    Check("host.cpu", "CPUs", f">= {MIN_CPUS}", check_cpu,
          platforms=frozenset({"compose"}), timeout=25),
    Check("host.memory", "Memory", ">= 16 GB (16e9 bytes)", check_memory,
          platforms=frozenset({"compose"}), timeout=25),
    Check("host.disk", "Disk", ">= 60 GB size, >= 20 GB free", check_disk,
          platforms=frozenset({"compose"}), timeout=25),
    Check("host.ports", "Ports 443 and 80", "443 free (80 optional)", check_ports,
          platforms=frozenset({"compose"}), timeout=25),
]

__all__: list[str] = ["CHECKS", "HostFacts", "parse_facts"]
