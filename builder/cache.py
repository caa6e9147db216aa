"""The build cache: a rebuild whose inputs and settings did not change reuses the
build OUT holds (docs/design.md, "The build cache").

The key is the build's material: pvinstall itself (its version and the identity of its
files), the options, the environment it reads, and the identity of every input, each
taken from the file system without reading the file (device, inode, size, modification
and change times). A hit is verified against OUT's manifest before it is reused, each
output by the identity recorded at the commit (any write to a file changes its change
time, which nobody can set back), and the small ones by their digest too.

It needs none of the build's own modules: the command line looks here first, and a
rebuild that reuses OUT loads neither jinja2 nor libvirt nor pycdlib.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from builder import __version__
from builder.digests import file_digest
from builder.errors import InputError
from builder.monitor import Monitor
from builder.options import DOMAIN_XML, BuildOptions, BuildResult, default_name, default_out
from builder.outputs import MANIFEST, STATE_DIR, OutputDir, file_identity
from builder.virtio.source import DEFAULT_LIMITS, find_source
from builder.windows.profiles import Profile, resolve_profile

# Outputs up to this size are hashed again before a build is reused; a larger one (a
# remastered CD) is trusted by its file identity, which any write to it changes.
VERIFY_BYTES = 64 * 2**20
_PACKAGE = Path(__file__).resolve().parent
# The environment variables a build reads (settings, the driver source, the clock).
_READ_VARIABLES = ("VIRTIO_WIN", "SOURCE_DATE_EPOCH")


def _stat_identity(path: Path) -> list[int] | None:
    try:
        info = path.stat()
    except OSError:
        return None
    return [info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns]


def _tree_identity(root: Path, limit: int) -> list[list[Any]] | None:
    """Every entry below a folder by its lstat (and a link by its text), bounded: None
    past `limit` entries or at an entry that cannot be read."""
    found: list[list[Any]] = []
    pending = [root]
    while pending:
        folder = pending.pop()
        try:
            with os.scandir(folder) as scan:
                entries = sorted(scan, key=lambda e: e.name)
            for entry in entries:
                if len(found) >= limit:
                    return None
                info = entry.stat(follow_symlinks=False)
                path = Path(entry.path)
                link = str(path.readlink()) if entry.is_symlink() else None
                facts = [info.st_mode, info.st_ino, info.st_size, info.st_mtime_ns]
                found.append([str(path.relative_to(root)), *facts, info.st_ctime_ns, link])
                if entry.is_dir(follow_symlinks=False):
                    pending.append(Path(entry.path))
        except OSError:
            return None
    return found


def _input_identity(path: Path) -> Any:
    """An input as it is on disk, without reading it (None: it cannot be told)."""
    if path.is_dir():
        tree = _tree_identity(path, DEFAULT_LIMITS.entries)
        return None if tree is None else [_stat_identity(path), tree]
    return _stat_identity(path)


def cache_material(options: BuildOptions, environ: Mapping[str, str]) -> bytes | None:
    """What a build is made from, as bytes to key the cache with: pvinstall itself (its
    version and the identity of its files, templates and driver facts), the options, the
    environment it reads, and the identity of every input (taken before any of them is
    read, so that an input changed during the build never matches). None: the build is
    not cached (it acts on a hypervisor, or an input cannot be told)."""
    if options.acting:
        return None
    try:
        source = find_source(options.drivers, environ)
    except InputError:
        return None
    inputs: list[Path] = [source]
    if options.windows_iso is not None:
        inputs.append(options.windows_iso)
    if options.config_file is not None:
        inputs.append(options.config_file)
    identities = [[str(p.absolute()), _input_identity(p)] for p in inputs]
    if any(identity is None for _, identity in identities):
        return None
    code = [
        [str(p.relative_to(_PACKAGE)), _stat_identity(p)]
        for p in sorted(_PACKAGE.rglob("*"))
        if "__pycache__" not in p.parts and p.is_file()
    ]
    fields = dataclasses.asdict(options)
    fields.pop("use_cache")
    material = {
        "pvinstall": __version__,
        "code": code,
        "cwd": str(Path.cwd()),
        "options": {k: str(v) for k, v in sorted(fields.items())},
        "environ": sorted(
            (k, v) for k, v in environ.items() if k.startswith("PVINSTALL_") or k in _READ_VARIABLES
        ),
        "inputs": identities,
    }
    return json.dumps(material, sort_keys=True).encode("utf-8")


def cache_key(material: bytes, key: bytes) -> str:
    """The cache key: keyed with OUT's digest key, because the material holds the
    settings as given, the password among them."""
    return hmac.new(key, material, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class _Verified:
    """The manifest of a reusable build, and whether an output's identity changed
    though its bytes did not (the record is then refreshed)."""

    manifest: dict[str, Any]
    identities_changed: bool


def _reusable(out: OutputDir, record: Mapping[str, Any], key: bytes) -> _Verified | None:
    """The manifest of the build OUT shows, when every file of it is still what was
    written (None otherwise): each name links into the current generation, the manifest
    has the identity recorded after the commit, and each output the manifest's size and
    either the identity recorded after the commit (nothing wrote to it since) or, when
    that changed, the manifest's digest (read whole, once). Outputs up to VERIFY_BYTES
    are hashed in any case."""
    current = out.current_generation()
    manifest = out.current_manifest()
    files = record.get("files")
    outputs = manifest.get("outputs") if manifest else None
    if current is None or manifest is None or not isinstance(files, dict):
        return None
    if not isinstance(outputs, list) or not all(isinstance(o, dict) for o in outputs):
        return None
    names = {MANIFEST, *(str(o.get("name")) for o in outputs)}
    if set(files) != names or not all(out.shows(name) for name in names):
        return None
    if file_identity(current / MANIFEST) != files[MANIFEST]:
        return None  # what the outputs are checked against has no digest of its own
    changed = False
    for output in outputs:
        path = current / output["name"]
        identity = file_identity(path)
        if identity is None or output.get("size") != identity["size"]:
            return None
        same = identity == files[output["name"]]
        if not same or identity["size"] <= VERIFY_BYTES:
            keyed = "hmac_sha256" in output
            field_name = "hmac_sha256" if keyed else "sha256"
            if file_digest(path, key if keyed else None)[field_name] != output.get(field_name):
                return None
        changed = changed or not same
    return _Verified(manifest, changed)


def cached_build(
    options: BuildOptions,
    material: bytes,
    monitor: Monitor,
    profile_of: Callable[[], Profile | None],
) -> BuildResult | None:
    """The build OUT already holds, when nothing it was made from changed and its files
    are verified against its manifest (None: build it). `profile_of` tells the profile
    (None: it cannot be told without building)."""
    profile = profile_of()
    if profile is None:
        return None
    name = options.name or default_name(profile)
    out_dir = (options.out or default_out(name)).absolute()
    if not (out_dir / STATE_DIR).is_dir():
        return None
    with OutputDir(out_dir) as out:
        record = out.cache_record()
        if record is None or record.get("key") != cache_key(material, out.digest_key()):
            return None
        verified = _reusable(out, record, out.digest_key())
        current = out.current_generation()
        if verified is None or current is None:
            return None
        if verified.identities_changed:
            # Touched, not changed (its digest says so): remember it as it is now.
            out.save_cache({k: v for k, v in record.items() if k not in ("generation", "files")})
        manifest = verified.manifest
        domain_xml = (current / DOMAIN_XML).read_text(encoding="utf-8")
    monitor.info(
        f"{out_dir} already holds this build: nothing it is made from changed, and its "
        "files are as the manifest lists them (--no-cache builds it again)"
    )
    for warning in manifest.get("warnings", []):
        monitor.warning(str(warning))
    return BuildResult(
        manifest=manifest,
        domain_xml=domain_xml,
        out_dir=out_dir,
        installed=False,
        next_step=record.get("next_step"),
        reused=True,
    )


@dataclass(frozen=True)
class Lookup:
    """What looking in the cache found: the material of the build (None: not cached),
    and the build OUT holds when it can be reused (None: build it)."""

    material: bytes | None
    result: BuildResult | None = None


def look_up(
    options: BuildOptions,
    environ: Mapping[str, str],
    monitor: Monitor,
    profile_of: Callable[[], Profile | None],
) -> Lookup:
    """Take the material of the build (before any input is read) and, unless
    --no-cache, the build OUT holds when it is this one."""
    material = cache_material(options, environ)
    if material is None or not options.use_cache:
        return Lookup(material)
    return Lookup(material, cached_build(options, material, monitor, profile_of))


def named_profile(options: BuildOptions) -> Profile | None:
    """The profile the command line names (None: it names none, or none that exists;
    the build says why)."""
    if options.profile is None:
        return None
    try:
        return resolve_profile(options.profile, options.arch)
    except InputError:
        return None
