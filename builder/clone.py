"""`pvinstall clone`: a new domain from a golden template (the script of its steps).

The template is an OUT directory of `pvinstall build --install` (its manifest's
`template` record and the files it names, nothing else of the directory) or a defined,
shut-off domain on --connect. The default clone is linked: a qcow2 overlay that names
the template disk by its absolute path and format, the template made read-only first
(mode 0400), so that the template's bytes never change; `--full` copies the template.
The clone has its own name, disks and serial log; libvirt gives it its own UUID and
MACs. Every device of the template stays, so the 28-slot budget is the template's.

Every problem of the input is found in one run (the name, an existing domain or disk,
the template), before anything is created; a failed define removes what was created.
"""

from __future__ import annotations

import contextlib
import json
import stat
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from builder.errors import BuildError, InputError, Problem
from builder.monitor import Monitor
from builder.vm import devices, disk_images, domain, existing, remote, virt
from builder.vm.uri import DEFAULT_URI

MANIFEST = "manifest.json"
# The template disk is never written again: read-only for its owner (libvirt gives QEMU
# its own access for as long as a clone runs).
TEMPLATE_MODE = 0o400
MAX_MANIFEST_BYTES = 16 * 2**20
NOT_GENERALIZED = (
    "the template {what} was not generalized (generalize = false): its clones share one "
    "machine SID and computer name, which Microsoft does not support for duplicated "
    "installations (KB 314828)."
)


@dataclass(frozen=True)
class CloneOptions:
    """What the command line asked for."""

    template: str
    name: str
    connect: str = DEFAULT_URI
    full: bool = False
    out: Path | None = None
    start: bool = False


@dataclass(frozen=True)
class Template:
    """A template as the clone reads it: its disk and format, its domain XML, whether
    it is generalized (None: nobody can tell), the data disks' sizes in bytes."""

    where: str  # the OUT directory or the domain, for messages
    disk: existing.DiskSource  # a file, or a volume of a storage pool (export = "pool")
    format: str
    xml: str
    generalized: bool | None
    data_disk_bytes: tuple[int, ...]
    sha256: str | None = None
    warnings: tuple[str, ...] = field(default=())


def _template_problem(message: str, hint: str | None = None) -> InputError:
    return InputError(message, hint, key="TEMPLATE")


def _read_manifest(out: Path) -> dict[str, Any]:
    path = out / MANIFEST
    try:
        with path.open("rb") as handle:
            document = json.loads(handle.read(MAX_MANIFEST_BYTES))
    except FileNotFoundError:
        raise _template_problem(
            f"{out} has no {MANIFEST}: it is not an OUT directory of pvinstall build.",
            "Give the --out directory of a `pvinstall build --install`, or a domain name.",
        ) from None
    except (OSError, ValueError) as error:
        raise _template_problem(f"cannot read {path}: {error}.") from None
    if not isinstance(document, dict):
        raise _template_problem(f"{path} is not a manifest of pvinstall.")
    return document


def _listed(document: dict[str, Any], name: str) -> bool:
    outputs = document.get("outputs")
    return isinstance(outputs, list) and any(
        isinstance(o, dict) and o.get("name") == name for o in outputs
    )


def _pool_template(conn: virt.Connection, out: Path, record: dict[str, Any]) -> existing.PoolVolume:
    """The volume a manifest's `template` record names (`export = "pool"`), checked
    against what the host's libvirt says of it: there, a qcow2 file without a backing
    file, of the size and virtual size the manifest says."""
    pool, volume = record.get("pool"), record.get("volume")
    if not all(isinstance(v, str) and v and "/" not in v for v in (pool, volume)):
        raise _template_problem(f"{out}/{MANIFEST} names no usable template volume.")
    assert isinstance(pool, str) and isinstance(volume, str)
    try:
        facts = virt.volume_facts(conn, pool, volume)
    except BuildError as error:
        raise _template_problem(
            f"the template volume {volume} of {pool} on {conn.uri} is missing ({error.message}).",
            "Clone on the connection the template was built on, or build it again.",
        ) from None
    if record.get("format") != "qcow2" or facts.format != "qcow2":
        raise _template_problem(
            f"the template volume {pool}/{volume} is {facts.format}, and its manifest says "
            f"{record.get('format')!r}: a template volume is qcow2."
        )
    if facts.backing_path is not None:
        raise _template_problem(
            f"the template volume {pool}/{volume} has a backing file ({facts.backing_path}); "
            "a template has none."
        )
    if facts.physical != record.get("size") or facts.capacity != record.get("virtual_size"):
        raise _template_problem(
            f"the template volume {pool}/{volume} is {facts.physical} bytes ({facts.capacity} "
            f"virtual), but its manifest says {record.get('size')} "
            f"({record.get('virtual_size')} virtual): it changed after the build.",
            "Build the template again; pvinstall does not clone a changed template.",
        )
    return existing.PoolVolume(pool, volume)


def template_from_out(out: Path, conn: virt.Connection) -> Template:
    """The template an OUT directory holds: only what its manifest names, checked
    against the files (the disk exists, is of the format and size the manifest says),
    or against the host's pool for a template volume."""
    document = _read_manifest(out)
    record = document.get("template")
    if not isinstance(record, dict):
        raise _template_problem(
            f"{out} holds no template: its build was not installed, or it set export = none.",
            "Build with --install (export = qcow2, raw or pool), or clone a domain by name.",
        )
    if "volume" in record:
        return _template_of(out, document, record, _pool_template(conn, out, record))
    name, xml_name = record.get("disk"), record.get("xml")
    for what in (name, xml_name):
        if not isinstance(what, str) or "/" in what or what.startswith(".") or not what:
            raise _template_problem(f"{out}/{MANIFEST} names no usable template file.")
        if not _listed(document, what):
            raise _template_problem(f"{out}/{MANIFEST} does not list {what} among its outputs.")
    assert isinstance(name, str) and isinstance(xml_name, str)
    # OUT/name is a link into the current generation: resolve it once, so that the
    # overlay names the bytes of this build, never whatever a later build puts there.
    disk = (out / name).resolve()
    if not disk.is_file():
        raise _template_problem(
            f"the template disk {out / name} is missing: the backing file of a linked "
            "clone must exist.",
            "Build the template again (pvinstall build --install), or give another one.",
        )
    image_format = record.get("format")
    if image_format not in disk_images.ATTACH_FORMATS:
        raise _template_problem(f"{out}/{MANIFEST} says the template is {image_format!r}.")
    try:
        info = disk_images.image_info(disk, str(image_format))
    except (BuildError, InputError) as error:
        raise _template_problem(
            f"{out / name} is not a {image_format} image, as its manifest says ({error.message}).",
            "Build the template again; pvinstall does not clone a disk it cannot vouch for.",
        ) from None
    if info.backing_file is not None:
        raise _template_problem(
            f"{out / name} has a backing file ({info.backing_file}); a template has none."
        )
    size = disk.stat().st_size
    if size != record.get("size") or info.virtual_size != record.get("virtual_size"):
        raise _template_problem(
            f"{out / name} is {size} bytes ({info.virtual_size} virtual), but its manifest "
            f"says {record.get('size')} ({record.get('virtual_size')} virtual): it changed "
            "after the build.",
            "Build the template again; pvinstall does not clone a changed template.",
        )
    return _template_of(out, document, record, disk)


def _template_of(
    out: Path, document: dict[str, Any], record: dict[str, Any], disk: existing.DiskSource
) -> Template:
    """The template of an OUT directory whose disk was checked: its template.xml and
    what its manifest says of it."""
    xml_name = record.get("xml")
    if not isinstance(xml_name, str) or "/" in xml_name or xml_name.startswith(".") or not xml_name:
        raise _template_problem(f"{out}/{MANIFEST} names no usable template file.")
    if not _listed(document, xml_name):
        raise _template_problem(f"{out}/{MANIFEST} does not list {xml_name} among its outputs.")
    image_format = record.get("format")
    try:
        xml = (out / xml_name).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise _template_problem(f"cannot read {out / xml_name}: {error}.") from None
    sizes = record.get("data_disks", [])
    if not isinstance(sizes, list) or not all(isinstance(s, int) for s in sizes):
        raise _template_problem(f"{out}/{MANIFEST} has no list of data disk sizes.")
    generalized = record.get("generalized") is True
    return Template(
        where=str(out),
        disk=disk,
        format=str(image_format),
        xml=xml,
        generalized=generalized,
        data_disk_bytes=tuple(s * 2**30 for s in sizes),
        sha256=str(record.get("sha256")) if record.get("sha256") else None,
    )


def _driver_type(disk: ET.Element) -> str | None:
    driver = disk.find("driver")
    return driver.get("type") if driver is not None else None


def template_from_domain(conn: virt.Connection, name: str) -> Template:
    """A defined, shut-off domain as a template: its first disk is the template disk."""
    if not virt.domain_exists(conn, name):
        raise _template_problem(
            f"unknown template {name!r}: it is neither an OUT directory of pvinstall nor a "
            f"domain on {conn.uri}.",
            "Give the --out directory of `pvinstall build --install`, or the name of a "
            f"shut-off domain (virsh -c {conn.uri} list --all).",
        )
    found = virt.existing_domain(conn, name)
    if found.running:
        raise _template_problem(
            f"the template domain {name} is running: its disk changes while it runs.",
            f"Shut it down first (virsh -c {conn.uri} shutdown {name}).",
        )
    root = existing.parse_xml(found.xml)
    disks = [d for d in root.iterfind("./devices/disk") if d.get("device") == "disk"]
    sources = [devices.source_of(d) for d in disks]
    formats = [_driver_type(d) for d in disks]
    if disks and disks[0].get("type") == "volume" and formats[0] == "qcow2":
        return _volume_template_domain(conn, name, found.xml, disks)
    if not disks or not sources[0] or disks[0].get("type") not in (None, "file"):
        raise _template_problem(
            f"the domain {name} has no disk file to clone (its first disk must be a file, "
            "or a qcow2 volume of a storage pool)."
        )
    if formats[0] not in disk_images.ATTACH_FORMATS:
        raise _template_problem(
            f"the system disk of {name} is {formats[0] or 'of no stated format'}; pvinstall "
            "clones qcow2 and raw disks whose format the domain says."
        )
    disk = Path(sources[0])
    if not disk.is_file():
        raise _template_problem(f"the system disk {disk} of {name} is missing.")
    info = disk_images.image_info(disk, formats[0])
    if info.backing_file is not None:
        raise _template_problem(
            f"{disk} has a backing file ({info.backing_file}); clone a template without one."
        )
    data = []
    for source, image_format in zip(sources[1:], formats[1:], strict=True):
        size = 0
        if source and image_format in disk_images.ATTACH_FORMATS and Path(source).is_file():
            size = disk_images.image_info(Path(source), image_format).virtual_size
        data.append(size or 2**30)
    return Template(
        where=f"domain {name}",
        disk=disk,
        format=str(formats[0]),
        xml=found.xml,
        generalized=None,
        data_disk_bytes=tuple(data),
    )


def _volume_template_domain(
    conn: virt.Connection, name: str, xml: str, disks: list[ET.Element]
) -> Template:
    """A shut-off domain whose system disk is a qcow2 volume (the template.xml of
    `export = "pool"`, defined): the template is that volume."""
    source = disks[0].find("source")
    pool = source.get("pool") if source is not None else None
    volume = source.get("volume") if source is not None else None
    if not pool or not volume:
        raise _template_problem(f"the system disk of {name} names no pool and volume.")
    facts = virt.volume_facts(conn, pool, volume)
    if facts.backing_path is not None:
        raise _template_problem(
            f"the volume {pool}/{volume} has a backing file ({facts.backing_path}); clone a "
            "template without one."
        )
    data = []
    for disk in disks[1:]:
        found = disk.find("source")
        data_pool = found.get("pool") if found is not None else None
        data_volume = found.get("volume") if found is not None else None
        size = 0
        if data_pool and data_volume and virt.volume_exists(conn, data_pool, data_volume):
            size = virt.volume_facts(conn, data_pool, data_volume).capacity
        data.append(size or 2**30)
    return Template(
        where=f"domain {name}",
        disk=existing.PoolVolume(pool, volume),
        format="qcow2",
        xml=xml,
        generalized=None,
        data_disk_bytes=tuple(data),
    )


def _clone_paths(options: CloneOptions, template: Template | None) -> tuple[Path, tuple[Path, ...]]:
    out = (options.out or Path("out") / options.name).absolute()
    count = len(template.data_disk_bytes) if template else 0
    return out / f"{options.name}.qcow2", tuple(
        out / f"{options.name}-data{i}.qcow2" for i in range(1, count + 1)
    )


def _collect(problems: list[Problem], check: Any) -> Any:
    try:
        return check()
    except InputError as error:
        problems += error.problems
        return None


def _existing_files(paths: tuple[Path, ...]) -> list[Problem]:
    return [
        Problem(
            "--out",
            f"{path} exists already.",
            "Choose another --out directory or NAME; pvinstall never overwrites a disk.",
        )
        for path in paths
        if path.exists() or path.is_symlink()
    ]


def _existing_volumes(conn: virt.Connection, pool: str, paths: tuple[Path, ...]) -> list[Problem]:
    """A clone of a template volume gets the volumes NAME.qcow2, NAME-dataN.qcow2 of
    the template's pool: none may exist."""
    return [
        Problem(
            "NAME",
            f"the volume {path.name} exists in the storage pool {pool} on {conn.uri} already.",
            "Choose another name for the clone; pvinstall never overwrites a disk.",
        )
        for path in paths
        if virt.volume_exists(conn, pool, path.name)
    ]


def run_clone(options: CloneOptions, monitor: Monitor) -> dict[str, Any]:
    """Define (and with --start start) a clone of the template; the result document."""
    problems: list[Problem] = []
    _collect(problems, lambda: domain.validate_domain_name(options.name))
    problems = [Problem("NAME", p.message, p.hint) for p in problems]
    conn = _collect(problems, lambda: virt.connect(options.connect))
    if conn is None:
        raise InputError.collect(problems)
    with conn:
        as_path = Path(options.template)
        if as_path.is_dir():
            template = _collect(problems, lambda: template_from_out(as_path.absolute(), conn))
        else:
            template = _collect(problems, lambda: template_from_domain(conn, options.template))
        if not problems and virt.domain_exists(conn, options.name):
            problems.append(
                Problem(
                    "NAME",
                    f"a domain named {options.name} exists on {conn.uri} already.",
                    "Choose another name for the clone.",
                )
            )
        system, data = _clone_paths(options, template)
        if template is not None and isinstance(template.disk, existing.PoolVolume):
            problems += _existing_volumes(conn, template.disk.pool, (system, *data))
        else:
            problems += _existing_files((system, *data))
        if template is not None:
            users = existing.pci_slot_users(existing.parse_xml(template.xml))
            _collect(
                problems,
                lambda: devices.check_pci_slots(
                    users, f"the template {template.where}", key="TEMPLATE", hint=""
                ),
            )
        if problems:
            raise InputError.collect(problems)
        assert template is not None
        warnings = []
        if template.generalized is False:
            warnings.append(NOT_GENERALIZED.format(what=template.where))
        elif template.generalized is None:
            warnings.append(
                f"pvinstall cannot tell whether {template.where} was generalized; clone "
                "only templates that were (duplicated SIDs otherwise)."
            )
        for warning in warnings:
            monitor.warning(warning)
        return _make_clone(
            conn, options, template, (system, data), warnings=warnings, monitor=monitor
        )


def _make_clone(
    conn: virt.Connection,
    options: CloneOptions,
    template: Template,
    disks: tuple[Path, tuple[Path, ...]],
    *,
    warnings: list[str],
    monitor: Monitor,
) -> dict[str, Any]:
    if isinstance(template.disk, existing.PoolVolume):
        return _make_pool_clone(
            conn, options, template, template.disk, disks, warnings=warnings, monitor=monitor
        )
    system, data = disks
    system.parent.mkdir(parents=True, exist_ok=True)
    created: list[Path] = []
    try:
        if options.full:
            monitor.step("copy", f"{template.disk} -> {system}")
            disk_images.convert(template.disk, template.format, system, "qcow2", compress=False)
        else:
            assert isinstance(template.disk, Path)
            mode = stat.S_IMODE(template.disk.stat().st_mode)
            if mode & 0o222:
                monitor.step("read-only", f"{template.disk} (mode {TEMPLATE_MODE:o})")
                template.disk.chmod(TEMPLATE_MODE)
            monitor.step("overlay", f"{system} on {template.disk}")
            disk_images.create_overlay(system, template.disk, template.format)
        created.append(system)
        for path, size in zip(data, template.data_disk_bytes, strict=True):
            disk_images.create_qcow2(path, str(size))
            created.append(path)
        xml = existing.clone_xml(
            template.xml,
            name=options.name,
            system_disk=system,
            data_disks=data,
            serial_log=system.parent / f"{options.name}-serial.log",
        )
        monitor.step("define", f"{options.name} on {conn.uri}")
        virt.define(conn, xml, replace=False)
    except BaseException:
        for path in created:
            path.unlink(missing_ok=True)
        raise
    if options.start:
        monitor.step("start", options.name)
        virt.start(conn, options.name)
    info = disk_images.image_info(system, "qcow2")
    return {
        "name": options.name,
        "uri": conn.uri,
        "template": {
            "from": template.where,
            "disk": str(template.disk),
            "format": template.format,
            "generalized": template.generalized,
            "sha256": template.sha256,
        },
        "linked": not options.full,
        "disk": str(system),
        "backing_file": info.backing_file,
        "data_disks": [str(p) for p in data],
        "defined": True,
        "started": options.start,
        "warnings": warnings,
    }


def _make_pool_clone(
    conn: virt.Connection,
    options: CloneOptions,
    template: Template,
    volume: existing.PoolVolume,
    disks: tuple[Path, tuple[Path, ...]],
    *,
    warnings: list[str],
    monitor: Monitor,
) -> dict[str, Any]:
    """A clone of a template volume, in its pool: a qcow2 volume NAME.qcow2 whose
    backing file is the template volume (or, --full, a copy the host makes), empty
    data volumes NAME-dataN.qcow2; the clone's domain names volumes only. Its serial
    log is `--out/NAME-serial.log` on a local connection, a pty on a remote one."""
    pool = volume.pool
    system, data = disks
    serial_log = None
    if not remote.is_remote(conn.uri, False):
        system.parent.mkdir(parents=True, exist_ok=True)
        serial_log = system.parent / f"{options.name}-serial.log"
    created: list[str] = []
    try:
        how = "copy" if options.full else "overlay"
        monitor.step(how, f"{pool}/{system.name} on {volume}")
        path = virt.create_clone_volume(
            conn, pool, system.name, volume.volume, linked=not options.full
        )
        created.append(system.name)
        for disk, size in zip(data, template.data_disk_bytes, strict=True):
            virt.create_volume(conn, pool, disk.name, size, "qcow2")
            created.append(disk.name)
        xml = existing.clone_xml(
            template.xml,
            name=options.name,
            system_disk=existing.PoolVolume(pool, system.name),
            data_disks=[existing.PoolVolume(pool, d.name) for d in data],
            serial_log=serial_log,
        )
        monitor.step("define", f"{options.name} on {conn.uri}")
        virt.define(conn, xml, replace=False)
    except BaseException:
        for name in reversed(created):
            with contextlib.suppress(BuildError, InputError):
                virt.delete_volume(conn, pool, name)
        raise
    if options.start:
        monitor.step("start", options.name)
        virt.start(conn, options.name)
    facts = virt.volume_facts(conn, pool, system.name)
    return {
        "name": options.name,
        "uri": conn.uri,
        "template": {
            "from": template.where,
            "pool": pool,
            "volume": volume.volume,
            "format": template.format,
            "generalized": template.generalized,
            "sha256": template.sha256,
        },
        "linked": not options.full,
        "pool": pool,
        "volume": system.name,
        "disk": path,
        "backing_file": facts.backing_path,
        "data_disks": [str(PurePosixPath(path).parent / d.name) for d in data],
        "defined": True,
        "started": options.start,
        "warnings": warnings,
    }
