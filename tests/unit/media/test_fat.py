"""The floppy's geometry, capacity model and blank image (builder/media/fat.py, pure parts).

Writing with pyfatfs and checking with fsck.fat/mtools is in
tests/integration/test_media_floppy.py, which also proves the capacity model against
pyfatfs at exactly full.
"""

from __future__ import annotations

import struct
from datetime import UTC, datetime

import pytest

from builder.errors import BuildError
from builder.media import fat as floppy
from builder.media.fat import GEOMETRIES, FloppyGeometry, blank_image, dir_entries, floppy_usage

G144 = GEOMETRIES[1440]
G288 = GEOMETRIES[2880]


def test_standard_geometries() -> None:
    assert (G144.size, G144.data_clusters, G144.cluster_bytes, G144.root_entries) == (
        1474560,
        2847,
        512,
        224,
    )
    assert (G288.size, G288.data_clusters, G288.cluster_bytes, G288.root_entries) == (
        2949120,
        2863,
        1024,
        240,
    )
    assert (G144.sectors_per_track, G288.sectors_per_track) == (18, 36)
    assert G144.root_dir_sector == G288.root_dir_sector == 19


@pytest.mark.parametrize(
    ("name", "entries"),
    [
        ("WINNT.SIF", 1),
        ("DISK1", 1),
        ("VIOSTOR", 1),
        ("TXTSETUP.OEM", 1),
        ("viostor.sys", 2),  # lower case is kept through a long name
        ("Autounattend.xml", 3),  # 16 characters: two long-name slots
        ("WDFCOINSTALLER01009.DLL", 3),
        ("ABCDEFGHIJKLM", 2),  # 13 characters fit one slot
        ("ABCDEFGHIJKLMN", 3),
        ("NetKVM", 2),
    ],
)
def test_directory_entries_per_name(name: str, entries: int) -> None:
    assert dir_entries(name) == entries


def full(geo: FloppyGeometry, extra: int = 0) -> int:
    return geo.data_clusters * geo.cluster_bytes + extra


@pytest.mark.parametrize(
    ("geo", "files", "clusters", "root", "fits"),
    [
        # Nothing but the volume label.
        (G144, [], 0, 1, True),
        # Exactly full, and one byte (one cluster) over.
        (G144, [("BIG.BIN", full(G144))], 2847, 2, True),
        (G144, [("BIG.BIN", full(G144, 1))], 2848, 2, False),
        (G288, [("BIG.BIN", full(G288))], 2863, 2, True),
        (G288, [("BIG.BIN", full(G288, 1))], 2864, 2, False),
        # An empty file takes no cluster, a 1-byte file one.
        (G144, [("DISK1", 0), ("A.TXT", 1)], 1, 3, True),
        # A folder takes a cluster for . and .. and grows with its entries:
        # 2 + 3 * 2 = 8 entries = 256 bytes, one 512-byte cluster.
        (
            G144,
            [("VIOSTOR/viostor.inf", 10), ("VIOSTOR/viostor.cat", 10), ("VIOSTOR/viostor.sys", 10)],
            3 + 1,
            2,
            True,
        ),
        # 2 + 15 * 3 = 47 entries = 1504 bytes: three clusters.
        (G144, [(f"D/long-name-{i:02}.sys", 0) for i in range(15)], 3, 2, True),
        # Nested folders each count, the root holds only the first.
        (G144, [("A/B/C/X.TXT", 600)], 2 + 1 + 1 + 1, 2, True),
        # Full with a folder: 2846 data clusters + 1 folder cluster.
        (G144, [("D/X.BIN", full(G144, -512))], 2847, 2, True),
        (G144, [("D/X.BIN", full(G144, -511))], 2848, 2, False),
    ],
)
def test_capacity(
    geo: FloppyGeometry, files: list[tuple[str, int]], clusters: int, root: int, fits: bool
) -> None:
    usage = floppy_usage(files, geo)
    assert (usage.clusters, usage.root_entries, usage.fits) == (clusters, root, fits)


@pytest.mark.parametrize(
    ("geo", "count", "fits"),
    [(G144, 223, True), (G144, 224, False), (G288, 239, True), (G288, 240, False)],
)
def test_root_entry_limit(geo: FloppyGeometry, count: int, fits: bool) -> None:
    # The volume label takes one of the 224 (240) root entries.
    usage = floppy_usage([(f"F{i:03}.TXT", 0) for i in range(count)], geo)
    assert usage.root_entries == count + 1
    assert usage.fits is fits


@pytest.mark.parametrize(("count", "fits"), [(74, True), (75, False)])
def test_long_names_fill_the_root_sooner(count: int, fits: bool) -> None:
    # 16 characters: the 8.3 entry and two long-name slots each.
    usage = floppy_usage([(f"Long name {i:03}.txt", 0) for i in range(count)], G144)
    assert usage.root_entries == 1 + count * 3
    assert usage.fits is fits


def test_blank_image_boot_sector() -> None:
    image = blank_image(G144, "pvinstall", 0xDEADBEEF, 1_700_000_000)
    assert len(image) == G144.size
    (
        jump,
        oem,
        bps,
        spc,
        reserved,
        fats,
        root_entries,
        total,
        media,
        fat_sectors,
        spt,
        heads,
        hidden,
        total32,
    ) = struct.unpack_from("<3s8sHBHBHHBHHHII", image, 0)
    assert jump == b"\xeb\x3c\x90"
    assert (bps, spc, reserved, fats, root_entries, total, media, fat_sectors, spt, heads) == (
        512,
        1,
        1,
        2,
        224,
        2880,
        0xF0,
        9,
        18,
        2,
    )
    assert (hidden, total32) == (0, 0)
    assert oem == b"MSWIN4.1"
    drive, _, signature, serial, label, fs_type = struct.unpack_from("<BBBI11s8s", image, 36)
    assert (drive, signature, serial, label, fs_type) == (
        0,
        0x29,
        0xDEADBEEF,
        b"PVINSTALL  ",
        b"FAT12   ",
    )
    assert image[510:512] == b"\x55\xaa"
    # Both FATs start F0 FF FF (media byte, end of chain), the rest is free.
    for start in (512, 512 * 10):
        assert image[start : start + 3] == b"\xf0\xff\xff"
        assert not any(image[start + 3 : start + 9 * 512])
    # The root directory holds the label, dated from the epoch.
    root = 19 * 512
    assert image[root : root + 11] == b"PVINSTALL  "
    assert image[root + 11] == 0x08
    assert not any(image[root + 32 : 33 * 512])
    assert not any(image[33 * 512 :])


def test_blank_image_2880() -> None:
    image = blank_image(G288, "X", 1, 0)
    spc, root_entries, total, spt = (
        image[13],
        *struct.unpack_from("<HH", image, 17),
        struct.unpack_from("<H", image, 24)[0],
    )
    assert (spc, root_entries, total, spt) == (2, 240, 5760, 36)


@pytest.mark.parametrize(
    ("epoch", "expected"),
    [
        (1_700_000_000, datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)),
        (0, datetime(1980, 1, 1, tzinfo=UTC)),  # FAT cannot record dates before 1980
        (2**32 - 1, datetime(2106, 2, 7, 6, 28, 14, tzinfo=UTC)),  # 2-second resolution
    ],
)
def test_fat_dates_come_from_the_epoch_in_utc(epoch: int, expected: datetime) -> None:
    date, clock = floppy._fat_date_time(epoch)
    found = datetime(
        1980 + (date >> 9),
        date >> 5 & 15,
        date & 31,
        clock >> 11,
        clock >> 5 & 63,
        (clock & 31) * 2,
        tzinfo=UTC,
    )
    assert found == expected


def test_the_pyfatfs_clock_is_restored() -> None:
    from pyfatfs.DosDateTime import DosDateTime

    before = DosDateTime.__dict__["now"]
    with floppy._pinned_fat_clock(1_700_000_000):
        assert DosDateTime.now() == DosDateTime(2023, 11, 14, 22, 13, 20)
    assert DosDateTime.__dict__["now"] is before
    assert DosDateTime.now().year >= 2024


def test_unknown_size_is_a_build_error() -> None:
    with pytest.raises(BuildError):
        floppy.geometry(720)
