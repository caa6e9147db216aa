"""builder/digests.py: digests of bytes seen out of order, as pycdlib writes and reads
them; every pvinstall writer is hashed as it writes, never read back."""

from __future__ import annotations

import hashlib
import hmac
import os
import random
from pathlib import Path

import pytest

from builder.digests import HashingReader, HashingWriter, OrderedDigest, bytes_digest
from builder.media import iso9660
from builder.media.files import IsoPlan, PlannedFile
from builder.virtio.source import DirectorySource


def _zeros(_offset: int, size: int) -> bytes:
    return bytes(size)


@pytest.mark.parametrize("window", [16, 1024, 1 << 20])
def test_bytes_in_any_order_with_gaps_give_the_file_s_digest_or_none(window: int) -> None:
    rng = random.Random(7)
    image = bytearray(20_000)
    pieces = []
    offset = 0
    while offset < len(image):
        size = rng.randint(1, 700)
        if rng.random() < 0.2:
            offset += size  # a gap nobody writes: zeros
            continue
        data = bytes(rng.randrange(256) for _ in range(min(size, len(image) - offset)))
        image[offset : offset + len(data)] = data
        pieces.append((offset, data))
        offset += size
    rng.shuffle(pieces)
    digest = OrderedDigest(None, _zeros, rewrites_change=True, window=window)
    for at, data in pieces:
        digest.add(at, data)
    expected = hashlib.sha256(bytes(image)).hexdigest()
    # Bytes that come later than the window holds make the digest unknown (the caller
    # then hashes the file), never wrong; within the window it is always known.
    found = digest.finish(len(image))
    assert found == expected if window >= len(image) else found in (expected, None)
    keyed = OrderedDigest(b"k", _zeros, rewrites_change=True, window=window)
    for at, data in sorted(pieces):
        keyed.add(at, data)
    assert keyed.finish(len(image)) == hmac.new(b"k", bytes(image), hashlib.sha256).hexdigest()


def test_an_output_rewritten_after_it_was_hashed_has_no_digest() -> None:
    digest = OrderedDigest(None, _zeros, rewrites_change=True, window=4)
    digest.add(0, b"abcdefgh")
    digest.add(2, b"XY")
    assert digest.finish(8) is None


def test_an_input_read_twice_is_hashed_once(tmp_path: Path) -> None:
    path = tmp_path / "cd.iso"
    data = os.urandom(3 * 2**20 + 5)
    path.write_bytes(data)
    with HashingReader(path) as reader:
        reader.seek(2**20)
        reader.read(4096)
        reader.seek(0)
        assert reader.read(2**20 + 10) == data[: 2**20 + 10]
        reader.seek(2**21)
        reader.read(100)
        assert reader.digest() == {"sha256": hashlib.sha256(data).hexdigest()}
        # What the reader skipped was read once to fill the digest, nothing more.
        assert reader.filled == len(data) - (2**20 + 4096) - 100


def test_pycdlib_s_images_are_hashed_as_written_never_read_back(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    files = []
    for index in range(40):
        name = f"d{index % 5}/f{index}.sys"
        data = os.urandom(1000 + index * 3001)
        (tmp_path / "src" / f"f{index}.sys").write_bytes(data)
        files.append(PlannedFile.from_source(name, f"f{index}.sys", len(data)))
    plan = IsoPlan("TEST", (PlannedFile.inline("README.TXT", b"hello"), *files))
    path = tmp_path / "drivers.iso"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    with HashingWriter(fd, path, None) as target:
        iso9660.write_drivers_iso(plan, target, DirectorySource(tmp_path / "src"), epoch=0)  # type: ignore[arg-type]
        digest = target.digest()
        assert not target.read_back
        assert target.size == path.stat().st_size
    assert digest == bytes_digest(path.read_bytes())
