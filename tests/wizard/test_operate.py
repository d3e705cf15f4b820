"""The wizard's way to an existing installation: back up (with a passphrase), the uninstall
plan and its confirmations, in the Textual app and in the plain prompts. Real core below: a
real PostgreSQL (external database) and the real Docker engine for the uninstall plan."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest

from installer.answers import parse_answers
from installer.operate.archive import extract_verified, is_encrypted
from screens.app import WizardApp
from screens.plain import PlainWizard
from tests.services.postgres import PostgresServer
from tests.support.compose_deployment import make_deployment
from tests.support.scripted_prompts import ScriptedPrompts
from tests.support.wizard import new_state, sync

SIZE = (100, 40)
DOMAIN = "wizard-ops.example.com"


@pytest.fixture
def data_volume(docker_engine: docker.DockerClient) -> Any:
    """A named volume of the project, as Compose makes them: the data a purge destroys."""
    volume = docker_engine.volumes.create(
        name="wizops_data", labels={"com.docker.compose.project": "wizops"})
    yield volume.name
    try:
        volume.remove(force=True)
    except docker.errors.NotFound:
        pass


def existing_installation(tmp_path: Path, server: PostgresServer) -> Any:
    server.execute("DROP DATABASE IF EXISTS wizard_ops WITH (FORCE)")
    server.execute("CREATE DATABASE wizard_ops")
    directory = make_deployment(tmp_path / "carto")
    (directory / "customer.env").write_text(f"SELFHOSTED_DOMAIN={DOMAIN}\n")
    (directory / ".env").write_text(f"SELFHOSTED_DOMAIN={DOMAIN}\nCOMPOSE_PROJECT_NAME=wizops\n")
    data = {"version": 1, "platform": "compose", "compose": {"directory": str(directory)},
            "domain": DOMAIN,
            "database": {"bundled": False, "host": server.host, "port": server.port,
                         "admin_user": server.superuser, "admin_password": server.password,
                         "database": "wizard_ops",
                         "ssl": {"enabled": True, "mode": "verify-full",
                                 "ca_file": str(server.ca_file)}}}
    state = new_state(tmp_path)
    state.answers = parse_answers(data, redactor=state.redactor)
    state.prefilled_from = tmp_path / "answers.yaml"
    return state


async def until(predicate: Any, timeout: float = 60.0) -> None:
    for _ in range(int(timeout / 0.1)):
        if predicate():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("timed out")


@sync
async def test_tui_backs_up_and_shows_the_uninstall_plan_before_anything(
        tmp_path: Path, postgres_server: PostgresServer,
        docker_engine: docker.DockerClient, compose_v2: Path, data_volume: str) -> None:
    from screens.operate import OperateScreen

    state = existing_installation(tmp_path, postgres_server)
    app = WizardApp(state, live=False)
    async with app.run_test(size=SIZE) as pilot:
        app.screen.query_one("#manage").focus()
        await pilot.press("enter")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, OperateScreen)
        screen.query_one("#op-passphrase").focus()
        await pilot.press(*"tui-passphrase-1")
        screen.query_one("#op-backup").focus()
        await pilot.press("enter")
        await until(lambda: any("backup written" in line for line in screen.lines) or
                    any(line.startswith("✘") for line in screen.lines))
        assert any("▶ dump database" in line for line in screen.lines), screen.lines
        archives = list(tmp_path.glob("carto-backup-*.enc"))
        assert len(archives) == 1 and is_encrypted(str(archives[0]))
        assert archives[0].stat().st_mode & 0o777 == 0o600
        (tmp_path / "out").mkdir()
        manifest = extract_verified(str(archives[0]), str(tmp_path / "out"), "tui-passphrase-1")
        assert "database/wizard_ops.dump" in {m["path"] for m in manifest["members"]}

        screen.query_one("#op-uninstall").focus()
        await pilot.press("enter")
        await until(lambda: screen.plan is not None or
                    any(line.startswith("✘") for line in screen.lines))
        await pilot.pause()
        plan = str(screen.query_one("#operate-plan").render())
        assert "Uninstall plan:" in plan and f"keep    volume {data_volume}" in plan
        # Destroying data without the domain typed is refused, and nothing runs.
        assert screen.query_one("#op-confirm-row").display
        screen.query_one("#op-purge").focus()
        await pilot.press("enter")
        assert any("type the domain" in line for line in screen.lines)
        assert not screen.busy
        docker_engine.volumes.get(data_volume)
        # With the domain typed, exactly the data the plan listed is destroyed.
        screen.query_one("#op-domain").focus()
        await pilot.press(*DOMAIN)
        screen.query_one("#op-purge").focus()
        await pilot.press("enter")
        await until(lambda: any(line.startswith("uninstalled") for line in screen.lines) or
                    any(line.startswith("✘ uninstall") for line in screen.lines))
        assert any("destroyed 1 volume(s)" in line for line in screen.lines), screen.lines
        with pytest.raises(docker.errors.NotFound):
            docker_engine.volumes.get(data_volume)
        await until(lambda: not screen.busy)  # the worker has finished; Esc now leaves
        await pilot.press("escape")
        await until(lambda: not isinstance(app.screen, OperateScreen))


def test_plain_prompts_offer_the_same_with_the_domain_typed_to_purge(
        tmp_path: Path, postgres_server: PostgresServer, monkeypatch: pytest.MonkeyPatch,
        docker_engine: docker.DockerClient, compose_v2: Path, data_volume: str) -> None:
    state = existing_installation(tmp_path, postgres_server)
    monkeypatch.chdir(tmp_path)
    question = "CARTO is installed on local. What do you want to do?"
    output = str(tmp_path / "plain-backup.tar")
    prompts = ScriptedPrompts({
        question: ["Back up", "Uninstall"],
        "Passphrase to encrypt the backup (Enter for none):": [""],
        "Write the backup to:": [output],
        "Also destroy the data (volumes, PVCs, the installer's Secrets)?": [True],
        f"This DESTROYS the data listed. Type the domain ({DOMAIN}) to confirm:":
            ["not-the-domain.example.com"],
    }).install(monkeypatch)
    out = io.StringIO()
    wizard = PlainWizard(state, out=out)
    assert wizard.run() == 0
    assert Path(output).stat().st_mode & 0o777 == 0o600
    assert "==> dump database" in out.getvalue() and "Backup written" in out.getvalue()
    wizard = PlainWizard(state, out=out)
    code = wizard.run()
    text = out.getvalue()
    assert f"DESTROY volume {data_volume}" in text
    assert code == 2 and "nothing was removed" in text  # the wrong domain: nothing removed
    docker_engine.volumes.get(data_volume)
    assert prompts.unanswered() == []
