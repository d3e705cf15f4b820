"""The full-screen wizard as a first-time admin meets it (issue 15), driven with Pilot at 80x24:
help on F1 and ?, arrows that choose, ✔ only for usable values, the deployment directory
judged at its step, focus on the check that blocks, accepting all shown risks after one
confirmation, grouped fixes, the Kubernetes database warning, and Review sending the user to
the step at fault.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from installer.checks.base import CheckResult, Status
from screens.app import WizardApp
from screens.base import StepScreen
from screens.widgets.check_list import CheckList
from screens.widgets.field_input import FieldInput
from screens.widgets.modals import ConfirmModal, HelpModal, InfoModal
from tests.support.wizard import new_state, paste, screen_text, sync, wait_until

SIZE = (80, 24)


def result(check_id: str, status: Status, message: str, remediation: str = "") -> CheckResult:
    return CheckResult(check_id, check_id.split(".")[0], check_id, status, "", "", message,
                       remediation, 0.0)


def field(app: WizardApp, path: str) -> FieldInput:
    return app.screen.query_one("#f-" + path.replace(".", "-"), FieldInput)


def mark(app: WizardApp, path: str) -> str:
    return str(field(app, path).query_one(".field-mark").render())


def step(app: WizardApp) -> str:
    screen = app.screen
    assert isinstance(screen, StepScreen), type(screen)
    return screen.STEP


@sync
async def test_f1_and_question_mark_open_the_steps_help_and_a_typed_question_mark_is_text(
        tmp_path: Path) -> None:
    app = WizardApp(new_state(tmp_path), start="database", live=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f1")
        assert isinstance(app.screen, HelpModal)
        shown = str(app.screen.query_one("#help-body").render())
        assert "CREATEROLE and CREATEDB" in shown  # the step's own text: the vendor's rule
        assert "Must be able to create users and databases" in shown  # the field's help
        await pilot.press("escape")
        assert step(app) == "database"
        await pilot.press("question_mark")  # on the radio set: help
        assert isinstance(app.screen, HelpModal)
        await pilot.press("question_mark")  # ? closes it again
        host = field(app, "database.host")
        host.input.focus()
        await pilot.press("question_mark")  # in an input, ? is just a character
        assert not isinstance(app.screen, HelpModal)
        assert host.input.value.endswith("?")


@sync
async def test_the_arrow_keys_choose_the_platform(tmp_path: Path) -> None:
    state = new_state(tmp_path)
    app = WizardApp(state, start="platform", live=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("down")  # no Enter or Space: the highlighted one is the chosen one
        await pilot.press("ctrl+n")
        assert state.answers.platform == "kubernetes"
        assert step(app) == "target"
        await pilot.press("escape")
        await wait_until(pilot, lambda: step(app) == "platform", timeout=5, what="platform")
        await pilot.pause()
        await pilot.press("up")
        await pilot.press("ctrl+n")
        assert state.answers.platform == "compose"


@sync
async def test_a_tick_means_usable_certificate_files_and_a_kubeconfig(tmp_path: Path) -> None:
    from installer.tlsgen import generate_self_signed

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_pem, key_pem = generate_self_signed("carto.example.com")
    cert.write_bytes(cert_pem)
    key.write_bytes(key_pem)
    key.chmod(0o600)
    state = new_state(tmp_path)
    state.answers.domain = "carto.example.com"
    state.answers.tls.certificate_file = str(tmp_path / "missing.pem")
    state.answers.tls.key_file = str(cert)  # a certificate where the key should be
    app = WizardApp(state, start="domain_tls", live=False)
    async with app.run_test(size=SIZE) as pilot:
        assert mark(app, "tls.certificate_file") == "✘"
        assert mark(app, "tls.key_file") == "✘"
        field(app, "tls.certificate_file").input.focus()
        await pilot.pause()
        hint = str(app.screen.query_one("#hint").render())
        assert f"✘ {tmp_path / 'missing.pem'} does not exist" in hint
        field(app, "tls.certificate_file").text = str(cert)
        field(app, "tls.key_file").text = str(key)
        await pilot.pause()
        assert mark(app, "tls.certificate_file") == "✔"
        assert mark(app, "tls.key_file") == "✔"
    k8s = new_state(tmp_path)
    k8s.answers.platform = "kubernetes"
    k8s.answers.kubernetes.kubeconfig = str(tmp_path / "no-kubeconfig")
    app = WizardApp(k8s, start="target", live=False)
    async with app.run_test(size=SIZE) as pilot:
        assert mark(app, "kubernetes.kubeconfig") == "✘"
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text("apiVersion: v1\nkind: Config\nclusters: []\n")
        field(app, "kubernetes.kubeconfig").text = str(kubeconfig)
        await pilot.pause()
        assert mark(app, "kubernetes.kubeconfig") == "✔"


@sync
async def test_the_deployment_directory_is_judged_at_its_step(tmp_path: Path) -> None:
    from tests.support.compose_deployment import make_deployment

    state = new_state(tmp_path)
    state.answers.compose.directory = str(tmp_path / "not-here")
    app = WizardApp(state, start="target", live=False)
    async with app.run_test(size=SIZE) as pilot:
        assert mark(app, "compose.directory") == "✘"  # it does not exist: no ✔
        note = str(app.screen.query_one("#directory-note").render())
        assert "does not exist" in note
        assert "https://github.com/CartoDB/carto-selfhosted/releases" in note
        await pilot.press("ctrl+n")
        assert step(app) == "target"  # refused here, not eight steps later
        empty = tmp_path / "empty"
        empty.mkdir()
        directory = field(app, "compose.directory")
        directory.input.focus()
        await pilot.press("home", "ctrl+k")
        await paste(pilot, str(empty))
        note = str(app.screen.query_one("#directory-note").render())
        assert "lacks docker-compose.yml, env.tpl, VERSION, MIN_VERSION" in note
        await pilot.press("home", "ctrl+k")
        await paste(pilot, str(make_deployment(tmp_path / "release")))
        assert mark(app, "compose.directory") == "✔"
        await pilot.press("ctrl+n")
        assert step(app) == "requirements"


@sync
async def test_a_refused_next_lands_on_the_blocking_check_and_all_risks_are_accepted_at_once(
        tmp_path: Path) -> None:
    state = new_state(tmp_path)
    for r in (result("host.os", Status.PASS, "Ubuntu 22.04"),
              result("host.arch", Status.PASS, "x86-64"),
              result("host.cpu", Status.FAIL, "only 2 usable CPUs", "resize the VM"),
              result("docker.engine", Status.FAIL, "no Docker engine", "start docker")):
        state.results[r.id] = r
    app = WizardApp(state, start="requirements", live=False)
    async with app.run_test(size=SIZE) as pilot:
        check_list = app.screen.query_one(CheckList)
        app.screen.query_one("#next").focus()
        await pilot.press("ctrl+n")
        assert step(app) == "requirements"
        assert app.focused is check_list
        assert check_list.highlighted_id == "host.cpu"  # the first that blocks, not host.os
        await pilot.press("A")
        assert isinstance(app.screen, ConfirmModal)
        body = screen_text(app)
        assert "host.cpu" in body and "docker.engine" in body
        await pilot.press("n")  # changed my mind: nothing accepted
        assert state.accepted_risks == []
        await pilot.press("A", "y")
        assert state.accepted_risks == ["host.cpu", "docker.engine"]
        await pilot.press("ctrl+n")
        assert step(app) == "domain_tls"


@sync
async def test_checks_that_share_a_fix_say_so_and_enter_is_offered_for_the_full_message(
        tmp_path: Path) -> None:
    state = new_state(tmp_path)
    for host in ("auth.carto.com", "gcr.io", "pubsub.googleapis.com"):
        state.results[f"egress.{host}"] = result(
            f"egress.{host}", Status.FAIL, f"{host} does not resolve",
            f"the target cannot resolve {host}: check its DNS servers")
    app = WizardApp(state, start="network", live=False)
    async with app.run_test(size=SIZE) as pilot:
        check_list = app.screen.query_one(CheckList)
        check_list.focus()
        check_list.highlighted = check_list.get_option_index("egress.gcr.io")
        await pilot.pause()
        assert "Enter: full message and fix" in screen_text(app)
        await pilot.press("enter")  # this step has no detail pane: a dialog shows it all
        assert isinstance(app.screen, InfoModal)
        detail = " ".join(screen_text(app).split())
        assert "the same for 3 checks" in detail
        assert "egress.auth.carto.com" in detail and "egress.pubsub.googleapis.com" in detail


@sync
async def test_the_bundled_database_warning_fits_the_platform(tmp_path: Path) -> None:
    for platform, says, never in (("kubernetes", "PersistentVolume", "Docker volume"),
                                  ("compose", "Docker volume", "PersistentVolume")):
        state = new_state(tmp_path)
        state.answers.platform = platform
        state.answers.database.bundled = True
        app = WizardApp(state, start="database", live=False)
        async with app.run_test(size=SIZE):
            text = screen_text(app)
            assert says in text and never not in text, platform


@sync
async def test_review_names_the_step_at_fault_and_g_goes_there(tmp_path: Path) -> None:
    from tests.support.package import make_package

    state = new_state(tmp_path)
    a = state.answers
    a.domain = "carto.example.com"
    a.database.bundled = True
    a.compose.directory = str(tmp_path / "no-release-here")
    a.package = str(make_package(tmp_path / "package").path)
    app = WizardApp(state, start="review", live=True)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: "Cannot deploy" in screen_text(app), timeout=30,
                         what="the review to refuse")
        await pilot.pause()
        text = screen_text(app)
        assert "set on step 3 · Target machine" in text
        await pilot.press("g")
        await wait_until(pilot, lambda: step(app) == "target", timeout=5, what="the target")
        assert field(app, "compose.directory").text == str(tmp_path / "no-release-here")


@sync
async def test_the_connection_test_needs_only_the_admin_login(
        tmp_path: Path, postgres_server: Any) -> None:
    """Ctrl+T logs in as the admin: the CARTO user's password is asked for at Next, where
    the step ends, not before the test may run."""
    from tests.support.wizard import loopback

    state = new_state(tmp_path, resolver=loopback)
    app = WizardApp(state, start="database", live=True)
    async with app.run_test(size=SIZE) as pilot:
        for path, text in (("database.host", postgres_server.host),
                           ("database.port", str(postgres_server.port)),
                           ("database.admin_user", postgres_server.superuser),
                           ("database.admin_password", postgres_server.password)):
            field(app, path).text = text
        await pilot.pause()
        assert field(app, "database.password").text == ""
        await pilot.press("ctrl+t")
        await wait_until(pilot, lambda: "db.connect" in state.results
                         and not app.screen.busy, timeout=60, what="the connection test")
        assert state.results["db.connect"].status in (Status.PASS, Status.WARN)
        assert state.answers.database.password is None
        await pilot.press("ctrl+n")  # Next still wants it, by name
        assert step(app) == "database"
        assert "CARTO database user password is required" in str(
            app.screen.query_one("#hint").render())
