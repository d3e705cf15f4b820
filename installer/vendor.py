"""What the vendor's Compose deployment directory itself says, read from its files.

The installer never hard-codes the vendor's service names, registries or variables: each
release may change them. This module reads them from the deployment directory the user points
at: the router is the service whose `ports:` publish the host's 443 (docker-compose.yml); the
registry is where the images that docker-compose.yml names come from once `.env` is expanded
(env.tpl sets DOCKER_REGISTRY_BASE_PATH); the variables a package must define are those env.tpl
and docker-compose.yml use without defining them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from installer.envfile import EnvFile
from installer.yamldata import YAMLMapping, YAMLValue

# Set by install.sh (and by us) from VERSION, between customer.env and env.tpl.
VERSION_VARIABLE = "CARTO_SELFHOSTED_VERSION"

# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?err}, $NAME; `$$` is an escaped dollar.
_REFERENCE = re.compile(
    r"\$(?:\$|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?P<op>:?[-?+])?(?P<arg>[^}]*)\}"
    r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))")


@dataclass(frozen=True)
class Reference:
    name: str
    has_default: bool  # ${NAME:-x} / ${NAME-x}: an absent variable does not break anything


def references(text: str) -> list[Reference]:
    """The variable references in a value or a file, in order (escaped `$$` skipped)."""
    found: list[Reference] = []
    for match in _REFERENCE.finditer(text):
        name = match.group("braced") or match.group("bare")
        if not name:
            continue
        op = match.group("op") or ""
        found.append(Reference(name, op.lstrip(":") in ("-", "+")))
    return found


def expand(text: str, values: Mapping[str, str]) -> str:
    """Interpolate like Compose does (enough for image names and ports): absent -> ""."""
    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group("braced") or match.group("bare") or ""
        op, arg = match.group("op") or "", match.group("arg") or ""
        value = values.get(name)
        if op in (":-",) and not value:
            return arg
        if op == "-" and value is None:
            return arg
        return value or ""

    return _REFERENCE.sub(replace, text)


# --- docker-compose.yml ------------------------------------------------------------------------


def load_compose(text: str) -> YAMLMapping:
    """The services mapping of a docker-compose.yml ({} when it has none or is not YAML)."""
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return {}
    services = data.get("services") if isinstance(data, dict) else None
    return services if isinstance(services, dict) else {}


def published_host_ports(entry: YAMLValue, values: Mapping[str, str] | None = None) -> set[int]:
    """Host ports one `ports:` entry publishes (short "[ip:]host:container[/proto]" with
    ranges, or the long form with `published:`); a bare container port publishes none that
    is known in advance."""
    values = values or {}
    if isinstance(entry, dict):
        published = entry.get("published")
        return _port_range(expand(str(published), values)) if published is not None else set()
    text = expand(str(entry), values).split("/", 1)[0]
    if text.startswith("["):  # [::1]:443:8443
        text = text.split("]", 1)[1].lstrip(":")
    parts = text.split(":")
    if len(parts) < 2:
        return set()
    return _port_range(parts[-2])


def _port_range(text: str) -> set[int]:
    low, _, high = text.strip().partition("-")
    if not low.isdigit() or (high and not high.isdigit()):
        return set()
    return set(range(int(low), int(high or low) + 1))


def services_publishing(compose_text: str, port: int,
                        values: Mapping[str, str] | None = None) -> list[str]:
    """The services of a docker-compose.yml that publish `port` on the host (the vendor's
    router publishes 443)."""
    out: list[str] = []
    for name, service in load_compose(compose_text).items():
        ports = service.get("ports") if isinstance(service, dict) else None
        if isinstance(ports, list) and any(port in published_host_ports(p, values)
                                           for p in ports):
            out.append(str(name))
    return out


def compose_references(compose_text: str) -> list[Reference]:
    """Variables docker-compose.yml interpolates from `.env` (image names, scales, ...)."""
    return references(compose_text)


# --- env.tpl -----------------------------------------------------------------------------------


def template_needs(env_tpl: str) -> list[str]:
    """Variables env.tpl uses before (or without) defining them: they must come from
    customer.env (or VERSION). Names only, in order of first use, each once."""
    defined: set[str] = set()
    needed: list[str] = []
    for entry in EnvFile.parse(env_tpl).entries:
        if entry.key is None or entry.raw is None:
            continue
        for ref in references(entry.raw):
            if ref.name not in defined and not ref.has_default and ref.name not in needed:
                needed.append(ref.name)
        defined.add(entry.key)
    return needed


def template_keys(env_tpl: str) -> set[str]:
    return set(EnvFile.parse(env_tpl).keys())


def missing_variables(env_tpl: str, compose_text: str, provided: Iterable[str]) -> list[str]:
    """What env.tpl and docker-compose.yml use that nothing defines: not customer.env (the
    `provided` keys, with the installer's own), not env.tpl, not VERSION."""
    have = {*provided, VERSION_VARIABLE}
    template = template_keys(env_tpl)
    missing: list[str] = []
    for name in template_needs(env_tpl):
        if name not in have and name not in missing:
            missing.append(name)
    for ref in compose_references(compose_text):
        if (not ref.has_default and ref.name not in have and ref.name not in template
                and ref.name not in missing):
            missing.append(ref.name)
    return missing


# --- images and registries ---------------------------------------------------------------------


def dotenv_values(customer_env: str, version: str, env_tpl: str) -> dict[str, str]:
    """The values Compose reads from a `.env` built from these three, expanded in order."""
    return expanded_env(f"{customer_env}\n{VERSION_VARIABLE}={version.strip()}\n{env_tpl}")


def expanded_env(text: str) -> dict[str, str]:
    """The values Compose reads from a `.env` text, each expanded with those before it."""
    values: dict[str, str] = {}
    for entry in EnvFile.parse(text).entries:
        if entry.key is None or entry.raw is None:
            continue
        raw = entry.raw.strip()
        if len(raw) > 1 and raw[0] == raw[-1] == "'":
            value = raw[1:-1]  # single quotes: literal in both parsers
        else:
            if len(raw) > 1 and raw[0] == raw[-1] == '"':
                raw = raw[1:-1]
            else:
                raw = raw.split(" #", 1)[0].rstrip()
            value = expand(raw, values)
        values[entry.key] = value
    return values


def registry_of(image: str) -> str | None:
    """The registry host an image reference is pulled from (Docker Hub as
    registry-1.docker.io); None for an empty reference."""
    image = image.strip()
    if not image:
        return None
    first, sep, _rest = image.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first.split(":", 1)[0].lower() if first != "localhost" else "localhost"
    return "registry-1.docker.io"


def image_registries(compose_text: str, values: Mapping[str, str]) -> list[str]:
    """Registry hosts of the images the deployment will pull: every service's `image:` after
    interpolation, leaving out services scaled to 0 (the bundled database when external)."""
    hosts: list[str] = []
    for service in load_compose(compose_text).values():
        if not isinstance(service, dict) or "image" not in service:
            continue
        scale = expand(str(service.get("scale", "1")), values).strip()
        if scale == "0":
            continue
        host = registry_of(expand(str(service["image"]), values))
        if host and host not in hosts:
            hosts.append(host)
    return hosts


# --- renamed variables -------------------------------------------------------------------------


@dataclass(frozen=True)
class Rename:
    """A customer.env variable the vendor renamed: data, so the next rename is one line."""

    old: str
    new: str
    since: str  # the first release known to use the new name
    source: str  # where the vendor does the rename


# install.sh of both pinned releases (2026.5.14, 2026.7.16) runs
# `sed -i -e 's/^POSTGRES_PASSWORD/POSTGRES_ADMIN_PASSWORD/g' customer.env`; the exact release
# that introduced it is older than both and not in the files we have.
RENAMES: tuple[Rename, ...] = (
    Rename("POSTGRES_PASSWORD", "POSTGRES_ADMIN_PASSWORD", since="2026.5.14 or earlier",
           source="install.sh _migrate_postgres_version_var"),
)


def renames_in(keys: Iterable[str]) -> list[Rename]:
    """The renames that apply to a customer.env holding these keys."""
    present = set(keys)
    return [rename for rename in RENAMES if rename.old in present]


# --- package completeness ----------------------------------------------------------------------

GAPS_FIX = ("download the installation package again (CARTO Workspace > Settings > "
            "Self-Hosted, or the vendor's tools/carto-download-customer-package.sh): a package "
            "older than the deployment directory lacks the variables newer releases use")


def describe_gaps(missing: list[str], env_tpl: str) -> str:
    """A message naming the missing variables and, for one, what it would break."""
    example = ""
    for entry in EnvFile.parse(env_tpl).entries:
        if entry.key and entry.raw and any(r.name == missing[0] for r in references(entry.raw)):
            example = (f" (e.g. env.tpl's {entry.key}={entry.raw.strip()} would be built with "
                       f"an empty {missing[0]})")
            break
    names = ", ".join(missing)
    return (f"customer.env lacks {names}, which the deployment directory's env.tpl or "
            f"docker-compose.yml use{example}")


def package_gaps(env_tpl: str, compose_text: str, customer_env: EnvFile,
                 installer_keys: Iterable[str]) -> list[str]:
    """Variables the deployment directory uses that neither the package's customer.env (with
    a value) nor the installer provides."""
    provided = {key for key, value in customer_env.items().items() if value.strip()}
    for rename in renames_in(provided):  # install.sh (and render) rename the legacy names
        provided.add(rename.new)
    return missing_variables(env_tpl, compose_text, provided | set(installer_keys))
