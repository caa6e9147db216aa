"""The fixture images checked with real tools: isoinfo for the ISOs, fsck.fat and mtools
for the floppy. These images are what the product's ISO and floppy readers get fed."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from tests.fixtures import virtio_win as vw
from tests.fixtures.virtio_win import IsoStyle, IsoTool, Tree

pytestmark = pytest.mark.integration

needs_isoinfo = pytest.mark.skipif(not vw.tool_available("isoinfo"), reason="isoinfo missing")
needs_mtools = pytest.mark.skipif(
    not (vw.tool_available("mformat") and vw.tool_available("fsck.fat")),
    reason="mtools or fsck.fat missing",
)


def tool_param(tool: str) -> object:
    return pytest.param(
        tool, marks=pytest.mark.skipif(not vw.tool_available(tool), reason=f"{tool} missing")
    )


TOOLS = [tool_param("xorriso"), tool_param("genisoimage")]


def run(*argv: str) -> str:
    return subprocess.run(list(argv), check=True, capture_output=True, text=True).stdout


def run_bytes(*argv: str) -> bytes:
    return subprocess.run(list(argv), check=True, capture_output=True).stdout


@pytest.fixture(scope="module")
def modern(tmp_path_factory: pytest.TempPathFactory) -> Tree:
    return vw.write_modern_tree(tmp_path_factory.mktemp("tree"))


@pytest.fixture(scope="module")
def floppy_tree(tmp_path_factory: pytest.TempPathFactory) -> Tree:
    return vw.write_floppy_tree(tmp_path_factory.mktemp("floppy"), "amd64")


def listing(image: Path, *flags: str) -> set[str]:
    return set(run("isoinfo", *flags, "-f", "-i", str(image)).split())


def expected_paths(tree: Tree) -> set[str]:
    return {f"/{p}" for p in (*tree.files, *tree.directories)}


@needs_isoinfo
@pytest.mark.parametrize("tool", TOOLS)
def test_modern_iso_has_rock_ridge_and_no_joliet(
    modern: Tree, tmp_path: Path, tool: IsoTool
) -> None:
    image = vw.make_iso(modern, tmp_path / "virtio-win.iso", style="modern", tool=tool)
    info = run("isoinfo", "-d", "-i", str(image.path))
    assert "Volume id: virtio-win-0.1.240" in info
    assert "Rock Ridge signatures version 1 found" in info
    assert "NO Joliet present" in info
    assert "ISO 9660:1999" in info  # -iso-level 4
    names = listing(image.path, "-R")
    assert names == expected_paths(modern)
    assert "/viostor/2k8R2/amd64/viostor.inf" in names
    assert "/Balloon/2k8/amd64/balloon.cat" in names
    assert "/vioserial/2k8/amd64/vioser.inf" in names
    assert "/amd64/w10/viostor.inf" in names
    assert "/amd64/2k8R2" not in names


@needs_isoinfo
@pytest.mark.parametrize("tool", TOOLS)
def test_joliet_iso_keeps_exact_case_in_joliet(modern: Tree, tmp_path: Path, tool: IsoTool) -> None:
    image = vw.make_iso(modern, tmp_path / "old.iso", style="joliet", tool=tool)
    info = run("isoinfo", "-d", "-i", str(image.path))
    assert "Joliet with UCS level 3 found" in info
    assert "Rock Ridge signatures version 1 found" in info
    names = listing(image.path, "-J")
    assert names == expected_paths(modern)
    assert "/viostor/2k8R2/amd64/viostor.inf" in names
    assert "/NetKVM/2k8/amd64/netkvm.inf" in names


@needs_isoinfo
@pytest.mark.parametrize("tool", TOOLS)
def test_joliet_only_iso_has_no_rock_ridge(modern: Tree, tmp_path: Path, tool: IsoTool) -> None:
    image = vw.make_iso(modern, tmp_path / "j.iso", style="joliet-only", tool=tool)
    info = run("isoinfo", "-d", "-i", str(image.path))
    assert "Joliet with UCS level 3 found" in info
    assert "NO Rock Ridge present" in info
    assert "/viostor/2k8R2/amd64/viostor.inf" in listing(image.path, "-J")


@needs_isoinfo
@pytest.mark.parametrize("tool", TOOLS)
def test_plain_iso_has_only_upper_case_iso9660_names(
    modern: Tree, tmp_path: Path, tool: IsoTool
) -> None:
    image = vw.make_iso(modern, tmp_path / "plain.iso", style="plain", tool=tool)
    info = run("isoinfo", "-d", "-i", str(image.path))
    assert "NO Joliet present" in info
    assert "NO Rock Ridge present" in info
    names = listing(image.path)
    assert "/VIOSTOR/2K8R2/AMD64/VIOSTOR.INF;1" in names
    assert "/BALLOON/2K8/AMD64/WDFCOINSTALLER01009.DLL;1" in names
    assert not [n for n in names if n != n.upper()]


@needs_isoinfo
@pytest.mark.parametrize("tool", TOOLS)
def test_iso_files_read_back_byte_for_byte(modern: Tree, tmp_path: Path, tool: IsoTool) -> None:
    image = vw.make_iso(modern, tmp_path / "rt.iso", style="modern", tool=tool)
    for relpath in (
        "qemupciserial/2k8/amd64/qemupciserial.inf",  # UTF-16LE with BOM
        "viostor/2k8/amd64/viostor.inf",
        "Balloon/2k8/amd64/balloon.cat",
        "viostor/2k8R2/amd64/viostor.sys",
    ):
        data = run_bytes("isoinfo", "-R", "-i", str(image.path), "-x", f"/{relpath}")
        assert data == modern.path(relpath).read_bytes(), relpath


@needs_isoinfo
@needs_mtools
def test_images_are_reproducible(floppy_tree: Tree, tmp_path: Path) -> None:
    tree = vw.write_modern_tree(tmp_path / "tree", oses=["2k8R2"])
    cases: list[tuple[IsoTool, IsoStyle]] = [
        ("xorriso", "modern"),
        ("genisoimage", "modern"),
        ("genisoimage", "joliet"),
    ]
    cases = [(tool, style) for tool, style in cases if vw.tool_available(tool)]

    def build(suffix: str) -> list[bytes]:
        images = [
            vw.make_iso(tree, tmp_path / f"{tool}-{style}-{suffix}.iso", style=style, tool=tool)
            for tool, style in cases
        ]
        images.append(vw.make_floppy_image(floppy_tree, tmp_path / f"floppy-{suffix}.img"))
        return [image.path.read_bytes() for image in images]

    first = build("a")
    time.sleep(1.1)  # the tools stamp the current second unless told otherwise
    assert build("b") == first


@needs_mtools
def test_floppy_image_passes_fsck_and_mtools(floppy_tree: Tree, tmp_path: Path) -> None:
    image = vw.make_floppy_image(floppy_tree, tmp_path / "virtio-win_servers_amd64.vfd")
    assert image.path.stat().st_size == 2880 * 1024
    run("fsck.fat", "-n", str(image.path))
    listing = run("mdir", "-i", str(image.path), "::/amd64/Win2008")
    for name in ("viostor  inf", "vioscsi  inf", "netkvm   inf", "viostor  sys"):
        assert name in listing
    info = run("minfo", "-i", str(image.path), "::")
    assert "serial number: 1AF41001" in info
    everything = run("mdir", "-i", str(image.path), "-/", "-b", "::/").split()
    files = {p.removeprefix("::/") for p in everything if not p.endswith("/")}
    assert files == set(floppy_tree.files)
    for relpath in ("txtsetup.oem", "amd64/Win2003/viostor.inf", "amd64/Win2019/netkvm.sys"):
        data = run_bytes("mtype", "-i", str(image.path), f"::/{relpath}")
        assert data == floppy_tree.path(relpath).read_bytes(), relpath


@needs_mtools
def test_floppy_that_does_not_fit_fails_loudly(tmp_path: Path) -> None:
    tree = vw.write_floppy_tree(tmp_path / "big", "amd64", binary_size=200_000)
    with pytest.raises(RuntimeError, match="mcopy"):
        vw.make_floppy_image(tree, tmp_path / "small.img", size_kib=1440)
