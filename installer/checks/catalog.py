"""The one explicit list of every check, in the order reports show them."""

from __future__ import annotations

from installer.checks import docker, host, kubernetes, license
from installer.checks.base import Check


def all_checks() -> list[Check]:
    return [*host.CHECKS, *docker.CHECKS, *kubernetes.CHECKS, *license.CHECKS]
