"""manifest.json: what went into a build and what came out (the contract of docs/design.md §6).

Profile, inputs (path, sha256), the install image of the DVD, the selected drivers (name,
INF path, OS folder, arch, DriverVer, hardware IDs, files, catalog, signer and digest,
every signature) and installers, the outputs (name, path, size, sha256), warnings and
SOURCE_DATE_EPOCH. Settings appear
with secrets replaced by "(set)"/"(none)"; no password or product key ever reaches
this file.

Nor does a verifier of one: everything else in an answer file follows from the public
settings, so its plain sha256 would let anyone who reads the manifest try passwords
until one matches. What holds or carries a secret (the answer files, every medium with
them on it, the --config file) has `hmac_sha256` instead: HMAC-SHA256 under a random
key that OUT keeps outside the manifest (`.pvinstall/hmac.key`, mode 0600); whoever may
read that key may read the answer files anyway, and can check them with it.
"""

from __future__ import annotations

import hashlib
import hmac
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
# Where the key of the keyed digests is, relative to OUT (the manifest names it).
KEY_FILE = ".pvinstall/hmac.key"


def sha256_file(path: Path) -> str:
    """The sha256 of a file, streamed (an install ISO is several GB)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def hmac_file(path: Path, key: bytes) -> str:
    """The HMAC-SHA256 of a file under `key`, streamed."""
    digest = hmac.new(key, digestmod=hashlib.sha256)
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def hmac_bytes(data: bytes, key: bytes) -> str:
    return hmac.new(key, data, hashlib.sha256).hexdigest()


def file_digest(path: Path, key: bytes | None) -> dict[str, str]:
    """`{"sha256": ...}`, or `{"hmac_sha256": ...}` under `key` for what holds a secret."""
    if key is None:
        return {"sha256": sha256_file(path)}
    return {"hmac_sha256": hmac_file(path, key)}


@dataclass(frozen=True)
class InputRecord:
    """An input file: its digest is `sha256`, or `hmac_sha256` when `keyed` (it holds a
    secret)."""

    name: str
    path: str
    kind: str
    digest: str
    keyed: bool = False

    @property
    def sha256(self) -> str | None:
        return None if self.keyed else self.digest

    def as_json(self) -> dict[str, str]:
        field = "hmac_sha256" if self.keyed else "sha256"
        return {"name": self.name, "path": self.path, "kind": self.kind, field: self.digest}


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


def file_record(name: str, path: Path, kind: str, *, key: bytes | None = None) -> InputRecord:
    """An input file; with `key` (it may hold a secret) its digest is keyed."""
    if key is None:
        return InputRecord(name, str(path), kind, sha256_file(path))
    return InputRecord(name, str(path), kind, hmac_file(path, key), keyed=True)


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
    name: str,
    path: Path,
    files: Sequence[Mapping[str, Any]] | None = None,
    *,
    read_from: Path | None = None,
    key: bytes | None = None,
) -> dict[str, Any]:
    """One output file at `path` (read from `read_from`, where it is written before the
    commit); for a medium also the files pvinstall put on it. With `key` (the file holds
    or carries a secret) its digest is keyed."""
    source = read_from or path
    record: dict[str, Any] = {
        "name": name,
        "path": str(path),
        "size": source.stat().st_size,
        **file_digest(source, key),
    }
    if files is not None:
        record["files"] = [dict(f) for f in files]
    return record


def planned_files_json(
    files: Iterable[PlannedFile],
    digests: Mapping[str, str],
    *,
    secrets: Iterable[bytes] = (),
    key: bytes | None = None,
) -> list[dict[str, Any]]:
    """The files of a medium as planned (path on the medium, size, sha256), sorted: what
    a reader of the medium must find there byte for byte (pure: a source file's digest
    comes from `digests`). A file whose bytes are one of `secrets` (an answer file that
    holds the password) gets its HMAC under `key` instead, or no digest without one."""
    secret = frozenset(secrets)
    out: list[dict[str, Any]] = []
    for f in files:
        entry: dict[str, Any] = {"path": f.path, "size": f.size}
        if f.data is not None and f.data in secret:
            if key is not None:
                entry["hmac_sha256"] = hmac_bytes(f.data, key)
        else:
            entry["sha256"] = f.sha256(digests)
        out.append(entry)
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
        # What holds a secret has hmac_sha256 under this key instead of a sha256.
        "hmac_key": KEY_FILE,
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
