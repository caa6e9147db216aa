"""Reading FAT floppy images (builder/media/fat_reader.py): what a normal image holds, and
every hostile image refused with a sentence, in bounded time.

Images are made byte by byte (tests/unit/media/common.py), so each can be exactly as
damaged as a case needs; real mtools images are read in tests/integration/.
"""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from builder.errors import InputError
from builder.media.fat_reader import FloppyReader, FloppySource
from builder.virtio.source import SourceLimits
from tests.fuzzing import fuzz_settings
from tests.unit.media.common import (
    GEO,
    LOWER_BASE,
    ROOT,
    DriverFloppy,
    FatImage,
    driver_floppy,
    long_entries,
    short_entry,
)

SYS = "i386/Win2003/viostor.sys"
INF = "i386/Win2003/viostor.inf"


def read_all(path: Path) -> dict[str, bytes]:
    with FloppySource(path) as source:
        return {f.path: source.read_exact(f.path, f.size) for f in source.files()}


def test_a_driver_floppy_reads_as_written(tmp_path: Path) -> None:
    floppy = driver_floppy()
    image = floppy.write(tmp_path / "v.vfd")
    assert read_all(image) == floppy.files
    with FloppySource(image) as source:
        assert source.label == "TEST"
        assert [f.path for f in source.files()] == sorted(floppy.files)


def test_names_are_what_windows_shows(tmp_path: Path) -> None:
    """The long name when its checksum matches the 8.3 name, else the 8.3 name (with the
    NT lower-case flags); 0x05 stands for a leading 0xE5."""
    image = FatImage()
    image.file(ROOT, "UPPER.TXT", b"1")
    image.file(ROOT, "LOWER.TXT", b"2", ntres=LOWER_BASE)
    image.file(ROOT, "LONG~1.TXT", b"3", long_name="A long name.txt")
    stale = long_entries("Stale long name.txt", b"OTHER   TXT")  # checksum of another name
    for part in stale:
        image.raw_entry(ROOT, part)
    image.raw_entry(ROOT, short_entry(b"STALE   TXT", 0x20, 0, 0))
    image.raw_entry(ROOT, short_entry(b"\x05E5     TXT", 0x20, 0, 0))
    image.raw_entry(ROOT, short_entry(b"\xe5DELETEDTXT", 0x20, 0, 0))  # deleted: not listed
    path = tmp_path / "n.img"
    path.write_bytes(image.data)
    with FloppySource(path) as source:
        assert sorted(f.path for f in source.files()) == sorted(
            ["UPPER.TXT", "lower.TXT", "A long name.txt", "STALE.TXT", "\u03c3E5.TXT"]
        )


def _chain(cluster_of: str, index: int, value: int | str) -> Callable[[DriverFloppy], None]:
    """Set the FAT entry of the `index`th cluster of `cluster_of` to `value` (a number, or
    the name of a path whose first cluster it becomes)."""

    def mutate(floppy: DriverFloppy) -> None:
        target = floppy.clusters[value][0] if isinstance(value, str) else value
        floppy.image.fat(floppy.clusters[cluster_of][index], target)

    return mutate


def _patch(short: str, **fields: int | str) -> Callable[[DriverFloppy], None]:
    def mutate(floppy: DriverFloppy) -> None:
        resolved = {
            k: floppy.clusters[v][0] if isinstance(v, str) else v for k, v in fields.items()
        }
        floppy.image.patch(short, **resolved)

    return mutate


def _add(folder: str, build: Callable[[FatImage, int], None]) -> Callable[[DriverFloppy], None]:
    def mutate(floppy: DriverFloppy) -> None:
        build(floppy.image, ROOT if folder == "" else floppy.clusters[folder][0])

    return mutate


def _named(long_name: str) -> Callable[[FatImage, int], None]:
    return lambda image, folder: image.entry(folder, "CRAFTED.SYS", 0x20, 0, 0, long_name=long_name)


# (how the image is damaged, where the error is, what it says). The walk refuses most of
# them; the chain of a file is followed when the file is read (`read`).
HOSTILE = [
    (_chain(SYS, 2, SYS), f"{SYS} has a cluster chain that loops (at cluster 6)", "read"),
    (_chain(SYS, 0, SYS), f"{SYS} has a cluster chain that loops (at cluster 6)", "read"),
    (_chain(SYS, 1, 3000), f"{SYS} has cluster 3000 in its chain, outside", "read"),
    (_chain(SYS, 1, 0), f"{SYS} has a free cluster in its chain after 7", "read"),
    (_chain(SYS, 1, 1), f"{SYS} has a free cluster in its chain after 7", "read"),
    (_chain(SYS, 1, 0xFF7), f"{SYS} has a bad cluster after cluster 7", "read"),
    (_chain(SYS, 1, 0xFFF), f"{SYS} has a cluster chain of 2 clusters; its size needs 5", "read"),
    (_chain(SYS, 4, 11), f"{SYS} has a cluster chain longer than the 5 clusters", "read"),
    (_chain(SYS, 4, SYS), f"{SYS} has a cluster chain longer than the 5 clusters", "read"),
    (_chain(INF, 0, 0), f"{INF} has a free cluster in its chain after 5", "read-inf"),
    (_patch("VIOSTOR.SYS", cluster=0), f"{SYS} is 2304 bytes but has no clusters", "list"),
    (_patch("VIOSTOR.SYS", cluster=4000), f"{SYS} has cluster 4000 in its chain", "read"),
    (_patch("VIOSTOR.SYS", size=2**32 - 1), "more than the whole volume holds", "list"),
    (_patch("VIOSTOR.SYS", attributes=0x60), f"{SYS} has the device attribute", "list"),
    (_patch("WIN2003", cluster="i386"), "i386/Win2003 is the same folder as i386", "list"),
    (_patch("WIN2003", cluster=0), "i386/Win2003 has cluster 0 in its chain", "list"),
    (_patch("WIN2003", cluster=9999), "i386/Win2003 has cluster 9999 in its chain", "list"),
    (_patch("I386", size=512), "i386 is a folder with a file size (512 bytes)", "list"),
    (_chain("i386", 0, "i386"), "i386 has a cluster chain that loops (at cluster 3)", "list"),
    (_chain("i386", 0, 0), "i386 has a free cluster in its chain after 3", "list"),
    (
        _add("i386/Win2003", lambda image, f: image.entry(f, "LOOP", 0x10, f, 0)),
        "i386/Win2003/LOOP is the same folder as i386/Win2003",
        "list",
    ),
    (
        _add("i386", lambda image, f: image.entry(f, "VIOSTOR.SYS", 0x10, 4, 0)),
        "i386/VIOSTOR.SYS is the same folder as i386/Win2003",
        "list",
    ),
    (_add("i386/Win2003", _named("../../etc/shadow")), "named '../../etc/shadow'", "list"),
    (_add("i386/Win2003", _named("..")), "named '..'", "list"),
    (_add("i386/Win2003", _named("back\\slash.sys")), "named 'back\\slash.sys'", "list"),
    (_add("i386/Win2003", _named("bell\x07.sys")), "named 'bell\\x07.sys'", "list"),
    (
        _add("", lambda image, f: image.raw_entry(f, short_entry(b".          ", 0x10, 3, 0))),
        "named '.' in its root",
        "list",
    ),
    (
        _add("i386/Win2003", _named("viostor.sys")),
        "i386/Win2003/viostor.sys is there twice",
        "list",
    ),
    (
        _add("i386/Win2003", _named("VIOSTOR.INF")),
        "i386/Win2003/VIOSTOR.INF is there twice",
        "list",
    ),
]


@pytest.mark.parametrize(("damage", "fragment", "when"), HOSTILE)
def test_a_hostile_image_is_refused_with_a_sentence(
    tmp_path: Path, damage: Callable[[DriverFloppy], None], fragment: str, when: str
) -> None:
    floppy = driver_floppy()
    damage(floppy)
    image = floppy.write(tmp_path / "hostile.vfd")
    if when == "list":
        with pytest.raises(InputError) as raised:
            FloppySource(image)
    else:
        member = INF if when == "read-inf" else SYS
        with FloppySource(image) as source, pytest.raises(InputError) as raised:
            source.read_exact(member, source.size(member))
    assert fragment in str(raised.value)
    assert str(image) in str(raised.value)


def _boot(*changes: tuple[int, str, int]) -> Callable[[bytearray], None]:
    """Write each (offset, struct format, value) into the boot sector."""

    def mutate(data: bytearray) -> None:
        for offset, fmt, value in changes:
            struct.pack_into(fmt, data, offset, value)

    return mutate


# Boot sectors that cannot describe a FAT12/16 volume, and images shorter than theirs.
BAD_BOOT_SECTORS = [
    (_boot((11, "<H", 0)), "has 0 bytes per sector and 1 sectors per cluster"),
    (_boot((13, "<B", 3)), "has 512 bytes per sector and 3 sectors per cluster"),
    (_boot((11, "<H", 4096), (13, "<B", 16)), "65536-byte clusters, more than FAT allows"),
    (_boot((22, "<H", 0)), "is a FAT32 volume"),
    (_boot((16, "<B", 0)), "0 FATs"),
    (_boot((14, "<H", 0)), "0 reserved sectors"),
    (_boot((17, "<H", 0)), "0 root entries"),
    (_boot((21, "<B", 0x12)), "media byte 0x12"),
    (_boot((19, "<H", 20)), "has 20 sectors, no more than its FATs and root folder take"),
    (_boot((22, "<H", 1)), "has a FAT of 512 bytes, too small for its"),
    (_boot((19, "<H", 0), (32, "<I", 200_000)), "is a FAT32 volume (199967 clusters)"),
    (_boot((510, "<H", 0)), "has no FAT boot sector"),
]


@pytest.mark.parametrize(("damage", "fragment"), BAD_BOOT_SECTORS)
def test_a_boot_sector_that_is_not_fat12_or_fat16_is_refused(
    tmp_path: Path, damage: Callable[[bytearray], None], fragment: str
) -> None:
    data = driver_floppy().image.data
    damage(data)
    image = tmp_path / "boot.vfd"
    image.write_bytes(data)
    with pytest.raises(InputError) as raised:
        FloppyReader(image)
    assert fragment in str(raised.value)


@pytest.mark.parametrize("size", [0, 100, 511, 512, 513, 5000, GEO.size // 2, GEO.size - 1])
def test_a_truncated_image_is_refused_before_anything_is_read(tmp_path: Path, size: int) -> None:
    image = tmp_path / "short.vfd"
    image.write_bytes(driver_floppy().image.data[:size])
    with pytest.raises(InputError) as raised:
        FloppyReader(image)
    message = str(raised.value)
    if size < 512:
        assert f"is {size} bytes, too short to hold a FAT boot sector" in message
    else:
        assert f"is truncated: its boot sector says {GEO.size} bytes, the file has {size}" in (
            message
        )


@pytest.mark.parametrize(
    ("limits", "fragment"),
    [
        (SourceLimits(entries=4), "has more than 4 files and folders"),
        (SourceLimits(depth=1), "has folders nested more than 1 deep (i386/Win2003"),
        (SourceLimits(path_chars=20), "has a path longer than 20 characters"),
    ],
)
def test_the_walk_is_bounded(tmp_path: Path, limits: SourceLimits, fragment: str) -> None:
    image = driver_floppy().write(tmp_path / "v.vfd")
    with pytest.raises(InputError) as raised:
        FloppySource(image, limits)
    assert fragment in str(raised.value)


def test_an_unreadable_image_is_a_sentence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    image = driver_floppy().write(tmp_path / "v.vfd")

    def denied(*_: object, **__: object) -> int:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("builder.media.fat_reader.os.open", denied)
    with pytest.raises(InputError, match=r"Permission denied\. Check its permissions"):
        FloppyReader(image)


# -- fuzzing --------------------------------------------------------------------------------

# The bytes worth changing: the boot sector, the first FAT, the root folder and the first
# data clusters (the folders and files of the driver floppy).
_MUTABLE = [
    range(0, 64),
    range(GEO.reserved_sectors * 512, GEO.reserved_sectors * 512 + 32),
    range(GEO.root_dir_sector * 512, GEO.root_dir_sector * 512 + 8 * 32),
    range(
        (GEO.root_dir_sector + GEO.root_dir_sectors) * 512,
        (GEO.root_dir_sector + GEO.root_dir_sectors) * 512 + 3 * 512,
    ),
]
_OFFSETS = st.one_of(*(st.sampled_from(r) for r in _MUTABLE))


@fuzz_settings(300)
@given(st.lists(st.tuples(_OFFSETS, st.integers(0, 255)), min_size=1, max_size=12))
def test_fuzz_a_mutated_image_only_raises_input_error(
    tmp_path_factory: pytest.TempPathFactory, changes: list[tuple[int, int]]
) -> None:
    """Whatever bytes change, reading lists and reads files, or says why not: never
    another exception, never a hang (every chain and walk is bounded)."""
    data = driver_floppy().image.data
    for offset, value in changes:
        data[offset] = value
    image = tmp_path_factory.mktemp("fuzz") / "m.vfd"
    image.write_bytes(data)
    with contextlib.suppress(InputError), FloppySource(image) as source:
        for entry in source.files():
            with contextlib.suppress(InputError):
                source.read_exact(entry.path, entry.size)
