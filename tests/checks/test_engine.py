"""The check engine: concurrency, timeouts, errors, dependencies, selection, cancel."""

from __future__ import annotations

import threading
import time

from installer.checks.base import Check, CheckContext, Status, failed, passed
from installer.checks.engine import CheckFinished, CheckStarted, run_checks, select
from installer.target import LocalTarget


def sleeper(seconds: float, outcome=None):
    def run(ctx: CheckContext):
        time.sleep(seconds)
        return outcome or passed(f"slept {seconds}")

    return run


def make(check_id: str, run, **kw) -> Check:
    return Check(check_id, check_id, "req", run, **kw)


def ctx() -> CheckContext:
    return CheckContext(target=LocalTarget())


def test_independent_checks_run_concurrently() -> None:
    checks = [make(f"host.c{i}", sleeper(0.5)) for i in range(8)]
    start = time.monotonic()
    results = run_checks(ctx(), checks)
    elapsed = time.monotonic() - start
    assert [r.status for r in results] == [Status.PASS] * 8
    assert elapsed < 1.5, f"8 checks of 0.5 s took {elapsed:.2f} s: not concurrent"


def test_a_check_that_overruns_its_timeout_is_an_error_and_does_not_hold_the_run() -> None:
    checks = [make("host.slow", sleeper(5), timeout=0.3), make("host.fast", sleeper(0))]
    start = time.monotonic()
    results = {r.id: r for r in run_checks(ctx(), checks)}
    assert time.monotonic() - start < 2
    assert results["host.slow"].status == Status.ERROR
    assert "0.3 s" in results["host.slow"].message
    assert results["host.fast"].status == Status.PASS


def test_a_check_that_raises_is_an_error_with_the_cause() -> None:
    def boom(ctx: CheckContext):
        raise OSError("disk on fire")

    results = run_checks(ctx(), [make("host.boom", boom), make("host.ok", sleeper(0))])
    assert results[0].status == Status.ERROR
    assert "disk on fire" in results[0].message
    assert results[1].status == Status.PASS


def test_dependents_of_a_failed_check_are_skipped_with_the_reason() -> None:
    order: list[str] = []

    def base(ctx: CheckContext):
        time.sleep(0.2)
        order.append("base")
        return failed("engine down", remediation="start it")

    def dependent(ctx: CheckContext):
        order.append("dependent")
        return passed("never")

    results = {r.id: r for r in run_checks(ctx(), [
        make("docker.version", dependent, needs=("docker.engine",)),
        make("docker.engine", base),
    ])}
    assert results["docker.version"].status == Status.SKIP
    assert "docker.engine" in results["docker.version"].message
    assert order == ["base"]


def test_dependents_wait_for_and_see_their_dependency() -> None:
    def base(ctx: CheckContext):
        time.sleep(0.2)
        return passed("up", version="20.10.24")

    def dependent(c: CheckContext):
        return passed(f"saw {c.data('docker.engine')['version']}")

    results = {r.id: r for r in run_checks(ctx(), [
        make("docker.version", dependent, needs=("docker.engine",)),
        make("docker.engine", base),
    ])}
    assert results["docker.version"].message == "saw 20.10.24"


def test_skip_by_id_and_category_and_applies() -> None:
    checks = [make("host.a", sleeper(0)), make("db.x", sleeper(0)), make("db.y", sleeper(0)),
              make("net.z", sleeper(0), applies=lambda c: "no domain given")]
    results = {r.id: r for r in run_checks(ctx(), checks, skip=["db", "host.a"])}
    assert {k: v.status for k, v in results.items()} == {
        "host.a": Status.SKIP, "db.x": Status.SKIP, "db.y": Status.SKIP, "net.z": Status.SKIP}
    assert results["net.z"].message == "no domain given"


def test_only_selects_what_is_named_plus_its_dependencies() -> None:
    compose = frozenset({"compose"})
    catalog = [make("docker.engine", sleeper(0), platforms=compose),
               make("docker.version", sleeper(0), needs=("docker.engine",), platforms=compose),
               make("host.cpu", sleeper(0), platforms=compose),
               make("k8s.cluster", sleeper(0), platforms=frozenset({"kubernetes"}))]
    assert [c.id for c in select(catalog, "compose", ["docker.version"])] == [
        "docker.engine", "docker.version"]
    assert [c.id for c in select(catalog, "compose", [])] == [
        "docker.engine", "docker.version", "host.cpu"]
    assert [c.id for c in select(catalog, "kubernetes", [])] == ["k8s.cluster"]


def test_families_expand_into_one_result_each() -> None:
    def probe(c: CheckContext, host: str):
        return passed(f"reached {host}")

    hosts = ("a.com", "b.com")
    family = Check("egress", "Egress", "443", probe,
                   expand=lambda c: [(f"egress.{h}", f"HTTPS to {h}", h) for h in hosts])
    results = run_checks(ctx(), [family])
    assert [(r.id, r.message) for r in results] == [("egress.a.com", "reached a.com"),
                                                    ("egress.b.com", "reached b.com")]


def test_events_and_cancel() -> None:
    context = ctx()
    events: list[object] = []
    started = threading.Event()

    def slow(c: CheckContext):
        started.set()
        time.sleep(3)
        return passed("late")

    def on_event(event: object) -> None:
        events.append(event)

    threading.Thread(target=lambda: (started.wait(5), context.cancel.set()), daemon=True).start()
    t0 = time.monotonic()
    results = run_checks(context, [make("host.slow", slow, timeout=10)], on_event=on_event)
    assert time.monotonic() - t0 < 2
    assert results[0].status == Status.SKIP and results[0].message == "cancelled"
    assert isinstance(events[0], CheckStarted) and isinstance(events[-1], CheckFinished)


def test_a_stuck_check_never_holds_the_programs_exit() -> None:
    """After a check overran its timeout, the program ends at once (a quit or Ctrl-C must
    not wait for a hanging probe)."""
    import subprocess
    import sys

    from tests.support.cli import cli_env

    script = (
        "import time\n"
        "from installer.checks.base import Check, CheckContext, passed\n"
        "from installer.checks.engine import run_checks\n"
        "from installer.target import LocalTarget\n"
        "hang = Check('host.hang', 'hang', 'r', lambda c: (time.sleep(60), passed('x'))[1],"
        " timeout=0.3)\n"
        "print(run_checks(CheckContext(target=LocalTarget()), [hang])[0].status)\n"
    )
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-c", script], env=cli_env(), capture_output=True,
                          text=True, timeout=30, check=False)
    assert done.stdout.strip() == "error", done.stderr
    assert time.monotonic() - start < 10


def test_at_most_max_workers_checks_run_at_once() -> None:
    lock = threading.Lock()
    now_running = [0]
    peak = [0]

    def counted(ctx: CheckContext):
        with lock:
            now_running[0] += 1
            peak[0] = max(peak[0], now_running[0])
        time.sleep(0.1)
        with lock:
            now_running[0] -= 1
        return passed("ok")

    results = run_checks(ctx(), [make(f"host.c{i}", counted) for i in range(6)], max_workers=2)
    assert [r.status for r in results] == [Status.PASS] * 6
    assert peak[0] == 2


class CountingTarget(LocalTarget):
    """This machine, counting the deployment-directory reads the checks make."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: list[str] = []
        self.lock = threading.Lock()

    def read_deployment_file(self, path: str, root: str) -> bytes:
        with self.lock:
            self.reads.append(path)
        time.sleep(0.05)  # a read over SSH takes round trips: let the callers overlap
        return super().read_deployment_file(path, root)


def test_a_deployment_file_is_read_once_per_run_and_afresh_in_the_next(tmp_path) -> None:
    """host.ports, license.* and the egress list all read docker-compose.yml: over SSH each
    read is several round trips on the one SFTP session, so a run reads it once, however
    many checks ask at the same time; the next run (a new context) sees the file as it is."""
    from installer.answers import Answers, ComposeSettings

    directory = tmp_path / "carto"
    directory.mkdir()
    (directory / "docker-compose.yml").write_text("services: {first: {image: a}}\n")
    answers = Answers(compose=ComposeSettings(directory=str(directory)))
    target = CountingTarget()
    context = CheckContext(target=target, answers=answers)
    texts: list[str | None] = []
    readers = [threading.Thread(target=lambda: texts.append(
        context.deployment_file("docker-compose.yml"))) for _ in range(8)]
    for reader in readers:
        reader.start()
    for reader in readers:
        reader.join()
    assert texts == ["services: {first: {image: a}}\n"] * 8
    assert target.reads == [str(directory / "docker-compose.yml")]
    assert context.deployment_file("env.tpl") is None  # absent: asked once, remembered
    assert context.deployment_file("env.tpl") is None
    assert target.reads.count(str(directory / "env.tpl")) == 1

    (directory / "docker-compose.yml").write_text("services: {second: {image: b}}\n")
    again = CheckContext(target=target, answers=answers)
    assert again.deployment_file("docker-compose.yml") == "services: {second: {image: b}}\n"
