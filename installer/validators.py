"""One validator per kind of value, shared by the answers loader, the wizard and the checks.

Each takes the raw value and returns the normalised value, or raises `ValueError` whose text is
shown to the user as is, so it must say what is wrong and what is expected.
"""

from __future__ import annotations

import ipaddress
import re

_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
PROBE_TIMEOUT_MIN = 0.5
PROBE_TIMEOUT_MAX = 60.0


def validate_domain(value: object) -> str:
    """A full domain or subdomain, never a URL, path, port or IP. IDN become punycode."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError("the domain is empty: give a full domain such as carto.example.com")
    raw = value.strip()
    if any(c.isspace() for c in raw):
        raise ValueError(f"{raw!r} contains a space: give one domain, such as carto.example.com")
    if raw.startswith("*."):
        raise ValueError(
            f"{raw!r} is a wildcard: give the one domain CARTO will answer on, "
            f"such as carto.{raw[2:]}"
        )
    if "://" in raw:
        raise ValueError(
            f"{raw!r} has a scheme: give the domain alone, e.g. "
            f"{raw.split('://', 1)[1].split('/', 1)[0] or 'carto.example.com'}"
        )
    if "/" in raw:
        raise ValueError(
            f"{raw!r} contains a path: CARTO needs a full domain of its own, "
            "it cannot be installed under a path such as example.com/carto"
        )
    if raw.startswith("[") or is_ip(raw):
        raise ValueError(f"{raw!r} is an IP address: CARTO needs a domain name that points at it")
    if ":" in raw:
        host, _, port = raw.rpartition(":")
        raise ValueError(
            f"{raw!r} contains a port ({port}): give the domain alone ({host}); "
            "CARTO serves HTTPS on 443"
        )
    name = raw[:-1] if raw.endswith(".") else raw
    try:
        ascii_name = name.encode("idna").decode("ascii") if not name.isascii() else name
    except UnicodeError as exc:
        raise ValueError(f"{raw!r} is not a valid internationalised domain name ({exc})") from None
    ascii_name = ascii_name.lower()
    if len(ascii_name) > 253:
        raise ValueError(f"the domain is {len(ascii_name)} characters long; at most 253 allowed")
    labels = ascii_name.split(".")
    if len(labels) < 2:
        raise ValueError(
            f"{raw!r} is a single label: give a full domain such as {raw}.example.com"
        )
    for label in labels:
        if not label:
            raise ValueError(f"{raw!r} has an empty label (two dots in a row, or a leading dot)")
        if len(label) > 63:
            raise ValueError(f"the label {label[:20]}... is {len(label)} characters; at most 63")
        if not _LABEL.match(label):
            bad = sorted({c for c in label if not (c.isalnum() or c == "-")})
            if bad:
                raise ValueError(
                    f"{raw!r} contains characters not allowed in a domain: {' '.join(bad)}"
                )
            raise ValueError(f"the label {label!r} may not start or end with a hyphen")
        if label.startswith("xn--") and not _is_a_label(label):
            raise ValueError(f"the label {label!r} is not valid punycode (an xn-- label)")
    if labels[-1].isdigit():
        raise ValueError(f"{raw!r} ends in a numeric label; a top-level domain is never numeric")
    return ascii_name


def _is_a_label(label: str) -> bool:
    """True when an xn-- label decodes to Unicode (browsers refuse broken punycode)."""
    try:
        label.encode("ascii").decode("idna")
    except UnicodeError:
        return False
    return True


def validate_probe_timeout(value: object) -> float:
    """Seconds to wait for one network probe: long enough for a slow link, bounded so a
    preflight never hangs (the checks' own time limits are derived from the bound)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"expected a number of seconds, got {value!r}")
    seconds = float(value)
    if not PROBE_TIMEOUT_MIN <= seconds <= PROBE_TIMEOUT_MAX:
        raise ValueError(
            f"{seconds:g} s is out of range: give {PROBE_TIMEOUT_MIN:g} to "
            f"{PROBE_TIMEOUT_MAX:g} seconds"
        )
    return seconds


def is_ip(text: str) -> bool:
    """Whether `text` is an IPv4 or IPv6 address (not a name)."""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def validate_port(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError("a port is a whole number from 1 to 65535")
    try:
        port = int(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a port number (1 to 65535)") from None
    if not 1 <= port <= 65535:
        raise ValueError(f"{port} is out of range: a port is from 1 to 65535")
    return port


def validate_env_value(value: object) -> str:
    """A value that will be written to an env file: any text but a newline or a NUL."""
    if not isinstance(value, str):
        raise ValueError("expected text")
    if "\x00" in value:
        raise ValueError("contains a NUL character, which no env file can hold")
    if "\n" in value or "\r" in value:
        raise ValueError("contains a line break, which an env file cannot hold in one value")
    return value


def validate_hostname(value: object) -> str:
    """A host name or IP address to connect to (not necessarily fully qualified)."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError("the host is empty")
    host = value.strip()
    if "://" in host or "/" in host:
        raise ValueError(f"{host!r} should be a host name or address, without scheme or path")
    if any(c.isspace() for c in host):
        raise ValueError(f"{host!r} contains spaces")
    validate_env_value(host)
    return host


def validate_identifier(value: object) -> str:
    """A PostgreSQL role or database name as CARTO creates it (plain, unquoted)."""
    if not isinstance(value, str) or not value:
        raise ValueError("the name is empty")
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_$@.-]{0,62}", value):
        raise ValueError(
            f"{value!r} is not a plain PostgreSQL name: use letters, digits and _ "
            "(Azure's user@server form is accepted)"
        )
    return value


def validate_proxy_url(value: object) -> str:
    """http(s)://host[:port][/], without credentials. Messages never repeat a password: the
    URL is shown with any user:password@ masked, malformed or not."""
    from installer.redact import mask_url_credentials
    from installer.safetext import visible_line

    if not isinstance(value, str) or not value:
        raise ValueError("the proxy URL is empty")
    validate_env_value(value)
    shown = repr(visible_line(mask_url_credentials(value)))
    if re.match(r"(?i)[a-z][a-z0-9+.-]*://[^/]*@", value):
        raise ValueError(
            f"the proxy URL {shown} carries credentials; CARTO does not support proxy "
            "authentication: give http://host:port"
        )
    match = re.fullmatch(
        r"(https?)://([^:/@]+|\[[0-9a-fA-F:]+\])(?::(\d{1,5}))?/?", value
    )
    if not match:
        raise ValueError(f"{shown} is not a proxy URL like http://proxy.internal:3128")
    if match.group(3) is not None and not 1 <= int(match.group(3)) <= 65535:
        raise ValueError(f"{shown} has the port {int(match.group(3))}: a port is from 1 to "
                         "65535")
    return value


def validate_target_directory(value: object) -> str:
    """A folder on the target machine: an absolute POSIX path (the target may be remote, so
    it cannot be resolved against this machine's working directory)."""
    path = validate_env_value(value)
    if not path.strip():
        raise ValueError("the folder is empty: give its full path, e.g. /opt/carto")
    if not path.startswith("/"):
        raise ValueError(f"{path!r} is not an absolute path: give the full path on the target, "
                         "e.g. /opt/carto")
    return path


def validate_bucket_name(value: object) -> str:
    """A bucket or container name the three providers accept: 3-63 lower-case letters,
    digits, '-', '.' and '_' (GCS), starting and ending with a letter or digit."""
    name = validate_env_value(value)
    if not re.fullmatch(r"[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]", name):
        raise ValueError(f"{name!r} is not a bucket name: 3 to 63 lower-case letters, digits, "
                         "'-' or '.', starting and ending with a letter or digit")
    return name


def validate_endpoint_url(value: object) -> str:
    """An object-store endpoint: http(s)://host[:port], no path, no credentials."""
    url = validate_env_value(value)
    match = re.fullmatch(r"(https?)://([^:/@\s]+|\[[0-9a-fA-F:]+\])(?::(\d{1,5}))?/?", url)
    if not match:
        raise ValueError(f"{url!r} is not an endpoint URL like https://minio.internal:9000 "
                         "(scheme, host and optional port; no path)")
    if match.group(3) and not 0 < int(match.group(3)) < 65536:
        raise ValueError(f"port {match.group(3)} is out of range")
    return url.rstrip("/")


def validate_storage_account(value: object) -> str:
    name = validate_env_value(value)
    if not re.fullmatch(r"[a-z0-9]{3,24}", name):
        raise ValueError(f"{name!r} is not an Azure storage account name: 3 to 24 lower-case "
                         "letters and digits")
    return name


def validate_registry_host(value: object) -> str:
    """A registry as `docker login` takes it: host[:port], optionally with a path."""
    text = validate_env_value(value)
    if not re.fullmatch(r"[A-Za-z0-9.-]+(:\d{1,5})?(/[A-Za-z0-9._/-]+)?", text):
        raise ValueError(f"{text!r} is not a registry like registry.internal:5000")
    return text
