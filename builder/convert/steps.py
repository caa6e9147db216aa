"""The steps of `pvinstall convert` and `pvinstall attach`, in order: read the domain,
plan (builder/convert/plan.py), write the state files, act through builder/vm/virt.py, and
say what happens next.

State files (the backup of the original definition, the phase-one record, the
temporary disk, the drivers ISO) are written under a temporary name and renamed; when
libvirt refuses the new definition, the files this run wrote are removed again.

On a remote host (a URI with a host part), or with `--storage-pool`, what QEMU must read
becomes volumes of a storage pool there instead (docs/remote.md): the drivers ISO is
still written into the state directory, then uploaded; the temporary disk and new
disks are created as volumes. The state files stay on this machine, and the
phase-one record names the volumes, so that --finish and --rollback delete those and
no others.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from builder import outputs, sources
from builder.convert import plan as plans
from builder.errors import InputError
from builder.media import iso9660
from builder.media.files import IsoPlan
from builder.media.layout import iso_path_windows
from builder.media.plan import plan_drivers_iso
from builder.monitor import Monitor
from builder.reproducible import source_date_epoch
from builder.virtio.facts import load_driver_facts
from builder.virtio.packages import scan_source
from builder.virtio.selection import DriverSet, select_drivers
from builder.vm import disk_images, existing, remote, transfer, virt
from builder.vm.uri import DEFAULT_URI
from builder.windows.profiles import Profile

Mode = Literal["staged", "finish", "drivers-installed", "rollback"]
# The largest disk `attach --size` creates, as the build's data_disks setting.
MAX_DISK_GIB = 65536
DEFAULT_NETWORK = "default"  # as the build's `network` setting


@dataclass(frozen=True)
class ConvertOptions:
    """What the user asked `pvinstall convert` for."""

    name: str
    uri: str = DEFAULT_URI
    profile: str | None = None
    arch: str | None = None
    drivers: str | None = None
    out: Path | None = None
    mode: Mode = "staged"
    dry_run: bool = False
    storage_pool: str | None = None


@dataclass(frozen=True)
class ConvertOutcome:
    """What a convert run did (or, with --dry-run, would do) and what comes next."""

    domain: str
    action: str  # phase-one, phase-one-done, finish, switch, rollback, nothing
    running: bool
    applied: bool
    state_dir: Path
    xml: str = ""
    plan: plans.ConvertPlan | None = None
    backup: Path | None = None
    next_steps: tuple[str, ...] = field(default=())
    # The storage pool of the volumes this run made (phase one) or deleted (--finish,
    # --rollback), or would (--dry-run).
    pool: str | None = None
    volumes: tuple[str, ...] = ()

    def summary(self) -> tuple[str, ...]:
        """What happened and what comes next, in sentences for a person."""
        name = self.domain
        headline = {
            "nothing": f"nothing to change: the disks and NICs of {name} are virtio already.",
            "phase-one-done": f"phase one is done already for {name}; nothing changed.",
            "phase-one": f"phase one done for {name}; its boot disk is switched by --finish.",
            "finish": f"{name} is converted to virtio.",
            "switch": f"{name} is converted to virtio.",
            "rollback": f"the original definition of {name} is restored from {self.backup}.",
        }[self.action]
        if not self.applied and self.action not in ("nothing", "phase-one-done"):
            headline = (
                f"dry run: nothing was changed; the definition {name} would get is on stdout."
            )
        lines = [headline]
        if self.plan is not None:
            lines += [f"  switch {s.describe()}" for s in self.plan.switches]
            lines += [f"  later  {s.describe()}" for s in self.plan.pending]
            lines += [f"  add    {a}" for a in self.plan.added]
            lines += [f"  remove {r}" for r in self.plan.removed]
            if self.plan.boot_order_named:
                lines.append(
                    "  the boot disk is named by <boot order='1'/> instead of "
                    "<os><boot dev='hd'/>, so the firmware boots no other disk"
                )
        if self.volumes:
            done = {"phase-one": "made"}.get(self.action, "deleted")
            verb = done if self.applied else f"would be {done}"
            lines.append(f"  volumes of the pool {self.pool} {verb}: {', '.join(self.volumes)}")
        if self.applied and self.backup is not None and self.action != "rollback":
            lines.append(f"  backup of the original definition: {self.backup}")
        lines += [
            f"Next: {step}" if i == 0 else f"      {step}" for i, step in enumerate(self.next_steps)
        ]
        return tuple(lines)

    def as_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "domain": self.domain,
            "action": self.action,
            "running": self.running,
            "applied": self.applied,
            "state_dir": str(self.state_dir),
            "backup": str(self.backup) if self.backup else None,
            "next_steps": list(self.next_steps),
            "volumes": {"pool": self.pool, "names": list(self.volumes)} if self.pool else None,
        }
        if self.plan is not None:
            document.update(
                {k: v for k, v in self.plan.as_json().items() if k not in ("domain", "action")}
            )
        if self.xml:
            document["xml"] = self.xml
        return document


def _again(options: ConvertOptions, flag: str) -> str:
    """The command line that continues this conversion."""
    words = ["pvinstall", "convert", options.name, flag]
    if options.uri != DEFAULT_URI:
        words += ["--connect", options.uri]
    if options.out is not None:
        words += ["--out", str(options.out)]
    return shlex.join(words)


def _next_start(options: ConvertOptions, running: bool) -> str:
    if running:
        return (
            "The guest is running: the new definition takes effect at its next start. "
            "Shut it down from Windows and start it again (a restart inside the guest "
            "keeps the old devices)."
        )
    return f"Start the guest: {shlex.join(['virsh', '-c', options.uri, 'start', options.name])}"


# -- convert -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Run:
    """One convert run: the connection, the domain as it is, where the state lives."""

    conn: virt.Connection
    guest: virt.ExistingDomain
    paths: plans.StatePaths
    options: ConvertOptions
    monitor: Monitor
    environ: Mapping[str, str]


def _choose_pool(
    conn: virt.Connection, guest_xml: str, asked: str | None, command: str
) -> str | None:
    """The storage pool that what `command` adds goes into: `--storage-pool`, else on a
    remote host the pool that holds the guest's boot disk (a volume, or a file some
    pool of the host holds); None for files of this machine. InputError (naming
    `--storage-pool`) for a remote host without one, or a pool not there or inactive."""
    pool = asked
    if pool is None and remote.uri_has_host(conn.uri):
        pool, source = plans.boot_disk_source(guest_xml)
        if pool is None and source.startswith("/"):
            pool = virt.pool_of_path(conn, source)
        if pool is None:
            raise InputError(
                f"{conn.uri} names a remote host, which cannot read files of this machine: "
                f"what pvinstall {command} adds becomes volumes of a storage pool there, and "
                "the guest's boot disk is in none.",
                f"Name one with --storage-pool (virsh -c {conn.uri} pool-list).",
                key="--storage-pool",
            )
    if pool is not None:
        virt.check_pool(conn, pool, key="--storage-pool")
    return pool


def run_convert(
    options: ConvertOptions,
    monitor: Monitor,
    environ: Mapping[str, str] | None = None,
    home: Path | None = None,
) -> ConvertOutcome:
    """Carry out one step of `pvinstall convert` (see builder/convert/plan.py)."""
    env = os.environ if environ is None else environ
    paths = plans.state_paths(options.name, options.out, env, home or Path.home())
    with virt.connect(options.uri) as conn:
        # With its secrets (a VNC password): the new definition and the backup keep them.
        guest = virt.existing_domain(conn, options.name, secure=True)
        run = _Run(conn, guest, paths, options, monitor, env)
        if options.mode == "rollback":
            return _rollback(run)
        record = _read_record(paths)
        if options.mode == "finish" and record is None:
            raise InputError(
                f"there is no phase-one record for {options.name} in {paths.directory}, "
                "so there is nothing to finish.",
                f"Run phase one first: pvinstall convert {options.name} (or pass the --out "
                "it used).",
                key="--finish",
            )
        if record is not None and options.mode in ("finish", "drivers-installed"):
            return _finish(run, record)
        if options.mode == "drivers-installed":
            return _switch(run)
        return _phase_one(run, record)


def _read_record(paths: plans.StatePaths) -> plans.StagedRecord | None:
    try:
        text = paths.record.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as error:
        raise InputError(
            f"cannot read {paths.record}: {error.strerror}.",
            "Check the permissions of the state directory.",
            key="--out",
        ) from None
    return plans.StagedRecord.from_json(text, paths.record)


def _outcome(
    run: _Run,
    action: str,
    *,
    applied: bool,
    xml: str = "",
    plan: plans.ConvertPlan | None = None,
    steps: tuple[str, ...] = (),
    record: plans.StagedRecord | None = None,
) -> ConvertOutcome:
    backup = run.paths.backup if run.paths.backup.is_file() else None
    volumes = record.volumes if record is not None else ()
    return ConvertOutcome(
        domain=run.guest.name,
        action=action,
        running=run.guest.running,
        applied=applied,
        state_dir=run.paths.directory,
        # Shown on stdout: a VNC password the definition keeps says "(set)" only.
        xml=existing.redact_secrets(xml) if xml else "",
        plan=plan,
        backup=backup,
        next_steps=steps,
        pool=record.pool if volumes and record is not None else None,
        volumes=volumes,
    )


def _nothing(run: _Run) -> ConvertOutcome:
    return _outcome(run, "nothing", applied=False)


def _profile(run: _Run) -> Profile:
    return plans.guest_profile(run.guest.xml, run.options.profile, run.options.arch)


def _refuse_running_boot_switch(run: _Run, plan: plans.ConvertPlan, flag: str) -> None:
    """The boot disk moves only while the guest is off: Windows must have shut down
    after installing the driver, and the guest must start afresh on the new bus."""
    if run.guest.running and plan.switches_boot_disk:
        raise InputError(
            f"{run.guest.name} is running; its boot disk is switched to virtio only while it "
            "is shut off.",
            f"Shut it down from Windows (virsh shutdown {run.guest.name}), then run {flag} again.",
            key=flag,
        )


def _phase_one(run: _Run, record: plans.StagedRecord | None) -> ConvertOutcome:
    guest, paths = run.guest, run.paths
    if record is not None and plans.phase_one_pending(guest.xml, record):
        return _outcome(
            run, "phase-one-done", applied=False, steps=_boot_once_steps(run, record, None)
        )
    if not plans.pending_devices(guest.xml):
        return _nothing(run)
    profile = _profile(run)
    pool = _choose_pool(run.conn, guest.xml, run.options.storage_pool, "convert")
    volumes = plans.convert_volumes(guest.name, pool) if pool is not None else None
    plan = plans.plan_phase_one(guest.xml, profile, paths, volumes)
    if plan.record is None:  # nothing to stage after all
        return _nothing(run)
    # A record whose devices are gone means an unfinished conversion the user undid by
    # hand: its backup is still the definition from before any of it, so keep that,
    # and the volumes it made may go (nothing uses them any more).
    made_before = record.volumes if record is not None else ()
    old_pool = record.pool if record is not None else None
    if volumes is not None:
        _refuse_foreign_volumes(run, plan.record, made_before if old_pool == pool else ())
    if run.options.dry_run:
        return _outcome(
            run, plan.action, applied=False, xml=plan.xml, plan=plan, record=plan.record
        )
    drivers = _select_drivers(run, profile)
    if old_pool is not None:
        transfer.delete_all(run.conn, old_pool, made_before, run.monitor)
    keep_backup = record is not None and paths.backup.is_file()
    placed = _write_phase_one_files(run, plan.record, drivers, keep_backup=keep_backup)
    made: tuple[str, ...] = ()
    try:
        if volumes is not None:
            made = _make_phase_one_volumes(run, plan.record, volumes)
        virt.redefine(run.conn, plan.xml)
    except BaseException:
        if volumes is not None:
            transfer.delete_all(run.conn, volumes.pool, made, run.monitor, quiet=True)
        for path in placed:
            if path != paths.backup:
                path.unlink(missing_ok=True)
        raise
    return _outcome(
        run,
        plan.action,
        applied=True,
        xml=plan.xml,
        plan=plan,
        steps=_boot_once_steps(run, plan.record, drivers.selection),
        record=plan.record,
    )


def _refuse_foreign_volumes(
    run: _Run, record: plans.StagedRecord, made_before: tuple[str, ...]
) -> None:
    """Refuse volumes of phase one's names that an earlier phase one (its record) did
    not make: they are someone else's, and an upload never goes into an old volume."""
    if record.pool is None:
        return
    for volume in record.volumes:
        if volume not in made_before and virt.volume_exists(run.conn, record.pool, volume):
            raise InputError(
                f"the volume {volume} already exists in the storage pool {record.pool} on "
                f"{run.conn.uri}, and no phase one of {run.guest.name} recorded in "
                f"{run.paths.directory} made it.",
                f"Delete it (virsh -c {run.conn.uri} vol-delete --pool {record.pool} "
                f"{volume}) if it may go, or pass the --out of the convert that made it.",
                key="--storage-pool",
            )


def _make_phase_one_volumes(
    run: _Run, record: plans.StagedRecord, volumes: plans.ConvertVolumes
) -> tuple[str, ...]:
    """Upload the drivers ISO (written into the state directory) and create the
    temporary disk as volumes; the volumes made. A failure deletes what it made."""
    done = transfer.upload_all(
        run.conn,
        volumes.pool,
        [remote.Upload("drivers ISO", run.paths.drivers_iso, volumes.drivers_iso)],
        run.monitor,
    )
    if record.temp_disk is None:
        return done
    try:
        run.monitor.step(
            "create temporary disk",
            f"{volumes.pool}/{record.temp_disk} ({plans.TEMP_DISK_MIB} MiB qcow2)",
        )
        virt.create_volume(
            run.conn, volumes.pool, record.temp_disk, plans.TEMP_DISK_MIB << 20, "qcow2"
        )
    except BaseException:
        transfer.delete_all(run.conn, volumes.pool, done, run.monitor, quiet=True)
        raise
    return (*done, record.temp_disk)


@dataclass(frozen=True)
class _DriversIso:
    plan: IsoPlan
    source: Path
    selection: DriverSet


def _select_drivers(run: _Run, profile: Profile) -> _DriversIso:
    """Select the drivers for the guest's profile and plan the drivers ISO."""
    path = sources.find_source(run.options.drivers)
    run.monitor.step("select drivers", f"{profile.name} from {path}")
    known = load_driver_facts()
    with sources.open_source(path) as opened:
        selection = select_drivers(scan_source(opened, known), profile, known)
    for warning in selection.warnings:
        run.monitor.warning(warning)
    return _DriversIso(plan_drivers_iso(selection, plans.DRIVERS_LABEL), path, selection)


def _write_phase_one_files(
    run: _Run, record: plans.StagedRecord, drivers: _DriversIso, *, keep_backup: bool
) -> list[Path]:
    """The backup, the drivers ISO, the temporary disk and the record, all renamed into
    the state directory together."""
    paths = run.paths
    stage = outputs.Staging(paths.directory)
    try:
        run.monitor.step("write drivers ISO", str(paths.drivers_iso))
        with sources.open_source(drivers.source) as opened:
            iso9660.write_drivers_iso(
                drivers.plan,
                stage.file(paths.drivers_iso.name),
                opened,
                epoch=source_date_epoch(run.environ),
            )
        if record.temp_disk is not None and record.pool is None:
            run.monitor.step(
                "create temporary disk", f"{paths.temp_disk} ({plans.TEMP_DISK_MIB} MiB qcow2)"
            )
            disk_images.create_qcow2(stage.file(paths.temp_disk.name), f"{plans.TEMP_DISK_MIB}M")
        if not keep_backup:
            # The definition with its secrets: mode 0600.
            stage.write(paths.backup.name, run.guest.xml.encode("utf-8"), secret=True)
        stage.write(paths.record.name, record.to_json().encode("utf-8"))
        placed = stage.commit()
    except BaseException:
        stage.abandon()
        raise
    return placed


def _boot_once_steps(
    run: _Run, record: plans.StagedRecord, drivers: DriverSet | None
) -> tuple[str, ...]:
    guest, options = run.guest, run.options
    folders = ""
    if drivers is not None:
        wanted = [drivers.storage, *drivers.by_role("network")]
        folders = (
            " ("
            + ", ".join(
                f"{d.name} in {iso_path_windows(d, drivers.profile, 'CD:')}" for d in wanted
            )
            + ")"
        )
    new = (
        "the new virtio devices (the temporary disk among them)"
        if record.temp_disk
        else "the new virtio devices"
    )
    start = (
        _next_start(options, guest.running)
        if guest.running
        else "Start the guest once: "
        + shlex.join(["virsh", "-c", options.uri, "start", guest.name])
    )
    return (
        start,
        f"Windows finds {new} and asks for drivers: install them from the drivers CD "
        f"({record.cd_target}){folders}. Windows may need a restart to see a new device.",
        f"Then shut the guest down and run: {_again(options, '--finish')}",
        f"To undo everything instead: {_again(options, '--rollback')}",
    )


def _finish(run: _Run, record: plans.StagedRecord) -> ConvertOutcome:
    options, paths = run.options, run.paths
    model = _profile(run).virtio_model if options.profile else record.model
    plan = plans.plan_finish(run.guest.xml, record, model)
    flag = "--finish" if options.mode == "finish" else "--drivers-installed"
    _refuse_running_boot_switch(run, plan, flag)
    if options.dry_run:
        return _outcome(run, "finish", applied=False, xml=plan.xml, plan=plan, record=record)
    if plan.action != "nothing":
        virt.redefine(run.conn, plan.xml)
    # What phase one made is no longer referenced; the backup stays for --rollback.
    _remove_phase_one(run, record)
    return _outcome(
        run,
        "finish",
        applied=True,
        xml=plan.xml,
        plan=plan,
        record=record,
        steps=(
            _next_start(options, run.guest.running),
            f"The original definition stays in {paths.backup}: "
            f"{_again(options, '--rollback')} restores it.",
        ),
    )


def _switch(run: _Run) -> ConvertOutcome:
    if not plans.pending_devices(run.guest.xml):
        return _nothing(run)
    plan = plans.plan_switch(run.guest.xml, _profile(run).virtio_model)
    _refuse_running_boot_switch(run, plan, "--drivers-installed")
    if run.options.dry_run:
        return _outcome(run, plan.action, applied=False, xml=plan.xml, plan=plan)
    with outputs.staging(run.paths.directory) as stage:
        stage.write(run.paths.backup.name, run.guest.xml.encode("utf-8"), secret=True)
        stage.commit()
    virt.redefine(run.conn, plan.xml)
    return _outcome(
        run,
        plan.action,
        applied=True,
        xml=plan.xml,
        plan=plan,
        steps=(
            _next_start(run.options, run.guest.running),
            f"{_again(run.options, '--rollback')} restores the original definition.",
        ),
    )


def _rollback(run: _Run) -> ConvertOutcome:
    guest, paths = run.guest, run.paths
    try:
        xml = paths.backup.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(
            f"there is no backup of {guest.name}'s definition in "
            f"{paths.directory}, so there is nothing to roll back.",
            "convert keeps one there when it changes a domain; pass the --out it used.",
            key="--rollback",
        ) from None
    except OSError as error:
        raise InputError(
            f"cannot read {paths.backup}: {error.strerror}.",
            "Check the permissions of the state directory.",
            key="--rollback",
        ) from None
    backed_up = existing.parse_xml(xml)
    current = existing.parse_xml(guest.xml)
    for what in ("name", "uuid"):
        if backed_up.findtext(what) != current.findtext(what):
            raise InputError(
                f"{paths.backup} is the definition of another domain (its "
                f"{what} is {backed_up.findtext(what)}, not "
                f"{current.findtext(what)}).",
                "Pass the --out that convert used for this domain.",
                key="--rollback",
            )
    record = _rollback_record(run)
    if run.options.dry_run:
        return _outcome(run, "rollback", applied=False, xml=xml, record=record)
    virt.redefine(run.conn, xml)
    _remove_phase_one(run, record)
    return _outcome(
        run,
        "rollback",
        applied=True,
        xml=xml,
        steps=(_next_start(run.options, guest.running),),
        record=record,
    )


def _rollback_record(run: _Run) -> plans.StagedRecord | None:
    """The phase-one record a rollback also undoes, if there is one it can read (a
    damaged record does not stop a rollback: the backup is what it restores)."""
    try:
        return _read_record(run.paths)
    except InputError as error:
        run.monitor.warning(f"{error.message} Its volumes, if any, stay.")
        return None


def _remove_phase_one(run: _Run, record: plans.StagedRecord | None) -> None:
    """Delete what phase one made: its volumes (the record's, and no others), the
    drivers ISO and temporary disk in the state directory, and the record."""
    if record is not None and record.pool is not None:
        transfer.delete_all(run.conn, record.pool, record.volumes, run.monitor)
    paths = run.paths
    for leftover in (paths.record, paths.temp_disk, paths.drivers_iso):
        leftover.unlink(missing_ok=True)


# -- attach ------------------------------------------------------------------------------


@dataclass(frozen=True)
class AttachOptions:
    """What the user asked `pvinstall attach` for."""

    name: str
    kind: Literal["disk", "nic"]
    uri: str = DEFAULT_URI
    profile: str | None = None
    arch: str | None = None
    size_gib: int | None = None
    source: Path | None = None
    image_format: str | None = None
    network: str | None = None
    out: Path | None = None
    storage_pool: str | None = None


@dataclass(frozen=True)
class AttachOutcome:
    """The device attached: where, whether also live, and the disk image created (a
    file, or `volume POOL/NAME`)."""

    plan: plans.AttachPlan
    running: bool
    live: bool
    created: str | None
    live_problem: str | None

    def summary(self) -> tuple[str, ...]:
        """What happened and what comes next, in sentences for a person."""
        plan = self.plan
        where = (
            "to the running guest and its definition"
            if self.live
            else "to the definition (it appears at the next start)"
        )
        driver = "viostor" if plan.kind == "disk" else "NetKVM"
        lines = [
            f"attached the {plan.label} to {plan.domain} {where}; {plan.pci_slots} of "
            f"{plan.pci_budget} PCI slots are taken."
        ]
        if self.created is not None:
            lines.append(f"  created {self.created}")
        lines.append(
            f"Windows may need a restart to see it; it needs the {driver} driver "
            f"for a {plan.model} device."
        )
        return tuple(lines)

    def as_json(self) -> dict[str, Any]:
        return {
            **self.plan.as_json(),
            "running": self.running,
            "live": self.live,
            "created": self.created,
            "live_problem": self.live_problem,
        }


def _check_attach_options(options: AttachOptions) -> None:
    if options.storage_pool is not None and options.size_gib is None:
        raise InputError(
            "--storage-pool says where attach disk --size creates the new disk.",
            "Leave --storage-pool out, or create a disk: "
            "pvinstall attach DOMAIN disk --size GIB --storage-pool POOL",
            key="--storage-pool",
        )
    if options.storage_pool is not None and options.out is not None:
        raise InputError(
            "--out and --storage-pool both say where the new disk goes.",
            "Give one: --out FOLDER for a file, --storage-pool POOL for a volume.",
            key="--out",
        )
    if options.kind == "nic":
        if options.size_gib is not None or options.source is not None:
            raise InputError(
                "--size and --source are for disks.",
                "Use: pvinstall attach DOMAIN nic --network NAME",
                key="--size",
            )
        if options.image_format is not None:
            raise InputError(
                "--format is for disks (--source).",
                "Use: pvinstall attach DOMAIN nic --network NAME",
                key="--format",
            )
        return
    if options.image_format is not None and options.source is None:
        raise InputError(
            "--format says the format of an existing image (--source); --size creates qcow2.",
            "Leave --format out, or attach an image with --source PATH --format FORMAT.",
            key="--format",
        )
    if options.network is not None:
        raise InputError(
            "--network is for NICs.",
            "Use: pvinstall attach DOMAIN disk --size GIB",
            key="--network",
        )
    if (options.size_gib is None) == (options.source is None):
        raise InputError(
            "attach disk needs exactly one of --size (a new qcow2) and "
            "--source (an existing image).",
            "E.g. pvinstall attach DOMAIN disk --size 20",
            key="--size",
        )
    if options.size_gib is not None and not 1 <= options.size_gib <= MAX_DISK_GIB:
        raise InputError(
            f"{options.size_gib} GiB is out of range; a disk is 1 to {MAX_DISK_GIB} GiB.",
            "Give --size a number of GiB in that range.",
            key="--size",
        )
    if (
        options.source is not None
        and not options.source.is_file()
        and not options.source.is_block_device()
    ):
        raise InputError(
            f"the disk image {options.source} does not exist.",
            "Give the path of an existing image, or --size to create one.",
            key="--source",
        )


def new_disk_path(
    guest: virt.ExistingDomain,
    target: str,
    options: AttachOptions,
    environ: Mapping[str, str],
    home: Path,
) -> Path:
    """Where `attach disk --size` creates the image, `<domain>-<vdX>.qcow2`: in `--out`
    when given, else next to the guest's boot disk when that is a file, else in the
    state directory."""
    name = f"{plans.file_stem(guest.name)}-{target}.qcow2"
    boot = plans.boot_disk(existing.parse_xml(guest.xml))
    source = boot.find("source") if boot is not None else None
    if (
        options.out is None
        and boot is not None
        and boot.get("type", "file") == "file"
        and source is not None
        and source.get("file")
    ):
        return Path(str(source.get("file"))).parent / name
    return plans.state_paths(guest.name, options.out, environ, home).directory / name


def _refuse_remote_paths(options: AttachOptions) -> None:
    """On a remote host a path of this machine means nothing: an existing image
    (--source) and a folder for the new one (--out) are refused."""
    if not remote.uri_has_host(options.uri):
        return
    if options.source is not None:
        raise InputError(
            f"{options.uri} names a remote host, which cannot read {options.source}: "
            "--source is a path of this machine.",
            "Run pvinstall attach on that host, or create a new disk there with --size GIB "
            "(it becomes a volume of --storage-pool).",
            key="--source",
        )
    if options.out is not None:
        raise InputError(
            f"{options.uri} names a remote host: a new disk there is a volume of a "
            f"storage pool, not a file in {options.out}.",
            "Leave --out out, and name the pool with --storage-pool.",
            key="--out",
        )


@dataclass(frozen=True)
class _NewDisk:
    """A disk `attach disk --size` created: its plan, what to call it, how to undo it."""

    plan: plans.AttachPlan
    created: str
    undo: Callable[[], None]


def _create_volume_disk(
    conn: virt.Connection,
    guest: virt.ExistingDomain,
    profile: Profile,
    options: AttachOptions,
    pool: str,
    *,
    monitor: Monitor,
) -> _NewDisk:
    """The new disk as a qcow2 volume `NAME@vdX.qcow2` of `pool`."""
    roots = [existing.parse_xml(x) for x in (guest.xml, guest.live_xml) if x]
    volume = plans.Placed(plans.new_disk_volume(guest.name, plans.free_virtio_target(*roots)), pool)
    if virt.volume_exists(conn, pool, volume.name):
        raise InputError(
            f"the volume {volume.name} already exists in the storage pool {pool} on {conn.uri}.",
            f"Delete it (virsh -c {conn.uri} vol-delete --pool {pool} {volume.name}) if it may "
            "go, or attach it on the host itself.",
            key="--size",
        )
    # Planned first: a guest without a free slot is refused before anything is made.
    plan = plans.plan_attach_disk(guest.xml, profile, volume, "qcow2", guest.live_xml)
    size_gib = options.size_gib or 0
    monitor.step("create disk", f"{volume.describe()} ({size_gib} GiB qcow2)")
    virt.create_volume(conn, pool, volume.name, size_gib << 30, "qcow2")

    def undo() -> None:
        transfer.delete_all(conn, pool, [volume.name], monitor, quiet=True)

    return _NewDisk(plan, volume.describe(), undo)


def _create_file_disk(
    guest: virt.ExistingDomain,
    profile: Profile,
    options: AttachOptions,
    *,
    monitor: Monitor,
    environ: Mapping[str, str],
    home: Path,
) -> _NewDisk:
    """The new disk as a qcow2 file (see new_disk_path)."""
    roots = [existing.parse_xml(x) for x in (guest.xml, guest.live_xml) if x]
    target = plans.free_virtio_target(*roots)
    path = new_disk_path(guest, target, options, environ, home)
    if path.exists():
        raise InputError(
            f"{path} already exists.",
            f"Attach it with --source {path}, or remove it.",
            key="--size",
        )
    plan = plans.plan_attach_disk(guest.xml, profile, path, "qcow2", guest.live_xml)
    path.parent.mkdir(parents=True, exist_ok=True)
    monitor.step("create disk", f"{path} ({options.size_gib} GiB qcow2)")
    disk_images.create_qcow2(path, f"{options.size_gib}G")
    return _NewDisk(plan, str(path), lambda: path.unlink(missing_ok=True))


def run_attach(
    options: AttachOptions,
    monitor: Monitor,
    environ: Mapping[str, str] | None = None,
    home: Path | None = None,
) -> AttachOutcome:
    """Add one virtio disk or NIC to the persistent definition, and to the running guest
    where the hypervisor allows."""
    env = os.environ if environ is None else environ
    _check_attach_options(options)
    _refuse_remote_paths(options)
    with virt.connect(options.uri) as conn:
        guest = virt.existing_domain(conn, options.name)
        profile = plans.guest_profile(guest.xml, options.profile, options.arch)
        new: _NewDisk | None = None
        if options.kind == "nic":
            network = options.network or DEFAULT_NETWORK
            if network != "user":
                virt.check_attach_network(conn, network)
            plan = plans.plan_attach_nic(guest.xml, profile, network, guest.live_xml)
        elif options.source is not None:
            source = options.source.absolute()
            # The format is read here and written into the device; QEMU never guesses.
            image = disk_images.probe_image(source, options.image_format)
            for backing, backing_format in image.chain:
                monitor.info(f"backed by {backing} ({backing_format})")
            plan = plans.plan_attach_disk(guest.xml, profile, source, image.format, guest.live_xml)
        else:
            pool = _choose_pool(conn, guest.xml, options.storage_pool, "attach")
            if pool is not None:
                new = _create_volume_disk(conn, guest, profile, options, pool, monitor=monitor)
            else:
                new = _create_file_disk(
                    guest, profile, options, monitor=monitor, environ=env, home=home or Path.home()
                )
            plan = new.plan
        monitor.step("attach", plan.label)
        try:
            problem = virt.attach_device(conn, guest.name, plan.device_xml, live=guest.running)
        except BaseException:
            if new is not None:
                new.undo()
            raise
    if problem is not None:
        monitor.warning(
            f"the {plan.label} is in {guest.name}'s definition, but attaching it "
            f"to the running guest failed ({problem}); it appears at the next "
            "start."
        )
    live = guest.running and problem is None
    return AttachOutcome(
        plan=plan,
        running=guest.running,
        live=live,
        created=new.created if new is not None else None,
        live_problem=problem,
    )
