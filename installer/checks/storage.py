"""storage.buckets, storage.cors, storage.public: the user's own buckets, checked live.

Only when the answers have a `storage:` section. Every request starts on the target (through
`Target.open_connection`, so over SSH for a remote one), through the proxy when one is set,
trusting the proxy CA and `network.trusted_ca_file` as CARTO will. A probe object named
`carto-installer-probe-<random>.txt` is written, read back and deleted; nothing else in the
buckets is touched.

Test seam: `ctx.cache[STORAGE_ENDPOINT_KEY]` may hold an endpoint URL that replaces the public
Cloud Storage or Azure endpoint (tests point it at an emulator on loopback). Nothing else sets
it; S3-compatible endpoints come from the answers.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

from installer.checks.base import Check, CheckContext, Outcome, failed, passed, warned
from installer.storage import (
    CREDENTIALS,
    DENIED,
    MISSING_BUCKET,
    TRANSPORT,
    StoreError,
    cors_gaps,
    cors_rule_to_add,
)

if TYPE_CHECKING:
    from installer.answers import StorageSettings
    from installer.storage import ObjectStore

STORAGE_ENDPOINT_KEY = "storage.endpoint"
STORAGE_CHECK_TIMEOUT = 45.0
REQUEST_TIMEOUT = 10.0
GUIDE = "https://github.com/CartoDB/carto-selfhosted#custom-buckets"


def _applies(ctx: CheckContext) -> str | None:
    from installer.answers import missing_storage_secrets

    if ctx.answers is None:
        return "no answers file: own buckets are checked when the answers have storage:"
    if ctx.answers.storage is None:
        return "no storage: section in the answers (CARTO's own buckets are used)"
    missing = missing_storage_secrets(ctx.answers.storage)
    if missing:
        return f"the answers give no {', '.join(missing)} (add *_env or *_file)"
    return None


def _settings(ctx: CheckContext) -> StorageSettings:
    assert ctx.answers is not None and ctx.answers.storage is not None
    return ctx.answers.storage


def open_store_for(ctx: CheckContext) -> ObjectStore:
    from installer.storage import open_store
    from installer.storage.http import Transport

    assert ctx.answers is not None
    network = ctx.answers.network
    cas = tuple(path for path in ((network.proxy.ca_file if network.proxy else None),
                                  network.trusted_ca_file) if path)
    transport = Transport(ctx.target, network.proxy, cas, REQUEST_TIMEOUT)
    endpoint = ctx.cache.get(STORAGE_ENDPOINT_KEY)
    return open_store(_settings(ctx), transport, endpoint if isinstance(endpoint, str) else None)


def _buckets(settings: StorageSettings) -> list[tuple[str, str]]:
    """(answer key, bucket) for each distinct bucket, in the answers' order."""
    out: list[tuple[str, str]] = []
    for key, name in (("imports", settings.buckets.imports),
                      ("thumbnails", settings.buckets.thumbnails),
                      ("import", settings.buckets.import_bucket)):
        if name and name not in [b for _, b in out]:
            out.append((f"storage.buckets.{key}", name))
    return out


def _credential_fix(settings: StorageSettings) -> str:
    if settings.provider == "s3":
        return ("check storage.access_key_id and storage.secret_access_key (an active key of "
                "the IAM user" + (f", valid for {settings.endpoint}" if settings.endpoint
                                  else f", region {settings.region}") + ")")
    if settings.provider == "azure-blob":
        return (f"check storage.account ({settings.account}) and storage.account_key (key1 or "
                "key2 from the account's Access keys); if the key is right, the account's "
                "firewall may refuse this machine (Networking: allow its address)")
    return ("check storage.key_file: a current key of a service account that exists (IAM > "
            "Service Accounts > Keys)")


def _denied_fix(settings: StorageSettings, bucket: str) -> str:
    if settings.provider == "s3":
        return (f"allow s3:PutObject, s3:GetObject and s3:DeleteObject on "
                f"arn:aws:s3:::{bucket}/* for the key's IAM user")
    if settings.provider == "gcp":
        return (f"grant the service account roles/storage.objectAdmin on gs://{bucket} "
                "(and roles/iam.serviceAccountTokenCreator on itself, to sign URLs)")
    return (f"the account key has full access, so a refusal comes from the account's network "
            f"rules or a policy on {bucket}: allow this machine")


def _missing_fix(settings: StorageSettings, key: str, bucket: str) -> str:
    create = {
        "s3": f"aws s3api create-bucket --bucket {bucket}"
              + (f" --create-bucket-configuration LocationConstraint={settings.region}"
                 if settings.region and settings.region != "us-east-1" else ""),
        "gcp": f"gcloud storage buckets create gs://{bucket}",
        "azure-blob": f"az storage container create --account-name {settings.account} "
                      f"--name {bucket}",
    }[settings.provider or "s3"]
    return f"create it (`{create}`) or correct {key}; see {GUIDE}"


def _problem(exc: StoreError, settings: StorageSettings, key: str, bucket: str) -> str:
    if exc.kind == MISSING_BUCKET:
        return _missing_fix(settings, key, bucket)
    if exc.kind == CREDENTIALS:
        return _credential_fix(settings)
    if exc.kind == DENIED:
        return _denied_fix(settings, bucket)
    if exc.kind == TRANSPORT:
        return ("the target cannot reach the store: check the endpoint, DNS, the firewall, "
                "network.proxy and, for a private CA, network.trusted_ca_file")
    return f"see the store's answer above; {GUIDE}"


def _what(exc: StoreError, bucket: str) -> str:
    return {MISSING_BUCKET: f"the bucket {bucket} does not exist",
            CREDENTIALS: "the credentials were not accepted",
            DENIED: f"the credentials may not use {bucket}",
            TRANSPORT: "no answer from the store"}.get(exc.kind, "the store refused")


def _probe_name() -> str:
    return f"carto-installer-probe-{secrets.token_hex(6)}.txt"


# --- storage.buckets ---------------------------------------------------------------------------


def check_buckets(ctx: CheckContext) -> Outcome:
    settings = _settings(ctx)
    try:
        store = open_store_for(ctx)
    except (StoreError, ValueError) as exc:
        return failed(f"the credentials cannot be used: {exc}", observed=str(exc),
                      remediation=_credential_fix(settings))
    passed_buckets: list[str] = []
    for key, bucket in _buckets(settings):
        name = _probe_name()
        content = f"carto-installer probe {name}\n".encode()
        step = "write"
        try:
            store.put(bucket, name, content)
            step = "read"
            back = store.get(bucket, name)
            if back != content:
                return failed(f"{bucket}: the probe object read back differs from what was "
                              "written", observed=f"{len(back)} bytes read, {len(content)} "
                              "written", remediation="check for a proxy or gateway rewriting "
                              "objects between this machine and the store")
            step = "delete"
            store.delete(bucket, name)
        except StoreError as exc:
            return failed(f"{_what(exc, bucket)} ({key}, step: {step})",
                          observed=exc.detail, remediation=_problem(exc, settings, key, bucket))
        passed_buckets.append(bucket)
    return passed(f"wrote, read and deleted a probe object in {', '.join(passed_buckets)}",
                  observed=f"{len(passed_buckets)} bucket(s), {settings.provider}")


# --- storage.cors ------------------------------------------------------------------------------


def check_cors(ctx: CheckContext) -> Outcome:
    settings = _settings(ctx)
    assert settings.provider is not None
    try:
        store = open_store_for(ctx)
    except (StoreError, ValueError) as exc:
        return failed(f"the credentials cannot be used: {exc}",
                      remediation=_credential_fix(settings))
    wanted = [(k, b) for k, b in _buckets(settings)
              if k in ("storage.buckets.thumbnails", "storage.buckets.imports")]
    if store.cors_scope == "account":  # Azure: one set of rules for every container
        wanted = wanted[:1]
    problems: list[str] = []
    fixes: list[str] = []
    for key, bucket in wanted:
        where = (f"the storage account {settings.account}" if store.cors_scope == "account"
                 else bucket)
        try:
            rules = store.cors_rules(bucket)
        except StoreError as exc:
            if exc.kind == DENIED:
                return warned(f"could not read the CORS rules of {where} with these "
                              "credentials", observed=exc.detail,
                              remediation="check by hand that this rule is present: "
                              + cors_rule_to_add(settings.provider, bucket, settings.account))
            return failed(f"{_what(exc, bucket)} while reading the CORS rules of {where}",
                          observed=exc.detail, remediation=_problem(exc, settings, key, bucket))
        gaps = cors_gaps(rules, settings.provider)
        if gaps:
            problems.append(f"{where}: {'; '.join(gaps)}")
            fixes.append(cors_rule_to_add(settings.provider, bucket, settings.account))
    if problems:
        return failed("the CORS rules CARTO's browser uploads need are missing: "
                      + " | ".join(problems), observed=" | ".join(problems),
                      remediation="add the vendor's rule (origins *, methods GET PUT POST, "
                      "its headers, max age 3600): " + " ; ".join(fixes))
    scope = (f"the storage account {settings.account}" if store.cors_scope == "account"
             else ", ".join(b for _, b in wanted))
    return passed(f"the vendor's CORS rule is present on {scope}", observed="present")


# --- storage.public ----------------------------------------------------------------------------


def _public_applies(ctx: CheckContext) -> str | None:
    reason = _applies(ctx)
    if reason:
        return reason
    if not _settings(ctx).thumbnails_public:
        return "thumbnails are private (storage.thumbnails_public: false): CARTO signs URLs"
    return None


def check_public(ctx: CheckContext) -> Outcome:
    settings = _settings(ctx)
    bucket = settings.buckets.thumbnails
    assert bucket is not None
    try:
        store = open_store_for(ctx)
    except (StoreError, ValueError) as exc:
        return failed(f"the credentials cannot be used: {exc}",
                      remediation=_credential_fix(settings))
    name = _probe_name()
    try:
        ok, seen, fix = store.public_read(bucket, name)
    except StoreError as exc:
        return failed(f"{_what(exc, bucket)} while checking public reads",
                      observed=exc.detail,
                      remediation=_problem(exc, settings, "storage.buckets.thumbnails", bucket))
    finally:
        try:
            store.delete(bucket, name)
        except StoreError:
            pass  # never written (refused), or already gone
    if ok:
        return passed(f"thumbnails are publicly readable: {seen}", observed="anonymous read ok")
    return failed(f"thumbnails must be public (storage.thumbnails_public: true) but {seen}",
                  observed=seen, remediation=fix)


CHECKS = [
    Check("storage.buckets", "Own buckets: write, read, delete",
          "each bucket exists and the credentials may write, read and delete an object",
          check_buckets, applies=_applies, timeout=STORAGE_CHECK_TIMEOUT),
    Check("storage.cors", "Own buckets: CORS rules",
          "the thumbnails and client buckets carry the CORS rules the vendor requires",
          check_cors, applies=_applies, timeout=STORAGE_CHECK_TIMEOUT),
    Check("storage.public", "Own buckets: public thumbnails",
          "thumbnails are publicly readable when thumbnails_public is true",
          check_public, applies=_public_applies, timeout=STORAGE_CHECK_TIMEOUT),
]
