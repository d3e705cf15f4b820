"""Azure Blob Storage with the account's Shared Key.

The signature is an HMAC-SHA256 over a fixed list of request parts (the "string to sign");
the Azure SDK would do it, but over its own connections, not a socket that starts on the
target. CORS is a property of the storage account's Blob service, not of a container.
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import hashlib
import hmac
from urllib.parse import quote, unquote, urlsplit
from xml.etree import ElementTree

from installer.storage import (
    CREDENTIALS,
    DENIED,
    MISSING_BUCKET,
    OTHER,
    CorsRule,
    StoreError,
    parse_xml,
    send,
)
from installer.storage.http import HttpResponse, Transport

API_VERSION = "2021-08-06"
# AuthorizationFailure: what Azure answers for a request its network rules refuse, and what
# Azurite answers for a bad signature; the fix names both (see checks/storage.py).
_CREDENTIAL_CODES = {"AuthenticationFailed", "InvalidAuthenticationInfo", "AuthorizationFailure"}
_MISSING_CODES = {"ContainerNotFound", "ResourceNotFound", "AccountNotFound"}


class AzureBlobStore:
    provider = "azure-blob"
    cors_scope = "account"

    def __init__(self, transport: Transport, account: str, key: str, *,
                 endpoint: str | None = None) -> None:
        self.transport = transport
        self.account = account
        try:
            self.key = base64.b64decode(key, validate=True)
        except (binascii.Error, ValueError):
            raise StoreError(CREDENTIALS, "the Azure storage access key is not base64 text "
                             "(copy key1 or key2 from the account's Access keys)") from None
        # The public endpoint, or an emulator's path-style one (http://host:port/<account>).
        self.base = (endpoint.rstrip("/") if endpoint
                     else f"https://{account}.blob.core.windows.net")

    def object_url(self, bucket: str, name: str) -> str:
        return f"{self.base}/{bucket}/{quote(name)}"

    def _request(self, method: str, path: str, query: str = "", body: bytes = b"",
                 headers: dict[str, str] | None = None, signed: bool = True) -> HttpResponse:
        url = f"{self.base}{path}" + (f"?{query}" if query else "")
        all_headers = {"x-ms-date": email.utils.formatdate(usegmt=True),
                       "x-ms-version": API_VERSION}
        all_headers.update(headers or {})
        if signed:
            all_headers["Authorization"] = self._sign(method, url, all_headers, len(body))
        return send(self.transport, method, url, all_headers, body)

    def _sign(self, method: str, url: str, headers: dict[str, str], length: int) -> str:
        lower = {k.lower(): v for k, v in headers.items()}
        parts = urlsplit(url)
        canonical_headers = "".join(f"{k}:{lower[k].strip()}\n" for k in sorted(lower)
                                    if k.startswith("x-ms-"))
        resource = f"/{self.account}{parts.path or '/'}"
        params: dict[str, list[str]] = {}
        for pair in parts.query.split("&"):
            if pair:
                name, _, value = pair.partition("=")
                params.setdefault(unquote(name).lower(), []).append(unquote(value))
        for name in sorted(params):
            resource += f"\n{name}:{','.join(sorted(params[name]))}"
        to_sign = "\n".join([
            method, lower.get("content-encoding", ""), lower.get("content-language", ""),
            str(length) if length else "", lower.get("content-md5", ""),
            lower.get("content-type", ""), "", lower.get("if-modified-since", ""),
            lower.get("if-match", ""), lower.get("if-none-match", ""),
            lower.get("if-unmodified-since", ""), lower.get("range", ""),
        ]) + "\n" + canonical_headers + resource
        digest = hmac.new(self.key, to_sign.encode("utf-8"), hashlib.sha256).digest()
        return f"SharedKey {self.account}:{base64.b64encode(digest).decode('ascii')}"

    def _raise_for(self, response: HttpResponse, where: str, action: str) -> None:
        if response.status < 300:
            return
        code = response.header("x-ms-error-code") or _xml_code(response.body)
        detail = f"{action} in {where}: HTTP {response.status}" + (f" {code}" if code else "")
        if code in _MISSING_CODES:
            kind = MISSING_BUCKET
        elif code in _CREDENTIAL_CODES:
            kind = CREDENTIALS
        elif response.status == 403:
            kind = DENIED
        else:
            kind = OTHER
        raise StoreError(kind, detail, response.status, code)

    def put(self, bucket: str, name: str, data: bytes) -> None:
        response = self._request("PUT", f"/{bucket}/{quote(name)}", body=data,
                                 headers={"x-ms-blob-type": "BlockBlob",
                                          "Content-Type": "text/plain"})
        self._raise_for(response, bucket, f"write {name}")

    def get(self, bucket: str, name: str) -> bytes:
        response = self._request("GET", f"/{bucket}/{quote(name)}")
        self._raise_for(response, bucket, f"read {name}")
        return response.body

    def delete(self, bucket: str, name: str) -> None:
        response = self._request("DELETE", f"/{bucket}/{quote(name)}")
        self._raise_for(response, bucket, f"delete {name}")

    def cors_rules(self, bucket: str) -> list[CorsRule]:
        response = self._request("GET", "/", query="restype=service&comp=properties")
        self._raise_for(response, f"the storage account {self.account}",
                        "read the Blob service properties")
        try:
            root = parse_xml(response.body)
        except ElementTree.ParseError:
            raise StoreError(OTHER, "the Blob service properties are not XML") from None
        rules = []
        for rule in root.iter("CorsRule"):
            def listed(tag: str, node: ElementTree.Element = rule) -> tuple[str, ...]:
                text = node.findtext(tag) or ""
                return tuple(part.strip() for part in text.split(",") if part.strip())

            age = (rule.findtext("MaxAgeInSeconds") or "").strip()
            rules.append(CorsRule(listed("AllowedOrigins"), listed("AllowedMethods"),
                                  listed("AllowedHeaders"), int(age) if age.isdigit() else None))
        return rules

    def anonymous_get(self, bucket: str, name: str) -> int:
        return self._request("GET", f"/{bucket}/{quote(name)}", signed=False).status

    def public_read(self, bucket: str, name: str) -> tuple[bool, str, str]:
        fix = (f"set the container {bucket}'s public access level to Blob (`az storage "
               f"container set-permission --account-name {self.account} --name {bucket} "
               "--public-access blob`; the account must allow blob public access), or set "
               "storage.thumbnails_public: false")
        level = self.public_access(bucket)
        if level not in ("blob", "container"):
            return False, f"the container {bucket} is private (no anonymous read access)", fix
        self.put(bucket, name, b"carto-installer public-read probe\n")
        status = self.anonymous_get(bucket, name)
        if status == 200:
            return True, f"{bucket} allows anonymous reads ({level})", ""
        return (False, f"{bucket} is set to {level} but an anonymous read answered HTTP "
                f"{status} (the account may disallow public access)", fix)

    def public_access(self, bucket: str) -> str:
        """The container's public access level: "" (private), "blob" or "container"."""
        response = self._request("HEAD", f"/{bucket}", query="restype=container")
        self._raise_for(response, bucket, "read the container's properties")
        return response.header("x-ms-blob-public-access")


def _xml_code(body: bytes) -> str:
    try:
        return (parse_xml(body).findtext("Code") or "").strip()
    except ElementTree.ParseError:
        return ""
