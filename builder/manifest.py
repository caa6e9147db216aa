"""manifest.json: what went into a build and what came out (the contract of docs/design.md §6).

Profile, inputs (path, sha256), the selected drivers (name, INF path, OS folder, arch,
DriverVer, hardware IDs, files, catalog, signer and digest, every signature), the
outputs (name, path, size, sha256), warnings and SOURCE_DATE_EPOCH. Settings appear
with secrets replaced by "(set)"/"(none)"; no password or product key ever reaches
this file.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from builder import __version__
from builder.config import BuildConfig
from builder.media.files import PlannedFile
from builder.virtio.selection import DriverSet, installers_json, selected_json
from builder.virtio.source import DriverSource

CHUNK = 1024 * 1024


def sha256_file(path: Path) -> str:
    """The sha256 of a file, streamed (an install ISO is several GB)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class InputRecord:
    name: str
    path: str
    kind: str
    sha256: str

    def as_json(self) -> dict[str, str]:
        return {"name": self.name, "path": self.path, "kind": self.kind, "sha256": self.sha256}


def source_record(
    source: DriverSource, drivers: DriverSet, digests: Mapping[str, str]
) -> InputRecord:
    """The driver source as an input. An image is hashed whole; a directory has no
    bytes of its own, so its digest covers the selected files (path and the sha256 in
    `digests`)."""
    if source.kind == "dir":
        digest = hashlib.sha256()
        for driver in drivers.selected:
            for file in driver.files:
                digest.update(f"{file.path}\0{digests[file.path]}\n".encode())
        checksum = digest.hexdigest()
    else:
        checksum = sha256_file(source.path)
    return InputRecord("drivers", str(source.path), source.kind, checksum)


def file_record(name: str, path: Path, kind: str) -> InputRecord:
    return InputRecord(name, str(path), kind, sha256_file(path))


def drivers_json(drivers: DriverSet, digests: Mapping[str, str]) -> dict[str, Any]:
    """The selection as `pvinstall drivers --json` prints it, plus each driver's OS folder
    (pure: the files' digests are taken at the edge)."""
    selected = []
    for driver in drivers.selected:
        entry = selected_json(driver, digests)
        entry["os_folder"] = driver.folder
        selected.append(entry)
    return {
        "source": dict(drivers.source),
        "storage_bus": drivers.storage_bus.value,
        "selected": selected,
        "installers": installers_json(drivers, digests),
        "rejected": [{"inf": r.inf, "reason": r.reason} for r in drivers.rejected],
    }


def output_record(
    name: str, path: Path, files: Sequence[Mapping[str, Any]] | None = None
) -> dict[str, Any]:
    """One output file; for a medium also the files pvinstall put on it."""
    record: dict[str, Any] = {
        "name": name,
        "path": str(path),
        "size": path.stat().st_size,
        "sha256": sha256_file(path),
    }
    if files is not None:
        record["files"] = [dict(f) for f in files]
    return record


def planned_files_json(
    files: Iterable[PlannedFile], digests: Mapping[str, str]
) -> list[dict[str, Any]]:
    """The files of a medium as planned (path on the medium, size, sha256), sorted: what
    a reader of the medium must find there byte for byte (pure: a source file's digest
    comes from `digests`)."""
    out = [{"path": f.path, "size": f.size, "sha256": f.sha256(digests)} for f in files]
    return sorted(out, key=lambda f: str(f["path"]).lower())


def build_manifest(
    *,
    config: BuildConfig,
    build_id: str,
    epoch: int,
    inputs: Iterable[InputRecord],
    drivers: Mapping[str, Any],
    outputs: Sequence[Mapping[str, Any]],
    domain: Mapping[str, Any],
    warnings: Sequence[str],
    install_image: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The manifest document (docs/design.md §6, the output directory contract).

    `install_image` is the image of the user's DVD the build installs (None when no DVD
    was read)."""
    return {
        "pvinstall": __version__,
        "profile": config.profile.name,
        "build_id": build_id,
        "source_date_epoch": epoch,
        "settings": config.public_json(),
        "inputs": [i.as_json() for i in inputs],
        "install_image": dict(install_image) if install_image is not None else None,
        "drivers": dict(drivers),
        "outputs": list(outputs),
        "domain": dict(domain),
        "warnings": list(warnings),
    }


def manifest_bytes(document: Mapping[str, Any]) -> bytes:
    return (json.dumps(document, indent=2, sort_keys=False) + "\n").encode("utf-8")
