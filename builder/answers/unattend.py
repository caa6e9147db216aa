"""autounattend.xml, for the Windows releases that install from install.wim (pure).

Which unattend settings a Windows version knows is the table `GATED_SETTINGS`: a
setting an older Setup does not know makes it refuse the whole pass. User values reach
the XML through Jinja2 autoescaping. Every path on the media comes from
`builder.media.layout`, which the media writers use too.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from builder.answers.environment import encode, render
from builder.answers.postinstall import drive_search
from builder.config import BuildConfig
from builder.errors import BuildError
from builder.media import layout
from builder.virtio.selection import DriverSet
from builder.vm.devices import disk_targets, system_disk_number
from builder.windows.profiles import DiskLayout, Profile, StorageRoute

# The suffix Windows appends before encoding a password with PlainText=false
# (docs/windows-2008.md §3): AdministratorPassword for UserAccounts, Password
# for AutoLogon and LocalAccount passwords.
ADMIN_PASSWORD_SUFFIX = "AdministratorPassword"  # noqa: S105 - an element name
ACCOUNT_PASSWORD_SUFFIX = "Password"  # noqa: S105 - an element name

NtVersion = tuple[int, int]

SHELL_SETUP = "Microsoft-Windows-Shell-Setup"


@dataclass(frozen=True)
class GatedSetting:
    """An unattend setting that only some Windows versions know, and its value.

    `parent` is the element path inside the component ("" for a direct child of the
    component). The setting is emitted for NT versions `since` to `until` (inclusive;
    None: no end). `source` says where the version range comes from.
    """

    config_pass: str
    component: str
    parent: str
    name: str
    value: str
    since: NtVersion
    until: NtVersion | None
    source: str
    # A boolean BuildConfig setting that, when true, leaves the setting out.
    unless: str | None = None

    def known_by(self, version: NtVersion) -> bool:
        return self.since <= version and (self.until is None or version <= self.until)


# Settings whose existence depends on the Windows version. Unknown settings are not
# ignored: Setup stops with "could not parse or process unattend answer file for pass
# [oobeSystem]" (cloudbase/windows-imaging-tools#1: a 2012 R2 file on 2008 R2). The
# templates emit these only through `gated()`/`gated_components()`, so this table
# decides; the 6.2 rows exist for the 2012-and-later profiles and are never emitted
# for 2008 or 2008 R2 (a unit test checks that).
GATED_SETTINGS: tuple[GatedSetting, ...] = (
    GatedSetting(
        "specialize",
        "Microsoft-Windows-Security-Licensing-SLC-UX",
        "",
        "SkipAutoActivation",
        "true",
        (6, 0),
        (6, 0),
        "MS cc749137/cc749043 (Vista, Server 2008); deprecated in Windows 7, removed in "
        "Windows 8 (MS ff715721)",
    ),
    GatedSetting(
        "specialize",
        "Microsoft-Windows-Security-SPP-UX",
        "",
        "SkipAutoActivation",
        "true",
        (6, 1),
        None,
        "MS ff715518: Windows Server 2008 R2 and later",
    ),
    # Server Manager and Initial Configuration Tasks open at every logon of a 2008 /
    # 2008 R2 server, a template's clones included, unless these say not to
    # (server_manager_at_logon = true keeps them).
    GatedSetting(
        "specialize",
        "Microsoft-Windows-ServerManager-SvrMgrNc",
        "",
        "DoNotOpenServerManagerAtLogon",
        "true",
        (6, 0),
        None,
        "MS unattend reference, Microsoft-Windows-ServerManager-SvrMgrNc: Windows Server "
        "2008 and later, generalize and specialize passes",
        unless="server_manager_at_logon",
    ),
    GatedSetting(
        "specialize",
        "Microsoft-Windows-OutOfBoxExperience",
        "",
        "DoNotOpenInitialConfigurationTasksAtLogon",
        "true",
        (6, 0),
        (6, 1),
        "MS unattend reference, Microsoft-Windows-OutOfBoxExperience: Windows Server 2008 "
        "and 2008 R2 (Initial Configuration Tasks is gone from 2012 on)",
        unless="server_manager_at_logon",
    ),
    GatedSetting(
        "oobeSystem",
        SHELL_SETUP,
        "OOBE",
        "HideEULAPage",
        "true",
        (6, 0),
        None,
        "MS cc721948 (Vista/Server 2008 OOBE settings)",
    ),
    GatedSetting(
        "oobeSystem",
        SHELL_SETUP,
        "OOBE",
        "HideLocalAccountScreen",
        "true",
        (6, 2),
        None,
        "Windows 8 / Server 2012 OOBE; 2008 R2 Setup rejects it "
        "(cloudbase/windows-imaging-tools#1)",
    ),
    GatedSetting(
        "oobeSystem",
        SHELL_SETUP,
        "OOBE",
        "HideOnlineAccountScreens",
        "true",
        (6, 2),
        None,
        "Windows 8 / Server 2012 OOBE; 2008 R2 Setup rejects it "
        "(cloudbase/windows-imaging-tools#1)",
    ),
    GatedSetting(
        "oobeSystem",
        SHELL_SETUP,
        "OOBE",
        "HideOEMRegistrationScreen",
        "true",
        (6, 2),
        None,
        "Windows 8 / Server 2012 OOBE (inferred: introduced with the account screens)",
    ),
)


def _applies(setting: GatedSetting, profile: Profile, config: BuildConfig | None) -> bool:
    if not setting.known_by(profile.nt_version):
        return False
    return config is None or setting.unless is None or not getattr(config, setting.unless)


def gated_settings(
    profile: Profile,
    config_pass: str,
    component: str,
    parent: str = "",
    config: BuildConfig | None = None,
) -> tuple[GatedSetting, ...]:
    """The rows of `GATED_SETTINGS` at one place of the answer file that `profile` knows
    (and that `config`'s settings do not leave out)."""
    return tuple(
        s
        for s in GATED_SETTINGS
        if s.config_pass == config_pass
        and s.component == component
        and s.parent == parent
        and _applies(s, profile, config)
    )


def gated_components(
    profile: Profile, config_pass: str, config: BuildConfig | None = None
) -> tuple[str, ...]:
    """Components of `config_pass` made only of gated settings that `profile` knows
    (the auto-activation switch: SLC-UX on 2008, SPP-UX from 2008 R2 on; Server
    Manager and Initial Configuration Tasks)."""
    found: dict[str, None] = {}
    for setting in GATED_SETTINGS:
        if (
            setting.config_pass == config_pass
            and setting.parent == ""
            and _applies(setting, profile, config)
        ):
            found.setdefault(setting.component, None)
    return tuple(found)


def encode_password(password: str, suffix: str) -> str:
    """A password as unattend.xml holds it with PlainText=false.

    Args:
        password: the password in clear.
        suffix: `ADMIN_PASSWORD_SUFFIX` for UserAccounts/AdministratorPassword,
            `ACCOUNT_PASSWORD_SUFFIX` for AutoLogon and LocalAccount passwords.

    Returns:
        base64(UTF-16LE(password + suffix)): obfuscation, not encryption.
    """
    return base64.b64encode((password + suffix).encode("utf-16-le")).decode("ascii")


@dataclass(frozen=True)
class Partition:
    """One partition of `DiskConfiguration`: how it is created and how it is formatted."""

    order: int
    type: str  # CreatePartition/Type: Primary, EFI, MSR
    extend: bool  # takes the rest of the disk (else `size_mib`)
    size_mib: int | None
    format: str | None  # ModifyPartition/Format: NTFS, FAT32; None: left unformatted
    label: str | None
    letter: str | None
    active: bool  # the MBR boot partition


@dataclass(frozen=True)
class PartitionLayout:
    """The system disk as Windows Setup partitions it, and where Windows goes."""

    partitions: tuple[Partition, ...]
    install_to: int  # InstallTo/PartitionID


# The system disk of each disk layout. MBR (docs/windows-2008.md §2): one active primary
# NTFS partition over the whole disk, Windows on it. GPT (docs/windows-modern.md §5,
# Microsoft's "UEFI/GPT-based hard drive partitions"): the EFI system partition, FAT32,
# 260 MB (100 MB is the minimum, 260 MB what 4K-sector disks need); the Microsoft
# reserved partition, 16 MB, unformatted; Windows, NTFS, on the rest.
PARTITION_LAYOUTS: Mapping[DiskLayout, PartitionLayout] = MappingProxyType(
    {
        DiskLayout.MBR: PartitionLayout(
            partitions=(Partition(1, "Primary", True, None, "NTFS", "System", "C", active=True),),
            install_to=1,
        ),
        DiskLayout.GPT: PartitionLayout(
            partitions=(
                Partition(1, "EFI", False, 260, "FAT32", "System", None, active=False),
                Partition(2, "MSR", False, 16, None, None, None, active=False),
                Partition(3, "Primary", True, None, "NTFS", "Windows", "C", active=False),
            ),
            install_to=3,
        ),
    }
)


def partition_layout(config: BuildConfig) -> PartitionLayout:
    """The partitions of the build's disk layout; BuildError for one the table lacks."""
    found = PARTITION_LAYOUTS.get(config.disk_layout)
    if found is None:
        raise BuildError(
            f"autounattend.xml cannot partition a {config.disk_layout} disk for "
            f"{config.profile.name}: builder/answers/unattend.py has no partition layout "
            "for it.",
            "Add the layout to PARTITION_LAYOUTS.",
        )
    return found


# How the answer file names the image to install (InstallFrom/MetaData Key).
IMAGE_BY_INDEX = "/IMAGE/INDEX"
IMAGE_BY_NAME = "/IMAGE/NAME"


def image_key(config: BuildConfig) -> tuple[str, str]:
    """The InstallFrom MetaData (key, value): the index when the user gave one, else the
    (validated) name."""
    if config.image_index is not None:
        return IMAGE_BY_INDEX, str(config.image_index)
    if config.image_name is None:
        raise BuildError(f"no image to install was chosen for {config.profile.name}.")
    return IMAGE_BY_NAME, config.image_name


def disk_id(config: BuildConfig) -> int:
    """The system disk's DiskID: its number among the disks of the domain, derived from
    the disk targets the domain gets (`vm.devices.disk_targets`)."""
    return system_disk_number(disk_targets(config.storage_bus, 1 + len(config.data_disks)))


def driver_paths(drivers: DriverSet) -> tuple[str, ...]:
    """windowsPE DriverPaths: the answer floppy's folders (A: is always the floppy).
    None for an answer ISO, whose letter is not known: Setup finds its $WinPEDriver$ on
    whatever drive it is."""
    if drivers.profile.storage_route is not StorageRoute.ANSWER_FLOPPY:
        return ()
    return tuple(layout.floppy_path_windows(d) for d in layout.answer_drivers(drivers))


def _unattend_context(config: BuildConfig, drivers: DriverSet) -> dict[str, Any]:
    profile = config.profile
    key, value = image_key(config)
    password = config.admin_password.reveal()

    def gated(config_pass: str, component: str, parent: str = "") -> tuple[GatedSetting, ...]:
        return gated_settings(profile, config_pass, component, parent, config)

    def components(config_pass: str) -> tuple[str, ...]:
        return gated_components(profile, config_pass, config)

    return {
        "profile": profile,
        "arch": profile.arch,
        "locale": config.locale,
        "input_locale": config.input_locale,
        "image_key": key,
        "image_value": value,
        "disk_id": disk_id(config),
        "product_key": config.product_key.reveal() if config.product_key else None,
        "full_name": config.full_name,
        "organization": config.organization,
        "driver_paths": driver_paths(drivers),
        "computer_name": config.computer_name,
        "timezone": config.timezone,
        "workgroup": config.workgroup,
        "admin_password": encode_password(password, ADMIN_PASSWORD_SUFFIX),
        "autologon_password": encode_password(password, ACCOUNT_PASSWORD_SUFFIX),
        "autologon_count": config.autologon_count,
        "gated": gated,
        "gated_components": components,
        "disk": partition_layout(config),
        **drive_search(),
    }


def render_autounattend(config: BuildConfig, drivers: DriverSet) -> bytes:
    """`autounattend.xml` for a profile of Windows Setup (2008 and later), UTF-8."""
    text = render("autounattend.xml.j2", _unattend_context(config, drivers))
    return encode("autounattend.xml", text, "utf-8")


def render_unattend_files(config: BuildConfig, drivers: DriverSet) -> dict[str, bytes]:
    """The unattend format's answer files: `{"autounattend.xml": ...}`."""
    return {"autounattend.xml": render_autounattend(config, drivers)}
