"""Writing answers: YAML-ready data (inline secrets left out) and the JSON Schema of the file,
both generated from the declarations."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, get_origin

from installer.answers.form import _field_types, _public_fields, _unwrap_optional, file_key
from installer.answers.model import Answers, Secret
from installer.validators import validate_port
from installer.yamldata import JSONObject, YAMLMapping

if TYPE_CHECKING:
    from _typeshed import DataclassInstance


def answers_to_dict(obj: DataclassInstance) -> YAMLMapping:
    """The answers as YAML-ready data. Inline secrets are left out; references are kept."""
    out: YAMLMapping = {}
    defaults = type(obj)() if _all_defaults(type(obj)) else None
    for f in _public_fields(type(obj)):
        value = getattr(obj, f.name)
        if isinstance(value, Secret):
            kind, _, ref = value.source.partition(":")
            if kind in ("env", "file"):
                out[f"{f.name}_{kind}"] = ref
            continue
        if value is None:
            continue
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            sub = answers_to_dict(value)
            if sub:
                out[file_key(f)] = sub
            continue
        always = f.name in ("version", "platform")
        if defaults is not None and getattr(defaults, f.name) == value and not always:
            continue
        out[file_key(f)] = list(value) if isinstance(value, list) else value
    return out


def _all_defaults(cls: type) -> bool:
    return all(
        f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        for f in dataclasses.fields(cls)
    )


def dump_answers(answers: Answers) -> str:
    import yaml  # loaded when answers are first written, not with the wizard's first screen

    header = (
        "# carto-installer answers (version 1). Secrets are not stored here: give them as\n"
        "# *_env: VARIABLE or *_file: PATH.\n"
    )
    return header + yaml.safe_dump(answers_to_dict(answers), sort_keys=False, allow_unicode=True)


def json_schema() -> JSONObject:
    """JSON Schema (draft 2020-12) of the answers file, generated from the declarations."""
    schema = _schema_for(Answers)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "carto-installer answers"
    return schema


def _schema_for(cls: type) -> dict[str, Any]:
    hints = _field_types(cls)
    props: dict[str, Any] = {}
    required: list[str] = []
    for f in _public_fields(cls):
        inner, _ = _unwrap_optional(hints[f.name])
        meta = f.metadata
        desc = meta.get("label", "") + (f": {meta['help']}" if meta.get("help") else "")
        if meta.get("secret"):
            for suffix, text in (("", "inline (discouraged)"), ("_env", "environment variable"),
                                 ("_file", "file holding it")):
                props[f.name + suffix] = {"type": "string", "description": f"{desc} ({text})"}
            continue
        if isinstance(inner, type) and dataclasses.is_dataclass(inner):
            prop = _schema_for(inner)
            prop = {"anyOf": [prop, {"type": "null"}]} if inner is not cls else prop
        elif inner is bool:
            prop = {"type": "boolean"}
        elif inner is int:
            prop = {"type": "integer"}
            if meta.get("validator") is validate_port:
                prop.update(minimum=1, maximum=65535)
        elif inner is float:
            prop = {"type": "number", "exclusiveMinimum": 0}
        elif get_origin(inner) is list:
            prop = {"type": "array", "items": {"type": "string"}}
            if meta.get("choices"):
                prop["items"]["enum"] = list(meta["choices"])
        else:
            prop = {"type": ["string", "null"]}
            if meta.get("choices"):
                prop = {"enum": list(meta["choices"])}
        prop["description"] = desc
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            required.append(file_key(f))
        props[file_key(f)] = prop
    out: dict[str, Any] = {"type": "object", "additionalProperties": False, "properties": props}
    if required:
        out["required"] = required
    return out
