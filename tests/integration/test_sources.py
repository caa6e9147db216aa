"""Driver sources read from real images (builder/sources.py, iso.py, floppy.py readers).

Images are built by the fixture generator with xorriso/genisoimage and mtools, the way
virtio-win built them; the product must read the same packages from each as from the
directory tree they were made of.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from builder.errors import InputError
from builder.sources import open_source
from builder.virtio.facts import load_driver_facts
from builder.virtio.packages import scan_source
from builder.virtio.selection import select_drivers
from builder.virtio.source import DirectorySource
from builder.windows.profiles import PROFILES
from tests.fixtures.virtio_win import (
    IsoTool,
    Tree,
    make_floppy_image,
    make_iso,
    write_floppy_tree,
    write_modern_tree,
)

pytestmark = pytest.mark.integration
FACTS = load_driver_facts()


@pytest.fixture(scope="module")
def modern(tmp_path_factory: pytest.TempPathFactory) -> Tree:
    return write_modern_tree(tmp_path_factory.mktemp("src") / "virtio-win-0.1.240")


@pytest.mark.parametrize(
    ("style", "tool", "namespace"),
    [
        ("modern", "xorriso", "rr"),
        ("modern", "genisoimage", "rr"),
        ("joliet", "genisoimage", "rr"),
        ("joliet-only", "xorriso", "joliet"),
        ("plain", "genisoimage", "iso9660"),
    ],
)
def test_iso_selection_equals_directory_selection(
    modern: Tree, tmp_path: Path, style: str, tool: str, namespace: str
) -> None:
    image = make_iso(modern, tmp_path / "virtio-win.iso", style=style, tool=tool)  # type: ignore[arg-type]
    expected = {}
    for name, profile in PROFILES.items():
        selection = select_drivers(scan_source(DirectorySource(modern.root), FACTS), profile)
        expected[name] = {d.name: d.inf_path for d in selection.selected}
    with open_source(image.path) as source:
        assert source.kind == "iso"
        assert source.label == image.volume_id
        assert source._reader.namespace == namespace  # type: ignore[attr-defined]
        scan = scan_source(source, FACTS)
        for name, profile in PROFILES.items():
            selection = select_drivers(scan, profile)
            got = {d.name: d.inf_path for d in selection.selected}
            if namespace == "iso9660":
                # Plain ISO 9660 upper-cases names (and may shorten them); a name that is
                # not made of d-characters (pvpanic-pci.inf, of the Win10 and Win11
                # builds) becomes another (PVPANIC_PCI.INF) that names no known driver.
                assert {k: v.upper() for k, v in got.items()} == {
                    k: v.upper()
                    for k, v in expected[name].items()
                    if "-" not in v.rpartition("/")[2]
                }
            else:
                assert got == expected[name], (name, style, tool)
            for driver in selection.selected:
                for file in driver.files:
                    truth_path = next(p for p in modern.files if p.upper() == file.path.upper())
                    data = modern.path(truth_path).read_bytes()
                    assert source.size(file.path) == len(data)
                    assert source.sha256(file.path) == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("arch", ["x86", "amd64"])
def test_legacy_floppy_image(tmp_path: Path, arch: str) -> None:
    tree = write_floppy_tree(tmp_path / "tree", arch)  # type: ignore[arg-type]
    image = make_floppy_image(tree, tmp_path / f"virtio-win_servers_{arch}.vfd")
    label = "x64" if arch == "amd64" else "x86"
    with open_source(image.path) as source:
        assert source.kind == "floppy"
        assert source.label == "VIRTIO"
        assert {f.path for f in source.files()} == set(tree.files)
        for family in ("win2003", "win2008"):
            selection = select_drivers(scan_source(source, FACTS), PROFILES[f"{family}-{label}"])
            viostor = selection.get("viostor")
            assert viostor is not None
            folder = {"win2003": "Win2003", "win2008": "Win2008"}[family]
            assert viostor.folder == f"{'i386' if arch == 'x86' else 'amd64'}/{folder}"
            truth = tree.inf(viostor.inf_path)
            assert sorted(f.path for f in viostor.files) == sorted(truth.package_relpaths())
            for file in viostor.files:
                data = tree.path(file.path).read_bytes()
                assert source.sha256(file.path) == hashlib.sha256(data).hexdigest()


def test_truncated_iso_is_refused(modern: Tree, tmp_path: Path) -> None:
    image = make_iso(modern, tmp_path / "v.iso")
    data = image.path.read_bytes()
    short = tmp_path / "short.iso"
    short.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError) as caught:
        open_source(short)
    assert "is truncated" in str(caught.value)
    assert str(short) in str(caught.value)


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"just some text\n" * 100, "is not an ISO 9660 image, a FAT floppy image"),
        (b"\x00" * 40000, "is not an ISO 9660 image, a FAT floppy image"),
        (b"", "is not an ISO 9660 image, a FAT floppy image"),
    ],
)
def test_files_that_are_not_images(tmp_path: Path, content: bytes, fragment: str) -> None:
    path = tmp_path / "thing.iso"
    path.write_bytes(content)
    with pytest.raises(InputError, match=fragment):
        open_source(path)


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        open_source(tmp_path / "nope.iso")


def test_iso_without_inf_files(tmp_path: Path) -> None:
    tree = tmp_path / "t"
    (tree / "docs").mkdir(parents=True)
    (tree / "docs" / "readme.txt").write_text("no drivers\n")
    image = make_iso(tree, tmp_path / "empty.iso")
    with open_source(image.path) as source, pytest.raises(InputError, match="has no INF files"):
        scan_source(source, FACTS)


@pytest.mark.parametrize("tool", ["xorriso", "genisoimage"])
def test_a_rock_ridge_name_in_a_continuation_area_is_read(tmp_path: Path, tool: IsoTool) -> None:
    """A directory record holds at most 255 bytes, so a 200-character Rock Ridge name
    (with the entry's PX and TF) continues in a CE area, which the reader follows."""
    tree = tmp_path / "t"
    (tree / "viostor").mkdir(parents=True)
    long_name = "viostor-" + "n" * 188 + ".sys"
    (tree / "viostor" / long_name).write_bytes(b"driver\n")
    (tree / "viostor" / "viostor.inf").write_bytes(b"[Version]\r\n")
    image = make_iso(tree, tmp_path / "long.iso", tool=tool)
    with open_source(image.path) as source:
        listed = {entry.path: entry.size for entry in source.files()}
        assert listed == {f"viostor/{long_name}": 7, "viostor/viostor.inf": 11}
        assert source.read_exact(f"viostor/{long_name}", 7) == b"driver\n"
