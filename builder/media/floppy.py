"""FAT12 floppies as data (pure): the standard geometries, the space a set of files takes
on one (counted as `media/fat.py` allocates it), and `FloppyPlan`, the FAT writer's input.

The plan checks the capacity here, before anything is written, by the writer's own
rules; `media/fat.py` writes the image (and still refuses to go past the disk's end).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from dataclasses import dataclass

from builder.errors import BuildError
from builder.media.files import PlannedFile

SECTOR = 512
DIR_ENTRY = 32


@dataclass(frozen=True)
class FloppyGeometry:
    """The standard layout of one floppy size (what DOS FORMAT and `mformat -f` write)."""

    kib: int
    title: str
    sectors: int
    sectors_per_track: int
    heads: int
    sectors_per_cluster: int
    root_entries: int
    fat_sectors: int
    media: int = 0xF0
    reserved_sectors: int = 1
    fats: int = 2

    @property
    def size(self) -> int:
        return self.sectors * SECTOR

    @property
    def cluster_bytes(self) -> int:
        return self.sectors_per_cluster * SECTOR

    @property
    def root_dir_sector(self) -> int:
        return self.reserved_sectors + self.fats * self.fat_sectors

    @property
    def root_dir_sectors(self) -> int:
        return self.root_entries * DIR_ENTRY // SECTOR

    @property
    def data_clusters(self) -> int:
        data = self.sectors - self.root_dir_sector - self.root_dir_sectors
        return data // self.sectors_per_cluster


GEOMETRIES = {
    1440: FloppyGeometry(1440, "1.44 MB", 2880, 18, 2, 1, 224, 9),
    2880: FloppyGeometry(2880, "2.88 MB", 5760, 36, 2, 2, 240, 9),
}
LARGEST_FLOPPY_KIB = max(GEOMETRIES)


def geometry(kib: int) -> FloppyGeometry:
    """The geometry of a 1440 or 2880 KiB floppy."""
    try:
        return GEOMETRIES[kib]
    except KeyError:
        raise BuildError(f"no floppy geometry for {kib} KiB (only 1440 and 2880).") from None


@dataclass(frozen=True)
class FloppyUsage:
    """The space a set of files takes on a floppy, counted as the writer allocates it."""

    geometry: FloppyGeometry
    clusters: int
    root_entries: int

    @property
    def fits(self) -> bool:
        return (
            self.clusters <= self.geometry.data_clusters
            and self.root_entries <= self.geometry.root_entries
        )


# The bytes an 8.3 name of ours never holds: what pyfatfs, the writer before ours,
# refused (its EightDotThree.INVALID_CHARACTERS, whose control-character range never
# matched, so control characters pass), and the space, which readers such as mtools
# mishandle inside a short name (Windows gives such names long ones too).
NOT_IN_SHORT_NAMES = frozenset(b' "*+,./:;<=>?[\\]|')
SHORT_NAME_ENCODING = "ibm437"  # the OEM code page of FAT short names


def needs_long_name(name: str) -> bool:
    """Whether the writer gives `name` long-name (VFAT) entries: every name that is not
    already an upper-case 8.3 name without spaces (case is kept through long names).

    pyfatfs's `EightDotThree.is_8dot3_conform`, but for the space (pyfatfs failed on a
    name with one); the plan counts directory entries by it and `media/fat.py` writes
    by it.
    """
    if name != name.upper():
        return True
    root, ext = os.path.splitext(name)  # noqa: PTH122 - a name, split as the writer splits it
    ext = ext[1:]
    if len(root) > 8 or len(ext) > 3:
        return True
    try:
        encoded = (root.encode(SHORT_NAME_ENCODING), ext.encode(SHORT_NAME_ENCODING))
    except UnicodeError:
        return True
    return any(byte in NOT_IN_SHORT_NAMES for part in encoded for byte in part)


def dir_entries(name: str) -> int:
    """Directory entries one name takes: the 8.3 entry plus one per 13 UTF-16 units."""
    if not needs_long_name(name):
        return 1
    return 1 + math.ceil(len(name.encode("utf-16-le")) / 26)


def floppy_usage(files: Iterable[tuple[str, int]], geo: FloppyGeometry) -> FloppyUsage:
    """Clusters and root entries that `(path, size)` files need on a fresh floppy (pure).

    Mirrors the writer: a file takes ceil(size / cluster) clusters (none when empty); a
    subdirectory starts with one cluster for `.` and `..` and grows to hold all its
    entries; the root directory has a fixed number of entries, one of them the volume
    label.
    """
    children: dict[str, set[str]] = {"": set()}
    clusters = 0
    for path, size in files:
        parts = path.split("/")
        for depth in range(1, len(parts)):
            parent = "/".join(parts[: depth - 1])
            directory = "/".join(parts[:depth])
            children.setdefault(parent, set()).add(parts[depth - 1])
            children.setdefault(directory, set())
        children["/".join(parts[:-1])].add(parts[-1])
        clusters += math.ceil(size / geo.cluster_bytes)
    for directory, names in children.items():
        if directory:
            entries = 2 + sum(dir_entries(n) for n in names)
            clusters += max(1, math.ceil(entries * DIR_ENTRY / geo.cluster_bytes))
    root_entries = 1 + sum(dir_entries(n) for n in children[""])
    return FloppyUsage(geo, clusters, root_entries)


@dataclass(frozen=True)
class FloppyPlan:
    """The answer floppy: size (1440 or 2880 KiB), volume label, files, space used."""

    size_kib: int
    label: str
    files: tuple[PlannedFile, ...]
    usage: FloppyUsage
