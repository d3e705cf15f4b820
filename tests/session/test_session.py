"""The UI-free session core: what a deploy must ask before it writes, and work that a cancel
cuts short."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from installer.answers import require_tls_pair, unpaired_tls_file
from installer.errors import AnswersError
from installer.redact import Redactor
from installer.render import FileChange, RenderPlan
from installer.render.actions import Action, ActionKind
from installer.session import (
    STEP_CATEGORIES,
    STEP_SPECS,
    STEP_TITLES,
    STEPS,
    Cancelled,
    Session,
    plan_fingerprint,
    step_for_check,
)
from installer.session.work import Background, Handoff, run_cancellable


def _plan(*actions: Action, content: bytes = b"A=1\n") -> RenderPlan:
    change = FileChange(path="/opt/carto/customer.env", before=None, after=content, mode=0o600,
                        secret=True)
    return RenderPlan(changes=[change], backups=[], notes=[], directory="/opt/carto",
                      actions=list(actions))


def _session(tmp_path: Path) -> Session:
    return Session(redactor=Redactor(), workdir=tmp_path, state_dir=tmp_path / "state")


START = Action(ActionKind.START_SERVICES, "run `docker compose up -d` in /opt/carto on host")
LOAD = Action(ActionKind.LOAD_IMAGES, "docker load the images in images.tar (only those missing)")
SECRETS = Action(ActionKind.APPLY_SECRETS, "create or update the Secrets x in namespace carto")
UPGRADE = Action(ActionKind.HELM_UPGRADE, "run `helm upgrade --install carto chart.tgz`")
LOGIN = Action(ActionKind.REGISTRY_LOGIN, "`docker login registry.example` as me on host")
REPAIR = Action(ActionKind.REPAIR_RELEASE, "roll back release carto (stuck in pending-upgrade)")


def test_a_reviewed_plan_of_ordinary_actions_needs_no_confirmation(tmp_path: Path) -> None:
    session = _session(tmp_path)
    plan = _plan(LOAD, START)
    session.reviewed_fingerprint = plan_fingerprint(plan)
    needed = session.confirmation_needed(plan)
    assert needed.actions == ()
    assert not needed.changed_since_review
    assert not needed.needed


def test_actions_deploying_does_not_cover_are_asked_about_by_kind(tmp_path: Path) -> None:
    session = _session(tmp_path)
    plan = _plan(SECRETS, REPAIR, UPGRADE, LOGIN)
    session.reviewed_fingerprint = plan_fingerprint(plan)
    needed = session.confirmation_needed(plan)
    assert needed.actions == (REPAIR, LOGIN)  # in the order the deploy takes them
    assert all(isinstance(a.kind, ActionKind) for a in needed.actions)
    assert not needed.changed_since_review
    assert needed.needed


def test_the_kind_decides_not_the_wording(tmp_path: Path) -> None:
    # Text that reads like an ordinary step does not make an unusual kind ordinary.
    disguised = Action(ActionKind.REPAIR_RELEASE, "run `helm rollback carto 3`")
    assert disguised.needs_consent
    assert not Action(ActionKind.START_SERVICES, "anything at all").needs_consent
    session = _session(tmp_path)
    plan = _plan(disguised)
    session.reviewed_fingerprint = plan_fingerprint(plan)
    assert session.confirmation_needed(plan).actions == (disguised,)


def test_files_changed_since_the_review_need_confirmation(tmp_path: Path) -> None:
    session = _session(tmp_path)
    session.reviewed_fingerprint = plan_fingerprint(_plan(START))
    changed = _plan(START, content=b"A=2\n")
    changed.changes[0].before = b"A=0\n"  # the file appeared on the target after the review
    needed = session.confirmation_needed(changed)
    assert needed.changed_since_review
    assert needed.actions == ()
    assert needed.needed
    # Nothing was reviewed at all (e.g. the deploy started without the Review step).
    assert _session(tmp_path).confirmation_needed(_plan(START)).changed_since_review


def test_an_empty_plan_counts_as_reviewed(tmp_path: Path) -> None:
    plan = RenderPlan(changes=[], backups=[], notes=[], actions=[UPGRADE])
    needed = _session(tmp_path).confirmation_needed(plan)
    assert not needed.needed


def test_cancellable_work_hands_back_its_value_and_its_error() -> None:
    cancel = threading.Event()
    assert run_cancellable(lambda: 42, cancel) == 42

    def broken() -> int:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        run_cancellable(broken, cancel)


def test_a_cancel_stops_the_wait_without_waiting_for_the_work() -> None:
    cancel = threading.Event()
    release = threading.Event()
    job = Background(lambda: release.wait(10), "test-stuck")
    threading.Timer(0.1, cancel.set).start()
    start = time.monotonic()
    with pytest.raises(Cancelled):
        job.wait(cancel)
    assert time.monotonic() - start < 2
    assert not job.done.is_set()  # the work is abandoned, not finished
    release.set()
    job.join()
    assert job.done.is_set()


def test_a_handoff_gives_one_value_across_threads() -> None:
    handoff: Handoff[str] = Handoff()
    threading.Timer(0.05, handoff.give, args=("yes",)).start()
    assert handoff.wait(threading.Event()) == "yes"
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        Handoff[str]().wait(cancel)


def test_one_tls_file_without_the_other_is_one_rule_for_the_wizard_and_render(
        tmp_path: Path) -> None:
    session = _session(tmp_path)
    session.answers.domain = "carto.example.com"
    assert session.missing("domain_tls") == []  # neither: a self-signed certificate
    session.answers.tls.certificate_file = str(tmp_path / "cert.pem")
    assert session.missing("domain_tls") == ["tls.key_file"]
    assert unpaired_tls_file(session.answers) == "tls.key_file"
    with pytest.raises(AnswersError) as raised:
        require_tls_pair(session.answers)
    assert raised.value.path == "tls.key_file"
    session.answers.tls.certificate_file = None
    session.answers.tls.key_file = str(tmp_path / "key.pem")
    assert unpaired_tls_file(session.answers) == "tls.certificate_file"
    session.answers.tls.certificate_file = str(tmp_path / "cert.pem")
    assert session.missing("domain_tls") == []
    require_tls_pair(session.answers)


def test_each_step_is_declared_once_with_its_title_and_checks() -> None:
    assert [s.id for s in STEP_SPECS] == list(STEPS)
    assert STEPS[0] == "welcome" and STEPS[-1] == "deploy"
    assert STEP_TITLES["domain_tls"] == "Domain and TLS"
    # A failed check sends the user back to the step that runs its category.
    assert step_for_check("db.connect") == "database"
    assert step_for_check("egress.auth.carto.com") == "network"
    assert step_for_check("k8s.version") == "requirements"
    assert all(STEP_CATEGORIES[s.id] == s.categories for s in STEP_SPECS if s.categories)


def test_what_a_step_lacks_comes_from_its_declaration(tmp_path: Path) -> None:
    session = _session(tmp_path)
    session.answers.database.bundled = False
    session.answers.database.host = None
    assert session.missing("database") == [
        "database.host", "database.admin_password", "database.password"]
    assert STEP_SPECS[STEPS.index("database")].missing(session.answers) == session.missing(
        "database")
    session.answers.database.bundled = True
    assert session.missing("database") == []
    assert session.missing("review") == []  # a step that asks nothing lacks nothing
