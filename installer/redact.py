"""Keeping secrets out of logs, reports and the terminal.

A `Redactor` is handed every secret value as soon as it is read (answers, package files) and
replaces it wherever text leaves the program. It is an ordinary object passed around, not a
module-level singleton.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable

MASK = "********"
# Values this short would mask ordinary words; they are still never written out on purpose.
_MIN_LEN = 4


class Redactor:
    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._secrets: set[str] = set()
        for secret in secrets:
            self.add(secret)

    def add(self, secret: str | bytes | None) -> None:
        if secret is None:
            return
        if isinstance(secret, bytes):
            secret = secret.decode("utf-8", "replace")
        with self._lock:
            for piece in {secret, secret.strip()}:
                if len(piece) >= _MIN_LEN:
                    self._secrets.add(piece)
            # A multi-line secret (a PEM key, key.json) is also masked line by line, since
            # tools often echo one line of it.
            for line in secret.splitlines():
                line = line.strip()
                if len(line) >= 16:
                    self._secrets.add(line)

    def __call__(self, text: str) -> str:
        with self._lock:
            secrets = sorted(self._secrets, key=len, reverse=True)
        for secret in secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return text

    def __contains__(self, text: str) -> bool:
        return text in self._secrets


class RedactingFilter(logging.Filter):
    """Rewrites each record's message with the redactor before any handler sees it."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        record.msg = self.redactor(message)
        record.args = None
        if record.exc_info and record.exc_text is None:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redactor(record.exc_text)
        return True


def setup_logging(path: str, redactor: Redactor, *, level: int = logging.DEBUG) -> logging.Logger:
    """Log to `path` (mode 0600), every record redacted. Returns the package logger."""
    import os

    logger = logging.getLogger("installer")
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.close(fd)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter(redactor))
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    return logger
