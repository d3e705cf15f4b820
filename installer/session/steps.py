"""The wizard's steps, each declared once: its id, its title, the check categories it runs
and the answers it cannot go on without.

The step order, the titles the screens and the plain prompts show, which step a failed check
sends the user back to, and what `Session.missing()` reports all come from this one table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from installer.answers import Answers, missing_storage_secrets, unpaired_tls_file

# What a step needs: the labels (for messages) of the answers still missing, [] when complete.
Need = Callable[[Answers], list[str]]


def _target_host(a: Answers) -> list[str]:
    return ["target host"] if a.target is not None and not a.target.host else []


def _domain(a: Answers) -> list[str]:
    return [] if a.domain else ["domain"]


def _tls_pair(a: Answers) -> list[str]:
    # The rule render and deploy apply too (installer.answers.require_tls_pair).
    if unpaired_tls_file(a) is None:
        return []
    return ["certificate and key (both, or neither for self-signed)"]


def _own_database(a: Answers) -> list[str]:
    db = a.database
    if db.bundled:
        return []
    return ([] if db.host else ["database host"]) + (
        ["database admin password"] if db.admin_password is None else []) + (
        ["CARTO database user password"] if db.password is None else [])


def _package(a: Answers) -> list[str]:
    return [] if a.package else ["installation package"]


def _storage_secrets(a: Answers) -> list[str]:
    if a.storage is None or not a.storage.provider:
        return []
    return [key.removeprefix("storage.").replace("_", " ")
            for key in missing_storage_secrets(a.storage)]


@dataclass(frozen=True)
class StepSpec:
    id: str
    title: str
    # The check categories the step runs (the engine adds what they need).
    categories: tuple[str, ...] = ()
    needs: tuple[Need, ...] = ()

    def missing(self, answers: Answers) -> list[str]:
        return [label for need in self.needs for label in need(answers)]


STEP_SPECS = (
    StepSpec("welcome", "Welcome"),
    StepSpec("platform", "Platform"),
    StepSpec("target", "Target machine", needs=(_target_host,)),
    StepSpec("requirements", "Requirements", ("host", "docker", "k8s")),
    StepSpec("domain_tls", "Domain and TLS", ("net", "tls"), (_domain, _tls_pair)),
    StepSpec("database", "Database", ("db",), (_own_database,)),
    StepSpec("license", "License package", ("license",), (_package,)),
    StepSpec("network", "Network", ("egress", "storage"), (_storage_secrets,)),
    StepSpec("review", "Review"),
    StepSpec("deploy", "Deploy"),
)

STEP_SPEC = {step.id: step for step in STEP_SPECS}
STEPS = tuple(step.id for step in STEP_SPECS)
STEP_TITLES = {step.id: step.title for step in STEP_SPECS}
STEP_CATEGORIES: dict[str, tuple[str, ...]] = {
    step.id: step.categories for step in STEP_SPECS if step.categories}
