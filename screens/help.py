"""What each wizard step asks for, where to find the values and the vendor's rules: the text
of the help panel (? or F1). The fields' own lines come from their declarations in
installer/answers/model.py, so a field's help is written once. UI-free."""

from __future__ import annotations

import dataclasses

from installer.answers import field_spec
from installer.answers.sections import ADVANCED, STORAGE
from installer.deployment_dir import RELEASES_URL
from installer.session import STEP_SPEC

STEP_HELP: dict[str, str] = {
    "welcome": (
        "The wizard asks one step at a time, checks each answer as you type and each "
        "requirement live, and changes nothing until you press Deploy on the last step. "
        "Your progress is kept (without secrets) so a later run can resume."),
    "platform": (
        "Single VM: CARTO runs with Docker Compose on one machine (4 CPUs, 16 GB, 60 GB "
        "disk, Ubuntu 20.04+). Kubernetes: the vendor's Helm chart in an existing cluster "
        "(3 nodes with 2 vCPU and 16 GB each, Helm 3.6+). ↑↓ choose."),
    "target": (
        "For a single VM: this machine, or another one over SSH (host keys are always "
        "verified). The deployment directory must hold the vendor's Compose release: "
        f"docker-compose.yml, env.tpl, VERSION and MIN_VERSION, from {RELEASES_URL} "
        "(git clone https://github.com/CartoDB/carto-selfhosted.git, or a release archive). "
        "For Kubernetes: the kubeconfig and context your `kubectl` uses, and the namespace "
        "and Helm release name to install into."),
    "requirements": (
        "Every requirement of the vendor's deployment page, checked on the target. Select a "
        "check for what was measured and its fix; r re-runs it, Ctrl+R re-runs all. A failed "
        "check blocks Next until it passes, or you accept its risk (a for one, A for all "
        "shown)."),
    "domain_tls": (
        "The full domain users open CARTO at (carto.example.com: no scheme, no path, no "
        "port), with a DNS A record pointing at the machine. The certificate file is PEM, "
        "the domain's certificate first (it must name the domain in its subjectAltName and "
        "be marked CA:FALSE), then its intermediates; the key is an unencrypted PEM key. "
        "Without files, a self-signed certificate is generated (browsers warn)."),
    "database": (
        "CARTO keeps its metadata in PostgreSQL 14 or newer (11-13 work with a warning). "
        "The admin user must be able to create roles and databases (superuser, or "
        "CREATEROLE and CREATEDB; managed clouds: rds_superuser, cloudsqlsuperuser, "
        "azure_pg_admin); the installer creates the CARTO user and database with it. "
        "Ctrl+T tests the connection. The bundled container is for debugging only."),
    "license": (
        "The installation package CARTO sent you, as the zip or unpacked: for a single VM "
        "customer.env and key.json, for Kubernetes carto-values.yaml and "
        "carto-secrets.yaml. Its version must not be older than the release's minimum "
        "(MIN_VERSION, or the chart's annotation). Ask CARTO support if you have none."),
    "network": (
        "CARTO needs outbound HTTPS to CARTO's and Google's services, plus the hosts of the "
        "warehouses and features you use. Tick what you use; each host is checked from the "
        "target, through your proxy if you give one. A proxy that inspects TLS needs its CA "
        "file."),
    "review": (
        "Every file that Deploy will write, as a diff against what is there now (secret "
        "files show key names only). Your answers are saved for `carto-installer deploy "
        "--answers FILE`. Problems found here name the step to fix (g goes there)."),
    "deploy": (
        "Preflight, write the files, start CARTO, wait until healthy and verify over HTTPS. "
        "Ctrl+C stops at a safe point: every file written is complete."),
}


def step_fields(step: str, platform: str | None = None) -> tuple[str, ...]:
    """The answers a step asks for (on `platform`, if given), from its sections, in the order
    the step shows them. The Advanced settings are left out: their collapsible section
    introduces them itself."""
    spec = STEP_SPEC.get(step)
    sections = spec.sections if spec is not None else ()
    return tuple(ask.path for section in sections if section not in (STORAGE, ADVANCED)
                 and (platform is None or section.asked_on(platform))
                 for ask in section.asks if platform is None or ask.asked_on(platform))


def step_help(step: str, platform: str = "compose") -> list[tuple[str, str]]:
    """(heading, text) pairs: the step, then each of its fields with its declared help."""
    out = [("", STEP_HELP.get(step, ""))]
    for path in step_fields(step, platform):
        spec = field_spec(path)
        text = spec.help or ("secret: typed hidden, never saved; in an answers file give "
                             f"{path}_env" if spec.secret else "")
        default = spec.default
        if not spec.secret and default is not dataclasses.MISSING \
                and default not in (None, "", []):
            text = (text + "; " if text else "") + f"default {default}"
        out.append((spec.label, text or "-"))
    return out
