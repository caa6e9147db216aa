"""FAT12 floppy images, written by this module itself: the answer floppy.

`write_floppy` makes the answer floppy of a `FloppyPlan` (`media/floppy.py`) in memory
and writes it in one piece. The image is what DOS FORMAT and mtools make (the standard
geometry, a boot sector that mtools and old Windows setup accept, two FATs, the volume
label first in the root), and its folders and files are laid out the way pyfatfs, the
writer this one replaced, laid them out, byte for byte: entries in the order of the
plan, each folder's clusters allocated when it is made and grown when it fills, each
file's clusters in one run after its entry, long (VFAT) names for every name that is not
an upper-case 8.3 name, and the short names pyfatfs made for them (`short_name`); only
where pyfatfs failed or wrote one file into another does it differ (docs/libraries.md). The
plan counts clusters and root entries by the same rules (`floppy.floppy_usage`), and the
writer still refuses to go past the disk's last cluster or root entry. Floppy images
from users are read by `media/fat_reader.py`. See docs/libraries.md.
"""

from __future__ import annotations

import itertools
import math
import os
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from builder.errors import BuildError
from builder.media.files import output_stream
from builder.media.floppy import (
    DIR_ENTRY,
    NOT_IN_SHORT_NAMES,
    SECTOR,
    SHORT_NAME_ENCODING,
    FloppyGeometry,
    FloppyPlan,
    floppy_usage,
    geometry,
    needs_long_name,
)
from builder.reproducible import FAT_EPOCH
from builder.virtio.source import DriverSource

# -- writing -------------------------------------------------------------------------------


# A boot sector that says what this disk is, waits for a key and lets the BIOS try the
# next boot device (INT 19h), instead of jumping into zeros if a guest boots from it.
_BOOT_CODE_AT = 0x3E
_BOOT_MESSAGE = (
    b"\r\nThis is the pvinstall answer floppy; it is not bootable.\r\n"
    b"Press a key to boot from the next device.\r\n\0"
)


def _boot_code() -> bytes:
    """The boot sector's code, followed by its message."""
    # The code is loaded at 0000:7C00 and the message follows it; the code's length does
    # not depend on the address it loads, so measure it with a placeholder first.
    message_at = 0x7C00 + _BOOT_CODE_AT + len(_boot_instructions(0))
    return _boot_instructions(message_at) + _BOOT_MESSAGE


def _boot_instructions(message_at: int) -> bytes:
    # fmt: off
    code = b"".join([
        b"\xfa",                                 # cli
        b"\x31\xc0",                             # xor ax, ax
        b"\x8e\xd8",                             # mov ds, ax
        b"\x8e\xd0",                             # mov ss, ax
        b"\xbc\x00\x7c",                         # mov sp, 0x7c00
        b"\xfb",                                 # sti
        b"\xfc",                                 # cld
        b"\xbe" + struct.pack("<H", message_at),  # mov si, message
        b"\xac",                                 # next: lodsb
        b"\x84\xc0",                             # test al, al
        b"\x74\x09",                             # jz wait
        b"\xb4\x0e",                             # mov ah, 0x0e  (teletype output)
        b"\xbb\x07\x00",                         # mov bx, 0x0007
        b"\xcd\x10",                             # int 0x10
        b"\xeb\xf2",                             # jmp next
        b"\x30\xe4",                             # wait: xor ah, ah
        b"\xcd\x16",                             # int 0x16  (wait for a key)
        b"\xcd\x19",                             # int 0x19  (next boot device)
    ])
    # fmt: on
    return code


def _fat_date_time(epoch: int) -> tuple[int, int]:
    """FAT (date, time) words for `epoch`, in UTC, clamped to what FAT can record."""
    clamped = min(max(epoch, FAT_EPOCH), 4354819198)  # 1980-01-01 .. 2107-12-31 23:59:58
    t = time.gmtime(clamped)
    date = (t.tm_year - 1980) << 9 | t.tm_mon << 5 | t.tm_mday
    clock = t.tm_hour << 11 | t.tm_min << 5 | t.tm_sec // 2
    return date, clock


def _label_bytes(label: str) -> bytes:
    return label.upper().encode("ascii")[:11].ljust(11)


def blank_image(geo: FloppyGeometry, label: str, serial: int, epoch: int) -> bytes:
    """An empty FAT12 image: boot sector with the standard geometry, two FATs, and a root
    directory holding only the volume label (the same label as the boot sector)."""
    boot = bytearray(SECTOR)
    struct.pack_into(
        "<3s8sHBHBHHBHHHII",
        boot,
        0,
        b"\xeb\x3c\x90",  # jmp short 0x3e; nop
        b"MSWIN4.1",  # the OEM name fatgen103 recommends for compatibility
        SECTOR,
        geo.sectors_per_cluster,
        geo.reserved_sectors,
        geo.fats,
        geo.root_entries,
        geo.sectors,
        geo.media,
        geo.fat_sectors,
        geo.sectors_per_track,
        geo.heads,
        0,  # hidden sectors
        0,  # total sectors (32-bit), unused below 65536
    )
    struct.pack_into(
        "<BBBI11s8s",
        boot,
        36,
        0x00,
        0,
        0x29,
        serial & 0xFFFFFFFF,
        _label_bytes(label),
        b"FAT12   ",
    )
    code = _boot_code()
    boot[_BOOT_CODE_AT : _BOOT_CODE_AT + len(code)] = code
    boot[510:512] = b"\x55\xaa"

    fat = bytearray(geo.fat_sectors * SECTOR)
    # FAT[0] = media byte with the high bits set, FAT[1] = end of chain: F0 FF FF.
    fat[0:3] = bytes([geo.media, 0xFF, 0xFF])

    root = bytearray(geo.root_dir_sectors * SECTOR)
    date, clock = _fat_date_time(epoch)
    struct.pack_into(
        "<11sBBBHHHHHHHI",
        root,
        0,
        _label_bytes(label),
        0x08,
        0,
        0,
        clock,
        date,
        date,
        0,
        clock,
        date,
        0,
        0,
    )
    image = bytearray(geo.size)
    image[0:SECTOR] = boot
    for index in range(geo.fats):
        start = (geo.reserved_sectors + index * geo.fat_sectors) * SECTOR
        image[start : start + len(fat)] = fat
    start = geo.root_dir_sector * SECTOR
    image[start : start + len(root)] = root
    return bytes(image)


def write_floppy(
    plan: FloppyPlan, out: Path | IO[bytes], source: DriverSource, *, epoch: int, serial: int
) -> None:
    """Write the answer floppy image `out` (FAT12, nominal size, deterministic).

    The image is made in memory (1.44 or 2.88 MB) and written in one piece, so that
    its digest is taken from the bytes written, never read back.

    Args:
        plan: the floppy part of the media plan (its capacity already checked).
        out: the image to create (removed again if writing fails), or the stream of a
            new file to write it into.
        source: where `source_path` files are read from.
        epoch: SOURCE_DATE_EPOCH, the date of every directory entry.
        serial: the volume serial number (derived from the build id).

    Raises:
        BuildError: the files do not fit, or a name cannot be written into its folder
            (an 8.3 name a long name's short name took before it, a name over 127
            characters).
    """
    name = out.name if isinstance(out, Path) else Path(str(getattr(out, "path", "floppy"))).name
    geo = geometry(plan.size_kib)
    usage = floppy_usage(((f.path, f.size) for f in plan.files), geo)
    if not usage.fits:
        raise BuildError(f"{name}: the planned files do not fit ({usage}).")
    disk = _Disk(name, geo, blank_image(geo, plan.label, serial, epoch), epoch)
    folders: dict[str, _Folder] = {"": disk.root}
    for planned in plan.files:
        parts = planned.path.split("/")
        for depth in range(1, len(parts)):
            path = "/".join(parts[:depth])
            if path not in folders:
                folders[path] = disk.make_folder(
                    folders["/".join(parts[: depth - 1])], parts[depth - 1]
                )
        # Bounded by the floppy's size (the plan checked it).
        disk.add_file(folders["/".join(parts[:-1])], parts[-1], planned.read(source))
    data = disk.image()
    with output_stream(out) as stream:
        stream.write(data)


# -- the layout -------------------------------------------------------------------------------

_ATTR_DIRECTORY = 0x10
_ATTR_LONG_NAME = 0x0F
_END_OF_CHAIN = 0xFFF
_FIRST_CLUSTER = 2
# A directory entry (Microsoft's FAT specification, "Directory Structure"): the 8.3 name,
# attributes, NT reserved, creation tenths, creation time and date, access date, the
# cluster's high word (0 on FAT12), write time and date, first cluster, size.
_ENTRY = struct.Struct("<11sBBBHHHHHHHI")
# A long-name entry: order, 5 UTF-16 units, attributes, type, checksum, 6 units, 0, 2 units.
_LONG_ENTRY = struct.Struct("<B10sBBB12sH4s")
_LONG_NAME_UNITS_BYTES = 26
_LONG_NAME_MAX_BYTES = 255  # pyfatfs's limit: 127 UTF-16 units


@dataclass
class _Entry:
    """One name in a folder: its 8.3 name (11 bytes), long name, attributes and data."""

    short: bytes
    long_name: str | None
    attr: int
    cluster: int = 0
    size: int = 0


@dataclass
class _Folder:
    """A folder being filled: its clusters (none for the fixed root) and entries."""

    clusters: list[int]
    entries: list[_Entry] = field(default_factory=list)
    short_names: set[str] = field(default_factory=set)
    slots: int = 0  # directory entries used, long-name entries included

    @property
    def cluster(self) -> int:
        return self.clusters[0] if self.clusters else 0


def short_name(name: str, taken: set[str]) -> str:
    """The 8.3 name pyfatfs gave a name that needs a long one (make_8dot3_name): upper
    case, the first 8 characters of the stem and 3 of the extension with spaces dropped
    and the characters an 8.3 name cannot hold made "_", and, when that is `taken` in the
    folder, a "~N" suffix on a shortened stem, counting from 1."""
    stem, extension = os.path.splitext(name.upper())  # noqa: PTH122 - a name, as pyfatfs splits it
    base = _short_part(stem[:8].strip())
    ext = _short_part(extension[1:4].strip())
    number = 0
    while len(str(number)) + 1 <= 7:
        if number:
            base = f"{base[: 8 - (1 + len(str(number)))]}~{number}"
        candidate = f"{base}.{ext}" if ext else base
        if candidate not in taken:
            return candidate
        number += 1
    raise BuildError(f"{name!r}: every short name from {base}~1 to ~999999 is taken in its folder.")


def _short_part(text: str) -> str:
    encoded = text.encode(SHORT_NAME_ENCODING, errors="replace")
    mapped = bytes(
        ord("_") if byte in NOT_IN_SHORT_NAMES else byte for byte in encoded if byte != 0x20
    )
    return mapped.decode(SHORT_NAME_ENCODING)


def _padded(short: str) -> bytes:
    """An 8.3 name as its entry holds it: stem and extension padded with spaces (a
    leading 0xE5, the mark of a deleted entry, stored as 0x05)."""
    stem, extension = os.path.splitext(short)  # noqa: PTH122 - a name, as pyfatfs splits it
    padded = bytearray(
        (stem.strip().ljust(8) + extension[1:].strip().ljust(3)).encode(SHORT_NAME_ENCODING)
    )
    if padded[0] == 0xE5:
        padded[0] = 0x05
    return bytes(padded)


def _checksum(short: bytes) -> int:
    """The checksum of an 8.3 name that its long-name entries carry."""
    total = 0
    for byte in short:
        total = (((total >> 1) | (total & 1) << 7) + byte) & 0xFF
    return total


def _long_entries(name: str, short: bytes) -> bytes:
    """The long-name entries of `name`, last part first, as they precede its 8.3 entry."""
    units = name.encode("utf-16-le")
    if len(units) % _LONG_NAME_UNITS_BYTES:
        units += b"\0\0"
        units += b"\xff" * (-len(units) % _LONG_NAME_UNITS_BYTES)
    count = len(units) // _LONG_NAME_UNITS_BYTES
    checksum = _checksum(short)
    entries = []
    for index in range(count):
        part = units[index * _LONG_NAME_UNITS_BYTES : (index + 1) * _LONG_NAME_UNITS_BYTES]
        order = index + 1 | (0x40 if index == count - 1 else 0)
        entries.append(
            _LONG_ENTRY.pack(
                order, part[0:10], _ATTR_LONG_NAME, 0, checksum, part[10:22], 0, part[22:26]
            )
        )
    return b"".join(reversed(entries))


class _Disk:
    """The image being made: clusters handed out in order from the first, as they are
    asked for, and every folder and file kept until `image()` lays them out."""

    def __init__(self, name: str, geo: FloppyGeometry, blank: bytes, epoch: int) -> None:
        self._name = name
        self._geo = geo
        self._blank = blank
        self._date, self._time = _fat_date_time(epoch)
        self._fat = [0] * (geo.fat_sectors * SECTOR * 2 // 3)
        self._fat[0], self._fat[1] = 0xF00 | geo.media, _END_OF_CHAIN
        self._next = _FIRST_CLUSTER
        self._last = _FIRST_CLUSTER + geo.data_clusters - 1
        self._data: dict[int, bytes] = {}  # first cluster -> the file's bytes
        self._folders: list[_Folder] = []
        self.root = _Folder([], slots=1)  # the volume label is the root's first entry

    def _allocate(self, count: int) -> list[int]:
        if self._next + count - 1 > self._last:
            raise BuildError(
                f"{self._name}: the files overflowed the floppy although the plan said they fit."
            )
        clusters = list(range(self._next, self._next + count))
        self._next += count
        self._chain(clusters)
        return clusters

    def _chain(self, clusters: list[int]) -> None:
        for here, following in itertools.pairwise(clusters):
            self._fat[here] = following
        self._fat[clusters[-1]] = _END_OF_CHAIN

    def _add(self, folder: _Folder, name: str, attr: int) -> _Entry:
        """A new entry named `name` in `folder`, the folder grown to hold it."""
        if not needs_long_name(name):
            # An 8.3 name is its own entry, unless a long name's short one took it.
            short, long_name = name, None
            problem = (
                "another file's short name already took it" if name in folder.short_names else None
            )
        else:
            short, long_name = short_name(name, folder.short_names), name
            problem = (
                f"a long name of {len(name)} characters is over FAT's 127"
                if len(name.encode("utf-16-le")) > _LONG_NAME_MAX_BYTES
                else None
            )
        if problem is not None:
            raise BuildError(
                f"{self._name}: {name!r} cannot be written into its folder: {problem}.",
                "Rename the file or folder in the driver source (or leave it off the floppy).",
            )
        folder.short_names.add(short)
        entry = _Entry(_padded(short), long_name, attr)
        folder.entries.append(entry)
        folder.slots += 1 + (len(_long_entries(name, entry.short)) // DIR_ENTRY if long_name else 0)
        if folder is self.root:
            if folder.slots > self._geo.root_entries:
                raise BuildError(
                    f"{self._name}: the root folder is full ({self._geo.root_entries} entries)."
                )
        else:
            needed = max(1, math.ceil(folder.slots * DIR_ENTRY / self._geo.cluster_bytes))
            if needed > len(folder.clusters):
                grown = self._allocate(needed - len(folder.clusters))
                folder.clusters += grown
                self._chain(folder.clusters)
        return entry

    def make_folder(self, parent: _Folder, name: str) -> _Folder:
        """A new folder in `parent`: its first cluster first, then its entry."""
        folder = _Folder(self._allocate(1))
        folder.entries += [
            _Entry(b".".ljust(11), None, _ATTR_DIRECTORY, folder.cluster),
            _Entry(b"..".ljust(11), None, _ATTR_DIRECTORY, parent.cluster),
        ]
        folder.slots = 2
        self._folders.append(folder)
        entry = self._add(parent, name, _ATTR_DIRECTORY)
        entry.cluster = folder.cluster
        return folder

    def add_file(self, parent: _Folder, name: str, data: bytes) -> None:
        """A new file in `parent`: its entry first, then its clusters in one run."""
        entry = self._add(parent, name, 0)
        if data:
            clusters = self._allocate(math.ceil(len(data) / self._geo.cluster_bytes))
            entry.cluster, entry.size = clusters[0], len(data)
            self._data[entry.cluster] = data

    def _entries(self, folder: _Folder) -> bytes:
        packed = []
        for entry in folder.entries:
            if entry.long_name is not None:
                packed.append(_long_entries(entry.long_name, entry.short))
            packed.append(
                _ENTRY.pack(
                    entry.short,
                    entry.attr,
                    0,
                    0,
                    self._time,
                    self._date,
                    self._date,
                    0,
                    self._time,
                    self._date,
                    entry.cluster,
                    entry.size,
                )
            )
        return b"".join(packed)

    def _put(self, image: bytearray, clusters: list[int], data: bytes) -> None:
        geo = self._geo
        first_data_sector = geo.root_dir_sector + geo.root_dir_sectors
        for index, cluster in enumerate(clusters):
            part = data[index * geo.cluster_bytes : (index + 1) * geo.cluster_bytes]
            at = (first_data_sector + (cluster - _FIRST_CLUSTER) * geo.sectors_per_cluster) * SECTOR
            image[at : at + len(part)] = part

    def _cluster_chain(self, first: int) -> list[int]:
        chain = [first]
        while self._fat[chain[-1]] != _END_OF_CHAIN:
            chain.append(self._fat[chain[-1]])
        return chain

    def image(self) -> bytes:
        """The whole image: the blank one with the FATs, folders and files laid in."""
        geo = self._geo
        image = bytearray(self._blank)
        fat = bytearray(len(self._fat) * 3 // 2)
        for index in range(0, len(self._fat), 2):
            low, high = self._fat[index], self._fat[index + 1]
            fat[index * 3 // 2 : index * 3 // 2 + 3] = bytes(
                (low & 0xFF, (low >> 8) | (high & 0xF) << 4, high >> 4)
            )
        for copy in range(geo.fats):
            at = (geo.reserved_sectors + copy * geo.fat_sectors) * SECTOR
            image[at : at + len(fat)] = fat
        root_at = geo.root_dir_sector * SECTOR + DIR_ENTRY  # after the volume label
        root = self._entries(self.root)
        image[root_at : root_at + len(root)] = root
        for folder in self._folders:
            self._put(image, folder.clusters, self._entries(folder))
        for first, data in self._data.items():
            self._put(image, self._cluster_chain(first), data)
        return bytes(image)
