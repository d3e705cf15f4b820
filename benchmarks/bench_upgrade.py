#!/usr/bin/env python3
"""Upgrade overhead on a release fixture shaped like the vendor's, measured in one run.

    python benchmarks/bench_upgrade.py

The installation is the vendor's release 2026.5.14 (real VERSION, MIN_VERSION, install.sh
from ../shared/vendor) with the fixture's docker-compose.yml and env.tpl and tiny images,
deployed by the installer. From that same running state, twice:

1. by hand, the mechanical floor of the vendor's procedure: copy the new release's files
   (2026.7.16) over the directory, copy the new package's key.json, rebuild .env with the
   vendor's own `install.sh --ignore-checks`, `docker compose up -d`, then poll the engine
   until every container runs (healthy when it has a healthcheck) and the migrations exited 0
   (the customer.env merge an admin does by hand is not timed: it is not mechanical);
2. `carto-installer upgrade --release NEW --package NEW --yes` (preflight, gates, plan with the
   three-way merge, keep the previous files, write, images, up -d, wait healthy, HTTPS).

Between the two the directory is put back as it was and the old release started again.
Prints both times and the ratio. Not part of the test suite.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.bench_deploy import healthy  # noqa: E402
from tests.services.dockerd import compose_v2_plugin, ensure_docker_engine  # noqa: E402
from tests.support.cli import host_ports_lock  # noqa: E402
from tests.support.compose_deployment import (  # noqa: E402
    build_release_images,
    compose_down,
    make_release,
    write_answers,
)
from tests.support.package import make_package  # noqa: E402
from tests.support.vendor_compose import NEW_RELEASE, OLD_RELEASE, VENDOR  # noqa: E402

DOMAIN = "carto-bench-upgrade.example.com"
SKIP = "host.cpu,egress"
ENV = {"TEST_PG_ADMIN_PASSWORD": "bench-admin-pw", "TEST_PG_PASSWORD": "bench-user-pw"}


def cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **ENV, "PYTHONPATH": str(REPO), "NO_COLOR": "1"}
    result = subprocess.run([sys.executable, "-m", "installer", *args], cwd=cwd, env=env,
                            capture_output=True, text=True, check=False, timeout=900)
    if result.returncode != 0:
        raise SystemExit(f"{args[0]} failed ({result.returncode}):\n{result.stdout}\n"
                         f"{result.stderr}")
    return result


def wait_healthy(client: object, project: str) -> None:
    while not healthy(client, project):
        time.sleep(0.1)


def by_hand(client: object, directory: Path, release: Path, package: Path) -> float:
    start = time.perf_counter()
    for source in release.rglob("*"):
        if source.is_file():
            dest = directory / source.relative_to(release)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, dest)
    shutil.copyfile(package / "key.json", directory / "certs" / "key.json")
    subprocess.run(["bash", "install.sh", "--ignore-checks"], cwd=directory, check=True,
                   capture_output=True, timeout=120)
    subprocess.run(["docker", "compose", "up", "-d"], cwd=directory, check=True,
                   capture_output=True, timeout=600)
    wait_healthy(client, directory.name)
    return time.perf_counter() - start


def put_back(client: object, directory: Path, baseline: Path) -> None:
    shutil.rmtree(directory)
    shutil.copytree(baseline, directory, symlinks=True)
    subprocess.run(["docker", "compose", "up", "-d"], cwd=directory, check=True,
                   capture_output=True, timeout=600)
    wait_healthy(client, directory.name)


def main() -> int:
    if not (VENDOR / OLD_RELEASE).is_dir():
        raise SystemExit(f"the vendor's releases are not in {VENDOR}")
    engine = ensure_docker_engine()
    compose_v2_plugin()
    for version in ("2026.5.14", "2026.7.16"):
        build_release_images(engine.client, version)
    workdir = Path(tempfile.mkdtemp(prefix="bench-upgrade-"))
    directory = workdir / "cartobenchup"
    try:
        old_package = make_package(workdir / "pkg-old", version="2026.4.1")
        new_package = make_package(workdir / "pkg-new", version="2026.7.1",
                                   client_id=old_package.client_id)
        make_release(directory, OLD_RELEASE)
        release = make_release(workdir / "release-new", NEW_RELEASE)
        answers = write_answers(workdir / "answers.yaml", package=old_package.path,
                                directory=directory, domain=DOMAIN)
        with host_ports_lock():
            cli(["deploy", "--answers", str(answers), "--yes", "--skip", SKIP], workdir)
            _record_backup(answers, workdir)
            baseline = workdir / "baseline"
            shutil.copytree(directory, baseline, symlinks=True)
            answers_text = answers.read_text()

            manual = by_hand(engine.client, directory, release, new_package.path)
            put_back(engine.client, directory, baseline)
            answers.write_text(answers_text)

            start = time.perf_counter()
            cli(["upgrade", "--answers", str(answers), "--release", str(release),
                 "--package", str(new_package.path), "--yes", "--skip", SKIP], workdir)
            ours = time.perf_counter() - start
        print("upgrade 2026.5.14 -> 2026.7.16 with a new package, one run")
        print(f"  by hand (copy, install.sh, up -d, health wait): {manual:.2f} s")
        print(f"  carto-installer upgrade --yes:                  {ours:.2f} s")
        print(f"  overhead:                                       {ours - manual:+.2f} s")
        print(f"  ratio:                                          {ours / manual:.2f}x")
        return 0
    finally:
        compose_down(directory)
        shutil.rmtree(workdir, ignore_errors=True)


def _record_backup(answers: Path, workdir: Path) -> None:
    """The record `carto-installer backup` leaves (the fixture has no database to dump)."""
    from installer.answers import load_answers
    from installer.operate.backup import BackupRecord, record_backup
    from installer.operate.installation import Installation
    from installer.redact import Redactor
    from installer.target import LocalTarget

    archive = workdir / "backup.tar"
    archive.write_bytes(b"backup")
    record_backup(Installation(load_answers(answers, env=ENV), LocalTarget(), Redactor()),
                  BackupRecord(datetime.datetime.now(datetime.UTC), str(archive),
                               hashlib.sha256(b"backup").hexdigest(), True))


if __name__ == "__main__":
    raise SystemExit(main())
