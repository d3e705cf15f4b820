"""A small fake Kubernetes API server that the real kubectl and helm binaries can talk to.

No real cluster can run on the test machines, but the installer's Kubernetes checks and its
helm install/upgrade steps must be tested against the real clients, because that is where the
surprises are (discovery, readiness, release bookkeeping). This module serves the part of the
Kubernetes REST API those clients use, over HTTPS on 127.0.0.1, with:

* legacy discovery (/api, /apis, /api/v1, /apis/<group>/<version>) for a fixed set of kinds;
* a generic object store with create/get/list/watch/update/patch/delete, label and field
  selectors, resourceVersion/uid/creationTimestamp/generation, and real-shaped Status errors;
* tiny "controllers" that make workloads look ready at once (so `helm --wait` finishes);
* a configurable deny set: SelfSubjectAccessReview (`kubectl auth can-i`) says no and the
  matching requests get RBAC-shaped 403 Forbidden errors;
* configurable /version, nodes, storage classes and bearer token.

It serves HTTPS with a throw-away self-signed certificate (the kubeconfig trusts it through
certificate-authority-data) because client-go only sends credentials over TLS: with a plain
http:// server in the kubeconfig kubectl and helm silently drop the bearer token, and "auth
refused" could not be tested. FakeCluster(tls=False) gives plain HTTP without authentication.

Tests drive it through FakeCluster (see the ``k8s_cluster`` fixture at the bottom) and the
helm release helpers (`release_secrets`, `decode_release`, `set_release_status`).
Set K8S_FIXTURE_LOG=1 to print every request to stderr.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import functools
import gzip
import hashlib
import itertools
import json
import os
import re
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

Obj = dict[str, Any]

DEFAULT_TOKEN = "fixture-token"
JOB_OUTCOME_ANNOTATION = "fake-k8s.test/outcome"  # on a Job's pod template: "fail" fails it
ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
MUTATING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Kinds whose metadata.generation the real server maintains (bumped on spec changes); helm's
# readiness checks compare it with status.observedGeneration.
_GENERATION_KINDS = frozenset({"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job",
                               "CronJob", "Ingress", "PodDisruptionBudget",
                               "HorizontalPodAutoscaler"})


# --------------------------------------------------------------------------------------------
# The kinds we serve
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Kind:
    group: str  # "" for the core group
    version: str
    plural: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ALL_VERBS
    stored: bool = True  # False for review-style kinds that are answered, never kept
    in_all: bool = False  # member of the "all" category (`kubectl get all`)

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def key(self) -> str:
        """The qualified resource name the API uses in messages: "secrets", "deployments.apps"."""
        return f"{self.plural}.{self.group}" if self.group else self.plural


KINDS: tuple[Kind, ...] = (
    Kind("", "v1", "namespaces", "Namespace", False, ("ns",)),
    Kind("", "v1", "nodes", "Node", False, ("no",)),
    Kind("", "v1", "secrets", "Secret", True),
    Kind("", "v1", "configmaps", "ConfigMap", True, ("cm",)),
    Kind("", "v1", "services", "Service", True, ("svc",), in_all=True),
    Kind("", "v1", "pods", "Pod", True, ("po",), in_all=True),
    Kind("", "v1", "events", "Event", True, ("ev",)),
    Kind("", "v1", "serviceaccounts", "ServiceAccount", True, ("sa",)),
    Kind("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", True, ("pvc",)),
    Kind("", "v1", "persistentvolumes", "PersistentVolume", False, ("pv",)),
    Kind("apps", "v1", "deployments", "Deployment", True, ("deploy",), in_all=True),
    Kind("apps", "v1", "statefulsets", "StatefulSet", True, ("sts",), in_all=True),
    Kind("apps", "v1", "replicasets", "ReplicaSet", True, ("rs",), in_all=True),
    Kind("apps", "v1", "daemonsets", "DaemonSet", True, ("ds",), in_all=True),
    Kind("batch", "v1", "jobs", "Job", True, in_all=True),
    Kind("batch", "v1", "cronjobs", "CronJob", True, ("cj",), in_all=True),
    Kind("storage.k8s.io", "v1", "storageclasses", "StorageClass", False, ("sc",)),
    Kind("networking.k8s.io", "v1", "ingresses", "Ingress", True, ("ing",)),
    Kind("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", True, ("pdb",)),
    Kind("autoscaling", "v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler", True,
         ("hpa",)),
    Kind("rbac.authorization.k8s.io", "v1", "roles", "Role", True),
    Kind("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", True),
    Kind("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", False),
    Kind("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", False),
    Kind("authorization.k8s.io", "v1", "selfsubjectaccessreviews", "SelfSubjectAccessReview",
         False, verbs=("create",), stored=False),
)

_GROUP_VERSIONS: dict[str, list[Kind]] = {}
for _k in KINDS:
    _GROUP_VERSIONS.setdefault(_k.group_version, []).append(_k)
_BY_PATH = {(k.group_version, k.plural): k for k in KINDS}


def find_kind(name: str) -> Kind:
    """Resolve "secrets", "Secret", "secret", "deployments.apps", "sc" ... to a Kind."""
    low = name.lower()
    for k in KINDS:
        if low in (k.plural, k.key, k.kind.lower(), *k.short_names):
            return k
    raise KeyError(f"the fake API server does not serve {name!r}")


# --------------------------------------------------------------------------------------------
# Errors, in the shape of metav1.Status
# --------------------------------------------------------------------------------------------


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str, details: Obj | None = None):
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details

    def body(self) -> Obj:
        status: Obj = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                       "message": self.message, "reason": self.reason, "code": self.code}
        if self.details is not None:
            status["details"] = self.details
        return status


def _details(kind: Kind, name: str) -> Obj:
    details: Obj = {"name": name, "kind": kind.plural}
    if kind.group:
        details["group"] = kind.group
    return details


def not_found(kind: Kind, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{kind.key} "{name}" not found', _details(kind, name))


def already_exists(kind: Kind, name: str) -> ApiError:
    return ApiError(409, "AlreadyExists", f'{kind.key} "{name}" already exists',
                    _details(kind, name))


def conflict(kind: Kind, name: str) -> ApiError:
    return ApiError(409, "Conflict",
                    f'Operation cannot be fulfilled on {kind.key} "{name}": the object has been '
                    "modified; please apply your changes to the latest version and try again",
                    _details(kind, name))


NO_SUCH_PATH = ApiError(404, "NotFound", "the server could not find the requested resource", {})


# --------------------------------------------------------------------------------------------
# Selectors
# --------------------------------------------------------------------------------------------

_LABEL_TERM = re.compile(
    r"^\s*(?P<neg>!)?\s*(?P<key>[A-Za-z0-9._/-]+)\s*"
    r"(?:(?P<op>==|=|!=)\s*(?P<value>[A-Za-z0-9._-]*)"
    r"|\s(?P<setop>in|notin)\s*\((?P<values>[^)]*)\))?\s*$"
)


def _split_terms(selector: str) -> list[str]:
    """Split on commas that are not inside "in (a,b)" parentheses."""
    terms, depth, current = [], 0, ""
    for ch in selector:
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            terms.append(current)
            current = ""
        else:
            current += ch
    terms.append(current)
    return [t for t in terms if t.strip()]


def label_matcher(selector: str) -> Callable[[dict[str, str]], bool]:
    """Compile a label selector ("owner=helm,name=carto", "a in (x,y)", "!b", ...)."""
    # Each requirement is (key, operator, values); "=" is "in" one value, "!=" is "notin".
    reqs: list[tuple[str, str, frozenset[str]]] = []
    for term in _split_terms(selector):
        m = _LABEL_TERM.match(term)
        if not m:
            raise ApiError(400, "BadRequest", f"unable to parse requirement: {term!r}")
        if m["setop"]:
            values = frozenset(v.strip() for v in m["values"].split(","))
            reqs.append((m["key"], m["setop"], values))
        elif m["op"]:
            reqs.append((m["key"], "notin" if m["op"] == "!=" else "in",
                         frozenset([m["value"]])))
        else:
            reqs.append((m["key"], "!exists" if m["neg"] else "exists", frozenset()))

    def matches(labels: dict[str, str]) -> bool:
        for key, op, values in reqs:
            ok = {"in": key in labels and labels[key] in values,
                  "notin": labels.get(key) not in values,
                  "exists": key in labels, "!exists": key not in labels}[op]
            if not ok:
                return False
        return True

    return matches


def field_matcher(selector: str) -> Callable[[Obj], bool]:
    """Compile a field selector ("metadata.name=x", "status.phase!=Running", "type=...")."""
    checks = []
    for term in _split_terms(selector):
        m = re.match(r"^\s*([A-Za-z0-9._]+)\s*(==|=|!=)\s*(.*?)\s*$", term)
        if not m:
            raise ApiError(400, "BadRequest", f"invalid field selector: {term!r}")
        path, op, value = m.groups()
        checks.append((path.split("."), op == "!=", value))

    def lookup(obj: Obj, path: list[str]) -> str:
        cur: Any = obj
        for part in path:
            cur = cur.get(part) if isinstance(cur, dict) else None
        if isinstance(cur, bool):
            return str(cur).lower()
        return "" if cur is None else str(cur)

    return lambda obj: all((lookup(obj, p) == v) != neg for p, neg, v in checks)


# --------------------------------------------------------------------------------------------
# Patches
# --------------------------------------------------------------------------------------------


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: maps merge recursively, null deletes, lists are replaced."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# Strategic merge patch needs the Go struct tags (patchMergeKey) of the built-in types. We only
# know the list fields helm's three-way patches touch in ordinary charts; other lists are
# replaced whole, like JSON merge patch does.
_MERGE_KEYS = {
    "containers": "name", "initContainers": "name", "ephemeralContainers": "name",
    "volumes": "name", "env": "name", "imagePullSecrets": "name", "volumeMounts": "mountPath",
    "volumeDevices": "devicePath", "hostAliases": "ip", "ownerReferences": "uid",
    "conditions": "type", "topologySpreadConstraints": "topologyKey", "resourceClaims": "name",
}
_MERGED_PRIMITIVE_LISTS = {"finalizers"}


def _merge_key(field_name: str, items: list[Any]) -> str | None:
    if field_name == "ports":  # ContainerPort merges on containerPort, ServicePort on port
        sample = next((i for i in items if isinstance(i, dict)), {})
        return "containerPort" if "containerPort" in sample else "port"
    return _MERGE_KEYS.get(field_name)


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    """Kubernetes strategic merge patch, for the directives client-go's three-way patch emits."""
    if not isinstance(patch, dict) or not isinstance(target, dict):
        return merge_patch(target, patch)
    patch = dict(patch)
    directive = patch.pop("$patch", None)
    if directive == "replace":
        return copy.deepcopy(patch)
    if directive == "delete":
        return None
    retain = patch.pop("$retainKeys", None)
    result = dict(target)
    orders = {k.split("/", 1)[1]: patch.pop(k)
              for k in list(patch) if k.startswith("$setElementOrder/")}
    for key in [k for k in patch if k.startswith("$deleteFromPrimitiveList/")]:
        name = key.split("/", 1)[1]
        result[name] = [v for v in result.get(name) or [] if v not in patch.pop(key)]
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            merged = strategic_merge_patch(result.get(key) or {}, value)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        elif isinstance(value, list):
            result[key] = _merge_list(key, result.get(key), value, orders.get(key))
        else:
            result[key] = copy.deepcopy(value)
    if retain is not None:
        result = {k: v for k, v in result.items() if k in retain}
    return result


def _merge_list(name: str, current: Any, patch: list[Any], order: list[Any] | None) -> list[Any]:
    current = current if isinstance(current, list) else []
    if name in _MERGED_PRIMITIVE_LISTS:
        return current + [v for v in patch if v not in current]
    key = _merge_key(name, patch + current)
    if key is None or not all(isinstance(i, dict) for i in patch):
        return [i for i in copy.deepcopy(patch) if not (isinstance(i, dict) and i.get("$patch"))]
    merged = {i.get(key): i for i in current if isinstance(i, dict)}
    out = [i for i in current if isinstance(i, dict)]
    for item in patch:
        k = item.get(key)
        if item.get("$patch") == "delete":
            out = [i for i in out if i.get(key) != k]
        elif k in merged:
            new = strategic_merge_patch(merged[k], item)
            out = [new if i.get(key) == k else i for i in out]
        else:
            out.append(strategic_merge_patch({}, item))
    if order:
        rank = {o.get(key): n for n, o in enumerate(order) if isinstance(o, dict)}
        out.sort(key=lambda i: rank.get(i.get(key), len(rank)))
    return out


def json_patch(target: Any, ops: list[Obj]) -> Any:
    """RFC 6902 JSON patch (kubectl patch --type=json)."""
    doc = copy.deepcopy(target)

    def split(pointer: str) -> list[str]:
        return [p.replace("~1", "/").replace("~0", "~") for p in pointer.split("/")[1:]]

    def parent(path: list[str]) -> tuple[Any, str]:
        cur = doc
        for part in path[:-1]:
            cur = cur[int(part)] if isinstance(cur, list) else cur[part]
        return cur, path[-1]

    def get(pointer: str) -> Any:
        cur = doc
        for part in split(pointer):
            cur = cur[int(part)] if isinstance(cur, list) else cur[part]
        return cur

    def remove(pointer: str) -> Any:
        cont, last = parent(split(pointer))
        return cont.pop(int(last)) if isinstance(cont, list) else cont.pop(last)

    def add(pointer: str, value: Any) -> None:
        cont, last = parent(split(pointer))
        if isinstance(cont, list):
            cont.insert(len(cont) if last == "-" else int(last), value)
        else:
            cont[last] = value

    try:
        for op in ops:
            kind, path = op["op"], op["path"]
            if kind == "add":
                add(path, copy.deepcopy(op["value"]))
            elif kind == "remove":
                remove(path)
            elif kind == "replace":
                remove(path)
                add(path, copy.deepcopy(op["value"]))
            elif kind in ("move", "copy"):
                value = remove(op["from"]) if kind == "move" else copy.deepcopy(get(op["from"]))
                add(path, value)
            elif kind == "test" and get(path) != op["value"]:
                raise ApiError(422, "Invalid", f"testing value {path} failed")
    except (KeyError, IndexError, ValueError, TypeError) as exc:
        raise ApiError(422, "Invalid", f"the json patch could not be applied: {exc!r}") from exc
    return doc


# --------------------------------------------------------------------------------------------
# Protobuf request bodies
# --------------------------------------------------------------------------------------------
# helm's release storage uses a typed client configured for protobuf: the release Secrets are
# POSTed and PUT as application/vnd.kubernetes.protobuf, whatever the rest of helm sends. The
# body is "k8s\0" + runtime.Unknown{typeMeta{apiVersion, kind}, raw}, raw being the Go type's
# generated protobuf. We decode Secret and ConfigMap (helm's two storage drivers) by field
# number, from k8s.io/api/core/v1/generated.proto and apimachinery's meta/v1.

_PROTO_MAGIC = b"k8s\x00"
_TIME = {1: ("seconds", "int"), 2: ("nanos", "int")}
_OWNER_REF = {1: ("kind", "str"), 3: ("name", "str"), 4: ("uid", "str"),
              5: ("apiVersion", "str"), 6: ("controller", "bool"),
              7: ("blockOwnerDeletion", "bool")}
_OBJECT_META = {
    1: ("name", "str"), 2: ("generateName", "str"), 3: ("namespace", "str"), 5: ("uid", "str"),
    6: ("resourceVersion", "str"), 7: ("generation", "int"), 8: ("creationTimestamp", _TIME),
    11: ("labels", ("map", "str")), 12: ("annotations", ("map", "str")),
    13: ("ownerReferences", ("list", _OWNER_REF)), 14: ("finalizers", ("list", "str")),
}
_PROTO_KINDS: dict[str, dict[int, tuple[str, Any]]] = {
    "Secret": {1: ("metadata", _OBJECT_META), 2: ("data", ("map", "bytes")), 3: ("type", "str"),
               4: ("stringData", ("map", "str")), 5: ("immutable", "bool")},
    "ConfigMap": {1: ("metadata", _OBJECT_META), 2: ("data", ("map", "str")),
                  3: ("binaryData", ("map", "bytes")), 4: ("immutable", "bool")},
}
_UNKNOWN = {1: ("typeMeta", {1: ("apiVersion", "str"), 2: ("kind", "str")}), 2: ("raw", "raw")}


def _proto_fields(data: bytes) -> Iterator[tuple[int, int | bytes]]:
    """Yield (field number, value) from protobuf wire format (varints and length-delimited)."""
    pos = 0

    def varint() -> int:
        nonlocal pos
        result = shift = 0
        while True:
            byte = data[pos]
            pos += 1
            result |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return result

    while pos < len(data):
        key = varint()
        number, wire = key >> 3, key & 7
        if wire == 0:
            yield number, varint()
        elif wire == 2:
            size = varint()
            yield number, data[pos:pos + size]
            pos += size
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4  # fixed-width numbers: none in the messages we read
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")


def _proto_value(kind: Any, raw: int | bytes) -> Any:
    if isinstance(raw, int):  # varint: int64 or bool
        return bool(raw) if kind == "bool" else raw
    if kind == "str":
        return raw.decode()
    if kind == "bytes":  # []byte is base64 in JSON
        return base64.b64encode(raw).decode()
    if kind == "raw":
        return raw
    if kind is _TIME:  # metav1.Time is an RFC 3339 string in JSON; unset is omitted
        seconds = _proto_message(_TIME, raw).get("seconds", 0)
        return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ") \
            if seconds else None
    return _proto_message(kind, raw)


def _proto_message(schema: dict[int, tuple[str, Any]], data: bytes) -> Obj:
    out: Obj = {}
    for number, raw in _proto_fields(data):
        if number not in schema:
            continue  # fields we do not model (managedFields ...)
        name, kind = schema[number]
        if isinstance(kind, tuple) and kind[0] == "map":  # repeated {1: key, 2: value} entries
            entry = dict(_proto_fields(raw))  # type: ignore[arg-type]
            out.setdefault(name, {})[_proto_value("str", entry.get(1, b""))] = \
                _proto_value(kind[1], entry.get(2, b""))
        elif isinstance(kind, tuple) and kind[0] == "list":
            out.setdefault(name, []).append(_proto_value(kind[1], raw))
        else:
            out[name] = _proto_value(kind, raw)
    # proto2 sends empty optional strings; Go's JSON (omitempty) leaves them out, so do we.
    return {k: v for k, v in out.items() if v not in ("", None)}


def decode_protobuf(body: bytes) -> Obj:
    """Decode a Kubernetes protobuf request body into the object's JSON form."""
    if not body.startswith(_PROTO_MAGIC):
        raise ApiError(400, "BadRequest", "protobuf body without the k8s magic prefix")
    unknown = _proto_message(_UNKNOWN, body[len(_PROTO_MAGIC):])
    type_meta = unknown.get("typeMeta", {})
    schema = _PROTO_KINDS.get(type_meta.get("kind", ""))
    if schema is None:
        raise ApiError(415, "UnsupportedMediaType",
                       f"the fake API server cannot decode protobuf {type_meta}; send JSON")
    obj = _proto_message(schema, unknown.get("raw", b""))
    obj.update(apiVersion=type_meta.get("apiVersion", "v1"), kind=type_meta["kind"])
    return obj


# --------------------------------------------------------------------------------------------
# Configuration objects tests hand in
# --------------------------------------------------------------------------------------------


@dataclass
class NodeSpec:
    """A node as the installer sees it. `ready` is True, False or "Unknown"."""

    name: str
    cpu: str = "2"
    memory: str = "16Gi"
    ready: bool | str = True
    unschedulable: bool = False
    taints: list[Obj] = field(default_factory=list)
    allocatable_cpu: str | None = None
    allocatable_memory: str | None = None
    labels: dict[str, str] = field(default_factory=dict)


def good_nodes(count: int = 3, cpu: str = "2", memory: str = "16Gi") -> list[NodeSpec]:
    return [NodeSpec(f"node-{n}", cpu=cpu, memory=memory) for n in range(1, count + 1)]


@dataclass(frozen=True)
class RequestRecord:
    method: str
    path: str
    query: dict[str, str]
    status: int
    resource: str | None = None  # Kind.key, e.g. "secrets" or "deployments.apps"
    namespace: str | None = None
    name: str | None = None
    content_type: str | None = None
    user_agent: str | None = None


@functools.lru_cache(maxsize=1)
def _tls_material() -> tuple[bytes, bytes]:
    """A self-signed EC certificate for 127.0.0.1/localhost, made once per process.

    Returns (certificate PEM, private key PEM). The certificate is its own CA, so the
    kubeconfig's certificate-authority-data is the same PEM.
    """
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fake-kube-apiserver")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1)).not_valid_after(now + timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost"),
            x509.DNSName("kubernetes.default.svc")]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _short_hash(value: Any) -> str:
    digest = hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()
    return "".join(c for c in digest if c in "bcdfghjklmnpqrstvwxz2456789")[:10]


# --------------------------------------------------------------------------------------------
# The cluster: store + configuration + HTTP server
# --------------------------------------------------------------------------------------------


class FakeCluster:
    """State of the fake cluster and the HTTP server serving it.

    All stored objects live in one dict keyed by (Kind.key, namespace, name); every write goes
    through `_write` so resourceVersion, the watch event log and the fake controllers stay
    consistent. Public methods take the same lock as the HTTP handlers.
    """

    def __init__(self, token: str | None = DEFAULT_TOKEN, tls: bool = True) -> None:
        # Without TLS clients never send the token, so authentication is off with tls=False.
        self.tls = tls
        self.token = token if tls else None  # None: no authentication at all
        self.version: Obj = {}
        self.set_version("v1.30.2")
        self.user_name = "fixture-user"  # who the token belongs to, in Forbidden messages
        self.denied: list[tuple[str, str, str, str | None, str]] = []
        self.load_balancer_ip: str | None = "203.0.113.10"  # None: LoadBalancers stay pending
        self.failing_jobs: set[str] = set()  # Job names that fail with BackoffLimitExceeded
        self.requests: list[RequestRecord] = []
        self.kubeconfig: Path | None = None
        self.home: Path | None = None
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._store: dict[tuple[str, str, str], Obj] = {}
        self._events: list[tuple[int, str, str, Obj]] = []  # (rv, kind key, type, object)
        self._rv = itertools.count(1000)
        self._last_rv = 999
        self._ips = itertools.count(10)
        self._service_ips = itertools.count(10)
        self._node_ports = itertools.count(30080)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = False
        for ns in ("default", "kube-system", "kube-public", "kube-node-lease"):
            self.put_object({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})

    # ---- lifecycle -------------------------------------------------------------------------

    def start(self) -> FakeCluster:
        cluster = self

        class Handler(_Handler):
            pass

        Handler.cluster = cluster
        self._server = _Server(("127.0.0.1", 0), Handler)
        if self.tls:
            cert, key = _tls_material()
            with tempfile.TemporaryDirectory() as tmp:
                Path(tmp, "tls.crt").write_bytes(cert)
                Path(tmp, "tls.key").write_bytes(key)
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                ctx.load_cert_chain(Path(tmp, "tls.crt"), Path(tmp, "tls.key"))
            # The handshake happens in the handler thread (see _Handler.setup), not in the
            # accept loop, so one stalled client cannot block the others.
            self._server.socket = ctx.wrap_socket(self._server.socket, server_side=True,
                                                  do_handshake_on_connect=False)
        self._server.daemon_threads = True
        self._server.block_on_close = False  # keep-alive/watch connections must not block stop()
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        name="fake-k8s-apiserver", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            self._changed.notify_all()
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def port(self) -> int:
        assert self._server, "FakeCluster is not started"
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    @property
    def ca_pem(self) -> bytes:
        """The CA certificate (PEM) clients must trust to reach this server over TLS."""
        return _tls_material()[0]

    def write_kubeconfig(self, path: Path | str, context: str = "fixture",
                         namespace: str | None = None, token: str | None = None,
                         trusted: bool = True) -> Path:
        """Write a kubeconfig for this server.

        token defaults to the accepted one (pass e.g. "wrong" for a 401); trusted=False leaves
        out the CA so clients fail with "x509: certificate signed by unknown authority".
        """
        path = Path(path)
        ctx: Obj = {"cluster": "fake-cluster", "user": "fake-user"}
        if namespace:
            ctx["namespace"] = namespace
        user_token = token if token is not None else (self.token or "unused")
        cluster: Obj = {"server": self.url}
        if self.tls and trusted:
            cluster["certificate-authority-data"] = base64.b64encode(self.ca_pem).decode()
        config = {
            "apiVersion": "v1", "kind": "Config", "preferences": {},
            "clusters": [{"name": "fake-cluster", "cluster": cluster}],
            "users": [{"name": "fake-user", "user": {"token": user_token}}],
            "contexts": [{"name": context, "context": ctx}],
            "current-context": context,
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        path.chmod(0o600)  # helm warns on stderr about group/world-readable kubeconfigs
        if self.kubeconfig is None:
            self.kubeconfig = path
        return path

    def client_env(self, kubeconfig: Path | str | None = None) -> dict[str, str]:
        """Environment for running kubectl/helm against this cluster in isolation.

        KUBECONFIG points at our kubeconfig; helm's config/cache/data dirs and the discovery
        cache (KUBECACHEDIR, honoured by kubectl and helm) live in a per-cluster directory, so
        nothing is read from or written to the real ~/.kube or ~/.config/helm, and a later
        fixture server reusing the same port never sees a stale discovery cache.
        """
        kubeconfig = kubeconfig or self.kubeconfig
        assert kubeconfig, "call write_kubeconfig() first"
        home = self.home or Path(kubeconfig).parent / "client-home"
        env = dict(os.environ)
        env.update({
            "KUBECONFIG": str(kubeconfig), "KUBECACHEDIR": str(home / "kube-cache"),
            "HELM_CACHE_HOME": str(home / "helm-cache"),
            "HELM_CONFIG_HOME": str(home / "helm-config"),
            "HELM_DATA_HOME": str(home / "helm-data"),
        })
        for var in ("HELM_NAMESPACE", "HELM_KUBECONTEXT", "HELM_KUBETOKEN", "HELM_KUBEAPISERVER"):
            env.pop(var, None)
        return env

    def run(self, binary: Path | str, *args: str, timeout: float = 90,
            kubeconfig: Path | str | None = None) -> subprocess.CompletedProcess[str]:
        """Run kubectl/helm against this cluster with client_env(); never raises on failure."""
        return subprocess.run([str(binary), *args], env=self.client_env(kubeconfig),
                              capture_output=True, text=True, timeout=timeout, check=False)

    # ---- configuration -----------------------------------------------------------------------

    def set_version(self, git_version: str, major: str | None = None,
                    minor: str | None = None) -> None:
        """Set /version. major/minor default to the numbers in git_version ("v1.30.2").

        Pass minor explicitly for providers that report e.g. minor "30+" (EKS, GKE).
        """
        m = re.match(r"v?(\d+)\.(\d+)", git_version)
        if not git_version.startswith("v"):
            git_version = "v" + git_version
        self.version = {
            "major": major if major is not None else (m.group(1) if m else ""),
            "minor": minor if minor is not None else (m.group(2) if m else ""),
            "gitVersion": git_version if re.search(r"\d+\.\d+\.\d+", git_version)
            else git_version + ".0",
            "gitCommit": "0" * 40, "gitTreeState": "clean", "buildDate": "2024-01-01T00:00:00Z",
            "goVersion": "go1.22.5", "compiler": "gc", "platform": "linux/amd64",
        }

    def deny(self, verb: str, resource: str, group: str = "", namespace: str | None = None,
             reason: str = "") -> None:
        """Forbid (verb, resource, group[, namespace]).

        SelfSubjectAccessReview (kubectl auth can-i) answers "no" with `reason`, and the
        matching API requests get 403 Forbidden like RBAC gives. verb is an API verb (get,
        list, watch, create, update, patch, delete, deletecollection); resource a plural,
        optionally with a subresource ("deployments/scale"). "*" matches anything; namespace
        None matches every namespace and cluster scope.
        """
        with self._lock:
            self.denied.append((verb, resource, group, namespace, reason))

    def set_nodes(self, nodes: list[NodeSpec]) -> None:
        with self._lock:
            for node in self.objects("nodes"):
                self.delete_object("nodes", node["metadata"]["name"])
            for spec in nodes:
                self.add_node(spec)

    def add_node(self, spec: NodeSpec) -> Obj:
        ready = {True: "True", False: "False"}.get(spec.ready, spec.ready)  # type: ignore[arg-type]
        taints = list(spec.taints)
        # The node lifecycle controller adds these taints; installers may look at either.
        if spec.unschedulable:
            taints.append({"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"})
        if ready != "True":
            reason = "not-ready" if ready == "False" else "unreachable"
            taints.append({"key": f"node.kubernetes.io/{reason}", "effect": "NoSchedule"})
        node_spec: Obj = {"podCIDR": "10.244.0.0/24"}
        if spec.unschedulable:
            node_spec["unschedulable"] = True
        if taints:
            node_spec["taints"] = taints
        capacity = {"cpu": spec.cpu, "memory": spec.memory, "pods": "110",
                    "ephemeral-storage": "100Gi"}
        allocatable = dict(capacity, cpu=spec.allocatable_cpu or spec.cpu,
                           memory=spec.allocatable_memory or spec.memory)
        now = _now()
        node = {
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": spec.name, "labels": {
                "kubernetes.io/hostname": spec.name, "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64", **spec.labels}},
            "spec": node_spec,
            "status": {
                "capacity": capacity, "allocatable": allocatable,
                "conditions": [{
                    "type": "Ready", "status": ready, "lastHeartbeatTime": now,
                    "lastTransitionTime": now,
                    "reason": "KubeletReady" if ready == "True" else "KubeletNotReady",
                    "message": "kubelet is posting ready status" if ready == "True"
                    else "container runtime network not ready"}],
                "addresses": [{"type": "InternalIP", "address": f"10.0.0.{next(self._ips)}"},
                              {"type": "Hostname", "address": spec.name}],
                "nodeInfo": {"kubeletVersion": self.version["gitVersion"],
                             "kubeProxyVersion": self.version["gitVersion"],
                             "architecture": "amd64", "operatingSystem": "linux",
                             "osImage": "Ubuntu 22.04.4 LTS",
                             "containerRuntimeVersion": "containerd://1.7.12",
                             "kernelVersion": "5.15.0-100-generic", "machineID": "",
                             "systemUUID": "", "bootID": ""},
            },
        }
        return self.put_object(node)

    def set_storage_classes(self, classes: list[tuple[str, bool]]) -> None:
        """Replace all StorageClasses by [(name, is_default), ...]."""
        with self._lock:
            for sc in self.objects("storageclasses"):
                self.delete_object("storageclasses", sc["metadata"]["name"])
            for name, default in classes:
                self.add_storage_class(name, default)

    def add_storage_class(self, name: str, default: bool = False,
                          provisioner: str = "rancher.io/local-path") -> Obj:
        metadata: Obj = {"name": name}
        if default:
            metadata["annotations"] = {"storageclass.kubernetes.io/is-default-class": "true"}
        return self.put_object({
            "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": metadata,
            "provisioner": provisioner, "reclaimPolicy": "Delete",
            "volumeBindingMode": "WaitForFirstConsumer"})

    # ---- direct object access for tests ---------------------------------------------------------

    def objects(self, resource: str, namespace: str | None = None,
                label_selector: str = "") -> list[Obj]:
        """Copies of the stored objects of a kind ("secrets", "Deployment", "deployments.apps")."""
        kind = find_kind(resource)
        with self._lock:
            return [copy.deepcopy(o) for o in self._list(kind, namespace, label_selector, "")]

    def get_object(self, resource: str, name: str, namespace: str | None = None) -> Obj | None:
        kind = find_kind(resource)
        with self._lock:
            obj = self._store.get((kind.key, namespace or "", name))
            return copy.deepcopy(obj) if obj else None

    def put_object(self, obj: Obj) -> Obj:
        """Create or replace an object directly (no request recorded, controllers still run)."""
        kind = find_kind(obj["kind"])
        meta = obj.setdefault("metadata", {})
        with self._lock:
            old = self._store.get((kind.key, meta.get("namespace", ""), meta["name"]))
            return copy.deepcopy(self._write(kind, obj, old))

    def delete_object(self, resource: str, name: str, namespace: str | None = None) -> None:
        kind = find_kind(resource)
        with self._lock:
            self._delete(kind, namespace or "", name)

    def mutating_requests(self, resource: str | None = None) -> list[RequestRecord]:
        """Requests that changed (or tried to change) state, optionally only for one kind.

        SelfSubjectAccessReview POSTs are not counted: they store nothing.
        """
        key = find_kind(resource).key if resource else None
        with self._lock:
            return [r for r in self.requests
                    if r.method in MUTATING_METHODS and r.resource is not None
                    and r.resource != "selfsubjectaccessreviews.authorization.k8s.io"
                    and (key is None or r.resource == key)]

    def mutation_counts(self) -> Counter[str]:
        """Counter of mutating requests by resource ("secrets", "deployments.apps", ...)."""
        return Counter(r.resource for r in self.mutating_requests() if r.resource)

    def reset_requests(self) -> None:
        with self._lock:
            self.requests.clear()

    # ---- store internals (call with the lock held) -------------------------------------------

    def _list(self, kind: Kind, namespace: str | None, labels: str, fields: str) -> list[Obj]:
        lmatch, fmatch = label_matcher(labels), field_matcher(fields)
        out = []
        for (key, ns, _), obj in sorted(self._store.items(), key=lambda kv: kv[0]):
            if key != kind.key or (namespace and ns != namespace):
                continue
            if lmatch(obj["metadata"].get("labels") or {}) and fmatch(obj):
                out.append(obj)
        return out

    def _write(self, kind: Kind, obj: Obj, old: Obj | None) -> Obj:
        """Store obj (a create when old is None), filling server-owned metadata."""
        obj = copy.deepcopy(obj)
        obj["apiVersion"], obj["kind"] = kind.group_version, kind.kind
        meta = obj.setdefault("metadata", {})
        if not kind.namespaced:
            meta.pop("namespace", None)
        meta.pop("managedFields", None)
        self._defaults(kind, obj, old)
        if old is None:
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = _now()
            if kind.kind in _GENERATION_KINDS:
                meta["generation"] = 1
        else:
            for owned in ("uid", "creationTimestamp"):
                meta[owned] = old["metadata"][owned]
            if "generation" in old["metadata"]:
                changed = obj.get("spec") != old.get("spec")
                meta["generation"] = old["metadata"]["generation"] + (1 if changed else 0)
        self._set_status(kind, obj)
        rv = next(self._rv)
        self._last_rv = rv
        meta["resourceVersion"] = str(rv)
        store_key = (kind.key, meta.get("namespace", ""), meta["name"])
        self._store[store_key] = obj
        self._events.append((rv, kind.key, "MODIFIED" if old else "ADDED", copy.deepcopy(obj)))
        self._changed.notify_all()
        self._side_effects(kind, obj, created=old is None)
        return self._store.get(store_key, obj)

    def _delete(self, kind: Kind, namespace: str, name: str) -> Obj:
        obj = self._store.pop((kind.key, namespace, name), None)
        if obj is None:
            raise not_found(kind, name)
        rv = next(self._rv)
        self._last_rv = rv
        obj["metadata"]["resourceVersion"] = str(rv)
        self._events.append((rv, kind.key, "DELETED", copy.deepcopy(obj)))
        self._changed.notify_all()
        # Garbage collection: dependents (ReplicaSets of a Deployment ...) go too; deleting a
        # namespace removes everything in it (immediately, no Terminating phase).
        uid = obj["metadata"]["uid"]
        for (key, ns, dep_name), dep in list(self._store.items()):
            owners = dep["metadata"].get("ownerReferences") or []
            in_ns = kind.kind == "Namespace" and ns == name
            if in_ns or any(o.get("uid") == uid for o in owners):
                if (key, ns, dep_name) in self._store:
                    self._delete(find_kind(key), ns, dep_name)
        return obj

    # ---- defaults and "controllers" ------------------------------------------------------------

    def _defaults(self, kind: Kind, obj: Obj, old: Obj | None) -> None:
        """Apply the API server's defaulting that clients rely on.

        helm dereferences Deployment.spec.replicas without a nil check, so it must be set, as
        the real defaulting does. Services keep the clusterIP/nodePorts allocated before.
        """
        spec = obj.setdefault("spec", {}) if kind.kind in (
            "Deployment", "StatefulSet", "Job", "Service", "DaemonSet", "ReplicaSet") else None
        if kind.kind in ("Deployment", "StatefulSet", "ReplicaSet") and spec is not None:
            spec.setdefault("replicas", 1)
            spec.setdefault("revisionHistoryLimit", 10)
        if kind.kind == "Deployment" and spec is not None:
            spec.setdefault("progressDeadlineSeconds", 600)
            spec.setdefault("strategy", {"type": "RollingUpdate", "rollingUpdate": {
                "maxUnavailable": "25%", "maxSurge": "25%"}})
        elif kind.kind == "StatefulSet" and spec is not None:
            spec.setdefault("podManagementPolicy", "OrderedReady")
            spec.setdefault("updateStrategy", {"type": "RollingUpdate",
                                               "rollingUpdate": {"partition": 0}})
        elif kind.kind == "Job" and spec is not None:
            spec.setdefault("backoffLimit", 6)
            spec.setdefault("completions", 1)
            spec.setdefault("parallelism", 1)
        elif kind.kind == "Service" and spec is not None:
            old_spec = (old or {}).get("spec", {})
            spec.setdefault("type", "ClusterIP")
            if spec["type"] != "ExternalName" and not spec.get("clusterIP"):
                n = next(self._service_ips)
                spec["clusterIP"] = old_spec.get("clusterIP") or f"10.96.{n // 250}.{n % 250 + 1}"
                spec.setdefault("clusterIPs", [spec["clusterIP"]])
            old_ports = {p.get("port"): p for p in old_spec.get("ports") or []}
            for port in spec.get("ports") or []:
                port.setdefault("protocol", "TCP")
                port.setdefault("targetPort", port.get("port"))
                if spec["type"] in ("NodePort", "LoadBalancer") and "nodePort" not in port:
                    port["nodePort"] = old_ports.get(port.get("port"), {}).get(
                        "nodePort") or next(self._node_ports)
        elif kind.kind == "Namespace":
            obj.setdefault("spec", {"finalizers": ["kubernetes"]})
            obj["status"] = {"phase": "Active"}
            obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = \
                obj["metadata"]["name"]
        elif kind.kind == "Secret":
            obj.setdefault("type", "Opaque")
            # The real server folds stringData into data (base64) and never returns it.
            for k, v in (obj.pop("stringData", None) or {}).items():
                obj.setdefault("data", {})[k] = base64.b64encode(v.encode()).decode()

    def _side_effects(self, kind: Kind, obj: Obj, created: bool) -> None:
        """What controllers would create: a Deployment's ReplicaSet, a namespace's default SA."""
        if kind.kind == "Deployment":
            self._reconcile_replicaset(obj)
        elif kind.kind == "Namespace" and created:
            self._write(find_kind("serviceaccounts"), {"metadata": {
                "name": "default", "namespace": obj["metadata"]["name"]}}, None)

    def _set_status(self, kind: Kind, obj: Obj) -> None:
        """Pretend the controllers ran and everything became ready at once."""
        meta, spec = obj["metadata"], obj.get("spec") or {}
        generation = meta.get("generation", 1)
        replicas = spec.get("replicas", 1)
        if kind.kind == "Deployment":
            obj["status"] = {
                "observedGeneration": generation, "replicas": replicas,
                "updatedReplicas": replicas, "readyReplicas": replicas,
                "availableReplicas": replicas,
                "conditions": [
                    {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable",
                     "message": "Deployment has minimum availability."},
                    {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable",
                     "message": f'ReplicaSet "{meta["name"]}" has successfully progressed.'}]}
        elif kind.kind in ("ReplicaSet", "StatefulSet"):
            status = {"observedGeneration": generation, "replicas": replicas,
                      "readyReplicas": replicas, "availableReplicas": replicas}
            if kind.kind == "StatefulSet":
                revision = f'{meta["name"]}-{_short_hash(spec.get("template"))}'
                status.update(currentReplicas=replicas, updatedReplicas=replicas,
                              currentRevision=revision, updateRevision=revision)
            else:
                status["fullyLabeledReplicas"] = replicas
            obj["status"] = status
        elif kind.kind == "DaemonSet":
            count = sum(1 for n in self._list(find_kind("nodes"), None, "", "")
                        if not n["spec"].get("unschedulable"))
            obj["status"] = {"observedGeneration": generation, "desiredNumberScheduled": count,
                             "currentNumberScheduled": count, "updatedNumberScheduled": count,
                             "numberReady": count, "numberAvailable": count,
                             "numberMisscheduled": 0}
        elif kind.kind == "Job":
            obj["status"] = self._job_status(obj)
        elif kind.kind == "Pod":
            obj["status"] = {"phase": "Running", "conditions": [
                {"type": t, "status": "True"}
                for t in ("Initialized", "Ready", "ContainersReady", "PodScheduled")]}
        elif kind.kind == "PersistentVolumeClaim":
            obj["status"] = {"phase": "Bound", "accessModes": spec.get("accessModes", []),
                             "capacity": (spec.get("resources") or {}).get("requests", {})}
        elif kind.kind == "Service" and spec.get("type") == "LoadBalancer":
            obj["status"] = {"loadBalancer": {"ingress": [{"ip": self.load_balancer_ip}]}
                             if self.load_balancer_ip else {}}

    def _job_status(self, job: Obj) -> Obj:
        """Complete at once -- or fail like a Job whose pods all crashed, when the Job is
        named in failing_jobs or its pod template is annotated `fake-k8s.test/outcome: fail`
        (a chart can then reproduce a failing hook without running anything)."""
        now, spec = _now(), job.get("spec") or {}
        annotations = ((spec.get("template") or {}).get("metadata") or {}).get("annotations")
        if job["metadata"]["name"] in self.failing_jobs or \
                (annotations or {}).get(JOB_OUTCOME_ANNOTATION) == "fail":
            return {"failed": spec.get("backoffLimit", 6) + 1, "startTime": now,
                    "conditions": [{"type": "Failed", "status": "True",
                                    "reason": "BackoffLimitExceeded",
                                    "message": "Job has reached the specified backoff limit",
                                    "lastTransitionTime": now}]}
        return {"succeeded": spec.get("completions", 1), "startTime": now, "completionTime": now,
                "conditions": [{"type": "Complete", "status": "True", "lastTransitionTime": now}]}

    def _reconcile_replicaset(self, deployment: Obj) -> None:
        """Create the Deployment's current ReplicaSet, as the deployment controller would.

        helm's --wait does not trust Deployment.status: it lists ReplicaSets with the
        Deployment's selector, keeps those whose controller ownerReference has the
        Deployment's uid, and picks the one whose pod template equals the Deployment's
        (ignoring the pod-template-hash label). That RS must report readyReplicas and an
        observedGeneration equal to its generation. Older ReplicaSets are scaled to 0.
        """
        meta, spec = deployment["metadata"], deployment["spec"]
        template = copy.deepcopy(spec.get("template") or {})
        pod_hash = _short_hash(template)
        template.setdefault("metadata", {}).setdefault("labels", {})["pod-template-hash"] = pod_hash
        selector = copy.deepcopy(spec.get("selector") or {})
        selector.setdefault("matchLabels", {})["pod-template-hash"] = pod_hash
        rs_kind = find_kind("replicasets")
        ns = meta.get("namespace", "")
        for rs in self._list(rs_kind, ns, "", ""):
            owners = rs["metadata"].get("ownerReferences") or []
            if any(o.get("uid") == meta["uid"] for o in owners) and \
                    rs["metadata"]["name"] != f'{meta["name"]}-{pod_hash}' and \
                    rs["spec"].get("replicas"):
                self._write(rs_kind, dict(rs, spec=dict(rs["spec"], replicas=0)), rs)
        name = f'{meta["name"]}-{pod_hash}'
        old = self._store.get((rs_kind.key, ns, name))
        self._write(rs_kind, {
            "metadata": {
                "name": name, "namespace": ns, "labels": template["metadata"]["labels"],
                "annotations": {"deployment.kubernetes.io/revision": str(meta["generation"])},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment",
                                     "name": meta["name"], "uid": meta["uid"],
                                     "controller": True, "blockOwnerDeletion": True}]},
            "spec": {"replicas": spec.get("replicas", 1), "selector": selector,
                     "template": template}}, old)

    # ---- request handling (called by the HTTP handler) -----------------------------------------

    def handle(self, method: str, path: str, query: dict[str, str], headers: Any,
               body: bytes) -> tuple[int, Any, RequestRecord]:
        """Route one request. Returns (status code, payload, record); the payload is a JSON
        object, text, raw bytes (_Raw) or a _Watch stream."""
        route = _parse_path(path)
        record = RequestRecord(method, path, query, 0, route.kind.key if route.kind else None,
                               route.namespace, route.name, headers.get("Content-Type"),
                               headers.get("User-Agent"))
        try:
            if self.token is not None and \
                    headers.get("Authorization") != f"Bearer {self.token}":
                raise ApiError(401, "Unauthorized", "Unauthorized")
            with self._lock:
                code, payload = self._dispatch(method, route, query, headers, body)
                if isinstance(payload, dict):  # never serialise a live object outside the lock
                    payload = copy.deepcopy(payload)
        except ApiError as err:
            code, payload = err.code, err.body()
        except Exception as exc:  # a bug here: show it in kubectl/helm output, not as EOF
            code, payload = 500, ApiError(500, "InternalError",
                                          f"fake API server failed: {exc!r}").body()
        return code, payload, dataclasses.replace(record, status=code)

    def _dispatch(self, method: str, route: _Route, query: dict[str, str], headers: Any,
                  body: bytes) -> tuple[int, Any]:
        if route.special is not None:
            if method != "GET":
                raise ApiError(405, "MethodNotAllowed", "the server does not allow this method")
            return 200, self._special(route.special)
        kind = route.kind
        if kind is None:
            raise NO_SUCH_PATH
        if kind.kind == "SelfSubjectAccessReview":
            if method != "POST":
                raise ApiError(405, "MethodNotAllowed", "only create is allowed")
            return 201, self._access_review(_json_body(body))
        self._authorize(method, route, query)
        ns = route.namespace or ""
        if kind.namespaced and ns and method in ("POST", "PUT", "PATCH") and \
                ("namespaces", "", ns) not in self._store:
            raise not_found(find_kind("namespaces"), ns)
        dry_run = "dryRun" in query
        if route.name is not None:
            return self._object_request(method, kind, ns, route.name, route.subresource,
                                        headers, body, dry_run)
        if method == "GET":
            return 200, self._list_response(kind, route.namespace, query)
        if method == "POST":
            return 201, self._create(kind, ns, _json_body(body), dry_run)
        if method == "DELETE":  # deletecollection
            items = self._list(kind, route.namespace, query.get("labelSelector", ""),
                               query.get("fieldSelector", ""))
            for item in list(items):
                self._delete(kind, item["metadata"].get("namespace", ""), item["metadata"]["name"])
            return 200, {"kind": f"{kind.kind}List", "apiVersion": kind.group_version,
                         "metadata": {}, "items": items}
        raise ApiError(405, "MethodNotAllowed", "the server does not allow this method")

    def _object_request(self, method: str, kind: Kind, ns: str, name: str,
                        subresource: str | None, headers: Any, body: bytes,
                        dry_run: bool) -> tuple[int, Any]:
        """GET/PUT/PATCH/DELETE on one object, or on its status/scale subresource."""
        if subresource not in (None, "status", "scale") or (
                subresource == "scale" and kind.kind not in _SCALABLE):
            raise NO_SUCH_PATH
        current = self._store.get((kind.key, ns, name))
        ctype = (headers.get("Content-Type") or "").split(";")[0].strip()
        if current is None:
            if method == "PATCH" and ctype == "application/apply-patch+yaml" and not subresource:
                return 201, self._create(kind, ns, _yaml_body(body), dry_run)  # SSA creates
            raise not_found(kind, name)
        if method == "GET":
            return 200, _scale(current) if subresource == "scale" else current
        if method == "DELETE" and not subresource:
            return 200, current if dry_run else self._delete(kind, ns, name)
        if method not in ("PUT", "PATCH"):
            raise ApiError(405, "MethodNotAllowed", "the server does not allow this method")
        if subresource == "scale":
            # kubectl scale PATCHes the autoscaling/v1 Scale view; only spec.replicas counts.
            view = _json_body(body) if method == "PUT" else \
                self._patch(ctype, _scale(current), body)
            replicas = (view.get("spec") or {}).get("replicas", current["spec"]["replicas"])
            new = copy.deepcopy(current)
            new["spec"]["replicas"] = replicas
            return 200, _scale(new if dry_run else self._write(kind, new, current))
        if method == "PUT":
            new = _json_body(body)
            rv = new.get("metadata", {}).get("resourceVersion")
            if rv and rv != current["metadata"]["resourceVersion"]:
                raise conflict(kind, name)
        else:
            new = self._patch(ctype, current, body)
        new.setdefault("metadata", {}).update(name=name)
        if kind.namespaced:
            new["metadata"]["namespace"] = ns
        return 200, new if dry_run else self._write(kind, new, current)

    def _special(self, what: str) -> Obj | str | bytes:
        if what == "version":
            return self.version
        if what in ("healthz", "livez", "readyz"):
            return "ok"
        if what == "openapi-v2":
            # helm (and kubectl create/apply) validate manifests client-side: they ask
            # /openapi/v3 whether the server does field validation itself (our 404 makes
            # them fall back to v2) and then check objects against the v2 schema. A 404 on
            # /openapi/v2 is fatal ("failed to download openapi"), but an empty protobuf
            # document is valid: no definitions, so every kind is accepted unvalidated.
            return _OPENAPI_V2_EMPTY
        if what == "api":
            return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": f"127.0.0.1:{self.port}"}]}
        if what == "apis":
            return {"kind": "APIGroupList", "apiVersion": "v1",
                    "groups": [_api_group(g) for g in _groups()]}
        if what.startswith("group:"):
            return _api_group(what[6:])
        if what.startswith("resources:"):
            gv = what[10:]
            return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv,
                    "resources": [_api_resource(k) for k in _GROUP_VERSIONS[gv]]}
        raise NO_SUCH_PATH

    def _list_response(self, kind: Kind, namespace: str | None, query: dict[str, str]) -> Any:
        labels, fields = query.get("labelSelector", ""), query.get("fieldSelector", "")
        if query.get("watch") in ("true", "1"):
            return _Watch(self, kind, namespace, labels, fields, query)
        items = copy.deepcopy(self._list(kind, namespace, labels, fields))
        return {"kind": f"{kind.kind}List", "apiVersion": kind.group_version,
                "metadata": {"resourceVersion": str(self._last_rv)}, "items": items}

    def _create(self, kind: Kind, ns: str, obj: Obj, dry_run: bool) -> Obj:
        if not kind.stored:
            raise ApiError(405, "MethodNotAllowed", "not stored")
        meta = obj.setdefault("metadata", {})
        if kind.namespaced:
            if meta.get("namespace") and ns and meta["namespace"] != ns:
                raise ApiError(400, "BadRequest", "the namespace of the provided object does "
                               "not match the namespace sent on the request")
            meta["namespace"] = ns or meta.get("namespace") or "default"
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        if not meta.get("name"):
            raise ApiError(422, "Invalid", f"{kind.kind} is invalid: metadata.name: Required value")
        if (kind.key, meta.get("namespace", ""), meta["name"]) in self._store:
            raise already_exists(kind, meta["name"])
        meta.pop("resourceVersion", None)
        if dry_run:
            return obj
        return self._write(kind, obj, None)

    def _patch(self, ctype: str, current: Obj, body: bytes) -> Obj:
        if ctype == "application/merge-patch+json":
            return merge_patch(current, _json_body(body))
        if ctype == "application/strategic-merge-patch+json":
            return strategic_merge_patch(current, _json_body(body))
        if ctype == "application/json-patch+json":
            ops = json.loads(body or b"[]")
            return json_patch(current, ops)
        if ctype == "application/apply-patch+yaml":
            return merge_patch(current, _yaml_body(body))
        raise ApiError(415, "UnsupportedMediaType", f"the body of the request was in an unknown "
                       f"format - accepted media types include: application/json-patch+json, "
                       f"application/merge-patch+json, application/apply-patch+yaml (got {ctype})")

    def _denial(self, verb: str, resource: str, group: str, namespace: str | None) -> str | None:
        """The reason ("" if none given) when the deny set forbids this, else None."""
        for d_verb, d_res, d_group, d_ns, d_reason in self.denied:
            if d_verb in ("*", verb) and d_res in ("*", resource) and \
                    d_group in ("*", group) and (d_ns is None or d_ns == namespace):
                return d_reason
        return None

    def _authorize(self, method: str, route: _Route, query: dict[str, str]) -> None:
        """Enforce the deny set on real requests too (403), so a denied install really fails."""
        kind = route.kind
        if kind is None or not kind.stored:
            return
        if method == "GET":
            verb = "get" if route.name else (
                "watch" if query.get("watch") in ("true", "1") else "list")
        else:
            verb = {"POST": "create", "PUT": "update", "PATCH": "patch",
                    "DELETE": "delete" if route.name else "deletecollection"}.get(method, "")
        resource = kind.plural + (f"/{route.subresource}" if route.subresource else "")
        if self._denial(verb, resource, kind.group, route.namespace) is None:
            return
        where = f'in the namespace "{route.namespace}"' if route.namespace \
            else "at the cluster scope"
        details: Obj = {"kind": kind.plural}
        if kind.group:
            details["group"] = kind.group
        if route.name:
            details["name"] = route.name
        subject = f"{kind.key} \"{route.name}\"" if route.name else kind.key
        raise ApiError(403, "Forbidden",
                       f'{subject} is forbidden: User "{self.user_name}" cannot {verb} resource '
                       f'"{resource}" in API group "{kind.group}" {where}', details)

    def _access_review(self, review: Obj) -> Obj:
        attrs = (review.get("spec") or {}).get("resourceAttributes")
        allowed, reason = True, ""
        if attrs is not None:
            resource = attrs.get("resource", "") + (
                f"/{attrs['subresource']}" if attrs.get("subresource") else "")
            denial = self._denial(attrs.get("verb", ""), resource, attrs.get("group", ""),
                                  attrs.get("namespace") or None)
            if denial is not None:
                allowed, reason = False, denial
        status: Obj = {"allowed": allowed}
        if reason:
            status["reason"] = reason
        return {"kind": "SelfSubjectAccessReview", "apiVersion": "authorization.k8s.io/v1",
                "metadata": {"creationTimestamp": None}, "spec": review.get("spec", {}),
                "status": status}


# --------------------------------------------------------------------------------------------
# Paths, discovery documents, watch
# --------------------------------------------------------------------------------------------


class _Raw(bytes):
    """A response body sent as is, with its own content type."""

    content_type: str

    def __new__(cls, data: bytes, content_type: str) -> _Raw:
        raw = super().__new__(cls, data)
        raw.content_type = content_type
        return raw


# (The real server labels it application/com.github.proto-openapi.spec.v2.v1.0+protobuf.)
_OPENAPI_V2_EMPTY = _Raw(b"", "application/com.github.proto-openapi.spec.v2.v1.0+protobuf")


@dataclass
class _Route:
    special: str | None = None  # "version", "api", "apis", "group:<g>", "resources:<gv>"
    kind: Kind | None = None
    namespace: str | None = None
    name: str | None = None
    subresource: str | None = None


_SCALABLE = frozenset({"Deployment", "StatefulSet", "ReplicaSet"})


def _scale(obj: Obj) -> Obj:
    """The autoscaling/v1 Scale view of a Deployment/StatefulSet/ReplicaSet."""
    meta = obj["metadata"]
    labels = ((obj["spec"].get("selector") or {}).get("matchLabels") or {})
    return {"kind": "Scale", "apiVersion": "autoscaling/v1",
            "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion",
                                              "creationTimestamp") if k in meta},
            "spec": {"replicas": obj["spec"].get("replicas", 1)},
            "status": {"replicas": (obj.get("status") or {}).get("replicas", 0),
                       "selector": ",".join(f"{k}={v}" for k, v in sorted(labels.items()))}}


def _groups() -> list[str]:
    return sorted({k.group for k in KINDS if k.group})


def _api_group(group: str) -> Obj:
    versions = [{"groupVersion": gv, "version": gv.split("/")[1]}
                for gv in _GROUP_VERSIONS if gv.startswith(group + "/")]
    if not versions:
        raise NO_SUCH_PATH
    return {"kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": versions,
            "preferredVersion": versions[0]}


def _api_resource(kind: Kind) -> Obj:
    res: Obj = {"name": kind.plural, "singularName": kind.kind.lower(),
                "namespaced": kind.namespaced, "kind": kind.kind, "verbs": list(kind.verbs)}
    if kind.short_names:
        res["shortNames"] = list(kind.short_names)
    if kind.in_all:
        res["categories"] = ["all"]
    return res


def _parse_path(path: str) -> _Route:
    parts = [p for p in path.split("/") if p]
    if parts in (["version"], ["healthz"], ["livez"], ["readyz"], ["api"], ["apis"]):
        return _Route(special=parts[0])
    if parts == ["openapi", "v2"]:
        return _Route(special="openapi-v2")
    if parts[:1] == ["api"] and len(parts) >= 2:
        gv, rest = parts[1], parts[2:]
    elif parts[:1] == ["apis"] and len(parts) == 2:
        return _Route(special=f"group:{parts[1]}")
    elif parts[:1] == ["apis"] and len(parts) >= 3:
        gv, rest = f"{parts[1]}/{parts[2]}", parts[3:]
    else:
        return _Route()
    if gv not in _GROUP_VERSIONS:
        return _Route()
    if not rest:
        return _Route(special=f"resources:{gv}")
    # /namespaces/<ns>/<plural>/... is a namespaced resource; /namespaces/<name>[/status] is
    # the Namespace object itself.
    namespace = None
    if rest[0] == "namespaces" and len(rest) >= 3 and (gv, rest[2]) in _BY_PATH:
        namespace, rest = rest[1], rest[2:]
    kind = _BY_PATH.get((gv, rest[0]))
    if kind is None or len(rest) > 3:
        return _Route()
    return _Route(kind=kind, namespace=namespace, name=rest[1] if len(rest) > 1 else None,
                  subresource=rest[2] if len(rest) > 2 else None)


class _Watch:
    """A watch stream: newline-separated {"type","object"} events over a chunked response.

    Without a resourceVersion (or with "0") the real server first replays the current
    objects as ADDED events; with one, it sends what changed after it. Helm's hook waiting and
    kubectl --watch both rely on that.
    """

    def __init__(self, cluster: FakeCluster, kind: Kind, namespace: str | None, labels: str,
                 fields: str, query: dict[str, str]) -> None:
        self.cluster, self.kind, self.namespace = cluster, kind, namespace
        self.lmatch, self.fmatch = label_matcher(labels), field_matcher(fields)
        self.since = int(query.get("resourceVersion") or 0)
        self.replay = self.since == 0
        self.deadline = time.monotonic() + min(float(query.get("timeoutSeconds") or 60), 60)

    def _match(self, key: str, ns: str | None, obj: Obj) -> bool:
        return key == self.kind.key and (not self.namespace or ns == self.namespace) and \
            self.lmatch(obj["metadata"].get("labels") or {}) and self.fmatch(obj)

    def events(self) -> Iterator[Obj]:
        c = self.cluster
        with c._lock:
            if self.replay:
                snapshot = [copy.deepcopy(o) for o in c._list(self.kind, self.namespace, "", "")]
                self.since = c._last_rv
            else:
                snapshot = []
        for obj in snapshot:
            if self._match(self.kind.key, obj["metadata"].get("namespace"), obj):
                yield {"type": "ADDED", "object": obj}
        while True:
            with c._lock:
                pending = [e for e in c._events if e[0] > self.since]
                while not pending and not c._stopping and time.monotonic() < self.deadline:
                    c._changed.wait(timeout=0.5)
                    pending = [e for e in c._events if e[0] > self.since]
                if not pending:
                    return
            for rv, key, etype, obj in pending:
                self.since = rv
                if self._match(key, obj["metadata"].get("namespace"), obj):
                    yield {"type": etype, "object": obj}


def _json_body(body: bytes) -> Obj:
    if body.startswith(_PROTO_MAGIC):
        return decode_protobuf(body)
    try:
        obj = json.loads(body or b"{}")
    except json.JSONDecodeError as exc:
        raise ApiError(400, "BadRequest", f"invalid JSON body: {exc}") from exc
    if not isinstance(obj, dict):
        raise ApiError(400, "BadRequest", "the request body must be a JSON object")
    return obj


def _yaml_body(body: bytes) -> Obj:
    obj = yaml.safe_load(body or b"{}")
    if not isinstance(obj, dict):
        raise ApiError(400, "BadRequest", "the request body must be an object")
    return obj


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that drop connections (or fail TLS verification on purpose, in tests) are
        # normal here; keep tracebacks out of the test output unless logging is on.
        if os.environ.get("K8S_FIXTURE_LOG"):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    """HTTP/1.1 with keep-alive: client-go reuses connections and streams watches chunked."""

    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; with Nagle on, each response then waits for
    # the client's delayed ACK (~40 ms), which made one helm install take 1.5 s.
    disable_nagle_algorithm = True
    cluster: FakeCluster

    def setup(self) -> None:
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(10)
            self.request.do_handshake()
            self.request.settimeout(None)
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass  # _handle logs each request itself when K8S_FIXTURE_LOG is set

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _handle(self) -> None:
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        body = self._read_body()
        code, payload, record = self.cluster.handle(self.command, url.path, query, self.headers,
                                                    body)
        with self.cluster._lock:
            self.cluster.requests.append(record)
        if os.environ.get("K8S_FIXTURE_LOG"):
            sys.stderr.write(f"fake-k8s: {self.command} {self.path} -> {code} "
                             f"({record.content_type or 'no body'})\n")
            if body and (code >= 400 or self.command == "PATCH"):
                sys.stderr.write(f"fake-k8s:   request body: {body[:1000]!r}\n")
        if isinstance(payload, _Watch):
            self._stream(payload)
            return
        if isinstance(payload, _Raw):
            data, ctype = bytes(payload), payload.content_type
        elif isinstance(payload, str):
            data, ctype = payload.encode(), "text/plain; charset=utf-8"
        else:
            data, ctype = json.dumps(payload).encode(), "application/json"
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _stream(self, watch: _Watch) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()
        try:
            for event in watch.events():
                line = json.dumps(event).encode() + b"\n"
                self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except OSError:  # the client went away (or the server is stopping)
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle


# --------------------------------------------------------------------------------------------
# helm release storage helpers
# --------------------------------------------------------------------------------------------
# helm 3 keeps each revision in a Secret "sh.helm.release.v1.<release>.v<revision>" of type
# helm.sh/release.v1 with labels owner=helm, name, status, version. Its data.release is
# base64(gzip(JSON release)) -- and, being Secret data, base64-encoded once more on the wire.
# helm decides "another operation is in progress" from the JSON's info.status, while
# `helm list` filters on the label, so set_release_status changes both.


def decode_release(secret: Obj) -> Obj:
    raw = base64.b64decode(base64.b64decode(secret["data"]["release"]))
    if raw[:3] == b"\x1f\x8b\x08":
        raw = gzip.decompress(raw)
    return json.loads(raw)


def encode_release(release: Obj) -> str:
    """The Secret data value (already base64 for the API) holding this release."""
    packed = base64.b64encode(gzip.compress(json.dumps(release).encode(), compresslevel=9))
    return base64.b64encode(packed).decode()


def release_secrets(cluster: FakeCluster, namespace: str, release: str) -> list[Obj]:
    """The release's Secrets, oldest revision first."""
    secrets = cluster.objects("secrets", namespace, f"owner=helm,name={release}")
    return sorted(secrets, key=lambda s: int(s["metadata"]["labels"]["version"]))


def set_release_status(cluster: FakeCluster, namespace: str, release: str, status: str,
                       revision: int | None = None) -> Obj:
    """Mark a stored helm release revision (default: the latest) with `status`.

    status is one of helm's: deployed, superseded, failed, uninstalling, pending-install,
    pending-upgrade, pending-rollback. Returns the decoded release as now stored.
    """
    secrets = release_secrets(cluster, namespace, release)
    if revision is not None:
        secrets = [s for s in secrets if s["metadata"]["labels"]["version"] == str(revision)]
    if not secrets:
        raise LookupError(f"no helm release {release!r} (revision {revision}) in {namespace!r}")
    secret = secrets[-1]
    rel = decode_release(secret)
    rel["info"]["status"] = status
    secret["metadata"]["labels"]["status"] = status
    secret["data"]["release"] = encode_release(rel)
    cluster.put_object(secret)
    return rel


# --------------------------------------------------------------------------------------------
# pytest fixture
# --------------------------------------------------------------------------------------------


@pytest.fixture
def k8s_cluster(tmp_path: Path) -> Iterator[FakeCluster]:
    """A started fake cluster: v1.30, 3 Ready nodes (2 CPU, 16Gi), a default StorageClass,
    everything allowed, a kubeconfig at tmp_path/"kubeconfig" (cluster.kubeconfig) and an
    isolated client environment (cluster.client_env())."""
    cluster = FakeCluster()
    cluster.set_nodes(good_nodes())
    cluster.add_storage_class("standard", default=True)
    cluster.home = tmp_path / "k8s-client-home"
    cluster.start()
    try:
        cluster.write_kubeconfig(tmp_path / "kubeconfig")
        yield cluster
    finally:
        cluster.stop()
