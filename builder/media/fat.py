"""FAT12 floppy images, written: the only module that imports pyfatfs.

`write_floppy` makes the answer floppy of a `FloppyPlan` (`media/floppy.py`).
pyfatfs's own mkfs writes a boot sector that mtools and old Windows setup reject (zero
heads and sectors per track, a wrong FAT head, 12 FAT sectors), so the blank image is
built here with the standard geometry and pyfatfs only fills it, each file written once
(rewriting a file corrupts its FAT chain). pyfatfs never reports a full disk (it grows
the image instead): the plan has checked the capacity (`floppy.floppy_usage`), and the
image's size is checked again after writing. Floppy images from users are read by
`media/fat_reader.py`, which checks every number pyfatfs would follow. See
docs/libraries.md.
"""

from __future__ import annotations

import contextlib
import io
import struct
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import IO, Any

from builder.errors import BuildError
from builder.media.files import output_stream
from builder.media.floppy import SECTOR, FloppyGeometry, FloppyPlan, floppy_usage, geometry
from builder.reproducible import FAT_EPOCH
from builder.virtio.source import DriverSource


def _pyfatfs() -> Any:
    """pyfatfs's classes. Imported on first use: pyfatfs imports `fs`, which imports
    pkg_resources, and that costs every pvinstall start 0.2 s and a warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        from fs.errors import FSError
        from pyfatfs import PyFATException
        from pyfatfs.DosDateTime import DosDateTime
        from pyfatfs.PyFatFS import PyFatBytesIOFS
    return SimpleNamespace(
        FSError=FSError,
        PyFATException=PyFATException,
        DosDateTime=DosDateTime,
        PyFatBytesIOFS=PyFatBytesIOFS,
    )


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


@contextlib.contextmanager
def _pinned_fat_clock(epoch: int) -> Iterator[None]:
    """Every directory entry pyfatfs creates gets the build's time instead of now()."""
    DosDateTime = _pyfatfs().DosDateTime  # noqa: N806 - the class, by its name

    fixed = DosDateTime(*time.gmtime(min(max(epoch, FAT_EPOCH), 4354819198))[:6])
    original = DosDateTime.__dict__["now"]
    DosDateTime.now = staticmethod(lambda tz=None: fixed)
    try:
        yield
    finally:
        DosDateTime.now = original


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
        BuildError: pyfatfs failed, or the image did not come out at its nominal size.
    """
    name = out.name if isinstance(out, Path) else Path(str(getattr(out, "path", "floppy"))).name
    geo = geometry(plan.size_kib)
    usage = floppy_usage(((f.path, f.size) for f in plan.files), geo)
    if not usage.fits:
        raise BuildError(f"{name}: the planned files do not fit ({usage}).")
    image = _KeptImage(blank_image(geo, plan.label, serial, epoch))
    _fill(image, name, plan, source, epoch)
    data = image.getvalue()
    if len(data) != geo.size:
        # pyfatfs grows a full image instead of failing.
        raise BuildError(
            f"{name} came out at {len(data)} bytes instead of {geo.size}: the files "
            "overflowed the floppy although the plan said they fit."
        )
    with output_stream(out) as stream:
        stream.write(data)


class _KeptImage(io.BytesIO):
    """The image in memory; pyfatfs closes its file when it is done, the bytes stay."""

    def close(self) -> None:
        self.seek(0)


def _fill(image: _KeptImage, name: str, plan: FloppyPlan, source: DriverSource, epoch: int) -> None:
    lib = _pyfatfs()
    made: set[str] = set()
    with _pinned_fat_clock(epoch):
        fs: Any = lib.PyFatBytesIOFS(image, utc=True, preserve_case=True, lazy_load=False)
        try:
            # A first-level folder's `..` entry is a copy of pyfatfs's in-memory root
            # entry, whose dates are zero (an invalid month 0); date it like the rest.
            root = fs.fs.root_dir
            date, clock = _fat_date_time(epoch)
            root.crtdate = root.wrtdate = root.lstaccessdate = date
            root.crttime = root.wrttime = clock
            for planned in plan.files:
                parts = planned.path.split("/")
                for depth in range(1, len(parts)):
                    directory = "/" + "/".join(parts[:depth])
                    if directory not in made:
                        fs.makedir(directory)
                        made.add(directory)
                # Bounded by the floppy's size; pyfatfs must get each file in one
                # write (a second write into a file rewrites its clusters).
                data = planned.read(source)
                with fs.openbin("/" + planned.path, "w") as stream:
                    stream.write(data)
        except lib.PyFATException as exc:
            raise BuildError(f"{name}: pyfatfs failed: {exc}") from exc
        finally:
            fs.close()
