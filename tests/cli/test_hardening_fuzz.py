"""A few hundred generated hostile answers files through the real CLI entry point, in this
process (issue 11): each has at least one defect, so each must end with exit code 2, a
message without traceback or raw control character, no secret, and nothing written.

The generator is seeded: a failure names its case number and the file, and re-runs the same."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import pytest
import yaml

from installer.cli import main
from tests.support.compose_deployment import make_deployment
from tests.support.package import make_package

SEED = 20261201
CASES = 300
SECRETS = {"FUZZ_ADMIN": "fuzz-Admin-Secret-9", "FUZZ_USER": "fuzz-User-Secret-8"}
CONTROL = "\x1b]0;pwned\x07\x1b[2J\x9b\x00\r"
Data = dict[str, Any]


def base(package: Path, directory: Path) -> Data:
    """A valid answers file (rendering it would write the deployment's files)."""
    return {"version": 1, "platform": "compose", "package": str(package),
            "compose": {"directory": str(directory)}, "domain": "carto.example.com",
            "database": {"bundled": True, "admin_password_env": "FUZZ_ADMIN",
                         "password_env": "FUZZ_USER"}}


def put(data: Data, dotted: str, value: Any) -> Data:
    node = data
    *parents, last = dotted.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value
    return data


def wrong_values(rng: random.Random, places: dict[str, str]) -> dict[str, list[Any]]:
    long = "a" * rng.randint(300, 5000)
    return {
        "domain": [["carto.example.com"], {"a": 1}, long + ".com", "ex ample.com",
                   "https://carto.example.com", f"x{CONTROL}.example.com", "*.example.com",
                   "10.0.0.1", "", 12345, True, "carto.example.com:8443", "carto"],
        "database.port": [0, 70000, -1, "abc", [1], {"p": 1}, 3.5, True, "99999"],
        "network.proxy.http": ["http://user:s3cret@proxy:31x28", "http://proxy:0",
                               "http://proxy:99999", "ftp://proxy:21", "http://proxy/path",
                               "socks5://u:p@proxy:1080", f"http://proxy{CONTROL}:3128",
                               "http://u@proxy:3128", 8080, ["http://p:1"]],
        "compose.directory": ["relative/path", "", "/opt/a\nb", ["x"], {"d": 1}, "/opt/\x00"],
        "platform": ["swarm", ["compose"], None, 1, f"compose{CONTROL}"],
        "database.admin_password_file": ["/dev/zero", "/dev/null", places["fifo"],
                                         places["folder"], "/nonexistent/pw", places["big"],
                                         places["binary"]],
        "database.admin_password_env": ["FUZZ_UNSET_VARIABLE", "", ["FUZZ_ADMIN"]],
        "network.egress_timeout": [0, -1, 1000, "x", True, float("nan"), float("inf")],
        "version": [2, "1", [1], {"v": 1}, True, 1.5, 10**4000],
        "database.bundled": ["yes", 1, [True], None],
        "network.warehouses": ["bigquery", ["bigquery", "nosql"], [["x"]], {"w": 1}],
        "kubernetes.namespace": ["Carto", "-x", "a" * 70, f"carto{CONTROL}"],
        "target.host": ["", "ssh://host", "a b", ["h"], f"h{CONTROL}"],
        "tls.certificate_file": ["/dev/zero", places["fifo"], places["binary"]],
    }


def text_defects(rng: random.Random, data: Data) -> list[str | bytes]:
    valid = yaml.safe_dump(data)
    depth = rng.randint(70, 3000)
    return [
        valid + "bomb: &a [x, x, x]\nmore: [*a, *a, *a]\n",
        "version: 1\ndomain: " + "[" * depth + "]" * depth + "\n",
        "version: 1\ndomain: " + "{a: " * depth + "1" + "}" * depth + "\n",
        valid + "database:\n  port: " + "9" * rng.randint(4400, 6000) + "\n",
        valid + "domain: other.example.com\n",
        valid.replace("compose:", "compose:\n  directory: /x\n  directory: /y\n  dummy:", 1),
        valid.encode() + b"\nnote: \xff\xfe\x80 not utf-8\n",
        valid + "\tdomain: tabbed.example.com\n",
        valid + 'quoted: "never closed\n',
        valid + "obj: !!python/object/apply:os.system ['true']\n",
        "- version\n- 1\n",
        "just text",
        "",
        "version: 1\n" + "".join(f"k{i}: {i}\n" for i in range(rng.randint(1, 50))),
        valid + f"{CONTROL}unknown: 1\n",
    ]


def cases(package: Path, directory: Path, places: dict[str, str]) -> list[str | bytes]:
    rng = random.Random(SEED)
    out: list[str | bytes] = []
    while len(out) < CASES:
        data = base(package, directory)
        if rng.random() < 0.6:
            values = wrong_values(rng, places)
            key = rng.choice(sorted(values))
            value = rng.choice(values[key])
            if key == "version" and isinstance(value, int) and value > 10**100:
                out.append(yaml.safe_dump(data).replace("version: 1", f"version: {value}"))
                continue
            if key == "tls.certificate_file":
                put(data, "tls.key_file", value)
            if key.startswith("database.admin_password"):
                del data["database"]["admin_password_env"]
            put(data, key, value)
            if key in ("network.egress_timeout",) and isinstance(value, float):
                out.append(yaml.safe_dump(data))
                continue
            if rng.random() < 0.3:  # and a second defect: an unknown key somewhere
                put(data, rng.choice(["database", "network", "compose", "tls"]) + ".typo_key",
                    rng.choice([1, "x", [CONTROL]]))
            out.append(yaml.safe_dump(data, allow_unicode=rng.random() < 0.5))
        else:
            out.append(rng.choice(text_defects(rng, data)))
    return out


def snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() if p.is_file() else b"<dir>"
            for p in sorted(directory.rglob("*"))}


def test_hostile_answers_files_exit_2_and_write_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    package = make_package(tmp_path / "pkg").path
    directory = make_deployment(tmp_path / "deploy")
    places = {"fifo": str(tmp_path / "fifo"), "folder": str(tmp_path),
              "big": str(tmp_path / "big"), "binary": str(tmp_path / "binary")}
    os.mkfifo(places["fifo"])
    Path(places["big"]).write_bytes(b"p" * (2 * 1024 * 1024))
    Path(places["binary"]).write_bytes(bytes(range(256)))
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    before = snapshot(directory)
    answers = tmp_path / "answers.yaml"
    generated = cases(package, directory, places)
    assert len(generated) == CASES
    for number, text in enumerate(generated):
        answers.write_bytes(text if isinstance(text, bytes) else text.encode())
        answers.chmod(0o600)
        code = main(["render", "--answers", str(answers)])
        captured = capsys.readouterr()
        shown = captured.out + captured.err
        where = f"case {number}: {text[:300]!r}\n{shown[-1500:]}"
        assert code == 2, where
        assert "Traceback" not in shown and "internal error" not in shown, where
        assert not any(ord(c) < 32 and c not in "\n\t" or 0x7f <= ord(c) <= 0x9f
                       for c in shown), where
        assert not any(secret in shown for secret in SECRETS.values()), where
        assert "s3cret" not in shown, where
        assert snapshot(directory) == before, where
    log = (work / "carto-installer.log").read_text()
    assert "Traceback" not in log
    assert "s3cret" not in log and not any(secret in log for secret in SECRETS.values())
