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
from builder.errors import BuildError, InputError, Problem, PvError
from builder.media import iso9660
from builder.media.plan import MediaInputs
from builder.media.table import MediaPlan, WriteInputs, plan_media
from builder.monitor import Monitor, format_elapsed
from builder.outputs import Staging, staging
from builder.reproducible import build_id, source_date_epoch, volume_serial
from builder.sources import driver_digests, find_source, open_source
from builder.virtio.facts import DriverFacts, load_driver_facts
from builder.virtio.packages import scan_source
from builder.virtio.selection import DriverSet, select_drivers
from builder.virtio.source import DriverSource
from builder.vm import domain, virt
from builder.vm.devices import CPU_LEVELS
from builder.windows.install_media import InstallMedia, image_json, profiles_for
from builder.windows.profiles import Profile, resolve_profile

DOMAIN_XML = "domain.xml"
MANIFEST = "manifest.json"
SERIAL_LOG = "serial.log"


@dataclass(frozen=True)
class BuildOptions:
    """What the command line asked for, besides the settings."""

    profile: str | None  # None: the profile --windows-iso is for
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
    media: InstallMedia | None = None
    domain_type: str = "kvm"
    # The x86-64 level of each CPU model (pvinstall's table, and what the host says).
    cpu_levels: Mapping[str, int] = field(default_factory=lambda: dict(CPU_LEVELS))
    disks: domain.DiskPaths | None = None
    domain_xml: str = ""
    domain_record: dict[str, Any] = field(default_factory=dict)
    written: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def timeout_minutes(self) -> float:
        return self.options.timeout_minutes or float(self.profile.timeout_minutes)


@dataclass(frozen=True)
class BuildPlan:
    """What the pure steps decided: the rendered files, the media, the digest of every
    selected driver file (read once, at the edge) and the build id."""

    answers: Mapping[str, bytes]
    postinstall: Mapping[str, bytes]
    media: MediaPlan
    digests: Mapping[str, str]
    build_id: str


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
    if options.windows_iso is not None and not profile.reads_install_image:
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


def profile_from_media(media: InstallMedia, arch: str | None) -> Profile:
    """The one profile a DVD or CD is for (`pvinstall build` without a profile);
    InputError naming what the medium holds when there is none, or several."""
    fitting = profiles_for(media)
    found = [p for p in fitting if arch is None or arch in (p.arch_label, p.arch)]
    if len(found) == 1:
        return found[0]
    if not found and fitting:
        raise InputError(
            f"{media.path} is for {', '.join(p.name for p in fitting)}, but --arch says {arch}.",
            "Leave out --arch, or give the DVD of that architecture.",
            key="--arch",
        )
    if not found:
        raise InputError(
            f"no profile of pvinstall installs what {media.path} holds: {media.holds()}.",
            "Give a Windows Server DVD of a release `pvinstall profiles` lists, or name the "
            "profile.",
            key="--windows-iso",
        )
    raise InputError(
        f"{media.path} fits several profiles ({', '.join(p.name for p in found)}).",
        "Name the profile, or add --arch.",
        key="--windows-iso",
    )


def _read_media(
    options: BuildOptions, monitor: Monitor
) -> tuple[Profile, InstallMedia | None, list[Problem]]:
    """The profile (named, or the one --windows-iso is for) and, for a profile that reads
    its install image, the DVD as read in place, with the problems reading it had."""
    iso = options.windows_iso
    if options.profile is None:
        if iso is None:
            raise InputError(
                "no profile was given, and no --windows-iso to choose one from.",
                "Name a profile (see `pvinstall profiles`), or give the install DVD with "
                "--windows-iso.",
                key="profile",
            )
        monitor.step("read install media", str(iso))
        media = iso9660.read_install_media(iso)
        profile = profile_from_media(media, options.arch)
        monitor.info(f"{iso.name} holds {media.holds()}: profile {profile.name}")
        return profile, media if profile.reads_install_image else None, []
    profile = resolve_profile(options.profile, options.arch)
    if iso is None or not profile.reads_install_image:
        return profile, None, []
    monitor.step("read install media", str(iso))
    try:
        return profile, iso9660.read_install_media(iso), []
    except InputError as error:
        return profile, None, list(error.problems)


def prepare(options: BuildOptions, environ: Mapping[str, str], monitor: Monitor) -> Context:
    """Resolve and validate every input and select the drivers; InputError lists every
    problem. The returned context holds the driver source open: close it."""
    profile, media, media_problems = _read_media(options, monitor)
    path, source_problems = _locate_source(options, environ)
    config = load_config(
        profile,
        config_file=options.config_file,
        sets=options.sets,
        environ=environ,
        extra_problems=lambda: [
            *media_problems,
            *source_problems,
            *_option_problems(options, profile),
        ],
        media=media,
    )
    if config.image is not None:
        monitor.info(
            f"install image {config.image.index}: {config.image.name} "
            f"({config.image.edition_id}, {config.image.installation_type}, "
            f"{config.image.language})"
        )
    if path is None:  # load_config has reported the source's problems with the others
        raise InputError.collect(source_problems)
    epoch = source_date_epoch(environ)
    monitor.step("select drivers", f"for {profile.name} from {path}")
    source = open_source(path)
    try:
        facts = load_driver_facts()
        scan = scan_source(source, facts)
        drivers = select_drivers(scan, profile, facts, storage_bus=config.storage_bus)
    except BaseException:
        source.close()
        raise
    for driver in drivers.selected:
        monitor.info(f"{driver.name}: {driver.inf_path} ({driver.driver_ver})")
    for warning in (*config.warnings, *drivers.warnings):
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
        media=media,
        warnings=[*config.warnings, *drivers.warnings],
    )


# -- pure steps ------------------------------------------------------------------------------


def plan_build(ctx: Context, monitor: Monitor) -> BuildPlan:
    """Render the answer files, plan the media (the floppy must fit) and check what a
    medium's writer will read (a 2003 CD against its remaster), before anything is
    written."""
    monitor.step("render answer files", ", ".join(ctx.profile.answer_files))
    answers = render_answer_files(ctx.config, ctx.drivers)
    postinstall = render_postinstall(ctx.config, ctx.drivers)
    monitor.step("plan media")
    media = plan_media(
        MediaInputs(ctx.config, ctx.drivers, answers, postinstall, ctx.media), ctx.windows_iso
    )
    digests = driver_digests(ctx.source, ctx.drivers)
    # The build id names the public inputs: it also seeds the floppy's volume id, so
    # no secret (not even hashed) goes into it.
    identity = build_id(
        [
            __version__,
            ctx.profile.name,
            str(ctx.epoch),
            json.dumps(ctx.config.public_json(), sort_keys=True),
            *(f"{f.path}:{digests[f.path]}" for d in ctx.drivers.selected for f in d.files),
        ]
    )
    plan = BuildPlan(answers, postinstall, media, digests, identity)
    for planned in media.planned:
        note = planned.builder.check(planned.plan, _write_inputs(ctx, plan))
        if note:
            monitor.info(note)
    return plan


def _write_inputs(ctx: Context, plan: BuildPlan) -> WriteInputs:
    return WriteInputs(ctx.source, ctx.epoch, volume_serial(plan.build_id), ctx.windows_iso)


def media_paths(ctx: Context, plan: BuildPlan) -> domain.MediaPaths:
    """Where the domain finds its media and disks (absolute paths)."""
    system, data = ctx.disks or domain.default_disk_paths(ctx.config, ctx.out_dir, ctx.name)
    return domain.MediaPaths(
        media=plan.media.attached(ctx.out_dir, ctx.windows_iso),
        system_disk=system,
        data_disks=data,
        serial_log=ctx.out_dir / SERIAL_LOG,
    )


def make_domain_xml(ctx: Context, plan: BuildPlan, monitor: Monitor) -> None:
    """The domain XML, after the PCI slot budget and the driver <-> device check."""
    monitor.step("domain XML", f"{ctx.name} ({ctx.domain_type})")
    ctx.domain_xml = domain.domain_xml(
        ctx.config,
        ctx.drivers,
        media_paths(ctx, plan),
        facts=ctx.facts,
        name=ctx.name,
        domain_type=ctx.domain_type,
        cpu_levels=ctx.cpu_levels,
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
    ctx.cpu_levels = virt.check_machine(conn, ctx.config, domain_type=ctx.domain_type, arch=arch)
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


def write_outputs(ctx: Context, plan: BuildPlan, stage: Staging, monitor: Monitor) -> None:
    """Write every output into the staging directory: the answer files, each medium of
    the media table that applies, the domain XML. What holds a secret (the answer files
    and every medium that carries them) is written with mode 0600."""
    for name, data in sorted(plan.answers.items()):
        monitor.step("write", name)
        stage.write(name, data, secret=name in ctx.profile.secret_answer_files)
        ctx.written.append(name)
    inputs = _write_inputs(ctx, plan)
    for planned in plan.media.planned:
        medium = planned.medium
        monitor.step("write", f"{medium.name} ({medium.title})")
        planned.builder.write(planned.plan, stage.file(medium.name, secret=medium.secret), inputs)
        ctx.written.append(medium.name)
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


def install_domain(ctx: Context, plan: BuildPlan, conn: virt.Connection, monitor: Monitor) -> None:
    """Start setup and wait for the guest to power off; then the domain is a template."""
    minutes = ctx.timeout_minutes
    monitor.step("install", f"waiting up to {minutes:g} minutes for setup to power the guest off")
    result = virt.install(
        conn,
        ctx.name,
        media=plan.media.removed_after_install(ctx.out_dir, ctx.windows_iso),
        timeout_minutes=minutes,
        out_dir=ctx.out_dir,
        monitor=monitor,
    )
    record = result.as_json()
    record.pop("final_xml")  # the template's XML is libvirt's to keep, not the manifest's
    ctx.domain_record.update(installed=True, **record)
    monitor.info(
        f"installed in {format_elapsed(result.seconds)}; removed "
        f"{', '.join(result.removed_media) or 'no media'} from {ctx.name}"
    )


def _medium_files(ctx: Context, plan: BuildPlan, name: str) -> list[dict[str, Any]] | None:
    """What pvinstall put on the medium `name` (None for an output that is not one)."""
    planned = plan.media.get(name)
    if planned is None:
        return None
    builder = planned.builder
    files = manifest_mod.planned_files_json(builder.files(planned.plan), plan.digests)
    files += [
        {"path": f.path, "size": f.size, "sha256": f.sha256}
        for f in builder.read_back(planned.plan, ctx.out_dir / name)
    ]
    return sorted(files, key=lambda f: str(f["path"]).lower())


def write_manifest(ctx: Context, plan: BuildPlan, monitor: Monitor) -> dict[str, Any]:
    monitor.step("write", MANIFEST)
    inputs = [manifest_mod.source_record(ctx.source, ctx.drivers, plan.digests)]
    if ctx.windows_iso is not None:
        inputs.append(manifest_mod.file_record("windows_iso", ctx.windows_iso, "iso"))
    if ctx.options.config_file is not None:
        inputs.append(
            manifest_mod.file_record("config", ctx.options.config_file.absolute(), "toml")
        )
    document = manifest_mod.build_manifest(
        config=ctx.config,
        build_id=plan.build_id,
        epoch=ctx.epoch,
        inputs=inputs,
        drivers=manifest_mod.drivers_json(ctx.drivers, plan.digests),
        outputs=[
            manifest_mod.output_record(n, ctx.out_dir / n, _medium_files(ctx, plan, n))
            for n in ctx.written
        ],
        domain=ctx.domain_record,
        warnings=ctx.warnings,
        install_image=image_json(ctx.config.image) if ctx.config.image else None,
    )
    with staging(ctx.out_dir) as stage:
        stage.write(MANIFEST, manifest_mod.manifest_bytes(document))
        stage.commit()
    return document


def record_failure(record: dict[str, Any], error: PvError) -> None:
    """Put every problem of a failed step into the manifest's domain record: `error` as
    the user saw it, `problems` one by one with their keys and hints."""
    record["error"] = str(error)
    record["problems"] = [p.as_json() for p in error.problems]


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
        plan = plan_build(ctx, monitor)
        with _hypervisor(options) as conn:
            check_hypervisor(ctx, conn, monitor)
            make_domain_xml(ctx, plan, monitor)
            with staging(ctx.out_dir) as stage:
                write_outputs(ctx, plan, stage, monitor)
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
                        install_domain(ctx, plan, conn, monitor)
                except BuildError as error:
                    # The media are written; say in the manifest how far the build got.
                    record_failure(ctx.domain_record, error)
                    write_manifest(ctx, plan, monitor)
                    raise
        document = write_manifest(ctx, plan, monitor)
    return BuildResult(
        manifest=document,
        domain_xml=ctx.domain_xml,
        out_dir=ctx.out_dir,
        installed=bool(ctx.domain_record.get("installed")),
    )
