"""Driver sources, the abstraction: a read-only tree of files that may hold virtio-win
driver packages, read by streaming. A leaf module: the readers of each kind of image
(`media/iso9660.py`, `media/fat.py`) implement it, and `builder/sources.py` picks one.

Paths are relative, `/`-separated and spelled as the source spells them. A file's size
is known from the directory information alone; its bytes are read only when a medium
is written or a digest is taken, and a file that no longer has the size the source
listed is an error (the source changed during the build), however it is read.
"""

from __future__ import annotations

import hashlib
import io
import os
from abc import ABC, abstractmethod
from collections.abc import Mapping
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, ClassVar, Literal, cast

from builder.errors import BuildError, InputError

SourceKind = Literal["iso", "dir", "floppy"]

GET_VIRTIO_WIN = (
    "Download virtio-win.iso from https://fedorapeople.org/groups/virt/virtio-win/"
    "direct-downloads/ (the 'stable' or an archive release) and pass it with --drivers, "
    "set $VIRTIO_WIN, or put it at drivers/virtio-win.iso."
)

CHUNK = 1024 * 1024


@dataclass(frozen=True)
class SourceEntry:
    """One file in a source: its relative path as the source spells it, and its size."""

    path: str
    size: int


class DriverSource(ABC):
    """A read-only tree of files that may hold virtio-win driver packages."""

    kind: ClassVar[SourceKind]

    def __init__(self, path: Path, label: str) -> None:
        self.path = path
        self.label = label
        self._index_cache: Mapping[str, SourceEntry] | None = None
        self._digests: dict[str, str] = {}

    def __enter__(self) -> DriverSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:  # noqa: B027 - directories hold nothing open
        """Release the image; a directory holds nothing open."""

    @abstractmethod
    def files(self) -> tuple[SourceEntry, ...]:
        """Every file, sorted by path; only directory information is read."""

    @abstractmethod
    def open(self, path: str) -> AbstractContextManager[IO[bytes]]:
        """A stream of one file's bytes, read as consumed."""

    def size(self, path: str) -> int:
        return self._index()[path].size

    def read_bytes(self, path: str, limit: int) -> bytes:
        """The whole of a small file (an INF); refuses one over `limit` bytes."""
        size = self.size(path)
        if size > limit:
            raise InputError(
                f"{self.describe(path)} is {size} bytes, more than the {limit} expected "
                "for this kind of file.",
                "Check that the source is a virtio-win release.",
                key=str(self.path),
            )
        data = self.read_exact(path, size)
        # Read each byte once: a later digest of the same file comes from here.
        self._digests.setdefault(path, hashlib.sha256(data).hexdigest())
        return data

    def open_exact(self, path: str, size: int) -> IO[bytes]:
        """A stream of exactly `size` bytes of `path`, opened on the first read and closed
        after the last one; BuildError when the file turns out shorter or longer."""
        return cast(IO[bytes], SizedStream(self, path, size))

    def read_exact(self, path: str, size: int) -> bytes:
        """All `size` bytes of `path`; BuildError when the file has another size."""
        with self.open_exact(path, size) as stream:
            return stream.read()

    def sha256(self, path: str) -> str:
        """The sha256 of `path`, read once per source (every later call is remembered)."""
        if path not in self._digests:
            digest = hashlib.sha256()
            with self.open_exact(path, self.size(path)) as stream:
                while chunk := stream.read(CHUNK):
                    digest.update(chunk)
            self._digests[path] = digest.hexdigest()
        return self._digests[path]

    def describe(self, path: str) -> str:
        """`path` inside the source, for messages: `virtio-win.iso:viostor/2k8/...`."""
        return f"{self.path}:{path}" if self.kind != "dir" else str(self.path / path)

    def _index(self) -> Mapping[str, SourceEntry]:
        if self._index_cache is None:
            self._index_cache = {f.path: f for f in self.files()}
        return self._index_cache

    def as_json(self) -> dict[str, str]:
        return {"path": str(self.path), "kind": self.kind, "label": self.label}


def source_changed(source: DriverSource, path: str, detail: str) -> BuildError:
    """The one error for a source file that is not what the source listed."""
    return BuildError(
        f"{source.describe(path)} {detail}; the driver source changed during the build.",
        "Build again from a source nothing writes to while pvinstall reads it.",
    )


class SizedStream(io.RawIOBase):
    """Exactly `size` bytes of one source file, for a writer that reads them later.

    The file is opened on the first read and closed as soon as its last byte is
    delivered, so that a writer holding many of these (pycdlib reads them all at
    `write()` time) keeps only one file open. Fewer or more bytes than planned are an
    error: a short read would otherwise be padded silently by the consumer.
    """

    def __init__(self, source: DriverSource, path: str, size: int) -> None:
        super().__init__()
        self._source = source
        self._path = path
        self._size = size
        self._position = 0
        self._stack: ExitStack | None = None
        self._stream: IO[bytes] | None = None

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        # pycdlib seeks to the start of the data before copying it.
        if (offset, whence) != (0, io.SEEK_SET):
            raise io.UnsupportedOperation("a source stream can only be rewound")
        self._release()
        self._position = 0
        return 0

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        wanted = min(len(view), self._size - self._position)
        if wanted <= 0:
            return 0
        stream = self._open()
        data = stream.read(wanted)
        while 0 < len(data) < wanted:
            more = stream.read(wanted - len(data))
            if not more:
                break
            data += more
        if len(data) < wanted:
            raise source_changed(
                self._source,
                self._path,
                f"ended after {self._position + len(data)} bytes where {self._size} were expected",
            )
        view[: len(data)] = data
        self._position += len(data)
        if self._position == self._size:
            if stream.read(1):
                raise source_changed(
                    self._source, self._path, f"is longer than the {self._size} bytes expected"
                )
            self._release()
        return len(data)

    def _open(self) -> IO[bytes]:
        if self._stream is None:
            self._stack = ExitStack()
            self._stream = self._stack.enter_context(self._source.open(self._path))
        return self._stream

    def _release(self) -> None:
        if self._stack is not None:
            self._stack.close()
        self._stack = None
        self._stream = None

    def close(self) -> None:
        self._release()
        super().close()


class DirectorySource(DriverSource):
    """A driver folder: an extracted ISO, `/usr/share/virtio-win/drivers/by-driver` or
    `by-os`, or the pre-2015 `Wnet/Wlh/Win7` tree."""

    kind = "dir"

    def __init__(self, path: Path) -> None:
        super().__init__(path, path.name)
        self._files: tuple[SourceEntry, ...] | None = None

    def files(self) -> tuple[SourceEntry, ...]:
        if self._files is None:
            found: list[SourceEntry] = []
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
                    found.append(SourceEntry(full.relative_to(self.path).as_posix(), size))
            self._files = tuple(sorted(found, key=lambda f: f.path))
        return self._files

    def open(self, path: str) -> AbstractContextManager[IO[bytes]]:
        return (self.path / path).open("rb")
