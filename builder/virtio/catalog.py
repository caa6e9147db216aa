"""Driver packages: scan a source into packages and select the ones a profile needs.

A package is an INF, its catalog and every file its `[SourceDisksFiles]` names,
all from the INF's folder (names matched case-insensitively). Selection is by what
the INF declares (`inf.supports`); folder names are only a hint that breaks ties.
The knowledge about virtio drivers lives in `drivers/catalog.toml`.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from builder.errors import InputError, Problem
from builder.resources import data_dir
from builder.sources import GET_VIRTIO_WIN, DriverSource, SourceFile
from builder.virtio.inf import (
    Inf,
    InfError,
    Match,
    Service,
    describe_decorations,
    parse_inf,
    supports,
)
from builder.windows.profiles import PROFILES, Profile

MAX_INF_BYTES = 4 * 1024 * 1024

Role = Literal["storage", "network", "system", "input", "display"]


# -- the catalog (drivers/catalog.toml) ------------------------------------------------


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
    releases: tuple[str, ...]
    driver_version_suffix: str
    families: tuple[str, ...]
    reason: str
    hint: str


@dataclass(frozen=True)
class Catalog:
    drivers: Mapping[str, DriverInfo]
    os_folders: Mapping[str, tuple[str, ...]]
    arch_folders: Mapping[str, tuple[str, ...]]
    known_bad: tuple[KnownBad, ...]
    devices: Mapping[str, Mapping[str, PciIds]]
    nt_versions: Mapping[str, str]

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


def parse_catalog(data: Mapping[str, Any]) -> Catalog:
    """Build the catalog from the parsed TOML table."""
    return Catalog(
        drivers=MappingProxyType(
            {name: _driver(name, raw) for name, raw in data["drivers"].items()}
        ),
        os_folders=MappingProxyType({k: tuple(v) for k, v in data["os_folders"].items()}),
        arch_folders=MappingProxyType({k: tuple(v) for k, v in data["arch_folders"].items()}),
        known_bad=tuple(
            KnownBad(
                releases=tuple(k["releases"]),
                driver_version_suffix=k["driver_version_suffix"],
                families=tuple(k["families"]),
                reason=k["reason"],
                hint=k["hint"],
            )
            for k in data.get("known_bad", [])
        ),
        devices=MappingProxyType(
            {
                kind: MappingProxyType(
                    {flavour: PciIds(**ids) for flavour, ids in flavours.items()}
                )
                for kind, flavours in data.get("devices", {}).items()
            }
        ),
        nt_versions=MappingProxyType(dict(data.get("nt_versions", {}))),
    )


@cache
def load_catalog(path: Path | None = None) -> Catalog:
    """Load `drivers/catalog.toml` (cached)."""
    source = path or data_dir("drivers") / "catalog.toml"
    with source.open("rb") as handle:
        return parse_catalog(tomllib.load(handle))


# -- packages ----------------------------------------------------------------------------


@dataclass(frozen=True)
class PackageFile:
    """A file of a package: path inside the source, size, and what it is."""

    path: str
    size: int
    kind: Literal["inf", "catalog", "file"]


@dataclass(frozen=True)
class DriverPackage:
    """An INF found in a source, with the folder listing needed to complete it."""

    name: str
    info: DriverInfo | None
    inf_path: str
    inf: Inf
    folder_files: Mapping[str, SourceFile] = field(repr=False)

    @property
    def folder(self) -> str:
        return self.inf_path.rpartition("/")[0]

    @property
    def inf_name(self) -> str:
        return self.inf_path.rpartition("/")[2]

    @property
    def arches(self) -> tuple[str, ...]:
        """The architectures its decorations name (`x86` for undecorated models)."""
        found: dict[str, None] = {}
        for manufacturer in self.inf.manufacturers:
            if not manufacturer.decorations:
                found.setdefault("x86", None)
            for decoration in manufacturer.decorations:
                found.setdefault(decoration.arch or "x86", None)
        return tuple(found)

    def catalog_name(self, arch: str) -> str | None:
        return self.inf.catalog_file(arch)

    def files(self, arch: str) -> tuple[tuple[PackageFile, ...], tuple[str, ...]]:
        """The package's files for `arch` and the names that are missing from its folder."""
        inf_entry = self.folder_files[self.inf_name.lower()]
        found = [PackageFile(inf_entry.path, inf_entry.size, "inf")]
        missing: list[str] = []
        wanted: list[tuple[str, Literal["catalog", "file"]]] = []
        catalog = self.catalog_name(arch)
        if catalog:
            wanted.append((catalog, "catalog"))
        wanted += [(f.path, "file") for f in self.inf.source_files(arch)]
        seen = {inf_entry.path.lower()}
        for name, kind in wanted:
            entry = self.folder_files.get(name.lower())
            if entry is None:
                missing.append(name)
            elif entry.path.lower() not in seen:
                seen.add(entry.path.lower())
                found.append(PackageFile(entry.path, entry.size, kind))
        return tuple(found), tuple(missing)


@dataclass(frozen=True)
class BrokenInf:
    path: str
    reason: str


@dataclass(frozen=True)
class Scan:
    """Every package of a source, and the INF files that could not be read."""

    source: Mapping[str, str]
    packages: tuple[DriverPackage, ...]
    broken: tuple[BrokenInf, ...]


def scan_source(source: DriverSource, catalog: Catalog) -> Scan:
    """Find every INF in `source` and make a package of each; reads only INF bytes."""
    files = source.files()
    by_folder: dict[str, dict[str, SourceFile]] = {}
    for entry in files:
        folder, _, _ = entry.path.rpartition("/")
        by_folder.setdefault(folder.lower(), {})
    for entry in files:
        # Every folder sees the files below it by relative path, so a
        # [SourceDisksFiles] subdirectory resolves too.
        parts = entry.path.split("/")
        for depth in range(len(parts)):
            folder = "/".join(parts[:depth]).lower()
            if folder in by_folder:
                relative = "/".join(parts[depth:]).lower()
                by_folder[folder].setdefault(relative, entry)
    infs = [e for e in files if e.path.lower().endswith(".inf")]
    if not infs:
        raise InputError(
            f"{source.path} has no INF files: it is not a virtio-win ISO or driver folder.",
            GET_VIRTIO_WIN,
            key="--drivers",
        )
    packages: list[DriverPackage] = []
    broken: list[BrokenInf] = []
    for entry in infs:
        try:
            data = source.read_bytes(entry.path, MAX_INF_BYTES)
            inf = parse_inf(data, entry.path)
        except InfError as exc:
            broken.append(
                BrokenInf(
                    entry.path, exc.reason if exc.line is None else f"line {exc.line}: {exc.reason}"
                )
            )
            continue
        except InputError as exc:
            broken.append(BrokenInf(entry.path, exc.message))
            continue
        name = entry.path.rpartition("/")[2]
        info = catalog.driver_for_inf(name)
        folder = entry.path.rpartition("/")[0].lower()
        packages.append(
            DriverPackage(
                name=info.name if info else name.rpartition(".")[0],
                info=info,
                inf_path=entry.path,
                inf=inf,
                folder_files=MappingProxyType(by_folder[folder]),
            )
        )
    return Scan(
        source=MappingProxyType(source.as_json()),
        packages=tuple(packages),
        broken=tuple(broken),
    )


# -- selection ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SelectedDriver:
    """The package chosen for one driver, and how its INF installs on the profile."""

    name: str
    info: DriverInfo | None
    package: DriverPackage
    match: Match
    arch: str
    files: tuple[PackageFile, ...]
    services: tuple[Service, ...]

    @property
    def inf_path(self) -> str:
        return self.package.inf_path

    @property
    def folder(self) -> str:
        return self.package.folder

    @property
    def boot_critical(self) -> bool:
        if self.services:
            return any(s.boot_start for s in self.services)
        return bool(self.info and self.info.boot_critical)

    @property
    def role(self) -> Role:
        return self.info.role if self.info else "system"

    @property
    def hardware_ids(self) -> tuple[str, ...]:
        return self.match.hardware_ids

    @property
    def driver_ver(self) -> str:
        return self.package.inf.driver_ver_text

    @property
    def service_name(self) -> str:
        """The service the driver installs (the .sys base name for storage drivers)."""
        if self.services:
            return self.services[0].name
        return self.package.inf_name.rpartition(".")[0]


@dataclass(frozen=True)
class Rejection:
    inf: str
    reason: str


@dataclass(frozen=True)
class DriverSet:
    """The drivers selected for a profile, what was rejected and why, and warnings."""

    profile: Profile
    source: Mapping[str, str]
    selected: tuple[SelectedDriver, ...]
    rejected: tuple[Rejection, ...]
    warnings: tuple[str, ...]

    def get(self, name: str) -> SelectedDriver | None:
        for driver in self.selected:
            if driver.name.lower() == name.lower():
                return driver
        return None

    def by_role(self, role: Role) -> tuple[SelectedDriver, ...]:
        return tuple(d for d in self.selected if d.role == role)

    @property
    def storage(self) -> SelectedDriver:
        """The boot storage driver (viostor): the one text-mode setup must know."""
        for driver in self.selected:
            if driver.role == "storage" and driver.boot_critical and driver.name == "viostor":
                return driver
        for driver in self.selected:
            if driver.role == "storage" and driver.boot_critical:
                return driver
        raise LookupError("no boot-critical storage driver selected")


@dataclass(frozen=True)
class _Candidate:
    package: DriverPackage
    match: Match
    files: tuple[PackageFile, ...]
    missing: tuple[str, ...]
    rank: tuple[Any, ...]


def _folder_hint(package: DriverPackage, profile: Profile, catalog: Catalog) -> tuple[int, int]:
    """How well the folder names agree with the profile: (OS folder, arch folder)."""
    parts = [p.lower() for p in package.folder.split("/")]
    os_names = [n.lower() for n in catalog.os_folders.get(profile.family.value, ())]
    arch_names = [n.lower() for n in catalog.arch_folders.get(profile.arch, ())]
    os_score = 0
    for index, name in enumerate(os_names):
        if name in parts:
            os_score = len(os_names) - index
            break
    arch_score = 1 if any(n in parts for n in arch_names) else 0
    return os_score, arch_score


def _version_key(version: str) -> tuple[int, ...]:
    numbers = []
    for part in version.split("."):
        digits = re.match(r"\d+", part.strip())
        numbers.append(int(digits.group()) if digits else 0)
    return tuple(numbers)


def why_unsupported(inf: Inf, profile: Profile, catalog: Catalog) -> str:
    """Why an INF does not install on the profile's Windows, in words."""
    decorations = [d for m in inf.manufacturers for d in m.decorations]
    undecorated = any(not m.decorations for m in inf.manufacturers)
    arches = sorted({d.arch or "x86" for d in decorations} | ({"x86"} if undecorated else set()))
    if not decorations and not undecorated:
        return "declares no [Manufacturer] models"
    if profile.arch not in arches:
        return f"for {', '.join(arches)} only ({describe_decorations(inf)})"
    same_arch = [d for d in decorations if (d.arch or "x86") == profile.arch]
    newer = [d for d in same_arch if (d.major or 0, d.minor or 0) > profile.nt_version]
    if newer and len(newer) == len(same_arch):
        lowest = min((d.major or 0, d.minor or 0) for d in newer)
        return (
            f"{', '.join(d.raw for d in newer)} only: needs {catalog.nt_name(lowest)} "
            f"(NT {lowest[0]}.{lowest[1]}) or later"
        )
    return (
        f"no models section applies to NT {profile.nt_version[0]}.{profile.nt_version[1]} "
        f"{profile.arch} ({describe_decorations(inf)})"
    )


def select_drivers(scan: Scan, profile: Profile, catalog: Catalog | None = None) -> DriverSet:
    """Choose, per driver, the package whose INF installs on `profile`.

    Among the packages that install, the closest decoration wins, then the
    folder names, then the newest DriverVer, then the path (so the result is
    deterministic). Raises InputError when the chosen package of any driver is
    incomplete (a broken folder is never silently replaced by a worse match, such
    as a 2003 build for 2008), or when a required driver (viostor, NetKVM) has no
    package for the profile.
    """
    catalog = catalog or load_catalog()
    rejected: list[Rejection] = [
        Rejection(b.path, f"cannot be read: {b.reason}") for b in scan.broken
    ]
    warnings: list[str] = []
    candidates: dict[str, list[_Candidate]] = {}
    unsupported: dict[str, list[DriverPackage]] = {}
    for package in scan.packages:
        if package.info is None:
            rejected.append(Rejection(package.inf_path, "not a virtio driver pvinstall knows"))
            continue
        if not package.info.install:
            rejected.append(Rejection(package.inf_path, f"{package.info.description}"))
            continue
        match = supports(package.inf, profile.nt_version, profile.arch)
        if match is None:
            reason = why_unsupported(package.inf, profile, catalog)
            rejected.append(Rejection(package.inf_path, reason))
            unsupported.setdefault(package.name, []).append(package)
            continue
        files, missing = package.files(profile.arch)
        decoration_rank = match.decoration.rank() if match.decoration else (0, 0, 0, 0, 0)
        rank = (
            decoration_rank,
            _folder_hint(package, profile, catalog),
            _version_key(package.inf.driver_ver[1]),
        )
        candidates.setdefault(package.name, []).append(
            _Candidate(package, match, files, missing, rank)
        )

    selected: list[SelectedDriver] = []
    problems_missing: list[str] = []
    for name in sorted(candidates, key=str.lower):
        # Best rank first; among equals the lexically first path, for determinism.
        ordered = sorted(candidates[name], key=lambda c: c.package.inf_path)
        ordered.sort(key=lambda c: c.rank, reverse=True)
        best = ordered[0]
        for other in ordered[1:]:
            if other.missing:
                reason = f"incomplete: missing {', '.join(other.missing)}"
            else:
                reason = f"{best.package.inf_path} is a closer match"
            rejected.append(Rejection(other.package.inf_path, reason))
        if best.missing:
            problems_missing.append(
                f"{best.package.inf_path} is incomplete: {', '.join(best.missing)} "
                f"(named by the INF) is not in {best.package.folder or '/'}"
            )
            rejected.append(
                Rejection(best.package.inf_path, f"incomplete: missing {', '.join(best.missing)}")
            )
            continue
        selected.append(
            SelectedDriver(
                name=name,
                info=best.package.info,
                package=best.package,
                match=best.match,
                arch=profile.arch,
                files=best.files,
                services=best.package.inf.match_services(best.match, profile.arch),
            )
        )

    if problems_missing:
        raise InputError.collect(
            _problem(
                scan,
                text,
                "Every file the INF names must sit next to it; copy the "
                "complete folder from a virtio-win release.",
            )
            for text in problems_missing
        )
    _require(scan, profile, catalog, selected, unsupported)
    warnings += _known_bad_warnings(scan, profile, catalog, selected)
    return DriverSet(
        profile=profile,
        source=scan.source,
        selected=tuple(selected),
        rejected=tuple(sorted(rejected, key=lambda r: r.inf)),
        warnings=tuple(warnings),
    )


def _problem(scan: Scan, message: str, hint: str) -> Problem:
    return Problem(scan.source.get("path", "--drivers"), message, hint)


def _require(
    scan: Scan,
    profile: Profile,
    catalog: Catalog,
    selected: Sequence[SelectedDriver],
    unsupported: Mapping[str, Sequence[DriverPackage]],
) -> None:
    chosen = {d.name for d in selected}
    problems = []
    for info in catalog.drivers.values():
        if not info.required or info.name in chosen:
            continue
        found = unsupported.get(info.name, [])
        where = scan.source.get("path", "the driver source")
        version = f"{profile.nt_version[0]}.{profile.nt_version[1]}"
        target = f"Windows {version} {profile.arch} ({profile.name})"
        if not found:
            problems.append(
                _problem(
                    scan,
                    f"no {info.name} driver in {where}: {profile.name} cannot boot or network "
                    f"from virtio without it.",
                    GET_VIRTIO_WIN,
                )
            )
            continue
        decorations = sorted({d for p in found for d in p.inf.decorations}) or ["undecorated"]
        arches = sorted({a for p in found for a in p.arches})
        if profile.arch not in arches:
            others = [
                p.name for p in PROFILES.values() if p.family is profile.family and p.arch in arches
            ]
            alternative = f", or the {others[0]} profile" if others else ""
            problems.append(
                _problem(
                    scan,
                    f"no INF for {info.name} matches {target} in {where}: it has {info.name} "
                    f"for {', '.join(arches)} only ({', '.join(decorations)}).",
                    f"Use a source with {profile.arch} drivers{alternative}.",
                )
            )
            continue
        same_arch = [
            d
            for p in found
            for m in p.inf.manufacturers
            for d in m.decorations
            if (d.arch or "x86") == profile.arch
        ]
        lowest = min(((d.major or 0, d.minor or 0) for d in same_arch), default=None)
        needs = (
            f": these are drivers for {catalog.nt_name(lowest)} (NT {lowest[0]}.{lowest[1]})"
            " and later"
            if lowest and lowest > profile.nt_version
            else ""
        )
        problems.append(
            _problem(
                scan,
                f"no INF for {info.name} matches {target} in {where} (found "
                f"{', '.join(decorations)} only{needs}).",
                f"{profile.title} needs the {profile.os_folder} folder "
                f"({info.folders[0]}/{profile.virtio_win_folder}); use a virtio-win release "
                "that ships it (0.1.217 or later still does; see drivers/README.md).",
            )
        )
    if problems:
        raise InputError.collect(problems)


def _known_bad_warnings(
    scan: Scan, profile: Profile, catalog: Catalog, selected: Sequence[SelectedDriver]
) -> list[str]:
    warnings = []
    label = scan.source.get("label", "")
    for bad in catalog.known_bad:
        if profile.family.value not in bad.families:
            continue
        release_hit = any(label.endswith(f"-{r}") or label == r for r in bad.releases)
        hits = [
            d for d in selected if d.package.inf.driver_ver[1].endswith(bad.driver_version_suffix)
        ]
        if hits or release_hit:
            names = ", ".join(f"{d.name} {d.package.inf.driver_ver[1]}" for d in hits) or label
            warnings.append(f"{names}: {bad.reason}. {bad.hint}")
    return warnings


# -- JSON ----------------------------------------------------------------------------------


def package_json(package: DriverPackage) -> dict[str, Any]:
    """One row of `pvinstall drivers SOURCE --json`."""
    arch = package.arches[0] if package.arches else "x86"
    _, missing = package.files(arch)
    catalog = package.catalog_name(arch)
    return {
        "name": package.name,
        "inf": package.inf_path,
        "folder": package.folder,
        "arch": list(package.arches),
        "decorations": list(package.inf.decorations),
        "driver_ver": package.inf.driver_ver_text,
        "class": package.inf.driver_class,
        "catalog": catalog,
        "signed": catalog is not None and catalog.lower() not in (m.lower() for m in missing),
        "complete": not missing,
        "missing": list(missing),
    }


def selected_json(driver: SelectedDriver, source: DriverSource) -> dict[str, Any]:
    """One entry of `selected` (DESIGN.md and the manifest reuse this shape)."""
    return {
        "name": driver.name,
        "inf": driver.inf_path,
        "arch": driver.arch,
        "decoration": driver.match.decoration_text,
        "driver_ver": driver.driver_ver,
        "boot_critical": driver.boot_critical,
        "hardware_ids": list(driver.hardware_ids),
        "files": [
            {"path": f.path, "size": f.size, "sha256": source.sha256(f.path)} for f in driver.files
        ],
    }


def driverset_json(drivers: DriverSet, source: DriverSource) -> dict[str, Any]:
    """The document `pvinstall drivers SOURCE --profile P --json` prints."""
    return {
        "source": dict(drivers.source),
        "profile": drivers.profile.name,
        "selected": [selected_json(d, source) for d in drivers.selected],
        "rejected": [{"inf": r.inf, "reason": r.reason} for r in drivers.rejected],
        "warnings": list(drivers.warnings),
    }


def scan_json(scan: Scan) -> dict[str, Any]:
    """The document `pvinstall drivers SOURCE --json` prints."""
    return {
        "source": dict(scan.source),
        "packages": [package_json(p) for p in scan.packages],
        "unreadable": [{"inf": b.path, "reason": b.reason} for b in scan.broken],
        "warnings": [
            f"{p.inf_path} is incomplete: missing {', '.join(package_json(p)['missing'])}"
            for p in scan.packages
            if not package_json(p)["complete"]
        ],
    }
