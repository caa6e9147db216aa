"""What goes on the answer floppy, the answer ISO and the drivers ISO (pure).

Each planner turns the `MediaInputs` (settings, selected drivers, rendered files) into
its medium's plan: every file as its destination path and either its bytes or the path
of the source file to stream them from. The floppy's capacity is checked here, before
anything is written; the writers (`fat.write_floppy`, `iso9660.write_drivers_iso`,
`iso9660.remaster_install_cd`) only carry the plans out, and this module imports none
of them: each writer's input type lives below it (`files.PlannedFile`, `files.IsoPlan`,
`floppy.FloppyPlan`, `slipstream.InstallCdPlan`). The media table (`media/table.py`)
says which media a build has and which planner and writer each one uses.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from builder.config import BuildConfig
from builder.errors import BuildError, InputError
from builder.media import eltorito, floppy, layout
from builder.media.files import IsoPlan, OverlayPlan, PlannedFile
from builder.media.floppy import FloppyPlan
from builder.virtio.selection import DriverSet
from builder.vm.devices import Firmware
from builder.windows.install_media import WINDOWS_ISO_KEY, InstallMedia


@dataclass(frozen=True)
class MediaInputs:
    """What a build's media are planned from, all of it data: the settings, the selected
    drivers, and the rendered answer files and post-install step (by name); for a
    generalized build the clones' answer file (`sysprep`, by its name in OUT) and, for
    2003, the Sysprep programs out of the CD's cabinet (`sysprep_tools`, by name)."""

    config: BuildConfig
    drivers: DriverSet
    answers: Mapping[str, bytes]
    postinstall: Mapping[str, bytes]
    install_media: InstallMedia | None = None  # the user's DVD as read in place
    sysprep: Mapping[str, bytes] = field(default_factory=lambda: MappingProxyType({}))
    sysprep_tools: Mapping[str, bytes] = field(default_factory=lambda: MappingProxyType({}))

    def sysprep_files(self, medium: str) -> tuple[PlannedFile, ...]:
        """What of Sysprep goes on `medium` (the profile's `sysprep.medium`): the
        clones' answer file at its media path, and the Sysprep programs beside it."""
        sysprep = self.config.profile.sysprep
        if sysprep.medium != medium:
            return ()
        files = [PlannedFile.inline(sysprep.media_path, data) for data in self.sysprep.values()]
        files += [
            PlannedFile.inline(f"{sysprep.tools_dir}/{name.upper()}", data)
            for name, data in sorted(self.sysprep_tools.items())
        ]
        return tuple(files)

    def __post_init__(self) -> None:
        if self.config.profile.name != self.drivers.profile.name:
            raise BuildError(
                f"settings for {self.config.profile.name} but drivers for "
                f"{self.drivers.profile.name}."
            )


def plan_answer_floppy(inputs: MediaInputs) -> FloppyPlan:
    """The answer floppy: the answer files, the tag files and drivers of the profile's
    answer medium (`layout.ANSWER_MEDIA`), checked to fit before anything is written.

    Raises:
        InputError: the files do not fit (key `floppy_size`), listing the largest files
            and what to do.
    """
    config, drivers = inputs.config, inputs.drivers
    profile = drivers.profile
    answer_medium = layout.ANSWER_MEDIA[profile.storage_route]
    files = [PlannedFile.inline(layout.media_name(n), d) for n, d in inputs.answers.items()]
    files += [PlannedFile.inline(tag, b"") for tag in answer_medium.tag_files]
    for driver in answer_medium.drivers(drivers):
        folder = layout.floppy_folder(driver)
        files += [
            PlannedFile.from_source(
                f"{folder}/{layout.package_relative(driver, f)}", f.path, f.size
            )
            for f in driver.files
        ]
    geometry = floppy.geometry(config.floppy_kib)
    usage = floppy.floppy_usage(((f.path, f.size) for f in files), geometry)
    if not usage.fits:
        raise _floppy_overflow(usage, files, drivers)
    return FloppyPlan(
        size_kib=config.floppy_kib,
        label=layout.FLOPPY_LABEL,
        files=_unique_sorted(files, "floppy.img"),
        usage=usage,
    )


def plan_answer_disc(inputs: MediaInputs) -> IsoPlan:
    """answer.iso of a build: `Autounattend.xml` at its root, where Setup's implicit
    search finds it on a CD, and the drivers windowsPE needs in `$WinPEDriver$/<driver>/`
    (`layout.ANSWER_MEDIA`), each package with its files at their paths relative to the
    INF. Nothing on it names a drive letter."""
    files = [PlannedFile.inline(layout.media_name(n), d) for n, d in inputs.answers.items()]
    for driver in layout.answer_drivers(inputs.drivers):
        folder = layout.winpe_driver_folder(driver)
        files += [
            PlannedFile.from_source(
                f"{folder}/{layout.package_relative(driver, f)}", f.path, f.size
            )
            for f in driver.files
        ]
    return IsoPlan(label=layout.ANSWER_ISO_LABEL, files=_unique_sorted(files, "answer.iso"))


def plan_drivers_disc(inputs: MediaInputs) -> IsoPlan:
    """drivers.iso of a build: the answer files and the post-install step at its root,
    every selected package in the virtio-win layout (`<driver>/<os>/<arch>`), and the
    installers the post-install step runs, at their paths in the source."""
    files = [
        PlannedFile.inline(layout.media_name(name), data)
        for name, data in [*inputs.answers.items(), *inputs.postinstall.items()]
    ]
    files += [PlannedFile.from_source(i.path, i.path, i.size) for i in inputs.drivers.installers]
    files += inputs.sysprep_files("drivers.iso")
    return IsoPlan(
        label=inputs.config.drivers_iso_label,
        files=_unique_sorted([*files, *_packages(inputs.drivers)], "drivers.iso"),
    )


def _packages(drivers: DriverSet) -> list[PlannedFile]:
    return [
        PlannedFile.from_source(
            f"{layout.iso_folder(driver, drivers.profile)}/{layout.package_relative(driver, f)}",
            f.path,
            f.size,
        )
        for driver in drivers.selected
        for f in driver.files
    ]


def _unique_sorted(files: Iterable[PlannedFile], medium: str) -> tuple[PlannedFile, ...]:
    """The files sorted by path; two files at one path (FAT and Joliet are case-blind)
    would be a bug in the layout, never the user's doing."""
    ordered = sorted(files, key=lambda f: f.path)
    seen: dict[str, str] = {}
    for planned in ordered:
        folded = planned.path.lower()
        if folded in seen:
            raise BuildError(f"{medium}: {seen[folded]} and {planned.path} are the same path.")
        seen[folded] = planned.path
    return tuple(ordered)


def _kib(size: int) -> str:
    return f"{size / 1024:.0f} KiB" if size >= 1024 else f"{size} bytes"


def _floppy_overflow(
    usage: floppy.FloppyUsage, files: list[PlannedFile], drivers: DriverSet
) -> InputError:
    geometry = usage.geometry
    largest = sorted(files, key=lambda f: (-f.size, f.path))[:5]
    listing = ", ".join(f"{f.path} ({_kib(f.size)})" for f in largest)
    needs = []
    if usage.clusters > geometry.data_clusters:
        needs.append(
            f"{usage.clusters} clusters of {geometry.cluster_bytes} bytes "
            f"({_kib(usage.clusters * geometry.cluster_bytes)}) where it has "
            f"{geometry.data_clusters} ({_kib(geometry.data_clusters * geometry.cluster_bytes)})"
        )
    if usage.root_entries > geometry.root_entries:
        needs.append(
            f"{usage.root_entries} root directory entries where FAT12 allows "
            f"{geometry.root_entries}"
        )
    optional = [d.name for d in layout.answer_drivers(drivers) if not d.boot_critical]
    leave = (
        f"leave {' or '.join(optional)} to drivers.iso (it is there too)"
        if optional
        else "use a driver source with smaller packages"
    )
    if geometry.kib < floppy.LARGEST_FLOPPY_KIB:
        hint = f"Set floppy_size = 2.88 (--set floppy_size=2.88), or {leave}."
    else:
        hint = f"2.88 MB is the largest floppy; {leave}."
    return InputError(
        f"the answer floppy does not fit on a {geometry.title} floppy: its files need "
        f"{' and '.join(needs)}. Largest files: {listing}.",
        hint,
        key="floppy_size",
    )


def plan_drivers_iso(drivers: DriverSet, label: str) -> IsoPlan:
    """A drivers-only ISO: every selected driver package in the virtio-win layout
    (`<driver>/<os>/<arch>`), no answer files. For guests installed without virtio
    that need the drivers afterwards (`pvinstall convert`)."""
    return IsoPlan(label=label, files=_unique_sorted(_packages(drivers), "drivers ISO"))


_NOPROMPT_HINT = (
    "Give the DVD as Microsoft ships it (every Windows Server DVD since 2012 R2 has "
    'efi/microsoft/boot/efisys_noprompt.bin), or install with firmware = "bios".'
)


def plan_install_dvd_overlay(inputs: MediaInputs) -> OverlayPlan:
    """The overlay through which the domain reads the user's DVD: its boot catalog with
    the UEFI entry on efisys_noprompt.bin, so that UEFI boots Setup without "Press any
    key to boot from CD or DVD" (media/eltorito.py). Nothing else differs.

    Raises:
        InputError (key `--windows-iso`), for a UEFI build: the DVD has no El Torito
            catalog, one that does not parse, no UEFI entry, no efisys_noprompt.bin, or
            one stored in pieces. A BIOS build boots the BIOS entry and gets an overlay
            that changes nothing when the DVD cannot have the change.
    """
    media = inputs.install_media
    if media is None:
        raise BuildError("the DVD's overlay was planned without the DVD read in place.")
    uefi = inputs.config.firmware is Firmware.EFI
    try:
        offset, sector, note = _point_at_noprompt(media)
    except InputError:
        if uefi:
            raise
        return OverlayPlan(0, None, "the DVD's boot catalog as it is (BIOS boots its BIOS entry)")
    return OverlayPlan(offset, sector, note)


def _point_at_noprompt(media: InstallMedia) -> tuple[int, bytes, str]:
    where = f"{media.path}"
    try:
        if media.boot_catalog is None:
            eltorito.catalog_lba(media.boot_record)  # raises, saying why
            raise eltorito.CatalogError("the DVD has no El Torito boot catalog")
        lba, sector = media.boot_catalog
        entry = eltorito.uefi_entry(eltorito.parse_catalog(sector))
    except eltorito.CatalogError as exc:
        raise InputError(
            f"{where}: {exc}, so UEFI cannot boot it.", _NOPROMPT_HINT, key=WINDOWS_ISO_KEY
        ) from None
    if entry is None:
        raise InputError(
            f"{where} has no UEFI boot entry (El Torito platform 0xEF): UEFI cannot boot it.",
            _NOPROMPT_HINT,
            key=WINDOWS_ISO_KEY,
        )
    noprompt = media.noprompt
    if noprompt is None:
        raise InputError(
            f"{where} has no efi/microsoft/boot/efisys_noprompt.bin, the UEFI boot image "
            'without "Press any key to boot from CD or DVD"; with efisys.bin Setup would '
            "wait for a key nobody presses.",
            _NOPROMPT_HINT,
            key=WINDOWS_ISO_KEY,
        )
    if not noprompt.contiguous or noprompt.size == 0:
        raise InputError(
            f"{where}:{noprompt.path} is "
            + ("empty" if noprompt.size == 0 else "stored in pieces")
            + ", so a boot entry cannot point at it.",
            _NOPROMPT_HINT,
            key=WINDOWS_ISO_KEY,
        )
    patched = eltorito.point_uefi_entry(sector, entry, lba=noprompt.lba, size=noprompt.size)
    note = (
        f"boot catalog (sector {lba}): the UEFI entry boots {noprompt.path} "
        f"(sector {noprompt.lba}) instead of sector {entry.load_rba}"
    )
    return lba * eltorito.SECTOR, patched, note
