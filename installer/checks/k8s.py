"""k8s.*: the cluster CARTO will be installed into, seen through the admin's kubectl and helm.

The kubeconfig, context and namespace come from the answers (defaults without an answers
file: ~/.kube/config or $KUBECONFIG, its current context, namespace "carto"). See
installer/kube.py for why the command-line tools are used rather than a Python client.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING

from packaging.version import Version

from installer.checks.base import (
    Check,
    CheckContext,
    Outcome,
    errored,
    failed,
    passed,
    warned,
)
from installer.kube import Kube, KubeError, parse_json_stream, parse_quantity
from installer.units import format_bytes
from installer.yamldata import JSONObject

if TYPE_CHECKING:
    from installer.answers import KubernetesSettings
    from installer.render.helm import ChartFacts

KUBERNETES_ONLY = frozenset({"kubernetes"})
MIN_KUBERNETES = (1, 12)
MIN_HELM = Version("3.6.0")
MIN_NODES = 3
MIN_NODE_CPU = Decimal(2)
MIN_NODE_MEMORY = Decimal(16 * 10**9)  # "16 GB" read as decimal (REQUIREMENTS.md)
# Taints that keep CARTO's pods off a node (they carry no tolerations). The node lifecycle
# controller's own taints are reported as NotReady/cordoned instead.
_BLOCKING_EFFECTS = ("NoSchedule", "NoExecute")
_LIFECYCLE_TAINTS = ("node.kubernetes.io/unschedulable", "node.kubernetes.io/not-ready",
                     "node.kubernetes.io/unreachable")

# What the CARTO chart creates in its namespace, and what `helm upgrade --install --wait`
# does with it: create/get/list/patch/delete each kind (helm's three-way merge patches, hook
# Jobs are deleted and re-created), plus helm's release storage (Secrets, updated in place)
# and what --wait and our progress display read.
CHART_KINDS: tuple[tuple[str, str], ...] = (
    ("apps", "deployments"), ("apps", "statefulsets"), ("", "services"), ("", "configmaps"),
    ("", "secrets"), ("", "serviceaccounts"), ("batch", "jobs"),
)
CHART_VERBS = ("create", "get", "list", "patch", "delete")
EXTRA_ACCESS: tuple[tuple[str, str, str], ...] = (
    ("update", "", "secrets"),  # helm marks the previous revision "superseded"
    ("list", "", "pods"), ("watch", "", "pods"), ("list", "apps", "replicasets"),
    ("list", "", "events"),
)


def _settings(ctx: CheckContext) -> KubernetesSettings:
    if ctx.answers is not None:
        return ctx.answers.kubernetes
    from installer.answers import KubernetesSettings

    return KubernetesSettings()


def kube_for(ctx: CheckContext) -> Kube:
    """One Kube per run, for the answers' kubeconfig/context/namespace."""
    kube: Kube = ctx.cached("k8s.kube", lambda: Kube(ctx.target, _settings(ctx)))
    return kube


def chart_facts_for(ctx: CheckContext) -> ChartFacts:
    """What the chart in the answers does with the values the installer would write
    (`helm template`, offline), computed once per run for every check that asks. Raises
    InstallerError when the chart or the package cannot be read."""
    from installer.redact import Redactor
    from installer.render.helm import chart_facts

    assert ctx.answers is not None
    answers = ctx.answers
    facts: ChartFacts = ctx.cached("kubernetes.chart_facts", lambda: chart_facts(
        answers, ctx.target, redactor=ctx.redactor or Redactor()))
    return facts


def _failed_from(error: KubeError, observed: str) -> Outcome:
    return failed(error.failure.message, observed=observed,
                  remediation=error.failure.remediation)


# ---- k8s.cluster / k8s.version ---------------------------------------------------------------


def check_cluster(ctx: CheckContext) -> Outcome:
    kube = kube_for(ctx)
    problem = kube.kubeconfig_problem()
    if problem is not None:
        return failed(problem.message, observed="no kubeconfig", remediation=problem.remediation)
    try:
        # Resolving the context first is local (no network) and names a missing context
        # precisely; `--minify` keeps only the context in use.
        config = kube.kubectl_json("config", "view", "--minify")
        context = str(config.get("current-context") or kube.context or "?")
        clusters = config.get("clusters") or [{}]
        server = str((clusters[0].get("cluster") or {}).get("server") or "?")
        result = kube.checked(kube.kubectl("get", "--raw", "/version"))
        version = json.loads(result.stdout)
    except KubeError as exc:
        kind = exc.failure.kind
        observed = {"no-context": "no such context", "auth": "401 Unauthorized",
                    "refused": "connection refused", "tls": "certificate not trusted",
                    "timeout": "no answer", "missing-tool": "kubectl missing",
                    "no-kubeconfig": "no kubeconfig", "dns": "name does not resolve"}.get(
                        kind, "unreachable")
        return _failed_from(exc, observed)
    except json.JSONDecodeError:
        return errored("the API server's /version answer is not JSON",
                       "check that the kubeconfig points at a Kubernetes API server")
    git_version = str(version.get("gitVersion", "?"))
    return passed(f"the API server at {server} answers (context {context})",
                  observed=f"{git_version} at {server}", server=server, context=context,
                  version=version)


def parse_server_version(version: JSONObject) -> tuple[int, int] | None:
    """(major, minor) from /version; providers report minor as "30+" (EKS, GKE)."""
    match = re.match(r"v?(\d+)\.(\d+)", str(version.get("gitVersion", "")))
    if match:
        return int(match.group(1)), int(match.group(2))
    major = re.match(r"\d+", str(version.get("major", "")))
    minor = re.match(r"\d+", str(version.get("minor", "")))
    if major and minor:
        return int(major.group()), int(minor.group())
    return None


def check_version(ctx: CheckContext) -> Outcome:
    stored = ctx.data("k8s.cluster").get("version")
    version: JSONObject = stored if isinstance(stored, dict) else {}
    parsed = parse_server_version(version)
    raw = str(version.get("gitVersion") or f"{version.get('major')}.{version.get('minor')}")
    if parsed is None:
        return errored(f"cannot read the cluster's version ({raw!r})",
                       "run `kubectl version` and report its output")
    if parsed >= MIN_KUBERNETES:
        return passed(f"Kubernetes {raw} is supported", observed=raw)
    return failed(f"Kubernetes {raw} is older than 1.12", observed=raw,
                  remediation="upgrade the cluster to a supported Kubernetes release (1.12 is "
                  "the oldest CARTO accepts; your provider documents the upgrade, e.g. `gcloud "
                  "container clusters upgrade`, `eksctl upgrade cluster`)")


# ---- k8s.helm -------------------------------------------------------------------------------


def parse_helm_version(text: str) -> Version | None:
    """'v3.17.1+g980d8ac', 'version.BuildInfo{Version:"v3.5.4", ...}', 'Client: v2.16.1+g..'."""
    match = re.search(r"v?(\d+\.\d+\.\d+)", text)
    return Version(match.group(1)) if match else None


def check_helm(ctx: CheckContext) -> Outcome:
    kube = kube_for(ctx)
    try:
        result = kube.helm("version", "--short", timeout=20)
    except KubeError as exc:
        return _failed_from(exc, "helm missing" if exc.failure.kind == "missing-tool"
                            else "no answer")
    version = parse_helm_version(result.stdout) if result.ok else None
    if version is None:
        line = result.output().splitlines()[0] if result.output() else "no output"
        return failed(f"`helm version` did not report a version ({line})", observed="unknown",
                      remediation="install Helm 3.6.0 or above (https://helm.sh/docs/intro/"
                      "install/); Helm 2 is not supported")
    if version >= MIN_HELM:
        return passed(f"Helm {version} is supported", observed=f"v{version}",
                      version=str(version))
    return failed(
        f"Helm {version} is older than 3.6.0", observed=f"v{version}",
        remediation="upgrade Helm to 3.6.0 or above (https://helm.sh/docs/intro/install/, or "
        "your package manager: `brew upgrade helm`, `snap refresh helm`)")


# ---- k8s.nodes --------------------------------------------------------------------------------


@dataclass
class NodeReport:
    name: str
    cpu: Decimal
    memory: Decimal
    allocatable_cpu: Decimal | None
    allocatable_memory: Decimal | None
    ready: str  # "True", "False", "Unknown"
    cordoned: bool
    taints: list[str] = field(default_factory=list)

    @property
    def big_enough(self) -> bool:
        return self.cpu >= MIN_NODE_CPU and self.memory >= MIN_NODE_MEMORY

    @property
    def schedulable(self) -> bool:
        return self.ready == "True" and not self.cordoned and not self.taints

    def lacks(self) -> list[str]:
        """What keeps this node from counting, in words."""
        out = []
        if self.cpu < MIN_NODE_CPU:
            out.append(f"CPU {_cpu(self.cpu)} < 2")
        if self.memory < MIN_NODE_MEMORY:
            out.append(f"memory {format_bytes(int(self.memory))} < 16 GB")
        if self.ready != "True":
            out.append("NotReady" if self.ready == "False" else f"Ready={self.ready}")
        if self.cordoned:
            out.append("cordoned (SchedulingDisabled)")
        out.extend(f"taint {t}" for t in self.taints)
        return out

    def describe(self) -> str:
        alloc = ""
        if self.allocatable_cpu is not None and self.allocatable_memory is not None:
            alloc = (f", allocatable {_cpu(self.allocatable_cpu)} CPU "
                     f"{_gb(self.allocatable_memory)}")
        state = "" if self.schedulable else ", " + ", ".join(
            x for x in self.lacks() if not x.startswith(("CPU", "memory")))
        return f"{self.name} {_cpu(self.cpu)} CPU {_gb(self.memory)}{alloc}{state}"


def _gb(value: Decimal) -> str:
    return f"{value / 10**9:.1f} GB"


def _cpu(value: Decimal) -> str:
    return f"{value.normalize():f}"


def parse_node(node: JSONObject) -> NodeReport:
    status = node.get("status") or {}
    spec = node.get("spec") or {}
    capacity = status.get("capacity") or {}
    allocatable = status.get("allocatable") or {}

    def quantity(source: JSONObject, key: str) -> Decimal | None:
        try:
            return parse_quantity(source[key]) if key in source else None
        except ValueError:
            return None

    ready = next((str(c.get("status")) for c in status.get("conditions") or []
                  if c.get("type") == "Ready"), "Unknown")
    taints = [f"{t.get('key')}{'=' + t['value'] if t.get('value') else ''}:{t.get('effect')}"
              for t in spec.get("taints") or []
              if t.get("effect") in _BLOCKING_EFFECTS and t.get("key") not in _LIFECYCLE_TAINTS]
    return NodeReport(
        name=str((node.get("metadata") or {}).get("name", "?")),
        cpu=quantity(capacity, "cpu") or Decimal(0),
        memory=quantity(capacity, "memory") or Decimal(0),
        allocatable_cpu=quantity(allocatable, "cpu"),
        allocatable_memory=quantity(allocatable, "memory"),
        ready=ready,
        cordoned=bool(spec.get("unschedulable")),
        taints=taints,
    )


def check_nodes(ctx: CheckContext) -> Outcome:
    kube = kube_for(ctx)
    try:
        listing = kube.kubectl_json("get", "nodes")
    except KubeError as exc:
        return _failed_from(exc, "nodes not listed")
    nodes = [parse_node(n) for n in listing.get("items") or []]
    qualifying = [n for n in nodes if n.big_enough and n.schedulable]
    sized = [n for n in nodes if n.big_enough]
    others = [n for n in nodes if n not in qualifying]
    details = "; ".join(f"{n.name}: {', '.join(n.lacks())}" for n in others)
    # Every node with what was measured: capacity decides, allocatable is shown because it is
    # what the scheduler really has to give.
    observed = f"{len(qualifying)} of {len(nodes)} nodes qualify: " + (
        "; ".join(n.describe() for n in nodes) or "no nodes")
    data = {"nodes": [n.describe() for n in nodes], "qualifying": [n.name for n in qualifying]}
    if len(qualifying) >= MIN_NODES:
        message = f"{len(qualifying)} Ready, schedulable nodes with >= 2 CPU and >= 16 GB"
        if others:
            message += f"; not counted: {details}"
        return passed(message, observed=observed, **data)
    if len(sized) >= MIN_NODES:
        return warned(
            f"{len(sized)} nodes are big enough but only {len(qualifying)} can take pods now: "
            f"{details}",
            observed=observed,
            remediation="bring the nodes back before installing: `kubectl uncordon <node>` for "
            "a cordoned node; for a NotReady node see `kubectl describe node <node>` (kubelet, "
            "network plugin); remove taints CARTO cannot tolerate with `kubectl taint nodes "
            "<node> <key>-`",
            **data,
        )
    short = MIN_NODES - len(qualifying)
    return failed(
        f"only {len(qualifying)} of the 3 nodes CARTO needs (each >= 2 CPU and >= 16 GB, Ready "
        "and schedulable): " + (details or "the cluster has no other nodes"),
        observed=observed,
        remediation=f"add {short} node{'s' if short > 1 else ''} of at least 2 vCPU and 16 GB "
        "memory (e.g. grow the node pool: `gcloud container clusters resize`, `eksctl scale "
        "nodegroup`, `az aks scale`), or move to a larger machine type; otherwise pods stay "
        "Pending with 'Insufficient memory/cpu'",
        **data,
    )


# ---- k8s.permissions ------------------------------------------------------------------------


def _review(verb: str, group: str, resource: str, namespace: str | None) -> JSONObject:
    attributes: JSONObject = {"verb": verb, "group": group, "resource": resource}
    if namespace is not None:
        attributes["namespace"] = namespace
    return {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": attributes}}


def required_access(namespace: str) -> list[tuple[str, str, str, str | None]]:
    """(verb, group, resource, namespace or None for cluster scope) the install needs."""
    wanted: list[tuple[str, str, str, str | None]] = [
        (verb, group, resource, namespace)
        for group, resource in CHART_KINDS for verb in CHART_VERBS]
    wanted += [(verb, group, resource, namespace) for verb, group, resource in EXTRA_ACCESS]
    wanted.append(("create", "", "namespaces", None))
    return wanted


def _resource_name(group: str, resource: str) -> str:
    return f"{resource}.{group}" if group else resource


def check_permissions(ctx: CheckContext) -> Outcome:
    kube = kube_for(ctx)
    namespace = kube.namespace
    wanted = required_access(namespace)
    # What `kubectl auth can-i` asks, all in one kubectl run: a List of
    # SelfSubjectAccessReviews created at once (one process instead of ~40).
    reviews = {"apiVersion": "v1", "kind": "List",
               "items": [_review(v, g, r, ns) for v, g, r, ns in wanted]}
    try:
        result = kube.checked(kube.kubectl("create", "-f", "-", "-o", "json",
                                           input=json.dumps(reviews).encode()))
        answers = parse_json_stream(result.stdout)
    except KubeError as exc:
        return _failed_from(exc, "not checked")
    except json.JSONDecodeError:
        return errored("kubectl's access review answer is not JSON")
    if len(answers) != len(wanted):
        return errored(f"asked {len(wanted)} access reviews, got {len(answers)} answers")
    denied = [(v, g, r, ns) for (v, g, r, ns), answer in zip(wanted, answers, strict=True)
              if not (answer.get("status") or {}).get("allowed")]
    namespace_note = ""
    if ("create", "", "namespaces", None) in denied:
        denied.remove(("create", "", "namespaces", None))
        exists = kube.kubectl("get", "namespace", namespace, "-o", "name")
        if exists.ok:
            namespace_note = f"; namespace {namespace} exists (you may not create namespaces)"
        else:
            denied.append(("create", "", "namespaces", None))
    if not denied:
        return passed(f"may install into namespace {namespace}{namespace_note}",
                      observed=f"{len(wanted)} of {len(wanted)} allowed")
    named = [f"{v} {_resource_name(g, r)}" + (f" in namespace {ns}" if ns else
                                                  " (cluster scope)")
             for v, g, r, ns in denied]
    fixes = []
    if any(r == "namespaces" for _, _, r, _ in denied):
        fixes.append(f"ask a cluster admin to create the namespace: `kubectl create namespace "
                     f"{namespace}`")
    if any(r != "namespaces" for _, _, r, _ in denied):
        fixes.append(f"ask a cluster admin to grant you the `admin` role in it: `kubectl create "
                     f"rolebinding carto-installer --clusterrole=admin --user=<you> -n "
                     f"{namespace}`")
    return failed(
        "denied: " + "; ".join(named),
        observed=f"{len(wanted) - len(denied)} of {len(wanted)} allowed",
        remediation="; ".join(fixes),
        denied=named,
    )


# ---- k8s.storage ------------------------------------------------------------------------------

_DEFAULT_ANNOTATIONS = ("storageclass.kubernetes.io/is-default-class",
                        "storageclass.beta.kubernetes.io/is-default-class")


def storage_applies(ctx: CheckContext) -> str | None:
    if ctx.answers is None:
        return "no answers file: whether an in-cluster database is used is not known"
    if not ctx.answers.database.bundled:
        return "external PostgreSQL: CARTO needs no volume in the cluster"
    return None


def check_storage(ctx: CheckContext) -> Outcome:
    kube = kube_for(ctx)
    try:
        listing = kube.kubectl_json("get", "storageclasses")
    except KubeError as exc:
        return _failed_from(exc, "not listed")
    classes = listing.get("items") or []
    names = [str(c.get("metadata", {}).get("name")) for c in classes]
    default = [str(c["metadata"]["name"]) for c in classes
               if any((c.get("metadata", {}).get("annotations") or {}).get(a) == "true"
                      for a in _DEFAULT_ANNOTATIONS)]
    if default:
        return passed(f"default StorageClass {default[0]} will hold the database's volume",
                      observed=f"default: {', '.join(default)}")
    observed = f"no default among {', '.join(names)}" if names else "no StorageClass"
    example = names[0] if names else "<class>"
    return warned(
        "no default StorageClass: the in-cluster PostgreSQL volume would stay Pending",
        observed=observed,
        remediation=f"mark one as default: `kubectl patch storageclass {example} -p "
        "'{\"metadata\":{\"annotations\":{\"storageclass.kubernetes.io/is-default-class\":"
        "\"true\"}}}'`, or install a provisioner; better, use an external PostgreSQL",
    )


CHECKS: list[Check] = [
    Check("k8s.cluster", "Kubernetes cluster", "a reachable cluster in the chosen "
          "kubeconfig/context", check_cluster, platforms=KUBERNETES_ONLY, timeout=45),
    Check("k8s.version", "Kubernetes version", ">= 1.12", check_version,
          platforms=KUBERNETES_ONLY, needs=("k8s.cluster",)),
    Check("k8s.helm", "Helm", ">= 3.6.0", check_helm, platforms=KUBERNETES_ONLY, timeout=25),
    Check("k8s.nodes", "Kubernetes nodes", ">= 3 Ready, schedulable nodes each with >= 2 CPU "
          "and >= 16 GB memory", check_nodes, platforms=KUBERNETES_ONLY, timeout=45,
          needs=("k8s.cluster",)),
    Check("k8s.permissions", "Permissions in the namespace", "may create the chart's kinds "
          "in the namespace (or create the namespace)", check_permissions,
          platforms=KUBERNETES_ONLY, timeout=45, needs=("k8s.cluster",)),
    Check("k8s.storage", "Default StorageClass", "a default StorageClass (in-cluster database)",
          check_storage, platforms=KUBERNETES_ONLY, timeout=45, needs=("k8s.cluster",),
          applies=storage_applies),
]
