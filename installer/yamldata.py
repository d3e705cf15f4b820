"""Names for data whose shape belongs to a file or a tool, not to this program.

A vendor's docker-compose.yaml, a chart's rendered manifests, `kubectl -o json`, an answers
file before it is validated: what `yaml.safe_load` or `json.loads` returns can be any tree of
mappings, lists and scalars. The code narrows such a value with isinstance where it reads it;
these aliases say in a signature that the value is such data, and nothing else is typed Any.
`overlay` lays one such tree over another (Helm values over values, as Helm merges them).
"""

from __future__ import annotations

from typing import Any, TypeAlias

YAMLValue: TypeAlias = Any  # mappings, lists, strings, numbers, booleans, None, dates
YAMLMapping: TypeAlias = dict[str, YAMLValue]  # a document or a node known to be a mapping
JSONValue: TypeAlias = Any  # the same, as a JSON parser returns it (no dates)
JSONObject: TypeAlias = dict[str, JSONValue]


def overlay(base: YAMLMapping, extra: YAMLMapping) -> YAMLMapping:
    """`base` with `extra` laid over it: maps merge, anything else (deletion marks included)
    replaces."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = overlay(out[key], value)
        else:
            out[key] = value
    return out
