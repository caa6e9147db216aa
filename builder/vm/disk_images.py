"""Disk images on the host: created and inspected with qemu-img (the one place that runs
it), through `builder.tools`.

An image pvinstall creates is made mode 0600 before qemu-img writes a byte of it (the
file is created empty first, then qemu-img formats it in place): a guest's disk is as
private as its answer files. libvirt gives QEMU access for as long as the guest runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from builder import tools
from builder.errors import BuildError, InputError

IMAGE_MODE = 0o600
# Formats `attach --source` hands to libvirt, each by name (<driver type=...>).
ATTACH_FORMATS = ("raw", "qcow2")
# How many images a backing chain may have (the image itself included).
MAX_CHAIN = 16


def create_qcow2(path: Path, size: str) -> None:
    """Create an empty qcow2 image of `size` (qemu-img's notation: 64M, 20G), mode 0600.

    `path` must not exist (O_EXCL: neither a file nor a link to one is overwritten)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, IMAGE_MODE)
    except FileExistsError:
        raise BuildError(f"{path} appeared while pvinstall was about to create it.") from None
    except OSError as error:
        raise BuildError(f"cannot create the disk image {path}: {error.strerror}.") from None
    try:
        os.fchmod(fd, IMAGE_MODE)  # whatever the umask took away, nothing more is allowed
    finally:
        os.close(fd)
    try:
        tools.run(["qemu-img", "create", "-q", "-f", "qcow2", path, size], package="qemu-utils")
    except BaseException:
        with contextlib.suppress(OSError):
            path.unlink()
        raise


def _new_private_file(path: Path) -> None:
    """Create `path` empty with mode 0600 (O_EXCL: nothing is overwritten)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, IMAGE_MODE)
    except FileExistsError:
        raise InputError(
            f"{path} exists already.", "Choose another name, or move it away.", key="NAME"
        ) from None
    except OSError as error:
        raise BuildError(f"cannot create the disk image {path}: {error.strerror}.") from None
    try:
        os.fchmod(fd, IMAGE_MODE)
    finally:
        os.close(fd)


_PROGRESS = re.compile(r"\(\s*(\d+(?:\.\d+)?)/100%\)")


def convert(
    source: Path,
    source_format: str,
    target: Path,
    target_format: str,
    *,
    compress: bool,
    on_progress: Callable[[float], None] | None = None,
) -> None:
    """Copy a disk image into a new file `target` (mode 0600) of `target_format`:
    `compress` writes compressed qcow2 clusters (`qemu-img convert -c`), raw is sparse.
    The source's format is given, never probed. `on_progress` gets the percentage
    qemu-img reports. The target goes again when the copy fails."""
    _new_private_file(target)
    argv: list[str | Path] = ["qemu-img", "convert", "-p", "-f", source_format]
    argv += ["-O", target_format, *(["-c"] if compress else [])]
    argv += [source, target]

    def line(text: str) -> None:
        match = _PROGRESS.search(text)
        if match and on_progress is not None:
            on_progress(float(match.group(1)))

    try:
        tools.run_with_progress(argv, package="qemu-utils", on_line=line)
    except BaseException:
        with contextlib.suppress(OSError):
            target.unlink()
        raise


def create_overlay(path: Path, backing: Path, backing_format: str) -> None:
    """A qcow2 overlay `path` (mode 0600) on `backing`, which it names by its absolute
    path and format: QEMU reads the template through it and writes only the overlay."""
    _new_private_file(path)
    try:
        tools.run(
            [
                "qemu-img",
                "create",
                "-q",
                "-f",
                "qcow2",
                "-F",
                backing_format,
                "-b",
                backing.absolute(),
                path,
            ],
            package="qemu-utils",
        )
    except BaseException:
        with contextlib.suppress(OSError):
            path.unlink()
        raise


def rebase_unsafe(path: Path, backing: str, backing_format: str) -> None:
    """Make the qcow2 file `path` name `backing` (a path on the host that will read it,
    which need not exist here) as its backing file, read as `backing_format`. Only the
    header changes (`qemu-img rebase -u`): the backing file is never opened, and its
    format is written with it, so QEMU never guesses it."""
    tools.run(
        [
            "qemu-img",
            "rebase",
            "-u",
            "-f",
            "qcow2",
            "-F",
            backing_format,
            "-b",
            backing,
            path,
        ],
        package="qemu-utils",
    )


@dataclass(frozen=True)
class ImageInfo:
    """What qemu-img says of an image, read as the format it is said to be."""

    format: str
    virtual_size: int
    actual_size: int
    backing_file: str | None
    backing_format: str | None


def image_info(path: Path, image_format: str | None = None) -> ImageInfo:
    """The format, virtual size, allocated size and backing file of an image."""
    info = _info(path, image_format)
    backing = info.get("full-backing-filename") or info.get("backing-filename")
    return ImageInfo(
        format=str(info["format"]),
        virtual_size=int(info.get("virtual-size", 0)),
        actual_size=int(info.get("actual-size", 0)),
        backing_file=str(backing) if backing else None,
        backing_format=str(info["backing-filename-format"])
        if info.get("backing-filename-format")
        else None,
    )


def _info(path: Path, image_format: str | None) -> dict[str, Any]:
    argv: list[str | Path] = ["qemu-img", "info", "--output=json", "-U"]
    if image_format is not None:
        argv += ["-f", image_format]
    try:
        text = tools.run([*argv, path], package="qemu-utils")
    except BuildError as error:
        if image_format is not None:
            raise InputError(
                f"{path} is not a {image_format} image ({error.message}).",
                "Give the format it has with --format, or leave --format out to have it "
                "read from the image.",
                key="--source",
            ) from None
        raise
    try:
        info = json.loads(text)
    except ValueError:
        raise BuildError(f"qemu-img could not tell the format of {path}.") from None
    if not isinstance(info, dict) or not isinstance(info.get("format"), str):
        raise BuildError(f"qemu-img could not tell the format of {path}.")
    return info


def image_format(path: Path) -> str:
    """The format of a disk image (qcow2, raw, ...) as qemu-img detects it."""
    return str(_info(path, None)["format"])


@dataclass(frozen=True)
class ProbedImage:
    """A disk image as `attach --source` hands it to libvirt: its format, said
    explicitly, and the files of its backing chain (all inside the image's folder)."""

    path: Path
    format: str
    chain: tuple[tuple[Path, str], ...] = ()


def probe_image(path: Path, declared: str | None) -> ProbedImage:
    """What `path` is, read by qemu-img and never guessed by QEMU later.

    With `declared` (--format) the image is read as that format only; without it the
    format qemu-img finds must be raw or qcow2. A qcow2 image may have a backing chain
    only when every file of it lies in the image's own folder (after resolving links)
    and says its own format (a chain QEMU would have to probe, or one that reaches
    outside, could hand the guest any file of the host). InputError (--source) otherwise.
    """
    if declared is not None and declared not in ATTACH_FORMATS:
        raise InputError(
            f"{declared!r} is not a format pvinstall attaches.",
            f"Use --format {' or --format '.join(ATTACH_FORMATS)}.",
            key="--format",
        )
    info = _info(path, declared)
    found = str(info["format"])
    if found not in ATTACH_FORMATS:
        raise InputError(
            f"{path} is a {found} image; pvinstall attaches raw and qcow2 images.",
            f"Convert it: qemu-img convert -O qcow2 {path} NEW.qcow2",
            key="--source",
        )
    if found == "raw":
        return ProbedImage(path, "raw")
    folder = path.resolve().parent
    chain: list[tuple[Path, str]] = []
    current, current_info = path, info
    seen = {path.resolve()}
    while "backing-filename" in current_info:
        if len(chain) + 1 >= MAX_CHAIN:
            raise InputError(
                f"{path} has a backing chain of more than {MAX_CHAIN} images.",
                "Flatten it: qemu-img convert -O qcow2 IMAGE NEW.qcow2",
                key="--source",
            )
        named = str(current_info["backing-filename"])  # as the image's header says it
        full = str(current_info.get("full-backing-filename") or named)
        backing_format = current_info.get("backing-filename-format")
        backing = Path(full)
        if not backing.is_absolute():
            backing = current.parent / backing
        resolved = backing.resolve()
        if resolved.parent != folder or ":" in full:
            leads = f" ({resolved})" if str(resolved) != named and ":" not in full else ""
            raise InputError(
                f"{current} is backed by {named}{leads}, outside the image's folder {folder}.",
                "pvinstall attaches a backing chain only when all of it lies in the image's "
                "folder. Attach the file's bytes as they are with --format raw, or flatten "
                f"it: qemu-img convert -O qcow2 {path} NEW.qcow2",
                key="--source",
            )
        if backing_format not in ATTACH_FORMATS:
            said = f"says {backing_format}" if backing_format else "does not say its format"
            raise InputError(
                f"{current} is backed by {named}, which {said}.",
                "Record the backing file's format: qemu-img rebase -u -F qcow2 -b "
                f"{named} {current} (or -F raw).",
                key="--source",
            )
        if resolved in seen:
            raise InputError(f"the backing chain of {path} loops at {named}.", key="--source")
        seen.add(resolved)
        chain.append((resolved, str(backing_format)))
        if not resolved.is_file():
            raise InputError(
                f"{current} is backed by {named}, which does not exist.", key="--source"
            )
        current, current_info = resolved, _info(resolved, str(backing_format))
    return ProbedImage(path, "qcow2", tuple(chain))
