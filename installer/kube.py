"""Talking to a Kubernetes cluster through the admin's own `kubectl` and `helm`.

Why the command-line tools rather than the official Python client: helm has no Python API,
and the installer must run helm anyway; kubectl then reads the kubeconfig exactly as helm
does (exec credential plugins such as `gke-gcloud-auth-plugin` or `aws eks get-token`,
`KUBECONFIG` lists, proxies), so what preflight proves is what the install will meet. It also
keeps a large dependency out of the installer and lets every call go through `Target.run`,
logged like any other command.

Every call carries the answers' kubeconfig and context explicitly (`--kubeconfig`,
`--context` / `--kube-context`), so the admin's current context never decides where CARTO
goes. Failures are classified (no such context, credentials refused, certificate not trusted,
connection refused, timeout, forbidden ...) into a message and a remediation a first-time
admin can act on.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING

from installer.errors import TargetError
from installer.target import CommandNotFound, CommandResult
from installer.yamldata import JSONValue

if TYPE_CHECKING:
    from installer.answers import KubernetesSettings
    from installer.target import Target

log = logging.getLogger("installer.kube")

DEFAULT_KUBECONFIG = "~/.kube/config"
REQUEST_TIMEOUT = "20s"  # kubectl's own limit per API request: a black-holed server fails fast

INSTALL_KUBECTL = ("install kubectl (https://kubernetes.io/docs/tasks/tools/) and make sure "
                   "`kubectl version --client` works in this shell")
INSTALL_HELM = ("install Helm 3.6.0 or above (https://helm.sh/docs/intro/install/) and make "
                "sure `helm version` works in this shell")


@dataclass(frozen=True)
class KubeFailure:
    """Why a kubectl/helm call failed, said for people."""

    kind: str  # missing-tool, no-kubeconfig, no-context, auth, tls, refused, dns, timeout,
    #            forbidden, not-found, other
    message: str
    remediation: str


class KubeError(TargetError):
    """A kubectl/helm call failed; exit code 3 like any failed target operation."""

    def __init__(self, failure: KubeFailure) -> None:
        super().__init__(failure.message, failure.remediation)
        self.failure = failure


def first_error_line(text: str) -> str:
    """The line of a tool's output that says what went wrong, without its "error:" prefix."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    # helm and kubectl put warnings first ("WARNING: Kubernetes configuration file is ...").
    meaningful = [line for line in lines if not line.upper().startswith(("WARNING", "W0", "I0"))]
    line = meaningful[0] if meaningful else (lines[-1] if lines else "")
    line = re.sub(r"^(error|Error|ERROR):\s*", "", line)
    return line[:400]


def classify(text: str, *, tool: str = "kubectl", context: str | None = None,
             kubeconfig: str | None = None) -> KubeFailure:
    """Turn a failed call's output into a failure kind, a message and a remediation."""
    line = first_error_line(text)
    low = text.lower()
    where = f"kubeconfig {kubeconfig}" if kubeconfig else "the kubeconfig"
    if re.search(r'context "?[^"]*"? does not exist|context was not found for specified context'
                 r'|cannot locate context',
                 text):
        return KubeFailure(
            "no-context", f"no context {context!r} in {where}" if context else line,
            f"list the contexts with `kubectl config get-contexts"
            f"{' --kubeconfig ' + kubeconfig if kubeconfig else ''}` and set "
            "kubernetes.context to one of them (or leave it out to use the current context)")
    if "no configuration has been provided" in low or (
            "no such file or directory" in low and "stat " in low):
        return KubeFailure(
            "no-kubeconfig", f"{where} does not exist or is empty ({line})",
            "point kubernetes.kubeconfig at your cluster's kubeconfig, or create one with your "
            "provider's tool (`gcloud container clusters get-credentials`, `aws eks "
            "update-kubeconfig`, `az aks get-credentials`)")
    if ("provide credentials" in low or "unauthorized" in low
            or "you must be logged in" in low):
        return KubeFailure(
            "auth", f"the cluster refused the credentials in {where} ({line})",
            "the token or client certificate is wrong or has expired: fetch fresh credentials "
            "(`gcloud container clusters get-credentials`, `aws eks update-kubeconfig`, "
            "`az aks get-credentials`, or ask your cluster admin for a new kubeconfig)")
    if "x509:" in low or "certificate signed by unknown authority" in low or \
            "tls: failed to verify" in low:
        return KubeFailure(
            "tls", f"the API server's certificate is not trusted ({line})",
            "the kubeconfig's certificate-authority-data does not match the cluster: fetch the "
            "kubeconfig again from your provider or cluster admin; never switch to "
            "insecure-skip-tls-verify")
    if "connection refused" in low or "was refused" in low:
        return KubeFailure(
            "refused", f"nothing answers at the API server address ({line})",
            "check that the cluster is running and that the server address in the kubeconfig "
            "is right and reachable from this machine (VPN, bastion, authorised networks)")
    if "no such host" in low or "server misbehaving" in low:
        return KubeFailure(
            "dns", f"the API server's name does not resolve ({line})",
            "check the server address in the kubeconfig and this machine's DNS (a private "
            "cluster endpoint may need a VPN)")
    if ("i/o timeout" in low or "deadline exceeded" in low or "client.timeout" in low
            or "timed out" in low or "did not finish within" in low):
        return KubeFailure(
            "timeout", f"the API server did not answer in time ({line})",
            "check network access to the API server from this machine (firewall, VPN, "
            "authorised networks) and re-run")
    if "forbidden" in low:
        return KubeFailure(
            "forbidden", line,
            "ask your cluster admin for the missing permission (RBAC), e.g. the `admin` "
            "ClusterRole bound in the CARTO namespace")
    if "notfound" in low.replace(" ", "") or "not found" in low:
        return KubeFailure("not-found", line, "check the name and namespace")
    return KubeFailure("other", f"{tool} failed: {line or 'no output'}",
                       f"run the command by hand to see the full error (it is logged in "
                       f"carto-installer.log): {tool} ...")


class Kube:
    """kubectl and helm for one kubeconfig/context/namespace, run on a Target."""

    def __init__(self, target: Target, settings: KubernetesSettings) -> None:
        self.target = target
        self.settings = settings
        self.context = settings.context
        self.namespace = settings.namespace
        self.kubeconfig = self._kubeconfig_path(settings.kubeconfig)

    def _kubeconfig_path(self, value: str) -> str | None:
        """The kubeconfig to pass, or None to let the tools read $KUBECONFIG.

        The answers' default ("~/.kube/config", unexpanded because nobody wrote it) yields to a
        KUBECONFIG set in the environment, as kubectl itself does; a path someone wrote wins.
        """
        if value == DEFAULT_KUBECONFIG and self.target.is_local and os.environ.get("KUBECONFIG"):
            return None
        if value.startswith("~/"):
            # Remote commands start in the home directory, so "~/x" is "x" there.
            return os.path.expanduser(value) if self.target.is_local else value[2:]
        return value

    def describe(self) -> str:
        """e.g. "context prod in /home/me/.kube/config"."""
        config = self.kubeconfig or f"$KUBECONFIG ({os.environ.get('KUBECONFIG', '')})"
        context = f"context {self.context}" if self.context else "the current context"
        return f"{context} of {config}"

    # ---- argument lists -----------------------------------------------------------------------

    def kubectl_argv(self, *args: str, namespace: bool = False) -> list[str]:
        argv = ["kubectl"]
        if self.kubeconfig:
            argv += ["--kubeconfig", self.kubeconfig]
        if self.context:
            argv += ["--context", self.context]
        argv += [f"--request-timeout={REQUEST_TIMEOUT}"]
        if namespace:
            argv += ["-n", self.namespace]
        return [*argv, *args]

    def helm_argv(self, *args: str, namespace: bool = False) -> list[str]:
        argv = ["helm", *args]
        if namespace:
            argv += ["-n", self.namespace]
        if self.kubeconfig:
            argv += ["--kubeconfig", self.kubeconfig]
        if self.context:
            argv += ["--kube-context", self.context]
        return argv

    # ---- running ------------------------------------------------------------------------------

    def kubectl(self, *args: str, namespace: bool = False, timeout: float = 40.0,
                input: bytes | None = None) -> CommandResult:
        """Run kubectl. Raises KubeError when kubectl is missing or hangs."""
        return self._run(self.kubectl_argv(*args, namespace=namespace), "kubectl", timeout, input)

    def helm(self, *args: str, namespace: bool = False, timeout: float = 60.0,
             input: bytes | None = None) -> CommandResult:
        return self._run(self.helm_argv(*args, namespace=namespace), "helm", timeout, input)

    def _run(self, argv: Sequence[str], tool: str, timeout: float,
             input: bytes | None) -> CommandResult:
        try:
            return self.target.run(argv, timeout=timeout, input=input)
        except CommandNotFound:
            raise KubeError(KubeFailure(
                "missing-tool", f"`{tool}` is not installed on {self.target.name} "
                f"(not found on PATH)", INSTALL_KUBECTL if tool == "kubectl" else INSTALL_HELM,
            )) from None
        except TimeoutError as exc:
            raise KubeError(self.failure(str(exc), tool)) from None

    def failure(self, text: str, tool: str = "kubectl") -> KubeFailure:
        return classify(text, tool=tool, context=self.context, kubeconfig=self.kubeconfig)

    def checked(self, result: CommandResult, tool: str = "kubectl") -> CommandResult:
        """The result, or KubeError with the classified failure."""
        if not result.ok:
            raise KubeError(self.failure(result.output(), tool))
        return result

    def kubectl_json(self, *args: str, namespace: bool = False, timeout: float = 40.0,
                     input: bytes | None = None) -> JSONValue:
        result = self.checked(self.kubectl(*args, "-o", "json", namespace=namespace,
                                           timeout=timeout, input=input))
        return parse_json(result.stdout, "kubectl")

    def kubeconfig_problem(self) -> KubeFailure | None:
        """A missing kubeconfig file, found without running anything."""
        if self.kubeconfig is None:
            return None
        if self.target.exists(self.kubeconfig):
            return None
        return classify(f"stat {self.kubeconfig}: no such file or directory",
                        kubeconfig=self.kubeconfig)


def parse_json(text: str, tool: str) -> JSONValue:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise KubeError(KubeFailure(
            "other", f"{tool} printed something that is not JSON ({exc.msg} at line "
            f"{exc.lineno})", "check that kubectl and helm are the real tools (not wrappers)",
        )) from None


def parse_json_stream(text: str) -> list[JSONValue]:
    """Several JSON documents printed one after the other (kubectl create -o json of a List)."""
    decoder = json.JSONDecoder()
    out: list[JSONValue] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        obj, end = decoder.raw_decode(text, pos)
        out.append(obj)
        pos = end
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return out


# ---- quantities ---------------------------------------------------------------------------------

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": Decimal(1),
            "k": Decimal(10**3), "M": Decimal(10**6), "G": Decimal(10**9), "T": Decimal(10**12),
            "P": Decimal(10**15), "E": Decimal(10**18)}
_QUANTITY = re.compile(
    r"^([+-]?(?:\d+\.?\d*|\.\d+))(?:([eE][+-]?\d+)|(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE])?)$")


def parse_quantity(text: str | int | float) -> Decimal:
    """A Kubernetes resource quantity ("2", "1500m", "16Gi", "16G", "1e9") as a number."""
    raw = str(text).strip()
    match = _QUANTITY.match(raw)
    if not match:
        raise ValueError(f"{raw!r} is not a Kubernetes quantity")
    number, exponent, suffix = match.groups()
    try:
        value = Decimal(number)
        if exponent:
            return value * Decimal(10) ** int(exponent[1:])
    except InvalidOperation:
        raise ValueError(f"{raw!r} is not a Kubernetes quantity") from None
    if suffix in _BINARY:
        return value * _BINARY[suffix]
    return value * _DECIMAL[suffix or ""]


__all__ = ["Kube", "KubeError", "KubeFailure", "classify", "parse_json_stream",
           "parse_quantity"]
