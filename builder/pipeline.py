"""The build, as a script of steps: validate every input, select drivers, render the
answer files, plan the media, write the media and the domain XML, define and
install, and write the manifest.

Everything that can be wrong with the input is checked before the first byte is
written (`prepare`, `plan_build`, `check_hypervisor`); the write step stages every
file and renames them into OUT only when all of them were written, so a refused or
failed build leaves OUT as it was.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from builder import __version__, sources
from builder import manifest as manifest_mod
from builder.answers.formats import render_answer_files
from builder.answers.postinstall import render_postinstall
from builder.config import BuildConfig, load_config
from builder.errors import BuildError, InputError, Problem
from builder.media import fat, iso9660
from builder.media.plan import MediaPlan, plan_media
from builder.monitor import Monitor
from builder.outputs import Staging, staging
from builder.reproducible import build_id, source_date_epoch, volume_serial
from builder.sources import find_source, open_source
from builder.virtio.facts import DriverFacts, load_driver_facts
from builder.virtio.packages import scan_source
from builder.virtio.selection import DriverSet, select_drivers
from builder.virtio.source import DriverSource
from builder.vm import domain, virt
from builder.windows.profiles import Profile, resolve_profile

FLOPPY = "floppy.img"
DRIVERS_ISO = "drivers.iso"
INSTALL_ISO = "install.iso"
DOMAIN_XML = "domain.xml"
MANIFEST = "manifest.json"
SERIAL_LOG = "serial.log"


@dataclass(frozen=True)
class BuildOptions:
    """What the command line asked for, besides the settings."""

    profile: str
    arch: str | None = None
    drivers: str | None = None
    windows_iso: Path | None = None
    out: Path | None = None
    name: str | None = None
    config_file: Path | None = None
    sets: tuple[str, ...] = ()
    define: bool = False
    install: bool = False
    replace: bool = False
    connect: str = virt.DEFAULT_URI
    domain_type: str | None = None
    timeout_minutes: float | None = None

    @property
    def acting(self) -> bool:
        """Whether the build touches a hypervisor (--define or --install)."""
        return self.define or self.install


def default_name(profile: Profile) -> str:
    return f"pvinstall-{profile.name}"


def default_out(name: str) -> Path:
    return Path("out") / name


@dataclass
class Context:
    """One run: the validated inputs, then what the steps produce."""

    options: BuildOptions
    profile: Profile
    config: BuildConfig
    out_dir: Path
    name: str
    epoch: int
    source: DriverSource
    drivers: DriverSet
    facts: DriverFacts
    windows_iso: Path | None
    build: str = ""
    answers: dict[str, bytes] = field(default_factory=dict)
    postinstall: dict[str, bytes] = field(default_factory=dict)
    plan: MediaPlan | None = None
    domain_type: str = "kvm"
    disks: domain.DiskPaths | None = None
    domain_xml: str = ""
    domain_record: dict[str, Any] = field(default_factory=dict)
    written: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def remasters_cd(self) -> bool:
        return self.profile.remasters_install_cd and self.windows_iso is not None

    @property
    def timeout_minutes(self) -> float:
        return self.options.timeout_minutes or float(self.profile.timeout_minutes)


@dataclass(frozen=True)
class BuildResult:
    """What a finished build reports: the manifest, the domain XML and where they are."""

    manifest: dict[str, Any]
    domain_xml: str
    out_dir: Path
    installed: bool


# -- validate everything first ---------------------------------------------------------------


def _problems(check: Callable[[], object]) -> list[Problem]:
    """The problems `check` raises as an InputError (none when it passes)."""
    try:
        check()
    except InputError as error:
        return list(error.problems)
    return []


def _locate_source(
    options: BuildOptions, environ: Mapping[str, str]
) -> tuple[Path | None, list[Problem]]:
    """The driver source (--drivers or the default search), or why there is none."""
    try:
        path = find_source(options.drivers, environ)
        sources.require_source_exists(path)
    except InputError as error:
        return None, list(error.problems)
    return path, []


def _option_problems(options: BuildOptions, profile: Profile) -> list[Problem]:
    """Problems with the command-line options (collected with the settings' problems)."""
    found: list[Problem] = []
    if options.install and options.windows_iso is None:
        found.append(
            Problem(
                "--install",
                "needs the Windows install ISO to boot setup from.",
                "Give it with --windows-iso (make: WINDOWS_ISO=...).",
            )
        )
    if options.windows_iso is not None:
        path = options.windows_iso
        if not path.is_file():
            found.append(
                Problem(
                    "--windows-iso",
                    f"{path} does not exist or is not a file.",
                    "Check the path of the Windows install ISO.",
                )
            )
        elif not profile.remasters_install_cd and not iso9660.is_iso_image(path):
            # Media that are not remastered are attached as they are; a CD to remaster is
            # inspected in depth once the remaster is planned.
            found.append(
                Problem(
                    "--windows-iso",
                    f"{path} is not an ISO 9660 image.",
                    f"Give the {profile.title} install DVD image.",
                )
            )
    if options.name is not None:
        found += _problems(lambda: domain.validate_domain_name(options.name or ""))
    if options.domain_type is not None:
        found += _problems(lambda: domain.validate_domain_type(options.domain_type or ""))
    if options.timeout_minutes is not None and not options.timeout_minutes > 0:
        found.append(
            Problem(
                "--timeout",
                f"{options.timeout_minutes:g} minutes is no time to install in.",
                "Give a positive number of minutes.",
            )
        )
    if options.out is not None and options.out.exists() and not options.out.is_dir():
        found.append(
            Problem(
                "--out",
                f"{options.out} exists and is not a directory.",
                "Choose another --out directory.",
            )
        )
    return found


def prepare(options: BuildOptions, environ: Mapping[str, str], monitor: Monitor) -> Context:
    """Resolve and validate every input and select the drivers; InputError lists every
    problem. The returned context holds the driver source open: close it."""
    profile = resolve_profile(options.profile, options.arch)
    path, source_problems = _locate_source(options, environ)
    config = load_config(
        profile,
        config_file=options.config_file,
        sets=options.sets,
        environ=environ,
        extra_problems=lambda: [*source_problems, *_option_problems(options, profile)],
    )
    assert path is not None  # else load_config raised with the source's problem
    epoch = source_date_epoch(environ)
    monitor.step("select drivers", f"for {profile.name} from {path}")
    source = open_source(path)
    try:
        facts = load_driver_facts()
        scan = scan_source(source, facts)
        drivers = select_drivers(scan, profile, facts)
    except BaseException:
        source.close()
        raise
    for driver in drivers.selected:
        monitor.info(f"{driver.name}: {driver.inf_path} ({driver.driver_ver})")
    for warning in drivers.warnings:
        monitor.warning(warning)
    name = options.name or default_name(profile)
    return Context(
        options=options,
        profile=profile,
        config=config,
        out_dir=(options.out or default_out(name)).absolute(),
        name=name,
        epoch=epoch,
        source=source,
        drivers=drivers,
        facts=facts,
        windows_iso=options.windows_iso.absolute() if options.windows_iso else None,
        warnings=list(drivers.warnings),
    )


# -- pure steps ------------------------------------------------------------------------------


def render_answers(ctx: Context, monitor: Monitor) -> None:
    monitor.step("render answer files", ", ".join(ctx.profile.answer_files))
    ctx.answers = render_answer_files(ctx.config, ctx.drivers)
    ctx.postinstall = render_postinstall(ctx.config, ctx.drivers)


def plan_build(ctx: Context, monitor: Monitor) -> None:
    """Plan the media (the floppy must fit) and check a 2003 CD against the plan."""
    monitor.step("plan media")
    ctx.plan = plan_media(ctx.config, ctx.drivers, ctx.answers, ctx.postinstall)
    if ctx.remasters_cd and ctx.plan.install_cd is not None:
        assert ctx.windows_iso is not None
        # A CD of the other architecture, or one that is not a 2003 CD, is refused
        # here, before anything is written.
        info = iso9660.inspect_install_cd(ctx.windows_iso, ctx.profile, ctx.plan.install_cd)
        monitor.info(
            f"install CD {info.label or ctx.windows_iso.name}: {info.arch}, setup "
            f"in {info.setup_dir}"
        )
    # The build id names the public inputs: it also seeds the floppy's volume id, so
    # no secret (not even hashed) goes into it.
    ctx.build = build_id(
        [
            __version__,
            ctx.profile.name,
            str(ctx.epoch),
            json.dumps(ctx.config.public_json(), sort_keys=True),
            *(
                f"{f.path}:{ctx.source.sha256(f.path)}"
                for d in ctx.drivers.selected
                for f in d.files
            ),
        ]
    )


def media_paths(ctx: Context) -> domain.MediaPaths:
    """Where the domain finds its media and disks (absolute paths)."""
    system, data = ctx.disks or domain.default_disk_paths(ctx.config, ctx.out_dir, ctx.name)
    install = ctx.out_dir / INSTALL_ISO if ctx.remasters_cd else ctx.windows_iso
    return domain.MediaPaths(
        install_iso=install,
        drivers_iso=ctx.out_dir / DRIVERS_ISO,
        floppy=ctx.out_dir / FLOPPY,
        system_disk=system,
        data_disks=data,
        serial_log=ctx.out_dir / SERIAL_LOG,
    )


def make_domain_xml(ctx: Context, monitor: Monitor) -> None:
    """The domain XML, after the PCI slot budget and the driver <-> device check."""
    monitor.step("domain XML", f"{ctx.name} ({ctx.domain_type})")
    ctx.domain_xml = domain.domain_xml(
        ctx.config,
        ctx.drivers,
        media_paths(ctx),
        facts=ctx.facts,
        name=ctx.name,
        domain_type=ctx.domain_type,
    )


# -- the hypervisor, checked before writing --------------------------------------------------


def check_hypervisor(ctx: Context, conn: virt.Connection | None, monitor: Monitor) -> None:
    """Pick the domain type and refuse what define would refuse (an existing domain or
    disk, a missing network or pool), before anything is written."""
    if conn is None:
        # No hypervisor to ask: KVM is what a user's host has; --domain-type qemu
        # writes a TCG domain.
        ctx.domain_type = ctx.options.domain_type or "kvm"
        return
    monitor.step("check hypervisor", conn.uri)
    arch = domain.GUEST_ARCH[ctx.profile.arch]
    ctx.domain_type = virt.choose_domain_type(conn, ctx.options.domain_type, arch=arch)
    ctx.disks = virt.disk_paths(conn, ctx.config, ctx.out_dir, ctx.name)
    virt.check_can_define(
        conn,
        ctx.name,
        replace=ctx.options.replace,
        network=ctx.config.network,
        pool=ctx.config.storage_pool,
        disks=ctx.disks,
    )


# -- the I/O edge ----------------------------------------------------------------------------


def write_outputs(ctx: Context, stage: Staging, monitor: Monitor) -> None:
    """Write every output into the staging directory. The answer files and every
    medium that carries them are secret (mode 0600)."""
    assert ctx.plan is not None
    for name, data in sorted(ctx.answers.items()):
        monitor.step("write", name)
        stage.write(name, data, secret=name in ctx.profile.secret_answer_files)
        ctx.written.append(name)
    monitor.step("write", f"{FLOPPY} ({ctx.config.floppy_kib} KiB FAT12)")
    fat.write_floppy(
        ctx.plan.floppy,
        stage.file(FLOPPY, secret=True),
        ctx.source,
        epoch=ctx.epoch,
        serial=volume_serial(ctx.build),
    )
    ctx.written.append(FLOPPY)
    monitor.step("write", DRIVERS_ISO)
    iso9660.write_drivers_iso(
        ctx.plan.drivers_iso, stage.file(DRIVERS_ISO, secret=True), ctx.source, epoch=ctx.epoch
    )
    ctx.written.append(DRIVERS_ISO)
    if ctx.remasters_cd and ctx.plan.install_cd is not None:
        assert ctx.windows_iso is not None
        monitor.step("write", f"{INSTALL_ISO} (remastered {ctx.windows_iso.name})")
        iso9660.remaster_install_cd(
            ctx.windows_iso,
            stage.file(INSTALL_ISO, secret=True),
            ctx.plan.install_cd,
            ctx.source,
            epoch=ctx.epoch,
        )
        ctx.written.append(INSTALL_ISO)
    monitor.step("write", DOMAIN_XML)
    stage.write(DOMAIN_XML, ctx.domain_xml.encode("utf-8"))
    ctx.written.append(DOMAIN_XML)


def define_domain(ctx: Context, conn: virt.Connection, monitor: Monitor) -> None:
    """Create the disks and define the domain; disk files created here are removed
    again when the definition is refused."""
    monitor.step("define", f"{ctx.name} on {conn.uri}")
    disks = virt.create_disks(
        conn, ctx.config, ctx.out_dir, ctx.name, monitor, replace=ctx.options.replace
    )
    try:
        virt.define(conn, ctx.domain_xml, replace=ctx.options.replace)
    except BaseException:
        if ctx.config.storage_pool is None:
            for path in (disks[0], *disks[1]):
                path.unlink(missing_ok=True)
        raise
    ctx.domain_record.update(
        defined=True, uri=conn.uri, disks=[str(p) for p in (disks[0], *disks[1])]
    )


def install_domain(ctx: Context, conn: virt.Connection, monitor: Monitor) -> None:
    """Start setup and wait for the guest to power off; then the domain is a template."""
    minutes = ctx.timeout_minutes
    monitor.step("install", f"waiting up to {minutes:g} minutes for setup to power the guest off")
    result = virt.install(
        conn, ctx.name, timeout_minutes=minutes, out_dir=ctx.out_dir, monitor=monitor
    )
    record = result.as_json()
    record.pop("final_xml")  # the template's XML is libvirt's to keep, not the manifest's
    ctx.domain_record.update(installed=True, **record)
    monitor.info(
        f"installed in {virt.format_elapsed(result.seconds)}; removed "
        f"{', '.join(result.removed_media) or 'no media'} from {ctx.name}"
    )


def _medium_files(ctx: Context, name: str) -> list[dict[str, Any]] | None:
    """What pvinstall put on the medium `name` (None for a file that is not one)."""
    assert ctx.plan is not None
    if name == FLOPPY:
        return manifest_mod.planned_files_json(ctx.plan.floppy.files, ctx.source)
    if name == DRIVERS_ISO:
        return manifest_mod.planned_files_json(ctx.plan.drivers_iso.files, ctx.source)
    if name == INSTALL_ISO and ctx.plan.install_cd is not None:
        cd = ctx.plan.install_cd
        files = manifest_mod.planned_files_json(cd.files, ctx.source)
        # The patched TXTSETUP.SIF is read back from the written CD: its text is the
        # user's CD's with the driver's entries merged in.
        with open_source(ctx.out_dir / INSTALL_ISO) as written:
            sif = cd.txtsetup_path
            files.append({"path": sif, "size": written.size(sif), "sha256": written.sha256(sif)})
        return sorted(files, key=lambda f: str(f["path"]).lower())
    return None


def write_manifest(ctx: Context, monitor: Monitor) -> dict[str, Any]:
    monitor.step("write", MANIFEST)
    inputs = [manifest_mod.source_record(ctx.source, ctx.drivers)]
    if ctx.windows_iso is not None:
        inputs.append(manifest_mod.file_record("windows_iso", ctx.windows_iso, "iso"))
    if ctx.options.config_file is not None:
        inputs.append(
            manifest_mod.file_record("config", ctx.options.config_file.absolute(), "toml")
        )
    document = manifest_mod.build_manifest(
        config=ctx.config,
        build_id=ctx.build,
        epoch=ctx.epoch,
        inputs=inputs,
        drivers=manifest_mod.drivers_json(ctx.drivers, ctx.source),
        outputs=[
            manifest_mod.output_record(n, ctx.out_dir / n, _medium_files(ctx, n))
            for n in ctx.written
        ],
        domain=ctx.domain_record,
        warnings=ctx.warnings,
    )
    with staging(ctx.out_dir) as stage:
        stage.write(MANIFEST, manifest_mod.manifest_bytes(document))
        stage.commit()
    return document


# -- the script ------------------------------------------------------------------------------


@contextlib.contextmanager
def _hypervisor(options: BuildOptions) -> Iterator[virt.Connection | None]:
    if not options.acting:
        yield None
        return
    conn = virt.connect(options.connect)
    try:
        yield conn
    finally:
        conn.close()


def run_build(
    options: BuildOptions, monitor: Monitor, environ: Mapping[str, str] | None = None
) -> BuildResult:
    """Run the whole build (select → render → media → domain XML → define → install →
    manifest). InputError before anything is written; BuildError when writing,
    defining or installing fails (the manifest then records how far it got)."""
    ctx = prepare(options, dict(os.environ if environ is None else environ), monitor)
    with contextlib.closing(ctx.source):
        render_answers(ctx, monitor)
        plan_build(ctx, monitor)
        with _hypervisor(options) as conn:
            check_hypervisor(ctx, conn, monitor)
            make_domain_xml(ctx, monitor)
            with staging(ctx.out_dir) as stage:
                write_outputs(ctx, stage, monitor)
                stage.commit()
            ctx.domain_record = {
                "name": ctx.name,
                "type": ctx.domain_type,
                "xml": DOMAIN_XML,
                "defined": False,
                "installed": False,
            }
            if conn is not None:
                try:
                    define_domain(ctx, conn, monitor)
                    if options.install:
                        install_domain(ctx, conn, monitor)
                except BuildError as error:
                    # The media are written; say in the manifest how far the build got.
                    ctx.domain_record["error"] = str(error.problems[0])
                    write_manifest(ctx, monitor)
                    raise
        document = write_manifest(ctx, monitor)
    return BuildResult(
        manifest=document,
        domain_xml=ctx.domain_xml,
        out_dir=ctx.out_dir,
        installed=bool(ctx.domain_record.get("installed")),
    )
