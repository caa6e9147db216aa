"""The driver facts: what pvinstall knows about the virtio-win drivers, from
`drivers/catalog.toml` (driver names and roles, the PCI IDs QEMU presents, which of
them a libvirt device model presents per machine type, OS folder name hints, releases
known to be broken). The INF files are the truth about what a package installs on;
these facts name the drivers and say what they are for.

"Driver facts" is this table; a driver's `.cat` file (its signature) is its catalog.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from builder.errors import BuildError
from builder.resources import data_dir

Role = Literal["storage", "network", "system", "input", "display"]


@dataclass(frozen=True)
class DriverInfo:
    """What pvinstall knows about one virtio driver."""

    name: str
    infs: tuple[str, ...]
    folders: tuple[str, ...]
    driver_class: str
    role: Role
    boot_critical: bool
    required: bool
    device: str | None
    description: str
    install: bool


# The two sets of PCI IDs a virtio device can present: with the legacy interface
# (transitional) or without it (modern, virtio 1.0).
PciIdSet = Literal["transitional_ids", "modern_ids"]


@dataclass(frozen=True)
class PciIds:
    """The PCI IDs a device presents to the guest."""

    vendor: str
    device: str
    subsystem_vendor: str
    subsystem: str
    revision: str

    def hardware_ids(self) -> tuple[str, ...]:
        """The hardware IDs Windows enumerates for this device, most specific first."""
        base = f"PCI\\VEN_{self.vendor}&DEV_{self.device}"
        subsys = f"&SUBSYS_{self.subsystem}{self.subsystem_vendor}"
        return (
            f"{base}{subsys}&REV_{self.revision}",
            f"{base}{subsys}",
            f"{base}&REV_{self.revision}",
            base,
        )


@dataclass(frozen=True)
class KnownBad:
    """A virtio-win release (or driver build) that breaks the profiles of `os_folders`:
    the drivers it concerns (all when empty) in a source of one of `releases`, or whose
    DriverVer ends with `driver_version_suffix` (when not empty) in any source."""

    releases: tuple[str, ...]
    driver_version_suffix: str
    drivers: tuple[str, ...]
    os_folders: tuple[str, ...]
    reason: str
    hint: str


@dataclass(frozen=True)
class InstallerInfo:
    """An installer virtio-win ships besides the INF packages (an MSI the post-install
    step runs silently), and where the source has it for each architecture."""

    name: str
    description: str
    paths: Mapping[str, str]


@dataclass(frozen=True)
class DriverFacts:
    """The whole of drivers/catalog.toml.

    `os_folders` is keyed by a profile's virtio-win OS folder; `pci_ids` by QEMU device
    kind, then ID set; `device_models` by machine type, then libvirt device model.
    """

    drivers: Mapping[str, DriverInfo]
    os_folders: Mapping[str, tuple[str, ...]]
    arch_folders: Mapping[str, tuple[str, ...]]
    known_bad: tuple[KnownBad, ...]
    pci_ids: Mapping[str, Mapping[PciIdSet, PciIds]]
    device_models: Mapping[str, Mapping[str, PciIdSet]]
    nt_versions: Mapping[str, str]
    installers: Mapping[str, InstallerInfo] = field(default_factory=dict)

    def presented_ids(self, kind: str, model: str, machine: str) -> PciIds:
        """The PCI IDs QEMU presents for a virtio device of `kind` (virtio-blk) and libvirt
        `model` on `machine`; BuildError when the facts have no row for them."""
        table = self.device_models.get(machine)
        if table is None:
            raise BuildError(
                f"pvinstall does not know which PCI IDs virtio devices present on machine "
                f"type {machine} (drivers/catalog.toml has no [device_models.{machine}]).",
                f"Add that table to drivers/catalog.toml (machines it knows: "
                f"{', '.join(sorted(self.device_models)) or 'none'}), checked by booting "
                "the probe (docs/testing.md).",
            )
        if model not in table or kind not in self.pci_ids:
            raise BuildError(
                f"drivers/catalog.toml has no PCI IDs for a {kind} device of model {model} on "
                f"machine type {machine}.",
                f"Add {model} to [device_models.{machine}] and [pci_ids.{kind}] of "
                "drivers/catalog.toml.",
            )
        return self.pci_ids[kind][table[model]]

    def driver_for_inf(self, inf_name: str) -> DriverInfo | None:
        wanted = inf_name.lower()
        for info in self.drivers.values():
            if wanted in (i.lower() for i in info.infs):
                return info
        return None

    def nt_name(self, version: tuple[int, int]) -> str:
        key = f"{version[0]}.{version[1]}"
        return self.nt_versions.get(key, f"Windows {key}")


def _driver(name: str, raw: Mapping[str, Any]) -> DriverInfo:
    return DriverInfo(
        name=name,
        infs=tuple(raw["infs"]),
        folders=tuple(raw.get("folders", [name])),
        driver_class=raw.get("class", ""),
        role=raw.get("role", "system"),
        boot_critical=bool(raw.get("boot_critical", False)),
        required=bool(raw.get("required", False)),
        device=raw.get("device"),
        description=raw.get("description", ""),
        install=bool(raw.get("install", True)),
    )


def parse_driver_facts(data: Mapping[str, Any]) -> DriverFacts:
    """The driver facts of the parsed TOML table."""
    return DriverFacts(
        drivers=MappingProxyType(
            {name: _driver(name, raw) for name, raw in data["drivers"].items()}
        ),
        os_folders=MappingProxyType({k: tuple(v) for k, v in data["os_folders"].items()}),
        arch_folders=MappingProxyType({k: tuple(v) for k, v in data["arch_folders"].items()}),
        known_bad=tuple(
            KnownBad(
                releases=tuple(k["releases"]),
                driver_version_suffix=k.get("driver_version_suffix", ""),
                drivers=tuple(k.get("drivers", ())),
                os_folders=tuple(k["os_folders"]),
                reason=k["reason"],
                hint=k["hint"],
            )
            for k in data.get("known_bad", [])
        ),
        pci_ids=MappingProxyType(
            {
                kind: MappingProxyType({id_set: PciIds(**ids) for id_set, ids in sets.items()})
                for kind, sets in data.get("pci_ids", {}).items()
            }
        ),
        device_models=MappingProxyType(
            {
                machine: MappingProxyType(dict(models))
                for machine, models in data.get("device_models", {}).items()
            }
        ),
        nt_versions=MappingProxyType(dict(data.get("nt_versions", {}))),
        installers=MappingProxyType(
            {
                name: InstallerInfo(
                    name=name,
                    description=raw.get("description", ""),
                    paths=MappingProxyType(dict(raw["paths"])),
                )
                for name, raw in data.get("installers", {}).items()
            }
        ),
    )


@cache
def load_driver_facts(path: Path | None = None) -> DriverFacts:
    """Load `drivers/catalog.toml` (cached)."""
    source = path or data_dir("drivers") / "catalog.toml"
    with source.open("rb") as handle:
        return parse_driver_facts(tomllib.load(handle))
