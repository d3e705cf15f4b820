"""The Helm chart the answers point at, read from its own files (collect; others judge).

The vendor's chart, not our assumptions about it, says:
- its minimum installation package version: the Chart.yaml annotation that its own
  pre-install/pre-upgrade version check reads (`.Chart.Annotations.<name>` in a template);
- which container registries its images come from, and which credentials its workloads
  consume: both read from the manifests `helm template` renders offline with the values the
  installer will pass (so a mirror in global.imageRegistry, or a chart that gives the
  migrations no admin password, is seen as it is).

A chart is a packaged .tgz (what `helm pull` delivers), an unpacked folder, or a repository
reference (carto/carto), which `helm pull` fetches into a private temporary folder first. A
folder whose Chart.yaml lists dependencies missing from `charts/` (a git checkout of the
vendor's `chart/`) is refused with the fix, before helm could fail on it opaquely.
"""

from __future__ import annotations

import io
import re
import shutil
import tarfile
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from installer.errors import InputError
from installer.yamldata import YAMLMapping, YAMLValue

if TYPE_CHECKING:
    import yaml

    from installer.kube import Kube
    from installer.package import PackageVersionVerdict

MAX_MEMBER_BYTES = 8 * 1024 * 1024  # values.yaml of the real chart is ~300 kB
MAX_MEMBERS = 5000
# CARTO-FORMATS.md: the annotation's documented name, used only when no template of the
# chart names the annotation its version check reads.
DOCUMENTED_MINIMUM_ANNOTATION = "minVersion"
_ANNOTATION_USE = re.compile(
    r"\.Chart\.Annotations\.([A-Za-z_][A-Za-z0-9_]*)"
    r"|index\s+\.Chart\.Annotations\s+\"([^\"]+)\"")
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob",
                  "Pod")
ALL_KEYS = "*"  # a whole Secret is consumed (envFrom, a volume without items)


class ChartError(InputError):
    """The chart cannot be used as given (exit 2: the answers must change)."""


class ChartIncomplete(ChartError):
    """A chart folder without its subcharts (a git checkout): helm cannot render it."""


@dataclass(frozen=True)
class ChartFiles:
    """What the chart's own files say, without rendering anything."""

    path: Path  # a local .tgz or folder that helm can render
    name: str
    version: str
    app_version: str
    annotations: dict[str, str]
    values: YAMLMapping = field(repr=False)
    templates: dict[str, str] = field(repr=False)
    dependencies: tuple[str, ...] = ()
    subcharts: tuple[str, ...] = ()

    @property
    def minimum_annotations(self) -> list[str]:
        """Annotation names the chart's templates read (its version check among them)."""
        found: dict[str, None] = {}
        for text in self.templates.values():
            for match in _ANNOTATION_USE.finditer(text):
                found[match.group(1) or match.group(2)] = None
        return list(found)

    @property
    def minimum(self) -> tuple[str, str] | None:
        """(annotation name, version): the oldest package the chart accepts, when it says."""
        read = self.minimum_annotations
        candidates = read or [DOCUMENTED_MINIMUM_ANNOTATION]
        for name in candidates:
            value = self.annotations.get(name)
            if value is not None and str(value).strip():
                return name, str(value).strip().replace('"', "")
        return None

    def describe_minimum(self) -> str:
        """Where the minimum would come from, for a message saying it is missing."""
        read = self.minimum_annotations
        if read:
            return (f"its templates read the annotation {', '.join(read)}, which Chart.yaml "
                    "does not set")
        return (f"Chart.yaml has no `{DOCUMENTED_MINIMUM_ANNOTATION}` annotation and no "
                "template reads one")


# ---- reading the chart's files ----------------------------------------------------------------


def _safe_loader() -> type[yaml.SafeLoader]:
    """libyaml's safe loader when PyYAML has it: the chart's values.yaml and a rendered
    chart are thousands of lines, several times faster to read in C."""
    import yaml

    return getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _yaml(text: str, what: str) -> YAMLValue:
    import yaml

    try:
        return yaml.load(text, Loader=_safe_loader())  # noqa: S506 - a safe loader
    except yaml.YAMLError:
        raise ChartError(f"{what} is not valid YAML",
                         "give the vendor's chart as `helm pull` delivers it") from None


def _folder_entries(root: Path) -> Iterator[tuple[str, bytes]]:
    count = 0
    for file in sorted(root.rglob("*")):
        if file.is_symlink() or not file.is_file():
            continue
        relative = file.relative_to(root).as_posix()
        if not _wanted(relative):
            continue
        count += 1
        if count > MAX_MEMBERS or file.stat().st_size > MAX_MEMBER_BYTES:
            raise ChartError(f"{root} is too large to be a Helm chart")
        yield relative, file.read_bytes()


def _wanted(relative: str) -> bool:
    """Chart.yaml, values.yaml, templates and the subcharts' Chart.yaml/archives."""
    parts = relative.split("/")
    if len(parts) == 1:
        return parts[0] in ("Chart.yaml", "values.yaml")
    if parts[0] == "templates":
        return relative.endswith((".yaml", ".yml", ".tpl", ".txt"))
    if parts[0] == "charts":
        return (len(parts) == 2 and relative.endswith(".tgz")) or (
            len(parts) == 3 and parts[2] == "Chart.yaml")
    return False


def _archive_entries(data: bytes, what: str) -> Iterator[tuple[str, bytes]]:
    """Members of a chart archive, relative to its top folder (`carto/...`)."""
    try:
        archive = tarfile.open(fileobj=io.BytesIO(data), mode="r:*")
    except (tarfile.TarError, OSError):
        raise ChartError(f"{what} is not a chart archive (.tgz)",
                         "give the chart's .tgz as `helm pull` delivers it, or its folder"
                         ) from None
    with archive:
        for count, member in enumerate(archive):
            if count > MAX_MEMBERS:
                raise ChartError(f"{what} holds too many files to be a Helm chart")
            if not member.isfile():
                continue
            parts = member.name.split("/", 1)
            if len(parts) != 2 or ".." in member.name.split("/") or not _wanted(parts[1]):
                continue
            if member.size > MAX_MEMBER_BYTES:
                raise ChartError(f"{what}: {member.name} is too large for a chart file")
            handle = archive.extractfile(member)
            if handle is not None:
                yield parts[1], handle.read()


def _subchart_name(relative: str, data: bytes) -> str | None:
    if relative.endswith("Chart.yaml"):
        meta = _yaml(data.decode("utf-8", "replace"), relative)
        return str(meta.get("name")) if isinstance(meta, dict) and meta.get("name") else None
    for inner, content in _archive_entries(data, relative):
        if inner == "Chart.yaml":
            return _subchart_name(inner, content)
    return None


def read_chart_files(path: Path) -> ChartFiles:
    """Read a local chart (.tgz or folder). Raises ChartError when it is not usable."""
    if path.is_dir():
        entries = dict(_folder_entries(path))
    else:
        try:
            data = path.read_bytes() if path.stat().st_size <= 64 * MAX_MEMBER_BYTES else b""
        except OSError as exc:
            raise ChartError(f"cannot read the chart {path}: {exc.strerror or exc}") from None
        entries = dict(_archive_entries(data, str(path)))
    if "Chart.yaml" not in entries:
        raise ChartError(f"{path} is not a Helm chart (no Chart.yaml)",
                         "give the CARTO chart: carto/carto, or the .tgz `helm pull "
                         "carto/carto` downloads")
    meta = _yaml(entries["Chart.yaml"].decode("utf-8", "replace"), f"{path}: Chart.yaml")
    if not isinstance(meta, dict) or not meta.get("name"):
        raise ChartError(f"{path} is not a Helm chart (Chart.yaml names no chart)")
    values = _yaml(entries.get("values.yaml", b"").decode("utf-8", "replace"),
                   f"{path}: values.yaml") or {}
    templates = {name: data.decode("utf-8", "replace") for name, data in entries.items()
                 if name.startswith("templates/")}
    subcharts = [name for rel, data in entries.items() if rel.startswith("charts/")
                 for name in [_subchart_name(rel, data)] if name]
    dependencies = [str(d.get("name")) for d in meta.get("dependencies") or []
                    if isinstance(d, dict) and d.get("name")]
    annotations = {str(k): str(v) for k, v in (meta.get("annotations") or {}).items()}
    chart = ChartFiles(path, str(meta["name"]), str(meta.get("version", "?")),
                       str(meta.get("appVersion", "")), annotations,
                       values if isinstance(values, dict) else {}, templates,
                       tuple(dependencies), tuple(subcharts))
    missing = [d for d in chart.dependencies if d not in chart.subcharts]
    if missing:
        raise ChartIncomplete(
            f"the chart {path} lacks its dependencies ({', '.join(missing)} are listed in "
            "Chart.yaml but missing from its charts/ folder): a git checkout of the chart "
            "cannot be rendered as it is",
            "use the packaged chart: `helm pull carto/carto` (after `helm repo add carto "
            "https://helm.carto.com`) and set kubernetes.chart to the .tgz it downloads; or "
            f"fetch the dependencies into the folder with `helm dependency build {path}`")
    return chart


def local_chart_path(reference: str) -> Path | None:
    """The local chart a reference names, or None for a repository reference."""
    path = Path(reference).expanduser()
    looks_local = reference.endswith((".tgz", ".tar.gz")) or reference.startswith(
        ("/", "./", "../", "~")) or path.exists()
    if not looks_local:
        return None
    if not path.exists():
        raise ChartError(f"kubernetes.chart: {reference} does not exist",
                         "give the chart's .tgz (e.g. from `helm pull carto/carto`) or a "
                         "repository reference such as carto/carto")
    return path.resolve()


@dataclass
class FetchedChart:
    """A chart available as local files; `cleanup` removes a downloaded copy."""

    files: ChartFiles
    temporary: Path | None = None

    def cleanup(self) -> None:
        if self.temporary is not None:
            shutil.rmtree(self.temporary, ignore_errors=True)


def fetch_chart(kube: Kube, reference: str) -> FetchedChart:
    """The chart's files: read in place when local, else `helm pull`ed into a private
    temporary folder (the caller calls `cleanup`)."""
    local = local_chart_path(reference)
    if local is not None:
        return FetchedChart(read_chart_files(local))
    from installer.kube import KubeError, first_error_line

    folder = Path(tempfile.mkdtemp(prefix="carto-chart-"))
    try:
        result = kube.helm("pull", reference, "--destination", str(folder), timeout=60)
        if not result.ok:
            text = result.output()
            if re.search(r"repo .* not found|no repo named|failed to fetch|not found in .* "
                         r"index|could not find", text):
                repo = reference.split("/", 1)[0]
                raise ChartError(
                    f"helm cannot find the chart {reference}: {first_error_line(text)}",
                    f"add the repository: `helm repo add {repo} https://helm.carto.com && "
                    "helm repo update`, or set kubernetes.chart to a local .tgz (restricted "
                    "networks)")
            raise KubeError(kube.failure(text, "helm"))
        archives = sorted(folder.glob("*.tgz"))
        if len(archives) != 1:
            raise ChartError(f"`helm pull {reference}` did not give one chart archive")
        return FetchedChart(read_chart_files(archives[0]), folder)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def judge_chart_minimum(version: str | None, chart: ChartFiles) -> PackageVersionVerdict:
    """The one judge of "package >= the chart's minimum", for license.version and deploy."""
    from installer.package import judge_package_version

    label = f"chart {chart.name} {chart.version}"
    found = chart.minimum
    if found is None:
        return judge_package_version(version, None, "the chart's minimum", unknown_reason=(
            f"the {label} states no minimum package version: {chart.describe_minimum()}"))
    annotation, minimum = found
    return judge_package_version(
        version, minimum, "the chart's minimum",
        source=f"{label}, Chart.yaml annotation {annotation}",
        consequence="the chart's own pre-install check would stop the install "
        "(BackoffLimitExceeded)")


# ---- what the rendered manifests say ----------------------------------------------------------


def render_manifests(kube: Kube, chart: Path, release: str, namespace: str,
                     values_files: Sequence[Path], output_dir: Path) -> list[YAMLMapping]:
    """`helm template` (offline, no cluster) with these values files, parsed.

    The manifests go to `output_dir` (the caller's private folder), never through standard
    output: the rendered Secrets hold the package's secrets base64-encoded, a form the log's
    redaction would not recognise, and every command's output is logged."""
    import yaml

    from installer.kube import first_error_line

    argv = ["template", release, str(chart), "--namespace", namespace,
            "--output-dir", str(output_dir)]
    for file in values_files:
        argv += ["-f", str(file)]
    result = kube.helm(*argv, timeout=120)
    if not result.ok:
        line = first_error_line(result.output())
        raise ChartError(f"the chart {chart} does not render with these values: {line}",
                         "fix what the chart names (see carto-installer.log for helm's whole "
                         "output)")
    documents: list[YAMLValue] = []
    try:
        for file in sorted(output_dir.rglob("*.yaml")):
            documents += yaml.load_all(file.read_text(), Loader=_safe_loader())  # noqa: S506
    except (yaml.YAMLError, OSError, UnicodeDecodeError):
        raise ChartError(f"`helm template` of {chart} wrote something that is not YAML"
                         ) from None
    return [d for d in documents if isinstance(d, dict) and d.get("kind")]


def pod_specs(manifests: Iterable[YAMLMapping]) -> Iterator[tuple[str, YAMLMapping]]:
    """(kind/name, pod spec) of every workload, CronJobs and Jobs included."""
    for manifest in manifests:
        kind = manifest.get("kind")
        if kind not in WORKLOAD_KINDS:
            continue
        name = f"{kind}/{(manifest.get('metadata') or {}).get('name', '?')}"
        spec: YAMLValue = manifest.get("spec") or {}
        if kind == "CronJob":
            spec = ((spec.get("jobTemplate") or {}).get("spec") or {})
        if kind != "Pod":
            spec = ((spec.get("template") or {}).get("spec") or {})
        if isinstance(spec, dict):
            yield name, spec


def _containers(spec: YAMLMapping) -> Iterator[YAMLMapping]:
    for key in ("initContainers", "containers"):
        for container in spec.get(key) or []:
            if isinstance(container, dict):
                yield container


def image_references(manifests: Iterable[YAMLMapping]) -> list[str]:
    found: dict[str, None] = {}
    for _, spec in pod_specs(manifests):
        for container in _containers(spec):
            image = container.get("image")
            if isinstance(image, str) and image.strip():
                found[image.strip()] = None
    return list(found)


DOCKER_HUB = "docker.io"
DOCKER_HUB_ENDPOINT = "registry-1.docker.io"  # where the docker.io name is served


def registry_of(image: str) -> str:
    """The registry host[:port] of an image reference, as container runtimes read it: the
    first path component when it has a dot or a port or is localhost, else Docker Hub."""
    first, _, rest = image.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return first.lower()
    return DOCKER_HUB


def registry_endpoint(registry: str) -> tuple[str, int]:
    """(host, port) to reach for a registry name: Docker Hub's name is served elsewhere."""
    if registry == DOCKER_HUB:
        return DOCKER_HUB_ENDPOINT, 443
    host, _, port = registry.rpartition(":") if registry.count(":") == 1 else (registry, "", "")
    if host and port.isdigit():
        return host, int(port)
    return registry, 443


def image_registries(manifests: Iterable[YAMLMapping]) -> list[str]:
    found: dict[str, None] = {}
    for image in image_references(manifests):
        found[registry_of(image)] = None
    return list(found)


def secret_keys_consumed(manifests: Iterable[YAMLMapping], secret: str
                         ) -> dict[str, list[str]]:
    """key -> the workloads (kind/name/container) that read it from the Secret `secret`;
    ALL_KEYS when a workload takes the whole Secret (envFrom, a volume without items)."""
    used: dict[str, list[str]] = {}

    def note(key: str, who: str) -> None:
        used.setdefault(key, [])
        if who not in used[key]:
            used[key].append(who)

    for name, spec in pod_specs(manifests):
        for container in _containers(spec):
            who = f"{name}/{container.get('name', '?')}"
            for env in container.get("env") or []:
                ref = ((env or {}).get("valueFrom") or {}).get("secretKeyRef") or {}
                if ref.get("name") == secret and ref.get("key"):
                    note(str(ref["key"]), who)
            for source in container.get("envFrom") or []:
                if ((source or {}).get("secretRef") or {}).get("name") == secret:
                    note(ALL_KEYS, who)
        for volume in spec.get("volumes") or []:
            ref = (volume or {}).get("secret") or {}
            if ref.get("secretName") == secret:
                items = ref.get("items") or []
                for item in items:
                    note(str(item.get("key")), f"{name} (volume)")
                if not items:
                    note(ALL_KEYS, f"{name} (volume)")
            for source in ((volume or {}).get("projected") or {}).get("sources") or []:
                ref = (source or {}).get("secret") or {}
                if ref.get("name") == secret:
                    for item in ref.get("items") or [{"key": ALL_KEYS}]:
                        note(str(item.get("key")), f"{name} (volume)")
    return used


def env_values(manifests: Iterable[YAMLMapping], variable: str) -> dict[str, list[str]]:
    """value -> workloads, for a plain environment variable of the rendered containers and
    the ConfigMaps they load (the chart puts settings in both)."""
    values: dict[str, list[str]] = {}
    manifests = list(manifests)
    for name, spec in pod_specs(manifests):
        for container in _containers(spec):
            for env in container.get("env") or []:
                if (env or {}).get("name") == variable and "value" in env:
                    values.setdefault(str(env["value"]), []).append(
                        f"{name}/{container.get('name', '?')}")
    for manifest in manifests:
        if manifest.get("kind") == "ConfigMap":
            data = manifest.get("data") or {}
            if isinstance(data, dict) and variable in data:
                values.setdefault(str(data[variable]), []).append(
                    f"ConfigMap/{(manifest.get('metadata') or {}).get('name', '?')}")
    return values


__all__ = ["ALL_KEYS", "ChartError", "ChartFiles", "ChartIncomplete", "FetchedChart", "env_values",
           "fetch_chart", "judge_chart_minimum", "image_references", "image_registries",
           "local_chart_path", "read_chart_files", "registry_endpoint", "registry_of",
           "render_manifests", "secret_keys_consumed"]
