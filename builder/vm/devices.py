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

# The hypervisor pvinstall talks to unless --connect says otherwise (here, not in virt.py,
# so that the command line names it without loading libvirt).
DEFAULT_URI = "qemu:///system"

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


class Firmware(StrEnum):
    """What the machine boots with."""

    BIOS = "bios"
    EFI = "efi"  # UEFI (OVMF)


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

# What to do about too many devices, by what is being done.
SLOT_HINTS: Mapping[str, str] = MappingProxyType(
    {
        "build": "Use fewer data disks.",
        "existing": "Remove a device first (virsh detach-disk / detach-interface), or put the "
        "disks on one virtio-scsi controller.",
    }
)


def check_pci_slots(users: Sequence[str], subject: str, *, key: str, hint: str) -> int:
    """The slots `users` (one label per device that takes a PCI slot) need; InputError
    when that is more than a guest has. The one slot check of pvinstall: a planned
    domain, a converted guest, an attached device."""
    if len(users) <= PCI_SLOTS:
        return len(users)
    shown = ", ".join(users[:8]) + (f" and {len(users) - 8} more" if len(users) > 8 else "")
    raise InputError(
        f"{subject} needs {len(users)} PCI slots, but a guest has {PCI_SLOTS} for additional "
        f"devices ({shown}).",
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
