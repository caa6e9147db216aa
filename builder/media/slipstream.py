"""The Windows Server 2003 install CD: TXTSETUP.SIF edits and the plan of the remaster (pure).

Text-mode setup learns about a mass-storage driver only from `TXTSETUP.SIF` in the
setup folder (`I386` on x86 media, `AMD64` on x64 media). Four sections make it load
viostor from the CD without F6 (docs/windows-2003.md §3): the file in
`[SourceDisksFiles.<arch>]`, the PCI IDs in `[HardwareIdsDatabase]` (the critical
device database that lets the disk boot after the first reboot), the service in
`[SCSI.Load]` and its name in `[SCSI]`. `iso.remaster_install_cd` applies this plan.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from types import MappingProxyType

from builder.errors import BuildError, InputError, shown
from builder.media import layout
from builder.media.files import PlannedFile
from builder.virtio.inf import quoted, strip_comment, text_problem, token_problem
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


def storage_description(storage: SelectedDriver) -> str:
    """What setup shows for the storage driver: its first model's description."""
    for model in storage.match.models:
        if model.description.strip():
            return model.description.strip()
    return (storage.info.description if storage.info else storage.service_name).strip()


def inf_value_error(inf_path: str, what: str, value: str, problem: str) -> InputError:
    """The one error for a value of the storage INF that a text-mode setup file cannot
    hold (txtsetup.oem and TXTSETUP.SIF are written from the INF)."""
    return InputError(
        f"{inf_path}: its {what} {shown(value)} cannot be written into the text-mode "
        f"setup files: {problem}.",
        "Use the storage driver of a virtio-win release; this INF is damaged or crafted.",
        key="--drivers",
    )


def checked_token(inf_path: str, what: str, value: str) -> str:
    """`value` when it can be an unquoted field (a hardware ID, a service or file name);
    InputError naming the INF and the value when it cannot."""
    problem = token_problem(value)
    if problem is not None:
        raise inf_value_error(inf_path, what, value, problem)
    return value


def checked_quoted(inf_path: str, what: str, value: str) -> str:
    """`value` as a quoted field (`""` for a quote, `%%` for a percent); InputError for
    control characters, which no field can hold."""
    problem = text_problem(value)
    if problem is not None:
        raise inf_value_error(inf_path, what, value, problem)
    return quoted(value)


def checked_ansi(inf_path: str, what: str, value: str) -> str:
    """`value` when Windows-1252 (the ANSI code page of the files setup reads) holds every
    character; InputError naming the ones it cannot."""
    bad = [c for c in dict.fromkeys(value) if not _in_cp1252(c)]
    if bad:
        raise inf_value_error(
            inf_path,
            what,
            value,
            "Windows-1252 cannot hold " + ", ".join(shown(c) for c in bad),
        )
    return value


def _in_cp1252(char: str) -> bool:
    try:
        char.encode("cp1252")
    except UnicodeEncodeError:
        return False
    return True


def sif_entries(storage: SelectedDriver, arch: Arch) -> tuple[SifEntry, ...]:
    """The four slipstream edits for `storage` on `arch` media, in file order.

    Every value comes from the INF: names and hardware IDs must be plain tokens (a
    hardware ID is the key of its line and stays unquoted: a quoted key never matches
    and the disk is silently not found after the first reboot), the description is
    quoted. InputError, naming the INF and the value, for what cannot be written.
    """
    inf = storage.inf_path
    sys_name = checked_token(inf, "driver file", storage_sys_name(storage))
    service = checked_token(inf, "service name", storage.service_name)
    entries = [SifEntry(f"SourceDisksFiles.{arch}", sys_name, SOURCE_DISKS_FILES_VALUE)]
    entries += [
        SifEntry("HardwareIdsDatabase", checked_token(inf, "hardware ID", hwid), quoted(service))
        for hwid in storage.hardware_ids
    ]
    entries.append(SifEntry("SCSI.Load", service, f"{sys_name},4"))
    entries.append(
        SifEntry("SCSI", service, checked_quoted(inf, "description", storage_description(storage)))
    )
    return tuple(entries)


# -- TXTSETUP.SIF text --------------------------------------------------------------------


@dataclass(frozen=True)
class SifText:
    """A TXTSETUP.SIF decoded in its own encoding, to be written back in it.

    ANSI files (no byte-order mark) are held as latin-1, which maps every byte to one
    character and back, so every original byte survives whatever code page it is in;
    new lines are Windows-1252 (the ANSI code page of the CDs pvinstall targets). Files
    with a byte-order mark are UTF-16 (LE or BE) or UTF-8 and keep it.
    """

    text: str
    bom: bytes
    codec: str  # the text <-> the file's bytes
    new_lines: str  # what new lines are encoded in
    label: str  # the encoding, for messages

    def encode(self) -> bytes:
        return self.bom + self.text.encode(self.codec)

    def line(self, line: str) -> str:
        """A new line as text of this file; InputError naming what it cannot hold."""
        try:
            data = line.encode(self.new_lines)
        except UnicodeEncodeError:
            bad = []
            for char in line:
                try:
                    char.encode(self.new_lines)
                except UnicodeEncodeError:
                    bad.append(char)
            raise InputError(
                f"TXTSETUP.SIF is {self.label} text, which cannot hold "
                + ", ".join(shown(c) for c in dict.fromkeys(bad))
                + f" of the line {shown(line)} (written from the storage driver's INF).",
                "Use the storage driver of a virtio-win release, or a CD whose TXTSETUP.SIF "
                "can hold its description.",
                key="--drivers",
            ) from None
        return data.decode(self.codec)


_BOMS = (
    (codecs.BOM_UTF8, "utf-8", "UTF-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le", "UTF-16LE"),
    (codecs.BOM_UTF16_BE, "utf-16-be", "UTF-16BE"),
)


def decode_sif(data: bytes) -> SifText:
    """TXTSETUP.SIF as text in its own encoding; InputError when it is not text."""
    for bom, codec, label in _BOMS:
        if data.startswith(bom):
            try:
                text = data[len(bom) :].decode(codec)
            except UnicodeDecodeError as exc:
                raise InputError(
                    f"TXTSETUP.SIF starts with a {label} byte-order mark but is not {label} "
                    f"text (at byte {len(bom) + exc.start}).",
                    "Give an image of the original Windows CD.",
                    key="--windows-iso",
                ) from None
            return SifText(text, bom, codec, codec, label)
    if b"\x00" in data:
        raise InputError(
            "TXTSETUP.SIF holds NUL bytes but no byte-order mark: it is neither ANSI text "
            "nor UTF-16 text that setup can read.",
            "Give an image of the original Windows CD.",
            key="--windows-iso",
        )
    return SifText(data.decode("latin-1"), b"", "latin-1", "cp1252", "Windows-1252")


# ASCII blanks only: held as latin-1, the cp1252 bytes A0 and 85 are not blanks.
_HEADER = re.compile(r"^\s*\[\s*([^\]]*?)\s*\]", re.ASCII)
# Only CR and LF end a line (str.splitlines would also split at \x85, which is a cp1252
# character held as latin-1).
_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+\Z")


def _lines(text: str) -> list[str]:
    return _LINE.findall(text)


def _section_of(line: str) -> str | None:
    match = _HEADER.match(line)
    return match.group(1).lower() if match else None


def _key_value(line: str) -> tuple[str, str] | None:
    """The normalised key and value of a `key = value` line (quotes respected: a `;` or
    `=` inside quotes is text), or None for a comment, a blank or a value-only line."""
    text = strip_comment(line).strip()
    in_quote = False
    for index, char in enumerate(text):
        if char == '"':
            in_quote = not in_quote
        elif char == "=" and not in_quote:
            return _normal(text[:index]), _normal(text[index + 1 :])
    return None


def _normal(text: str) -> str:
    """Compare keys and values as setup does: case-blind, quotes and blanks ignored."""
    return re.sub(r"\s+", "", text.replace('"', ""), flags=re.ASCII).lower()


def patch_txtsetup_sif(text: bytes, storage: SelectedDriver, arch: Arch) -> bytes:
    """TXTSETUP.SIF with the slipstream edits for `storage` (pure, idempotent).

    Each line goes right after the *first* header of its section (retail files repeat
    headers such as `[SourceDisksFiles]`); a section that does not exist is appended.
    Every original byte is kept, the file stays in its encoding (ANSI, or UTF-16/UTF-8
    with its byte-order mark), and new lines use the file's line ending (CRLF on a
    Windows CD: a stray LF makes setup report "txtsetup.sif is corrupt or missing").
    A line whose key is already present with the same value is not added again, so
    patching a patched file returns it unchanged.

    Raises:
        InputError: a key is already present with another value (the CD was slipstreamed
            with a different driver), the file is not text, or a new line has
            characters the file's encoding cannot hold.
    """
    return apply_sif_entries(text, sif_entries(storage, arch))


def apply_sif_entries(data: bytes, entries: Sequence[SifEntry]) -> bytes:
    """`data` with `entries` added as `patch_txtsetup_sif` describes (pure, idempotent)."""
    if not entries:
        return data
    sif = decode_sif(data)
    text = sif.text
    newline = "\n" if "\n" in text and "\r\n" not in text else "\r\n"
    lines = _lines(text)
    first_header: dict[str, int] = {}
    present: dict[tuple[str, str], tuple[str, str]] = {}
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
            present.setdefault((section, pair[0]), (pair[1], line.rstrip("\r\n")))

    inserts: dict[int, list[str]] = {}
    appended: dict[str, list[str]] = {}
    for entry in entries:
        wanted = entry.section.lower()
        line = sif.line(entry.line)
        pair = _key_value(line)
        if pair is None:
            raise BuildError(f"the TXTSETUP.SIF line {entry.line!r} has no key.")
        found = present.get((wanted, pair[0]))
        if found is not None:
            if found[0] == pair[1]:
                continue
            raise InputError(
                f"TXTSETUP.SIF already has [{entry.section}] {shown(found[1].strip())}, "
                f"not {shown(entry.line)}.",
                "Give the original Windows CD, not one slipstreamed with another driver.",
                key="--windows-iso",
            )
        present[wanted, pair[0]] = (pair[1], line)
        if wanted in first_header:
            inserts.setdefault(first_header[wanted], []).append(line + newline)
        else:
            appended.setdefault(entry.section, []).append(line + newline)

    out: list[str] = []
    for index, line in enumerate(lines):
        out.append(line)
        if index in inserts:
            if not line.endswith(("\n", "\r")):
                out.append(newline)
            out.extend(inserts[index])
    if appended:
        if lines and not lines[-1].endswith(("\n", "\r")):
            out.append(newline)
        for name, new_lines in appended.items():
            out.append(newline)
            out.append(sif.line(f"[{name}]") + newline)
            out.extend(new_lines)
    return replace(sif, text="".join(out)).encode()


# -- the plan -------------------------------------------------------------------------------


def plan_install_cd(
    drivers: DriverSet, answers: Mapping[str, bytes], extra: Sequence[PlannedFile] = ()
) -> InstallCdPlan:
    """The edits that turn the user's 2003 CD into an F6-free unattended one (pure).

    Adds the storage driver's `.sys` (the build for the CD's architecture) and
    `WINNT.SIF` to the setup folder, every selected package under
    `$OEM$/$1/Drivers/<driver>/`, the folders `OemPnPDriversPath` names, and the
    `extra` files (a generalized build's `$OEM$/$1/sysprep/`: sysprep.inf and Sysprep).
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
    files += extra
    return InstallCdPlan(
        profile=profile,
        arch=profile.arch,
        setup_dir=setup_dir,
        storage=storage,
        sys_name=sys_name,
        entries=sif_entries(storage, profile.arch),
        files=tuple(sorted(files, key=lambda f: f.path)),
    )
