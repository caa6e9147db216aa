"""The domain XML (builder/vm/domain.py, templates/domain.xml.j2): golden files per profile,
the PCI slot budget, the driver <-> device check, and names.

Regenerate the golden files with PVTEST_REGENERATE_GOLDEN=1.
"""

from __future__ import annotations

import dataclasses
import subprocess
from collections.abc import Mapping
from pathlib import Path

import pytest

from builder.errors import BuildError, InputError
from builder.virtio.facts import load_driver_facts
from builder.virtio.selection import DriverSet
from builder.vm import devices, domain
from builder.vm.devices import AttachedMedium, Removable
from builder.windows.profiles import PROFILES
from tests.unit.vm.common import (
    GOLDEN,
    GOLDEN_CASES,
    OUT,
    REGENERATE,
    _root,
    at,
    config_for,
    media_for,
    render,
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


FACTS = load_driver_facts()


def test_the_golden_files_are_exactly_the_cases() -> None:
    assert sorted(p.stem for p in GOLDEN.glob("*.xml")) == sorted(c[0] for c in GOLDEN_CASES)


# -- what the XML says, per profile: its relations to the profile's row ------------------


@pytest.mark.parametrize("profile", list(PROFILES))
def test_the_domain_follows_the_profile_row(drivers: Mapping[str, DriverSet], profile: str) -> None:
    """What no golden file can check for a profile that has none yet: the XML says what
    the row says (machine, firmware features, buses, models, media, osinfo)."""
    p = PROFILES[profile]
    config = config_for(profile)
    media = media_for(config, OUT, f"pv-{profile}")
    root = _root(render(drivers, profile))
    os_type = at(root, "./os/type")
    assert (os_type.get("machine"), os_type.get("arch")) == (p.machine, domain.GUEST_ARCH[p.arch])
    features = at(root, "features")
    assert (features.find("hyperv") is not None) == p.hyperv
    assert (features.find("pae") is not None) == (p.arch == "x86")
    meta = "{http://libosinfo.org/xmlns/libvirt/domain/1.0}"
    assert at(root, f"./metadata/{meta}libosinfo/{meta}os").get("id") == p.osinfo_url
    assert root.findtext("memory") == str(config.memory_mib)
    # Every virtio device has the profile's model; every drive is on the profile's bus
    # and holds what the media table attached there; the floppy only with a controller.
    models = [d.get("model") for d in root.iterfind("./devices/disk[@device='disk']")]
    models += [m.get("type") for m in root.iterfind("./devices/interface/model")]
    assert set(models) == {p.virtio_model}
    drives = {
        at(d, "target").get("dev"): (d.get("device"), at(d, "target").get("bus"))
        for d in root.iterfind("./devices/disk")
        if d.get("device") != "disk"
    }
    assert {bus for device, bus in drives.values() if device == "cdrom"} == {p.cd_bus}
    assert (
        ("floppy", "fdc") in drives.values()
        if p.floppy_controller
        else all(device != "floppy" for device, _ in drives.values())
    )
    attached = {str(m.path) for m in media.media if m.path is not None}
    sources = {
        devices.source_of(d) for d in root.iterfind("./devices/disk") if d.get("device") != "disk"
    }
    assert sources - {""} == attached
    assert at(root, "./devices/controller[@type='usb']").get("model") == p.usb_model
    # Nothing libvirt assigns at define time: the file is the same for the same inputs.
    assert root.find("uuid") is None and root.find("./devices/interface/mac") is None
    # The machine: UEFI with the row's Secure Boot (SMM with it), its TPM, its CPU.
    os_element = at(root, "os")
    assert os_element.get("firmware") == ("efi" if p.firmware.value == "efi" else None)
    secure = {f.get("name"): f.get("enabled") for f in os_element.iterfind("./firmware/feature")}
    if p.firmware.value == "efi":
        on = "yes" if p.secure_boot else "no"
        assert secure == {"secure-boot": on, "enrolled-keys": on}
    assert (features.find("smm") is not None) == p.secure_boot
    assert (root.find("./devices/tpm") is not None) == p.tpm
    cpu = root.find("cpu")
    if p.cpu_model is None:
        assert cpu is None  # QEMU's default: no host-model / host-passthrough
    else:
        assert cpu is not None and at(cpu, "model").text == p.cpu_model
        required = {f.get("name") for f in cpu.iterfind("feature[@policy='require']")}
        assert required == ({"popcnt", "sse4.2"} if p.cpu_level else set())
    channel = root.find("./devices/channel/target")
    assert (channel is not None) == ("qemu-ga" in p.installers)
    override = root.find("{http://libvirt.org/schemas/domain/qemu/1.0}override")
    assert (override is not None) == (p.discard_granularity is not None)


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
    media = media_for(config, OUT, "pv", windows_iso=None)
    root = _root(
        domain.domain_xml(
            config, drivers["win2008-x64"], media, facts=FACTS, name="pv", domain_type="qemu"
        )
    )
    first_cd = next(d for d in root.iterfind("./devices/disk") if d.get("device") == "cdrom")
    assert first_cd.find("source") is None
    assert at(first_cd, "boot").get("order") == "2"


def test_paths_are_escaped(drivers: Mapping[str, DriverSet]) -> None:
    out = Path('/srv/it\'s <a> & "b"')
    config = config_for("win2008-x64")
    xml = domain.domain_xml(
        config,
        drivers["win2008-x64"],
        media_for(config, out, "pv"),
        facts=FACTS,
        name="pv",
        domain_type="kvm",
    )
    root = _root(xml)
    assert at(root, "./devices/disk/source").get("file") == str(out / "pv.qcow2")


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


@pytest.mark.parametrize(
    ("data_disks", "slots", "error"),
    [
        # The system disk, the NIC, the guest agent's virtio-serial and the xHCI: 4.
        (0, 4, None),
        (227, 231, None),
        (228, 232, "needs 232 PCI slots"),
    ],
)
def test_the_q35_budget_is_one_root_port_per_device(
    data_disks: int, slots: int, error: str | None
) -> None:
    sets = (f"data_disks=[{', '.join(['1'] * data_disks)}]",) if data_disks else ()
    config = config_for("win2022-x64", *sets)
    plan = domain.plan_domain(config, media_for(config, OUT, "pv"), name="pv", domain_type="kvm")
    assert domain.count_pci_slots(plan) == slots
    if error is None:
        domain.check_slot_budget(plan)
        return
    with pytest.raises(InputError) as raised:
        domain.check_slot_budget(plan)
    message = str(raised.value)
    assert error in message and "231 PCIe root ports" in message
    assert "at most 227 data disks" in message


def test_the_budget_follows_the_machine_family() -> None:
    assert [devices.machine_family(m) for m in ("pc", "pc-i440fx-7.2", "q35", "pc-q35-7.2")] == [
        "pc",
        "pc",
        "q35",
        "q35",
    ]
    assert devices.pci_budget("pc-q35-7.2") == 29 * 8 - 1 == 231
    assert devices.pci_budget("pc-i440fx-7.2") == 28


# -- the machine: firmware, CPU, Hyper-V, TPM, the guest agent, discard --------------------


def _plan(
    profile: str, *sets: str, domain_type: str = "kvm", **kwargs: object
) -> domain.DomainPlan:
    config = config_for(profile, *sets)
    return domain.plan_domain(
        config,
        media_for(config, OUT, "pv"),
        name="pv",
        domain_type=domain_type,
        **kwargs,  # type: ignore[arg-type]
    )


def test_hyperv_under_tcg_keeps_the_set_qemu_accepts() -> None:
    kvm = [name for name, _ in _plan("win2022-x64").hyperv_features]
    tcg = [name for name, _ in _plan("win2022-x64", domain_type="qemu").hyperv_features]
    assert {"vpindex", "synic", "stimer", "tlbflush", "ipi"} <= set(kvm)
    assert tcg == ["relaxed", "vapic", "spinlocks"]
    # stimer needs the Hyper-V clock: the KVM domain has it, the TCG one not.
    assert (
        _plan("win2022-x64").hypervclock
        and not _plan("win2022-x64", domain_type="qemu").hypervclock
    )
    # 2008 R2 keeps the basic set under KVM too.
    assert [n for n, _ in _plan("win2008r2-x64").hyperv_features] == [
        "relaxed",
        "vapic",
        "spinlocks",
    ]
    assert _plan("win2003-x86", "product_key=ABCDE-FGHIJ-KLMNO-PQRST-UVWXY").hyperv_features == ()


@pytest.mark.parametrize(
    ("sets", "domain_type", "levels", "error"),
    [
        (("cpu_model=host-passthrough",), "qemu", None, "host-passthrough needs KVM"),
        (("cpu_model=GraniteRapids",), "kvm", None, "does not know whether GraniteRapids"),
        (("cpu_model=OldThing",), "kvm", {"OldThing": 1}, "OldThing is x86-64-v1"),
    ],
)
def test_a_cpu_the_domain_cannot_have_is_refused(
    sets: tuple[str, ...], domain_type: str, levels: dict[str, int] | None, error: str
) -> None:
    extra = {"cpu_levels": {**devices.CPU_LEVELS, **levels}} if levels else {}
    with pytest.raises(InputError, match=error) as raised:
        _plan("win2025-x64", *sets, domain_type=domain_type, **extra)
    assert raised.value.problems[0].key == "cpu_model"


def test_a_cpu_model_the_host_vouches_for_is_taken() -> None:
    levels = {**devices.CPU_LEVELS, "GraniteRapids": 3}
    plan = _plan("win2025-x64", "cpu_model=GraniteRapids", cpu_levels=levels)
    assert plan.cpu == domain.CpuPlan("custom", "GraniteRapids", ("popcnt", "sse4.2"))
    # A release without a level takes a model pvinstall does not know as it is.
    assert _plan("win2022-x64", "cpu_model=GraniteRapids").cpu == domain.CpuPlan(
        "custom", "GraniteRapids", ()
    )
    host = _plan("win2025-x64", "cpu_model=host-model", domain_type="qemu").cpu
    assert host == domain.CpuPlan("host-model", None, ())


def test_secure_boot_off_keeps_uefi_and_asks_for_the_plain_firmware(
    drivers: Mapping[str, DriverSet],
) -> None:
    root = _root(render(drivers, "win2022-x64", "secure_boot=false", "tpm=false"))
    assert at(root, "os").get("firmware") == "efi"
    assert {f.get("name"): f.get("enabled") for f in root.iterfind("./os/firmware/feature")} == {
        "secure-boot": "no",
        "enrolled-keys": "no",
    }
    assert root.find("./features/smm") is None and root.find("./devices/tpm") is None
    bios = _root(render(drivers, "win2022-x64", "firmware=bios"))
    assert at(bios, "os").get("firmware") is None and bios.find("./os/firmware") is None
    assert at(bios, "./devices/tpm").get("model") == "tpm-crb"


def test_discard_granularity_is_set_on_every_virtio_disk(drivers: Mapping[str, DriverSet]) -> None:
    qemu = "{http://libvirt.org/schemas/domain/qemu/1.0}"
    for sets in ((), ("storage_bus=virtio-scsi",)):
        root = _root(render(drivers, "win2022-x64", "data_disks=[20]", *sets))
        aliases = [
            at(d, "alias").get("name") for d in root.iterfind("./devices/disk[@device='disk']")
        ]
        overridden = [d.get("alias") for d in root.iterfind(f"./{qemu}override/{qemu}device")]
        assert overridden == aliases and len(aliases) == 2
        values = {
            p.get("value")
            for p in root.iterfind(f"./{qemu}override/{qemu}device/{qemu}frontend/{qemu}property")
        }
        assert values == {"65536"}
        assert all(
            at(d, "driver").get("discard") == "unmap"
            for d in root.iterfind("./devices/disk[@device='disk']")
        )


def test_the_guest_agent_channel_needs_vioserial_only_when_it_was_selected(
    drivers: Mapping[str, DriverSet],
) -> None:
    config = config_for("win2022-x64")
    media = media_for(config, OUT, "pv")
    selected = drivers["win2022-x64"]
    serial = [d for d in selected.selected if d.info and d.info.device == "virtio-serial"]
    assert serial, "the fixture tree has vioserial"
    without = dataclasses.replace(
        selected, selected=tuple(d for d in selected.selected if d not in serial)
    )
    domain.domain_xml(config, without, media, facts=FACTS, name="pv", domain_type="kvm")
    domain.domain_xml(config, selected, media, facts=FACTS, name="pv", domain_type="kvm")
    plan = domain.plan_domain(config, media, name="pv", domain_type="kvm")
    (port,) = (d for d in plan.virtio_devices if d.kind == "virtio-serial")
    assert not port.required and port.model == "virtio"
    # On q35 model virtio presents the modern ID, which the selected vioserial lists.
    ids = FACTS.presented_ids("virtio-serial", "virtio", "q35").hardware_ids()
    assert ids[0] == "PCI\\VEN_1AF4&DEV_1043&SUBSYS_11001AF4&REV_01"
    assert any(h.upper() in {i.upper() for i in serial[0].hardware_ids} for h in ids)


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
            config,
            without_net,
            media_for(config, OUT, "pv"),
            facts=FACTS,
            name="pv",
            domain_type="kvm",
        )


def test_unknown_virtio_model_is_refused(drivers: Mapping[str, DriverSet]) -> None:
    with pytest.raises(InputError, match="'virtio-scsi' is not a virtio device model"):
        render(drivers, "win2008-x64", virtio_model="virtio-scsi")


def test_volume_xml() -> None:
    root = _root(domain.volume_xml("pv.qcow2", 32))
    assert root.findtext("name") == "pv.qcow2"
    assert root.findtext("capacity") == "32"
    assert at(root, "capacity").get("unit") == "GiB"
    assert at(root, "./target/format").get("type") == "qcow2"


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


# -- the removable drives ----------------------------------------------------------------


def test_drives_follow_the_profile_s_buses() -> None:
    def medium(name: str, device: Removable, drive: int) -> AttachedMedium:
        return AttachedMedium(name, device, drive, OUT / name)

    media = (medium("b.iso", "cdrom", 1), medium("a.iso", "cdrom", 0), medium("f", "floppy", 0))
    pc = domain.plan_drives(PROFILES["win2008-x64"], media)
    assert [(d.device, d.bus, d.target, d.path) for d in pc] == [
        ("cdrom", "ide", "hda", OUT / "a.iso"),
        ("cdrom", "ide", "hdc", OUT / "b.iso"),  # the other channel: no shared ATAPI
        ("floppy", "fdc", "fda", OUT / "f"),
    ]
    sata = dataclasses.replace(PROFILES["win2008-x64"], cd_bus="sata", floppy_controller=False)
    assert [d.target for d in domain.plan_drives(sata, media[:2])] == ["sda", "sdb"]
    with pytest.raises(BuildError, match="has no floppy controller"):
        domain.plan_drives(sata, media)
    with pytest.raises(BuildError, match="are both for cdrom drive 0"):
        domain.plan_drives(PROFILES["win2008-x64"], (media[1], medium("c.iso", "cdrom", 0)))
    with pytest.raises(BuildError, match="the ide bus has no drive 4"):
        domain.plan_drives(PROFILES["win2008-x64"], (medium("x", "cdrom", 4),))


def test_the_template_renders_what_the_plan_says(drivers: Mapping[str, DriverSet]) -> None:
    """A profile on other buses, with another USB controller: the XML follows the plan."""
    profile = dataclasses.replace(
        PROFILES["win2008r2-x64"], cd_bus="sata", floppy_controller=False, usb_model="qemu-xhci"
    )
    config = dataclasses.replace(config_for("win2008r2-x64"), profile=profile)
    media = (AttachedMedium("install.iso", "cdrom", 0, OUT / "install.iso", boot_order=2),)
    paths = dataclasses.replace(media_for(config_for("win2008r2-x64"), OUT, "pv"), media=media)
    plan = domain.plan_domain(config, paths, name="pv", domain_type="kvm")
    root = _root(domain.render_domain_xml(plan))
    cds = [d for d in root.iterfind("./devices/disk") if d.get("device") == "cdrom"]
    assert [(at(d, "target").get("dev"), at(d, "target").get("bus")) for d in cds] == [
        ("sda", "sata")
    ]
    assert root.find("./devices/disk[@device='floppy']") is None
    assert at(root, "./devices/controller[@type='usb']").get("model") == "qemu-xhci"


# -- q35 and the storage buses -----------------------------------------------------------


@pytest.mark.parametrize("model", [None, "virtio-transitional", "virtio-non-transitional"])
def test_the_modern_drivers_bind_every_model_q35_presents(
    drivers: Mapping[str, DriverSet], model: str | None
) -> None:
    # On q35 'virtio' is modern-only (DEV_1042/DEV_1041); the Win10 INFs list both sets.
    xml = render(drivers, "win2022-x64", virtio_model=model)
    assert "machine='q35'" in xml


def test_virtio_scsi_puts_the_disks_on_one_controller(drivers: Mapping[str, DriverSet]) -> None:
    config = config_for("win2022-x64", "storage_bus=virtio-scsi", "data_disks=[20, 30]")
    media = media_for(config, OUT, "pv")
    plan = domain.plan_domain(config, media, name="pv", domain_type="kvm")
    assert [(d.target, d.bus) for d in plan.disks] == [
        ("sda", "scsi"),
        ("sdb", "scsi"),
        ("sdc", "scsi"),
    ]
    assert plan.scsi_controller == "virtio-scsi"
    # One slot for the controller, one for the NIC, whatever the number of disks; the
    # guest agent's port and the xHCI take a root port each.
    assert plan.pci_devices == (
        "virtio-scsi controller",
        "NIC on network default",
        "virtio-serial controller",
        "USB controller (qemu-xhci)",
    )
    # The SATA CD-ROM drives take the sd targets after the disks.
    assert [d.target for d in plan.drives] == ["sdd", "sde", "sdf"]
    root = _root(
        domain.domain_xml(
            config, drivers["win2022-x64"], media, facts=FACTS, name="pv", domain_type="kvm"
        )
    )
    assert at(root, "./devices/controller[@type='scsi']").get("model") == "virtio-scsi"
    assert all(d.get("model") is None for d in root.iterfind("./devices/disk[@device='disk']"))
    targets = [at(d, "target").get("dev") for d in root.iterfind("./devices/disk")]
    assert len(targets) == len(set(targets))
    # The device check asks for the driver of the controller: vioscsi.
    without = dataclasses.replace(
        drivers["win2022-x64"],
        selected=tuple(d for d in drivers["win2022-x64"].selected if d.name != "vioscsi"),
    )
    with pytest.raises(
        InputError, match=r"no driver for the virtio-scsi controller \(virtio-scsi\)"
    ):
        domain.domain_xml(config, without, media, facts=FACTS, name="pv", domain_type="kvm")


def test_drives_skip_the_targets_the_disks_take() -> None:
    media = (AttachedMedium("a.iso", "cdrom", 0, OUT / "a.iso"),)
    q35 = PROFILES["win2022-x64"]
    assert [d.target for d in domain.plan_drives(q35, media)] == ["sda"]
    assert [d.target for d in domain.plan_drives(q35, media, taken=frozenset({"sda", "sdb"}))] == [
        "sdc"
    ]


# -- a remote host: volumes of its pool, a pty console ----------------------------------


@pytest.mark.parametrize("profile", ["win2003-x86", "win2008r2-x64", "win2022-x64"])
def test_a_remote_domain_names_only_volumes_of_its_pool(
    drivers: Mapping[str, DriverSet], profile: str, tmp_path: Path
) -> None:
    config = config_for(profile, "data_disks=[5]")
    local = media_for(config, OUT, "pv")
    media = domain.MediaPaths(
        media=tuple(
            dataclasses.replace(m, path=Path(f"pv-{m.name}")) if m.path else m for m in local.media
        ),
        system_disk=Path("pv.qcow2"),
        data_disks=(Path("pv-data1.qcow2"),),
        serial_log=None,
        pool="pool-on-host",
    )
    xml = domain.domain_xml(
        config, drivers[profile], media, facts=FACTS, name="pv", domain_type="kvm"
    )
    root = _root(xml)
    disks = list(root.iterfind("./devices/disk"))
    assert disks and all(d.get("type") == "volume" for d in disks)
    sources = [d.find("source") for d in disks]
    named = {(s.get("pool"), s.get("volume")) for s in sources if s is not None}
    expected = {("pool-on-host", f"pv-{m.name}") for m in local.media if m.path}
    assert named == expected | {("pool-on-host", "pv.qcow2"), ("pool-on-host", "pv-data1.qcow2")}
    # The format is never left to a probe of the volume's bytes.
    assert all(at(d, "driver").get("type") in ("raw", "qcow2") for d in disks)
    # Nothing names a file of the client: the serial port is a pty read as the console.
    assert " file=" not in xml and str(OUT) not in xml
    assert at(root, "./devices/serial").get("type") == "pty"
    assert at(root, "./devices/console").get("type") == "pty"
    # libvirt's own schema takes it (the oracle tier's virt-xml-validate).
    written = tmp_path / "remote.xml"
    written.write_text(xml, encoding="utf-8")
    checked = subprocess.run(
        ["virt-xml-validate", str(written), "domain"], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stderr + checked.stdout
