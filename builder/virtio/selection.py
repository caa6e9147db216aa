"""Selecting the driver packages a profile needs, from a scan (pure).

A package fits when what its INF declares (`inf.supports`: architecture, version and
build) fits the profile. Among the packages that fit, the profile's `selection_rule`
decides: the closest decoration (legacy profiles, whose folders each hold a build of
their own), or first the package in the profile's own virtio-win folder (modern ones:
virtio-win copies one build into several folders, see docs/virtio-win.md §6); folder
names otherwise only break ties. Every INF not selected is listed with the reason. The
installers the profile's post-install step runs (MSIs, not packages) are found too.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from builder.errors import BuildError, InputError, Problem
from builder.virtio.facts import DriverFacts, DriverInfo, Role, load_driver_facts
from builder.virtio.inf import Inf, Match, Service, declared, describe_decorations, supports
from builder.virtio.packages import DriverPackage, PackageFile, Scan
from builder.virtio.signatures import CatalogSignatures
from builder.virtio.source import GET_VIRTIO_WIN
from builder.vm.devices import STORAGE_DEVICE_KINDS, StorageBus
from builder.windows.profiles import Profile, SelectionRule, sibling


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
    # What its catalog is signed with, once read (virtio/trust.py); None before that,
    # and for a package without a catalog.
    signatures: CatalogSignatures | None = None

    @property
    def inf_path(self) -> str:
        return self.package.inf_path

    @property
    def folder(self) -> str:
        return self.package.folder

    @property
    def device(self) -> str | None:
        """The QEMU device kind the driver drives (virtio-blk), from the driver facts."""
        return self.info.device if self.info else None

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
    def catalog(self) -> PackageFile | None:
        """The package's catalog file (the `.cat` its INF's CatalogFile names)."""
        return next((f for f in self.files if f.kind == "catalog"), None)

    @property
    def required(self) -> bool:
        return bool(self.info and self.info.required)

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
class SelectedInstaller:
    """An installer of the source the post-install step runs (`[installers]` of the
    driver facts): its path in the source and its size."""

    name: str
    description: str
    path: str
    size: int


@dataclass(frozen=True)
class DriverSet:
    """The drivers selected for a profile, what was rejected and why, and warnings; the
    storage bus the system disk is on, and the installers found for the profile."""

    profile: Profile
    source: Mapping[str, str]
    selected: tuple[SelectedDriver, ...]
    rejected: tuple[Rejection, ...]
    warnings: tuple[str, ...]
    storage_bus: StorageBus = StorageBus.VIRTIO_BLK
    installers: tuple[SelectedInstaller, ...] = ()

    def get(self, name: str) -> SelectedDriver | None:
        for driver in self.selected:
            if driver.name.lower() == name.lower():
                return driver
        return None

    def by_role(self, role: Role) -> tuple[SelectedDriver, ...]:
        return tuple(d for d in self.selected if d.role == role)

    @property
    def storage(self) -> SelectedDriver:
        """The boot storage driver of the storage bus (viostor for virtio-blk, vioscsi for
        virtio-scsi): the one setup must have to see the system disk."""
        kind = STORAGE_DEVICE_KINDS[self.storage_bus]
        for driver in self.selected:
            if driver.role == "storage" and driver.boot_critical and driver.device == kind:
                return driver
        raise InputError(
            f"no boot-critical storage driver was selected for {self.profile.name} from "
            f"{self.source.get('path', 'the driver source')}.",
            f"Without one setup cannot see the virtio disk. {GET_VIRTIO_WIN}",
            key="--drivers",
        )


@dataclass(frozen=True)
class _Candidate:
    package: DriverPackage
    match: Match
    files: tuple[PackageFile, ...]
    missing: tuple[str, ...]
    rank: tuple[Any, ...]


def _folder_hint(package: DriverPackage, profile: Profile, facts: DriverFacts) -> tuple[int, int]:
    """How well the folder names agree with the profile: (OS folder, arch folder)."""
    return folder_hint(package.folder, profile, facts)


def folder_hint(folder: str, profile: Profile, facts: DriverFacts) -> tuple[int, int]:
    """How well the names of `folder` agree with the profile: (OS folder, arch folder),
    each 0 when no name of the folder says it."""
    parts = [p.lower() for p in folder.split("/")]
    os_names = [n.lower() for n in facts.os_folders.get(profile.os_folder, ())]
    arch_names = [n.lower() for n in facts.arch_folders.get(profile.arch, ())]
    os_score = 0
    for index, name in enumerate(os_names):
        if name in parts:
            os_score = len(os_names) - index
            break
    arch_score = 1 if any(n in parts for n in arch_names) else 0
    return os_score, arch_score


def other_windows_folder(folder: str, profile: Profile, facts: DriverFacts) -> str | None:
    """The name in `folder` of another Windows version's folder (`2k3` for a 2008
    profile), or None when the folder is the profile's own or names no Windows version."""
    if folder_hint(folder, profile, facts)[0]:
        return None
    parts = {p.lower(): p for p in folder.split("/")}
    for os_folder, names in facts.os_folders.items():
        if os_folder == profile.os_folder:
            continue
        for name in names:
            if name.lower() in parts:
                return parts[name.lower()]
    return None


def in_own_folder(package: DriverPackage, profile: Profile, facts: DriverFacts) -> bool:
    """Whether the package is in the profile's own virtio-win folder: its OS folder name
    and an architecture folder name are both in its path (`viostor/2k22/amd64` in the ISO
    and by-driver layouts, `amd64/2k22` in by-os)."""
    parts = [p.lower() for p in package.folder.split("/")]
    arch_names = [n.lower() for n in facts.arch_folders.get(profile.arch, ())]
    return profile.os_folder.lower() in parts and any(n in parts for n in arch_names)


def _in_driver_folder(package: DriverPackage) -> int:
    """1 when a folder of the path is the driver's own (`viostor/2k22/amd64`), which the
    ISO's root auto-detect copies (`amd64/2k22`) are not: the same package either way,
    but the driver's folder is where virtio-win documents it."""
    parts = {p.lower() for p in package.folder.split("/")}
    folders = {f.lower() for f in package.info.folders} if package.info else set()
    return 1 if parts & folders else 0


def _rank(
    package: DriverPackage, match: Match, profile: Profile, facts: DriverFacts
) -> tuple[Any, ...]:
    decoration = match.decoration.rank() if match.decoration else (0, 0, 0, 0, 0)
    hint = _folder_hint(package, profile, facts)
    version = _version_key(package.inf.driver_ver[1])
    if profile.selection_rule is SelectionRule.OWN_FOLDER:
        own = 1 if in_own_folder(package, profile, facts) else 0
        return (own, decoration, _in_driver_folder(package), hint, version)
    return (decoration, hint, version)


def _version_key(version: str) -> tuple[int, ...]:
    numbers = []
    for part in version.split("."):
        digits = re.match(r"\d+", part.strip())
        numbers.append(int(digits.group()) if digits else 0)
    return tuple(numbers)


def why_unsupported(inf: Inf, profile: Profile, facts: DriverFacts) -> str:
    """Why an INF does not install on the profile's Windows, in words."""
    found = declared([inf], profile.arch)
    if not found.decorations and not found.undecorated:
        return "declares no [Manufacturer] models"
    if profile.arch not in found.arches:
        return f"for {', '.join(found.arches)} only ({describe_decorations(inf)})"
    needs = found.newer_only(profile.nt_version)
    if needs is not None:
        newer = ", ".join(d.raw for d in found.same_arch)
        return f"{newer} only: needs {facts.nt_name(needs)} (NT {needs[0]}.{needs[1]}) or later"
    return (
        f"no models section applies to NT {profile.version_text} "
        f"{profile.arch} ({describe_decorations(inf)})"
    )


def select_drivers(
    scan: Scan,
    profile: Profile,
    facts: DriverFacts | None = None,
    wanted: Collection[str] | None = None,
    *,
    storage_bus: StorageBus = StorageBus.VIRTIO_BLK,
) -> DriverSet:
    """Choose, per driver, the package whose INF installs on `profile`.

    A package installs when a decoration of its INF fits the profile's architecture,
    NT version and build. Among those, the closest decoration wins (legacy profiles), or
    first the one in the profile's own virtio-win folder (profiles of the `own-folder`
    rule: when the source has that folder but not for a driver that is not required,
    virtio-win did not build it for the release and it is left out; when the source has
    no such folder at all, the closest decoration wins and one warning names the folders
    used instead); then the folder names, then the newest DriverVer, then the path (so
    the result is deterministic). `wanted` (the `drivers` setting) names the drivers to
    take; None takes every driver with a package that fits.

    A chosen package that is incomplete (its INF names a file its folder lacks) is
    an InputError when the driver is required or boot-critical, and is left out
    with a warning otherwise; it is never silently replaced by a worse match, such
    as a 2003 build for 2008. A package taken from another Windows version's folder
    is a warning; an unreadable INF in the profile's own folder is an InputError when
    it leaves a required driver without a package of that folder, else a warning.
    InputError also when a required driver (NetKVM, and the storage driver of
    `storage_bus`) has no package for the profile, or `wanted` names an unknown driver
    or leaves out a required one.
    """
    facts = facts or load_driver_facts()
    rejected: list[Rejection] = [
        Rejection(b.path, f"cannot be read: {b.reason}") for b in scan.broken
    ]
    warnings: list[str] = []
    unsupported: dict[str, list[DriverPackage]] = {}
    candidates = _candidates(scan, profile, facts, rejected, unsupported)
    if wanted is not None:
        _check_wanted(scan, profile, facts, wanted, candidates, storage_bus=storage_bus)
        chosen_names = {w.lower() for w in wanted}
        for name in [n for n in candidates if n.lower() not in chosen_names]:
            for candidate in candidates.pop(name):
                rejected.append(
                    Rejection(candidate.package.inf_path, "left out by the drivers setting")
                )

    selected: list[SelectedDriver] = []
    problems: list[Problem] = []
    own_rule = profile.selection_rule is SelectionRule.OWN_FOLDER
    # Whether the source has the profile's folder at all: then a driver that is not in
    # it is one virtio-win did not build for the release (qxl, a Windows 7 display
    # driver, has no 2k22 folder), not a folder missing from the source.
    has_own = own_rule and any(
        in_own_folder(c.package, profile, facts) for found in candidates.values() for c in found
    )
    fallbacks: list[_Candidate] = []
    for name in sorted(candidates, key=str.lower):
        # Best rank first; among equals the lexically first path, for determinism.
        ordered = sorted(candidates[name], key=lambda c: c.package.inf_path)
        ordered.sort(key=lambda c: c.rank, reverse=True)
        best = ordered[0]
        elsewhere = own_rule and not in_own_folder(best.package, profile, facts)
        info = best.package.info
        if elsewhere and has_own and info is not None and not _required(info, storage_bus):
            rejected += [
                Rejection(
                    c.package.inf_path,
                    f"virtio-win has no {profile.os_folder} build of {name}, so none is "
                    f"installed on {profile.name} (the source's {profile.os_folder} folders "
                    "hold the other drivers)",
                )
                for c in ordered
            ]
            continue
        for other in ordered[1:]:
            if other.missing:
                reason = f"incomplete: missing {', '.join(other.missing)}"
            else:
                reason = f"{best.package.inf_path} is a closer match"
            rejected.append(Rejection(other.package.inf_path, reason))
        driver = SelectedDriver(
            name=name,
            info=best.package.info,
            package=best.package,
            match=best.match,
            arch=profile.arch,
            files=best.files,
            services=best.package.inf.match_services(best.match, profile.arch),
        )
        if best.missing:
            missing = ", ".join(best.missing)
            rejected.append(Rejection(best.package.inf_path, f"incomplete: missing {missing}"))
            text = (
                f"{best.package.inf_path} is incomplete: {missing} (named by the INF) is not "
                f"in {best.package.folder or '/'}"
            )
            if driver.required or driver.boot_critical:
                problems.append(
                    _problem(
                        scan,
                        f"{text}.",
                        "Every file the INF names must sit next to it; copy the "
                        "complete folder from a virtio-win release.",
                    )
                )
            else:
                warnings.append(
                    f"{name} is left out: {text}. It is optional for {profile.name}; copy "
                    "the complete folder from a virtio-win release to have it."
                )
            continue
        if elsewhere:
            fallbacks.append(best)
        selected.append(driver)

    problems += _unreadable_infs(scan, profile, facts, selected, warnings, storage_bus=storage_bus)
    if problems:
        raise InputError.collect(problems)
    _require(scan, profile, facts, selected, unsupported, storage_bus=storage_bus)
    if fallbacks:
        # One warning names every package not from the profile's own folder.
        warnings.append(_not_own_folder(scan, profile, fallbacks))
    else:
        warnings += _fallback_warnings(profile, facts, selected)
    warnings += _known_bad_warnings(scan, profile, facts, selected)
    return DriverSet(
        profile=profile,
        source=scan.source,
        selected=tuple(selected),
        rejected=tuple(sorted(rejected, key=lambda r: r.inf)),
        warnings=tuple(warnings),
        storage_bus=storage_bus,
        installers=find_installers(scan, profile, facts),
    )


def _candidates(
    scan: Scan,
    profile: Profile,
    facts: DriverFacts,
    rejected: list[Rejection],
    unsupported: dict[str, list[DriverPackage]],
) -> dict[str, list[_Candidate]]:
    """The packages that install on the profile, by driver, ranked; every other one is
    appended to `rejected` (and to `unsupported` when its INF does not fit)."""
    candidates: dict[str, list[_Candidate]] = {}
    for package in scan.packages:
        if package.info is None:
            rejected.append(Rejection(package.inf_path, "not a virtio driver pvinstall knows"))
            continue
        if not package.info.install:
            rejected.append(Rejection(package.inf_path, f"{package.info.description}"))
            continue
        match = supports(package.inf, profile.nt_version, profile.arch, build=profile.build)
        if match is None:
            reason = why_unsupported(package.inf, profile, facts)
            rejected.append(Rejection(package.inf_path, reason))
            unsupported.setdefault(package.name, []).append(package)
            continue
        files, missing = package.files(profile.arch)
        rank = _rank(package, match, profile, facts)
        candidates.setdefault(package.name, []).append(
            _Candidate(package, match, files, missing, rank)
        )
    return candidates


def _check_wanted(
    scan: Scan,
    profile: Profile,
    facts: DriverFacts,
    wanted: Collection[str],
    candidates: Mapping[str, Sequence[_Candidate]],
    *,
    storage_bus: StorageBus,
) -> None:
    """InputError (key `drivers`) for names that are no driver, or no driver with a
    package for the profile, and for a required driver left out."""
    available = sorted(candidates, key=str.lower)
    valid = f"Drivers with a package for {profile.name} here: {', '.join(available) or 'none'}."
    known = {n.lower() for n in facts.drivers}
    chosen = {w.lower() for w in wanted}
    fits = {n.lower() for n in candidates}
    where = scan.source.get("path", "the driver source")
    problems = []
    unknown = [w for w in wanted if w.lower() not in known]
    if unknown:
        problems.append(
            Problem(
                "drivers",
                f"{', '.join(repr(w) for w in unknown)}: no such virtio driver.",
                valid,
            )
        )
    absent = [w for w in wanted if w.lower() in known and w.lower() not in fits]
    if absent:
        problems.append(
            Problem(
                "drivers",
                f"{', '.join(absent)}: {where} has no package of it that installs on "
                f"{profile.name}.",
                valid,
            )
        )
    for info in facts.drivers.values():
        if _required(info, storage_bus) and info.name.lower() not in chosen:
            problems.append(
                Problem(
                    "drivers",
                    f"leaves out {info.name}, which {profile.name} needs ({info.description}).",
                    f"Add {info.name}. {valid}",
                )
            )
    if problems:
        raise InputError.collect(problems)


def _unreadable_infs(
    scan: Scan,
    profile: Profile,
    facts: DriverFacts,
    selected: Sequence[SelectedDriver],
    warnings: list[str],
    *,
    storage_bus: StorageBus,
) -> list[Problem]:
    """INFs of a known driver that cannot be read, or that declare no models (a damaged
    file): a problem when one sits in the profile's own folder and leaves a required
    driver without a package of that folder; a warning otherwise (appended to
    `warnings`)."""
    damaged = [(b.path, b.reason) for b in scan.broken]
    damaged += [
        (p.inf_path, "it declares no [Manufacturer] models")
        for p in scan.packages
        if p.info is not None and not p.inf.manufacturers
    ]
    chosen = {d.name: d for d in selected}
    problems = []
    for path, reason in sorted(damaged):
        info = facts.driver_for_inf(path.rpartition("/")[2])
        if info is None:
            continue
        folder = path.rpartition("/")[0]
        os_score, arch_score = folder_hint(folder, profile, facts)
        own_folder = os_score > 0 and arch_score > 0
        driver = chosen.get(info.name)
        in_own = driver is not None and folder_hint(driver.folder, profile, facts)[0] > 0
        if own_folder and _required(info, storage_bus) and not in_own:
            instead = (
                f"; pvinstall does not take {driver.inf_path} (a build for another Windows "
                "version) instead"
                if driver
                else ""
            )
            problems.append(
                _problem(
                    scan,
                    f"{path} cannot be read ({reason}): it leaves {info.name} without a "
                    f"package in {profile.name}'s {profile.os_folder} folder{instead}.",
                    "Copy the folder again from a virtio-win release.",
                )
            )
        elif own_folder or (os_score == 0 and other_windows_folder(folder, profile, facts) is None):
            # In the profile's folder, or in one whose names say no Windows version: it
            # might have been the package to take.
            taken = f"comes from {driver.inf_path}" if driver else "is left out"
            warnings.append(f"{path} cannot be read ({reason}); {info.name} {taken}.")
    return problems


def _fallback_warnings(
    profile: Profile, facts: DriverFacts, selected: Sequence[SelectedDriver]
) -> list[str]:
    """A warning for every package taken from another Windows version's folder."""
    warnings = []
    for driver in selected:
        other = other_windows_folder(driver.folder, profile, facts)
        if other is not None:
            decoration = driver.match.decoration_text or "undecorated models"
            version = f"{profile.nt_version[0]}.{profile.nt_version[1]}"
            warnings.append(
                f"{driver.name} for {profile.name} comes from {driver.folder}, a folder of "
                f"another Windows version ({other}): no package of it in the "
                f"{profile.os_folder} folder fits, and its INF ({decoration}) says it "
                f"installs on NT {version}."
            )
    return warnings


def _not_own_folder(scan: Scan, profile: Profile, fallbacks: Sequence[_Candidate]) -> str:
    where = scan.source.get("path", "the driver source")
    used = ", ".join(
        f"{c.package.name} from {c.package.folder} ({c.match.decoration_text or 'undecorated'})"
        for c in fallbacks
    )
    return (
        f"{where} has no {profile.os_folder} folder for {profile.name}, so the closest "
        f"decoration that fits Windows {profile.version_text} was used instead: {used}. "
        f"virtio-win builds its {profile.os_folder} drivers for {profile.title}; use a "
        "release that has that folder."
    )


def find_installers(
    scan: Scan, profile: Profile, facts: DriverFacts
) -> tuple[SelectedInstaller, ...]:
    """The profile's installers the source has (an absent one is left out: the source
    may predate it)."""
    found = []
    for name in profile.installers:
        info = facts.installers.get(name)
        if info is None:
            raise BuildError(
                f"{profile.name} runs the installer {name!r}, which drivers/catalog.toml "
                "has no [installers] row for."
            )
        path = info.paths.get(profile.arch)
        entry = scan.find(path) if path else None
        if entry is not None:
            found.append(SelectedInstaller(name, info.description, entry.path, entry.size))
    return tuple(found)


def _problem(scan: Scan, message: str, hint: str) -> Problem:
    return Problem(scan.source.get("path", "--drivers"), message, hint)


def _required(info: DriverInfo, storage_bus: StorageBus) -> bool:
    if info.role == "storage" and info.boot_critical:
        return info.device == STORAGE_DEVICE_KINDS[storage_bus]
    return info.required


def _require(
    scan: Scan,
    profile: Profile,
    facts: DriverFacts,
    selected: Sequence[SelectedDriver],
    unsupported: Mapping[str, Sequence[DriverPackage]],
    *,
    storage_bus: StorageBus,
) -> None:
    chosen = {d.name for d in selected}
    problems = []
    for info in facts.drivers.values():
        if not _required(info, storage_bus) or info.name in chosen:
            continue
        found = unsupported.get(info.name, [])
        where = scan.source.get("path", "the driver source")
        target = f"Windows {profile.version_text} {profile.arch} ({profile.name})"
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
        seen = declared((p.inf for p in found), profile.arch)
        decorations, arches = seen.names, seen.arches
        if profile.arch not in arches:
            others = [o.name for o in (sibling(profile, arch) for arch in arches) if o]
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
        oldest = seen.newer_only(profile.nt_version)
        needs = (
            f": these are drivers for {facts.nt_name(oldest)} (NT {oldest[0]}.{oldest[1]})"
            " and later"
            if oldest
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
    scan: Scan, profile: Profile, facts: DriverFacts, selected: Sequence[SelectedDriver]
) -> list[str]:
    warnings = []
    label = scan.source.get("label", "")
    for bad in facts.known_bad:
        if profile.os_folder not in bad.os_folders:
            continue
        release_hit = any(label.endswith(f"-{r}") or label == r for r in bad.releases)
        suffix = bad.driver_version_suffix
        hits = [
            d
            for d in selected
            if (not bad.drivers or d.name in bad.drivers)
            and (release_hit or (suffix and d.package.inf.driver_ver[1].endswith(suffix)))
        ]
        if hits:
            names = ", ".join(f"{d.name} {d.package.inf.driver_ver[1]}" for d in hits)
            warnings.append(f"{names}: {bad.reason}. {bad.hint}")
    return warnings


# -- JSON ---------------------------------------------------------------------------------


def selected_json(driver: SelectedDriver, digests: Mapping[str, str]) -> dict[str, Any]:
    """One entry of `selected` (the manifest reuses this shape, docs/design.md §6)."""
    return {
        "name": driver.name,
        "inf": driver.inf_path,
        "arch": driver.arch,
        "decoration": driver.match.decoration_text,
        "driver_ver": driver.driver_ver,
        "boot_critical": driver.boot_critical,
        "hardware_ids": list(driver.hardware_ids),
        "files": [
            {"path": f.path, "size": f.size, "sha256": digests[f.path]} for f in driver.files
        ],
        "catalog": driver.catalog.path if driver.catalog else None,
        **signatures_json(driver.signatures),
    }


def installers_json(drivers: DriverSet, digests: Mapping[str, str]) -> list[dict[str, Any]]:
    """The installers found (`installers` of the manifest and of `drivers --json`)."""
    return [
        {
            "name": i.name,
            "description": i.description,
            "path": i.path,
            "size": i.size,
            "sha256": digests[i.path],
        }
        for i in drivers.installers
    ]


def signatures_json(signatures: CatalogSignatures | None) -> dict[str, Any]:
    """`signer` and `digest` (of the first signature), every signature and every signer."""
    if signatures is None:
        return {"signer": None, "digest": None, "signatures": [], "signers": []}
    return signatures.as_json()


def driverset_json(drivers: DriverSet, digests: Mapping[str, str]) -> dict[str, Any]:
    """The document `pvinstall drivers SOURCE --profile P --json` prints."""
    return {
        "source": dict(drivers.source),
        "profile": drivers.profile.name,
        "storage_bus": drivers.storage_bus.value,
        "selected": [selected_json(d, digests) for d in drivers.selected],
        "installers": installers_json(drivers, digests),
        "rejected": [{"inf": r.inf, "reason": r.reason} for r in drivers.rejected],
        "warnings": list(drivers.warnings),
    }
