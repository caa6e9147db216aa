"""Reading and editing defined domains (builder/vm/existing.py): the golden-template edit,
the facts an install needs, PCI slot users and the libosinfo id."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping

import pytest

from builder.virtio.selection import DriverSet
from builder.vm import domain, existing
from tests.unit.vm.common import OUT, _root, at, config_for, media_for, render

# -- after the install -------------------------------------------------------------------


def test_strip_install_media_leaves_a_golden_template(drivers: Mapping[str, DriverSet]) -> None:
    xml = render(drivers, "win2003-x64", "data_disks=[5]")
    media = media_for(config_for("win2003-x64"), OUT, "pv").media
    stripped = existing.strip_install_media(xml, media)
    assert stripped.removed == (
        f"hda: {OUT / 'install.iso'}",
        f"hdc: {OUT / 'drivers.iso'}",
        f"fda: {OUT / 'floppy.img'}",
    )
    assert set(existing.media_attached(xml, media)) == set(stripped.removed)
    assert existing.media_attached(stripped.xml, media) == ()
    root = _root(stripped.xml)
    disks = root.findall("./devices/disk")
    assert [d.get("device") for d in disks] == ["disk", "disk", "cdrom", "cdrom"]
    assert [d.find("source") is not None for d in disks] == [True, True, False, False]
    assert at(root, "./devices/interface/model").get("type") == "virtio-transitional"
    # Stripping twice changes nothing more.
    again = existing.strip_install_media(stripped.xml, media)
    assert again.removed == () and again.xml == stripped.xml


def test_describe_domain(drivers: Mapping[str, DriverSet]) -> None:
    facts = existing.describe_domain(render(drivers, "win2008-x64"))
    assert facts == existing.DomainFacts(
        name="pv-win2008-x64",
        system_disk="vda",
        serial_log=OUT / "serial.log",
        install_cd=str(OUT / "install.iso"),
        vnc_port=None,
    )
    stripped = existing.describe_domain(
        existing.strip_install_media(
            render(drivers, "win2008-x64"), media_for(config_for("win2008-x64"), OUT, "pv").media
        ).xml
    )
    assert stripped.install_cd is None


# -- existing domains -------------------------------------------------------------------

# What libvirt's QEMU driver makes of a virt-manager Windows guest: every PCI device has
# its address, the PIIX3 functions share slot 1, the video card has slot 2.
LIBVIRT_DEVICES = """
    <disk type='file' device='disk'><target dev='hda' bus='ide'/>
      <address type='drive' controller='0' bus='0' target='0' unit='0'/></disk>
    <controller type='usb' index='0' model='piix3-uhci'>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x01' function='0x2'/></controller>
    <controller type='pci' index='0' model='pci-root'/>
    <controller type='ide' index='0'>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x01' function='0x1'/></controller>
    <interface type='user'><model type='e1000'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x03' function='0x0'/></interface>
    <video><model type='cirrus'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x02' function='0x0'/></video>
    <memballoon model='virtio'>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x05' function='0x0'/></memballoon>
"""


def _devices(body: str) -> ET.Element:
    return ET.fromstring(f"<domain><devices>{body}</devices></domain>")


SLOT_CASES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("libvirt's layout: only the NIC", LIBVIRT_DEVICES, ("NIC (e1000)",)),
    (
        "virtio disks without addresses yet",
        "<disk device='disk'><target dev='vda' bus='virtio'/></disk>"
        "<disk device='disk'><target dev='vdb' bus='virtio'/></disk>"
        "<disk device='cdrom'><target dev='hdc' bus='ide'/></disk>",
        ("virtio disk vda", "virtio disk vdb"),
    ),
    (
        "multifunction devices share one slot",
        "<controller type='usb' model='ich9-ehci1'><address type='pci' bus='0' slot='7' "
        "function='7'/></controller><controller type='usb' model='ich9-uhci1'><address "
        "type='pci' bus='0x00' slot='0x07' function='0x0'/></controller>",
        ("controller usb",),
    ),
    (
        "devices behind a PCI bridge count, the bridge does not",
        "<controller type='pci' index='1' model='pci-bridge'><address type='pci' bus='0' "
        "slot='0x1f'/></controller><interface type='user'><address type='pci' bus='0x01' "
        "slot='0x01'/></interface>",
        ("NIC (default model)",),
    ),
    (
        "a second video card, sound, rng and a virtio-scsi controller count",
        "<video/><video/><sound model='ich6'/><sound model='pcspk'/><rng model='virtio'/>"
        "<controller type='scsi' model='virtio-scsi'/><watchdog model='ib700'/>"
        "<input type='tablet' bus='usb'/><serial type='pty'/>",
        ("video", "sound ich6", "rng virtio", "controller scsi"),
    ),
)


@pytest.mark.parametrize(
    ("body", "expected"), [c[1:] for c in SLOT_CASES], ids=[c[0] for c in SLOT_CASES]
)
def test_pci_slot_users_of_existing_domains(body: str, expected: tuple[str, ...]) -> None:
    assert existing.pci_slot_users(_devices(body)) == expected


def test_pci_slot_users_agree_with_the_plan_s_count(drivers: Mapping[str, DriverSet]) -> None:
    # The same rule for a domain pvinstall plans and for one it reads back.
    xml = render(drivers, "win2008r2-x64", "data_disks=[20, 40]")
    config = config_for("win2008r2-x64", "data_disks=[20, 40]")
    plan = domain.plan_domain(config, media_for(config, OUT, "pv"), name="pv", domain_type="kvm")
    assert len(existing.pci_slot_users(ET.fromstring(xml))) == domain.count_pci_slots(plan) == 4


@pytest.mark.parametrize(
    ("url", "short"),
    [
        ("http://microsoft.com/win/2k8r2", "win2k8r2"),
        ("http://microsoft.com/win/2k3r2", "win2k3r2"),
        ("http://microsoft.com/win/2k3", "win2k3"),
        ("http://fedoraproject.org/fedora/38", None),
        ("http://microsoft.com/win/", None),
    ],
)
def test_osinfo_short_ids(url: str, short: str | None) -> None:
    assert existing.osinfo_short_id(url) == short


def test_osinfo_url_is_read_from_the_metadata(drivers: Mapping[str, DriverSet]) -> None:
    root = ET.fromstring(render(drivers, "win2003-x86"))
    assert existing.osinfo_url(root) == "http://microsoft.com/win/2k3"
    assert existing.osinfo_url(ET.fromstring("<domain/>")) is None


# -- templates and clones ------------------------------------------------------------

INSTALLED = """<domain type='kvm'>
  <name>pv</name>
  <uuid>6f1c1b2e-0000-4000-8000-000000000001</uuid>
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
    <nvram>/var/lib/libvirt/qemu/nvram/pv_VARS.fd</nvram>
  </os>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='/out/pv.qcow2'/>
      <target dev='vda' bus='virtio'/>
      <boot order='1'/>
    </disk>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='/out/pv-data1.qcow2'/>
      <target dev='vdb' bus='virtio'/>
    </disk>
    <disk type='file' device='cdrom'>
      <driver name='qemu' type='raw'/>
      <source file='/out/drivers.iso'/>
      <target dev='sda' bus='sata'/>
    </disk>
    <interface type='network'>
      <mac address='52:54:00:aa:bb:cc'/>
      <source network='default'/>
      <model type='virtio'/>
    </interface>
    <serial type='file'><source path='/out/serial.log'/><target port='0'/></serial>
    <tpm model='tpm-crb'>
      <backend type='emulator' version='2.0'><source type='dir' path='/x'/></backend>
    </tpm>
  </devices>
</domain>
"""


def test_template_xml_leaves_out_what_is_the_machine_s_own() -> None:
    from pathlib import Path

    root = existing.parse_xml(
        existing.template_xml(INSTALLED, Path("/out/template.qcow2"), "qcow2")
    )
    assert root.find("uuid") is None and root.find("os/nvram") is None
    assert root.find("devices/interface/mac") is None
    assert root.find("devices/tpm/backend/source") is None
    disks = root.findall("devices/disk")
    assert [next((x.get("file") for x in d.iter("source")), None) for d in disks] == [
        "/out/template.qcow2",
        None,
        None,
    ]
    assert disks[0].findtext("driver") is not None
    assert at(disks[0], "driver").get("type") == "qcow2"
    assert disks[0].find("boot") is not None  # the devices stay as they were


def test_clone_xml_renames_and_points_at_the_clone_s_disks() -> None:
    from pathlib import Path

    template = existing.template_xml(INSTALLED, Path("/out/template.qcow2"), "qcow2")
    xml = existing.clone_xml(
        template,
        name="clone1",
        system_disk=Path("/c/clone1.qcow2"),
        data_disks=(Path("/c/clone1-data1.qcow2"),),
        serial_log=Path("/c/clone1-serial.log"),
    )
    root = existing.parse_xml(xml)
    assert root.findtext("name") == "clone1" and root.find("uuid") is None
    sources = [at(d, "source").get("file") for d in root.findall("devices/disk[@device='disk']")]
    assert sources == ["/c/clone1.qcow2", "/c/clone1-data1.qcow2"]
    assert at(root, "devices/serial/source").get("path") == "/c/clone1-serial.log"
    assert existing.data_disk_count(xml) == 1
    with pytest.raises(ValueError, match="1 data disks"):
        existing.clone_xml(
            template, name="c", system_disk=Path("/c.qcow2"), data_disks=(), serial_log=None
        )
