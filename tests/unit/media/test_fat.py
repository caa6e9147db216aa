"""The FAT writer's pure parts (builder/media/fat.py): the blank image, FAT dates and the
pinned pyfatfs clock.

Writing with pyfatfs and checking with fsck.fat/mtools is in
tests/integration/test_media_floppy.py.
"""

from __future__ import annotations

import struct
from datetime import UTC, datetime

import pytest

from builder.media import fat
from builder.media.fat import blank_image
from builder.media.floppy import GEOMETRIES

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


def test_the_pyfatfs_clock_is_restored() -> None:
    from pyfatfs.DosDateTime import DosDateTime

    before = DosDateTime.__dict__["now"]
    with fat._pinned_fat_clock(1_700_000_000):
        assert DosDateTime.now() == DosDateTime(2023, 11, 14, 22, 13, 20)
    assert DosDateTime.__dict__["now"] is before
    assert DosDateTime.now().year >= 2024
