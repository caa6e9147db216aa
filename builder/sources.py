"""Driver sources: where the virtio-win drivers of a build come from.

The dispatcher over the three kinds (the interface is `builder/virtio/source.py`): a
virtio-win ISO read in place (`media/iso9660.py`), a directory (an extracted ISO,
`/usr/share/virtio-win/drivers/by-driver` or `by-os`, the pre-2015 `Wnet/Wlh/Win7`
tree), and a legacy virtio-win floppy image (`media/fat.py`). `find_source` applies
the search order of the command line contract (kept in `builder/virtio/source.py`, a
leaf the build cache uses without loading the readers); `open_source` tells the kinds
apart.
"""

from __future__ import annotations

from pathlib import Path

from builder.errors import InputError
from builder.media.fat_reader import FloppySource, looks_like_fat_image
from builder.media.iso_reader import IsoSource, is_iso_image
from builder.virtio import source as source_interface
from builder.virtio.selection import DriverSet
from builder.virtio.signatures import MAX_CATALOG_BYTES
from builder.virtio.source import (
    DEFAULT_LIMITS,
    GET_VIRTIO_WIN,
    DirectorySource,
    DriverSource,
    SourceLimits,
    unreadable,
)

# The search order lives with the DriverSource interface (a leaf: the build cache finds
# the source without loading the readers); these names are this module's as before.
DEFAULT_SOURCES = source_interface.DEFAULT_SOURCES
find_source = source_interface.find_source


def require_source_exists(path: Path) -> None:
    """InputError (--drivers) when the driver source `path` does not exist."""
    if not path.exists():
        raise InputError(
            f"driver source {path} does not exist.",
            f"Check the path. {GET_VIRTIO_WIN}",
            key="--drivers",
        )


def open_source(path: Path) -> DriverSource:
    """Open a driver source of whatever kind `path` is; InputError if it is none of them."""
    require_source_exists(path)
    if path.is_dir():
        return DirectorySource(path)
    if not path.is_file():
        raise InputError(
            f"driver source {path} is neither a file nor a directory.",
            "Give a virtio-win ISO, a driver folder or a virtio-win floppy image.",
            key="--drivers",
        )
    try:
        if is_iso_image(path):
            return IsoSource(path)
        if looks_like_fat_image(path):
            return FloppySource(path)
    except OSError as exc:
        raise unreadable(path, exc, key="--drivers") from None
    raise InputError(
        f"{path} is not an ISO 9660 image, a FAT floppy image or a directory.",
        f"Give a virtio-win ISO, a driver folder or a virtio-win .vfd image. {GET_VIRTIO_WIN}",
        key="--drivers",
    )


def driver_digests(
    source: DriverSource, drivers: DriverSet, limits: SourceLimits = DEFAULT_LIMITS
) -> dict[str, str]:
    """The sha256 of every file of the selected packages and of every installer, by path
    in `source`: read once here, at the edge, for the build id, the manifest and every
    medium's file list.

    InputError, before anything is read, when the packages and installers together are larger than
    `limits.selected_bytes` (real ones are a few MiB; a huge file named by an INF would
    otherwise be copied onto the drivers ISO).
    """
    files = {f.path: f.size for d in drivers.selected for f in d.files}
    files.update({i.path: i.size for i in drivers.installers})
    total = sum(files.values())
    if total > limits.selected_bytes:
        largest = sorted(files, key=lambda p: files[p], reverse=True)[:3]
        raise InputError(
            f"the selected driver packages are {total} bytes together, more than the "
            f"{limits.selected_bytes // 2**20} MiB pvinstall accepts (a virtio-win "
            "release's are a few MiB); the largest: "
            + ", ".join(f"{source.describe(p)} ({files[p]} bytes)" for p in largest)
            + ".",
            "Check that the source is a virtio-win release.",
            key="--drivers",
        )
    return {path: source.sha256(path) for path in files}


def read_catalogs(source: DriverSource, drivers: DriverSet) -> dict[str, bytes]:
    """The bytes of each selected package's catalog, by path in `source` (their digests
    are remembered, so the catalogs are read once). A catalog larger than any real one is
    read only far enough to tell (`signatures.read_catalog` refuses it)."""
    found: dict[str, bytes] = {}
    for driver in drivers.selected:
        catalog = driver.catalog
        if catalog is None or catalog.path in found:
            continue
        if catalog.size > MAX_CATALOG_BYTES:
            with source.open(catalog.path) as stream:
                found[catalog.path] = stream.read(MAX_CATALOG_BYTES + 1)
        else:
            found[catalog.path] = source.read_bytes(catalog.path, MAX_CATALOG_BYTES)
    return found
