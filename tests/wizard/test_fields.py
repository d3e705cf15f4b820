"""One validator per field: the wizard's form helper and the answers-file loader agree.

Every answer declared in installer/answers/model.py is turned into a form field; for a range of
typed values, the field must accept exactly what the loader accepts (with the same value) and
reject with the validator's own message what the loader rejects.
"""

from __future__ import annotations

import copy
import dataclasses
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml

from installer import answers as answers_module
from installer.answers import SECTIONS, Answers, Secret, SSHSettings, field_spec, parse_answers
from installer.errors import AnswersError
from installer.validators import validate_domain

SAMPLES = [
    "carto.example.com", "Carto.Example.COM", "https://carto.example.com/", "example.com/carto",
    "10.0.0.1", "carto.example.com:443", "single", "under_score.example.com", "-bad.example.com",
    "22", "0", "65536", "5432", "abc", "x y", "workspace_admin", "1user", "user@server",
    "http://proxy.internal:3128", "http://user:pw@proxy:3128", "socks5://proxy:1080",
    "gcp", "aws", "nope", "bigquery", "bigquery, snowflake", "bigquery, mongo", "verify-full",
    "prefer", "sslish", "./tls/cert.pem", "~/key.pem", "/opt/carto", "p@ss w0rd $HOME #x",
    "ünïcödé.example.com", "line\nbreak", "nul\x00here", "2.5", "-1",
]
# Sections that cannot exist without these.
REQUIRED_SIBLINGS = {"target": {"host": "vm.example.internal"},
                     "target.jump": {"host": "bastion.example.com"},
                     # Judged as a whole: a provider, both main buckets and credentials (those
                     # of every provider, so that any provider the field names is complete).
                     "storage": {"provider": "s3", "endpoint": "https://minio.internal:9000",
                                 "buckets": {"imports": "acme-client",
                                             "thumbnails": "acme-thumbs"},
                                 "access_key_id": "key-id", "secret_access_key": "secret",
                                 "key_file": "gcs.json", "account": "acmestorage",
                                 "account_key": "account-key"},
                     # A registry login is a registry, a user and a password together.
                     "compose": {"registry": "registry.internal:5000",
                                 "registry_username": "ops", "registry_password": "pw"},
                     "kubernetes": {"image_registry": "registry.internal:5000",
                                    "image_pull_username": "ops", "image_pull_password": "pw",
                                    "service_type": "NodePort", "node_port": 30443}}


def _leaf_paths(cls: type = Answers, prefix: str = "") -> list[str]:
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if f.metadata.get("internal") or f.name == "version":
            continue
        tp = hints[f.name]
        inner = next((a for a in typing.get_args(tp) if a is not type(None)), tp)
        if isinstance(inner, type) and dataclasses.is_dataclass(inner):
            out.extend(_leaf_paths(inner, f"{prefix}{f.name}."))
        else:
            out.append(prefix + f.name)
    return out


LEAVES = [p for p in _leaf_paths() if field_spec(p).kind != "bool"]


def _as_file_data(path: str, raw: Any) -> dict[str, Any]:
    """The answers-file data that gives `path` the value `raw`."""
    parts = path.split(".")
    data: dict[str, Any] = {}
    node = data
    for i, part in enumerate(parts[:-1]):
        node = node.setdefault(part, {})
        # A copy: the siblings nest (storage.buckets), and the leaf must not change them.
        node.update(copy.deepcopy(REQUIRED_SIBLINGS.get(".".join(parts[: i + 1]), {})))
    node[_file_key(path)] = raw
    return data


def _file_key(path: str) -> str:
    """The leaf's key in the file (`storage.buckets.import_bucket` is written `import`)."""
    cls: type = Answers
    for part in path.split(".")[:-1]:
        hint = typing.get_type_hints(cls)[part]
        cls = next((a for a in typing.get_args(hint) if a is not type(None)), hint)
    declared = {f.name: f for f in dataclasses.fields(cls)}[path.split(".")[-1]]
    return answers_module.file_key(declared)


def _loader_value(path: str, raw: Any) -> Any:
    answers = parse_answers(_as_file_data(path, raw), base=Path.cwd())
    return field_spec(path).get(answers)


def _validator_reason(spec: Any, raw: Any) -> str | None:
    """The declared validator's own message for a value that got past the type check."""
    if spec.validator is None:
        return None
    if spec.kind == "float" and not (isinstance(raw, int | float) and raw > 0):
        return None  # refused by the loader's type check, before any validator
    try:
        spec.validator(raw)
    except ValueError as exc:
        return str(exc)
    return None


@pytest.mark.parametrize("path", LEAVES)
def test_the_form_field_accepts_what_the_answers_file_accepts(path: str) -> None:
    spec = field_spec(path)
    for text in SAMPLES:
        typed = text if spec.secret else text.strip()
        if spec.kind == "list":
            raw: Any = [p.strip() for p in typed.split(",") if p.strip()]
        elif spec.kind == "float" or (spec.kind == "int" and spec.validator is None):
            try:  # what a YAML file holding this text would give the loader
                raw = yaml.safe_load(typed) if typed else typed
            except yaml.YAMLError:
                raw = typed
        else:
            raw = typed
        try:
            expected = _loader_value(path, raw)
            loader_error = None
        except AnswersError as exc:
            expected, loader_error = None, str(exc)
        try:
            got = spec.parse(text)
            form_error = None
        except ValueError as exc:
            got, form_error = None, str(exc)
        if loader_error is None:
            assert form_error is None, f"{path}: form rejects {text!r}: {form_error}"
            assert got == expected, f"{path}: {text!r} -> form {got!r}, loader {expected!r}"
        else:
            assert form_error is not None, f"{path}: form accepts {text!r}, loader says " \
                                           f"{loader_error}"
            reason = _validator_reason(spec, raw)
            if reason is not None:  # the declared validator refused it: both say its words
                assert reason in form_error and reason in loader_error, \
                    f"{path}: form {form_error!r}, loader {loader_error!r}, validator {reason!r}"


def test_the_fields_carry_the_declared_label_help_default_and_validator() -> None:
    domain = field_spec("domain")
    assert domain.label == "Domain" and "carto.example.com" in domain.help
    assert domain.validator is validate_domain
    port = field_spec("database.port")
    assert port.default == 5432 and port.placeholder == "5432" and port.kind == "int"
    secret = field_spec("database.admin_password")
    assert secret.secret and secret.kind == "secret"
    assert field_spec("tls.certificate_file").path_kind == "local"
    assert field_spec("database.ssl.mode").choices is not None
    assert len(SECTIONS) >= 10
    for section in SECTIONS:
        for path in section.paths:
            assert field_spec(path).label  # every section's field is a declared answer
    with pytest.raises(KeyError):
        field_spec("database.nonexistent")


def test_empty_text_means_not_given_and_secrets_are_kept_verbatim() -> None:
    assert field_spec("tls.certificate_file").parse("  ") is None
    assert field_spec("database.port").parse("") == 5432
    with pytest.raises(ValueError, match="required"):
        field_spec("target.host").parse("")
    secret = field_spec("database.password").parse(" sp ace$ ")
    assert isinstance(secret, Secret) and secret.value == " sp ace$ " and secret.source == "inline"
    assert field_spec("database.password").parse("") is None


def test_setting_a_field_creates_its_optional_section() -> None:
    answers = Answers()
    field_spec("target.jump.port").set(answers, 2222)
    assert isinstance(answers.target, SSHSettings) and answers.target.jump is not None
    assert answers.target.jump.port == 2222
    field_spec("network.proxy.https").set(answers, "http://proxy:3128")
    assert answers.network.proxy is not None and answers.network.proxy.https == "http://proxy:3128"
    assert field_spec("network.proxy.https").get(answers) == "http://proxy:3128"
