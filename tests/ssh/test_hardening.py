"""SSH hardening (issue 11), each fault reproduced for real against the real sshd:

- a sudo write cut mid-transfer (the CLI killed with SIGINT or SIGKILL while it sends a big CA
  file) never replaces the file, leaves no temp file and says what state was left;
- the target's password is never offered to the jump host (a bastion that records them);
- links in the deployment directory made by another local user are never read, written or
  chowned through;
- a dropped connection is reopened once for what is safe to repeat, and a command cut
  mid-way fails saying so.
"""

from __future__ import annotations

import datetime as dt
import grp
import logging
import os
import pwd
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paramiko
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID

from installer.answers import parse_answers
from installer.checks.base import CheckContext, Status
from installer.checks.catalog import all_checks
from installer.checks.engine import CheckFinished, run_checks, select
from installer.errors import InputError, TargetError
from installer.redact import Redactor
from installer.render import RenderPlan, apply_render, stale_temp_files
from installer.ssh import ConnectionLostError, SSHTarget
from installer.target import LinkRefused
from installer.tempnames import temp_file_owner, temp_path_for
from tests.services.recording_bastion import RecordingBastion
from tests.services.sshd import SSHCredentials, SSHServer
from tests.services.sshd_target_user import start_target_server
from tests.support.cli import cli_env
from tests.support.compose_deployment import make_deployment, write_answers
from tests.support.package import make_package
from tests.support.ssh_target import (
    SSH_USER,
    kill_ssh_sessions,
    open_folder,
    target_settings,
    trust,
    wait_for,
)

DOMAIN = "carto-hardening.example.com"
CA_NAME = "postgresql-ssl-ca.crt"
OTHER_USER = "cartomallory"  # another local user, in the deployment directory's group


def connect(settings: Any) -> SSHTarget:
    return SSHTarget.connect(settings, accept_host_key=None, confirm_host_key=None,
                             redactor=None)


@pytest.fixture(scope="module")
def server(target_credentials: SSHCredentials) -> Iterator[SSHServer]:
    """An sshd of this module (sudo asks SSH_USER's password); tests may kill its sessions."""
    started = start_target_server(target_credentials)
    try:
        yield started
    finally:
        started.stop()
        shutil.rmtree(started.directory, ignore_errors=True)


@pytest.fixture
def known(tmp_path: Path, server: SSHServer) -> Path:
    return trust(tmp_path / "known_hosts", server)


@pytest.fixture
def sudo_target(server: SSHServer, known: Path,
                target_credentials: SSHCredentials) -> Iterator[SSHTarget]:
    settings = target_settings(server, known, identity_file=target_credentials.ed25519_key,
                               sudo=True, password_env="PW",
                               env={"PW": target_credentials.password})
    with connect(settings) as target:
        yield target


@pytest.fixture
def root_folder() -> Iterator[Path]:
    """A root-owned folder others may enter, but SSH_USER may not write: writes need sudo."""
    folder = open_folder("carto-ssh-hardening-", 0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# --- temp file names -----------------------------------------------------------------------


def test_one_temp_name_for_every_writer_and_the_cleaner() -> None:
    made = temp_path_for("/opt/carto/certs/customer.env")
    folder, name = os.path.split(made)
    assert folder == "/opt/carto/certs"
    assert temp_file_owner(name) == "customer.env"
    assert temp_path_for("/x/a") != temp_path_for("/x/a")
    # What the local writer (tempfile.mkstemp) leaves is recognised too.
    assert temp_file_owner(".env.k3j_9xq0.tmp") == "env"
    assert temp_file_owner(".customer.env.0984b2a69799.tmp") == "customer.env"
    for other in ("customer.env", ".customer.env.tmp", ".customer.env.0984B2A69799.tmp",
                  ".customer.env.0984b2a697.tmp", "x.0984b2a69799.tmp"):
        assert temp_file_owner(other) is None, other


# --- item 1: a sudo write cut mid-transfer -----------------------------------------------------


def _ca_bundle(size: int) -> bytes:
    """A CA bundle of about `size` bytes: one real certificate, repeated."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hardening test CA")])
    now = time.time()
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(dt.datetime.fromtimestamp(now - 60, dt.UTC))
            .not_valid_after(dt.datetime.fromtimestamp(now + 86400, dt.UTC))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    pem = cert.public_bytes(serialization.Encoding.PEM)
    return pem * (size // len(pem) + 1)


def _signal_when_temp_grows(folder: Path, name: str, size: int, process: subprocess.Popen[str],
                            number: int) -> threading.Thread:
    """Send `number` to `process` once the temp copy of `name` in `folder` has `size` bytes."""
    def watch() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            for entry in os.listdir(folder) if folder.is_dir() else []:
                if temp_file_owner(entry) == name:
                    try:
                        grown = (folder / entry).stat().st_size >= size
                    except OSError:
                        continue
                    if grown:
                        process.send_signal(number)
                        return
            time.sleep(0.003)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    return watcher


def test_a_sudo_write_cut_midway_never_replaces_the_file(
        server: SSHServer, target_credentials: SSHCredentials, root_folder: Path,
        tmp_path: Path) -> None:
    """The red team's repro: the CLI interrupted (SIGINT), then killed (SIGKILL), while it
    sends a big CA file through sudo into a root-owned deployment directory."""
    directory = make_deployment(root_folder / "carto")
    known = trust(tmp_path / "known_hosts", server)
    old_ca = tmp_path / "old-ca.pem"
    old_ca.write_bytes(_ca_bundle(4000))
    big_ca = tmp_path / "big-ca.pem"
    big_ca.write_bytes(_ca_bundle(12 * 2**20))
    package = make_package(tmp_path / "pkg")

    def answers(domain: str, ca: Path) -> Path:
        return write_answers(
            tmp_path / "answers.yaml", package=package.path, directory=directory, domain=domain,
            extra={"target": {"host": server.host, "port": server.port, "user": SSH_USER,
                              "sudo": True, "password_env": "SSH_PASSWORD",
                              "known_hosts": str(known)},
                   "database": {"bundled": False, "host": "db.example.com",
                                "ssl": {"enabled": True, "mode": "verify-full",
                                        "ca_file": str(ca)}}})

    env = cli_env({"TEST_PG_ADMIN_PASSWORD": "admin-pw", "TEST_PG_PASSWORD": "user-pw",
                   "SSH_PASSWORD": target_credentials.password, "SSH_AUTH_SOCK": ""})

    def render(answers_file: Path) -> subprocess.Popen[str]:
        return subprocess.Popen([sys.executable, "-m", "installer", "render", "--answers",
                                 str(answers_file)], env=env, cwd=tmp_path, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL)

    first = render(answers(DOMAIN, old_ca))
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, out + err
    certs = directory / "certs"
    ca_path = certs / CA_NAME
    customer = (directory / "customer.env").read_bytes()
    assert ca_path.read_bytes() == old_ca.read_bytes() and ca_path.stat().st_uid == 0
    new_cert, new_key = str(certs / f"new-{DOMAIN}.crt"), str(certs / f"new-{DOMAIN}.key")

    for number in (signal.SIGINT, signal.SIGKILL):
        # A new domain (its certificate and key are written before the CA) and a 12 MB CA;
        # the CLI gets the signal once the target's temp copy of the CA holds 512 kB.
        cut = render(answers("new-" + DOMAIN, big_ca))
        watcher = _signal_when_temp_grows(certs, CA_NAME, 2**19, cut, number)
        out, err = cut.communicate(timeout=300)
        watcher.join()
        expected = 130 if number == signal.SIGINT else -signal.SIGKILL
        assert cut.returncode == expected, out + err

        # The old CA is intact, whole; customer.env (written after it) is untouched.
        assert ca_path.read_bytes() == old_ca.read_bytes()
        assert ca_path.stat().st_uid == 0
        assert (directory / "customer.env").read_bytes() == customer
        # The target's side deleted its partial copy of the CA itself (the client could not).
        # A render sends and checks every file before it switches any: after SIGINT the
        # client discards the copies it had staged; after SIGKILL the whole copies of the
        # certificate and key it had staged stay until the next run removes them.
        def left(only_ca: bool) -> list[str]:
            return [e for e in os.listdir(certs) if temp_file_owner(e)
                    and (not only_ca or temp_file_owner(e) == CA_NAME)]

        only_ca = number == signal.SIGKILL
        assert wait_for(lambda: not left(only_ca), 10), os.listdir(certs)  # noqa: B023
        assert not Path(new_cert).exists() and not Path(new_key).exists()
        if number != signal.SIGINT:
            continue
        assert "Traceback" not in err and "nothing was left half-written" not in err
        said = "interrupted: no file was changed (the backup "
        assert said in err, err
        backup = err.split(said, 1)[1].split(" ", 1)[0]
        assert os.path.dirname(backup) == str(directory)
        assert os.path.basename(backup).startswith("customer.env.bak.")
        assert Path(backup).read_bytes() == customer

    # The next run finishes the job.
    again = render(answers("new-" + DOMAIN, big_ca))
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0, out + err
    assert ca_path.read_bytes() == big_ca.read_bytes()
    assert not [e for e in os.listdir(certs) if temp_file_owner(e)]


def test_a_sudo_write_that_lost_its_temp_file_is_cleaned_next_run(
        sudo_target: SSHTarget, server: SSHServer, root_folder: Path) -> None:
    """The sshd itself killed mid-transfer: nobody is left to delete the copy; the render's
    cleaner recognises it by name."""
    path = root_folder / "customer.env"
    path.write_bytes(b"OLD\n")
    path.chmod(0o600)
    killer = threading.Thread(target=lambda: (
        wait_for(lambda: any(temp_file_owner(e) for e in os.listdir(root_folder))
                 and any((root_folder / e).stat().st_size > 2**20
                         for e in os.listdir(root_folder) if temp_file_owner(e)), 60),
        kill_ssh_sessions(server)))
    killer.start()
    with pytest.raises((ConnectionLostError, OSError)):
        sudo_target.write_file(str(path), os.urandom(48 * 2**20))
    killer.join()
    assert path.read_bytes() == b"OLD\n"
    left = [str(root_folder / e) for e in os.listdir(root_folder) if temp_file_owner(e)]
    # SIGKILL reached the target's shell too, before it could delete its copy; that copy is
    # recognised as ours by the next render.
    assert len(left) == 1
    stale = stale_temp_files(sudo_target, [str(path)])  # reconnects: a read
    assert stale == sorted(left)
    apply_render(RenderPlan([], [], [], stale=stale), sudo_target)  # removes through sudo
    assert os.listdir(root_folder) == ["customer.env"]


# --- item 2: the jump host's credentials ---------------------------------------------------


def _through_bastion(server: SSHServer, bastion: RecordingBastion, known: Path,
                     env: dict[str, str], jump: dict[str, Any]) -> Any:
    data = {"host": server.host, "port": server.port, "user": SSH_USER,
            "password_env": "SSH_PASSWORD", "known_hosts": str(known),
            "jump": {"host": bastion.host, "port": bastion.port, **jump}}
    answers = parse_answers({"version": 1, "target": data}, env=env)
    assert answers.target is not None
    return answers.target


def test_the_targets_password_never_reaches_the_jump_host(
        server: SSHServer, recording_bastion: RecordingBastion,
        target_credentials: SSHCredentials, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    known = tmp_path / "known_hosts"
    known.write_text(recording_bastion.known_hosts_line() + "\n" + server.known_hosts_line()
                     + "\n")
    target_password = target_credentials.password
    env = {"SSH_PASSWORD": target_password, "JUMP_PASSWORD": recording_bastion.password}

    # A bastion that refuses keys, and no password for it: the login fails there, and the
    # target's password was not offered (the red-team run saw it recorded here).
    settings = _through_bastion(server, recording_bastion, known, env, {"user": "jumpuser"})
    with pytest.raises(TargetError) as refused:
        connect(settings)
    assert "no way to log in to jumpuser@" in refused.value.message
    assert "(jump host)" in refused.value.message
    assert "target.jump.password_env" in refused.value.remediation
    assert recording_bastion.offered == []

    # Same user name on both, and a key it refuses: still no password offered.
    same_user = _through_bastion(server, recording_bastion, known, env,
                                 {"user": SSH_USER})
    same_user.identity_file = str(target_credentials.ed25519_key)
    with pytest.raises(TargetError) as refused_key:
        connect(same_user)
    assert "(jump host) refused the SSH login (tried publickey" in refused_key.value.message
    assert len(recording_bastion.keys_offered) == 1
    assert recording_bastion.offered == []

    # With its own password, the bastion gets that one alone, and the target (through it)
    # gets its own.
    with_own = _through_bastion(server, recording_bastion, known, env,
                                {"user": "jumpuser", "password_env": "JUMP_PASSWORD"})
    redactor = Redactor()
    with SSHTarget.connect(with_own, accept_host_key=None, confirm_host_key=None,
                           redactor=redactor) as target:
        assert target.run(["id", "-un"]).stdout.strip() == SSH_USER
    assert recording_bastion.offered == [("jumpuser", recording_bastion.password)]
    assert list(recording_bastion.destinations.values()) == [(server.host, server.port)]
    assert recording_bastion.password in redactor and target_password in redactor
    assert all(password != target_password for _, password in recording_bastion.offered)


def test_jump_identity_file_is_its_own(server: SSHServer, recording_bastion: RecordingBastion,
                                       target_credentials: SSHCredentials, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """target.jump.identity_file is offered to the bastion instead of the target's key."""
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    known = tmp_path / "known_hosts"
    known.write_text(recording_bastion.known_hosts_line() + "\n" + server.known_hosts_line()
                     + "\n")
    jump_key = tmp_path / "jump_key"
    jump_key.write_bytes(ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption()))
    jump_key.chmod(0o600)
    env = {"SSH_PASSWORD": target_credentials.password,
           "JUMP_PASSWORD": recording_bastion.password}
    settings = _through_bastion(server, recording_bastion, known, env,
                                {"user": "jumpuser", "password_env": "JUMP_PASSWORD",
                                 "identity_file": str(jump_key)})
    with connect(settings) as target:
        assert target.run(["true"]).ok
    offered_key = paramiko.PKey.from_path(str(jump_key)).get_fingerprint().hex()
    assert recording_bastion.keys_offered == [("jumpuser", offered_key)]


# --- item 6: links in the deployment directory -----------------------------------------------


@pytest.fixture
def other_user_folder(root_folder: Path) -> Iterator[tuple[Path, str]]:
    """A root-owned deployment directory writable by its group, which OTHER_USER is in; and
    a file of OTHER_USER's own elsewhere."""
    try:
        pwd.getpwnam(OTHER_USER)
    except KeyError:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", OTHER_USER],
                       check=True, capture_output=True)
    group = grp.getgrnam(OTHER_USER).gr_gid
    folder = root_folder / "carto"
    (folder / "certs").mkdir(parents=True)
    for each in (folder, folder / "certs"):
        os.chown(each, 0, group)
        each.chmod(0o775)
    yield folder, OTHER_USER


def _as_other_user(user: str, *argv: str) -> None:
    subprocess.run(["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", "--",
                    *argv], check=True, capture_output=True)


def test_links_made_by_another_user_are_never_followed(
        sudo_target: SSHTarget, other_user_folder: tuple[Path, str]) -> None:
    folder, user = other_user_folder
    home = Path(pwd.getpwnam(user).pw_dir)
    hers = home / "bait"
    _as_other_user(user, "sh", "-c", f"echo HERS > {hers}; chmod 644 {hers}")
    secret = Path("/root/carto-hardening-secret")
    secret.write_text("ROOT ONLY\n")
    secret.chmod(0o600)
    try:
        # customer.env and the TLS key: links to her own file; a certificate: a link to a
        # root-only file. All made by her, in a folder her group may write.
        _as_other_user(user, "ln", "-s", str(hers), str(folder / "customer.env"))
        _as_other_user(user, "ln", "-s", str(hers), str(folder / "certs" / "tls.key"))
        _as_other_user(user, "ln", "-s", str(secret), str(folder / "certs" / "tls.crt"))
        root = str(folder)

        assert sudo_target.is_link(str(folder / "customer.env"))
        assert not sudo_target.is_link(str(folder / "certs"))
        assert not sudo_target.is_link(str(folder / "absent"))
        # Reads refuse the link: the root-only file is never shown (SFTP cannot read it,
        # and the sudo fallback does not follow links either).
        for name in ("customer.env", "certs/tls.key", "certs/tls.crt"):
            with pytest.raises(LinkRefused) as refused:
                sudo_target.read_deployment_file(f"{root}/{name}", root)
            assert refused.value.path == f"{root}/{name}"

        # Writes refuse it too, and nothing is chowned through it: her file stays hers,
        # with her content; no secret reached it.
        for name in ("customer.env", "certs/tls.key"):
            with pytest.raises(InputError) as refused_write:
                sudo_target.write_file(f"{root}/{name}", b"SECRET=1\n", 0o600)
            assert "is a symbolic link" in refused_write.value.message
            assert (folder / name).is_symlink()
        info = hers.stat()
        assert (pwd.getpwuid(info.st_uid).pw_name, hers.read_text()) == (user, "HERS\n")
        assert secret.stat().st_uid == 0 and secret.read_text() == "ROOT ONLY\n"
        assert not [e for e in os.listdir(folder / "certs") if temp_file_owner(e)]

        # A linked folder (certs/ pointing elsewhere) is refused for reads below it.
        shutil.rmtree(folder / "certs")
        _as_other_user(user, "ln", "-s", str(home), str(folder / "certs"))
        with pytest.raises(LinkRefused) as linked_folder:
            sudo_target.read_deployment_file(f"{root}/certs/bait", root)
        assert linked_folder.value.path == f"{root}/certs"
    finally:
        secret.unlink(missing_ok=True)
        hers.unlink(missing_ok=True)


def test_a_sudo_write_keeps_only_a_trusted_owner(
        sudo_target: SSHTarget, other_user_folder: tuple[Path, str]) -> None:
    """A regular file she planted keeps no ownership of hers: the new file belongs to the
    folder's owner. A file root owns stays root's (the old behaviour for the usual case)."""
    folder, user = other_user_folder
    planted = folder / "customer.env"
    _as_other_user(user, "sh", "-c", f"echo PLANTED > {planted}")
    assert pwd.getpwuid(planted.stat().st_uid).pw_name == user
    sudo_target.write_file(str(planted), b"SECRET=1\n", 0o600)
    info = planted.stat()
    assert (info.st_uid, oct(info.st_mode & 0o777)) == (0, "0o600")
    assert planted.read_bytes() == b"SECRET=1\n"
    root_owned = folder / ".env"
    root_owned.write_bytes(b"A=1\n")
    os.chown(root_owned, 0, grp.getgrnam(user).gr_gid)
    sudo_target.write_file(str(root_owned), b"A=2\n", 0o640)
    assert (root_owned.stat().st_uid, root_owned.stat().st_gid) == (0, grp.getgrnam(user).gr_gid)


# --- item 13: a dropped connection ---------------------------------------------------------


@pytest.fixture
def ports_held() -> Iterator[None]:
    """host.ports is compared between two runs: no other test may take 443 or 80 meanwhile."""
    from tests.support.cli import host_ports_lock

    with host_ports_lock():
        yield


def test_a_dropped_connection_is_reopened_for_repeatable_work(
        server: SSHServer, known: Path, target_credentials: SSHCredentials,
        caplog: pytest.LogCaptureFixture, ports_held: None) -> None:
    settings = target_settings(server, known, user="root",
                               identity_file=target_credentials.ed25519_key)
    answers = parse_answers({"version": 1, "platform": "compose",
                             "target": {"host": server.host, "port": server.port,
                                        "user": "root", "known_hosts": str(known),
                                        "identity_file": str(target_credentials.ed25519_key)}})
    checks = select(all_checks(), "compose", ["host", "docker"])

    def preflight(target: SSHTarget, on_event: Any = None) -> dict[str, Status]:
        ctx = CheckContext(target=target, platform="compose", answers=answers,
                           redactor=Redactor(), cancel=threading.Event())
        # One check at a time, so the drop lands between two checks, never inside one.
        return {r.id: r.status for r in run_checks(ctx, checks, on_event=on_event,
                                                   max_workers=1)}

    with connect(settings) as target:
        baseline = preflight(target)
    assert len(baseline) >= 6 and Status.ERROR not in baseline.values(), baseline

    caplog.set_level(logging.INFO, logger="installer.ssh")
    with connect(settings) as target:
        first = target._transport
        dropped: list[str] = []

        def drop_after_first(event: Any) -> None:
            if isinstance(event, CheckFinished) and not dropped:
                dropped.append(event.result.id)
                assert kill_ssh_sessions(server) >= 1
                assert wait_for(lambda: not first.is_active(), 10)

        results = preflight(target, drop_after_first)
        assert dropped and target._transport is not first
        assert target.stats.connections == 2
    # Every check after the drop ran as before: none says "SSH session not active".
    assert results == baseline
    log_text = caplog.text
    assert "was lost" in log_text and f"reconnected to root@127.0.0.1:{server.port}" in log_text


def test_a_command_cut_midway_fails_clearly_and_the_next_reconnects(
        server: SSHServer, known: Path, target_credentials: SSHCredentials) -> None:
    settings = target_settings(server, known, identity_file=target_credentials.ed25519_key)
    with connect(settings) as target:
        timer = threading.Timer(1.0, kill_ssh_sessions, args=(server,))
        timer.start()
        with pytest.raises(ConnectionLostError) as lost:
            target.run(["sleep", "20"], timeout=30)
        timer.join()
        # It may have run: not repeated.
        assert lost.value.started and "was lost" in lost.value.message
        assert target.run(["id", "-un"]).stdout.strip() == SSH_USER
        assert target.read_file("/etc/hostname")

        # When the server is gone, the one reconnection fails clearly and is not retried.
        assert kill_ssh_sessions(server) >= 1
        server.stop()
        try:
            with pytest.raises(TargetError) as gone:
                target.run(["true"], timeout=10)
            assert "reconnecting failed" in gone.value.message
            assert "refused the connection" in gone.value.message
            started = time.monotonic()
            with pytest.raises(TargetError):
                target.read_file("/etc/hostname")
            assert time.monotonic() - started < 3
        finally:
            server.start()


# --- staging: check every file's copy first, then switch them -----------------------------------


@pytest.mark.parametrize("with_sudo", [True, False], ids=["sudo", "sftp"])
def test_staged_files_switch_by_rename(with_sudo: bool, server: SSHServer, known: Path,
                                       target_credentials: SSHCredentials,
                                       root_folder: Path) -> None:
    folder = root_folder / "carto"
    folder.mkdir()
    if not with_sudo:
        shutil.chown(folder, SSH_USER, SSH_USER)
    settings = target_settings(server, known, identity_file=target_credentials.ed25519_key,
                               sudo=with_sudo, password_env="PW",
                               env={"PW": target_credentials.password})
    first, second = folder / "customer.env", folder / ".env"
    first.write_bytes(b"OLD=1\n")
    with connect(settings) as target:
        staged = [target.stage_file(str(first), b"NEW=1\n", 0o600),
                  target.stage_file(str(second), b"NEW=2\n", 0o640)]
        # Staged: whole, checked copies beside the files, which are untouched.
        assert first.read_bytes() == b"OLD=1\n" and not second.exists()
        assert [temp_file_owner(os.path.basename(p)) for p in staged] == ["customer.env",
                                                                          ".env"]
        assert Path(staged[0]).read_bytes() == b"NEW=1\n"
        assert oct(Path(staged[1]).stat().st_mode & 0o777) == "0o640"
        owner = 0 if with_sudo else pwd.getpwnam(SSH_USER).pw_uid
        assert Path(staged[0]).stat().st_uid == owner
        target.switch_file(staged[0], str(first))
        assert first.read_bytes() == b"NEW=1\n"
        # A link that appears before the switch is refused, and the copy can be discarded.
        os.symlink("/etc/hostname", second)
        with pytest.raises(LinkRefused):
            target.switch_file(staged[1], str(second))
        assert second.is_symlink()
        target.discard_file(staged[1])
        with pytest.raises(LinkRefused):
            target.stage_file(str(second), b"X", 0o600)
    assert sorted(os.listdir(folder)) == [".env", "customer.env"]


def test_a_temp_copy_swapped_for_a_link_mid_write_is_not_written_through(
        sudo_target: SSHTarget, other_user_folder: tuple[Path, str]) -> None:
    """She sees the sudo write's temp copy appear (the folder is readable), deletes it and
    puts a link to a root-only file under its name. Root keeps writing into the copy it
    opened, never through her link, and says the file was replaced under it."""
    folder, user = other_user_folder
    victim = Path("/root/carto-hardening-victim")
    victim.write_bytes(b"ROOT ONLY\n")
    victim.chmod(0o600)
    # Watches until it swaps (bounded by time, not by a count of tries: on a loaded machine
    # the write may start seconds after the watcher).
    swap = ("while :; do for f in \"$1\"/.customer.env.*.tmp; do "
            "if [ -f \"$f\" ] && [ ! -L \"$f\" ]; then rm -f \"$f\"; ln -s \"$2\" \"$f\"; "
            "exit 0; fi; done; done")
    swapper = subprocess.Popen(["timeout", "120", "setpriv", f"--reuid={user}", f"--regid={user}",
                                "--init-groups", "--", "sh", "-c", swap, "sh", str(folder),
                                str(victim)])
    try:
        with pytest.raises(OSError) as replaced:
            sudo_target.write_file(str(folder / "customer.env"), b"S" * (24 * 2**20), 0o644)
        assert swapper.wait(timeout=30) == 0  # the swap happened
        assert "replaced by someone else" in str(replaced.value)
        assert victim.read_bytes() == b"ROOT ONLY\n"
        assert oct(victim.stat().st_mode & 0o777) == "0o600" and victim.stat().st_uid == 0
    finally:
        if swapper.poll() is None:
            swapper.terminate()  # timeout(1) passes it on to the watcher
            swapper.wait(timeout=10)
        victim.unlink(missing_ok=True)
