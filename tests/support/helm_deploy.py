"""The guided Helm deploy run in this process and through the CLI, against the fixture API
server: shared by the deploy, operate, upgrade and vendor tests of Kubernetes.

Name lookups stay on this machine: in-process deploys get a resolver mapping every name to
127.0.0.1, and CLI runs happen in a private mount namespace whose resolv.conf points at
127.0.0.1 (no DNS server there, so a lookup fails without leaving the machine).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from installer.answers import parse_answers
from installer.deploy.helm import deploy_kubernetes
from installer.redact import Redactor
from installer.target import LocalTarget
from tests.services.k8s_apiserver import FakeCluster
from tests.support.cli import cli_env
from tests.support.k8s_package import HelmPackage, k8s_answers, self_signed_pair

DB_PASSWORD = "db-Passw0rd-that-is-secret"
ADMIN_PASSWORD = "admin-Passw0rd-also-secret"
# Checks of other categories are not the subject here; with loopback-only lookups the egress
# and database probes fail, and naming them accepts that (as --skip does).
SKIP = ("egress", "net", "db", "tls")


def loopback(name: str) -> list[str]:
    return ["127.0.0.1"]


def external_db_answers(cluster: FakeCluster, tmp_path: Path, package: HelmPackage,
                        **extra: Any) -> dict[str, Any]:
    cert, key = self_signed_pair(tmp_path / "tls", "carto.example.com")
    data = k8s_answers(cluster, package.path,
                       tls={"certificate_file": str(cert), "key_file": str(key)},
                       database={"bundled": False, "host": "db.internal",
                                 "password": DB_PASSWORD, "admin_password": ADMIN_PASSWORD})
    data.update(extra)
    return data


def deploy(data: dict[str, Any], *, confirm: Any = None, events: list[Any] | None = None,
           cancel: threading.Event | None = None) -> Any:
    redactor = Redactor()
    answers = parse_answers(data, redactor=redactor)
    return deploy_kubernetes(answers, LocalTarget(), redactor=redactor, skip=SKIP,
                             on_event=events.append if events is not None else None,
                             confirm=confirm, resolver=loopback, cancel=cancel)


def run_cli_offline(tmp_path: Path, *args: str, env: dict[str, str],
                    cwd: Path) -> subprocess.CompletedProcess[str]:
    """The CLI in a private mount namespace where DNS goes to 127.0.0.1 only."""
    if shutil.which("unshare") is None:
        raise RuntimeError("unshare is missing: apt-get install -y util-linux")
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
    script = 'mount --bind "$1" /etc/resolv.conf && shift && exec "$@"'
    return subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh", str(resolv),
         sys.executable, "-m", "installer", *args],
        env=cli_env(env), cwd=cwd, capture_output=True, text=True, check=False, timeout=300,
        stdin=subprocess.DEVNULL)
