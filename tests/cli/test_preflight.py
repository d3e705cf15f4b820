"""The preflight command line: report formats, exit codes, input errors."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import jsonschema

from tests.support.cli import REPO, run_cli

SCHEMA = json.loads((REPO / "assets" / "report.schema.json").read_text())


def test_json_report_matches_the_contract_shape() -> None:
    result = run_cli("preflight", "--format", "json")
    assert result.returncode in (0, 3, 4)
    report = json.loads(result.stdout)
    jsonschema.validate(report, SCHEMA)
    ids = [c["id"] for c in report["checks"]]
    for expected in ("host.os", "host.arch", "host.cpu", "host.memory", "host.disk",
                     "host.ports", "docker.engine", "docker.version", "docker.compose"):
        assert expected in ids
    assert sum(report["summary"].values()) == len(report["checks"])
    assert report["target"] == "local" and report["platform"] == "compose"
    for check in report["checks"]:
        if check["status"] in ("warn", "fail"):
            assert check["remediation"], check
            assert check["observed"], check
    assert result.returncode == (3 if report["summary"]["fail"] + report["summary"]["error"]
                                 else 0)


def test_junit_report_has_one_testcase_per_check(tmp_path: Path) -> None:
    out = tmp_path / "report.xml"
    result = run_cli("preflight", "--format", "junit", "--output", str(out))
    assert result.stdout == ""
    root = ET.parse(out).getroot()
    suite = root.find("testsuite")
    assert suite is not None
    cases = suite.findall("testcase")
    assert len(cases) == int(suite.get("tests", "-1")) >= 9
    failures = [c for c in cases if c.find("failure") is not None]
    assert len(failures) == int(suite.get("failures", "-1"))
    assert len([c for c in cases if c.find("skipped") is not None]) == int(suite.get("skipped"))


def test_text_report_is_grouped_fits_80_columns_and_ends_with_next_step() -> None:
    result = run_cli("preflight", "--skip", "docker")
    lines = result.stdout.splitlines()
    assert "Host machine" in lines
    assert all(len(line) <= 80 for line in lines), max(lines, key=len)
    next_at = max(i for i, line in enumerate(lines) if line.startswith("Next:"))
    assert next_at >= len(lines) - 3  # the closing "what to do next", possibly wrapped
    assert "passed" in lines[next_at - 1] and "failed" in lines[next_at - 1]
    assert "\x1b[" not in result.stdout  # not a terminal: no colours


def test_exit_0_when_everything_selected_passes() -> None:
    result = run_cli("preflight", "--only", "host.arch", "--format", "json")
    report = json.loads(result.stdout)
    assert [c["status"] for c in report["checks"]] == ["pass"]
    assert result.returncode == 0


def test_only_and_skip_by_category() -> None:
    report = json.loads(run_cli("preflight", "--only", "docker", "--skip", "docker.compose",
                                "--format", "json").stdout)
    statuses = {c["id"]: c["status"] for c in report["checks"]}
    assert set(statuses) == {"docker.engine", "docker.version", "docker.compose"}
    assert statuses["docker.compose"] == "skip"


def test_bad_flag_is_exit_2_with_one_line_and_no_traceback() -> None:
    result = run_cli("preflight", "--frobnicate")
    assert result.returncode == 2
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1
    assert "--frobnicate" in result.stderr and "Traceback" not in result.stderr


def test_bad_choice_and_unknown_check_names_are_exit_2() -> None:
    assert run_cli("preflight", "--format", "yaml").returncode == 2
    unknown = run_cli("preflight", "--only", "hots")
    assert unknown.returncode == 2
    assert "hots" in unknown.stderr and "Traceback" not in unknown.stderr


def test_missing_answers_file_is_exit_2_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    result = run_cli("preflight", "--answers", str(tmp_path / "nope.yaml"), "--output",
                     str(out), cwd=tmp_path)
    assert result.returncode == 2
    assert "nope.yaml" in result.stderr
    assert not out.exists()


def test_no_terminal_wizard_says_use_answers() -> None:
    result = run_cli()
    assert result.returncode == 2
    assert "--answers" in result.stderr
    # `python -m installer` is the headless core: it names the program that has the wizard.
    assert "python -m screens" in result.stderr


def test_version_and_help() -> None:
    version = run_cli("--version")
    assert version.returncode == 0 and version.stdout.startswith("carto-installer ")
    helptext = run_cli("--help")
    assert helptext.returncode == 0
    assert "preflight" in helptext.stdout and "Exit codes" in helptext.stdout


def test_log_file_records_the_run(tmp_path: Path) -> None:
    run_cli("preflight", "--only", "host.arch", cwd=tmp_path)
    log = tmp_path / "carto-installer.log"
    assert log.exists()
    assert (log.stat().st_mode & 0o077) == 0
    text = log.read_text()
    assert "host.arch" in text and "run (local): sh -c" in text


def _run_in_pty(*args: str, extra_env: dict[str, str]) -> str:
    """Run the CLI with a real terminal as stdout; returns what it printed."""
    import os
    import pty
    import subprocess
    import sys

    from tests.support.cli import cli_env

    env = cli_env(extra_env)
    if "NO_COLOR" not in extra_env:
        env.pop("NO_COLOR")  # cli_env sets it by default
    primary, secondary = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "installer", *args], stdout=secondary,
                            stderr=secondary, stdin=subprocess.DEVNULL, env=env)
    os.close(secondary)
    chunks = []
    while True:
        try:
            data = os.read(primary, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=60)
    os.close(primary)
    return b"".join(chunks).decode("utf-8", "replace")


def test_colours_only_on_a_terminal_and_never_with_no_color() -> None:
    coloured = _run_in_pty("preflight", "--only", "host.arch", extra_env={"TERM": "xterm"})
    assert "\x1b[32m" in coloured  # the pass mark in green
    plain = _run_in_pty("preflight", "--only", "host.arch",
                        extra_env={"TERM": "xterm", "NO_COLOR": "1"})
    assert "host.arch" in plain and "\x1b[" not in plain
