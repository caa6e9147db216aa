"""Moving files to and from a remote host's storage pool (the edge, over `virt`).

A remote build uploads its media (and the user's Windows ISO) as volumes before the
domain is defined, and deletes them again once the install has taken them out of
the domain; the template export downloads the system disk's volume. Each transfer
shows its progress, keeps holes as holes, and leaves nothing partial behind: a
failed upload deletes its volume (and, here, the ones uploaded before it, since
no domain will use them), a failed download its file.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from builder.errors import BuildError
from builder.monitor import Monitor
from builder.vm import disk_images, virt
from builder.vm.remote import Upload

# How often an upload or download reports how far it got.
PROGRESS_SECONDS = 2.0


class _Progress:
    """Reports a transfer's bytes to the monitor, at most every PROGRESS_SECONDS."""

    def __init__(self, monitor: Monitor, what: str, total: int | None) -> None:
        self._monitor = monitor
        self._what = what
        self._total = total
        self._next = time.monotonic() + PROGRESS_SECONDS

    def __call__(self, done: int) -> None:
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + PROGRESS_SECONDS
        fields = {"transfer": self._what, "done": virt.format_size(done)}
        if self._total:
            fields["of"] = virt.format_size(self._total)
        self._monitor.status(**fields)


def upload_all(
    conn: virt.Connection, pool: str, uploads: Sequence[Upload], monitor: Monitor
) -> tuple[str, ...]:
    """Upload every file of `uploads` into `pool` as a new volume; the volumes' names.

    The pool's room is checked first against all of them together (the host checks
    nothing itself and would fail at the first full byte). On a failure every volume
    uploaded here is deleted again and BuildError says why.
    """
    sizes = [_size(u.path) for u in uploads]
    room = virt.pool_room(conn, pool)
    needed = sum(sizes)
    if needed > room:
        each = ", ".join(
            f"{u.volume} {virt.format_size(s)}" for u, s in zip(uploads, sizes, strict=True)
        )
        raise BuildError(
            f"the storage pool {pool} on {conn.uri} has {virt.format_size(room)} free, but "
            f"the media take {virt.format_size(needed)} ({each}).",
            "Make room in the pool, or set storage_pool to a pool with more room. "
            "Nothing was uploaded.",
        )
    done: list[str] = []
    try:
        for upload, size in zip(uploads, sizes, strict=True):
            shown = f"{upload.medium} -> {pool}/{upload.volume} ({virt.format_size(size)})"
            monitor.step("upload", shown)
            progress = _Progress(monitor, upload.volume, size)
            if upload.backing is None:
                virt.upload_volume(
                    conn, pool, upload.volume, upload.path, fmt=upload.format, progress=progress
                )
            else:
                _upload_overlay(conn, pool, upload, upload.backing, progress)
            done.append(upload.volume)
    except BaseException:
        delete_all(conn, pool, done, monitor, quiet=True)
        raise
    return tuple(done)


# The one format an overlay's backing volume is read as: the user's ISO, raw. A raw
# file has no backing file of its own, so an overlay's chain is one file long.
OVERLAY_BACKING_FORMAT = "raw"


def _upload_overlay(
    conn: virt.Connection, pool: str, upload: Upload, backing: str, progress: _Progress
) -> None:
    """Upload a copy of the qcow2 overlay `upload.path` rebased onto the volume
    `backing` (uploaded before it) as the host names it, then check that the host's
    libvirt reads the new volume's backing file as exactly that volume, raw."""
    if upload.format != "qcow2":
        raise BuildError(f"{upload.medium} is backed by {backing} but is no qcow2 overlay.")
    host_path = virt.volume_path(conn, pool, backing)
    with tempfile.TemporaryDirectory(prefix="pvinstall-rebase-") as folder:
        copy = Path(folder) / upload.path.name
        try:
            shutil.copyfile(upload.path, copy)
        except OSError as error:
            raise BuildError(f"cannot copy {upload.path} to rebase it: {error.strerror}.") from None
        disk_images.rebase_unsafe(copy, host_path, OVERLAY_BACKING_FORMAT)
        virt.upload_volume(conn, pool, upload.volume, copy, fmt="qcow2", progress=progress)
    facts = virt.volume_facts(conn, pool, upload.volume)
    if (facts.backing_path, facts.backing_format) != (host_path, OVERLAY_BACKING_FORMAT):
        virt.delete_volume(conn, pool, upload.volume)
        raise BuildError(
            f"the host reads the volume {upload.volume} of {pool} as backed by "
            f"{facts.backing_path} ({facts.backing_format}), not by {host_path} "
            f"({OVERLAY_BACKING_FORMAT}); the volume was deleted again."
        )


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError as error:
        raise BuildError(f"cannot read {path} to upload it: {error.strerror}.") from None


def delete_all(
    conn: virt.Connection,
    pool: str,
    volumes: Sequence[str],
    monitor: Monitor,
    *,
    quiet: bool = False,
) -> tuple[str, ...]:
    """Delete `volumes` from `pool` (those still there), the last first; the ones
    deleted. `quiet` (a clean-up after a failure) says what it could not delete as a
    warning, never as a second error over the first."""
    deleted: list[str] = []
    # Last first: an overlay goes before the volume it is backed by.
    for volume in reversed(volumes):
        try:
            if virt.delete_volume(conn, pool, volume):
                deleted.append(volume)
        except BuildError as error:
            if not quiet:
                raise
            monitor.warning(f"could not delete the volume {volume}: {error.message}")
    return tuple(deleted)


def download(conn: virt.Connection, pool: str, volume: str, dest: Path, monitor: Monitor) -> int:
    """Download the volume `volume` of `pool` into the new client file `dest`; its size.
    The template export of a remote build downloads its system disk with this."""
    monitor.step("download", f"{pool}/{volume} -> {dest}")
    return virt.download_volume(conn, pool, volume, dest, progress=_Progress(monitor, volume, None))
