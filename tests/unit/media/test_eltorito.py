"""The El Torito reader and the UEFI entry's new target (builder/media/eltorito.py),
against catalogs written from the specification (tests/fixtures/el_torito.py); the
catalog of a real genisoimage DVD is read in tests/integration/test_install_dvd_overlay.py."""

from __future__ import annotations

import struct

import pytest

from builder.media import eltorito
from tests.fixtures.el_torito import (
    boot_entry,
    boot_record,
    microsoft_catalog,
    section_header,
    validation_entry,
)


def test_the_boot_record_names_the_catalog() -> None:
    assert eltorito.catalog_lba(boot_record(299)) == 299


@pytest.mark.parametrize(
    ("record", "says"),
    [
        (boot_record(299)[:100], "ends before"),
        (b"\x01" + boot_record(299)[1:], "not an El Torito boot record"),
        (boot_record(299).replace(b"CD001", b"CD002"), "not an El Torito boot record"),
        (boot_record(299).replace(b"EL TORITO", b"EL TORADO"), "not an El Torito boot record"),
        (boot_record(16), "cannot be a catalog"),
        (boot_record(0), "cannot be a catalog"),
    ],
)
def test_a_bad_boot_record_is_refused(record: bytes, says: str) -> None:
    with pytest.raises(eltorito.CatalogError, match=says):
        eltorito.catalog_lba(record)


def test_the_microsoft_shape_parses() -> None:
    catalog = microsoft_catalog()
    entries = eltorito.parse_catalog(catalog.sector)
    assert [(e.platform, e.bootable, e.sector_count, e.load_rba) for e in entries] == [
        (0, True, 8, 300),
        (0xEF, True, 1, 302),
    ]
    uefi = eltorito.uefi_entry(entries)
    assert uefi is not None and uefi.offset == catalog.uefi_offset


def test_pointing_the_uefi_entry_changes_its_rba_and_nothing_else() -> None:
    catalog = microsoft_catalog()
    entry = eltorito.uefi_entry(eltorito.parse_catalog(catalog.sector))
    assert entry is not None
    patched = eltorito.point_uefi_entry(catalog.sector, entry, lba=1024, size=1474560)
    assert len(patched) == len(catalog.sector)
    changed = [i for i, (a, b) in enumerate(zip(catalog.sector, patched, strict=True)) if a != b]
    assert changed and all(entry.offset + 8 <= i < entry.offset + 12 for i in changed)
    again = eltorito.parse_catalog(patched)
    assert [(e.platform, e.sector_count, e.load_rba) for e in again] == [
        (0, 8, 300),
        (0xEF, 1, 1024),  # a count of 1 ("the whole image") stays
    ]


def test_an_exact_sector_count_is_made_exact_for_the_new_image() -> None:
    catalog = microsoft_catalog(uefi_count=2880)
    entry = eltorito.uefi_entry(eltorito.parse_catalog(catalog.sector))
    assert entry is not None
    patched = eltorito.point_uefi_entry(catalog.sector, entry, lba=1024, size=8 * 2**20 + 1)
    assert eltorito.parse_catalog(patched)[1].sector_count == 16385
    huge = eltorito.point_uefi_entry(catalog.sector, entry, lba=1024, size=2**30)
    assert eltorito.parse_catalog(huge)[1].sector_count == 0xFFFF


def _sector(*records: bytes) -> bytes:
    return b"".join(records).ljust(2048, b"\0")


def test_extension_records_and_several_sections_are_walked() -> None:
    sector = _sector(
        validation_entry(0),
        boot_entry(rba=300, count=8, segment=0x7C0),
        section_header(0x02, 1, last=False),
        boot_entry(rba=310, count=4),
        b"\x44" + b"\0" * 31,  # an extension of the Mac entry
        section_header(0xEF, 2),
        boot_entry(rba=320, count=1, bootable=False),
        boot_entry(rba=330, count=1),
    )
    entries = eltorito.parse_catalog(sector)
    assert [(e.platform, e.load_rba) for e in entries] == [
        (0, 300),
        (2, 310),
        (0xEF, 320),
        (0xEF, 330),
    ]
    uefi = eltorito.uefi_entry(entries)
    assert uefi is not None and uefi.load_rba == 330  # the first bootable one


def _bad_checksum() -> bytes:
    good = bytearray(microsoft_catalog().sector)
    good[4] ^= 0xFF
    return bytes(good)


@pytest.mark.parametrize(
    ("sector", "says"),
    [
        (microsoft_catalog().sector[:1000], "cut short"),
        (b"\0" * 2048, "no validation entry"),
        (microsoft_catalog().sector.replace(b"\x55\xaa", b"\x55\xab", 1), "no validation entry"),
        (_bad_checksum(), "wrong checksum"),
        (
            _sector(validation_entry(), b"\x77" + b"\0" * 31),
            "not a boot entry",
        ),
        (
            _sector(validation_entry(), boot_entry(rba=300, count=8), section_header(0xEF, 70)),
            "more entries than its sector holds",
        ),
    ],
)
def test_a_catalog_that_does_not_parse_is_refused(sector: bytes, says: str) -> None:
    with pytest.raises(eltorito.CatalogError, match=says):
        eltorito.parse_catalog(sector)


def test_a_catalog_without_uefi_entry_has_none() -> None:
    sector = _sector(validation_entry(), boot_entry(rba=300, count=8))
    assert eltorito.uefi_entry(eltorito.parse_catalog(sector)) is None
    # A validation entry for UEFI makes the initial entry the UEFI one.
    uefi_first = _sector(validation_entry(0xEF), boot_entry(rba=300, count=1))
    found = eltorito.uefi_entry(eltorito.parse_catalog(uefi_first))
    assert found is not None and found.load_rba == 300
    assert struct.unpack_from("<H", validation_entry(), 28)[0] != 0
