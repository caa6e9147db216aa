"""builder/vm/domain.py and builder/vm/virt.py against a real libvirtd with QEMU (TCG).

The boot probe (tests/integration/probe.py) stands in for Windows setup: as the
"install CD" it boots, reports over the serial console which PCI devices, disks, CDs
and NICs the guest sees, and powers off through ACPI like setup's last step; in
`hang` mode it never powers off. Each boot takes about 15 s.

The probe's PCI report is the oracle of the driver <-> device table: for every
virtio device of a domain pvinstall generates, the IDs the guest sees must be the
ones drivers/catalog.toml says QEMU presents for its model, and they must be among
the hardware IDs of the driver selected for it.

The probe kernel is 64-bit, so the boots use the x64 profiles; the x86 profiles'
domains (i686, qemu32) are defined but not booted.
"""

from __future__ import annotations

import shutil
import stat
import subprocess
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from builder.config import BuildConfig, load_config
from builder.errors import BuildError, InputError
from builder.monitor import NullMonitor
from builder.virtio.facts import PciIds, load_driver_facts
from builder.virtio.selection import DriverSet
from builder.vm import domain, existing, virt
from builder.vm.devices import VirtioModel
from builder.windows.profiles import PROFILES
from tests.fixtures.domain_xml import removable_media
from tests.integration import probe
from tests.integration.libvirt_env import boot_domain, unique_domain_name
from tests.integration.test_probe import make_floppy
from tests.unit.vm.common import GOLDEN, config_for, driversets, media_for

pytestmark = pytest.mark.integration

INSTALL_MINUTES = 3.0
DRIVERS_LABEL = "PVDRIVERS"


class Statuses(NullMonitor):
    def __init__(self) -> None:
        self.statuses: list[dict[str, object]] = []

    def status(self, **fields: object) -> None:
        self.statuses.append(fields)


@pytest.fixture(scope="module")
def drivers(tmp_path_factory: pytest.TempPathFactory) -> Mapping[str, DriverSet]:
    return driversets(tmp_path_factory.mktemp("vw"))


@pytest.fixture
def name(conn: virt.Connection) -> Iterator[str]:
    value = unique_domain_name("pvvirt")
    yield value
    virt.remove_domain(conn, value)


FACTS = load_driver_facts()


def drivers_iso(path: Path) -> Path:
    """A small data CD labelled like drivers.iso, made with xorriso."""
    tree = path.parent / "drivers-tree"
    (tree / "viostor").mkdir(parents=True, exist_ok=True)
    (tree / "viostor" / "viostor.inf").write_bytes(b"; not a real INF\r\n")
    subprocess.run(
        [
            "xorriso",
            "-as",
            "mkisofs",
            "-quiet",
            "-o",
            str(path),
            "-V",
            DRIVERS_LABEL,
            "-J",
            str(tree),
        ],
        check=True,
        capture_output=True,
    )
    return path


def prepare(
    conn: virt.Connection, config: BuildConfig, out: Path, name: str, install_iso: Path | None
) -> domain.MediaPaths:
    """The media a build would have written, and the disks --define creates."""
    out.mkdir(parents=True, exist_ok=True)
    make_floppy(out / "floppy.img", {"WINNT.SIF": b"[Data]\r\n"})
    drivers_iso(out / "drivers.iso")
    virt.create_disks(conn, config, out, name, NullMonitor())
    return media_for(config, out, name, install_cd=install_iso)


def _hardware_ids(ids: PciIds) -> set[str]:
    return {h.upper() for h in ids.hardware_ids()}


def assert_devices_match(
    report: probe.ProbeReport, plan: domain.DomainPlan, drivers: DriverSet
) -> None:
    """The oracle: what the guest sees is what the table says, and the driver binds it."""
    facts = load_driver_facts()
    virtio_seen = [p for p in report.pci if p.vendor == "1af4"]
    expected: list[tuple[str, str, str, str, str]] = []
    for device in plan.virtio_devices:
        ids = facts.presented_ids(device.kind, device.model, plan.machine)
        expected.append(
            (
                ids.vendor.lower(),
                ids.device.lower(),
                ids.subsystem_vendor.lower(),
                ids.subsystem.lower(),
                ids.revision.lower(),
            )
        )
        driver = next(d for d in drivers.selected if d.info and d.info.device == device.kind)
        listed = {h.upper() for h in driver.hardware_ids}
        seen = next(p for p in virtio_seen if p.device == ids.device.lower())
        observed = PciIds(
            seen.vendor.upper(),
            seen.device.upper(),
            seen.subsys_vendor.upper(),
            seen.subsys_device.upper(),
            seen.revision.upper(),
        )
        assert _hardware_ids(observed) & listed, (device, observed, driver.hardware_ids)
    observed_all = sorted(
        (p.vendor, p.device, p.subsys_vendor, p.subsys_device, p.revision) for p in virtio_seen
    )
    assert observed_all == sorted(expected), report.pci


# -- schema ------------------------------------------------------------------------------


@pytest.mark.parametrize("golden", sorted(GOLDEN.glob("*.xml")), ids=lambda p: p.stem)
def test_golden_domains_validate_against_libvirt_s_schema(golden: Path) -> None:
    assert shutil.which("virt-xml-validate"), "virt-xml-validate (libvirt-clients) is missing"
    done = subprocess.run(
        ["virt-xml-validate", str(golden), "domain"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("golden", sorted(GOLDEN.glob("*.xml")), ids=lambda p: p.stem)
def test_qemu_driver_defines_every_golden_domain(conn: virt.Connection, golden: Path) -> None:
    # The QEMU driver checks more than the schema (machine, devices, features
    # against the QEMU binary's capabilities); define and undefine only.
    name = unique_domain_name("pvgolden")
    xml = golden.read_text(encoding="utf-8").replace(
        f"<name>{existing.describe_domain(golden.read_text(encoding='utf-8')).name}</name>",
        f"<name>{name}</name>",
    )
    try:
        virt.define(conn, xml.replace("<domain type='kvm'", "<domain type='qemu'"), replace=False)
        assert virt.domain_state(conn, name) is not None
    finally:
        virt.remove_domain(conn, name)


@pytest.mark.parametrize(("data_disks", "defines"), [(227, True), (228, False)])
def test_libvirt_takes_231_pcie_devices_on_q35_and_no_more(
    conn: virt.Connection, data_disks: int, defines: bool
) -> None:
    """The q35 budget (docs/windows-modern.md §7) against libvirt's own addressing: the
    2022 domain with 227 data disks has 231 PCIe devices (with the NIC, the xHCI and
    the guest agent's controller) and defines; one more disk and libvirt finds no slot
    for a root port, as pvinstall's check says before it gets there."""
    name = unique_domain_name("pvt-i16-slots")
    sizes = ", ".join(["1"] * data_disks)
    config = load_config(
        PROFILES["win2022-x64"], sets=["admin_password=x", "network=user", f"data_disks=[{sizes}]"]
    )
    out = Path("/nonexistent/pvinstall-slots")
    system, data = domain.default_disk_paths(config, out, name)
    media = domain.MediaPaths((), system, data, out / "serial.log")
    plan = domain.plan_domain(config, media, name=name, domain_type="qemu")
    xml = domain.render_domain_xml(plan)
    assert domain.count_pci_slots(plan) == data_disks + 4
    if defines:
        domain.check_slot_budget(plan)
    else:
        with pytest.raises(InputError, match="231 PCIe root ports"):
            domain.check_slot_budget(plan)
    try:
        if defines:
            virt.define(conn, xml, replace=False)
            live = existing.parse_xml(virt.inactive_xml(conn, name))
            ports = live.findall("./devices/controller[@model='pcie-root-port']")
            assert len(ports) == 232  # one per device and libvirt's spare
            assert len(existing.pci_slot_users(live)) == 231
        else:
            with pytest.raises(BuildError, match="PCI"):
                virt.define(conn, xml, replace=False)
    finally:
        virt.remove_domain(conn, name)


def test_domain_type_on_the_real_daemon(conn: virt.Connection) -> None:
    assert virt.choose_domain_type(conn, "qemu") == "qemu"
    assert virt.choose_domain_type(conn, None) in ("kvm", "qemu")


# -- disks -------------------------------------------------------------------------------


def test_create_disks_with_qemu_img(conn: virt.Connection, tmp_path: Path) -> None:
    config = config_for("win2008r2-x64", "data_disks=[2]")
    paths = virt.create_disks(conn, config, tmp_path, "pv", NullMonitor())
    assert paths == (tmp_path / "pv.qcow2", (tmp_path / "pv-data1.qcow2",))
    info = subprocess.run(
        ["qemu-img", "info", str(paths[0])], capture_output=True, text=True, check=True
    ).stdout
    assert "file format: qcow2" in info and "virtual size: 32 GiB" in info
    with pytest.raises(Exception, match="already exists"):
        virt.create_disks(conn, config, tmp_path, "pv", NullMonitor())
    before = paths[0].stat().st_ino
    virt.create_disks(conn, config, tmp_path, "pv", NullMonitor(), replace=True)
    assert paths[0].stat().st_ino != before or paths[0].stat().st_size < 1024**2
    # A guest's disk is as private as its answer files.
    assert [stat.S_IMODE(p.stat().st_mode) for p in (paths[0], *paths[1])] == [0o600, 0o600]


def test_pool_volumes_are_private_too(conn: virt.Connection, tmp_path: Path) -> None:
    """Volumes created through a storage pool get libvirt's default volume mode, 0600."""
    pool = unique_domain_name("pvpool")
    folder = tmp_path / "pool"
    folder.mkdir()
    handle = conn.handle.storagePoolDefineXML(
        f"<pool type='dir'><name>{pool}</name><target><path>{folder}</path></target></pool>"
    )
    try:
        handle.create()
        config = config_for("win2008r2-x64", f"storage_pool={pool}", "data_disks=[1]")
        system, data = virt.create_disks(conn, config, tmp_path / "out", "pvpool", NullMonitor())
        assert system.parent == folder
        assert [stat.S_IMODE(p.stat().st_mode) for p in (system, *data)] == [0o600, 0o600]
    finally:
        for volume in handle.listAllVolumes(0):
            volume.delete(0)
        if handle.isActive():
            handle.destroy()
        handle.undefine()


def test_a_missing_network_at_start_is_a_sentence(
    conn: virt.Connection, name: str, drivers: Mapping[str, DriverSet], tmp_path: Path
) -> None:
    config = config_for("win2008r2-x64", "network=pvinstall-no-such-net")
    media = media_for(config, tmp_path, name)
    virt.define(
        conn,
        domain.domain_xml(
            config, drivers["win2008r2-x64"], media, facts=FACTS, name=name, domain_type="qemu"
        ),
        replace=False,
    )
    with pytest.raises(BuildError) as raised:
        virt.install(
            conn,
            name,
            media=media.media,
            timeout_minutes=1,
            out_dir=tmp_path,
            monitor=NullMonitor(),
        )
    message = str(raised.value)
    assert message.startswith(f"starting the domain {name} on qemu:///system failed: ")
    assert "pvinstall-no-such-net" in message
    assert "Traceback" not in message


# -- boots -------------------------------------------------------------------------------


@pytest.mark.boot
def test_install_ends_on_power_off_and_leaves_a_clean_template(
    conn: virt.Connection, name: str, drivers: Mapping[str, DriverSet], tmp_path: Path
) -> None:
    """2003 x64 with a data disk: the probe as the install CD powers off like setup."""
    install_cd = probe.build_probe_iso(probe.DEFAULT_CACHE_DIR, mode="report")
    config = config_for("win2003-x64", "network=user", "data_disks=[1]")
    media = prepare(conn, config, tmp_path, name, install_cd)
    plan = domain.plan_domain(config, media, name=name, domain_type="qemu")
    xml = domain.domain_xml(
        config, drivers["win2003-x64"], media, facts=FACTS, name=name, domain_type="qemu"
    )
    virt.define(conn, xml, replace=False)

    monitor = Statuses()
    start = time.monotonic()
    result = virt.install(
        conn,
        name,
        media=media.media,
        timeout_minutes=INSTALL_MINUTES,
        out_dir=tmp_path,
        monitor=monitor,
        status_seconds=2,
    )
    print(f"install (probe) took {time.monotonic() - start:.1f}s")
    log = (tmp_path / "serial.log").read_text(errors="replace")
    report = probe.parse_probe_log(log)

    assert result.shutoff_reason == "shutdown"
    assert report.ended and report.mode == "report", log[-2000:]
    persistent = virt.inactive_xml(conn, name)
    assert removable_media(persistent) == ()
    root = existing.parse_xml(persistent)
    kinds = [
        (d.get("device"), d.find("source") is not None) for d in root.iterfind("./devices/disk")
    ]
    assert kinds == [("disk", True), ("disk", True), ("cdrom", False), ("cdrom", False)]
    assert result.removed_media == (
        f"hda: {install_cd}",
        f"hdc: {tmp_path / 'drivers.iso'}",
        f"fda: {tmp_path / 'floppy.img'}",
    )
    assert virt.domain_state(conn, name) == ("shut off", "shutdown")
    assert monitor.statuses and all("disk" in s for s in monitor.statuses)

    # What the guest saw: the transitional IDs the 2003 INFs list, every medium.
    assert_devices_match(report, plan, drivers["win2003-x64"])
    assert len(report.pci_with_ids("1af4", "1001")) == 2
    blk = report.pci_with_ids("1af4", "1001")[0]
    assert (blk.subsys_vendor, blk.subsys_device) == ("1af4", "0002")
    net = report.pci_with_ids("1af4", "1000")
    assert [(n.subsys_vendor, n.subsys_device) for n in net] == [("1af4", "0001")]
    assert report.cdrom_with_label(probe.PROBE_ISO_LABEL) is not None, report.cdroms
    assert report.cdrom_with_label(DRIVERS_LABEL) is not None, report.cdroms
    assert report.floppy is not None and "WINNT.SIF" in report.floppy
    assert report.disks["vda"].size_bytes == config.disk_size_gib * 1024**3
    assert report.disks["vdb"].size_bytes == 1024**3
    assert report.disks["vda"].writable and len(report.nics) == 1


@pytest.mark.boot
def test_install_timeout_saves_a_screenshot_and_stops_the_guest(
    conn: virt.Connection, name: str, drivers: Mapping[str, DriverSet], tmp_path: Path
) -> None:
    install_cd = probe.build_probe_iso(probe.DEFAULT_CACHE_DIR, mode="hang")
    config = config_for("win2008r2-x64", "network=user")
    media = prepare(conn, config, tmp_path, name, install_cd)
    virt.define(
        conn,
        domain.domain_xml(
            config, drivers["win2008r2-x64"], media, facts=FACTS, name=name, domain_type="qemu"
        ),
        replace=False,
    )
    with pytest.raises(BuildError) as raised:
        virt.install(
            conn,
            name,
            media=media.media,
            timeout_minutes=0.5,
            out_dir=tmp_path,
            monitor=NullMonitor(),
        )
    message = str(raised.value)
    screenshot = tmp_path / "screenshot.png"
    assert "did not power off within 0.5 minutes (it was running)" in message
    assert str(screenshot) in message and str(tmp_path / "serial.log") in message
    assert screenshot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert virt.domain_state(conn, name) == ("shut off", "destroyed")
    assert "PVPROBE hang" in (tmp_path / "serial.log").read_text(errors="replace")


@pytest.mark.boot
@pytest.mark.parametrize(
    "model", [None, "virtio-non-transitional"], ids=["virtio", "non-transitional"]
)
def test_2008_r2_devices_match_the_2k8r2_infs(
    conn: virt.Connection, drivers: Mapping[str, DriverSet], tmp_path: Path, model: str | None
) -> None:
    """2008 R2 with plain virtio (transitional on i440fx) and modern-only devices: both
    ID sets are in the 2k8R2 INFs, and the Hyper-V features start under TCG."""
    name = unique_domain_name("pv2k8r2")
    config = config_for("win2008r2-x64", "network=user")
    media = prepare(
        conn, config, tmp_path, name, probe.build_probe_iso(probe.DEFAULT_CACHE_DIR, mode="report")
    )
    plan = domain.plan_domain(config, media, name=name, domain_type="qemu", virtio_model=model)
    xml = domain.domain_xml(
        config,
        drivers["win2008r2-x64"],
        media,
        facts=FACTS,
        name=name,
        domain_type="qemu",
        virtio_model=model,
    )
    assert PROFILES["win2008r2-x64"].hyperv and "<hyperv" in xml
    result = boot_domain(xml, uri=conn.uri, timeout=180)
    report = probe.parse_probe_log(result.serial_log)
    assert result.clean_shutdown, result.describe()
    assert_devices_match(report, plan, drivers["win2008r2-x64"])
    modern = model == "virtio-non-transitional"
    assert len(report.pci_with_ids("1af4", "1042" if modern else "1001")) == 1
    assert len(report.pci_with_ids("1af4", "1041" if modern else "1000")) == 1


# libvirt device XML for each [pci_ids] row of drivers/catalog.toml, by model.
_DEVICE_XML = {
    "virtio-blk": "<disk type='file' device='disk' model='{model}'><driver name='qemu' "
    "type='qcow2'/><source file='{disk}'/><target dev='vda' bus='virtio'/></disk>",
    "virtio-net": "<interface type='user'><model type='{model}'/></interface>",
    "virtio-balloon": "<memballoon model='{model}'/>",
    "virtio-serial": "<controller type='virtio-serial' model='{model}'/>",
    "virtio-scsi": "<controller type='scsi' model='{scsi}'/>",
    "virtio-rng": "<rng model='{model}'><backend model='random'>/dev/urandom</backend></rng>",
}


@pytest.mark.boot
@pytest.mark.parametrize(
    ("machine", "model"),
    [("pc", "virtio-transitional"), ("pc", "virtio-non-transitional"), ("q35", "virtio")],
)
def test_the_catalog_device_table_is_what_qemu_presents(
    conn: virt.Connection, tmp_path: Path, machine: str, model: VirtioModel
) -> None:
    """Every row of [pci_ids] against a booted guest: one device of each kind, with a
    libvirt model, on a machine, that [device_models] maps to the row (on q35 a plain
    'virtio' device is modern-only)."""
    facts = load_driver_facts()
    row = facts.device_models[machine][model]
    assert facts.presented_ids("virtio-blk", model, machine) == facts.pci_ids["virtio-blk"][row]
    disk = tmp_path / "disk.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "64M"], check=True)
    name = unique_domain_name("pvtable")
    devices = "\n    ".join(
        x.format(model=model, scsi=domain.SCSI_CONTROLLER_MODELS[model], disk=disk)
        for x in _DEVICE_XML.values()
    )
    iso = probe.build_probe_iso(probe.DEFAULT_CACHE_DIR, mode="report")
    cd_bus = {"pc": ("hda", "ide"), "q35": ("sda", "sata")}[machine]
    xml = f"""<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>512</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='{machine}'>hvm</type></os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff>
  <devices>
    <disk type='file' device='cdrom'><driver name='qemu' type='raw'/><source file='{iso}'/>
      <target dev='{cd_bus[0]}' bus='{cd_bus[1]}'/><readonly/><boot order='1'/></disk>
    {devices}
    <serial type='file'><source path='{tmp_path / "serial.log"}'/><target port='0'/></serial>
  </devices>
</domain>"""
    assert sorted(_DEVICE_XML) == sorted(facts.pci_ids)
    result = boot_domain(xml, uri=conn.uri, timeout=180)
    report = probe.parse_probe_log(result.serial_log)
    assert result.clean_shutdown and report.ended, result.describe()
    seen = sorted(
        (p.vendor, p.device, p.subsys_vendor, p.subsys_device, p.revision)
        for p in report.pci
        if p.vendor == "1af4"
    )
    expected = sorted(
        (
            i.vendor.lower(),
            i.device.lower(),
            i.subsystem_vendor.lower(),
            i.subsystem.lower(),
            i.revision.lower(),
        )
        for i in (facts.pci_ids[kind][row] for kind in _DEVICE_XML)
    )
    assert seen == expected
