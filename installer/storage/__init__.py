"""Own buckets: the three object-store APIs CARTO can use, spoken just enough to check them.

`open_store(settings, transport)` gives an `ObjectStore` for the provider of the answers'
`storage:` section: Amazon S3 or an S3-compatible store (AWS Signature Version 4), Azure Blob
(Shared Key) or Cloud Storage (JSON API with a self-signed service-account JWT). Each store
writes, reads and deletes a probe object, reads the CORS rules and reads anonymously, and
raises `StoreError` with a `kind` the checks turn into a fix. Requests go through
`installer.storage.http.Transport`, so they start on the target and use its proxy.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol
from xml.etree import ElementTree

from installer.storage.http import TransportError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from installer.answers import StorageSettings
    from installer.storage.http import HttpResponse, Transport

# StoreError kinds
MISSING_BUCKET = "missing-bucket"
CREDENTIALS = "credentials"  # the store does not accept who we say we are
DENIED = "denied"  # it knows us and refuses the action
TRANSPORT = "transport"  # no HTTP answer at all
OTHER = "other"

MAX_KEY_FILE = 64 * 1024


def parse_xml(body: bytes) -> ElementTree.Element:
    """An API answer as XML. Answers come from a server we do not control: a document type
    (the door to entity expansion) is refused outright, and the size is already capped by
    the transport; the standard parser then needs nothing more (no external entities)."""
    if b"<!DOCTYPE" in body.upper() or b"<!ENTITY" in body.upper():
        raise ElementTree.ParseError("a document type declaration is not accepted")
    return ElementTree.fromstring(body)  # noqa: S314 - guarded above


class StoreError(Exception):
    def __init__(self, kind: str, detail: str, status: int = 0, code: str = "") -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail
        self.status = status
        self.code = code


def send(transport: Transport, method: str, url: str, headers: Mapping[str, str],
         body: bytes) -> HttpResponse:
    """One request of a store; no HTTP answer at all is a `StoreError` of kind TRANSPORT."""
    try:
        return transport.request(method, url, headers, body)
    except TransportError as exc:
        raise StoreError(TRANSPORT, str(exc)) from None


@dataclass(frozen=True)
class CorsRule:
    origins: tuple[str, ...]
    methods: tuple[str, ...]
    headers: tuple[str, ...]
    max_age: int | None = None


class ObjectStore(Protocol):
    provider: str
    cors_scope: str  # "bucket" (S3, GCS) or "account" (Azure)

    def put(self, bucket: str, name: str, data: bytes) -> None: ...
    def get(self, bucket: str, name: str) -> bytes: ...
    def delete(self, bucket: str, name: str) -> None: ...
    def cors_rules(self, bucket: str) -> list[CorsRule]: ...
    def anonymous_get(self, bucket: str, name: str) -> int: ...
    def object_url(self, bucket: str, name: str) -> str: ...
    def public_read(self, bucket: str, name: str) -> tuple[bool, str, str]:
        """(anonymous reads work, what was seen, the fix); may leave `name` to delete."""


# The vendor's CORS rule (its "Custom buckets" documentation).
CORS_ORIGINS = ("*",)
CORS_METHODS = ("GET", "PUT", "POST")
CORS_HEADERS = ("Content-Type", "Content-MD5", "Content-Disposition", "Cache-Control")
CORS_EXTRA_HEADERS = {
    "gcp": ("x-goog-content-length-range", "x-goog-meta-filename"),
    "azure-blob": ("Access-Control-Request-Headers", "X-MS-Blob-Type"),
    "s3": (),
}
CORS_MAX_AGE = 3600


def required_headers(provider: str) -> tuple[str, ...]:
    return CORS_HEADERS + CORS_EXTRA_HEADERS[provider]


def cors_gaps(rules: list[CorsRule], provider: str) -> list[str]:
    """What the best-matching rule lacks for the vendor's requirement; [] when one rule
    covers it. Header and method names compare case-insensitively; `*` covers everything."""
    if not rules:
        return ["no CORS rule at all"]
    best: list[str] | None = None
    for rule in rules:
        gaps: list[str] = []
        origins = {o.strip() for o in rule.origins}
        if "*" not in origins:
            gaps.append("origin * is not allowed")
        methods = {m.strip().upper() for m in rule.methods}
        missing_methods = [m for m in CORS_METHODS if m not in methods and "*" not in methods]
        if missing_methods:
            gaps.append(f"methods {', '.join(missing_methods)} are not allowed")
        headers = {h.strip().lower() for h in rule.headers}
        if "*" not in headers:
            missing = [h for h in required_headers(provider) if h.lower() not in headers]
            if missing:
                gaps.append(f"headers {', '.join(missing)} are not allowed")
        if best is None or len(gaps) < len(best):
            best = gaps
    assert best is not None
    return best


def cors_rule_to_add(provider: str, bucket: str, account: str | None = None) -> str:
    """The rule, in the provider's own form and with the command that sets it."""
    headers = list(required_headers(provider))
    if provider == "s3":
        rule = {"CORSRules": [{"AllowedOrigins": list(CORS_ORIGINS),
                               "AllowedMethods": list(CORS_METHODS),
                               "AllowedHeaders": headers, "MaxAgeSeconds": CORS_MAX_AGE}]}
        return (f"aws s3api put-bucket-cors --bucket {bucket} --cors-configuration "
                f"'{json.dumps(rule, separators=(',', ':'))}'")
    if provider == "gcp":
        gcs = [{"origin": list(CORS_ORIGINS), "method": list(CORS_METHODS),
                "responseHeader": headers, "maxAgeSeconds": CORS_MAX_AGE}]
        return (f"save {json.dumps(gcs, separators=(',', ':'))} as cors.json, then "
                f"`gcloud storage buckets update gs://{bucket} --cors-file=cors.json`")
    return (f"az storage cors add --services b --account-name {account or '<account>'} "
            f"--origins '*' --methods {' '.join(CORS_METHODS)} --allowed-headers "
            f"'{','.join(headers)}' --exposed-headers '*' --max-age {CORS_MAX_AGE}")


@dataclass
class GcpKey:
    client_email: str
    private_key: str = field(repr=False)
    project_id: str


def read_gcp_key(path: str) -> GcpKey:
    """The service-account key file; ValueError with a plain reason when it is not one."""
    from installer.userfiles import FileRefused, read_user_file

    try:  # bounded, and never a device or a FIFO
        raw = read_user_file(path, limit=MAX_KEY_FILE)
    except FileRefused:
        raise ValueError(f"{path} is not a regular file of at most {MAX_KEY_FILE} bytes (a "
                         "service-account key is a few kB)") from None
    except OSError as exc:
        raise ValueError(f"{path} cannot be read: {exc.strerror or exc}") from None
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ValueError(f"{path} is not JSON") from None
    if not isinstance(data, dict) or data.get("type") != "service_account":
        raise ValueError(f"{path} is not a service-account key (type: service_account)")
    for key in ("client_email", "private_key"):
        if not isinstance(data.get(key), str) or not data[key]:
            raise ValueError(f"{path} has no {key}")
    return GcpKey(data["client_email"], data["private_key"], str(data.get("project_id") or ""))


def open_store(settings: StorageSettings, transport: Transport,
               endpoint: str | None = None) -> ObjectStore:
    """The store for these answers. `endpoint` replaces the public endpoint of Cloud Storage
    or Azure (tests point it at an emulator); S3 takes its endpoint from the answers."""
    if settings.provider == "s3":
        from installer.storage.s3 import S3Store

        assert settings.access_key_id is not None and settings.secret_access_key is not None
        path_style = settings.path_style if settings.path_style is not None \
            else bool(settings.endpoint or endpoint)
        return S3Store(transport, settings.access_key_id.value,
                       settings.secret_access_key.value,
                       region=settings.region or "us-east-1",
                       endpoint=settings.endpoint or endpoint, path_style=path_style)
    if settings.provider == "azure-blob":
        from installer.storage.azure import AzureBlobStore

        assert settings.account is not None and settings.account_key is not None
        return AzureBlobStore(transport, settings.account, settings.account_key.value,
                              endpoint=endpoint)
    from installer.storage.gcs import GcsStore

    assert settings.key_file is not None
    return GcsStore(transport, read_gcp_key(settings.key_file), endpoint=endpoint)
