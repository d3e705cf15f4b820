"""Amazon S3 and S3-compatible stores, signed with AWS Signature Version 4.

boto3 would sign for us, but it opens its own connections (urllib3) and cannot use a socket
that starts on a remote target through our proxy handling; SigV4 is a page of hashing, so it
is done here over `Transport`.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
from urllib.parse import quote
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

_CREDENTIAL_CODES = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken",
                     "ExpiredToken", "InvalidClientTokenId", "AuthorizationHeaderMalformed"}


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).digest()


class S3Store:
    provider = "s3"
    cors_scope = "bucket"

    def __init__(self, transport: Transport, access_key_id: str, secret_access_key: str, *,
                 region: str, endpoint: str | None, path_style: bool) -> None:
        self.transport = transport
        self.access_key_id = access_key_id
        self.secret_access_key = secret_access_key
        self.region = region
        self.endpoint = endpoint.rstrip("/") if endpoint else None
        self.path_style = path_style

    def _base(self, bucket: str) -> tuple[str, str]:
        """(scheme://host[:port], path prefix) for the bucket."""
        if self.endpoint:
            if self.path_style:
                return self.endpoint, f"/{bucket}"
            scheme, _, host = self.endpoint.partition("://")
            return f"{scheme}://{bucket}.{host}", ""
        host = f"s3.{self.region}.amazonaws.com"
        if self.path_style:
            return f"https://{host}", f"/{bucket}"
        return f"https://{bucket}.{host}", ""

    def object_url(self, bucket: str, name: str) -> str:
        base, prefix = self._base(bucket)
        return f"{base}{prefix}/{quote(name, safe='/-_.~')}"

    def _request(self, method: str, bucket: str, name: str = "", query: str = "",
                 body: bytes = b"", headers: dict[str, str] | None = None,
                 signed: bool = True) -> HttpResponse:
        base, prefix = self._base(bucket)
        path = prefix + ("/" + quote(name, safe="/-_.~") if name else "/")
        if not name and prefix:
            path = prefix
        url = base + path + (f"?{query}" if query else "")
        all_headers = dict(headers or {})
        if signed:
            all_headers.update(self._sign(method, base.split("://", 1)[1], path, query, body,
                                          all_headers))
        return send(self.transport, method, url, all_headers, body)

    def _sign(self, method: str, host: str, path: str, query: str, body: bytes,
              headers: dict[str, str]) -> dict[str, str]:
        now = datetime.datetime.now(datetime.UTC)
        amz_date = now.strftime("%Y%m%dT%H%M%SZ")
        day = now.strftime("%Y%m%d")
        payload = _sha256(body)
        signed_headers = {"host": host, "x-amz-content-sha256": payload, "x-amz-date": amz_date}
        signed_headers.update({k.lower(): v.strip() for k, v in headers.items()})
        names = sorted(signed_headers)
        canonical_query = "&".join(sorted(
            f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}"
            for k, _, v in (pair.partition("=") for pair in query.split("&") if pair)))
        canonical = "\n".join([
            method, path, canonical_query,
            "".join(f"{n}:{signed_headers[n]}\n" for n in names),
            ";".join(names), payload])
        scope = f"{day}/{self.region}/s3/aws4_request"
        to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope,
                             _sha256(canonical.encode("utf-8"))])
        key = _hmac(("AWS4" + self.secret_access_key).encode("utf-8"), day)
        for part in (self.region, "s3", "aws4_request"):
            key = _hmac(key, part)
        signature = hmac.new(key, to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
        return {"x-amz-content-sha256": payload, "x-amz-date": amz_date,
                "Authorization": f"AWS4-HMAC-SHA256 Credential={self.access_key_id}/{scope}, "
                                 f"SignedHeaders={';'.join(names)}, Signature={signature}"}

    def _raise_for(self, response: HttpResponse, bucket: str, action: str) -> None:
        if response.status < 300:
            return
        code, message = _error(response)
        detail = f"{action} in {bucket}: HTTP {response.status}" + (f" {code}" if code else "") \
            + (f" ({message})" if message else "")
        if code == "NoSuchBucket":
            kind = MISSING_BUCKET
        elif code in _CREDENTIAL_CODES:
            kind = CREDENTIALS
        elif response.status == 403:
            kind = DENIED
        elif response.status == 404 and not code and action.startswith("write"):
            kind = MISSING_BUCKET
        else:
            kind = OTHER
        raise StoreError(kind, detail, response.status, code)

    def put(self, bucket: str, name: str, data: bytes) -> None:
        response = self._request("PUT", bucket, name, body=data,
                                 headers={"content-type": "text/plain"})
        self._raise_for(response, bucket, f"write {name}")

    def put_public(self, bucket: str, name: str, data: bytes) -> None:
        """Write with the canned ACL public-read, as CARTO does for public thumbnails."""
        response = self._request("PUT", bucket, name, body=data,
                                 headers={"content-type": "text/plain",
                                          "x-amz-acl": "public-read"})
        self._raise_for(response, bucket, f"write {name} with the ACL public-read")

    def get(self, bucket: str, name: str) -> bytes:
        response = self._request("GET", bucket, name)
        self._raise_for(response, bucket, f"read {name}")
        return response.body

    def delete(self, bucket: str, name: str) -> None:
        response = self._request("DELETE", bucket, name)
        self._raise_for(response, bucket, f"delete {name}")

    def cors_rules(self, bucket: str) -> list[CorsRule]:
        response = self._request("GET", bucket, query="cors=")
        if response.status == 404 and _error(response)[0] == "NoSuchCORSConfiguration":
            return []
        self._raise_for(response, bucket, "read the CORS configuration")
        try:
            root = parse_xml(response.body)
        except ElementTree.ParseError:
            raise StoreError(OTHER, f"the CORS configuration of {bucket} is not XML") from None
        rules = []
        for rule in _children(root, "CORSRule"):
            age = _text(rule, "MaxAgeSeconds")
            rules.append(CorsRule(
                tuple(_texts(rule, "AllowedOrigin")), tuple(_texts(rule, "AllowedMethod")),
                tuple(_texts(rule, "AllowedHeader")),
                int(age) if age and age.isdigit() else None))
        return rules

    def anonymous_get(self, bucket: str, name: str) -> int:
        return self._request("GET", bucket, name, signed=False).status

    def public_read(self, bucket: str, name: str) -> tuple[bool, str, str]:
        """Can CARTO publish `name` in `bucket`? (ok, what was seen, the fix). Leaves the probe
        object in place for the caller to delete."""
        response = self._request("GET", bucket, query="publicAccessBlock=")
        if response.status == 200:
            try:
                root = parse_xml(response.body)
            except ElementTree.ParseError:
                root = None
            if root is not None:
                blocked = [flag for flag in ("BlockPublicAcls", "IgnorePublicAcls")
                           if _text(root, flag).lower() == "true"]
                if blocked:
                    return (False, f"Block Public Access is on for {bucket} "
                            f"({', '.join(blocked)})",
                            f"turn off BlockPublicAcls and IgnorePublicAcls on {bucket} (`aws "
                            f"s3api delete-public-access-block --bucket {bucket}`), or set "
                            "storage.thumbnails_public: false")
        try:
            self.put_public(bucket, name, b"carto-installer public-read probe\n")
        except StoreError as exc:
            if exc.kind in (DENIED, OTHER) and exc.status in (400, 403):
                return (False, f"a public-read object was refused: {exc.detail}",
                        f"allow ACLs on {bucket} (Object Ownership: ObjectWriter or "
                        "BucketOwnerPreferred; Block Public Access off), or set "
                        "storage.thumbnails_public: false")
            raise
        status = self.anonymous_get(bucket, name)
        if status == 200:
            return True, f"an object written public-read is readable anonymously in {bucket}", ""
        return (False, f"an anonymous read of a public-read object answered HTTP {status}",
                f"allow public objects in {bucket} (Block Public Access off, ACLs enabled), or "
                "set storage.thumbnails_public: false")


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _children(node: ElementTree.Element, name: str) -> list[ElementTree.Element]:
    return [child for child in node if _local(child.tag) == name]


def _texts(node: ElementTree.Element, name: str) -> list[str]:
    return [(child.text or "").strip() for child in _children(node, name)]


def _text(node: ElementTree.Element, name: str) -> str:
    found = _texts(node, name)
    return found[0] if found else ""


def _error(response: HttpResponse) -> tuple[str, str]:
    """(Code, Message) of an S3 error document, or ("", "") for a body that is not one."""
    try:
        root = parse_xml(response.body)
    except ElementTree.ParseError:
        return "", ""
    return _text(root, "Code"), _text(root, "Message")[:200]
