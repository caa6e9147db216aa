"""The files of a medium (builder/media/files.py): one way to their bytes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from builder.errors import BuildError
from builder.media.files import PlannedFile
from builder.virtio.source import DirectorySource


def test_planned_file_hides_its_bytes_and_checks_itself() -> None:
    secret = PlannedFile.inline("WINNT.SIF", b'AdminPassword="hunter2"')
    assert "hunter2" not in repr(secret)
    with pytest.raises(ValueError, match="exactly one"):
        PlannedFile("X", 1)
    with pytest.raises(ValueError, match="exactly one"):
        PlannedFile("X", 1, data=b"x", source_path="x")
    with pytest.raises(ValueError, match="size 2"):
        PlannedFile("X", 2, data=b"x")


def test_inline_and_sourced_bytes_read_alike(tmp_path: Path) -> None:
    (tmp_path / "a.sys").write_bytes(b"driver")
    source = DirectorySource(tmp_path)
    inline = PlannedFile.inline("A.TXT", b"text")
    sourced = PlannedFile.from_source("VIOSTOR/a.sys", "a.sys", 6)
    assert inline.read(source) == b"text" and sourced.read(source) == b"driver"
    with inline.open(source) as a, sourced.open(source) as b:
        assert (a.read(), b.read()) == (b"text", b"driver")
    digests = {"a.sys": "known"}
    assert sourced.sha256(digests) == "known"
    assert inline.sha256(digests) == hashlib.sha256(b"text").hexdigest()
    # A planned size the source no longer has is the one "source changed" error.
    with pytest.raises(BuildError, match="changed during the build"):
        PlannedFile.from_source("X", "a.sys", 7).read(source)
