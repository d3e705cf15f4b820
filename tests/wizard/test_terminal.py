"""`carto-installer` as a person starts it: in a real terminal (a pseudo-terminal), the Textual
wizard; with TERM=dumb, the plain prompts; with no terminal, a clear error."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pexpect
import yaml

from installer.session import SESSION_NAME, state_directory
from tests.support.cli import cli_env

CTRL_N, CTRL_Q, CTRL_C, HOME, CTRL_K = "\x0e", "\x11", "\x03", "\x01", "\x0b"


def spawn(cwd: Path, **env: str) -> pexpect.spawn:
    environment = cli_env({"TERM": "xterm-256color", **env})
    environment.pop("NO_COLOR", None)
    return pexpect.spawn(sys.executable, ["-m", "screens"], cwd=str(cwd), env=environment,
                         encoding="utf-8", dimensions=(24, 80), timeout=30)


def test_the_tui_in_a_real_terminal_takes_a_bracketed_paste_and_quits_cleanly(
        tmp_path: Path) -> None:
    from tests.support.compose_deployment import make_deployment

    deploy_dir = make_deployment(tmp_path / "release")
    workdir = tmp_path / "work"
    workdir.mkdir()
    child = spawn(workdir, DOCKER_HOST="tcp://127.0.0.1:9")  # checks need not be slow
    try:
        child.expect_exact("Have ready")
        child.expect_exact("Step 1 of 10")
        child.send(CTRL_N)
        child.expect_exact("Where will CARTO run?")
        child.send(CTRL_N)
        child.expect_exact("Which machine will run CARTO?")
        time.sleep(0.3)  # as a person reads the screen: its focus is set once it is drawn
        child.send("\t")  # from the choice to the deployment directory
        child.send(HOME + CTRL_K)
        # What the terminal sends when the user pastes: Textual's parser must take it whole.
        child.send("\x1b[200~/srv/pasted/carto\x1b[201~")
        child.expect_exact("/srv/pasted/carto")
        # A folder that is not there is refused at this step, saying where the release is.
        child.expect_exact("github.com/CartoDB/carto-selfhosted")
        child.send(CTRL_N)
        child.expect_exact("does not exist")
        child.send(HOME + CTRL_K)
        child.send(f"\x1b[200~{deploy_dir}\x1b[201~")
        child.send(CTRL_N)
        child.expect_exact("Step 4 of 10")
        child.send(CTRL_Q)
        child.expect_exact("Quit the installer?")
        child.send("y")
        child.expect_exact("No changes were made")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 130
    session = yaml.safe_load((state_directory() / SESSION_NAME).read_text())
    assert session["step"] == "requirements"
    assert session["answers"]["compose"]["directory"] == str(deploy_dir)
    assert sorted(p.name for p in workdir.iterdir()) == ["carto-installer.log"]


def test_term_dumb_gets_the_plain_prompts(tmp_path: Path) -> None:
    import io

    child = spawn(tmp_path, TERM="dumb")
    transcript = io.StringIO()
    child.logfile_read = transcript
    try:
        child.expect_exact("Where will CARTO run?")
        child.send(CTRL_C)
        child.expect_exact("No changes were made.")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 130
    assert "\x1b[?1049h" not in transcript.getvalue()  # never switched to full screen


def test_without_a_terminal_the_wizard_says_to_use_an_answers_file(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "screens"], cwd=tmp_path, env=cli_env(),
                            capture_output=True, text=True, timeout=120, check=False,
                            stdin=subprocess.DEVNULL)
    assert result.returncode == 2
    assert "needs a terminal" in result.stderr and "--answers" in result.stderr
    assert not (state_directory() / SESSION_NAME).exists()
