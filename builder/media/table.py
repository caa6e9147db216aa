"""The media table: every medium a build can have, as one row each.

A row says which OUT file the medium is (or that it is the user's own Windows ISO),
when a build has it, how it is planned and written (its `Builder`), the drive it goes
into in the domain (device, drive index, boot order), whether it carries secrets (the
answer files: mode 0600), and whether it is taken out of the domain when the install is
done. The pipeline writes, the manifest lists, the domain attaches and the install
detaches exactly the rows that apply; a new medium is a row (and a builder), not a
change to each of those.
"""

from __future__ import annotations

import shutil
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Generic, TypeVar

from builder.errors import BuildError
from builder.media import fat, iso9660, overlay
from builder.media.files import WRITE_BLOCK, IsoPlan, OverlayPlan, PlannedFile
from builder.media.floppy import FloppyPlan
from builder.media.plan import (
    MediaInputs,
    plan_answer_disc,
    plan_answer_floppy,
    plan_drivers_disc,
    plan_install_dvd_overlay,
)
from builder.media.slipstream import InstallCdPlan, plan_install_cd
from builder.virtio.source import DriverSource
from builder.vm.devices import AttachedMedium, Removable
from builder.windows.profiles import Profile, StorageRoute

PlanT = TypeVar("PlanT")
# The manifest's name of the user's Windows ISO among the inputs.
WINDOWS_ISO_INPUT = "windows_iso"


@dataclass(frozen=True)
class WriteInputs:
    """What the writers read besides their plan: the driver source, the build's clock
    and volume serial, and the user's Windows ISO (None when not given)."""

    source: DriverSource
    epoch: int
    serial: int
    windows_iso: Path | None


@dataclass(frozen=True)
class WrittenFile:
    """A file of a written medium, as the manifest lists it."""

    path: str
    size: int
    sha256: str


@dataclass(frozen=True)
class WrittenMedium:
    """What a writer learnt while it wrote, for the manifest: the files of the medium
    that were not planned byte for byte (taken from the bytes written), and the sha256
    of the inputs it read whole on the way, by input name."""

    files: tuple[WrittenFile, ...] = ()
    input_sha256: Mapping[str, str] = field(default_factory=dict)


class Builder(ABC, Generic[PlanT]):
    """How one kind of medium is planned (pure), checked and written (the edge)."""

    @abstractmethod
    def plan(self, inputs: MediaInputs) -> PlanT:
        """The medium's plan; InputError when the input cannot make it."""

    def check(self, plan: PlanT, inputs: WriteInputs) -> str | None:
        """Refuse, before anything is written, what the writer would refuse; a line for
        the progress output, or None."""
        return None

    @abstractmethod
    def write(self, plan: PlanT, out: IO[bytes], inputs: WriteInputs) -> WrittenMedium:
        """Write the medium into `out`, a new file (its owner removes it when writing
        fails), and say what the manifest needs to know of it."""

    @abstractmethod
    def files(self, plan: PlanT) -> tuple[PlannedFile, ...]:
        """The files pvinstall puts on the medium."""

    def estimated_size(self, plan: PlanT, inputs: WriteInputs) -> int:
        """About how many bytes the written medium takes (a full disk names it): its
        files, each in whole 2 KiB sectors, and a MiB for the file system itself."""
        return _sectors(self.files(plan)) + 1024 * 1024


def _sectors(files: Sequence[PlannedFile]) -> int:
    return sum(-(-f.size // 2048) * 2048 for f in files)


class AnswerFloppy(Builder[FloppyPlan]):
    def plan(self, inputs: MediaInputs) -> FloppyPlan:
        return plan_answer_floppy(inputs)

    def write(self, plan: FloppyPlan, out: IO[bytes], inputs: WriteInputs) -> WrittenMedium:
        fat.write_floppy(plan, out, inputs.source, epoch=inputs.epoch, serial=inputs.serial)
        return WrittenMedium()

    def files(self, plan: FloppyPlan) -> tuple[PlannedFile, ...]:
        return plan.files

    def estimated_size(self, plan: FloppyPlan, inputs: WriteInputs) -> int:
        return plan.size_kib * 1024  # the image has its nominal size, however full


class DriversDisc(Builder[IsoPlan]):
    def plan(self, inputs: MediaInputs) -> IsoPlan:
        return plan_drivers_disc(inputs)

    def write(self, plan: IsoPlan, out: IO[bytes], inputs: WriteInputs) -> WrittenMedium:
        iso9660.write_drivers_iso(plan, out, inputs.source, epoch=inputs.epoch)
        return WrittenMedium()

    def files(self, plan: IsoPlan) -> tuple[PlannedFile, ...]:
        return plan.files


class AnswerDisc(Builder[IsoPlan]):
    def plan(self, inputs: MediaInputs) -> IsoPlan:
        return plan_answer_disc(inputs)

    def write(self, plan: IsoPlan, out: IO[bytes], inputs: WriteInputs) -> WrittenMedium:
        iso9660.write_drivers_iso(plan, out, inputs.source, epoch=inputs.epoch)
        return WrittenMedium()

    def files(self, plan: IsoPlan) -> tuple[PlannedFile, ...]:
        return plan.files


class RemasteredCd(Builder[InstallCdPlan]):
    def plan(self, inputs: MediaInputs) -> InstallCdPlan:
        return plan_install_cd(inputs.drivers, inputs.answers, inputs.sysprep_files("install.iso"))

    def check(self, plan: InstallCdPlan, inputs: WriteInputs) -> str | None:
        # A CD of the other architecture, or one that is not a 2003 CD, is refused
        # here, before anything is written.
        cd = _windows_iso(inputs)
        info = iso9660.inspect_install_cd(cd, plan.profile, plan)
        return f"install CD {info.label or cd.name}: {info.arch}, setup in {info.setup_dir}"

    def write(self, plan: InstallCdPlan, out: IO[bytes], inputs: WriteInputs) -> WrittenMedium:
        done = iso9660.remaster_install_cd(
            _windows_iso(inputs), out, plan, inputs.source, epoch=inputs.epoch
        )
        # The patched TXTSETUP.SIF is the user's with the driver's entries merged in:
        # its digest is of the bytes written. The CD was hashed as it was copied.
        sif = WrittenFile(done.txtsetup_path, done.txtsetup_size, done.txtsetup_sha256)
        return WrittenMedium(files=(sif,), input_sha256={WINDOWS_ISO_INPUT: done.cd_sha256})

    def files(self, plan: InstallCdPlan) -> tuple[PlannedFile, ...]:
        return plan.files

    def estimated_size(self, plan: InstallCdPlan, inputs: WriteInputs) -> int:
        # The user's CD, copied, with the driver's files added.
        return _windows_iso(inputs).stat().st_size + super().estimated_size(plan, inputs)


class InstallDvdOverlay(Builder[OverlayPlan]):
    def plan(self, inputs: MediaInputs) -> OverlayPlan:
        return plan_install_dvd_overlay(inputs)

    def check(self, plan: OverlayPlan, inputs: WriteInputs) -> str | None:
        return f"install DVD overlay: {plan.note}"

    def write(self, plan: OverlayPlan, out: IO[bytes], inputs: WriteInputs) -> WrittenMedium:
        # qemu-img and qemu-io write files, not streams: the overlay (a few hundred KiB,
        # its backing file named by absolute path) is made beside and copied into `out`,
        # which hashes it as it is written.
        with tempfile.TemporaryDirectory(prefix="pvinstall-overlay-") as folder:
            made = Path(folder) / "install-dvd.qcow2"
            overlay.write_install_dvd_overlay(plan, made, backing=_windows_iso(inputs).absolute())
            with made.open("rb") as data:
                shutil.copyfileobj(data, out, WRITE_BLOCK)
        return WrittenMedium()

    def files(self, plan: OverlayPlan) -> tuple[PlannedFile, ...]:
        return ()


def _windows_iso(inputs: WriteInputs) -> Path:
    if inputs.windows_iso is None:
        raise BuildError("the install CD was planned without a Windows ISO to remaster.")
    return inputs.windows_iso


# When a medium belongs to a build: (the profile, the user's Windows ISO or None).
Applies = Callable[[Profile, Path | None], bool]


@dataclass(frozen=True)
class Medium:
    """One row of the media table.

    `name` is the OUT file it is written to; a row without a `builder` is the user's
    own Windows ISO, attached as it is. `serves` names the storage route that depends
    on this medium (the profile's `storage_route`).
    """

    name: str
    title: str
    device: Removable
    drive: int
    boot_order: int | None
    secret: bool
    removed_after_install: bool
    applies: Applies
    builder: Builder[Any] | None
    serves: StorageRoute | None = None
    image_format: str = "raw"  # how QEMU reads the file (never left to guess)
    # A qcow2 overlay whose backing file is the user's Windows ISO (read as raw): a
    # remote host needs the ISO as a volume too, and the overlay rebased onto it.
    backed_by_windows_iso: bool = False

    def path(self, out_dir: Path, windows_iso: Path | None) -> Path | None:
        """Where the domain finds the medium (None: the drive stays empty)."""
        return out_dir / self.name if self.builder is not None else windows_iso


def _remasters(profile: Profile, windows_iso: Path | None) -> bool:
    return profile.remasters_install_cd and windows_iso is not None


def _overlays(profile: Profile, windows_iso: Path | None) -> bool:
    return profile.reads_install_image and windows_iso is not None


MEDIA: tuple[Medium, ...] = (
    # Written in this order (the manifest lists them so).
    Medium(
        name="floppy.img",
        title="answer floppy",
        device="floppy",
        drive=0,
        boot_order=None,
        secret=True,
        removed_after_install=True,
        applies=lambda profile, _: profile.floppy_controller,
        builder=AnswerFloppy(),
        serves=StorageRoute.ANSWER_FLOPPY,
    ),
    # Machines without a floppy controller (q35): the answer file and windowsPE's drivers
    # on a small CD; Setup searches every drive for both.
    Medium(
        name="answer.iso",
        title="answer disc",
        device="cdrom",
        drive=2,
        boot_order=None,
        secret=True,
        removed_after_install=True,
        applies=lambda profile, _: profile.storage_route is StorageRoute.ANSWER_ISO,
        builder=AnswerDisc(),
        serves=StorageRoute.ANSWER_ISO,
    ),
    Medium(
        name="drivers.iso",
        title="drivers disc",
        device="cdrom",
        drive=1,
        boot_order=None,
        secret=True,
        removed_after_install=True,
        applies=lambda _profile, _iso: True,
        builder=DriversDisc(),
    ),
    # The install medium boots after the system disk: an empty disk falls through to
    # it, and once setup has written the disk every later boot starts Windows.
    Medium(
        name="install.iso",
        title="remastered install CD",
        device="cdrom",
        drive=0,
        boot_order=2,
        secret=True,
        removed_after_install=True,
        applies=_remasters,
        builder=RemasteredCd(),
        serves=StorageRoute.SLIPSTREAM,
    ),
    # The user's DVD of 2012 R2 and later, read through a copy-on-write overlay whose
    # boot catalog boots efisys_noprompt.bin: no "Press any key" under UEFI, the ISO
    # untouched (media/eltorito.py).
    Medium(
        name="install-dvd.qcow2",
        title="the user's install DVD, booting without a keypress (overlay)",
        device="cdrom",
        drive=0,
        boot_order=2,
        secret=False,
        removed_after_install=True,
        applies=_overlays,
        builder=InstallDvdOverlay(),
        image_format="qcow2",
        backed_by_windows_iso=True,
    ),
    Medium(
        name="Windows ISO",
        title="the user's install medium",
        device="cdrom",
        drive=0,
        boot_order=2,
        secret=False,
        removed_after_install=True,
        applies=lambda profile, iso: not _remasters(profile, iso) and not _overlays(profile, iso),
        builder=None,
    ),
)


def media_for(
    profile: Profile, windows_iso: Path | None, table: Sequence[Medium] = MEDIA
) -> tuple[Medium, ...]:
    """The rows of `table` a build of `profile` has.

    BuildError when no row of the table serves the profile's storage route, or none
    that can apply to it: setup would never see the storage driver.
    """
    serving = [m for m in table if m.serves is profile.storage_route]
    # Whether a serving row could apply at all, had the user given a Windows ISO (a
    # remastered CD needs one): a profile no row can serve is a bug of the tables.
    if not any(m.applies(profile, Path("windows.iso")) for m in serving):
        raise BuildError(
            f"no medium of the media table carries the storage driver to setup the way "
            f"{profile.name} needs it ({profile.storage_route}: {profile.storage_prose}).",
            "Add a row for that medium to builder/media/table.py.",
        )
    return tuple(m for m in table if m.applies(profile, windows_iso))


def attach(
    media: Sequence[Medium], out_dir: Path, windows_iso: Path | None
) -> tuple[AttachedMedium, ...]:
    """`media` as the domain's removable drives see them, where libvirt will find them."""
    return tuple(
        AttachedMedium(
            m.name,
            m.device,
            m.drive,
            m.path(out_dir, windows_iso),
            m.boot_order,
            m.image_format if m.builder is not None else "raw",
        )
        for m in media
    )


@dataclass(frozen=True)
class PlannedMedium:
    """A row of the media table and its plan."""

    medium: Medium
    plan: Any

    @property
    def builder(self) -> Builder[Any]:
        if self.medium.builder is None:
            raise BuildError(f"{self.medium.name} is not written by pvinstall.")
        return self.medium.builder


@dataclass(frozen=True)
class MediaPlan:
    """The media of a build: the rows that apply, and the plan of each one written."""

    media: tuple[Medium, ...]
    planned: tuple[PlannedMedium, ...]

    def get(self, name: str) -> PlannedMedium | None:
        return next((p for p in self.planned if p.medium.name == name), None)

    def attached(self, out_dir: Path, windows_iso: Path | None) -> tuple[AttachedMedium, ...]:
        """The media for the domain's removable drives, where libvirt will find them."""
        return attach(self.media, out_dir, windows_iso)

    def removed_after_install(
        self, out_dir: Path, windows_iso: Path | None
    ) -> tuple[AttachedMedium, ...]:
        """The attached media the install takes out of the domain when it is done."""
        keep = {m.name for m in self.media if m.removed_after_install}
        return tuple(a for a in self.attached(out_dir, windows_iso) if a.name in keep)


def plan_media(
    inputs: MediaInputs, windows_iso: Path | None, table: Sequence[Medium] = MEDIA
) -> MediaPlan:
    """Plan every medium of the build that pvinstall writes (pure)."""
    media = media_for(inputs.drivers.profile, windows_iso, table)
    planned = tuple(
        PlannedMedium(m, m.builder.plan(inputs)) for m in media if m.builder is not None
    )
    return MediaPlan(media=media, planned=planned)
