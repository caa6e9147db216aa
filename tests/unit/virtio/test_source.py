"""Driver sources, the interface (builder/virtio/source.py): sizes from the listing, reads
checked against them, one digest per file."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from builder.errors import BuildError, InputError
from builder.virtio.source import DirectorySource


@pytest.fixture
def source(tmp_path: Path) -> DirectorySource:
    (tmp_path / "viostor" / "2k8").mkdir(parents=True)
    (tmp_path / "viostor" / "2k8" / "viostor.inf").write_bytes(b"[Version]\r\n")
    (tmp_path / "viostor" / "2k8" / "viostor.sys").write_bytes(b"MZ" + bytes(100))
    return DirectorySource(tmp_path)


def test_files_are_listed_sorted_with_their_sizes(source: DirectorySource) -> None:
    assert [(f.path, f.size) for f in source.files()] == [
        ("viostor/2k8/viostor.inf", 11),
        ("viostor/2k8/viostor.sys", 102),
    ]


def test_reads_are_checked_against_the_listing(source: DirectorySource) -> None:
    assert source.read_exact("viostor/2k8/viostor.inf", 11) == b"[Version]\r\n"
    with pytest.raises(BuildError, match="ended after 11 bytes where 12 were expected"):
        source.read_exact("viostor/2k8/viostor.inf", 12)
    with pytest.raises(BuildError, match="longer than the 10 bytes expected") as raised:
        source.read_exact("viostor/2k8/viostor.inf", 10)
    assert "the driver source changed during the build" in str(raised.value)


def test_a_stream_is_opened_on_its_first_read_and_can_be_rewound(source: DirectorySource) -> None:
    stream = source.open_exact("viostor/2k8/viostor.sys", 102)
    assert stream.read(2) == b"MZ"
    stream.seek(0)
    assert stream.read() == b"MZ" + bytes(100)
    stream.close()


def test_an_oversized_small_file_is_refused(source: DirectorySource) -> None:
    with pytest.raises(InputError, match="more than the 50 expected"):
        source.read_bytes("viostor/2k8/viostor.sys", 50)


def test_each_file_is_hashed_once(source: DirectorySource, monkeypatch: pytest.MonkeyPatch) -> None:
    path = "viostor/2k8/viostor.sys"
    digest = source.sha256(path)
    assert digest == hashlib.sha256(b"MZ" + bytes(100)).hexdigest()

    def no_more_reads(*_: object) -> None:
        raise AssertionError("read twice")

    monkeypatch.setattr(source, "open_exact", no_more_reads)
    assert source.sha256(path) == digest


def test_paths_are_described_for_messages(source: DirectorySource, tmp_path: Path) -> None:
    assert source.describe("a/b.inf") == str(tmp_path / "a/b.inf")
    assert source.as_json() == {"path": str(tmp_path), "kind": "dir", "label": tmp_path.name}


def test_a_small_file_read_whole_is_not_read_again_for_its_digest(
    source: DirectorySource, tmp_path: Path
) -> None:
    data = source.read_bytes("viostor/2k8/viostor.inf", 1024)
    # Same size, other bytes: a second read would see them.
    (tmp_path / "viostor" / "2k8" / "viostor.inf").write_bytes(b"[Changed]\r\n")
    assert source.sha256("viostor/2k8/viostor.inf") == hashlib.sha256(data).hexdigest()
