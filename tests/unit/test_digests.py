"""builder/digests.py: digests of bytes seen out of order, as pycdlib writes and reads
them; every pvinstall writer is hashed as it writes, never read back."""

from __future__ import annotations

import hashlib
import hmac
import os
import random
import threading
from pathlib import Path

import pytest

from builder import digests
from builder.digests import (
    HashingReader,
    HashingWriter,
    OrderedDigest,
    ThreadedHash,
    bytes_digest,
)
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


def test_a_threaded_hash_gives_the_digest_of_its_bytes_in_order_whatever_the_buffers() -> None:
    rng = random.Random(3)
    pieces = [bytes(rng.randrange(256) for _ in range(rng.randint(0, 5000))) for _ in range(50)]
    threaded = ThreadedHash(hashlib.sha256(), depth=2)
    reused = bytearray(4)
    for index, piece in enumerate(pieces):
        threaded.update(piece if index % 3 else memoryview(piece)[1:])
        # A writable buffer is copied: changing it afterwards changes nothing.
        reused[:] = b"abcd"
        threaded.update(reused)
        reused[:] = b"XXXX"
    expected = hashlib.sha256()
    for index, piece in enumerate(pieces):
        expected.update(piece if index % 3 else piece[1:])
        expected.update(b"abcd")
    assert threaded.hexdigest() == expected.hexdigest()
    with pytest.raises(ValueError, match="after the digest"):
        threaded.update(b"late")


class _Failing:
    def __init__(self) -> None:
        self.calls = 0

    def update(self, data: bytes | memoryview, /) -> None:
        self.calls += 1
        raise RuntimeError("the hash broke")

    def hexdigest(self) -> str:
        return "never"


def test_what_a_hash_worker_raises_is_raised_in_the_caller() -> None:
    inner = _Failing()
    threaded = ThreadedHash(inner)
    threaded.update(b"x")
    with pytest.raises(RuntimeError, match="the hash broke"):
        threaded.hexdigest()
    assert inner.calls == 1
    later = ThreadedHash(_Failing())
    later.update(b"x")
    for _ in range(1000):  # the worker fails on its own time; the next update says so
        try:
            later.update(b"y")
        except RuntimeError:
            break
    else:
        pytest.fail("the worker's error never reached the caller")
    later.close()


def test_an_abandoned_digest_leaves_no_thread_behind(tmp_path: Path) -> None:
    before = {t for t in threading.enumerate() if t.name == "pvinstall-hash"}
    path = tmp_path / "out.iso"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    with HashingWriter(fd, path, b"key") as target:
        target.write(b"half of an image")  # then the writer fails: no digest() call
    (tmp_path / "cd.iso").write_bytes(b"a CD")
    with HashingReader(tmp_path / "cd.iso") as reader:
        reader.read(2)
    after = {t for t in threading.enumerate() if t.name == "pvinstall-hash"}
    assert after - before == set()


def test_a_large_output_is_written_back_as_it_goes_and_hashed_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[tuple[int, int]] = []
    monkeypatch.setattr(digests, "WRITEBACK_STEP", 3000)
    real = digests.start_writeback

    def spy(fd: int, offset: int, size: int) -> None:
        started.append((offset, size))
        real(fd, offset, size)  # the real call, on a real file: advisory, changes nothing

    monkeypatch.setattr(digests, "start_writeback", spy)
    data = os.urandom(10_000)
    path = tmp_path / "install.iso"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    with HashingWriter(fd, path, b"key") as target:
        for at in range(0, len(data), 1000):
            target.write(bytearray(data[at : at + 1000]))
        digest = target.digest()
    assert started == [(0, 3000), (3000, 3000), (6000, 3000)]
    assert path.read_bytes() == data
    assert digest == {"hmac_sha256": hmac.new(b"key", data, hashlib.sha256).hexdigest()}


def test_the_reader_hands_out_the_buffer_it_hashes(tmp_path: Path) -> None:
    path = tmp_path / "cd.iso"
    data = os.urandom(5000)
    path.write_bytes(data)
    with HashingReader(path) as reader:
        first = reader.read(1000)
        into = bytearray(1000)
        assert reader.readinto(into) == 1000
        rest = reader.read()
        assert isinstance(first, bytes) and first + into + rest == data
        assert reader.read(10) == b""
        assert reader.digest() == {"sha256": hashlib.sha256(data).hexdigest()}


@pytest.mark.parametrize(
    "layout",
    [
        [],  # empty
        [("data", 3000)],
        [("hole", 8 << 20)],  # only a hole
        [("hole", 3 << 20), ("data", 5000), ("hole", 2 << 20)],
        [("data", 1 << 20), ("hole", 4 << 20), ("data", 70000), ("hole", 1 << 20), ("data", 1)],
    ],
)
def test_file_digest_hashes_holes_as_the_zeros_they_read_as(
    tmp_path: Path, layout: list[tuple[str, int]]
) -> None:
    path = tmp_path / "sparse.raw"
    with path.open("wb") as handle:
        for index, (kind, size) in enumerate(layout):
            if kind == "hole":
                handle.seek(size, os.SEEK_CUR)
            else:
                handle.write(bytes([index + 1]) * size)
        handle.truncate()
    expected = hashlib.sha256(path.read_bytes()).hexdigest()
    assert digests.file_digest(path) == {"sha256": expected}
    key = b"k" * 32
    assert digests.file_digest(path, key) == {
        "hmac_sha256": hmac.new(key, path.read_bytes(), hashlib.sha256).hexdigest()
    }
