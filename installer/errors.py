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


class AnswersErrors(AnswersError):
    """Several problems in one answers file, all reported at once (one run, not one each)."""

    def __init__(self, problems: list[AnswersError], source: str = "") -> None:
        self.problems = problems
        where = f"{source} has" if source else "the answers have"
        lines = [f"{where} {len(problems)} problems:"]
        for problem in problems:
            lines.append(f"  - {problem.message}")
            if problem.remediation:
                lines.append(f"    fix: {problem.remediation}")
        InputError.__init__(self, "\n".join(lines))
        self.path = problems[0].path if problems else ""


def one_or_all(problems: list[AnswersError], source: str = "") -> AnswersError:
    """The single problem as it is, or all of them as one error."""
    return problems[0] if len(problems) == 1 else AnswersErrors(problems, source)


class TargetError(InstallerError):
    """The target machine could not be reached or refused an operation."""

    exit_code = 3


class DeployError(InstallerError):
    """The deployment failed; the message says where and the remediation how to go on."""

    exit_code = 3


# What the system's error numbers mean, in words a first-time admin can act on (Python's
# own text, "[Errno -2] Name or service not known", reads like a crash).
_GAI_WORDS = {
    "EAI_NONAME": "the name does not resolve (no such host in DNS)",
    "EAI_NODATA": "the name has no address in DNS",
    "EAI_AGAIN": "the name could not be looked up (DNS did not answer; try again)",
    "EAI_FAIL": "the name could not be looked up (the DNS server failed)",
    "EAI_SERVICE": "the service or port name is not known",
}
_ERRNO_WORDS = {
    "ECONNREFUSED": "the connection was refused (nothing listens on that port)",
    "ETIMEDOUT": "the connection timed out (a firewall may drop it)",
    "EHOSTUNREACH": "the host cannot be reached (no route to it)",
    "ENETUNREACH": "the network cannot be reached (no route to it)",
    "ECONNRESET": "the connection was closed by the other side",
    "ENOENT": "no such file or folder",
    "EACCES": "permission denied",
    "EPERM": "the operation is not permitted",
    "ENOTDIR": "a part of the path is not a folder",
    "EISDIR": "it is a folder, not a file",
    "ENOSPC": "the disk is full",
}


def os_error_words(exc: BaseException) -> str:
    """An operating-system error said in words, without Python's "[Errno N]" prefix."""
    import errno
    import socket

    if isinstance(exc, socket.gaierror):
        for name, words in _GAI_WORDS.items():
            if exc.errno == getattr(socket, name, object()):
                return words
        return f"the name could not be looked up ({exc.strerror or 'DNS error'})"
    if isinstance(exc, TimeoutError) and exc.errno is None:
        return "it timed out"
    if isinstance(exc, OSError) and exc.errno is not None:
        name = errno.errorcode.get(exc.errno, "")
        words = _ERRNO_WORDS.get(name) or (exc.strerror or name).lower()
        target = exc.filename
        return f"{target}: {words}" if isinstance(target, str) and target else words
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
