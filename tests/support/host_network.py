"""This machine's own network addresses, for tests that point a name at it."""

from __future__ import annotations

import subprocess

from installer.checks import net


def own_address() -> str:
    """A non-loopback address of this machine (what a DNS record would point at)."""
    out = subprocess.run(
        ["ip", "-o", "-4", "addr", "show", "scope", "global"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    addresses = net.parse_ip_addr(out)
    if not addresses:
        raise RuntimeError("this machine has no global IPv4 address for the net.dns tests")
    return addresses[0]
