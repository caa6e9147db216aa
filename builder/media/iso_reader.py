"""ISO 9660 images, read as driver sources: directories parsed here, without pycdlib.

`IsoReader` lists and streams files of an ISO in place (never extracted, never read
whole), in the richest namespace the image has: Rock Ridge (case-sensitive names such as
`2k8R2`; virtio-win ISOs since 2020), else Joliet, else plain ISO 9660 (upper-case
names, `;1` version suffix dropped). `IsoSource` is the driver source made of one. Only
what selection needs is kept (each file's path, size and data offset), and `pvinstall
drivers` needs no ISO library at all; `media/iso9660.py` (the only pycdlib importer)
writes images and reads Windows media.
"""

from __future__ import annotations

import io
import os
import stat
import struct
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal, NamedTuple, cast

from builder.errors import InputError
from builder.virtio.source import (
    DEFAULT_LIMITS,
    DriverSource,
    SourceEntry,
    SourceLimits,
    WalkBudget,
    check_name,
    mode_kind,
)

SECTOR = 2048
_PVD_OFFSET = 16 * SECTOR

Namespace = Literal["rr", "joliet", "iso9660"]


@dataclass(frozen=True)
class VolumeInfo:
    """What the primary volume descriptor says, read without pycdlib."""

    label: str
    space_bytes: int


def read_volume_info(path: Path) -> VolumeInfo | None:
    """The label and nominal size of an ISO 9660 image, or None if `path` is not one."""
    with path.open("rb") as handle:
        handle.seek(_PVD_OFFSET)
        pvd = handle.read(SECTOR)
    if len(pvd) < 190 or pvd[1:6] != b"CD001" or pvd[0] != 1:
        return None
    label = pvd[40:72].decode("ascii", "replace").strip()
    (space_blocks,) = struct.unpack_from("<I", pvd, 80)
    (block_size,) = struct.unpack_from("<H", pvd, 128)
    return VolumeInfo(label, space_blocks * (block_size or SECTOR))


def is_iso_image(path: Path) -> bool:
    return read_volume_info(path) is not None


@dataclass(frozen=True)
class IsoEntry:
    """A file on the image: its path in the chosen namespace, its size, and where its
    data begins in the image (bytes)."""

    path: str
    size: int
    offset: int


# Directory record flags (Ecma-119 9.1.6).
_FLAG_DIRECTORY = 0x02
_FLAG_MULTI_EXTENT = 0x80
# How far the walk follows what the records point to, before the image is refused: a
# real directory fits in a few sectors, a record's system use in one continuation area.
_MAX_DIRECTORY_BYTES = 16 * 2**20
_MAX_CONTINUATIONS = 16
_MAX_DESCRIPTORS = 64
_JOLIET_ESCAPES = (b"%/@", b"%/C", b"%/E")


class _Record(NamedTuple):
    """One directory record, as much of it as the listing needs (a tuple: a walk makes
    one for each of an image's thousands of entries)."""

    identifier: bytes
    is_dir: bool
    flags: int
    extent: int  # first sector of the data (after an extended attribute record)
    size: int
    interleaved: bool
    system_use: bytes


@dataclass
class _RockRidge:
    """The Rock Ridge entries of one record that the listing reads."""

    name: bytes | None = None
    mode: int | None = None
    symlink: bytes | None = None
    relocated: bool = False


class IsoReader:
    """Read-only access to the files of an ISO image, streamed from the image file.

    The directories are read by this module itself, in the one namespace used, and only
    what selection needs is kept (each file's path, size and data offset): pycdlib would
    parse every namespace into objects, some 10 KB per file. The richest namespace the
    image has is used: Rock Ridge (case-sensitive names such as `2k8R2`; virtio-win ISOs
    since 2020), else Joliet, else plain ISO 9660 (upper-case names, `;1` dropped).

    Use as a context manager; the image stays open until `close()`. The listing is
    bounded (`SourceLimits`) and refuses, naming the path, what a driver source cannot
    be: a Rock Ridge symbolic link (it could point anywhere, and reads as an empty
    file), any other entry that is not a file or a folder (device, fifo, socket), a name
    that is not one plain name, two entries of one name, a folder that leads back to
    one above it, and a file whose data lies outside the image.
    """

    def __init__(self, path: Path, limits: SourceLimits = DEFAULT_LIMITS) -> None:
        self.path = path
        self._limits = limits
        info = read_volume_info(path)
        if info is None:
            raise InputError(
                f"{path} is not an ISO 9660 image (no CD001 volume descriptor).",
                "Give a virtio-win ISO, a driver folder or a virtio-win floppy image.",
                key=str(path),
            )
        self._image = path.open("rb", buffering=0)
        try:
            self._image_bytes = os.fstat(self._image.fileno()).st_size
            if self._image_bytes < info.space_bytes:
                raise InputError(
                    f"{path} is truncated: its volume descriptor says {info.space_bytes} "
                    f"bytes, the file has {self._image_bytes}.",
                    "Download or copy the ISO again and compare its checksum.",
                    key=str(path),
                )
            self.label = info.label
            self.namespace: Namespace
            self._root, self._skip = self._choose_tree()
        except (struct.error, IndexError, ValueError, UnicodeError) as exc:
            self._image.close()
            raise self._damaged(f"its volume descriptors cannot be read ({exc})") from None
        except BaseException:
            self._image.close()
            raise
        self._entries: tuple[IsoEntry, ...] | None = None

    def __enter__(self) -> IsoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._image.close()

    # -- the image's bytes -------------------------------------------------------------

    def _read(self, offset: int, size: int, what: str) -> bytes:
        if offset < 0 or size < 0 or offset + size > self._image_bytes:
            raise self._damaged(f"{what} lies outside the image")
        data = os.pread(self._image.fileno(), size, offset)
        if len(data) != size:
            raise self._damaged(f"{what} lies outside the image")
        return data

    def _damaged(self, what: str) -> InputError:
        return InputError(
            f"{self.path} is not a readable ISO 9660 image: {what}.",
            "Check that the file is a complete ISO image.",
            key=str(self.path),
        )

    def _refused(self, path: str, what: str) -> InputError:
        return InputError(
            f"{self.path}:{path} {what}.",
            "The image is damaged or crafted; use a virtio-win release.",
            key=str(self.path),
        )

    # -- the volume descriptors ----------------------------------------------------------

    def _choose_tree(self) -> tuple[_Record, int]:
        """The root record of the namespace to list, and Rock Ridge's skip length."""
        primary: _Record | None = None
        joliet: _Record | None = None
        for index in range(_MAX_DESCRIPTORS):
            descriptor = self._read(_PVD_OFFSET + index * SECTOR, SECTOR, "a volume descriptor")
            kind = descriptor[0]
            if descriptor[1:6] != b"CD001" or kind == 255:
                break
            if kind in (1, 2) and struct.unpack_from("<H", descriptor, 128)[0] != SECTOR:
                raise self._damaged("its logical blocks are not 2048 bytes")
            if kind == 1 and primary is None:
                primary = _parse_record(descriptor, 156)
            elif kind == 2 and descriptor[88:91] in _JOLIET_ESCAPES and joliet is None:
                joliet = _parse_record(descriptor, 156)
        if primary is None:
            raise self._damaged("it has no primary volume descriptor")
        skip = self._rock_ridge_skip(primary)
        if skip is not None:
            self.namespace = "rr"
            return primary, skip
        if joliet is not None:
            self.namespace = "joliet"
            return joliet, 0
        self.namespace = "iso9660"
        return primary, 0

    def _rock_ridge_skip(self, root: _Record) -> int | None:
        """Rock Ridge's skip length when the image has Rock Ridge (None otherwise): the
        root's `.` record starts its system use with an SP entry, and carries Rock Ridge
        entries (or their ER)."""
        data = self._read(root.extent * SECTOR, SECTOR, "the root folder")
        if not data[0] or data[0] > len(data):
            return None
        dot = _parse_record(data, 0)
        use = dot.system_use
        if len(use) < 7 or use[0:2] != b"SP" or use[4:6] != b"\xbe\xef":
            return None
        skip = use[6]
        signatures = {sig for sig, _ in self._susp_entries(use, "/")}
        return skip if signatures & {b"ER", b"RR", b"PX", b"NM"} else None

    # -- system use (Rock Ridge) ---------------------------------------------------------

    def _susp_entries(self, use: bytes, where: str) -> Iterable[tuple[bytes, bytes]]:
        """(signature, entry) of every SUSP entry in `use` and its continuation areas."""
        if b"CE" not in use:
            return _plain_susp_entries(use)
        return self._followed_susp_entries(use, where)

    def _followed_susp_entries(self, use: bytes, where: str) -> Iterator[tuple[bytes, bytes]]:
        areas = [use]
        followed = 0
        while areas:
            data = areas.pop()
            position = 0
            end = len(data)
            while position + 4 <= end:
                signature = data[position : position + 2]
                length = data[position + 2]
                if length < 4 or position + length > end:
                    break  # padding, or a damaged entry: the rest is not SUSP
                entry = data[position : position + length]
                position += length
                if signature == b"ST":
                    break
                if signature == b"CE" and length >= 28:
                    followed += 1
                    if followed > _MAX_CONTINUATIONS:
                        raise self._refused(where, "has Rock Ridge continuation areas in a loop")
                    block, offset, size = (
                        struct.unpack_from("<I", entry, at)[0] for at in (4, 12, 20)
                    )
                    if size > SECTOR:
                        raise self._refused(
                            where, "has a Rock Ridge continuation area over 2048 bytes"
                        )
                    areas.append(
                        self._read(block * SECTOR + offset, size, f"{where}'s Rock Ridge data")
                    )
                    continue
                yield signature, entry

    def _rock_ridge(self, record: _Record, where: str) -> _RockRidge:
        found = _RockRidge()
        name = b""
        named = False
        link: list[bytes] | None = None
        for signature, entry in self._susp_entries(record.system_use[self._skip :], where):
            if signature == b"NM" and len(entry) >= 5:
                named = True
                flags = entry[4]
                name += b"." if flags & 0x02 else b".." if flags & 0x04 else entry[5:]
            elif signature == b"PX" and len(entry) >= 8:
                found.mode = struct.unpack_from("<I", entry, 4)[0]
            elif signature == b"SL":
                link = [] if link is None else link
                position = 5
                while position + 2 <= len(entry):
                    flags, size = entry[position], entry[position + 1]
                    part = entry[position + 2 : position + 2 + size]
                    link.append(
                        b"."
                        if flags & 0x02
                        else b".."
                        if flags & 0x04
                        else b""
                        if flags & 0x08
                        else part
                    )
                    position += 2 + size
            elif signature in (b"CL", b"PL", b"RE"):
                found.relocated = True
        found.name = name if named else None
        found.symlink = None if link is None else b"/".join(link)
        return found

    # -- the walk -----------------------------------------------------------------------

    def entries(self) -> tuple[IsoEntry, ...]:
        """Every file on the image (directory records only; no file data is read)."""
        if self._entries is None:
            budget = WalkBudget(self.path, self._limits)
            try:
                found = list(self._walk(budget))
            except (struct.error, IndexError, ValueError) as exc:
                raise self._damaged(f"a directory record cannot be read ({exc})") from None
            self._entries = tuple(sorted(found, key=lambda e: e.path))
        return self._entries

    def _walk(self, budget: WalkBudget) -> Iterator[IsoEntry]:
        # (record of the folder, its display path, depth, extents of it and above it)
        pending: list[tuple[_Record, str, int, frozenset[int]]] = [
            (self._root, "", 0, frozenset({self._root.extent}))
        ]
        while pending:
            folder, display_dir, depth, above = pending.pop()
            for record, display in self._children(folder, display_dir, budget):
                if record.is_dir:
                    if record.extent in above:
                        raise self._refused(
                            display,
                            "leads back to a folder above it (its ISO Directory Records form "
                            "a loop)",
                        )
                    budget.folder(display, depth + 1)
                    pending.append((record, display, depth + 1, above | {record.extent}))
                    continue
                start = record.extent * SECTOR
                if record.size and start + record.size > self._image_bytes:
                    raise self._refused(
                        display,
                        f"has its data at byte {start}, past the end of the image "
                        f"({self._image_bytes} bytes)",
                    )
                yield IsoEntry(display, record.size, start)

    def _children(
        self, folder: _Record, display_dir: str, budget: WalkBudget
    ) -> Iterator[tuple[_Record, str]]:
        where = display_dir or "/"
        if folder.size > _MAX_DIRECTORY_BYTES:
            raise self._refused(where, f"is a folder of {folder.size} bytes of records")
        data = self._read(folder.extent * SECTOR, folder.size, f"the folder {where}")
        seen: set[str] = set()
        position = 0
        end = len(data)
        while position < end:
            length = data[position]
            if length == 0:  # the rest of this sector is padding
                position = (position // SECTOR + 1) * SECTOR
                continue
            if length < 34 or position + length > end:
                raise self._damaged(f"a directory record of {where} is cut short")
            if data[position + 32] == 1 and data[position + 33] in (0, 1):
                position += length  # the folder's `.` or `..`
                continue
            record = _parse_record(data, position)
            position += length
            name = self._name(record, display_dir)
            display = f"{display_dir}/{name}" if display_dir else name
            budget.entry(display)
            check_name(self.path, display_dir, name)
            if name in seen:
                raise self._refused(display, "is there twice")
            seen.add(name)
            if record.flags & _FLAG_MULTI_EXTENT or record.interleaved:
                raise self._refused(
                    display, "is stored in several pieces, as no virtio-win ISO stores a file"
                )
            yield record, display

    def _name(self, record: _Record, display_dir: str) -> str:
        where = f"{display_dir}/" if display_dir else "/"
        if self.namespace == "rr":
            rock_ridge = self._rock_ridge(record, where)
            if rock_ridge.name is None:
                raise self._refused(where, "has an entry without a Rock Ridge name")
            name = rock_ridge.name.decode("utf-8", "replace")
            shown = f"{display_dir}/{name}" if display_dir else name
            self._check_kind(rock_ridge, record, shown)
            return name
        if self.namespace == "joliet":
            name = record.identifier.decode("utf-16_be", "replace")
        else:
            name = record.identifier.decode("ascii", "replace")
        if not record.is_dir:
            # Names carry the ";1" version; show them without it.
            name = name.split(";")[0]
            if self.namespace == "iso9660":
                name = name.rstrip(".")
        return name

    def _check_kind(self, rock_ridge: _RockRidge, record: _Record, display: str) -> None:
        """Refuse a Rock Ridge symbolic link, a relocated folder, and anything that is
        not a file or folder."""
        if rock_ridge.symlink is not None:
            target = rock_ridge.symlink.decode("utf-8", "replace")
            raise self._refused(
                display,
                f"is a Rock Ridge symbolic link to {target}; a driver source holds only "
                "folders and files, and never reads outside itself",
            )
        if rock_ridge.relocated:
            raise self._refused(
                display,
                "is a relocated folder (Rock Ridge CL/RE), which no virtio-win ISO has",
            )
        if rock_ridge.mode is None:
            return  # no POSIX mode recorded: a plain file or folder
        expected = stat.S_ISDIR if record.is_dir else stat.S_ISREG
        if not expected(rock_ridge.mode):
            listed = "a folder" if record.is_dir else "a file"
            raise self._refused(
                display,
                f"is listed as {listed} but is {mode_kind(rock_ridge.mode)}; a driver source "
                "holds only folders and files",
            )

    def open(self, entry: IsoEntry) -> IO[bytes]:
        """A read-only stream of one file's bytes, read from the image as consumed."""
        return cast(IO[bytes], _ExtentStream(self._image.fileno(), entry.offset, entry.size))


# A directory record's fixed part (Ecma-119 9.1): length, extended attribute length,
# extent (little-endian half), data length (little-endian half), the date skipped,
# flags, file unit size, interleave gap, the volume sequence number skipped, name length.
_RECORD_HEAD = struct.Struct("<BBI4xI4x7xBBB4xB")


def _plain_susp_entries(use: bytes) -> list[tuple[bytes, bytes]]:
    """The SUSP entries of a system use area that holds no continuation (no CE): most
    records' (the walk of a virtio-win ISO reads some 45,000). The same reading as
    `IsoReader._followed_susp_entries`, without following anything."""
    found = []
    position = 0
    end = len(use)
    while position + 4 <= end:
        length = use[position + 2]
        if length < 4 or position + length > end:
            break  # padding, or a damaged entry: the rest is not SUSP
        signature = use[position : position + 2]
        if signature == b"ST":
            break
        found.append((signature, use[position : position + length]))
        position += length
    return found


def _parse_record(data: bytes, at: int) -> _Record:
    """The directory record at `at` of `data` (Ecma-119 9.1)."""
    length, xattr, extent, size, flags, unit, gap, name_length = _RECORD_HEAD.unpack_from(data, at)
    if 33 + name_length > length:
        raise ValueError("a name longer than its record")
    identifier = bytes(data[at + 33 : at + 33 + name_length])
    use_at = 33 + name_length + (1 - name_length % 2)
    return _Record(
        identifier=identifier,
        is_dir=bool(flags & _FLAG_DIRECTORY),
        flags=flags,
        extent=extent + xattr,
        size=size,
        interleaved=bool(unit or gap),
        system_use=bytes(data[at + use_at : at + length]),
    )


class _ExtentStream(io.RawIOBase):
    """`size` bytes of the image from `offset`, read with pread as consumed (the image's
    descriptor is shared, so streams never disturb each other's position)."""

    def __init__(self, fd: int, offset: int, size: int) -> None:
        super().__init__()
        self._fd = fd
        self._offset = offset
        self._size = size
        self._position = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        wanted = min(len(view), self._size - self._position)
        if wanted <= 0:
            return 0
        data = os.pread(self._fd, wanted, self._offset + self._position)
        view[: len(data)] = data
        self._position += len(data)
        return len(data)


class IsoSource(DriverSource):
    """A virtio-win ISO as a driver source: read in place, kept open."""

    kind = "iso"

    def __init__(self, path: Path, limits: SourceLimits = DEFAULT_LIMITS) -> None:
        reader = IsoReader(path, limits)
        try:
            entries = reader.entries()
        except BaseException:
            reader.close()
            raise
        super().__init__(path, reader.label)
        self._reader = reader
        self._entries = {e.path: e for e in entries}

    def close(self) -> None:
        self._reader.close()

    def files(self) -> tuple[SourceEntry, ...]:
        return tuple(SourceEntry(e.path, e.size) for e in self._entries.values())

    def open(self, path: str) -> AbstractContextManager[IO[bytes]]:
        return self._reader.open(self._entries[path])
