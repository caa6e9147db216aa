"""manifest.json: what went into a build and what came out (the contract of docs/design.md §6).

Profile, inputs (path, sha256; an image read in place by its identity and the digest of
the files used from it), the install image of the DVD, the selected drivers (name,
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
from builder.digests import file_digest
from builder.media.files import PlannedFile
from builder.virtio.selection import DriverSet, installers_json, selected_json
from builder.virtio.source import DriverSource

# Where the key of the keyed digests is, relative to OUT (the manifest names it).
KEY_FILE = ".pvinstall/hmac.key"


def hmac_bytes(data: bytes, key: bytes) -> str:
    return hmac.new(key, data, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Identity:
    """An image as it is on disk, known without reading it: its size, modification
    time and volume id. A changed file has another identity (its sha256 is taken only
    with --hash-inputs)."""

    size: int
    mtime_ns: int
    volume_id: str

    @classmethod
    def of(cls, path: Path, volume_id: str) -> Identity:
        info = path.stat()
        return cls(info.st_size, info.st_mtime_ns, volume_id)

    def as_json(self) -> dict[str, Any]:
        return {"size": self.size, "mtime_ns": self.mtime_ns, "volume_id": self.volume_id}


@dataclass(frozen=True)
class InputRecord:
    """An input file: its digest is `sha256` (None: not read whole, see `identity`), or
    `hmac_sha256` when `keyed` (it holds a secret). An image read in place has its
    `identity`, and `files_sha256`, the digest of the files used from it."""

    name: str
    path: str
    kind: str
    digest: str | None
    keyed: bool = False
    identity: Identity | None = None
    files_sha256: str | None = None

    @property
    def sha256(self) -> str | None:
        return None if self.keyed else self.digest

    def as_json(self) -> dict[str, Any]:
        record: dict[str, Any] = {"name": self.name, "path": self.path, "kind": self.kind}
        if self.digest is not None:
            record["hmac_sha256" if self.keyed else "sha256"] = self.digest
        if self.identity is not None:
            record["identity"] = self.identity.as_json()
        if self.files_sha256 is not None:
            record["files_sha256"] = self.files_sha256
        return record


def files_digest(drivers: DriverSet, digests: Mapping[str, str]) -> str:
    """The digest of the selected files of a source: each file's path and sha256 (in
    `digests`), in selection order."""
    digest = hashlib.sha256()
    for driver in drivers.selected:
        for file in driver.files:
            digest.update(f"{file.path}\0{digests[file.path]}\n".encode())
    return digest.hexdigest()


def source_record(
    source: DriverSource,
    drivers: DriverSet,
    digests: Mapping[str, str],
    *,
    hash_inputs: bool = False,
) -> InputRecord:
    """The driver source as an input. A directory has no bytes of its own: its digest
    covers the selected files (path and the sha256 in `digests`). An image is read in
    place, only the files selection needs: its identity and the digest of those files,
    and its own sha256 only with `hash_inputs` (a full read of the image)."""
    used = files_digest(drivers, digests)
    if source.kind == "dir":
        return InputRecord("drivers", str(source.path), source.kind, used)
    return InputRecord(
        "drivers",
        str(source.path),
        source.kind,
        file_digest(source.path)["sha256"] if hash_inputs else None,
        identity=Identity.of(source.path, source.label),
        files_sha256=used,
    )


def file_record(name: str, path: Path, kind: str, *, key: bytes | None = None) -> InputRecord:
    """An input file hashed whole; with `key` (it may hold a secret) its digest is keyed."""
    digest = file_digest(path, key)
    return InputRecord(name, str(path), kind, next(iter(digest.values())), keyed=key is not None)


def image_record(
    name: str, path: Path, kind: str, volume_id: str, *, sha256: str | None = None
) -> InputRecord:
    """An image known by its identity, with its sha256 when it was read whole anyway
    (a CD hashed while it was remastered) or on request (--hash-inputs)."""
    return InputRecord(name, str(path), kind, sha256, identity=Identity.of(path, volume_id))


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
    size: int,
    digest: Mapping[str, str],
    files: Sequence[Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """One output file at `path`, of `size` bytes, with its digest as its writer took
    it (`sha256`, or `hmac_sha256` for what holds or carries a secret); for a medium
    also the files pvinstall put on it (pure: nothing is read back)."""
    record: dict[str, Any] = {"name": name, "path": str(path), "size": size, **digest}
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
