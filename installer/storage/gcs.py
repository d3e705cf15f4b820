"""Google Cloud Storage through its JSON API, as the service account of the key file.

Authorisation is a self-signed JWT (RS256 with the key's private key, signed with
`cryptography`) sent directly as the bearer token, which Google APIs accept for service
accounts: no token exchange, so no extra host to reach from the target. google-cloud-storage
would need its own HTTP stack and the token endpoint.
"""

from __future__ import annotations

import base64
import json
import time
from urllib.parse import quote

from installer.storage import (
    CREDENTIALS,
    DENIED,
    MISSING_BUCKET,
    OTHER,
    CorsRule,
    GcpKey,
    StoreError,
    send,
)
from installer.storage.http import HttpResponse, Transport
from installer.yamldata import JSONObject

PUBLIC_ENDPOINT = "https://storage.googleapis.com"
SCOPE = "https://www.googleapis.com/auth/devstorage.read_write"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def self_signed_jwt(key: GcpKey, now: float | None = None) -> str:
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    try:
        private = serialization.load_pem_private_key(key.private_key.encode("utf-8"),
                                                     password=None)
    except (ValueError, TypeError):
        raise StoreError(CREDENTIALS, "the key file's private_key is not an unencrypted PEM "
                         "key") from None
    if not isinstance(private, rsa.RSAPrivateKey):
        raise StoreError(CREDENTIALS, "the key file's private_key is not an RSA key")
    issued = int(now if now is not None else time.time())
    header = {"alg": "RS256", "typ": "JWT"}
    claims = {"iss": key.client_email, "sub": key.client_email, "scope": SCOPE,
              "iat": issued, "exp": issued + 600}
    signing_input = (_b64url(json.dumps(header, separators=(",", ":")).encode()) + "."
                     + _b64url(json.dumps(claims, separators=(",", ":")).encode()))
    signature = private.sign(signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256())
    return signing_input + "." + _b64url(signature)


class GcsStore:
    provider = "gcp"
    cors_scope = "bucket"

    def __init__(self, transport: Transport, key: GcpKey, *, endpoint: str | None = None) -> None:
        self.transport = transport
        self.key = key
        self.base = (endpoint or PUBLIC_ENDPOINT).rstrip("/")
        # Signed now, so an unusable key is reported before any request is made.
        self._token: str | None = self_signed_jwt(key)

    def object_url(self, bucket: str, name: str) -> str:
        return f"{self.base}/{bucket}/{quote(name)}"

    def _auth(self) -> dict[str, str]:
        if self._token is None:
            self._token = self_signed_jwt(self.key)
        return {"Authorization": f"Bearer {self._token}"}

    def _request(self, method: str, path: str, body: bytes = b"",
                 headers: dict[str, str] | None = None, signed: bool = True) -> HttpResponse:
        all_headers = dict(headers or {})
        if signed:
            all_headers.update(self._auth())
        return send(self.transport, method, self.base + path, all_headers, body)

    def _raise_for(self, response: HttpResponse, bucket: str, action: str) -> None:
        if response.status < 300:
            return
        reason, message = _error(response)
        detail = f"{action} in {bucket}: HTTP {response.status}" + \
            (f" ({message})" if message else "")
        if response.status == 401:
            kind = CREDENTIALS
        elif response.status == 403:
            kind = DENIED
        elif response.status == 404 and ("bucket" in message.lower() or reason == "notFound"
                                         or not message):
            kind = MISSING_BUCKET
        else:
            kind = OTHER
        raise StoreError(kind, detail, response.status, reason)

    def put(self, bucket: str, name: str, data: bytes) -> None:
        response = self._request(
            "POST", f"/upload/storage/v1/b/{quote(bucket)}/o?uploadType=media&name="
            f"{quote(name, safe='')}", body=data, headers={"Content-Type": "text/plain"})
        self._raise_for(response, bucket, f"write {name}")

    def get(self, bucket: str, name: str) -> bytes:
        response = self._request("GET", f"/storage/v1/b/{quote(bucket)}/o/"
                                        f"{quote(name, safe='')}?alt=media")
        self._raise_for(response, bucket, f"read {name}")
        return response.body

    def delete(self, bucket: str, name: str) -> None:
        response = self._request("DELETE", f"/storage/v1/b/{quote(bucket)}/o/"
                                           f"{quote(name, safe='')}")
        self._raise_for(response, bucket, f"delete {name}")

    def cors_rules(self, bucket: str) -> list[CorsRule]:
        response = self._request("GET", f"/storage/v1/b/{quote(bucket)}")
        self._raise_for(response, bucket, "read the bucket's metadata")
        try:
            data = json.loads(response.body)
        except json.JSONDecodeError:
            raise StoreError(OTHER, f"the metadata of {bucket} is not JSON") from None
        rules = []
        for rule in data.get("cors") or []:
            if not isinstance(rule, dict):
                continue
            age = rule.get("maxAgeSeconds")
            rules.append(CorsRule(tuple(rule.get("origin") or ()),
                                  tuple(rule.get("method") or ()),
                                  tuple(rule.get("responseHeader") or ()),
                                  int(age) if isinstance(age, int | str) and str(age).isdigit()
                                  else None))
        return rules

    def anonymous_get(self, bucket: str, name: str) -> int:
        return self._request("GET", f"/{quote(bucket)}/{quote(name)}", signed=False).status

    def public_read(self, bucket: str, name: str) -> tuple[bool, str, str]:
        """Public through IAM (allUsers may read objects), or, with fine-grained access,
        through an object ACL publicRead as CARTO writes it; then read anonymously."""
        fix = (f"grant allUsers read on {bucket} (`gcloud storage buckets add-iam-policy-binding "
               f"gs://{bucket} --member=allUsers --role=roles/storage.objectViewer`; public "
               "access prevention must be off), or set storage.thumbnails_public: false")
        meta = self._request("GET", f"/storage/v1/b/{quote(bucket)}")
        self._raise_for(meta, bucket, "read the bucket's metadata")
        iam_config = _json(meta.body).get("iamConfiguration") or {}
        if (iam_config.get("publicAccessPrevention") or "") == "enforced":
            return False, f"public access prevention is enforced on {bucket}", fix
        uniform = bool((iam_config.get("uniformBucketLevelAccess") or {}).get("enabled"))
        policy = self._request("GET", f"/storage/v1/b/{quote(bucket)}/iam")
        public_by_iam: bool | None = None
        if policy.status == 200:
            public_by_iam = any(
                "allUsers" in (binding.get("members") or [])
                and binding.get("role") in _PUBLIC_READ_ROLES
                for binding in _json(policy.body).get("bindings") or []
                if isinstance(binding, dict))
        if public_by_iam is False and uniform:
            return (False, f"{bucket} uses uniform access and its IAM policy gives allUsers "
                    "no read role", fix)
        path = (f"/upload/storage/v1/b/{quote(bucket)}/o?uploadType=media&name="
                f"{quote(name, safe='')}")
        if not public_by_iam and not uniform:
            path += "&predefinedAcl=publicRead"
        response = self._request("POST", path, body=b"carto-installer public-read probe\n",
                                 headers={"Content-Type": "text/plain"})
        self._raise_for(response, bucket, f"write {name}")
        status = self.anonymous_get(bucket, name)
        if status == 200:
            return True, f"objects in {bucket} are readable anonymously", ""
        return False, f"an anonymous read answered HTTP {status}", fix


_PUBLIC_READ_ROLES = {"roles/storage.objectViewer", "roles/storage.legacyObjectReader",
                      "roles/storage.objectReader"}


def _json(body: bytes) -> JSONObject:
    try:
        data = json.loads(body)
    except json.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}


def _error(response: HttpResponse) -> tuple[str, str]:
    try:
        error = json.loads(response.body).get("error") or {}
    except (json.JSONDecodeError, AttributeError):
        return "", response.text()[:200].strip()
    if not isinstance(error, dict):
        return "", str(error)[:200]
    errors = error.get("errors") or [{}]
    reason = errors[0].get("reason", "") if isinstance(errors[0], dict) else ""
    return str(reason), str(error.get("message", ""))[:200]
