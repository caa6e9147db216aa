"""The build cache (docs/design.md §6): a media-only build whose inputs, settings and
options did not change reuses OUT's build, verified against its manifest; --no-cache, a
changed input or setting, and a tampered output always build again."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from builder import cache, cli
from builder.digests import file_digest
from builder.outputs import file_identity
from tests.fixtures.out_dir import complete_build
from tests.fixtures.virtio_win import Tree, write_modern_tree

pytestmark = pytest.mark.integration

PASSWORD = "Sup3r-Secr3t-pw"


@pytest.fixture
def tree(tmp_path: Path) -> Tree:
    return write_modern_tree(tmp_path / "virtio-win", drivers=["viostor", "NetKVM"], oses=["2k8"])


@pytest.fixture(autouse=True)
def _environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    monkeypatch.setenv("PVINSTALL_ADMIN_PASSWORD", PASSWORD)
    monkeypatch.delenv("VIRTIO_WIN", raising=False)
    monkeypatch.chdir(tmp_path)


def build(
    capsys: pytest.CaptureFixture[str], source: Path, out: Path, *extra: str
) -> tuple[str, str]:
    """Build win2008-x64 into `out`; the generation OUT then shows, and stderr."""
    code = cli.main(["build", "win2008-x64", "--drivers", str(source), "--out", str(out), *extra])
    _, stderr = capsys.readouterr()
    assert code == 0, stderr
    complete_build(out)
    return str((out / ".pvinstall" / "current").readlink()), stderr


def contents(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.name != ".pvinstall"}


REUSED = "already holds this build"


def test_an_unchanged_build_is_reused_and_no_cache_builds_it_again(
    capsys: pytest.CaptureFixture[str], tree: Tree, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    first, said = build(capsys, tree.root, out)
    assert REUSED not in said
    before = contents(out)
    again, said = build(capsys, tree.root, out)
    assert again == first and REUSED in said
    assert contents(out) == before
    # --json prints the manifest of the reused build, as a fresh one would.
    code = cli.main(
        ["build", "win2008-x64", "--drivers", str(tree.root), "--out", str(out), "--json"]
    )
    printed, _ = capsys.readouterr()
    assert code == 0 and json.loads(printed) == json.loads(before["manifest.json"])
    forced, said = build(capsys, tree.root, out, "--no-cache")
    assert forced != first and REUSED not in said
    assert contents(out) == before  # deterministic: the same bytes, built again
    # The forced build is cached in its turn.
    assert build(capsys, tree.root, out)[0] == forced


def _change_a_setting(tree: Tree, out: Path) -> list[str]:
    return ["--set", "computer_name=OTHER"]


def _change_the_password(tree: Tree, out: Path) -> list[str]:
    os.environ["PVINSTALL_ADMIN_PASSWORD"] = "An0ther-secret"
    return []


def _change_a_driver_file(tree: Tree, out: Path) -> list[str]:
    inf = next(tree.root.rglob("viostor.sys"))
    data = bytearray(inf.read_bytes())
    data[-1] ^= 0xFF
    inf.write_bytes(bytes(data))
    return []


def _touch_a_driver_file(tree: Tree, out: Path) -> list[str]:
    # Same bytes, another identity: built again (the cache never reads an input).
    path = next(tree.root.rglob("netkvm.inf"))
    path.write_bytes(path.read_bytes())
    return []


def _change_an_option(tree: Tree, out: Path) -> list[str]:
    return ["--name", "another-name"]


def _tamper_with_the_floppy(tree: Tree, out: Path) -> list[str]:
    floppy = out / "floppy.img"
    info = floppy.stat()
    with floppy.open("r+b") as handle:
        handle.seek(40000)
        byte = handle.read(1)
        handle.seek(40000)
        handle.write(bytes([byte[0] ^ 0xFF]))
    os.utime(floppy, ns=(info.st_atime_ns, info.st_mtime_ns))  # the times put back
    return []


def _tamper_with_the_answer_file(tree: Tree, out: Path) -> list[str]:
    answer = out / "autounattend.xml"
    answer.write_bytes(answer.read_bytes().replace(b"GOLD", b"EVIL"))
    return []


def _remove_the_cache_record(tree: Tree, out: Path) -> list[str]:
    (out / ".pvinstall" / "cache.json").unlink()
    return []


@pytest.mark.parametrize(
    "change",
    [
        _change_a_setting,
        _change_the_password,
        _change_a_driver_file,
        _touch_a_driver_file,
        _change_an_option,
        _tamper_with_the_floppy,
        _tamper_with_the_answer_file,
        _remove_the_cache_record,
    ],
)
def test_a_change_or_a_tampered_output_builds_again(
    capsys: pytest.CaptureFixture[str],
    tree: Tree,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    change: object,
) -> None:
    monkeypatch.setenv("PVINSTALL_ADMIN_PASSWORD", PASSWORD)
    out = tmp_path / "out"
    first, _ = build(capsys, tree.root, out, "--set", "computer_name=GOLD")
    extra = change(tree, out)  # type: ignore[operator]
    sets = extra if extra and extra[0] == "--set" else ["--set", "computer_name=GOLD", *extra]
    again, said = build(capsys, tree.root, out, *sets)
    assert again != first and REUSED not in said
    # What OUT holds is what its manifest lists, byte for byte.
    manifest = json.loads((out / "manifest.json").read_text())
    for record in manifest["outputs"]:
        if "sha256" in record:
            assert (
                hashlib.sha256((out / record["name"]).read_bytes()).hexdigest() == record["sha256"]
            )


def test_a_build_that_defines_a_domain_is_never_reused(
    capsys: pytest.CaptureFixture[str], tree: Tree, tmp_path: Path
) -> None:
    """--define and --install act on a hypervisor: checked and built every time (here
    refused before anything is written, as no hypervisor answers at this URI)."""
    out = tmp_path / "out"
    first, _ = build(capsys, tree.root, out)
    code = cli.main(
        [
            "build",
            "win2008-x64",
            "--drivers",
            str(tree.root),
            "--out",
            str(out),
            "--define",
            "--connect",
            "test:///nowhere.xml",
        ]
    )
    _, stderr = capsys.readouterr()
    assert code != 0 and REUSED not in stderr
    assert str((out / ".pvinstall" / "current").readlink()) == first


def test_a_large_output_is_trusted_by_its_identity_which_any_write_changes(
    capsys: pytest.CaptureFixture[str], tree: Tree, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Outputs above VERIFY_BYTES (a remastered CD) are not read again: a byte written
    with the times put back still changes the file's change time, and builds again."""
    monkeypatch.setattr(cache, "VERIFY_BYTES", 0)
    out = tmp_path / "out"
    first, _ = build(capsys, tree.root, out)
    reads: list[Path] = []

    def counted(path: Path, key: bytes | None = None) -> dict[str, str]:
        reads.append(path)
        return file_digest(path, key)

    monkeypatch.setattr(cache, "file_digest", counted)
    again, said = build(capsys, tree.root, out)
    assert again == first and REUSED in said and reads == []  # a hit reads no output
    _tamper_with_the_floppy(tree, out)
    again, said = build(capsys, tree.root, out)
    assert again != first and REUSED not in said
    assert [p.name for p in reads] == ["floppy.img"]  # its identity changed: its digest says no


def test_an_output_touched_but_not_changed_is_reused_after_its_digest_agrees(
    capsys: pytest.CaptureFixture[str], tree: Tree, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cache, "VERIFY_BYTES", 0)
    out = tmp_path / "out"
    first, _ = build(capsys, tree.root, out)
    floppy = out / "floppy.img"
    os.utime(floppy, ns=(1, 1))  # same bytes, another identity
    again, said = build(capsys, tree.root, out)
    assert again == first and REUSED in said
    # The record now holds the identity it has: the next hit reads nothing.
    record = json.loads((out / ".pvinstall" / "cache.json").read_text())
    assert record["files"]["floppy.img"] == file_identity(floppy.resolve())
    assert build(capsys, tree.root, out)[0] == first


def test_a_reused_build_loads_none_of_the_build_s_modules(
    capsys: pytest.CaptureFixture[str], tree: Tree, tmp_path: Path
) -> None:
    # Nor pydantic: typer would coerce every option with it (builder.cli._PlainCoercion).
    out = tmp_path / "out"
    build(capsys, tree.root, out)
    script = (
        "import sys\n"
        "from builder import cli\n"
        f"code = cli.main(['build', 'win2008-x64', '--drivers', {str(tree.root)!r}, "
        f"'--out', {str(out)!r}])\n"
        "print(code, sorted(m for m in sys.modules if m.split('.')[0] in "
        "('jinja2', 'libvirt', 'pycdlib', 'pyfatfs', 'pydantic') "
        "or m in ('builder.pipeline', 'typer._adapters')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(Path(cli.__file__).parents[1])},
    )
    assert REUSED in done.stderr
    assert done.stdout.split(None, 1) == ["0", "[]\n"]
