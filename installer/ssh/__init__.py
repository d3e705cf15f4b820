"""The target machine over SSH (see installer.ssh.target); its public names, importable from
`installer.ssh` as before the module became a package."""

from installer.ssh.target import (
    ConnectionLostError,
    InterruptedWrite,
    PassphrasePrompt,
    Progress,
    SSHStats,
    SSHTarget,
    parse_df,
)

__all__ = [
    "ConnectionLostError",
    "InterruptedWrite",
    "PassphrasePrompt",
    "Progress",
    "SSHStats",
    "SSHTarget",
    "parse_df",
]
