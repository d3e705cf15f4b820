"""The backup archive: encrypted in chunks (constant memory), every member hashed in the
manifest, and any damage, truncation, wrong passphrase or swapped member refused."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from installer.errors import InputError
from installer.operate import archive
from installer.operate.archive import (
    CHUNK,
    MAGIC,
    ArchiveWriter,
    DecryptingReader,
    EncryptingWriter,
    extract_verified,
    is_encrypted,
)

PASSPHRASE = "correct horse battery staple"


def write(path: Path, passphrase: str | None, big: bytes) -> None:
    with ArchiveWriter(str(path), passphrase) as writer:
        writer.add_bytes("answers.yaml", b"version: 1\n")
        source = path.parent / "dump.bin"
        source.write_bytes(big)
        writer.add_file("database/workspace.dump", str(source))
        writer.add_manifest({"format": 1})


@pytest.mark.parametrize("passphrase", [None, PASSPHRASE])
def test_round_trip_with_a_member_larger_than_a_chunk(tmp_path: Path,
                                                      passphrase: str | None) -> None:
    big = os.urandom(3 * CHUNK + 12345)  # random: gzip cannot shrink it below a chunk
    path = tmp_path / "backup.tar.gz"
    write(path, passphrase, big)
    assert path.stat().st_mode & 0o777 == 0o600
    assert is_encrypted(str(path)) is (passphrase is not None)
    assert not list(tmp_path.glob(".*partial"))
    out = tmp_path / "out"
    out.mkdir()
    manifest = extract_verified(str(path), str(out), passphrase)
    assert (out / "database" / "workspace.dump").read_bytes() == big
    assert {m["path"] for m in manifest["members"]} == {"answers.yaml", "database/workspace.dump"}
    if passphrase:
        assert b"version: 1" not in path.read_bytes()


def test_encrypted_stream_is_written_chunk_by_chunk(tmp_path: Path) -> None:
    # Memory stays bounded: the writer never holds more than a chunk and a bit.
    sink = io.BytesIO()
    writer = EncryptingWriter(sink, PASSPHRASE)
    for _ in range(5):
        writer.write(os.urandom(CHUNK // 2 + 7))
        assert len(writer._buffer) <= CHUNK
    writer.finish()
    sink.seek(0)
    plain = io.BufferedReader(DecryptingReader(sink, PASSPHRASE)).read()
    assert len(plain) == 5 * (CHUNK // 2 + 7)


def test_wrong_passphrase_truncation_and_tampering_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "backup.enc"
    write(path, PASSPHRASE, os.urandom(2 * CHUNK))
    data = path.read_bytes()
    attempts = iter(range(100))

    def attempt(content: bytes, passphrase: str | None = PASSPHRASE) -> str:
        bad = tmp_path / "bad.enc"
        bad.write_bytes(content)
        target = tmp_path / f"out{next(attempts)}"
        target.mkdir()
        with pytest.raises(InputError) as caught:
            extract_verified(str(bad), str(target), passphrase)
        return str(caught.value)

    assert "wrong passphrase" in attempt(data, "not the passphrase")
    assert "passphrase is needed" in attempt(data, None)
    assert "damaged" in attempt(data[:-100])  # the last chunk cut short fails its tag
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 1
    assert "damaged" in attempt(bytes(flipped))
    # Dropping the last chunk entirely: the stream must end with a chunk marked last.
    header = len(MAGIC) + archive.SALT_BYTES + 3
    first_len = int.from_bytes(data[header + 1:header + 5], "big")
    assert "truncated" in attempt(data[:header + 5 + first_len])


def test_a_member_changed_after_the_manifest_is_refused(tmp_path: Path) -> None:
    # Re-pack a plain archive with one member's content altered, the manifest unchanged.
    path = tmp_path / "backup.tar.gz"
    write(path, None, b"original dump")
    altered = tmp_path / "altered.tar.gz"
    with tarfile.open(path, "r:gz") as source, tarfile.open(altered, "w:gz") as dest:
        for info in source:
            content = source.extractfile(info).read()  # type: ignore[union-attr]
            if info.name == "database/workspace.dump":
                content = b"tampered dump"
                info.size = len(content)
            dest.addfile(info, io.BytesIO(content))
    (tmp_path / "x").mkdir()
    with pytest.raises(InputError, match="do not match their SHA-256"):
        extract_verified(str(altered), str(tmp_path / "x"), None)


def test_an_unsafe_member_name_is_refused(tmp_path: Path) -> None:
    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as tar:
        info = tarfile.TarInfo("../escape")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    (tmp_path / "x").mkdir()
    with pytest.raises(InputError, match="unsafe member"):
        extract_verified(str(evil), str(tmp_path / "x"), None)
    assert not (tmp_path / "escape").exists()


def test_the_backup_record_answers_upgrades_recent_backup_gate(tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    from installer.answers import parse_answers
    from installer.operate.backup import BackupRecord, latest_backup, record_backup
    from installer.operate.installation import Installation
    from installer.redact import Redactor
    from installer.target import LocalTarget

    answers = parse_answers({"version": 1, "compose": {"directory": str(tmp_path)}})
    inst = Installation(answers, LocalTarget(), Redactor())
    assert latest_backup(inst) is None
    now = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)
    record_backup(inst, BackupRecord(now - timedelta(hours=30), "/b/old.tar.gz", "a" * 64, True))
    assert latest_backup(inst, within=timedelta(hours=24), now=now) is None
    record_backup(inst, BackupRecord(now - timedelta(hours=2), "/b/new.tar.gz", "b" * 64, False))
    recent = latest_backup(inst, within=timedelta(hours=24), now=now)
    assert recent is not None and recent.archive == "/b/new.tar.gz" and not recent.database
    record = tmp_path / ".carto-installer-backups.json"
    assert record.stat().st_mode & 0o777 == 0o600
    record.write_text("not json")  # a damaged record means "no backup", never a crash
    assert latest_backup(inst) is None


def test_a_symbolic_link_in_the_deployment_directory_is_refused(tmp_path: Path) -> None:
    from installer.answers import parse_answers
    from installer.operate.backup import backup
    from installer.operate.installation import Installation
    from installer.redact import Redactor
    from installer.target import LocalTarget

    directory = tmp_path / "carto"
    (directory / "certs").mkdir(parents=True)
    (directory / ".env").write_text("A=1\n")
    (directory / "customer.env").write_text("A=1\n")
    secret = tmp_path / "elsewhere.txt"
    secret.write_text("not part of the deployment")
    (directory / "certs" / "key.json").symlink_to(secret)
    answers = parse_answers({"version": 1, "compose": {"directory": str(directory)}})
    inst = Installation(answers, LocalTarget(), Redactor())
    output = tmp_path / "backup.tar"
    with pytest.raises(InputError, match="symbolic link"):
        backup(inst, str(output), include_database=False)
    assert not output.exists()
    (directory / "certs" / "key.json").unlink()
    backup(inst, str(output), include_database=False)
    assert output.exists()
