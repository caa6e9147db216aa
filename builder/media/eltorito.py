"""The El Torito boot catalog of an install DVD, and the one-sector change that makes its
UEFI entry boot `efisys_noprompt.bin` (pure: bytes in, bytes out).

A Windows DVD's UEFI entry loads `efi/microsoft/boot/efisys.bin`, whose boot loader asks
for a key ("Press any key to boot from CD or DVD") and gives up after a few seconds;
`efisys_noprompt.bin` beside it is the same loader without the question. pvinstall never
changes the user's DVD: the domain reads it through a copy-on-write overlay
(`media/overlay.py`) whose only changed sector is the boot catalog, with the UEFI
entry's load RBA (and sector count) pointing at `efisys_noprompt.bin`. The BIOS entry
stays as it is. docs/windows-modern.md §8 says why this and not sending the key.

The formats (El Torito 1.0, "Bootable CD-ROM Format Specification"):

- the boot record volume descriptor, sector 17: type 0, `CD001`, version 1, the boot
  system id `EL TORITO SPECIFICATION` (zero-padded to 32 bytes), the catalog's sector
  as a little-endian 32-bit number at byte 0x47;
- the catalog, 32-byte records: the validation entry (header id 1, platform id, a
  checksum that makes the sixteen 16-bit words sum to 0, key 55 AA), the initial entry
  (the default, for the validation entry's platform), then section headers (0x90, or
  0x91 for the last: platform id, number of entries) each followed by its section
  entries (boot indicator 0x88 or 0, media type, load segment, system type, sector
  count in 512-byte units, load RBA) and their extension records (0x44).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

SECTOR = 2048
BOOT_RECORD_SECTOR = 17
_BOOT_SYSTEM_ID = b"EL TORITO SPECIFICATION".ljust(32, b"\0")
_ENTRY = 32
PLATFORM_UEFI = 0xEF
# A sector count of 0 or 1 tells UEFI firmware to load the whole image (EDK2 reads the
# file's size from its FAT header then); larger counts are exact.
_WHOLE_IMAGE = 1
_MAX_SECTIONS = 64
_MAX_ENTRIES = _MAX_SECTIONS * 64


class CatalogError(ValueError):
    """A boot record or catalog that does not parse; the message says what is wrong."""


@dataclass(frozen=True)
class CatalogEntry:
    """One boot entry of the catalog and where it is in the catalog's sector."""

    offset: int  # byte offset of its 32-byte record in the catalog sector
    platform: int  # 0 BIOS, 0xEF UEFI
    bootable: bool
    media_type: int
    sector_count: int  # 512-byte units
    load_rba: int  # 2048-byte sector of the image


@dataclass(frozen=True)
class BootCatalog:
    """The catalog's sector as read from the DVD, and where it is."""

    lba: int
    sector: bytes

    @property
    def byte_offset(self) -> int:
        return self.lba * SECTOR


def catalog_lba(boot_record: bytes) -> int:
    """The catalog's sector, from the boot record volume descriptor (sector 17)."""
    if len(boot_record) < SECTOR:
        raise CatalogError("the disc ends before its El Torito boot record (sector 17)")
    if boot_record[0] != 0 or boot_record[1:6] != b"CD001" or boot_record[7:39] != _BOOT_SYSTEM_ID:
        raise CatalogError("sector 17 is not an El Torito boot record")
    (lba,) = struct.unpack_from("<I", boot_record, 0x47)
    if lba <= BOOT_RECORD_SECTOR:
        raise CatalogError(f"the boot record points at sector {lba}, which cannot be a catalog")
    return int(lba)


def parse_catalog(sector: bytes) -> tuple[CatalogEntry, ...]:
    """Every boot entry of a catalog sector: the initial entry, then the sections'."""
    if len(sector) < SECTOR:
        raise CatalogError("the boot catalog is cut short")
    validation = sector[:_ENTRY]
    if validation[0] != 1 or validation[30:32] != b"\x55\xaa":
        raise CatalogError("the boot catalog has no validation entry")
    if sum(struct.unpack("<16H", validation)) & 0xFFFF:
        raise CatalogError("the boot catalog's validation entry has a wrong checksum")
    entries = [_entry(sector, _ENTRY, validation[1])]
    offset = 2 * _ENTRY
    for _ in range(_MAX_SECTIONS):
        if offset + _ENTRY > SECTOR:
            break
        header = sector[offset : offset + _ENTRY]
        if header[0] not in (0x90, 0x91):
            break
        platform, count = header[1], struct.unpack_from("<H", header, 2)[0]
        offset += _ENTRY
        seen = 0
        while seen < count and offset + _ENTRY <= SECTOR:
            if sector[offset] != 0x44:  # extension records belong to the entry before
                entries.append(_entry(sector, offset, platform))
                seen += 1
            offset += _ENTRY
            if len(entries) > _MAX_ENTRIES:
                raise CatalogError("the boot catalog lists more entries than any disc has")
        while offset + _ENTRY <= SECTOR and sector[offset] == 0x44:
            offset += _ENTRY  # the last entry's extension records
        if seen < count:
            raise CatalogError(
                "the boot catalog's section lists more entries than its sector holds"
            )
        if header[0] == 0x91:
            break
    return tuple(entries)


def _entry(sector: bytes, offset: int, platform: int) -> CatalogEntry:
    record = sector[offset : offset + _ENTRY]
    if record[0] not in (0x88, 0x00):
        raise CatalogError(f"the boot catalog's entry at byte {offset} is not a boot entry")
    count, rba = struct.unpack_from("<HI", record, 6)
    return CatalogEntry(offset, platform, record[0] == 0x88, record[1], count, rba)


def uefi_entry(entries: tuple[CatalogEntry, ...]) -> CatalogEntry | None:
    """The first bootable entry for UEFI (platform 0xEF), the one firmware boots."""
    return next((e for e in entries if e.platform == PLATFORM_UEFI and e.bootable), None)


def point_uefi_entry(sector: bytes, entry: CatalogEntry, *, lba: int, size: int) -> bytes:
    """The catalog sector with `entry` loading the image at sector `lba` of `size` bytes.

    A count below 2 (Microsoft's DVDs carry 1) stays as it is, meaning "the whole
    image"; an exact count is made exact for the new image (at most 0xFFFF sectors).
    """
    count = entry.sector_count
    if count > _WHOLE_IMAGE:
        count = min(-(-size // 512), 0xFFFF)
    patched = bytearray(sector)
    struct.pack_into("<HI", patched, entry.offset + 6, count, lba)
    return bytes(patched)
