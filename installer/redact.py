"""Keeping secrets out of logs, reports and the terminal.

A `Redactor` is handed every secret value as soon as it is read (answers, package files) and
replaces it wherever text leaves the program. It is an ordinary object passed around, not a
module-level singleton.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Iterable, Sequence
from typing import TextIO

from installer.safetext import visible

MASK = "********"
# user:password@ (or token@) in any scheme://... URL, well-formed or not.
_URL_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/@\s'\"]*@")
# A key whose name says its value is a secret, in YAML, JSON or env-file form: password,
# adminPassword, secret, token, apiKey, privateKey, privateKeyValueBase64, private_key_id,
# credentials, WORKSPACE_POSTGRES_PASSWORD, ..._KEY.
_SECRET_KEY = re.compile(
    r"(?i)(pass(word|wd)?|secret|token|api_?key|private_?key|credential|license_?key"
    r"|_key$|keybase64$|key_?value|key\.json|tls\.key)")
_NOT_SECRET_KEY = re.compile(r"(?i)(_path|_file|path|file|name|existingsecret(\w*key)?|keykey"
                             r"|secretkey$|enabled|autogenerate)$")
_KEY_VALUE = re.compile(
    r"""^(?P<lead>\s*(?:-\s+)?)(?P<q>["']?)(?P<key>[A-Za-z0-9_.\-]+)(?P=q)"""
    r"""(?P<sep>\s*[:=]\s*)(?P<value>.*)$""")
_PRIVATE_BEGIN = re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----")
_PRIVATE_END = re.compile(r"-----END [A-Z0-9 ]*PRIVATE KEY-----")


def mask_url_credentials(text: str) -> str:
    """Every `scheme://user:password@` becomes `scheme://********@`, whether or not the rest
    of the URL is valid."""
    return _URL_CREDENTIALS.sub(lambda m: f"{m.group(1)}{MASK}@", text)


def is_secret_name(key: str) -> bool:
    """Whether a key of a YAML, JSON or env file names a secret value (its name, not its
    reference: `existingSecretPasswordKey` or `password_file` hold no secret)."""
    camel_key = key.endswith("Key") and not key.endswith(("certKey", "keyKey"))
    return bool(_SECRET_KEY.search(key) or camel_key) and not _NOT_SECRET_KEY.search(key)


def mask_secret_values(text: str) -> str:
    """`text` (YAML, JSON or an env file) with the value of every secret-looking key and the
    body of every PEM private key replaced by the mask, line by line, so a diff of two
    masked texts shows which secret lines changed but never their values."""
    out: list[str] = []
    block_indent: int | None = None  # inside `secretKey: |` : hide deeper lines
    in_private_key = False
    for line in text.splitlines(keepends=True):
        body = line.rstrip("\r\n")
        ending = line[len(body):]
        if in_private_key:
            if _PRIVATE_END.search(body):
                in_private_key = False
                out.append(line)
            continue  # the key's body is dropped; BEGIN and END lines stay
        if block_indent is not None:
            indent = len(body) - len(body.lstrip())
            if not body.strip() or indent > block_indent:
                continue
            block_indent = None
        match = _KEY_VALUE.match(body)
        if match and is_secret_name(match.group("key")):
            value = match.group("value").strip()
            if value in ("", "|", ">", "|-", ">-", "|+", ">+"):
                if value:
                    block_indent = len(body) - len(body.lstrip())
                    out.append(body + f" {MASK}" + ending)
                else:
                    out.append(line)
                continue
            if value.startswith(("{", "[")) or value in ("null", "~", '""', "''"):
                out.append(line)  # a nested mapping or nothing: its lines are judged alone
                continue
            trail = "," if value.endswith(",") else ""
            out.append(f"{match.group('lead')}{match.group('q')}{match.group('key')}"
                       f"{match.group('q')}{match.group('sep')}{MASK}{trail}{ending}")
            continue
        begin = _PRIVATE_BEGIN.search(body)
        if begin:
            in_private_key = not _PRIVATE_END.search(body, begin.end())
            out.append(body[: begin.end()] + (f" {MASK}" if in_private_key else "") + ending)
            if not in_private_key:
                out[-1] = body[: begin.start()] + MASK + ending
            continue
        out.append(line)
    return "".join(out)
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
        return mask_url_credentials(text)

    def __contains__(self, text: str) -> bool:
        return text in self._secrets


class RedactingFilter(logging.Filter):
    """Rewrites each record's message with the redactor before any handler sees it."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        # Control characters made visible: the log is read in a terminal too (`tail -f`).
        record.msg = visible(self.redactor(message))
        record.args = None
        if record.exc_info and record.exc_text is None:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = visible(self.redactor(record.exc_text))
        return True


class _LogFileHandler(logging.StreamHandler[TextIO]):
    """A StreamHandler on the log file's safe descriptor that closes it when removed."""

    def close(self) -> None:
        try:
            self.acquire()
            try:
                if self.stream and not self.stream.closed:
                    self.stream.close()
            finally:
                self.release()
        finally:
            super().close()


def open_log_file(path: str) -> int:
    """A write descriptor on the log file, opened without following a link (a linked log
    would get its target chmod-ed and appended to) and only when it is a regular file owned
    by this user; its mode is then made 0600. OSError otherwise."""
    import errno
    import os
    import stat

    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC
                 | os.O_NONBLOCK | os.O_NOCTTY, 0o600)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(errno.EINVAL, "the log file is not a regular file", path)
        if info.st_uid != os.geteuid():
            raise OSError(errno.EPERM, "the log file belongs to another user", path)
        if info.st_nlink > 1:
            raise OSError(errno.EMLINK, "the log file has other (hard) links", path)
        os.fchmod(fd, 0o600)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def setup_logging(paths: str | Sequence[str | os.PathLike[str]], redactor: Redactor, *,
                  level: int = logging.DEBUG) -> str:
    """Log to the first of `paths` that opens safely (`open_log_file`), mode 0600, every
    record redacted. A private folder (0700) is made for a path whose folder is missing.
    Returns the path used; OSError when none opens."""
    import os

    candidates = [paths] if isinstance(paths, str) else [os.fspath(p) for p in paths]
    logger = logging.getLogger("installer")
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    error: OSError | None = None
    for path in candidates:
        folder = os.path.dirname(os.path.abspath(path))
        try:
            if not os.path.isdir(folder):
                os.mkdir(folder, 0o700)
            fd = open_log_file(path)
        except OSError as exc:
            error = exc
            continue
        handler = _LogFileHandler(os.fdopen(fd, "a", encoding="utf-8"))
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler.addFilter(RedactingFilter(redactor))
        logger.addHandler(handler)
        logger.setLevel(level)
        logger.propagate = False
        return path
    assert error is not None
    raise error
