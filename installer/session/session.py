"""What the wizard knows between steps, and the core calls both front ends make.

The Textual app and the plain prompts each hold one `Session`: the answers being filled
in, the open target, the check results, the accepted risks and the saved session. Every call
into the core (checks, render, deploy) goes through here, so both front ends behave the same.
No UI library is imported here.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from installer.answers import (
    Answers,
    answers_to_dict,
    dump_answers,
    parse_answers,
    validate,
)
from installer.errors import AnswersError, InstallerError
from installer.redact import Redactor
from installer.safetext import visible
from installer.session.steps import STEP_CATEGORIES, STEP_SPEC, STEPS
from installer.session.work import Cancelled, run_cancellable
from installer.userfiles import ANSWERS_LIMIT, read_user_file

if TYPE_CHECKING:  # the checks and the target are loaded when first used
    from _typeshed import DataclassInstance

    from installer.checks.base import CheckResult, Resolver
    from installer.checks.engine import Event
    from installer.deploy import DeployResult
    from installer.deploy.events import EventSink
    from installer.render import RenderPlan
    from installer.render.actions import Action
    from installer.target import Target

log = logging.getLogger("installer.wizard")

SESSION_NAME = "session.yaml"  # in the state directory (CONTRACT.md), never the checkout
ANSWERS_NAME = "carto-answers.yaml"
# The installer's own folder (the checkout, or site-packages): nothing the user owns goes here.
INSTALLER_HOME = Path(__file__).resolve().parents[2]
BLOCKING = ("fail", "error")  # check statuses that stop a deployment (Status is a StrEnum)


def bundled_warning(platform: str) -> str:
    """What choosing the vendor's bundled PostgreSQL means, for the platform chosen."""
    where = ("in a PersistentVolume of the cluster, with no backups unless you make them"
             if platform == "kubernetes" else
             "in a Docker volume on this machine, without backups")
    return ("The bundled PostgreSQL is for debugging and evaluation only: CARTO states it is "
            f"not supported in production and will be removed. Your data lives {where}.")


def check_advanced(answers: Answers) -> None:
    """The Advanced settings judged together, as the answers loader and render judge them:
    own buckets (with the provider's secrets), registry logins, the Kubernetes exposure, and
    the files they name. Raises AnswersError naming the key; both front ends call this."""
    from installer.answers import check_advanced_answers
    from installer.answers.sections import STORAGE
    from installer.render.storage import check_advanced_files

    check_advanced_answers(answers)
    STORAGE.check(answers)
    check_advanced_files(answers)


def expose_as_asked(answers: Answers) -> None:
    """On Kubernetes, the router's service type follows the Advanced settings: a NodePort
    given makes it NodePort, TLS ending at your own Ingress/Gateway makes it ClusterIP (else
    it stays as set). Both front ends call this once those settings are asked."""
    if answers.platform != "kubernetes":
        return
    k8s = answers.kubernetes
    if k8s.node_port is not None:
        k8s.service_type = "NodePort"
    elif k8s.external_tls:
        k8s.service_type = "ClusterIP"


def load_answers_arg(path: str | None, redactor: Redactor,
                     secrets: tuple[str, ...] | None = None) -> Answers | None:
    """The answers file named with --answers, or None. Its warnings go to standard error.

    `secrets` says which secrets the caller uses (answer path prefixes, e.g. ("database.",));
    one named by an unset variable is an error only there. None: all of them."""
    if not path:
        return None
    from installer.answers import load_answers, require_secrets

    answers = load_answers(path, redactor=redactor)
    for warning in answers.warnings:
        sys.stderr.write(visible(f"warning: {warning}") + "\n")
    require_secrets(answers, secrets)
    return answers


@dataclass(frozen=True)
class Confirmation:
    """What the user must agree to before a deploy writes, beyond pressing Deploy: files that
    changed on the target since the Review step showed them, and the planned actions that
    agreeing to deploy does not cover (in the order the deploy takes them)."""

    changed_since_review: bool
    actions: tuple[Action, ...]

    @property
    def needed(self) -> bool:
        return self.changed_since_review or bool(self.actions)


@dataclass
class SavedSession:
    path: Path
    step: str
    answers: Answers
    accepted_risks: list[str]


def state_directory(environ: Mapping[str, str] | None = None) -> Path:
    """Where the wizard keeps its session: $XDG_STATE_HOME/carto-installer, by default
    ~/.local/state/carto-installer (the XDG base directory rules; CONTRACT.md)."""
    import os

    env = os.environ if environ is None else environ
    base = env.get("XDG_STATE_HOME") or ""
    root = Path(base) if os.path.isabs(base) else Path(os.path.expanduser("~")) / ".local/state"
    return root / "carto-installer"


def default_answers_folder(workdir: Path, state_dir: Path) -> Path:
    """Where the wizard saves the answers when the user named no file: the working directory,
    unless that is the installer's own folder (a checkout must stay clean: `git status`
    shows nothing after a run), else the state directory."""
    try:
        workdir.resolve().relative_to(INSTALLER_HOME)
    except ValueError:
        return workdir
    return state_dir


def step_for_check(check_id: str) -> str | None:
    category = _category(check_id)
    return next((step for step, cats in STEP_CATEGORIES.items() if category in cats), None)


class Session:
    def __init__(
        self,
        *,
        redactor: Redactor,
        answers: Answers | None = None,
        workdir: Path | None = None,
        resolver: Resolver | None = None,
        accept_host_key: str | None = None,
        state_dir: Path | None = None,
        answers_path: Path | None = None,
    ) -> None:
        self.redactor = redactor
        self.answers = answers or Answers()
        self.prefilled_from: Path | None = answers.source if answers else None
        self.workdir = (workdir or Path.cwd()).resolve()
        self.state_dir = state_dir or state_directory()
        self.session_path = self.state_dir / SESSION_NAME
        # Where the answers are saved: the file the user named (--save-answers), else beside
        # the file that pre-filled them (--answers), else next to where the installer was
        # started (see default_answers_folder).
        if answers_path is None:
            folder = (self.prefilled_from.resolve().parent if self.prefilled_from is not None
                      else default_answers_folder(self.workdir, self.state_dir))
            answers_path = folder / ANSWERS_NAME
        self.answers_path = answers_path
        # Set when the answers were saved under another name to keep another platform's file.
        self.kept_other_platform: Path | None = None
        self.resolver = resolver
        self.accept_host_key = accept_host_key
        self.results: dict[str, CheckResult] = {}
        self.accepted_risks: list[str] = []
        # step -> fingerprint of the answers its checks last ran with (see screens.base)
        self.checked: dict[str, str] = {}
        # What the Review step showed; the deploy writes only what was reviewed.
        self.reviewed_plan: RenderPlan | None = None
        self.reviewed_diff: str | None = None
        self.reviewed_fingerprint: str | None = None
        self.target: Target | None = None
        self._target_key: tuple[Any, ...] | None = None
        self._lock = threading.Lock()
        for secret in self.answers.secrets():
            redactor.add(secret.value)

    # --- secrets -------------------------------------------------------------------------

    def remember_secret(self, value: object) -> None:
        """Every secret typed in the wizard is masked in the log from then on."""
        from installer.answers import Secret

        if isinstance(value, Secret):
            self.redactor.add(value.value)

    # --- session ---------------------------------------------------------------------------

    def saved_session(self) -> SavedSession | None:
        """The session a previous run left, or None. A broken file raises AnswersError."""
        if not self.session_path.is_file():
            return None
        from installer.safeyaml import YamlError, load_yaml

        try:
            data = load_yaml(read_user_file(self.session_path, limit=ANSWERS_LIMIT)
                             .decode("utf-8"))
        except (OSError, UnicodeDecodeError, YamlError) as exc:
            raise AnswersError("", f"the saved session {self.session_path} cannot be read "
                                   f"({type(exc).__name__})",
                               f"delete {self.session_path} to start afresh") from None
        if not isinstance(data, dict) or data.get("step") not in STEPS:
            raise AnswersError("", f"the saved session {self.session_path} is not one this "
                                   "version wrote", f"delete {self.session_path}")
        answers = parse_answers(data.get("answers") or {}, base=self.workdir,
                                redactor=self.redactor)
        risks = [str(r) for r in data.get("accepted_risks") or []]
        return SavedSession(self.session_path, str(data["step"]), answers, risks)

    def resume(self, session: SavedSession) -> str:
        """Take the saved answers; the step to go on at (never past Review, and back at the
        first step that lacks something, such as a secret that was not saved)."""
        self.answers = session.answers
        self.accepted_risks = list(session.accepted_risks)
        self.results.clear()
        self.checked.clear()
        step = session.step if STEPS.index(session.step) <= STEPS.index("review") else "review"
        for earlier in STEPS[: STEPS.index(step)]:
            if self.missing(earlier):
                return earlier
        return step

    def missing(self, step: str) -> list[str]:
        """Answers a step needs that are not there yet (dotted paths), from its sections."""
        spec = STEP_SPEC.get(step)
        return spec.missing(self.answers) if spec is not None else []

    def save_session(self, step: str) -> None:
        """Record progress (no secrets) so a later run can resume here. Atomic."""
        import yaml

        data = {"version": 1, "step": step, "accepted_risks": list(self.accepted_risks),
                "answers": answers_to_dict(self.answers)}
        text = ("# carto-installer wizard session: where you stopped. No secrets are kept.\n"
                + yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
        from installer.target import atomic_write

        self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        atomic_write(str(self.session_path), text.encode("utf-8"), 0o600)

    def clear_session(self) -> None:
        self.session_path.unlink(missing_ok=True)

    def save_answers(self) -> Path:
        """The answers file for re-runs and automation (secrets only as references).

        A file there that holds another platform's answers is never replaced: these answers
        then go beside it, named after their platform (`carto-answers.kubernetes.yaml`), and
        `kept_other_platform` names the file that was kept."""
        from installer.target import atomic_write

        path = self.answers_path
        other = _platform_in(path)
        if other is not None and other != self.answers.platform:
            self.kept_other_platform = path
            path = path.with_name(f"{path.stem}.{self.answers.platform}{path.suffix or '.yaml'}")
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        atomic_write(str(path), dump_answers(self.answers).encode("utf-8"), 0o600)
        self.answers_path = path
        # Files the answers lead to (Kubernetes' customizations.yaml) go next to them.
        self.answers.source = path
        log.info("answers saved to %s", path)
        return path

    def unsaved_secrets(self) -> list[str]:
        """Answer paths of secrets typed in the wizard, which the answers file leaves out."""
        found: list[str] = []

        def walk(obj: DataclassInstance, prefix: str) -> None:
            from installer.answers import Secret

            for f in dataclasses.fields(obj):
                if f.metadata.get("internal"):
                    continue
                value = getattr(obj, f.name)
                if isinstance(value, Secret) and value.source == "inline":
                    found.append(prefix + f.name)
                elif dataclasses.is_dataclass(value) and not isinstance(value, type):
                    walk(value, f"{prefix}{f.name}.")

        walk(self.answers, "")
        return found

    # --- target ---------------------------------------------------------------------------

    def _key(self) -> tuple[Any, ...]:
        t = self.answers.target
        if t is None:
            return ("local",)
        jump = (t.jump.host, t.jump.port, t.jump.user) if t.jump else None
        return (t.host, t.port, t.user, t.identity_file, t.known_hosts, t.sudo, jump,
                t.password.value if t.password else None)

    def connect(self, confirm_host_key: Callable[[str, str], bool] | None = None,
                passphrase_prompt: Callable[[str], str] | None = None) -> Target:
        """The open target the answers name, reusing the connection when nothing changed.
        `confirm_host_key` is asked about a host key seen for the first time,
        `passphrase_prompt` for an identity file's passphrase (when ssh-agent lacks it)."""
        from installer.connect import open_target

        key = self._key()
        with self._lock:
            if self.target is not None and self._target_key == key:
                return self.target
            old, self.target = self.target, None
        if old is not None:
            old.close()
        target = open_target(self.answers, accept_host_key=self.accept_host_key,
                             confirm_host_key=confirm_host_key, redactor=self.redactor,
                             passphrase_prompt=passphrase_prompt)
        with self._lock:
            self.target, self._target_key = target, key
            self.results.clear()  # results were about another machine
            self.checked.clear()
        return target

    def close(self) -> None:
        with self._lock:
            target, self.target = self.target, None
        if target is not None:
            target.close()

    # --- checks ---------------------------------------------------------------------------

    def run_checks(self, categories: Sequence[str], *, cancel: threading.Event,
                   on_event: Callable[[Event], None] | None = None,
                   confirm_host_key: Callable[[str, str], bool] | None = None,
                   passphrase_prompt: Callable[[str], str] | None = None,
                   ) -> list[CheckResult]:
        """Run the checks of `categories` (and what they need) on the target. Raises Cancelled."""
        from installer.preflight import run_preflight

        def work() -> list[CheckResult]:
            target = self.connect(confirm_host_key, passphrase_prompt)
            report = run_preflight(target, self.answers, self.answers.platform,
                                   only=list(categories), redactor=self.redactor, cancel=cancel,
                                   on_event=on_event, resolver=self.resolver)
            return list(report.results)

        try:
            results: list[CheckResult] = run_cancellable(work, cancel)
        except Cancelled:
            raise
        if cancel.is_set():
            raise Cancelled()
        with self._lock:
            # A whole category re-run replaces its old results (some may no longer apply).
            for old in [i for i in self.results if _category(i) in categories]:
                del self.results[old]
            for result in results:
                self.results[result.id] = result
        return results

    def step_results(self, step: str) -> list[CheckResult]:
        categories = STEP_CATEGORIES.get(step, ())
        return [r for r in self.results.values() if _category(r.id) in categories]

    def is_accepted(self, check_id: str) -> bool:
        return check_id in self.accepted_risks or _category(check_id) in self.accepted_risks

    def blocking(self, step: str) -> list[CheckResult]:
        """Failed checks of a step that the user has not accepted as a risk."""
        return [r for r in self.step_results(step)
                if r.status in BLOCKING and not self.is_accepted(r.id)]

    def accept_risk(self, check_id: str) -> None:
        if check_id not in self.accepted_risks:
            self.accepted_risks.append(check_id)
            log.info("risk accepted by the user: %s", check_id)

    def withdraw_risk(self, check_id: str) -> None:
        if check_id in self.accepted_risks:
            self.accepted_risks.remove(check_id)

    # --- render and deploy ------------------------------------------------------------------

    def validate(self) -> None:
        """The answers judged as `render` and `deploy` judge them (AnswersError naming the
        key; `step_for_answer` says which step sets it)."""
        validate(self.answers, self.answers.platform)

    def plan(self, confirm_host_key: Callable[[str, str], bool] | None = None,
             passphrase_prompt: Callable[[str], str] | None = None) -> RenderPlan:
        """The RenderPlan: what would be written. Writes nothing."""
        from installer.render import plan_render

        self.validate()  # before connecting: bad answers need no machine to be refused
        return plan_render(self.answers, self.connect(confirm_host_key, passphrase_prompt),
                           redactor=self.redactor)

    def confirmation_needed(self, plan: RenderPlan) -> Confirmation:
        """What to ask before the deploy applies `plan` (nothing when `needed` is False)."""
        reviewed = plan.empty or plan_fingerprint(plan) == self.reviewed_fingerprint
        return Confirmation(changed_since_review=not reviewed,
                            actions=tuple(a for a in plan.actions if a.needs_consent))

    def deploy(self, *, cancel: threading.Event, on_event: EventSink,
               confirm: Callable[[RenderPlan], bool] | None) -> DeployResult:
        """Run the deployment (preflight, render, launch, verify)."""
        from installer.deploy import deploy

        self.validate()
        target = self.connect()
        return deploy(self.answers, target, redactor=self.redactor,
                      skip=list(self.accepted_risks), cancel=cancel, on_event=on_event,
                      confirm=confirm)


def _category(check_id: str) -> str:
    # The check modules load when checks first run, not with the wizard's first screen.
    from installer.checks.base import category_of

    return category_of(check_id)


def _platform_in(path: Path) -> str | None:
    """The platform an existing answers file names, or None (absent or unreadable)."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    if isinstance(data, dict):
        return str(data.get("platform") or "compose")
    return None


def plan_fingerprint(plan: RenderPlan) -> str:
    """What a render plan starts from: each file it touches with its current content and the
    mode it gets. Equal fingerprints mean nothing on the target changed since the review
    (freshly generated material, such as a self-signed certificate, may still differ)."""
    import hashlib

    digest = hashlib.sha256()
    for change in sorted(plan.changes, key=lambda c: c.path):
        before = b"-" if change.before is None else hashlib.sha256(change.before).digest()
        digest.update(f"{change.path}\0{change.mode:o}\0{change.secret}\0".encode() + before)
    digest.update(str(len(plan.backups)).encode())
    digest.update("\0".join(getattr(plan, "removals", [])).encode())
    return digest.hexdigest()


def describe_error(exc: BaseException) -> tuple[str, str]:
    """(message, remediation) for an error to show the user."""
    from installer.safetext import visible

    if isinstance(exc, InstallerError):
        return visible(exc.message), visible(exc.remediation)
    from installer.target import describe_exception

    return (visible(f"unexpected error: {describe_exception(exc)}"),
            "see carto-installer.log for details; this is a bug in carto-installer")
