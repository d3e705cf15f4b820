"""installer.envfile against the real parsers: Debian's docker-compose 1.29 (python-dotenv) and
the docker compose v2 plugin (compose-go). A value either reads back byte for byte or is
refused with the reason."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from installer import envfile
from installer.envfile import EnvFile
from tests.support.compose_parsers import NASTY, compose_commands


def read_back(command: list[str], directory: Path) -> dict[str, str]:
    """What the real Compose puts in the service's environment from .env (via env_file),
    with the `$$` of its output turned back into `$`."""
    json_format = ["--format", "json"] if command[0] == "docker" else []
    result = subprocess.run([*command, "config", *json_format], cwd=directory,
                            capture_output=True, text=True, timeout=120,
                            env={"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(Path.home())})
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout) if json_format else yaml.safe_load(result.stdout)
    environment = data["services"]["probe"]["environment"]
    return {key: str(value).replace("$$", "$") for key, value in environment.items()}


def project(directory: Path, dotenv: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / ".env").write_text(dotenv)
    # Values reach containers through env_file (as in the vendor's file) and through ${...}
    # interpolation of the compose file itself: both are checked.
    (directory / "docker-compose.yml").write_text(
        'version: "2.4"\nservices:\n  probe:\n    image: busybox\n    env_file: .env\n'
        "    environment:\n      INTERPOLATED: \"${K0}\"\n")
    return directory


@pytest.mark.parametrize("flavour", ["v1", "v2"])
def test_nasty_values_read_back_exactly_by_the_real_compose(flavour: str, tmp_path: Path) -> None:
    command = compose_commands()[flavour]
    env = EnvFile.parse("# header comment\n")
    written: dict[str, str] = {}
    refused: dict[str, str] = {}
    for index, value in enumerate(NASTY):
        reason = envfile.cannot_hold(value, flavour)  # type: ignore[arg-type]
        if reason:
            refused[value] = reason
            continue
        env.set(f"K{index}", value, flavour)  # type: ignore[arg-type]
        written[f"K{index}"] = value
    # A line full of quotes after the values: a greedy quoted value would swallow it.
    text = env.text() + "TAIL=\"q'q\"\n"
    found = read_back(command, project(tmp_path, text))
    for key, value in written.items():
        assert found.get(key) == value, f"{flavour}: {value!r} read back as {found.get(key)!r}"
    assert found["TAIL"] == "q'q"
    assert found["INTERPOLATED"] == written["K0"]
    if flavour == "v2":
        assert not refused, f"v2 can hold every value, refused: {refused}"
    else:
        # Only what python-dotenv always expands is refused, and the reason says so.
        assert set(refused) == {"${X}", "${X:-fallback}"}
        assert all("docker-compose v1 always expands" in r for r in refused.values())
    assert len(written) >= len(NASTY) - 2


def test_values_written_for_both_read_back_in_both(tmp_path: Path) -> None:
    commands = compose_commands()
    env = EnvFile([])
    written = {}
    for index, value in enumerate(NASTY):
        if envfile.cannot_hold(value, None) is None:
            env.set(f"K{index}", value, None)
            written[f"K{index}"] = value
    directory = project(tmp_path, env.text())
    for flavour, command in commands.items():
        found = read_back(command, directory)
        assert {k: found.get(k) for k in written} == written, flavour
    # Only values needing different text per parser, or that v1 expands, are left out.
    left_out = [v for v in NASTY if envfile.cannot_hold(v, None)]
    assert set(left_out) == {"${X}", "${X:-fallback}", "$'", "a'b\"c$d\\e#f g"}


def test_line_breaks_and_nul_are_refused_with_the_reason() -> None:
    for flavour in ("v1", "v2", None):
        assert "line break" in (envfile.cannot_hold("a\nb", flavour) or "")  # type: ignore[arg-type]
        assert "line break" in (envfile.cannot_hold("a\rb", flavour) or "")  # type: ignore[arg-type]
        assert "NUL" in (envfile.cannot_hold("a\x00b", flavour) or "")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="line break"):
            envfile.encode("x\ny", flavour)  # type: ignore[arg-type]


def test_plain_values_stay_unquoted_and_others_get_the_simplest_quotes() -> None:
    assert envfile.encode("carto.example.com", "v1") == "carto.example.com"
    assert envfile.encode("/etc/nginx/ssl/a.crt", "v2") == "/etc/nginx/ssl/a.crt"
    assert envfile.encode("", None) == ""
    assert envfile.encode("has space", None) == "'has space'"
    assert envfile.encode("it's", None) == '"it\'s"'
    # v1 keeps $ as is; v2 needs it doubled.
    assert envfile.encode("a$'b", "v1") == '"a$\'b"'
    assert envfile.encode("a$'b", "v2") == '"a$$\'b"'


def test_customer_env_lines_comments_and_order_survive_an_update() -> None:
    original = (
        "# top comment\n"
        "\n"
        "FIRST=1\n"
        "export EXPORTED=keep  # trailing comment\n"
        "UNKNOWN_TO_US='quoted value'\n"
        "   # indented comment\n"
        "SELFHOSTED_DOMAIN=old.example.com\r\n"
        "MULTI=\"line one\n"
        "line two\"\n"
        "LAST=z"
    )
    env = EnvFile.parse(original)
    assert env.text() == original  # parsing alone changes nothing, byte for byte
    assert env.get("MULTI") == "line one\nline two"
    assert env.get("UNKNOWN_TO_US") == "quoted value"
    assert env.get("EXPORTED") == "keep"
    assert env.set("SELFHOSTED_DOMAIN", "new.example.com", "v2")
    assert not env.set("FIRST", "1", "v2")  # already holds it: untouched
    assert env.set("NEW_KEY", "a b", "v2")
    expected = original.replace("old.example.com", "new.example.com") + (
        "\n\n" + EnvFile.HEADER + "\nNEW_KEY='a b'\n")
    assert env.text() == expected
    assert envfile.changed_keys(EnvFile.parse(original), env) == ["SELFHOSTED_DOMAIN", "NEW_KEY"]


def test_an_existing_equivalent_spelling_is_not_rewritten() -> None:
    env = EnvFile.parse('PORT="5432"\nHOST=db # the database\n')
    assert not env.set("PORT", "5432", "v1")
    assert not env.set("HOST", "db", "v2")
    assert env.text() == 'PORT="5432"\nHOST=db # the database\n'


def test_rename_and_remove_keep_the_value_text() -> None:
    env = EnvFile.parse("A=1\nPOSTGRES_PASSWORD='s3cr$t'\nB=2\n")
    assert env.rename("POSTGRES_PASSWORD", "POSTGRES_ADMIN_PASSWORD")
    assert env.text() == "A=1\nPOSTGRES_ADMIN_PASSWORD='s3cr$t'\nB=2\n"
    assert env.remove("A") and env.text() == "POSTGRES_ADMIN_PASSWORD='s3cr$t'\nB=2\n"


def test_duplicate_keys_are_all_updated_since_the_last_one_wins() -> None:
    env = EnvFile.parse("K=a\nX=1\nK=b\n")
    assert env.get("K") == "b"
    env.set("K", "c", None)
    assert env.text() == "K=c\nX=1\nK=c\n"


def test_flavour_follows_the_command() -> None:
    assert envfile.flavour_for(["docker", "compose"]) == "v2"
    assert envfile.flavour_for(["docker-compose"], "1.29.2") == "v1"
    assert envfile.flavour_for(["docker-compose"], "2.27.0") == "v2"


def test_secret_key_names() -> None:
    for name in ("POSTGRES_ADMIN_PASSWORD", "REDIS_PASSWORD", "JWT_SECRET", "SOME_API_KEY",
                 "ENCRYPTION_KEY"):
        assert envfile.is_secret_key(name), name
    for name in ("ROUTER_SSL_CERTIFICATE_KEY_PATH", "SELFHOSTED_DOMAIN", "CARTO_AUTH0_CLIENT_ID"):
        assert not envfile.is_secret_key(name), name
