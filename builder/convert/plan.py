"""Existing guests: switch IDE/SATA/SCSI disks and emulated NICs to virtio safely, and
plan new virtio devices (pure).

A boot disk moved to virtio before Windows has the virtio storage driver no longer
boots, so only the boot disk is ever staged. Phase one (`plan_phase_one`) switches what
is safe at once (other disks, NICs), puts the drivers ISO into a CD-ROM drive and adds
a small temporary virtio disk, so that Windows installs viostor (and NetKVM) in one
boot; the phase-one record says what was added. `plan_finish` then removes the
temporary disk and the drivers CD and switches the boot disk. `plan_switch` switches
everything at once, for a guest that already has the drivers (`--drivers-installed`).
`plan_attach_disk` and `plan_attach_nic` describe one new virtio device.

What convert and attach add is a file of this machine, or, on a remote host (or with
`--storage-pool`), a volume of a storage pool there (`Placed`); the volumes are named by
`convert_volumes` and `new_disk_volume`.

Every plan is a frozen dataclass holding the new domain XML; nothing here touches
libvirt or the disk. `builder/convert/steps.py` carries the plans out.
"""

from __future__ import annotations

import hashlib
import json
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from builder.errors import InputError
from builder.vm import devices, existing
from builder.vm.devices import BUS_POSITIONS, VIRTIO_MODELS, VirtioModel, source_of
from builder.windows.profiles import ARCH_NAMES, PROFILES, Profile, resolve_profile

# Buses whose disks are switched to virtio; cdroms stay where they are.
CONVERTIBLE_BUSES = ("ide", "sata", "scsi")
# QEMU's emulated NICs; an interface without a model is QEMU's default (rtl8139 on pc).
CONVERTIBLE_NIC_MODELS = ("e1000", "e1000e", "rtl8139", "ne2k_pci", "pcnet")
# Big enough for Windows to see a disk, small enough to go unnoticed on the host.
TEMP_DISK_MIB = 64
DRIVERS_LABEL = "PVDRIVERS"
RECORD_VERSION = 1
# Elements libvirt accepts only on IDE/SCSI disks.
_NON_VIRTIO_DISK_ELEMENTS = ("address", "wwn", "vendor", "product")
_NON_VIRTIO_TARGET_ATTRIBUTES = ("rotation_rate", "removable")

# Keep the usual prefixes when the XML is written back.
for _prefix, _uri in (
    ("libosinfo", "http://libosinfo.org/xmlns/libvirt/domain/1.0"),
    ("qemu", "http://libvirt.org/schemas/domain/qemu/1.0"),
    ("test", "http://libvirt.org/schemas/domain/test/1.0"),
):
    ET.register_namespace(_prefix, _uri)

Action = Literal["phase-one", "switch", "finish", "nothing"]


# -- where the state lives -------------------------------------------------------------


@dataclass(frozen=True)
class StatePaths:
    """The files convert keeps for one domain: the backup of the original definition,
    the phase-one record, the temporary disk and the drivers ISO."""

    directory: Path
    backup: Path
    record: Path
    temp_disk: Path
    drivers_iso: Path


# Characters a file name keeps as they are; every other one is escaped as %XX (its UTF-8
# bytes), '%' itself among them, so that two names never share a file (`rt-col a` is
# `rt-col%20a`, `rt-col_a` stays `rt-col_a`).
_STEM_KEEPS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.+-")
# A longer stem keeps its start and ends in '~' and a digest of the whole name ('~' is
# always escaped otherwise): the file names stay well within 255 bytes.
MAX_STEM = 120


def file_stem(name: str) -> str:
    """`name` as the start of a file name: injective (different names, different stems),
    never hidden (a leading '.' is escaped), never a path (a '/' is escaped)."""
    escaped = "".join(
        char if char in _STEM_KEEPS else "".join(f"%{b:02X}" for b in char.encode("utf-8"))
        for char in name
    )
    if escaped.startswith("."):
        escaped = "%2E" + escaped[1:]
    if not escaped:
        return "%"  # libvirt names are never empty; this keeps the function total
    if len(escaped) > MAX_STEM:
        digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:24]
        escaped = f"{escaped[: MAX_STEM - 25]}~{digest}"
    return escaped


def state_paths(name: str, out: Path | None, environ: Mapping[str, str], home: Path) -> StatePaths:
    """Where convert keeps its files for the domain `name`: `--out`, else
    `$PVINSTALL_STATE_DIR`, else `$XDG_STATE_HOME/pvinstall/<domain>` (by default
    `~/.local/state/pvinstall/<domain>`). Every file name starts with the domain name,
    so one directory can serve several domains."""
    stem = file_stem(name)
    if out is not None:
        directory = out
    elif environ.get("PVINSTALL_STATE_DIR"):
        directory = Path(environ["PVINSTALL_STATE_DIR"])
    else:
        base = environ.get("XDG_STATE_HOME") or str(home / ".local" / "state")
        directory = Path(base) / "pvinstall" / stem
    directory = directory.absolute()
    return StatePaths(
        directory=directory,
        backup=directory / f"{stem}.orig.xml",
        record=directory / f"{stem}.convert.json",
        temp_disk=directory / f"{stem}-viostor.qcow2",
        drivers_iso=directory / f"{stem}-drivers.iso",
    )


# -- where QEMU reads what convert and attach add -----------------------------------------


@dataclass(frozen=True)
class Placed:
    """Where QEMU reads a disk or CD convert or attach adds: the file `name` of this
    machine (`pool` None, QEMU shares its files), or the volume `name` of the storage
    pool `pool` (a remote host: no client path means anything there)."""

    name: str
    pool: str | None = None

    def describe(self) -> str:
        return self.name if self.pool is None else f"volume {self.pool}/{self.name}"

    def source_into(self, disk: ET.Element) -> None:
        """Make `disk` read this: `type='file'` with `<source file=>`, or
        `type='volume'` with `<source pool= volume=>` (the old source goes)."""
        disk.set("type", "file" if self.pool is None else "volume")
        source = disk.find("source")
        if source is None:
            source = ET.Element("source")
            driver = disk.find("driver")
            disk.insert(0 if driver is None else list(disk).index(driver) + 1, source)
        source.attrib.clear()
        if self.pool is None:
            source.set("file", self.name)
        else:
            source.set("pool", self.pool)
            source.set("volume", self.name)

    def read_by(self, disk: ET.Element) -> bool:
        """Whether `disk` reads this file or volume."""
        source = disk.find("source")
        if source is None:
            return False
        if self.pool is None:
            return disk.get("type", "file") != "volume" and source_of(disk) == self.name
        return (
            disk.get("type") == "volume"
            and source.get("pool") == self.pool
            and source.get("volume") == self.name
        )


@dataclass(frozen=True)
class ConvertVolumes:
    """The volumes phase one puts into `pool`: the drivers ISO and the temporary disk."""

    pool: str
    drivers_iso: str
    temp_disk: str


# Between the domain's stem and what the volume holds: '@' is in no name a build
# accepts (letters, digits and '_.+-'), and file_stem escapes it, so these volumes
# never share a name with a build's (`NAME.qcow2`, `NAME-drivers.iso`, ...) nor with
# another domain's.
VOLUME_MARK = "@"


def convert_volumes(name: str, pool: str) -> ConvertVolumes:
    """The volumes phase one makes for the domain `name` in `pool`:
    `NAME@convert-drivers.iso` and `NAME@convert-viostor.qcow2`."""
    stem = file_stem(name) + VOLUME_MARK
    return ConvertVolumes(
        pool=pool,
        drivers_iso=f"{stem}convert-drivers.iso",
        temp_disk=f"{stem}convert-viostor.qcow2",
    )


def new_disk_volume(name: str, target: str) -> str:
    """The volume `attach disk --size` creates for the domain `name` at `target`:
    `NAME@vdb.qcow2`."""
    return f"{file_stem(name)}{VOLUME_MARK}{target}.qcow2"


def disk_pool(disk: ET.Element | None) -> str | None:
    """The storage pool a `<disk type='volume'>` reads from, if it is one."""
    if disk is None or disk.get("type") != "volume":
        return None
    source = disk.find("source")
    return (source.get("pool") or None) if source is not None else None


def boot_disk_source(xml: str) -> tuple[str | None, str]:
    """The boot disk's storage pool (when it is a volume) and its source (a file path,
    a volume name, ...; "" without one)."""
    disk = boot_disk(existing.parse_xml(xml))
    return disk_pool(disk), source_of(disk) if disk is not None else ""


# -- the guest's Windows version ---------------------------------------------------------


def guest_arch(root: ET.Element) -> str | None:
    """The domain's architecture as pvinstall spells it (`x86`, `x64`), if it says one."""
    arch = root.find("./os/type")
    named = ARCH_NAMES.get((arch.get("arch") or "") if arch is not None else "")
    if named is None:
        return None
    return "x64" if named == "amd64" else "x86"


def guest_profile(xml: str, profile: str | None = None, arch: str | None = None) -> Profile:
    """The profile of the guest: `--profile` (a name or an osinfo id), else the libosinfo
    id in the domain's metadata, each with the domain's architecture unless `--arch`
    says otherwise. InputError when neither names a profile."""
    root = existing.parse_xml(xml)
    name = root.findtext("name") or "the domain"
    if profile is not None:
        wanted = arch or (None if profile in PROFILES else guest_arch(root))
        try:
            return resolve_profile(profile, wanted)
        except InputError as error:
            key = error.problems[0].key
            raise InputError(
                error.message, error.hint, key="--profile" if key == "profile" else key
            ) from None
    url = existing.osinfo_url(root)
    if url is None:
        raise InputError(
            f"{name} does not say which Windows it runs (no libosinfo metadata).",
            "Pass --profile, e.g. --profile win2008r2-x64 or --profile win2k3 --arch x86.",
            key="--profile",
        )
    short = existing.osinfo_short_id(url)
    if short is None:
        raise InputError(
            f"{name} runs {url}, which is not a Windows pvinstall knows.",
            "Pass --profile if it is one of `pvinstall profiles`.",
            key="--profile",
        )
    try:
        return resolve_profile(short, arch or guest_arch(root))
    except InputError as error:
        raise InputError(
            f"{name}'s metadata says {url}: {error.message}",
            "Pass --profile (see `pvinstall profiles`).",
            key="--profile",
        ) from None


# -- reading the devices ---------------------------------------------------------------


@dataclass(frozen=True)
class Switch:
    """One device moved to virtio: a disk's bus or a NIC's model."""

    kind: Literal["disk", "nic"]
    old: str  # "hda (ide)", "e1000"
    new: str  # "vdb (virtio)", "virtio"
    where: str  # the disk's source, the NIC's MAC address and network
    boot: bool = False

    def describe(self) -> str:
        what = "boot disk" if self.boot else ("disk" if self.kind == "disk" else "NIC")
        return f"{what} {self.old} -> {self.new} ({self.where})"

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "old": self.old,
            "new": self.new,
            "where": self.where,
            "boot": self.boot,
        }


def _devices(root: ET.Element) -> ET.Element:
    devices = root.find("devices")
    if devices is None:
        devices = ET.SubElement(root, "devices")
    return devices


def _target(disk: ET.Element) -> ET.Element:
    target = disk.find("target")
    if target is None:
        target = ET.SubElement(disk, "target")
    return target


def _disks(root: ET.Element, device: str = "disk") -> list[ET.Element]:
    return [d for d in _devices(root).findall("disk") if d.get("device", "disk") == device]


def _boot_order(element: ET.Element) -> int | None:
    boot = element.find("boot")
    if boot is None:
        return None
    try:
        return int(boot.get("order", ""))
    except ValueError:
        return None


def boot_disk(root: ET.Element) -> ET.Element | None:
    """The disk Windows boots from: the one with the lowest `<boot order>`, else the
    first disk (what `<os><boot dev='hd'/>` boots)."""
    disks = _disks(root)
    ordered = [(order, i) for i, d in enumerate(disks) if (order := _boot_order(d)) is not None]
    if ordered:
        return disks[min(ordered)[1]]
    return disks[0] if disks else None


def _disk_position(disk: ET.Element) -> str:
    target = _target(disk)
    return f"{target.get('dev', '?')} ({target.get('bus', '?')})"


def _convertible_disk(disk: ET.Element) -> bool:
    return _target(disk).get("bus") in CONVERTIBLE_BUSES


def _nic_model(interface: ET.Element) -> str | None:
    model = interface.find("model")
    return model.get("type") if model is not None else None


def _convertible_nic(interface: ET.Element) -> bool:
    if interface.get("type") == "hostdev":
        return False  # a passed-through host NIC has no emulated model
    model = _nic_model(interface)
    return model is None or model in CONVERTIBLE_NIC_MODELS


def _nic_where(interface: ET.Element) -> str:
    mac = interface.find("mac")
    source = interface.find("source")
    kind = interface.get("type", "?")
    net = ""
    if source is not None:
        net = source.get("network") or source.get("bridge") or source.get("dev") or ""
    where = f"{kind} {net}".strip() if kind != "user" else "user-mode network"
    return f"{mac.get('address')}, {where}" if mac is not None and mac.get("address") else where


def pending_devices(xml: str) -> tuple[str, ...]:
    """What convert would switch in `xml`: `disk hda (ide)`, `NIC e1000 (...)`."""
    root = existing.parse_xml(xml)
    found = [f"disk {_disk_position(d)}" for d in _disks(root) if _convertible_disk(d)]
    found += [
        f"NIC {_nic_model(i) or 'rtl8139 (default)'} ({_nic_where(i)})"
        for i in _devices(root).findall("interface")
        if _convertible_nic(i)
    ]
    return tuple(found)


# -- editing the XML -------------------------------------------------------------------


def _used_targets(*roots: ET.Element) -> set[str]:
    return {
        str(_target(d).get("dev"))
        for root in roots
        for d in _devices(root).findall("disk")
        if _target(d).get("dev")
    }


def free_virtio_target(*roots: ET.Element) -> str:
    """The first virtio target (vda, vdb, ...) no disk of the given XMLs uses."""
    used = _used_targets(*roots)
    index = 0
    while devices.disk_target(index) in used:
        index += 1
    return devices.disk_target(index)


def _switch_disk(disk: ET.Element, model: VirtioModel, used: set[str], *, boot: bool) -> Switch:
    target = _target(disk)
    old = _disk_position(disk)
    index = 0
    while devices.disk_target(index) in used:
        index += 1
    dev = devices.disk_target(index)
    used.add(dev)
    target.set("dev", dev)
    target.set("bus", "virtio")
    for attribute in _NON_VIRTIO_TARGET_ATTRIBUTES:
        target.attrib.pop(attribute, None)
    # The drive address names the IDE/SATA/SCSI position; without it libvirt gives the
    # disk a PCI address of its own.
    for tag in _NON_VIRTIO_DISK_ELEMENTS:
        for element in disk.findall(tag):
            disk.remove(element)
    disk.set("model", model)
    return Switch("disk", old, f"{dev} (virtio)", source_of(disk) or "no source", boot=boot)


def _switch_nic(interface: ET.Element, model: VirtioModel) -> Switch:
    element = interface.find("model")
    old = element.get("type", "?") if element is not None else "rtl8139 (default)"
    if element is None:
        element = ET.SubElement(interface, "model")
    element.set("type", model)
    return Switch("nic", old, model, _nic_where(interface))


def _explicit_boot_order(root: ET.Element, boot: ET.Element | None) -> bool:
    """Turn `<os><boot dev=.../>` into per-device boot orders; True when changed.

    With only `<boot dev='hd'/>` the firmware boots whichever hard disk it finds first,
    and once several disks are virtio that may be an empty one: the boot disk must be
    named.
    """
    os_element = root.find("os")
    if os_element is None:
        return False
    entries = os_element.findall("boot")
    devices = _devices(root)
    if not entries or any(device.find("boot") is not None for device in devices):
        return False
    first = {
        "hd": boot,
        "cdrom": next(iter(_disks(root, "cdrom")), None),
        "fd": next(iter(_disks(root, "floppy")), None),
        "network": devices.find("interface"),
    }
    order = 1
    for entry in entries:
        element = first.get(entry.get("dev", ""))
        if element is not None and element.find("boot") is None:
            ET.SubElement(element, "boot", order=str(order))
            order += 1
        os_element.remove(entry)
    return True


def _serialize(root: ET.Element) -> str:
    ET.indent(root, space="  ")
    return ET.tostring(root, encoding="unicode") + "\n"


def _slot_check(root: ET.Element, name: str, *, what: str) -> int:
    return devices.check_pci_slots(
        existing.pci_slot_users(root),
        f"{name} {what}",
        key="DOMAIN",
        hint=devices.SLOT_HINTS["existing"],
        machine=existing.machine_of(root),
    )


# -- the phase-one record ----------------------------------------------------------------


@dataclass(frozen=True)
class StagedRecord:
    """What phase one changed, so that --finish can undo the temporary parts.

    `temp_disk` is None when the boot disk needed no staging (then only the drivers CD
    was added); `cd_added` says whether the CD-ROM drive was added or an empty one used.
    With `pool`, `drivers_iso` and `temp_disk` are the names of volumes phase one made
    in that storage pool (and --finish and --rollback delete exactly those); else they
    are files of this machine. A record without `pool` (older ones) means files.
    """

    domain: str
    profile: str
    model: VirtioModel
    drivers_iso: str
    cd_target: str
    cd_added: bool
    temp_disk: str | None
    temp_target: str | None
    boot_target: str | None
    pool: str | None = None

    @property
    def drivers_placed(self) -> Placed:
        return Placed(self.drivers_iso, self.pool)

    @property
    def temp_placed(self) -> Placed | None:
        return None if self.temp_disk is None else Placed(self.temp_disk, self.pool)

    @property
    def volumes(self) -> tuple[str, ...]:
        """The volumes phase one made in `pool` (none for files)."""
        if self.pool is None:
            return ()
        return tuple(v for v in (self.drivers_iso, self.temp_disk) if v is not None)

    def to_json(self) -> str:
        return json.dumps({"version": RECORD_VERSION, **asdict(self)}, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str, path: Path) -> StagedRecord:
        try:
            data = json.loads(text)
            if data.pop("version", None) != RECORD_VERSION:
                raise ValueError("unknown version")
            model = data["model"]
            if model not in VIRTIO_MODELS:
                raise ValueError(f"model {model!r}")
            return cls(**data)
        except (ValueError, TypeError, KeyError) as error:
            raise InputError(
                f"the phase-one record {path} is not one pvinstall wrote ({error}).",
                "Restore the original with --rollback, or remove the file and start again.",
                key="--finish",
            ) from None


# -- plans -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ConvertPlan:
    """One step of a conversion, decided: what changes, and the new definition."""

    domain: str
    action: Action
    switches: tuple[Switch, ...] = ()
    pending: tuple[Switch, ...] = ()  # left for --finish: the boot disk
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    xml: str = ""
    record: StagedRecord | None = None
    pci_slots: int = 0
    boot_order_named: bool = False

    @property
    def switches_boot_disk(self) -> bool:
        return any(s.boot for s in self.switches)

    def as_json(self) -> dict[str, Any]:
        return {
            "domain": self.domain,
            "action": self.action,
            "switched": [s.as_json() for s in self.switches],
            "pending": [s.as_json() for s in self.pending],
            "added": list(self.added),
            "removed": list(self.removed),
            "pci_slots": self.pci_slots,
        }


def _convert_devices(
    root: ET.Element, model: VirtioModel, *, keep_boot: bool
) -> tuple[list[Switch], list[Switch]]:
    """Switch every convertible disk and NIC in `root`; the boot disk only unless
    `keep_boot`, in which case it is returned as pending (not switched)."""
    used = _used_targets(root)
    boot = boot_disk(root)
    switched: list[Switch] = []
    pending: list[Switch] = []
    for disk in _disks(root):
        if not _convertible_disk(disk):
            continue
        is_boot = disk is boot
        if is_boot and keep_boot:
            pending.append(
                Switch(
                    "disk",
                    _disk_position(disk),
                    "virtio at --finish",
                    source_of(disk) or "no source",
                    boot=True,
                )
            )
            continue
        switched.append(_switch_disk(disk, model, used, boot=is_boot))
    for interface in _devices(root).findall("interface"):
        if _convertible_nic(interface):
            switched.append(_switch_nic(interface, model))
    return switched, pending


def _nothing(root: ET.Element) -> ConvertPlan:
    return ConvertPlan(
        domain=root.findtext("name") or "",
        action="nothing",
        pci_slots=len(existing.pci_slot_users(root)),
    )


def plan_switch(xml: str, model: VirtioModel) -> ConvertPlan:
    """Switch every IDE/SATA/SCSI disk (the boot disk too) and every emulated NIC to
    virtio at once: for a guest that already has the drivers (--drivers-installed)."""
    root = existing.parse_xml(xml)
    name = root.findtext("name") or ""
    boot = boot_disk(root)
    switched, _ = _convert_devices(root, model, keep_boot=False)
    if not switched:
        return _nothing(root)
    named = _explicit_boot_order(root, boot)
    slots = _slot_check(root, name, what="once converted")
    return ConvertPlan(
        domain=name,
        action="switch",
        switches=tuple(switched),
        xml=_serialize(root),
        pci_slots=slots,
        boot_order_named=named,
    )


def _cd_drive(root: ET.Element) -> tuple[ET.Element, bool]:
    """An empty CD-ROM drive for the drivers ISO, or a new one on IDE (SATA on q35);
    whether it was added."""
    os_type = root.find("./os/type")
    machine = os_type.get("machine", "") if os_type is not None else ""
    # IDE has four positions; a q35 guest has no IDE and takes its CD-ROMs on SATA.
    bus = "sata" if "q35" in machine else "ide"
    for cdrom in _disks(root, "cdrom"):
        if _target(cdrom).get("bus") in BUS_POSITIONS and not source_of(cdrom):
            return cdrom, False
    used = _used_targets(root)
    free = [t for t in BUS_POSITIONS[bus] if t not in used]
    if not free:
        raise InputError(
            f"{root.findtext('name')} has no empty CD-ROM drive and no free {bus.upper()} "
            "position for one, so the drivers ISO cannot be attached.",
            "Eject one of its CD-ROMs (virsh change-media DOMAIN hdc --eject --config) and "
            "run convert again.",
            key="DOMAIN",
        )
    cdrom = ET.SubElement(_devices(root), "disk", type="file", device="cdrom")
    ET.SubElement(cdrom, "driver", name="qemu", type="raw")
    ET.SubElement(cdrom, "target", dev=free[0], bus=bus)
    ET.SubElement(cdrom, "readonly")
    return cdrom, True


def plan_phase_one(
    xml: str, profile: Profile, paths: StatePaths, volumes: ConvertVolumes | None = None
) -> ConvertPlan:
    """Phase one of the staged conversion.

    Switches every disk but the boot disk and every emulated NIC to virtio, puts the
    drivers ISO (`paths.drivers_iso`, or the volume `volumes.drivers_iso`) into an
    empty or new CD-ROM drive and, when the boot disk still needs the driver, adds the
    temporary virtio disk (`paths.temp_disk`, or `volumes.temp_disk`) that makes
    Windows install it. The boot disk is pending.
    """
    root = existing.parse_xml(xml)
    name = root.findtext("name") or ""
    model = profile.virtio_model
    boot = boot_disk(root)
    boot_target = _target(boot).get("dev") if boot is not None else None
    switched, pending = _convert_devices(root, model, keep_boot=True)
    if not switched and not pending:
        return _nothing(root)
    pool = volumes.pool if volumes is not None else None
    drivers = Placed(volumes.drivers_iso if volumes else str(paths.drivers_iso), pool)
    temp = Placed(volumes.temp_disk if volumes else str(paths.temp_disk), pool)
    named = _explicit_boot_order(root, boot)
    added: list[str] = []
    temp_target = None
    if pending:
        temp_target = free_virtio_target(root)
        disk = ET.SubElement(_devices(root), "disk", device="disk", model=model)
        ET.SubElement(disk, "driver", name="qemu", type="qcow2")
        temp.source_into(disk)
        ET.SubElement(disk, "target", dev=temp_target, bus="virtio")
        added.append(f"temporary virtio disk {temp_target} ({temp.describe()})")
    cdrom, cd_added = _cd_drive(root)
    # The ISO is raw, whatever the drive said before: QEMU never guesses.
    driver = cdrom.find("driver")
    if driver is None:
        driver = ET.Element("driver", name="qemu")
        cdrom.insert(0, driver)
    driver.set("type", "raw")
    drivers.source_into(cdrom)
    cd_target = str(_target(cdrom).get("dev"))
    added.append(
        f"drivers CD {cd_target} ({drivers.describe()})"
        + ("" if cd_added else ", in the empty drive")
    )
    slots = _slot_check(root, name, what="after phase one")
    record = StagedRecord(
        domain=name,
        profile=profile.name,
        model=model,
        drivers_iso=drivers.name,
        cd_target=cd_target,
        cd_added=cd_added,
        temp_disk=temp.name if pending else None,
        temp_target=temp_target,
        boot_target=boot_target if pending else None,
        pool=pool,
    )
    return ConvertPlan(
        domain=name,
        action="phase-one",
        switches=tuple(switched),
        pending=tuple(pending),
        added=tuple(added),
        xml=_serialize(root),
        record=record,
        pci_slots=slots,
        boot_order_named=named,
    )


def phase_one_pending(xml: str, record: StagedRecord) -> bool:
    """Whether the domain still looks as phase one left it (the temporary disk or the
    drivers CD is attached)."""
    root = existing.parse_xml(xml)
    wanted = [p for p in (record.drivers_placed, record.temp_placed) if p is not None]
    return any(p.read_by(d) for d in _devices(root).findall("disk") for p in wanted)


def plan_finish(xml: str, record: StagedRecord, model: VirtioModel | None = None) -> ConvertPlan:
    """Phase two: remove the temporary disk and the drivers CD phase one added (a drive
    pvinstall added goes, an existing one is emptied), and switch the boot disk and
    anything else still on IDE/SATA/SCSI or an emulated NIC."""
    root = existing.parse_xml(xml)
    name = root.findtext("name") or ""
    devices = _devices(root)
    removed: list[str] = []
    temp, drivers = record.temp_placed, record.drivers_placed
    for disk in list(devices.findall("disk")):
        dev = _target(disk).get("dev", "?")
        if temp is not None and temp.read_by(disk):
            devices.remove(disk)
            removed.append(f"temporary virtio disk {dev} ({temp.describe()})")
        elif drivers.read_by(disk) and disk.get("device") == "cdrom":
            if record.cd_added:
                devices.remove(disk)
                removed.append(f"drivers CD drive {dev} ({drivers.describe()})")
            else:
                for element in disk.findall("source"):
                    disk.remove(element)
                if disk.get("type") == "volume":
                    # An empty drive reads no volume: back to the plain empty drive.
                    disk.set("type", "file")
                removed.append(
                    f"drivers ISO from CD-ROM {dev}, the drive stays ({drivers.describe()})"
                )
    boot = boot_disk(root)
    switched, _ = _convert_devices(root, model or record.model, keep_boot=False)
    if not switched and not removed:
        return _nothing(root)
    named = _explicit_boot_order(root, boot) if switched else False
    slots = _slot_check(root, name, what="once converted")
    return ConvertPlan(
        domain=name,
        action="finish",
        switches=tuple(switched),
        removed=tuple(removed),
        xml=_serialize(root),
        pci_slots=slots,
        boot_order_named=named,
    )


# -- attach ----------------------------------------------------------------------------


@dataclass(frozen=True)
class AttachPlan:
    """One new virtio device: its XML, what to call it, and the slots taken after it."""

    domain: str
    kind: Literal["disk", "nic"]
    device_xml: str
    label: str
    target: str | None
    model: VirtioModel
    pci_slots: int
    pci_budget: int = devices.PCI_SLOTS

    def as_json(self) -> dict[str, Any]:
        return {
            "domain": self.domain,
            "device": self.kind,
            "label": self.label,
            "target": self.target,
            "model": self.model,
            "pci_slots": self.pci_slots,
            "pci_budget": self.pci_budget,
        }


def _attach_slot_check(roots: Iterable[ET.Element], name: str, what: str) -> int:
    """The slots taken after adding one device; InputError when none is free."""
    roots = list(roots)
    taken = max((existing.pci_slot_users(root) for root in roots), key=len)
    return devices.check_pci_slots(
        (*taken, what),
        f"{name} with {what}",
        key="DOMAIN",
        hint=devices.SLOT_HINTS["existing"],
        machine=existing.machine_of(roots[0]),
    )


def plan_attach_disk(
    xml: str,
    profile: Profile,
    image: Path | Placed,
    image_format: str,
    live_xml: str | None = None,
) -> AttachPlan:
    """A virtio disk for the image `image` (a file, or a pool's volume; of
    `image_format`, qcow2 or raw, written into the device) at the first free vdX of
    the persistent (and, when running, the live) definition."""
    placed = image if isinstance(image, Placed) else Placed(str(image))
    roots = [existing.parse_xml(xml)] + ([existing.parse_xml(live_xml)] if live_xml else [])
    name = roots[0].findtext("name") or ""
    model = profile.virtio_model
    target = free_virtio_target(*roots)
    slots = _attach_slot_check(roots, name, f"a virtio disk ({placed.describe()})")
    disk = ET.Element("disk", device="disk", model=model)
    ET.SubElement(disk, "driver", name="qemu", type=image_format)
    placed.source_into(disk)
    ET.SubElement(disk, "target", dev=target, bus="virtio")
    return AttachPlan(
        domain=name,
        kind="disk",
        device_xml=_serialize(disk),
        label=f"virtio disk {target} ({placed.describe()})",
        target=target,
        model=model,
        pci_slots=slots,
        pci_budget=devices.pci_budget(existing.machine_of(roots[0])),
    )


def plan_attach_nic(
    xml: str, profile: Profile, network: str, live_xml: str | None = None
) -> AttachPlan:
    """A virtio NIC on the libvirt `network`, or on QEMU's user-mode network (`user`)."""
    roots = [existing.parse_xml(xml)] + ([existing.parse_xml(live_xml)] if live_xml else [])
    name = roots[0].findtext("name") or ""
    model = profile.virtio_model
    where = "the user-mode network" if network == "user" else f"network {network}"
    slots = _attach_slot_check(roots, name, f"a virtio NIC on {where}")
    if network == "user":
        nic = ET.Element("interface", type="user")
    else:
        nic = ET.Element("interface", type="network")
        ET.SubElement(nic, "source", network=network)
    ET.SubElement(nic, "model", type=model)
    return AttachPlan(
        domain=name,
        kind="nic",
        device_xml=_serialize(nic),
        label=f"virtio NIC on {where}",
        target=None,
        model=model,
        pci_slots=slots,
        pci_budget=devices.pci_budget(existing.machine_of(roots[0])),
    )
