"""A first-time admin's path, timed: `git clone` of this checkout, `./install.sh` (its first
run builds .venv), then the full-screen wizard in a real terminal (80x24) from Welcome to the
Review screen, choosing this machine, the vendor's Compose release, a self-signed certificate,
the bundled database and the fixture package, and accepting the risks this machine cannot
meet (each after the one "accept all" confirmation).

What the admin has ready beforehand is prepared before the clock starts: the vendor's release
folder (../shared/vendor/compose-2026.7.16 when present, else the test fixture) and a package
in the vendor's format. Name lookups fail at once inside the run's own mount namespace (an
empty resolv.conf), so nothing leaves the machine; the package index is whatever pip uses
here. Needs root (unshare) and pexpect.

    python benchmarks/bench_first_run.py [--keep]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

CTRL_N, CTRL_Q, HOME, CTRL_K, TAB, DOWN = "\x0e", "\x11", "\x01", "\x0b", "\t", "\x1b[B"
PASTE = "\x1b[200~{}\x1b[201~"
# A person reads a screen before typing; keys sent the instant a screen is drawn can land
# before its focus is set. Counted in the total (about 0.3 s per screen).
READ = 0.3
STEPS = ["Welcome", "Platform", "Target machine", "Requirements", "Domain and TLS", "Database",
         "License package", "Network", "Review"]


def prepare(work: Path) -> tuple[Path, Path]:
    """The release folder and the package an admin has before starting."""
    from tests.support.package import make_package

    vendor = REPO.parent / "shared" / "vendor" / "compose-2026.7.16"
    release = work / "carto-selfhosted"
    if vendor.is_dir():
        shutil.copytree(vendor, release)
    else:
        shutil.copytree(REPO / "tests" / "data" / "deployment", release)
    package = make_package(work / "carto-package", version="2026.7.16")
    return release, package.path


def main() -> int:
    import pexpect

    from tests.services.netdb_namespaces import namespaced

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()
    branch = subprocess.run(["git", "rev-parse", "--abbrev-ref", "HEAD"], cwd=REPO,
                            capture_output=True, text=True, check=True).stdout.strip()
    work = Path(tempfile.mkdtemp(prefix="carto-first-run-"))
    release, package = prepare(work)
    clone = work / "carto-installer"
    marks: list[tuple[str, float]] = []
    start = time.monotonic()

    def mark(name: str) -> None:
        marks.append((name, time.monotonic() - start))

    subprocess.run(["git", "clone", "--quiet", "--branch", branch, str(REPO), str(clone)],
                   check=True)
    mark("git clone")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "NO_COLOR")}
    env.update(TERM="xterm-256color", XDG_STATE_HOME=str(work / "state"),
               DOCKER_HOST=env.get("DOCKER_HOST", "unix:///var/run/docker.sock"))
    # install.sh's first run reaches the package index pip is configured with (as any
    # install does); the wizard then runs where no name resolves, so its checks send
    # nothing off the machine. The first run is `./install.sh --version` for that reason;
    # with the venv built, `./install.sh` starts the wizard at once.
    setup = subprocess.run([str(clone / "install.sh"), "--version"], cwd=clone, env=env,
                           capture_output=True, text=True)
    if setup.returncode != 0:
        raise SystemExit(f"install.sh failed:\n{setup.stderr}")
    progress = [line for line in setup.stderr.splitlines() if line.startswith("install.sh:")]
    mark(f"install.sh first run (builds .venv; {len(progress)} progress lines)")
    argv = namespaced([str(clone / "install.sh")], {}, work / "ns")
    child = pexpect.spawn(argv[0], argv[1:], cwd=str(clone), env=env, encoding="utf-8",
                          dimensions=(24, 80), timeout=300)
    transcript = open(work / "transcript.txt", "w")  # noqa: SIM115 - closed below
    child.logfile_read = transcript
    try:
        child.expect_exact("Step 1 of 10")
        mark("./install.sh again: to the wizard's Welcome screen")
        time.sleep(READ)
        child.send(CTRL_N)
        child.expect_exact("Where will CARTO run?")
        time.sleep(READ)
        child.send(CTRL_N)
        child.expect_exact("Which machine will run CARTO?")
        time.sleep(READ)
        child.send(TAB)  # to the deployment directory
        time.sleep(READ)
        replace_text(child, str(release))
        go_on(child, "Step 4 of 10")
        go_on(child, "Step 5 of 10")
        time.sleep(READ)
        replace_text(child, "carto.firstrun.test")
        go_on(child, "Step 6 of 10")
        for _ in range(5):  # the bundled database (arrows choose); again if the key came
            time.sleep(READ)  # before the screen had its focus
            child.send(DOWN)
            if child.expect_exact(["Your data lives", pexpect.TIMEOUT], timeout=3) == 0:
                break
        go_on(child, "Step 7 of 10")
        time.sleep(READ)
        replace_text(child, str(package))
        go_on(child, "Step 8 of 10")
        go_on(child, "Step 9 of 10")
        child.expect(["Ready to deploy", "Cannot deploy"], timeout=120)
        mark("wizard, Welcome to the Review screen")
        reached = child.after
        child.send(CTRL_Q)
        child.expect_exact("Quit the installer?")
        child.send("y")
        child.expect(pexpect.EOF, timeout=30)
    finally:
        child.close(force=True)
        transcript.close()
    total = marks[-1][1]
    print(f"first-time path on this machine ({os.cpu_count()} CPUs), branch {branch}:")
    previous = 0.0
    for name, at in marks:
        print(f"  {at - previous:7.1f} s  {name}")
        previous = at
    print(f"  {total:7.1f} s  total, from git clone to the Review screen ({reached})")
    if args.keep:
        print(f"kept: {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def replace_text(child: object, text: str) -> None:
    """Clear the focused input and paste `text`, with the pauses of a person's keystrokes
    (a burst of keys and a paste within a millisecond can reach Textual out of order)."""
    import pexpect

    assert isinstance(child, pexpect.spawn)
    child.send(HOME)
    time.sleep(0.1)
    child.send(CTRL_K)
    time.sleep(0.1)
    child.send(PASTE.format(text))
    time.sleep(READ)


def go_on(child: object, step: str) -> None:
    """Ctrl+N until `step` shows: wait while checks run, and when failed checks block Next,
    accept all of them after the one confirmation (A, then y)."""
    import pexpect

    assert isinstance(child, pexpect.spawn)
    deadline = time.monotonic() + 240
    child.send(CTRL_N)
    while time.monotonic() < deadline:
        index = child.expect_exact([step, "block Next", "still running", pexpect.TIMEOUT],
                                   timeout=30)
        if index == 0:
            return
        if index == 1:
            child.send("A")
            child.expect_exact("Accept all")
            child.send("y")
            time.sleep(READ)
        elif index == 2:
            # Next was pressed while the step's own checks ran: wait for them, and press it
            # again only if the step did not move on by itself.
            if child.expect_exact([step, pexpect.TIMEOUT], timeout=2) == 0:
                return
        child.send(CTRL_N)
    raise TimeoutError(f"never reached {step}")


if __name__ == "__main__":
    sys.exit(main())
