"""The driver facts (builder/virtio/facts.py, drivers/catalog.toml)."""

from __future__ import annotations

import pytest

from builder.errors import BuildError
from builder.virtio.facts import load_driver_facts
from builder.vm.devices import VIRTIO_MODELS

FACTS = load_driver_facts()


def test_the_devices_a_domain_has_have_their_pci_ids() -> None:
    # The domain's virtio disks and NIC are checked against the drivers' hardware IDs;
    # every other row is a device some driver drives.
    assert {"virtio-blk", "virtio-net"} <= set(FACTS.pci_ids)
    assert set(FACTS.pci_ids) <= {d.device for d in FACTS.drivers.values() if d.device}
    for kind, sets in FACTS.pci_ids.items():
        assert set(sets) == {"transitional_ids", "modern_ids"}, kind
    # NetKVM always; the storage drivers when the storage bus needs them (selection).
    assert [d.name for d in FACTS.drivers.values() if d.required] == ["NetKVM"]
    storage = [d for d in FACTS.drivers.values() if d.role == "storage" and d.boot_critical]
    assert {d.device for d in storage} == {"virtio-blk", "virtio-scsi"}


def test_each_machine_table_maps_every_libvirt_model() -> None:
    for machine, models in FACTS.device_models.items():
        assert set(models) == set(VIRTIO_MODELS), machine
        assert set(models.values()) <= {"transitional_ids", "modern_ids"}


def test_presented_ids_follow_the_machine_table() -> None:
    blk = FACTS.presented_ids("virtio-blk", "virtio", "pc")
    assert blk.hardware_ids()[0] == "PCI\\VEN_1AF4&DEV_1001&SUBSYS_00021AF4&REV_00"
    # On q35 a plain virtio device is modern-only, a transitional one keeps the old IDs.
    assert FACTS.presented_ids("virtio-blk", "virtio", "q35").device == "1042"
    assert FACTS.presented_ids("virtio-scsi", "virtio", "q35").device == "1048"
    assert FACTS.presented_ids("virtio-net", "virtio-transitional", "q35").device == "1000"
    net = FACTS.presented_ids("virtio-net", "virtio-non-transitional", "pc")
    assert net.hardware_ids() == (
        "PCI\\VEN_1AF4&DEV_1041&SUBSYS_11001AF4&REV_01",
        "PCI\\VEN_1AF4&DEV_1041&SUBSYS_11001AF4",
        "PCI\\VEN_1AF4&DEV_1041&REV_01",
        "PCI\\VEN_1AF4&DEV_1041",
    )


@pytest.mark.parametrize(
    ("kind", "model", "machine", "fragment"),
    [
        ("virtio-blk", "virtio", "microvm", r"no \[device_models\.microvm\]"),
        ("virtio-gpu", "virtio", "pc", "no PCI IDs for a virtio-gpu device"),
        ("virtio-blk", "virtio-scsi", "pc", "of model virtio-scsi"),
    ],
)
def test_what_the_facts_do_not_know_is_a_sentence(
    kind: str, model: str, machine: str, fragment: str
) -> None:
    with pytest.raises(BuildError, match=fragment) as raised:
        FACTS.presented_ids(kind, model, machine)
    assert raised.value.hint is not None and "drivers/catalog.toml" in raised.value.hint


def test_the_installers_name_a_file_per_architecture() -> None:
    assert set(FACTS.installers) == {"qemu-ga", "guest-tools"}
    assert FACTS.installers["qemu-ga"].paths["amd64"] == "guest-agent/qemu-ga-x86_64.msi"
    assert FACTS.installers["guest-tools"].paths["amd64"] == "virtio-win-gt-x64.msi"
    for installer in FACTS.installers.values():
        assert set(installer.paths) == {"x86", "amd64"} and installer.description


def test_infs_names_and_nt_versions() -> None:
    assert FACTS.driver_for_inf("VIOSER.INF") is FACTS.drivers["vioserial"]
    assert FACTS.driver_for_inf("unknown.inf") is None
    assert FACTS.nt_name((6, 1)) == "Windows Server 2008 R2 / 7"
    assert FACTS.nt_name((9, 9)) == "Windows 9.9"
