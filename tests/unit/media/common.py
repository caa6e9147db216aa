"""Shared helpers of the media tests: FAT12 images made byte by byte.

`FatImage` starts from a blank 1.44 MB image (`fat.blank_image`, whose boot sector and
FATs tests/unit/media/test_fat.py checks field by field) and writes directory entries,
FAT entries and cluster contents exactly as told, so a test can make any image: a
normal one, or one with a looping chain, a folder that contains itself, a long name
with a slash. That real tools read the normal ones the same way is checked in
tests/integration/test_hostile_sources.py (mtools makes the images there).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

from builder.media.fat import blank_image
from builder.media.floppy import GEOMETRIES, SECTOR

GEO = GEOMETRIES[1440]
ROOT = -1  # the root folder, in place of a cluster number
# DIR_NTRes: the 8.3 base or extension is all lower case (how mtools writes `disk1`).
LOWER_BASE = 0x08
LOWER_EXT = 0x10


def lfn_checksum(short: bytes) -> int:
    total = 0
    for byte in short:
        total = (((total & 1) << 7) | (total >> 1)) + byte & 0xFF
    return total


def short_entry(name: bytes, attributes: int, cluster: int, size: int, ntres: int = 0) -> bytes:
    """A 32-byte 8.3 directory entry (`name` is the 11 bytes, padded with spaces)."""
    assert len(name) == 11
    return struct.pack(
        "<11sBBBHHHHHHHI",
        name,
        attributes,
        ntres,
        0,
        0,
        0x5021,
        0x5021,
        0,
        0,
        0x5021,
        cluster,
        size,
    )


def long_entries(name: str, short: bytes) -> list[bytes]:
    """The long-name entries for `name`, in the order they are on disk (last part first)."""
    units = name.encode("utf-16-le")
    units += b"\x00\x00" if len(units) % 26 else b""
    while len(units) % 26:
        units += b"\xff\xff"
    parts = [units[i : i + 26] for i in range(0, len(units), 26)]
    checksum = lfn_checksum(short)
    entries = []
    for number, part in enumerate(parts, start=1):
        order = number | (0x40 if number == len(parts) else 0)
        entries.append(
            bytes([order])
            + part[:10]
            + bytes([0x0F, 0, checksum])
            + part[10:22]
            + b"\0\0"
            + part[22:26]
        )
    return entries[::-1]


@dataclass
class FatImage:
    """A FAT12 floppy image under construction."""

    data: bytearray = field(default_factory=lambda: bytearray(blank_image(GEO, "TEST", 1, 0)))
    next_cluster: int = 2
    # folder (ROOT or its first cluster) -> entries written so far (the root holds the
    # volume label first)
    used: dict[int, int] = field(default_factory=lambda: {ROOT: 1})

    def fat(self, cluster: int, value: int) -> None:
        """Set FAT entry `cluster` in both FATs."""
        for copy in range(GEO.fats):
            base = (GEO.reserved_sectors + copy * GEO.fat_sectors) * SECTOR
            offset = base + cluster * 3 // 2
            pair = self.data[offset] | self.data[offset + 1] << 8
            # An odd cluster holds the high 12 bits of its pair of bytes, an even one the low.
            pair = (pair & 0x000F) | (value << 4) if cluster & 1 else (pair & 0xF000) | value
            self.data[offset : offset + 2] = struct.pack("<H", pair & 0xFFFF)

    def find(self, short: str) -> int:
        """The offset of the 8.3 entry named `short` (`BASE.EXT`); the name must be unique."""
        base, _, ext = short.partition(".")
        name = base.encode("cp437").ljust(8) + ext.encode("cp437").ljust(3)
        found = [i for i in range(0, len(self.data), 32) if self.data[i : i + 11] == name]
        assert len(found) == 1, (short, found)
        return found[0]

    def patch(self, short: str, **fields: int) -> None:
        """Change fields of the entry named `short`: attributes, cluster, size."""
        offset = self.find(short)
        layout = {"attributes": (11, "<B"), "cluster": (26, "<H"), "size": (28, "<I")}
        for key, value in fields.items():
            where, fmt = layout[key]
            struct.pack_into(fmt, self.data, offset + where, value)

    def cluster_offset(self, cluster: int) -> int:
        data_sector = GEO.root_dir_sector + GEO.root_dir_sectors
        return (data_sector + (cluster - 2) * GEO.sectors_per_cluster) * SECTOR

    def allocate(self, count: int) -> list[int]:
        """`count` new clusters chained in order, the last marked end of chain."""
        clusters = list(range(self.next_cluster, self.next_cluster + count))
        self.next_cluster += count
        for here, following in zip(clusters, [*clusters[1:], 0xFFF], strict=True):
            self.fat(here, following)
        return clusters

    def raw_entry(self, folder: int, entry: bytes) -> None:
        """Append one 32-byte entry to `folder` (ROOT or a folder's first cluster)."""
        index = self.used.get(folder, 0)
        self.used[folder] = index + 1
        if folder == ROOT:
            offset = GEO.root_dir_sector * SECTOR + index * 32
        else:
            offset = self.cluster_offset(folder) + index * 32
        self.data[offset : offset + 32] = entry

    def entry(
        self,
        folder: int,
        name: str,
        attributes: int,
        cluster: int,
        size: int,
        *,
        long_name: str | None = None,
        ntres: int = 0,
    ) -> None:
        """An 8.3 entry named `name` (`BASE.EXT`), with long-name entries before it."""
        base, _, ext = name.partition(".")
        short = base.encode("cp437").ljust(8) + ext.encode("cp437").ljust(3)
        for part in long_entries(long_name, short) if long_name else []:
            self.raw_entry(folder, part)
        self.raw_entry(folder, short_entry(short, attributes, cluster, size, ntres))

    def file(
        self,
        folder: int,
        name: str,
        data: bytes,
        *,
        long_name: str | None = None,
        ntres: int = 0,
    ) -> list[int]:
        """A file of `data` in its own clusters; returns them."""
        clusters = self.allocate(max(1, -(-len(data) // SECTOR))) if data else []
        for index, cluster in enumerate(clusters):
            chunk = data[index * SECTOR : (index + 1) * SECTOR]
            offset = self.cluster_offset(cluster)
            self.data[offset : offset + len(chunk)] = chunk
        first = clusters[0] if clusters else 0
        self.entry(folder, name, 0x20, first, len(data), long_name=long_name, ntres=ntres)
        return clusters

    def folder(
        self, parent: int, name: str, *, long_name: str | None = None, ntres: int = 0
    ) -> int:
        """A subfolder (one cluster, with its `.` and `..`); returns its cluster."""
        (cluster,) = self.allocate(1)
        self.entry(parent, name, 0x10, cluster, 0, long_name=long_name, ntres=ntres)
        self.raw_entry(cluster, short_entry(b".          ", 0x10, cluster, 0))
        self.raw_entry(
            cluster, short_entry(b"..         ", 0x10, 0 if parent == ROOT else parent, 0)
        )
        return cluster


@dataclass
class DriverFloppy:
    """A small legacy-style driver floppy: the image, what each file holds, and the
    clusters of each file and folder (by its path)."""

    image: FatImage
    files: dict[str, bytes]
    clusters: dict[str, list[int]]

    def write(self, path: Path) -> Path:
        path.write_bytes(self.image.data)
        return path


def driver_floppy() -> DriverFloppy:
    image = FatImage()
    files = {
        "disk1": b"",
        "txtsetup.oem": b"[Disks]\r\n",
        "i386/Win2003/viostor.inf": b'[Version]\r\nSignature="$Windows NT$"\r\n',
        "i386/Win2003/viostor.sys": bytes(range(256)) * 9,  # 2304 bytes: five clusters
    }
    clusters: dict[str, list[int]] = {}
    image.file(ROOT, "DISK1", files["disk1"], ntres=LOWER_BASE)
    clusters["txtsetup.oem"] = image.file(
        ROOT, "TXTSETUP.OEM", files["txtsetup.oem"], ntres=LOWER_BASE | LOWER_EXT
    )
    i386 = image.folder(ROOT, "I386", ntres=LOWER_BASE)
    win2003 = image.folder(i386, "WIN2003", long_name="Win2003")
    clusters["i386"], clusters["i386/Win2003"] = [i386], [win2003]
    for name in ("viostor.inf", "viostor.sys"):
        path = f"i386/Win2003/{name}"
        clusters[path] = image.file(win2003, name.upper(), files[path], long_name=name)
    return DriverFloppy(image, files, clusters)
