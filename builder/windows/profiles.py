"""The targets pvinstall builds for (profiles): static facts about each Windows release.

This is DESIGN.md's profile table as frozen data. Everything that differs between
Windows releases and is not a user setting lives here: the NT version the driver
INFs are matched against, the answer files, the virtio device flavour, the image
names and KMS client keys per edition, and the domain defaults.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Literal

from builder.errors import InputError

Arch = Literal["x86", "amd64"]


class Family(StrEnum):
    WIN2003 = "win2003"
    WIN2008 = "win2008"
    WIN2008R2 = "win2008r2"


@dataclass(frozen=True)
class Edition:
    """One edition of a release: the install.wim image name and the KMS client key (GVLK)."""

    name: str
    image_name: str | None = None
    kms_key: str | None = None


@dataclass(frozen=True)
class Profile:
    """Static facts about one Windows target."""

    name: str
    title: str
    family: Family
    arch: Arch
    nt_version: tuple[int, int]
    answer_files: tuple[str, ...]
    os_folder: str
    storage_path: str
    device_flavour: Literal["transitional", "virtio"]
    osinfo_id: str
    editions: Mapping[str, Edition]
    default_edition: str
    timezone_style: Literal["index", "name"]
    default_timezone: str
    product_key_required: bool
    hyperv: bool
    min_memory_mib: int
    memory_mib: int
    vcpus: int
    disk_size_gib: int
    timeout_minutes: int
    machine: str = "pc"
    osinfo_aliases: tuple[str, ...] = field(default=())

    @property
    def arch_label(self) -> str:
        """The architecture as the profile name spells it (`x86` or `x64`)."""
        return "x64" if self.arch == "amd64" else "x86"

    @property
    def virtio_win_folder(self) -> str:
        """The folder of the modern virtio-win layout, e.g. `2k8/amd64`."""
        return f"{self.os_folder}/{self.arch}"

    @property
    def is_2003(self) -> bool:
        return self.family is Family.WIN2003

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "family": self.family.value,
            "arch": self.arch,
            "nt_version": f"{self.nt_version[0]}.{self.nt_version[1]}",
            "answer_files": list(self.answer_files),
            "virtio_win_folder": self.virtio_win_folder,
            "storage_driver_path": self.storage_path,
            "machine": self.machine,
            "device_flavour": self.device_flavour,
            "osinfo": [self.osinfo_id, *self.osinfo_aliases],
            "editions": sorted(self.editions),
            "default_edition": self.default_edition,
            "product_key_required": self.product_key_required,
            "memory_mib": self.memory_mib,
            "min_memory_mib": self.min_memory_mib,
            "vcpus": self.vcpus,
            "disk_size_gib": self.disk_size_gib,
            "timeout_minutes": self.timeout_minutes,
        }


def _editions(*items: Edition) -> Mapping[str, Edition]:
    return MappingProxyType({e.name: e for e in items})


# Windows Server 2003: no image names (winnt.sif installs the edition of the CD) and
# no KMS; the product key is always required (KB Q250985).
_W2003_X86 = _editions(
    Edition("standard"), Edition("enterprise"), Edition("datacenter"), Edition("web")
)
_W2003_X64 = _editions(Edition("standard"), Edition("enterprise"), Edition("datacenter"))

# Image names as `dism /Get-WimInfo` lists them (reference/windows-2008.md §1.5), KMS
# client keys from Microsoft's kms-client-activation-keys page (§1.6). The 2008 Web
# edition ships on its own media whose image name is not in that listing: the user
# gives `image_name` for it.
_W2008 = _editions(
    Edition("standard", "Windows Longhorn SERVERSTANDARD", "TM24T-X9RMF-VWXK6-X8JC9-BFGM2"),
    Edition("enterprise", "Windows Longhorn SERVERENTERPRISE", "YQGMW-MPWTJ-34KDK-48M3W-X4Q6V"),
    Edition("datacenter", "Windows Longhorn SERVERDATACENTER", "7M67G-PC374-GR742-YH8V4-TCBY3"),
    Edition("web", None, "WYR28-R7TFJ-3X2YQ-YCY4H-M249D"),
)
_W2008R2 = _editions(
    Edition("standard", "Windows Server 2008 R2 SERVERSTANDARD", "YC6KT-GKW9T-YTKYR-T4X34-R7VHC"),
    Edition(
        "enterprise", "Windows Server 2008 R2 SERVERENTERPRISE", "489J6-VHDMP-X63PK-3K798-CPX3Y"
    ),
    Edition(
        "datacenter", "Windows Server 2008 R2 SERVERDATACENTER", "74YFP-3QFB3-KQT8W-PMXWJ-7M648"
    ),
    Edition("web", "Windows Server 2008 R2 SERVERWEB", "6TPJF-RBVHG-WBW2R-86QPH-6RTM4"),
)

_SLIPSTREAM = "slipstreamed into the install CD's TXTSETUP.SIF (F6 floppy also built)"
_FLOPPY = "Autounattend.xml + boot-critical drivers on the floppy (A:), windowsPE DriverPaths"


def _w2003(arch: Arch) -> Profile:
    label = "x64" if arch == "amd64" else "x86"
    return Profile(
        name=f"win2003-{label}",
        title=f"Windows Server 2003 / 2003 R2 ({label})",
        family=Family.WIN2003,
        arch=arch,
        nt_version=(5, 2),
        answer_files=("winnt.sif", "txtsetup.oem"),
        os_folder="2k3",
        storage_path=_SLIPSTREAM,
        device_flavour="transitional",
        osinfo_id="win2k3",
        osinfo_aliases=("win2k3r2",),
        editions=_W2003_X64 if arch == "amd64" else _W2003_X86,
        default_edition="standard",
        timezone_style="index",
        default_timezone="090",
        product_key_required=True,
        hyperv=False,
        min_memory_mib=128,
        memory_mib=512,
        vcpus=1,
        disk_size_gib=16,
        timeout_minutes=120,
    )


def _w2008(arch: Arch) -> Profile:
    label = "x64" if arch == "amd64" else "x86"
    return Profile(
        name=f"win2008-{label}",
        title=f"Windows Server 2008 ({label})",
        family=Family.WIN2008,
        arch=arch,
        nt_version=(6, 0),
        answer_files=("autounattend.xml",),
        os_folder="2k8",
        storage_path=_FLOPPY,
        device_flavour="virtio",
        osinfo_id="win2k8",
        editions=_W2008,
        default_edition="standard",
        timezone_style="name",
        # "UTC" arrived with Windows 7 / 2008 R2; Greenwich has no DST either.
        default_timezone="Greenwich Standard Time",
        product_key_required=False,
        hyperv=True,
        min_memory_mib=512,
        memory_mib=2048,
        vcpus=2,
        disk_size_gib=32,
        timeout_minutes=120,
    )


_W2008R2_X64 = Profile(
    name="win2008r2-x64",
    title="Windows Server 2008 R2 (x64)",
    family=Family.WIN2008R2,
    arch="amd64",
    nt_version=(6, 1),
    answer_files=("autounattend.xml",),
    os_folder="2k8R2",
    storage_path="same as 2008: " + _FLOPPY,
    device_flavour="virtio",
    osinfo_id="win2k8r2",
    editions=_W2008R2,
    default_edition="standard",
    timezone_style="name",
    default_timezone="UTC",
    product_key_required=False,
    hyperv=True,
    min_memory_mib=512,
    memory_mib=2048,
    vcpus=2,
    disk_size_gib=32,
    timeout_minutes=120,
)

PROFILES: Mapping[str, Profile] = MappingProxyType(
    {
        p.name: p
        for p in (
            _w2003("x86"),
            _w2003("amd64"),
            _w2008("x86"),
            _w2008("amd64"),
            _W2008R2_X64,
        )
    }
)

ARCH_NAMES: Mapping[str, Arch] = MappingProxyType(
    {
        "x86": "x86",
        "i386": "x86",
        "i686": "x86",
        "x64": "amd64",
        "amd64": "amd64",
        "x86_64": "amd64",
    }
)


def _alias_targets(alias: str) -> list[Profile]:
    return [p for p in PROFILES.values() if alias in (p.osinfo_id, *p.osinfo_aliases)]


def resolve_profile(name: str, arch: str | None = None) -> Profile:
    """Return the profile named `name`, or the one an osinfo id (`win2k8`) names with `arch`.

    Raises `InputError` naming the known profiles when there is none.
    """
    wanted_arch: Arch | None = None
    if arch is not None:
        if arch.lower() not in ARCH_NAMES:
            raise InputError(
                f"unknown architecture {arch!r}.",
                "Use --arch x86 or --arch x64.",
                key="--arch",
            )
        wanted_arch = ARCH_NAMES[arch.lower()]
    known = ", ".join(PROFILES)
    aliases = ", ".join(
        sorted({a for p in PROFILES.values() for a in (p.osinfo_id, *p.osinfo_aliases)})
    )
    if name in PROFILES:
        profile = PROFILES[name]
        if wanted_arch is not None and wanted_arch != profile.arch:
            raise InputError(
                f"profile {name} is {profile.arch_label}, but --arch says {arch}.",
                "Leave out --arch, or name the profile of that architecture.",
                key="--arch",
            )
        return profile
    candidates = _alias_targets(name.lower())
    if not candidates:
        raise InputError(
            f"unknown profile {name!r}.",
            f"Known profiles: {known}; osinfo ids {aliases} with --arch.",
            key="profile",
        )
    if wanted_arch is not None:
        matching = [p for p in candidates if p.arch == wanted_arch]
        if not matching:
            have = ", ".join(p.arch_label for p in candidates)
            raise InputError(
                f"{name} has no {arch} profile (only {have}).",
                f"Use --arch {candidates[0].arch_label}.",
                key="--arch",
            )
        return matching[0]
    if len(candidates) == 1:
        return candidates[0]
    raise InputError(
        f"{name} exists for several architectures ({', '.join(p.name for p in candidates)}).",
        "Add --arch x86 or --arch x64.",
        key="--arch",
    )
