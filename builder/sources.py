"""Driver sources: where virtio-win drivers are read from, read-only and streaming.

One interface, three kinds: a virtio-win ISO read in place (`iso.py`), a directory
(an extracted ISO, `/usr/share/virtio-win/drivers/by-driver` or `by-os`, the
pre-2015 `Wnet/Wlh/Win7` tree), and a legacy virtio-win floppy image (`floppy.py`).
Paths are relative, `/`-separated and spelled as the source spells them.
"""

from __future__ import annotations

import hashlib
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, ClassVar, Literal

from builder.errors import InputError
from builder.media import fat as floppy
from builder.media import iso9660 as iso

SourceKind = Literal["iso", "dir", "floppy"]

# DESIGN.md: --drivers, $VIRTIO_WIN, then these.
DEFAULT_SOURCES = (
    "drivers/virtio-win.iso",
    "/usr/share/virtio-win/virtio-win.iso",
    "/usr/share/virtio-win/drivers/by-driver",
)
GET_VIRTIO_WIN = (
    "Download virtio-win.iso from https://fedorapeople.org/groups/virt/virtio-win/"
    "direct-downloads/ (the 'stable' or an archive release) and pass it with --drivers, "
    "set $VIRTIO_WIN, or put it at drivers/virtio-win.iso."
)

CHUNK = 1024 * 1024


@dataclass(frozen=True)
class SourceFile:
    """One file in a source: relative path as the source spells it, and its size."""

    path: str
    size: int


class DriverSource(ABC):
    """A read-only tree of files that may hold virtio-win driver packages."""

    kind: ClassVar[SourceKind]

    def __init__(self, path: Path, label: str) -> None:
        self.path = path
        self.label = label

    def __enter__(self) -> DriverSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:  # noqa: B027 - directories hold nothing open
        """Release the image; a directory holds nothing open."""

    @abstractmethod
    def files(self) -> tuple[SourceFile, ...]:
        """Every file, sorted by path; only directory information is read."""

    @abstractmethod
    def open(self, path: str) -> AbstractContextManager[IO[bytes]]:
        """A stream of one file's bytes, read as consumed."""

    def read_bytes(self, path: str, limit: int) -> bytes:
        """The whole of a small file (an INF or a catalog); refuses one over `limit` bytes."""
        size = self.size(path)
        if size > limit:
            raise InputError(
                f"{self.describe(path)} is {size} bytes, more than the {limit} expected "
                "for this kind of file.",
                "Check that the source is a virtio-win release.",
                key=str(self.path),
            )
        with self.open(path) as stream:
            return stream.read(size + 1)

    def size(self, path: str) -> int:
        return self._index()[path].size

    def sha256(self, path: str) -> str:
        digest = hashlib.sha256()
        for chunk in self.iter_chunks(path):
            digest.update(chunk)
        return digest.hexdigest()

    def iter_chunks(self, path: str) -> Iterator[bytes]:
        with self.open(path) as stream:
            while chunk := stream.read(CHUNK):
                yield chunk

    def describe(self, path: str) -> str:
        """`path` inside the source, for messages: `virtio-win.iso:viostor/2k8/...`."""
        return f"{self.path}:{path}" if self.kind != "dir" else str(self.path / path)

    def _index(self) -> Mapping[str, SourceFile]:
        cached: Mapping[str, SourceFile] | None = getattr(self, "_index_cache", None)
        if cached is None:
            cached = {f.path: f for f in self.files()}
            self._index_cache = cached
        return cached

    def as_json(self) -> dict[str, str]:
        return {"path": str(self.path), "kind": self.kind, "label": self.label}


class DirectorySource(DriverSource):
    kind = "dir"

    def __init__(self, path: Path) -> None:
        super().__init__(path, path.name)
        self._files: tuple[SourceFile, ...] | None = None

    def files(self) -> tuple[SourceFile, ...]:
        if self._files is None:
            found: list[SourceFile] = []
            for root, dirs, names in os.walk(self.path, followlinks=True):
                dirs.sort()
                base = Path(root)
                for name in names:
                    full = base / name
                    try:
                        if not full.is_file():
                            continue
                        size = full.stat().st_size
                    except OSError:
                        continue
                    found.append(SourceFile(full.relative_to(self.path).as_posix(), size))
            self._files = tuple(sorted(found, key=lambda f: f.path))
        return self._files

    def open(self, path: str) -> AbstractContextManager[IO[bytes]]:
        return (self.path / path).open("rb")


class _ReaderSource(DriverSource):
    """A source backed by an image reader (ISO or floppy) that keeps the image open."""

    def __init__(self, path: Path, reader: iso.IsoReader | floppy.FloppyReader) -> None:
        super().__init__(path, reader.label)
        self._reader = reader
        self._native = {e.path: e for e in reader.entries()}

    def close(self) -> None:
        self._reader.close()

    def files(self) -> tuple[SourceFile, ...]:
        return tuple(SourceFile(e.path, e.size) for e in self._native.values())

    def open(self, path: str) -> AbstractContextManager[IO[bytes]]:
        entry = self._native[path]
        if isinstance(self._reader, iso.IsoReader):
            assert isinstance(entry, iso.IsoEntry)
            return self._reader.open(entry)
        assert isinstance(entry, floppy.FloppyEntry)
        return self._reader.open(entry)


class IsoSource(_ReaderSource):
    kind = "iso"

    def __init__(self, path: Path) -> None:
        super().__init__(path, iso.IsoReader(path))


class FloppySource(_ReaderSource):
    kind = "floppy"

    def __init__(self, path: Path) -> None:
        super().__init__(path, floppy.FloppyReader(path))


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
        if iso.is_iso_image(path):
            return IsoSource(path)
        if floppy.looks_like_fat_image(path):
            return FloppySource(path)
    except OSError as exc:
        raise InputError(
            f"cannot read driver source {path}: {exc.strerror}.",
            "Check the file's permissions.",
            key="--drivers",
        ) from None
    raise InputError(
        f"{path} is not an ISO 9660 image, a FAT floppy image or a directory.",
        f"Give a virtio-win ISO, a driver folder or a virtio-win .vfd image. {GET_VIRTIO_WIN}",
        key="--drivers",
    )


def find_source(
    explicit: str | None,
    environ: Mapping[str, str] | None = None,
    exists: Callable[[Path], bool] = Path.exists,
) -> Path:
    """The driver source to use: --drivers, $VIRTIO_WIN, then DEFAULT_SOURCES."""
    env = os.environ if environ is None else environ
    if explicit:
        return Path(explicit)
    if env.get("VIRTIO_WIN"):
        return Path(env["VIRTIO_WIN"])
    for candidate in DEFAULT_SOURCES:
        if exists(Path(candidate)):
            return Path(candidate)
    searched = ", ".join(["--drivers", "$VIRTIO_WIN", *DEFAULT_SOURCES])
    raise InputError(
        f"no virtio-win driver source found (searched {searched}).",
        GET_VIRTIO_WIN,
        key="--drivers",
    )
