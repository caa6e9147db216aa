"""The Windows Server 2003 install CD: TXTSETUP.SIF edits and the plan of the remaster (pure).

Text-mode setup learns about a mass-storage driver only from `TXTSETUP.SIF` in the
setup folder (`I386` on x86 media, `AMD64` on x64 media). Four sections make it load
viostor from the CD without F6 (docs/windows-2003.md §3): the file in
`[SourceDisksFiles.<arch>]`, the PCI IDs in `[HardwareIdsDatabase]` (the critical
device database that lets the disk boot after the first reboot), the service in
`[SCSI.Load]` and its name in `[SCSI]`. `iso.remaster_install_cd` applies this plan.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from builder.errors import BuildError, InputError
from builder.media import layout
from builder.media.files import PlannedFile
from builder.virtio.inf import strip_comment
from builder.virtio.selection import DriverSet, SelectedDriver
from builder.windows.profiles import Arch, Profile

# The text-mode setup folder of each architecture's CD. x64 media also carry an I386
# folder (32-bit WOW64 files) without TXTSETUP.SIF; it is not the setup folder.
SETUP_DIRS: Mapping[Arch, str] = MappingProxyType({"x86": "I386", "amd64": "AMD64"})
TXTSETUP_SIF = "TXTSETUP.SIF"
WINNT_SIF = "WINNT.SIF"

# [SourceDisksFiles] fields after the name (docs/windows-2003.md §3): source disk 1
# (the setup folder), boot-floppy token `4_` (an empty token fails with "unexpected
# error ... setup.c"), destination 4 (system32\drivers), upgrade disposition 1, and the
# two trailing XP/2003 fields copied from the retail lines.
SOURCE_DISKS_FILES_VALUE = "1,,,,,,4_,4,1,,,1,4"


@dataclass(frozen=True)
class SifEntry:
    """One line to add to a TXTSETUP.SIF section: `key = value`."""

    section: str
    key: str
    value: str

    @property
    def line(self) -> str:
        return f"{self.key} = {self.value}"


@dataclass(frozen=True)
class InstallCdPlan:
    """What the remaster changes on a 2003 install CD.

    `entries` go into `<setup_dir>/TXTSETUP.SIF`; `files` are added (or replaced, so a
    remastered CD can be remastered again) at their paths. Paths are `/`-separated and
    spelled as Windows should see them; `iso.py` derives the ISO 9660 names.
    """

    profile: Profile
    arch: Arch
    setup_dir: str
    storage: SelectedDriver
    sys_name: str
    entries: tuple[SifEntry, ...]
    files: tuple[PlannedFile, ...]

    @property
    def txtsetup_path(self) -> str:
        return f"{self.setup_dir}/{TXTSETUP_SIF}"


def storage_sys_name(storage: SelectedDriver) -> str:
    """The storage driver's `.sys` file name (lower case), from the service it installs."""
    for service in storage.services:
        binary = service.binary.replace("/", "\\").rpartition("\\")[2].strip()
        if binary.lower().endswith(".sys"):
            return binary.lower()
    return f"{storage.service_name.lower()}.sys"


def _description(storage: SelectedDriver) -> str:
    for model in storage.match.models:
        if model.description.strip():
            text = model.description
            break
    else:
        text = storage.info.description if storage.info else storage.service_name
    # The value is quoted in TXTSETUP.SIF; a quote inside would end it early.
    return text.replace('"', "'").strip()


def sif_entries(storage: SelectedDriver, arch: Arch) -> tuple[SifEntry, ...]:
    """The four slipstream edits for `storage` on `arch` media, in file order."""
    sys_name = storage_sys_name(storage)
    service = storage.service_name
    entries = [SifEntry(f"SourceDisksFiles.{arch}", sys_name, SOURCE_DISKS_FILES_VALUE)]
    # The hardware ID is the key and stays unquoted: a quoted key never matches and the
    # disk is silently not found after the first reboot.
    entries += [
        SifEntry("HardwareIdsDatabase", hwid, f'"{service}"') for hwid in storage.hardware_ids
    ]
    entries.append(SifEntry("SCSI.Load", service, f"{sys_name},4"))
    entries.append(SifEntry("SCSI", service, f'"{_description(storage)}"'))
    return tuple(entries)


# -- TXTSETUP.SIF text --------------------------------------------------------------------

_HEADER = re.compile(rb"^\s*\[\s*([^\]]*?)\s*\]")


def _section_of(line: bytes) -> str | None:
    match = _HEADER.match(line)
    return match.group(1).decode("latin-1").lower() if match else None


def _key_value(line: bytes) -> tuple[str, str] | None:
    text = line.decode("latin-1").strip()
    if not text or text.startswith(";") or "=" not in text:
        return None
    key, _, value = text.partition("=")
    return _normal(key), _normal(strip_comment(value))


def _normal(text: str) -> str:
    """Compare keys and values as setup does: case-blind, quotes and blanks ignored."""
    return re.sub(r"\s+", "", text.replace('"', "")).lower()


def patch_txtsetup_sif(text: bytes, storage: SelectedDriver, arch: Arch) -> bytes:
    """TXTSETUP.SIF with the slipstream edits for `storage` (pure, idempotent).

    Each line goes right after the *first* header of its section (retail files repeat
    headers such as `[SourceDisksFiles]`); a section that does not exist is appended.
    Every original byte is kept, and new lines use the file's line ending (CRLF on a
    Windows CD: a stray LF makes setup report "txtsetup.sif is corrupt or missing").
    A line whose key is already present with the same value is not added again, so
    patching a patched file returns it unchanged.

    Raises:
        InputError: a key is already present with another value (the CD was slipstreamed
            with a different driver).
    """
    return apply_sif_entries(text, sif_entries(storage, arch))


def apply_sif_entries(text: bytes, entries: Sequence[SifEntry]) -> bytes:
    """`text` with `entries` added as `patch_txtsetup_sif` describes (pure, idempotent)."""
    newline = b"\n" if b"\n" in text and b"\r\n" not in text else b"\r\n"
    lines = text.splitlines(keepends=True)
    first_header: dict[str, int] = {}
    present: dict[tuple[str, str], tuple[str, bytes]] = {}
    section: str | None = None
    for index, line in enumerate(lines):
        name = _section_of(line)
        if name is not None:
            section = name
            first_header.setdefault(name, index)
            continue
        if section is None:
            continue
        pair = _key_value(line)
        if pair is not None:
            present.setdefault((section, pair[0]), (pair[1], line.rstrip(b"\r\n")))

    inserts: dict[int, list[bytes]] = {}
    appended: dict[str, list[bytes]] = {}
    for entry in entries:
        wanted = entry.section.lower()
        found = present.get((wanted, _normal(entry.key)))
        if found is not None:
            if found[0] == _normal(entry.value):
                continue
            raise InputError(
                f"TXTSETUP.SIF already has [{entry.section}] "
                f"{found[1].decode('latin-1').strip()!r}, not {entry.line!r}.",
                "Give the original Windows CD, not one slipstreamed with another driver.",
                key="--windows-iso",
            )
        line = entry.line.encode("ascii") + newline
        if wanted in first_header:
            inserts.setdefault(first_header[wanted], []).append(line)
        else:
            appended.setdefault(entry.section, []).append(line)

    out: list[bytes] = []
    for index, line in enumerate(lines):
        out.append(line)
        if index in inserts:
            if not line.endswith((b"\n", b"\r")):
                out.append(newline)
            out.extend(inserts[index])
    if appended:
        if lines and not lines[-1].endswith((b"\n", b"\r")):
            out.append(newline)
        for name, new_lines in appended.items():
            out.append(newline)
            out.append(f"[{name}]".encode("ascii") + newline)
            out.extend(new_lines)
    return b"".join(out)


# -- the plan -------------------------------------------------------------------------------


def plan_install_cd(drivers: DriverSet, answers: Mapping[str, bytes]) -> InstallCdPlan:
    """The edits that turn the user's 2003 CD into an F6-free unattended one (pure).

    Adds the storage driver's `.sys` (the build for the CD's architecture) and
    `WINNT.SIF` to the setup folder, and every selected package under
    `$OEM$/$1/Drivers/<driver>/`, the folders `OemPnPDriversPath` names.
    """
    profile = drivers.profile
    if not profile.remasters_install_cd:
        raise BuildError(f"{profile.name} has no install CD to remaster.")
    storage = drivers.storage
    setup_dir = SETUP_DIRS[profile.arch]
    sys_name = storage_sys_name(storage)
    sys_file = next(
        (f for f in storage.files if f.path.rpartition("/")[2].lower() == sys_name), None
    )
    if sys_file is None:
        raise InputError(
            f"the {storage.name} package {storage.inf_path} has no {sys_name}.",
            "Use a complete virtio-win release.",
            key="--drivers",
        )
    winnt = next((data for name, data in answers.items() if name.lower() == "winnt.sif"), None)
    if winnt is None:
        raise BuildError("the answer files have no winnt.sif for the 2003 install CD.")
    files = [
        PlannedFile.from_source(f"{setup_dir}/{sys_name.upper()}", sys_file.path, sys_file.size),
        PlannedFile.inline(f"{setup_dir}/{WINNT_SIF}", winnt),
    ]
    for driver in drivers.selected:
        folder = layout.oem_folder(driver)
        files += [
            PlannedFile.from_source(
                f"{folder}/{layout.package_relative(driver, f)}", f.path, f.size
            )
            for f in driver.files
        ]
    return InstallCdPlan(
        profile=profile,
        arch=profile.arch,
        setup_dir=setup_dir,
        storage=storage,
        sys_name=sys_name,
        entries=sif_entries(storage, profile.arch),
        files=tuple(sorted(files, key=lambda f: f.path)),
    )
