"""`restore --from ARCHIVE`: the configuration back, and with `--database` the database too.

The archive is unpacked into a private temporary folder and every member checked against the
manifest before anything is touched. The current files are then copied aside (Compose:
`<directory>/.restore-kept-<time>/`; Kubernetes: `customizations.yaml.kept-<time>` and the
current Secrets in `secrets.kept-<time>.json`, both 0600), and each file is put back with an
atomic write, so an interruption leaves every file either old or new.
"""

from __future__ import annotations

import json
import logging
import os
import posixpath
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from installer.errors import InputError
from installer.operate.archive import extract_verified
from installer.operate.installation import Installation

log = logging.getLogger("installer.operate.restore")


@dataclass
class RestorePlan:
    manifest: dict[str, Any]
    folder: str  # where the verified archive is unpacked
    files: list[tuple[str, str]]  # (archive member, destination)
    database: str | None  # the dump's member, when the archive has one
    kept: str = ""  # where the current files go aside

    def summary(self) -> str:
        lines = [f"  restore {dest}" for _, dest in self.files]
        if self.kept:
            lines.append(f"  keep the current files in {self.kept}")
        return "\n".join(lines)


@dataclass
class RestoreResult:
    restored: list[str] = field(default_factory=list)
    kept: str = ""
    database: str = ""


def plan_restore(inst: Installation, archive: str, folder: str,
                 passphrase: str | None) -> RestorePlan:
    """Verify and unpack `archive` into `folder`; what would be put back where."""
    if not os.path.isfile(archive):
        raise InputError(f"--from: {archive} does not exist or is not a file")
    with inst.step("verify archive") as detail:
        manifest = extract_verified(archive, folder, passphrase, inst.progress("verify archive"))
        detail.append(f"{len(manifest.get('members', []))} member(s) match the manifest")
    if manifest.get("platform") != inst.platform:
        raise InputError(f"the backup is of a {manifest.get('platform')} installation, the "
                         f"answers are for {inst.platform}", "use the matching answers file")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    files: list[tuple[str, str]] = []
    database = None
    for member in manifest.get("members", []):
        name = str(member["path"])
        if name.startswith("deployment/") and inst.platform == "compose":
            files.append((name, posixpath.join(inst.directory, name[len("deployment/"):])))
        elif name == "kubernetes/customizations.yaml":
            files.append((name, str(inst.kube_folder() / "customizations.yaml")))
        elif name == "kubernetes/secrets.json":
            files.append((name, f"Secrets in namespace {inst.answers.kubernetes.namespace}"))
        elif name.startswith("database/") and name.endswith(".dump"):
            database = name
    kept = posixpath.join(inst.directory, f".restore-kept-{stamp}") \
        if inst.platform == "compose" else str(inst.kube_folder() / f"restore-kept-{stamp}")
    return RestorePlan(manifest, folder, files, database, kept)


def _keep_aside_compose(inst: Installation, plan: RestorePlan) -> None:
    target = inst.target
    inst.refuse_links([posixpath.relpath(dest, inst.directory) for _, dest in plan.files
                       if target.exists(dest)] + ["certs"])
    target.makedirs(plan.kept, 0o700)
    for _, dest in plan.files:
        if not target.exists(dest):
            continue
        relative = posixpath.relpath(dest, inst.directory)
        aside = posixpath.join(plan.kept, relative)
        target.makedirs(posixpath.dirname(aside), 0o700)
        target.write_file(aside, target.read_file(dest), 0o600)


def apply_restore(inst: Installation, plan: RestorePlan) -> list[str]:
    restored: list[str] = []
    with inst.step("restore configuration") as detail:
        if inst.platform == "compose":
            _keep_aside_compose(inst, plan)
            for member, dest in plan.files:
                data = Path(plan.folder, member).read_bytes()
                inst.target.makedirs(posixpath.dirname(dest), 0o755)
                # customer.env, .env, keys and key.json hold secrets: 0600 like render writes;
                # a certificate is public
                mode = 0o644 if dest.endswith(".crt") else 0o600
                inst.target.write_file(dest, data, mode)
                restored.append(dest)
        else:
            restored = _restore_kubernetes(inst, plan)
        detail.append(f"{len(restored)} item(s); the previous ones are in {plan.kept}")
    return restored


def _restore_kubernetes(inst: Installation, plan: RestorePlan) -> list[str]:
    from installer.helm_release import apply_secrets
    from installer.operate.backup import installer_secrets
    from installer.target import atomic_write

    os.makedirs(plan.kept, mode=0o700, exist_ok=True)
    restored: list[str] = []
    for member, dest in plan.files:
        source = Path(plan.folder, member)
        if member == "kubernetes/secrets.json":
            current = installer_secrets(inst)
            atomic_write(os.path.join(plan.kept, "secrets.json"),
                         json.dumps({"items": current}).encode(), 0o600)
            items = json.loads(source.read_bytes()).get("items", [])
            for item in items:  # into the answers' namespace, whatever it was called then
                item["metadata"]["namespace"] = inst.answers.kubernetes.namespace
            apply_secrets(inst.kube(), items)
            restored += [f"secret/{i['metadata']['name']}" for i in items]
        else:
            if os.path.exists(dest):
                atomic_write(os.path.join(plan.kept, os.path.basename(dest)),
                             Path(dest).read_bytes(), 0o600)
            atomic_write(dest, source.read_bytes(), 0o644)
            restored.append(dest)
    return restored


def restore(inst: Installation, archive: str, *, passphrase: str | None = None,
            database: bool = False,
            confirm_database: Callable[[str], bool] | None = None,
            dump_tool: str | None = None) -> RestoreResult:
    """Verify, put the configuration back, then (with `database`) the dump, once
    `confirm_database(description)` says yes (None: yes, for --yes)."""
    from installer.operate.database import describe_database, restore_database

    folder_parent = os.path.dirname(os.path.abspath(archive))
    base = folder_parent if os.access(folder_parent, os.W_OK) else None
    with tempfile.TemporaryDirectory(prefix=".carto-restore-", dir=base) as folder:
        os.chmod(folder, 0o700)
        plan = plan_restore(inst, archive, folder, passphrase)
        if database and plan.database is None:
            raise InputError("--database: this backup has no database dump (it was made with "
                             "--no-database)")
        description = describe_database(inst) if database else ""
        if database and confirm_database is not None and not confirm_database(description):
            from installer.deploy import DeployCancelled

            raise DeployCancelled("restore cancelled: nothing was changed")
        result = RestoreResult(apply_restore(inst, plan), plan.kept)
        if database:
            assert plan.database is not None
            with inst.step("restore database") as detail:
                result.database = restore_database(inst, os.path.join(folder, plan.database),
                                                   inst.progress("restore database"),
                                                   tool=dump_tool)
                detail.append(result.database)
    return result
