"""The wizard driving a machine over SSH: a real sshd posing as an Ubuntu 22.04 VM, its host
key confirmed (or refused) in a dialog, every check run on it, the files written to it over
SFTP, and the deployment launched there for real (its Docker engine is this machine's).
"""

from __future__ import annotations

import shutil
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import installer.preflight
from installer.checks.base import Status
from screens.app import WizardApp
from screens.widgets.modals import HostKeyModal, SecretModal
from tests.support.cli import host_ports_lock
from tests.support.compose_deployment import build_images, compose_down, make_deployment
from tests.support.package import make_package
from tests.support.ssh_target import open_folder, use_hosts
from tests.support.wizard import (
    PASSPHRASE,
    choose,
    encrypted_copy,
    fill,
    loopback,
    new_state,
    next_step,
    no_dialog,
    paste,
    screen_text,
    settle_checks,
    step_of,
    sync,
    wait_until,
)

SIZE = (80, 24)
DOMAIN = "carto-over-ssh.wizard.test"
@pytest.fixture
def remote_folder() -> Iterator[Path]:
    folder = open_folder("carto-wizard-ssh-", 0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


async def host_key_dialog(pilot: Any) -> HostKeyModal:
    await pilot.press("ctrl+n")
    await wait_until(pilot, lambda: isinstance(pilot.app.screen, HostKeyModal), timeout=30,
                     what="the host-key dialog")
    dialog = pilot.app.screen
    assert isinstance(dialog, HostKeyModal)
    await wait_until(pilot, lambda: dialog.is_mounted and pilot.app.focused is not None,
                     timeout=10, what="the host-key dialog to take the focus")
    return dialog


@sync
async def test_the_wizard_installs_on_a_machine_over_ssh(
        tmp_path: Path, ssh_servers: Any, target_credentials: Any, docker_engine: Any,
        compose_v2: Path, remote_folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    build_images(docker_engine)
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)  # no agent: the passphrase is asked
    identity = encrypted_copy(target_credentials.ed25519_key, tmp_path / "id_ed25519")
    vm = ssh_servers()
    use_hosts(vm, {})  # the VM resolves no name: nothing it probes leaves this machine
    monkeypatch.setattr(installer.preflight, "system_resolver", loopback)
    deploy_dir = make_deployment(remote_folder / "carto")
    package = make_package(tmp_path / "package")
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("")
    workdir = tmp_path / "work"
    workdir.mkdir()
    state = new_state(workdir, resolver=loopback)
    app = WizardApp(state)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await next_step(pilot, "platform")
            await next_step(pilot, "target")
            await choose(pilot, "#target-choice", "#remote")
            await fill(pilot, "target.host", vm.host)
            await fill(pilot, "target.port", str(vm.port))
            await fill(pilot, "target.user", "root")
            await fill(pilot, "target.identity_file", str(identity))
            await fill(pilot, "target.known_hosts", str(known_hosts))
            await fill(pilot, "compose.directory", str(deploy_dir))

            # An unknown host key: the dialog shows its fingerprint; refusing it connects
            # nothing and trusts nothing.
            dialog = await host_key_dialog(pilot)
            assert dialog.fingerprint == vm.host_key_fingerprint()
            assert vm.host_key_fingerprint() in screen_text(app)
            assert app.focused is dialog.query_one("#no")  # the safe answer is the default
            await pilot.press("enter")
            await wait_until(pilot, lambda: "Could not connect" in screen_text(app),
                             timeout=15, what="the refusal to be reported")
            assert step_of(app) == "target"
            assert known_hosts.read_text() == ""
            assert "host key" in screen_text(app).lower()

            # Accepting it goes on, and remembers the key; then the identity file's
            # passphrase is asked in a masked dialog.
            await host_key_dialog(pilot)
            await pilot.press("y")
            await wait_until(pilot, lambda: isinstance(app.screen, SecretModal), timeout=30,
                             what="the passphrase dialog")
            assert app.screen.question == f"Passphrase for {identity}"
            assert "Passphrase for" in screen_text(app)
            await paste(pilot, PASSPHRASE)
            assert PASSPHRASE not in screen_text(app)
            await pilot.press("enter")
            await wait_until(pilot, lambda: no_dialog(app) and step_of(app) == "requirements",
                             timeout=30, what="the connection")
            assert PASSPHRASE in state.redactor._secrets  # masked in the log from now on
            assert state.target is not None and state.target.name == f"root@{vm.host}:{vm.port}"
            assert vm.host_public_key.split()[1] in known_hosts.read_text()

            await settle_checks(pilot, state, "requirements")
            os_check = state.results["host.os"]
            assert os_check.status == Status.PASS and "22.04" in os_check.message  # the VM's
            assert state.results["docker.engine"].status == Status.PASS
            await next_step(pilot, "domain_tls")
            await fill(pilot, "domain", DOMAIN)
            await settle_checks(pilot, state, "domain_tls")
            await next_step(pilot, "database")
            await choose(pilot, "#db-choice", "#bundled")
            assert "debugging" in screen_text(app)  # the vendor's warning is shown
            await next_step(pilot, "license")
            assert state.answers.database.bundled
            await fill(pilot, "package", str(package.path))
            await settle_checks(pilot, state, "license")
            await next_step(pilot, "network")
            await pilot.press("ctrl+r")
            await settle_checks(pilot, state, "network")
            egress = [r for r in state.step_results("network") if r.id.startswith("egress.")]
            assert egress and all("DNS" in r.message for r in egress
                                  if r.status == Status.FAIL)  # probed from the VM
            await next_step(pilot, "review")
            review = app.screen
            await wait_until(pilot, lambda: not review.query_one("#next").disabled,
                             timeout=30, what="the render plan")
            assert f"in {deploy_dir}" in str(review.query_one("#review-summary").render())
            assert not (deploy_dir / ".env").exists()

            with host_ports_lock():
                await next_step(pilot, "deploy")
                deploy = app.screen
                await wait_until(pilot, lambda: no_dialog(app) and not deploy.deploying,
                                 timeout=240, what="the deployment over SSH")
                assert deploy.finished_ok, screen_text(app)
                assert deploy.steps["verify https"][0] == "ok"
                await pilot.press("ctrl+n")
                await wait_until(pilot, lambda: not app.is_running, timeout=10,
                                 what="the exit")
                compose_down(deploy_dir)
        assert app.return_value == 0
        for name in (".env", "customer.env"):
            assert stat.S_IMODE((deploy_dir / name).stat().st_mode) == 0o600, name
        for name in ("certs/key.json", f"certs/{DOMAIN}.key"):  # the reading container's group
            assert stat.S_IMODE((deploy_dir / name).stat().st_mode) == 0o640, name
        assert state.answers.target is not None
        saved = (workdir / "carto-answers.yaml").read_text()
        assert f"host: {vm.host}" in saved and str(known_hosts) in saved
    finally:
        compose_down(deploy_dir)


@sync
async def test_the_deployment_directory_on_the_remote_machine_is_judged_at_its_step(
        tmp_path: Path, ssh_servers: Any, target_credentials: Any, remote_folder: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Over SSH the folder cannot be looked at as it is typed: Next connects and looks, and
    refuses a folder without the vendor's release there and then, saying where it is."""
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    vm = ssh_servers()
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("")
    state = new_state(tmp_path, resolver=loopback)
    app = WizardApp(state, start="target")
    try:
        async with app.run_test(size=SIZE) as pilot:
            await choose(pilot, "#target-choice", "#remote")
            await fill(pilot, "target.host", vm.host)
            await fill(pilot, "target.port", str(vm.port))
            await fill(pilot, "target.user", "root")
            await fill(pilot, "target.identity_file", str(target_credentials.ed25519_key))
            await fill(pilot, "target.known_hosts", str(known_hosts))
            await fill(pilot, "compose.directory", str(remote_folder / "missing"))
            dialog = await host_key_dialog(pilot)
            dialog.query_one("#yes").focus()
            await pilot.press("enter")
            await wait_until(pilot, lambda: "does not exist on" in screen_text(app)
                             and not app.screen.busy, timeout=30, what="the refusal")
            assert step_of(app) == "target"
            note = str(app.screen.query_one("#directory-note").render())
            assert "https://github.com/CartoDB/carto-selfhosted/releases" in note
            release = make_deployment(remote_folder / "carto")
            await fill(pilot, "compose.directory", str(release))
            await next_step(pilot, "requirements", timeout=30)
    finally:
        state.close()
