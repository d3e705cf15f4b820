"""The two real Compose parsers of a .env file (Debian's docker-compose 1.29 and the docker
compose v2 plugin) and the values that test them: shared by the envfile, render and vendor
tests."""

from __future__ import annotations

import shutil
import subprocess

import pytest

# Values people put in passwords and settings, and the corner cases of both parsers.
NASTY = [
    "plain", "", "it's", 'say "hi"', "both ' and \"", "$VAR", "${X}", "${X:-fallback}",
    "pa$$word", "$", "trailing$", "#hash", "a #comment", "a#b", " leading", "trailing ",
    "  both ends  ", "back\\slash", "ends with \\", "\\", "\\\\", "\\n not a newline",
    "a=b=c", "=", "ünïcødé ✓ 密码 🚀", "\ttab", "x'y\\", "'", '"', "''", '""', "$'", "\\'",
    '\\"', "#", " #", "a\\ #b", "\x01control", "\xa0nbsp\xa0", "${unclosed", "$}", "{}",
    "$$", "\\$x", "%s", "`cmd`", "$(cmd)", "export X=1", "semi;colon", "*?[]", "~user",
    "a'b\"c$d\\e#f g",
]


def compose_commands() -> dict[str, list[str]]:
    """The real binaries; a missing one fails the test with how to install it."""
    v1 = shutil.which("docker-compose")
    if v1 is None:
        pytest.fail("docker-compose (v1) is not installed: apt-get install -y docker-compose")
    version = subprocess.run([v1, "version", "--short"], capture_output=True, text=True)
    assert version.stdout.startswith("1."), f"docker-compose is not v1: {version.stdout!r}"
    return {"v1": [v1], "v2": ["docker", "compose"]}
