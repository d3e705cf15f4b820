"""storage.buckets, storage.cors and storage.public against real servers on loopback.

S3 is moto's server (with authentication on, so a wrong key is refused), Azure Blob is
Azurite (Shared Key checked, public access levels enforced), Cloud Storage is
gcp-storage-emulator (which checks no credentials and no access: see the notes at its tests).
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from installer.answers import parse_answers
from installer.checks.base import CheckContext, Outcome, Status
from installer.checks.storage import (
    CHECKS,
    STORAGE_ENDPOINT_KEY,
    check_buckets,
    check_cors,
    check_public,
)
from installer.storage.azure import AzureBlobStore
from installer.storage.gcs import GcsStore
from installer.storage.http import Transport
from installer.target import LocalTarget
from tests.services.object_stores import (
    S3_TLS_NAME,
    AzuriteServer,
    GcsEmulator,
    S3Server,
)
from tests.services.sshd import SSHCredentials
from tests.services.sshd_target_user import SSHServers
from tests.services.tls_ca import TestCA
from tests.support.ssh_target import target_settings, trust, use_hosts


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def context(storage: dict[str, Any], *, endpoint: str | None = None,
            network: dict[str, Any] | None = None) -> CheckContext:
    env = {"S3_KEY": storage.pop("_key", ""), "S3_SECRET": storage.pop("_secret", ""),
           "AZ_KEY": storage.pop("_account_key", "")}
    answers = parse_answers({"storage": storage, "network": network or {}}, env=env)
    ctx = CheckContext(target=LocalTarget(), answers=answers)
    if endpoint:
        ctx.cache[STORAGE_ENDPOINT_KEY] = endpoint
    return ctx


def assert_fails_naming(outcome: Outcome, *words: str) -> None:
    assert outcome.status == Status.FAIL, outcome
    text = f"{outcome.message} {outcome.remediation}"
    for word in words:
        assert word in text, (word, outcome)
    assert outcome.remediation


# --- S3 (moto) -------------------------------------------------------------------------------


def s3_answers(server: S3Server, imports: str, thumbnails: str, *, secret: str | None = None,
               key: str | None = None, public: bool = True) -> dict[str, Any]:
    return {"provider": "s3", "endpoint": server.endpoint, "region": "us-east-1",
            "buckets": {"imports": imports, "thumbnails": thumbnails},
            "thumbnails_public": public,
            "access_key_id_env": "S3_KEY", "secret_access_key_env": "S3_SECRET",
            "_key": key or server.key_id, "_secret": secret or server.secret}


@pytest.fixture(scope="module")
def s3_good(s3_server: S3Server) -> tuple[str, str]:
    return (s3_server.make_bucket(unique("client")), s3_server.make_bucket(unique("thumbs")))


def test_s3_correct_buckets_pass(s3_server: S3Server, s3_good: tuple[str, str]) -> None:
    ctx = context(s3_answers(s3_server, *s3_good))
    buckets = check_buckets(ctx)
    assert buckets.status == Status.PASS, buckets
    assert all(name in buckets.message for name in s3_good)
    # The probe objects are gone again.
    for bucket in s3_good:
        assert s3_server.client.list_objects_v2(Bucket=bucket).get("KeyCount") == 0
    cors = check_cors(ctx)
    assert cors.status == Status.PASS, cors


def test_s3_missing_bucket_fails_naming_it(s3_server: S3Server,
                                           s3_good: tuple[str, str]) -> None:
    missing = unique("nothere")
    outcome = check_buckets(context(s3_answers(s3_server, s3_good[0], missing)))
    assert_fails_naming(outcome, missing, "does not exist", "create-bucket",
                        "storage.buckets.thumbnails")


@pytest.mark.parametrize("which", ["secret", "key id"])
def test_s3_wrong_credentials_fail(s3_server: S3Server, s3_good: tuple[str, str],
                                   which: str) -> None:
    answers = (s3_answers(s3_server, *s3_good, secret="not-the-secret") if which == "secret"
               else s3_answers(s3_server, *s3_good, key="AKIANOTAREALKEY00000"))
    outcome = check_buckets(context(answers))
    assert_fails_naming(outcome, "credentials were not accepted", "storage.secret_access_key")
    assert "not-the-secret" not in f"{outcome.message}{outcome.observed}{outcome.remediation}"


def test_s3_missing_cors_rule_fails_with_the_rule_to_add(s3_server: S3Server) -> None:
    bare = s3_server.make_bucket(unique("nocors"), cors=False)
    partial = s3_server.make_bucket(unique("partial"), headers=["Content-Type"])
    outcome = check_cors(context(s3_answers(s3_server, partial, bare)))
    assert_fails_naming(outcome, bare, "no CORS rule", partial, "Content-MD5",
                        "put-bucket-cors", '"AllowedMethods":["GET","PUT","POST"]')


def test_s3_public_thumbnails(s3_open_server: S3Server) -> None:
    """moto can only serve anonymous reads with authentication off, hence the second server."""
    public = s3_open_server.make_bucket(unique("pub"))
    blocked = s3_open_server.make_bucket(unique("blocked"), block_public=True)
    good = check_public(context(s3_answers(s3_open_server, public, public)))
    assert good.status == Status.PASS, good
    bad = check_public(context(s3_answers(s3_open_server, public, blocked)))
    assert_fails_naming(bad, blocked, "Block Public Access", "thumbnails_public: false")
    # Nothing left behind by the probe.
    for bucket in (public, blocked):
        assert s3_open_server.client.list_objects_v2(Bucket=bucket).get("KeyCount") == 0
    # Private thumbnails: the engine skips the check, saying why.
    storage_checks = {c.id: c for c in CHECKS}
    applies = storage_checks["storage.public"].applies
    assert applies is not None
    reason = applies(context(s3_answers(s3_open_server, public, blocked, public=False)))
    assert reason and "thumbnails_public: false" in reason


def test_s3_through_a_real_proxy(s3_server: S3Server, s3_good: tuple[str, str],
                                 http_proxy: str) -> None:
    """With a proxy set, the requests go through it (tinyproxy forwards plain HTTP)."""
    ctx = context(s3_answers(s3_server, *s3_good), network={"proxy": {"http": http_proxy}})
    assert check_buckets(ctx).status == Status.PASS
    dead = context(s3_answers(s3_server, *s3_good),
                   network={"proxy": {"http": "http://127.0.0.1:9"}})
    outcome = check_buckets(dead)
    assert_fails_naming(outcome, "no answer from the store", "network.proxy")
    assert "the proxy http://127.0.0.1:9" in outcome.observed


# --- Azure Blob (Azurite) ----------------------------------------------------------------------


def azure_answers(server: AzuriteServer, imports: str, thumbnails: str, *,
                  key: str | None = None) -> dict[str, Any]:
    return {"provider": "azure-blob", "account": server.account,
            "buckets": {"imports": imports, "thumbnails": thumbnails},
            "account_key_env": "AZ_KEY", "_account_key": key or server.key}


def azure_admin(server: AzuriteServer) -> AzureBlobStore:
    return AzureBlobStore(Transport(LocalTarget()), server.account, server.key,
                          endpoint=server.endpoint)


def make_container(server: AzuriteServer, name: str, public: bool) -> str:
    headers = {"x-ms-blob-public-access": "blob"} if public else {}
    response = azure_admin(server)._request("PUT", f"/{name}", query="restype=container",
                                            headers=headers)
    assert response.status == 201, response
    return name


def set_account_cors(server: AzuriteServer, headers: list[str] | None) -> None:
    rule = "" if headers is None else (
        "<CorsRule><AllowedOrigins>*</AllowedOrigins><AllowedMethods>GET,PUT,POST"
        f"</AllowedMethods><AllowedHeaders>{','.join(headers)}</AllowedHeaders>"
        "<ExposedHeaders>*</ExposedHeaders><MaxAgeInSeconds>3600</MaxAgeInSeconds></CorsRule>")
    body = (f'<?xml version="1.0" encoding="utf-8"?><StorageServiceProperties><Cors>{rule}'
            "</Cors></StorageServiceProperties>").encode()
    response = azure_admin(server)._request("PUT", "/", query="restype=service&comp=properties",
                                            body=body,
                                            headers={"Content-Type": "application/xml"})
    assert response.status == 202, response.text()


AZURE_HEADERS = ["Content-Type", "Content-MD5", "Content-Disposition", "Cache-Control",
                 "Access-Control-Request-Headers", "X-MS-Blob-Type"]


def test_azure_blob_checks(azurite: AzuriteServer) -> None:
    client = make_container(azurite, unique("client"), public=False)
    thumbs = make_container(azurite, unique("thumbs"), public=True)
    private = make_container(azurite, unique("private"), public=False)
    answers = azure_answers(azurite, client, thumbs)

    def ctx(data: dict[str, Any]) -> CheckContext:
        return context(dict(data), endpoint=azurite.endpoint)

    set_account_cors(azurite, AZURE_HEADERS)
    assert check_buckets(ctx(answers)).status == Status.PASS
    assert check_cors(ctx(answers)).status == Status.PASS
    assert check_public(ctx(answers)).status == Status.PASS

    missing = unique("gone")
    assert_fails_naming(check_buckets(ctx(azure_answers(azurite, client, missing))), missing,
                        "does not exist", "az storage container create")
    wrong = "A" * 86 + "=="
    assert_fails_naming(check_buckets(ctx(azure_answers(azurite, client, thumbs, key=wrong))),
                        "storage.account_key")
    assert_fails_naming(check_public(ctx(azure_answers(azurite, client, private))), private,
                        "private", "--public-access blob")

    set_account_cors(azurite, AZURE_HEADERS[:4])  # without Azure's two extra headers
    assert_fails_naming(check_cors(ctx(answers)), "X-MS-Blob-Type", "az storage cors add")
    set_account_cors(azurite, None)
    assert_fails_naming(check_cors(ctx(answers)), "no CORS rule", azurite.account)


# --- Cloud Storage (gcp-storage-emulator) -----------------------------------------------------


@pytest.fixture(scope="module")
def gcp_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    path = tmp_path_factory.mktemp("gcp") / "writer.json"
    path.write_text(json.dumps({"type": "service_account", "project_id": "acme",
                                "private_key_id": "1", "private_key": pem,
                                "client_email": "carto@acme.iam.gserviceaccount.com"}))
    path.chmod(0o600)
    return path


def gcs_request(emulator: GcsEmulator, method: str, path: str, body: Any = None) -> Any:
    response = Transport(LocalTarget()).request(
        method, emulator.endpoint + path, {"Content-Type": "application/json"},
        json.dumps(body).encode() if body is not None else b"")
    assert response.status < 300, (response.status, response.text())
    return json.loads(response.body) if response.body else None


def make_gcs_bucket(emulator: GcsEmulator, name: str, *, cors: list[str] | None,
                    public: bool, uniform: bool = True) -> str:
    gcs_request(emulator, "POST", "/storage/v1/b?project=acme", {"name": name})
    patch: dict[str, Any] = {"iamConfiguration": {"uniformBucketLevelAccess":
                                                  {"enabled": uniform}}}
    if cors is not None:
        patch["cors"] = [{"origin": ["*"], "method": ["GET", "PUT", "POST"],
                          "responseHeader": cors, "maxAgeSeconds": 3600}]
    gcs_request(emulator, "PATCH", f"/storage/v1/b/{name}", patch)
    if public:
        gcs_request(emulator, "PUT", f"/storage/v1/b/{name}/iam", {"bindings": [
            {"role": "roles/storage.objectViewer", "members": ["allUsers"]}]})
    return name


GCS_HEADERS = ["Content-Type", "Content-MD5", "Content-Disposition", "Cache-Control",
               "x-goog-content-length-range", "x-goog-meta-filename"]


def test_gcs_checks(gcs_emulator: GcsEmulator, gcp_key: Path) -> None:
    client = make_gcs_bucket(gcs_emulator, unique("client"), cors=GCS_HEADERS, public=False)
    thumbs = make_gcs_bucket(gcs_emulator, unique("thumbs"), cors=GCS_HEADERS, public=True)
    private = make_gcs_bucket(gcs_emulator, unique("private"), cors=GCS_HEADERS, public=False)
    nocors = make_gcs_bucket(gcs_emulator, unique("nocors"), cors=None, public=True)
    short = make_gcs_bucket(gcs_emulator, unique("short"), cors=GCS_HEADERS[:4], public=True)

    def ctx(imports: str, thumbnails: str) -> CheckContext:
        return context({"provider": "gcp", "key_file": str(gcp_key),
                        "buckets": {"imports": imports, "thumbnails": thumbnails}},
                       endpoint=gcs_emulator.endpoint)

    assert check_buckets(ctx(client, thumbs)).status == Status.PASS
    assert check_cors(ctx(client, thumbs)).status == Status.PASS
    assert check_public(ctx(client, thumbs)).status == Status.PASS

    missing = unique("gone")
    assert_fails_naming(check_buckets(ctx(client, missing)), missing, "gcloud storage buckets "
                        "create")
    assert_fails_naming(check_cors(ctx(client, nocors)), nocors, "no CORS rule", "--cors-file")
    assert_fails_naming(check_cors(ctx(client, short)), "x-goog-meta-filename")
    assert_fails_naming(check_public(ctx(client, private)), private, "allUsers",
                        "roles/storage.objectViewer")


def test_gcs_unusable_key_fails_before_any_request(tmp_path: Path,
                                                   gcs_emulator: GcsEmulator) -> None:
    """The emulator accepts any bearer token, so a refused key cannot be shown against it; a
    key whose private key is unusable is refused here before any request."""
    key = tmp_path / "broken.json"
    key.write_text(json.dumps({"type": "service_account", "client_email": "a@b",
                               "private_key": "-----BEGIN PRIVATE KEY-----\nnope\n"
                                              "-----END PRIVATE KEY-----\n"}))
    ctx = context({"provider": "gcp", "key_file": str(key),
                   "buckets": {"imports": "client-x", "thumbnails": "thumbs-x"}},
                  endpoint=gcs_emulator.endpoint)
    assert_fails_naming(check_buckets(ctx), "private_key", "storage.key_file")


def test_jwt_is_verifiable_with_the_service_accounts_public_key(gcp_key: Path) -> None:
    import base64

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    from installer.storage import read_gcp_key
    from installer.storage.gcs import self_signed_jwt

    key = read_gcp_key(str(gcp_key))
    token = self_signed_jwt(key, now=1_700_000_000)
    head, claims, signature = token.split(".")

    def unb64(text: str) -> bytes:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))

    assert json.loads(unb64(head)) == {"alg": "RS256", "typ": "JWT"}
    body = json.loads(unb64(claims))
    assert body["iss"] == body["sub"] == key.client_email
    assert body["exp"] - body["iat"] == 600
    private = serialization.load_pem_private_key(key.private_key.encode(), password=None)
    assert isinstance(private, rsa.RSAPrivateKey)
    private.public_key().verify(unb64(signature), f"{head}.{claims}".encode(),
                                padding.PKCS1v15(), hashes.SHA256())


def test_gcs_store_reads_cors_from_the_emulator(gcs_emulator: GcsEmulator, gcp_key: Path) -> None:
    from installer.storage import read_gcp_key

    bucket = make_gcs_bucket(gcs_emulator, unique("meta"), cors=["Content-Type"], public=False)
    store = GcsStore(Transport(LocalTarget()), read_gcp_key(str(gcp_key)),
                     endpoint=gcs_emulator.endpoint)
    rules = store.cors_rules(bucket)
    assert [r.headers for r in rules] == [("Content-Type",)]
    assert rules[0].max_age == 3600


# --- a private CA, and the checks run from a remote target over SSH --------------------------


def test_s3_compatible_store_with_a_private_ca(s3_tls_server: S3Server, test_ca: TestCA) -> None:
    """The store's certificate comes from a private CA: trusted through
    network.trusted_ca_file, refused at TLS without it, naming the answer. (Here by its
    address, which the certificate also names; by name over SSH below.)"""
    bucket = s3_tls_server.make_bucket(unique("tls"))
    endpoint = s3_tls_server.endpoint.replace(S3_TLS_NAME, "127.0.0.1")
    data = s3_answers(s3_tls_server, bucket, bucket)
    data["endpoint"] = endpoint
    trusted = context(dict(data), network={"trusted_ca_file": str(test_ca.ca_file)})
    outcome = check_buckets(trusted)
    assert outcome.status == Status.PASS, outcome.observed
    untrusted = check_buckets(context(dict(data)))
    assert_fails_naming(untrusted, "no answer from the store", "network.trusted_ca_file")
    assert "TLS" in untrusted.observed and "certificate" in untrusted.observed


def test_checks_run_from_the_remote_target(s3_tls_server: S3Server, test_ca: TestCA,
                                           ssh_servers: SSHServers,
                                           target_credentials: SSHCredentials,
                                           tmp_path: Path) -> None:
    """Only the target resolves minio.internal (its own /etc/hosts): the requests start there,
    over SSH, and the private CA is trusted as CARTO would trust it."""
    from installer.ssh import SSHTarget

    server = ssh_servers()
    use_hosts(server, {S3_TLS_NAME: "127.0.0.1"})
    known = trust(tmp_path / "known_hosts", server)
    bucket = s3_tls_server.make_bucket(unique("remote"))
    data = s3_answers(s3_tls_server, bucket, bucket)
    settings = target_settings(server, known, identity_file=target_credentials.ed25519_key)
    with SSHTarget.connect(settings, accept_host_key=None, confirm_host_key=None,
                           redactor=None) as target:
        ctx = context(dict(data), network={"trusted_ca_file": str(test_ca.ca_file)})
        ctx.target = target
        outcome = check_buckets(ctx)
        assert outcome.status == Status.PASS, outcome
        assert target.stats.forwards >= 3  # write, read, delete: each a channel from the target
        cors = check_cors(ctx)
        assert cors.status == Status.PASS, cors
    # From here, the name does not resolve: a local run would fail at DNS.
    local = check_buckets(context(dict(data), network={"trusted_ca_file": str(test_ca.ca_file)}))
    assert local.status == Status.FAIL and "DNS" in local.observed


def test_preflight_cli_reports_the_storage_checks(s3_server: S3Server, s3_good: tuple[str, str],
                                                  tmp_path: Path) -> None:
    """End to end through the catalog: `preflight --only storage` on this machine."""
    import yaml

    from tests.support.cli import run_cli

    data = s3_answers(s3_server, s3_good[0], unique("absent"))
    data.pop("_key"), data.pop("_secret")
    answers = tmp_path / "answers.yaml"
    answers.write_text(yaml.safe_dump({"version": 1, "storage": data}))
    answers.chmod(0o600)
    result = run_cli("preflight", "--answers", str(answers), "--only", "storage",
                     "--format", "json", cwd=tmp_path,
                     env={"S3_KEY": s3_server.key_id, "S3_SECRET": s3_server.secret})
    report = json.loads(result.stdout)
    checks = {c["id"]: c for c in report["checks"]}
    assert set(checks) == {"storage.buckets", "storage.cors", "storage.public"}
    assert checks["storage.buckets"]["status"] == "fail"
    assert "create-bucket" in checks["storage.buckets"]["remediation"]
    assert result.returncode == 3
    assert s3_server.secret not in result.stdout + result.stderr
