"""The FAT writer (builder/media/fat.py): the blank image, FAT dates, short and long
names, and the layout of folders and files on the image.

Writing whole floppies and checking them with fsck.fat and mtools is in
tests/integration/test_media_floppy.py.
"""

from __future__ import annotations

import io
import struct
from datetime import UTC, datetime
from pathlib import Path

import pytest

from builder.errors import BuildError
from builder.media import fat
from builder.media.fat import blank_image
from builder.media.files import PlannedFile
from builder.media.floppy import GEOMETRIES, FloppyPlan, floppy_usage
from builder.virtio.source import DirectorySource

G144 = GEOMETRIES[1440]
G288 = GEOMETRIES[2880]


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
    date, clock = fat._fat_date_time(epoch)
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


# -- names -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "taken", "short"),
    [
        ("viostor.inf", set(), "VIOSTOR.INF"),
        ("WdfCoInstaller01009.dll", set(), "WDFCOINS.DLL"),
        ("WdfCoInstaller01011.dll", {"WDFCOINS.DLL"}, "WDFCOI~1.DLL"),
        ("WdfCoInstaller01013.dll", {"WDFCOINS.DLL", "WDFCOI~1.DLL"}, "WDFCOI~2.DLL"),
        ("Long Folder Name", set(), "LONGFOL"),  # 8 characters, then the space dropped
        ("a.b.c", set(), "A_B.C"),
        ("qemu-ga-x86_64.msi", set(), "QEMU-GA-.MSI"),
        ("é+x.txt", set(), "\u00c9_X.TXT"),
        ("2k8R2", set(), "2K8R2"),
        ("amd64", {"AMD64"}, "AMD64~1"),
    ],
)
def test_short_names_are_the_ones_pyfatfs_made(name: str, taken: set[str], short: str) -> None:
    assert fat.short_name(name, taken) == short


def test_long_name_entries_carry_the_name_and_the_short_name_s_checksum() -> None:
    short = b"WDFCOINSDLL"
    entries = fat._long_entries("WdfCoInstaller01009.dll", short)
    assert len(entries) == 2 * 32
    last, first = entries[:32], entries[32:]
    assert first[0] == 1 and last[0] == 0x40 | 2  # stored last part first
    assert first[11] == last[11] == 0x0F  # the long-name attributes
    checksum = 0
    for byte in short:
        checksum = (((checksum >> 1) | (checksum & 1) << 7) + byte) & 0xFF
    assert first[13] == last[13] == checksum
    units = first[1:11] + first[14:26] + first[28:32] + last[1:11] + last[14:26] + last[28:32]
    assert units.decode("utf-16-le").split("\0")[0] == "WdfCoInstaller01009.dll"
    assert units.endswith(b"\xff\xff")  # padded after the terminating NUL


def _write(files: list[tuple[str, bytes]], kib: int = 1440) -> bytes:
    geo = GEOMETRIES[kib]
    planned = tuple(PlannedFile.inline(path, data) for path, data in files)
    plan = FloppyPlan(
        kib, "PVINSTALL", planned, floppy_usage([(f.path, f.size) for f in planned], geo)
    )
    out = io.BytesIO()
    fat.write_floppy(plan, out, DirectorySource(Path.cwd()), epoch=1_700_000_000, serial=1)
    return out.getvalue()


def _cluster_at(geo_kib: int, cluster: int) -> int:
    geo = GEOMETRIES[geo_kib]
    return (
        geo.root_dir_sector + geo.root_dir_sectors + (cluster - 2) * geo.sectors_per_cluster
    ) * 512


def _fat12(image: bytes, cluster: int) -> int:
    at = 512 + cluster * 3 // 2
    pair = image[at] | image[at + 1] << 8
    return pair >> 4 if cluster % 2 else pair & 0xFFF


def test_a_folder_grows_by_a_cluster_when_its_entries_fill_one() -> None:
    """16 entries fill a 512-byte cluster: `.`, `..` and 14 8.3 files; the 15th file's
    entry takes a second cluster, allocated after the first 14 files' data."""
    files = [(f"DIR/F{index:02d}.SYS", b"x") for index in range(15)]
    image = _write(files)
    # DIR is cluster 2; files 0..13 take 3..16; the folder's second cluster is 17.
    assert _fat12(image, 2) == 17 and _fat12(image, 17) == 0xFFF
    assert [_fat12(image, c) for c in range(3, 17)] == [0xFFF] * 14
    second = image[_cluster_at(1440, 17) : _cluster_at(1440, 17) + 32]
    assert second[:11] == b"F14     SYS" and struct.unpack_from("<H", second, 26)[0] == 18


@pytest.mark.parametrize(
    ("files", "problem"),
    [
        # the long name's short name comes first and takes the 8.3 name
        ([("UPPER.INF30", b"a"), ("UPPER.INF", b"b")], "already took it"),
        ([("x" * 128 + ".sys", b"a")], "over FAT's 127"),
    ],
)
def test_a_name_the_image_cannot_hold_is_a_build_error(
    files: list[tuple[str, bytes]], problem: str
) -> None:
    with pytest.raises(BuildError, match=problem):
        _write(files)


def test_an_8_3_name_before_its_long_twin_keeps_it() -> None:
    image = _write([("UPPER.INF", b"b"), ("UPPER.INF30", b"a")])
    root = image[19 * 512 : 19 * 512 + 4 * 32]  # the label, UPPER.INF, a long name, its 8.3
    assert root[32:43] == b"UPPER   INF" and root[96:107] == b"UPPER~1 INF"
