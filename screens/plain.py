"""The wizard as plain questionary prompts (`--plain`, or TERM=dumb).

Same steps, same sections of answers (installer/answers/sections.py: what is asked, shown and
required), same validators and the same core calls (installer/session/) as the Textual app.
Every prompt uses `unsafe_ask()`, so Ctrl-C raises KeyboardInterrupt, which is caught once, in
`run_plain`.
"""

from __future__ import annotations

import argparse
import os
import queue
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TextIO, TypeVar, cast

import questionary

from installer.answers import (
    CLOUDS,
    FEATURES,
    STORAGE_PROVIDERS,
    WAREHOUSES,
    ProxySettings,
    StorageSettings,
    field_spec,
)
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
from installer.checks.base import CheckResult, Status
from installer.checks.engine import CheckFinished
from installer.checks.engine import Event as CheckEvent
from installer.deploy.events import show
from installer.errors import AnswersError, InstallerError
from installer.safetext import visible
from installer.session import (
    STEP_CATEGORIES,
    STEP_TITLES,
    STEPS,
    Background,
    Handoff,
    Session,
    bundled_warning,
    check_advanced,
    describe_error,
    expose_as_asked,
    plan_fingerprint,
)
from screens.fields import CHOICE_TITLES, PROVIDER_TITLES
from screens.usable import UNKNOWN, problem_with

if TYPE_CHECKING:
    from installer.answers.model import AnswerValue
    from installer.redact import Redactor
    from installer.render import RenderPlan

EXIT_OK, EXIT_FAILED, EXIT_INTERRUPTED = 0, 3, 130
Option = TypeVar("Option")  # what a choice stands for
Asked = ParamSpec("Asked")  # a question's arguments
Reply = TypeVar("Reply")  # a question's answer
CERTIFICATE_HELP = "PEM, the domain's certificate first, then its intermediates"
MARKS = {Status.PASS: ("✔", "32"), Status.WARN: ("!", "33"), Status.FAIL: ("✘", "31"),
         Status.SKIP: ("-", "2"), Status.ERROR: ("?", "35")}


def terminal_width() -> int:
    import shutil

    return max(40, shutil.get_terminal_size((80, 24)).columns)


def wrap_lines(text: str, width: int) -> str:
    """Each line wrapped to `width`; continuation lines keep the line's indent (plus two
    spaces for list items), so messages stay readable on an 80-column terminal."""
    import textwrap

    out: list[str] = []
    for line in text.split("\n"):
        if len(line) <= width:
            out.append(line)
            continue
        indent = line[: len(line) - len(line.lstrip())]
        extra = "  " if line.lstrip().startswith(("✔", "✘", "!", "-", "?", "•", "fix")) else ""
        out.extend(textwrap.wrap(line, width=width, subsequent_indent=indent + extra + "  ",
                                 break_long_words=False, break_on_hyphens=False) or [""])
    return "\n".join(out)


class StepFailed(Exception):
    """A step could not be completed and the user chose to stop."""


class PlainWizard:
    def __init__(self, state: Session, out: TextIO | None = None,
                 color: bool | None = None) -> None:
        self.state = state
        self.out = out or sys.stdout
        if color is None:
            color = (self.out.isatty() and not os.environ.get("NO_COLOR")
                     and os.environ.get("TERM") != "dumb")
        self.color = color
        self.changes_started = False  # the deploy began writing: "no changes" no longer holds
        self.resumed = False

    # --- output --------------------------------------------------------------------------

    def say(self, text: str = "", code: str = "", *, wrap: bool = True) -> None:
        """One message; long lines wrapped at the terminal's width on word boundaries
        (continuation lines indented like the first), never cut inside a word. Control
        characters are made visible: the text may quote a remote host or a server."""
        text = visible(self.state.redactor(text))
        if wrap:
            text = wrap_lines(text, terminal_width())
        if code and self.color:
            text = f"\x1b[{code}m{text}\x1b[0m"
        self.out.write(text + "\n")
        self.out.flush()

    def heading(self, step: str) -> None:
        number = STEPS.index(step) + 1
        self.say()
        self.say(f"== Step {number} of {len(STEPS)}: {STEP_TITLES[step]} ==", "1")

    def show_result(self, r: CheckResult, *, detail: bool = True, fix: bool = True) -> None:
        mark, code = MARKS[r.status]
        accepted = " [risk accepted]" if (r.status in (Status.FAIL, Status.ERROR)
                                          and self.state.is_accepted(r.id)) else ""
        self.say(f"  {mark} {r.id}: {r.message}{accepted}", code)
        if detail and r.status in (Status.WARN, Status.FAIL, Status.ERROR):
            if r.observed or r.required:
                self.say(f"      observed {r.observed or '?'}; required {r.required}")
            if r.remediation and fix:
                self.say(f"      fix: {r.remediation}")

    def show_fixes(self, results: list[CheckResult]) -> None:
        """Each fix once, under the checks it is for (six unreachable hosts share one)."""
        from installer.report import shared_fixes

        shared = shared_fixes(results)
        grouped = {i for ids in shared.values() for i in ids}
        fixes = [(r.remediation, [r.id]) for r in results if r.id not in grouped
                 and r.remediation and r.status in (Status.WARN, Status.FAIL, Status.ERROR)]
        for remediation, ids in fixes + list(shared.items()):
            self.say(f"  fix for {', '.join(ids)}:", "1")
            self.say(f"      {remediation}")

    # --- prompts -------------------------------------------------------------------------

    def ask_field(self, path: str, *, required: bool = False,
                  instruction: str | None = None) -> AnswerValue:
        """Ask for one answer with its declared label, help, default and validator; a file
        that is not there (or does not parse) is refused with the reason."""
        spec = field_spec(path)
        current = spec.get(self.state.answers)
        keep_secret = spec.secret and current is not None

        def validate(text: str) -> bool | str:
            if keep_secret and text == "":
                return True
            try:
                value = spec.parse(text)
            except ValueError as exc:
                return visible(str(exc))
            if required and value is None:
                return f"{spec.label} is required"
            problem = None if spec.secret else problem_with(path, value, remote=True)
            if problem not in (None, UNKNOWN):
                return str(problem)
            return True

        message = f"{spec.label}:"
        instruction = instruction or spec.help or None
        if spec.secret:
            if keep_secret:
                message = f"{spec.label} (Enter keeps the one given):"
            text = questionary.password(message, validate=validate).unsafe_ask()
            if keep_secret and text == "":
                return current
        elif spec.path_kind == "local":
            if instruction:
                self.say(f"  {instruction} (Tab completes)", "2")
            text = questionary.path(message, default=spec.format(current),
                                    validate=validate).unsafe_ask()
        else:
            text = questionary.text(message, default=spec.format(current), validate=validate,
                                    instruction=instruction).unsafe_ask()
        value = spec.parse(text)
        self.state.remember_secret(value)
        spec.set(self.state.answers, value)
        return value

    def ask_section(self, section: Section, *, clear_hidden: bool = False) -> None:
        """Ask each answer of a section that the answers call for, required as declared;
        a yes/no answer is a confirmation. `clear_hidden`: empty the answers not called for
        (choices that no longer need them)."""
        a = self.state.answers
        for ask in section.asks:
            spec = ask.spec
            if not ask.shown(a):
                if clear_hidden:
                    spec.set(a, None)
                continue
            if spec.kind == "bool":
                spec.set(a, self.confirm(f"{spec.help or spec.label}?",
                                         default=bool(spec.get(a))))
            else:
                self.ask_field(ask.path, required=section.is_required(ask.path, a))
        if section.none_of(a) is not None:  # the section's one-of rule (the proxy's URL)
            self.say(f"✘ {section.one_of_missing}; please answer again", "31")
            self.ask_section(section, clear_hidden=clear_hidden)

    def choose(self, message: str, choices: list[tuple[str, Option]],
               default: Option | None = None) -> Option:
        options = [questionary.Choice(visible(title), value=value) for title, value in choices]
        chosen = next((c for c in options if c.value == default), None)
        # questionary answers with the value of the Choice picked: one of `choices`' options.
        return cast(Option, questionary.select(message, choices=options,
                                               default=chosen).unsafe_ask())

    def confirm(self, message: str, default: bool = False) -> bool:
        return bool(questionary.confirm(visible(message), default=default).unsafe_ask())

    def confirm_host_key(self, host: str, fingerprint: str) -> bool:
        self.say(f"{host} is not in your known_hosts file yet. Its host key is {fingerprint}.")
        self.say("Accept it only if it matches what `ssh-keygen -lf "
                 "/etc/ssh/ssh_host_ed25519_key.pub` shows on that machine.")
        return self.confirm(f"Accept the host key {fingerprint}?", default=False)

    def ask_passphrase(self, question: str) -> str:
        return str(questionary.password(f"{question}:").unsafe_ask() or "")

    # --- checks --------------------------------------------------------------------------

    def run_checks(self, step: str, names: list[str] | None = None) -> list[CheckResult]:
        """Run a step's checks, printing each as it finishes. Ctrl-C stops them at once."""
        cancel = threading.Event()
        events: queue.Queue[CheckEvent] = queue.Queue()
        self.say("Checking…", "2")

        def printer(event: CheckEvent) -> None:
            events.put(event)

        # Questions the checks' thread needs answered (host key, key passphrase): asked here,
        # on the main thread, which owns the terminal. Each is queued as the call that asks it
        # and hands the answer back.
        questions: queue.Queue[Callable[[], None]] = queue.Queue()

        def asked_here(function: Callable[Asked, Reply]) -> Callable[Asked, Reply]:
            def ask(*args: Asked.args, **kwargs: Asked.kwargs) -> Reply:
                reply: Handoff[Reply] = Handoff()
                questions.put(lambda: reply.give(function(*args, **kwargs)))
                return reply.wait()

            return ask

        job = Background(lambda: self.state.run_checks(
            names or list(STEP_CATEGORIES[step]), cancel=cancel, on_event=printer,
            confirm_host_key=asked_here(self.confirm_host_key),
            passphrase_prompt=asked_here(self.ask_passphrase)), "plain-checks")
        try:
            while not (job.done.is_set() and events.empty()):
                try:
                    question = questions.get_nowait()
                    question()
                except queue.Empty:
                    pass
                try:
                    event = events.get(timeout=0.05)
                except queue.Empty:
                    continue
                if isinstance(event, CheckFinished):
                    self.show_result(event.result, fix=False)
        except KeyboardInterrupt:
            cancel.set()
            raise
        results: list[CheckResult] = job.wait()
        if not results:
            self.say("  (no checks of this kind in this version)", "2")
        self.show_fixes(results)
        return results

    def settle(self, step: str, ask_again: Callable[[], None] | None = None) -> None:
        """Run the step's checks until nothing blocks: fix and re-run, change the answers,
        or accept the named risks."""
        rerun = True
        while True:
            if rerun:
                self.run_checks(step)
            rerun = True
            blocking = self.state.blocking(step)
            if not blocking:
                return
            self.say(f"{len(blocking)} failed check(s) block the deployment: "
                     + ", ".join(r.id for r in blocking), "31")
            # A fixed order (accept is always second) keeps the menu predictable by keys.
            choices = [("Run the checks again (after fixing)", "rerun"),
                       ("Accept the risk and go on", "accept")]
            if ask_again is not None:
                choices.append(("Change my answers", "change"))
            choices.append(("Quit", "quit"))
            action = self.choose("What now?", choices, default="rerun")
            if action == "quit":
                raise KeyboardInterrupt
            if action == "change" and ask_again is not None:
                ask_again()
            elif action == "accept":
                accepted = questionary.checkbox(
                    "Accept the risk of these failed checks (Space ticks, a ticks all):",
                    choices=[questionary.Choice(visible(f"{r.id}: {r.message}"), value=r.id)
                             for r in blocking],
                ).unsafe_ask()
                if accepted and not self.confirm(
                        f"Deploy despite {len(accepted)} failed check(s): "
                        + ", ".join(accepted) + "?", default=False):
                    rerun = False  # back to the menu: nothing changed
                    continue
                for check_id in accepted or []:
                    self.state.accept_risk(check_id)
                if not self.state.blocking(step):
                    self.say("Accepted risks: " + ", ".join(self.state.accepted_risks), "33")
                    return

    # --- steps ---------------------------------------------------------------------------

    def welcome(self) -> str:
        self.say("CARTO Self-Hosted installer", "1")
        self.say("This installs CARTO on a single VM with Docker Compose, or on Kubernetes "
                 "with Helm: it checks every requirement, asks for each setting, shows the "
                 "files it will write, then deploys and verifies CARTO over HTTPS. Nothing "
                 "changes until you confirm the deployment.")
        self.say("Have ready: for a VM, CARTO's Compose release unpacked on it (from "
                 "https://github.com/CartoDB/carto-selfhosted); the package from CARTO; a "
                 "domain, its certificate and key (or a self-signed one is made); a PostgreSQL "
                 "admin user.")
        if self.state.prefilled_from is not None:
            self.say(f"Answers pre-filled from {self.state.prefilled_from}.")
        try:
            session = self.state.saved_session()
        except InstallerError as exc:
            self.say(f"(the saved session cannot be used: {exc})", "33")
            session = None
        if session is not None:
            over = (f" (its answers replace those of {self.state.prefilled_from})"
                    if self.state.prefilled_from is not None else "")
            if self.confirm(f"Resume the saved session (stopped at "
                            f"'{STEP_TITLES[session.step]}'){over}?", default=True):
                self.resumed = True
                return self.state.resume(session)
        return "platform"

    def platform(self) -> None:
        self.heading("platform")
        self.state.answers.platform = self.choose(
            "Where will CARTO run?",
            [("Single VM with Docker Compose (4 CPUs, 16 GB, Ubuntu 20.04+, Docker)", "compose"),
             ("Kubernetes cluster with Helm (3 nodes, Helm 3.6+)", "kubernetes")],
            default=self.state.answers.platform)

    def target(self) -> None:
        self.heading("target")
        a = self.state.answers
        if a.platform == "kubernetes":
            self.ask_section(KUBERNETES)
            return
        where = self.choose("Which machine will run CARTO?",
                            [("This machine", "local"), ("Another machine, over SSH", "remote")],
                            default="remote" if a.target else "local")
        if where == "local":
            a.target = None
        else:
            while True:
                self.ask_section(SSH)
                assert a.target is not None
                if self.confirm("Go through a jump host (bastion)?",
                                default=a.target.jump is not None):
                    self.ask_section(JUMP)
                else:
                    a.target.jump = None
                try:
                    target = self.state.connect(self.confirm_host_key, self.ask_passphrase)
                except InstallerError as exc:
                    self.say(f"✘ {exc}", "31")
                    if not self.confirm("Change the connection settings and try again?",
                                        default=True):
                        raise KeyboardInterrupt from None
                    continue
                self.say(f"✔ connected to {target.name}", "32")
                break
        self.ask_deployment_directory()

    def ask_deployment_directory(self) -> None:
        """Ask for the deployment directory and look at it on the target now, not first at
        Review: it must hold the vendor's Compose release."""
        from installer.deployment_dir import inspect_deployment_directory

        while True:
            self.ask_section(DEPLOYMENT)
            a = self.state.answers
            target = self.state.connect(self.confirm_host_key, self.ask_passphrase)
            verdict = inspect_deployment_directory(target, a.compose.directory, a)
            if verdict.usable:
                self.say(f"✔ {verdict.message}", "32")
                return
            self.say(f"✘ {verdict.message}", "31")
            self.say(f"  fix: {verdict.remediation}")
            action = self.choose("What now?", [
                ("Give another deployment directory", "change"),
                ("Look again (after unpacking the release there)", "again"),
                ("Quit (your answers so far are saved)", "quit")], default="change")
            if action == "quit":
                raise KeyboardInterrupt
            if action == "again":
                verdict = inspect_deployment_directory(target, a.compose.directory, a)
                if verdict.usable:
                    self.say(f"✔ {verdict.message}", "32")
                    return

    def requirements(self) -> None:
        self.heading("requirements")
        self.settle("requirements")

    def domain_tls(self) -> None:
        self.heading("domain_tls")

        def ask() -> None:
            a = self.state.answers
            self.ask_section(DOMAIN)
            own = self.choose("TLS certificate:",
                              [("Generate a self-signed certificate (browsers will warn)", False),
                               ("Use my certificate and key files", True)],
                              default=TLS.shown(a))
            if own:
                self.say("  Leave the certificate empty to have a self-signed one generated "
                         "instead.", "2")
                if self.ask_field("tls.certificate_file", instruction=CERTIFICATE_HELP) is None:
                    a.tls.certificate_file = a.tls.key_file = None
                    self.say("  A self-signed certificate will be generated.")
                    return
                # The certificate is the gate (empty: none, so self-signed); then the rest of
                # the all-or-none section is required.
                self.ask_field("tls.key_file", required=TLS.is_required("tls.key_file", a))
            else:
                a.tls.certificate_file = a.tls.key_file = None

        ask()
        self.settle("domain_tls", ask)

    def database(self) -> None:
        self.heading("database")

        def ask() -> None:
            db = self.state.answers.database
            db.bundled = self.choose(
                "Which PostgreSQL?",
                [("External PostgreSQL 14+ (recommended)", False),
                 ("Bundled container (debugging only, not for production)", True)],
                default=db.bundled)
            if db.bundled:
                self.say("⚠ " + bundled_warning(self.state.answers.platform), "33")
                return
            self.ask_section(DATABASE)
            db.ssl.enabled = self.confirm("Connect with TLS?", default=db.ssl.enabled)
            if db.ssl.enabled:
                self.ask_section(DATABASE_TLS)

        ask()
        self.settle("database", ask)

    def license(self) -> None:
        self.heading("license")

        def ask() -> None:
            self.ask_section(PACKAGE)  # the images archive on Compose only

        ask()
        self.settle("license", ask)

    def network(self) -> None:
        self.heading("network")

        def ask() -> None:
            n = self.state.answers.network
            n.cloud = self.choose("Cloud for storage buckets:",
                                  [(CHOICE_TITLES[c], c) for c in CLOUDS], default=n.cloud)
            n.warehouses = list(questionary.checkbox(
                "Data warehouses (Space ticks):",
                choices=[questionary.Choice(CHOICE_TITLES[w], value=w,
                                            checked=w in n.warehouses) for w in WAREHOUSES],
            ).unsafe_ask() or [])
            n.features = list(questionary.checkbox(
                "Features (Space ticks):",
                choices=[questionary.Choice(CHOICE_TITLES[f], value=f, checked=f in n.features)
                         for f in FEATURES],
            ).unsafe_ask() or [])
            self.ask_section(NETWORK_HOSTS, clear_hidden=True)
            if self.confirm("Does outbound traffic go through an HTTP proxy?",
                            default=n.proxy is not None):
                n.proxy = n.proxy or ProxySettings()
                self.ask_section(PROXY)
            else:
                n.proxy = None
            self.advanced()

        ask()
        self.settle("network", ask)

    def advanced(self) -> None:
        """The Advanced settings behind one gate (screens/advanced.py is the TUI's)."""
        a = self.state.answers
        has_any = (a.storage is not None or a.kubernetes.external_tls
                   or any(ADVANCED.given(ask.path, a) for ask in ADVANCED.shown_asks(a)))
        if not self.confirm("Advanced settings? (own buckets, private CA, registry login, "
                            "Maps key)", default=has_any):
            return
        while True:
            if self.confirm("Use your own buckets instead of the ones CARTO provides?",
                            default=a.storage is not None):
                provider = self.choose(
                    "Storage provider:", [(PROVIDER_TITLES[p], p) for p in STORAGE_PROVIDERS],
                    default=a.storage.provider if a.storage else "s3")
                if a.storage is None or a.storage.provider != provider:
                    a.storage = StorageSettings(provider=provider)
                self.ask_section(STORAGE)  # the provider's own answers only
                a.storage.thumbnails_public = self.confirm(
                    "Are thumbnails public (the bucket allows public objects)?",
                    default=a.storage.thumbnails_public)
            else:
                a.storage = None
            self.ask_section(ADVANCED)  # those of the platform chosen
            if a.platform == "kubernetes":
                a.kubernetes.external_tls = self.confirm(
                    "Does TLS end at your own Ingress/Gateway (router service ClusterIP)?",
                    default=a.kubernetes.external_tls)
            expose_as_asked(a)
            try:
                check_advanced(a)
                return
            except AnswersError as exc:
                self.say(f"✘ {exc.message} ({exc.path}); please answer again", "31")

    def review(self) -> bool:
        """Show what will be written; True when the user wants to deploy."""
        self.heading("review")
        saved = self.state.save_answers()
        plan = self.state.plan(self.confirm_host_key, self.ask_passphrase)
        self.state.reviewed_plan = plan
        self.state.reviewed_diff = plan.diff(self.state.redactor)
        self.state.reviewed_fingerprint = plan_fingerprint(plan)
        if plan.empty:
            self.say("The configuration files are already as they should be.")
        else:
            self.say(f"{len(plan.changes)} file(s) will be written:")
            for change in plan.changes:
                self.say(f"  write {change.describe()}{'  secret' if change.secret else ''}")
            for backup in plan.backups:
                self.say(f"  backup  {backup}")
            for note in plan.notes:
                self.say(f"  note: {note}")
            self.say()
            for line in self.state.reviewed_diff.splitlines():
                code = ("32" if line.startswith("+") and not line.startswith("+++") else
                        "31" if line.startswith("-") and not line.startswith("---") else
                        "36" if line.startswith("@@") else "")
                self.say(line, code, wrap=False)  # a diff line stays whole
        self.say(f"Answers saved to {saved}.")
        if self.state.kept_other_platform is not None:
            self.say(f"({self.state.kept_other_platform} holds answers for another platform "
                     "and was kept as it is.)", "2")
        for path in getattr(plan, "removals", []):
            self.say(f"  remove {path} (no longer used)")
        unsaved = self.state.unsaved_secrets()
        if unsaved:
            self.say("Secrets typed here are not saved; for re-runs give "
                     + ", ".join(p + "_env" for p in unsaved) + ".", "2")
        if self.state.accepted_risks:
            self.say("Accepted risks: " + ", ".join(self.state.accepted_risks), "33")
        if self.resumed:
            self.say("You resumed a saved session: read the plan above before deploying.", "1")
        # Changing a machine is never the default: Enter alone does not deploy.
        return self.confirm("Deploy now? This writes the files above and starts CARTO.",
                            default=False)

    def deploy(self) -> int:
        self.heading("deploy")
        cancel = threading.Event()
        inbox: queue.Queue[tuple[str, Any]] = queue.Queue()

        def confirm(plan: RenderPlan) -> bool:
            needed = self.state.confirmation_needed(plan)
            if not needed.needed:
                self.changes_started = True
                return True
            reply: Handoff[bool] = Handoff()
            inbox.put(("confirm", (plan, reply, needed)))
            answer = reply.wait()
            self.changes_started = self.changes_started or answer
            return answer

        job = Background(lambda: self.state.deploy(
            cancel=cancel, on_event=lambda e: inbox.put(("event", e)), confirm=confirm),
            "plain-deploy")
        try:
            self._pump(inbox, job.done)
        except KeyboardInterrupt:
            # Stop at a safe point, so nothing is left half-written, then leave.
            cancel.set()
            self.say("Stopping the deployment at a safe point…", "33")
            job.join()
            raise
        if job.error is not None:
            message, fix = describe_error(job.error)
            self.say(f"✘ Deployment failed: {message}", "31")
            if fix:
                self.say(f"  fix: {fix}")
            return EXIT_FAILED
        result = job.wait()
        if not result.ok:
            self.say(f"✘ Deployment failed: {result.message}", "31")
            if result.remediation:
                self.say(f"  fix: {result.remediation}")
            return EXIT_FAILED
        self.say(f"✔ CARTO is running at {result.url}", "32")
        self.say(f"  Re-run or upgrade: carto-installer deploy --answers {self.state.answers_path}")
        self.say(f"  Health: carto-installer status --answers {self.state.answers_path}")
        self.state.clear_session()
        return EXIT_OK

    def _pump(self, inbox: queue.Queue[tuple[str, Any]], done: threading.Event) -> None:
        from screens.plain_deploy import PlainDeployView

        view = PlainDeployView(self)
        while not (done.is_set() and inbox.empty()):
            try:
                kind, item = inbox.get(timeout=0.05)
            except queue.Empty:
                continue
            if kind == "confirm":
                plan, reply, needed = item
                if needed.changed_since_review:
                    self.say("The files changed since the review. What would now be written:")
                    self.say(plan.diff(self.state.redactor), wrap=False)
                for action in needed.actions:
                    self.say(f"  before deploying: {action.text}", "1")
                reply.give(self.confirm("Go ahead?", default=False))
                continue
            show(item, view)

    # --- the whole flow ------------------------------------------------------------------

    def run(self) -> int:
        if self.state.prefilled_from is not None:  # maybe an installation to manage
            from screens.operate_plain import offer_operations

            code = offer_operations(self)
            if code is not None:
                return code
        start = self.welcome()
        steps = {
            "platform": self.platform, "target": self.target,
            "requirements": self.requirements, "domain_tls": self.domain_tls,
            "database": self.database, "license": self.license, "network": self.network,
        }
        order = [step for step in STEPS if step in steps]  # the order is the core's
        begin = order.index(start) if start in order else len(order)
        for step in order[begin:]:
            steps[step]()
            following = STEPS[STEPS.index(step) + 1]
            self.state.save_session(following)
        if not self.review():
            self.say(f"No changes were made. Your answers are in {self.state.answers_path}; "
                     f"deploy later with: carto-installer deploy --answers "
                     f"{self.state.answers_path}")
            return EXIT_OK
        return self.deploy()


def run_plain(args: argparse.Namespace, redactor: Redactor) -> int:
    """`carto-installer --plain`: the wizard as questions and answers."""
    from installer.session import load_answers_arg

    answers = load_answers_arg(getattr(args, "answers", None), redactor, secrets=())
    save_to = getattr(args, "save_answers", None)
    state = Session(redactor=redactor, answers=answers,
                        accept_host_key=getattr(args, "accept_host_key", None),
                        answers_path=Path(save_to).resolve() if save_to else None)
    wizard = PlainWizard(state)
    try:
        return wizard.run()
    except KeyboardInterrupt:
        if wizard.changes_started:
            wizard.say("\nStopped. Every file written so far is complete; run carto-installer "
                       "again to finish.")
        else:
            saved = (f" Your progress is saved in {state.session_path}: run the installer "
                     "again (./install.sh --plain) to resume." if state.session_path.exists()
                     else "")
            wizard.say("\nNo changes were made." + saved)
        return EXIT_INTERRUPTED
    finally:
        state.close()
