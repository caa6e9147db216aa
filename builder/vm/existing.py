"""Reading and editing domain XML that libvirt or pvinstall wrote (pure): what a defined
domain's install needs to know, the edit that turns an installed domain into a golden
template, the libosinfo id in the metadata, and which devices take a PCI slot.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from builder.numbers import parse_int
from builder.vm.devices import AFTER_INSTALL, AttachedMedium, machine_family, source_of


def parse_xml(text: str) -> ET.Element:
    """Parse XML that libvirt or pvinstall itself wrote."""
    # Trusted input (the local libvirt daemon, our template), and expat fetches no
    # external entities: the stdlib parser is safe here.
    return ET.fromstring(text)  # noqa: S314


# Attributes that hold a secret in a definition read with VIR_DOMAIN_XML_SECURE (the
# VNC and SPICE passwords of <graphics>).
SECRET_ATTRIBUTES = ("passwd",)


def redact_secrets(xml: str) -> str:
    """`xml` for showing (--dry-run, --json): each secret attribute says "(set)" only."""
    root = parse_xml(xml)
    changed = False
    for element in root.iter():
        for attribute in SECRET_ATTRIBUTES:
            if attribute in element.attrib:
                element.set(attribute, "(set)")
                changed = True
    return ET.tostring(root, encoding="unicode") if changed else xml


# -- after the install -------------------------------------------------------------------


@dataclass(frozen=True)
class StrippedDomain:
    """A domain XML without its install media, and what was taken out."""

    xml: str
    removed: tuple[str, ...]


def strip_install_media(xml: str, media: Sequence[AttachedMedium]) -> StrippedDomain:
    """Take `media` (the install media of the media table) out of the domain: a floppy
    drive goes with its disk, a CD-ROM drive is emptied and stays (`AFTER_INSTALL`).

    What remains is the golden template: the virtio disks and NIC. `removed` names the
    media that were attached (`fda: /out/floppy.img`). Stripping twice changes nothing.
    """
    root = parse_xml(xml)
    devices = root.find("devices")
    removed: list[str] = []
    if devices is None:
        return StrippedDomain(xml, ())
    wanted = {str(m.path): m for m in media if m.path is not None}
    for disk in list(devices.findall("disk")):
        where = source_of(disk)
        medium = wanted.get(where)
        if medium is None:
            continue
        removed.append(f"{_target_dev(disk)}: {where}")
        if AFTER_INSTALL[medium.device] == "remove":
            devices.remove(disk)
        else:
            for source in disk.findall("source"):
                disk.remove(source)
    text = ET.tostring(root, encoding="unicode")
    return StrippedDomain(text + "\n", tuple(removed))


def _target_dev(disk: ET.Element) -> str:
    target = disk.find("target")
    return target.get("dev", "?") if target is not None else "?"


def media_attached(xml: str, media: Sequence[AttachedMedium]) -> tuple[str, ...]:
    """Which of `media` a domain XML still has attached (`hda: /x.iso`), in its order."""
    paths = {str(m.path) for m in media if m.path is not None}
    root = parse_xml(xml)
    return tuple(
        f"{_target_dev(disk)}: {source_of(disk)}"
        for disk in root.iterfind("./devices/disk")
        if source_of(disk) in paths
    )


@dataclass(frozen=True)
class DomainFacts:
    """What `virt.install` needs to know about a defined domain, read from its XML."""

    name: str
    system_disk: str | None  # the target (vda) of the first disk
    serial_log: Path | None  # the file of the first <serial type='file'>
    install_cd: str | None  # the file in the CD-ROM drive that boots (or the first one)
    vnc_port: int | None  # only in a running domain's XML


def describe_domain(xml: str) -> DomainFacts:
    """Read the facts `DomainFacts` lists from a domain XML."""
    root = parse_xml(xml)
    system_disk = None
    cds: list[tuple[bool, str | None]] = []  # (boots, file) per CD-ROM drive
    for disk in root.iterfind("./devices/disk"):
        target = disk.find("target")
        dev = target.get("dev") if target is not None else None
        if disk.get("device") == "disk" and system_disk is None:
            system_disk = dev
        elif disk.get("device") == "cdrom":
            cds.append((disk.find("boot") is not None, source_of(disk) or None))
    booting = [source for boots, source in cds if boots] or [source for _, source in cds[:1]]
    serial_log = None
    for serial in root.iterfind("./devices/serial"):
        source = serial.find("source")
        if serial.get("type") == "file" and source is not None and source.get("path"):
            serial_log = Path(str(source.get("path")))
            break
    vnc_port = None
    for graphics in root.iterfind("./devices/graphics"):
        port = graphics.get("port", "")
        if graphics.get("type") == "vnc" and port.isdigit() and int(port) > 0:
            vnc_port = int(port)
    return DomainFacts(
        name=root.findtext("name") or "",
        system_disk=system_disk,
        serial_log=serial_log,
        install_cd=booting[0] if booting else None,
        vnc_port=vnc_port,
    )


# -- templates and clones ----------------------------------------------------------------

# What is the template machine's own and not its clones': libvirt gives each clone a new
# UUID and MAC addresses, and a UEFI clone its own NVRAM and TPM state (from the
# firmware's template VARS) when these are left out.
_MACHINE_OWN = ("uuid",)


def _disks(root: ET.Element) -> list[ET.Element]:
    return [d for d in root.iterfind("./devices/disk") if d.get("device") == "disk"]


@dataclass(frozen=True)
class PoolVolume:
    """A disk that is a volume of a storage pool (`<disk type='volume'>`): a template
    left in a pool (`export = "pool"`) and the clones made of it."""

    pool: str
    volume: str

    def __str__(self) -> str:
        return f"{self.pool}/{self.volume}"


# Where a disk of a domain is: a file, or a pool's volume.
DiskSource = Path | PoolVolume


def _set_file_source(disk: ET.Element, path: DiskSource, image_format: str) -> None:
    """Point a disk at the file or volume `path`, with its format said (QEMU never
    guesses), and no backing chain in the XML (libvirt reads the overlay's recorded
    one)."""
    for child in list(disk):
        if child.tag in ("source", "backingStore"):
            disk.remove(child)
    driver = disk.find("driver")
    if driver is None:
        driver = ET.Element("driver", {"name": "qemu"})
        disk.insert(0, driver)
    driver.set("type", image_format)
    if isinstance(path, PoolVolume):
        disk.set("type", "volume")
        source = ET.Element("source", {"pool": path.pool, "volume": path.volume})
    else:
        disk.set("type", "file")
        source = ET.Element("source", {"file": str(path)})
    disk.insert(list(disk).index(driver) + 1, source)


def _drop_machine_identity(root: ET.Element, tags: Sequence[str]) -> None:
    """Remove what belongs to one machine from a domain: the top-level `tags` (UUID,
    ...), the NVRAM path, the MAC addresses and the TPM state path."""
    for tag in tags:
        for element in root.findall(tag):
            root.remove(element)
    os_element = root.find("os")
    if os_element is not None:
        for nvram in os_element.findall("nvram"):
            os_element.remove(nvram)
    for interface in root.iterfind("./devices/interface"):
        for mac in interface.findall("mac"):
            interface.remove(mac)
    for tpm in root.iterfind("./devices/tpm"):
        for backend in tpm.findall("backend"):
            for state in backend.findall("source"):
                backend.remove(state)


def template_xml(xml: str, template_disk: DiskSource, image_format: str) -> str:
    """The domain of a template, ready for clones: the installed domain (`xml`, its
    install media taken out) without UUID, MAC addresses, NVRAM and TPM state paths,
    removable media or disk sources other than the system disk, which is the exported
    `template_disk`. The data disks stay, without sources: each clone gets empty ones."""
    root = parse_xml(xml)
    _drop_machine_identity(root, _MACHINE_OWN)
    disks = _disks(root)
    for disk in root.iterfind("./devices/disk"):
        if disk.get("device") != "disk":
            for source in disk.findall("source"):
                disk.remove(source)
    for index, disk in enumerate(disks):
        if index == 0:
            _set_file_source(disk, template_disk, image_format)
        else:
            for child in list(disk):
                if child.tag in ("source", "backingStore"):
                    disk.remove(child)
    return ET.tostring(root, encoding="unicode") + "\n"


def data_disk_count(xml: str) -> int:
    """How many disks besides the system disk a domain (or template) has."""
    return max(len(_disks(parse_xml(xml))) - 1, 0)


def clone_xml(
    xml: str,
    *,
    name: str,
    system_disk: DiskSource,
    data_disks: Sequence[DiskSource],
    serial_log: Path | None,
) -> str:
    """A clone's domain from a template's (`template_xml`, or a defined template
    domain): its own name, its disks (a qcow2 overlay or copy, and new data disks), its
    own serial log; no UUID and no MACs, so that libvirt gives it its own. Every device
    of the template stays."""
    root = parse_xml(xml)
    name_element = root.find("name")
    if name_element is None:
        name_element = ET.SubElement(root, "name")
    name_element.text = name
    _drop_machine_identity(root, (*_MACHINE_OWN, "title"))
    disks = _disks(root)
    if len(data_disks) != len(disks) - 1:
        raise ValueError(f"{len(disks) - 1} data disks in the template, {len(data_disks)} given")
    for disk, path in zip(disks, (system_disk, *data_disks), strict=True):
        _set_file_source(disk, path, "qcow2")
    for serial in root.iterfind("./devices/serial"):
        source = serial.find("source")
        if serial.get("type") == "file" and source is not None:
            if serial_log is None:
                serial.set("type", "pty")
                serial.remove(source)
            else:
                source.set("path", str(serial_log))
    return ET.tostring(root, encoding="unicode") + "\n"


# -- existing domains (convert, attach) --------------------------------------------------

# libosinfo names Windows releases http://microsoft.com/win/<release>; pvinstall's
# osinfo ids are "win" + <release> (win2k8r2).
_OSINFO_WINDOWS = "http://microsoft.com/win/"
_OSINFO_NS = "http://libosinfo.org/xmlns/libvirt/domain/1.0"

# Controllers that are functions of the PIIX3 or no PCI device at all: they take none
# of the 28 slots. (type, model); model None is the type's default. PCI controllers
# (the root, and the bridges libvirt adds by itself when the root bus is full) are
# plumbing, not devices, and are not counted either.
_SLOTLESS_CONTROLLERS = frozenset(
    {
        ("ide", None),
        ("fdc", None),
        ("usb", None),
        ("usb", "piix3-uhci"),
        ("usb", "none"),
        ("ccid", None),
        ("xenbus", None),
        ("isa", None),
    }
)
# Devices that are always a PCI function of their own, wherever they appear.
_PCI_DEVICE_TAGS = frozenset({"interface", "rng", "shmem", "vsock", "crypto", "filesystem"})


def osinfo_short_id(url: str) -> str | None:
    """pvinstall's osinfo id (`win2k8r2`) of a libosinfo URL, or None for non-Windows."""
    if not url.startswith(_OSINFO_WINDOWS):
        return None
    release = url[len(_OSINFO_WINDOWS) :].strip("/")
    return f"win{release}" if release else None


def osinfo_url(root: ET.Element) -> str | None:
    """The libosinfo OS id in a domain's metadata, as virt-install and pvinstall write it."""
    found = root.find(f"./metadata/{{{_OSINFO_NS}}}libosinfo/{{{_OSINFO_NS}}}os")
    return found.get("id") if found is not None else None


def _ich9_function(device: ET.Element) -> bool:
    """A q35 device that is part of the ICH9 (slot 0x1f of the root bus), which takes
    no root port: the first SATA controller, whatever its address says."""
    if device.tag == "controller" and device.get("type") == "sata" and device.get("index") == "0":
        return True
    address = device.find("address")
    return (
        address is not None
        and address.get("type") == "pci"
        and _address_part(address.get("bus", "0")) == 0
        and _address_part(address.get("slot", "0")) == 0x1F
    )


def _takes_pci_slot(device: ET.Element) -> bool:
    tag = device.tag
    if tag in _PCI_DEVICE_TAGS:
        return True
    if tag == "disk":
        target = device.find("target")
        return target is not None and target.get("bus") == "virtio"
    if tag == "controller":
        kind = device.get("type")
        return kind != "pci" and (kind, device.get("model")) not in _SLOTLESS_CONTROLLERS
    if tag == "hostdev":
        return device.get("type") == "pci"
    if tag == "sound":
        return device.get("model") not in ("pcspk", "usb")
    if tag == "watchdog":
        return device.get("model") == "i6300esb"
    if tag == "input":
        return device.get("bus") == "virtio"
    return tag == "video"  # a second video card (the first one is excluded by the caller)


def _device_label(device: ET.Element) -> str:
    if device.tag == "disk":
        target = device.find("target")
        return f"virtio disk {target.get('dev', '?') if target is not None else '?'}"
    if device.tag == "interface":
        model = device.find("model")
        return f"NIC ({model.get('type', '?') if model is not None else 'default model'})"
    kind = device.get("type") or device.get("model") or ""
    return f"{device.tag} {kind}".strip()


def _address_part(text: str) -> int | str:
    # libvirt writes 0x05; hand-written XML may say 5. Compare them as numbers.
    number = parse_int(text)
    return text if number is None else number


def machine_of(root: ET.Element) -> str:
    """The machine type of a domain XML (`pc-q35-7.2`, `q35`; `pc` when it names none)."""
    os_type = root.find("./os/type")
    return (os_type.get("machine") if os_type is not None else None) or "pc"


def pci_slot_users(root: ET.Element) -> tuple[str, ...]:
    """The devices of a domain XML that take one of the guest's PCI slots (i440fx: one of
    the 28; q35: a PCIe root port), one label per slot (the rule of
    `check_slot_budget`, for any domain; devices.PCI_BUDGETS has the numbers).

    Not counted: the PCI root, bridges and root ports, the PIIX3's functions (IDE, USB
    UHCI) or on q35 the ICH9's (the first SATA controller, at 00:1f), the primary video
    card and the memory balloon the 28 leave room for. Devices that share a slot
    (multifunction) count once; a device without an address yet counts when it is a
    PCI device (virtio disk, NIC, ...).
    """
    devices = root.find("devices")
    if devices is None:
        return ()
    q35 = machine_family(machine_of(root)) == "q35"
    slots: dict[tuple[int | str, ...], str] = {}
    labels: list[str] = []
    primary_video = devices.find("video")
    for device in devices:
        if device is primary_video or device.tag == "memballoon":
            continue
        if q35 and _ich9_function(device):
            continue
        if not _takes_pci_slot(device):
            continue
        address = device.find("address")
        if address is not None and address.get("type") == "pci":
            key = tuple(_address_part(address.get(part, "0")) for part in ("domain", "bus", "slot"))
            slots.setdefault(key, _device_label(device))
        elif address is None:
            labels.append(_device_label(device))
    return tuple([*slots.values(), *labels])
