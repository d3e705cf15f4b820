"""The Compose upgrade: plan (release, merge, missing variables, images), gates, keep the
previous files, write, images, `up -d`, wait healthy, HTTPS; on failure the previous release
put back (before the migrations ran) or the restore spelt out (after)."""

from __future__ import annotations

import posixpath
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from installer.checks.base import CheckResult
from installer.deploy import DeployResult, EventSink, LogLine
from installer.deploy.steps import LAUNCH, LOAD_IMAGES, VERIFY_HTTPS, WAIT_HEALTHY
from installer.errors import DeployError, InputError
from installer.upgrade.gates import (
    GATE_IDS,
    gate_backup_record,
    gate_package,
    gate_version,
    newest_backup,
)
from installer.upgrade.previous import (
    PREVIOUS_DIR,
    _read,
    _text,
    keep_previous,
    put_back_previous,
)

if TYPE_CHECKING:
    from installer.answers import Answers
    from installer.deploy.compose.project import _Run
    from installer.redact import Redactor
    from installer.release import ReleaseFile
    from installer.render import RenderPlan
    from installer.target import Target
    from installer.vendor import Rename

# The Compose upgrade's own steps, beside the deploy's (installer.deploy.steps names those).
PREFLIGHT_AND_GATES = "preflight and gates"
PLAN = "plan"
KEEP_PREVIOUS = "keep the previous release"
WRITE_NEW_RELEASE = "write the new release"
PULL_IMAGES = "pull images"
PUT_BACK = "put the previous release back"

@dataclass
class UpgradePlan:
    directory: str
    current_version: str
    new_version: str
    min_version: str
    package_version: str
    render: RenderPlan
    renames: list[Rename] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # variables the new env.tpl needs
    images: dict[str, str] = field(default_factory=dict)  # image -> present|load|pull
    services_to_pull: list[str] = field(default_factory=list)
    gates: list[CheckResult] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"  gate {g.id}: {g.status}: {g.message}" for g in self.gates]
        lines += [f"  release: {self.current_version} -> {self.new_version} "
                 f"(MIN_VERSION {self.min_version or 'unknown'}), package "
                 f"{self.package_version or 'unknown'}"]
        for rename in self.renames:
            lines.append(f"  renamed variable: {rename.old} -> {rename.new} (since "
                         f"{rename.since}; {rename.source})")
        if self.missing:
            lines.append("  MISSING from the package (the new env.tpl or docker-compose.yml "
                         f"use them): {', '.join(self.missing)}")
        counts: dict[str, list[str]] = {}
        for image, how in self.images.items():
            counts.setdefault(how, []).append(image)
        for how, label in (("load", "load from compose.images_archive"),
                           ("pull", "pull before stopping anything"),
                           ("present", "already on the target")):
            if counts.get(how):
                lines.append(f"  images to {label}: " if how != "present" else
                             f"  images {label}: ")
                lines[-1] += ", ".join(counts[how])
        lines.append(f"  keep the files it replaces in {self.directory}/{PREVIOUS_DIR}/ (0700) "
                     "to put them back if the upgrade fails before the migrations run")
        lines.append(self.render.summary())
        return "\n".join(lines)



def images_needed(compose_text: str, dotenv: bytes) -> dict[str, list[str]]:
    """image reference -> the services using it (services scaled to 0 left out)."""
    from installer.vendor import expand, expanded_env, load_compose

    values = expanded_env(dotenv.decode("utf-8", "replace"))
    out: dict[str, list[str]] = {}
    for name, service in load_compose(compose_text).items():
        if not isinstance(service, dict) or "image" not in service:
            continue
        if expand(str(service.get("scale", "1")), values).strip() == "0":
            continue
        image = expand(str(service["image"]), values).strip()
        if image:
            out.setdefault(image, []).append(str(name))
    return out



def upgrade_compose(answers: Answers, target: Target, *, redactor: Redactor,
                     release: str | None, skip: Sequence[str],
                     cancel: threading.Event,
                     emit: EventSink, confirm: Callable[[UpgradePlan], bool] | None,
                     health_timeout: float) -> DeployResult:
    from installer.deploy import compose as dc
    from installer.release import read_release, release_file
    from installer.render import conflict_error, plan_render
    from installer.render.compose import check_inputs

    directory = posixpath.normpath(answers.compose.directory)
    if _read(target, posixpath.join(directory, ".env"), directory) is None or \
            _read(target, posixpath.join(directory, "docker-compose.yml"), directory) is None:
        raise InputError(f"nothing is installed in {directory} on {target.name} (no .env or "
                         "docker-compose.yml): there is nothing to upgrade",
                         "install first with `carto-installer deploy --answers FILE`")
    new_release: list[ReleaseFile] | None = None
    if release:
        new_release = read_release(answers.compose.release or release)
    inputs = check_inputs(answers, target, redactor, new_release)
    assert answers.domain is not None
    run = dc._Run(answers, target, redactor, emit, cancel)
    current_version = _text(run.read("VERSION"))

    def vendor(name: str) -> bytes:
        if new_release is not None:
            return release_file(new_release, name) or b""
        return run.read(name) or b""

    new_version = _text(vendor("VERSION")) or current_version
    min_version = _text(vendor("MIN_VERSION"))

    def upgrade_gates() -> list[CheckResult]:  # judged once the preflight ran
        return [gate_package(inputs.package.version, min_version or None,
                             f"release {new_version}"),
                gate_version(current_version, new_version),
                gate_backup_record(newest_backup(answers, target, redactor))]

    with run.step(PREFLIGHT_AND_GATES) as step:
        report, accepted = run.gated_preflight(step, target, answers, "compose", skip=skip,
                                               gates=upgrade_gates)
        gates = [r for r in report.results if r.id in GATE_IDS]
        compose = dc.compose_command(report)
        command = compose.argv
        step.detail = ", ".join(f"{g.id} {g.status}" for g in gates) + (
            f"; accepted risks: {', '.join(r.id for r in accepted)}" if accepted else "")
    accepted_ids = [r.id for r in accepted]
    backup_archive = next((str(g.data.get("archive")) for g in gates
                           if g.id == "upgrade.backup" and g.data.get("archive")), "")

    with run.step(PLAN) as step:
        from installer.envfile import EnvFile
        from installer.render.merge import INSTALLER_KEYS
        from installer.vendor import package_gaps, renames_in

        current_customer = EnvFile.parse(_text(run.read("customer.env")))
        package_env = EnvFile.parse(inputs.package.files["customer.env"].decode(
            "utf-8-sig", "replace"))
        renames = renames_in([*current_customer.keys(), *package_env.keys()])
        missing = package_gaps(vendor("env.tpl").decode("utf-8", "replace"),
                               vendor("docker-compose.yml").decode("utf-8", "replace"),
                               package_env,
                               [*INSTALLER_KEYS, *(k for k in current_customer.keys()
                                                   if k not in package_env)])
        if missing:
            from installer.vendor import GAPS_FIX, describe_gaps

            raise InputError(describe_gaps(missing, vendor("env.tpl").decode(
                "utf-8", "replace")) + f" (release {new_version})", GAPS_FIX)
        render = plan_render(answers, target, redactor=redactor, compose_command=command,
                             compose_version=compose.version,
                             new_release=new_release)
        dotenv = dc.plan_dotenv(render, run)
        needed = images_needed(vendor("docker-compose.yml").decode("utf-8", "replace"),
                               dotenv)
        archive = answers.compose.images_archive
        in_archive = {tag for tags in (dc.archive_images(archive) if archive else {}).values()
                      for tag in tags}
        images: dict[str, str] = {}
        to_pull: list[str] = []
        client = run.client()
        for image, services in needed.items():
            try:
                client.images.get(image)
                images[image] = "present"
            except Exception:
                images[image] = "load" if image in in_archive else "pull"
                if images[image] == "pull":
                    to_pull += services
        plan = UpgradePlan(directory, current_version, new_version, min_version,
                           inputs.package.version or "", render, renames, missing, images,
                           sorted(set(to_pull)), gates)
        if confirm is None:  # otherwise the confirmation shows it
            for line in plan.summary().splitlines():
                emit(LogLine(redactor(line)))
        if render.conflicts:
            raise conflict_error(render)
        step.detail = f"{len(render.changes)} file(s) to write"
    if render.empty and not plan.services_to_pull and "load" not in images.values():
        # Already at this release with this package: keep the previous release's copy as it
        # is (a second run must not overwrite it with the current files), change nothing.
        with run.step(VERIFY_HTTPS) as step:
            assert render.trusted_certificate is not None
            step.detail = dc.verify_https(run, answers.domain, render.trusted_certificate)
        return DeployResult(True, f"https://{answers.domain}",
                            f"nothing to upgrade: release {new_version} with package "
                            f"{plan.package_version or 'unknown'} is what runs",
                            accepted_risks=accepted_ids, changed=False)
    run.confirm(plan, confirm)
    run.check_cancel()

    env_now = dc.env_values(dotenv, render.flavour)
    project = dc.project_name(directory, env_now)
    tool = " ".join(command)
    state_path = posixpath.join(directory, dc.STATE_FILE)
    with run.step(KEEP_PREVIOUS) as step:
        paths = [c.path for c in render.changes] + [state_path]
        keep = keep_previous(target, directory, paths, current_version, run.sudo)
        step.detail = f"{len(paths)} file(s) kept in {keep}"

    def put_back(reason: str) -> DeployError:
        """Before the migrations ran: the previous files back, the previous release up."""
        emit(LogLine(redactor(f"putting release {current_version} back: {reason}")))
        with run.step(PUT_BACK) as back:
            put_back_previous(target, directory, run.sudo)
            watcher = dc._Watcher(run, project, expected_old)
            dc._compose_up(run, command, watcher)
            dc._wait_healthy(run, watcher, expected_old, health_timeout, command)
            assert render.trusted_certificate is not None
            old_cert = run.read(posixpath.join("certs", f"{answers.domain}.crt")) \
                or render.trusted_certificate
            answered = dc.verify_https(run, str(answers.domain), old_cert)
            dc._save_state(run, render, command, project, action="rollback",
                           version=current_version)
            back.detail = answered
        return DeployError(
            f"the upgrade to {new_version} failed before the migrations ran ({reason}); the "
            f"previous release {current_version} was put back and answers: {answered}",
            "fix the cause shown above, then run `carto-installer upgrade` again")

    expected_old = dc.expected_services(_text(run.read("docker-compose.yml")),
                                        dc.env_values(run.read(".env") or b"",
                                                      render.flavour))
    with run.step(WRITE_NEW_RELEASE) as step:
        written = run.apply(step, render, target, say_notes=False)
        step.detail = f"wrote {len(written)} file(s)"

    try:
        if archive and any(how == "load" for how in images.values()):
            with run.step(LOAD_IMAGES) as step:
                _loaded, step.detail = dc.load_images(run, archive,
                                                      dc.archive_images(archive))
        if plan.services_to_pull:
            with run.step(PULL_IMAGES) as step:
                result = target.run([*command, "pull", *plan.services_to_pull], cwd=directory,
                                    timeout=dc.UP_TIMEOUT, sudo=run.sudo)
                run.log_lines(result.output(), "compose: ")
                if not result.ok:
                    raise DeployError(f"`{tool} pull` failed (exit {result.returncode})",
                                      "check the registry access (egress checks) or give "
                                      "compose.images_archive")
                step.detail = f"pulled the images of {', '.join(plan.services_to_pull)}"
    except DeployError as exc:
        raise put_back(f"the new images could not be had: {exc.message}") from None

    compose_now = vendor("docker-compose.yml").decode("utf-8", "replace")
    expected = dc.expected_services(compose_now, env_now)
    jobs_before = {v.id: v.started_at for v in dc.list_containers(run.client(), project)
                   if dc.is_job(v.service)}
    try:
        watcher = dc._Watcher(run, project, expected)
        with run.step(LAUNCH) as step:
            before_up = {v.id: v.started_at for v in dc.list_containers(run.client(), project)}
            dc._compose_up(run, command, watcher)
            step.detail = f"`{tool} up -d` done"
            restarted = dc._reload_certificates(run, render, command, project, expected,
                                                before_up)
            if restarted:
                step.detail += (f"; restarted {', '.join(restarted)} for the new certificates or "
                                "other files mounted into them")
        with run.step(WAIT_HEALTHY) as step:
            step.detail = dc._wait_healthy(run, watcher, expected, health_timeout, command)
        with run.step(VERIFY_HTTPS) as step:
            assert render.trusted_certificate is not None
            healthy_views = dc.list_containers(run.client(), project)
            step.detail = dc.verify_https(run, answers.domain, render.trusted_certificate)
            dc._still_healthy(run, project, expected, healthy_views, command)
    except DeployError as exc:
        if not migrations_ran(run, project, jobs_before):
            raise put_back(exc.message) from None
        raise restore_needed(answers, directory, current_version, new_version, exc.message,
                             backup_archive, tool,
                             bundled_database_service(answers, compose_now, env_now)
                             ) from None
    dc._save_state(run, render, command, project, action="upgrade", version=new_version)
    url = f"https://{answers.domain}"
    return DeployResult(True, url, f"upgraded to {new_version}: CARTO answers at {url}",
                        accepted_risks=accepted_ids, changed=True)


def migrations_ran(run: _Run, project: str, jobs_before: dict[str, str]) -> bool:
    """Whether a migrations job started since `jobs_before` (its container is new, or was
    started again): from then on the database may hold the new schema."""
    from installer.deploy import compose as dc

    for view in dc.list_containers(run.client(), project):
        if dc.is_job(view.service) and view.started_at and \
                not view.started_at.startswith("0001-") and \
                jobs_before.get(view.id) != view.started_at:
            return True
    return False


def bundled_database_service(answers: Answers, compose_text: str, env: dict[str, str]
                             ) -> str | None:
    """The bundled PostgreSQL's service (as `backup`/`restore` find it: the service named by
    WORKSPACE_POSTGRES_HOST, else one whose image is PostgreSQL), None for an external one."""
    from installer.vendor import load_compose

    if not answers.database.bundled:
        return None
    services = load_compose(compose_text)
    named = env.get("WORKSPACE_POSTGRES_HOST", "")
    if named in services:
        return named
    return next((str(name) for name, spec in services.items()
                 if isinstance(spec, dict) and "postgres" in str(spec.get("image", ""))), None)


def restore_needed(answers: Answers, directory: str, old: str, new: str, reason: str,
                   archive: str, tool: str, database_service: str | None = None
                   ) -> DeployError:
    """After the migrations ran, nothing is put back on its own: the old release's services
    may not run against a database the new migrations changed."""
    where = archive or "ARCHIVE (the backup you made before the upgrade)"
    answers_file = str(answers.source or "ANSWERS.yaml")
    steps = [f"cd {directory} && {tool} stop"]
    if database_service:  # the restore loads the dump through the running database
        steps.append(f"cd {directory} && {tool} start {database_service}")
    steps += [
        f"carto-installer restore --answers {answers_file} --from {where} --database --yes",
        f"cp -a {directory}/{PREVIOUS_DIR}/files/. {directory}/   # the files of {old}",
        f"cd {directory} && {tool} up -d",
        f"carto-installer status --answers {answers_file}",
    ]
    return DeployError(
        f"the upgrade to {new} failed after the database migrations ran ({reason}). The "
        f"migrations cannot be undone: the database must be restored from the backup "
        f"{where} before release {old} can run again. Nothing was put back automatically.",
        "either fix the cause and run `carto-installer upgrade` again, or go back to "
        f"{old}:\n    " + "\n    ".join(steps))

