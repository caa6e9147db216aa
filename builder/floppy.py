"""FAT12 floppy images: the only module that imports pyfatfs.

Reading: `FloppyReader` lists and streams the files of a FAT floppy image, such
as the legacy virtio-win `.vfd` images (`<i386|amd64>/<Win2003|Win2008|...>/`).
"""

from __future__ import annotations

import struct
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from builder.errors import InputError

SECTOR = 512


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
class FloppyEntry:
    """A file on the image: its path as Windows shows it, its size, and pyfatfs's path."""

    path: str
    size: int
    native_path: str


class FloppyReader:
    """Read-only access to the files of a FAT floppy image."""

    def __init__(self, path: Path) -> None:
        with warnings.catch_warnings():
            # `fs` imports pkg_resources at import time, which warns on every run.
            warnings.simplefilter("ignore", UserWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            from fs.errors import FSError
            from pyfatfs.PyFatFS import PyFatFS

        self.path = path
        try:
            self._fs: Any = PyFatFS(str(path), read_only=True, utc=True)
        except (FSError, OSError, ValueError, struct.error, IndexError) as exc:
            raise InputError(
                f"{path} is not a readable FAT floppy image: {exc}.",
                "Give a virtio-win .vfd image, an ISO or a driver folder.",
                key=str(path),
            ) from None
        except Exception as exc:  # pyfatfs raises its own PyFATException for bad images
            if type(exc).__name__ != "PyFATException":
                raise
            raise InputError(
                f"{path} is not a readable FAT floppy image: {exc}.",
                "Give a virtio-win .vfd image, an ISO or a driver folder.",
                key=str(path),
            ) from None
        label = getattr(self._fs.fs, "bpb_header", {})
        self.label = _volume_label(path) or str(label.get("BS_VolLab", b"") or "").strip()
        self._entries: tuple[FloppyEntry, ...] | None = None

    def __enter__(self) -> FloppyReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._fs.close()

    def entries(self) -> tuple[FloppyEntry, ...]:
        """Every file on the image, from the directory entries only."""
        if self._entries is None:
            found = list(self._walk(self._fs.fs.root_dir, "", ""))
            self._entries = tuple(sorted(found, key=lambda e: e.path))
        return self._entries

    def _walk(self, directory: Any, display_dir: str, native_dir: str) -> Iterator[FloppyEntry]:
        dirs, files, _ = directory.get_entries()
        for entry in [*dirs, *files]:
            display = _display_name(entry)
            native = repr(entry)
            display_path = f"{display_dir}/{display}" if display_dir else display
            native_path = f"{native_dir}/{native}" if native_dir else native
            if entry.is_directory():
                yield from self._walk(entry, display_path, native_path)
            else:
                yield FloppyEntry(display_path, int(entry.filesize), native_path)

    def open(self, entry: FloppyEntry) -> IO[bytes]:
        stream: IO[bytes] = self._fs.openbin("/" + entry.native_path, "r")
        return stream


# Windows NT records "all lower case" for an 8.3 name's base (0x08) and extension
# (0x10) in DIR_NTRes instead of adding a long name; mtools writes names that way.
_NTRES_LOWER_BASE = 0x08
_NTRES_LOWER_EXT = 0x10


def _display_name(entry: Any) -> str:
    if entry.lfn_entry is not None:
        return str(entry.get_long_name())
    short = str(entry.get_short_name())
    base, dot, ext = short.partition(".")
    if entry.ntres & _NTRES_LOWER_BASE:
        base = base.lower()
    if entry.ntres & _NTRES_LOWER_EXT:
        ext = ext.lower()
    return f"{base}{dot}{ext}"


def _volume_label(path: Path) -> str:
    """The label from the boot sector's extended BPB (FAT12/16)."""
    with path.open("rb") as handle:
        boot = handle.read(SECTOR)
    if len(boot) >= 54 and boot[38] == 0x29:
        return boot[43:54].decode("ascii", "replace").strip()
    return ""
