"""The device vocabulary of the domains pvinstall writes and edits (pure, a leaf).

libvirt's words for the virtio device models (`virtio-transitional`, `virtio`,
`virtio-non-transitional`: the one vocabulary for the model of a virtio disk or NIC,
everywhere in pvinstall), libvirt's naming of disk targets, the `<source>` of a disk
whatever its type, and the PCI slot budget with its one check.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from enum import StrEnum
from typing import Literal

# libvirt's models for virtio disks and NICs.
VirtioModel = Literal["virtio", "virtio-transitional", "virtio-non-transitional"]
VIRTIO_MODELS: tuple[VirtioModel, ...] = (
    "virtio",
    "virtio-transitional",
    "virtio-non-transitional",
)

# The buses a CD-ROM drive can sit on: IDE on i440fx (pc), SATA on q35, which has no IDE.
CdBus = Literal["ide", "sata"]


class Firmware(StrEnum):
    """What the machine boots with."""

    BIOS = "bios"


# An i440fx guest has 32 slots on its PCI bus. The host bridge, the PIIX3 (ISA, IDE,
# USB and ACPI functions), the VGA card and, in libvirt's default layout, the memory
# balloon take four; the virtualization guide promises 28 for additional devices.
# pvinstall leaves the balloon out, but keeps to the documented number so that a
# template it defines can always take a balloon later.
PCI_SLOTS = 28


def disk_target(index: int) -> str:
    """The virtio target of the index-th disk: vda ... vdz, vdaa, vdab ... (libvirt's rule)."""
    letters = ""
    number = index
    while True:
        letters = chr(ord("a") + number % 26) + letters
        number = number // 26 - 1
        if number < 0:
            return f"vd{letters}"


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
