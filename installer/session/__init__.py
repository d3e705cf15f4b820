"""The wizard's application logic, free of any user interface.

`Session` holds what a run of the wizard knows between steps (answers, the open target, check
results, accepted risks, the saved progress) and makes every call into the core, so the Textual
screens and the plain prompts only render and ask.
"""

from installer.session.session import (
    ANSWERS_NAME,
    BLOCKING,
    INSTALLER_HOME,
    SESSION_NAME,
    Confirmation,
    SavedSession,
    Session,
    bundled_warning,
    check_advanced,
    default_answers_folder,
    describe_error,
    expose_as_asked,
    load_answers_arg,
    plan_fingerprint,
    state_directory,
    step_for_check,
)
from installer.session.steps import (
    STEP_CATEGORIES,
    STEP_SPEC,
    STEP_SPECS,
    STEP_TITLES,
    STEPS,
    StepSpec,
    step_for_answer,
)
from installer.session.work import Background, Cancelled, Handoff, run_cancellable

__all__ = [
    "ANSWERS_NAME",
    "BLOCKING",
    "Background",
    "INSTALLER_HOME",
    "SESSION_NAME",
    "STEPS",
    "STEP_SPEC",
    "STEP_SPECS",
    "STEP_CATEGORIES",
    "STEP_TITLES",
    "Cancelled",
    "Confirmation",
    "Handoff",
    "SavedSession",
    "StepSpec",
    "Session",
    "bundled_warning",
    "check_advanced",
    "default_answers_folder",
    "describe_error",
    "expose_as_asked",
    "load_answers_arg",
    "plan_fingerprint",
    "run_cancellable",
    "state_directory",
    "step_for_answer",
    "step_for_check",
]
