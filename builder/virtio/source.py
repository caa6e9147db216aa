"""Driver sources, the abstraction: a read-only tree of files that may hold virtio-win
driver packages, read by streaming. A leaf module: the readers of each kind of image
(`media/iso9660.py`, `media/fat.py`) implement it, and `builder/sources.py` picks one.

Paths are relative, `/`-separated and spelled as the source spells them. A file's size
is known from the directory information alone; its bytes are read only when a medium
is written or a digest is taken, and a file that no longer has the size the source
listed is an error (the source changed during the build), however it is read.

Sources come from users and may be hostile. Every reader walks its tree within
`SourceLimits` (entries, depth, path length) with a `WalkBudget`, refuses names that
could mean another place (`check_name`), and lists only regular files: a directory
never reads outside itself (a symbolic link that leaves the tree, dangles or loops is
an input error naming it) and opens each file beneath its root without following a
link, checking that it is still the file it listed.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import re
import stat
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, ClassVar, Literal, cast

from builder.errors import BuildError, InputError, shown

SourceKind = Literal["iso", "dir", "floppy"]

GET_VIRTIO_WIN = (
    "Download virtio-win.iso from https://fedorapeople.org/groups/virt/virtio-win/"
    "direct-downloads/ (the 'stable' or an archive release) and pass it with --drivers, "
    "set $VIRTIO_WIN, or put it at drivers/virtio-win.iso."
)

CHUNK = 1024 * 1024
MIB = 1024 * 1024


@dataclass(frozen=True)
class SourceLimits:
    """How far a walk over a source goes before the source is refused as not a driver
    source. virtio-win ISOs hold about 3,000 entries at most six levels deep with paths
    under 100 characters; the limits are far above that and far below what would take
    a build minutes or gigabytes."""

    entries: int = 50_000  # files and folders together
    links: int = 20_000  # symbolic links followed (each costs a resolution)
    depth: int = 32  # folders below the root
    path_chars: int = 1024  # characters of a relative path
    scan_bytes: int = 256 * MIB  # every INF file read by one scan, together
    selected_bytes: int = 4096 * MIB  # every file of the selected packages, together


DEFAULT_LIMITS = SourceLimits()

_REFUSE_HINT = "Check that the source is a virtio-win release (an ISO, its files, or a .vfd)."


class WalkBudget:
    """What one walk over a source has seen, refused once it passes a limit."""

    def __init__(self, source: Path, limits: SourceLimits = DEFAULT_LIMITS) -> None:
        self._source = source
        self._limits = limits
        self._entries = 0
        self._links = 0

    def _refuse(self, what: str) -> InputError:
        return InputError(f"{self._source} {what}.", _REFUSE_HINT, key=str(self._source))

    def entry(self, path: str) -> None:
        """Count one entry (file or folder) at relative `path`."""
        self._entries += 1
        if self._entries > self._limits.entries:
            raise self._refuse(f"has more than {self._limits.entries} files and folders")
        if len(path) > self._limits.path_chars:
            raise self._refuse(
                f"has a path longer than {self._limits.path_chars} characters ({path[:60]}...)"
            )

    def link(self, path: str) -> None:
        """Count one symbolic link followed at `path`."""
        self._links += 1
        if self._links > self._limits.links:
            raise self._refuse(f"has more than {self._limits.links} symbolic links")

    def folder(self, path: str, depth: int) -> None:
        """Enter folder `path`, `depth` levels below the root."""
        if depth > self._limits.depth:
            raise self._refuse(
                f"has folders nested more than {self._limits.depth} deep ({path[:60]}...)"
            )


# A separator, a control character, or a lone surrogate (bytes that were not UTF-8).
# One pattern search per name: every entry of a 6000-file ISO passes through here.
_NOT_IN_A_NAME = re.compile("[/\\\\\x00-\x1f\x7f\ud800-\udfff]")


def check_name(source: Path, parent: str, name: str) -> None:
    """Refuse a name that is not one plain name: empty, `.`, `..`, a separator, or a
    control character. Such a name read as a path would mean another place."""
    if name in ("", ".", "..") or _NOT_IN_A_NAME.search(name):
        where = f"{parent}/" if parent else ""
        raise InputError(
            f"{source} has an entry named {shown(name)} in {where or 'its root'}: a file name "
            "cannot be empty, '.' or '..', or hold a '/', a '\\', a control character or "
            "bytes that are not UTF-8.",
            "The image is damaged or crafted; use a virtio-win release.",
            key=str(source),
        )


def unreadable(path: Path | str, exc: OSError, key: str = "") -> InputError:
    """The one error for a source file or folder the user running pvinstall cannot read."""
    reason = exc.strerror or str(exc)
    hint = (
        "Check its permissions: pvinstall reads every file of the driver source as the "
        "user it runs as (chmod -R a+rX on the folder, or run as a user who can read it)."
        if exc.errno in (errno.EACCES, errno.EPERM)
        else "Check the disk and the file."
    )
    return InputError(f"cannot read {path}: {reason}.", hint, key=key or str(path))


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


@dataclass(frozen=True)
class _DirFile:
    """A regular file of a directory source: where it is listed, where it really is
    (folder names below the root, no links), and the inode it was when listed."""

    path: str
    size: int
    real_parts: tuple[str, ...]
    inode: tuple[int, int]


_LINKS_FOLLOWED = (
    "a link is followed only to a file or folder inside the source, and never round a loop"
)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)


class DirectorySource(DriverSource):
    """A driver folder: an extracted ISO, `/usr/share/virtio-win/drivers/by-driver` or
    `by-os`, or the pre-2015 `Wnet/Wlh/Win7` tree.

    The folder is the boundary: a symbolic link is followed only when it resolves inside
    the folder, to something that exists, without a loop; anything but folders and
    regular files (fifos, sockets, devices) is refused by name. Files are opened one
    folder at a time from the root with `O_NOFOLLOW`, and must be the inode listed, so a
    link swapped in after the listing cannot lead outside either.
    """

    kind = "dir"

    def __init__(self, path: Path, limits: SourceLimits = DEFAULT_LIMITS) -> None:
        super().__init__(path, path.name)
        self._limits = limits
        self._listing: dict[str, _DirFile] | None = None
        self._root: tuple[str, tuple[int, int]] | None = None

    def _real_root(self) -> tuple[str, tuple[int, int]]:
        if self._root is None:
            try:
                real = os.path.realpath(self.path, strict=True)
                info = Path(real).stat()
            except OSError as exc:
                raise unreadable(self.path, exc) from None
            if not stat.S_ISDIR(info.st_mode):
                raise InputError(f"{self.path} is not a folder.", key=str(self.path))
            self._root = (real, (info.st_dev, info.st_ino))
        return self._root

    def files(self) -> tuple[SourceEntry, ...]:
        return tuple(SourceEntry(f.path, f.size) for f in self._files().values())

    def _files(self) -> dict[str, _DirFile]:
        if self._listing is None:
            found = sorted(self._walk(), key=lambda f: f.path)
            self._listing = {f.path: f for f in found}
        return self._listing

    def _walk(self) -> list[_DirFile]:
        root, root_inode = self._real_root()
        budget = WalkBudget(self.path, self._limits)
        found: list[_DirFile] = []
        # (listed path, real folder, its parts below the root, inodes of the folders
        # above it and itself: a link back to one of them is a loop)
        pending: list[tuple[str, str, tuple[str, ...], frozenset[tuple[int, int]]]] = [
            ("", root, (), frozenset({root_inode}))
        ]
        while pending:
            listed, real, parts, above = pending.pop()
            try:
                with os.scandir(real) as scan:
                    entries = sorted(scan, key=lambda e: e.name)
            except OSError as exc:
                raise unreadable(self.path / listed if listed else self.path, exc) from None
            for entry in entries:
                path = f"{listed}/{entry.name}" if listed else entry.name
                budget.entry(path)
                check_name(self.path, listed, entry.name)
                target_parts = (*parts, entry.name)
                try:
                    info = entry.stat(follow_symlinks=False)
                except OSError as exc:
                    raise unreadable(self.path / path, exc) from None
                if stat.S_ISLNK(info.st_mode):
                    budget.link(path)
                    target_parts, info = self._follow(path, entry.path, root)
                inode = (info.st_dev, info.st_ino)
                if stat.S_ISDIR(info.st_mode):
                    if inode in above:
                        raise self._refused(
                            path, "leads back to a folder above it (a loop)", _LINKS_FOLLOWED
                        )
                    budget.folder(path, len(path.split("/")))
                    target = str(Path(root, *target_parts))
                    pending.append((path, target, target_parts, above | {inode}))
                elif stat.S_ISREG(info.st_mode):
                    found.append(_DirFile(path, info.st_size, target_parts, inode))
                else:
                    raise self._refused(path, f"is {mode_kind(info.st_mode)}, not a file")
        return found

    def _refused(
        self, path: str, what: str, why: str = "a driver source holds only folders and files"
    ) -> InputError:
        return InputError(
            f"{self.path / path} {what}: {why}.",
            "Remove it, or copy the driver folder without it (cp -rL copies what links point to).",
            key=str(self.path / path),
        )

    def _follow(self, path: str, link: str, root: str) -> tuple[tuple[str, ...], os.stat_result]:
        """Where the link at `path` leads, as parts below the root, and what is there;
        InputError when it leads outside the source, nowhere, or round in a loop."""
        try:
            target = str(Path(link).readlink())
        except OSError as exc:
            raise unreadable(self.path / path, exc) from None
        try:
            real = os.path.realpath(link, strict=True)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise self._refused(
                    path, f"is a symbolic link to {target} in a loop", _LINKS_FOLLOWED
                ) from None
            raise self._refused(
                path, f"is a symbolic link to {target}, which does not exist", _LINKS_FOLLOWED
            ) from None
        if os.path.commonpath([root, real]) != root:
            raise InputError(
                f"{self.path / path} is a symbolic link to {target}, outside the driver "
                f"source {self.path}: a source never reads outside itself.",
                "Copy the file into the source (cp -L), or give the folder that holds both "
                "the link and what it points to.",
                key=str(self.path / path),
            )
        parts = tuple(Path(real).relative_to(root).parts)
        try:
            info = Path(real).lstat()
        except OSError as exc:
            raise unreadable(self.path / path, exc) from None
        return parts, info

    def open(self, path: str) -> AbstractContextManager[IO[bytes]]:
        listed = self._files()[path]
        fd = self._open_beneath(listed)
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or (info.st_dev, info.st_ino) != listed.inode:
                raise source_changed(self, path, "is no longer the file that was listed")
        except BaseException:
            os.close(fd)
            raise
        return os.fdopen(fd, "rb")

    def _open_beneath(self, listed: _DirFile) -> int:
        """A descriptor of the listed file, opened one folder at a time from the root
        without following a link (openat with O_NOFOLLOW), so it is inside the source."""
        root, root_inode = self._real_root()
        where = self.path / listed.path
        try:
            fd = os.open(root, os.O_RDONLY | _O_DIRECTORY | _O_CLOEXEC)
        except OSError as exc:
            raise unreadable(self.path, exc) from None
        try:
            info = os.fstat(fd)
            if (info.st_dev, info.st_ino) != root_inode:
                raise source_changed(self, listed.path, "is in a folder that was replaced")
            *folders, name = listed.real_parts
            for folder in folders:
                child = os.open(
                    folder, os.O_RDONLY | _O_DIRECTORY | _O_NOFOLLOW | _O_CLOEXEC, dir_fd=fd
                )
                os.close(fd)
                fd = child
            # O_NONBLOCK: a fifo swapped in for the file must not block the open.
            child = os.open(name, os.O_RDONLY | _O_NOFOLLOW | _O_NONBLOCK | _O_CLOEXEC, dir_fd=fd)
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EPERM):
                raise unreadable(where, exc) from None
            if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.ENOENT):
                raise source_changed(self, listed.path, "was moved or replaced") from None
            raise BuildError(f"cannot read {where}: {exc.strerror}.") from None
        finally:
            os.close(fd)
        return child


_MODE_KINDS = {
    stat.S_IFIFO: "a fifo (named pipe)",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFLNK: "a symbolic link",
    stat.S_IFDIR: "a folder",
    stat.S_IFREG: "a file",
}


def mode_kind(mode: int) -> str:
    """What a POSIX mode says an entry is (`a fifo (named pipe)`, ...), for messages."""
    return _MODE_KINDS.get(stat.S_IFMT(mode), f"an entry of type {stat.S_IFMT(mode):o}")


# After --drivers and $VIRTIO_WIN (docs/design.md §5, the command line).
DEFAULT_SOURCES = (
    "drivers/virtio-win.iso",
    "/usr/share/virtio-win/virtio-win.iso",
    "/usr/share/virtio-win/drivers/by-driver",
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
