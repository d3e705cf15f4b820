"""A jump host (bastion) that writes down every password offered to it.

A paramiko SSH server on loopback: it refuses public keys (like a bastion that wants
passwords, where a leaked password would be collected), accepts one user with one password,
and forwards `direct-tcpip` channels to where the client asks (the real sshd of the tests),
so a client can go through it to a real target. `offered` lists (user, password) of every
password login tried, whatever its outcome.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import paramiko
import pytest

from tests.services.tls_ca import LOOPBACK


class _Bastion(paramiko.ServerInterface):
    def __init__(self, owner: RecordingBastion) -> None:
        self.owner = owner

    def get_allowed_auths(self, username: str) -> str:
        return "password,publickey"

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        with self.owner.lock:
            self.owner.keys_offered.append((username, key.get_fingerprint().hex()))
        return paramiko.AUTH_FAILED

    def check_auth_password(self, username: str, password: str) -> int:
        with self.owner.lock:
            self.owner.offered.append((username, password))
        if (username, password) == (self.owner.user, self.owner.password):
            return paramiko.AUTH_SUCCESSFUL
        return paramiko.AUTH_FAILED

    def check_channel_request(self, kind: str, chanid: int) -> int:
        if kind == "direct-tcpip":
            return paramiko.OPEN_SUCCEEDED
        return paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_channel_direct_tcpip_request(self, chanid: int, origin: tuple[str, int],
                                           destination: tuple[str, int]) -> int:
        if destination[0] != LOOPBACK:  # nothing leaves this machine
            return paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED
        self.owner.destinations[chanid] = destination
        return paramiko.OPEN_SUCCEEDED


@dataclass
class RecordingBastion:
    user: str
    password: str
    host: str = LOOPBACK
    port: int = 0
    offered: list[tuple[str, str]] = field(default_factory=list)
    keys_offered: list[tuple[str, str]] = field(default_factory=list)
    destinations: dict[int, tuple[str, int]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    host_key: paramiko.ECDSAKey = field(default_factory=paramiko.ECDSAKey.generate)
    _listener: socket.socket | None = None
    _transports: list[paramiko.Transport] = field(default_factory=list)

    def known_hosts_line(self) -> str:
        return f"[{self.host}]:{self.port} {self.host_key.get_name()} {self.host_key.get_base64()}"

    def start(self) -> None:
        listener = socket.socket()
        listener.bind((self.host, 0))
        listener.listen(8)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, daemon=True, name="bastion").start()

    def stop(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.close()
        for transport in self._transports:
            transport.close()

    def _accept(self) -> None:
        assert self._listener is not None
        while True:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            transport = paramiko.Transport(sock)
            transport.add_server_key(self.host_key)
            self._transports.append(transport)
            try:
                transport.start_server(server=_Bastion(self))
            except (paramiko.SSHException, EOFError, OSError):
                continue
            threading.Thread(target=self._forward, args=(transport,), daemon=True).start()

    def _forward(self, transport: paramiko.Transport) -> None:
        while transport.is_active():
            channel = transport.accept(timeout=0.5)
            if channel is None:
                continue
            destination = self.destinations.get(channel.get_id())
            if destination is None:
                channel.close()
                continue
            try:
                upstream = socket.create_connection(destination, timeout=5)
            except OSError:
                channel.close()
                continue
            for source, sink in ((channel, upstream), (upstream, channel)):
                threading.Thread(target=_pump, args=(source, sink), daemon=True).start()


def _pump(source: paramiko.Channel | socket.socket, sink: paramiko.Channel | socket.socket
          ) -> None:
    try:
        while True:
            data = source.recv(65536)
            if not data:
                break
            sink.sendall(data)
    except (OSError, EOFError):
        pass
    for end in (sink, source):
        with contextlib.suppress(OSError, EOFError):
            end.close()


@pytest.fixture
def recording_bastion() -> Iterator[RecordingBastion]:
    """A bastion for `jumpuser` with its own password; see the module."""
    bastion = RecordingBastion(user="jumpuser", password="JUMP-ONLY-pw-" + "x" * 8)
    bastion.start()
    try:
        yield bastion
    finally:
        bastion.stop()
