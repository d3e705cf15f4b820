"""The one explicit list of every check, in the order reports show them."""

from __future__ import annotations

from installer.checks import (
    database,
    docker,
    host,
    kubernetes,
    license,
    network,
    storage,
    tls,
)
from installer.checks.base import Check


def all_checks() -> list[Check]:
    return [*host.CHECKS, *docker.CHECKS, *kubernetes.CHECKS, *database.CHECKS,
            *network.CHECKS, *tls.CHECKS, *license.CHECKS, *storage.CHECKS]
