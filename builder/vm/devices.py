"""The device vocabulary of the domains pvinstall writes and edits (pure, a leaf).

libvirt's words for the virtio device models (`virtio-transitional`, `virtio`,
`virtio-non-transitional`: the one vocabulary for the model of a virtio disk or NIC,
everywhere in pvinstall), libvirt's naming of disk targets, the `<source>` of a disk
whatever its type, and the PCI slot budget with its one check.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Literal

from builder.errors import InputError

# libvirt's models for virtio disks and NICs.
VirtioModel = Literal["virtio", "virtio-transitional", "virtio-non-transitional"]
VIRTIO_MODELS: tuple[VirtioModel, ...] = (
    "virtio",
    "virtio-transitional",
    "virtio-non-transitional",
)

# The buses a CD-ROM drive can sit on: IDE on i440fx (pc), SATA on q35, which has no IDE.
CdBus = Literal["ide", "sata"]

# The drives that take removable media, and what becomes of them when the install is
# done: a floppy drive is removed with its disk (a template keeps none), a CD-ROM drive
# is emptied and stays.
Removable = Literal["cdrom", "floppy"]
AFTER_INSTALL: Mapping[Removable, Literal["remove", "eject"]] = MappingProxyType(
    {"floppy": "remove", "cdrom": "eject"}
)

# The targets of each bus's drives, in the order pvinstall fills them. On IDE one
# drive per channel first (hda, hdc), so that old ATAPI code never shares a channel.
DRIVE_TARGETS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "ide": ("hda", "hdc", "hdb", "hdd"),
        "sata": tuple(f"sd{c}" for c in "abcdefgh"),
        "fdc": ("fda", "fdb"),
    }
)
# libvirt's names for the positions of a bus, in its own order (for finding a free one).
BUS_POSITIONS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "ide": tuple(f"hd{c}" for c in "abcd"),
        "sata": tuple(f"sd{c}" for c in "abcdefghijklmnopqrstuvwxyz"),
    }
)


@dataclass(frozen=True)
class AttachedMedium:
    """A medium for a removable drive of the domain: which drive (the `drive`-th of its
    kind), the file (None: the drive stays empty), and whether the firmware boots it."""

    name: str  # what the medium is, for messages: install.iso, the Windows ISO, ...
    device: Removable
    drive: int
    path: Path | None
    boot_order: int | None = None
    image_format: str = "raw"  # how QEMU reads the file: raw, or qcow2 for an overlay


class Firmware(StrEnum):
    """What the machine boots with."""

    BIOS = "bios"
    EFI = "efi"  # UEFI (OVMF)


# The CPU models pvinstall knows, by the x86-64 level their QEMU definition reaches
# (POPCNT, SSE4.2, SSSE3, CMPXCHG16B and LAHF/SAHF make x86-64-v2; AVX2, BMI, FMA, MOVBE
# v3). QEMU 7.2 has no x86-64-v2 model of its own: Nehalem is the oldest named model
# with the v2 set, and the one the TCG accelerator runs (docs/windows-modern.md §7).
# Models not in the table are asked of the host's libvirt (its expanded features).
CPU_LEVELS: Mapping[str, int] = MappingProxyType(
    {
        "qemu64": 1,
        "kvm64": 1,
        "qemu32": 0,
        "kvm32": 0,
        "pentium": 0,
        "pentium2": 0,
        "pentium3": 0,
        "n270": 0,
        "coreduo": 0,
        "core2duo": 1,
        "athlon": 0,
        "phenom": 1,
        "Conroe": 1,
        "Penryn": 1,
        "Opteron_G1": 1,
        "Opteron_G2": 1,
        "Opteron_G3": 1,
        "Nehalem": 2,
        "Westmere": 2,
        "SandyBridge": 2,
        "IvyBridge": 2,
        "Opteron_G4": 2,
        "Opteron_G5": 2,
        "Haswell": 3,
        "Broadwell": 3,
        "Skylake-Client": 3,
        "Skylake-Server": 3,
        "Cascadelake-Server": 3,
        "Cooperlake": 3,
        "Icelake-Server": 3,
        "SapphireRapids": 3,
        "EPYC": 3,
        "EPYC-Rome": 3,
        "EPYC-Milan": 3,
        "Dhyana": 3,
    }
)
# The CPU flags of each level above v1, as Linux's /proc/cpuinfo and libvirt name them.
CPU_LEVEL_FLAGS: Mapping[int, tuple[str, ...]] = MappingProxyType(
    {2: ("popcnt", "sse4.2", "sse4.1", "ssse3", "cx16", "lahf_lm")}
)
# The <cpu> modes that take the host's CPU rather than a named model: only on request
# (`cpu_model`), because they follow the host (migration, nested and emulated KVM).
HOST_CPU_MODES = ("host-model", "host-passthrough")


def cpu_level_number(level: str | None) -> int:
    """`x86-64-v2` -> 2; None (any CPU) -> 0."""
    return int(level.rsplit("v", 1)[1]) if level else 0


# Hyper-V enlightenments by domain type. KVM gets the set Windows Server 2016 and later
# use (stimer needs synic, vpindex and the Hyper-V clock; tlbflush and ipi need
# vpindex). Under TCG (type qemu) QEMU refuses vpindex and everything that needs it
# ("kernel doesn't allow setting HyperV VP_INDEX"), and Windows sees none of the others
# anyway, so that domain keeps the set every NT 6.x guest has had.
HypervFeature = tuple[str, Mapping[str, str]]
_ON: Mapping[str, str] = MappingProxyType({"state": "on"})
HYPERV_BASIC: tuple[HypervFeature, ...] = (
    ("relaxed", _ON),
    ("vapic", _ON),
    ("spinlocks", MappingProxyType({"state": "on", "retries": "8191"})),
)
HYPERV_MODERN_KVM: tuple[HypervFeature, ...] = (
    *HYPERV_BASIC,
    ("vpindex", _ON),
    ("runtime", _ON),
    ("synic", _ON),
    ("stimer", _ON),
    ("reset", _ON),
    ("frequencies", _ON),
    ("tlbflush", _ON),
    ("ipi", _ON),
)
HYPERV_SETS: Mapping[tuple[str, bool], tuple[HypervFeature, ...]] = MappingProxyType(
    {
        ("kvm", False): HYPERV_BASIC,
        ("qemu", False): HYPERV_BASIC,
        ("kvm", True): HYPERV_MODERN_KVM,
        ("qemu", True): HYPERV_BASIC,
    }
)


class StorageBus(StrEnum):
    """Where the system disk sits: a virtio-blk device of its own (`vda`, driver
    viostor), or a disk on a virtio-scsi controller (`sda`, driver vioscsi)."""

    VIRTIO_BLK = "virtio-blk"
    VIRTIO_SCSI = "virtio-scsi"


# The [pci_ids] kind (drivers/catalog.toml) of the device each storage bus presents: a
# virtio-blk device per disk, or one virtio-scsi controller for all of them.
STORAGE_DEVICE_KINDS: Mapping[StorageBus, str] = MappingProxyType(
    {StorageBus.VIRTIO_BLK: "virtio-blk", StorageBus.VIRTIO_SCSI: "virtio-scsi"}
)


# An i440fx guest has 32 slots on its PCI bus. The host bridge, the PIIX3 (ISA, IDE,
# USB and ACPI functions), the VGA card and, in libvirt's default layout, the memory
# balloon take four; the virtualization guide promises 28 for additional devices.
# pvinstall leaves the balloon out, but keeps to the documented number so that a
# template it defines can always take a balloon later.
PCI_SLOTS = 28

# A q35 guest's PCIe devices each sit behind a PCIe root port of their own. The root
# ports are functions of the slots of pcie-root: 32 slots, less the host bridge (00.0),
# the VGA card (01.0) and the ICH9's functions (1f.x: LPC, SATA, SMBus), leave 29
# slots of 8 ports each, 232 ports; libvirt keeps one of them free for hot-plugging and
# refuses a definition that needs more (checked on libvirt 9.0: 231 endpoints define,
# 232 do not). docs/windows-modern.md §7.
Q35_ROOT_PORTS = 29 * 8
Q35_PCIE_DEVICES = Q35_ROOT_PORTS - 1

# The budget of PCI devices by machine type (libvirt's machine names, `pc-q35-7.2`,
# are matched by their family: see `machine_family`).
PCI_BUDGETS: Mapping[str, int] = MappingProxyType({"pc": PCI_SLOTS, "q35": Q35_PCIE_DEVICES})


def machine_family(machine: str) -> str:
    """`q35` for q35 and its versions (`pc-q35-7.2`), else `pc` (i440fx: `pc`,
    `pc-i440fx-7.2`)."""
    return "q35" if machine == "q35" or machine.startswith("pc-q35") else "pc"


def pci_budget(machine: str) -> int:
    """How many PCI devices a guest of `machine` takes besides its built-in ones."""
    return PCI_BUDGETS[machine_family(machine)]


# What to do about too many devices, by what is being done.
SLOT_HINTS: Mapping[str, str] = MappingProxyType(
    {
        "build": "Use fewer data disks.",
        "existing": "Remove a device first (virsh detach-disk / detach-interface), or put the "
        "disks on one virtio-scsi controller.",
    }
)


def check_pci_slots(
    users: Sequence[str], subject: str, *, key: str, hint: str, machine: str = "pc"
) -> int:
    """The slots `users` (one label per device that takes a PCI slot, or on q35 a PCIe
    root port) need; InputError when that is more than a guest of `machine` has. The one
    slot check of pvinstall: a planned domain, a converted guest, an attached device."""
    budget = pci_budget(machine)
    if len(users) <= budget:
        return len(users)
    shown = ", ".join(users[:8]) + (f" and {len(users) - 8} more" if len(users) > 8 else "")
    where = (
        f"a q35 guest has {budget} PCIe root ports for its devices"
        if machine_family(machine) == "q35"
        else f"a guest has {budget} for additional devices"
    )
    raise InputError(
        f"{subject} needs {len(users)} PCI slots, but {where} ({shown}).",
        hint,
        key=key,
    )


def disk_target(index: int, prefix: str = "vd") -> str:
    """The target of the index-th disk: vda ... vdz, vdaa, vdab ... (libvirt's rule; `sd`
    for SCSI and SATA)."""
    letters = ""
    number = index
    while True:
        letters = chr(ord("a") + number % 26) + letters
        number = number // 26 - 1
        if number < 0:
            return f"{prefix}{letters}"


def target_index(target: str) -> int:
    """The inverse of `disk_target`: `vdb` -> 1, `sdaa` -> 26."""
    number = 0
    for char in target[2:]:
        number = number * 26 + ord(char) - ord("a") + 1
    return number - 1


# The libvirt bus and target prefix of the disks on each storage bus.
DISK_BUSES: Mapping[StorageBus, tuple[str, str]] = MappingProxyType(
    {StorageBus.VIRTIO_BLK: ("virtio", "vd"), StorageBus.VIRTIO_SCSI: ("scsi", "sd")}
)


def disk_targets(bus: StorageBus, disks: int) -> tuple[str, ...]:
    """The targets of the system disk (first) and the data disks on `bus`."""
    prefix = DISK_BUSES[bus][1]
    return tuple(disk_target(i, prefix) for i in range(disks))


def system_disk_number(targets: Sequence[str]) -> int:
    """The number Windows gives the system disk (`targets[0]`) among the domain's disks,
    which is autounattend.xml's `DiskID`.

    Windows numbers the disks in the order it enumerates them: virtio-blk disks are PCI
    devices, which libvirt addresses in the order of their targets (it keeps the disks
    sorted by target); virtio-scsi disks are units of one controller, numbered by target
    too. CD-ROM drives are not disks. So the system disk's number is its place among the
    disks sorted by target.
    """
    ordered = sorted(targets, key=target_index)
    return ordered.index(targets[0])


# The attributes of <source> that name what a disk reads, by disk type (file, block,
# volume, network), in the order libvirt documents them.
_SOURCE_ATTRIBUTES = ("file", "dev", "volume", "name")


def source_of(disk: ET.Element) -> str:
    """What a `<disk>` reads (a file, block device, volume or network name); "" for an
    empty drive."""
    source = disk.find("source")
    if source is None:
        return ""
    for attribute in _SOURCE_ATTRIBUTES:
        value = source.get(attribute)
        if value:
            return value
    return ""
