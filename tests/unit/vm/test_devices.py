"""The device vocabulary (builder/vm/devices.py)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from builder.vm import devices


def test_disk_targets_follow_libvirt_naming() -> None:
    assert [devices.disk_target(i) for i in (0, 1, 25, 26, 27, 51, 52)] == [
        "vda",
        "vdb",
        "vdz",
        "vdaa",
        "vdab",
        "vdaz",
        "vdba",
    ]


def test_the_source_of_a_disk_whatever_its_type() -> None:
    cases = {
        "<disk type='file'><source file='/a.iso'/></disk>": "/a.iso",
        "<disk type='block'><source dev='/dev/sdb'/></disk>": "/dev/sdb",
        "<disk type='volume'><source pool='p' volume='v.qcow2'/></disk>": "v.qcow2",
        "<disk type='network'><source protocol='nbd' name='export'/></disk>": "export",
        "<disk type='file' device='cdrom'><target dev='hdc'/></disk>": "",
    }
    assert {xml: devices.source_of(ET.fromstring(xml)) for xml in cases} == cases


def test_disk_targets_per_storage_bus_and_the_system_disk_number() -> None:
    blk = devices.disk_targets(devices.StorageBus.VIRTIO_BLK, 3)
    scsi = devices.disk_targets(devices.StorageBus.VIRTIO_SCSI, 2)
    assert (blk, scsi) == (("vda", "vdb", "vdc"), ("sda", "sdb"))
    for index in (0, 1, 25, 26, 27, 701, 702):
        assert devices.target_index(devices.disk_target(index)) == index
        assert devices.target_index(devices.disk_target(index, "sd")) == index
    # The system disk is targets[0]; Windows numbers the disks in target order.
    assert devices.system_disk_number(blk) == 0
    assert devices.system_disk_number(("vdb", "vda", "vdc")) == 1
    assert devices.system_disk_number(("sdc", "sdab", "sda")) == 1
