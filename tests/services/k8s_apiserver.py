"""A small fake Kubernetes API server that the real kubectl and helm binaries can talk to.

No real cluster can run on the test machines, but the installer's Kubernetes checks and its
helm install/upgrade steps must be tested against the real clients, because that is where the
surprises are (discovery, readiness, release bookkeeping). This module serves the part of the
Kubernetes REST API those clients use, over HTTPS on 127.0.0.1. It is faithful enough for the
vendor's real charts (carto-1.266.1/1.280.1: Deployments, a StatefulSet, a hook Job,
Services, Secrets, ConfigMaps, ServiceAccounts; optionally PDBs, HPAs, NetworkPolicies,
Roles/RoleBindings, Ingress) to install with `helm upgrade --install --wait`.

What it models:

* discovery (/api, /apis, /api/v1, /apis/<group>/<version>) for a fixed set of kinds, HPAs
  under autoscaling/v2 (stored) and v1 (converted); an unknown group, version, kind or path
  is a 404 with a metav1.Status body, so helm says 'no matches for kind ... ensure CRDs are
  installed first' as with a real server;
* a generic store with create/get/list/watch/update/patch (JSON, merge, strategic merge for
  the list keys helm's three-way patches touch, apply)/delete/deletecollection, label and
  field selectors, resourceVersion/uid/creationTimestamp, generation bumped on spec changes,
  dry-run, ownerReference garbage collection, real-shaped Status errors (404/409/422/403),
  and the update validation upgrades meet (immutable selectors, a StatefulSet spec that may
  change only in replicas/ordinals/template/updateStrategy/PVC retention/minReadySeconds, a
  Job's template, a Service's clusterIP); other field validation is not modelled;
* the server's defaulting (pkg/apis/{core,apps,batch,autoscaling,rbac}/v1 defaults.go and the
  DefaultStorageClass/DefaultTolerationSeconds admission): pod templates (restartPolicy,
  dnsPolicy, terminationGracePeriodSeconds, schedulerName, securityContext, container
  terminationMessagePath/Policy, imagePullPolicy by tag, probe timings, volume defaultMode),
  Deployments (strategy RollingUpdate 25%/25% also when only the type is given,
  revisionHistoryLimit, progressDeadlineSeconds), StatefulSets (podManagementPolicy,
  updateStrategy partition 0, PVC retention policy, claim templates), DaemonSets, Jobs
  (completions/parallelism 1, backoffLimit 6, completionMode, suspend, podReplacementPolicy,
  the generated controller-uid selector and job-name labels), CronJobs, Services (clusterIP
  allocation kept across updates, sessionAffinity, ipFamilies/Policy, internal/external
  traffic policy, nodePort allocation for NodePort/LoadBalancer), HPAs (minReplicas, the 80%
  CPU metric, scale-up/-down behavior), PVCs, Secrets (type Opaque, stringData folded into
  data), RoleBinding subjects; PDBs, ServiceAccounts, Roles and ConfigMaps have no defaults;
* controllers, run synchronously within the write that triggers them: Deployment ->
  ReplicaSet (pod-template-hash, revision annotations; old ReplicaSets scaled down only once
  the new one is available) -> Pods; StatefulSet -> Pods <name>-<n> (replaced when the
  template changes) and PVCs; Job -> Pods, retried up to backoffLimit, then Failed with
  BackoffLimitExceeded. Statuses are counted from the pods (observedGeneration, replicas,
  ready/updated/available, Available/Progressing conditions with NewReplicaSetAvailable or
  MinimumReplicasUnavailable, StatefulSet revisions, PDB disruptionsAllowed, HPA replicas);
* pods: a scheduler (resource requests against node allocatable minus what is already
  placed, unschedulable/not-ready nodes, untolerated NoSchedule taints, nodeSelector), with
  a FailedScheduling event worded like the real one; image pulls that fail for the images a
  test names in `unpullable_images` (ImagePullBackOff, the kubelet's events); every other pod
  Running and Ready at once; pods/<name>/log;
* Job containers: a container whose command is `sh`/`bash` really runs here (under bash; its
  ConfigMap/Secret volumes written to a temporary folder, mount paths rewritten in its
  arguments, env values resolved), so the vendor's own version-check script decides; its
  output is the pod log, the termination message follows terminationMessagePolicy
  FallbackToLogsOnError. `fail_job()` makes a Job fail with a given log instead;
  `job_runs()` lists what each Job ran;
* a configurable deny set: SelfSubjectAccessReview (`kubectl auth can-i`) says no and the
  matching requests get RBAC-shaped 403 Forbidden errors;
* configurable /version, nodes, storage classes, LoadBalancer address and bearer token.

What it does NOT model: time (no progressDeadlineSeconds expiry, no restarts or
CrashLoopBackOff, no readiness probes, no pod that becomes ready later -- a pod's fate is
fixed when it is created, and a workload's status is recomputed only when it is written);
rolling-update pacing (maxSurge/maxUnavailable: new pods all at once); DaemonSet pods (only
their counts); ControllerRevisions; CronJob schedules; Endpoints/EndpointSlices; Ingress and
LoadBalancer controllers beyond the fixed address; admission webhooks, quotas, LimitRanges,
PodSecurity; server-side apply field ownership (managedFields) and server-side printing
(Table: kubectl shows NAME/AGE only); OpenAPI schemas (an empty v2 document: no server-side
validation); namespaces' Terminating phase; protobuf bodies other than Secret/ConfigMap;
containers other than shell scripts (no images are pulled or run).

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
                               "HorizontalPodAutoscaler", "NetworkPolicy"})


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
         ("hpa",), in_all=True),
    # The same objects served as autoscaling/v1 (converted on the way out), like the real
    # server serves one stored object under every version of its group.
    Kind("autoscaling", "v1", "horizontalpodautoscalers", "HorizontalPodAutoscaler", True,
         ("hpa",), in_all=True),
    Kind("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", True, ("netpol",)),
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
# Defaulting, as the real API server applies it on every write
# --------------------------------------------------------------------------------------------
# From the SetDefaults_* functions of pkg/apis/core/v1, apps/v1, batch/v1, autoscaling/v2 and
# rbac/v1 defaults.go (Kubernetes 1.30), plus the admission plugins every cluster runs
# (DefaultStorageClass, DefaultTolerationSeconds). helm's readiness checks and three-way
# patches read these fields, so a store that keeps objects "as sent" makes helm misbehave
# (e.g. a Deployment with `strategy: {type: RollingUpdate}` and no rollingUpdate panics in
# helm's deploymentutil.MaxUnavailable).

_SECRET_VOLUME_MODE = 0o644  # 420: the defaultMode of secret/configMap/projected volumes


def _image_pull_policy(image: str) -> str:
    """SetDefaults_Container: Always for ":latest" or no tag (unless pinned by digest)."""
    if "@" in image:
        return "IfNotPresent"
    last = image.rsplit("/", 1)[-1]
    tag = last.split(":", 1)[1] if ":" in last else ""
    return "Always" if tag in ("", "latest") else "IfNotPresent"


def _default_probe(probe: Obj | None) -> None:
    if not isinstance(probe, dict):
        return
    probe.setdefault("timeoutSeconds", 1)
    probe.setdefault("periodSeconds", 10)
    probe.setdefault("successThreshold", 1)
    probe.setdefault("failureThreshold", 3)
    if isinstance(probe.get("httpGet"), dict):
        probe["httpGet"].setdefault("path", "/")
        probe["httpGet"].setdefault("scheme", "HTTP")


def _default_container(container: Obj) -> None:
    container.setdefault("terminationMessagePath", "/dev/termination-log")
    container.setdefault("terminationMessagePolicy", "File")
    container.setdefault("imagePullPolicy", _image_pull_policy(str(container.get("image", ""))))
    container.setdefault("resources", {})
    for port in container.get("ports") or []:
        port.setdefault("protocol", "TCP")
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        _default_probe(container.get(probe))
    for env in container.get("env") or []:
        ref = (env.get("valueFrom") or {}).get("fieldRef")
        if isinstance(ref, dict):
            ref.setdefault("apiVersion", "v1")
        res = (env.get("valueFrom") or {}).get("resourceFieldRef")
        if isinstance(res, dict):
            res.setdefault("divisor", "0")


def _default_pod_spec(spec: Obj) -> None:
    """SetDefaults_PodSpec, its containers and volumes."""
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    if spec.get("serviceAccountName"):  # the deprecated field mirrors it in v1
        spec.setdefault("serviceAccount", spec["serviceAccountName"])
    for container in (spec.get("initContainers") or []) + (spec.get("containers") or []):
        if isinstance(container, dict):
            _default_container(container)
    for volume in spec.get("volumes") or []:
        for source in ("secret", "configMap", "projected", "downwardAPI"):
            if isinstance(volume.get(source), dict):
                volume[source].setdefault("defaultMode", _SECRET_VOLUME_MODE)
        if isinstance(volume.get("hostPath"), dict):
            volume["hostPath"].setdefault("type", "")


def _default_template(spec: Obj) -> None:
    template = spec.get("template")
    if isinstance(template, dict):
        template.setdefault("metadata", {}).setdefault("creationTimestamp", None)
        _default_pod_spec(template.setdefault("spec", {}))


def _default_hpa_v2(spec: Obj) -> None:
    """autoscaling/v2 SetDefaults_HorizontalPodAutoscaler(+Behavior)."""
    spec.setdefault("minReplicas", 1)
    if not spec.get("metrics"):
        spec["metrics"] = [{"type": "Resource", "resource": {
            "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]
    behavior = spec.setdefault("behavior", {})
    up = behavior.setdefault("scaleUp", {})
    up.setdefault("stabilizationWindowSeconds", 0)
    up.setdefault("selectPolicy", "Max")
    up.setdefault("policies", [{"type": "Pods", "value": 4, "periodSeconds": 15},
                               {"type": "Percent", "value": 100, "periodSeconds": 15}])
    down = behavior.setdefault("scaleDown", {})
    down.setdefault("stabilizationWindowSeconds", 300)
    down.setdefault("selectPolicy", "Max")
    down.setdefault("policies", [{"type": "Percent", "value": 100, "periodSeconds": 15}])


def hpa_v1_to_v2(obj: Obj) -> Obj:
    """Convert an autoscaling/v1 HorizontalPodAutoscaler to the stored v2 form."""
    out = copy.deepcopy(obj)
    spec = out.setdefault("spec", {})
    target = spec.pop("targetCPUUtilizationPercentage", None)
    if target is not None:
        spec["metrics"] = [{"type": "Resource", "resource": {
            "name": "cpu", "target": {"type": "Utilization", "averageUtilization": target}}}]
    out["apiVersion"] = "autoscaling/v2"
    return out


def hpa_v2_to_v1(obj: Obj) -> Obj:
    """The autoscaling/v1 view of a stored v2 HorizontalPodAutoscaler (CPU target only)."""
    out = copy.deepcopy(obj)
    spec = out.get("spec") or {}
    v1: Obj = {k: spec[k] for k in ("scaleTargetRef", "minReplicas", "maxReplicas") if k in spec}
    for metric in spec.get("metrics") or []:
        resource = metric.get("resource") or {}
        if metric.get("type") == "Resource" and resource.get("name") == "cpu":
            v1["targetCPUUtilizationPercentage"] = (resource.get("target") or {}).get(
                "averageUtilization")
    out["spec"] = v1
    status = out.get("status") or {}
    out["status"] = {k: status[k] for k in ("observedGeneration", "currentReplicas",
                                            "desiredReplicas", "lastScaleTime") if k in status}
    out["apiVersion"] = "autoscaling/v1"
    return out


def _pod_ready(pod: Obj) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def _qos(spec: Obj) -> str:
    """The pod's QoS class, as the API server computes it on create."""
    resources = [c.get("resources") or {} for c in spec.get("containers") or []]
    if not any(r.get("requests") or r.get("limits") for r in resources):
        return "BestEffort"
    guaranteed = all(
        all(r.get("limits", {}).get(k) and
            _quantity(r.get("requests", {}).get(k, r["limits"][k])) == _quantity(r["limits"][k])
            for k in ("cpu", "memory")) for r in resources)
    return "Guaranteed" if guaranteed else "Burstable"


def _fencepost(value: Any, total: int, round_up: bool) -> int:
    """An int-or-percent field (maxUnavailable "25%", minAvailable 1) against a total."""
    text = str(value)
    if text.endswith("%"):
        exact = float(text[:-1]) * total / 100
        return int(-(-exact // 1)) if round_up else int(exact // 1)
    return int(text or 0)


def _quantity(value: Any) -> float:
    """A resource quantity ("250m", "2", "512Mi", "1G") as a number (cores or bytes)."""
    text = str(value).strip()
    units = {"m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "Ki": 2**10, "Mi": 2**20,
             "Gi": 2**30, "Ti": 2**40}
    match = re.fullmatch(r"([0-9.]+)([a-zA-Z]*)", text)
    if not match:
        return 0.0
    return float(match.group(1)) * units.get(match.group(2), 1.0)


def _pod_requests(spec: Obj) -> dict[str, float]:
    """What the scheduler counts: the containers' requests summed (limits stand in for missing
    requests), or the largest init container's, whichever is more."""
    def of(container: Obj) -> dict[str, float]:
        resources = container.get("resources") or {}
        requests = dict(resources.get("limits") or {}, **(resources.get("requests") or {}))
        return {r: _quantity(requests[r]) for r in ("cpu", "memory") if r in requests}

    total = {"cpu": 0.0, "memory": 0.0}
    for container in spec.get("containers") or []:
        for r, v in of(container).items():
            total[r] += v
    for container in spec.get("initContainers") or []:
        for r, v in of(container).items():
            total[r] = max(total[r], v)
    return total


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
        # Job name -> (exit code, log) its containers end with (see fail_job)
        self.failing_jobs: dict[str, tuple[int, str]] = {}
        # image (or prefix) -> the pull error; such pods stay Pending in ImagePullBackOff
        self.unpullable_images: dict[str, str] = {}
        self._pod_logs: dict[tuple[str, str, str], str] = {}
        self._job_runs: list[tuple[str, str, int, str]] = []  # (job, pod, exit code, log)
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

    def fail_job(self, name: str, log: str = "", exit_code: int = 1) -> None:
        """Make every pod of the Job `name` end with `exit_code` after printing `log` (it
        then fails with BackoffLimitExceeded, like a Job whose container keeps crashing)."""
        with self._lock:
            self.failing_jobs[name] = (exit_code, log)

    def job_runs(self, name: str) -> list[tuple[str, int, str]]:
        """(pod, exit code, log) of each pod the Job `name` ran, oldest first, kept after the
        Job and its pods are deleted (helm deletes succeeded hooks)."""
        with self._lock:
            return [run[1:] for run in self._job_runs if run[0] == name]

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

    def _write(self, kind: Kind, obj: Obj, old: Obj | None, keep_uid: bool = False) -> Obj:
        """Store obj (a create when old is None), filling server-owned metadata."""
        obj = copy.deepcopy(obj)
        kind = find_kind(kind.key)  # the storage version (the first one listed)
        obj["apiVersion"], obj["kind"] = kind.group_version, kind.kind
        meta = obj.setdefault("metadata", {})
        if not kind.namespaced:
            meta.pop("namespace", None)
        meta.pop("managedFields", None)
        self._defaults(kind, obj, old)
        if old is None:
            # A client's uid is ignored; our own controllers pick a pod's uid a moment early
            # (its events name it), and keep it.
            meta["uid"] = meta.get("uid") if keep_uid and meta.get("uid") else str(uuid.uuid4())
            meta["creationTimestamp"] = _now()
            if kind.kind in _GENERATION_KINDS:
                meta["generation"] = 1
            if kind.kind == "Job":
                self._job_identity(obj)
        else:
            _validate_update(kind, obj, old)
            for owned in ("uid", "creationTimestamp"):
                meta[owned] = old["metadata"][owned]
            if "generation" in old["metadata"]:
                changed = obj.get("spec") != old.get("spec")
                meta["generation"] = old["metadata"]["generation"] + (1 if changed else 0)
        self._set_status(kind, obj, old)
        rv = next(self._rv)
        self._last_rv = rv
        meta["resourceVersion"] = str(rv)
        store_key = (kind.key, meta.get("namespace", ""), meta["name"])
        self._store[store_key] = obj
        self._events.append((rv, kind.key, "MODIFIED" if old else "ADDED", copy.deepcopy(obj)))
        self._changed.notify_all()
        self._side_effects(kind, obj, created=old is None)
        if kind.kind == "Pod":
            self._resync_disruption_budgets(meta.get("namespace", ""))
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
        if kind.kind == "Pod":
            self._resync_disruption_budgets(namespace)
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
        """Apply the API server's defaulting (see the module section "Defaulting").

        Services keep the clusterIP/nodePorts allocated before; a Job gets its generated
        selector and labels when it is created (that needs its uid, see _write)."""
        spec = obj.setdefault("spec", {}) if kind.kind in (
            "Deployment", "StatefulSet", "Job", "Service", "DaemonSet", "ReplicaSet", "Pod",
            "HorizontalPodAutoscaler", "PersistentVolumeClaim", "CronJob",
            "PodDisruptionBudget", "NetworkPolicy") else None
        if kind.kind in ("Deployment", "StatefulSet", "ReplicaSet") and spec is not None:
            spec.setdefault("replicas", 1)
        if kind.kind in ("Deployment", "StatefulSet", "DaemonSet") and spec is not None:
            spec.setdefault("revisionHistoryLimit", 10)
        if kind.kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job") \
                and spec is not None:
            _default_template(spec)
        if kind.kind == "Deployment" and spec is not None:
            spec.setdefault("progressDeadlineSeconds", 600)
            strategy = spec.setdefault("strategy", {})
            strategy.setdefault("type", "RollingUpdate")
            if strategy["type"] == "RollingUpdate":
                rolling = strategy.get("rollingUpdate") or {}
                rolling.setdefault("maxUnavailable", "25%")
                rolling.setdefault("maxSurge", "25%")
                strategy["rollingUpdate"] = rolling
        elif kind.kind == "StatefulSet" and spec is not None:
            spec.setdefault("podManagementPolicy", "OrderedReady")
            strategy = spec.setdefault("updateStrategy", {})
            strategy.setdefault("type", "RollingUpdate")
            if strategy["type"] == "RollingUpdate":
                strategy.setdefault("rollingUpdate", {}).setdefault("partition", 0)
            spec.setdefault("persistentVolumeClaimRetentionPolicy",
                            {"whenDeleted": "Retain", "whenScaled": "Retain"})
            for claim in spec.get("volumeClaimTemplates") or []:
                claim.setdefault("apiVersion", "v1")
                claim.setdefault("kind", "PersistentVolumeClaim")
                claim.setdefault("metadata", {}).setdefault("creationTimestamp", None)
                claim.setdefault("spec", {}).setdefault("volumeMode", "Filesystem")
                claim.setdefault("status", {"phase": "Pending"})
        elif kind.kind == "DaemonSet" and spec is not None:
            strategy = spec.setdefault("updateStrategy", {})
            strategy.setdefault("type", "RollingUpdate")
            if strategy["type"] == "RollingUpdate":
                rolling = strategy.setdefault("rollingUpdate", {})
                rolling.setdefault("maxUnavailable", 1)
                rolling.setdefault("maxSurge", 0)
        elif kind.kind == "Job" and spec is not None:
            if "completions" not in spec and "parallelism" not in spec:
                spec["completions"] = spec["parallelism"] = 1
            spec.setdefault("parallelism", 1)
            spec.setdefault("backoffLimit", 6)
            spec.setdefault("completionMode", "NonIndexed")
            spec.setdefault("suspend", False)
            if "podFailurePolicy" not in spec:
                spec.setdefault("podReplacementPolicy", "TerminatingOrFailed")
            if old is not None:  # set at creation, immutable afterwards
                spec.setdefault("selector", old["spec"].get("selector"))
                spec["template"]["metadata"].setdefault("labels", {}).update(
                    ((old["spec"].get("template") or {}).get("metadata") or {}).get("labels")
                    or {})
        elif kind.kind == "CronJob" and spec is not None:
            spec.setdefault("concurrencyPolicy", "Allow")
            spec.setdefault("suspend", False)
            spec.setdefault("successfulJobsHistoryLimit", 3)
            spec.setdefault("failedJobsHistoryLimit", 1)
        elif kind.kind == "Pod" and spec is not None:
            _default_pod_spec(spec)
            spec.setdefault("enableServiceLinks", True)
            spec.setdefault("priority", 0)
            spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
            tolerations = spec.setdefault("tolerations", [])
            for taint in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"):
                if not any(t.get("key") == taint for t in tolerations):  # DefaultTolerationSeconds
                    tolerations.append({"key": taint, "operator": "Exists",
                                        "effect": "NoExecute", "tolerationSeconds": 300})
        elif kind.kind == "HorizontalPodAutoscaler" and spec is not None:
            _default_hpa_v2(spec)
        elif kind.kind == "PersistentVolumeClaim" and spec is not None:
            spec.setdefault("volumeMode", "Filesystem")
            if "storageClassName" not in spec:  # the DefaultStorageClass admission plugin
                default = next((sc["metadata"]["name"] for sc in
                                self._list(find_kind("storageclasses"), None, "", "")
                                if (sc["metadata"].get("annotations") or {}).get(
                                    "storageclass.kubernetes.io/is-default-class") == "true"),
                               None)
                if default:
                    spec["storageClassName"] = default
        elif kind.kind == "Service" and spec is not None:
            old_spec = (old or {}).get("spec", {})
            spec.setdefault("type", "ClusterIP")
            spec.setdefault("sessionAffinity", "None")
            if spec["type"] != "ExternalName":
                if not spec.get("clusterIP"):
                    n = next(self._service_ips)
                    spec["clusterIP"] = old_spec.get("clusterIP") or \
                        f"10.96.{n // 250}.{n % 250 + 1}"
                spec.setdefault("clusterIPs", [spec["clusterIP"]])
                spec.setdefault("ipFamilies", ["IPv4"])
                spec.setdefault("ipFamilyPolicy", "SingleStack")
                spec.setdefault("internalTrafficPolicy", "Cluster")
            if spec["type"] in ("NodePort", "LoadBalancer"):
                spec.setdefault("externalTrafficPolicy", "Cluster")
            if spec["type"] == "LoadBalancer":
                spec.setdefault("allocateLoadBalancerNodePorts", True)
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
        elif kind.kind in ("RoleBinding", "ClusterRoleBinding"):
            for subject in obj.get("subjects") or []:  # rbac/v1 SetDefaults_Subject
                if "apiGroup" not in subject:
                    subject["apiGroup"] = "" if subject.get("kind") == "ServiceAccount" \
                        else "rbac.authorization.k8s.io"

    def _job_identity(self, job: Obj) -> None:
        """What the Job registry adds on create: a selector on the Job's uid, and the
        labels that select its pods (kubectl logs job/NAME follows them)."""
        uid, name = job["metadata"]["uid"], job["metadata"]["name"]
        spec = job["spec"]
        if not spec.get("manualSelector"):
            spec["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
            labels = spec["template"].setdefault("metadata", {}).setdefault("labels", {})
            labels.update({"batch.kubernetes.io/controller-uid": uid,
                           "batch.kubernetes.io/job-name": name, "controller-uid": uid,
                           "job-name": name})

    # ---- "controllers" ------------------------------------------------------------------------
    # They run synchronously inside the write that triggers them: a Deployment write creates
    # or updates its ReplicaSet, which creates its pods; a pod's fate (scheduled or not, image
    # pulled or not, a Job's container run) is decided when it is created, and the owner's
    # status is then computed from its pods the way the real controllers count them.

    def _side_effects(self, kind: Kind, obj: Obj, created: bool) -> None:
        if kind.kind == "Deployment":
            self._reconcile_deployment(obj)
        elif kind.kind == "ReplicaSet":
            self._reconcile_replicaset_pods(obj)
        elif kind.kind == "StatefulSet":
            self._reconcile_statefulset(obj)
        elif kind.kind == "Job" and created:
            self._run_job(obj)
        elif kind.kind == "Namespace" and created:
            self._write(find_kind("serviceaccounts"), {"metadata": {
                "name": "default", "namespace": obj["metadata"]["name"]}}, None)

    def _set_status(self, kind: Kind, obj: Obj, old: Obj | None) -> None:
        """The status a write leaves; controllers refine it right after (_store_status)."""
        meta, spec = obj["metadata"], obj.get("spec") or {}
        generation = meta.get("generation", 1)
        old_status = (old or {}).get("status")
        if kind.kind == "Deployment":
            obj["status"] = self._deployment_status(obj)
        elif kind.kind == "ReplicaSet":
            obj["status"] = self._replicaset_status(obj)
        elif kind.kind == "StatefulSet":
            obj["status"] = self._statefulset_status(obj)
        elif kind.kind == "DaemonSet":
            count = sum(1 for n in self._list(find_kind("nodes"), None, "", "")
                        if not n["spec"].get("unschedulable"))
            obj["status"] = {"observedGeneration": generation, "desiredNumberScheduled": count,
                             "currentNumberScheduled": count, "updatedNumberScheduled": count,
                             "numberReady": count, "numberAvailable": count,
                             "numberMisscheduled": 0}
        elif kind.kind == "Job":
            obj["status"] = old_status or {}
        elif kind.kind == "Pod":
            if not (obj.get("status") or {}).get("phase"):
                obj["status"] = self._pod_fate(obj, job=None)
        elif kind.kind == "PersistentVolumeClaim":
            obj["status"] = {"phase": "Bound", "accessModes": spec.get("accessModes", []),
                             "capacity": (spec.get("resources") or {}).get("requests", {})}
        elif kind.kind == "Service":
            ingress = [{"ip": self.load_balancer_ip, "ipMode": "VIP"}] \
                if spec.get("type") == "LoadBalancer" and self.load_balancer_ip else []
            obj["status"] = {"loadBalancer": {"ingress": ingress} if ingress else {}}
        elif kind.kind == "PodDisruptionBudget":
            obj["status"] = self._pdb_status(obj)
        elif kind.kind == "HorizontalPodAutoscaler":
            target = self._scale_target(obj)
            replicas = (target or {}).get("spec", {}).get("replicas", 0)
            obj["status"] = {"currentReplicas": replicas,
                             "desiredReplicas": max(replicas, spec.get("minReplicas", 1)),
                             "currentMetrics": None}

    def _store_status(self, kind: Kind, ns: str, name: str, status: Obj,
                      annotations: dict[str, str] | None = None) -> None:
        """A controller's status update: stored with a new resourceVersion and a watch event
        when it changed anything."""
        key = (kind.key, ns, name)
        current = self._store.get(key)
        if current is None:
            return
        new_annotations = dict(current["metadata"].get("annotations") or {}, **(annotations or {}))
        if current.get("status") == status and \
                (current["metadata"].get("annotations") or {}) == new_annotations:
            return
        obj = copy.deepcopy(current)
        obj["status"] = status
        if annotations:
            obj["metadata"]["annotations"] = new_annotations
        rv = next(self._rv)
        self._last_rv = rv
        obj["metadata"]["resourceVersion"] = str(rv)
        self._store[key] = obj
        self._events.append((rv, kind.key, "MODIFIED", copy.deepcopy(obj)))
        self._changed.notify_all()

    def _owned(self, resource: str, owner: Obj) -> list[Obj]:
        uid, ns = owner["metadata"]["uid"], owner["metadata"].get("namespace", "")
        return [o for o in self._list(find_kind(resource), ns, "", "")
                if any(r.get("uid") == uid and r.get("controller")
                       for r in o["metadata"].get("ownerReferences") or [])]

    # Deployments -> ReplicaSets -> Pods

    def _reconcile_deployment(self, deployment: Obj) -> None:
        """Create or update the Deployment's current ReplicaSet, as the deployment controller
        would; older ReplicaSets are scaled to 0 once the new one is fully available (a
        rollout whose new pods never become ready keeps the old pods serving).

        helm's --wait does not trust Deployment.status: it lists ReplicaSets with the
        Deployment's selector, keeps those whose controller ownerReference has the
        Deployment's uid, and picks the one whose pod template equals the Deployment's
        (ignoring the pod-template-hash label). That RS must report readyReplicas and an
        observedGeneration equal to its generation.
        """
        meta, spec = deployment["metadata"], deployment["spec"]
        rs_kind = find_kind("replicasets")
        ns = meta.get("namespace", "")
        template = copy.deepcopy(spec.get("template") or {})
        pod_hash = _short_hash(template)
        template.setdefault("metadata", {}).setdefault("labels", {})["pod-template-hash"] = pod_hash
        selector = copy.deepcopy(spec.get("selector") or {})
        selector.setdefault("matchLabels", {})["pod-template-hash"] = pod_hash
        owned = self._owned("replicasets", deployment)
        name = f'{meta["name"]}-{pod_hash}'
        current = self._store.get((rs_kind.key, ns, name))
        revisions = {rs["metadata"]["name"]: int((rs["metadata"].get("annotations") or {}).get(
            "deployment.kubernetes.io/revision", "0")) for rs in owned}
        top = max(revisions.values(), default=0)
        revision = revisions.get(name, 0)
        if revision != top or current is None:
            revision = top + 1
        wanted: Obj = {
            "metadata": {
                "name": name, "namespace": ns, "labels": template["metadata"]["labels"],
                "annotations": {"deployment.kubernetes.io/revision": str(revision),
                                "deployment.kubernetes.io/desired-replicas":
                                    str(spec.get("replicas", 1))},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment",
                                     "name": meta["name"], "uid": meta["uid"],
                                     "controller": True, "blockOwnerDeletion": True}]},
            "spec": {"replicas": spec.get("replicas", 1), "selector": selector,
                     "template": template}}
        if current is None or current["spec"].get("replicas") != wanted["spec"]["replicas"] \
                or current["metadata"].get("annotations") != wanted["metadata"]["annotations"]:
            current = self._write(rs_kind, wanted, current)
        if (current.get("status") or {}).get("availableReplicas", 0) >= spec.get("replicas", 1):
            for rs in owned:
                if rs["metadata"]["name"] != name and rs["spec"].get("replicas"):
                    self._write(rs_kind, dict(rs, spec=dict(rs["spec"], replicas=0)), rs)
        self._store_status(find_kind("deployments"), ns, meta["name"],
                           self._deployment_status(self._store[
                               ("deployments.apps", ns, meta["name"])]),
                           {"deployment.kubernetes.io/revision": str(revision)})

    def _deployment_status(self, deployment: Obj) -> Obj:
        meta, spec = deployment["metadata"], deployment.get("spec") or {}
        if "uid" not in meta:
            return {}
        desired = spec.get("replicas", 1)
        pod_hash = _short_hash(spec.get("template") or {})
        new_name = f'{meta["name"]}-{pod_hash}'
        total = updated = ready = available = 0
        for rs in self._owned("replicasets", deployment):
            status = rs.get("status") or {}
            total += status.get("replicas", 0)
            ready += status.get("readyReplicas", 0)
            available += status.get("availableReplicas", 0)
            if rs["metadata"]["name"] == new_name:
                updated = status.get("replicas", 0)
        now = _now()
        max_unavailable = _fencepost(
            ((spec.get("strategy") or {}).get("rollingUpdate") or {}).get("maxUnavailable", 0),
            desired, round_up=False)
        is_available = available >= desired - max_unavailable
        complete = updated == desired and total == desired and available == desired
        status: Obj = {"observedGeneration": meta.get("generation", 1), "replicas": total,
                       "updatedReplicas": updated, "readyReplicas": ready,
                       "availableReplicas": available}
        if desired - available > 0:
            status["unavailableReplicas"] = desired - available
        status = {k: v for k, v in status.items() if v or k == "observedGeneration"}
        status["conditions"] = [
            {"type": "Available", "status": "True" if is_available else "False",
             "reason": "MinimumReplicasAvailable" if is_available
             else "MinimumReplicasUnavailable",
             "message": "Deployment has minimum availability." if is_available
             else "Deployment does not have minimum availability.",
             "lastUpdateTime": now, "lastTransitionTime": now},
            {"type": "Progressing", "status": "True",
             "reason": "NewReplicaSetAvailable" if complete else "ReplicaSetUpdated",
             "message": f'ReplicaSet "{new_name}" has successfully progressed.' if complete
             else f'ReplicaSet "{new_name}" is progressing.',
             "lastUpdateTime": now, "lastTransitionTime": now}]
        return status

    def _reconcile_replicaset_pods(self, rs: Obj) -> None:
        meta, spec = rs["metadata"], rs["spec"]
        ns = meta.get("namespace", "")
        pods = self._owned("pods", rs)
        desired = spec.get("replicas", 1)
        for pod in sorted(pods, key=lambda p: _pod_ready(p))[:max(0, len(pods) - desired)]:
            self._delete(find_kind("pods"), ns, pod["metadata"]["name"])
        for _ in range(desired - len(pods)):
            self._create_pod(rs, f'{meta["name"]}-{uuid.uuid4().hex[:5]}', spec["template"])
        self._store_status(find_kind("replicasets"), ns, meta["name"],
                           self._replicaset_status(self._store[("replicasets.apps", ns,
                                                                meta["name"])]))

    def _replicaset_status(self, rs: Obj) -> Obj:
        if "uid" not in rs["metadata"]:
            return {"replicas": 0}
        pods = self._owned("pods", rs)
        ready = sum(1 for p in pods if _pod_ready(p))
        status: Obj = {"replicas": len(pods), "fullyLabeledReplicas": len(pods),
                       "readyReplicas": ready, "availableReplicas": ready,
                       "observedGeneration": rs["metadata"].get("generation", 1)}
        return {k: v for k, v in status.items() if v or k in ("replicas", "observedGeneration")}

    # StatefulSets: pods <name>-<ordinal>, PVCs from volumeClaimTemplates, replaced on change

    def _reconcile_statefulset(self, sts: Obj) -> None:
        meta, spec = sts["metadata"], sts["spec"]
        ns, name = meta.get("namespace", ""), meta["name"]
        revision = f'{name}-{_short_hash(spec.get("template"))}'
        pods = {p["metadata"]["name"]: p for p in self._owned("pods", sts)}
        desired = spec.get("replicas", 1)
        for pod_name, pod in pods.items():
            ordinal = int(pod_name.rsplit("-", 1)[1])
            stale = (pod["metadata"].get("labels") or {}).get(
                "controller-revision-hash") != revision
            if ordinal >= desired or stale:
                self._delete(find_kind("pods"), ns, pod_name)
        for ordinal in range(desired):
            pod_name = f"{name}-{ordinal}"
            for claim in spec.get("volumeClaimTemplates") or []:
                claim_name = f'{claim["metadata"]["name"]}-{pod_name}'
                if ("persistentvolumeclaims", ns, claim_name) not in self._store:
                    self._write(find_kind("persistentvolumeclaims"), {"metadata": {
                        "name": claim_name, "namespace": ns,
                        "labels": dict((spec.get("selector") or {}).get("matchLabels") or {})},
                        "spec": copy.deepcopy(claim.get("spec") or {})}, None)
            if ("pods", ns, pod_name) not in self._store:
                self._create_pod(sts, pod_name, spec["template"], {
                    "controller-revision-hash": revision,
                    "statefulset.kubernetes.io/pod-name": pod_name,
                    "apps.kubernetes.io/pod-index": str(ordinal)}, hostname=pod_name)
        self._store_status(find_kind("statefulsets"), ns, name, self._statefulset_status(
            self._store[("statefulsets.apps", ns, name)]))

    def _statefulset_status(self, sts: Obj) -> Obj:
        meta, spec = sts["metadata"], sts.get("spec") or {}
        revision = f'{meta["name"]}-{_short_hash(spec.get("template"))}'
        pods = self._owned("pods", sts) if "uid" in meta else []
        updated = [p for p in pods
                   if (p["metadata"].get("labels") or {}).get("controller-revision-hash")
                   == revision]
        ready = sum(1 for p in pods if _pod_ready(p))
        status: Obj = {"observedGeneration": meta.get("generation", 1), "replicas": len(pods),
                       "readyReplicas": ready, "currentReplicas": len(updated),
                       "updatedReplicas": len(updated), "availableReplicas": ready,
                       "currentRevision": revision, "updateRevision": revision,
                       "collisionCount": 0}
        return {k: v for k, v in status.items()
                if v or k in ("replicas", "observedGeneration", "availableReplicas",
                              "collisionCount")}

    def _resync_disruption_budgets(self, namespace: str) -> None:
        """The disruption controller: a PDB's counts follow the pods it selects."""
        pdb_kind = find_kind("poddisruptionbudgets")
        for pdb in self._list(pdb_kind, namespace, "", ""):
            self._store_status(pdb_kind, namespace, pdb["metadata"]["name"],
                               self._pdb_status(pdb))

    def _pdb_status(self, pdb: Obj) -> Obj:
        spec, meta = pdb.get("spec") or {}, pdb["metadata"]
        selector = ",".join(f"{k}={v}" for k, v in sorted(
            ((spec.get("selector") or {}).get("matchLabels") or {}).items()))
        pods = self._list(find_kind("pods"), meta.get("namespace", ""), selector, "") \
            if selector else []
        healthy = sum(1 for p in pods if _pod_ready(p))
        if "minAvailable" in spec:
            desired = _fencepost(spec["minAvailable"], len(pods), round_up=True)
        elif "maxUnavailable" in spec:
            desired = max(0, len(pods) - _fencepost(spec["maxUnavailable"], len(pods),
                                                     round_up=True))
        else:
            desired = 0
        allowed = max(0, healthy - desired)
        now = _now()
        return {"observedGeneration": meta.get("generation", 1), "currentHealthy": healthy,
                "desiredHealthy": desired, "expectedPods": len(pods),
                "disruptionsAllowed": allowed,
                "conditions": [{"type": "DisruptionAllowed",
                                "status": "True" if allowed else "False",
                                "reason": "SufficientPods" if allowed else "InsufficientPods",
                                "message": "", "observedGeneration": meta.get("generation", 1),
                                "lastTransitionTime": now}]}

    def _scale_target(self, hpa: Obj) -> Obj | None:
        ref = (hpa.get("spec") or {}).get("scaleTargetRef") or {}
        try:
            kind = find_kind(str(ref.get("kind", "")))
        except KeyError:
            return None
        return self._store.get((kind.key, hpa["metadata"].get("namespace", ""),
                                str(ref.get("name", ""))))

    # Jobs: one pod at a time, retried up to backoffLimit

    def _run_job(self, job: Obj) -> None:
        meta, spec = job["metadata"], job["spec"]
        ns, name = meta.get("namespace", ""), meta["name"]
        start = _now()
        failed = 0
        status: Obj = {"startTime": start, "ready": 0, "terminating": 0,
                       "uncountedTerminatedPods": {}}
        while True:
            pod = self._create_pod(job, f"{name}-{uuid.uuid4().hex[:5]}", spec["template"],
                                   job=job)
            phase = pod["status"]["phase"]
            now = _now()
            if phase == "Succeeded":
                status.update(succeeded=1, completionTime=now, conditions=[
                    {"type": "Complete", "status": "True", "lastProbeTime": now,
                     "lastTransitionTime": now}])
                self._record_event(job, "Normal", "Completed", "Job completed",
                                   "job-controller")
                break
            if phase == "Failed":
                failed += 1
                status["failed"] = failed
                if failed > spec.get("backoffLimit", 6):
                    status["conditions"] = [
                        {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                         "message": "Job has reached the specified backoff limit",
                         "lastProbeTime": now, "lastTransitionTime": now}]
                    self._record_event(job, "Warning", "BackoffLimitExceeded",
                                       "Job has reached the specified backoff limit",
                                       "job-controller")
                    break
                continue
            status["active"] = 1  # Pending: unschedulable or its image cannot be pulled
            break
        self._store_status(find_kind("jobs"), ns, name, status)

    # Pods

    def _create_pod(self, owner: Obj, name: str, template: Obj,
                    extra_labels: dict[str, str] | None = None, *, job: Obj | None = None,
                    hostname: str | None = None) -> Obj:
        meta = owner["metadata"]
        tmeta = template.get("metadata") or {}
        pod_meta: Obj = {
            "name": name, "namespace": meta.get("namespace", ""),
            "labels": dict(tmeta.get("labels") or {}, **(extra_labels or {})),
            "ownerReferences": [{"apiVersion": owner["apiVersion"], "kind": owner["kind"],
                                 "name": meta["name"], "uid": meta["uid"], "controller": True,
                                 "blockOwnerDeletion": True}]}
        if tmeta.get("annotations"):
            pod_meta["annotations"] = dict(tmeta["annotations"])
        if not hostname:
            pod_meta["generateName"] = name[:-5]
        pod: Obj = {"metadata": pod_meta, "spec": copy.deepcopy(template.get("spec") or {})}
        if hostname:
            pod["spec"].setdefault("hostname", hostname)
        pod_kind = find_kind("pods")
        self._defaults(pod_kind, pod, None)
        pod["status"] = self._pod_fate(pod, job=job)
        return self._write(pod_kind, pod, None, keep_uid=True)

    def _record_event(self, about: Obj, etype: str, reason: str, message: str,
                      component: str) -> None:
        meta = about["metadata"]
        now = _now()
        event = {"metadata": {"name": f'{meta["name"]}.{uuid.uuid4().hex[:16]}',
                              "namespace": meta.get("namespace") or "default"},
                 "involvedObject": {"kind": about.get("kind", "Pod"),
                                    "apiVersion": about.get("apiVersion", "v1"),
                                    "namespace": meta.get("namespace", ""),
                                    "name": meta["name"], "uid": meta.get("uid", "")},
                 "reason": reason, "message": message, "type": etype,
                 "source": {"component": component}, "count": 1,
                 "firstTimestamp": now, "lastTimestamp": now, "eventTime": None,
                 "reportingComponent": component, "reportingInstance": ""}
        self._write(find_kind("events"), event, None)

    def _schedule(self, pod: Obj) -> tuple[Obj | None, str]:
        """The node the default scheduler would pick (most free CPU among those that fit),
        or None and the FailedScheduling message."""
        spec = pod["spec"]
        need = _pod_requests(spec)
        nodes = self._list(find_kind("nodes"), None, "", "")
        tolerated = {t.get("key") for t in spec.get("tolerations") or []
                     if t.get("operator") == "Exists" or "value" in t}
        tolerate_all = any(not t.get("key") and t.get("operator") == "Exists"
                           for t in spec.get("tolerations") or [])
        selector = spec.get("nodeSelector") or {}
        reasons: Counter[str] = Counter()
        fits: list[tuple[float, Obj]] = []
        for node in nodes:
            labels = node["metadata"].get("labels") or {}
            taints = [t for t in node["spec"].get("taints") or []
                      if t.get("effect") in ("NoSchedule", "NoExecute")
                      and t.get("key") not in tolerated and not tolerate_all]
            if node["spec"].get("unschedulable") and not tolerate_all:
                reasons["node(s) were unschedulable"] += 1
                continue
            if taints:
                taint = taints[0]
                reasons[f'node(s) had untolerated taint {{{taint["key"]}: '
                        f'{taint.get("value", "")}}}'] += 1
                continue
            if any(labels.get(k) != v for k, v in selector.items()):
                reasons["node(s) didn't match Pod's node affinity/selector"] += 1
                continue
            used = {"cpu": 0.0, "memory": 0.0}
            for other in self._list(find_kind("pods"), None, "", ""):
                if other["spec"].get("nodeName") == node["metadata"]["name"] and \
                        (other.get("status") or {}).get("phase") not in ("Succeeded", "Failed"):
                    for r, v in _pod_requests(other["spec"]).items():
                        used[r] += v
            allocatable = node["status"].get("allocatable") or {}
            short = [r for r in ("cpu", "memory")
                     if need[r] and used[r] + need[r] > _quantity(allocatable.get(r, "0"))]
            for r in short:
                reasons[f"Insufficient {r}"] += 1
            if not short:
                fits.append((_quantity(allocatable.get("cpu", "0")) - used["cpu"], node))
        if fits:
            return max(fits, key=lambda f: f[0])[1], ""
        total = len(nodes)
        detail = ", ".join(f"{n} {r}" for r, n in sorted(reasons.items()))
        return None, (f"0/{total} nodes are available: {detail or 'no nodes available'}. "
                      f"preemption: 0/{total} nodes are available: {total} No preemption "
                      "victims found for incoming pod.")

    def _unpullable(self, image: str) -> str | None:
        for prefix, error in self.unpullable_images.items():
            if image == prefix or image.startswith(prefix):
                return error
        return None

    def _pod_fate(self, pod: Obj, job: Obj | None) -> Obj:
        """Schedule the pod, pull its images, start (or, for a Job, run) its containers."""
        spec, meta = pod["spec"], pod["metadata"]
        now = _now()
        pod.setdefault("apiVersion", "v1")
        pod.setdefault("kind", "Pod")
        meta.setdefault("uid", str(uuid.uuid4()))  # events need it before the write
        containers = spec.get("containers") or []
        node, why = self._schedule(pod)
        if node is None:
            self._record_event(pod, "Warning", "FailedScheduling", why, "default-scheduler")
            return {"phase": "Pending", "qosClass": _qos(spec), "conditions": [
                {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                 "message": why, "lastProbeTime": None, "lastTransitionTime": now}]}
        node_name = node["metadata"]["name"]
        spec["nodeName"] = node_name
        self._record_event(pod, "Normal", "Scheduled",
                           f'Successfully assigned {meta.get("namespace")}/{meta["name"]} to '
                           f"{node_name}", "default-scheduler")
        host_ip = next((a["address"] for a in node["status"].get("addresses") or []
                        if a.get("type") == "InternalIP"), "10.0.0.1")
        n = next(self._ips)
        base: Obj = {"hostIP": host_ip, "hostIPs": [{"ip": host_ip}],
                     "podIP": f"10.244.{n // 250}.{n % 250 + 2}", "startTime": now,
                     "qosClass": _qos(spec)}
        base["podIPs"] = [{"ip": base["podIP"]}]

        def condition(ctype: str, ok: bool, reason: str = "", message: str = "") -> Obj:
            cond: Obj = {"type": ctype, "status": "True" if ok else "False",
                         "lastProbeTime": None, "lastTransitionTime": now}
            if reason:
                cond["reason"] = reason
            if message:
                cond["message"] = message
            return cond

        pull_errors = {c["name"]: self._unpullable(str(c.get("image", ""))) for c in containers}
        if any(pull_errors.values()):
            statuses = []
            for c in containers:
                image, error = str(c.get("image", "")), pull_errors[c["name"]]
                if error:
                    self._record_event(pod, "Normal", "Pulling", f'Pulling image "{image}"',
                                       "kubelet")
                    self._record_event(pod, "Warning", "Failed",
                                       f'Failed to pull image "{image}": {error}', "kubelet")
                    self._record_event(pod, "Warning", "Failed", "Error: ErrImagePull",
                                       "kubelet")
                    self._record_event(pod, "Normal", "BackOff",
                                       f'Back-off pulling image "{image}"', "kubelet")
                    self._record_event(pod, "Warning", "Failed", "Error: ImagePullBackOff",
                                       "kubelet")
                    state: Obj = {"waiting": {"reason": "ImagePullBackOff",
                                              "message": f'Back-off pulling image "{image}"'}}
                else:
                    state = {"running": {"startedAt": now}}
                statuses.append({"name": c["name"], "image": image, "imageID": "",
                                 "ready": False, "started": not error, "restartCount": 0,
                                 "state": state})
            waiting = [c["name"] for c in containers if pull_errors[c["name"]]]
            message = f"containers with unready status: [{' '.join(waiting)}]"
            return dict(base, phase="Pending", containerStatuses=statuses, conditions=[
                condition("PodReadyToStartContainers", True), condition("Initialized", True),
                condition("Ready", False, "ContainersNotReady", message),
                condition("ContainersReady", False, "ContainersNotReady", message),
                condition("PodScheduled", True)])
        if job is None:
            for c in containers:
                self._record_event(pod, "Normal", "Started", f"Started container {c['name']}",
                                   "kubelet")
            return dict(base, phase="Running", containerStatuses=[
                {"name": c["name"], "image": str(c.get("image", "")),
                 "imageID": f'{c.get("image", "")}@sha256:{"0" * 64}',
                 "containerID": f"containerd://{uuid.uuid4().hex}", "ready": True,
                 "started": True, "restartCount": 0, "state": {"running": {"startedAt": now}}}
                for c in containers], conditions=[
                condition(t, True) for t in ("PodReadyToStartContainers", "Initialized",
                                             "Ready", "ContainersReady", "PodScheduled")])
        statuses = []
        for c in containers:
            code, logs = self._run_container(pod, c, job)
            self._pod_logs[(str(meta.get("namespace")), str(meta["name"]), c["name"])] = logs
            self._job_runs.append((job["metadata"]["name"], str(meta["name"]), code, logs))
            terminated: Obj = {"exitCode": code, "reason": "Completed" if code == 0 else "Error",
                               "startedAt": now, "finishedAt": _now(),
                               "containerID": f"containerd://{uuid.uuid4().hex}"}
            if code and c.get("terminationMessagePolicy") == "FallbackToLogsOnError" and logs:
                # The kubelet's fallback: the end of the log, at most 80 lines and 2048 bytes.
                tail = "\n".join(logs.rstrip("\n").splitlines()[-80:])
                terminated["message"] = tail.encode()[-2048:].decode(errors="ignore") + "\n"
            statuses.append({"name": c["name"], "image": str(c.get("image", "")),
                             "imageID": "", "ready": False, "started": False,
                             "restartCount": 0, "state": {"terminated": terminated}})
        ok = all(s["state"]["terminated"]["exitCode"] == 0 for s in statuses)
        reason = "PodCompleted" if ok else "PodFailed"
        return dict(base, phase="Succeeded" if ok else "Failed", containerStatuses=statuses,
                    conditions=[condition("PodReadyToStartContainers", False),
                                condition("Initialized", True, reason),
                                condition("Ready", False, reason),
                                condition("ContainersReady", False, reason),
                                condition("PodScheduled", True)])

    def _run_container(self, pod: Obj, container: Obj, job: Obj) -> tuple[int, str]:
        """A Job's container: (exit code, log).

        A test's fail_job() decides first. Otherwise a container whose command is a shell
        (`sh`/`bash`, e.g. the vendor's version check running a script from a ConfigMap
        volume) really runs here, under bash, with its env values and its ConfigMap/Secret
        volumes written to a temporary folder (mount paths rewritten in the arguments). No
        image is pulled, so any other container "succeeds" with an empty log, unless its pod
        template carries the annotation fake-k8s.test/outcome: fail.
        """
        name = job["metadata"]["name"]
        if name in self.failing_jobs:
            return self.failing_jobs[name]
        annotations = (pod["metadata"].get("annotations") or {})
        forced_failure = annotations.get(JOB_OUTCOME_ANNOTATION) == "fail"
        argv = [str(a) for a in (container.get("command") or []) + (container.get("args") or [])]
        if not argv or Path(argv[0]).name not in ("sh", "bash"):
            return (1, "") if forced_failure else (0, "")
        ns = str(pod["metadata"].get("namespace", ""))
        with tempfile.TemporaryDirectory(prefix="fake-k8s-job-") as tmp:
            volumes = {v["name"]: v for v in pod["spec"].get("volumes") or []}
            for n, mount in enumerate(container.get("volumeMounts") or []):
                volume = volumes.get(mount.get("name"), {})
                files = self._volume_files(ns, volume)
                if files is None:
                    continue
                folder = Path(tmp, f"volume-{n}")
                folder.mkdir()
                for file_name, data in files.items():
                    Path(folder, file_name).write_bytes(data)
                mount_path = str(mount["mountPath"]).rstrip("/")
                argv = [a.replace(mount_path, str(folder)) for a in argv]
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": tmp,
                   "HOSTNAME": str(pod["metadata"]["name"])}
            for item in container.get("env") or []:
                value = self._env_value(ns, pod, item)
                if value is not None:
                    env[item["name"]] = value
            try:
                done = subprocess.run(["bash", *argv[1:]], cwd=tmp, env=env, timeout=20,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      check=False)
            except subprocess.TimeoutExpired:
                return 137, "killed: the fake cluster runs Job scripts for at most 20 s\n"
            return done.returncode, done.stdout.decode(errors="replace")

    def _volume_files(self, ns: str, volume: Obj) -> dict[str, bytes] | None:
        if "configMap" in volume:
            source = self._store.get(("configmaps", ns, volume["configMap"].get("name", "")))
            data = {k: v.encode() for k, v in ((source or {}).get("data") or {}).items()}
        elif "secret" in volume:
            source = self._store.get(("secrets", ns, volume["secret"].get("secretName", "")))
            data = {k: base64.b64decode(v) for k, v in ((source or {}).get("data") or {}).items()}
        else:
            return None
        return data

    def _env_value(self, ns: str, pod: Obj, item: Obj) -> str | None:
        if "value" in item:
            return str(item["value"])
        source = item.get("valueFrom") or {}
        if "configMapKeyRef" in source:
            ref = source["configMapKeyRef"]
            cm = self._store.get(("configmaps", ns, ref.get("name", ""))) or {}
            return (cm.get("data") or {}).get(ref.get("key", ""))
        if "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            secret = self._store.get(("secrets", ns, ref.get("name", ""))) or {}
            raw = (secret.get("data") or {}).get(ref.get("key", ""))
            return base64.b64decode(raw).decode(errors="replace") if raw is not None else None
        if "fieldRef" in source:
            path = source["fieldRef"].get("fieldPath", "")
            return {"metadata.name": pod["metadata"]["name"], "metadata.namespace": ns,
                    "spec.nodeName": pod["spec"].get("nodeName", "")}.get(path)
        return None

    def _pod_log(self, ns: str, pod: Obj, query: dict[str, str]) -> str:
        """GET pods/<name>/log, as the kubelet answers it through the API server."""
        name = pod["metadata"]["name"]
        containers = [c["name"] for c in pod["spec"].get("containers") or []]
        container = query.get("container") or (containers[0] if len(containers) == 1 else "")
        if not container:
            raise ApiError(400, "BadRequest", f"a container name must be specified for pod "
                           f"{name}, choose one of: [{' '.join(containers)}]")
        if container not in containers:
            raise ApiError(400, "BadRequest",
                           f"container {container} is not valid for pod {name}")
        statuses = {s["name"]: s for s in (pod.get("status") or {}).get("containerStatuses")
                    or []}
        waiting = (statuses.get(container, {}).get("state") or {}).get("waiting")
        if waiting or container not in statuses:
            reason = (waiting or {}).get("reason", "ContainerCreating")
            raise ApiError(400, "BadRequest", f'container "{container}" in pod "{name}" is '
                           f"waiting to start: {reason}")
        text = self._pod_logs.get((ns, name, container), "")
        if query.get("tailLines"):
            lines = text.splitlines(keepends=True)
            text = "".join(lines[-int(query["tailLines"]):]) if int(query["tailLines"]) else ""
        return text

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
            return self._object_request(method, kind, ns, route.name, route.subresource, query,
                                        headers, body, dry_run)
        if method == "GET":
            return 200, self._list_response(kind, route.namespace, query)
        if method == "POST":
            return 201, _view(kind, self._create(kind, ns, _stored(kind, _json_body(body)),
                                                  dry_run))
        if method == "DELETE":  # deletecollection
            items = self._list(kind, route.namespace, query.get("labelSelector", ""),
                               query.get("fieldSelector", ""))
            for item in list(items):
                self._delete(kind, item["metadata"].get("namespace", ""), item["metadata"]["name"])
            return 200, {"kind": f"{kind.kind}List", "apiVersion": kind.group_version,
                         "metadata": {}, "items": items}
        raise ApiError(405, "MethodNotAllowed", "the server does not allow this method")

    def _object_request(self, method: str, kind: Kind, ns: str, name: str,
                        subresource: str | None, query: dict[str, str], headers: Any,
                        body: bytes, dry_run: bool) -> tuple[int, Any]:
        """GET/PUT/PATCH/DELETE on one object, or on its status/scale subresource."""
        if subresource not in (None, "status", "scale", "log") or (
                subresource == "scale" and kind.kind not in _SCALABLE) or (
                subresource == "log" and kind.kind != "Pod"):
            raise NO_SUCH_PATH
        current = self._store.get((kind.key, ns, name))
        if current is not None and subresource == "log":
            if method != "GET":
                raise ApiError(405, "MethodNotAllowed", "the server does not allow this method")
            return 200, self._pod_log(ns, current, query)
        if current is not None:
            current = _view(kind, current)
        ctype = (headers.get("Content-Type") or "").split(";")[0].strip()
        if current is None:
            if method == "PATCH" and ctype == "application/apply-patch+yaml" and not subresource:
                return 201, _view(kind, self._create(kind, ns, _yaml_body(body), dry_run))  # SSA
            raise not_found(kind, name)
        if method == "GET":
            return 200, _scale(current) if subresource == "scale" else current
        if method == "DELETE" and not subresource:
            return 200, current if dry_run else _view(kind, self._delete(kind, ns, name))
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
        new = _stored(kind, new)
        stored = self._store[(kind.key, ns, name)]
        return 200, _view(kind, new if dry_run else self._write(kind, new, stored))

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
                    "resources": [r for k in _GROUP_VERSIONS[gv]
                                  for r in [_api_resource(k), *_subresources(k)]]}
        raise NO_SUCH_PATH

    def _list_response(self, kind: Kind, namespace: str | None, query: dict[str, str]) -> Any:
        labels, fields = query.get("labelSelector", ""), query.get("fieldSelector", "")
        if query.get("watch") in ("true", "1"):
            return _Watch(self, kind, namespace, labels, fields, query)
        items = [_view(kind, o) for o in self._list(kind, namespace, labels, fields)]
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


_STATEFULSET_MUTABLE = ("replicas", "ordinals", "template", "updateStrategy",
                        "persistentVolumeClaimRetentionPolicy", "minReadySeconds")


def _invalid(kind: Kind, name: str, field: str, message: str) -> ApiError:
    details = dict(_details(kind, name), kind=kind.kind,
                   causes=[{"reason": "FieldValueInvalid" if "Invalid" in message
                            else "FieldValueForbidden", "message": message, "field": field}])
    return ApiError(422, "Invalid", f'{kind.kind}{"." + kind.group if kind.group else ""} '
                    f'"{name}" is invalid: {field}: {message}', details)


def _validate_update(kind: Kind, new: Obj, old: Obj) -> None:
    """The update validation helm upgrades run into: immutable selectors, a StatefulSet spec
    that may change only in a few fields, a Job's template, a Service's clusterIP."""
    name = old["metadata"]["name"]
    spec, old_spec = new.get("spec") or {}, old.get("spec") or {}
    if kind.kind in ("Deployment", "ReplicaSet", "DaemonSet", "StatefulSet", "Job") and \
            spec.get("selector") != old_spec.get("selector"):
        raise _invalid(kind, name, "spec.selector",
                       f"Invalid value: {json.dumps(spec.get('selector'))}: field is immutable")
    if kind.kind == "StatefulSet":
        changed = {k for k in set(spec) | set(old_spec)
                   if k not in _STATEFULSET_MUTABLE and spec.get(k) != old_spec.get(k)}
        if changed:
            allowed = ", ".join(f"'{f}'" for f in _STATEFULSET_MUTABLE[:-1])
            raise _invalid(kind, name, "spec", f"Forbidden: updates to statefulset spec for "
                           f"fields other than {allowed} and '{_STATEFULSET_MUTABLE[-1]}' are "
                           "forbidden")
    if kind.kind == "Job" and spec.get("template") != old_spec.get("template"):
        raise _invalid(kind, name, "spec.template", "Invalid value: ...: field is immutable")
    if kind.kind == "Service" and old_spec.get("clusterIP") not in (None, "", "None") and \
            spec.get("clusterIP") not in (None, "", old_spec.get("clusterIP")):
        raise _invalid(kind, name, "spec.clusterIPs[0]",
                       f'Invalid value: ["{spec["clusterIP"]}"]: may not change once set')


def _view(kind: Kind, obj: Obj) -> Obj:
    """A stored object as served under the request's version (one copy per version)."""
    if kind.kind == "HorizontalPodAutoscaler" and kind.version == "v1":
        return hpa_v2_to_v1(obj)
    return obj


def _stored(kind: Kind, obj: Obj) -> Obj:
    """A request body converted to the stored version."""
    if kind.kind == "HorizontalPodAutoscaler" and kind.version == "v1":
        return hpa_v1_to_v2(obj)
    return obj


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


def _subresources(kind: Kind) -> list[Obj]:
    """The subresources served (status, scale, pods/log), listed in discovery as a real server
    lists them."""
    if not kind.stored or kind.kind in ("Secret", "ConfigMap", "Event", "ServiceAccount",
                                        "StorageClass", "Role", "RoleBinding", "ClusterRole",
                                        "ClusterRoleBinding"):
        return []
    out = [{"name": f"{kind.plural}/status", "singularName": "", "namespaced": kind.namespaced,
            "kind": kind.kind, "verbs": ["get", "patch", "update"]}]
    if kind.kind in _SCALABLE:
        out.append({"name": f"{kind.plural}/scale", "singularName": "", "group": "autoscaling",
                    "version": "v1", "namespaced": True, "kind": "Scale",
                    "verbs": ["get", "patch", "update"]})
    if kind.kind == "Pod":
        out.append({"name": "pods/log", "singularName": "", "namespaced": True, "kind": "Pod",
                    "verbs": ["get"]})
    return out


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
                yield {"type": "ADDED", "object": _view(self.kind, obj)}
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
                    yield {"type": etype, "object": _view(self.kind, obj)}


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
