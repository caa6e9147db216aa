"""The output directory: every file is staged under a temporary name and renamed
into place only when the whole build step succeeded, so a failed or refused build
leaves nothing half-written."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from builder.errors import InputError


class Staging:
    """A temporary directory inside OUT; `commit()` renames its files into OUT."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.created = not out_dir.exists()
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise InputError(
                f"{out_dir} exists and is not a directory.",
                "Choose another --out directory.",
                key="--out",
            ) from None
        except PermissionError:
            raise InputError(
                f"cannot create {out_dir}: permission denied.",
                "Choose a directory you can write to with --out.",
                key="--out",
            ) from None
        self.path = Path(tempfile.mkdtemp(prefix=".pvinstall-", dir=out_dir))
        self._names: list[str] = []

    def file(self, name: str, *, secret: bool = False) -> Path:
        """A path to write `name` to; secret files are created with mode 0600."""
        path = self.path / name
        if secret:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.close(fd)
        self._names.append(name)
        return path

    def write(self, name: str, data: bytes, *, secret: bool = False) -> Path:
        path = self.file(name, secret=secret)
        with path.open("r+b" if secret else "wb") as handle:
            handle.write(data)
            handle.truncate()
        return path

    def final_path(self, name: str) -> Path:
        return self.out_dir / name

    def commit(self) -> list[Path]:
        """Rename every staged file into OUT (each rename atomic) and remove the staging dir."""
        placed = []
        for name in self._names:
            source = self.path / name
            if source.exists():
                target = self.out_dir / name
                source.replace(target)
                placed.append(target)
        self._remove_staging_dir()
        return placed

    def abandon(self) -> None:
        """Remove the staged files, and OUT itself when this build created it empty."""
        self._remove_staging_dir()
        if self.created:
            with contextlib.suppress(OSError):
                self.out_dir.rmdir()

    def _remove_staging_dir(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


@contextlib.contextmanager
def staging(out_dir: Path) -> Iterator[Staging]:
    """Stage outputs; on any exception the staged files are removed, OUT is untouched.
    Files staged but not committed when the block ends are thrown away."""
    stage = Staging(out_dir)
    try:
        yield stage
    except BaseException:
        stage.abandon()
        raise
    stage.abandon()
