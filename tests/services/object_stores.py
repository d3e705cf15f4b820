"""Real object-storage servers on loopback, for the storage.* checks.

- S3: moto's server mode (`moto_server`, PyPI `moto[server]`). Started twice: once with
  request authentication on (INITIAL_NO_AUTH_ACTION_COUNT: the first requests create an IAM
  user, its key and a policy; every later request must be signed with that key, so a wrong key
  is refused as on AWS), and once without it, because moto cannot serve an anonymous request
  while authentication is on (it fails with HTTP 500), and public reads need one.
- Azure Blob: Azurite (npm `azurite`, installed by scripts/test.sh into .cache/azurite), which
  checks Shared Key signatures and container public access levels. Telemetry off: no traffic
  leaves the machine.
- Cloud Storage: gcp-storage-emulator (PyPI), which stores bucket metadata (CORS, IAM policy,
  uniform access) but checks no credentials and no access.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.services.tls_ca import LOOPBACK, TestCA, free_loopback_port, wait_until

ROOT = Path(__file__).resolve().parents[2]
AZURITE_BIN = ROOT / ".cache" / "azurite" / "node_modules" / ".bin" / "azurite-blob"
# Azurite's well-known development account (public, documented by Microsoft).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = ("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/"
               "KBHBeksoGMGw==")
START_TIMEOUT = 30.0
VENDOR_CORS_HEADERS = ["Content-Type", "Content-MD5", "Content-Disposition", "Cache-Control"]


def _listening(port: int) -> bool:
    try:
        socket.create_connection((LOOPBACK, port), timeout=1).close()
        return True
    except OSError:
        return False


@contextlib.contextmanager
def _server(argv: list[str], port: int, what: str, env: dict[str, str] | None = None,
            cwd: str | None = None) -> Iterator[None]:
    directory = Path(tempfile.mkdtemp(prefix="carto-store-"))
    log_file = directory / "server.log"
    with log_file.open("wb") as log:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                   env={**os.environ, **(env or {})}, cwd=cwd or directory,
                                   start_new_session=True)

    def ready() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with code {process.returncode}:\n"
                               f"{log_file.read_text(errors='replace')}")
        return _listening(port)

    try:
        wait_until(ready, timeout=START_TIMEOUT, what=what,
                   details=lambda: log_file.read_text(errors="replace"))
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        shutil.rmtree(directory, ignore_errors=True)


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    key_id: str
    secret: str
    client: Any  # a boto3 S3 client signed with the key: the tests' own admin tool

    def make_bucket(self, name: str, *, cors: bool = True, headers: list[str] | None = None,
                    block_public: bool = False) -> str:
        self.client.create_bucket(Bucket=name)
        if cors:
            self.client.put_bucket_cors(Bucket=name, CORSConfiguration={"CORSRules": [{
                "AllowedOrigins": ["*"], "AllowedMethods": ["GET", "PUT", "POST"],
                "AllowedHeaders": headers or VENDOR_CORS_HEADERS, "MaxAgeSeconds": 3600}]})
        if block_public:
            self.client.put_public_access_block(Bucket=name, PublicAccessBlockConfiguration={
                "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True,
                "RestrictPublicBuckets": True})
        return name


def _moto(auth: bool, tls: tuple[Path, Path, Path] | None = None,
          tls_name: str = LOOPBACK) -> Iterator[S3Server]:
    """`tls`: (certificate chain, key, CA file) to serve HTTPS as `tls_name`."""
    import boto3

    port = free_loopback_port()
    binary = str(Path(sys.executable).with_name("moto_server"))
    env = {"INITIAL_NO_AUTH_ACTION_COUNT": "3"} if auth else {}
    argv = [binary, "-H", LOOPBACK, "-p", str(port)]
    endpoint = f"http://{LOOPBACK}:{port}"
    verify: Any = None
    if tls is not None:
        argv += ["-c", str(tls[0]), "-k", str(tls[1])]
        endpoint = f"https://{tls_name}:{port}"
        verify = str(tls[2])
        # moto reads a dotted host name as a virtual-hosted bucket unless told it is an
        # S3-compatible endpoint (path-style), as such stores are.
        env["MOTO_S3_CUSTOM_ENDPOINTS"] = endpoint
    with _server(argv, port, f"moto_server on {port}", env):
        admin_endpoint = f"{'https' if tls else 'http'}://{LOOPBACK}:{port}"
        common = {"endpoint_url": admin_endpoint, "region_name": "us-east-1", "verify": verify}
        # The three unauthenticated requests: the user, its key, its policy.
        iam = boto3.client("iam", aws_access_key_id="setup", aws_secret_access_key="setup",
                           **common)
        iam.create_user(UserName="carto")
        key = iam.create_access_key(UserName="carto")["AccessKey"]
        iam.put_user_policy(UserName="carto", PolicyName="carto-buckets", PolicyDocument=json.dumps(
            {"Version": "2012-10-17",
             "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
        client = boto3.client("s3", aws_access_key_id=key["AccessKeyId"],
                              aws_secret_access_key=key["SecretAccessKey"], **common)
        yield S3Server(endpoint, key["AccessKeyId"], key["SecretAccessKey"], client)


@pytest.fixture(scope="module")
def s3_server() -> Iterator[S3Server]:
    """moto with authentication: wrong keys are refused."""
    yield from _moto(auth=True)


@pytest.fixture(scope="module")
def s3_open_server() -> Iterator[S3Server]:
    """moto without authentication: anonymous reads work (public-read checks)."""
    yield from _moto(auth=False)


S3_TLS_NAME = "minio.internal"  # the S3-compatible store's name in the HTTPS tests


@pytest.fixture(scope="module")
def s3_tls_server(test_ca: TestCA, tmp_path_factory: pytest.TempPathFactory
                  ) -> Iterator[S3Server]:
    """An S3-compatible store over HTTPS with a certificate from the test CA (a private CA),
    named minio.internal and 127.0.0.1; the endpoint uses the name."""
    issued = test_ca.issue([S3_TLS_NAME, LOOPBACK]).write(tmp_path_factory.mktemp("s3-tls"))
    yield from _moto(auth=True, tls=(issued.fullchain, issued.key, test_ca.ca_file),
                     tls_name=S3_TLS_NAME)


@dataclass(frozen=True)
class AzuriteServer:
    endpoint: str  # path-style: http://127.0.0.1:PORT/devstoreaccount1
    account: str
    key: str


@pytest.fixture(scope="module")
def azurite() -> Iterator[AzuriteServer]:
    if not AZURITE_BIN.exists():
        raise RuntimeError(f"Azurite is not installed at {AZURITE_BIN}: run scripts/test.sh, "
                           "which installs it from npm")
    port = free_loopback_port()
    with _server([str(AZURITE_BIN), "--blobHost", LOOPBACK, "--blobPort", str(port),
                  "--inMemoryPersistence", "--disableTelemetry", "--skipApiVersionCheck",
                  "--silent"], port, f"Azurite on {port}"):
        yield AzuriteServer(f"http://{LOOPBACK}:{port}/{AZURITE_ACCOUNT}", AZURITE_ACCOUNT,
                            AZURITE_KEY)


@dataclass(frozen=True)
class GcsEmulator:
    endpoint: str


@pytest.fixture(scope="module")
def gcs_emulator() -> Iterator[GcsEmulator]:
    port = free_loopback_port()
    binary = str(Path(sys.executable).with_name("gcp-storage-emulator"))
    with _server([binary, "start", "--host", LOOPBACK, "--port", str(port), "--in-memory"],
                 port, f"gcp-storage-emulator on {port}"):
        yield GcsEmulator(f"http://{LOOPBACK}:{port}")
