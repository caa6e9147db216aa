"""The output directory (builder/outputs.py): staged files appear together or not at all."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from builder.errors import InputError
from builder.outputs import Staging, staging


def test_commit_renames_every_staged_file_into_out(tmp_path: Path) -> None:
    out = tmp_path / "out"
    stage = Staging(out)
    stage.write("a.txt", b"a")
    stage.write("secret.txt", b"s", secret=True)
    assert not (out / "a.txt").exists()  # nothing in OUT until the commit
    placed = stage.commit()
    assert placed == [out / "a.txt", out / "secret.txt"]
    assert (out / "a.txt").read_bytes() == b"a"
    assert stat.S_IMODE((out / "secret.txt").stat().st_mode) == 0o600
    assert sorted(p.name for p in out.iterdir()) == ["a.txt", "secret.txt"]  # no staging dir


def test_abandon_removes_the_staged_files_and_an_out_it_created(tmp_path: Path) -> None:
    out = tmp_path / "new"
    stage = Staging(out)
    stage.write("a.txt", b"a")
    stage.abandon()
    assert not out.exists()
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "mine.txt").write_text("mine")
    stage = Staging(kept)
    stage.write("a.txt", b"a")
    stage.abandon()
    assert [p.name for p in kept.iterdir()] == ["mine.txt"]


def test_a_failing_block_leaves_out_as_it_was(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.txt").write_bytes(b"old")

    class WriteFailedError(Exception):
        pass

    with pytest.raises(WriteFailedError), staging(out) as stage:
        stage.write("a.txt", b"new")
        stage.write("b.txt", b"new")
        raise WriteFailedError
    assert [p.name for p in out.iterdir()] == ["a.txt"]
    assert (out / "a.txt").read_bytes() == b"old"


def test_what_is_not_committed_is_thrown_away(tmp_path: Path) -> None:
    with staging(tmp_path / "out") as stage:
        stage.write("a.txt", b"a")
    assert not (tmp_path / "out").exists()


def test_out_that_is_a_file_is_an_input_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError) as raised:
        Staging(tmp_path / "file")
    assert raised.value.problems[0].key == "--out"
    assert "exists and is not a directory" in str(raised.value)


def test_out_that_cannot_be_created_is_an_input_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As root every directory is writable, so the refusal is simulated.
    def denied(*_: object, **__: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "mkdir", denied)
    with pytest.raises(InputError, match="permission denied") as raised:
        Staging(tmp_path / "out")
    assert raised.value.problems[0].key == "--out"
