"""FAT floppy images, read: the legacy virtio-win `.vfd` images as a driver source.

A small reader of its own rather than pyfatfs, because a floppy image from a user may be
hostile and pyfatfs follows what the image says: a looping cluster chain never ends
(and grows memory), a cluster number past the FAT is an IndexError, a truncated image
reads short. Here every number is checked before it is used: the boot sector against
the image's size, each cluster against the FAT's range, each chain against a visited
set and the length its file needs, each folder against the folders seen (a folder
reached twice is a loop), and the walk against `SourceLimits`. Anything else is an
InputError naming the image and the path. FAT12 and FAT16 are read (floppies are
FAT12); names are the long name when its checksum matches, else the 8.3 name with the
NT lower-case flags, as Windows shows them. Nothing of a file is read until it is
opened, and then only its clusters. See docs/libraries.md.
"""

from __future__ import annotations

import io
import os
import struct
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast

from builder.errors import InputError
from builder.media.floppy import SECTOR
from builder.virtio.source import (
    DEFAULT_LIMITS,
    DriverSource,
    SourceEntry,
    SourceLimits,
    WalkBudget,
    check_name,
    unreadable,
)

_DAMAGED = "The image is damaged or crafted; use a virtio-win release, or copy it again."
_ENTRY = 32
# Directory entry attributes (fatgen103 §6).
_ATTR_VOLUME_ID = 0x08
_ATTR_DIRECTORY = 0x10
_ATTR_DEVICE = 0x40  # never on disk
_ATTR_LONG_NAME = 0x0F
_ATTR_LONG_NAME_MASK = 0x3F
# Windows NT records "all lower case" for an 8.3 name's base (0x08) and extension
# (0x10) in DIR_NTRes instead of adding a long name; mtools writes names that way.
_NTRES_LOWER_BASE = 0x08
_NTRES_LOWER_EXT = 0x10
# Cluster counts that decide the FAT type (fatgen103 §3.5), and a FAT entry's values.
_FAT12_MAX_CLUSTERS = 4084
_FAT16_MAX_CLUSTERS = 65524
# A folder holds at most 65536 entries (fatgen103 §6).
_MAX_FOLDER_BYTES = 65536 * _ENTRY


def looks_like_fat_image(path: Path) -> bool:
    """Whether `path` starts with a plausible FAT boot sector (BPB)."""
    with path.open("rb") as handle:
        boot = handle.read(SECTOR)
    if len(boot) < SECTOR:
        return False
    bytes_per_sector, sectors_per_cluster, reserved, fats = struct.unpack_from("<HBHB", boot, 11)
    media = boot[21]
    return (
        bytes_per_sector in (512, 1024, 2048, 4096)
        and sectors_per_cluster in (1, 2, 4, 8, 16, 32, 64, 128)
        and reserved >= 1
        and fats in (1, 2)
        and media >= 0xF0
        and boot[510:512] == b"\x55\xaa"
    )


@dataclass(frozen=True)
class FatLayout:
    """Where things are on a FAT12/16 image, from its boot sector (bytes from the start)."""

    bytes_per_sector: int
    sectors_per_cluster: int
    fat_offset: int
    fat_bytes: int
    root_offset: int
    root_entries: int
    data_offset: int
    clusters: int  # data clusters, numbered 2 .. clusters + 1
    fat_bits: int  # 12 or 16
    image_bytes: int  # what the boot sector says the volume is
    label: str

    @property
    def cluster_bytes(self) -> int:
        return self.bytes_per_sector * self.sectors_per_cluster

    @property
    def last_cluster(self) -> int:
        return self.clusters + 1

    def cluster_offset(self, cluster: int) -> int:
        return self.data_offset + (cluster - 2) * self.cluster_bytes


def read_layout(boot: bytes, actual_bytes: int, path: Path) -> FatLayout:
    """The layout a boot sector describes; InputError when it cannot be a FAT12/16
    volume or the image is shorter than the volume it describes."""

    def refuse(what: str, hint: str = _DAMAGED) -> InputError:
        return InputError(f"{path} {what}.", hint, key=str(path))

    if len(boot) < SECTOR:
        raise refuse(f"is {len(boot)} bytes, too short to hold a FAT boot sector")
    if boot[510:512] != b"\x55\xaa":
        raise refuse("has no FAT boot sector (no 55 AA signature)")
    bps, spc, reserved, fats, root_entries, total16, media, fat16 = struct.unpack_from(
        "<HBHBHHBH", boot, 11
    )
    (total32,) = struct.unpack_from("<I", boot, 32)
    if bps not in (512, 1024, 2048, 4096) or spc not in (1, 2, 4, 8, 16, 32, 64, 128):
        raise refuse(f"has {bps} bytes per sector and {spc} sectors per cluster")
    if bps * spc > 32768:
        raise refuse(f"has {bps * spc}-byte clusters, more than FAT allows (32768)")
    if fat16 == 0:
        raise refuse(
            "is a FAT32 volume; virtio-win floppy images are FAT12",
            "Give a virtio-win .vfd floppy image, an ISO or a driver folder.",
        )
    if reserved < 1 or fats not in (1, 2) or root_entries == 0 or media < 0xF0:
        raise refuse(
            f"has an impossible boot sector ({reserved} reserved sectors, {fats} FATs, "
            f"{root_entries} root entries, media byte {media:#04x})"
        )
    total = total16 or total32
    root_sectors = (root_entries * _ENTRY + bps - 1) // bps
    data_sector = reserved + fats * fat16 + root_sectors
    if total <= data_sector:
        raise refuse(f"has {total} sectors, no more than its FATs and root folder take")
    clusters = (total - data_sector) // spc
    if clusters > _FAT16_MAX_CLUSTERS:
        raise refuse(
            f"is a FAT32 volume ({clusters} clusters); virtio-win floppy images are FAT12",
            "Give a virtio-win .vfd floppy image, an ISO or a driver folder.",
        )
    fat_bits = 12 if clusters <= _FAT12_MAX_CLUSTERS else 16
    fat_bytes = ((clusters + 2) * fat_bits + 7) // 8
    if fat_bytes > fat16 * bps:
        raise refuse(f"has a FAT of {fat16 * bps} bytes, too small for its {clusters} clusters")
    image_bytes = total * bps
    if actual_bytes < image_bytes:
        raise refuse(
            f"is truncated: its boot sector says {image_bytes} bytes, the file has {actual_bytes}",
            "Download or copy the image again and compare its checksum.",
        )
    label = ""
    if boot[38] == 0x29:
        label = boot[43:54].decode("cp437").strip()
    return FatLayout(
        bytes_per_sector=bps,
        sectors_per_cluster=spc,
        fat_offset=reserved * bps,
        fat_bytes=fat_bytes,
        root_offset=(reserved + fats * fat16) * bps,
        root_entries=root_entries,
        data_offset=data_sector * bps,
        clusters=clusters,
        fat_bits=fat_bits,
        image_bytes=image_bytes,
        label=label,
    )


def decode_fat(data: bytes, layout: FatLayout) -> tuple[int, ...]:
    """The FAT's entries, one per cluster number (0 and 1 are reserved)."""
    count = layout.clusters + 2
    if layout.fat_bits == 16:
        return struct.unpack_from(f"<{count}H", data)
    entries = []
    for cluster in range(count):
        offset = cluster * 3 // 2
        pair = data[offset] | data[offset + 1] << 8
        entries.append(pair >> 4 if cluster & 1 else pair & 0x0FFF)
    return tuple(entries)


@dataclass(frozen=True)
class FloppyEntry:
    """A file on the image: its path as Windows shows it, its size and first cluster."""

    path: str
    size: int
    first_cluster: int


@dataclass(frozen=True)
class _Raw:
    """One directory entry, as read."""

    name: str
    attributes: int
    first_cluster: int
    size: int


class FloppyReader:
    """Read-only, bounded access to the files of a FAT12/16 floppy image."""

    def __init__(self, path: Path, limits: SourceLimits = DEFAULT_LIMITS) -> None:
        self.path = path
        self._limits = limits
        try:
            self._fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError as exc:
            raise unreadable(path, exc) from None
        try:
            boot = os.pread(self._fd, SECTOR, 0)
            self.layout = read_layout(boot, os.fstat(self._fd).st_size, path)
            self._fat = decode_fat(
                self._pread(self.layout.fat_offset, self.layout.fat_bytes), self.layout
            )
            self._entries: tuple[FloppyEntry, ...] | None = None
            self._root_label = ""
            self.entries()
            self.label = self.layout.label or self._root_label
        except BaseException:
            os.close(self._fd)
            raise

    def __enter__(self) -> FloppyReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def _pread(self, offset: int, size: int) -> bytes:
        try:
            data = os.pread(self._fd, size, offset)
        except OSError as exc:
            raise unreadable(self.path, exc) from None
        if len(data) < size:
            raise self._refuse("", f"ends at byte {offset + len(data)}; {offset + size} needed")
        return data

    def _refuse(self, where: str, what: str) -> InputError:
        place = f"{self.path}:{where}" if where else str(self.path)
        return InputError(f"{place} {what}.", _DAMAGED, key=str(self.path))

    # -- chains ------------------------------------------------------------------------

    def chain(self, first: int, where: str, needed: int | None = None) -> list[int]:
        """The clusters of a chain from `first` up to its end-of-chain mark, which must
        come after exactly `needed` clusters when that is given (a file's size).
        InputError for a cluster outside the volume, a loop, a free or bad cluster in
        the chain, or a chain of another length."""
        layout = self.layout
        end_of_chain = 0xFF8 if layout.fat_bits == 12 else 0xFFF8
        bad = end_of_chain - 1
        found: list[int] = []
        seen: set[int] = set()
        cluster = first
        while True:
            if not 2 <= cluster <= layout.last_cluster:
                raise self._refuse(
                    where,
                    f"has cluster {cluster} in its chain, outside the volume's clusters "
                    f"2 to {layout.last_cluster}",
                )
            if cluster in seen:
                raise self._refuse(where, f"has a cluster chain that loops (at cluster {cluster})")
            seen.add(cluster)
            found.append(cluster)
            following = self._fat[cluster]
            if following >= end_of_chain:
                if needed is None or len(found) == needed:
                    return found
                raise self._refuse(
                    where,
                    f"has a cluster chain of {len(found)} clusters; its size needs {needed}",
                )
            if following == bad:
                raise self._refuse(where, f"has a bad cluster after cluster {cluster}")
            if following < 2:
                raise self._refuse(where, f"has a free cluster in its chain after {cluster}")
            if len(found) == needed:
                raise self._refuse(
                    where,
                    f"has a cluster chain longer than the {needed} clusters its size needs",
                )
            cluster = following

    # -- the walk ----------------------------------------------------------------------

    def entries(self) -> tuple[FloppyEntry, ...]:
        """Every file on the image, from the directory entries only."""
        if self._entries is None:
            budget = WalkBudget(self.path, self._limits)
            found: list[FloppyEntry] = []
            folder_clusters: dict[int, str] = {}
            pending: list[tuple[str, bytes, int]] = [
                ("", self._pread(self.layout.root_offset, self.layout.root_entries * _ENTRY), 0)
            ]
            while pending:
                listed, data, depth = pending.pop()
                for raw in self._folder_entries(listed, data, root=depth == 0):
                    path = f"{listed}/{raw.name}" if listed else raw.name
                    budget.entry(path)
                    if raw.attributes & _ATTR_DIRECTORY:
                        budget.folder(path, depth + 1)
                        pending.append(
                            (path, self._folder_data(raw, path, folder_clusters), depth + 1)
                        )
                    else:
                        found.append(self._file(raw, path))
            self._entries = tuple(sorted(found, key=lambda e: e.path))
        return self._entries

    def _file(self, raw: _Raw, path: str) -> FloppyEntry:
        if raw.size > self.layout.clusters * self.layout.cluster_bytes:
            raise self._refuse(path, f"is {raw.size} bytes, more than the whole volume holds")
        if raw.size and raw.first_cluster == 0:
            raise self._refuse(path, f"is {raw.size} bytes but has no clusters")
        return FloppyEntry(path, raw.size, raw.first_cluster)

    def _folder_data(self, raw: _Raw, path: str, folder_clusters: dict[int, str]) -> bytes:
        """The bytes of a subfolder's entries; every cluster belongs to one folder only,
        so a folder that is its own ancestor (or shares clusters with another) is refused."""
        if raw.size:
            raise self._refuse(path, f"is a folder with a file size ({raw.size} bytes)")
        clusters = self.chain(raw.first_cluster, path)
        if len(clusters) * self.layout.cluster_bytes > _MAX_FOLDER_BYTES:
            raise self._refuse(path, "is a folder larger than FAT allows (65536 entries)")
        for cluster in clusters:
            other = folder_clusters.setdefault(cluster, path)
            if other != path:
                raise self._refuse(
                    path,
                    f"is the same folder as {other or 'the root'} (cluster {cluster}): "
                    "the folders form a loop",
                )
        size = self.layout.cluster_bytes
        return b"".join(self._pread(self.layout.cluster_offset(c), size) for c in clusters)

    def _folder_entries(self, listed: str, data: bytes, *, root: bool) -> list[_Raw]:
        found: list[_Raw] = []
        seen: set[str] = set()
        long_name = _LongName()
        for offset in range(0, len(data) - _ENTRY + 1, _ENTRY):
            entry = data[offset : offset + _ENTRY]
            first = entry[0]
            attributes = entry[11]
            if first == 0x00:
                break  # the end of the folder
            if first == 0xE5:
                long_name = _LongName()
                continue  # deleted
            if attributes & _ATTR_LONG_NAME_MASK == _ATTR_LONG_NAME:
                long_name.add(entry)
                continue
            if attributes & _ATTR_VOLUME_ID:
                if root and not self._root_label:
                    self._root_label = entry[:11].decode("cp437").strip()
                long_name = _LongName()
                continue  # a volume label is not a file
            short = _short_name(entry)
            name = long_name.name(entry) or short
            long_name = _LongName()
            if not root and attributes & _ATTR_DIRECTORY and short in (".", ".."):
                continue
            check_name(self.path, listed, name)
            where = f"{listed}/{name}" if listed else name
            if attributes & _ATTR_DEVICE:
                raise self._refuse(where, "has the device attribute; it is not a file")
            if name.lower() in seen:
                raise self._refuse(where, "is there twice")
            seen.add(name.lower())
            (cluster,) = struct.unpack_from("<H", entry, 26)
            (size,) = struct.unpack_from("<I", entry, 28)
            found.append(_Raw(name, attributes, cluster, size))
        return found

    # -- reading -----------------------------------------------------------------------

    def open(self, entry: FloppyEntry) -> IO[bytes]:
        """A stream of the file's bytes, read cluster by cluster as consumed."""
        needed = -(-entry.size // self.layout.cluster_bytes)
        clusters = self.chain(entry.first_cluster, entry.path, needed) if needed else []
        return cast(IO[bytes], _ClusterStream(self, clusters, entry.size))

    def read_cluster(self, cluster: int, offset: int, size: int) -> bytes:
        return self._pread(self.layout.cluster_offset(cluster) + offset, size)


class _LongName:
    """The long-name entries before an 8.3 entry; the name counts only when the
    sequence is complete and its checksum is the 8.3 name's (what Windows checks)."""

    def __init__(self) -> None:
        self._start(0, None)

    def _start(self, count: int, checksum: int | None) -> None:
        self._parts: dict[int, bytes] = {}
        self._count = count
        self._checksum = checksum
        self._valid = True

    def add(self, entry: bytes) -> None:
        order = entry[0]
        sequence = order & 0x1F
        if order & 0x40:  # the last part, written first: a new name starts
            self._start(sequence, entry[13])
        if not 1 <= sequence <= self._count or entry[13] != self._checksum:
            self._valid = False
            return
        self._parts[sequence] = entry[1:11] + entry[14:26] + entry[28:32]

    def name(self, short_entry: bytes) -> str | None:
        if not self._valid or self._count == 0 or len(self._parts) != self._count:
            return None
        if self._checksum != _short_name_checksum(short_entry[:11]):
            return None
        raw = b"".join(self._parts[i] for i in range(1, self._count + 1))
        units = [raw[i : i + 2] for i in range(0, len(raw), 2)]
        if b"\x00\x00" in units:
            units = units[: units.index(b"\x00\x00")]
        try:
            text = b"".join(units).decode("utf-16-le")
        except UnicodeDecodeError:
            return None
        return text or None


def _short_name_checksum(name: bytes) -> int:
    total = 0
    for byte in name:
        total = ((total >> 1) | ((total & 1) << 7)) + byte & 0xFF
    return total


def _short_name(entry: bytes) -> str:
    raw = bytearray(entry[:11])
    if raw[0] == 0x05:
        raw[0] = 0xE5  # 0x05 stands for a name that starts with 0xE5
    base = raw[:8].decode("cp437").rstrip(" ")
    ext = raw[8:11].decode("cp437").rstrip(" ")
    if entry[12] & _NTRES_LOWER_BASE:
        base = base.lower()
    if entry[12] & _NTRES_LOWER_EXT:
        ext = ext.lower()
    return f"{base}.{ext}" if ext else base


class _ClusterStream(io.RawIOBase):
    """A file's bytes, read from its clusters as consumed."""

    def __init__(self, reader: FloppyReader, clusters: list[int], size: int) -> None:
        super().__init__()
        self._reader = reader
        self._clusters = clusters
        self._size = size
        self._position = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        remaining = self._size - self._position
        if remaining <= 0 or not len(view):
            return 0
        cluster_bytes = self._reader.layout.cluster_bytes
        index, offset = divmod(self._position, cluster_bytes)
        count = min(len(view), remaining, cluster_bytes - offset)
        view[:count] = self._reader.read_cluster(self._clusters[index], offset, count)
        self._position += count
        return count


class FloppySource(DriverSource):
    """A legacy virtio-win floppy image (`.vfd`) as a driver source, kept open."""

    kind = "floppy"

    def __init__(self, path: Path, limits: SourceLimits = DEFAULT_LIMITS) -> None:
        reader = FloppyReader(path, limits)
        super().__init__(path, reader.label)
        self._reader = reader
        self._entries = {e.path: e for e in reader.entries()}

    def close(self) -> None:
        self._reader.close()

    def files(self) -> tuple[SourceEntry, ...]:
        return tuple(SourceEntry(e.path, e.size) for e in self._entries.values())

    def open(self, path: str) -> AbstractContextManager[IO[bytes]]:
        return self._reader.open(self._entries[path])
