"""The target machine over SSH (see installer.ssh.target); its public names, importable from
`installer.ssh` as before the module became a package."""

from installer.ssh.channels import ConnectionLostError, InterruptedWrite, SSHStats
from installer.ssh.connect import PassphrasePrompt
from installer.ssh.sftp import parse_df
from installer.ssh.target import SSHTarget
from installer.target import Progress

__all__ = [
    "ConnectionLostError",
    "InterruptedWrite",
    "PassphrasePrompt",
    "Progress",
    "SSHStats",
    "SSHTarget",
    "parse_df",
]
