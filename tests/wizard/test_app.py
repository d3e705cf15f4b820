"""The Textual wizard driven with Pilot at 80x24: navigation, instant validation, pasting into
every input, masked secrets, live checks with accepted risks, cancelling, quitting.

Assertions are on state (answers, check results, files), not on pixels; the look of each
step is covered by tests/wizard/test_snapshots.py.
"""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
import yaml

from installer.checks.base import Status
from installer.session import SESSION_NAME, state_directory
from screens.app import WizardApp
from screens.base import StepScreen
from screens.widgets.check_list import CheckList
from screens.widgets.field_input import FieldInput
from screens.widgets.modals import ConfirmModal
from tests.services.tls_ca import free_loopback_port, silent_server
from tests.support.wizard import fill, new_state, paste, screen_text, sync, wait_until

SIZE = (80, 24)


def step_of(app: WizardApp) -> str:
    screen = app.screen
    assert isinstance(screen, StepScreen), type(screen)
    return screen.STEP


def field(app: WizardApp, path: str) -> FieldInput:
    return app.screen.query_one("#f-" + path.replace(".", "-"), FieldInput)


@sync
async def test_steps_go_forward_and_back_by_keyboard_keeping_the_answers(tmp_path: Path) -> None:
    state = new_state(tmp_path)
    app = WizardApp(state, live=False)
    async with app.run_test(size=SIZE) as pilot:
        assert step_of(app) == "welcome"
        await pilot.press("ctrl+n")
        assert step_of(app) == "platform"
        await pilot.press("down", "enter")  # choose Kubernetes in the radio set
        await pilot.press("ctrl+n")
        assert state.answers.platform == "kubernetes"
        assert step_of(app) == "target"
        # Kubernetes asks for the cluster, not for an SSH machine.
        assert app.screen.query("#f-kubernetes-namespace")
        assert not app.screen.query("#f-target-host")
        namespace = field(app, "kubernetes.namespace")
        namespace.input.focus()
        namespace.text = "carto-prod"
        await pilot.press("escape")  # Back keeps what was typed
        assert step_of(app) == "platform"
        assert state.answers.kubernetes.namespace == "carto-prod"
        await pilot.press("ctrl+n")
        assert field(app, "kubernetes.namespace").text == "carto-prod"
        # A step shown again before its previous screen is gone (fast Back/Next) is fine.
        app.goto("platform")
        app.goto("platform")
        await pilot.pause()
        assert step_of(app) == "platform"


@sync
async def test_a_domain_is_validated_as_typed_and_pasted(tmp_path: Path) -> None:
    state = new_state(tmp_path)
    app = WizardApp(state, start="domain_tls", live=False)
    async with app.run_test(size=SIZE) as pilot:
        domain = field(app, "domain")
        assert app.focused is domain.input
        await paste(pilot, "https://carto.example.com/maps")
        assert domain.input.value == "https://carto.example.com/maps"
        assert domain.has_class("-invalid")
        assert "scheme" in screen_text(app)  # the validator's own words, on the hint line
        await pilot.press("ctrl+n")
        assert step_of(app) == "domain_tls"  # an invalid answer blocks Next
        domain.input.value = ""
        await paste(pilot, "Carto.Example.COM\n")  # a trailing newline from the clipboard
        assert domain.has_class("-valid")
        await pilot.press("ctrl+n")
        assert state.answers.domain == "carto.example.com"
        assert state.answers.tls.certificate_file is None  # self-signed by default
        assert step_of(app) == "database"


@sync
async def test_every_input_of_every_step_takes_a_paste(tmp_path: Path) -> None:
    pasted = "pasted-value.example.com"
    seen = 0
    for step, platform in (("target", "compose"), ("target", "kubernetes"),
                           ("domain_tls", "compose"), ("database", "compose"),
                           ("license", "compose"), ("network", "compose")):
        state = new_state(tmp_path)
        state.answers.platform = platform
        if step == "target" and platform == "compose":
            from installer.answers import JumpHost, SSHSettings, blank_section

            state.answers.target = blank_section(SSHSettings)
            state.answers.target.jump = blank_section(JumpHost)
        app = WizardApp(state, start=step, live=False)
        async with app.run_test(size=SIZE) as pilot:
            if step == "domain_tls":
                await pilot.press("tab", "down", "enter")  # own certificate: show its fields
            if step == "network":
                app.screen.query_one("#use-proxy").value = True
                await pilot.pause()
            if step == "database":
                app.screen.query_one("#db-ssl").value = True
                await pilot.pause()
            for each in list(app.screen.query(FieldInput)):
                if not each.display or not each.parent.display:  # type: ignore[union-attr]
                    continue
                each.input.value = ""
                each.input.focus()
                await paste(pilot, pasted)
                assert each.input.value == pasted, f"{step}/{each.spec.path} dropped the paste"
                seen += 1
    assert seen >= 25


@sync
async def test_secrets_are_masked_on_screen_and_kept_exactly(tmp_path: Path) -> None:
    password = "Pa$$ w0rd#with'quotes\"and\\backslash"
    state = new_state(tmp_path)
    app = WizardApp(state, start="database", live=False)
    async with app.run_test(size=SIZE) as pilot:
        for path in ("database.admin_password", "database.password"):
            assert field(app, path).input.password is True
        field(app, "database.host").text = "db.example.internal"
        admin = field(app, "database.admin_password")
        admin.input.focus()
        await paste(pilot, password)
        field(app, "database.password").text = "another-secret-value"
        await pilot.pause()
        shown = screen_text(app)
        assert password not in shown and "another-secret-value" not in shown
        assert "Pa$$" not in shown
        await pilot.press("ctrl+n")
        assert state.answers.database.admin_password.value == password
        assert password in state.redactor._secrets  # masked in the log from now on
        assert state.redactor(f"x {password} y") == "x ******** y"


@sync
async def test_quit_asks_first_and_leaves_only_whole_files(tmp_path: Path) -> None:
    state = new_state(tmp_path)
    app = WizardApp(state, live=True)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+n")  # to Platform: the session is saved
        assert step_of(app) == "platform"
        await pilot.press("ctrl+q")
        assert isinstance(app.screen, ConfirmModal)
        await pilot.press("escape")  # changed my mind
        assert step_of(app) == "platform"
        await pilot.press("ctrl+c")  # nothing runs: Ctrl+C offers to quit too
        assert isinstance(app.screen, ConfirmModal)
        await pilot.press("n")
        assert step_of(app) == "platform"
        await pilot.press("ctrl+q", "y")
        await wait_until(pilot, lambda: not app.is_running, timeout=5, what="the app to exit")
    assert app.return_value == 130
    assert any("No changes were made" in line for line in app.farewell)
    session = state.session_path
    assert session == state_directory() / SESSION_NAME  # $XDG_STATE_HOME/carto-installer
    data = yaml.safe_load(session.read_text())
    assert data["step"] == "platform"
    assert stat.S_IMODE(session.stat().st_mode) == 0o600
    assert stat.S_IMODE(session.parent.stat().st_mode) == 0o700
    assert list(tmp_path.iterdir()) == []  # nothing in the folder it was started from


@sync
async def test_a_saved_session_resumes_where_it_stopped(tmp_path: Path) -> None:
    first = new_state(tmp_path)
    first.answers.domain = "carto.example.com"
    first.answers.database.bundled = True
    first.save_session("license")
    state = new_state(tmp_path)
    app = WizardApp(state, live=False)
    async with app.run_test(size=SIZE) as pilot:
        assert "stopped at 'License package'" in screen_text(app)
        await pilot.press("ctrl+n")
        assert step_of(app) == "license"
        assert state.answers.domain == "carto.example.com" and state.answers.database.bundled


@sync
async def test_resume_goes_back_to_a_step_whose_secret_was_not_saved(tmp_path: Path) -> None:
    first = new_state(tmp_path)
    first.answers.domain = "carto.example.com"
    first.answers.database.host = "db.example.internal"
    from installer.answers import Secret

    first.answers.database.admin_password = Secret("typed-in-the-wizard", "inline")
    first.save_session("network")
    assert "typed-in-the-wizard" not in first.session_path.read_text()
    state = new_state(tmp_path)
    app = WizardApp(state, live=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+n")
        assert step_of(app) == "database"  # the password must be typed again


def _failing_docker_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # Nothing listens there: docker.engine fails the same way on every machine.
    monkeypatch.setenv("DOCKER_HOST", f"tcp://127.0.0.1:{free_loopback_port()}")


@sync
async def test_requirements_run_live_and_a_failure_blocks_until_its_risk_is_accepted(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _failing_docker_env(monkeypatch)
    state = new_state(tmp_path)
    app = WizardApp(state, start="requirements", live=True)
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        await wait_until(pilot, lambda: "docker.engine" in state.results and not screen.busy,
                         timeout=30, what="the requirement checks")
        check_list = screen.query_one(CheckList)
        assert state.results["docker.engine"].status == Status.FAIL
        assert state.results["docker.engine"].remediation
        assert {"host.os", "host.cpu", "host.memory", "host.disk"} <= set(check_list.rows)
        assert all(row.result is not None for row in check_list.rows.values())
        await pilot.press("ctrl+n")
        assert step_of(app) == "requirements"
        assert "block Next" in screen_text(app)
        # Accept each blocking check's risk, by name, from the list.
        for blocking in list(state.blocking("requirements")):
            check_list.highlighted = check_list.get_option_index(blocking.id)
            check_list.focus()
            await pilot.press("a")
            assert blocking.id in state.accepted_risks
        assert "docker.engine" in state.accepted_risks
        assert "[risk accepted]" in screen_text(app)
        await pilot.press("ctrl+n")
        assert step_of(app) == "domain_tls"


@sync
async def test_rerunning_one_check_replaces_only_its_result(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    _failing_docker_env(monkeypatch)
    state = new_state(tmp_path)
    app = WizardApp(state, start="requirements", live=True)
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        await wait_until(pilot, lambda: "docker.engine" in state.results and not screen.busy,
                         timeout=30, what="the requirement checks")
        before = dict(state.results)
        monkeypatch.delenv("DOCKER_HOST")
        check_list = screen.query_one(CheckList)
        check_list.highlighted = check_list.get_option_index("host.arch")
        check_list.focus()
        await pilot.press("r")
        await wait_until(pilot, lambda: state.results["host.arch"] is not before["host.arch"]
                         and not screen.busy, timeout=30, what="the re-run")
        assert state.results["docker.engine"] is before["docker.engine"]


@sync
async def test_ctrl_c_stops_running_checks_promptly(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    with silent_server() as server:  # accepts, never answers: the Docker check hangs
        host, port = server.address
        monkeypatch.setenv("DOCKER_HOST", f"tcp://{host}:{port}")
        state = new_state(tmp_path)
        app = WizardApp(state, start="requirements", live=True)
        async with app.run_test(size=SIZE) as pilot:
            screen = app.screen
            check_list = screen.query_one(CheckList)
            await wait_until(pilot, lambda: "docker.engine" in check_list.rows
                             and check_list.rows["docker.engine"].result is None,
                             timeout=15, what="the Docker check to start")
            assert screen.busy
            await pilot.press("ctrl+c")
            took = await wait_until(pilot, lambda: not screen.busy, timeout=2,
                                    what="the checks to stop")
            assert took < 1.0
            assert check_list.rows["docker.engine"].result.message == "cancelled"
            assert "Checks stopped" in screen_text(app)
            assert not isinstance(app.screen, ConfirmModal)  # it stopped; it did not quit
            # Back while checks run stops them as well, and leaves the step.
            await pilot.press("ctrl+r")
            await wait_until(pilot, lambda: screen.busy, timeout=5, what="a new run")
            await pilot.press("escape")
            assert step_of(app) == "target"
            await wait_until(pilot, lambda: not screen._checks_worker.is_running, timeout=2,
                             what="the abandoned run to stop")


@sync
async def test_no_color_is_respected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from textual.filter import Monochrome, NoColor

    monkeypatch.setenv("NO_COLOR", "1")
    app = WizardApp(new_state(tmp_path), start="platform", live=False)
    async with app.run_test(size=SIZE) as pilot:
        assert app.no_color
        assert any(isinstance(f, Monochrome | NoColor) for f in app._filters)
        # Choices still read without colour: the glyph says which is chosen.
        assert "● Single VM" in screen_text(app).replace("▐", "").replace("▌", "")
        assert "○ Kubernetes" in screen_text(app).replace("▐", "").replace("▌", "")
        await pilot.press("down", "enter")
        assert "● Kubernetes" in screen_text(app).replace("▐", "").replace("▌", "")
    monkeypatch.delenv("NO_COLOR")
    app = WizardApp(new_state(tmp_path), start="platform", live=False)
    async with app.run_test(size=SIZE):
        assert not app.no_color



@sync
async def test_every_control_of_every_step_is_reached_with_tab(tmp_path: Path) -> None:
    from textual.widgets import Checkbox, RadioSet

    from screens.widgets.nav_button import NavButton

    state = new_state(tmp_path)
    app = WizardApp(state, live=False)
    async with app.run_test(size=SIZE) as pilot:
        for step in ("welcome", "platform", "target", "requirements", "domain_tls",
                     "database", "license", "network", "review", "deploy"):
            app.goto(step)
            await wait_until(pilot, lambda step=step: step_of(app) == step,  # type: ignore[misc]
                             timeout=5, what=step)
            await pilot.pause()
            screen = app.screen
            controls = [w for w in screen.query(
                "Input, RadioSet, Checkbox, NavButton, CheckList, RichLog, #review-diff")
                if w.focusable and _shown(w)]
            assert controls, step
            # Tab walks the screen's focus chain: every control must be on it ...
            chain = screen.focus_chain
            missing = [f"{type(w).__name__}#{w.id}" for w in controls if w not in chain]
            assert missing == [], f"{step}: Tab never reaches {missing}"
            # ... and the key really moves along it.
            if len(chain) > 1:
                before = app.focused
                await pilot.press("tab")
                assert app.focused is not before and app.focused in chain
                await pilot.press("shift+tab")
                assert app.focused is before
            kinds = {type(w) for w in controls}
            if step == "database":
                assert any(issubclass(k, RadioSet) for k in kinds)
                assert any(issubclass(k, Checkbox) for k in kinds)
            # (while a deployment runs, Back and Next are disabled: Ctrl+C stops it)
            assert any(issubclass(k, NavButton) for k in kinds) or step == "deploy"


def _shown(widget: object) -> bool:
    node = widget
    while node is not None:
        if not getattr(node, "display", True):
            return False
        node = getattr(node, "parent", None)
    return True


@sync
async def test_an_answers_file_prefills_every_step_and_is_saved_back_with_references(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from installer.answers import load_answers
    from installer.redact import Redactor

    monkeypatch.setenv("WIZ_ADMIN_PW", "from-the-environment-pw")
    answers_file = tmp_path / "answers.yaml"
    answers_file.write_text(yaml.safe_dump({
        "version": 1, "platform": "compose", "domain": "prefilled.example.com",
        "compose": {"directory": "/srv/carto"},
        "database": {"host": "db.prefilled.internal", "admin_password_env": "WIZ_ADMIN_PW",
                     "password_file": str(tmp_path / "pw")},
    }))
    (tmp_path / "pw").write_text("from-a-file-pw\n")
    answers_file.chmod(0o600)
    redactor = Redactor()
    answers = load_answers(answers_file, redactor=redactor)
    state = new_state(tmp_path, answers=answers, redactor=redactor)
    app = WizardApp(state, live=False)
    async with app.run_test(size=SIZE) as pilot:
        assert "Answers pre-filled from" in screen_text(app)
        assert state.prefilled_from == answers_file
        app.goto("target")
        await pilot.pause()
        assert field(app, "compose.directory").text == "/srv/carto"
        app.goto("domain_tls")
        await pilot.pause()
        assert field(app, "domain").text == "prefilled.example.com"
        app.goto("database")
        await pilot.pause()
        assert field(app, "database.host").text == "db.prefilled.internal"
        admin = field(app, "database.admin_password")
        assert admin.input.password and admin.text == "from-the-environment-pw"
        assert "from-the-environment-pw" not in screen_text(app)
        await pilot.press("ctrl+n")  # unchanged: the secrets keep where they came from
        assert step_of(app) == "license"
    saved = state.save_answers()
    text = saved.read_text()
    assert "admin_password_env: WIZ_ADMIN_PW" in text
    assert f"password_file: {tmp_path / 'pw'}" in text
    assert "from-the-environment-pw" not in text and "from-a-file-pw" not in text


@sync
async def test_certificate_files_are_picked_with_the_keyboard(tmp_path: Path) -> None:
    from screens.widgets.modals import FilePicker

    tls = tmp_path / "tls"
    tls.mkdir()
    (tls / "fullchain.pem").write_text("not checked here\n")
    state = new_state(tmp_path)
    state.answers.domain = "carto.example.com"
    app = WizardApp(state, start="domain_tls", live=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("tab", "down", "enter")  # "Use my certificate and key files"
        cert = field(app, "tls.certificate_file")
        assert cert.display
        cert.input.focus()
        await pilot.press("ctrl+o")
        assert isinstance(app.screen, FilePicker)
        await pilot.press("home", "ctrl+k")
        await paste(pilot, str(tls))
        await pilot.press("enter")  # a folder: the tree opens there
        await wait_until(pilot, lambda: "fullchain.pem" in screen_text(app), timeout=5,
                         what="the folder's files")
        await pilot.press("down", "enter")  # the file under the folder's root
        await wait_until(pilot, lambda: not isinstance(app.screen, FilePicker), timeout=5,
                         what="the picker to close")
        assert cert.text == str(tls / "fullchain.pem")
        assert app.focused is cert.input
        key = field(app, "tls.key_file")
        key.input.focus()
        await pilot.press("ctrl+o", "escape")  # Esc leaves the field as it was
        assert key.text == "" and not isinstance(app.screen, FilePicker)


@sync
async def test_network_choices_show_the_hosts_they_need_and_the_proxy(tmp_path: Path) -> None:
    state = new_state(tmp_path)
    app = WizardApp(state, start="network", live=False)
    async with app.run_test(size=SIZE) as pilot:
        snowflake = field(app, "network.snowflake_account_url")
        assert not snowflake.display
        app.screen.query_one("#wh-snowflake").focus()
        await pilot.press("space")
        assert snowflake.display
        await pilot.press("ctrl+n")  # the account host is now required
        await pilot.pause()
        assert step_of(app) == "network" and "is required" in screen_text(app)
        assert app.focused is snowflake.input
        await fill(pilot, "network.snowflake_account_url", "acme.snowflakecomputing.com")
        app.screen.query_one("#use-proxy").focus()
        await pilot.press("space")
        await pilot.press("ctrl+n")  # a proxy needs its URL
        await pilot.pause()
        assert step_of(app) == "network" and "give the proxy's URL" in screen_text(app)
        await fill(pilot, "network.proxy.https", "http://proxy.internal:3128")
        await fill(pilot, "network.proxy.no_proxy", "localhost,.internal")
        await pilot.press("ctrl+n")
        assert step_of(app) == "review"
    n = state.answers.network
    assert n.warehouses == ["snowflake"] and n.snowflake_account_url == \
        "acme.snowflakecomputing.com"
    assert n.proxy is not None and n.proxy.https == "http://proxy.internal:3128"
    assert n.proxy.no_proxy == "localhost,.internal" and n.proxy.http is None
