"""license.*: the installation package and its version."""

from __future__ import annotations

import posixpath

from installer.checks.base import Check, CheckContext, Outcome, failed, passed, warned
from installer.errors import InputError
from installer.package import (
    DOWNLOAD_FIX,
    Package,
    PackageVersionVerdict,
    expected_files,
    judge_package_version,
    read_package,
)


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
    gaps = _compose_gaps(ctx, package) if ctx.platform == "compose" else None
    if gaps:
        from installer.vendor import GAPS_FIX

        return failed(gaps, observed=f"{package.kind} {package.path}, version {package.version}",
                      remediation=GAPS_FIX)
    return passed(
        f"{files} present and parseable (tenant {package.tenant_id})",
        observed=f"{package.kind} {package.path}, version {package.version}",
        version=package.version,
    )


def _compose_gaps(ctx: CheckContext, package: Package) -> str | None:
    """What the deployment directory's env.tpl and docker-compose.yml use that the package
    does not define (and the installer does not write): each would expand to an empty string
    without any error from Compose."""
    from installer.errors import AnswersError
    from installer.render.compose import owned_settings
    from installer.vendor import describe_gaps, package_gaps

    assert ctx.answers is not None
    if package.customer_env is None:
        return None
    template = ctx.deployment_file("env.tpl")
    compose = ctx.deployment_file("docker-compose.yml")
    if template is None or compose is None:
        return None  # no deployment directory yet: render says so
    try:
        installer_keys = [key for _answer, key, _value in owned_settings(ctx.answers)]
    except AnswersError:  # an incomplete answers file: the keys the installer always writes
        installer_keys = ["LOCAL_POSTGRES_SCALE", "LOCAL_REDIS_SCALE"]
    missing = package_gaps(template, compose, package.customer_env, installer_keys)
    return describe_gaps(missing, template) if missing else None


def _outcome(verdict: PackageVersionVerdict, remediation_if_unknown: str) -> Outcome:
    if verdict.status == "pass":
        return passed(verdict.message, observed=verdict.observed)
    if verdict.status == "unknown":
        return warned(verdict.message, observed=verdict.observed,
                      remediation=remediation_if_unknown)
    return failed(verdict.message, observed=verdict.observed, remediation=verdict.remediation)


def check_version(ctx: CheckContext) -> Outcome:
    assert ctx.answers is not None
    stored = ctx.data("license.package").get("version")
    version = stored if isinstance(stored, str) and stored else _package(ctx).version
    if ctx.platform == "kubernetes":
        return _check_version_against_chart(ctx, version)
    directory = ctx.answers.compose.directory
    path = posixpath.join(directory, "MIN_VERSION")
    from installer.target import LinkRefused

    try:
        text = ctx.deployment_file("MIN_VERSION")
    except LinkRefused:
        return failed(f"{path} is a symbolic link: the installer does not follow links in the "
                      "deployment directory", observed="a symbolic link",
                      remediation=f"replace it with the vendor's file (ls -l {path})")
    text = text[:200] if text else text
    minimum = text.strip().replace('"', "") if text and text.strip() else None
    verdict = judge_package_version(version, minimum, "the deployment's MIN_VERSION",
                                    source=path,
                                    unknown_reason=f"MIN_VERSION is unknown ({path} is "
                                    "missing or empty)")
    return _outcome(verdict, "set compose.directory to the vendor's deployment directory (it "
                    "holds docker-compose.yml, env.tpl, VERSION and MIN_VERSION)")


def _check_version_against_chart(ctx: CheckContext, version: str | None) -> Outcome:
    """The chart's own minimum, read before installing: otherwise its pre-install hook fails
    with BackoffLimitExceeded and the reason is buried in a job's log."""
    from installer.chart import ChartIncomplete, fetch_chart, judge_chart_minimum
    from installer.errors import InstallerError
    from installer.kube import Kube

    assert ctx.answers is not None
    chart = ctx.answers.kubernetes.chart
    try:
        fetched = fetch_chart(Kube(ctx.target, ctx.answers.kubernetes), chart)
    except ChartIncomplete as exc:
        return failed(exc.message, observed=f"package {version}; chart {chart} incomplete",
                      remediation=exc.remediation)
    except InstallerError as exc:
        return warned(
            f"package {version}: cannot read the minimum version from the chart {chart} "
            f"({exc.message})",
            observed=f"package {version}, minimum unknown",
            remediation=exc.remediation or "make the chart readable (`helm show chart "
            f"{chart}`); deploy checks the minimum again before installing",
        )
    fetched.cleanup()
    verdict = judge_chart_minimum(version, fetched.files)
    return _outcome(verdict, "if the install fails with BackoffLimitExceeded, download a newer "
                    "package")


CHECKS: list[Check] = [
    Check("license.package", "Installation package",
          "customer.env + key.json (compose) or carto-values.yaml + carto-secrets.yaml "
          "(kubernetes), all parseable", check_package, timeout=15, applies=_needs_package),
    Check("license.version", "Package version", ">= MIN_VERSION (compose) or the chart's "
          "minimum (kubernetes)", check_version, timeout=60,
          needs=("license.package",), applies=_needs_package),
]
