"""What goes on the answer floppy and the drivers ISO (pure).

`plan_media` turns the settings, the selected drivers and the rendered files into a
`MediaPlan`: every file of every medium, as its destination path and either its bytes
or the path of the source file to stream them from. The floppy's capacity is checked
here, before anything is written; the writers (`fat.write_floppy`,
`iso9660.write_drivers_iso`, `iso9660.remaster_install_cd`) only carry the plan out, and
this module imports none of them: each writer's input type lives below it
(`files.PlannedFile`, `files.IsoPlan`, `floppy.FloppyPlan`, `slipstream.InstallCdPlan`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from builder.config import BuildConfig
from builder.errors import BuildError, InputError
from builder.media import floppy, layout
from builder.media.files import IsoPlan, PlannedFile
from builder.media.floppy import FloppyPlan
from builder.media.slipstream import InstallCdPlan, plan_install_cd
from builder.virtio.selection import DriverSet


@dataclass(frozen=True)
class MediaPlan:
    """Every medium of a build; `install_cd` only for 2003 profiles."""

    floppy: FloppyPlan
    drivers_iso: IsoPlan
    install_cd: InstallCdPlan | None = None


def plan_media(
    config: BuildConfig,
    drivers: DriverSet,
    answers: Mapping[str, bytes],
    postinstall: Mapping[str, bytes],
) -> MediaPlan:
    """Plan the floppy, the drivers ISO and (2003) the install CD edits (pure).

    Args:
        config: the build settings (`floppy_kib`, `drivers_iso_label`).
        drivers: the selected drivers.
        answers: the rendered answer files by name (`autounattend.xml`, or `winnt.sif`
            and `txtsetup.oem`).
        postinstall: the post-install script and its marker file by name.

    Raises:
        InputError: the floppy files do not fit (key `floppy_size`), listing the
            largest files and what to do.
    """
    profile = drivers.profile
    if config.profile.name != profile.name:
        raise BuildError(f"settings for {config.profile.name} but drivers for {profile.name}.")
    floppy_files = [
        PlannedFile.inline(layout.media_name(name), data) for name, data in answers.items()
    ]
    floppy_files += [
        PlannedFile.inline(tag, b"") for tag in layout.ANSWER_MEDIA[profile.storage_route].tag_files
    ]
    for driver in layout.floppy_drivers(drivers):
        folder = layout.floppy_folder(driver)
        floppy_files += [
            PlannedFile.from_source(
                f"{folder}/{layout.package_relative(driver, f)}", f.path, f.size
            )
            for f in driver.files
        ]
    geometry = floppy.geometry(config.floppy_kib)
    usage = floppy.floppy_usage(((f.path, f.size) for f in floppy_files), geometry)
    if not usage.fits:
        raise _floppy_overflow(usage, floppy_files, drivers)

    iso_files = [
        PlannedFile.inline(layout.media_name(name), data)
        for name, data in [*answers.items(), *postinstall.items()]
    ]
    for driver in drivers.selected:
        folder = layout.iso_folder(driver, profile)
        iso_files += [
            PlannedFile.from_source(
                f"{folder}/{layout.package_relative(driver, f)}", f.path, f.size
            )
            for f in driver.files
        ]
    return MediaPlan(
        floppy=FloppyPlan(
            size_kib=config.floppy_kib,
            label=layout.FLOPPY_LABEL,
            files=_unique_sorted(floppy_files, "floppy.img"),
            usage=usage,
        ),
        drivers_iso=IsoPlan(
            label=config.drivers_iso_label,
            files=_unique_sorted(iso_files, "drivers.iso"),
        ),
        install_cd=plan_install_cd(drivers, answers) if profile.remasters_install_cd else None,
    )


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
    optional = [d.name for d in layout.floppy_drivers(drivers) if not d.boot_critical]
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
    files = [
        PlannedFile.from_source(
            f"{layout.iso_folder(driver, drivers.profile)}/{layout.package_relative(driver, f)}",
            f.path,
            f.size,
        )
        for driver in drivers.selected
        for f in driver.files
    ]
    return IsoPlan(label=label, files=_unique_sorted(files, "drivers ISO"))
