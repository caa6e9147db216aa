"""What the domain tests share: settings, a selection per profile, media paths."""

from __future__ import annotations

import dataclasses
import os
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from pathlib import Path

from builder.config import BuildConfig, load_config
from builder.media import table
from builder.virtio.facts import load_driver_facts
from builder.virtio.packages import scan_source
from builder.virtio.selection import DriverSet, select_drivers
from builder.virtio.source import DirectorySource
from builder.vm import domain, existing
from builder.windows.profiles import PROFILES
from tests.fixtures.virtio_win import PROFILE_OS_FOLDERS, write_modern_tree

GOLDEN = Path(__file__).resolve().parents[3] / "tests" / "golden" / "domain"
REGENERATE = os.environ.get("PVTEST_REGENERATE_GOLDEN") == "1"
OUT = Path("/srv/pvinstall/out")
KEY_2003 = "product_key=ABCDE-FGHIJ-KLMNO-PQRST-UVWXY"

# Golden cases: (file stem, profile, settings, domain type).
GOLDEN_CASES: tuple[tuple[str, str, tuple[str, ...], str], ...] = (
    *((name, name, (), "kvm") for name in PROFILES),
    # The modern machine under TCG differs: Hyper-V without vpindex and what needs it.
    *((f"{name}-qemu", name, (), "qemu") for name, p in PROFILES.items() if p.machine == "q35"),
    # UEFI without Secure Boot and TPM, and BIOS, on 2022.
    ("win2022-x64-no-secure-boot", "win2022-x64", ("secure_boot=false", "tpm=false"), "kvm"),
    ("win2022-x64-bios", "win2022-x64", ("firmware=bios",), "kvm"),
    ("win2003-x64-qemu-user-data", "win2003-x64", ("network=user", "data_disks=[20, 40]"), "qemu"),
    (
        "win2008r2-x64-qemu-user-data",
        "win2008r2-x64",
        ("network=user", "data_disks=[20, 40]", "memory_mib=4096", "vcpus=4"),
        "qemu",
    ),
    # The disks on a virtio-scsi controller; the CD-ROM drives on SATA after them.
    ("win2022-x64-scsi-data", "win2022-x64", ("storage_bus=virtio-scsi", "data_disks=[20]"), "kvm"),
)

FACTS = load_driver_facts()


def config_for(profile: str, *sets: str) -> BuildConfig:
    extra = [KEY_2003] if profile.startswith("win2003") else []
    return load_config(PROFILES[profile], sets=["admin_password=Sup3r-secret", *extra, *sets])


def driversets(root: Path) -> dict[str, DriverSet]:
    """A DriverSet per profile, selected from a virtio-win fixture tree written to `root`."""
    tree = write_modern_tree(root / "virtio-win", oses=PROFILE_OS_FOLDERS)
    scan = scan_source(DirectorySource(tree.root), load_driver_facts())
    return {name: select_drivers(scan, profile) for name, profile in PROFILES.items()}


IN_OUT = Path("install.iso")  # "the Windows ISO is OUT/install.iso" (the default)


def media_for(
    config: BuildConfig,
    out: Path,
    name: str,
    *,
    windows_iso: Path | None = IN_OUT,
    install_cd: Path | None = None,
) -> domain.MediaPaths:
    """The paths of a build in `out`, its media from the media table: with the default
    `windows_iso`, the install drive holds OUT/install.iso for every profile (remastered
    for 2003, the user's ISO for the others); `install_cd` puts another image there (a
    probe standing in for setup)."""
    iso = out / "install.iso" if windows_iso == IN_OUT else windows_iso
    system, data = domain.default_disk_paths(config, out, name)
    media = table.attach(table.media_for(config.profile, iso), out, iso)
    if install_cd is not None:
        media = tuple(
            dataclasses.replace(m, path=install_cd) if (m.device, m.drive) == ("cdrom", 0) else m
            for m in media
        )
    return domain.MediaPaths(
        media=media,
        system_disk=system,
        data_disks=data,
        serial_log=out / "serial.log",
    )


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
        facts=FACTS,
        name=name,
        domain_type=domain_type,
        virtio_model=virtio_model,
    )


def _root(xml: str) -> ET.Element:
    return existing.parse_xml(xml)


def at(node: ET.Element, path: str) -> ET.Element:
    found = node.find(path)
    assert found is not None, f"no {path}"
    return found
