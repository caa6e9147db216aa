"""The build, as a script of steps: validate every input, select drivers, render the
answer files, plan the media, write the media and the domain XML, define and
install, and write the manifest.

Everything that can be wrong with the input is checked before the first byte is
written, and in one pass (`prepare`: the settings, the options, SOURCE_DATE_EPOCH, the
driver source, the domain's devices against the drivers and the PCI slots, and with
--define or --install the hypervisor's network, pool, domain and disks), so that one
run lists every problem. The outputs, the manifest last, are written into a new
generation of OUT and committed in one rename (builder/outputs.py), so that OUT is
the previous build or the new one at every instant; OUT is locked meanwhile. Define
and install come after the commit and update the manifest with what happened, a
failure or an interruption included.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from dataclasses import replace as dataclasses_replace
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, cast

from builder import __version__, cache, interrupts, sources
from builder import manifest as manifest_mod
from builder.answers.formats import render_answer_files
from builder.answers.postinstall import SYSPREP_FAILED_LINE, render_postinstall
from builder.answers.sysprep import render_sysprep
from builder.config import BuildConfig, failed_keys, validate_config
from builder.digests import HashingWriter, bytes_digest, file_digest
from builder.errors import BuildError, InputError, Problem, PvError
from builder.media import cabinet, iso9660
from builder.media.plan import MediaInputs
from builder.media.table import (
    WINDOWS_ISO_INPUT,
    MediaPlan,
    WriteInputs,
    WrittenMedium,
    media_for,
    plan_media,
)
from builder.monitor import Monitor, format_elapsed
from builder.options import (
    DOMAIN_XML,
    SCREENSHOT,
    SERIAL_TAIL,
    BuildOptions,
    BuildResult,
    default_name,
    default_out,
)
from builder.outputs import Generation, OutputDir
from builder.reproducible import build_id, source_date_epoch, volume_serial
from builder.sources import driver_digests, find_source, open_source, read_catalogs
from builder.virtio.facts import DriverFacts, load_driver_facts
from builder.virtio.packages import scan_source
from builder.virtio.selection import DriverSet, select_drivers
from builder.virtio.source import DriverSource
from builder.virtio.trust import apply_signatures
from builder.vm import disk_images, domain, existing, remote
from builder.vm.devices import CPU_LEVELS, AttachedMedium
from builder.windows.install_media import InstallMedia, image_json, profiles_for
from builder.windows.profiles import Profile, resolve_profile

if TYPE_CHECKING:
    from builder.vm import virt

MANIFEST = "manifest.json"
TEMPLATE_XML = "template.xml"
# The exported template disk, by the `export` setting (none: no file).
TEMPLATE_DISKS = {"qcow2": "template.qcow2", "raw": "template.raw"}
SERIAL_LOG = "serial.log"
# What a failed install keeps in OUT to show why (the manifest's domain record names
# them); the next build's commit removes those a previous manifest named.
INSTALL_LOGS = (SCREENSHOT, SERIAL_TAIL)


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
    conn: virt.Connection | None = None
    domain_type: str = "kvm"
    # The x86-64 level of each CPU model (pvinstall's table, and what the host says).
    cpu_levels: Mapping[str, int] = field(default_factory=lambda: dict(CPU_LEVELS))
    disks: domain.DiskPaths | None = None
    # A remote host (vm/remote.py): the media become volumes of storage_pool, and the
    # volumes an earlier build into this OUT made (which --replace may replace).
    remote: bool = False
    replaceable_volumes: frozenset[str] = frozenset()
    domain_xml: str = ""
    domain_record: dict[str, Any] = field(default_factory=dict)
    written: list[str] = field(default_factory=list)
    # name -> (size, digest, files on it): each taken from the bytes as they were written
    output_facts: dict[str, tuple[int, dict[str, str], list[dict[str, Any]] | None]] = field(
        default_factory=dict
    )
    # input name -> sha256 of the inputs a writer read whole on the way (the 2003 CD)
    input_sha256: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    final_xml: str = ""  # the installed domain, its install media out

    @property
    def timeout_minutes(self) -> float:
        return self.options.timeout_minutes or float(self.profile.timeout_minutes)

    def close(self) -> None:
        """Close the driver source and the hypervisor connection."""
        try:
            self.source.close()
        finally:
            if self.conn is not None:
                self.conn.close()


@dataclass(frozen=True)
class BuildPlan:
    """What the pure steps decided: the rendered files, the media, the digest of every
    selected driver file (read once, at the edge) and the build id."""

    answers: Mapping[str, bytes]
    postinstall: Mapping[str, bytes]
    media: MediaPlan
    digests: Mapping[str, str]
    build_id: str
    # The clones' answer file (generalized builds), by its name in OUT.
    sysprep: Mapping[str, bytes] = field(default_factory=dict)

    @property
    def rendered(self) -> dict[str, bytes]:
        """Every rendered file that goes into OUT as it is, by name."""
        return {**self.answers, **self.sysprep}


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


def _out_problems(out: Path) -> list[Problem]:
    """--out must be a directory pvinstall can write, or one it can create."""
    if out.exists() and not out.is_dir():
        return [
            Problem(
                "--out", f"{out} exists and is not a directory.", "Choose another --out directory."
            )
        ]
    existing = out
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        return [
            Problem(
                "--out",
                f"cannot create {out}: {existing} is not a directory.",
                "Choose another --out directory.",
            )
        ]
    if not os.access(existing, os.W_OK | os.X_OK):
        why = "it is on a read-only file system" if _read_only(existing) else "permission denied"
        what = f"write to {out}" if existing == out else f"create {out} in {existing}"
        return [
            Problem(
                "--out",
                f"cannot {what}: {why}.",
                "Choose a directory you can write to with --out.",
            )
        ]
    return []


def _read_only(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _option_problems(options: BuildOptions, profile: Profile, out: Path) -> list[Problem]:
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
    if options.export_only and not options.install:
        found.append(
            Problem(
                "--export-only",
                "removes the installed domain after exporting its template, so it needs --install.",
                "Add --install, or leave --export-only out.",
            )
        )
    if options.force and not options.replace:
        found.append(
            Problem(
                "--force",
                "stops a running domain only for --replace.",
                "Add --replace, or leave --force out.",
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
    return found + _out_problems(out)


def _epoch(environ: Mapping[str, str]) -> tuple[int, list[Problem]]:
    try:
        return source_date_epoch(environ), []
    except InputError as error:
        return 0, list(error.problems)


# Which settings each check of the domain reads: a check runs only when they are right.
_DEVICE_CHECK_KEYS = {
    "slots": frozenset({"data_disks"}),
    "drivers": frozenset({"virtio_model"}),
}


def _device_problems(
    config: BuildConfig, drivers: DriverSet, facts: DriverFacts, failed: frozenset[str]
) -> list[Problem]:
    """The domain's devices: within the 28 PCI slots, and each bound by a selected
    driver. Run on the settings as given, before any output exists; each check only
    when the settings it reads have no problem of their own."""
    placeholder = Path("/pvinstall-check")
    paths = domain.MediaPaths(
        media=(),
        system_disk=placeholder / "system.qcow2",
        data_disks=tuple(placeholder / f"data{i}.qcow2" for i, _ in enumerate(config.data_disks)),
        serial_log=placeholder / SERIAL_LOG,
    )
    if "virtio_model" in failed:
        config = dataclasses_replace(config, virtio_model=None)
    # The devices do not depend on the CPU, which `_cpu_problems` checks once the host
    # has said what its models are; a firmware with a problem of its own is the profile's.
    config = dataclasses_replace(config, cpu_model=config.profile.cpu_model)
    if "firmware" in failed:
        config = dataclasses_replace(config, firmware=config.profile.firmware)
    plan = domain.plan_domain(config, paths, name="pvinstall-check", domain_type="kvm")
    found: list[Problem] = []
    if not failed & _DEVICE_CHECK_KEYS["slots"]:
        found += _problems(lambda: domain.check_slot_budget(plan))
    if not failed & _DEVICE_CHECK_KEYS["drivers"]:
        found += _problems(lambda: domain.check_device_drivers(plan, drivers, facts))
    return found


def _cpu_problems(
    config: BuildConfig, domain_type: str, cpu_levels: Mapping[str, int], failed: frozenset[str]
) -> list[Problem]:
    """The guest's CPU against the release's x86-64 level, with the levels the host's
    libvirt gave (or pvinstall's table without a connection)."""
    if failed & MACHINE_KEYS:
        return []
    return _problems(lambda: domain.plan_cpu(config, domain_type, cpu_levels))


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


# The settings the machine check reads: it runs only when they are right.
MACHINE_KEYS = frozenset({"firmware", "secure_boot", "tpm", "cpu_model", "--domain-type"})


def _connect(
    options: BuildOptions,
) -> tuple[virt.Connection | None, list[Problem], BuildError | None]:
    """The hypervisor (--define, --install): the connection, or the input problem with
    --connect, or the failure to reach it (reported after the input problems)."""
    if not options.acting:
        return None, [], None
    from builder.vm import virt  # libvirt: only a build that acts on a hypervisor

    try:
        return virt.connect(options.connect), [], None
    except InputError as error:
        return None, list(error.problems), None
    except BuildError as error:
        return None, [], error


def _hypervisor_problems(
    conn: virt.Connection,
    options: BuildOptions,
    *,
    profile: Profile,
    config: BuildConfig,
    out: Path,
    name: str,
    failed: frozenset[str],
    volumes: tuple[str, ...] = (),
    replaceable: frozenset[str] = frozenset(),
    remote_host: bool = False,
) -> tuple[str, Mapping[str, int], domain.DiskPaths | None, list[Problem]]:
    """The domain type, the x86-64 level of the CPU models, the disks' paths and what the
    hypervisor would refuse: a machine it cannot run (UEFI without OVMF, a TPM without
    swtpm, a CPU model below the release's level), an existing (or running, for
    --replace without --force) domain, a missing network or pool, existing disks,
    existing media `volumes` of a remote build (with --replace only those in
    `replaceable`). Each check runs unless the setting it reads is wrong. A remote
    build's disks are named by their volumes."""
    from builder.vm import virt  # libvirt: only a build that acts on a hypervisor

    found: list[Problem] = []
    domain_type = options.domain_type or "kvm"
    if "--domain-type" not in failed:
        arch = domain.GUEST_ARCH[profile.arch]
        try:
            domain_type = virt.choose_domain_type(conn, options.domain_type, arch=arch)
        except InputError as error:
            found += error.problems
        except BuildError as error:  # no guests there at all: said with the input's problems
            found.append(Problem("--connect", error.message, error.hint))
    cpu_levels: Mapping[str, int] = dict(CPU_LEVELS)
    if not failed & MACHINE_KEYS:
        try:
            cpu_levels = virt.check_machine(
                conn, config, domain_type=domain_type, arch=domain.GUEST_ARCH[profile.arch]
            )
        except InputError as error:
            found += error.problems
    disks = None
    if not failed & {"storage_pool", "data_disks"}:
        try:
            disks = virt.disk_paths(conn, config, out, name)
        except InputError as error:
            found += error.problems
        if disks is not None and remote_host:
            system, data = domain.disk_file_names(config, name)
            disks = Path(system), tuple(Path(d) for d in data)
    pool_failed = "storage_pool" in failed or any(p.key == "storage_pool" for p in found)
    found += virt.define_problems(
        conn,
        None if "--name" in failed else name,
        replace=options.replace,
        force=options.force,
        network=None if "network" in failed else config.network,
        pool=None if pool_failed else config.storage_pool,
        disks=disks,
        volumes=volumes,
        replaceable=replaceable,
    )
    return domain_type, cpu_levels, disks, found


def media_volumes(profile: Profile, windows_iso: Path | None, name: str) -> tuple[str, ...]:
    """The volumes a remote build of `name` uploads its media into, in the media
    table's order and the order they are uploaded in: the user's Windows ISO when the
    build attaches it, or right before the overlay it backs."""
    found: list[str] = []
    for medium in media_for(profile, windows_iso):
        if windows_iso is not None and (medium.builder is None or medium.backed_by_windows_iso):
            found.append(remote.media_volume_name(name, medium.name, written=False))
        if medium.builder is not None:
            found.append(remote.media_volume_name(name, medium.name, written=True))
    return tuple(found)


def _remote_problems(options: BuildOptions, config: BuildConfig) -> tuple[bool, list[Problem]]:
    """Whether the build acts on a remote host, and the setting it then needs."""
    if not options.acting or not remote.is_remote(options.connect, config.remote):
        return False, []
    if config.storage_pool is not None:
        return True, []
    return True, [
        Problem(
            "storage_pool",
            f"a build on the remote host of {options.connect} needs a storage pool there: "
            "its media and disks are uploaded into it as volumes, since the host cannot "
            "read this machine's files.",
            f"Set storage_pool to a pool of that host (virsh -c {options.connect} "
            "pool-list --all), e.g. --set storage_pool=default.",
        ),
    ]


def recorded_volumes(manifest: Mapping[str, object] | None, pool: str | None) -> frozenset[str]:
    """The volumes of `pool` that the build of `manifest` (OUT's current one) made:
    its media volumes and its template volume (`export = "pool"`). A --replace may
    delete those, and no others."""
    found: set[str] = set()
    record = (manifest or {}).get("domain")
    volumes = record.get("volumes") if isinstance(record, dict) else None
    if isinstance(volumes, dict) and volumes.get("pool") == pool:
        media = volumes.get("media")
        if isinstance(media, list):
            found.update(v for v in media if isinstance(v, str))
    template = (manifest or {}).get("template")
    if isinstance(template, dict) and template.get("pool") == pool:
        volume = template.get("volume")
        if isinstance(volume, str):
            found.add(volume)
    return frozenset(found)


def template_volume(options: BuildOptions, config: BuildConfig, name: str) -> str | None:
    """The volume an install with `export = "pool"` leaves its template in (None: the
    build leaves none)."""
    if options.install and config.export == "pool" and config.storage_pool is not None:
        return remote.template_volume_name(name)
    return None


@dataclass(frozen=True)
class _RemoteInputs:
    """A build's remote host, as prepare sees it: whether there is one, what it needs,
    the volumes the build makes in its pool (a remote build's media, the template of
    `export = "pool"`), and which of them an earlier build into OUT made."""

    remote: bool
    problems: list[Problem]
    volumes: tuple[str, ...]
    replaceable: frozenset[str]


def _remote_inputs(
    options: BuildOptions, config: BuildConfig, profile: Profile, name: str, out_dir: Path
) -> _RemoteInputs:
    is_remote, problems = _remote_problems(options, config)
    template = template_volume(options, config, name)
    volumes = media_volumes(profile, options.windows_iso, name) if is_remote else ()
    volumes += (template,) if template else ()
    if not volumes:
        return _RemoteInputs(is_remote, problems, (), frozenset())
    previous = OutputDir(out_dir).current_manifest()  # read again under the lock
    return _RemoteInputs(
        is_remote, problems, volumes, recorded_volumes(previous, config.storage_pool)
    )


def pool_volumes(ctx: Context) -> tuple[str, ...]:
    """The volumes the build makes in its storage pool besides its disks: a remote
    build's media, and the template volume of `export = "pool"`."""
    media = media_volumes(ctx.profile, ctx.windows_iso, ctx.name) if ctx.remote else ()
    template = template_volume(ctx.options, ctx.config, ctx.name)
    return media + ((template,) if template else ())


def _say_image(config: BuildConfig, monitor: Monitor) -> None:
    if config.image is not None:
        monitor.info(
            f"install image {config.image.index}: {config.image.name} "
            f"({config.image.edition_id}, {config.image.installation_type}, "
            f"{config.image.language})"
        )


def _say_drivers(drivers: DriverSet, monitor: Monitor) -> None:
    for driver in drivers.selected:
        signed = driver.signatures
        by = f", {signed.primary.digest} by {signed.primary.signer.display_name}" if signed else ""
        monitor.info(f"{driver.name}: {driver.inf_path} ({driver.driver_ver}{by})")


def _open_source(path: Path, problems: list[Problem]) -> DriverSource | None:
    """The driver source at `path`, or None with its problems added to `problems`."""
    try:
        return open_source(path)
    except InputError as error:
        problems += error.problems
        return None


def _select(
    source: DriverSource,
    profile: Profile,
    facts: DriverFacts,
    config: BuildConfig,
    problems: list[Problem],
) -> DriverSet | None:
    """The drivers for the build, their signatures applied (None, with the problems
    added to `problems`, when they cannot be chosen)."""
    try:
        drivers = select_drivers(
            scan_source(source, facts),
            profile,
            facts,
            wanted=config.drivers,
            storage_bus=config.storage_bus,
        )
        return apply_signatures(
            drivers, read_catalogs(source, drivers), sha2_media=config.sha2_media
        )
    except InputError as error:
        problems += error.problems
        return None


def prepare(options: BuildOptions, environ: Mapping[str, str], monitor: Monitor) -> Context:
    """Resolve and validate every input and select the drivers, in one pass: InputError
    lists every problem found. The returned context holds the driver source (and, with
    --define or --install, the hypervisor connection) open: close it."""
    profile, media, media_problems = _read_media(options, monitor)
    name = options.name or default_name(profile)
    out_dir = (options.out or default_out(name)).absolute()
    path, problems = _locate_source(options, environ)
    config, setting_problems = validate_config(
        profile, config_file=options.config_file, sets=options.sets, environ=environ, media=media
    )
    hosted = _remote_inputs(options, config, profile, name, out_dir)
    problems = [
        *setting_problems,
        *media_problems,
        *problems,
        *_option_problems(options, profile, out_dir),
        *hosted.problems,
    ]
    _say_image(config, monitor)
    epoch, epoch_problems = _epoch(environ)
    problems += epoch_problems
    source: DriverSource | None = None
    drivers: DriverSet | None = None
    facts = load_driver_facts()
    conn: virt.Connection | None = None
    try:
        if path is not None:
            monitor.step("select drivers", f"for {profile.name} from {path}")
            source = _open_source(path, problems)
        if source is not None:
            drivers = _select(source, profile, facts, config, problems)
        failed = failed_keys(problems)
        if drivers is not None:
            problems += _device_problems(config, drivers, facts, failed)
        conn, connect_problems, unreachable = _connect(options)
        problems += connect_problems
        domain_type, disks = options.domain_type or "kvm", None
        cpu_levels: Mapping[str, int] = dict(CPU_LEVELS)
        if conn is not None:
            monitor.step("check hypervisor", conn.uri)
            domain_type, cpu_levels, disks, found = _hypervisor_problems(
                conn,
                options,
                profile=profile,
                config=config,
                out=out_dir,
                name=name,
                failed=failed | frozenset(p.key for p in hosted.problems),
                volumes=hosted.volumes,
                replaceable=hosted.replaceable,
                remote_host=hosted.remote,
            )
            problems += found
        problems += _cpu_problems(config, domain_type, cpu_levels, failed)
        if problems:
            if unreachable is not None:
                problems.append(Problem("--connect", unreachable.message, unreachable.hint))
            raise InputError.collect(problems)
        if unreachable is not None:
            raise unreachable
        if source is None or drivers is None:
            raise BuildError("the drivers were not selected, yet no problem was found.")
    except BaseException:
        if source is not None:
            source.close()
        if conn is not None:
            conn.close()
        raise
    _say_drivers(drivers, monitor)
    warnings = [
        *config.warnings,
        *drivers.warnings,
        *_media_warnings(options, profile),
    ]
    for warning in warnings:
        monitor.warning(warning)
    return Context(
        options=options,
        profile=profile,
        config=config,
        out_dir=out_dir,
        name=name,
        epoch=epoch,
        source=source,
        drivers=drivers,
        facts=facts,
        windows_iso=options.windows_iso.absolute() if options.windows_iso else None,
        media=media,
        conn=conn,
        domain_type=domain_type,
        cpu_levels=cpu_levels,
        disks=disks,
        remote=hosted.remote,
        replaceable_volumes=hosted.replaceable,
        warnings=warnings,
    )


# Why a build whose profile remasters the install CD is not hands-off without it.
NO_CD_TO_REMASTER = (
    "without --windows-iso there is no install CD to remaster: setup from the original "
    "{title} CD sees the virtio disk only after F6 is pressed with floppy.img as the F6 "
    "disk, so the install is not hands-off. Give the install CD with --windows-iso "
    "(pvinstall remasters it into install.iso) for an unattended install."
)


def _media_warnings(options: BuildOptions, profile: Profile) -> list[str]:
    if profile.remasters_install_cd and options.windows_iso is None:
        return [NO_CD_TO_REMASTER.format(title=profile.title)]
    return []


def next_step(options: BuildOptions, profile: Profile, out_dir: Path) -> str | None:
    """What to run next after a build that wrote media only, in a sentence."""
    if options.acting:
        return None
    if profile.remasters_install_cd and options.windows_iso is None:
        return (
            "for a hands-off install, run the same command with --windows-iso CD.iso "
            "--install: the CD is remastered so that setup needs no F6."
        )
    iso = "" if options.windows_iso else " --windows-iso ISO"
    return (
        f"to install, run the same command with{iso} --install (or define "
        f"{out_dir / DOMAIN_XML} with virsh)."
    )


# -- pure steps ------------------------------------------------------------------------------


def plan_build(ctx: Context, monitor: Monitor) -> BuildPlan:
    """Render the answer files, plan the media (the floppy must fit) and check what a
    medium's writer will read (a 2003 CD against its remaster), before anything is
    written."""
    monitor.step("render answer files", ", ".join(ctx.profile.answer_files))
    answers = render_answer_files(ctx.config, ctx.drivers)
    postinstall = render_postinstall(ctx.config, ctx.drivers)
    sysprep = render_sysprep(ctx.config, ctx.drivers)
    tools = _sysprep_tools(ctx, monitor)
    monitor.step("plan media")
    inputs = MediaInputs(
        ctx.config,
        ctx.drivers,
        answers,
        postinstall,
        ctx.media,
        sysprep=sysprep,
        sysprep_tools=tools,
    )
    media = plan_media(inputs, ctx.windows_iso)
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
    plan = BuildPlan(answers, postinstall, media, digests, identity, sysprep)
    for planned in media.planned:
        note = planned.builder.check(planned.plan, _write_inputs(ctx, plan))
        if note:
            monitor.info(note)
    return plan


def _sysprep_tools(ctx: Context, monitor: Monitor) -> dict[str, bytes]:
    """Sysprep out of the install CD's cabinet, for a generalized build of a release
    that has no Sysprep installed (2003) and a CD to remaster: read in place."""
    sysprep = ctx.profile.sysprep
    if not ctx.config.generalize or sysprep.tools_cabinet is None or ctx.windows_iso is None:
        return {}
    monitor.step("read Sysprep", f"{sysprep.tools_cabinet.replace('/', chr(92))} of the CD")
    found = cabinet.sysprep_tools(ctx.windows_iso, ctx.profile)
    monitor.info(", ".join(f"{name} ({len(data)} bytes)" for name, data in found.items()))
    return found


def _write_inputs(ctx: Context, plan: BuildPlan) -> WriteInputs:
    return WriteInputs(ctx.source, ctx.epoch, volume_serial(plan.build_id), ctx.windows_iso)


def media_paths(ctx: Context, plan: BuildPlan) -> domain.MediaPaths:
    """Where the domain finds its media and disks: absolute paths, or on a remote host
    the volumes of the storage pool (and a serial console read over the connection)."""
    if ctx.remote:
        system_volume, data_volumes = domain.disk_file_names(ctx.config, ctx.name)
        return domain.MediaPaths(
            media=_attached(ctx, plan),
            system_disk=Path(system_volume),
            data_disks=tuple(Path(d) for d in data_volumes),
            serial_log=None,
            pool=ctx.config.storage_pool,
        )
    system, data = ctx.disks or domain.default_disk_paths(ctx.config, ctx.out_dir, ctx.name)
    return domain.MediaPaths(
        media=plan.media.attached(ctx.out_dir, ctx.windows_iso),
        system_disk=system,
        data_disks=data,
        serial_log=ctx.out_dir / SERIAL_LOG,
    )


def _as_volume(ctx: Context, plan: BuildPlan, medium: AttachedMedium) -> AttachedMedium:
    """A medium of a remote build: its path is the name of its volume."""
    if medium.path is None:
        return medium
    written = plan.media.get(medium.name) is not None
    volume = remote.media_volume_name(ctx.name, medium.name, written=written)
    return dataclasses_replace(medium, path=Path(volume))


def _attached(ctx: Context, plan: BuildPlan) -> tuple[AttachedMedium, ...]:
    """The domain's media: files in OUT, or a remote build's volumes."""
    media = plan.media.attached(ctx.out_dir, ctx.windows_iso)
    return tuple(_as_volume(ctx, plan, m) for m in media) if ctx.remote else media


def _install_media(ctx: Context, plan: BuildPlan) -> tuple[AttachedMedium, ...]:
    """The media the install takes out of the domain, as the domain names them."""
    media = plan.media.removed_after_install(ctx.out_dir, ctx.windows_iso)
    return tuple(_as_volume(ctx, plan, m) for m in media) if ctx.remote else media


def uploads(ctx: Context, plan: BuildPlan) -> tuple[remote.Upload, ...]:
    """What a remote build uploads: each medium of the domain (read through OUT's
    names, so from the committed build), as the volume the domain names; an overlay
    of the user's ISO after the ISO itself, which it is rebased onto."""
    local = plan.media.attached(ctx.out_dir, ctx.windows_iso)
    found: list[remote.Upload] = []
    for m, v in zip(local, _attached(ctx, plan), strict=True):
        if m.path is None or v.path is None:
            continue
        backing = None
        planned = plan.media.get(m.name)
        if planned is not None and planned.medium.backed_by_windows_iso and ctx.windows_iso:
            backing = remote.media_volume_name(ctx.name, m.name, written=False)
            found.append(remote.Upload(medium="Windows ISO", path=ctx.windows_iso, volume=backing))
        found.append(
            remote.Upload(
                medium=m.name,
                path=m.path,
                volume=str(v.path),
                format=m.image_format,
                backing=backing,
            )
        )
    return tuple(found)


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


def output_names(ctx: Context, plan: BuildPlan) -> list[str]:
    """Every file the build puts into OUT, in the order it is written (the manifest last)."""
    names = sorted(plan.rendered)
    names += [planned.medium.name for planned in plan.media.planned]
    return [*names, DOMAIN_XML, MANIFEST]


def secret_outputs(ctx: Context, plan: BuildPlan) -> frozenset[str]:
    """The outputs that hold or carry a secret: the answer files that hold one, and
    every medium of the media table that carries them (mode 0600, keyed digests)."""
    media = {p.medium.name for p in plan.media.planned if p.medium.secret}
    return frozenset(ctx.profile.secret_answer_files) | frozenset(plan.sysprep) | media


def expected_size(ctx: Context, plan: BuildPlan) -> int:
    """About how much room the build takes in OUT (for the sentence of a full disk)."""
    inputs = _write_inputs(ctx, plan)
    size = sum(len(data) for data in plan.rendered.values()) + len(ctx.domain_xml) + 64 * 1024
    return size + sum(p.builder.estimated_size(p.plan, inputs) for p in plan.media.planned)


# -- the I/O edge ----------------------------------------------------------------------------


def write_outputs(
    ctx: Context, plan: BuildPlan, gen: Generation, key: bytes, monitor: Monitor
) -> None:
    """Write every output into the new generation: the answer files, each medium of the
    media table that applies, the domain XML. What holds a secret (the answer files and
    every medium that carries them) is created with mode 0600 and gets a digest keyed
    with `key`. Every digest is taken from the bytes as they are written."""
    secret = secret_outputs(ctx, plan)

    def write_bytes(name: str, data: bytes) -> None:
        monitor.step("write", name)
        gen.write(name, data, secret=name in secret)
        digest = bytes_digest(data, key if name in secret else None)
        ctx.output_facts[name] = (len(data), digest, None)
        ctx.written.append(name)

    for name, data in sorted(plan.rendered.items()):
        write_bytes(name, data)
    inputs = _write_inputs(ctx, plan)
    for planned in plan.media.planned:
        medium = planned.medium
        monitor.step("write", f"{medium.name} ({medium.title})")
        is_secret = medium.name in secret
        fd = gen.create(medium.name, secret=is_secret)
        with HashingWriter(fd, gen.path / medium.name, key if is_secret else None) as target:
            try:
                written = planned.builder.write(planned.plan, cast(IO[bytes], target), inputs)
            except OSError as error:
                raise gen.out.error(medium.name, error) from None
            files = _medium_files(ctx, plan, medium.name, written, key)
            ctx.output_facts[medium.name] = (target.size, target.digest(), files)
        ctx.input_sha256.update(written.input_sha256)
        ctx.written.append(medium.name)
    write_bytes(DOMAIN_XML, ctx.domain_xml.encode("utf-8"))


def replace_and_define(
    ctx: Context, plan: BuildPlan, conn: virt.Connection, monitor: Monitor
) -> None:
    """Take an old domain of the name away (--replace: refused while it runs, unless
    --force), then create the disks, then define the domain. The disks are touched only
    once nothing uses them; the ones created here go again when the definition is
    refused."""
    from builder.vm import transfer, virt  # libvirt: only a build that acts on a hypervisor

    if ctx.options.replace:
        monitor.step("replace", f"{ctx.name} on {conn.uri}")
        virt.replace_domain(conn, ctx.name, force=ctx.options.force)
    uploaded = _upload_media(ctx, plan, conn, monitor) if ctx.remote else ()
    try:
        monitor.step("define", f"{ctx.name} on {conn.uri}")
        disks = virt.create_disks(
            conn, ctx.config, ctx.out_dir, ctx.name, monitor, replace=ctx.options.replace
        )
        ctx.domain_record.update(disks=[str(p) for p in (disks[0], *disks[1])])
        try:
            virt.define(conn, ctx.domain_xml, replace=False)
        except BaseException:
            if ctx.config.storage_pool is None:
                for path in (disks[0], *disks[1]):
                    path.unlink(missing_ok=True)
            ctx.domain_record.pop("disks", None)
            raise
    except BaseException:
        if uploaded and ctx.config.storage_pool is not None:
            transfer.delete_all(conn, ctx.config.storage_pool, uploaded, monitor, quiet=True)
            ctx.domain_record.pop("volumes", None)
        raise
    ctx.domain_record.update(defined=True, uri=conn.uri)


def _upload_media(
    ctx: Context, plan: BuildPlan, conn: virt.Connection, monitor: Monitor
) -> tuple[str, ...]:
    """Upload the media of a remote build into its pool. With --replace the volumes the
    previous build into this OUT made go first (the domain that used them is gone);
    others of the same names were refused before anything was written."""
    from builder.vm import transfer  # libvirt: only a build that acts on a hypervisor

    pool = ctx.config.storage_pool
    if pool is None:
        raise BuildError("a remote build got as far as its uploads without a storage pool.")
    wanted = uploads(ctx, plan)
    if ctx.options.replace:
        old = [u.volume for u in wanted if u.volume in ctx.replaceable_volumes]
        transfer.delete_all(conn, pool, old, monitor)
    done = transfer.upload_all(conn, pool, wanted, monitor)
    ctx.domain_record["volumes"] = {"pool": pool, "media": list(done), "deleted": False}
    return done


def install_domain(ctx: Context, plan: BuildPlan, conn: virt.Connection, monitor: Monitor) -> None:
    """Start setup and wait for the guest to power off; then the domain is a template."""
    from builder.vm import transfer, virt  # libvirt: only a build that acts on a hypervisor

    minutes = ctx.timeout_minutes
    monitor.step("install", f"waiting up to {minutes:g} minutes for setup to power the guest off")
    result = virt.install(
        conn,
        ctx.name,
        media=_install_media(ctx, plan),
        timeout_minutes=minutes,
        out_dir=ctx.out_dir,
        monitor=monitor,
        console_log=ctx.out_dir / SERIAL_LOG if ctx.remote else None,
    )
    record = result.as_json()
    # The template's XML is libvirt's to keep (and template.xml's), not the manifest's.
    ctx.final_xml = record.pop("final_xml")
    ctx.domain_record.update(installed=True, **record)
    volumes = ctx.domain_record.get("volumes")
    if ctx.remote and isinstance(volumes, dict) and ctx.config.storage_pool is not None:
        # The template no longer refers to them (the install took them out).
        monitor.step("delete media volumes", ", ".join(volumes["media"]))
        transfer.delete_all(conn, ctx.config.storage_pool, volumes["media"], monitor)
        volumes["deleted"] = True
    monitor.info(
        f"installed in {format_elapsed(result.seconds)}; removed "
        f"{', '.join(result.removed_media) or 'no media'} from {ctx.name}"
    )


def _medium_files(
    ctx: Context, plan: BuildPlan, name: str, written: WrittenMedium, key: bytes
) -> list[dict[str, Any]]:
    """What pvinstall put on the medium `name`; the answer files on it get keyed
    digests, the files its writer made (the patched TXTSETUP.SIF) the digest of the
    bytes it wrote."""
    planned = plan.media.get(name)
    if planned is None:
        raise BuildError(f"{name} is not a medium of this build.")
    secret = [plan.answers[n] for n in ctx.profile.secret_answer_files if n in plan.answers]
    secret += plan.sysprep.values()
    files = manifest_mod.planned_files_json(
        planned.builder.files(planned.plan), plan.digests, secrets=secret, key=key
    )
    files += [{"path": f.path, "size": f.size, "sha256": f.sha256} for f in written.files]
    return sorted(files, key=lambda f: str(f["path"]).lower())


def input_records(ctx: Context, plan: BuildPlan, key: bytes) -> list[manifest_mod.InputRecord]:
    """The inputs as the manifest lists them. An image read in place is known by its
    identity (and the digests of the files used from it); the 2003 CD has the sha256
    taken while it was remastered; --hash-inputs reads every image whole for its own."""
    hash_inputs = ctx.options.hash_inputs
    records = [
        manifest_mod.source_record(ctx.source, ctx.drivers, plan.digests, hash_inputs=hash_inputs)
    ]
    if ctx.windows_iso is not None:
        sha256 = ctx.input_sha256.get(WINDOWS_ISO_INPUT)
        if sha256 is None and hash_inputs:
            sha256 = file_digest(ctx.windows_iso)["sha256"]
        info = iso9660.read_volume_info(ctx.windows_iso)
        records.append(
            manifest_mod.image_record(
                WINDOWS_ISO_INPUT,
                ctx.windows_iso,
                "iso",
                info.label if info else "",
                sha256=sha256,
            )
        )
    if ctx.options.config_file is not None:
        # A settings file may hold the password (and is never proven not to): keyed.
        config_file = ctx.options.config_file.absolute()
        records.append(manifest_mod.file_record("config", config_file, "toml", key=key))
    return records


def manifest_document(
    ctx: Context, plan: BuildPlan, key: bytes, monitor: Monitor
) -> dict[str, Any]:
    """The manifest of the outputs written (named as they will be in OUT), from what
    their writers saw: nothing is read back. Secret outputs and the --config file get
    keyed digests."""
    monitor.step("write", MANIFEST)
    outputs = []
    for name in ctx.written:
        size, digest, files = ctx.output_facts[name]
        outputs.append(manifest_mod.output_record(name, ctx.out_dir / name, size, digest, files))
    return manifest_mod.build_manifest(
        config=ctx.config,
        build_id=plan.build_id,
        epoch=ctx.epoch,
        inputs=input_records(ctx, plan, key),
        drivers=manifest_mod.drivers_json(ctx.drivers, plan.digests),
        outputs=outputs,
        domain=ctx.domain_record,
        warnings=ctx.warnings,
        install_image=image_json(ctx.config.image) if ctx.config.image else None,
    )


def _sysprep_failed(ctx: Context) -> bool:
    """Whether the guest said on its serial port that Sysprep failed (the post-install
    script's `SYSPREP_FAILED_LINE`), in the last 64 KiB of serial.log."""
    try:
        with (ctx.out_dir / SERIAL_LOG).open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(handle.tell() - 65536, 0))
            return SYSPREP_FAILED_LINE.encode() in handle.read()
    except OSError:
        return False


def check_generalized(ctx: Context) -> None:
    """BuildError when the build was to be generalized and the guest said Sysprep failed:
    that disk is no template to clone."""
    if ctx.config.generalize and _sysprep_failed(ctx):
        raise BuildError(
            f"Sysprep failed in {ctx.name}: the guest powered off without being generalized, "
            "so no template was exported.",
            "Its log is C:\\pvinstall-postinst.log on the system disk (and Sysprep's own in "
            "%WINDIR%\\System32\\sysprep\\Panther); build with generalize = false for a "
            "template that is not generalized.",
        )


def export_template(
    ctx: Context,
    conn: virt.Connection,
    out: OutputDir,
    document: dict[str, Any],
    monitor: Monitor,
) -> None:
    """Write the template disk (compressed qcow2, or sparse raw; with `export = "pool"`
    a compressed qcow2 volume of the storage pool) and template.xml from the
    powered-off domain, and commit them with the manifest in a new generation of OUT
    (the build's other files are hard-linked into it, nothing copied twice)."""
    from builder.vm import transfer, virt  # libvirt: only a build that acts on a hypervisor

    disks = ctx.domain_record.get("disks") or []
    to_pool = template_volume(ctx.options, ctx.config, ctx.name)
    name = to_pool or TEMPLATE_DISKS.get(ctx.config.export)
    if name is None or not disks:
        return
    source = Path(disks[0])
    image_format = "qcow2" if to_pool else ctx.config.export
    shown_target = f"{ctx.config.storage_pool}/{name}" if to_pool else name
    monitor.step("export", f"{source} -> {shown_target} ({image_format})")
    uploaded: str | None = None
    try:
        with out.successor() as gen:
            # The pool's template is written into OUT's new generation first (hidden,
            # never committed), uploaded, and removed again.
            target = gen.path / (f".{name}.staging" if to_pool else name)
            try:
                _convert_system_disk(
                    ctx, conn, gen, source, target, image_format=image_format, monitor=monitor
                )
                info = disk_images.image_info(target, image_format)
                # qemu-img wrote the disk: its digest is one read of what it wrote (the
                # template keeps a plain sha256, docs/design.md §6).
                size, digest = target.stat().st_size, file_digest(target)
                if to_pool:
                    uploaded = _upload_template(ctx, conn, target, to_pool, monitor)
            finally:
                if to_pool:
                    target.unlink(missing_ok=True)
            made = _ExportedDisk(info.format, info.virtual_size, size, digest["sha256"])
            _record_template(ctx, gen, document, name=name, to_pool=bool(to_pool), made=made)
            document["template"]["exported_from"] = str(source)
            if ctx.options.export_only:
                _remove_after_export(ctx, conn, disks, monitor)
            document["domain"] = dict(ctx.domain_record)
            gen.write(MANIFEST, manifest_mod.manifest_bytes(document), secret=True)
            out.commit(gen)
    except BaseException:
        # No template volume that OUT's manifest does not name.
        if uploaded is not None and ctx.config.storage_pool is not None:
            with interrupts.deferred():
                transfer.delete_all(conn, ctx.config.storage_pool, [uploaded], monitor, quiet=True)
        raise
    monitor.info(
        f"template {shown_target}: {virt.format_size(size)} "
        f"({'generalized' if ctx.config.generalize else 'NOT generalized'})"
    )


@dataclass(frozen=True)
class _ExportedDisk:
    """The template disk as qemu-img wrote it: its format and virtual size (qemu-img
    info), its size and the sha256 of its bytes (one read)."""

    format: str
    virtual_size: int
    size: int
    sha256: str


def _record_template(
    ctx: Context,
    gen: Generation,
    document: dict[str, Any],
    *,
    name: str,
    to_pool: bool,
    made: _ExportedDisk,
) -> None:
    """Write template.xml into the new generation and put the template into the
    manifest `document`: its disk among the outputs (a pool's volume is none), its
    `template` record."""
    outputs = [
        o
        for o in document["outputs"]
        if o.get("name") not in (*TEMPLATE_DISKS.values(), TEMPLATE_XML)
    ]
    place: existing.DiskSource = ctx.out_dir / name
    where: dict[str, Any] = {"disk": name}
    if to_pool and ctx.config.storage_pool is not None:
        place = existing.PoolVolume(ctx.config.storage_pool, name)
        where = {"pool": ctx.config.storage_pool, "volume": name}
    else:
        gen.names.append(name)
        digest = {"sha256": made.sha256}
        outputs.append(manifest_mod.output_record(name, ctx.out_dir / name, made.size, digest))
    xml_bytes = existing.template_xml(ctx.final_xml, place, made.format).encode("utf-8")
    gen.write(TEMPLATE_XML, xml_bytes)
    outputs.append(
        manifest_mod.output_record(
            TEMPLATE_XML, ctx.out_dir / TEMPLATE_XML, len(xml_bytes), bytes_digest(xml_bytes)
        )
    )
    document["outputs"] = outputs
    document["template"] = {
        **where,
        "format": made.format,
        "size": made.size,
        "virtual_size": made.virtual_size,
        "sha256": made.sha256,
        "generalized": ctx.config.generalize,
        "xml": TEMPLATE_XML,
        "data_disks": list(ctx.config.data_disks),
    }


def _remove_after_export(
    ctx: Context, conn: virt.Connection, disks: list[str], monitor: Monitor
) -> None:
    """--export-only: the build's domain and its disks go once the template is made."""
    from builder.vm import virt  # libvirt: only a build that acts on a hypervisor

    monitor.step("remove", f"{ctx.name} and its disks (--export-only)")
    virt.remove_domain(conn, ctx.name)
    virt.remove_disks(conn, ctx.config.storage_pool, [Path(d) for d in disks])
    ctx.domain_record.update(defined=False, removed=True)
    ctx.domain_record.pop("disks", None)


def _convert_system_disk(
    ctx: Context,
    conn: virt.Connection,
    gen: Generation,
    source: Path,
    target: Path,
    *,
    image_format: str,
    monitor: Monitor,
) -> None:
    """`qemu-img convert` the system disk into `target` (compressed for qcow2). A remote
    host's file is out of reach: its volume comes down first (sparse), into the new
    generation, and goes once the template is written."""
    from builder.vm import transfer  # libvirt: only a build that acts on a hypervisor

    shown = [-10.0]

    def progress(percent: float) -> None:
        if percent >= shown[0] + 10 or percent >= 100 > shown[0]:
            shown[0] = percent
            monitor.info(f"export {target.name}: {percent:.0f}%")

    local = source
    if ctx.remote and ctx.config.storage_pool is not None:
        local = gen.path / f".{source.name}.download"
        transfer.download(conn, ctx.config.storage_pool, source.name, local, monitor)
    try:
        gen.out.expected_size = local.stat().st_size
        disk_images.convert(
            local,
            "qcow2",
            target,
            image_format,
            compress=image_format == "qcow2",
            on_progress=progress,
        )
    finally:
        if local != source:
            local.unlink(missing_ok=True)


def _upload_template(
    ctx: Context, conn: virt.Connection, staged: Path, volume: str, monitor: Monitor
) -> str:
    """Upload the compressed template into the storage pool as `volume` (the pool's
    room checked first, no partial volume on a failure). With --replace, the template
    volume OUT's previous build made goes first; any other of that name was refused
    before anything was written."""
    from builder.vm import transfer  # libvirt: only a build that acts on a hypervisor

    pool = ctx.config.storage_pool
    if pool is None:
        raise BuildError("the template was to go into a pool, and the build has none.")
    if ctx.options.replace and volume in ctx.replaceable_volumes:
        transfer.delete_all(conn, pool, [volume], monitor)
    upload = remote.Upload(medium="template", path=staged, volume=volume, format="qcow2")
    transfer.upload_all(conn, pool, [upload], monitor)
    return volume


def record_failure(record: dict[str, Any], error: PvError) -> None:
    """Put every problem of a failed step into the manifest's domain record: `error` as
    the user saw it, `problems` one by one with their keys and hints."""
    record["error"] = str(error)
    record["problems"] = [p.as_json() for p in error.problems]


def record_interruption(record: dict[str, Any], stop: KeyboardInterrupt) -> None:
    """An interrupted define or install in the manifest's domain record."""
    signum = stop.signum if isinstance(stop, interrupts.Interrupted) else signal.SIGINT
    record["interrupted"] = signal.Signals(signum).name
    record["error"] = f"interrupted ({signal.Signals(signum).name})"


def _kept_logs(ctx: Context) -> list[str]:
    return [n for n in INSTALL_LOGS if (ctx.out_dir / n).is_file()]


def _stale_logs(out: OutputDir) -> list[str]:
    """What the previous build's failed install kept in OUT (its manifest names them)."""
    previous = out.current_manifest() or {}
    record = previous.get("domain")
    logs = record.get("logs", []) if isinstance(record, dict) else []
    return [n for n in INSTALL_LOGS if isinstance(logs, list) and n in logs]


# -- the build cache ------------------------------------------------------------------------


def _cache_profile(options: BuildOptions) -> Profile | None:
    """The profile of the build, for the cache: the one named, or the one the Windows
    ISO is for (None: it cannot be told; the build says why)."""
    if options.profile is not None:
        return cache.named_profile(options)
    try:
        if options.windows_iso is not None:
            media = iso9660.read_install_media(options.windows_iso)
            return profile_from_media(media, options.arch)
    except InputError:
        return None
    return None


# -- the script ------------------------------------------------------------------------------


def _act(
    ctx: Context,
    plan: BuildPlan,
    *,
    conn: virt.Connection,
    out: OutputDir,
    document: dict[str, Any],
    monitor: Monitor,
) -> None:
    """Define (and install) the committed build, updating its manifest after each step,
    and after a failure or an interruption with what happened."""

    def save() -> None:
        document["domain"] = dict(ctx.domain_record)
        out.replace_current(MANIFEST, manifest_mod.manifest_bytes(document), secret=True)

    try:
        replace_and_define(ctx, plan, conn, monitor)
        if ctx.options.install:
            save()  # the domain is defined: say so before the long wait
            install_domain(ctx, plan, conn, monitor)
            check_generalized(ctx)
            save()
            export_template(ctx, conn, out, document, monitor)
    except PvError as error:
        record_failure(ctx.domain_record, error)
        if logs := _kept_logs(ctx):
            ctx.domain_record["logs"] = logs
        with interrupts.deferred():
            save()
        raise
    except KeyboardInterrupt as stop:
        record_interruption(ctx.domain_record, stop)
        with interrupts.deferred():
            save()
        raise
    save()


def run_build(
    options: BuildOptions,
    monitor: Monitor,
    environ: Mapping[str, str] | None = None,
    *,
    looked_up: cache.Lookup | None = None,
) -> BuildResult:
    """Run the whole build (validate → select → render → media → domain XML → commit →
    define → install). InputError before anything is written; BuildError when writing,
    defining or installing fails (after the commit, the manifest records how far it
    got). `looked_up`: what the caller found in the cache (a miss) before this module
    was loaded; otherwise the cache is looked at here."""
    environ = dict(os.environ if environ is None else environ)
    if looked_up is None:
        looked_up = cache.look_up(options, environ, monitor, lambda: _cache_profile(options))
    if looked_up.result is not None:
        return looked_up.result
    material = looked_up.material
    ctx = prepare(options, environ, monitor)
    with contextlib.closing(ctx):
        plan = plan_build(ctx, monitor)
        make_domain_xml(ctx, plan, monitor)
        ctx.domain_record = {
            "name": ctx.name,
            "type": ctx.domain_type,
            "xml": DOMAIN_XML,
            "defined": False,
            "installed": False,
        }
        with OutputDir(ctx.out_dir) as out:
            out.check_names(output_names(ctx, plan))
            volumes = pool_volumes(ctx)
            if volumes:
                # Under the lock: the volumes OUT's build made, which --replace may replace.
                ctx.replaceable_volumes = recorded_volumes(
                    out.current_manifest(), ctx.config.storage_pool
                )
            if ctx.conn is not None and ctx.disks is not None and not options.replace:
                from builder.vm import virt  # libvirt: only a build that acts on a hypervisor

                # Again under the lock: another run may have made them meanwhile.
                virt.check_can_define(
                    ctx.conn,
                    ctx.name,
                    replace=False,
                    network="user",
                    pool=ctx.config.storage_pool,
                    disks=ctx.disks,
                    volumes=volumes,
                )
            out.expected_size = expected_size(ctx, plan)
            stale = _stale_logs(out)
            with out.generation() as gen:
                key = out.digest_key()
                write_outputs(ctx, plan, gen, key, monitor)
                document = manifest_document(ctx, plan, key, monitor)
                gen.write(MANIFEST, manifest_mod.manifest_bytes(document), secret=True)
                out.commit(gen, stale=stale)
            if material is None:
                out.forget_cache()
            else:
                out.save_cache(
                    {
                        "key": cache.cache_key(material, key),
                        "next_step": next_step(options, ctx.profile, ctx.out_dir),
                    }
                )
            if ctx.conn is not None:
                _act(ctx, plan, conn=ctx.conn, out=out, document=document, monitor=monitor)
    return BuildResult(
        manifest=document,
        domain_xml=ctx.domain_xml,
        out_dir=ctx.out_dir,
        installed=bool(ctx.domain_record.get("installed")),
        next_step=next_step(options, ctx.profile, ctx.out_dir),
    )
