"""Rendering customizations.yaml for Kubernetes, checked by the REAL helm 3.17 (`helm template`,
`helm lint`) on the test chart. Rendering needs no cluster."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from installer.answers import parse_answers
from installer.errors import AnswersError, InputError
from installer.redact import Redactor
from installer.render import apply_render, plan_render
from installer.target import LocalTarget
from tests.support.cli import run_cli
from tests.support.k8s_package import (
    CHART,
    HelmPackage,
    k8s_answers,
    make_helm_package,
    self_signed_pair,
)

DB_PASSWORD = "db-Passw0rd-that-is-secret"
ADMIN_PASSWORD = "admin-Passw0rd-also-secret"
REDIS_PASSWORD = "redis-Passw0rd-secret-too"
def _real_certificate() -> str:
    """A real certificate: CA files are parsed (the one verdict shared with preflight), so a
    truncated placeholder would rightly be refused."""
    with tempfile.TemporaryDirectory(prefix="proxy-ca-") as folder:
        return self_signed_pair(Path(folder), "proxy.internal")[0].read_text()


PROXY_CA = _real_certificate()


@pytest.fixture
def package(tmp_path: Path) -> HelmPackage:
    return make_helm_package(tmp_path / "package")


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def full_answers(tmp_path: Path, package: HelmPackage, **extra: Any) -> dict[str, Any]:
    """External PostgreSQL and Redis with passwords, a certificate, a proxy, a mirror."""
    cert, key = self_signed_pair(tmp_path / "tls", "carto.example.com")
    ca = tmp_path / "proxy-ca.pem"
    ca.write_text(PROXY_CA)
    data = k8s_answers(None, package.path, **{
        "tls": {"certificate_file": str(cert), "key_file": str(key)},
        "database": {"bundled": False, "host": "db.internal", "port": 6432,
                     "password": DB_PASSWORD, "admin_password": ADMIN_PASSWORD,
                     "ssl": {"enabled": True}},
        "redis": {"bundled": False, "host": "redis.internal", "password": REDIS_PASSWORD,
                  "tls_enabled": True},
        "network": {"proxy": {"https": "http://proxy.internal:3128",
                              "no_proxy": "localhost,.internal", "ca_file": str(ca)}},
    })
    data["kubernetes"]["image_registry"] = "registry.internal:5000"
    data.update(extra)
    return data


def plan_for(data: dict[str, Any], redactor: Redactor | None = None) -> Any:
    redactor = redactor or Redactor()
    answers = parse_answers(data, redactor=redactor)
    return plan_render(answers, LocalTarget(), redactor=redactor), answers


def render(data: dict[str, Any]) -> dict[str, Any]:
    plan, _ = plan_for(data)
    apply_render(plan, LocalTarget())
    return yaml.safe_load(Path("customizations.yaml").read_text())


def test_customizations_hold_every_setting_and_no_secret(tmp_path: Path, package: HelmPackage,
                                                         workdir: Path) -> None:
    values = render(full_answers(tmp_path, package))
    assert values["appConfigValues"] == {"selfHostedDomain": "carto.example.com"}
    assert values["tlsCerts"] == {
        "httpsEnabled": True, "autoGenerate": False,
        "existingSecret": {"name": "carto-tls-certificate", "keyKey": "tls.key",
                           "certKey": "tls.crt"}}
    assert values["router"] == {"service": {"type": "LoadBalancer"}}
    assert values["internalPostgresql"] == {"enabled": False}
    assert values["externalPostgresql"] == {
        "host": "db.internal", "port": "6432", "user": "workspace_admin",
        "database": "workspace", "adminUser": "postgres", "adminDatabase": "postgres",
        "sslEnabled": True, "existingSecret": "carto-external-postgresql",
        "existingSecretPasswordKey": "carto-password",
        "existingSecretAdminPasswordKey": "admin-password"}
    assert values["internalRedis"] == {"enabled": False}
    assert values["externalRedis"] == {
        "host": "redis.internal", "port": "6379", "tlsEnabled": True,
        "existingSecret": "carto-external-redis",
        "existingSecretPasswordKey": "carto-redis-password"}
    proxy = values["externalProxy"]
    assert proxy["enabled"] is True and proxy["host"] == "proxy.internal"
    assert proxy["port"] == 3128 and proxy["type"] == "http"
    assert proxy["excludedDomains"][0] == ".svc.cluster.local"
    assert ".internal" in proxy["excludedDomains"]
    assert proxy["sslCA"] == PROXY_CA
    assert values["global"] == {"imageRegistry": "registry.internal:5000"}

    text = (workdir / "customizations.yaml").read_text()
    key_lines = [line for line in (tmp_path / "tls" / "privkey.pem").read_text().splitlines()
                 if "-----" not in line]
    for secret in [DB_PASSWORD, ADMIN_PASSWORD, REDIS_PASSWORD, *package.secrets, *key_lines]:
        assert secret not in text
    assert (workdir / "customizations.yaml").stat().st_mode & 0o777 == 0o644
    # A package folder is used where it is: nothing copied next to customizations.yaml.
    assert sorted(p.name for p in workdir.iterdir()) == ["customizations.yaml"]


def test_without_a_certificate_the_chart_generates_one(tmp_path: Path, package: HelmPackage,
                                                       workdir: Path) -> None:
    values = render(k8s_answers(None, package.path))
    assert values["tlsCerts"] == {"httpsEnabled": True, "autoGenerate": True}
    assert values["internalPostgresql"] == {"enabled": True}
    assert values["externalProxy"] == {"enabled": False}
    assert "global" not in values and "externalPostgresql" not in values


def test_a_rerun_changes_nothing_and_a_change_keeps_the_admins_keys(
        tmp_path: Path, package: HelmPackage, workdir: Path) -> None:
    data = k8s_answers(None, package.path)
    render(data)
    plan, _ = plan_for(data)
    assert plan.empty and plan.diff(Redactor()) == ""

    # The admin adds a customisation of their own and pastes a password in (a common mistake).
    existing = yaml.safe_load((workdir / "customizations.yaml").read_text())
    existing["appConfigValues"]["defaultAtLocation"] = {"bigquery": "carto-un.carto"}
    existing["externalPostgresql"] = {"password": "pasted-in-by-hand"}
    before = "# my notes\n" + yaml.safe_dump(existing)
    (workdir / "customizations.yaml").write_text(before)

    plan, _ = plan_for(data)
    assert not plan.empty
    assert any("removed externalPostgresql.password" in note for note in plan.notes)
    apply_render(plan, LocalTarget())
    values = yaml.safe_load((workdir / "customizations.yaml").read_text())
    assert values["appConfigValues"]["defaultAtLocation"] == {"bigquery": "carto-un.carto"}
    assert "pasted-in-by-hand" not in (workdir / "customizations.yaml").read_text()
    backups = list(workdir.glob("customizations.yaml.bak.*"))
    assert len(backups) == 1 and backups[0].read_text() == before
    assert plan_for(data)[0].empty

    # The admin's comments survive as long as the meaning does not change.
    commented = "# keep me\n" + (workdir / "customizations.yaml").read_text()
    (workdir / "customizations.yaml").write_text(commented)
    assert plan_for(data)[0].empty


def test_the_other_tls_style_is_removed_so_the_chart_renders(
        tmp_path: Path, package: HelmPackage, workdir: Path) -> None:
    (workdir / "customizations.yaml").write_text(yaml.safe_dump({"router": {
        "tlsCertificates": {"certificateValueBase64": "Y2VydA==",
                            "privateKeyValueBase64": "a2V5"}}}))
    data = full_answers(tmp_path, package)
    plan, _ = plan_for(data)
    assert any("router.tlsCertificates" in note for note in plan.notes)
    apply_render(plan, LocalTarget())
    assert "privateKeyValueBase64" not in (workdir / "customizations.yaml").read_text()


def test_a_zip_package_is_extracted_with_the_secrets_private(tmp_path: Path,
                                                            workdir: Path) -> None:
    package = make_helm_package(tmp_path / "package", as_zip=True)
    plan, _ = plan_for(k8s_answers(None, package.path))
    secret_change = next(c for c in plan.changes if c.path.endswith("carto-secrets.yaml"))
    assert secret_change.secret and secret_change.mode == 0o600
    assert "secret file" in secret_change.diff(Redactor())
    apply_render(plan, LocalTarget())
    assert (workdir / "carto-secrets.yaml").read_text() == package.secrets_text
    assert (workdir / "carto-secrets.yaml").stat().st_mode & 0o777 == 0o600
    assert (workdir / "carto-values.yaml").read_text() == package.values
    assert plan_for(k8s_answers(None, package.path))[0].empty


def test_bad_input_is_refused_and_nothing_is_written(tmp_path: Path, package: HelmPackage,
                                                     workdir: Path) -> None:
    other_cert, _ = self_signed_pair(tmp_path / "other", "carto.example.com")
    _, key = self_signed_pair(tmp_path / "tls", "carto.example.com")
    data = k8s_answers(None, package.path,
                       tls={"certificate_file": str(other_cert), "key_file": str(key)})
    with pytest.raises(AnswersError, match="does not belong to the certificate"):
        plan_for(data)
    data = k8s_answers(None, package.path, database={"bundled": False, "host": "db.internal"})
    with pytest.raises(AnswersError, match="database.password"):
        plan_for(data)
    data = k8s_answers(None, package.path, target={"host": "vm.internal"})
    with pytest.raises(InputError, match="must not name a `target:`"):
        plan_for(data)
    assert list(workdir.iterdir()) == []


def test_kubernetes_names_are_validated() -> None:
    with pytest.raises(AnswersError, match="kubernetes.namespace"):
        parse_answers({"platform": "kubernetes", "kubernetes": {"namespace": "Carto_NS"}})
    with pytest.raises(AnswersError, match="at most 53"):
        parse_answers({"platform": "kubernetes", "kubernetes": {"release": "c" * 54}})
    with pytest.raises(AnswersError, match="kubernetes.service_type"):
        parse_answers({"platform": "kubernetes", "kubernetes": {"service_type": "Ingress"}})


def test_cli_render_needs_no_cluster_and_dry_run_writes_nothing(
        tmp_path: Path, package: HelmPackage) -> None:
    answers = tmp_path / "answers.yaml"
    answers.write_text(yaml.safe_dump(full_answers(tmp_path, package)))
    answers.chmod(0o600)
    work = tmp_path / "cli"
    work.mkdir()
    dry = run_cli("render", "--answers", str(answers), "--dry-run", cwd=work)
    assert dry.returncode == 0, dry.stderr
    assert "+  selfHostedDomain: carto.example.com" in dry.stdout
    assert sorted(p.name for p in work.iterdir()) == ["carto-installer.log"]
    result = run_cli("render", "--answers", str(answers), cwd=work)
    assert result.returncode == 0, result.stderr
    # Next to the answers file (CONTRACT.md), wherever the command is run from.
    assert f"wrote {tmp_path / 'customizations.yaml'}" in result.stdout
    assert not (work / "customizations.yaml").exists()
    again = run_cli("render", "--answers", str(answers), cwd=work)
    assert "nothing to change" in again.stdout
    log = (work / "carto-installer.log").read_text()
    for secret in [DB_PASSWORD, ADMIN_PASSWORD, REDIS_PASSWORD, *package.secrets]:
        assert secret not in log + dry.stdout + result.stdout


# ---- the real helm on the test chart ----------------------------------------------------------


def helm(helm_bin: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(helm_bin), *args], capture_output=True, text=True, cwd=cwd,
                          check=False, timeout=60)


def chart_files(package: HelmPackage, work: Path) -> list[str]:
    return ["-f", str(package.path / "carto-values.yaml"),
            "-f", str(package.path / "carto-secrets.yaml"),
            "-f", str(work / "customizations.yaml")]


def test_helm_lint_and_template_accept_the_rendered_values(
        tmp_path: Path, package: HelmPackage, workdir: Path, helm_bin: Path) -> None:
    render(full_answers(tmp_path, package))
    files = chart_files(package, workdir)
    lint = helm(helm_bin, "lint", str(CHART), *files, cwd=workdir)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in lint.stdout
    template = helm(helm_bin, "template", "carto", str(CHART), "-n", "carto", *files,
                    cwd=workdir)
    assert template.returncode == 0, template.stderr
    objects = {(o["kind"], o["metadata"]["name"]): o
               for o in yaml.safe_load_all(template.stdout) if o}
    config = objects[("ConfigMap", "carto-config")]["data"]
    assert config["SELFHOSTED_DOMAIN"] == "carto.example.com"
    assert config["SELFHOSTED_TENANT_ID"] == package.tenant
    assert config["TLS_EXISTING_SECRET"] == "carto-tls-certificate"
    assert config["WORKSPACE_POSTGRES_HOST"] == "db.internal"
    assert config["WORKSPACE_POSTGRES_PORT"] == "6432"
    assert config["REDIS_HOST"] == "redis.internal"
    assert config["HTTPS_PROXY"] == "http://proxy.internal:3128"
    assert config["NO_PROXY"].startswith(".svc.cluster.local,")
    router = objects[("Deployment", "carto-router")]["spec"]["template"]["spec"]
    assert router["containers"][0]["image"].startswith("registry.internal:5000/carto/router:")
    assert router["volumes"][0]["secret"]["secretName"] == "carto-tls-certificate"
    assert objects[("Service", "carto-router")]["spec"]["type"] == "LoadBalancer"
    # With existingSecret the chart puts no database password into its own Secret.
    chart_secret = objects[("Secret", "carto-secrets")]["data"]
    assert set(chart_secret) == {"defaultGoogleServiceAccount"}


def test_helm_template_with_bundled_services(tmp_path: Path, package: HelmPackage,
                                            workdir: Path, helm_bin: Path) -> None:
    render(k8s_answers(None, package.path))
    files = chart_files(package, workdir)
    assert helm(helm_bin, "lint", str(CHART), *files, cwd=workdir).returncode == 0
    template = helm(helm_bin, "template", "carto", str(CHART), *files, cwd=workdir)
    assert template.returncode == 0, template.stderr
    config = next(o for o in yaml.safe_load_all(template.stdout)
                  if o and o["kind"] == "ConfigMap")["data"]
    assert config["WORKSPACE_POSTGRES_HOST"] == "carto-postgresql"
    assert config["TLS_AUTOGENERATE"] == "true"


def test_helm_lint_rejects_what_the_installer_never_writes(
        tmp_path: Path, package: HelmPackage, workdir: Path, helm_bin: Path) -> None:
    """The check above can fail: the same lint refuses an internal database switched off
    without a host, as the vendor chart does."""
    render(k8s_answers(None, package.path))
    broken = workdir / "broken.yaml"
    broken.write_text(yaml.safe_dump({"internalPostgresql": {"enabled": False}}))
    lint = helm(helm_bin, "lint", str(CHART), *chart_files(package, workdir), "-f", str(broken),
                cwd=workdir)
    assert lint.returncode != 0
    assert "externalPostgresql" in lint.stdout + lint.stderr
