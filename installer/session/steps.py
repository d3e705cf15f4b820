"""The wizard's steps, each declared once: its id, its title and the check categories it runs.

The step order, the titles the screens and the plain prompts show, and which step a failed
check sends the user back to all come from this one table.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StepSpec:
    id: str
    title: str
    # The check categories the step runs (the engine adds what they need).
    categories: tuple[str, ...] = ()


STEP_SPECS = (
    StepSpec("welcome", "Welcome"),
    StepSpec("platform", "Platform"),
    StepSpec("target", "Target machine"),
    StepSpec("requirements", "Requirements", ("host", "docker", "k8s")),
    StepSpec("domain_tls", "Domain and TLS", ("net", "tls")),
    StepSpec("database", "Database", ("db",)),
    StepSpec("license", "License package", ("license",)),
    StepSpec("network", "Network", ("egress", "storage")),
    StepSpec("review", "Review"),
    StepSpec("deploy", "Deploy"),
)

STEPS = tuple(step.id for step in STEP_SPECS)
STEP_TITLES = {step.id: step.title for step in STEP_SPECS}
STEP_CATEGORIES: dict[str, tuple[str, ...]] = {
    step.id: step.categories for step in STEP_SPECS if step.categories}
