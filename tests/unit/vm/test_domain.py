"""The domain XML (builder/vm/domain.py, templates/domain.xml.j2): golden files per profile,
the PCI slot budget, the driver <-> device check, names, and the template edit that
leaves a golden template after the install.

Regenerate the golden files with PVTEST_REGENERATE_GOLDEN=1.
"""

from __future__ import annotations

import dataclasses
import os
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from pathlib import Path

import pytest

from builder.config import BuildConfig, load_config
from builder.errors import InputError
from builder.virtio.facts import load_driver_facts
from builder.virtio.packages import scan_source
from builder.virtio.selection import DriverSet, select_drivers
from builder.virtio.source import DirectorySource
from builder.vm import domain
from builder.windows.profiles import PROFILES
from tests.fixtures.virtio_win import write_modern_tree

GOLDEN = Path(__file__).resolve().parents[3] / "tests" / "golden" / "domain"
REGENERATE = os.environ.get("PVTEST_REGENERATE_GOLDEN") == "1"
OUT = Path("/srv/pvinstall/out")
KEY_2003 = "product_key=ABCDE-FGHIJ-KLMNO-PQRST-UVWXY"

# Golden cases: (file stem, profile, settings, domain type).
GOLDEN_CASES: tuple[tuple[str, str, tuple[str, ...], str], ...] = (
    *((name, name, (), "kvm") for name in PROFILES),
    ("win2003-x64-qemu-user-data", "win2003-x64", ("network=user", "data_disks=[20, 40]"), "qemu"),
    (
        "win2008r2-x64-qemu-user-data",
        "win2008r2-x64",
        ("network=user", "data_disks=[20, 40]", "memory_mib=4096", "vcpus=4"),
        "qemu",
    ),
)


def config_for(profile: str, *sets: str) -> BuildConfig:
    extra = [KEY_2003] if profile.startswith("win2003") else []
    return load_config(PROFILES[profile], sets=["admin_password=Sup3r-secret", *extra, *sets])


def driversets(root: Path) -> dict[str, DriverSet]:
    """A DriverSet per profile, selected from a virtio-win fixture tree written to `root`."""
    tree = write_modern_tree(root / "virtio-win", oses=["2k3", "2k8", "2k8R2"])
    scan = scan_source(DirectorySource(tree.root), load_driver_facts())
    return {name: select_drivers(scan, profile) for name, profile in PROFILES.items()}


def media_for(
    config: BuildConfig, out: Path, name: str, *, install_iso: Path | None = None
) -> domain.MediaPaths:
    system, data = domain.default_disk_paths(config, out, name)
    return domain.MediaPaths(
        install_iso=install_iso if install_iso is not None else out / "install.iso",
        drivers_iso=out / "drivers.iso",
        floppy=out / "floppy.img",
        system_disk=system,
        data_disks=data,
        serial_log=out / "serial.log",
    )


@pytest.fixture(scope="module")
def drivers(tmp_path_factory: pytest.TempPathFactory) -> Mapping[str, DriverSet]:
    return driversets(tmp_path_factory.mktemp("vw"))


def render(
    drivers: Mapping[str, DriverSet],
    profile: str,
    *sets: str,
    domain_type: str = "kvm",
    virtio_model: str | None = None,
    name: str | None = None,
) -> str:
    config = config_for(profile, *sets)
    name = name or f"pv-{profile}"
    return domain.domain_xml(
        config,
        drivers[profile],
        media_for(config, OUT, name),
        name=name,
        domain_type=domain_type,
        virtio_model=virtio_model,
    )


# -- golden files -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stem", "profile", "sets", "domain_type"), GOLDEN_CASES, ids=[c[0] for c in GOLDEN_CASES]
)
def test_domain_xml_matches_the_golden_file(
    drivers: Mapping[str, DriverSet],
    stem: str,
    profile: str,
    sets: tuple[str, ...],
    domain_type: str,
) -> None:
    xml = render(drivers, profile, *sets, domain_type=domain_type)
    golden = GOLDEN / f"{stem}.xml"
    if REGENERATE:
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(xml, encoding="utf-8")
    assert golden.is_file(), f"{golden} is missing; run with PVTEST_REGENERATE_GOLDEN=1"
    assert xml == golden.read_text(encoding="utf-8")


def test_the_golden_files_are_exactly_the_cases() -> None:
    assert sorted(p.stem for p in GOLDEN.glob("*.xml")) == sorted(c[0] for c in GOLDEN_CASES)


def test_domain_xml_is_deterministic(drivers: Mapping[str, DriverSet]) -> None:
    assert render(drivers, "win2008-x64") == render(drivers, "win2008-x64")
    assert "<uuid>" not in render(drivers, "win2008-x64")
    assert "<mac " not in render(drivers, "win2008-x64")


# -- what the XML says, per profile ------------------------------------------------------


def _root(xml: str) -> ET.Element:
    return domain.parse_xml(xml)


def at(node: ET.Element, path: str) -> ET.Element:
    found = node.find(path)
    assert found is not None, f"no {path}"
    return found


@pytest.mark.parametrize("profile", list(PROFILES))
def test_every_profile_gets_the_issue_s_domain(
    drivers: Mapping[str, DriverSet], profile: str
) -> None:
    p = PROFILES[profile]
    root = _root(render(drivers, profile))
    assert root.get("type") == "kvm"
    assert root.findtext("name") == f"pv-{profile}"
    assert root.findtext("memory") == str(p.memory_mib)
    assert at(root, "memory").get("unit") == "MiB"
    assert root.findtext("vcpu") == str(p.vcpus)
    os_type = root.find("./os/type")
    assert os_type is not None and os_type.text == "hvm"
    assert os_type.get("machine") == "pc"
    assert os_type.get("arch") == ("i686" if p.arch == "x86" else "x86_64")
    features = root.find("features")
    assert features is not None
    assert features.find("acpi") is not None and features.find("apic") is not None
    assert (features.find("pae") is not None) == (p.arch == "x86")
    hyperv = features.find("hyperv")
    if p.is_2003:
        assert hyperv is None
    else:
        assert hyperv is not None
        assert sorted(c.tag for c in hyperv) == ["relaxed", "spinlocks", "vapic"]
    assert root.find("cpu") is None  # no host-model / host-passthrough
    assert at(root, "clock").get("offset") == "localtime"
    devices = root.find("devices")
    assert devices is not None
    model = "virtio-transitional" if p.is_2003 else "virtio"
    disks = devices.findall("disk")
    system = disks[0]
    assert system.get("device") == "disk" and system.get("model") == model
    assert at(system, "target").get("bus") == "virtio"
    drv = system.find("driver")
    assert drv is not None
    assert (drv.get("type"), drv.get("cache"), drv.get("discard")) == ("qcow2", "none", "unmap")
    assert at(system, "boot").get("order") == "1"
    cds = [d for d in disks if d.get("device") == "cdrom"]
    assert [(at(d, "target").get("bus"), at(d, "source").get("file")) for d in cds] == [
        ("ide", str(OUT / "install.iso")),
        ("ide", str(OUT / "drivers.iso")),
    ]
    assert at(cds[0], "boot").get("order") == "2"
    assert cds[1].find("boot") is None
    floppy = [d for d in disks if d.get("device") == "floppy"]
    assert [at(f, "target").get("bus") for f in floppy] == ["fdc"]
    nic = devices.find("interface")
    assert nic is not None and nic.get("type") == "network"
    assert at(nic, "source").get("network") == "default"
    assert at(nic, "model").get("type") == model
    serial = devices.find("serial")
    assert serial is not None and serial.get("type") == "file"
    assert at(serial, "source").get("path") == str(OUT / "serial.log")
    tablet = devices.find("input")
    assert tablet is not None and (tablet.get("type"), tablet.get("bus")) == ("tablet", "usb")
    assert at(devices, "./video/model").get("type") == "vga"
    graphics = devices.find("graphics")
    assert graphics is not None and graphics.get("type") == "vnc"
    listens = [listen.get("address") for listen in graphics.findall("listen")]
    assert listens == ["127.0.0.1"] and graphics.get("listen") in (None, "127.0.0.1")
    assert at(devices, "memballoon").get("model") == "none"


def test_user_network_and_data_disks(drivers: Mapping[str, DriverSet]) -> None:
    root = _root(render(drivers, "win2008r2-x64", "network=user", "data_disks=[20, 40]"))
    nic = root.find("./devices/interface")
    assert nic is not None and nic.get("type") == "user" and nic.find("source") is None
    disks = [d for d in root.iterfind("./devices/disk") if d.get("device") == "disk"]
    assert [(at(d, "target").get("dev"), at(d, "source").get("file")) for d in disks] == [
        ("vda", str(OUT / "pv-win2008r2-x64.qcow2")),
        ("vdb", str(OUT / "pv-win2008r2-x64-data1.qcow2")),
        ("vdc", str(OUT / "pv-win2008r2-x64-data2.qcow2")),
    ]
    assert [d.find("boot") is not None for d in disks] == [True, False, False]


def test_a_missing_install_iso_leaves_the_drive_empty(drivers: Mapping[str, DriverSet]) -> None:
    config = config_for("win2008-x64")
    media = dataclasses.replace(media_for(config, OUT, "pv"), install_iso=None)
    root = _root(
        domain.domain_xml(config, drivers["win2008-x64"], media, name="pv", domain_type="qemu")
    )
    first_cd = next(d for d in root.iterfind("./devices/disk") if d.get("device") == "cdrom")
    assert first_cd.find("source") is None
    assert at(first_cd, "boot").get("order") == "2"


def test_paths_are_escaped(drivers: Mapping[str, DriverSet]) -> None:
    out = Path('/srv/it\'s <a> & "b"')
    config = config_for("win2008-x64")
    xml = domain.domain_xml(
        config, drivers["win2008-x64"], media_for(config, out, "pv"), name="pv", domain_type="kvm"
    )
    root = _root(xml)
    assert at(root, "./devices/disk/source").get("file") == str(out / "pv.qcow2")


def test_disk_targets_follow_libvirt_naming() -> None:
    assert [domain.disk_target(i) for i in (0, 1, 25, 26, 27, 51, 52)] == [
        "vda",
        "vdb",
        "vdz",
        "vdaa",
        "vdab",
        "vdaz",
        "vdba",
    ]


# -- the PCI slot budget -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("data_disks", "slots", "error"),
    [
        (0, 2, None),
        (25, 27, None),
        (26, 28, None),
        (27, 29, "needs 29 PCI slots"),
        (40, 42, "needs 42 PCI slots"),
    ],
)
def test_slot_budget(
    drivers: Mapping[str, DriverSet], data_disks: int, slots: int, error: str | None
) -> None:
    sets = (f"data_disks=[{', '.join(['1'] * data_disks)}]",) if data_disks else ()
    config = config_for("win2008r2-x64", *sets)
    plan = domain.plan_domain(config, media_for(config, OUT, "pv"), name="pv", domain_type="kvm")
    assert domain.count_pci_slots(plan) == slots
    if error is None:
        domain.check_slot_budget(plan)
        render(drivers, "win2008r2-x64", *sets)
        return
    with pytest.raises(InputError) as raised:
        domain.check_slot_budget(plan)
    assert error in str(raised.value)
    assert "28" in str(raised.value) and "at most 26 data disks" in str(raised.value)
    assert raised.value.problems[0].key == "data_disks"
    with pytest.raises(InputError, match=error):
        render(drivers, "win2008r2-x64", *sets)


# -- the driver <-> device check ---------------------------------------------------------


@pytest.mark.parametrize(
    ("profile", "model", "errors"),
    [
        ("win2003-x86", None, ()),
        ("win2003-x64", None, ()),
        # plain virtio sits on conventional PCI on i440fx: transitional IDs, 2003 binds
        ("win2003-x64", "virtio", ()),
        ("win2003-x64", "virtio-transitional", ()),
        (
            "win2003-x86",
            "virtio-non-transitional",
            (
                "system disk vda (model virtio-non-transitional: "
                "PCI\\VEN_1AF4&DEV_1042&SUBSYS_11001AF4) is not matched by viostor",
                "NIC on network default (model virtio-non-transitional: "
                "PCI\\VEN_1AF4&DEV_1041&SUBSYS_11001AF4) is not matched by NetKVM",
                "drivers know only transitional virtio devices",
            ),
        ),
        ("win2008-x86", None, ()),
        ("win2008-x64", "virtio-non-transitional", ()),
        ("win2008r2-x64", None, ()),
        ("win2008r2-x64", "virtio-transitional", ()),
        ("win2008r2-x64", "virtio-non-transitional", ()),
    ],
)
def test_driver_device_check(
    drivers: Mapping[str, DriverSet], profile: str, model: str | None, errors: tuple[str, ...]
) -> None:
    if not errors:
        render(drivers, profile, virtio_model=model)
        return
    with pytest.raises(InputError) as raised:
        render(drivers, profile, virtio_model=model)
    for fragment in errors:
        assert fragment in str(raised.value)


def test_driver_check_names_every_data_disk(drivers: Mapping[str, DriverSet]) -> None:
    with pytest.raises(InputError) as raised:
        render(drivers, "win2003-x64", "data_disks=[5]", virtio_model="virtio-non-transitional")
    assert "data disk vdb" in str(raised.value)
    assert "amd64/viostor.inf" in str(raised.value)


def test_driver_check_without_a_driver_for_a_device(drivers: Mapping[str, DriverSet]) -> None:
    selection = drivers["win2008-x64"]
    without_net = dataclasses.replace(
        selection, selected=tuple(d for d in selection.selected if d.name != "NetKVM")
    )
    config = config_for("win2008-x64")
    with pytest.raises(
        InputError,
        match=r"no driver for the NIC on network default "
        r"\(virtio-net\) was selected",
    ):
        domain.domain_xml(
            config, without_net, media_for(config, OUT, "pv"), name="pv", domain_type="kvm"
        )


def test_unknown_virtio_model_is_refused(drivers: Mapping[str, DriverSet]) -> None:
    with pytest.raises(InputError, match="'virtio-scsi' is not a virtio device model"):
        render(drivers, "win2008-x64", virtio_model="virtio-scsi")


def test_presented_ids_follow_the_machine_table() -> None:
    catalog = load_driver_facts()
    blk = domain.presented_ids("virtio-blk", "virtio", "pc", catalog)
    assert blk.hardware_ids()[0] == "PCI\\VEN_1AF4&DEV_1001&SUBSYS_00021AF4&REV_00"
    net = domain.presented_ids("virtio-net", "virtio-non-transitional", "pc", catalog)
    assert net.hardware_ids()[0] == "PCI\\VEN_1AF4&DEV_1041&SUBSYS_11001AF4&REV_01"
    with pytest.raises(ValueError, match="q35"):
        domain.presented_ids("virtio-blk", "virtio", "q35", catalog)


# -- other bad input ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("win2008r2-golden", None),
        ("pv_1.2+3", None),
        ("a", None),
        ("", "is empty"),
        ("x" * 65, "at most 64"),
        ("has space", "contains ' '"),
        ("a/b", "contains '/'"),
        ("-leading", "must start with"),
        (".hidden", "must start with"),
        ("1234", "only digits"),
        ("0b1a4a52-1c3c-4bd3-9b8e-4d1cf4ff0ad6", "looks like a UUID"),
        ("ünïcode", "contains"),
    ],
)
def test_domain_names(name: str, error: str | None) -> None:
    if error is None:
        domain.validate_domain_name(name)
        return
    with pytest.raises(InputError) as raised:
        domain.validate_domain_name(name)
    assert error in str(raised.value)
    assert raised.value.problems[0].key == "--name"


def test_bad_name_and_domain_type_are_refused(drivers: Mapping[str, DriverSet]) -> None:
    with pytest.raises(InputError, match="not a usable domain name"):
        render(drivers, "win2008-x64", name="no/slash")
    with pytest.raises(InputError, match="unknown domain type 'xen'"):
        render(drivers, "win2008-x64", domain_type="xen")


def test_memory_below_the_minimum_is_refused_by_the_settings() -> None:
    with pytest.raises(InputError, match="below the 512 MiB"):
        config_for("win2008-x64", "memory_mib=256")


# -- after the install -------------------------------------------------------------------


def test_strip_install_media_leaves_a_golden_template(drivers: Mapping[str, DriverSet]) -> None:
    xml = render(drivers, "win2003-x64", "data_disks=[5]")
    stripped = domain.strip_install_media(xml)
    assert stripped.removed == (
        f"hda: {OUT / 'install.iso'}",
        f"hdc: {OUT / 'drivers.iso'}",
        f"fda: {OUT / 'floppy.img'}",
    )
    assert domain.media_attached(xml) == stripped.removed[:2] + stripped.removed[2:]
    assert domain.media_attached(stripped.xml) == ()
    root = _root(stripped.xml)
    disks = root.findall("./devices/disk")
    assert [d.get("device") for d in disks] == ["disk", "disk", "cdrom", "cdrom"]
    assert [d.find("source") is not None for d in disks] == [True, True, False, False]
    assert at(root, "./devices/interface/model").get("type") == "virtio-transitional"
    # Stripping twice changes nothing more.
    again = domain.strip_install_media(stripped.xml)
    assert again.removed == () and again.xml == stripped.xml


def test_describe_domain(drivers: Mapping[str, DriverSet]) -> None:
    facts = domain.describe_domain(render(drivers, "win2008-x64"))
    assert facts == domain.DomainFacts(
        name="pv-win2008-x64",
        system_disk="vda",
        serial_log=OUT / "serial.log",
        install_cd=str(OUT / "install.iso"),
        vnc_port=None,
    )
    stripped = domain.describe_domain(
        domain.strip_install_media(render(drivers, "win2008-x64")).xml
    )
    assert stripped.install_cd is None


def test_volume_xml() -> None:
    root = _root(domain.volume_xml("pv.qcow2", 32))
    assert root.findtext("name") == "pv.qcow2"
    assert root.findtext("capacity") == "32"
    assert at(root, "capacity").get("unit") == "GiB"
    assert at(root, "./target/format").get("type") == "qcow2"


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
    assert domain.pci_slot_users(_devices(body)) == expected


def test_pci_slot_users_agree_with_the_plan_s_count(drivers: Mapping[str, DriverSet]) -> None:
    # The same rule for a domain pvinstall plans and for one it reads back.
    xml = render(drivers, "win2008r2-x64", "data_disks=[20, 40]")
    config = config_for("win2008r2-x64", "data_disks=[20, 40]")
    plan = domain.plan_domain(config, media_for(config, OUT, "pv"), name="pv", domain_type="kvm")
    assert len(domain.pci_slot_users(ET.fromstring(xml))) == domain.count_pci_slots(plan) == 4


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
    assert domain.osinfo_short_id(url) == short


def test_osinfo_url_is_read_from_the_metadata(drivers: Mapping[str, DriverSet]) -> None:
    root = ET.fromstring(render(drivers, "win2003-x86"))
    assert domain.osinfo_url(root) == "http://microsoft.com/win/2k3"
    assert domain.osinfo_url(ET.fromstring("<domain/>")) is None
    assert domain.profile_virtio_model(PROFILES["win2003-x64"]) == "virtio-transitional"
    assert domain.profile_virtio_model(PROFILES["win2008-x86"]) == "virtio"
