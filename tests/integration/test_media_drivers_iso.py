"""drivers.iso (builder/media/iso9660.py write_drivers_iso) checked with isoinfo and xorriso.

Built from each kind of driver source -- a directory, a virtio-win ISO (read in place)
and a legacy .vfd floppy -- it must be ISO 9660 + Joliet + Rock Ridge with the label,
list exactly the planned files in the Rock Ridge and the Joliet tree, and hold every
file's bytes as the source tree has them.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from builder.config import load_config
from builder.media import layout
from builder.media.files import IsoPlan
from builder.media.iso9660 import write_drivers_iso
from builder.media.plan import MediaInputs, plan_drivers_disc
from builder.sources import open_source
from builder.virtio.facts import load_driver_facts
from builder.virtio.packages import scan_source
from builder.virtio.selection import select_drivers
from builder.virtio.source import DriverSource
from builder.windows.profiles import PROFILES
from tests.fixtures.virtio_win import (
    PROFILE_OS_FOLDERS,
    Tree,
    make_floppy_image,
    make_iso,
    tool_available,
    write_floppy_tree,
    write_modern_tree,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not all(tool_available(t) for t in ("isoinfo", "xorriso")),
        reason="needs isoinfo (genisoimage) and xorriso",
    ),
]

EPOCH = 1_700_000_000
POSTINSTALL = {layout.POSTINSTALL_SCRIPT: b"@echo off\r\n", layout.MARKER_FILE: b"pv\r\n"}
ANSWERS_2008 = {"autounattend.xml": b"<unattend/>\r\n"}
ANSWERS_2003 = {"winnt.sif": b"[Data]\r\n", "txtsetup.oem": b"[Disks]\r\n"}


@pytest.fixture(scope="module")
def modern(tmp_path_factory: pytest.TempPathFactory) -> Tree:
    return write_modern_tree(tmp_path_factory.mktemp("vw") / "virtio-win", oses=PROFILE_OS_FOLDERS)


def plan_from(source: DriverSource, profile: str, *sets: str) -> IsoPlan:
    is_2003 = profile.startswith("win2003")
    extra = ["product_key=ABCDE-FGHIJ-KLMNO-PQRST-UVWXY"] if is_2003 else []
    config = load_config(PROFILES[profile], sets=["admin_password=x", *extra, *sets])
    drivers = select_drivers(scan_source(source, load_driver_facts()), PROFILES[profile])
    answers = ANSWERS_2003 if is_2003 else ANSWERS_2008
    return plan_drivers_disc(MediaInputs(config, drivers, answers, POSTINSTALL))


def run(*argv: str) -> str:
    done = subprocess.run(argv, capture_output=True, check=False)
    assert done.returncode == 0, (argv, done.stderr)
    return done.stdout.decode("utf-8", "replace")


def listing(image: Path, namespace: str) -> set[str]:
    """Every path `isoinfo -f` lists in the Rock Ridge (`-R`) or Joliet (`-J`) tree."""
    return {line for line in run("isoinfo", "-f", namespace, "-i", str(image)).splitlines() if line}


def planned_paths(plan: IsoPlan) -> set[str]:
    paths: set[str] = set()
    for planned in plan.files:
        parts = planned.path.split("/")
        paths.update("/" + "/".join(parts[:depth]) for depth in range(1, len(parts) + 1))
    return paths


def check_image(image: Path, plan: IsoPlan, truth: Tree, tmp_path: Path) -> None:
    info = run("isoinfo", "-d", "-i", str(image))
    assert f"Volume id: {plan.label}" in info
    assert "Joliet with UCS level 3 found" in info
    assert "Rock Ridge signatures version 1 found" in info
    assert listing(image, "-R") == planned_paths(plan)
    assert listing(image, "-J") == planned_paths(plan)
    # Extract with the Rock Ridge names and compare every file's bytes.
    extracted = tmp_path / "extracted"
    run("xorriso", "-osirrox", "on", "-indev", str(image), "-extract", "/", str(extracted))
    for planned in plan.files:
        expected = planned.data
        if expected is None:
            assert planned.source_path is not None
            expected = truth.path(planned.source_path).read_bytes()
        assert (extracted / planned.path).read_bytes() == expected, planned.path
    # And through Joliet, which is what Windows reads.
    for planned in plan.files[:5]:
        joliet = subprocess.run(
            ["isoinfo", "-J", "-i", str(image), "-x", f"/{planned.path}"],
            capture_output=True,
            check=True,
        ).stdout
        assert joliet == (extracted / planned.path).read_bytes()


@pytest.mark.parametrize("profile", ["win2008r2-x64", "win2003-x86"])
def test_from_a_directory(modern: Tree, tmp_path: Path, profile: str) -> None:
    with open_source(modern.root) as source:
        plan = plan_from(source, profile)
        write_drivers_iso(plan, tmp_path / "drivers.iso", source, epoch=EPOCH)
    assert {p.partition("/")[0] for p in (f.path for f in plan.files) if "/" in p} >= {
        "viostor",
        "NetKVM",
    }
    check_image(tmp_path / "drivers.iso", plan, modern, tmp_path)


def test_from_a_virtio_win_iso_read_in_place(modern: Tree, tmp_path: Path) -> None:
    image = make_iso(modern, tmp_path / "virtio-win.iso", style="modern")
    with open_source(image.path) as source:
        assert source.kind == "iso"
        plan = plan_from(source, "win2008-x64", "drivers_iso_label=MY_DRIVERS")
        write_drivers_iso(plan, tmp_path / "drivers.iso", source, epoch=EPOCH)
    assert plan.label == "MY_DRIVERS"
    check_image(tmp_path / "drivers.iso", plan, modern, tmp_path)


def test_from_a_legacy_floppy(tmp_path: Path) -> None:
    tree = write_floppy_tree(tmp_path / "vfd-tree", "amd64")
    image = make_floppy_image(tree, tmp_path / "virtio-win_servers_amd64.vfd")
    with open_source(image.path) as source:
        assert source.kind == "floppy"
        plan = plan_from(source, "win2008-x64")
        write_drivers_iso(plan, tmp_path / "drivers.iso", source, epoch=EPOCH)
    # The floppy's Win2008 folder becomes the virtio-win layout <Driver>/2k8/amd64.
    assert "viostor/2k8/amd64/viostor.sys" in {f.path for f in plan.files}
    check_image(tmp_path / "drivers.iso", plan, tree, tmp_path)
