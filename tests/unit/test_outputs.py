"""The output directory (builder/outputs.py): OUT shows the previous complete build or the
new one at every instant, a run holds its lock, and what dead runs left is removed, but
never anything pvinstall did not make. Real files, real flock, real signals."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from builder import interrupts, outputs
from builder.errors import BuildError, InputError
from builder.outputs import OutputDir, Staging, staging


def manifest(*names: str, build: str = "b1") -> bytes:
    document = {
        "pvinstall": "test",
        "build_id": build,
        "outputs": [{"name": n} for n in names],
        "domain": {},
    }
    return json.dumps(document).encode()


def build(
    out: Path,
    files: dict[str, bytes],
    *,
    build_id: str = "b1",
    secret: frozenset[str] = frozenset(),
) -> None:
    """One build into OUT: `files` and a manifest listing them, committed."""
    with OutputDir(out) as directory, directory.generation() as gen:
        for name, data in files.items():
            gen.write(name, data, secret=name in secret)
        gen.write("manifest.json", manifest(*files, build=build_id), secret=True)
        directory.commit(gen)


def shown(out: Path) -> dict[str, bytes]:
    """What a reader of OUT sees: every name but the bookkeeping, read through its link."""
    return {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.name != ".pvinstall"}


def test_a_commit_shows_every_file_at_once_and_nothing_before(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with OutputDir(out) as directory, directory.generation() as gen:
        gen.write("a.txt", b"a")
        gen.write("secret.txt", b"s", secret=True)
        gen.write("manifest.json", manifest("a.txt", "secret.txt"), secret=True)
        assert shown(out) == {}  # nothing in OUT until the commit
        directory.commit(gen)
        assert shown(out) == {
            "a.txt": b"a",
            "manifest.json": manifest("a.txt", "secret.txt"),
            "secret.txt": b"s",
        }
    assert stat.S_IMODE((out / "secret.txt").stat().st_mode) == 0o600
    assert stat.S_IMODE((out / "manifest.json").stat().st_mode) == 0o600
    assert stat.S_IMODE((out / "a.txt").stat().st_mode) & 0o077 != 0o077
    # Every name is a link into the current generation; one generation is left.
    assert all((out / n).readlink() == Path(f".pvinstall/current/{n}") for n in shown(out))
    state = out / ".pvinstall"
    assert sorted(p.name for p in state.iterdir() if p.name.startswith("gen-")) == [
        (state / "current").readlink().name
    ]


def test_a_rebuild_switches_every_name_and_removes_what_the_new_build_has_not(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_bytes(b"mine")
    build(out, {"winnt.sif": b"old password", "install.iso": b"i", "domain.xml": b"d1"})
    build(out, {"autounattend.xml": b"new", "domain.xml": b"d2"}, build_id="b2")
    assert shown(out) == {
        "autounattend.xml": b"new",
        "domain.xml": b"d2",
        "manifest.json": manifest("autounattend.xml", "domain.xml", build="b2"),
        "notes.txt": b"mine",
    }
    assert not list((out / ".pvinstall").glob("gen-*/winnt.sif"))  # the old generation is gone


def test_a_failing_block_leaves_out_as_it_was(tmp_path: Path) -> None:
    out = tmp_path / "out"
    build(out, {"a.txt": b"old"})
    before = shown(out)

    class WriteFailedError(Exception):
        pass

    with (
        pytest.raises(WriteFailedError),
        OutputDir(out) as directory,
        directory.generation() as gen,
    ):
        gen.write("a.txt", b"new")
        gen.write("b.txt", b"new")
        raise WriteFailedError
    assert shown(out) == before
    assert len(list((out / ".pvinstall").glob("gen-*"))) == 1


def test_a_refused_first_build_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(BuildError), OutputDir(tmp_path / "new") as directory:
        with directory.generation() as gen:
            gen.write("a.txt", b"a")
        raise BuildError("refused")
    assert not (tmp_path / "new").exists()
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "mine.txt").write_text("mine")
    with OutputDir(kept) as directory, directory.generation() as gen:
        gen.write("a.txt", b"a")
    assert [p.name for p in kept.iterdir()] == ["mine.txt"]


def test_a_second_run_is_refused_naming_the_first(tmp_path: Path) -> None:
    out = tmp_path / "out"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import sys, time
                from pathlib import Path
                from builder.outputs import OutputDir
                with OutputDir(Path({str(out)!r}), command="pvinstall build win2008-x64"):
                    print("locked", flush=True)
                    time.sleep(60)
                """
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        with pytest.raises(InputError) as refused, OutputDir(out):
            pass
        message = str(refused.value)
        assert f"{out} is in use by another pvinstall run: pvinstall build win2008-x64" in message
        assert f"pid {holder.pid}" in message and "started 20" in message
        assert refused.value.exit_code == 2 and refused.value.problems[0].key == "--out"
    finally:
        holder.kill()
        holder.wait()
    with OutputDir(out):  # the kernel let go of a dead run's lock
        pass


def test_what_a_dead_run_left_is_removed_and_nothing_else(tmp_path: Path) -> None:
    out = tmp_path / "out"
    build(out, {"a.txt": b"a"})
    state = out / ".pvinstall"
    # A run killed while writing its generation, while linking, before the switch.
    (state / "gen-0123456789abcdef").mkdir()
    (state / "gen-0123456789abcdef" / "winnt.sif").write_text("password")
    (state / "current.new-abcdefabcdef").symlink_to("gen-0123456789abcdef")
    (out / "b.txt").symlink_to(".pvinstall/current/b.txt")  # a new name, never switched
    (out / ".c.txt.pvinstall-new-0123456789ab").symlink_to(".pvinstall/current/c.txt")
    (out / ".pvinstall-ab12cd34").mkdir()  # an earlier pvinstall's staging folder
    (out / ".pvinstall-ab12cd34" / "winnt.sif").write_text("password")
    # The user's: never removed, whatever they look like.
    (out / "mine.txt").write_text("mine")
    (out / "link-of-mine").symlink_to("mine.txt")
    (out / ".pvinstall-notes").mkdir()
    with OutputDir(out):
        pass
    assert sorted(p.name for p in out.iterdir()) == [
        ".pvinstall",
        ".pvinstall-notes",
        "a.txt",
        "link-of-mine",
        "manifest.json",
        "mine.txt",
    ]
    assert sorted(p.name for p in state.iterdir() if p.name != "lock") == [
        "current",
        (state / "current").readlink().name,
    ]


def test_a_name_pvinstall_did_not_make_is_not_replaced(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "floppy.img").write_bytes(b"the user's")
    with OutputDir(out) as directory:
        with pytest.raises(InputError, match=r"floppy\.img exists, and no manifest") as refused:
            directory.check_names(["floppy.img", "manifest.json"])
        directory.check_names(["domain.xml"])
    assert refused.value.problems[0].key == "--out"
    assert (out / "floppy.img").read_bytes() == b"the user's"


def test_a_build_of_an_earlier_pvinstall_is_adopted_without_changing_what_out_shows(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "winnt.sif").write_bytes(b"old password")
    (out / "domain.xml").write_bytes(b"d1")
    (out / "manifest.json").write_bytes(manifest("winnt.sif", "domain.xml"))
    (out / "mine.txt").write_bytes(b"mine")
    before = shown(out)
    with OutputDir(out) as directory:
        assert shown(out) == before
        assert (out / "winnt.sif").is_symlink()
        with directory.generation() as gen:
            gen.write("domain.xml", b"d2")
            gen.write("manifest.json", manifest("domain.xml", build="b2"))
            directory.check_names(gen.names)
            directory.commit(gen)
    assert shown(out) == {
        "domain.xml": b"d2",
        "manifest.json": manifest("domain.xml", build="b2"),
        "mine.txt": b"mine",
    }


def test_replace_current_updates_one_file_of_the_build_in_one_rename(tmp_path: Path) -> None:
    out = tmp_path / "out"
    build(out, {"a.txt": b"a"})
    with OutputDir(out) as directory:
        directory.replace_current(
            "manifest.json", manifest("a.txt", build="b1+install"), secret=True
        )
    assert json.loads((out / "manifest.json").read_text())["build_id"] == "b1+install"
    assert stat.S_IMODE((out / "manifest.json").stat().st_mode) == 0o600
    generation = (out / ".pvinstall" / "current").resolve()
    assert sorted(p.name for p in generation.iterdir()) == ["a.txt", "manifest.json"]


def test_the_digest_key_is_random_private_and_kept(tmp_path: Path) -> None:
    out = tmp_path / "out"
    build(out, {"a.txt": b"a"})
    with OutputDir(out) as directory:
        key = directory.digest_key()
        assert directory.digest_key() == key and len(key) == 32
    path = out / ".pvinstall" / "hmac.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert bytes.fromhex(path.read_text().strip()) == key
    other = tmp_path / "other"
    build(other, {"a.txt": b"a"})
    with OutputDir(other) as directory:
        assert directory.digest_key() != key


def test_a_signal_during_the_commit_waits_for_the_commit(tmp_path: Path) -> None:
    """SIGINT and SIGTERM raise only once the switch and its bookkeeping are done: OUT is
    the new build, and no half-made link or generation is left."""
    out = tmp_path / "out"
    build(out, {"a.txt": b"old"})
    interrupts.install()
    real_place = OutputDir._place_link

    def place_and_signal(self: OutputDir, name: str) -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        real_place(self, name)

    try:
        OutputDir._place_link = place_and_signal  # type: ignore[method-assign]
        with pytest.raises(interrupts.Interrupted) as stopped:
            build(out, {"b.txt": b"new"}, build_id="b2")
    finally:
        OutputDir._place_link = real_place  # type: ignore[method-assign]
        interrupts.reset()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    assert stopped.value.exit_code == 143
    assert shown(out) == {"b.txt": b"new", "manifest.json": manifest("b.txt", build="b2")}
    assert len(list((out / ".pvinstall").glob("gen-*"))) == 1


def test_out_that_is_a_file_or_cannot_be_made_is_an_input_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    for path in (tmp_path / "file", tmp_path / "file" / "below"):
        with pytest.raises(InputError) as raised, OutputDir(path):
            pass
        assert raised.value.problems[0].key == "--out"


def test_a_full_disk_and_a_read_only_out_are_sentences() -> None:
    out = Path("/srv/out")
    full = outputs.os_error(
        out,
        "drivers.iso",
        OSError(28, "No space left on device"),
        needed=30 * 1024 * 1024,
        free=1024 * 1024,
    )
    assert isinstance(full, BuildError)
    assert str(full).startswith(
        "no room left on the file system of /srv/out while writing drivers.iso. The build "
        "needs about 30.0 MiB there; 1.0 MiB were free when it began."
    )
    read_only = outputs.os_error(out, "floppy.img", OSError(30, "Read-only file system"))
    assert isinstance(read_only, InputError) and read_only.problems[0].key == "--out"
    assert "read-only file system" in str(read_only)


# -- convert's state directory: files renamed into place one by one, locked -------------


def test_staging_renames_every_file_into_place_and_leaves_no_bookkeeping(tmp_path: Path) -> None:
    out = tmp_path / "state"
    stage = Staging(out)
    stage.write("a.txt", b"a")
    stage.write("secret.txt", b"s", secret=True)
    assert not (out / "a.txt").exists()
    assert stage.commit() == [out / "a.txt", out / "secret.txt"]
    assert stat.S_IMODE((out / "secret.txt").stat().st_mode) == 0o600
    assert sorted(p.name for p in out.iterdir()) == ["a.txt", "secret.txt"]


def test_staging_abandoned_or_failed_leaves_the_directory_as_it_was(tmp_path: Path) -> None:
    with staging(tmp_path / "new") as stage:
        stage.write("a.txt", b"a")
    assert not (tmp_path / "new").exists()
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "a.txt").write_bytes(b"old")
    with pytest.raises(RuntimeError), staging(kept) as stage:
        stage.write("a.txt", b"new")
        raise RuntimeError
    assert [p.name for p in kept.iterdir()] == ["a.txt"]
    assert (kept / "a.txt").read_bytes() == b"old"


def test_staging_removes_what_a_dead_run_staged(tmp_path: Path) -> None:
    out = tmp_path / "state"
    (out / ".pvinstall" / "stage-0123456789abcdef").mkdir(parents=True)
    (out / ".pvinstall" / "stage-0123456789abcdef" / "w.orig.xml").write_text("<domain/>")
    with staging(out) as stage:
        stage.write("x.txt", b"x")
        stage.commit()
    assert sorted(p.name for p in out.iterdir()) == ["x.txt"]


def test_the_logs_a_previous_build_named_go_with_it(tmp_path: Path) -> None:
    out = tmp_path / "out"
    build(out, {"a.txt": b"a"})
    (out / "screenshot.png").write_bytes(b"\x89PNG of the last failed install")
    (out / "serial.log").write_bytes(b"the domain's own log")
    with OutputDir(out) as directory, directory.generation() as gen:
        gen.write("a.txt", b"b")
        gen.write("manifest.json", manifest("a.txt", build="b2"))
        # Only what the pipeline says the previous manifest named, and only plain files.
        directory.commit(gen, stale=["screenshot.png", "nothing-there.log"])
    assert sorted(p.name for p in out.iterdir()) == [
        ".pvinstall",
        "a.txt",
        "manifest.json",
        "serial.log",
    ]
