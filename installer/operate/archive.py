"""Archives of backups and support bundles: a tar (gzip'ed or not), optionally encrypted, with a
manifest.

A backup's tar is not compressed: its big member, the database dump, is compressed by pg_dump
itself while it dumps (next to the server's own work), so compressing the archive again would
only spend a second pass over incompressible bytes. A support bundle (text) is gzip'ed.

Encryption (a passphrase): the key is derived with scrypt from the passphrase and a random
salt; the stream is cut into chunks of CHUNK bytes, each sealed with ChaCha20-Poly1305 under a
nonce made of the chunk's number, with the file header and a "last chunk" flag as associated
data. So a dump of any size is encrypted in constant memory, and a reordered, truncated,
extended or altered archive is refused, never half-restored.

Layout of an encrypted file: MAGIC, salt (16 bytes), scrypt log2(n), r, p (one byte each),
then chunks: flag (1 byte, 1 = last), length (4 bytes, big endian), ciphertext.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import struct
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any, BinaryIO

from installer.errors import InputError
from installer.yamldata import JSONObject

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer, WriteableBuffer

MAGIC = b"CARTO-INSTALLER-ENCRYPTED-1\n"
CHUNK = 1 << 20
SALT_BYTES = 16
SCRYPT_LOG_N, SCRYPT_R, SCRYPT_P = 15, 8, 1  # 32 MiB of memory, ~0.1 s per derivation
MANIFEST = "MANIFEST.json"
_TAG = 16

Progress = Callable[[int, int], None]  # (bytes done, bytes total or 0 when unknown)


def derive_key(passphrase: str, salt: bytes, log_n: int = SCRYPT_LOG_N, r: int = SCRYPT_R,
               p: int = SCRYPT_P) -> bytes:
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

    return Scrypt(salt=salt, length=32, n=1 << log_n, r=r, p=p).derive(passphrase.encode())


def _nonce(counter: int) -> bytes:
    return struct.pack(">4xQ", counter)


def _aad(header: bytes, counter: int, last: bool) -> bytes:
    return header + struct.pack(">QB", counter, 1 if last else 0)


class EncryptingWriter(io.RawIOBase):
    """A write-only stream that seals what it is given, chunk by chunk, into `out`."""

    def __init__(self, out: BinaryIO, passphrase: str) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

        salt = os.urandom(SALT_BYTES)
        self._header = MAGIC + salt + bytes([SCRYPT_LOG_N, SCRYPT_R, SCRYPT_P])
        self._aead = ChaCha20Poly1305(derive_key(passphrase, salt))
        self._out = out
        self._buffer = bytearray()
        self._counter = 0
        self._finished = False
        out.write(self._header)

    def writable(self) -> bool:
        return True

    def write(self, data: ReadableBuffer) -> int:
        chunk = bytes(data)
        self._buffer += chunk
        while len(self._buffer) > CHUNK:  # keep at least one byte back for the last chunk
            self._seal(bytes(self._buffer[:CHUNK]), last=False)
            del self._buffer[:CHUNK]
        return len(chunk)

    def _seal(self, plain: bytes, last: bool) -> None:
        sealed = self._aead.encrypt(_nonce(self._counter), plain,
                                    _aad(self._header, self._counter, last))
        self._out.write(struct.pack(">BI", 1 if last else 0, len(sealed)) + sealed)
        self._counter += 1

    def finish(self) -> None:
        if not self._finished:
            self._seal(bytes(self._buffer), last=True)
            self._buffer.clear()
            self._finished = True

    def close(self) -> None:
        self.finish()
        super().close()


class DecryptingReader(io.RawIOBase):
    """The plain stream of an encrypted archive; InputError on a wrong passphrase or damage."""

    def __init__(self, source: BinaryIO, passphrase: str) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

        header = source.read(len(MAGIC) + SALT_BYTES + 3)
        if not header.startswith(MAGIC) or len(header) != len(MAGIC) + SALT_BYTES + 3:
            raise InputError("this is not an encrypted carto-installer archive")
        salt = header[len(MAGIC):len(MAGIC) + SALT_BYTES]
        log_n, r, p = header[-3], header[-2], header[-1]
        if not (10 <= log_n <= 22 and 1 <= r <= 32 and 1 <= p <= 16):
            raise InputError("the archive's key-derivation parameters are out of range")
        self._aead = ChaCha20Poly1305(derive_key(passphrase, salt, log_n, r, p))
        self._header = header
        self._source = source
        self._counter = 0
        self._pending = b""
        self._done = False

    def readable(self) -> bool:
        return True

    def _next_chunk(self) -> None:
        from cryptography.exceptions import InvalidTag

        head = self._source.read(5)
        if len(head) != 5:
            raise InputError("the encrypted archive is truncated (its last chunk is missing)",
                             "copy the whole archive again")
        flag, length = struct.unpack(">BI", head)
        if flag not in (0, 1) or length > CHUNK + _TAG:
            raise InputError("the encrypted archive is damaged")
        sealed = self._source.read(length)
        try:
            plain = self._aead.decrypt(_nonce(self._counter), sealed,
                                       _aad(self._header, self._counter, flag == 1))
        except InvalidTag:
            if self._counter == 0:
                raise InputError("wrong passphrase for this archive (or the archive is damaged)",
                                 "give the passphrase used for the backup") from None
            raise InputError(f"the encrypted archive is damaged at chunk {self._counter}",
                             "copy the whole archive again") from None
        self._counter += 1
        self._pending += plain
        if flag == 1:
            if self._source.read(1):
                raise InputError("the encrypted archive has data after its last chunk")
            self._done = True

    def readinto(self, buffer: WriteableBuffer) -> int:
        while not self._pending and not self._done:
            self._next_chunk()
        view = memoryview(buffer).cast("B")
        n = min(len(view), len(self._pending))
        view[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n


def is_encrypted(path: str) -> bool:
    with open(path, "rb") as handle:
        return handle.read(len(MAGIC)) == MAGIC


@dataclass
class Member:
    path: str
    size: int
    sha256: str


class _HashingReader:
    """Reads a member's content for tarfile while hashing it and reporting progress."""

    def __init__(self, stream: BinaryIO, size: int, progress: Progress | None) -> None:
        self.stream, self.size, self.progress = stream, size, progress
        self.digest = hashlib.sha256()
        self.done = 0

    def read(self, n: int = -1) -> bytes:
        data = self.stream.read(n)
        self.digest.update(data)
        self.done += len(data)
        if self.progress is not None and self.size > CHUNK:
            self.progress(self.done, self.size)
        return data


@dataclass
class ArchiveWriter:
    """Adds members to `path` (created 0600, renamed into place only when complete)."""

    path: str
    passphrase: str | None = None
    progress: Progress | None = None
    compress: bool = True
    members: list[Member] = field(default_factory=list)

    def __enter__(self) -> ArchiveWriter:
        folder = os.path.dirname(os.path.abspath(self.path))
        fd, self._temp = tempfile.mkstemp(prefix=f".{os.path.basename(self.path)}.",
                                          suffix=".partial", dir=folder)
        os.fchmod(fd, 0o600)
        self._file: BinaryIO = os.fdopen(fd, "wb")
        self._crypt = EncryptingWriter(self._file, self.passphrase) if self.passphrase else None
        sink: Any = self._crypt if self._crypt else self._file
        self._gzip = gzip.GzipFile(fileobj=sink, mode="wb", compresslevel=6, mtime=0) \
            if self.compress else None
        self._tar = tarfile.open(fileobj=self._gzip or sink, mode="w|",
                                 format=tarfile.PAX_FORMAT)
        return self

    def add_bytes(self, name: str, data: bytes, mode: int = 0o600) -> None:
        self._add(name, io.BytesIO(data), len(data), mode)

    def add_file(self, name: str, local_path: str, mode: int = 0o600) -> None:
        size = os.path.getsize(local_path)
        with open(local_path, "rb") as handle:
            self._add(name, handle, size, mode)

    def _add(self, name: str, stream: BinaryIO, size: int, mode: int) -> None:
        reader = _HashingReader(stream, size, self.progress)
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = size, mode, int(time.time())
        self._tar.addfile(info, reader)
        self.members.append(Member(name, size, reader.digest.hexdigest()))

    def add_manifest(self, extra: JSONObject) -> None:
        document = {**extra, "members": [vars(m) for m in self.members]}
        data = (json.dumps(document, indent=1) + "\n").encode()
        info = tarfile.TarInfo(MANIFEST)
        info.size, info.mode, info.mtime = len(data), 0o600, int(time.time())
        self._tar.addfile(info, io.BytesIO(data))

    def __exit__(self, kind: object, exc: BaseException | None, tb: object) -> None:
        try:
            if exc is None:
                self._tar.close()
                if self._gzip is not None:
                    self._gzip.close()
                if self._crypt:
                    self._crypt.finish()
                self._file.flush()
                os.fsync(self._file.fileno())
            self._file.close()
            if exc is None:
                os.replace(self._temp, self.path)
        finally:
            if os.path.exists(self._temp):
                os.unlink(self._temp)


def extract_verified(path: str, dest: str, passphrase: str | None,
                     progress: Progress | None = None) -> JSONObject:
    """Unpack `path` into the folder `dest` and check every member against the manifest.

    Returns the manifest. InputError when a member is missing, extra, changed, or unsafe.
    """
    encrypted = is_encrypted(path)
    if encrypted and not passphrase:
        raise InputError(f"{path} is encrypted: a passphrase is needed",
                         "give --passphrase-env VARIABLE, or run on a terminal to be asked")
    total = os.path.getsize(path)
    with open(path, "rb") as raw:
        source: IO[bytes] = raw
        if encrypted:
            assert passphrase is not None
            source = io.BufferedReader(DecryptingReader(raw, passphrase), CHUNK)
        found: dict[str, str] = {}
        manifest: JSONObject | None = None
        try:
            with tarfile.open(fileobj=source, mode="r|*") as tar:
                for info in tar:
                    if progress is not None:
                        progress(raw.tell(), total)
                    name = info.name
                    if not info.isfile() or name.startswith("/") or ".." in name.split("/"):
                        raise InputError(f"the archive holds an unsafe member {name!r}")
                    handle = tar.extractfile(info)
                    assert handle is not None
                    if name == MANIFEST:
                        manifest = json.loads(handle.read(16 << 20))
                        continue
                    target = os.path.join(dest, name)
                    os.makedirs(os.path.dirname(target), mode=0o700, exist_ok=True)
                    digest = hashlib.sha256()
                    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                                 0o600)
                    with os.fdopen(fd, "wb") as out:
                        while block := handle.read(CHUNK):
                            digest.update(block)
                            out.write(block)
                    found[name] = digest.hexdigest()
        except (tarfile.TarError, OSError, EOFError, ValueError) as exc:
            raise InputError(f"{path} is not a readable carto-installer archive: {exc}",
                             "check the file name; copy the archive again if it was "
                             "transferred") from None
    if manifest is None:
        raise InputError(f"{path} has no {MANIFEST}: it is not a complete backup")
    listed = {m["path"]: m["sha256"] for m in manifest.get("members", [])}
    if set(listed) != set(found):
        missing = sorted(set(listed) - set(found))
        extra = sorted(set(found) - set(listed))
        raise InputError(f"the archive does not match its manifest (missing {missing}, not "
                         f"listed {extra})")
    changed = sorted(n for n in listed if listed[n] != found[n])
    if changed:
        raise InputError(f"the archive's members do not match their SHA-256 in the manifest: "
                         f"{', '.join(changed)}", "copy the archive again")
    return manifest
