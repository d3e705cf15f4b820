"""`support-bundle`: what support needs to help, with every secret masked.

Collectors gather one piece each (versions, answers, preflight, host facts, service state and
log tails, configuration, certificate metadata, the installer's log); a collector that fails is
recorded in MANIFEST.txt with its reason and the bundle goes on. Every text passes through
`mask`: the run's Redactor (the answers' secrets, the package's, .env's secret values, the
TLS key) and then patterns for what is secret by its shape (a private key, a JWT, a bearer
token, credentials in a URL, a value after a secret-sounding key). Secret objects are never
read on Kubernetes (no `get secrets`, no `helm get values`).
"""

from __future__ import annotations

import json
import logging
import os
import posixpath
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from installer import __version__
from installer.operate.archive import ArchiveWriter
from installer.operate.installation import Installation
from installer.redact import MASK
from installer.yamldata import JSONObject

if TYPE_CHECKING:
    from installer.deploy.compose.health import ContainerView
    from installer.kube import Kube

log = logging.getLogger("installer.operate.bundle")

# Keys whose values are secret. Not "AUTH": the vendor's AUTH0_DOMAIN, AUTH0_AUDIENCE and
# client ids are what support needs to see, and secret ones say SECRET anyway.
SECRET_KEY = re.compile(r"(?i)(PASSWORD|PASSWD|SECRET|TOKEN|PRIVATE|CREDENTIAL|API_?KEY|"
                        r"ACCESS_?KEY|LICENSE|_KEY$|^KEY$)")
_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?(-----END [A-Z0-9 ]*PRIVATE KEY-----"
                r"|\Z)", re.S), "-----PRIVATE KEY " + MASK + "-----"),
    # A private key inside JSON (key.json) is one line with \n escapes
    (re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----[^\"]*"), MASK),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"), MASK),
    (re.compile(r"(?i)\b(bearer|basic|token)(\s+)[A-Za-z0-9._~+/=-]{8,}"), r"\1\2" + MASK),
    (re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s:@]+:[^/\s@]+@"), r"\1" + MASK + "@"),
    (re.compile(r"(?i)((?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|"
                r"private[_-]?key|client[_-]?secret)[\"']?\s*[=:]\s*[\"']?)([^\s\"',;&]+)"),
     r"\1" + MASK),
]
DEFAULT_TAIL = 500
INSTALLER_LOG = "carto-installer.log"
LOG_TAIL_LINES = 5000


def default_bundle_name(domain: str | None) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"carto-support-{domain or 'carto'}-{stamp}.tar.gz"


def mask(text: str, redactor: Callable[[str], str]) -> str:
    """Known secrets first (exact values), then secrets recognised by their shape."""
    text = redactor(text)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def mask_env_file(text: str) -> str:
    """Every key kept, every secret-looking key's value masked (then `mask` runs as well)."""
    out = []
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        bare = key.strip().removeprefix("export ").strip()
        if sep and not bare.startswith("#") and SECRET_KEY.search(bare) and value.strip():
            out.append(f"{key}={MASK}")
        else:
            out.append(line)
    return "\n".join(out) + "\n"


def secret_env_values(text: str) -> list[str]:
    """The values of secret-looking keys in an env file (fed to the redactor)."""
    from installer.envfile import EnvFile

    try:
        items = EnvFile.parse(text).items("v2")
    except Exception:
        return []
    return [v for k, v in items.items() if SECRET_KEY.search(k) and len(v) >= 4]


@dataclass
class BundleResult:
    path: str
    collected: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)


class _Bundle:
    def __init__(self, inst: Installation, writer: ArchiveWriter) -> None:
        self.inst = inst
        self.writer = writer
        self.result = BundleResult(writer.path)

    def text(self, name: str, text: str) -> None:
        self.writer.add_bytes(name, mask(text, self.inst.redactor).encode("utf-8", "replace"))
        self.result.collected.append(name)

    def collect(self, name: str, collector: Callable[[], str | None]) -> None:
        try:
            text = collector()
        except Exception as exc:  # recorded in the MANIFEST: a bundle is collected anyway
            reason = getattr(exc, "message", None) or str(exc) or type(exc).__name__
            self.result.failed.append((name, mask(reason.splitlines()[0] if reason else "",
                                                  self.inst.redactor)))
            log.info("support bundle: %s not collected: %s", name, reason)
            return
        if text is None:
            self.result.failed.append((name, "not present"))
            return
        self.text(name, text)

    def run(self, name: str, argv: list[str], timeout: float = 60) -> str:
        result = self.inst.target.run(argv, timeout=timeout)
        if not result.ok:
            raise RuntimeError(f"`{' '.join(argv[:3])}` exited {result.returncode}: "
                               f"{result.output()[-300:]}")
        return result.stdout + result.stderr


def learn_secrets(inst: Installation) -> None:
    """Give the redactor every secret we can find, before anything is collected."""
    for secret in inst.answers.secrets():
        inst.redactor.add(secret.value)
    if inst.answers.package:
        try:
            from installer.package import read_package

            read_package(inst.answers.package, inst.platform, inst.redactor)
        except Exception:
            log.info("the package could not be read for redaction", exc_info=True)
    if inst.platform == "compose":
        for name in ("customer.env", ".env"):
            data = inst.read(name)
            if data:
                for value in secret_env_values(data.decode("utf-8", "replace")):
                    inst.redactor.add(value)
        certs = posixpath.join(inst.directory, "certs")
        try:
            names = inst.target.listdir(certs) if inst.target.exists(certs) else []
        except OSError:
            names = []
        for name in names:
            if name.endswith((".key", ".json")):
                data = inst.read(posixpath.join("certs", name))
                if data:
                    inst.redactor.add(data.decode("utf-8", "replace"))


def support_bundle(inst: Installation, output: str, *, tail: int = DEFAULT_TAIL,
                   preflight: bool = True) -> BundleResult:
    from installer.answers import dump_answers

    folder = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
        from installer.errors import InputError

        raise InputError(f"--output: cannot write to {output} (no such folder or not writable)")
    learn_secrets(inst)
    with inst.step("collect support bundle") as detail, \
            ArchiveWriter(output, None, inst.progress("write archive")) as writer:
        bundle = _Bundle(inst, writer)
        bundle.text("installer-version.txt", f"carto-installer {__version__}\n")
        bundle.collect("answers.yaml", lambda: dump_answers(inst.answers))
        if preflight:
            bundle.collect("preflight.json", lambda: _preflight_json(inst))
        bundle.collect("host.txt", lambda: _host_facts(bundle))
        if inst.platform == "compose":
            _compose(bundle, tail)
        else:
            _kubernetes(bundle, tail)
        bundle.collect(INSTALLER_LOG, _installer_log)
        bundle.text("MANIFEST.txt", _manifest_text(bundle.result))
        detail.append(f"{len(bundle.result.collected)} collected, "
                      f"{len(bundle.result.failed)} not")
    bundle.result.path = os.path.abspath(output)
    return bundle.result


def _manifest_text(result: BundleResult) -> str:
    lines = [f"carto-installer {__version__} support bundle, "
             f"{datetime.now(UTC).isoformat(timespec='seconds')}", "", "collected:"]
    lines += [f"  {name}" for name in result.collected]
    lines += ["", "not collected:"]
    lines += [f"  {name}: {reason}" for name, reason in result.failed] or ["  (nothing)"]
    lines += ["", "Secrets are masked as " + MASK + "; keys of configuration files are kept."]
    return "\n".join(lines) + "\n"


def _preflight_json(inst: Installation) -> str:
    from installer.preflight import run_preflight

    report = run_preflight(inst.target, inst.answers, inst.platform, redactor=inst.redactor)
    return report.to_json()


def _host_facts(bundle: _Bundle) -> str:
    parts = []
    for title, argv in (("uname", ["uname", "-a"]), ("os-release", ["cat", "/etc/os-release"]),
                        ("uptime", ["uptime"]), ("memory", ["free", "-m"]),
                        ("disk", ["df", "-h"]), ("cpus", ["nproc"])):
        try:
            parts.append(f"## {title}\n{bundle.run(title, argv).rstrip()}\n")
        except Exception as exc:
            parts.append(f"## {title}\n(not available: {exc})\n")
    return "\n".join(parts)


# ---- Compose ------------------------------------------------------------------------------


def _compose(bundle: _Bundle, tail: int) -> None:
    inst = bundle.inst
    bundle.collect("docker-version.txt", lambda: bundle.run("docker", ["docker", "version"]))

    def compose_version() -> str:
        tool = inst.compose_tool()
        if tool is None:
            raise RuntimeError("no Docker Compose found on the target")
        return f"{' '.join(tool.command)} {tool.version}\n"

    bundle.collect("compose-version.txt", compose_version)
    views: list[ContainerView] = []

    def ps() -> str:
        views.extend(inst.containers())
        lines = [f"{'SERVICE':28} {'STATE':12} {'HEALTH':10} {'RESTARTS':8} IMAGE"]
        lines += [f"{v.service:28} {v.state:12} {v.health or '-':10} {v.restarts:<8} {v.image}"
                  for v in views]
        return "\n".join(lines) + "\n"

    bundle.collect("services/ps.txt", ps)
    for view in views:
        def tail_of(view: ContainerView = view) -> str:
            raw = inst.client().containers.get(view.id).logs(tail=tail, timestamps=True)
            return bytes(raw).decode("utf-8", "replace")

        bundle.collect(f"services/{view.service}/{view.name}.log", tail_of)
    if views:
        try:
            running = {v.service for v in views}
            for service in inst.compose_services():
                if service not in running:
                    bundle.result.failed.append(
                        (f"services/{service}", "no container (scaled to 0, or never started)"))
        except Exception:
            log.info("docker-compose.yml unreadable for the bundle", exc_info=True)
    for name in ("customer.env", ".env"):
        def env_file(name: str = name) -> str | None:
            data = inst.read(name)
            return None if data is None else mask_env_file(data.decode("utf-8", "replace"))

        bundle.collect(f"configuration/{name}", env_file)
    bundle.collect("configuration/docker-compose.yml", lambda: inst.compose_text())
    bundle.collect("certificates.txt", lambda: _certificates(inst))


def _certificates(inst: Installation) -> str:
    certs = posixpath.join(inst.directory, "certs")
    names = [n for n in inst.target.listdir(certs) if n.endswith((".crt", ".pem"))]
    out = []
    for name in names:
        data = inst.read(posixpath.join("certs", name)) or b""
        out.append(f"## certs/{name}\n{describe_certificates(data)}")
    return "\n".join(out) or "(no certificates in certs/)\n"


def describe_certificates(pem: bytes) -> str:
    """Subject, SANs, issuer, validity and fingerprint of each certificate of a chain; a
    private key in the same file is never read."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    blocks = re.findall(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", pem, re.S)
    if not blocks:
        return "  (no certificate)\n"
    lines = []
    for index, block in enumerate(blocks):
        try:
            cert = x509.load_pem_x509_certificate(block)
        except ValueError as exc:
            lines.append(f"  [{index}] unreadable: {exc}")
            continue
        try:
            sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
            names = ", ".join(str(n.value) for n in sans.value)
        except x509.ExtensionNotFound:
            names = "(none)"
        lines += [f"  [{index}] subject: {cert.subject.rfc4514_string()}",
                  f"      SANs: {names}",
                  f"      issuer: {cert.issuer.rfc4514_string()}",
                  f"      valid: {cert.not_valid_before_utc.isoformat()} to "
                  f"{cert.not_valid_after_utc.isoformat()}",
                  f"      sha256: {cert.fingerprint(hashes.SHA256()).hex()}"]
    return "\n".join(lines) + "\n"


def _installer_log() -> str | None:
    path = os.path.join(os.getcwd(), INSTALLER_LOG)
    if not os.path.isfile(path) or os.path.islink(path):
        return None
    with open(path, encoding="utf-8", errors="replace") as handle:
        lines = handle.readlines()
    return "".join(lines[-LOG_TAIL_LINES:])


# ---- Kubernetes --------------------------------------------------------------------------------


def _kubernetes(bundle: _Bundle, tail: int) -> None:
    inst = bundle.inst
    kube = inst.kube()
    release = inst.release
    selector = f"app.kubernetes.io/instance={release}"

    def kubectl(*args: str, namespace: bool = True) -> str:
        result = kube.kubectl(*args, namespace=namespace, timeout=60)
        if not result.ok:
            raise RuntimeError(kube.failure(result.output()).message)
        return result.stdout

    def helm(*args: str) -> str:
        result = kube.helm(*args, namespace=True, timeout=60)
        if not result.ok:
            raise RuntimeError(kube.failure(result.output(), "helm").message)
        return result.stdout

    bundle.collect("versions.txt", lambda: kubectl("version", "-o", "yaml", namespace=False)
                   + "\n" + helm("version"))
    bundle.collect("helm/status.txt", lambda: helm("status", release))
    bundle.collect("helm/history.txt", lambda: helm("history", release))
    pods: list[JSONObject] = []

    def pod_table() -> str:
        pods.extend(kube.kubectl_json("get", "pods", "-l", selector,
                                      namespace=True).get("items", []))
        lines = [f"{'POD':50} {'PHASE':10} {'READY':6} {'RESTARTS':8} NODE"]
        for pod in pods:
            status = pod.get("status", {})
            containers = status.get("containerStatuses", [])
            ready = sum(1 for c in containers if c.get("ready"))
            restarts = sum(int(c.get("restartCount", 0)) for c in containers)
            lines.append(f"{pod['metadata']['name']:50} {status.get('phase', '?'):10} "
                         f"{ready}/{len(containers):<4} {restarts:<8} "
                         f"{pod.get('spec', {}).get('nodeName', '-')}")
        return "\n".join(lines) + "\n"

    bundle.collect("kubernetes/pods.txt", pod_table)
    bundle.collect("kubernetes/workloads.txt", lambda: kubectl(
        "get", "deployments,statefulsets,jobs,services,pvc", "-o", "wide"))
    bundle.collect("kubernetes/events.txt", lambda: kubectl(
        "get", "events", "--sort-by=.lastTimestamp"))
    bundle.collect("kubernetes/nodes.txt", lambda: _node_capacity(kube))
    for pod in pods:
        name = pod["metadata"]["name"]
        phase = pod.get("status", {}).get("phase", "")
        ready = all(c.get("ready") for c in pod.get("status", {}).get("containerStatuses", []))
        def describe(name: str = name) -> str:
            return kubectl("describe", "pod", name)

        def pod_logs(name: str = name) -> str:
            return kubectl("logs", name, "--all-containers", f"--tail={tail}", "--timestamps")

        if phase not in ("Running", "Succeeded") or not ready:
            bundle.collect(f"kubernetes/describe/{name}.txt", describe)
        bundle.collect(f"kubernetes/logs/{name}.log", pod_logs)


def _node_capacity(kube: Kube) -> str:
    nodes = kube.kubectl_json("get", "nodes").get("items", [])
    lines = []
    for node in nodes:
        status = node.get("status", {})
        lines.append(f"{node['metadata']['name']}: capacity {json.dumps(status.get('capacity'))}"
                     f", allocatable {json.dumps(status.get('allocatable'))}")
    return "\n".join(lines) + "\n"
