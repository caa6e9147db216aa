"""Digests taken while the bytes pass by: each byte of an input or an output is read
once, by whoever needs it anyway (the copy, the writer), and hashed on the way.

`OrderedDigest` is the sha256 (or, under a key, the HMAC-SHA256) of a file whose bytes
are seen out of order: pycdlib writes an image's descriptors and directories in one
order and their places in another, and reads a CD's records long before its data.
Bytes ahead of what is hashed wait in a bounded window; what never comes (the gaps an
image writer leaves, the sectors a remaster skips) is filled in at the end, as zeros
for an output and from the file for an input. An output byte written again after it
was hashed makes the digest unknown (`None`): the caller then hashes the file it wrote
(never the case for pvinstall's writers; the tests hold them to it).

Every digest is taken on a worker thread of its own (`ThreadedHash`): hashlib lets go
of the GIL while it hashes a large buffer, so the CD's sha256 and the output's digest
are taken on other cores while the main thread reads and writes, from the very buffers
it reads and writes (nothing is copied for them).
"""

from __future__ import annotations

import ctypes
import errno
import functools
import hashlib
import hmac
import io
import os
import queue
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

CHUNK = 1024 * 1024
# How many bytes ahead of the hashed ones an OrderedDigest holds: more than the
# directories of any image pvinstall writes or remasters (a few hundred KiB).
WINDOW = 16 * CHUNK
# How many buffers wait for a hash worker before the caller waits for it: bounds the
# memory a digest holds (a few MiB) whatever the speed of the disk and the hash.
QUEUE_DEPTH = 8
# A HashingWriter asks the kernel to start writing its file to disk every this many
# bytes (sync_file_range, not waiting for it): the disk then works while the build goes
# on, and the commit's fsync finds little left to write (0.2 s less for a 700 MB CD).
WRITEBACK_STEP = 32 * CHUNK
_SYNC_FILE_RANGE_WRITE = 2  # <linux/fs.h>: start writeback of the dirty pages, no wait


class _Hash(Protocol):
    def update(self, data: bytes | memoryview, /) -> None: ...

    def hexdigest(self) -> str: ...


def new_hash(key: bytes | None) -> _Hash:
    """sha256, or HMAC-SHA256 under `key`."""
    if key is None:
        return hashlib.sha256()
    return hmac.new(key, digestmod=hashlib.sha256)


class ThreadedHash:
    """A hash fed on a worker thread: `update` queues the bytes (the queue is bounded),
    the worker hashes them in their order, and `hexdigest` waits for it. The bytes
    must not change once given: a writable buffer is copied, immutable bytes (and
    read-only views of them) are hashed where they are. What the worker raises is
    raised by the next `update` or by `hexdigest`. `close` stops the worker (a digest
    abandoned half way, such as a write that failed, leaves no thread behind)."""

    def __init__(self, inner: _Hash, *, depth: int = QUEUE_DEPTH) -> None:
        self._inner = inner
        self._queue: queue.Queue[bytes | memoryview | None] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._done = False
        self._thread = threading.Thread(target=self._run, name="pvinstall-hash", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (data := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self._inner.update(data)
                except BaseException as error:  # raised in the caller's thread
                    self._error = error

    def update(self, data: bytes | bytearray | memoryview, /) -> None:
        if self._error is not None:
            raise self._error
        if self._done:
            raise ValueError("update() after the digest was taken")
        if not isinstance(data, bytes) and not (
            isinstance(data, memoryview) and data.readonly and isinstance(data.obj, bytes)
        ):
            data = bytes(data)  # the caller may reuse its buffer
        self._queue.put(data)

    def _stop(self) -> None:
        if not self._done:
            self._done = True
            self._queue.put(None)
            self._thread.join()

    def hexdigest(self) -> str:
        self._stop()
        if self._error is not None:
            raise self._error
        return self._inner.hexdigest()

    def close(self) -> None:
        self._stop()


def digest_field(key: bytes | None) -> str:
    """The manifest's name of the digest `new_hash(key)` takes."""
    return "sha256" if key is None else "hmac_sha256"


def bytes_digest(data: bytes, key: bytes | None = None) -> dict[str, str]:
    """`{"sha256": ...}`, or `{"hmac_sha256": ...}` under `key`, of bytes in memory."""
    digest = new_hash(key)
    digest.update(data)
    return {digest_field(key): digest.hexdigest()}


def file_digest(path: Path, key: bytes | None = None) -> dict[str, str]:
    """The same of a file, streamed (for an input nothing else reads whole). The holes
    of a sparse file (an exported raw template is mostly holes) are hashed as the zeros
    they read as, without reading them: the kernel's first read of a hole fills the
    page cache with zero pages, ten times slower than hashing the zeros here."""
    digest = new_hash(key)
    with path.open("rb", buffering=0) as handle:
        fd = handle.fileno()
        size = os.fstat(fd).st_size
        for start, end, is_data in _extents(fd, size):
            if not is_data:
                for offset in range(start, end, CHUNK):
                    digest.update(_ZEROS[: min(CHUNK, end - offset)])
                continue
            handle.seek(start)
            left = end - start
            while left > 0:
                chunk = handle.read(min(CHUNK, left))
                if not chunk:  # the file shrank while it was read: what it holds now
                    return {digest_field(key): digest.hexdigest()}
                digest.update(chunk)
                left -= len(chunk)
        # A file that grew after the size was taken: the rest, as before.
        handle.seek(size)
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return {digest_field(key): digest.hexdigest()}


_ZEROS = memoryview(bytes(CHUNK))


def _extents(fd: int, size: int) -> Iterator[tuple[int, int, bool]]:
    """The file's data and holes up to `size`, in order: (start, end, is_data). A file
    system without SEEK_DATA gives one data extent."""
    position = 0
    while position < size:
        try:
            data = os.lseek(fd, position, os.SEEK_DATA)
        except OSError as error:
            if error.errno == errno.ENXIO:  # nothing but a hole up to the end
                data = size
            elif error.errno in (errno.EINVAL, errno.EOPNOTSUPP):
                yield position, size, True
                return
            else:
                raise
        data = min(data, size)
        if data > position:
            yield position, data, False
        if data >= size:
            return
        hole = min(os.lseek(fd, data, os.SEEK_HOLE), size)
        if hole <= data:  # changed under us: read the rest (every step moves on)
            hole = size
        yield data, hole, True
        position = hole


class OrderedDigest:
    """The digest of a file's bytes, given as (offset, bytes) in any order.

    `fill(offset, size)` gives the bytes of a gap nobody delivered (zeros for an output,
    the file's own for an input). `rewrites_change` says whether bytes given again for
    a place already hashed may differ (an output: the digest becomes unknown) or are
    the same bytes read twice (an input: ignored).
    """

    def __init__(
        self,
        key: bytes | None,
        fill: Callable[[int, int], bytes],
        *,
        rewrites_change: bool,
        window: int = WINDOW,
    ) -> None:
        self._hash = ThreadedHash(new_hash(key))
        self.field = digest_field(key)
        self._fill = fill
        self._rewrites_change = rewrites_change
        self._window = window
        self.hashed = 0  # every byte before this offset is in the digest
        self._ahead: dict[int, bytes] = {}  # offset -> bytes, all at or after `hashed`
        self._ahead_bytes = 0
        self.broken = False

    def add(self, offset: int, data: bytes | memoryview) -> None:
        if not data or self.broken:
            return
        end = offset + len(data)
        if offset < self.hashed:
            if self._rewrites_change:
                self.broken = True
                return
            if end <= self.hashed:
                return
            data = data[self.hashed - offset :]
            offset = self.hashed
        if offset == self.hashed and not self._ahead:
            self._hash.update(data)
            self.hashed = end
            return
        previous = self._ahead.get(offset)
        if previous is not None:
            self._ahead_bytes -= len(previous)
        self._ahead[offset] = bytes(data)
        self._ahead_bytes += len(data)
        self._drain()
        while self._ahead_bytes > self._window and not self.broken:
            self._fill_to(min(self._ahead))

    def _drain(self) -> None:
        """Hash what waits at the hashed offset, in order."""
        while self._ahead and not self.broken:
            offset = min(self._ahead)
            if offset > self.hashed:
                return
            data = self._ahead.pop(offset)
            self._ahead_bytes -= len(data)
            end = offset + len(data)
            if offset < self.hashed:
                # Two deliveries overlap: the later one of an output may differ.
                if self._rewrites_change:
                    self.broken = True
                    return
                if end <= self.hashed:
                    continue
                data = data[self.hashed - offset :]
            self._hash.update(data)
            self.hashed = end

    def _fill_to(self, offset: int) -> None:
        """Hash the gap up to `offset` (nobody delivered it), then what waits there."""
        while self.hashed < offset:
            size = min(CHUNK, offset - self.hashed)
            data = self._fill(self.hashed, size)
            if len(data) != size:
                self.broken = True
                return
            self._hash.update(data)
            self.hashed += size
        self._drain()

    def finish(self, size: int) -> str | None:
        """The digest of the whole file of `size` bytes (None: unknown, see `broken`)."""
        while self._ahead and not self.broken:
            self._fill_to(min(self._ahead))
        if not self.broken:
            self._fill_to(size)
        if self.broken or self.hashed != size:
            self.close()
            return None
        return self._hash.hexdigest()

    def close(self) -> None:
        """Stop hashing (the digest is not wanted, or was taken)."""
        self._hash.close()


def _zeros(_offset: int, size: int) -> bytes:
    return bytes(size)


@functools.cache
def _sync_file_range() -> Callable[[int, int, int], object] | None:
    """Linux's sync_file_range(fd, offset, size, SYNC_FILE_RANGE_WRITE), which Python's
    os module lacks (None: no such call here; nothing is started early then)."""
    try:
        function = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    function.restype = ctypes.c_int
    return lambda fd, offset, size: function(fd, offset, size, _SYNC_FILE_RANGE_WRITE)


def start_writeback(fd: int, offset: int, size: int) -> None:
    """Have the kernel start writing a range of a file to disk, without waiting.

    Only a head start for the fsync of the commit, which is what makes the file
    durable: a failure here changes nothing, and is not looked at."""
    function = _sync_file_range()
    if function is not None:
        function(fd, offset, size)


class HashingWriter(io.RawIOBase):
    """A new output file, hashed as it is written (seeks and all), in 1 MiB writes.

    `digest()` after the last write: `{"sha256"|"hmac_sha256": ...}` of what the file
    holds. The file is created before (by the output directory, once, with its mode);
    this wraps its descriptor and closes it.
    """

    def __init__(self, fd: int, path: Path, key: bytes | None) -> None:
        super().__init__()
        self._fd = fd
        self.path = path
        self._position = 0
        self._end = 0
        self._written_back = 0  # writeback was started for the bytes before this
        self._key = key
        self._digest = OrderedDigest(key, _zeros, rewrites_change=True)
        self.read_back = False  # whether the digest had to be taken from the file

    @property
    def mode(self) -> str:  # pycdlib checks for binary mode
        return "wb"

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._fd

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._position = _sought(self._position, self._end, offset, whence)
        if self._position < 0:
            raise ValueError("negative seek position")
        return self._position

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        written = 0
        while written < len(view):
            written += os.pwrite(self._fd, view[written:], self._position + written)
        self._digest.add(self._position, view)
        self._position += written
        self._end = max(self._end, self._position)
        if self._end - self._written_back >= WRITEBACK_STEP:
            start_writeback(self._fd, self._written_back, self._end - self._written_back)
            self._written_back = self._end
        return written

    @property
    def size(self) -> int:
        return self._end

    def digest(self) -> dict[str, str]:
        value = self._digest.finish(self._end)
        if value is None:
            # Something was written twice at one place: hash what the file holds.
            self.read_back = True
            return {self._digest.field: _reread(self._fd, self._end, self._key)}
        return {self._digest.field: value}

    def close(self) -> None:
        if not self.closed:
            self._digest.close()
            os.close(self._fd)
        super().close()


def _sought(position: int, end: int, offset: int, whence: int) -> int:
    """The position a seek(offset, whence) goes to from `position` in a file of `end`
    bytes (both streams keep their own position: they read and write with pread/pwrite)."""
    if whence == io.SEEK_SET:
        return offset
    if whence == io.SEEK_CUR:
        return position + offset
    if whence == io.SEEK_END:
        return end + offset
    raise ValueError(f"whence {whence}")


def _reread(fd: int, size: int, key: bytes | None) -> str:
    digest = new_hash(key)
    offset = 0
    while offset < size:
        chunk = os.pread(fd, min(CHUNK, size - offset), offset)
        if not chunk:
            break
        digest.update(chunk)
        offset += len(chunk)
    return digest.hexdigest()


class HashingReader(io.RawIOBase):
    """An input file read by someone else (pycdlib, remastering a CD), hashed whole as
    a side effect: whatever it reads is hashed, in order, and the bytes it never reads
    are read here once, at the end or when the window is full. `digest()` after the
    reader is done."""

    def __init__(self, path: Path, key: bytes | None = None) -> None:
        super().__init__()
        self.path = path
        self._file = path.open("rb", buffering=0)
        self._fd = self._file.fileno()
        self._size = os.fstat(self._fd).st_size
        self._position = 0
        self.filled = 0  # bytes read here because nobody else did
        self._digest = OrderedDigest(key, self._fill, rewrites_change=False)

    def _fill(self, offset: int, size: int) -> bytes:
        data = os.pread(self._fd, size, offset)
        self.filled += len(data)
        return data

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._fd

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._position = _sought(self._position, self._size, offset, whence)
        return self._position

    def read(self, size: int = -1, /) -> bytes:
        """The bytes at the position, as one buffer that the caller and the digest
        share (pycdlib reads a file's data this way, then writes the same buffer)."""
        if size is None or size < 0:
            size = max(self._size - self._position, 0)
        data = os.pread(self._fd, size, self._position)
        self._digest.add(self._position, data)
        self._position += len(data)
        return data

    def readall(self) -> bytes:
        return self.read()

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)

    def digest(self) -> dict[str, str]:
        value = self._digest.finish(self._size)
        if value is None:
            raise OSError(f"{self.path} changed while it was read")
        return {self._digest.field: value}

    def close(self) -> None:
        if not self.closed:
            self._digest.close()
            self._file.close()
        super().close()
