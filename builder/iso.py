"""ISO 9660 images: the only module that imports pycdlib.

Reading: `IsoReader` lists and streams files of an ISO in place (never extracted,
never read whole), in the richest namespace the image has: Rock Ridge (case-
sensitive names such as `2k8R2`; virtio-win ISOs since 2020), else Joliet, else
plain ISO 9660 (upper-case names, `;1` version suffix dropped).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal, cast

import pycdlib
from pycdlib.pycdlibexception import PyCdlibException

from builder.errors import InputError

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
    """A file on the image: its path in the chosen namespace and its size."""

    path: str
    size: int
    native_path: str


class IsoReader:
    """Read-only access to the files of an ISO image, streamed from the image file.

    Use as a context manager; the image stays open until `close()`.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        info = read_volume_info(path)
        if info is None:
            raise InputError(
                f"{path} is not an ISO 9660 image (no CD001 volume descriptor).",
                "Give a virtio-win ISO, a driver folder or a virtio-win floppy image.",
                key=str(path),
            )
        actual = path.stat().st_size
        if actual < info.space_bytes:
            raise InputError(
                f"{path} is truncated: its volume descriptor says {info.space_bytes} bytes, "
                f"the file has {actual}.",
                "Download or copy the ISO again and compare its checksum.",
                key=str(path),
            )
        self.label = info.label
        self._iso = pycdlib.PyCdlib()
        try:
            self._iso.open(str(path))
        except (PyCdlibException, OSError, struct.error, ValueError, IndexError) as exc:
            raise InputError(
                f"{path} is not a readable ISO 9660 image: {exc}.",
                "Check that the file is a complete ISO image.",
                key=str(path),
            ) from None
        self.namespace: Namespace
        if self._iso.has_rock_ridge():
            self.namespace = "rr"
        elif self._iso.has_joliet():
            self.namespace = "joliet"
        else:
            self.namespace = "iso9660"
        self._entries: tuple[IsoEntry, ...] | None = None

    def __enter__(self) -> IsoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._iso.close()

    def _kwargs(self, native_path: str) -> dict[str, str]:
        key = {"rr": "rr_path", "joliet": "joliet_path", "iso9660": "iso_path"}[self.namespace]
        return {key: native_path}

    def _name(self, record: Any) -> str:
        if self.namespace == "rr":
            raw: bytes = record.rock_ridge.name()
            return raw.decode("utf-8", "replace")
        identifier: bytes = record.file_identifier()
        if self.namespace == "joliet":
            return identifier.decode("utf-16_be", "replace")
        return identifier.decode("ascii", "replace")

    def entries(self) -> tuple[IsoEntry, ...]:
        """Every file on the image (directory records only; no file data is read)."""
        if self._entries is None:
            self._entries = tuple(sorted(self._walk("/", ""), key=lambda e: e.path))
        return self._entries

    def _walk(self, native_dir: str, display_dir: str) -> Iterator[IsoEntry]:
        try:
            children = list(self._iso.list_children(**self._kwargs(native_dir)))
        except (PyCdlibException, UnicodeError) as exc:
            raise InputError(
                f"{self.path}: cannot list {display_dir or '/'}: {exc}.",
                "The image is damaged; copy it again.",
                key=str(self.path),
            ) from None
        for record in children:
            if record is None or record.is_dot() or record.is_dotdot():
                continue
            name = self._name(record)
            native_name = name
            if self.namespace == "iso9660":
                # Plain ISO 9660 names carry the ";1" version; show them without it
                # but keep the identifier to open the file.
                name = name.split(";")[0].rstrip(".") if not record.is_dir() else name
            native = f"{native_dir.rstrip('/')}/{native_name}"
            display = f"{display_dir}/{name}" if display_dir else name
            if record.is_dir():
                yield from self._walk(native, display)
            else:
                yield IsoEntry(display, int(record.data_length), native)

    def open(self, entry: IsoEntry) -> IO[bytes]:
        """A read-only stream of one file's bytes, read from the image as consumed."""
        return cast(IO[bytes], self._iso.open_file_from_iso(**self._kwargs(entry.native_path)))
