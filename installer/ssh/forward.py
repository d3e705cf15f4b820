"""TCP connections opened *from the target*: a `direct-tcpip` channel, or a relay run on the
target when the server refuses forwarding, each bridged to a real local socket."""

from __future__ import annotations

import contextlib
import errno
import logging
import re
import shlex
import socket
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from installer.ssh.channels import SSHConnection
from installer.ssh.connect import _OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED, _paramiko
from installer.validators import is_ip

if TYPE_CHECKING:  # paramiko is loaded only when a remote target is used
    from paramiko import Channel

log = logging.getLogger("installer.ssh")


_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})(\.[A-Za-z0-9_-]{1,63})*\.?$")


class Forwarding(SSHConnection):
    """`open_connection`: egress is measured where CARTO will run."""

    def open_connection(self, host: str, port: int, timeout: float) -> socket.socket:
        """A socket whose bytes flow to host:port *from the target*: a `direct-tcpip` channel
        when the server allows forwarding; when it refuses (AllowTcpForwarding no), a small
        relay run on the target itself (python3, else bash's /dev/tcp), so egress is still
        measured where CARTO will run. Either way the result is a real socket, so
        `ssl.SSLContext.wrap_socket` works on it."""
        _check_endpoint(host, port)
        return self._repeatable(f"connecting to {host}:{port}",
                                lambda: self._open_connection_once(host, port, timeout))

    def _open_connection_once(self, host: str, port: int, timeout: float) -> socket.socket:
        paramiko = _paramiko()
        if not self._forwarding_refused:
            try:
                channel = self._transport.open_channel(
                    "direct-tcpip", (host, port), ("127.0.0.1", 0), timeout=timeout)
            except paramiko.ChannelException as exc:
                if exc.code == _OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED:
                    self._forwarding_refused = True
                    log.warning("%s refuses TCP forwarding; probing through a relay run on "
                                "the target instead", self.name)
                else:
                    error = self._connect_error(str(exc.text), host, port)
                    if error.errno != errno.ECONNABORTED:  # the server said why
                        raise error from None
                    # Often OpenSSH says only "Connect failed" (refused, unreachable alike):
                    # the relay, run on the target, tells which, or connects after all.
                    log.info("direct-tcpip to %s:%s from %s failed (%s); asking the target",
                             host, port, self.name, exc.text)
            except (paramiko.SSHException, EOFError, OSError) as exc:
                if "timeout" in str(exc).lower():
                    raise TimeoutError(errno.ETIMEDOUT, f"connecting to {host}:{port} from "
                                       f"{self.name} timed out after {timeout:g} s") from None
                if not self._transport.is_active():
                    raise self._lost(exc) from None
                # paramiko's "Unable to open channel." when failures race: ask the target.
                log.info("direct-tcpip to %s:%s from %s failed (%s); asking the target",
                         host, port, self.name, exc)
            else:
                self.stats.add("forwards")
                return _bridge_channel(channel, timeout)
        return self._relay_connection(host, port, timeout)

    def _relay_connection(self, host: str, port: int, timeout: float) -> socket.socket:
        paramiko = _paramiko()
        deadline = time.monotonic() + timeout + 5
        channel = self._open_session(deadline)
        ok = False
        try:
            try:
                channel.exec_command(shlex.join(
                    ["sh", "-c", _RELAY_SCRIPT, "sh", host, str(port), f"{timeout:g}", _PY_RELAY]))
            except (paramiko.SSHException, EOFError, OSError) as exc:
                raise self._lost(exc) from None
            self.stats.add("commands")
            channel.settimeout(0.2)
            said = b""
            while b"carto-relay: " not in said or not said.endswith(b"\n"):
                if time.monotonic() >= deadline:
                    raise TimeoutError(errno.ETIMEDOUT, f"connecting to {host}:{port} from "
                                       f"{self.name} timed out after {timeout:g} s")
                try:
                    chunk = channel.recv_stderr(4096)
                except TimeoutError:
                    continue
                if not chunk:
                    break
                said += chunk
            text = said.decode("utf-8", "replace")
            if "carto-relay: connected" not in text:
                if "neither python3 nor bash" in text and not self._forwarding_refused:
                    raise OSError(errno.ECONNABORTED, f"cannot connect to {host}:{port} from "
                                  f"{self.name} (the server said only: Connect failed)")
                if "neither python3 nor bash" in text:
                    raise OSError(errno.EOPNOTSUPP, f"{self.name} refuses TCP forwarding "
                                  "(AllowTcpForwarding no) and has neither python3 nor bash to "
                                  "probe connections with; allow forwarding in its sshd_config")
                raise self._connect_error(text.replace("carto-relay:", "").strip(), host, port)
            ok = True
            return _bridge_channel(channel, timeout, on_close=lambda: self._release(channel))
        finally:
            if not ok:
                self._release(channel)

    def _connect_error(self, text: str, host: str, port: int) -> OSError:
        """The OSError subclass a local connect would raise, from the target's message."""
        lowered = text.lower()
        where = f"from {self.name}"
        if any(s in lowered for s in ("name or service not known", "temporary failure in name",
                                      "no address associated", "nodename nor servname",
                                      "name does not resolve", "dns:", "unknown host")):
            return socket.gaierror(socket.EAI_NONAME, f"{host} does not resolve {where} ({text})")
        if "refused" in lowered:
            return ConnectionRefusedError(errno.ECONNREFUSED,
                                          f"{host}:{port} refused the connection {where}")
        if "timed out" in lowered or "timeout" in lowered:
            return TimeoutError(errno.ETIMEDOUT, f"connecting to {host}:{port} {where} timed out")
        if "no route" in lowered:
            return OSError(errno.EHOSTUNREACH, f"no route to {host} {where}")
        if "unreachable" in lowered:
            return OSError(errno.ENETUNREACH, f"network unreachable for {host} {where}")
        return OSError(errno.ECONNABORTED, f"cannot connect to {host}:{port} {where}: {text}")


def _check_endpoint(host: str, port: int) -> None:
    if not (is_ip(host) or _HOSTNAME.match(host)):
        raise ValueError(f"not a host name or address: {host!r}")
    if not 0 < int(port) < 65536:
        raise ValueError(f"not a TCP port: {port!r}")


def _bridge_channel(channel: Channel, timeout: float,
                    on_close: Callable[[], None] | None = None) -> socket.socket:
    """A real socket whose other end is pumped to and from `channel` by two threads."""
    ours, theirs = socket.socketpair()
    theirs.settimeout(timeout)
    channel.settimeout(None)
    finished = threading.Barrier(2)
    lock = threading.Lock()
    closed = [False]

    def close_all() -> None:
        with lock:
            if closed[0]:
                return
            closed[0] = True
        with contextlib.suppress(Exception):
            channel.close()
        with contextlib.suppress(OSError):
            ours.close()
        if on_close is not None:
            on_close()

    def done() -> None:
        try:
            finished.wait(timeout=60)  # the other direction may still be delivering data
        except threading.BrokenBarrierError:
            pass
        close_all()

    def downstream() -> None:  # target -> caller
        try:
            while True:
                data = channel.recv(65536)
                if not data:
                    break
                ours.sendall(data)
            ours.shutdown(socket.SHUT_WR)
        except (OSError, EOFError):
            pass
        done()

    def upstream() -> None:  # caller -> target
        try:
            while True:
                data = ours.recv(65536)
                if not data:
                    break
                channel.sendall(data)
            channel.shutdown_write()
        except (OSError, EOFError):
            pass
        done()

    for pump in (downstream, upstream):
        threading.Thread(target=pump, daemon=True, name="ssh-bridge").start()
    return theirs


def _pump_socket(conn: socket.socket, channel: Channel, on_close: Callable[[], None]) -> None:
    """Copy both ways between an accepted local connection and a channel until both end."""
    remaining = [2]
    lock = threading.Lock()

    def end() -> None:
        with lock:
            remaining[0] -= 1
            last = remaining[0] == 0
        if last:
            with contextlib.suppress(OSError):
                conn.close()
            on_close()

    def to_channel() -> None:
        try:
            while True:
                data = conn.recv(65536)
                if not data:
                    break
                channel.sendall(data)
            channel.shutdown_write()
        except (OSError, EOFError):
            with contextlib.suppress(Exception):
                channel.close()
        end()

    def to_conn() -> None:
        try:
            while True:
                data = channel.recv(65536)
                if not data:
                    break
                conn.sendall(data)
            conn.shutdown(socket.SHUT_WR)
        except (OSError, EOFError):
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        end()

    threading.Thread(target=to_channel, daemon=True, name="ssh-docker-up").start()
    to_conn()


# Connects to "$1":"$2" on the target and relays stdin/stdout; says "carto-relay: connected"
# (or why not) on stderr first. Host and port arrive as positional parameters, never as code.
_RELAY_SCRIPT = r"""
if command -v python3 >/dev/null 2>&1; then exec python3 -c "$4" "$1" "$2" "$3"; fi
if command -v bash >/dev/null 2>&1; then
  exec bash -c 'exec 3<>"/dev/tcp/$1/$2" || exit 4
echo "carto-relay: connected" >&2
cat <&3 & cat >&3; wait' bash "$1" "$2"
fi
echo "carto-relay: neither python3 nor bash on the target" >&2; exit 126
"""

_PY_RELAY = r"""
import os, select, socket, sys
host, port, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
def say(text):
    os.write(2, ("carto-relay: " + text + "\n").encode())
try:
    s = socket.create_connection((host, port), timeout=timeout)
except socket.gaierror as e:
    say("dns: %s" % (e.strerror or e)); sys.exit(2)
except socket.timeout:
    say("timed out"); sys.exit(3)
except OSError as e:
    say("connect: %s" % (e.strerror or e)); sys.exit(4)
say("connected")
s.settimeout(None)
sources = [0, s]
while sources:
    ready = select.select(sources, [], [], 600)[0]
    if not ready:
        break
    for f in ready:
        if f == 0:
            data = os.read(0, 65536)
            if data:
                s.sendall(data)
            else:
                s.shutdown(socket.SHUT_WR)
                sources.remove(0)
        else:
            data = s.recv(65536)
            if not data:
                sys.exit(0)
            view = memoryview(data)
            while view:
                view = view[os.write(1, view):]
"""
