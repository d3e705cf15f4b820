"""The installation package and the license.* checks, on generated packages."""

from __future__ import annotations

import json
import random
import subprocess
import zipfile
from pathlib import Path

import pytest
import yaml

from installer.errors import AnswersError
from installer.package import compare_versions, read_package, version_at_least
from installer.redact import Redactor
from tests.support.cli import run_cli
from tests.support.compose_deployment import make_deployment
from tests.support.package import make_package, service_account_json


def test_folder_package_parses_and_hands_every_secret_to_the_redactor(tmp_path: Path) -> None:
    package = make_package(tmp_path / "pkg")
    redactor = Redactor()
    found = read_package(str(package.path), "compose", redactor)
    assert found.ok, found.defects
    assert found.version == "2026.4.1"
    assert found.tenant_id == f"onp-{package.client_id}"
    text = "\n".join([package.key_json, package.private_key, package.legacy_password])
    assert package.private_key.splitlines()[1] not in redactor(text)
    for secret in package.secrets:
        assert secret not in redactor(text)


def test_zip_package_with_a_subfolder(tmp_path: Path) -> None:
    package = make_package(tmp_path / "carto-selfhosted-docker-customer-package-x-2026-4-1",
                           as_zip=True, subfolder="package/")
    found = read_package(str(package.path), "compose")
    assert found.kind == "zip" and found.ok, found.defects


@pytest.mark.parametrize(("change", "expected"), [
    ({"key_json": "{not json"}, "key.json: is not valid JSON (line 1"),
    ({"key_json": json.dumps({"type": "authorized_user"})},
     "key.json: is not a service-account key (type is 'authorized_user'"),
    ({"key_json": "KEY"}, "key.json: its private_key does not parse as a PEM private key"),
    ({"customer_env": "SELFHOSTED_TENANT_ID=onp-x\n"},
     "customer.env: has no SELFHOSTED_GCP_PROJECT_ID line"),
    ({"customer_env": "SELFHOSTED_TENANT_ID=tenant\nSELFHOSTED_GCP_PROJECT_ID=p\n"
                      "CARTO_SELFHOSTED_CUSTOMER_PACKAGE_VERSION=\n"},
     "CARTO_SELFHOSTED_CUSTOMER_PACKAGE_VERSION is empty"),
])
def test_each_defect_has_a_clear_message(tmp_path: Path, change: dict[str, str],
                                         expected: str) -> None:
    if change.get("key_json") == "KEY":
        change = {"key_json": service_account_json("p", private_key="-----BEGIN PRIVATE KEY-----\n"
                                                   "bm90IGEga2V5\n-----END PRIVATE KEY-----\n")}
    package = make_package(tmp_path / "pkg", **change)  # type: ignore[arg-type]
    found = read_package(str(package.path), "compose")
    assert expected in found.summary()
    assert "download the installation package again" in found.remediation()


def test_an_encrypted_service_account_key_is_named(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pw")).decode()
    package = make_package(tmp_path / "pkg", key_json=service_account_json("p", key))
    assert "private_key is encrypted" in read_package(str(package.path), "compose").summary()


def test_missing_files_and_paths(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    found = read_package(str(tmp_path / "empty"), "compose")
    assert [d.file for d in found.defects] == ["customer.env", "key.json"]
    with pytest.raises(AnswersError, match="^package: .* does not exist"):
        read_package(str(tmp_path / "nope"), "compose")
    (tmp_path / "bad.zip").write_bytes(b"not a zip")
    with pytest.raises(AnswersError, match="not a folder or a readable zip"):
        read_package(str(tmp_path / "bad.zip"), "compose")
    with zipfile.ZipFile(tmp_path / "twice.zip", "w") as archive:
        archive.writestr("a/key.json", "{}")
        archive.writestr("b/key.json", "{}")
        archive.writestr("customer.env", "X=1\n")
    assert "appears 2 times" in read_package(str(tmp_path / "twice.zip"), "compose").summary()


def test_kubernetes_package(tmp_path: Path) -> None:
    folder = tmp_path / "helm"
    folder.mkdir()
    account = service_account_json("carto-tnt-onp-abc")
    (folder / "carto-values.yaml").write_text(yaml.safe_dump({"cartoConfigValues": {
        "selfHostedTenantId": "onp-abc", "selfHostedGcpProjectId": "carto-tnt-onp-abc",
        "customerPackageVersion": "2026.4.1"}}))
    (folder / "carto-secrets.yaml").write_text(yaml.safe_dump({"cartoSecrets": {
        "defaultGoogleServiceAccount": {"value": account},
        "encryptionSecretKey": {"value": "an-encryption-secret-value"}}}))
    redactor = Redactor()
    found = read_package(str(folder), "kubernetes", redactor)
    assert found.ok, found.defects
    assert found.version == "2026.4.1"
    assert "an-encryption-secret-value" not in redactor("x an-encryption-secret-value")
    (folder / "carto-values.yaml").write_text("cartoConfigValues: [unclosed\n")
    assert "carto-values.yaml: is not valid YAML at line" in read_package(
        str(folder), "kubernetes").summary()


def test_version_order_matches_real_sort_v() -> None:
    pieces = ["2026.4.1", "2026.4.10", "2026.4.2", "2026.10.1", "2025.12.31", "2026.4.1-rc1",
              "2026.4.1~rc1", "2026.04.01", "2026.4", "2026.4.1.1", "2026.4.1a", "1.0", "1.00",
              "10", "9", "v2026.4.1", "2026.4.1.tar", "a", "A", "2026.4.1-1", "1.2.3~~",
              "1.2.3~", "1.2-3", "1.2_3", "1.2.b", "1.2.B"]
    rng = random.Random(7)
    rng.shuffle(pieces)
    real = subprocess.run(["sort", "-V"], input="\n".join(pieces) + "\n", text=True,
                          capture_output=True, env={"LC_ALL": "C"}, check=True).stdout.split()
    import functools

    ours = sorted(pieces, key=functools.cmp_to_key(compare_versions))
    assert ours == real


def test_version_at_least_like_install_sh() -> None:
    assert version_at_least("2026.4.1", "2026.1.1")
    assert version_at_least("2026.4.1", "2026.4.1")
    assert version_at_least("2026.10.1", "2026.9.30")
    assert not version_at_least("2025.12.31", "2026.1.1")
    assert not version_at_least("2026.4.1~rc1", "2026.4.1")


def _answers(tmp_path: Path, package: Path, directory: Path) -> Path:
    path = tmp_path / "answers.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "package": str(package),
                                    "compose": {"directory": str(directory)},
                                    "domain": "carto.example.com"}))
    return path


def _license(result: subprocess.CompletedProcess[str]) -> dict[str, dict[str, str]]:
    return {c["id"]: c for c in json.loads(result.stdout)["checks"]
            if c["id"].startswith("license")}


def test_license_checks_pass_warn_and_fail_through_the_cli(tmp_path: Path) -> None:
    directory = make_deployment(tmp_path / "deploy")
    package = make_package(tmp_path / "pkg", version="2026.4.1")
    answers = _answers(tmp_path, package.path, directory)
    result = run_cli("preflight", "--answers", str(answers), "--only", "license",
                     "--format", "json", cwd=tmp_path)
    found = _license(result)
    assert found["license.package"]["status"] == "pass"
    assert found["license.version"]["status"] == "pass", found
    assert result.returncode == 0

    (directory / "MIN_VERSION").write_text("2026.10.1\n")
    found = _license(run_cli("preflight", "--answers", str(answers), "--only", "license",
                             "--format", "json", cwd=tmp_path))
    assert found["license.version"]["status"] == "fail"
    assert found["license.version"]["observed"] == "2026.4.1 < 2026.10.1"
    assert "carto-download-customer-package" in found["license.version"]["remediation"]

    (directory / "MIN_VERSION").unlink()
    found = _license(run_cli("preflight", "--answers", str(answers), "--only", "license",
                             "--format", "json", cwd=tmp_path))
    assert found["license.version"]["status"] == "warn"
    assert "MIN_VERSION is unknown" in found["license.version"]["message"]

    broken = make_package(tmp_path / "broken", key_json="{}")
    result = run_cli("preflight", "--answers", str(_answers(tmp_path, broken.path, directory)),
                     "--only", "license", "--format", "json", cwd=tmp_path)
    found = _license(result)
    assert found["license.package"]["status"] == "fail"
    assert "lacks project_id" in found["license.package"]["message"]
    assert found["license.version"]["status"] == "skip"
    assert result.returncode == 3


def test_license_checks_skip_without_a_package() -> None:
    result = run_cli("preflight", "--only", "license", "--format", "json")
    found = _license(result)
    assert found["license.package"]["status"] == "skip"
    assert "package" in found["license.package"]["message"]
