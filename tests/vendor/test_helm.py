"""Conformance with the vendor's REAL Helm charts (`<project root>/../shared/vendor/carto-*.tgz`).

Each real chart is rendered by the real helm 3.17 (`helm template`, offline) with a package in
the vendor's format (carto-values.yaml / carto-secrets.yaml, keys taken from that chart's own
values.yaml and templates, fake values) and the customizations.yaml the installer plans, for
the settings an admin chooses: a generated certificate, a given certificate, an external
PostgreSQL with TLS, an external Redis, a proxy, an image mirror. Every key the installer
writes must exist in the chart's values.yaml; the minimum package version must be the one
the chart's own pre-install check compares, judged the same way.

The charts are used as they are, from a temporary copy; nothing of them is kept in the
project. Without ../shared/vendor (a clone of the project alone) these tests skip, saying
why; under CI=true its absence is a failure.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import secrets
import shutil
import subprocess
import tarfile
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.version import Version

from installer.answers import parse_answers
from installer.chart import (
    ChartIncomplete,
    read_chart_files,
    registry_endpoint,
    registry_of,
    secret_keys_consumed,
)
from installer.checks.base import CheckContext
from installer.checks.egress import kubernetes_registries
from installer.errors import DeployError
from installer.package import version_at_least
from installer.redact import Redactor, setup_logging
from installer.render import plan_render
from installer.render.helm import (
    CUSTOMIZATIONS,
    DB_PASSWORD_KEY,
    REDIS_PASSWORD_KEY,
    chart_facts,
    secret_manifests,
    secret_names,
)
from installer.target import LocalTarget
from tests.support.cli import run_cli
from tests.support.k8s_package import k8s_answers, self_signed_pair
from tests.support.package import service_account_json
from tests.support.vendor_files import VENDOR, vendor_missing

CHARTS = sorted(VENDOR.glob("carto-*.tgz")) if VENDOR.is_dir() else []
DB_PASSWORD = "db-Passw0rd-vendor-test"
ADMIN_PASSWORD = "admin-Passw0rd-vendor-test"
REDIS_PASSWORD = "redis-Passw0rd-vendor-test"


def _require_vendor() -> None:
    if CHARTS:
        return
    reason = f"the vendor's real charts are not at {VENDOR} (a clone of the project alone)"
    vendor_missing(reason)


@pytest.fixture(params=[c.name for c in CHARTS] or ["no-vendor-chart"])
def chart(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A temporary copy of one real chart archive."""
    _require_vendor()
    copy = tmp_path_factory.mktemp("chart") / str(request.param)
    shutil.copyfile(VENDOR / str(request.param), copy)
    return copy


@pytest.fixture
def helm_on_path(helm_bin: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The real helm first on PATH, with private helm folders (no repositories, offline)."""
    monkeypatch.setenv("PATH", f"{helm_bin.parent}{os.pathsep}{os.environ['PATH']}")
    for name in ("HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME"):
        monkeypatch.setenv(name, str(tmp_path / "helm-home" / name.lower()))
    return helm_bin


def chart_member(chart: Path, name: str) -> str:
    with tarfile.open(chart) as archive:
        member = next(m for m in archive.getmembers() if m.name.split("/", 1)[-1] == name)
        handle = archive.extractfile(member)
        assert handle is not None
        return handle.read().decode()


def vendor_package(chart: Path, folder: Path, version: str) -> Path:
    """carto-values.yaml + carto-secrets.yaml in the vendor's format, with fake values: the
    keys come from the chart's values.yaml (cartoConfigValues, cartoSecrets) and from what its
    templates read of cartoConfigValues (customerPackageVersion is not in values.yaml)."""
    values = yaml.load(chart_member(chart, "values.yaml"),  # noqa: S506
                       Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    client = secrets.token_hex(4)
    config: dict[str, Any] = {}
    for key, default in values["cartoConfigValues"].items():
        config[key] = f"fake-{key}-{client}" if isinstance(default, str) else default
    with tarfile.open(chart) as archive:
        templates = "".join(
            archive.extractfile(m).read().decode()  # type: ignore[union-attr]
            for m in archive.getmembers() if m.isfile() and "/templates/" in m.name
            and m.name.count("/") == 2)
    for key in sorted(set(re.findall(r"\.Values\.cartoConfigValues\.(\w+)", templates))):
        config.setdefault(key, f"fake-{key}-{client}")
    config.update({"selfHostedTenantId": f"onp-{client}",
                   "selfHostedGcpProjectId": f"carto-tnt-onp-{client}",
                   "customerPackageVersion": version})
    project = f"carto-tnt-onp-{client}"
    cartosecrets = {key: {"value": secrets.token_urlsafe(24)}
                    for key in values["cartoSecrets"]}
    cartosecrets["defaultGoogleServiceAccount"] = {"value": service_account_json(project)}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "carto-values.yaml").write_text(yaml.safe_dump({"cartoConfigValues": config}))
    (folder / "carto-secrets.yaml").write_text(yaml.safe_dump({"cartoSecrets": cartosecrets}))
    (folder / "carto-secrets.yaml").chmod(0o600)
    return folder


def minimum_of(chart: Path) -> str:
    return str(yaml.safe_load(chart_member(chart, "Chart.yaml"))["annotations"]["minVersion"])


def leaf_paths(data: Any, prefix: str = "") -> list[str]:
    if isinstance(data, dict) and data:
        return [p for key, value in data.items() for p in leaf_paths(value, f"{prefix}{key}.")]
    return [prefix.rstrip(".")]


def has_key(values: dict[str, Any], dotted: str) -> bool:
    node: Any = values
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def helm_template(helm: Path, chart: Path, *files: Path) -> list[dict[str, Any]]:
    argv = [str(helm), "template", "carto", str(chart), "--namespace", "carto"]
    for file in files:
        argv += ["-f", str(file)]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return [d for d in yaml.load_all(result.stdout, Loader=loader)  # noqa: S506
            if isinstance(d, dict)]


# ---- the settings an admin chooses ----------------------------------------------------------


def scenario(name: str, tmp_path: Path, package: Path, chart: Path) -> dict[str, Any]:
    data = k8s_answers(None, package)
    data["kubernetes"]["chart"] = str(chart)
    if name == "given-certificate":
        cert, key = self_signed_pair(tmp_path / "tls", "carto.example.com")
        data["tls"] = {"certificate_file": str(cert), "key_file": str(key)}
    elif name == "external-db-tls":
        ca, _ = self_signed_pair(tmp_path / "db-ca", "db.internal")
        data["database"] = {"bundled": False, "host": "db.internal", "port": 6432,
                            "password": DB_PASSWORD, "admin_password": ADMIN_PASSWORD,
                            "ssl": {"enabled": True, "mode": "verify-full",
                                    "ca_file": str(ca)}}
    elif name == "external-redis":
        ca, _ = self_signed_pair(tmp_path / "redis-ca", "redis.internal")
        data["redis"] = {"bundled": False, "host": "redis.internal", "port": 6380,
                         "password": REDIS_PASSWORD, "tls_enabled": True,
                         "tls_ca_file": str(ca)}
    elif name == "proxy":
        ca, _ = self_signed_pair(tmp_path / "proxy-ca", "proxy.internal")
        data["network"] = {"proxy": {"https": "http://proxy.internal:3128",
                                     "no_proxy": "localhost,.internal",
                                     "ca_file": str(ca)}}
    elif name == "mirror":
        data["kubernetes"]["image_registry"] = "registry.internal:5000"
    else:
        assert name == "generated-certificate"
    return data


SCENARIOS = ["generated-certificate", "given-certificate", "external-db-tls", "external-redis",
             "proxy", "mirror"]


@pytest.mark.parametrize("name", SCENARIOS)
def test_the_real_chart_renders_with_our_customizations_and_knows_every_key(
        name: str, chart: Path, helm_on_path: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    package = vendor_package(chart, tmp_path / "package", minimum_of(chart))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    redactor = Redactor()
    answers = parse_answers(scenario(name, tmp_path, package, chart), redactor=redactor)
    plan = plan_render(answers, LocalTarget(), redactor=redactor)
    change = next(c for c in plan.changes if c.path.endswith(CUSTOMIZATIONS))
    customizations = work / CUSTOMIZATIONS
    customizations.write_bytes(change.after)
    written = yaml.safe_load(change.after)

    chart_values = read_chart_files(chart).values
    unknown = [p for p in leaf_paths(written) if not has_key(chart_values, p)]
    assert unknown == [], f"keys the chart's values.yaml does not have: {unknown}"
    assert not (has_key(written, "tlsCerts.existingSecret")
                and has_key(written, "router.tlsCertificates")), "the chart refuses both"
    # No secret in the file the admin keeps.
    text = change.after.decode()
    for secret in (DB_PASSWORD, ADMIN_PASSWORD, REDIS_PASSWORD, "PRIVATE KEY"):
        assert secret not in text

    manifests = helm_template(helm_on_path, chart, package / "carto-values.yaml",
                              package / "carto-secrets.yaml", customizations)
    names = secret_names(answers)
    images = [c["image"] for m in manifests if m.get("kind") in ("Deployment", "StatefulSet",
                                                               "Job")
              for c in (m["spec"]["template"]["spec"].get("containers") or [])
              + (m["spec"]["template"]["spec"].get("initContainers") or [])]
    assert images
    if name == "mirror":
        assert all(i.startswith("registry.internal:5000/") for i in images), images
    if name == "given-certificate":
        assert written["tlsCerts"]["existingSecret"]["name"] == names.tls
        assert secret_keys_consumed(manifests, names.tls)  # the router mounts the pair
    if name == "external-redis":
        assert REDIS_PASSWORD_KEY in secret_keys_consumed(manifests, names.redis)
        assert "redis.internal" in json.dumps(manifests)
    if name == "proxy":
        assert "proxy.internal" in json.dumps(manifests)
        assert ".svc.cluster.local" in written["externalProxy"]["excludedDomains"]
    if name == "external-db-tls":
        # Recent charts give the migrations the admin password only for the bundled
        # database: nothing here may demand or pass admin credentials.
        consumed = secret_keys_consumed(manifests, names.postgresql)
        assert set(consumed) == {DB_PASSWORD_KEY}, consumed
        database = written["externalPostgresql"]
        assert not {"adminUser", "adminDatabase", "adminPassword",
                    "existingSecretAdminPasswordKey"} & set(database)
        assert database["sslEnabled"] is True and "BEGIN CERTIFICATE" in database["sslCA"]
        [secret] = [m for m in secret_manifests(answers, redactor, admin_credentials=False)
                    if m["metadata"]["name"] == names.postgresql]
        assert set(secret["data"]) == {DB_PASSWORD_KEY}
        assert base64.b64decode(secret["data"][DB_PASSWORD_KEY]).decode() == DB_PASSWORD
        # What the stack does with TLS, said plainly in the plan.
        assert any("sslmode require" in n and "db.tls" in n for n in plan.notes), plan.notes
        assert any("nothing creates the user workspace_admin" in n for n in plan.notes)
        assert not any("will be created" in n for n in plan.notes)


def test_the_chart_facts_name_the_registries_and_credentials_it_consumes(
        chart: Path, helm_on_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = vendor_package(chart, tmp_path / "package", minimum_of(chart))
    monkeypatch.chdir(tmp_path)
    redactor = Redactor()
    data = scenario("external-db-tls", tmp_path, package, chart)
    del data["database"]["admin_password"]  # not demanded: the chart does not read it
    answers = parse_answers(data, redactor=redactor)
    log_file = tmp_path / "carto-installer.log"
    setup_logging(str(log_file), redactor)
    logger = logging.getLogger("installer")
    try:
        facts = chart_facts(answers, LocalTarget(), redactor=redactor)
    finally:
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
            handler.close()
    # helm's rendering is logged, but the rendered Secrets (the package's secrets in base64)
    # never pass through its output.
    logged = log_file.read_text()
    assert "helm template" in logged
    package_secrets = yaml.safe_load((package / "carto-secrets.yaml").read_text())
    for entry in package_secrets["cartoSecrets"].values():
        value = str(entry["value"])
        assert value not in logged
        assert base64.b64encode(value.encode()).decode()[:24] not in logged
    assert facts.chart.minimum == ("minVersion", minimum_of(chart))
    assert facts.password_readers and not facts.admin_credentials_used
    assert set(facts.database_ssl_modes) == {"require"}
    # The registries are those of the images the rendered chart runs, read independently.
    rendered = subprocess.run(
        [str(helm_on_path), "template", "carto", str(chart), "-f",
         str(package / "carto-values.yaml"), "-f", str(package / "carto-secrets.yaml")],
        capture_output=True, text=True, check=True).stdout
    expected = {registry_of(i.strip("'\"")) for i in re.findall(r"image:\s*(\S+)", rendered)}
    bundled = chart_facts(parse_answers(scenario("generated-certificate", tmp_path, package,
                                                 chart), redactor=redactor),
                          LocalTarget(), redactor=redactor)
    assert set(bundled.registries) == expected
    plan = plan_render(answers, LocalTarget(), redactor=redactor)  # no admin password: fine
    assert any("no admin user or password is passed" in n for n in plan.notes)

    ctx = CheckContext(LocalTarget(), "kubernetes", parse_answers(
        scenario("mirror", tmp_path, package, chart), redactor=redactor), redactor)
    registries, reason = kubernetes_registries(ctx)
    assert registries == [("registry.internal", 5000)]
    assert "chart carto" in reason
    assert registry_endpoint("docker.io") == ("registry-1.docker.io", 443)


# ---- the minimum package version ---------------------------------------------------------------


VERSION_PAIRS = [("2026.4.1", "2026.4.1"), ("2026.4.1", "2026.4.2"), ("2026.4.1", "2026.3.30"),
                 ("2026.4.1", "2026.10.1"), ("2026.10.1", "2026.9.1"), ("2026.4.1", "2026.4"),
                 ("2026.4", "2026.4.0"), ("2026.4.1", "2026.04.1"), ("2026.4.1", "2027.1.1"),
                 ("2026.4.1", "2026.4.1-rc1"), ("2026.4.1", "2026.4.1~rc1"),
                 ("2025.12.31", "2026.1.1")]


def test_our_judge_agrees_with_the_charts_own_version_check(chart: Path, helm_on_path: Path,
                                                             tmp_path: Path) -> None:
    """The chart's pre-install hook script, taken from the rendered chart and run with bash,
    and our judge give the same verdict; its minimum is the annotation we read."""
    package = vendor_package(chart, tmp_path / "package", "2026.6.1")
    manifests = helm_template(helm_on_path, chart, package / "carto-values.yaml",
                              package / "carto-secrets.yaml")
    scripts = {key: text for m in manifests if m.get("kind") == "ConfigMap"
               for key, text in (m.get("data") or {}).items()
               if key.endswith(".sh") and "sort -V" in str(text)}
    assert len(scripts) == 1, list(scripts)
    [script] = scripts.values()
    hooks = [c for m in manifests if m.get("kind") == "Job"
             and "pre-install" in str((m.get("metadata") or {}).get("annotations"))
             for c in m["spec"]["template"]["spec"]["containers"]]
    env = {e["name"]: str(e.get("value")) for c in hooks for e in c.get("env") or []}
    package_var = next(k for k, v in env.items() if v == "2026.6.1")
    minimum_var = next(k for k, v in env.items() if k != package_var and v == minimum_of(chart))
    assert read_chart_files(chart).minimum == ("minVersion", env[minimum_var])
    (tmp_path / "check.sh").write_text(script)
    # The Compose release's install.sh compares with its own function: the same verdicts.
    install_sh = sorted(VENDOR.glob("compose-*/install.sh"))
    compose_check = ""
    if install_sh:
        text = install_sh[-1].read_text()
        match = re.search(r"^(?:function\s+)?_check_min_cloud_version\s*\(\)\s*\{.*?^\}", text,
                          re.M | re.S)
        assert match, "install.sh no longer has _check_min_cloud_version"
        compose_check = match.group(0)
    canonical = re.compile(r"[1-9]\d*(\.(0|[1-9]\d*)){2}")
    for minimum, version in VERSION_PAIRS:
        ours = version_at_least(version, minimum)
        run = subprocess.run(["bash", str(tmp_path / "check.sh")], capture_output=True,
                             env={"PATH": os.environ["PATH"], "LC_ALL": "C",
                                  minimum_var: minimum, package_var: version}, check=False)
        assert (run.returncode == 0) == ours, (minimum, version)
        if compose_check:
            run = subprocess.run(
                ["bash", "-c", f'{compose_check}\n_check_min_cloud_version "$1" "$2"', "x",
                 minimum, version], capture_output=True, env={"PATH": os.environ["PATH"],
                                                              "LC_ALL": "C"}, check=False)
            assert (run.returncode == 0) == ours, ("install.sh", minimum, version)
        if canonical.fullmatch(minimum) and canonical.fullmatch(version):
            # Where packaging.version reads both the same way, it agrees.
            assert ours == (Version(version) >= Version(minimum)), (minimum, version)


def test_a_package_below_the_charts_minimum_fails_license_version_with_exit_3(
        chart: Path, helm_on_path: Path, tmp_path: Path) -> None:
    minimum = minimum_of(chart)
    year, month, _ = minimum.split(".")
    older = f"{int(year) - 1}.{month}.1"
    for version, status in ((older, "fail"), (minimum, "pass")):
        package = vendor_package(chart, tmp_path / f"package-{version}", version)
        answers = tmp_path / f"answers-{version}.yaml"
        answers.write_text(yaml.safe_dump(k8s_answers(None, package) | {
            "kubernetes": {"chart": str(chart), "kubeconfig": str(tmp_path / "none")}}))
        result = run_cli("preflight", "--answers", str(answers), "--only", "license",
                         "--format", "json", cwd=tmp_path,
                         env={"PATH": os.environ["PATH"]})
        found = {c["id"]: c for c in json.loads(result.stdout)["checks"]}
        check = found["license.version"]
        assert check["status"] == status, check
        if status == "fail":
            assert result.returncode == 3
            assert older in check["message"] and minimum in check["message"]
            assert "minVersion" in check["message"]
            assert "newer installation package" in check["remediation"]
            assert "Self-Hosted" in check["remediation"]
        else:
            assert result.returncode == 0, result.stdout + result.stderr


def test_deploy_with_a_too_old_package_stops_before_helm_installs_anything(
        chart: Path, k8s_cluster: Any, helm_bin: Path, kubectl_bin: Path,
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from installer.deploy.helm import deploy_kubernetes
    from tests.support.k8s_package import client_environment

    client_environment(k8s_cluster, monkeypatch, helm_bin.parent, kubectl_bin.parent)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    package = vendor_package(chart, tmp_path / "package", "2025.1.1")
    data = k8s_answers(k8s_cluster, package)
    data["kubernetes"]["chart"] = str(chart)
    redactor = Redactor()
    k8s_cluster.reset_requests()
    with pytest.raises(DeployError) as caught:
        deploy_kubernetes(parse_answers(data, redactor=redactor), LocalTarget(),
                          redactor=redactor, skip=("egress", "net", "db", "tls"),
                          resolver=lambda name: ["127.0.0.1"])
    assert caught.value.exit_code == 3
    assert "license.version" in caught.value.message
    assert k8s_cluster.mutation_counts() == Counter()
    assert not (work / CUSTOMIZATIONS).exists()


# ---- a chart folder without its subcharts ------------------------------------------------------


def test_a_chart_checkout_without_charts_is_refused_with_the_fix_and_exit_2(
        chart: Path, helm_on_path: Path, tmp_path: Path) -> None:
    with tarfile.open(chart) as archive:
        archive.extractall(tmp_path / "unpacked", filter="data")
    [folder] = list((tmp_path / "unpacked").iterdir())
    # The unpacked package (subcharts included) is a usable chart folder...
    assert read_chart_files(folder).minimum == ("minVersion", minimum_of(chart))
    # ...a git checkout of chart/ has no charts/ folder.
    shutil.rmtree(folder / "charts")
    with pytest.raises(ChartIncomplete) as caught:
        read_chart_files(folder)
    assert caught.value.exit_code == 2
    assert "helm pull" in caught.value.remediation
    assert "helm dependency build" in caught.value.remediation

    package = vendor_package(chart, tmp_path / "package", minimum_of(chart))
    answers = tmp_path / "answers.yaml"
    answers.write_text(yaml.safe_dump(k8s_answers(None, package) | {
        "kubernetes": {"chart": str(folder), "kubeconfig": str(tmp_path / "none")}}))
    result = run_cli("deploy", "--answers", str(answers), "--yes", cwd=tmp_path,
                     env={"PATH": os.environ["PATH"]})
    assert result.returncode == 2, result.stdout + result.stderr
    output = result.stdout + result.stderr
    assert "charts/" in output and "helm dependency build" in output
    assert "k8s.cluster" not in output  # refused before the preflight ran
    assert not (tmp_path / CUSTOMIZATIONS).exists()
    # The preflight alone says it too, as a failed license.version.
    result = run_cli("preflight", "--answers", str(answers), "--only", "license",
                     "--format", "json", cwd=tmp_path, env={"PATH": os.environ["PATH"]})
    check = {c["id"]: c for c in json.loads(result.stdout)["checks"]}["license.version"]
    assert check["status"] == "fail" and result.returncode == 3
    assert "helm dependency build" in check["remediation"]


# ---- the external database, checked as the chart needs it ----------------------------------------


@pytest.fixture
def newest_chart(tmp_path: Path) -> Path:
    _require_vendor()
    copy = tmp_path / CHARTS[-1].name
    shutil.copyfile(CHARTS[-1], copy)
    return copy


def carto_db_context(server: Any, chart: Path, package: Path, user: str, password: str,
                     database: str) -> CheckContext:
    data = k8s_answers(None, package)
    data["kubernetes"]["chart"] = str(chart)
    data["database"] = {"bundled": False, "host": "127.0.0.1", "port": server.port,
                        "user": user, "password": password, "database": database,
                        "ssl": {"enabled": True, "mode": "verify-full",
                                "ca_file": str(server.ca_file)}}
    redactor = Redactor()
    return CheckContext(LocalTarget(), "kubernetes", parse_answers(data, redactor=redactor),
                        redactor)


def test_with_a_chart_that_passes_no_admin_the_carto_user_is_checked_instead(
        newest_chart: Path, helm_on_path: Path, postgres_server: Any, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """No admin credentials asked for; the CARTO user must log in to its database and may
    create objects there; a missing user is said to be created by nothing."""
    from psycopg import sql

    from installer.checks import db
    from installer.checks.base import Status
    from installer.checks.engine import run_checks

    monkeypatch.chdir(tmp_path)
    package = vendor_package(newest_chart, tmp_path / "package", minimum_of(newest_chart))
    suffix = secrets.token_hex(3)
    owner, guest, password = f"vend_owner_{suffix}", f"vend_guest_{suffix}", "Vend-pass-1"
    postgres_server.create_role(owner, password)
    postgres_server.create_role(guest, password)
    postgres_server.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
        sql.Identifier(f"vend_ws_{suffix}"), sql.Identifier(owner)))

    def run(user: str) -> dict[str, Any]:
        ctx = carto_db_context(postgres_server, newest_chart, package, user, password,
                               f"vend_ws_{suffix}")
        return {r.id: r for r in run_checks(ctx, db.CHECKS)}

    results = run(owner)
    assert results["db.connect"].status == Status.PASS, results["db.connect"]
    assert f"as the CARTO user {owner}" in results["db.connect"].required
    assert results["db.privileges"].status == Status.SKIP
    assert "CREATEROLE" in results["db.privileges"].message
    assert results["db.workspace"].status == Status.PASS, results["db.workspace"]
    assert results["db.tls"].status == Status.PASS, results["db.tls"]
    assert "connect with sslmode require" in results["db.tls"].message

    results = run(guest)  # logs in (CONNECT is PUBLIC's) but owns nothing there
    workspace = results["db.workspace"]
    assert workspace.status == Status.FAIL, workspace
    assert f"GRANT CREATE ON DATABASE vend_ws_{suffix} TO {guest};" in workspace.remediation

    results = run(f"vend_absent_{suffix}")
    connect = results["db.connect"]
    assert connect.status == Status.FAIL
    assert "nothing creates the user" in connect.message
    assert "CREATE ROLE" in connect.remediation and "CREATE DATABASE" in connect.remediation
    assert not any("will be created" in r.message for r in results.values())
