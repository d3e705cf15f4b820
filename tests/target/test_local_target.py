"""`Target.upload` on this machine: the same promises as over SSH (tests/ssh/test_target.py), a
whole file or none at the final path, a resumed copy after an interruption, nothing copied
twice."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from installer.target import LocalTarget


class _Cut(Exception):
    """Stands for the copy being interrupted (Ctrl-C, a full disk) halfway."""


def test_an_interrupted_upload_resumes_and_lands_whole(tmp_path: Path) -> None:
    source = tmp_path / "images.tar"
    source.write_bytes(os.urandom(5 * 2**20 + 123))
    size = source.stat().st_size
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    dest = tmp_path / "out" / "images.tar"
    dest.parent.mkdir()
    target = LocalTarget()

    def cut_midway(done: int, total: int) -> None:
        if done >= total // 2:
            raise _Cut

    with pytest.raises(_Cut):
        target.upload(str(source), str(dest), progress=cut_midway)
    assert not dest.exists()  # the final name only ever holds a whole file
    kept = (tmp_path / "out" / "images.tar.partial").stat().st_size
    assert 0 < kept < size

    progress: list[tuple[int, int]] = []
    assert target.upload(str(source), str(dest),
                         progress=lambda d, t: progress.append((d, t))) == digest
    assert progress[0][0] > kept  # it went on from what was kept
    assert progress[-1] == (size, size)
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == digest
    assert not (tmp_path / "out" / "images.tar.partial").exists()
    assert oct(dest.stat().st_mode & 0o777) == "0o600"

    # Already there: nothing is copied again.
    again: list[tuple[int, int]] = []
    before = dest.stat().st_mtime_ns
    assert target.upload(str(source), str(dest), progress=lambda d, t: again.append((d, t))) \
        == digest
    assert again == [(size, size)] and dest.stat().st_mtime_ns == before


def test_a_kept_part_that_does_not_match_is_copied_again_in_full(tmp_path: Path) -> None:
    source = tmp_path / "images.tar"
    source.write_bytes(os.urandom(3 * 2**20))
    dest = tmp_path / "images.copy"
    (tmp_path / "images.copy.partial").write_bytes(b"not the start of the archive")
    progress: list[int] = []
    digest = LocalTarget().upload(str(source), str(dest), progress=lambda d, t: progress.append(d))
    assert dest.read_bytes() == source.read_bytes()
    assert digest == hashlib.sha256(source.read_bytes()).hexdigest()
    # The first pass went on from the bad part; the second started again from zero.
    assert progress[0] == 28 + 2**20
    assert any(later < earlier for earlier, later in zip(progress, progress[1:], strict=False))
