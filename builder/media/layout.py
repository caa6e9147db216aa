"""Where each file goes on the floppy, the answer ISO, the drivers ISO and the 2003
install CD.

The answer files name these paths (what Windows reads) and the media writers
create them (what is written); both ask here, so the two cannot disagree.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from builder.virtio.packages import PackageFile
from builder.virtio.selection import DriverSet, SelectedDriver
from builder.windows.profiles import Profile, StorageRoute

FLOPPY_DRIVE = "A:"
# The post-install script finds the drivers ISO by this file, on whatever letter
# Windows gave the CD-ROM.
MARKER_FILE = "PVDRIVERS.TAG"
POSTINSTALL_SCRIPT = "POSTINST.CMD"
# The signer certificates the post-install script trusts, on drivers.iso.
CERTIFICATE_DIR = "certs"
# 2003: the F6 disk's tag file that txtsetup.oem's [Disks] names.
F6_TAG_FILE = "DISK1"
OEM_DRIVERS_DIR = "$OEM$/$1/Drivers"
FLOPPY_LABEL = "PVINSTALL"
ANSWER_ISO_LABEL = "PVANSWER"
# Windows Setup (7 / 2008 R2 and later) loads, during windowsPE, the drivers below this
# folder at the root of every drive it finds (docs/windows-modern.md §5): the answer
# ISO's drivers reach setup without a path or a drive letter in the answer file.
WINPE_DRIVERS_DIR = "$WinPEDriver$"
# The drive letters the first-logon command looks for MARKER_FILE on. Windows assigns
# CD-ROM letters at boot, in an order that depends on the hardware it found (MS "WinPE:
# Identify drive letters with a script"), so every letter after the system disk is
# tried; A: and B: are floppies and never hold the drivers ISO.
SEARCH_DRIVE_LETTERS = tuple("CDEFGHIJKLMNOPQRSTUVWXYZ")
# The post-install step logs here, on the installed system disk, so a failed install
# can be diagnosed from the disk image.
POSTINSTALL_LOG = "%SystemDrive%\\pvinstall-postinst.log"

# How the rendered answer files are spelled on the media: `Autounattend.xml` as Microsoft
# documents it (Windows searches case-blind, the long name needs VFAT/Joliet anyway),
# the 2003 files as 8.3 upper-case names that text-mode setup reads without long names.
_MEDIA_NAMES = {
    "autounattend.xml": "Autounattend.xml",
    "winnt.sif": "WINNT.SIF",
    "txtsetup.oem": "TXTSETUP.OEM",
}


def certificate_path(thumbprint: str) -> str:
    """Where a signer certificate (DER) goes on drivers.iso, named by its SHA-1 thumbprint."""
    return f"{CERTIFICATE_DIR}/{thumbprint.upper()}.cer"


def media_name(name: str) -> str:
    """The name a rendered file (`winnt.sif`) has on the floppy and the drivers ISO."""
    return _MEDIA_NAMES.get(name.lower(), name)


def short_name(name: str) -> str:
    """An 8.3-safe upper-case folder name (text-mode setup and FAT12 read 8.3 names)."""
    cleaned = re.sub(r"[^A-Z0-9_-]", "", name.upper())
    return (cleaned or "DRIVER")[:8]


def floppy_folder(driver: SelectedDriver) -> str:
    """The driver's folder on the answer floppy, e.g. `VIOSTOR`."""
    return short_name(driver.name)


def floppy_path_windows(driver: SelectedDriver) -> str:
    """The same folder as Windows setup sees it, e.g. `A:\\VIOSTOR` (for DriverPaths)."""
    return f"{FLOPPY_DRIVE}\\{floppy_folder(driver)}"


def _f6_disk_drivers(drivers: DriverSet) -> tuple[SelectedDriver, ...]:
    return (drivers.storage,)


def _driver_paths_drivers(drivers: DriverSet) -> tuple[SelectedDriver, ...]:
    return tuple(
        d
        for d in drivers.selected
        if (d.role == "storage" and d.boot_critical) or d.role == "network"
    )


def _winpe_drivers(drivers: DriverSet) -> tuple[SelectedDriver, ...]:
    # The system disk's storage driver only: Server 2025 setup is reported to fail with
    # vioscsi loaded unattended, so the driver of the other bus stays out of windowsPE.
    return (drivers.storage, *drivers.by_role("network"))


@dataclass(frozen=True)
class AnswerMedium:
    """What the answer medium carries besides the answer files, by storage route."""

    drivers: Callable[[DriverSet], tuple[SelectedDriver, ...]]
    tag_files: tuple[str, ...]


# Slipstream: the answer floppy is also the F6 disk, with the one storage driver
# text-mode setup loads and the tag file it checks for to accept the disk. The answer
# floppy of Windows Setup carries what windowsPE `DriverPaths` loads: the boot-critical
# storage drivers and the network driver; the answer ISO what `$WinPEDriver$` loads: the
# storage driver of the system disk's bus and the network driver.
ANSWER_MEDIA: Mapping[StorageRoute, AnswerMedium] = MappingProxyType(
    {
        StorageRoute.SLIPSTREAM: AnswerMedium(_f6_disk_drivers, (F6_TAG_FILE,)),
        StorageRoute.ANSWER_FLOPPY: AnswerMedium(_driver_paths_drivers, ()),
        StorageRoute.ANSWER_ISO: AnswerMedium(_winpe_drivers, ()),
    }
)


def answer_drivers(drivers: DriverSet) -> tuple[SelectedDriver, ...]:
    """The packages that go on the answer medium (see `ANSWER_MEDIA`)."""
    return ANSWER_MEDIA[drivers.profile.storage_route].drivers(drivers)


def winpe_driver_folder(driver: SelectedDriver) -> str:
    """The driver's folder on the answer ISO: `$WinPEDriver$/viostor`."""
    return f"{WINPE_DRIVERS_DIR}/{driver.name}"


def iso_folder(driver: SelectedDriver, profile: Profile) -> str:
    """The driver's folder on drivers.iso, in the virtio-win layout `<Driver>/<os>/<arch>`."""
    return f"{driver.name}/{profile.os_folder}/{profile.arch}"


def iso_path_windows(driver: SelectedDriver, profile: Profile, drive: str) -> str:
    """The same folder as Windows sees it on `drive` (`E:` or a cmd variable such as
    `%PV_DRIVE%`), e.g. `E:\\viostor\\2k8\\amd64`."""
    return f"{drive}\\" + iso_folder(driver, profile).replace("/", "\\")


def oem_folder(driver: SelectedDriver) -> str:
    """2003 CD: `$OEM$/$1/Drivers/<driver>`, copied to C:\\Drivers\\<driver> by setup."""
    return f"{OEM_DRIVERS_DIR}/{driver.name}"


def oem_pnp_path(driver: SelectedDriver) -> str:
    """The same folder as `OemPnPDriversPath` names it, relative to %SystemDrive%."""
    return f"Drivers\\{driver.name}"


def package_relative(driver: SelectedDriver, file: PackageFile) -> str:
    """A package file's path relative to its INF's folder (kept when copied elsewhere)."""
    folder = driver.folder
    if folder and file.path.lower().startswith(folder.lower() + "/"):
        return file.path[len(folder) + 1 :]
    return file.path.rpartition("/")[2]
