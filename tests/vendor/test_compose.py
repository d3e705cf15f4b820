"""Conformance with the vendor's real Compose deployment directories (../shared/vendor).

Each release is copied into a temporary folder and rendered into; the vendor's own install.sh
then builds its `.env` from the same customer.env, and both `.env` files are read through the
real Compose parsers (docker-compose 1.29 and the docker compose v2 plugin): every variable
must be equal, the vendor's docker-compose.yml must resolve with no unset variable, and every
certificate path `.env` names must exist in certs/.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from installer.answers import Answers, parse_answers
from installer.envfile import EnvFile
from installer.redact import Redactor
from installer.render import apply_render, plan_render
from installer.target import LocalTarget
from tests.services.tls_ca import TestCA
from tests.support.cli import run_cli
from tests.support.compose_parsers import compose_commands
from tests.support.package import GeneratedPackage, make_package
from tests.support.vendor_compose import copy_release, releases

DOMAIN = "carto.vendor-test.example.com"
TOOLS = {"v1": "1.29.2", "v2": "2.40.3"}
# Secrets with the characters hand-written env files get wrong.
SECRETS = {"ADMIN": "adm'in \"pw\" #1 $HOME", "USER": "us#er pw ünï \\ end"}
CERT_DIRS = {"/etc/nginx/ssl/": "certs/", "/usr/src/certs/": "certs/"}
CLEAN_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(Path.home())}


def vendor_answers(package: Path, directory: Path, test_ca: TestCA, tls: dict[str, str],
                   **extra: Any) -> Answers:
    data: dict[str, Any] = {
        "version": 1, "platform": "compose", "package": str(package),
        "compose": {"directory": str(directory)}, "domain": DOMAIN, "tls": tls,
        "database": {"bundled": False, "host": "db.internal", "admin_password_env": "ADMIN",
                     "password_env": "USER",
                     "ssl": {"enabled": True, "mode": "verify-full",
                             "ca_file": str(test_ca.ca_file)}},
        "redis": {"bundled": True},
    }
    data.update(extra)
    return parse_answers(data, env=SECRETS)


def render_for(answers: Answers, flavour: str) -> None:
    command = ["docker-compose"] if flavour == "v1" else ["docker", "compose"]
    plan = plan_render(answers, LocalTarget(), redactor=Redactor(), compose_command=command,
                       compose_version=TOOLS[flavour])
    apply_render(plan, LocalTarget())


def environment(command: list[str], directory: Path, env_file: str) -> dict[str, str]:
    """The environment a service gets from `env_file`, as this Compose reads it."""
    probe = directory / f"probe-{env_file.strip('.')}"
    probe.mkdir(exist_ok=True)
    (probe / "docker-compose.yml").write_text(yaml.safe_dump({
        "version": "2.4",
        "services": {"probe": {"image": "busybox", "env_file": [str(directory / env_file)]}}}))
    (probe / ".env").write_text("")  # no project variables: only env_file is read
    json_format = ["--format", "json"] if command[0] == "docker" else []
    result = subprocess.run([*command, "config", *json_format], cwd=probe, text=True,
                            capture_output=True, timeout=120, env=CLEAN_ENV)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout) if json_format else yaml.safe_load(result.stdout)
    return {k: str(v) for k, v in data["services"]["probe"]["environment"].items()}


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory, test_ca: TestCA) -> dict[str, str]:
    files = test_ca.issue([DOMAIN]).write(tmp_path_factory.mktemp("tls"))
    return {"certificate_file": str(files.fullchain), "key_file": str(files.key)}


@pytest.mark.parametrize("flavour", ["v1", "v2"])
@pytest.mark.parametrize("release", releases())
def test_render_matches_the_vendors_install_sh_through_the_real_compose(
        release: str, flavour: str, tmp_path: Path, test_ca: TestCA,
        tls: dict[str, str]) -> None:
    command = compose_commands()[flavour]
    package = make_package(tmp_path / "pkg")
    ours = copy_release(release, tmp_path / "ours")
    render_for(vendor_answers(package.path, ours, test_ca, tls), flavour)

    # The vendor's own install.sh, on a copy holding the customer.env we wrote.
    theirs = copy_release(release, tmp_path / "theirs")
    shutil.copy(ours / "customer.env", theirs / "customer.env")
    shutil.copy(package.path / "key.json", theirs / "key.json")
    vendor = subprocess.run(["bash", "install.sh", "--ignore-checks"], cwd=theirs, text=True,
                            capture_output=True, timeout=60, env=CLEAN_ENV)
    assert vendor.returncode == 0, vendor.stdout + vendor.stderr
    assert (theirs / "customer.env").read_bytes() == (ours / "customer.env").read_bytes(), \
        "install.sh had something left to migrate in our customer.env"
    assert (theirs / "certs/key.json").read_bytes() == (ours / "certs/key.json").read_bytes()

    mine = environment(command, ours, ".env")
    expected = environment(command, theirs, ".env")
    assert mine == expected  # every variable, as this Compose reads it
    assert mine["WORKSPACE_POSTGRES_PASSWORD"].replace("$$", "$") == SECRETS["USER"]
    assert mine["POSTGRES_ADMIN_PASSWORD"].replace("$$", "$") == SECRETS["ADMIN"]
    # env.tpl's derived values are whole (the package defines what they use).
    topic = mine["EVENT_BUS_TOPIC"]
    assert "//" not in topic and not topic.split("/")[-1].startswith("-"), topic
    assert mine["WORKSPACE_POSTGRES_SSL_MODE"] == "require"

    # The vendor's docker-compose.yml resolves with every variable set.
    resolved = subprocess.run([*command, "config"], cwd=ours, text=True, capture_output=True,
                              timeout=120, env=CLEAN_ENV)
    assert resolved.returncode == 0, resolved.stderr
    assert "is not set" not in resolved.stderr, resolved.stderr
    assert "router-http" in resolved.stdout

    # Every certificate path .env names exists in certs/.
    named = {key: value for key, value in mine.items()
             if any(value.startswith(prefix) for prefix in CERT_DIRS)}
    assert {"GOOGLE_APPLICATION_CREDENTIALS", "ROUTER_SSL_CERTIFICATE_PATH",
            "ROUTER_SSL_CERTIFICATE_KEY_PATH", "WORKSPACE_POSTGRES_SSL_CA"} <= set(named)
    for key, value in named.items():
        prefix = next(p for p in CERT_DIRS if value.startswith(p))
        assert (ours / CERT_DIRS[prefix] / value[len(prefix):]).is_file(), (key, value)


@pytest.mark.parametrize("release", releases())
def test_a_package_lacking_what_env_tpl_uses_is_refused_naming_it(
        release: str, tmp_path: Path, test_ca: TestCA, tls: dict[str, str]) -> None:
    full = make_package(tmp_path / "full")
    lacking = full.customer_env.replace("ACC_GCP_PROJECT_REGION=us-east1\n", "").replace(
        "DO_ASSETS_DOMAIN=assets.do.carto.com\n", "DO_ASSETS_DOMAIN=\n")
    package: GeneratedPackage = make_package(tmp_path / "pkg", customer_env=lacking)
    directory = copy_release(release, tmp_path / "carto")
    answers = tmp_path / "answers.yaml"
    answers.write_text(yaml.safe_dump({
        "version": 1, "platform": "compose", "package": str(package.path),
        "compose": {"directory": str(directory)}, "domain": DOMAIN,
        "database": {"bundled": True, "admin_password_env": "ADMIN", "password_env": "USER"}}))
    answers.chmod(0o600)

    report = run_cli("preflight", "--answers", str(answers), "--only", "license.package",
                     "--format", "json", env=SECRETS, cwd=tmp_path)
    check = {c["id"]: c for c in json.loads(report.stdout)["checks"]}["license.package"]
    assert check["status"] == "fail"
    assert "ACC_GCP_PROJECT_REGION" in check["message"] and "DO_ASSETS_DOMAIN" in check["message"]
    assert "REACT_APP_DO_ASSETS_URL" in check["message"]  # what it would break, from env.tpl
    assert "download the installation package again" in check["remediation"]

    before = sorted(p.name for p in directory.iterdir())
    rendered = run_cli("render", "--answers", str(answers), env=SECRETS, cwd=tmp_path)
    assert rendered.returncode == 2, rendered.stdout + rendered.stderr
    assert "ACC_GCP_PROJECT_REGION" in rendered.stderr
    assert sorted(p.name for p in directory.iterdir()) == before  # nothing written

    # The complete package passes, even with no password in the answers: its legacy
    # POSTGRES_PASSWORD line becomes POSTGRES_ADMIN_PASSWORD (as install.sh renames it).
    _write_answers(answers, full.path, directory)
    report = run_cli("preflight", "--answers", str(answers), "--only", "license.package",
                     "--format", "json", env=SECRETS, cwd=tmp_path)
    check = {c["id"]: c for c in json.loads(report.stdout)["checks"]}["license.package"]
    assert check["status"] == "pass", check


def test_the_vendor_format_package_fills_the_commented_blocks(tmp_path: Path, test_ca: TestCA,
                                                               tls: dict[str, str]) -> None:
    """customer.env reads as the vendor's docs describe: nothing appended at the end."""
    package = make_package(tmp_path / "pkg")
    directory = copy_release(releases()[-1], tmp_path / "carto")
    render_for(vendor_answers(package.path, directory, test_ca, tls), "v2")
    text = (directory / "customer.env").read_text()
    assert EnvFile.HEADER not in text
    assert len(text.splitlines()) == len(package.customer_env.splitlines())


def _write_answers(path: Path, package: Path, directory: Path, **compose: Any) -> Path:
    path.write_text(yaml.safe_dump({
        "version": 1, "platform": "compose", "package": str(package),
        "compose": {"directory": str(directory), **compose}, "domain": DOMAIN,
        "database": {"bundled": True}, "redis": {"bundled": True}}))
    path.chmod(0o600)
    return path


def _files(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes()
            for p in sorted(directory.rglob("*")) if p.is_file()}


def test_upgrade_across_the_real_releases_merges_the_new_package(tmp_path: Path) -> None:
    """compose-2026.5.14 with package A, hand-edited by the admin, then compose-2026.7.16 with
    package B: a three-way merge, its conflict refused until the admin chooses."""
    old, new = releases()[0], releases()[-1]
    assert old != new
    first = make_package(tmp_path / "pkg-a")
    text_a = first.customer_env + "OLD_FEATURE_FLAG=1\nEDITED_BY_ADMIN_ONLY=package-a\n"
    package_a = make_package(tmp_path / "pkg-a2", customer_env=text_a, key_json=first.key_json)
    bundled_password = EnvFile.parse(text_a).get("WORKSPACE_POSTGRES_PASSWORD")
    text_b = (text_a
              .replace("CARTO_SELFHOSTED_CUSTOMER_PACKAGE_VERSION=2026.4.1",
                       "CARTO_SELFHOSTED_CUSTOMER_PACKAGE_VERSION=2026.6.2")
              .replace("-thumbnails\n", "-thumbnails-v2\n")       # a new bucket
              .replace("-client-storage\n", "-client-storage-v2\n")  # changed, and edited
              .replace("OLD_FEATURE_FLAG=1\n", "")                 # dropped
              .replace(f"WORKSPACE_POSTGRES_PASSWORD={bundled_password}\n",
                       "WORKSPACE_POSTGRES_PASSWORD=a-new-random-one\n")
              .replace("DO_ASSETS_DOMAIN=assets.do.carto.com\n",
                       "DO_ASSETS_DOMAIN=assets.do.carto.com\nNEW_SDK_KEY=sdk-b-123\n"))
    package_b = make_package(tmp_path / "pkg-b", customer_env=text_b, key_json=first.key_json)

    directory = copy_release(old, tmp_path / "carto")
    answers = _write_answers(tmp_path / "answers.yaml", package_a.path, directory)
    done = run_cli("render", "--answers", str(answers), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    record = (directory / ".carto-installer-package-base.json").read_text()
    assert oct((directory / ".carto-installer-package-base.json").stat().st_mode & 0o777) \
        == "0o600"
    assert bundled_password not in record and "package-a" not in record  # digests only

    # The admin's hand edits.
    customer = directory / "customer.env"
    edited = customer.read_text().replace("-client-storage\n", "-admins-own-bucket\n").replace(
        "EDITED_BY_ADMIN_ONLY=package-a\n", "EDITED_BY_ADMIN_ONLY=mine\n") + "ADMIN_OWN=kept\n"
    customer.write_text(edited)

    # The new release is checked out over the old one; the new package arrives.
    for path in copy_release(new, tmp_path / "new-release").iterdir():
        if path.is_file():
            shutil.copy(path, directory / path.name)
    answers = _write_answers(answers, package_b.path, directory)
    before = _files(directory)
    dry = run_cli("render", "--answers", str(answers), "--dry-run", cwd=tmp_path)
    assert dry.returncode == 2, dry.stdout + dry.stderr
    out = dry.stdout
    assert "new from the package: NEW_SDK_KEY" in out
    assert ("changed by the package: CARTO_SELFHOSTED_CUSTOMER_PACKAGE_VERSION, "
            "WORKSPACE_THUMBNAILS_BUCKET") in out
    assert "dropped by the package: OLD_FEATURE_FLAG" in out
    assert "your edits kept (the package left them alone): EDITED_BY_ADMIN_ONLY" in out
    assert "CONFLICTS: edited by you and changed by the package" in out
    assert "WORKSPACE_IMPORTS_BUCKET" in dry.stderr and "compose.take_package" in dry.stderr
    for secret in (bundled_password, "a-new-random-one", "admins-own-bucket", "sdk-b-123"):
        assert secret not in out + dry.stderr
    refused = run_cli("render", "--answers", str(answers), cwd=tmp_path)
    assert refused.returncode == 2 and "WORKSPACE_IMPORTS_BUCKET" in refused.stderr
    assert _files(directory) == before  # nothing written
    deploy = run_cli("deploy", "--answers", str(answers), "--yes", "--skip", "host,egress,net",
                     cwd=tmp_path)
    assert deploy.returncode == 2, deploy.stdout + deploy.stderr
    assert "WORKSPACE_IMPORTS_BUCKET" in deploy.stderr and "==> launch" not in deploy.stdout
    assert _files(directory) == before

    # The admin's explicit choice: the package's value.
    answers = _write_answers(answers, package_b.path, directory,
                             take_package=["WORKSPACE_IMPORTS_BUCKET"])
    done = run_cli("render", "--answers", str(answers), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    env = EnvFile.parse(customer.read_text())
    assert env.get("CARTO_SELFHOSTED_CUSTOMER_PACKAGE_VERSION") == "2026.6.2"
    assert env.get("WORKSPACE_IMPORTS_BUCKET", "v2").endswith("-client-storage-v2")
    assert env.get("WORKSPACE_THUMBNAILS_BUCKET", "v2").endswith("-thumbnails-v2")
    assert env.get("NEW_SDK_KEY") == "sdk-b-123"
    assert "OLD_FEATURE_FLAG" not in env
    assert env.get("EDITED_BY_ADMIN_ONLY") == "mine" and env.get("ADMIN_OWN") == "kept"
    # The running bundled database keeps the password it was created with.
    assert env.get("WORKSPACE_POSTGRES_PASSWORD") == bundled_password
    # NEW_SDK_KEY sits where the new package has it, not at the end.
    keys = env.keys()
    assert keys.index("NEW_SDK_KEY") == keys.index("DO_ASSETS_DOMAIN") + 1
    dotenv = environment(compose_commands()["v2"], directory, ".env")
    assert dotenv["CARTO_SELFHOSTED_VERSION"] == (directory / "VERSION").read_text().strip()
    assert dotenv["NEW_SDK_KEY"] == "sdk-b-123"

    again = run_cli("render", "--answers", str(answers), cwd=tmp_path)
    assert "nothing to change" in again.stdout, again.stdout + again.stderr


def test_a_conflict_kept_as_mine_keeps_the_admins_value(tmp_path: Path) -> None:
    first = make_package(tmp_path / "pkg-a")
    second = make_package(tmp_path / "pkg-b", key_json=first.key_json, customer_env=(
        first.customer_env.replace("-client-storage\n", "-client-storage-v2\n")))
    directory = copy_release(releases()[-1], tmp_path / "carto")
    answers = _write_answers(tmp_path / "answers.yaml", first.path, directory)
    assert run_cli("render", "--answers", str(answers), cwd=tmp_path).returncode == 0
    customer = directory / "customer.env"
    customer.write_text(customer.read_text().replace("-client-storage\n", "-mine\n"))
    answers = _write_answers(answers, second.path, directory,
                             keep_mine=["WORKSPACE_IMPORTS_BUCKET"])
    done = run_cli("render", "--answers", str(answers), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert EnvFile.parse(customer.read_text()).get("WORKSPACE_IMPORTS_BUCKET", "v2").endswith(
        "-mine")


def test_each_container_user_reads_exactly_its_own_secret_file(
        tmp_path: Path, test_ca: TestCA, tls: dict[str, str], docker_engine: Any) -> None:
    """The vendor's containers run as their images' users (router-http's nginx as 101, the
    Node.js backends as 1000): each reads its file from certs/ mounted as in the vendor's
    docker-compose.yml, and no other non-root user does."""
    import docker.errors

    from tests.services.dockerd import build_image

    package = make_package(tmp_path / "pkg")
    directory = copy_release(releases()[-1], tmp_path / "carto")
    render_for(vendor_answers(package.path, directory, test_ca, tls), "v2")
    image = build_image(docker_engine, "carto-installer-test/listener:1")
    mounts = {str(directory / "certs"): {"bind": "/usr/src/certs", "mode": "ro"}}

    def reads(user: str, name: str) -> bool:
        try:
            docker_engine.containers.run(image, ["cat", f"/usr/src/certs/{name}"], user=user,
                                         volumes=mounts, remove=True)
        except docker.errors.ContainerError:
            return False
        return True

    assert reads("1000:1000", "key.json")  # workspace-api, maps-api, router-metrics, ...
    assert reads("101:101", f"{DOMAIN}.key")  # router-http
    assert not reads("1000:1000", f"{DOMAIN}.key")
    assert not reads("101:101", "key.json")
    assert not reads("1001:1001", "key.json") and not reads("1001:1001", f"{DOMAIN}.key")
    assert reads("1001:1001", f"{DOMAIN}.crt")  # the certificate is public


# --- compose.release: the vendor's release laid down as the deployment directory ----------------


def _archive(kind: str, source: Path, dest: Path, top: str = "carto-selfhosted-2026.7.16") -> Path:
    """The release as the vendor's GitHub release tag downloads it: one top folder."""
    import tarfile
    import zipfile

    if kind == "folder":
        return copy_release(source.name, dest)
    files = sorted(p for p in source.rglob("*") if p.is_file())
    if kind == "zip":
        path = dest.with_suffix(".zip")
        with zipfile.ZipFile(path, "w") as archive:
            for file in files:
                info = zipfile.ZipInfo(f"{top}/{file.relative_to(source).as_posix()}")
                info.external_attr = (0o100000 | (file.stat().st_mode & 0o777)) << 16
                archive.writestr(info, file.read_bytes())
        return path
    path = dest.with_suffix(".tar.gz")
    with tarfile.open(path, "w:gz") as archive:
        for file in files:
            archive.add(file, arcname=f"{top}/{file.relative_to(source).as_posix()}")
    return path


@pytest.mark.parametrize("kind", ["zip", "tar.gz", "folder"])
def test_the_release_is_laid_down_when_the_directory_is_absent(kind: str, tmp_path: Path) -> None:
    from tests.support.vendor_compose import vendor_release

    source = vendor_release(releases()[-1])
    release = _archive(kind, source, tmp_path / "release")
    package = make_package(tmp_path / "pkg")
    directory = tmp_path / "opt" / "carto"  # absent
    answers = _write_answers(tmp_path / "answers.yaml", package.path, directory,
                             release=str(release))
    done = run_cli("render", "--answers", str(answers), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    for file in source.rglob("*"):
        if file.is_file():
            laid = directory / file.relative_to(source)
            assert laid.read_bytes() == file.read_bytes(), file.name
    assert (directory / "install.sh").stat().st_mode & 0o111  # still executable
    assert (directory / ".env").is_file() and (directory / "certs/key.json").is_file()
    again = run_cli("render", "--answers", str(answers), cwd=tmp_path)
    assert "nothing to change" in again.stdout, again.stdout + again.stderr


def _hostile(kind: str, path: Path, source: Path) -> Path:
    import io
    import tarfile
    import zipfile

    good = {f"rel/{p.relative_to(source).as_posix()}": p.read_bytes()
            for p in source.rglob("*") if p.is_file()}
    if kind in ("dotdot", "absolute"):
        name = "rel/../../evil.sh" if kind == "dotdot" else "/tmp/evil.sh"
        out = path.with_suffix(".zip")
        with zipfile.ZipFile(out, "w") as archive:
            for member, data in {**good, name: b"#!/bin/sh\n"}.items():
                archive.writestr(member, data)
        return out
    out = path.with_suffix(".tar.gz")
    with tarfile.open(out, "w:gz") as archive:
        for member, data in good.items():
            info = tarfile.TarInfo(member)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        if kind == "symlink":
            link = tarfile.TarInfo("rel/certs")
            link.type, link.linkname = tarfile.SYMTYPE, "/etc"
            archive.addfile(link)
        else:  # oversized
            big = tarfile.TarInfo("rel/huge.bin")
            big.size = 17 * 1024 * 1024
            archive.addfile(big, io.BytesIO(bytes(big.size)))
    return out


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink", "oversized"])
def test_a_hostile_release_is_refused_and_nothing_is_written(kind: str, tmp_path: Path) -> None:
    from tests.support.vendor_compose import vendor_release

    release = _hostile(kind, tmp_path / "release", vendor_release(releases()[-1]))
    package = make_package(tmp_path / "pkg")
    directory = tmp_path / "opt" / "carto"
    answers = _write_answers(tmp_path / "answers.yaml", package.path, directory,
                             release=str(release))
    result = run_cli("render", "--answers", str(answers), cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "compose.release" in result.stderr and "refused" in result.stderr
    assert not directory.exists() and not (tmp_path / "evil.sh").exists()


def test_the_release_is_laid_down_over_ssh(tmp_path: Path, shared_ssh_server: Any,
                                           target_credentials: Any, remote_dir: Path) -> None:
    from installer.ssh import SSHTarget
    from tests.support.ssh_target import target_settings, trust
    from tests.support.vendor_compose import vendor_release

    source = vendor_release(releases()[-1])
    release = _archive("tar.gz", source, tmp_path / "release")
    package = make_package(tmp_path / "pkg")
    directory = remote_dir / "carto"
    answers = parse_answers({
        "version": 1, "platform": "compose", "package": str(package.path),
        "compose": {"directory": str(directory), "release": str(release)}, "domain": DOMAIN,
        "database": {"bundled": True}}, env={})
    settings = target_settings(shared_ssh_server, trust(tmp_path / "known_hosts",
                                                        shared_ssh_server),
                               identity_file=target_credentials.ed25519_key)
    with SSHTarget.connect(settings, accept_host_key=None, confirm_host_key=None,
                           redactor=Redactor(), passphrase_prompt=None) as target:
        plan = plan_render(answers, target, redactor=Redactor(),
                           compose_command=["docker", "compose"], compose_version="2.40.3")
        apply_render(plan, target)
    assert (directory / "docker-compose.yml").read_bytes() == \
        (source / "docker-compose.yml").read_bytes()
    assert (directory / "install.sh").stat().st_mode & 0o111
    assert (directory / "certs/key.json").read_bytes() == package.key_json.encode()
    # A user that is neither root nor in the containers' groups cannot hand the keys to
    # them: the key stays private and the notes say so.
    assert any("could not let group 1000 read" in note for note in plan.notes)
    assert oct((directory / "certs/key.json").stat().st_mode & 0o777) == "0o600"
