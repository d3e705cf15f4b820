"""A Helm installation package of our own (carto-values.yaml + carto-secrets.yaml), made at
test time with fresh random secrets and a real RSA key, plus the helpers the Kubernetes
render/deploy tests share (answers, environment, a test TLS pair). Nothing here is committed
as a secret."""

from __future__ import annotations

import json
import secrets
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.services.k8s_apiserver import FakeCluster
from tests.support.package import service_account_json

CHART = Path(__file__).resolve().parents[1] / "data" / "charts" / "carto-test"


@dataclass
class HelmPackage:
    path: Path  # the folder or the zip
    values: str
    secrets_text: str
    version: str
    secrets: list[str]  # every secret value in it, for leak searches

    @property
    def tenant(self) -> str:
        data = yaml.safe_load(self.values)
        return str(data["cartoConfigValues"]["selfHostedTenantId"])


def make_helm_package(dest: Path, *, version: str = "2024.6.1",
                      as_zip: bool = False) -> HelmPackage:
    client = secrets.token_hex(4)
    values = yaml.safe_dump({"cartoConfigValues": {
        "selfHostedTenantId": f"onp-{client}",
        "selfHostedGcpProjectId": f"carto-tnt-onp-{client}",
        "customerPackageVersion": version,
        "cartoAuth0ClientId": secrets.token_hex(16),
    }}, sort_keys=False)
    account = service_account_json(f"carto-tnt-onp-{client}")
    encryption, jwt = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    secrets_text = yaml.safe_dump({"cartoSecrets": {
        "defaultGoogleServiceAccount": {"value": account},
        "encryptionSecretKey": {"value": encryption},
        "jwtApiSecret": {"value": jwt},
    }}, sort_keys=False)
    files = {"carto-values.yaml": values, "carto-secrets.yaml": secrets_text}
    key = json.loads(account)
    if as_zip:
        path = dest.with_suffix(".zip")
        with zipfile.ZipFile(path, "w") as archive:
            for name, text in files.items():
                archive.writestr(f"carto-package/{name}", text)
    else:
        path = dest
        path.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (path / name).write_text(text)
            (path / name).chmod(0o600)
    leaks = [encryption, jwt, key["private_key_id"],
             *[line for line in key["private_key"].splitlines() if len(line) > 40]]
    return HelmPackage(path, values, secrets_text, version, leaks)


def self_signed_pair(folder: Path, domain: str) -> tuple[Path, Path]:
    """A certificate and unencrypted key for `domain`, written as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, domain)])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(hours=1)).not_valid_after(now + timedelta(days=90))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(domain)]), critical=False)
            .sign(key, hashes.SHA256()))
    folder.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = folder / "fullchain.pem", folder / "privkey.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return cert_path, key_path


def k8s_answers(cluster: FakeCluster | None, package: Path, **extra: Any) -> dict[str, Any]:
    """Answers data for the fixture cluster and the test chart; `extra` replaces sections."""
    data: dict[str, Any] = {
        "platform": "kubernetes",
        "package": str(package),
        "kubernetes": {"kubeconfig": str(cluster.kubeconfig) if cluster else "/nonexistent",
                       "context": "fixture", "namespace": "carto", "release": "carto",
                       "chart": str(CHART)},
        "domain": "carto.example.com",
        "database": {"bundled": True},
    }
    data.update(extra)
    return data


def client_environment(cluster: FakeCluster, monkeypatch: pytest.MonkeyPatch,
                       *bin_dirs: Path) -> None:
    """Point this process's environment (which the installer's kubectl/helm inherit) at the
    fixture cluster's isolated client dirs and put the binaries first on PATH."""
    env = cluster.client_env()
    for key in ("KUBECACHEDIR", "HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME"):
        monkeypatch.setenv(key, env[key])
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("PATH", ":".join([*(str(d) for d in bin_dirs), env["PATH"]]))
