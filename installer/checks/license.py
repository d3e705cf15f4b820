"""license.*: the installation package and its version."""

from __future__ import annotations

import posixpath

from installer.checks.base import Check, CheckContext, Outcome, failed, passed, warned
from installer.errors import InputError
from installer.package import DOWNLOAD_FIX, Package, expected_files, read_package, version_at_least


def _needs_package(ctx: CheckContext) -> str | None:
    if ctx.answers is None or not ctx.answers.package:
        return "no answers file names the installation package (`package:`)"
    return None


def _package(ctx: CheckContext) -> Package:
    assert ctx.answers is not None and ctx.answers.package
    path, platform = ctx.answers.package, ctx.platform
    package: Package = ctx.cached(f"license.package:{platform}:{path}",
                                  lambda: read_package(path, platform, ctx.redactor))
    return package


def check_package(ctx: CheckContext) -> Outcome:
    files = ", ".join(expected_files(ctx.platform))
    try:
        package = _package(ctx)
    except InputError as exc:
        return failed(exc.message, observed="not readable", remediation=exc.remediation
                      or DOWNLOAD_FIX)
    if package.defects:
        count = len(package.defects)
        return failed(
            f"the installation package has {count} defect{'s' if count > 1 else ''}: "
            f"{package.summary()}",
            observed=f"{count} defect{'s' if count > 1 else ''} in {package.kind} {package.path}",
            remediation=package.remediation(),
        )
    return passed(
        f"{files} present and parseable (tenant {package.tenant_id})",
        observed=f"{package.kind} {package.path}, version {package.version}",
        version=package.version,
    )


def check_version(ctx: CheckContext) -> Outcome:
    assert ctx.answers is not None
    version = ctx.data("license.package").get("version") or _package(ctx).version
    if not version:
        return failed("the package does not state its version",
                      observed="no version", remediation=DOWNLOAD_FIX)
    if ctx.platform == "kubernetes":
        return _check_version_against_chart(ctx, version)
    directory = ctx.answers.compose.directory
    path = posixpath.join(directory, "MIN_VERSION")
    from installer.target import LinkRefused

    try:
        text: str | None = ctx.target.read_deployment_file(path, directory).decode(
            "utf-8", "replace")[:200]
    except LinkRefused:
        return failed(f"{path} is a symbolic link: the installer does not follow links in the "
                      "deployment directory", observed="a symbolic link",
                      remediation=f"replace it with the vendor's file (ls -l {path})")
    except (OSError, ValueError):
        text = None
    if text is None or not text.strip():
        return warned(
            f"MIN_VERSION is unknown ({path} is missing or empty)",
            observed=f"package {version}, MIN_VERSION unknown",
            remediation="set compose.directory to the vendor's deployment directory (it holds "
            "docker-compose.yml, env.tpl, VERSION and MIN_VERSION)",
        )
    minimum = text.strip().replace('"', "")
    if version_at_least(version, minimum):
        return passed(f"package {version} is not older than MIN_VERSION {minimum}",
                      observed=version)
    return failed(
        f"the package {version} is older than the deployment's MIN_VERSION {minimum}",
        observed=f"{version} < {minimum}",
        remediation="download a newer installation package (CARTO Workspace > Settings > "
        "Self-Hosted, or the vendor's tools/carto-download-customer-package.sh) and point "
        "`package:` at it",
    )


def _check_version_against_chart(ctx: CheckContext, version: str) -> Outcome:
    """The chart's own minimum, read before installing: otherwise its pre-install hook fails
    with BackoffLimitExceeded and the reason is buried in a job's log."""
    from installer.deploy.helm import chart_info
    from installer.errors import InstallerError
    from installer.kube import Kube

    assert ctx.answers is not None
    chart = ctx.answers.kubernetes.chart
    try:
        info = chart_info(Kube(ctx.target, ctx.answers.kubernetes), chart)
    except InstallerError as exc:
        return warned(
            f"package {version}: cannot read the minimum version from the chart {chart} "
            f"({exc.message})",
            observed=f"package {version}, minimum unknown",
            remediation=exc.remediation or "make the chart readable (`helm show chart "
            f"{chart}`); deploy checks the minimum again before installing",
        )
    if not info.minimum:
        return warned(
            f"package {version}: the chart {chart} does not state a minimum package version",
            observed=f"package {version}, minimum unknown",
            remediation="if the install fails with BackoffLimitExceeded, download a newer "
            "package",
        )
    if version_at_least(version, info.minimum):
        return passed(f"package {version} is not older than the chart's minimum "
                      f"{info.minimum}", observed=version)
    return failed(
        f"the package {version} is older than the chart's minimum {info.minimum}: its "
        "pre-install hook would fail with BackoffLimitExceeded",
        observed=f"{version} < {info.minimum}",
        remediation="download a newer installation package (CARTO Workspace > Settings > "
        "Self-Hosted) and point `package:` at it, or install an older chart version",
    )


CHECKS: list[Check] = [
    Check("license.package", "Installation package",
          "customer.env + key.json (compose) or carto-values.yaml + carto-secrets.yaml "
          "(kubernetes), all parseable", check_package, timeout=15, applies=_needs_package),
    Check("license.version", "Package version", ">= MIN_VERSION (compose) or the chart's "
          "minimum (kubernetes)", check_version, timeout=60,
          needs=("license.package",), applies=_needs_package),
]
