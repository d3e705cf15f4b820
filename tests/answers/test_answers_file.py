"""The answers file: its JSON Schema export, the example, and bad files (exit 2, the key named,
nothing written)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from installer.answers import json_schema, load_answers
from installer.redact import Redactor
from tests.support.cli import REPO, run_cli
from tests.support.compose_deployment import make_deployment
from tests.support.package import make_package

SCHEMA = REPO / "assets" / "answers.schema.json"
EXAMPLE = REPO / "examples" / "answers.yaml"
REGENERATE = ("python -c 'import json; from installer.answers import json_schema; "
              "print(json.dumps(json_schema(), indent=2, ensure_ascii=False))' "
              "> assets/answers.schema.json")


def test_exported_schema_is_in_sync_with_the_declarations() -> None:
    assert json.loads(SCHEMA.read_text()) == json_schema(), f"regenerate it: {REGENERATE}"
    jsonschema.Draft202012Validator.check_schema(json_schema())


def test_the_example_answers_validate_and_load(tmp_path: Path) -> None:
    data = yaml.safe_load(EXAMPLE.read_text())
    jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text())).validate(data)
    env = {"SSH_PASSWORD": "ssh-pw-1", "PGADMIN_PASSWORD": "pg-admin-pw",
           "WORKSPACE_DB_PASSWORD": "ws-pw", "CARTO_S3_KEY_ID": "key-id",
           "CARTO_S3_SECRET": "s3-secret"}
    answers = load_answers(EXAMPLE, env=env, redactor=Redactor())
    assert answers.domain == "carto.example.com"
    assert answers.database.ssl.mode == "verify-full"
    assert answers.target is not None and answers.target.jump is not None
    assert answers.storage is not None and answers.storage.buckets.import_bucket


def test_schema_rejects_what_the_loader_rejects() -> None:
    validator = jsonschema.Draft202012Validator(json_schema())
    for bad in ({"databse": {}}, {"database": {"port": "five"}},
                {"platform": "swarm"}, {"database": {"bundled": "yes"}}):
        assert list(validator.iter_errors({"version": 1, **bad})), bad


@pytest.fixture()
def case(tmp_path: Path) -> dict[str, Any]:
    package = make_package(tmp_path / "pkg")
    directory = make_deployment(tmp_path / "deploy")
    shutil.copy(package.path / "customer.env", directory / "customer.env")
    return {"package": str(package.path), "compose": {"directory": str(directory)},
            "domain": "carto.example.com", "version": 1,
            "database": {"bundled": True, "admin_password_env": "ADMIN",
                         "password_env": "USER"}}


def snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def merge(base: dict[str, Any], change: dict[str, Any]) -> dict[str, Any]:
    out = json.loads(json.dumps(base))
    for key, value in change.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


BAD = [
    ({"domain": None}, "domain: is required"),
    ({"package": None}, "package: is required"),
    ({"databse": {"port": 5432}}, "databse: unknown key"),
    ({"database": {"hots": "db"}}, "database.hots: unknown key"),
    ({"database": {"port": "five"}}, "database.port: 'five' is not a port number"),
    ({"database": {"bundled": "yes"}}, "database.bundled: expected true or false"),
    ({"network": {"warehouses": "bigquery"}}, "network.warehouses: expected a list"),
    ({"domain": "https://carto.example.com/app"},
     "domain: 'https://carto.example.com/app' has a scheme"),
    ({"database": {"password_env": None, "password_file": "/nonexistent/pw"}},
     "database.password_file: cannot read /nonexistent/pw"),
    ({"database": {"password_env": None, "password_file": "{tmp}"}},
     "database.password_file: cannot read"),
    ({"database": {"password_env": "NOT_SET_ANYWHERE"}},
     "database.password_env: the environment variable NOT_SET_ANYWHERE is not set"),
    ({"database": {"admin_password_env": "WITH_NEWLINE"}},
     "database.admin_password_env: the secret contains a line break"),
    ({"database": {"password_env": None, "password_file": "{nul}"}},
     "database.password_file: the secret contains a NUL character"),
    ({"database": {"bundled": False, "host": "db.internal", "password_env": None}},
     "database.password: is required"),
    ({"compose": {"directory": "relative/dir"}},
     "compose.directory: 'relative/dir' is not an absolute"),
    ({"compose": {"directory": "/nonexistent/carto"}},
     "compose.directory: /nonexistent/carto on local does not exist"),
    ({"package": "/nonexistent/package"}, "package: /nonexistent/package does not exist"),
    ({"tls": {"certificate_file": "/nonexistent/cert.pem", "key_file": "/nonexistent/key.pem"}},
     "tls.certificate_file: the certificate file /nonexistent/cert.pem does not exist"),
    ({"version": 2}, "version: unsupported version 2"),
]


@pytest.mark.parametrize("command", ["render", "deploy"])
@pytest.mark.parametrize(("change", "message"), BAD, ids=[m.split(":")[0] + f"-{i}"
                                                         for i, (_, m) in enumerate(BAD)])
def test_bad_answers_exit_2_name_the_key_and_write_nothing(
        case: dict[str, Any], tmp_path: Path, command: str, change: dict[str, Any],
        message: str) -> None:
    directory = Path(case["compose"]["directory"])
    nul_file = tmp_path / "nul-password"
    nul_file.write_bytes(b"before\x00after\n")
    change = json.loads(json.dumps(change).replace("{tmp}", str(tmp_path))
                        .replace("{nul}", str(nul_file)))
    data = merge(case, change)
    answers = tmp_path / "answers.yaml"
    answers.write_text(yaml.safe_dump(data))
    answers.chmod(0o600)
    before = snapshot(directory)
    args = [command, "--answers", str(answers)] + (["--yes"] if command == "deploy" else [])
    result = run_cli(*args, cwd=tmp_path, env={"ADMIN": "admin-pw-1", "USER": "user-pw-2",
                                               "WITH_NEWLINE": "line1\nline2"})
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert snapshot(directory) == before


def test_unparseable_yaml_and_missing_file(tmp_path: Path) -> None:
    broken = tmp_path / "answers.yaml"
    broken.write_text("domain: [unclosed\n")
    result = run_cli("render", "--answers", str(broken), cwd=tmp_path)
    assert result.returncode == 2 and "is not valid YAML at line" in result.stderr
    result = run_cli("render", "--answers", str(tmp_path / "missing.yaml"), cwd=tmp_path)
    assert result.returncode == 2 and "does not exist" in result.stderr


def test_inline_secret_in_a_readable_file_warns(case: dict[str, Any], tmp_path: Path) -> None:
    data = merge(case, {"database": {"password_env": None, "password": "inline-Secret-9"}})
    answers = tmp_path / "answers.yaml"
    answers.write_text(yaml.safe_dump(data))
    answers.chmod(0o644)
    result = run_cli("render", "--answers", str(answers), "--dry-run", cwd=tmp_path,
                     env={"ADMIN": "admin-pw-1"})
    assert result.returncode == 0, result.stderr
    assert "warning: database.password is written inline" in result.stderr
    assert "inline-Secret-9" not in result.stdout + result.stderr


def test_deploy_without_terminal_or_yes_asks_for_yes(case: dict[str, Any], tmp_path: Path) -> None:
    answers = tmp_path / "answers.yaml"
    answers.write_text(yaml.safe_dump(case))
    directory = Path(case["compose"]["directory"])
    before = snapshot(directory)
    result = run_cli("deploy", "--answers", str(answers), cwd=tmp_path,
                     env={"ADMIN": "admin-pw-1", "USER": "user-pw-2"})
    assert result.returncode == 2
    assert "use --yes" in result.stderr
    assert snapshot(directory) == before


def test_the_readme_answers_examples_validate() -> None:
    """Every YAML block in the README is a valid answers file, by the schema and the loader."""
    import re

    import jsonschema
    import yaml

    from installer.answers import parse_answers

    readme = (REPO / "README.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", readme, re.S)
    assert blocks, "the README shows an answers example"
    schema = json.loads((REPO / "assets" / "answers.schema.json").read_text())
    for block in blocks:
        data = yaml.safe_load(block)
        jsonschema.validate(data, schema)
        env = {"PGADMIN_PASSWORD": "x" * 12, "WORKSPACE_DB_PASSWORD": "y" * 12}
        parse_answers(data, base=REPO, env=env)
