"""The files of a medium, as every writer gets them (pure data).

`PlannedFile` is one file of a medium: where it goes and either its bytes or the file
of the driver source they are streamed from when the medium is written. Its `open`,
`read` and `sha256` are the one way to get at those bytes, whichever writer asks.
`IsoPlan` is a data ISO of planned files, the drivers ISO writer's input.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from builder.virtio.source import DriverSource


@dataclass(frozen=True)
class PlannedFile:
    """One file of a medium: destination path (`/`-separated, spelled as Windows shows
    it), size, and either its bytes (`data`) or its path in the driver source
    (`source_path`, streamed at write time). `data` is kept out of `repr`: answer files
    hold the administrator password."""

    path: str
    size: int
    data: bytes | None = field(default=None, repr=False)
    source_path: str | None = None

    def __post_init__(self) -> None:
        if (self.data is None) == (self.source_path is None):
            raise ValueError(f"{self.path}: give exactly one of data and source_path")
        if self.data is not None and len(self.data) != self.size:
            raise ValueError(f"{self.path}: size {self.size} but {len(self.data)} bytes")

    @classmethod
    def inline(cls, path: str, data: bytes) -> PlannedFile:
        """A file whose bytes are known now (answer files, scripts, tag files)."""
        return cls(path, len(data), data=data)

    @classmethod
    def from_source(cls, path: str, source_path: str, size: int) -> PlannedFile:
        """A file copied from the driver source at write time."""
        return cls(path, size, source_path=source_path)

    def open(self, source: DriverSource) -> IO[bytes]:
        """The bytes as a stream: its own, or exactly `size` bytes of its source file."""
        if self.source_path is not None:
            return source.open_exact(self.source_path, self.size)
        return io.BytesIO(self.data or b"")

    def read(self, source: DriverSource) -> bytes:
        """All the bytes (for a writer that takes a file in one piece)."""
        if self.source_path is not None:
            return source.read_exact(self.source_path, self.size)
        return self.data or b""

    def sha256(self, digests: Mapping[str, str]) -> str:
        """The sha256 of the bytes; a source file's comes from `digests` (taken at the
        edge, once per file), so that this stays pure."""
        if self.source_path is not None:
            return digests[self.source_path]
        return hashlib.sha256(self.data or b"").hexdigest()


@dataclass(frozen=True)
class IsoPlan:
    """A data ISO (the drivers ISO): volume label and files."""

    label: str
    files: tuple[PlannedFile, ...]


@dataclass(frozen=True)
class OverlayPlan:
    """A copy-on-write overlay of the user's DVD (qcow2 over the raw ISO) that differs
    from it in `patched_sector` alone, written at byte `offset` (the boot catalog: its
    UEFI entry points at efisys_noprompt.bin). `patched_sector` None: the overlay
    changes nothing (a BIOS build of a DVD without efisys_noprompt.bin). `note` says what
    was changed, for the progress output."""

    offset: int
    patched_sector: bytes | None = field(repr=False)
    note: str


# Writers write in blocks of this size (pycdlib's default is 32 KiB).
WRITE_BLOCK = 1024 * 1024


@contextlib.contextmanager
def output_stream(out: Path | IO[bytes]) -> Iterator[IO[bytes]]:
    """`out` as a stream to write a medium into: a path is created (and removed again
    when writing fails); a stream (a new file of the output directory, hashed as it is
    written) is used as it is, and its owner removes it."""
    if not isinstance(out, Path):
        yield out
        return
    try:
        with out.open("wb") as handle:
            yield handle
    except BaseException:
        out.unlink(missing_ok=True)
        raise
