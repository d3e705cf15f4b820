"""The one explicit list of every check, in the order reports show them."""

from __future__ import annotations

from installer.checks import (
    db,
    docker,
    egress,
    host,
    k8s,
    license,
    net,
    storage,
    tls,
)
from installer.checks.base import Check


def all_checks() -> list[Check]:
    return [*host.CHECKS, *docker.CHECKS, *k8s.CHECKS, *db.CHECKS,
            *net.CHECKS, *egress.CHECKS, *tls.CHECKS, *license.CHECKS, *storage.CHECKS]
