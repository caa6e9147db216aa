"""The libvirt domain that boots Windows setup: planned, checked and written as XML (pure).

`plan_domain()` turns the settings and the media paths into a `DomainPlan` (every
device with its bus, target and model: the removable drives from the media the media
table attaches, on the profile's buses); `check_slot_budget()` and
`check_device_drivers()` refuse plans a guest or its drivers cannot take;
`render_domain_xml()` writes the plan through `templates/domain.xml.j2`.
`domain_xml()` does all three. Editing a defined domain (the golden-template edit) is
`vm/existing.py`'s.

Nothing here touches libvirt or the disk beyond reading the template: the driver
facts (which PCI IDs a device model presents) are loaded at the edge and passed in;
`virt.py` is the edge that acts on the XML.
"""

from __future__ import annotations

import itertools
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Literal

from builder.answers.environment import render
from builder.config import BuildConfig
from builder.errors import BuildError, InputError
from builder.virtio.facts import DriverFacts, PciIds
from builder.virtio.selection import DriverSet, SelectedDriver
from builder.vm import devices
from builder.vm.devices import (
    DISK_BUSES,
    DRIVE_TARGETS,
    STORAGE_DEVICE_KINDS,
    VIRTIO_MODELS,
    AttachedMedium,
    Firmware,
    Removable,
    StorageBus,
    VirtioModel,
    disk_targets,
)
from builder.windows.profiles import Profile

TEMPLATE = "domain.xml.j2"

DOMAIN_TYPES = ("kvm", "qemu")

# The libvirt guest architecture of a profile. 32-bit Windows gets a 32-bit CPU
# (qemu32, no long mode), as on the hardware it was written for.
GUEST_ARCH: Mapping[str, str] = MappingProxyType({"x86": "i686", "amd64": "x86_64"})

# The guest agent's virtio-serial port: the name qemu-ga looks for.
GUEST_AGENT_CHANNEL = "org.qemu.guest_agent.0"
# The installer that puts the guest agent into the guest: a profile that runs it gets
# the channel.
GUEST_AGENT_INSTALLER = "qemu-ga"

# libvirt's model of a virtio-scsi controller for each virtio device model.
SCSI_CONTROLLER_MODELS: Mapping[VirtioModel, str] = MappingProxyType(
    {
        "virtio": "virtio-scsi",
        "virtio-transitional": "virtio-transitional",
        "virtio-non-transitional": "virtio-non-transitional",
    }
)

# The name also names the disk files and the output folder, and virsh resolves a
# bare number or a UUID as a domain id before it tries names: keep to a safe set.
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*")
_UUID = re.compile(r"[0-9a-fA-F]{8}-?([0-9a-fA-F]{4}-?){3}[0-9a-fA-F]{12}")
MAX_NAME = 64

DiskPaths = tuple[Path, tuple[Path, ...]]


@dataclass(frozen=True)
class MediaPaths:
    """Where the files the domain uses are (absolute paths, as libvirt will open them):
    the media for its removable drives (from the media table), its disks, its serial log.

    With `pool` (a remote host) every path is instead the name of a volume in that
    storage pool (`<disk type='volume'>`), and `serial_log` is None: the serial port
    is a pty that pvinstall reads over the connection. Nothing then names a client
    file."""

    media: tuple[AttachedMedium, ...]
    system_disk: Path
    data_disks: tuple[Path, ...]
    serial_log: Path | None
    pool: str | None = None


@dataclass(frozen=True)
class Disk:
    """A virtio disk: the system disk or a data disk, on its bus (`virtio`: a virtio-blk
    device of its own; `scsi`: a unit of the virtio-scsi controller)."""

    role: Literal["system", "data"]
    target: str
    path: Path
    size_gib: int
    model: VirtioModel
    bus: str = "virtio"

    @property
    def label(self) -> str:
        return f"{self.role} disk {self.target}"

    @property
    def alias(self) -> str:
        """The device's user alias (libvirt's `ua-` names), for QEMU properties libvirt
        has no element for."""
        return f"ua-disk-{self.target}"


@dataclass(frozen=True)
class Drive:
    """A removable drive (CD-ROM or floppy) on its bus; `path` None is an empty drive."""

    device: Removable
    bus: str
    target: str
    path: Path | None
    boot_order: int | None
    image_format: str = "raw"  # what QEMU reads the file as (never guessed)


@dataclass(frozen=True)
class Nic:
    """The virtio NIC: on a libvirt network, or QEMU's user-mode network (`user`)."""

    network: str
    model: VirtioModel

    @property
    def user_mode(self) -> bool:
        return self.network == "user"

    @property
    def label(self) -> str:
        return "NIC (user-mode network)" if self.user_mode else f"NIC on network {self.network}"


@dataclass(frozen=True)
class VirtioDevice:
    """A virtio device of the domain, as the driver check sees it."""

    kind: str  # a [pci_ids] key of drivers/catalog.toml: virtio-blk, virtio-net
    model: VirtioModel
    label: str
    # Whether a driver must have been selected for it: setup needs the disk's and the
    # NIC's; the guest agent's port works once its driver is installed, when the source
    # has one (and the check holds that driver to the device then).
    required: bool = True


@dataclass(frozen=True)
class CpuPlan:
    """The guest's CPU: a named model (`custom`, exact, no fallback to another model)
    with the flags the release needs required, or one of the host modes."""

    mode: Literal["custom", "host-model", "host-passthrough"]
    model: str | None
    required_flags: tuple[str, ...]


@dataclass(frozen=True)
class DomainPlan:
    """Everything the domain XML says, decided; rendering only formats it."""

    name: str
    domain_type: str
    profile: Profile
    arch: str
    machine: str
    memory_mib: int
    vcpus: int
    pae: bool
    hyperv: bool
    osinfo_url: str | None
    disks: tuple[Disk, ...]
    drives: tuple[Drive, ...]
    usb_model: str
    nic: Nic
    serial_log: Path | None  # None: a pty serial port and console, read over libvirt
    storage_bus: StorageBus = StorageBus.VIRTIO_BLK
    firmware: Firmware = Firmware.BIOS
    secure_boot: bool = False
    tpm: bool = False
    cpu: CpuPlan | None = None
    hyperv_features: tuple[devices.HypervFeature, ...] = ()
    guest_agent: bool = False
    discard_granularity: int | None = None

    @property
    def efi(self) -> bool:
        return self.firmware is Firmware.EFI

    @property
    def smm(self) -> bool:
        """Secure Boot's variable store is protected by SMM: OVMF's Secure Boot build
        requires it."""
        return self.secure_boot

    @property
    def hypervclock(self) -> bool:
        """The Hyper-V reference clock, which the synthetic timers need."""
        return any(name == "stimer" for name, _ in self.hyperv_features)

    @property
    def overridden_disks(self) -> tuple[Disk, ...]:
        """The disks whose QEMU device gets properties libvirt has no element for."""
        return self.disks if self.discard_granularity else ()

    pool: str | None = None  # the storage pool whose volumes the disks and media are

    @property
    def system_disk(self) -> Disk:
        return self.disks[0]

    @property
    def scsi_controller(self) -> str | None:
        """The libvirt model of the virtio-scsi controller the disks are on, if they are."""
        if self.storage_bus is not StorageBus.VIRTIO_SCSI:
            return None
        return SCSI_CONTROLLER_MODELS[self.system_disk.model]

    @property
    def virtio_devices(self) -> tuple[VirtioDevice, ...]:
        if self.storage_bus is StorageBus.VIRTIO_SCSI:
            kind = STORAGE_DEVICE_KINDS[self.storage_bus]
            found = [VirtioDevice(kind, self.system_disk.model, "virtio-scsi controller")]
        else:
            found = [VirtioDevice("virtio-blk", d.model, d.label) for d in self.disks]
        found.append(VirtioDevice("virtio-net", self.nic.model, self.nic.label))
        if self.guest_agent:
            found.append(
                VirtioDevice(
                    "virtio-serial", self.nic.model, "virtio-serial controller", required=False
                )
            )
        return tuple(found)

    @property
    def pci_devices(self) -> tuple[str, ...]:
        """The devices that take a PCI slot (i440fx: one of the 28) or a PCIe root port
        (q35): every virtio disk (or the one virtio-scsi controller), the NIC, the
        guest agent's virtio-serial controller, and an xHCI USB controller.

        On i440fx the IDE and USB controllers are functions of the PIIX3; on q35 the
        SATA controller is a function of the ICH9. The VGA card has its own fixed slot,
        the floppy controller, serial port and TPM are ISA or platform devices, and there
        is no balloon.
        """
        found = [d.label for d in self.virtio_devices]
        if self.usb_model == "qemu-xhci":
            found.append("USB controller (qemu-xhci)")
        return tuple(found)


# -- names -------------------------------------------------------------------------------


def validate_domain_type(domain_type: str) -> None:
    """Refuse a domain type pvinstall does not write (InputError, --domain-type)."""
    if domain_type not in DOMAIN_TYPES:
        raise InputError(
            f"unknown domain type {domain_type!r}.", "Use kvm or qemu.", key="--domain-type"
        )


def validate_domain_name(name: str) -> None:
    """Refuse a name libvirt, virsh or a file name would trip over (InputError, --name)."""
    problem = None
    if not name:
        problem = "is empty"
    elif len(name) > MAX_NAME:
        problem = f"has {len(name)} characters; at most {MAX_NAME}"
    elif not _NAME.fullmatch(name):
        bad = sorted({c for c in name if not re.fullmatch(r"[A-Za-z0-9_.+-]", c)})
        problem = (
            f"contains {' '.join(repr(c) for c in bad)}"
            if bad
            else "must start with a letter, digit or '_'"
        )
    elif name.isdigit():
        problem = "is only digits, which virsh reads as a domain id"
    elif _UUID.fullmatch(name):
        problem = "looks like a UUID, which virsh reads as a domain UUID"
    if problem is not None:
        raise InputError(
            f"{name!r} is not a usable domain name: it {problem}.",
            "Use letters, digits, '-', '_', '.' and '+', e.g. win2008r2-golden.",
            key="--name",
        )


def disk_file_names(config: BuildConfig, name: str) -> tuple[str, tuple[str, ...]]:
    """The file (or pool volume) names of the system and data disks: `NAME.qcow2`,
    `NAME-data1.qcow2`, ..."""
    data = tuple(f"{name}-data{i}.qcow2" for i in range(1, len(config.data_disks) + 1))
    return f"{name}.qcow2", data


def default_disk_paths(config: BuildConfig, out_dir: Path, name: str) -> DiskPaths:
    """The system and data disk files next to the outputs (no storage pool)."""
    system, data = disk_file_names(config, name)
    return out_dir / system, tuple(out_dir / d for d in data)


# -- the plan ----------------------------------------------------------------------------


def plan_domain(
    config: BuildConfig,
    media: MediaPaths,
    *,
    name: str,
    domain_type: str,
    virtio_model: str | None = None,
    cpu_levels: Mapping[str, int] = devices.CPU_LEVELS,
) -> DomainPlan:
    """Decide every device of the domain from the settings and the media paths.

    `virtio_model` (else the `virtio_model` setting) overrides the profile's model of
    the virtio disks and NIC; the driver check still has the last word. `cpu_levels`
    says which x86-64 level each CPU model reaches (pvinstall's table, plus what the
    host said about a model it does not know).
    """
    profile = config.profile
    validate_domain_name(name)
    validate_domain_type(domain_type)
    cpu = plan_cpu(config, domain_type, cpu_levels)
    model = _virtio_model(profile, virtio_model or config.virtio_model)
    if len(media.data_disks) != len(config.data_disks):
        raise BuildError("the domain was planned with a path for each data disk missing.")
    bus = DISK_BUSES[config.storage_bus][0]
    # The same targets the answer file derives the system disk's DiskID from.
    targets = disk_targets(config.storage_bus, 1 + len(config.data_disks))
    disks = [Disk("system", targets[0], media.system_disk, config.disk_size_gib, model, bus)]
    disks += [
        Disk("data", targets[i], path, size, model, bus)
        for i, (path, size) in enumerate(
            zip(media.data_disks, config.data_disks, strict=True), start=1
        )
    ]
    return DomainPlan(
        name=name,
        domain_type=domain_type,
        profile=profile,
        arch=GUEST_ARCH[profile.arch],
        machine=profile.machine,
        memory_mib=config.memory_mib,
        vcpus=config.vcpus,
        # PAE lets 32-bit Windows use NX and more than 4 GiB; a 64-bit guest has it anyway.
        pae=profile.arch == "x86",
        hyperv=profile.hyperv,
        osinfo_url=profile.osinfo_url,
        disks=tuple(disks),
        drives=plan_drives(profile, media.media, taken=frozenset(targets)),
        usb_model=profile.usb_model,
        nic=Nic(config.network, model),
        serial_log=media.serial_log,
        storage_bus=config.storage_bus,
        firmware=config.firmware,
        secure_boot=config.secure_boot,
        tpm=config.tpm,
        cpu=cpu,
        hyperv_features=(
            devices.HYPERV_SETS[(domain_type, profile.hyperv_modern)] if profile.hyperv else ()
        ),
        guest_agent=GUEST_AGENT_INSTALLER in profile.installers,
        discard_granularity=profile.discard_granularity,
        pool=media.pool,
    )


def plan_cpu(
    config: BuildConfig, domain_type: str, cpu_levels: Mapping[str, int] = devices.CPU_LEVELS
) -> CpuPlan | None:
    """The guest's CPU (None: the hypervisor's default, QEMU's qemu64).

    InputError (key `cpu_model`) for host-passthrough under TCG (there is no host CPU to
    pass through), and for a release that needs an x86-64 level with a model that
    `cpu_levels` puts below it or does not know.
    """
    profile = config.profile
    model = config.cpu_model
    needed = devices.cpu_level_number(profile.cpu_level)
    if model is None:
        return None
    if model in devices.HOST_CPU_MODES:
        if model == "host-passthrough" and domain_type == "qemu":
            raise InputError(
                "host-passthrough needs KVM: a TCG (domain type qemu) guest has no host CPU "
                "to pass through.",
                f"Use a named model (cpu_model = {profile.cpu_model or 'Nehalem'}) with "
                "--domain-type qemu.",
                key="cpu_model",
            )
        return CpuPlan("host-model" if model == "host-model" else "host-passthrough", None, ())
    level = cpu_levels.get(model)
    if needed and (level is None or level < needed):
        flags = ", ".join(f.upper() for f in devices.CPU_LEVEL_FLAGS[needed][:2])
        raise InputError(
            f"{profile.title} needs an {profile.cpu_level} CPU ({flags}), and "
            + (
                f"{model} is x86-64-v{level}."
                if level is not None
                else f"pvinstall does not know whether {model} has them."
            ),
            "Use a model pvinstall knows (Nehalem or newer), or give --connect so that the "
            "host's libvirt says which features the model has."
            if level is None
            else f"Use {profile.cpu_model or 'Nehalem'} or a newer model.",
            key="cpu_model",
        )
    return CpuPlan("custom", model, devices.CPU_LEVEL_FLAGS.get(needed, ())[:2])


def plan_drives(
    profile: Profile, media: Sequence[AttachedMedium], taken: frozenset[str] = frozenset()
) -> tuple[Drive, ...]:
    """The removable drives of the domain: the CD-ROM drives on the profile's CD bus,
    then the floppy drives, each kind in the order of its `drive` index, on the targets
    of its bus that the disks have not `taken` (SATA and SCSI both name theirs `sdX`).

    BuildError for a floppy on a machine without a floppy controller, a drive that two
    media claim, or more drives than the bus has (the media table would be wrong).
    """
    buses: Mapping[Removable, str | None] = {
        "cdrom": profile.cd_bus,
        "floppy": "fdc" if profile.floppy_controller else None,
    }
    drives: list[Drive] = []
    for device, bus in buses.items():
        ours = sorted((m for m in media if m.device == device), key=lambda m: m.drive)
        if not ours:
            continue
        if bus is None:
            raise BuildError(
                f"{ours[0].name} needs a {device} drive, but {profile.name} (machine "
                f"{profile.machine}) has no {device} controller.",
                "The media table must not attach that medium to this profile.",
            )
        for medium, other in itertools.pairwise(ours):
            if medium.drive == other.drive:
                raise BuildError(
                    f"{medium.name} and {other.name} are both for {device} drive {medium.drive}."
                )
        targets = tuple(t for t in DRIVE_TARGETS[bus] if t not in taken)
        if ours[-1].drive >= len(targets):
            raise BuildError(f"{ours[-1].name}: the {bus} bus has no drive {ours[-1].drive}.")
        drives += [
            Drive(device, bus, targets[m.drive], m.path, m.boot_order, m.image_format) for m in ours
        ]
    return tuple(drives)


def _virtio_model(profile: Profile, override: str | None) -> VirtioModel:
    if override is None:
        return profile.virtio_model
    for model in VIRTIO_MODELS:
        if override == model:
            return model
    raise InputError(
        f"{override!r} is not a virtio device model.",
        f"Use one of {', '.join(VIRTIO_MODELS)}.",
        key="virtio_model",
    )


# -- checks ------------------------------------------------------------------------------


def count_pci_slots(plan: DomainPlan) -> int:
    """How many of the guest's PCI slots (q35: PCIe root ports) the domain's devices take."""
    return len(plan.pci_devices)


def check_slot_budget(plan: DomainPlan) -> None:
    """Refuse a domain that needs more PCI slots than its machine has (28 on i440fx,
    231 PCIe root ports on q35: devices.PCI_BUDGETS); InputError naming the count."""
    data = sum(1 for d in plan.disks if d.role == "data")
    budget = devices.pci_budget(plan.machine)
    fits = max(data - (count_pci_slots(plan) - budget), 0)
    devices.check_pci_slots(
        plan.pci_devices,
        "the domain",
        key="data_disks",
        hint=f"{devices.SLOT_HINTS['build']} Use at most {fits} data disks.",
        machine=plan.machine,
    )


def check_device_drivers(plan: DomainPlan, drivers: DriverSet, facts: DriverFacts) -> None:
    """Refuse a domain with a virtio device that no selected driver binds to.

    For each virtio device, the IDs QEMU presents for its model on the plan's
    machine must be among the hardware IDs the selected driver of its kind
    (viostor for disks, NetKVM for NICs) installs on. InputError lists every
    device that does not match, naming the device and the driver.
    """
    problems: list[str] = []
    hint = None
    for device in plan.virtio_devices:
        ids = facts.presented_ids(device.kind, device.model, plan.machine)
        candidates = [d for d in drivers.selected if d.info and d.info.device == device.kind]
        if not candidates and not device.required:
            continue
        if not candidates:
            problems.append(
                f"no driver for the {device.label} ({device.kind}) was selected "
                f"for {plan.profile.name}"
            )
            continue
        if any(_binds(driver, ids) for driver in candidates):
            continue
        driver = candidates[0]
        problems.append(
            f"the {device.label} (model {device.model}: {ids.hardware_ids()[1]}) is not "
            f"matched by {driver.name} ({driver.inf_path}, which lists "
            f"{', '.join(driver.hardware_ids) or 'no hardware IDs'})"
        )
        if plan.profile.virtio_model == "virtio-transitional":
            hint = (
                f"{plan.profile.title}'s drivers know only transitional virtio devices; "
                f"use model virtio-transitional on machine {plan.machine}."
            )
    if problems:
        raise InputError(
            "; ".join(problems) + ".",
            hint or "Use a driver release that lists the device, or another device model.",
            key="virtio_model",
        )


def _binds(driver: SelectedDriver, ids: PciIds) -> bool:
    # Windows compares hardware IDs case-insensitively.
    listed = {hwid.upper() for hwid in driver.hardware_ids}
    return any(hwid.upper() in listed for hwid in ids.hardware_ids())


# -- XML ---------------------------------------------------------------------------------


def render_domain_xml(plan: DomainPlan) -> str:
    """The libvirt domain XML of a plan (templates/domain.xml.j2, autoescaped)."""
    return render(TEMPLATE, {"plan": plan, "guest_agent_channel": GUEST_AGENT_CHANNEL})


def domain_xml(
    config: BuildConfig,
    drivers: DriverSet,
    media: MediaPaths,
    *,
    facts: DriverFacts,
    name: str,
    domain_type: str,
    virtio_model: str | None = None,
    cpu_levels: Mapping[str, int] = devices.CPU_LEVELS,
) -> str:
    """The domain XML for `config`, after the slot budget and the driver check.

    Raises InputError for a bad name or domain type, more devices than PCI slots,
    or a virtio device the selected drivers do not bind to. Deterministic: no UUID
    and no MAC address (libvirt assigns them when the domain is defined).
    """
    plan = plan_domain(
        config,
        media,
        name=name,
        domain_type=domain_type,
        virtio_model=virtio_model,
        cpu_levels=cpu_levels,
    )
    check_slot_budget(plan)
    check_device_drivers(plan, drivers, facts)
    return render_domain_xml(plan)


def volume_xml(name: str, size_gib: int) -> str:
    """The XML of a qcow2 storage-pool volume of `size_gib` GiB."""
    volume = ET.Element("volume")
    ET.SubElement(volume, "name").text = name
    ET.SubElement(volume, "capacity", unit="GiB").text = str(size_gib)
    target = ET.SubElement(volume, "target")
    ET.SubElement(target, "format", type="qcow2")
    return ET.tostring(volume, encoding="unicode")
