"""The wizard's steps, each declared once: its id, its title, the check categories it runs,
the sections of answers it asks for (installer/answers/sections.py, with when each answer is
shown and required) and the answers it owns beyond them.

The step order, the titles the screens and the plain prompts show, the fields each step
shows and requires, which step a failed check or a refused answer sends the user back to, and
what `Session.missing()` reports all come from this one table.
"""

from __future__ import annotations

from dataclasses import dataclass

from installer.answers import Answers
from installer.answers.sections import (
    ADVANCED,
    DATABASE,
    DATABASE_TLS,
    DEPLOYMENT,
    DOMAIN,
    JUMP,
    KUBERNETES,
    NETWORK_HOSTS,
    PACKAGE,
    PROXY,
    SSH,
    STORAGE,
    TLS,
    Section,
)


@dataclass(frozen=True)
class StepSpec:
    id: str
    title: str
    # The check categories the step runs (the engine adds what they need).
    categories: tuple[str, ...] = ()
    # The answers the step asks for, section by section, in display order.
    sections: tuple[Section, ...] = ()
    # Answers the step sets outside its sections (choices made with radio buttons and ticks),
    # by the start of their dotted path: a problem found later (at Review) names this step.
    owns: tuple[str, ...] = ()

    def missing(self, answers: Answers) -> list[str]:
        """The answers (dotted paths) the step cannot go on without, [] when complete."""
        return [path for section in self.sections for path in section.missing(answers)]

    def section(self, section_id: str) -> Section:
        return next(s for s in self.sections if s.id == section_id)

    def asks_for(self, path: str) -> bool:
        """Whether one of the step's sections asks for `path` (or its _env/_file form)."""
        return any(path == p or path.startswith(p + ".") or path.startswith(p + "_")
                   for section in self.sections for p in section.paths)

    def owns_answer(self, path: str) -> bool:
        return any(path == p or path.startswith(p + ".") or path.startswith(p + "_")
                   for p in self.owns)


STEP_SPECS = (
    StepSpec("welcome", "Welcome"),
    StepSpec("platform", "Platform", owns=("platform",)),
    StepSpec("target", "Target machine", sections=(KUBERNETES, SSH, JUMP, DEPLOYMENT),
             owns=("target", "kubernetes")),
    StepSpec("requirements", "Requirements", ("host", "docker", "k8s")),
    StepSpec("domain_tls", "Domain and TLS", ("net", "tls"), (DOMAIN, TLS), owns=("tls",)),
    StepSpec("database", "Database", ("db",), (DATABASE, DATABASE_TLS), owns=("database",)),
    StepSpec("license", "License package", ("license",), (PACKAGE,)),
    StepSpec("network", "Network", ("egress", "storage"),
             (NETWORK_HOSTS, PROXY, STORAGE, ADVANCED), owns=("network", "storage")),
    StepSpec("review", "Review"),
    StepSpec("deploy", "Deploy"),
)

STEP_SPEC = {step.id: step for step in STEP_SPECS}
STEPS = tuple(step.id for step in STEP_SPECS)
STEP_TITLES = {step.id: step.title for step in STEP_SPECS}
STEP_CATEGORIES: dict[str, tuple[str, ...]] = {
    step.id: step.categories for step in STEP_SPECS if step.categories}


def step_for_answer(path: str) -> str | None:
    """The step where an answer is set: the one whose sections ask for it, else the one that
    owns its part of the answers; None for answers only the file sets (redis)."""
    for step in STEP_SPECS:
        if step.asks_for(path):
            return step.id
    return next((step.id for step in STEP_SPECS if step.owns_answer(path)), None)
