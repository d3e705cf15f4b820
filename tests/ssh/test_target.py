"""SSHTarget against a real OpenSSH server: logins, sudo, jump host, host keys, files, TCP
from the target, the remote Docker engine, resumable uploads and hostile values.

The sshd runs on loopback in its own mount namespace (tests/services/sshd.py), so /etc/os-release
differs from this machine's while the filesystem is shared: what SFTP writes can be checked
here with os.stat.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import pwd
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import docker
import docker.errors
import pytest

from installer.errors import InputError, TargetError
from installer.hostkeys import (
    HostKeyChangedError,
    HostKeyMismatchError,
    UnknownHostKeyError,
    fingerprint,
    host_matches,
    parse_accepted,
    parse_known_hosts,
)
from installer.redact import Redactor
from installer.render import stale_temp_files
from installer.ssh import ConnectionLostError, SSHTarget, parse_df
from installer.target import CommandNotFound, LocalTarget
from tests.services.sshd import SSHCredentials, SSHServer
from tests.services.sshd_target_user import CANARY, SSHAgent, SSHServers
from tests.services.tls_ca import TestCA, tls_server
from tests.support.ssh_target import (
    SSH_USER,
    kill_ssh_sessions,
    open_folder,
    target_settings,
    trust,
    wait_for,
)


def connect(settings, *, accept: str | None = None, confirm=None, redactor=None,
            prompt=None) -> SSHTarget:
    return SSHTarget.connect(settings, accept_host_key=accept, confirm_host_key=confirm,
                             redactor=redactor, passphrase_prompt=prompt)


@pytest.fixture
def known_hosts(tmp_path: Path, shared_ssh_server: SSHServer) -> Path:
    return trust(tmp_path / "known_hosts", shared_ssh_server)


@pytest.fixture
def key_target(shared_ssh_server: SSHServer, target_credentials: SSHCredentials,
               known_hosts: Path):
    settings = target_settings(shared_ssh_server, known_hosts,
                               identity_file=target_credentials.ed25519_key)
    with connect(settings) as target:
        yield target


@pytest.fixture
def no_agent(monkeypatch: pytest.MonkeyPatch) -> None:
    """Logins in these tests must not succeed through an agent the developer runs."""
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)


# --- logging in -----------------------------------------------------------------------------


def test_key_login_runs_argv_commands_as_that_user(key_target: SSHTarget,
                                                   shared_ssh_server: SSHServer) -> None:
    assert key_target.name == f"{SSH_USER}@127.0.0.1:{shared_ssh_server.port}"
    assert not key_target.is_local
    result = key_target.run(["id", "-un"])
    assert (result.returncode, result.stdout, result.stderr) == (0, f"{SSH_USER}\n", "")

    split = key_target.run(["sh", "-c", 'echo out; echo err >&2; exit 7'])
    assert (split.returncode, split.stdout, split.stderr) == (7, "out\n", "err\n")
    assert key_target.run(["cat"], input=b"from stdin").stdout == "from stdin"
    assert key_target.run(["wc", "-c"], input=b"x" * 3_000_000).stdout.strip() == "3000000"
    env = key_target.run(["sh", "-c", 'printf "%s|%s" "$A" "$PWD"'], env={"A": "1 $(x) 'q'"},
                         cwd="/tmp")
    assert env.stdout == "1 $(x) 'q'|/tmp"
    with pytest.raises(CommandNotFound):
        key_target.run(["carto-no-such-program", "--version"])
    assert key_target.which("sh") and key_target.which("carto-no-such-program") is None
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        key_target.run(["sleep", "10"], timeout=0.5)
    assert time.monotonic() - started < 3
    # The connection is still usable after a timed-out command.
    assert key_target.run(["true"]).ok


def test_password_login_from_password_env(shared_ssh_server: SSHServer,
                                          target_credentials: SSHCredentials,
                                          known_hosts: Path, no_agent: None) -> None:
    env = {"SSH_PASSWORD": target_credentials.password}
    settings = target_settings(shared_ssh_server, known_hosts, password_env="SSH_PASSWORD",
                               env=env)
    redactor = Redactor()
    with connect(settings, redactor=redactor) as target:
        assert target.run(["id", "-un"]).stdout.strip() == SSH_USER
    assert target_credentials.password in redactor

    wrong = target_settings(shared_ssh_server, known_hosts, password_env="SSH_PASSWORD",
                            env={"SSH_PASSWORD": "not-" + target_credentials.password})
    with pytest.raises(TargetError) as refused:
        connect(wrong)
    assert refused.value.exit_code == 3
    assert "refused the SSH login" in refused.value.message
    assert "password" in refused.value.message
    assert target_credentials.password not in str(refused.value)


def test_encrypted_identity_file_asks_for_its_passphrase(shared_ssh_server: SSHServer,
                                                         target_credentials: SSHCredentials,
                                                         known_hosts: Path,
                                                         no_agent: None) -> None:
    settings = target_settings(shared_ssh_server, known_hosts,
                               identity_file=target_credentials.rsa_key)
    asked: list[str] = []

    def prompt(question: str) -> str:
        asked.append(question)
        return target_credentials.rsa_passphrase

    redactor = Redactor()
    with connect(settings, prompt=prompt, redactor=redactor) as target:
        assert target.run(["id", "-un"]).stdout.strip() == SSH_USER
    assert asked == [f"Passphrase for {target_credentials.rsa_key}"]
    assert target_credentials.rsa_passphrase in redactor

    # Non-interactive, and no agent holds the key: say how to fix it.
    with pytest.raises(TargetError) as no_prompt:
        connect(settings)
    assert f"ssh-add {target_credentials.rsa_key}" in no_prompt.value.remediation

    with pytest.raises(TargetError) as wrong:
        connect(settings, prompt=lambda _: "wrong passphrase")
    assert "passphrase" in wrong.value.remediation


def test_agent_holds_the_encrypted_key(shared_ssh_server: SSHServer,
                                       target_credentials: SSHCredentials, known_hosts: Path,
                                       ssh_agent: SSHAgent, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    ssh_agent.add(target_credentials.rsa_key, target_credentials.rsa_passphrase, tmp_path)
    assert len(ssh_agent.keys()) == 1
    monkeypatch.setenv("SSH_AUTH_SOCK", str(ssh_agent.socket))

    # The identity file is encrypted and nobody can type its passphrase: the agent signs.
    with_file = target_settings(shared_ssh_server, known_hosts,
                                identity_file=target_credentials.rsa_key)
    with connect(with_file, prompt=lambda _: pytest.fail("asked for a passphrase")) as target:
        assert target.run(["id", "-un"]).stdout.strip() == SSH_USER
    # No identity file at all: the agent's keys.
    agent_only = target_settings(shared_ssh_server, known_hosts)
    with connect(agent_only) as target:
        assert target.run(["id", "-un"]).stdout.strip() == SSH_USER
    # Root logs in with keys only; through the agent too.
    as_root = target_settings(shared_ssh_server, known_hosts, user="root")
    with connect(as_root) as target:
        assert target.run(["id", "-u"]).stdout.strip() == "0"


def test_no_way_to_log_in_is_explained(shared_ssh_server: SSHServer, known_hosts: Path,
                                       no_agent: None) -> None:
    with pytest.raises(TargetError) as nothing:
        connect(target_settings(shared_ssh_server, known_hosts))
    assert "no way to log in" in nothing.value.message
    assert "password_env" in nothing.value.remediation
    missing = target_settings(shared_ssh_server, known_hosts,
                              identity_file=Path("/nonexistent/id_ed25519"))
    with pytest.raises(InputError) as bad_file:
        connect(missing)
    assert bad_file.value.exit_code == 2 and "does not exist" in bad_file.value.message


# --- sudo ---------------------------------------------------------------------------------


def test_sudo_with_the_password_on_stdin(shared_ssh_server: SSHServer,
                                         target_credentials: SSHCredentials, known_hosts: Path,
                                         caplog: pytest.LogCaptureFixture) -> None:
    password = target_credentials.password
    settings = target_settings(shared_ssh_server, known_hosts,
                               identity_file=target_credentials.ed25519_key,
                               password_env="PW", env={"PW": password}, sudo=True)
    caplog.set_level(logging.DEBUG, logger="installer")
    with connect(settings) as target:
        first = target.run(["id", "-u"], sudo=True)
        assert (first.returncode, first.stdout) == (0, "0\n")
        # Again on the same connection: sudo may remember the first password per parent
        # process; the password line must still never reach the command's stdin.
        again = target.run(["cat"], sudo=True, input=b"only this")
        assert again.stdout == "only this"
        with_env = target.run(["sh", "-c", 'echo "$V:$(id -u):$PWD"'], sudo=True,
                              env={"V": "v a l"}, cwd="/")
        assert with_env.stdout == "v a l:0:/\n"
        with pytest.raises(CommandNotFound):
            target.run(["carto-no-such-program"], sudo=True)
        assert target.run(["id", "-u"]).stdout == f"{pw_uid()}\n"
    for result in (first, again, with_env):
        assert password not in " ".join(result.argv)
        assert result.argv[:2] == ["sudo", "-k"]
    assert password not in caplog.text
    assert f"run ({SSH_USER}@" in caplog.text


def pw_uid() -> int:
    return pwd.getpwnam(SSH_USER).pw_uid


def test_sudo_without_password_and_refusals(ssh_servers: SSHServers,
                                            target_credentials: SSHCredentials,
                                            tmp_path: Path) -> None:
    nopasswd = ssh_servers(sudo="nopasswd")
    none = ssh_servers(sudo="none")
    password_server = ssh_servers(sudo="password")
    known = trust(tmp_path / "known_hosts", nopasswd, none, password_server)
    key = target_credentials.ed25519_key

    with connect(target_settings(nopasswd, known, identity_file=key, sudo=True)) as target:
        result = target.run(["id", "-u"], sudo=True)
        assert result.stdout == "0\n" and result.argv[:3] == ["sudo", "-n", "--"]

    no_rule = target_settings(none, known, identity_file=key, sudo=True, password_env="PW",
                              env={"PW": target_credentials.password})
    with connect(no_rule) as target:
        with pytest.raises(TargetError) as denied:
            target.run(["id"], sudo=True)
    assert "may not use sudo" in denied.value.message
    assert "usermod -aG sudo" in denied.value.remediation

    with connect(target_settings(password_server, known, identity_file=key,
                                 sudo=True)) as target:
        with pytest.raises(TargetError) as needs:
            target.run(["id"], sudo=True)
    assert "needs the password" in needs.value.message
    assert "password_env" in needs.value.remediation

    wrong = target_settings(password_server, known, identity_file=key, sudo=True,
                            password_env="PW", env={"PW": "wrong-password"})
    with connect(wrong) as target:
        with pytest.raises(TargetError) as refused:
            target.run(["id"], sudo=True)
    assert "refused the password" in refused.value.message


# --- jump host ----------------------------------------------------------------------------


def test_jump_host(ssh_servers: SSHServers, target_credentials: SSHCredentials,
                   tmp_path: Path) -> None:
    bastion = ssh_servers(allow_tcp_forwarding=True)
    closed_bastion = ssh_servers(allow_tcp_forwarding=False)
    target_server = ssh_servers(allow_tcp_forwarding=False)
    known = trust(tmp_path / "known_hosts", bastion, closed_bastion, target_server)
    key = target_credentials.ed25519_key

    settings = target_settings(target_server, known, identity_file=key, jump=bastion)
    with connect(settings) as target:
        assert target.run(["id", "-un"]).stdout.strip() == SSH_USER
        assert target.name == f"{SSH_USER}@127.0.0.1:{target_server.port}"
        # Everything rides the tunnel: ending the bastion's session ends the target's.
        first = target._transport
        assert target.stats.connections == 2  # the bastion, then the target through it
        assert kill_ssh_sessions(bastion) >= 1
        assert wait_for(lambda: not first.is_active(), 10)
        # The next command reconnects, through the bastion again (both host keys verified).
        assert target.run(["id", "-un"], timeout=20).stdout.strip() == SSH_USER
        assert target.stats.connections == 4 and target._transport is not first

    # Only the bastion could have carried it: one that refuses forwarding cannot.
    through_closed = target_settings(target_server, known, identity_file=key,
                                     jump=closed_bastion)
    with pytest.raises(TargetError) as refused:
        connect(through_closed)
    assert "AllowTcpForwarding" in refused.value.message

    # The bastion's own host key is verified like the target's.
    only_target = trust(tmp_path / "only_target", target_server)
    with pytest.raises(UnknownHostKeyError) as unknown:
        connect(target_settings(target_server, only_target, identity_file=key,
                                jump=closed_bastion))
    assert "(jump host)" in unknown.value.message
    assert closed_bastion.host_key_fingerprint() in unknown.value.message

    # Both unknown: one flag accepts both fingerprints, and both are recorded.
    fresh_bastion = ssh_servers(allow_tcp_forwarding=True)
    empty = tmp_path / "empty_known_hosts"
    both = f"{fresh_bastion.host_key_fingerprint()},{target_server.host_key_fingerprint()}"
    with connect(target_settings(target_server, empty, identity_file=key, jump=fresh_bastion),
                 accept=both) as target:
        assert target.run(["true"]).ok
    assert empty.read_text().splitlines() == [fresh_bastion.known_hosts_line(),
                                              target_server.known_hosts_line()]


# --- host keys ------------------------------------------------------------------------------


def _login_attempts(server: SSHServer) -> list[str]:
    return [line for line in server.log_file.read_text(errors="replace").splitlines()
            if "Accepted" in line or "Failed" in line]


def test_unknown_host_key_is_refused_without_acceptance(one_ssh_server: SSHServer,
                                                        target_credentials: SSHCredentials,
                                                        tmp_path: Path) -> None:
    known = tmp_path / "ssh" / "known_hosts"
    settings = target_settings(one_ssh_server, known, identity_file=target_credentials.ed25519_key)
    with pytest.raises(UnknownHostKeyError) as unknown:
        connect(settings)
    shown = one_ssh_server.host_key_fingerprint()
    assert unknown.value.exit_code == 2
    assert shown in unknown.value.message
    assert f"--accept-host-key {shown}" in unknown.value.remediation
    assert not known.exists()
    # Refused before any credential was offered.
    assert _login_attempts(one_ssh_server) == []

    # A wrong fingerprint is a refusal (exit 3), and nothing is recorded.
    other = fingerprint(b"\x00\x00\x00\x0bssh-ed25519" + b"\x00" * 36)
    with pytest.raises(HostKeyMismatchError) as mismatch:
        connect(settings, accept=other)
    assert mismatch.value.exit_code == 3 and shown in mismatch.value.message
    assert not known.exists()

    # The wizard's confirmation: declined, then accepted.
    seen: list[tuple[str, str]] = []
    with pytest.raises(UnknownHostKeyError):
        connect(settings, confirm=lambda who, fp: seen.append((who, fp)) or False)
    assert seen == [(f"{SSH_USER}@127.0.0.1:{one_ssh_server.port}", shown)]
    assert not known.exists()
    with connect(settings, confirm=lambda who, fp: True) as target:
        assert target.run(["true"]).ok
    assert known.read_text() == one_ssh_server.known_hosts_line() + "\n"
    assert oct(known.stat().st_mode & 0o777) == "0o600"
    assert oct(known.parent.stat().st_mode & 0o777) == "0o700"


def test_accepted_fingerprint_is_recorded_as_openssh_reads_it(
        one_ssh_server: SSHServer, target_credentials: SSHCredentials, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.write_text("# kept\nother.example.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA"
                     "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")  # no final newline
    settings = target_settings(one_ssh_server, known, identity_file=target_credentials.ed25519_key)
    with connect(settings, accept=one_ssh_server.host_key_fingerprint()) as target:
        assert target.run(["true"]).ok
    lines = known.read_text().splitlines()
    assert lines[:2] == ["# kept", lines[1]] and lines[2] == one_ssh_server.known_hosts_line()
    # OpenSSH's own tools find it, and the real ssh client trusts it in strict mode.
    found = subprocess.run(["ssh-keygen", "-F", f"[127.0.0.1]:{one_ssh_server.port}", "-f",
                            str(known)], capture_output=True, text=True, check=False)
    assert found.returncode == 0, found.stderr
    client = subprocess.run(
        ["ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
         "-o", f"UserKnownHostsFile={known}", "-o", "GlobalKnownHostsFile=/dev/null",
         "-i", str(target_credentials.ed25519_key), "-p", str(one_ssh_server.port),
         f"{SSH_USER}@127.0.0.1", "echo", "strict-ok"],
        capture_output=True, text=True, timeout=30, check=False, stdin=subprocess.DEVNULL)
    assert client.stdout.strip() == "strict-ok", client.stderr
    # Known now: no flag needed, nothing appended.
    with connect(settings) as target:
        assert target.run(["true"]).ok
    assert known.read_text().splitlines() == lines


def test_changed_host_key_is_always_refused(one_ssh_server: SSHServer,
                                            target_credentials: SSHCredentials,
                                            tmp_path: Path) -> None:
    known = trust(tmp_path / "known_hosts", one_ssh_server)
    before = known.read_text()
    old = one_ssh_server.host_key_fingerprint()
    one_ssh_server.restart(new_host_key=True)  # same port, new key: a reinstall or an attacker
    new = one_ssh_server.host_key_fingerprint()
    assert new != old
    settings = target_settings(one_ssh_server, known, identity_file=target_credentials.ed25519_key)
    attempts = [
        dict(),
        dict(accept=new),
        dict(confirm=lambda who, fp: pytest.fail("asked to accept a changed key")),
    ]
    for options in attempts:
        with pytest.raises(HostKeyChangedError) as changed:
            connect(settings, **options)
        assert changed.value.exit_code == 3
        assert "CHANGED" in changed.value.message and "man-in-the-middle" in changed.value.message
        assert old in changed.value.message and new in changed.value.message
        assert f"ssh-keygen -R '[127.0.0.1]:{one_ssh_server.port}'" in changed.value.remediation
    assert known.read_text() == before
    assert _login_attempts(one_ssh_server) == []


def test_hashed_and_wildcard_known_hosts(one_ssh_server: SSHServer,
                                         target_credentials: SSHCredentials,
                                         tmp_path: Path) -> None:
    known = trust(tmp_path / "known_hosts", one_ssh_server)
    subprocess.run(["ssh-keygen", "-H", "-f", str(known)], capture_output=True, check=True)
    assert known.read_text().startswith("|1|")
    settings = target_settings(one_ssh_server, known, identity_file=target_credentials.ed25519_key)
    with connect(settings) as target:
        assert target.run(["true"]).ok

    key = one_ssh_server.host_public_key
    wildcard = tmp_path / "wildcard"
    wildcard.write_text(f"[127.0.0.?]:{one_ssh_server.port},!other {key}\n")
    with connect(target_settings(one_ssh_server, wildcard,
                                 identity_file=target_credentials.ed25519_key)) as target:
        assert target.run(["true"]).ok
    negated = tmp_path / "negated"
    negated.write_text(f"[127.0.0.*]:*,![127.0.0.1]:{one_ssh_server.port} {key}\n")
    with pytest.raises(UnknownHostKeyError):
        connect(target_settings(one_ssh_server, negated,
                                identity_file=target_credentials.ed25519_key))
    revoked = tmp_path / "revoked"
    revoked.write_text(f"@revoked * {key}\n{one_ssh_server.known_hosts_line()}\n")
    with pytest.raises(HostKeyChangedError) as refused:
        connect(target_settings(one_ssh_server, revoked,
                                identity_file=target_credentials.ed25519_key))
    assert "@revoked" in refused.value.message


def test_known_hosts_parsing_and_flag_format() -> None:
    entries = parse_known_hosts("# c\n\n@cert-authority *.example ssh-ed25519 AAAA\n"
                                "a,b ssh-rsa !!!notbase64\nhost ssh-ed25519 AAAAC3Nz\n")
    assert [(e.marker, e.patterns) for e in entries] == [("@cert-authority", "*.example"),
                                                        ("", "host")]
    assert host_matches("[h]:2222", "[h]:2222") and not host_matches("[h]:2222", "h")
    assert host_matches("H.Example.COM", "h.example.com")
    fp = "SHA256:" + "A" * 43
    assert parse_accepted(f" {fp}=, {fp}") == [fp, fp]
    for bad in ("MD5:aa:bb", "SHA256:short", "ssh-ed25519 AAAA"):
        with pytest.raises(InputError) as malformed:
            parse_accepted(bad)
        assert malformed.value.exit_code == 2


# --- files --------------------------------------------------------------------------------


@pytest.fixture
def root_folder() -> Iterator[Path]:
    """A folder owned by root that other users may enter but not write."""
    folder = open_folder("carto-ssh-root-", 0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_files_over_sftp(key_target: SSHTarget, remote_dir: Path) -> None:
    path = str(remote_dir / "customer.env")
    key_target.write_file(path, b"A=1\n")
    assert (remote_dir / "customer.env").read_bytes() == b"A=1\n"
    assert oct((remote_dir / "customer.env").stat().st_mode & 0o777) == "0o600"
    inode = (remote_dir / "customer.env").stat().st_ino
    key_target.write_file(path, b"A=2\n", mode=0o640)
    after = (remote_dir / "customer.env").stat()
    assert after.st_ino != inode  # replaced by rename, never rewritten in place
    assert oct(after.st_mode & 0o777) == "0o640"
    assert key_target.read_file(path) == b"A=2\n"
    assert os.listdir(remote_dir) == ["customer.env"]  # no temp file left behind

    key_target.makedirs(str(remote_dir / "certs" / "deep"), mode=0o700)
    assert oct((remote_dir / "certs" / "deep").stat().st_mode & 0o777) == "0o700"
    key_target.makedirs(str(remote_dir / "certs"))  # already there: fine
    with pytest.raises(FileExistsError):
        key_target.makedirs(path)
    assert key_target.listdir(str(remote_dir)) == ["certs", "customer.env"]
    assert key_target.exists(path) and not key_target.exists(path + ".nope")
    with pytest.raises(FileNotFoundError):
        key_target.read_file(path + ".nope")
    with pytest.raises(PermissionError):
        key_target.read_file("/etc/shadow")
    assert key_target.read_text("/etc/shadow") is None
    with pytest.raises(PermissionError):
        key_target.write_file("/etc/carto-test-denied", b"x")

    key_target.remove(str(remote_dir / "certs"))
    key_target.remove(path)
    assert os.listdir(remote_dir) == []
    with pytest.raises(FileNotFoundError):
        key_target.remove(path)

    size, free = key_target.disk_usage(str(remote_dir))
    stats = os.statvfs(remote_dir)
    assert size == stats.f_blocks * stats.f_frsize
    assert abs(free - stats.f_bavail * stats.f_frsize) < 256 * 2**20


def test_parse_df_formats() -> None:
    assert parse_df("1B-blocks      Avail\n1000 400\n") == (1000, 400)
    posix = ("Filesystem     1024-blocks    Used Available Capacity Mounted on\n"
             "/dev/sda1        1000   600       400      60% /\n")
    assert parse_df(posix) == (1000 * 1024, 400 * 1024)


def test_sudo_writes_into_root_owned_folders(shared_ssh_server: SSHServer,
                                             target_credentials: SSHCredentials,
                                             known_hosts: Path, root_folder: Path) -> None:
    folder = root_folder / "opt-carto"
    folder.mkdir(mode=0o755)
    existing = folder / "customer.env"
    existing.write_bytes(b"OLD=1\n")
    existing.chmod(0o600)
    settings = target_settings(shared_ssh_server, known_hosts,
                               identity_file=target_credentials.ed25519_key, sudo=True,
                               password_env="PW", env={"PW": target_credentials.password})
    with connect(settings) as target:
        assert target.read_file(str(existing)) == b"OLD=1\n"  # root-only: read through sudo
        target.write_file(str(existing), b"NEW=2\n")
        target.write_file(str(folder / "certs.key"), b"secret key", mode=0o640)
        target.makedirs(str(folder / "certs"), mode=0o750)
        assert target.exists(str(folder / "certs"))
        assert target.listdir(str(folder)) == ["certs", "certs.key", "customer.env"]
        target.remove(str(folder / "certs"))
        target.remove(str(folder / "certs.key"))
    assert existing.read_bytes() == b"NEW=2\n"
    assert oct(existing.stat().st_mode & 0o777) == "0o600" and existing.stat().st_uid == 0
    assert sorted(os.listdir(folder)) == ["customer.env"]


# --- connections from the target ----------------------------------------------------------


def _https_over(sock: socket.socket, ca_file: Path) -> bytes:
    context = ssl.create_default_context(cafile=str(ca_file))
    with context.wrap_socket(sock, server_hostname="127.0.0.1") as tls:
        tls.sendall(b"GET / HTTP/1.0\r\n\r\n")
        return tls.recv(4096)


@pytest.mark.parametrize("forwarding", [True, False], ids=["direct-tcpip", "relay"])
def test_tls_from_the_target(forwarding: bool, ssh_servers: SSHServers,
                             target_credentials: SSHCredentials, test_ca: TestCA,
                             tmp_path: Path) -> None:
    server = ssh_servers(allow_tcp_forwarding=forwarding)
    known = trust(tmp_path / "known_hosts", server)
    issued = test_ca.issue(["127.0.0.1"])
    with connect(target_settings(server, known, identity_file=target_credentials.ed25519_key)) \
            as target, tls_server(issued.fullchain, issued.key) as https:
        reply = _https_over(target.open_connection("127.0.0.1", https.port, 5), test_ca.ca_file)
        assert reply.startswith(b"HTTP/1.1 200 OK")
        assert https.handshakes == 1
        assert target.stats.forwards == (1 if forwarding else 0)
        # Several at once (the egress checks run concurrently).
        with ThreadPoolExecutor(8) as pool:
            replies = list(pool.map(
                lambda _: _https_over(target.open_connection("127.0.0.1", https.port, 5),
                                      test_ca.ca_file), range(8)))
        assert all(r.startswith(b"HTTP/1.1 200 OK") for r in replies)
        with socket.socket() as closed:
            closed.bind(("127.0.0.1", 0))
            free_port = closed.getsockname()[1]
        with pytest.raises(ConnectionRefusedError):
            target.open_connection("127.0.0.1", free_port, 5)
        with pytest.raises(ValueError):
            target.open_connection("bad host; rm -rf /", 443, 5)


# --- the remote Docker engine ---------------------------------------------------------------


def test_docker_engine_over_ssh(shared_ssh_server: SSHServer, target_credentials: SSHCredentials,
                                known_hosts: Path, docker_engine: docker.DockerClient) -> None:
    local = docker_engine.version()
    key = target_credentials.ed25519_key
    with connect(target_settings(shared_ssh_server, known_hosts, user="root",
                                 identity_file=key)) as target:
        client = target.docker_client(timeout=20)
        assert client.version()["Version"] == local["Version"]
        assert client.info()["ID"] == docker_engine.info()["ID"]
        assert {i.id for i in client.images.list()} == {i.id for i in docker_engine.images.list()}
        client.containers.list(all=True)
        client.networks.list()
        # One API connection (one SSH session, one `docker` on the target) for all of it,
        # however many endpoints; and one shared client.
        assert target.stats.commands == 1
        assert target.docker_client(timeout=20) is client
    # A non-root user through sudo (password on stdin ahead of the API stream).
    with connect(target_settings(shared_ssh_server, known_hosts, identity_file=key, sudo=True,
                                 password_env="PW",
                                 env={"PW": target_credentials.password})) as target:
        client = target.docker_client(timeout=20)
        assert client.info()["ID"] == docker_engine.info()["ID"]
    # Without sudo, the socket is not the user's: the engine's own words come back.
    with connect(target_settings(shared_ssh_server, known_hosts, identity_file=key)) as target:
        with pytest.raises(docker.errors.DockerException) as denied:
            target.docker_client(timeout=20)
    assert "permission denied" in str(denied.value).lower()


# --- uploads ----------------------------------------------------------------------------


def test_upload_resumes_after_a_dropped_connection(one_ssh_server: SSHServer,
                                                   target_credentials: SSHCredentials,
                                                   tmp_path: Path, remote_dir: Path) -> None:
    archive = tmp_path / "images.tar"
    archive.write_bytes(os.urandom(24 * 2**20))
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    remote = str(remote_dir / "carto images.tar")
    known = trust(tmp_path / "known_hosts", one_ssh_server)
    settings = target_settings(one_ssh_server, known, identity_file=target_credentials.ed25519_key)

    seen: list[int] = []

    def cut_midway(done: int, total: int) -> None:
        seen.append(done)
        if done >= total // 3 and len(seen) < 1000:
            seen.extend([0] * 1000)  # cut only once
            kill_ssh_sessions(one_ssh_server)

    with connect(settings) as target, pytest.raises(TargetError) as dropped:
        target.upload(str(archive), remote, progress=cut_midway)
    assert "dropped while uploading" in dropped.value.message
    assert "resumes" in dropped.value.remediation
    assert not os.path.exists(remote)  # the final name only ever holds a whole file
    kept = os.path.getsize(remote + ".partial")
    assert 0 < kept < archive.stat().st_size

    progress: list[tuple[int, int]] = []
    with connect(settings) as target:
        assert target.upload(str(archive), remote, progress=lambda d, t: progress.append((d, t))
                             ) == digest
    assert progress[0][0] > kept - 1 and progress[-1] == (archive.stat().st_size,) * 2
    assert hashlib.sha256(Path(remote).read_bytes()).hexdigest() == digest
    assert not os.path.exists(remote + ".partial")
    assert oct(os.stat(remote).st_mode & 0o777) == "0o600"

    # Already there: nothing is sent again.
    with connect(settings) as target:
        before = target.stats.sftp_requests
        assert target.upload(str(archive), remote) == digest
        assert target.stats.sftp_requests - before < 10


def _kill_when_temp_grows(server: SSHServer, folder: Path, prefix: str,
                          size: int) -> threading.Thread:
    """Kill the server's sessions once a temp file `prefix`* in `folder` holds `size` bytes:
    the connection then drops in the middle of that file's transfer, not before or after."""
    def watch() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for entry in os.listdir(folder):
                if entry.startswith(prefix):
                    with contextlib.suppress(OSError):
                        if (folder / entry).stat().st_size >= size:
                            kill_ssh_sessions(server)
                            return
            time.sleep(0.005)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    return watcher


def test_a_dropped_connection_leaves_whole_files(one_ssh_server: SSHServer,
                                                 target_credentials: SSHCredentials,
                                                 tmp_path: Path, remote_dir: Path) -> None:
    known = trust(tmp_path / "known_hosts", one_ssh_server)
    settings = target_settings(one_ssh_server, known, identity_file=target_credentials.ed25519_key)
    path = remote_dir / "big.env"
    path.write_bytes(b"OLD\n")
    shutil.chown(path, SSH_USER, SSH_USER)
    with connect(settings) as target:
        watcher = _kill_when_temp_grows(one_ssh_server, remote_dir, ".big.env.", 2 * 2**20)
        # A write cut mid-transfer is not repeated: it fails, saying the connection is gone.
        with pytest.raises(ConnectionLostError) as dropped:
            target.write_file(str(path), os.urandom(48 * 2**20))
        watcher.join()
        assert "was lost" in dropped.value.message
    assert path.read_bytes() == b"OLD\n"
    # The server died before it could be told to remove its partial copy; the next render
    # recognises that copy as its own (the names agree) and removes it.
    left = sorted(str(remote_dir / e) for e in os.listdir(remote_dir) if e != "big.env")
    assert len(left) == 1 and 0 < os.path.getsize(left[0]) < 48 * 2**20
    assert stale_temp_files(LocalTarget(), [str(path)]) == left
    with connect(settings) as target:
        target.write_file(str(path), b"NEW\n")
        assert stale_temp_files(target, [str(path)]) == left
        target.remove(left[0])
    assert path.read_bytes() == b"NEW\n"
    assert os.listdir(remote_dir) == ["big.env"]


# --- hostile values -----------------------------------------------------------------------


def test_hostile_values_never_execute(shared_ssh_server: SSHServer, known_hosts: Path,
                                      hostile_ssh_user: tuple[str, str], root_folder: Path,
                                      no_agent: None, caplog: pytest.LogCaptureFixture) -> None:
    user, password = hostile_ssh_user
    CANARY.unlink(missing_ok=True)
    caplog.set_level(logging.DEBUG, logger="installer")
    redactor = Redactor()
    settings = target_settings(shared_ssh_server, known_hosts, user=user, password_env="PW",
                               env={"PW": password}, sudo=True)
    hostile = f"a'b\"c; touch {CANARY}; $(touch {CANARY}) `touch {CANARY}` d e|f&g"
    # File names cannot hold "/": there, the command would make a file in its working folder.
    named = "a'b\"c; touch carto-pwned; $(touch carto-pwned) `touch carto-pwned` d e|f&g*"
    folder = root_folder / f"dir {named}"
    folder.mkdir()
    folder.chmod(0o755)  # root-owned: writes go through sudo
    with connect(settings, redactor=redactor) as target:
        assert target.run(["id", "-un"]).stdout.strip() == user
        assert target.run(["printf", "%s", hostile]).stdout == hostile
        assert target.run(["id", "-u"], sudo=True).stdout == "0\n"
        assert target.run(["printf", "%s", hostile], sudo=True, env={"H": hostile},
                          cwd=str(folder)).stdout == hostile
        assert target.run(["sh", "-c", 'printf "%s" "$H"'], env={"H": hostile}).stdout == hostile
        file = str(folder / f"f {named}")
        target.write_file(file, hostile.encode())
        assert target.read_file(file) == hostile.encode()
        assert target.exists(file)
        assert target.listdir(str(folder)) == [f"f {named}"]
        target.makedirs(str(folder / named))
        target.remove(str(folder / named))
        target.remove(file)
        assert target.disk_usage(str(folder))[0] > 0
        with pytest.raises(ValueError):
            target.open_connection(hostile, 443, 2)
    assert os.listdir(folder) == []
    assert not CANARY.exists()
    for where in (Path("/"), Path("/root"), Path(pwd.getpwnam(user).pw_dir), root_folder):
        assert not (where / "carto-pwned").exists()
    assert password not in caplog.text
    assert redactor(f"x{password}y") == "x********y"


# --- many at once -----------------------------------------------------------------------------


def test_concurrent_commands_share_one_connection(key_target: SSHTarget) -> None:
    # More than OpenSSH's 10 sessions per connection at once: they queue, none fails.
    with ThreadPoolExecutor(24) as pool:
        outputs = list(pool.map(lambda i: key_target.run(["sh", "-c", f"sleep 0.2; echo {i}"])
                                .stdout.strip(), range(24)))
    assert outputs == [str(i) for i in range(24)]
    assert key_target.stats.connections == 1


def test_cli_asks_for_the_identity_passphrase_on_the_terminal(
        shared_ssh_server: SSHServer, target_credentials: SSHCredentials, known_hosts: Path,
        tmp_path: Path, no_agent: None) -> None:
    """The command line, on a real terminal, asks for an encrypted key's passphrase without
    echoing it, then checks the remote machine."""
    import json

    import pexpect
    import yaml

    from tests.support.cli import cli_env

    answers = tmp_path / "answers.yaml"
    answers.write_text(yaml.safe_dump({"version": 1, "target": {
        "host": shared_ssh_server.host, "port": shared_ssh_server.port, "user": SSH_USER,
        "identity_file": str(target_credentials.rsa_key), "known_hosts": str(known_hosts)}}))
    env = cli_env()
    env.pop("SSH_AUTH_SOCK", None)
    child = pexpect.spawn(sys.executable, ["-m", "installer", "preflight", "--answers",
                                           str(answers), "--only", "host.os", "--format", "json"],
                          env=env, cwd=str(tmp_path), encoding="utf-8", timeout=60)
    child.expect(f"Passphrase for {target_credentials.rsa_key}: ")
    child.sendline(target_credentials.rsa_passphrase)
    child.expect(pexpect.EOF)
    child.close()
    output = child.before
    assert target_credentials.rsa_passphrase not in output
    report = json.loads(output[output.index("{"):])
    assert report["target"] == f"{SSH_USER}@{shared_ssh_server.host}:{shared_ssh_server.port}"
    assert report["checks"][0]["observed"].startswith("Ubuntu 22.04")
