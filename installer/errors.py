"""Errors a user can cause. Each carries a message and what to do about it.

The CLI shows these without a traceback and exits with `exit_code`; anything else that escapes
is our own bug, shown with the log file's path.
"""

from __future__ import annotations


class InstallerError(Exception):
    """Base for every error the user can act on."""

    exit_code = 2

    def __init__(self, message: str, remediation: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.remediation = remediation

    def __str__(self) -> str:
        if self.remediation:
            return f"{self.message}\n  fix: {self.remediation}"
        return self.message


class InputError(InstallerError):
    """Invalid input: a bad flag, answers file, value or unreadable file. Nothing is written."""

    exit_code = 2


class AnswersError(InputError):
    """The answers file is wrong; `path` names the key (e.g. `database.port`)."""

    def __init__(self, path: str, message: str, remediation: str = "") -> None:
        super().__init__(f"{path}: {message}" if path else message, remediation)
        self.path = path


class TargetError(InstallerError):
    """The target machine could not be reached or refused an operation."""

    exit_code = 3


class DeployError(InstallerError):
    """The deployment failed; the message says where and the remediation how to go on."""

    exit_code = 3
