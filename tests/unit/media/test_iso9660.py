"""ISO writing helpers (builder/media/iso9660.py): ISO 9660 names, the pinned clock, streaming.

The images themselves are checked with isoinfo/xorriso in
tests/integration/test_media_drivers_iso.py and test_media_install_cd.py.
"""

from __future__ import annotations

import contextlib
import functools
import io
import re
import struct
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from builder.errors import BuildError, InputError
from builder.media import iso9660
from builder.media.files import IsoPlan, PlannedFile
from builder.virtio.source import DirectorySource, SourceLimits
from tests.fuzzing import fuzz_settings


@pytest.mark.parametrize(
    ("name", "is_dir", "relaxed", "expected"),
    [
        ("viostor.inf", False, False, "VIOSTOR.INF"),
        ("2k8R2", True, False, "2K8R2"),
        ("NetKVM", True, False, "NETKVM"),
        ("virtio-win_license.txt", False, False, "VIRTIO_WIN_LICENSE.TXT"),
        ("DISK1", False, False, "DISK1."),
        ("a.b.c", False, False, "A_B.C"),
        ("WdfCoInstaller01009.dll", False, False, "WDFCOINSTALLER01009.DLL"),
        ("x" * 40 + ".sys", False, False, "X" * 26 + ".SYS"),
        ("d" * 40, True, False, "D" * 31),
        ("$OEM$", True, False, "_OEM_"),
        # A Windows CD is mastered with relaxed names: $OEM$ must keep its name.
        ("$OEM$", True, True, "$OEM$"),
        ("$1", True, True, "$1"),
        ("Drivers", True, True, "DRIVERS"),
        ("viostor.sys", False, True, "VIOSTOR.SYS"),
        ("WIN51", False, True, "WIN51."),
        ("odd;name.txt", False, True, "ODD_NAME.TXT"),
    ],
)
def test_iso9660_names(name: str, is_dir: bool, relaxed: bool, expected: str) -> None:
    assert iso9660.iso9660_name(name, is_dir=is_dir, relaxed=relaxed) == expected


def test_the_pycdlib_clock_is_pinned_to_utc_and_restored() -> None:
    import importlib

    main: Any = importlib.import_module("pycdlib.pycdlib")
    dates: Any = importlib.import_module("pycdlib.dates")
    udf: Any = importlib.import_module("pycdlib.udf")
    before = (main.time, dates.time, udf.random)
    with iso9660._pinned_clock(1_700_000_000):
        assert main.time.time() == 1_700_000_000.0
        assert dates.time.localtime(0) == time.gmtime(0)
        assert dates.time.strftime("%Y", time.gmtime(0)) == "1970"
    assert (main.time, dates.time, udf.random) == before


class RecordingSource(DirectorySource):
    """A directory source that records how its files are opened and read."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.opened: list[str] = []
        self.reads: list[int] = []
        self.open_now = 0
        self.most_open = 0

    def open(self, path: str) -> contextlib.AbstractContextManager[IO[bytes]]:
        self.opened.append(path)
        return self._open(path)

    @contextlib.contextmanager
    def _open(self, path: str) -> Iterator[IO[bytes]]:
        outer = self

        class Stream(io.FileIO):
            def read(self, size: int | None = -1) -> bytes:
                outer.reads.append(-1 if size is None else size)
                return super().read(size)

        self.open_now += 1
        self.most_open = max(self.most_open, self.open_now)
        try:
            with Stream(self.path / path, "rb") as stream:
                yield stream
        finally:
            self.open_now -= 1


def test_drivers_iso_streams_source_files_in_chunks(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    big = 20 * 2**20 + 123
    with (tmp_path / "src" / "big.sys").open("wb") as handle:
        handle.truncate(big)
    (tmp_path / "src" / "small.inf").write_bytes(b"[Version]\r\n")
    source = RecordingSource(tmp_path / "src")
    plan = IsoPlan(
        "TEST",
        (
            PlannedFile.inline("README.TXT", b"hello"),
            PlannedFile.from_source("drv/big.sys", "big.sys", big),
            PlannedFile.from_source("drv/small.inf", "small.inf", 11),
        ),
    )
    out = tmp_path / "drivers.iso"
    iso9660.write_drivers_iso(plan, out, source, epoch=1_700_000_000)
    assert sorted(source.opened) == ["big.sys", "small.inf"]  # each opened once
    assert source.most_open == 1  # one at a time, closed when done
    assert -1 not in source.reads
    assert max(source.reads) <= 1024 * 1024  # never read whole
    with iso9660.IsoReader(out) as reader:
        entries = {e.path: e for e in reader.entries()}
        assert entries["drv/big.sys"].size == big
        with reader.open(entries["drv/small.inf"]) as stream:
            assert stream.read() == b"[Version]\r\n"


@pytest.mark.parametrize(
    ("planned", "message"), [(12, "ended after 11 bytes"), (10, "longer than the 10 bytes")]
)
def test_a_source_file_of_another_size_fails_and_leaves_nothing(
    tmp_path: Path, planned: int, message: str
) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.inf").write_bytes(b"[Version]\r\n")
    plan = IsoPlan("TEST", (PlannedFile.from_source("a.inf", "a.inf", planned),))
    out = tmp_path / "drivers.iso"
    with pytest.raises(BuildError, match=message):
        iso9660.write_drivers_iso(plan, out, DirectorySource(tmp_path / "src"), epoch=0)
    assert not out.exists()


def test_same_plan_same_bytes_whatever_the_clock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = IsoPlan("TEST", (PlannedFile.inline("A/B.TXT", b"x"),))
    source = DirectorySource(tmp_path)
    iso9660.write_drivers_iso(plan, tmp_path / "1.iso", source, epoch=1_700_000_000)
    # The clock an hour on (frozen there): the image does not follow it.
    later = time.time() + 3600
    monkeypatch.setattr(time, "time", lambda: later)
    iso9660.write_drivers_iso(plan, tmp_path / "2.iso", source, epoch=1_700_000_000)
    iso9660.write_drivers_iso(plan, tmp_path / "3.iso", source, epoch=1_700_000_002)
    first = (tmp_path / "1.iso").read_bytes()
    assert first == (tmp_path / "2.iso").read_bytes()
    assert first != (tmp_path / "3.iso").read_bytes()


def test_names_that_map_to_one_identifier_both_survive(tmp_path: Path) -> None:
    plan = IsoPlan(
        "TEST",
        (
            PlannedFile.inline("a-b/x-y.sys", b"1"),
            PlannedFile.inline("a-b/x_y.sys", b"2"),
            PlannedFile.inline("a_b/x.sys", b"3"),
        ),
    )
    out = tmp_path / "drivers.iso"
    iso9660.write_drivers_iso(plan, out, DirectorySource(tmp_path), epoch=0)
    with iso9660.IsoReader(out) as reader:  # Rock Ridge names
        contents = {}
        for entry in reader.entries():
            with reader.open(entry) as stream:
                contents[entry.path] = stream.read()
    assert contents == {"a-b/x-y.sys": b"1", "a-b/x_y.sys": b"2", "a_b/x.sys": b"3"}
    import pycdlib

    image = pycdlib.PyCdlib()
    image.open(str(out))
    try:
        names = sorted(r.file_identifier().decode() for r in image.list_children(iso_path="/A_B"))
        assert names[2:] == ["X_Y.SYS;1", "X_Y_1.SYS;1"]
        roots = sorted(r.file_identifier().decode() for r in image.list_children(iso_path="/"))
        assert roots[2:] == ["A_B", "A_B_1"]
    finally:
        image.close()


@pytest.mark.parametrize(
    ("extents", "size", "whole"),
    [
        ([(2048, 100)], 100, True),
        ([(2048, 1024), (3072, 1024)], 2048, True),  # > 4 GiB files have several, in a run
        ([(2048, 1024), (8192, 1024)], 2048, False),  # a gap: pycdlib would read wrongly
        ([(8192, 1024), (2048, 1024)], 2048, False),
        ([(2048, 1024)], 4096, False),  # shorter than the file says
        ([], 0, True),
        ([], 10, False),
    ],
)
def test_an_install_image_is_read_only_when_it_is_one_run(
    extents: list[tuple[int, int]], size: int, whole: bool
) -> None:
    assert iso9660.one_extent(extents, size) is whole


# -- reading a hostile ISO: only InputError, in bounded time ----------------------------------

_ISO_FILES = {
    "viostor/2k8/amd64/viostor.inf": b'[Version]\r\nSignature="$Windows NT$"\r\n',
    "viostor/2k8/amd64/viostor.sys": bytes(range(256)) * 12,
    "NetKVM/2k8/amd64/netkvm.inf": b"[Version]\r\n",
    "virtio-win_license.txt": b"license\r\n",
}


@pytest.fixture(scope="module")
def small_iso(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A small drivers ISO (ISO 9660 + Joliet + Rock Ridge) written by pvinstall's own
    writer; its reading back is checked with isoinfo in tests/integration/."""
    out = tmp_path_factory.mktemp("iso") / "small.iso"
    plan = IsoPlan(
        "VIRTIO", tuple(PlannedFile.inline(path, data) for path, data in _ISO_FILES.items())
    )
    iso9660.write_drivers_iso(plan, out, DirectorySource(out.parent), epoch=1_700_000_000)
    return out.read_bytes()


def test_the_small_iso_reads_back(small_iso: bytes, tmp_path: Path) -> None:
    image = tmp_path / "s.iso"
    image.write_bytes(small_iso)
    with iso9660.IsoSource(image) as source:
        assert {f.path: source.read_exact(f.path, f.size) for f in source.files()} == _ISO_FILES


@functools.cache
def _structure(image: bytes) -> tuple[int, ...]:
    """The offsets worth changing: the non-zero bytes of the volume descriptors, path
    tables and directory records (the first sectors after the system area). Zero bytes
    there are mostly padding, which pycdlib checks first."""
    end = min(len(image), 48 * iso9660.SECTOR)
    return tuple(i for i in range(16 * iso9660.SECTOR, end) if image[i])


@fuzz_settings(100)
@given(st.data())
def test_fuzz_a_corrupt_iso_directory_only_raises_input_error(
    small_iso: bytes, tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    """Bytes changed in the volume descriptors, path tables and directory records (the
    first sectors after the system area): listing and reading give the files, or an
    InputError; never another exception, never a hang."""
    changes = data.draw(
        st.lists(
            st.tuples(st.sampled_from(_structure(small_iso)), st.integers(0, 255)),
            min_size=1,
            max_size=8,
        )
    )
    mutated = bytearray(small_iso)
    for offset, value in changes:
        mutated[offset] = value
    image = tmp_path_factory.mktemp("fuzz") / "m.iso"
    image.write_bytes(mutated)
    with contextlib.suppress(InputError), iso9660.IsoSource(image) as source:
        for entry in source.files():
            with contextlib.suppress(InputError):
                source.read_exact(entry.path, entry.size)


_SYS = "viostor/2k8/amd64/viostor.sys"
_INF = "viostor/2k8/amd64/viostor.inf"


def _record_of(image: bytearray, identifier: bytes) -> int:
    """The offset of the one directory record with this ISO 9660 identifier."""
    found = [
        i - 33
        for i in range(len(image))
        if image[i : i + len(identifier)] == identifier and image[i - 1] == len(identifier)
    ]
    assert len(found) == 1, (identifier, found)
    return found[0]


def _set_extent(identifier: bytes, sector: int) -> Callable[[bytearray], None]:
    def damage(image: bytearray) -> None:
        record = _record_of(image, identifier)
        struct.pack_into("<I", image, record + 2, sector)
        struct.pack_into(">I", image, record + 6, sector)

    return damage


def _rename_rr(old: bytes, new: bytes) -> Callable[[bytearray], None]:
    """Change a Rock Ridge NM name in place (same length)."""

    def damage(image: bytearray) -> None:
        assert len(old) == len(new)
        at = image.index(b"NM" + bytes([5 + len(old), 1, 0]) + old)
        image[at + 5 : at + 5 + len(old)] = new

    return damage


@pytest.mark.parametrize(
    ("damage", "fragment"),
    [
        (_set_extent(b"VIOSTOR.SYS;1", 10_000), f"{_SYS} has its data at byte 20480000, past"),
        (_rename_rr(b"viostor.sys", b"viostor.inf"), f"{_INF} is there twice"),
        (_rename_rr(b"viostor.sys", b"vio/tor.sys"), "has an entry named 'vio/tor.sys'"),
        (_rename_rr(b"viostor.sys", b"vio\\tor.sys"), "has an entry named 'vio\\tor.sys'"),
        (_rename_rr(b"viostor.sys", b"vio\x01tor.sys"), "has an entry named 'vio\\x01tor.sys'"),
    ],
)
def test_a_hostile_iso_directory_is_refused_naming_the_path(
    small_iso: bytes, tmp_path: Path, damage: Callable[[bytearray], None], fragment: str
) -> None:
    image = bytearray(small_iso)
    damage(image)
    path = tmp_path / "hostile.iso"
    path.write_bytes(image)
    with pytest.raises(InputError) as raised:
        iso9660.IsoSource(path)
    assert fragment in str(raised.value)
    assert str(path) in str(raised.value)


@pytest.mark.parametrize(
    ("limits", "fragment"),
    [
        (SourceLimits(entries=5), "has more than 5 files and folders"),
        (SourceLimits(depth=2), "has folders nested more than 2 deep"),
        (SourceLimits(path_chars=25), "has a path longer than 25 characters"),
    ],
)
def test_the_iso_walk_is_bounded(
    small_iso: bytes, tmp_path: Path, limits: SourceLimits, fragment: str
) -> None:
    path = tmp_path / "s.iso"
    path.write_bytes(small_iso)
    with pytest.raises(InputError, match=re.escape(fragment)):
        iso9660.IsoSource(path, limits)
