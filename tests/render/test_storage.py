"""The advanced answers (own buckets, private CA, Maps key, registry login, exposure) as the
vendor's REAL files read them: `docker-compose config` of the real deployment directory and
`helm template` of the real chart, both from ../shared/vendor (copied to a temp dir first).
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from installer.answers import parse_answers
from installer.errors import AnswersError
from installer.redact import Redactor
from installer.render import apply_render, plan_render
from installer.render.helm import secret_manifests
from installer.target import LocalTarget
from tests.services.tls_ca import TestCA
from tests.support.k8s_package import make_helm_package
from tests.support.package import make_package, service_account_json
from tests.support.vendor_files import VENDOR, vendor_missing

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_RELEASE = "compose-2026.7.16"
CHART_TGZ = "carto-1.280.1.tgz"
DOMAIN = "carto.example.com"
S3_SECRET = "s3-Secret/with+chars=="
AZURE_KEY = base64.b64encode(b"azure-account-key-bytes-0123456789").decode()
MAPS_KEY = "AIzaSy-maps-key-secret"
REGISTRY_PASSWORD = "registry-Passw0rd-secret"


def vendor(name: str) -> Path:
    path = VENDOR / name
    if not path.exists():
        vendor_missing(f"the vendor's files are not here ({path})")
    return path


def env() -> dict[str, str]:
    return {"ADMIN": "admin-Secret-1", "USER": "user-Secret-2", "S3_KEY": "AKIAEXAMPLEKEY",
            "S3_SECRET": S3_SECRET, "AZ_KEY": AZURE_KEY, "MAPS": MAPS_KEY,
            "REG": REGISTRY_PASSWORD}


def storage_for(provider: str, tmp_path: Path) -> dict[str, Any]:
    buckets = {"imports": "acme-client", "thumbnails": "acme-thumbs"}
    if provider == "s3":
        return {"provider": "s3", "endpoint": "https://minio.internal:9000",
                "region": "eu-west-1", "buckets": {**buckets, "import": "acme-import"},
                "access_key_id_env": "S3_KEY", "secret_access_key_env": "S3_SECRET"}
    if provider == "azure-blob":
        return {"provider": "azure-blob", "account": "acmestorage", "buckets": buckets,
                "thumbnails_public": False, "account_key_env": "AZ_KEY"}
    key = tmp_path / "gcs-writer.json"
    key.write_text(service_account_json("acme-buckets"))
    key.chmod(0o600)
    return {"provider": "gcp", "key_file": str(key), "buckets": buckets}


# --- Docker Compose ------------------------------------------------------------------------------


def compose_env(directory: Path, service: str) -> dict[str, str]:
    result = subprocess.run(["docker-compose", "config"], cwd=directory, capture_output=True,
                            text=True, timeout=120,
                            env={"PATH": "/usr/local/bin:/usr/bin:/bin",
                                 "HOME": str(Path.home())})
    assert result.returncode == 0, result.stderr
    data = yaml.safe_load(result.stdout)
    return {k: str(v).replace("$$", "$")
            for k, v in data["services"][service]["environment"].items()}


@pytest.mark.parametrize("provider", ["s3", "gcp", "azure-blob"])
def test_compose_real_deployment_resolves_the_bucket_variables(
        provider: str, tmp_path: Path, test_ca: TestCA) -> None:
    directory = tmp_path / "carto"
    shutil.copytree(vendor(COMPOSE_RELEASE), directory)
    package = make_package(tmp_path / "package")
    ca = tmp_path / "corp-ca.pem"
    ca.write_bytes(test_ca.ca_pem)
    redactor = Redactor()
    answers = parse_answers({
        "package": str(package.path), "compose": {"directory": str(directory)},
        "domain": DOMAIN,
        "database": {"bundled": True, "admin_password_env": "ADMIN", "password_env": "USER"},
        "storage": storage_for(provider, tmp_path), "google_maps_api_key_env": "MAPS",
        "network": {"trusted_ca_file": str(ca)},
    }, env=env(), redactor=redactor)
    plan = plan_render(answers, LocalTarget(), redactor=redactor,
                       compose_command=["docker-compose"], compose_version="1.29.2")
    apply_render(plan, LocalTarget())
    seen = compose_env(directory, "workspace-api")
    for family in ("WORKSPACE_THUMBNAILS", "WORKSPACE_IMPORTS", "IMPORT"):
        assert seen[f"{family}_PROVIDER"] == provider
    assert seen["WORKSPACE_THUMBNAILS_BUCKET"] == "acme-thumbs"
    assert seen["WORKSPACE_IMPORTS_BUCKET"] == "acme-client"
    assert seen["IMPORT_DATA_IMPORTS_BUCKET"] == "acme-client"
    assert seen["GOOGLE_MAPS_API_KEY"] == MAPS_KEY
    assert seen["NODE_EXTRA_CA_CERTS"] == "/usr/src/certs/trusted-ca.crt"
    assert (directory / "certs" / "trusted-ca.crt").read_bytes() == test_ca.ca_pem
    if provider == "s3":
        assert seen["WORKSPACE_IMPORTS_SECRETACCESSKEY"] == S3_SECRET
        assert seen["IMPORT_ENDPOINT"] == "https://minio.internal:9000"
        assert seen["WORKSPACE_THUMBNAILS_FORCE_PATH_STYLE"] == "true"
        assert seen["WORKSPACE_THUMBNAILS_REGION"] == "eu-west-1"
        assert seen["IMPORT_BUCKET"] == "acme-import"
        assert seen["WORKSPACE_THUMBNAILS_PUBLIC"] == "true"
    elif provider == "gcp":
        key = directory / "certs" / "storage-key.json"
        assert (key.stat().st_mode & 0o777) == 0o600
        assert json.loads(key.read_text())["project_id"] == "acme-buckets"
        assert seen["WORKSPACE_THUMBNAILS_KEYFILENAME"] == "/usr/src/certs/storage-key.json"
        assert seen["IMPORT_PROJECTID"] == "acme-buckets"
    else:
        assert seen["WORKSPACE_THUMBNAILS_STORAGE_ACCOUNT"] == "acmestorage"
        assert seen["IMPORT_STORAGE_ACCESSKEY"] == AZURE_KEY
        assert seen["WORKSPACE_THUMBNAILS_PUBLIC"] == "false"
    # Secrets stay in the 0600 files only.
    assert (directory / "customer.env").stat().st_mode & 0o077 == 0


def test_incomplete_storage_answers_are_refused_naming_the_key(tmp_path: Path) -> None:
    base = {"provider": "s3", "region": "eu-west-1",
            "buckets": {"imports": "acme-client", "thumbnails": "acme-thumbs"}}
    # Secrets are required when used (a resumed wizard session has not got them yet).
    incomplete = parse_answers({"storage": base}, env=env())
    assert incomplete.storage is not None
    from installer.render.storage import compose_settings

    with pytest.raises(AnswersError) as caught:
        compose_settings(incomplete)
    assert caught.value.path == "storage.access_key_id"
    with pytest.raises(AnswersError) as caught:
        parse_answers({"storage": {"provider": "azure-blob", "buckets": base["buckets"]}})
    assert caught.value.path == "storage.account"
    with pytest.raises(AnswersError) as caught:
        parse_answers({"storage": {"provider": "gcp", "buckets": {"imports": "a-b-c"}}})
    assert caught.value.path == "storage.buckets.thumbnails"
    with pytest.raises(AnswersError) as caught:
        parse_answers({"storage": {**base, "buckets": {"imports": "Bad_Name!",
                                                       "thumbnails": "ok-name"}}})
    assert caught.value.path == "storage.buckets.imports"
    key = tmp_path / "key.pem"
    key.write_text("-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n"
                   "-----BEGIN PRIVATE KEY-----\nx\n-----END PRIVATE KEY-----\n")
    from installer.render.storage import compose_files

    with pytest.raises(AnswersError) as caught:
        compose_files(parse_answers({"network": {"trusted_ca_file": str(key)}}))
    assert caught.value.path == "network.trusted_ca_file" and "private key" in str(caught.value)
    mixed = parse_answers({"storage": {**base, "account": "acmestorage",
                                       "access_key_id": "k", "secret_access_key": "s"}})
    assert any("storage.account applies to azure-blob only" in w for w in mixed.warnings)
    with pytest.raises(AnswersError) as caught:
        parse_answers({"compose": {"registry": "registry.internal:5000",
                                   "registry_username": "ops"}})
    assert caught.value.path == "compose.registry_password_env"


# --- Helm ----------------------------------------------------------------------------------------


def helm(helm_bin: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(helm_bin), *args], capture_output=True, text=True, cwd=cwd,
                          check=False, timeout=120)


@pytest.fixture(scope="module")
def real_chart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("chart")
    with tarfile.open(vendor(CHART_TGZ)) as archive:
        archive.extractall(folder, filter="data")
    return folder / "carto"


@pytest.mark.parametrize("provider", ["s3", "gcp", "azure-blob"])
def test_helm_template_of_the_real_chart_uses_the_values_and_secrets(
        provider: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, helm_bin: Path,
        real_chart: Path, test_ca: TestCA) -> None:
    package = make_helm_package(tmp_path / "package")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    ca = tmp_path / "corp-ca.pem"
    ca.write_bytes(test_ca.ca_pem)
    redactor = Redactor()
    answers = parse_answers({
        "platform": "kubernetes", "package": str(package.path), "domain": DOMAIN,
        "kubernetes": {"image_registry": "registry.internal:5000/carto",
                       "image_pull_username": "ops", "image_pull_password_env": "REG",
                       "service_type": "NodePort", "node_port": 30443},
        "database": {"bundled": True},
        "storage": storage_for(provider, tmp_path), "google_maps_api_key_env": "MAPS",
        "network": {"proxy": {"https": "http://proxy.internal:3128"},
                    "trusted_ca_file": str(ca)},
    }, env=env(), redactor=redactor)
    apply_render(plan_render(answers, LocalTarget(), redactor=redactor), LocalTarget())
    customizations = (work / "customizations.yaml").read_text()
    for secret in (S3_SECRET, AZURE_KEY, MAPS_KEY, REGISTRY_PASSWORD, "PRIVATE KEY"):
        assert secret not in customizations
    files = ["-f", str(package.path / "carto-values.yaml"),
             "-f", str(package.path / "carto-secrets.yaml"), "-f", "customizations.yaml"]
    template = helm(helm_bin, "template", "carto", str(real_chart), "-n", "carto", *files,
                    cwd=work)
    assert template.returncode == 0, template.stderr
    objects = [o for o in yaml.safe_load_all(template.stdout) if o]
    configs = [o["data"] for o in objects if o["kind"] == "ConfigMap" and o.get("data")]
    merged: dict[str, str] = {}
    for data in configs:
        merged.update({k: str(v) for k, v in data.items()})
    assert merged["WORKSPACE_THUMBNAILS_BUCKET"] == "acme-thumbs"
    assert merged["IMPORT_DATA_IMPORTS_BUCKET"] == "acme-client"
    assert merged["IMPORT_PROVIDER"] == provider
    assert "NODE_EXTRA_CA_CERTS" in merged
    ours = {m["metadata"]["name"]: m for m in secret_manifests(answers, redactor)}
    # The chart's workloads read the credentials from our Secrets, by name and key.
    refs: set[tuple[str, str, str]] = set()
    pull_secrets: set[str] = set()
    for o in objects:
        if o["kind"] not in ("Deployment", "StatefulSet", "Job"):
            continue
        pod = o["spec"]["template"]["spec"]
        pull_secrets |= {p["name"] for p in pod.get("imagePullSecrets") or []}
        for container in pod.get("containers", []):
            for variable in container.get("env") or []:
                ref = (variable.get("valueFrom") or {}).get("secretKeyRef")
                if ref:
                    refs.add((variable["name"], ref["name"], ref["key"]))
    for variable, name, key in refs:
        if name in ours:
            assert key in ours[name]["data"], (variable, name, key)
    by_variable = {variable: name for variable, name, _ in refs}
    assert by_variable["GOOGLE_MAPS_API_KEY"] == "carto-google-maps"
    credential = {"s3": "IMPORT_SECRETACCESSKEY", "azure-blob": "IMPORT_STORAGE_ACCESSKEY",
                  "gcp": None}[provider]
    if credential:
        assert by_variable[credential] == "carto-storage-credentials"
    else:
        mounted = [v for o in objects if o["kind"] == "Deployment"
                   for v in o["spec"]["template"]["spec"].get("volumes") or []
                   if (v.get("secret") or {}).get("secretName") == "carto-storage-credentials"]
        assert mounted, "the service-account key Secret is mounted"
    assert pull_secrets == {"carto-registry"}
    router = next(o for o in objects if o["kind"] == "Service"
                  and o["metadata"]["name"].endswith("router"))
    assert router["spec"]["type"] == "NodePort"
    assert any(p.get("nodePort") == 30443 for p in router["spec"]["ports"])
    if provider == "s3":
        assert merged["IMPORT_ENDPOINT"] == "https://minio.internal:9000"
        assert merged["IMPORT_REGION"] == "eu-west-1"
    if provider == "gcp":
        assert merged["IMPORT_PROJECTID"] == "acme-buckets"
    if provider == "azure-blob":
        assert merged["IMPORT_STORAGE_ACCOUNT"] == "acmestorage"
    pull = next(m for m in secret_manifests(answers, redactor)
                if m["metadata"]["name"] == "carto-registry")
    assert pull["type"] == "kubernetes.io/dockerconfigjson"
    config = json.loads(base64.b64decode(pull["data"][".dockerconfigjson"]))
    assert config["auths"]["registry.internal:5000"]["username"] == "ops"


def test_helm_private_ca_without_a_proxy_is_refused(tmp_path: Path, monkeypatch:
                                                    pytest.MonkeyPatch, test_ca: TestCA) -> None:
    package = make_helm_package(tmp_path / "package")
    monkeypatch.chdir(tmp_path)
    ca = tmp_path / "corp-ca.pem"
    ca.write_bytes(test_ca.ca_pem)
    answers = parse_answers({"platform": "kubernetes", "package": str(package.path),
                             "domain": DOMAIN, "database": {"bundled": True},
                             "network": {"trusted_ca_file": str(ca)}})
    with pytest.raises(AnswersError) as caught:
        plan_render(answers, LocalTarget(), redactor=Redactor())
    assert caught.value.path == "network.trusted_ca_file"
    assert "externalProxy.sslCA" in str(caught.value)
    assert not (tmp_path / "customizations.yaml").exists()


def test_exposure_decides_the_address_users_open_and_the_installer_verifies() -> None:
    from installer.exposure import exposure, next_step

    def of(**k8s: Any) -> Any:
        answers = parse_answers({"platform": "kubernetes", "domain": DOMAIN, "kubernetes": k8s})
        return answers, exposure(answers)

    _, lb = of()
    assert (lb.kind, lb.url, lb.verify_host, lb.verify_port) == (
        "load-balancer", f"https://{DOMAIN}", DOMAIN, 443)
    answers, node = of(service_type="NodePort", node_port=30443)
    assert (node.url, node.verify_port) == (f"https://{DOMAIN}:30443", 30443)
    assert "30443" in (next_step(answers, "carto-router", "carto") or "")
    answers, own = of(service_type="ClusterIP", external_tls=True)
    assert own.own_certificate and own.verify_host == DOMAIN
    assert "Ingress/Gateway" in (next_step(answers, "carto-router", "carto") or "")
    _, inside = of(service_type="ClusterIP")
    assert inside.verify_host is None
    for bad, path in (({"service_type": "NodePort"}, "kubernetes.node_port"),
                      ({"node_port": 30443}, "kubernetes.node_port"),
                      ({"service_type": "NodePort", "node_port": 8443}, "kubernetes.node_port"),
                      ({"external_tls": True}, "kubernetes.external_tls")):
        with pytest.raises(AnswersError) as caught:
            parse_answers({"platform": "kubernetes", "kubernetes": bad})
        assert caught.value.path == path
