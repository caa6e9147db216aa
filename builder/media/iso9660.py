"""ISO 9660 images: the only module that imports pycdlib.

Reading driver sources (`IsoReader`, `IsoSource`) is `media/iso_reader.py`'s, without
pycdlib (its names are re-exported here).

Writing: `write_drivers_iso` masters drivers.iso and answer.iso (ISO 9660 level 3 +
Joliet + Rock Ridge) from an `IsoPlan`; `inspect_install_cd` checks the user's Windows
Server 2003 CD and `remaster_install_cd` applies an `InstallCdPlan` to it.

Windows install media: `read_install_media` reads a Windows DVD (UDF) or a 2003 CD in
place into an `InstallMedia`: install.wim's header and XML through pycdlib's stream,
the El Torito entries, the setup folder. pycdlib streams file
data at `write()` time: from the source CD for untouched files, and from the driver
source for new ones (`PlannedFile.open`), so nothing is held in memory or extracted.
pycdlib stamps records with `time.time()` and local time and UDF with `random`;
`_pinned_clock` makes them the build's epoch in UTC while we write. See
docs/libraries.md.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import io
import random
import re
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from time import struct_time
from typing import IO, Any, BinaryIO, cast

import pycdlib
from pycdlib.pycdlibexception import PyCdlibException

from builder.digests import HashingReader
from builder.errors import BuildError, InputError
from builder.media import eltorito
from builder.media.files import WRITE_BLOCK, IsoPlan, PlannedFile, output_stream

# Reading driver sources is iso_reader's (no pycdlib); its names are ISO names here too.
from builder.media.iso_reader import SECTOR as SECTOR  # noqa: PLC0414
from builder.media.iso_reader import IsoEntry as IsoEntry  # noqa: PLC0414
from builder.media.iso_reader import IsoReader as IsoReader  # noqa: PLC0414
from builder.media.iso_reader import IsoSource as IsoSource  # noqa: PLC0414
from builder.media.iso_reader import VolumeInfo as VolumeInfo  # noqa: PLC0414
from builder.media.iso_reader import is_iso_image as is_iso_image  # noqa: PLC0414
from builder.media.iso_reader import read_volume_info as read_volume_info  # noqa: PLC0414
from builder.media.slipstream import SETUP_DIRS, TXTSETUP_SIF, InstallCdPlan, apply_sif_entries
from builder.virtio.source import DriverSource
from builder.windows.install_media import WINDOWS_ISO_KEY, BootImage, DiscExtent, InstallMedia
from builder.windows.profiles import Arch, Profile, sibling
from builder.windows.wim import WimError, WimInfo, read_wim

_READ_ERRORS = (PyCdlibException, OSError, struct.error, ValueError, IndexError, KeyError)


def _open_checked(
    path: Path, *, key: str, not_iso_hint: str, stream: IO[bytes] | None = None
) -> tuple[Any, VolumeInfo]:
    """Open an ISO with pycdlib after the cheap checks; InputError when it is not one, is
    truncated, or pycdlib cannot parse it."""
    info = read_volume_info(path)
    if info is None:
        raise InputError(
            f"{path} is not an ISO 9660 image (no CD001 volume descriptor).",
            not_iso_hint,
            key=key,
        )
    actual = path.stat().st_size
    if actual < info.space_bytes:
        raise InputError(
            f"{path} is truncated: its volume descriptor says {info.space_bytes} bytes, "
            f"the file has {actual}.",
            "Download or copy the ISO again and compare its checksum.",
            key=key,
        )
    image = pycdlib.PyCdlib()
    try:
        if stream is None:
            image.open(str(path))
        else:
            image.open_fp(cast(BinaryIO, stream))
    except _READ_ERRORS as exc:
        raise InputError(
            f"{path} is not a readable ISO 9660 image: {exc}.",
            "Check that the file is a complete ISO image.",
            key=key,
        ) from None
    return image, info


# -- determinism ---------------------------------------------------------------------------


class _FrozenTime:
    """Stands in for the `time` module inside pycdlib: `time()` is the build's epoch and
    `localtime()` is UTC, so dates do not depend on the clock or on $TZ."""

    def __init__(self, epoch: int) -> None:
        self._epoch = epoch

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)

    def time(self) -> float:
        return float(self._epoch)

    def localtime(self, secs: float | None = None) -> struct_time:
        return time.gmtime(self._epoch if secs is None else secs)


# Every pycdlib module that reads the clock (time.time / time.localtime).
_CLOCK_MODULES = (
    "pycdlib.pycdlib",
    "pycdlib.headervd",
    "pycdlib.udf",
    "pycdlib.inplaceeditor",
    "pycdlib.dates",
)


@contextlib.contextmanager
def _pinned_clock(epoch: int) -> Iterator[None]:
    """pycdlib's clock and UDF's random volume-set id fixed to the build, restored after."""
    modules: list[Any] = [importlib.import_module(name) for name in _CLOCK_MODULES]
    udf: Any = importlib.import_module("pycdlib.udf")
    saved_time = [(module, module.__dict__["time"]) for module in modules]
    saved_random = udf.__dict__["random"]
    try:
        for module in modules:
            module.time = _FrozenTime(epoch)
        # A fixed seed is the point here: UDF volume-set ids become reproducible.
        udf.random = random.Random(epoch)  # noqa: S311
        yield
    finally:
        for module, original in saved_time:
            module.time = original
        udf.random = saved_random


# -- names ---------------------------------------------------------------------------------

_NOT_D_CHARS = re.compile(r"[^A-Z0-9_]")
# Ecma-119 7.5/7.6: a file identifier has at most 30 characters (name, dot, extension),
# a directory identifier at most 31.
_MAX_FILE_ID = 30
_MAX_DIR_ID = 31


def iso9660_name(name: str, *, is_dir: bool, relaxed: bool = False) -> str:
    """The ISO 9660 identifier for `name`, without a `;1` version (pure).

    Strict (drivers.iso, level 3): upper-case d-characters, other characters become `_`,
    cut to the Ecma-119 lengths. Relaxed (a Windows CD, mastered like `mkisofs
    -relaxed-filenames`): upper case only, so `$OEM$` keeps its name, which setup needs.
    A file always gets the dot of its (maybe empty) extension, as Ecma-119 requires.
    """
    upper = name.upper()
    if relaxed:
        cleaned = upper.replace(";", "_").replace("/", "_")
        if is_dir:
            return cleaned
        return cleaned if "." in cleaned else f"{cleaned}."
    if is_dir:
        return (_NOT_D_CHARS.sub("_", upper) or "_")[:_MAX_DIR_ID]
    stem, dot, ext = upper.rpartition(".")
    if not dot:
        stem, ext = upper, ""
    ext = _NOT_D_CHARS.sub("_", ext)[: _MAX_FILE_ID - 2]
    stem = _NOT_D_CHARS.sub("_", stem) or "_"
    return f"{stem[: _MAX_FILE_ID - 1 - len(ext)]}.{ext}"


def _identifier_key(identifier: str, is_dir: bool) -> str:
    """An existing identifier as a lookup key: no `;1`, no empty extension's dot."""
    if is_dir:
        return identifier.upper()
    return identifier.split(";", maxsplit=1)[0].rstrip(".").upper()


# -- adding planned files to an image ------------------------------------------------------


@dataclass(frozen=True)
class _Conventions:
    """How new names are written, following the image being written or edited."""

    relaxed: bool
    version: bool
    joliet: bool
    rock_ridge: bool


class _Editor:
    """Adds planned files to a PyCdlib, creating their directories as needed, in every
    namespace the image has; a file or directory that exists (ISO 9660 names compare
    case-blind, without `;1`) is reused, and an existing file gets the new contents."""

    def __init__(self, image: Any, conventions: _Conventions) -> None:
        self._iso = image
        self._conv = conventions
        # planned directory (case-folded) -> (ISO 9660 path, Joliet path)
        self._dirs: dict[str, tuple[str, str]] = {"": ("/", "/")}
        self._listings: dict[str, dict[str, tuple[str, bool]]] = {}
        self._joliet_listings: dict[str, dict[str, str]] = {}
        # (ISO 9660 folder, identifier key) of what this editor added, with the planned
        # name: finding one of those again is a collision of names, not a file to replace.
        self._added: dict[tuple[str, str], str] = {}
        self.streams: list[IO[bytes]] = []

    def _listing(self, iso_dir: str) -> dict[str, tuple[str, bool]]:
        if iso_dir not in self._listings:
            found: dict[str, tuple[str, bool]] = {}
            for record in self._iso.list_children(iso_path=iso_dir):
                if record is None or record.is_dot() or record.is_dotdot():
                    continue
                identifier = record.file_identifier().decode("ascii", "replace")
                is_dir = bool(record.is_dir())
                found[_identifier_key(identifier, is_dir)] = (identifier, is_dir)
            self._listings[iso_dir] = found
        return self._listings[iso_dir]

    def _joliet_listing(self, joliet_dir: str) -> dict[str, str]:
        if joliet_dir not in self._joliet_listings:
            found: dict[str, str] = {}
            for record in self._iso.list_children(joliet_path=joliet_dir):
                if record is None or record.is_dot() or record.is_dotdot():
                    continue
                name = record.file_identifier().decode("utf-16_be", "replace")
                found[name.split(";")[0].lower()] = name
            self._joliet_listings[joliet_dir] = found
        return self._joliet_listings[joliet_dir]

    @staticmethod
    def _join(parent: str, name: str) -> str:
        return f"{parent.rstrip('/')}/{name}"

    def _new_identifier(self, iso_dir: str, name: str, is_dir: bool) -> str:
        base = iso9660_name(name, is_dir=is_dir, relaxed=self._conv.relaxed)
        listing = self._listing(iso_dir)
        candidate, number = base, 0
        while _identifier_key(candidate, is_dir) in listing:
            # Only reached when two different names map to one identifier.
            number += 1
            stem, dot, ext = base.rpartition(".") if not is_dir else (base, "", "")
            candidate = f"{stem[: _MAX_FILE_ID - 3 - len(ext)]}_{number}{dot}{ext}"
        return candidate

    def directory(self, path: str) -> tuple[str, str]:
        """The ISO 9660 and Joliet paths of planned directory `path`, made if missing."""
        folded = path.lower()
        if folded in self._dirs:
            return self._dirs[folded]
        parent, _, name = path.rpartition("/")
        iso_parent, joliet_parent = self.directory(parent)
        key = _identifier_key(iso9660_name(name, is_dir=True, relaxed=self._conv.relaxed), True)
        existing = self._listing(iso_parent).get(key)
        if self._added.get((iso_parent, key), name.lower()) != name.lower():
            existing = None  # another planned folder took this identifier
        if existing is not None and not existing[1]:
            raise BuildError(f"{path} is a file on the image, but a folder is needed there.")
        joliet_path = ""
        if self._conv.joliet:
            joliet_name = self._joliet_listing(joliet_parent).get(name.lower(), name)
            joliet_path = self._join(joliet_parent, joliet_name)
        if existing is not None:
            iso_path = self._join(iso_parent, existing[0])
            if self._conv.joliet and name.lower() not in self._joliet_listing(joliet_parent):
                self._iso.add_joliet_directory(joliet_path)
                self._joliet_listing(joliet_parent)[name.lower()] = name
        else:
            identifier = self._new_identifier(iso_parent, name, True)
            iso_path = self._join(iso_parent, identifier)
            self._iso.add_directory(
                iso_path=iso_path,
                rr_name=name if self._conv.rock_ridge else None,
                joliet_path=joliet_path or None,
            )
            self._listing(iso_parent)[_identifier_key(identifier, True)] = (identifier, True)
            self._added[iso_parent, _identifier_key(identifier, True)] = name.lower()
            if self._conv.joliet:
                self._joliet_listing(joliet_parent)[name.lower()] = name
            self._listings[iso_path] = {}
            if self._conv.joliet:
                self._joliet_listings[joliet_path] = {}
        self._dirs[folded] = (iso_path, joliet_path)
        return iso_path, joliet_path

    def file(self, planned: PlannedFile, data: IO[bytes]) -> None:
        """Add (or replace the contents of) one planned file, its bytes read from `data`
        when the image is written."""
        parent, _, name = planned.path.rpartition("/")
        iso_parent, joliet_parent = self.directory(parent)
        self.streams.append(data)
        key = _identifier_key(iso9660_name(name, is_dir=False, relaxed=self._conv.relaxed), False)
        existing = self._listing(iso_parent).get(key)
        if (iso_parent, key) in self._added:
            existing = None  # two planned names map to one identifier: give this one another
        if existing is not None:
            if existing[1]:
                raise BuildError(
                    f"{planned.path} is a folder on the image, but a file is needed there."
                )
            self._iso.update_file_contents_fp(
                data, planned.size, iso_path=self._join(iso_parent, existing[0])
            )
            return
        identifier = self._new_identifier(iso_parent, name, False)
        self._listing(iso_parent)[_identifier_key(identifier, False)] = (identifier, False)
        self._added[iso_parent, _identifier_key(identifier, False)] = name.lower()
        joliet_path = None
        if self._conv.joliet:
            joliet_path = self._join(joliet_parent, name)
            self._joliet_listing(joliet_parent)[name.lower()] = name
        self._iso.add_fp(
            data,
            planned.size,
            iso_path=self._join(iso_parent, identifier + (";1" if self._conv.version else "")),
            rr_name=name if self._conv.rock_ridge else None,
            joliet_path=joliet_path,
        )


def _write_image(image: Any, out: Path | IO[bytes], editor: _Editor) -> None:
    """Master `image` to `out` (a path, removed again if that fails, or a new file's
    stream), streaming every file in 1 MiB blocks."""
    try:
        _data_in_image_order(image)
        with output_stream(out) as stream:
            image.write_fp(stream, blocksize=WRITE_BLOCK)
    except PyCdlibException as exc:
        raise BuildError(f"{_output_name(out)}: pycdlib failed: {exc}") from exc
    finally:
        for stream in editor.streams:
            stream.close()


def _data_in_image_order(image: Any) -> None:
    """Make pycdlib write the files' data in the order it lies in the image.

    pycdlib writes the data in the order of its inode list, which after an edit (a
    remastered CD) is not the order of the image: a file near the start may come last,
    after the whole CD has gone by, and the image could then be hashed only by reading
    it back. The extents are assigned first (what `write_fp` would do itself), then the
    list is sorted by them: the bytes written are the same, only their order changes.
    """
    if image._needs_reshuffle:  # pycdlib has no public way to lay the image out now
        image._reshuffle_extents()
    image.inodes.sort(key=lambda inode: inode.extent_location())


def _output_name(out: Path | IO[bytes]) -> str:
    return out.name if isinstance(out, Path) else Path(str(getattr(out, "path", "image"))).name


# -- drivers.iso ---------------------------------------------------------------------------


def write_drivers_iso(
    plan: IsoPlan, out: Path | IO[bytes], source: DriverSource, *, epoch: int
) -> None:
    """Write drivers.iso (ISO 9660 level 3 + Joliet + Rock Ridge) from its plan.

    Args:
        plan: the drivers ISO part of the media plan (label and files).
        out: the image to create (removed again if writing fails), or the stream of a
            new file to write it into.
        source: where `source_path` files are streamed from (never extracted, never
            read whole).
        epoch: SOURCE_DATE_EPOCH, the date of the volume and of every record.

    Raises:
        BuildError: pycdlib failed, or a source file changed size during the build.
    """
    with _pinned_clock(epoch):
        image = pycdlib.PyCdlib()
        image.new(
            interchange_level=3,
            vol_ident=plan.label,
            app_ident_str="PVINSTALL",
            joliet=3,
            rock_ridge="1.09",
        )
        editor = _Editor(
            image, _Conventions(relaxed=False, version=True, joliet=True, rock_ridge=True)
        )
        try:
            for planned in plan.files:
                editor.file(planned, planned.open(source))
            _write_image(image, out, editor)
        finally:
            for stream in editor.streams:
                stream.close()
            image.close()


# -- the Windows Server 2003 install CD ----------------------------------------------------

_NOT_A_CD_HINT = "Give the ISO image of a Windows Server 2003 (or 2003 R2 disc 1) install CD."


@dataclass(frozen=True)
class BootEntry:
    """The El Torito initial entry: what the BIOS loads from the CD."""

    media_type: int
    load_segment: int
    sector_count: int
    load_rba: int


@dataclass(frozen=True)
class InstallCdInfo:
    """What `inspect_install_cd` found on a Windows Server 2003 install CD."""

    path: Path
    label: str
    arch: Arch
    setup_dir: str
    txtsetup_iso_path: str
    joliet: bool
    rock_ridge: bool
    version_suffix: bool
    boot: BootEntry


def _describe_root(image: Any) -> str:
    names = sorted(
        record.file_identifier().decode("ascii", "replace").split(";")[0]
        + ("/" if record.is_dir() else "")
        for record in image.list_children(iso_path="/")
        if record is not None and not record.is_dot() and not record.is_dotdot()
    )
    shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
    return shown or "nothing"


def _examine(image: Any, path: Path, profile: Profile) -> InstallCdInfo:
    """Check an opened image is a bootable 2003 CD of the profile's architecture;
    InputError if not."""
    arch = profile.arch
    editor = _Editor(
        image, _Conventions(relaxed=True, version=False, joliet=False, rock_ridge=False)
    )
    root = editor._listing("/")
    found: dict[Arch, tuple[str, str]] = {}
    for cd_arch, folder in SETUP_DIRS.items():
        entry = root.get(folder)
        if entry is None or not entry[1]:
            continue
        folder_path = f"/{entry[0]}"
        sif = editor._listing(folder_path).get(_identifier_key(TXTSETUP_SIF, False))
        if sif is not None and not sif[1]:
            found[cd_arch] = (entry[0], f"{folder_path}/{sif[0]}")
    wanted = SETUP_DIRS[arch]
    if arch not in found:
        if found:
            other = next(iter(found))
            match = sibling(profile, other)
            instead = f", or build the {match.name} profile" if match else ""
            raise InputError(
                f"{path} is an {other} Windows CD ({SETUP_DIRS[other]}\\{TXTSETUP_SIF}); "
                f"this build needs an {arch} CD ({wanted}\\{TXTSETUP_SIF}).",
                f"Give the {arch} CD{instead}.",
                key=WINDOWS_ISO_KEY,
            )
        raise InputError(
            f"{path} has no {wanted}\\{TXTSETUP_SIF}, so it is not a Windows Server 2003 "
            f"install CD (its root holds: {_describe_root(image)}).",
            _NOT_A_CD_HINT,
            key=WINDOWS_ISO_KEY,
        )
    if image.has_udf():
        raise InputError(
            f"{path} has a UDF file system, which pvinstall cannot edit (Windows Server 2003 "
            "CDs have none).",
            "Give an image of the original CD.",
            key=WINDOWS_ISO_KEY,
        )
    catalog = image.eltorito_boot_catalog
    if catalog is None or catalog.initial_entry is None:
        raise InputError(
            f"{path} is not bootable: it has no El Torito boot record.",
            "Give an image of the original, bootable CD.",
            key=WINDOWS_ISO_KEY,
        )
    entry = catalog.initial_entry
    setup_dir, txtsetup = found[arch]
    return InstallCdInfo(
        path=path,
        label=image.pvd.volume_identifier.decode("ascii", "replace").strip(),
        arch=arch,
        setup_dir=setup_dir,
        txtsetup_iso_path=txtsetup,
        joliet=bool(image.has_joliet()),
        rock_ridge=bool(image.has_rock_ridge()),
        # SETUPLDR.BIN is found only without the ';1' suffix: new names follow the CD.
        version_suffix=";" in txtsetup,
        boot=BootEntry(
            media_type=int(entry.boot_media_type),
            load_segment=int(entry.load_segment),
            sector_count=int(entry.sector_count),
            load_rba=int(entry.load_rba),
        ),
    )


def _read_small(image: Any, iso_path: str, limit: int = 16 * 2**20) -> bytes:
    record = image.get_record(iso_path=iso_path)
    if record.data_length > limit:
        raise InputError(
            f"{iso_path} is {record.data_length} bytes; a TXTSETUP.SIF has less than "
            f"{limit // 2**20} MiB.",
            _NOT_A_CD_HINT,
            key=WINDOWS_ISO_KEY,
        )
    buffer = io.BytesIO()
    image.get_file_from_iso_fp(buffer, iso_path=iso_path)
    return buffer.getvalue()


@contextlib.contextmanager
def _reading(image: Any, path: Path, *errors: type[BaseException]) -> Iterator[None]:
    """Read the opened CD `image` of the user's `path` inside: any of pycdlib's errors on
    a damaged image (and `errors`) become InputError naming the file, and the image is
    closed whatever happens."""
    caught: tuple[type[BaseException], ...] = (*_READ_ERRORS, *errors)
    try:
        yield
    except caught as exc:
        if isinstance(exc, InputError):
            raise
        raise InputError(
            f"{path} is damaged: {exc}.", "Copy the ISO image again.", key=WINDOWS_ISO_KEY
        ) from None
    finally:
        image.close()


def _open_windows_iso(path: Path, stream: IO[bytes] | None = None) -> Any:
    if not path.is_file():
        raise InputError(
            f"{path} {'is not a file' if path.exists() else 'does not exist'}.",
            _NOT_A_CD_HINT,
            key=WINDOWS_ISO_KEY,
        )
    try:
        image, _ = _open_checked(
            path, key=WINDOWS_ISO_KEY, not_iso_hint=_NOT_A_CD_HINT, stream=stream
        )
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}.", key=WINDOWS_ISO_KEY) from None
    return image


@dataclass(frozen=True)
class RemasteredCd:
    """What remastering saw on the way: the sha256 of the user's CD (hashed as it was
    copied) and the patched TXTSETUP.SIF as written (its path on the CD, size, sha256)."""

    cd_sha256: str
    txtsetup_path: str
    txtsetup_size: int
    txtsetup_sha256: str


def inspect_install_cd(
    path: Path, profile: Profile, plan: InstallCdPlan | None = None
) -> InstallCdInfo:
    """Check the user's Windows CD before anything is written (reads metadata only).

    Refuses (InputError, key `--windows-iso`) a file that is not an ISO, a truncated
    one, a CD without `I386\\TXTSETUP.SIF` / `AMD64\\TXTSETUP.SIF`, a CD of the other
    architecture, one with UDF or without El Torito; with `plan`, also a TXTSETUP.SIF
    that already names the driver differently (its patch is tried on the text).
    """
    if not profile.remasters_install_cd:
        raise BuildError(f"{profile.name} has no install CD to remaster.")
    image = _open_windows_iso(path)
    with _reading(image, path):
        info = _examine(image, path, profile)
        if plan is not None:
            apply_sif_entries(_read_small(image, info.txtsetup_iso_path), plan.entries)
        return info


def copy_cd_file(path: Path, wanted: str, out: IO[bytes], *, limit: int) -> int | None:
    """Copy the file `wanted` (`SUPPORT/TOOLS/DEPLOY.CAB`, found case-blind, with or
    without `;1`) of the 2003 CD `path` into `out`, read in place: the CD is never
    extracted. Returns its size, or None when the CD has no such file; InputError when
    it is larger than `limit` bytes or the CD is damaged."""
    image = _open_windows_iso(path)
    with _reading(image, path):
        editor = _Editor(
            image, _Conventions(relaxed=True, version=False, joliet=False, rock_ridge=False)
        )
        folder = "/"
        *parents, name = wanted.split("/")
        for part in parents:
            entry = editor._listing(folder).get(_identifier_key(part, True))
            if entry is None or not entry[1]:
                return None
            folder = editor._join(folder, entry[0])
        found = editor._listing(folder).get(_identifier_key(name, False))
        if found is None or found[1]:
            return None
        iso_path = editor._join(folder, found[0])
        record = image.get_record(iso_path=iso_path)
        size = int(record.data_length)
        if size > limit:
            raise InputError(
                f"{path}: {wanted} is {size} bytes; the one of a Windows Server 2003 CD has "
                f"about 1 MB (pvinstall reads at most {limit // 2**20} MiB of it).",
                _NOT_A_CD_HINT,
                key=WINDOWS_ISO_KEY,
            )
        image.get_file_from_iso_fp(out, iso_path=iso_path)
        return size


def remaster_install_cd(
    windows_iso: Path,
    out: Path | IO[bytes],
    plan: InstallCdPlan,
    source: DriverSource,
    *,
    epoch: int,
) -> RemasteredCd:
    """Write `out`: the user's 2003 CD with the driver slipstreamed (streamed, deterministic).

    Patches the setup folder's TXTSETUP.SIF, adds the plan's files (or replaces them, so
    remastering a remastered CD changes nothing), keeps every other file and the El
    Torito boot record (same image bytes, media type, load segment and sector count;
    pycdlib moves the catalog and image and refreshes an isolinux boot-info table). New
    names follow the CD: no `;1` when it has none, Joliet names when it has Joliet.

    Args:
        windows_iso: the user's CD image (checked again; see `inspect_install_cd`). It
            is read once: pycdlib's reads are hashed as they pass (`HashingReader`),
            and only the sectors it skips are read besides.
        out: the image to create (removed again if writing fails), or the stream of a
            new file to write it into.
        plan: the CD edits (`slipstream.plan_install_cd`).
        source: where the driver files are streamed from.
        epoch: SOURCE_DATE_EPOCH, the date of new records and of the volume.
    """
    try:
        reader = HashingReader(windows_iso)
    except OSError as exc:
        raise InputError(
            f"cannot read {windows_iso}: {exc.strerror}.", key=WINDOWS_ISO_KEY
        ) from None
    with _pinned_clock(epoch), reader:
        image = _open_windows_iso(windows_iso, cast(IO[bytes], reader))
        editor: _Editor | None = None
        try:
            info = _examine(image, windows_iso, plan.profile)
            # `$OEM$` is not made of d-characters; level 4 lifts pycdlib's name check
            # without adding an enhanced volume descriptor to an opened image.
            image.interchange_level = 4
            editor = _Editor(
                image,
                _Conventions(
                    relaxed=True,
                    version=info.version_suffix,
                    joliet=info.joliet,
                    rock_ridge=info.rock_ridge,
                ),
            )
            original = _read_small(image, info.txtsetup_iso_path)
            patched = apply_sif_entries(original, plan.entries)
            if patched != original:
                editor.streams.append(io.BytesIO(patched))
                image.update_file_contents_fp(
                    editor.streams[-1], len(patched), iso_path=info.txtsetup_iso_path
                )
            for planned in plan.files:
                editor.file(planned, planned.open(source))
            _write_image(image, out, editor)
        finally:
            if editor is not None:
                for stream in editor.streams:
                    stream.close()
            image.close()
        try:
            cd_digest = reader.digest()["sha256"]
        except OSError as exc:
            raise BuildError(
                f"{windows_iso} changed while it was remastered: {exc}.",
                "Build again from a CD image nothing writes to meanwhile.",
            ) from None
    return RemasteredCd(
        cd_sha256=cd_digest,
        txtsetup_path=plan.txtsetup_path,
        txtsetup_size=len(patched),
        txtsetup_sha256=hashlib.sha256(patched).hexdigest(),
    )


# -- Windows install media, read in place ----------------------------------------------------

_MEDIA_HINT = (
    "Give the ISO image of a Windows Server install DVD (2008 and later) or of a Windows "
    "Server 2003 CD."
)
# Every walk of a disc is bounded: a hostile image can claim any number of entries (a
# real Server DVD has about a thousand).
MAX_DISC_ENTRIES = 100_000
# Where Windows Setup looks for the images it installs, in its order; the split-WIM part
# is looked for only to say why it cannot be used.
INSTALL_IMAGES = ("sources/install.wim", "sources/install.esd", "sources/install.swm")
EFISYS_NOPROMPT = "efi/microsoft/boot/efisys_noprompt.bin"
_PLATFORMS = {0x00: "bios", 0x01: "ppc", 0x02: "mac", 0xEF: "uefi"}
_EMULATIONS = {
    0: "no-emulation",
    1: "floppy-1.2M",
    2: "floppy-1.44M",
    3: "floppy-2.88M",
    4: "hard-disk",
}


@dataclass(frozen=True)
class _DiscFile:
    path: str  # as the disc spells it, without the leading '/'
    size: int
    lba: int | None  # first 2048-byte sector of its data (None: no data)


def _open_media(path: Path) -> Any:
    if not path.is_file():
        raise InputError(
            f"{path} {'is not a file' if path.exists() else 'does not exist'}.",
            _MEDIA_HINT,
            key=WINDOWS_ISO_KEY,
        )
    try:
        image, _ = _open_checked(path, key=WINDOWS_ISO_KEY, not_iso_hint=_MEDIA_HINT)
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}.", key=WINDOWS_ISO_KEY) from None
    return image


def _too_many(path: Path) -> InputError:
    return InputError(
        f"{path} lists more than {MAX_DISC_ENTRIES} files and folders; a Windows DVD has "
        "about a thousand.",
        "Check that the file is the install DVD.",
        key=WINDOWS_ISO_KEY,
    )


def _udf_files(image: Any, path: Path) -> tuple[dict[str, _DiscFile], set[str]]:
    """Every UDF file (keyed by its case-folded path: Windows looks names up
    case-blind, pycdlib does not) and every folder (case-folded), bounded."""
    files: dict[str, _DiscFile] = {}
    folders: set[str] = set()
    for top, dirs, names in image.walk(udf_path="/"):
        base = top.strip("/")
        for name in dirs:
            folders.add(f"{base}/{name}".strip("/").casefold())
        for name in names:
            relative = f"{base}/{name}".strip("/")
            record = image.get_record(udf_path=f"/{relative}")
            size = int(record.get_data_length())
            extents = image.get_file_byte_extents(udf_path=f"/{relative}") if size else []
            lba = extents[0][0] // SECTOR if extents else None
            files.setdefault(relative.casefold(), _DiscFile(relative, size, lba))
        if len(files) + len(folders) > MAX_DISC_ENTRIES:
            raise _too_many(path)
    return files, folders


def _iso9660_files(image: Any, path: Path) -> dict[str, _DiscFile]:
    """Every ISO 9660 file of a disc without UDF (names without `;1`), bounded."""
    files: dict[str, _DiscFile] = {}
    for top, _dirs, names in image.walk(iso_path="/"):
        for name in names:
            relative = f"{top.strip('/')}/{name}".strip("/")
            record = image.get_record(iso_path=f"/{relative}")
            shown = relative.split(";", maxsplit=1)[0].rstrip(".")
            files.setdefault(
                shown.casefold(),
                _DiscFile(shown, int(record.data_length), int(record.extent_location())),
            )
        if len(files) > MAX_DISC_ENTRIES:
            raise _too_many(path)
    return files


def one_extent(extents: list[tuple[int, int]], size: int) -> bool:
    """Whether a file's data extents are one contiguous run of `size` bytes (pure).

    pycdlib reads a UDF file as one run from its first extent; a fragmented file would
    be read wrongly without an error, so it is refused instead.
    """
    if not extents:
        return size == 0
    position = extents[0][0]
    for offset, length in extents:
        if offset != position:
            return False
        position += length
    return position - extents[0][0] == size


def _boot_images(image: Any, files: dict[str, _DiscFile]) -> tuple[BootImage, ...]:
    catalog = image.eltorito_boot_catalog
    if catalog is None:
        return ()
    by_lba = {f.lba: f for f in files.values() if f.lba is not None}
    entries = [(catalog.validation_entry.platform_id, catalog.initial_entry)]
    for section in catalog.sections[:64]:
        entries += [(section.platform_id, e) for e in section.section_entries[:64]]
    found = []
    for platform, entry in entries:
        if entry is None:
            continue
        file = by_lba.get(int(entry.load_rba))
        found.append(
            BootImage(
                platform=_PLATFORMS.get(platform, f"{platform:#04x}"),
                bootable=entry.boot_indicator == 0x88,
                emulation=_EMULATIONS.get(entry.boot_media_type, str(entry.boot_media_type)),
                load_segment=int(entry.load_segment),
                sectors=int(entry.sector_count),
                lba=int(entry.load_rba),
                file=file.path if file else None,
                size=file.size if file else None,
            )
        )
    return tuple(found)


def _root_listing(files: dict[str, _DiscFile], folders: set[str]) -> str:
    names = sorted(
        {f.path.split("/")[0] + ("/" if "/" in f.path else "") for f in files.values()}
        | {f"{d.split('/')[0]}/" for d in folders}
    )
    shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
    return shown or "nothing"


def _read_install_image(image: Any, path: Path, file: _DiscFile) -> WimInfo:
    where = f"{path}:{file.path}"
    extents = image.get_file_byte_extents(udf_path=f"/{file.path}")
    if not one_extent(extents, file.size):
        raise InputError(
            f"{where} is stored in {len(extents)} separate pieces; pvinstall reads it in "
            "place and can read only a file stored in one piece, as Microsoft's DVDs do.",
            "Give the original DVD image, or remaster it so that the file is contiguous.",
            key=WINDOWS_ISO_KEY,
        )
    with image.open_file_from_iso(udf_path=f"/{file.path}") as stream:
        try:
            return read_wim(stream, int(stream.length()))
        except WimError as exc:
            raise InputError(
                f"{where}: {exc}.",
                "Give the install DVD image as Microsoft ships it.",
                key=WINDOWS_ISO_KEY,
            ) from None


def _read_setup_dvd(image: Any, path: Path, label: str) -> InstallMedia:
    files, folders = _udf_files(image, path)
    found = next((files[name] for name in INSTALL_IMAGES if name in files), None)
    if found is None:
        what = (
            "sources/ folder" if "sources" not in folders else "sources/install.wim or install.esd"
        )
        raise InputError(
            f"{path} has no {what}, so it is not a Windows Setup DVD (its root holds: "
            f"{_root_listing(files, folders)}).",
            _MEDIA_HINT,
            key=WINDOWS_ISO_KEY,
        )
    wim = _read_install_image(image, path, found)
    boot_record, catalog = _read_boot_catalog(path)
    return InstallMedia(
        path=path,
        label=label,
        setup="windows-setup",
        udf=True,
        install_image=found.path,
        wim=wim,
        setup_dir=None,
        arch=None,
        tags=(),
        boot=_boot_images(image, files),
        efisys_noprompt=EFISYS_NOPROMPT in files,
        boot_record=boot_record,
        boot_catalog=catalog,
        noprompt=_extent(image, files.get(EFISYS_NOPROMPT)),
    )


def _read_boot_catalog(path: Path) -> tuple[bytes, tuple[int, bytes] | None]:
    """The El Torito boot record (sector 17) and, when it is one, the catalog's sector
    with its number: two small reads of the DVD, for the no-prompt overlay."""
    with path.open("rb") as disc:
        disc.seek(eltorito.BOOT_RECORD_SECTOR * SECTOR)
        record = disc.read(SECTOR)
        try:
            lba = eltorito.catalog_lba(record)
        except eltorito.CatalogError:
            return record, None
        disc.seek(lba * SECTOR)
        return record, (lba, disc.read(SECTOR))


def _extent(image: Any, file: _DiscFile | None) -> DiscExtent | None:
    if file is None or file.lba is None:
        return None
    extents = image.get_file_byte_extents(udf_path=f"/{file.path}")
    return DiscExtent(file.path, file.lba, file.size, one_extent(extents, file.size))


def _read_textmode_cd(image: Any, path: Path, label: str) -> InstallMedia:
    files = _iso9660_files(image, path)
    found: list[Arch] = [
        arch
        for arch, folder in SETUP_DIRS.items()
        if f"{folder}/{TXTSETUP_SIF}".casefold() in files
    ]
    if not found:
        raise InputError(
            f"{path} is neither a Windows Setup DVD (it has no UDF file system with "
            f"sources/install.wim) nor a Windows Server 2003 CD (no I386 or AMD64 "
            f"\\{TXTSETUP_SIF}); its root holds: {_root_listing(files, set())}.",
            _MEDIA_HINT,
            key=WINDOWS_ISO_KEY,
        )
    # An x64 CD also has an I386 folder (its 32-bit files), without a TXTSETUP.SIF.
    arch: Arch = "amd64" if "amd64" in found else found[0]
    folder = SETUP_DIRS[arch]
    tags = tuple(
        sorted(
            f.path
            for f in files.values()
            if "/" not in f.path and f.path.upper().startswith("WIN51")
        )
    )
    return InstallMedia(
        path=path,
        label=label,
        setup="text-mode",
        udf=False,
        install_image=None,
        wim=None,
        setup_dir=folder,
        arch=arch,
        tags=tags,
        boot=_boot_images(image, files),
        efisys_noprompt=False,
    )


def read_install_media(path: Path) -> InstallMedia:
    """What is on a Windows install DVD or a Windows Server 2003 CD, read in place.

    A DVD (UDF, as every DVD of 2008 and later is): its `sources/install.wim` (or
    `install.esd`; names case-blind, as Windows reads them) is read through pycdlib's
    stream, its header and XML only (`windows.wim.read_wim`), never extracted; its El
    Torito boot images and whether `efisys_noprompt.bin` is there. A CD without UDF: its
    setup folder (I386 or AMD64 with TXTSETUP.SIF), WIN51 tag files and boot image.

    Raises:
        InputError (key `--windows-iso`): not a file, not an ISO, truncated, damaged,
            neither kind of medium, a DVD without `sources/install.wim`, an install
            image in pieces, or one Windows Setup cannot use (see `read_wim`).
    """
    image = _open_media(path)
    with _reading(image, path, RecursionError):  # a hostile tree may nest without end
        label = image.pvd.volume_identifier.decode("ascii", "replace").strip()
        if image.has_udf():
            return _read_setup_dvd(image, path, label)
        return _read_textmode_cd(image, path, label)
