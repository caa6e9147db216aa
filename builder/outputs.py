"""The output directory: at every instant either the previous complete build or the new
one, locked while a run uses it.

    OUT/NAME -> .pvinstall/current/NAME   every file the manifest lists, and manifest.json
    OUT/.pvinstall/current -> gen-ID      the build OUT shows
    OUT/.pvinstall/gen-ID/                that build's files (a new one is written beside it)
    OUT/.pvinstall/lock                   flock'ed by the run that uses OUT: pid, start, command
    OUT/.pvinstall/hmac.key               the key of the manifest's keyed digests (mode 0600)

A build writes every file, the manifest last, into a new generation directory; one
rename of the `current` symlink then switches every name in OUT at once (the commit).
What a crash leaves besides the old or the new build (a generation nobody points to,
names that point to nothing) is removed by the next run that takes the lock. Only what
pvinstall made is ever removed: its own bookkeeping directory, and names in OUT that are
its symlinks or that a manifest of OUT listed.

`Staging` (convert's state directory, whose files several domains share) stages files
in the same locked bookkeeping directory and renames each into place.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import secrets
import shutil
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from builder import interrupts
from builder.errors import BuildError, InputError

STATE_DIR = ".pvinstall"
LOCK_FILE = "lock"
CURRENT = "current"
GENERATION_PREFIX = "gen-"
STAGE_PREFIX = "stage-"
KEY_FILE = "hmac.key"
CACHE_FILE = "cache.json"
MANIFEST = "manifest.json"
# The staging folders of pvinstall before the generations (tempfile.mkdtemp's names):
# removed like stale generations.
_LEGACY_STAGING = re.compile(r"\.pvinstall-[a-z0-9_]{8}")
_TEMPORARY = re.compile(r"\.[^/]+\.pvinstall-new-[0-9a-f]{12}")
_KEY = re.compile(r"[0-9a-f]{64}\n?")
# Whatever a bookkeeping directory holds, a sweep looks at this many entries at most.
MAX_SWEEP_ENTRIES = 10_000

# Errors that mean "no room": the file system or the user's quota is full.
_NO_ROOM = (errno.ENOSPC, errno.EDQUOT)
# Errors that mean "OUT cannot be written": the user must choose another --out.
_UNWRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS)


# -- errors ----------------------------------------------------------------------------


def format_bytes(size: int) -> str:
    value = float(size)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{int(value)} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def free_bytes(path: Path) -> int | None:
    """The bytes an unprivileged user may still write where `path` is (None: unknown)."""
    try:
        found = os.statvfs(path)
    except OSError:
        return None
    return found.f_bavail * found.f_frsize


def unwritable_error(out: Path, error: OSError) -> InputError:
    """--out cannot be written: read-only, or not ours to write."""
    why = "it is on a read-only file system" if error.errno == errno.EROFS else "permission denied"
    where = f" ({error.filename})" if error.filename and str(error.filename) != str(out) else ""
    return InputError(
        f"cannot write to {out}: {why}{where}.",
        "Choose a directory you can write to with --out.",
        key="--out",
    )


def no_room_error(out: Path, what: str, needed: int | None, free: int | None) -> BuildError:
    """The file system of OUT is full; `needed` is the room the whole build takes."""
    need = f" The build needs about {format_bytes(needed)} there" if needed else ""
    had = f"; {format_bytes(free)} were free when it began" if free is not None else ""
    return BuildError(
        f"no room left on the file system of {out} while writing {what}.{need}{had}.",
        "Free some room (the previous build in OUT stays until the new one is complete) "
        "or choose another --out.",
    )


def os_error(
    out: Path, what: str, error: OSError, *, needed: int | None = None, free: int | None = None
) -> InputError | BuildError:
    """An OSError while writing OUT, as the sentence it deserves."""
    if error.errno in _NO_ROOM:
        return no_room_error(out, what, needed, free)
    if error.errno in _UNWRITABLE:
        return unwritable_error(out, error)
    return BuildError(f"writing {what} in {out} failed: {error.strerror or error}.")


# -- the lock --------------------------------------------------------------------------


@dataclass(frozen=True)
class Holder:
    """Who holds a directory's lock, as its lock file says."""

    pid: int | None
    started: str | None
    command: str | None

    def describe(self) -> str:
        what = self.command or "pvinstall"
        facts = [
            f"pid {self.pid}" if self.pid else "",
            f"started {self.started}" if self.started else "",
        ]
        said = ", ".join(f for f in facts if f)
        return f"{what} ({said})" if said else what


def _read_holder(fd: int) -> Holder:
    try:
        data = json.loads(os.pread(fd, 4096, 0).decode("utf-8"))
    except (OSError, ValueError):
        return Holder(None, None, None)
    if not isinstance(data, dict):
        return Holder(None, None, None)
    pid = data.get("pid")
    return Holder(
        pid if isinstance(pid, int) else None,
        str(data["started"]) if "started" in data else None,
        str(data["command"]) if "command" in data else None,
    )


class DirectoryLock:
    """An exclusive flock on `STATE_DIR/lock` in a directory, held by one run.

    The lock file says who holds it (pid, start time, command), so that a second run
    can name the first. It may be removed while held (`release(remove=True)`): a run
    that locked the removed file notices and locks the new one.
    """

    def __init__(self, state_dir: Path, *, key: str, command: str) -> None:
        self.state_dir = state_dir
        self.path = state_dir / LOCK_FILE
        self.key = key
        self.command = command
        self._fd: int | None = None

    def acquire(self, owner: Path) -> None:
        """Take the lock; InputError (exit 2) naming the run that holds it."""
        for _ in range(100):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(fd)
                os.close(fd)
                raise InputError(
                    f"{owner} is in use by another pvinstall run: {holder.describe()}.",
                    f"Wait for it to finish, or choose another {self.key}.",
                    key=self.key,
                ) from None
            try:
                same = self.path.lstat().st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # the holder removed the file as we opened it: lock the new one
                os.close(fd)
                continue
            record = {
                "pid": os.getpid(),
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "command": self.command,
            }
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(record) + "\n").encode("utf-8"), 0)
            self._fd = fd
            return
        raise BuildError(f"could not lock {self.path}: it keeps being replaced.")

    def release(self, *, remove: bool = False) -> None:
        """Let go of the lock; `remove` also deletes the lock file (while still held)."""
        if self._fd is None:
            return
        if remove:
            with contextlib.suppress(OSError):
                self.path.unlink()
        os.close(self._fd)
        self._fd = None


# -- the output directory of a build ---------------------------------------------------


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_tree(path: Path) -> None:
    """Remove one of pvinstall's own directories (never following a link out of it)."""
    if path.is_symlink() or not path.is_dir():
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return
    shutil.rmtree(path, ignore_errors=True)


def _link_target(name: str) -> str:
    """What OUT/`name` points to: the same name in the current generation."""
    return f"{STATE_DIR}/{CURRENT}/{name}"


def _make_directory(path: Path, key: str) -> bool:
    """Create `path` (and its parents); whether it was created. InputError when it cannot be."""
    if path.is_dir():
        return False
    if path.exists() or path.is_symlink():
        raise InputError(
            f"{path} exists and is not a directory.",
            f"Choose another {key} directory.",
            key=key,
        )
    try:
        path.mkdir(parents=True)
    except FileExistsError:
        if not path.is_dir():
            raise InputError(
                f"{path} exists and is not a directory.",
                f"Choose another {key} directory.",
                key=key,
            ) from None
        return False
    except NotADirectoryError:
        raise InputError(
            f"cannot create {path}: a part of the path is a file.",
            f"Choose another {key} directory.",
            key=key,
        ) from None
    except OSError as error:
        if error.errno in _UNWRITABLE:
            raise InputError(
                f"cannot create {path}: "
                + ("read-only file system" if error.errno == errno.EROFS else "permission denied")
                + ".",
                f"Choose a directory you can write to with {key}.",
                key=key,
            ) from None
        raise os_error(path, path.name, error) from None
    return True


class Generation:
    """One build's files, written into their own directory before the commit."""

    def __init__(self, out: OutputDir, path: Path) -> None:
        self.out = out
        self.path = path
        self.names: list[str] = []

    def create(self, name: str, *, secret: bool = False) -> int:
        """Create `name` (it must not exist) and return its descriptor, open for writing.
        The file is made once, with its mode: a secret file 0600 from the first moment,
        and never truncated (on ext4 a truncated file is flushed when it is closed)."""
        if "/" in name or name in ("", ".", "..") or name.startswith("."):
            raise BuildError(f"{name!r} is not a name for a file in OUT.")
        try:
            fd = os.open(
                self.path / name,
                os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW,
                0o600 if secret else 0o666,
            )
        except OSError as error:
            raise self.out.error(name, error) from None
        if name not in self.names:
            self.names.append(name)
        return fd

    def write(self, name: str, data: bytes, *, secret: bool = False) -> Path:
        """Create `name` holding `data` (written in one go; the caller has the bytes, so
        their digest needs no read-back)."""
        fd = self.create(name, secret=secret)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        except OSError as error:
            raise self.out.error(name, error) from None
        finally:
            os.close(fd)
        return self.path / name


class OutputDir:
    """OUT for one run: locked from `open()` to `close()`; builds are committed whole.

    `expected_size` (the room the whole build takes, roughly) makes a full disk a
    sentence that says how much room was needed.
    """

    def __init__(self, path: Path, *, command: str = "pvinstall build") -> None:
        self.path = path
        self.state = path / STATE_DIR
        self.command = command
        self.created = False
        self.expected_size: int | None = None
        self.free_at_start: int | None = None
        self._lock = DirectoryLock(self.state, key="--out", command=command)
        self._open = False

    # -- open and close --------------------------------------------------------------

    def open(self) -> OutputDir:
        """Create OUT if need be, lock it, and remove what dead runs left."""
        self.created = _make_directory(self.path, "--out")
        try:
            try:
                self.state.mkdir(mode=0o755, exist_ok=True)
            except OSError as error:
                raise self.error(STATE_DIR, error) from None
            if self.state.is_symlink() or not self.state.is_dir():
                raise InputError(
                    f"{self.state} is not pvinstall's directory (it is not a directory).",
                    "Move it away, or choose another --out.",
                    key="--out",
                )
            try:
                self._lock.acquire(self.path)
            except OSError as error:
                raise self.error(f"{STATE_DIR}/{LOCK_FILE}", error) from None
            self._open = True
            self.free_at_start = free_bytes(self.path)
            with interrupts.deferred():
                self._adopt_legacy_build()
                self.sweep()
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Release the lock. When OUT holds no build of pvinstall's, its bookkeeping
        directory goes too, and OUT itself when this run created it."""
        committed = self.current_generation() is not None
        if not committed and self._open:
            for entry in self._entries(self.state):
                if entry.name != LOCK_FILE:
                    _remove_tree(Path(entry.path))
        self._lock.release(remove=not committed)
        self._open = False
        if not committed:
            with contextlib.suppress(OSError):
                self.state.rmdir()
            if self.created:
                with contextlib.suppress(OSError):
                    self.path.rmdir()

    def __enter__(self) -> OutputDir:
        return self.open()

    def __exit__(self, *_: object) -> None:
        self.close()

    def error(self, what: str, error: OSError) -> InputError | BuildError:
        return os_error(self.path, what, error, needed=self.expected_size, free=self.free_at_start)

    # -- what OUT holds --------------------------------------------------------------

    def current_generation(self) -> Path | None:
        """The generation directory OUT shows, or None when it shows no build."""
        link = self.state / CURRENT
        try:
            target = str(link.readlink())
        except OSError:
            return None
        if "/" in target or not target.startswith(GENERATION_PREFIX):
            return None
        path = self.state / target
        return path if path.is_dir() and not path.is_symlink() else None

    def current_names(self) -> set[str]:
        """The names of the build OUT shows (its manifest among them)."""
        current = self.current_generation()
        if current is None:
            return set()
        return {e.name for e in self._entries(current) if not _TEMPORARY.fullmatch(e.name)}

    def current_manifest(self) -> dict[str, object] | None:
        current = self.current_generation()
        if current is None:
            return None
        return _read_manifest(current / MANIFEST)

    def _entries(self, directory: Path) -> list[os.DirEntry[str]]:
        try:
            with os.scandir(directory) as scan:
                found = []
                for entry in scan:
                    found.append(entry)
                    if len(found) >= MAX_SWEEP_ENTRIES:
                        break
                return found
        except OSError:
            return []

    def _ours(self, name: str) -> bool:
        """Whether OUT/`name` is one of pvinstall's names (a link into the generations)."""
        link = self.path / name
        try:
            return str(link.readlink()) == _link_target(name)
        except OSError:
            return False

    def shows(self, name: str) -> bool:
        """Whether OUT/`name` is pvinstall's link into the build OUT shows."""
        return self._ours(name)

    def check_names(self, names: Iterable[str]) -> None:
        """Refuse, before anything is written, a build whose files would replace
        something in OUT that pvinstall did not make."""
        for name in names:
            path = self.path / name
            if (path.exists() or path.is_symlink()) and not self._ours(name):
                raise InputError(
                    f"{path} exists, and no manifest of pvinstall's in {self.path} lists it.",
                    "pvinstall does not replace files it did not make: move it away, or "
                    "choose another --out.",
                    key="--out",
                )

    # -- the commit ------------------------------------------------------------------

    def new_generation(self) -> Generation:
        path = self.state / f"{GENERATION_PREFIX}{secrets.token_hex(8)}"
        try:
            path.mkdir(mode=0o755)
        except OSError as error:
            raise self.error(f"{STATE_DIR}/{path.name}", error) from None
        return Generation(self, path)

    @contextlib.contextmanager
    def generation(self) -> Iterator[Generation]:
        """A new generation; removed again unless it was committed when the block ends."""
        gen = self.new_generation()
        try:
            yield gen
        finally:
            if self.current_generation() != gen.path:
                _remove_tree(gen.path)

    @contextlib.contextmanager
    def successor(self) -> Iterator[Generation]:
        """A new generation that starts as the current build without its manifest:
        every file hard-linked, none copied (OUT's generations share one file system),
        for adding files to a committed build (the exported template) with the same
        one-rename commit. Removed again unless committed when the block ends."""
        current = self.current_generation()
        if current is None:
            raise BuildError(f"{self.path} has no build to add to.")
        with self.generation() as gen:
            for name in sorted(self.current_names() - {MANIFEST}):
                try:
                    os.link(current / name, gen.path / name, follow_symlinks=False)
                except OSError as error:
                    raise self.error(name, error) from None
                gen.names.append(name)
            yield gen

    def commit(self, gen: Generation, *, stale: Iterable[str] = ()) -> None:
        """Make `gen` the build OUT shows, all of its names at once.

        Every file is synced first; then a link for each new name (it points into the
        current generation, which lacks it: nothing new is visible yet), then the one
        rename that switches `current`; then what the previous build had and this one
        has not is removed, with the previous generation, and the plain files `stale`
        names (what the previous build kept beside its generation, such as the logs of
        a failed install, which its manifest listed).
        """
        if MANIFEST not in gen.names:
            raise BuildError("a build was committed without its manifest.")
        previous = self.current_generation()
        old_names = self.current_names()
        with interrupts.deferred():
            try:
                for name in gen.names:
                    _fsync_file(gen.path / name)
                _fsync_dir(gen.path)
                for name in gen.names:
                    if not self._ours(name):
                        self._place_link(name)
                self._switch_to(gen.path)
                _fsync_dir(self.state)
            except OSError as error:
                raise self.error("the links of the new build", error) from None
            # The new build is what OUT shows; what follows only tidies up.
            for name in sorted(old_names - set(gen.names)):
                if self._ours(name):
                    with contextlib.suppress(OSError):
                        (self.path / name).unlink()
            for name in stale:
                path = self.path / name
                if name not in gen.names and path.is_file() and not path.is_symlink():
                    with contextlib.suppress(OSError):
                        path.unlink()
            if previous is not None and previous != gen.path:
                _remove_tree(previous)
            with contextlib.suppress(OSError):
                _fsync_dir(self.path)

    def _place_link(self, name: str) -> None:
        link = self.path / name
        temporary = self.path / f".{name}.pvinstall-new-{secrets.token_hex(6)}"
        temporary.symlink_to(_link_target(name))
        temporary.replace(link)

    def _switch_to(self, generation: Path) -> None:
        """Point `current` at `generation`: one rename, the commit itself."""
        switch = self.state / f"{CURRENT}.new-{secrets.token_hex(6)}"
        switch.symlink_to(generation.name)
        switch.replace(self.state / CURRENT)

    def replace_current(self, name: str, data: bytes, *, secret: bool = False) -> None:
        """Replace (or add) `name` in the build OUT shows, in one rename (the manifest
        after define and install). A new name gets its link in OUT afterwards."""
        current = self.current_generation()
        if current is None:
            raise BuildError(f"{self.path} has no build to update.")
        temporary = current / f".{name}.pvinstall-new-{secrets.token_hex(6)}"
        with interrupts.deferred():
            try:
                fd = os.open(
                    temporary,
                    os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
                    0o600 if secret else 0o644,
                )
                try:
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view) :]
                    os.fsync(fd)
                finally:
                    os.close(fd)
                temporary.replace(current / name)
                if not self._ours(name):
                    self._place_link(name)
            except OSError as error:
                with contextlib.suppress(OSError):
                    temporary.unlink()
                raise self.error(name, error) from None

    # -- keyed digests ---------------------------------------------------------------

    def digest_key(self) -> bytes:
        """The key of the manifest's keyed digests: 32 random bytes, kept in
        `.pvinstall/hmac.key` (0600, hex) for as long as OUT holds a build, so that a
        rebuild gives the same manifest and the key's holder can check the files."""
        path = self.state / KEY_FILE
        try:
            text = path.read_text(encoding="ascii")
            if _KEY.fullmatch(text) and not path.is_symlink():
                return bytes.fromhex(text.strip())
        except (OSError, UnicodeDecodeError):
            pass
        key = secrets.token_bytes(32)
        temporary = self.state / f".{KEY_FILE}.pvinstall-new-{secrets.token_hex(6)}"
        try:
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                os.write(fd, (key.hex() + "\n").encode("ascii"))
                os.fsync(fd)
            finally:
                os.close(fd)
            temporary.replace(path)
        except OSError as error:
            raise self.error(f"{STATE_DIR}/{KEY_FILE}", error) from None
        return key

    # -- the build cache ---------------------------------------------------------------

    def cache_record(self) -> dict[str, Any] | None:
        """What the build OUT shows was made from (`save_cache`), or None: no record,
        or one of another generation."""
        current = self.current_generation()
        path = self.state / CACHE_FILE
        if current is None or path.is_symlink():
            return None
        try:
            with path.open("rb") as handle:
                record = json.loads(handle.read(1024 * 1024))
        except (OSError, ValueError):
            return None
        if not isinstance(record, dict) or record.get("generation") != current.name:
            return None
        return record

    def save_cache(self, record: dict[str, Any]) -> None:
        """Remember what the build OUT shows was made from, with the identity of each of
        its files (`file_identity`). Not synced: a record lost in a crash costs one
        rebuild, nothing else."""
        current = self.current_generation()
        if current is None:
            return
        files = {name: file_identity(current / name) for name in sorted(self.current_names())}
        document = {**record, "generation": current.name, "files": files}
        temporary = self.state / f".{CACHE_FILE}.pvinstall-new-{secrets.token_hex(6)}"
        try:
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(document, handle, sort_keys=True)
            temporary.replace(self.state / CACHE_FILE)
        except OSError:
            with contextlib.suppress(OSError):
                temporary.unlink()

    def forget_cache(self) -> None:
        with contextlib.suppress(OSError):
            (self.state / CACHE_FILE).unlink()

    # -- what dead runs left -----------------------------------------------------------

    def sweep(self) -> None:
        """Remove what runs that died left (the lock is held: no live run uses it):
        generations nobody points to, half-made links, convert's staging folders, the
        staging folders of earlier pvinstall versions, and names in OUT that point to
        nothing in the current build."""
        current = self.current_generation()
        for entry in self._entries(self.state):
            name = entry.name
            path = Path(entry.path)
            stale_generation = name.startswith(GENERATION_PREFIX) and path != current
            half_made = name.startswith((f"{CURRENT}.new-", STAGE_PREFIX))
            if stale_generation or half_made or _TEMPORARY.fullmatch(name):
                _remove_tree(path)
        if current is not None:
            for entry in self._entries(current):
                if _TEMPORARY.fullmatch(entry.name):
                    _remove_tree(Path(entry.path))
        names = self.current_names()
        for entry in self._entries(self.path):
            name = entry.name
            if _LEGACY_STAGING.fullmatch(name) or _TEMPORARY.fullmatch(name):
                if entry.is_dir(follow_symlinks=False) or entry.is_symlink():
                    _remove_tree(Path(entry.path))
            elif name not in names and self._ours(name):
                with contextlib.suppress(OSError):
                    Path(entry.path).unlink()

    def _adopt_legacy_build(self) -> None:
        """A build of an earlier pvinstall (plain files and a plain manifest.json in OUT)
        becomes the current generation without changing what OUT shows: its files are
        linked (hard links) into a generation, then each is replaced by its link."""
        manifest = self.path / MANIFEST
        if manifest.is_symlink() or not manifest.is_file() or self.current_generation():
            return
        document = _read_manifest(manifest)
        if document is None:
            return
        names = [MANIFEST, *_listed_names(document)]
        names = [n for n in names if (self.path / n).is_file() and not (self.path / n).is_symlink()]
        gen = self.new_generation()
        try:
            for name in names:
                try:
                    os.link(self.path / name, gen.path / name)
                except OSError:
                    shutil.copy2(self.path / name, gen.path / name)
                gen.names.append(name)
            self._switch_to(gen.path)
            for name in names:
                self._place_link(name)
        except OSError as error:
            if self.current_generation() != gen.path:
                _remove_tree(gen.path)
            raise self.error(f"the files of the earlier build in {self.path}", error) from None


def file_identity(path: Path) -> dict[str, int] | None:
    """A file as it is on disk, without reading it: device, inode, size, modification
    and change times. Writing to the file changes its change time, and nobody can set
    that back (None: no such file)."""
    try:
        info = path.lstat()
    except OSError:
        return None
    return {
        "dev": info.st_dev,
        "ino": info.st_ino,
        "size": info.st_size,
        "mtime_ns": info.st_mtime_ns,
        "ctime_ns": info.st_ctime_ns,
    }


def _read_manifest(path: Path) -> dict[str, object] | None:
    try:
        with path.open("rb") as handle:
            data = json.loads(handle.read(16 * 1024 * 1024))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or "pvinstall" not in data or "outputs" not in data:
        return None
    return data


def _listed_names(document: dict[str, object]) -> list[str]:
    """The names of OUT a manifest lists as outputs (plain names only)."""
    outputs = document.get("outputs")
    found: list[str] = []
    if isinstance(outputs, list):
        for output in outputs:
            name = output.get("name") if isinstance(output, dict) else None
            if isinstance(name, str) and name and "/" not in name and not name.startswith("."):
                found.append(name)
    return found


# -- convert's state directory ---------------------------------------------------------


class Staging:
    """Files staged in a locked directory; `commit()` renames each into place.

    For a directory whose files belong to several owners (convert's state directory
    serves several domains), where a generation cannot switch them all: each file
    appears whole, and none before every one of them was written.
    """

    def __init__(self, out_dir: Path, *, key: str = "--out", command: str = "pvinstall") -> None:
        self.out_dir = out_dir
        self.created = _make_directory(out_dir, key)
        state = out_dir / STATE_DIR
        self._state_created = False
        self._lock = DirectoryLock(state, key=key, command=command)
        try:
            if not state.is_dir():
                state.mkdir(mode=0o755)
                self._state_created = True
            self._lock.acquire(out_dir)
            for entry in os.scandir(state):
                if entry.name.startswith(STAGE_PREFIX):
                    _remove_tree(Path(entry.path))
            self.path = state / f"{STAGE_PREFIX}{secrets.token_hex(8)}"
            self.path.mkdir(mode=0o700)
        except OSError as error:
            self._finish()
            raise os_error(out_dir, STATE_DIR, error) from None
        except BaseException:
            self._finish()
            raise
        self._names: list[str] = []

    def file(self, name: str, *, secret: bool = False) -> Path:
        """A path to write `name` to; secret files are created with mode 0600."""
        path = self.path / name
        if secret:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            os.close(fd)
        self._names.append(name)
        return path

    def write(self, name: str, data: bytes, *, secret: bool = False) -> Path:
        path = self.file(name, secret=secret)
        try:
            with path.open("r+b" if secret else "wb") as handle:
                handle.write(data)
                handle.truncate()
        except OSError as error:
            raise os_error(self.out_dir, name, error) from None
        return path

    def final_path(self, name: str) -> Path:
        return self.out_dir / name

    def commit(self) -> list[Path]:
        """Rename every staged file into place (each rename atomic) and unlock."""
        placed = []
        with interrupts.deferred():
            for name in self._names:
                source = self.path / name
                if source.exists():
                    target = self.out_dir / name
                    source.replace(target)
                    placed.append(target)
            self._finish()
        return placed

    def abandon(self) -> None:
        """Remove the staged files, and the directory itself when this run created it empty."""
        self._finish()
        if self.created:
            with contextlib.suppress(OSError):
                self.out_dir.rmdir()

    def _finish(self) -> None:
        path = getattr(self, "path", None)
        if path is not None:
            _remove_tree(path)
        state = self.out_dir / STATE_DIR
        self._lock.release(remove=True)
        with contextlib.suppress(OSError):
            state.rmdir()


@contextlib.contextmanager
def staging(out_dir: Path, *, key: str = "--out") -> Iterator[Staging]:
    """Stage files; on any exception the staged files are removed and the directory is
    as it was. Files staged but not committed when the block ends are thrown away."""
    stage = Staging(out_dir, key=key)
    try:
        yield stage
    except BaseException:
        stage.abandon()
        raise
    stage.abandon()
