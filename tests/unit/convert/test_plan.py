"""Converting existing guests (builder/convert/plan.py): which devices move to virtio and how,
the staged phases, the boot disk, the drivers CD, idempotence, the slot budget, the
guest's profile, the state paths and the phase-one record."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from builder.convert import plan as convert
from builder.errors import InputError
from builder.vm import existing
from builder.windows.profiles import PROFILES, Profile

W2K8R2 = PROFILES["win2008r2-x64"]
W2K3 = PROFILES["win2003-x86"]
OSINFO = (
    "<metadata><libosinfo:libosinfo xmlns:libosinfo='http://libosinfo.org/xmlns/"
    "libvirt/domain/1.0'><libosinfo:os id='{url}'/></libosinfo:libosinfo></metadata>"
)
PATHS = convert.state_paths("w", Path("/state"), {}, Path("/home/u"))

IDE_BOOT = (
    "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
    "<source file='/img/w.qcow2'/><target dev='hda' bus='ide'/>"
    "<address type='drive' controller='0' bus='0' target='0' unit='0'/></disk>"
)
EMPTY_CD = (
    "<disk type='file' device='cdrom'><driver name='qemu' type='raw'/>"
    "<target dev='hdc' bus='ide'/><readonly/>"
    "<address type='drive' controller='0' bus='1' target='0' unit='0'/></disk>"
)
E1000 = (
    "<interface type='network'><mac address='52:54:00:00:00:01'/>"
    "<source network='default'/><model type='e1000'/>"
    "<address type='pci' domain='0x0000' bus='0x00' slot='0x03' function='0x0'/>"
    "</interface>"
)


def guest(
    devices: str,
    *,
    url: str | None = "http://microsoft.com/win/2k8r2",
    arch: str = "x86_64",
    machine: str = "pc-i440fx-7.2",
    boot: str | None = "hd",
) -> str:
    metadata = OSINFO.format(url=url) if url else ""
    os_boot = f"<boot dev='{boot}'/>" if boot else ""
    return (
        f"<domain type='kvm'><name>w</name><uuid>4fb6a3ef-c032-46f6-a731-cfed708214c6"
        f"</uuid>{metadata}<memory unit='KiB'>65536</memory><os><type arch='{arch}' "
        f"machine='{machine}'>hvm</type>{os_boot}</os><devices>{devices}</devices>"
        "</domain>"
    )


def root(xml: str) -> ET.Element:
    return ET.fromstring(xml)


def disks(xml: str, device: str = "disk") -> list[ET.Element]:
    return [d for d in root(xml).iterfind("./devices/disk") if d.get("device") == device]


def target(disk: ET.Element) -> tuple[str | None, str | None]:
    element = disk.find("target")
    assert element is not None
    return element.get("dev"), element.get("bus")


def nic_models(xml: str) -> list[str | None]:
    models = [i.find("model") for i in root(xml).iterfind("./devices/interface")]
    return [m.get("type") if m is not None else None for m in models]


# -- which devices switch --------------------------------------------------------------

# (case, devices, what pending_devices lists)
PENDING_CASES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    (
        "IDE disk and e1000",
        IDE_BOOT + EMPTY_CD + E1000,
        ("disk hda (ide)", "NIC e1000 (52:54:00:00:00:01, network default)"),
    ),
    (
        "SATA and SCSI disks",
        "<disk device='disk'><target dev='sda' bus='sata'/></disk>"
        "<disk device='disk'><target dev='sdb' bus='scsi'/></disk>",
        ("disk sda (sata)", "disk sdb (scsi)"),
    ),
    (
        "every emulated NIC, and a NIC without a model (QEMU's rtl8139)",
        "<interface type='user'><model type='rtl8139'/></interface>"
        "<interface type='user'><model type='ne2k_pci'/></interface>"
        "<interface type='user'/>",
        (
            "NIC rtl8139 (user-mode network)",
            "NIC ne2k_pci (user-mode network)",
            "NIC rtl8139 (default) (user-mode network)",
        ),
    ),
    (
        "virtio already, CD-ROMs, floppies, USB disks and host NICs stay",
        "<disk device='disk'><target dev='vda' bus='virtio'/></disk>"
        + EMPTY_CD
        + "<disk device='floppy'><target dev='fda' bus='fdc'/></disk>"
        "<disk device='disk'><target dev='sdc' bus='usb'/></disk>"
        "<interface type='user'><model type='virtio'/></interface>"
        "<interface type='user'><model type='virtio-transitional'/></interface>"
        "<interface type='hostdev'><source><address type='pci' bus='1' slot='0'/></source>"
        "</interface><interface type='user'><model type='vmxnet3'/></interface>",
        (),
    ),
)


@pytest.mark.parametrize(
    ("devices", "expected"), [c[1:] for c in PENDING_CASES], ids=[c[0] for c in PENDING_CASES]
)
def test_pending_devices(devices: str, expected: tuple[str, ...]) -> None:
    assert convert.pending_devices(guest(devices)) == expected


def test_a_switched_disk_is_virtio_without_its_drive_address() -> None:
    scsi = (
        "<disk type='file' device='disk'><source file='/img/d.raw'/>"
        "<target dev='sdb' bus='scsi' rotation_rate='1'/><wwn>5000c50015ea71ac</wwn>"
        "<vendor>X</vendor><product>Y</product>"
        "<address type='drive' controller='0' bus='0' target='0' unit='1'/></disk>"
    )
    plan = convert.plan_switch(guest(IDE_BOOT + scsi), "virtio")
    first, second = disks(plan.xml)
    assert [target(first), target(second)] == [("vda", "virtio"), ("vdb", "virtio")]
    for disk in (first, second):
        assert disk.get("model") == "virtio"
        assert [c.tag for c in disk if c.tag in ("address", "wwn", "vendor", "product")] == []
    assert second.find("target").attrib == {"dev": "vdb", "bus": "virtio"}  # type: ignore[union-attr]
    assert [s.describe() for s in plan.switches] == [
        "boot disk hda (ide) -> vda (virtio) (/img/w.qcow2)",
        "disk sdb (scsi) -> vdb (virtio) (/img/d.raw)",
    ]


def test_new_targets_skip_the_ones_in_use() -> None:
    xml = guest(
        "<disk device='disk'><target dev='vda' bus='virtio'/></disk>"
        + IDE_BOOT
        + "<disk device='disk'><target dev='hdb' bus='ide'/></disk>"
    )
    plan = convert.plan_switch(xml, "virtio")
    assert [target(d)[0] for d in disks(plan.xml)] == ["vda", "vdb", "vdc"]


@pytest.mark.parametrize(("profile", "model"), [(W2K3, "virtio-transitional"), (W2K8R2, "virtio")])
def test_the_model_is_the_profile_s(profile: Profile, model: str) -> None:
    plan = convert.plan_phase_one(guest(IDE_BOOT + EMPTY_CD + E1000), profile, PATHS)
    assert nic_models(plan.xml) == [model]
    temp = next(d for d in disks(plan.xml) if target(d)[1] == "virtio")
    assert temp.get("model") == model
    assert plan.record is not None and plan.record.model == model


# -- the staged phases -------------------------------------------------------------------


def test_phase_one_keeps_the_boot_disk_and_adds_the_temporary_disk_and_the_cd() -> None:
    data = (
        "<disk type='file' device='disk'><source file='/img/data.qcow2'/>"
        "<target dev='hdb' bus='ide'/></disk>"
    )
    xml = guest(IDE_BOOT + data + EMPTY_CD + E1000)
    plan = convert.plan_phase_one(xml, W2K8R2, PATHS)
    assert plan.action == "phase-one"
    boot, data_disk, temp = disks(plan.xml)
    assert target(boot) == ("hda", "ide")  # still IDE: Windows has no viostor yet
    assert boot.find("address") is not None
    assert target(data_disk) == ("vda", "virtio")
    assert target(temp) == ("vdb", "virtio")
    assert temp.find("source").get("file") == "/state/w-viostor.qcow2"  # type: ignore[union-attr]
    assert nic_models(plan.xml) == ["virtio"]
    (cd,) = disks(plan.xml, "cdrom")
    assert target(cd) == ("hdc", "ide")
    assert cd.find("source").get("file") == "/state/w-drivers.iso"  # type: ignore[union-attr]
    assert [s.describe() for s in plan.pending] == [
        "boot disk hda (ide) -> virtio at --finish (/img/w.qcow2)"
    ]
    assert plan.record == convert.StagedRecord(
        domain="w",
        profile="win2008r2-x64",
        model="virtio",
        drivers_iso="/state/w-drivers.iso",
        cd_target="hdc",
        cd_added=False,
        temp_disk="/state/w-viostor.qcow2",
        temp_target="vdb",
        boot_target="hda",
    )
    assert plan.pci_slots == 3  # data disk, temporary disk, NIC


def test_the_boot_disk_is_named_so_the_empty_disk_never_boots() -> None:
    plan = convert.plan_phase_one(guest(IDE_BOOT + EMPTY_CD, boot="hd"), W2K8R2, PATHS)
    os_element = root(plan.xml).find("os")
    assert os_element is not None and os_element.find("boot") is None
    boot = disks(plan.xml)[0]
    assert boot.find("boot").get("order") == "1"  # type: ignore[union-attr]
    assert plan.boot_order_named
    # The order of <os><boot dev=.../> is kept, device by device.
    two = convert.plan_switch(
        guest(EMPTY_CD + IDE_BOOT, boot="cdrom").replace(
            "<boot dev='cdrom'/>", "<boot dev='cdrom'/><boot dev='hd'/>"
        ),
        "virtio",
    )
    assert [
        (target(d)[0], d.find("boot").get("order"))  # type: ignore[union-attr]
        for d in root(two.xml).iterfind("./devices/disk")
    ] == [("hdc", "1"), ("vda", "2")]


def test_per_device_boot_orders_are_kept() -> None:
    second = (
        "<disk type='file' device='disk'><source file='/img/sys.qcow2'/>"
        "<target dev='hdb' bus='ide'/><boot order='1'/></disk>"
    )
    plan = convert.plan_phase_one(guest(IDE_BOOT + second + EMPTY_CD, boot=None), W2K8R2, PATHS)
    assert not plan.boot_order_named
    # The disk with boot order 1 is the boot disk, whatever its position.
    assert [s.old for s in plan.pending] == ["hdb (ide)"]
    assert [s.old for s in plan.switches] == ["hda (ide)"]


def test_phase_one_without_an_empty_cd_drive_adds_one() -> None:
    loaded = EMPTY_CD.replace("<target", "<source file='/iso/win.iso'/><target")
    plan = convert.plan_phase_one(guest(IDE_BOOT + loaded), W2K8R2, PATHS)
    cds = disks(plan.xml, "cdrom")
    assert [(target(d), d.find("source").get("file")) for d in cds] == [  # type: ignore[union-attr]
        (("hdc", "ide"), "/iso/win.iso"),
        (("hdb", "ide"), "/state/w-drivers.iso"),
    ]
    assert plan.record is not None and plan.record.cd_added
    # q35 has no IDE: the drive goes on SATA.
    q35 = convert.plan_phase_one(
        guest(
            "<disk device='disk'><source file='/w'/><target dev='sda' bus='sata'/></disk>",
            machine="pc-q35-7.2",
        ),
        W2K8R2,
        PATHS,
    )
    assert [target(d) for d in disks(q35.xml, "cdrom")] == [("sdb", "sata")]


def test_phase_one_refuses_when_every_ide_position_is_taken() -> None:
    full = "".join(
        EMPTY_CD.replace("hdc", dev).replace("<target", "<source file='/x'/><target")
        for dev in ("hdb", "hdc", "hdd")
    )
    with pytest.raises(InputError, match="no empty CD-ROM drive and no free IDE position"):
        convert.plan_phase_one(guest(IDE_BOOT + full), W2K8R2, PATHS)


def test_phase_one_without_a_pending_boot_disk_adds_only_the_cd() -> None:
    virtio_boot = "<disk device='disk'><source file='/w'/><target dev='vda' bus='virtio'/></disk>"
    plan = convert.plan_phase_one(guest(virtio_boot + E1000), W2K8R2, PATHS)
    assert plan.pending == () and plan.record is not None
    assert plan.record.temp_disk is None and plan.record.boot_target is None
    assert [target(d) for d in disks(plan.xml)] == [("vda", "virtio")]
    assert plan.added == ("drivers CD hda (/state/w-drivers.iso)",)


def test_finish_removes_what_phase_one_added_and_switches_the_boot_disk() -> None:
    original = guest(IDE_BOOT + EMPTY_CD + E1000)
    one = convert.plan_phase_one(original, W2K8R2, PATHS)
    assert one.record is not None
    assert convert.phase_one_pending(one.xml, one.record)
    two = convert.plan_finish(one.xml, one.record)
    assert two.action == "finish"
    assert [target(d) for d in disks(two.xml)] == [("vda", "virtio")]
    assert disks(two.xml)[0].find("boot").get("order") == "1"  # type: ignore[union-attr]
    (cd,) = disks(two.xml, "cdrom")  # the user's drive stays, emptied
    assert cd.find("source") is None
    assert two.removed == (
        "drivers ISO from CD-ROM hdc, the drive stays (/state/w-drivers.iso)",
        "temporary virtio disk vda (/state/w-viostor.qcow2)",
    )
    assert [s.describe() for s in two.switches] == [
        "boot disk hda (ide) -> vda (virtio) (/img/w.qcow2)"
    ]
    assert not convert.phase_one_pending(two.xml, one.record)
    # A drive phase one added goes again.
    loaded = EMPTY_CD.replace("<target", "<source file='/iso/win.iso'/><target")
    one = convert.plan_phase_one(guest(IDE_BOOT + loaded), W2K8R2, PATHS)
    assert one.record is not None
    two = convert.plan_finish(one.xml, one.record)
    assert [target(d) for d in disks(two.xml, "cdrom")] == [("hdc", "ide")]


def test_converting_a_converted_guest_changes_nothing() -> None:
    original = guest(IDE_BOOT + EMPTY_CD + E1000)
    switched = convert.plan_switch(original, "virtio")
    assert convert.pending_devices(switched.xml) == ()
    for plan in (
        convert.plan_switch(switched.xml, "virtio"),
        convert.plan_phase_one(switched.xml, W2K8R2, PATHS),
    ):
        assert (plan.action, plan.xml, plan.switches) == ("nothing", "", ())
    one = convert.plan_phase_one(original, W2K8R2, PATHS)
    assert one.record is not None
    finished = convert.plan_finish(one.xml, one.record)
    assert convert.plan_finish(finished.xml, one.record).action == "nothing"
    assert convert.plan_switch(finished.xml, "virtio").action == "nothing"


def test_the_new_xml_keeps_everything_else() -> None:
    xml = guest(IDE_BOOT + EMPTY_CD + E1000)
    plan = convert.plan_switch(xml, "virtio")
    new = root(plan.xml)
    assert new.findtext("uuid") == "4fb6a3ef-c032-46f6-a731-cfed708214c6"
    assert existing.osinfo_url(new) == "http://microsoft.com/win/2k8r2"
    assert "libosinfo:libosinfo" in plan.xml and "ns0" not in plan.xml
    nic = new.find("./devices/interface")
    assert nic is not None and nic.find("mac").get("address") == "52:54:00:00:00:01"  # type: ignore[union-attr]
    assert nic.find("address") is not None  # the NIC keeps its slot


# -- the slot budget ---------------------------------------------------------------------


def test_switching_disks_that_would_overflow_the_slots_is_refused() -> None:
    nics = "".join("<interface type='user'><model type='virtio'/></interface>" for _ in range(27))
    xml = guest(IDE_BOOT + "<disk device='disk'><target dev='hdb' bus='ide'/></disk>" + nics)
    with pytest.raises(InputError) as raised:
        convert.plan_switch(xml, "virtio")
    assert "w once converted needs 29 PCI slots, but a guest has 28" in str(raised.value)
    assert raised.value.problems[0].key == "DOMAIN"


@pytest.mark.parametrize(("virtio_nics", "expected"), [(27, 28), (28, None)])
def test_attach_counts_the_slots(virtio_nics: int, expected: int | None) -> None:
    nics = "".join(
        "<interface type='user'><model type='virtio'/></interface>" for _ in range(virtio_nics)
    )
    xml = guest(IDE_BOOT + nics + "<memballoon model='virtio'/><video/>")
    if expected is None:
        with pytest.raises(
            InputError,
            match="w with a virtio NIC on the user-mode network needs 29 PCI slots, but a guest",
        ):
            convert.plan_attach_nic(xml, W2K8R2, "user")
        return
    assert convert.plan_attach_nic(xml, W2K8R2, "user").pci_slots == expected


@pytest.mark.parametrize(("virtio_nics", "expected"), [(226, 229), (228, 231), (229, None)])
def test_attach_counts_root_ports_on_q35(virtio_nics: int, expected: int | None) -> None:
    # What libvirt puts in a q35 domain: the ICH9's SATA controller at 00:1f.2 and the
    # root ports take none; the xHCI and the virtio-serial controller take one each.
    nics = "".join(
        "<interface type='user'><model type='virtio'/></interface>" for _ in range(virtio_nics)
    )
    fixed = (
        "<controller type='sata' index='0'><address type='pci' domain='0x0000' bus='0x00' "
        "slot='0x1f' function='0x2'/></controller>"
        "<controller type='pci' index='0' model='pcie-root'/>"
        "<controller type='pci' index='1' model='pcie-root-port'/>"
        "<controller type='usb' index='0' model='qemu-xhci'/>"
        "<controller type='virtio-serial' index='0'/><video/><memballoon model='none'/>"
    )
    xml = guest(IDE_BOOT.replace("bus='ide'", "bus='sata'") + nics + fixed, machine="pc-q35-7.2")
    if expected is None:
        with pytest.raises(InputError, match="needs 232 PCI slots, but a q35 guest has 231"):
            convert.plan_attach_nic(xml, W2K8R2, "user")
        return
    plan = convert.plan_attach_nic(xml, W2K8R2, "user")
    assert (plan.pci_slots, plan.pci_budget) == (expected, 231)


# -- attach ------------------------------------------------------------------------------


def test_attach_disk_takes_the_first_target_free_in_both_definitions() -> None:
    persistent = guest(IDE_BOOT + "<disk device='disk'><target dev='vda' bus='virtio'/></disk>")
    live = guest(IDE_BOOT + "<disk device='disk'><target dev='vdb' bus='virtio'/></disk>")
    plan = convert.plan_attach_disk(persistent, W2K3, Path("/img/new.qcow2"), "qcow2", live)
    assert plan.target == "vdc" and plan.model == "virtio-transitional"
    disk = ET.fromstring(plan.device_xml)
    assert disk.attrib == {"type": "file", "device": "disk", "model": "virtio-transitional"}
    assert disk.find("driver").attrib == {"name": "qemu", "type": "qcow2"}  # type: ignore[union-attr]
    assert disk.find("source").attrib == {"file": "/img/new.qcow2"}  # type: ignore[union-attr]
    assert disk.find("target").attrib == {"dev": "vdc", "bus": "virtio"}  # type: ignore[union-attr]
    assert plan.label == "virtio disk vdc (/img/new.qcow2)"


@pytest.mark.parametrize(
    ("network", "expected"),
    [
        ("user", '<interface type="user">\n  <model type="virtio" />\n</interface>\n'),
        (
            "lab",
            '<interface type="network">\n  <source network="lab" />\n'
            '  <model type="virtio" />\n</interface>\n',
        ),
    ],
)
def test_attach_nic_xml(network: str, expected: str) -> None:
    plan = convert.plan_attach_nic(guest(IDE_BOOT), W2K8R2, network)
    assert plan.device_xml == expected and plan.kind == "nic"


# -- the guest's profile -----------------------------------------------------------------

# (metadata URL, domain arch, --profile, --arch, expected profile or error fragment)
PROFILE_CASES: tuple[tuple[str | None, str, str | None, str | None, str], ...] = (
    ("http://microsoft.com/win/2k8r2", "x86_64", None, None, "win2008r2-x64"),
    ("http://microsoft.com/win/2k8", "i686", None, None, "win2008-x86"),
    ("http://microsoft.com/win/2k3r2", "x86_64", None, None, "win2003-x64"),
    ("http://microsoft.com/win/2k3", "i686", None, None, "win2003-x86"),
    ("http://microsoft.com/win/2k8", "i686", None, "x64", "win2008-x64"),
    (None, "x86_64", "win2003-x86", None, "win2003-x86"),
    (None, "i686", "win2k8", None, "win2008-x86"),
    ("http://microsoft.com/win/2k8r2", "x86_64", "win2k3", None, "win2003-x64"),
    (None, "x86_64", None, None, "does not say which Windows it runs"),
    ("http://fedoraproject.org/fedora/38", "x86_64", None, None, "not a Windows pvinstall"),
    ("http://microsoft.com/win/10", "x86_64", None, None, "unknown profile 'win10'"),
    ("http://microsoft.com/win/2k8r2", "i686", None, None, "win2k8r2 has no x86 profile"),
    (None, "x86_64", "win95", None, "unknown profile 'win95'"),
)


@pytest.mark.parametrize(("url", "arch", "profile", "arch_option", "expected"), PROFILE_CASES)
def test_guest_profile(
    url: str | None, arch: str, profile: str | None, arch_option: str | None, expected: str
) -> None:
    xml = guest(IDE_BOOT, url=url, arch=arch)
    if expected in PROFILES:
        assert convert.guest_profile(xml, profile, arch_option).name == expected
        return
    with pytest.raises(InputError) as raised:
        convert.guest_profile(xml, profile, arch_option)
    assert expected in str(raised.value)
    assert raised.value.problems[0].key in ("--profile", "--arch")


# -- state -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("out", "environ", "expected"),
    [
        (Path("/o"), {"PVINSTALL_STATE_DIR": "/s"}, "/o"),
        (None, {"PVINSTALL_STATE_DIR": "/s", "XDG_STATE_HOME": "/x"}, "/s"),
        (None, {"XDG_STATE_HOME": "/x"}, "/x/pvinstall/my%20vm"),
        (None, {}, "/home/u/.local/state/pvinstall/my%20vm"),
    ],
)
def test_state_paths(out: Path | None, environ: dict[str, str], expected: str) -> None:
    paths = convert.state_paths("my vm", out, environ, Path("/home/u"))
    assert paths.directory == Path(expected)
    assert [p.name for p in (paths.backup, paths.record, paths.temp_disk, paths.drivers_iso)] == [
        "my%20vm.orig.xml",
        "my%20vm.convert.json",
        "my%20vm-viostor.qcow2",
        "my%20vm-drivers.iso",
    ]


# Names libvirt allows that a careless file name would merge (issue 18, item 9).
COLLIDING = [
    ("rt-col a", "rt-col_a"),
    ("rt-col/a", "rt-col_a"),
    ("a%20b", "a b"),
    (".hidden", "%2Ehidden"),
    ("caf\u00e9", "caf_"),
    ("x" * 300, "x" * 299 + "y"),
    ("x" * 300, "x" * 95 + "~"),
    ("", "%"),
]


@pytest.mark.parametrize(("first", "second"), COLLIDING)
def test_state_file_names_are_injective(first: str, second: str) -> None:
    paths = [convert.state_paths(n, None, {}, Path("/home/u")) for n in (first, second)]
    assert paths[0].directory != paths[1].directory
    assert paths[0].backup.name != paths[1].backup.name
    for path in paths:
        name = path.backup.name
        assert "/" not in name and not name.startswith(".") and len(name.encode()) <= 255


def test_file_stems_of_many_names_never_collide() -> None:
    names = ["a b", "a_b", "a%b", "a%25b", "a-b", "a.b", "a+b", ".a", "%2Ea", "\u00e9", "%C3%A9"]
    names += [f"x{chr(c)}" for c in range(32, 127)]
    stems = [convert.file_stem(n) for n in names]
    assert len(set(stems)) == len(names)
    assert all(set(s) <= set(convert._STEM_KEEPS) | {"%", "~"} for s in stems)


def test_the_record_round_trips_and_refuses_what_it_did_not_write(tmp_path: Path) -> None:
    plan = convert.plan_phase_one(guest(IDE_BOOT + EMPTY_CD), W2K3, PATHS)
    assert plan.record is not None
    text = plan.record.to_json()
    assert convert.StagedRecord.from_json(text, tmp_path) == plan.record
    for bad in (
        "{",
        "[]",
        '{"version": 9}',
        text.replace('"virtio-transitional"', '"e1000"'),
        text.replace('"cd_target"', '"cd"'),
    ):
        with pytest.raises(InputError, match="is not one pvinstall wrote") as raised:
            convert.StagedRecord.from_json(bad, tmp_path / "w.convert.json")
        assert raised.value.problems[0].key == "--finish"


def test_phase_one_is_pending_while_its_cd_or_disk_is_attached() -> None:
    virtio_boot = "<disk device='disk'><source file='/w'/><target dev='vda' bus='virtio'/></disk>"
    one = convert.plan_phase_one(guest(virtio_boot + EMPTY_CD + E1000), W2K8R2, PATHS)
    assert one.record is not None and one.record.temp_disk is None
    assert convert.phase_one_pending(one.xml, one.record)
    # Ejected by hand: an empty drive is not the drivers CD.
    ejected = one.xml.replace(f'<source file="{PATHS.drivers_iso}" />', "")
    assert ejected != one.xml
    assert not convert.phase_one_pending(ejected, one.record)


# -- on a remote host: volumes of a storage pool ------------------------------------------

VOLUMES = convert.convert_volumes("w", "pvpool")


def test_volume_names_clash_with_no_build_volume_and_no_other_domain() -> None:
    assert convert.convert_volumes("w", "p") == convert.ConvertVolumes(
        pool="p", drivers_iso="w@convert-drivers.iso", temp_disk="w@convert-viostor.qcow2"
    )
    assert convert.new_disk_volume("w", "vdb") == "w@vdb.qcow2"
    # A build names its volumes NAME.qcow2, NAME-dataN.qcow2 and NAME-<medium>, and its
    # names never hold '@'; a domain name with '@' or '/' has it escaped.
    names = ["w", "w-convert", "w@convert", "w.qcow2", "a/b", "w@vdb"]
    made = [
        name
        for n in names
        for name in (
            convert.convert_volumes(n, "p").drivers_iso,
            convert.convert_volumes(n, "p").temp_disk,
            convert.new_disk_volume(n, "vdb"),
        )
    ]
    assert len(set(made)) == len(made)
    assert all("/" not in n and n.count("@") == 1 for n in made)
    build_names = {
        f"{n}{suffix}"
        for n in ("w", "w-convert", "w.convert")
        for suffix in (".qcow2", "-data1.qcow2", "-drivers.iso", "-floppy.img", "-windows.iso")
    }
    assert not build_names & set(made)


def test_phase_one_on_a_pool_names_volumes_with_explicit_formats() -> None:
    xml = guest(IDE_BOOT + EMPTY_CD + E1000)
    plan = convert.plan_phase_one(xml, W2K8R2, PATHS, VOLUMES)
    boot, temp = disks(plan.xml)
    assert boot.get("type") == "file"  # the guest's own disk is left as it is
    assert temp.get("type") == "volume"
    assert temp.find("driver").attrib == {"name": "qemu", "type": "qcow2"}  # type: ignore[union-attr]
    assert temp.find("source").attrib == {  # type: ignore[union-attr]
        "pool": "pvpool",
        "volume": "w@convert-viostor.qcow2",
    }
    (cd,) = disks(plan.xml, "cdrom")
    assert cd.get("type") == "volume"
    assert cd.find("driver").attrib == {"name": "qemu", "type": "raw"}  # type: ignore[union-attr]
    assert cd.find("source").attrib == {  # type: ignore[union-attr]
        "pool": "pvpool",
        "volume": "w@convert-drivers.iso",
    }
    assert "/state" not in plan.xml  # no path of this machine
    assert plan.added == (
        "temporary virtio disk vda (volume pvpool/w@convert-viostor.qcow2)",
        "drivers CD hdc (volume pvpool/w@convert-drivers.iso), in the empty drive",
    )
    record = plan.record
    assert record is not None
    assert (record.pool, record.drivers_iso, record.temp_disk) == (
        "pvpool",
        "w@convert-drivers.iso",
        "w@convert-viostor.qcow2",
    )
    assert record.volumes == ("w@convert-drivers.iso", "w@convert-viostor.qcow2")
    again = convert.StagedRecord.from_json(record.to_json(), Path("/state/w.convert.json"))
    assert again == record


def test_finish_on_a_pool_removes_only_the_recorded_volumes() -> None:
    # A drive reading the same volume name from another pool is not phase one's.
    other = (
        "<disk type='volume' device='cdrom'><driver name='qemu' type='raw'/>"
        "<source pool='elsewhere' volume='w@convert-drivers.iso'/>"
        "<target dev='hdd' bus='ide'/><readonly/></disk>"
    )
    one = convert.plan_phase_one(guest(IDE_BOOT + EMPTY_CD + other), W2K8R2, PATHS, VOLUMES)
    assert one.record is not None and convert.phase_one_pending(one.xml, one.record)
    two = convert.plan_finish(one.xml, one.record)
    cdroms = disks(two.xml, "cdrom")
    assert [(target(d)[0], d.get("type")) for d in cdroms] == [("hdc", "file"), ("hdd", "volume")]
    assert cdroms[0].find("source") is None
    assert two.removed == (
        "drivers ISO from CD-ROM hdc, the drive stays (volume pvpool/w@convert-drivers.iso)",
        "temporary virtio disk vda (volume pvpool/w@convert-viostor.qcow2)",
    )
    assert not convert.phase_one_pending(two.xml, one.record)
    # A file and a volume of the same name are not each other.
    volume_cd = ET.fromstring(other)
    file_cd = ET.fromstring(
        "<disk type='file' device='cdrom'><source file='w@convert-drivers.iso'/></disk>"
    )
    assert convert.Placed("w@convert-drivers.iso", "elsewhere").read_by(volume_cd)
    assert not convert.Placed("w@convert-drivers.iso").read_by(volume_cd)
    assert not convert.Placed("w@convert-drivers.iso", "elsewhere").read_by(file_cd)
    assert convert.Placed("w@convert-drivers.iso").read_by(file_cd)


def test_an_older_record_without_a_pool_means_files() -> None:
    plan = convert.plan_phase_one(guest(IDE_BOOT + EMPTY_CD), W2K8R2, PATHS)
    assert plan.record is not None
    text = plan.record.to_json().replace('  "pool": null,\n', "").replace(',\n  "pool": null', "")
    assert "pool" not in text
    old = convert.StagedRecord.from_json(text, Path("/state/w.convert.json"))
    assert old.pool is None and old.volumes == ()


def test_attach_disk_as_a_volume() -> None:
    volume = convert.Placed("w@vda.qcow2", "pvpool")
    plan = convert.plan_attach_disk(guest(IDE_BOOT), W2K8R2, volume, "qcow2")
    disk = ET.fromstring(plan.device_xml)
    assert disk.get("type") == "volume"
    assert disk.find("driver").attrib == {"name": "qemu", "type": "qcow2"}  # type: ignore[union-attr]
    assert disk.find("source").attrib == {"pool": "pvpool", "volume": "w@vda.qcow2"}  # type: ignore[union-attr]
    assert plan.label == "virtio disk vda (volume pvpool/w@vda.qcow2)"


@pytest.mark.parametrize(
    ("disk", "expected"),
    [
        (IDE_BOOT, (None, "/img/w.qcow2")),
        (
            "<disk type='volume' device='disk'><source pool='p1' volume='w.qcow2'/>"
            "<target dev='hda' bus='ide'/></disk>",
            ("p1", "w.qcow2"),
        ),
        ("<disk type='volume' device='disk'><target dev='hda' bus='ide'/></disk>", (None, "")),
        ("", (None, "")),
    ],
)
def test_the_boot_disk_s_pool(disk: str, expected: tuple[str | None, str]) -> None:
    assert convert.boot_disk_source(guest(disk + EMPTY_CD)) == expected
