"""Driver packages: scan a driver source into packages (reads only INF bytes).

A package is an INF, its catalog (`.cat`) and every file its `[SourceDisksFiles]`
names, all from the INF's folder (names matched case-insensitively).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from builder.errors import InputError
from builder.virtio.facts import DriverFacts, DriverInfo
from builder.virtio.inf import MAX_INF_BYTES, Inf, InfError, InfNameError, parse_inf
from builder.virtio.source import (
    DEFAULT_LIMITS,
    GET_VIRTIO_WIN,
    DriverSource,
    SourceEntry,
    SourceLimits,
)


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
    folder_files: Mapping[str, SourceEntry] = field(repr=False)

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
    """Every package of a source, the INF files that could not be read, and every file
    of the source by its case-folded path (for the installers, which are no packages)."""

    source: Mapping[str, str]
    packages: tuple[DriverPackage, ...]
    broken: tuple[BrokenInf, ...]
    files: Mapping[str, SourceEntry] = field(default_factory=dict, repr=False)

    def find(self, path: str) -> SourceEntry | None:
        """The source's file at `path`, matched case-blind as Windows would."""
        return self.files.get(path.casefold())


def scan_source(
    source: DriverSource, facts: DriverFacts, limits: SourceLimits = DEFAULT_LIMITS
) -> Scan:
    """Find every INF in `source` and make a package of each; reads only INF bytes.

    An INF that is too large or cannot be parsed is recorded as broken; a file the user
    cannot read, an INF that names a file outside its folder, and more INF bytes than
    `limits.scan_bytes` together, are InputErrors.
    """
    files = source.files()
    infs = [e for e in files if e.path.lower().endswith(".inf")]
    # Every folder of an INF sees the files below it by relative path, so a
    # [SourceDisksFiles] subdirectory resolves too. (Only those folders: a 6000-file
    # virtio-win ISO has a few hundred.)
    by_folder: dict[str, dict[str, SourceEntry]] = {
        e.path.rpartition("/")[0].lower(): {} for e in infs
    }
    for entry in files:
        lowered = entry.path.lower()
        slash = -1
        while True:
            listing = by_folder.get(lowered[:slash] if slash >= 0 else "")
            if listing is not None:
                listing.setdefault(lowered[slash + 1 :], entry)
            slash = lowered.find("/", slash + 1)
            if slash < 0:
                break
    if not infs:
        raise InputError(
            f"{source.path} has no INF files: it is not a virtio-win ISO or driver folder.",
            GET_VIRTIO_WIN,
            key="--drivers",
        )
    packages: list[DriverPackage] = []
    broken: list[BrokenInf] = []
    read = 0
    for entry in infs:
        if entry.size > MAX_INF_BYTES:
            broken.append(BrokenInf(entry.path, f"{entry.size} bytes is too large for an INF file"))
            continue
        read += entry.size
        if read > limits.scan_bytes:
            raise InputError(
                f"{source.path} has more than {limits.scan_bytes // 2**20} MiB of INF files.",
                "Check that the source is a virtio-win release.",
                key="--drivers",
            )
        try:
            inf = parse_inf(source.read_exact(entry.path, entry.size), entry.path)
        except InfNameError as exc:
            # Not a damaged package to skip: a crafted one, so the source is refused.
            raise InputError(
                f"{source.describe(entry.path)} line {exc.line}: {exc.reason}.",
                "This is not a genuine virtio-win release; use one from "
                "https://fedorapeople.org/groups/virt/virtio-win/.",
                key="--drivers",
            ) from None
        except InfError as exc:
            broken.append(
                BrokenInf(
                    entry.path, exc.reason if exc.line is None else f"line {exc.line}: {exc.reason}"
                )
            )
            continue
        name = entry.path.rpartition("/")[2]
        info = facts.driver_for_inf(name)
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
        files=MappingProxyType({e.path.casefold(): e for e in reversed(files)}),
    )


# -- JSON ---------------------------------------------------------------------------------


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
