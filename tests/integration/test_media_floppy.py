"""The answer floppy (builder/fat.write_floppy) checked with fsck.fat and mtools.

fsck.fat -n must find nothing wrong and count exactly the clusters the plan computed
(so the capacity check and the writer agree), mdir must list exactly the planned files,
and mcopy must read every file back byte for byte.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from builder.config import load_config
from builder.errors import BuildError
from builder.media import fat, layout
from builder.media.fat import write_floppy
from builder.media.fat_reader import FloppySource
from builder.media.files import PlannedFile
from builder.media.floppy import GEOMETRIES, FloppyPlan, floppy_usage
from builder.media.plan import MediaInputs, plan_answer_floppy
from builder.virtio.facts import load_driver_facts
from builder.virtio.packages import scan_source
from builder.virtio.selection import select_drivers
from builder.virtio.source import DirectorySource
from builder.windows.profiles import PROFILES
from tests.fixtures.virtio_win import PROFILE_OS_FOLDERS, Tree, tool_available, write_modern_tree

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not all(tool_available(t) for t in ("fsck.fat", "mdir", "mcopy", "minfo")),
        reason="needs dosfstools and mtools",
    ),
]

EPOCH = 1_700_000_000
SERIAL = 0x1AF41001
MTOOLS_ENV = {**os.environ, "MTOOLSRC": os.devnull, "MTOOLS_SKIP_CHECK": "0"}
ANSWERS = {
    "win2008r2-x64": {"autounattend.xml": b'<?xml version="1.0"?>\r\n<unattend/>\r\n'},
    "win2003-x86": {"winnt.sif": b"[Data]\r\nAutoPartition=1\r\n", "txtsetup.oem": b"[Disks]\r\n"},
}
ANSWERS["win2003-x64"] = ANSWERS["win2003-x86"]
ANSWERS["win2008-x64"] = ANSWERS["win2008r2-x64"]
POSTINSTALL = {layout.POSTINSTALL_SCRIPT: b"@echo off\r\n", layout.MARKER_FILE: b"pv\r\n"}


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Tree:
    return write_modern_tree(tmp_path_factory.mktemp("vw") / "virtio-win", oses=PROFILE_OS_FOLDERS)


def plan_for(tree: Tree, profile: str, size: str) -> FloppyPlan:
    sets = ["admin_password=x", f"floppy_size={size}"]
    if profile.startswith("win2003"):
        sets.append("product_key=ABCDE-FGHIJ-KLMNO-PQRST-UVWXY")
    config = load_config(PROFILES[profile], sets=sets)
    drivers = select_drivers(
        scan_source(DirectorySource(tree.root), load_driver_facts()), PROFILES[profile]
    )
    return plan_answer_floppy(MediaInputs(config, drivers, ANSWERS[profile], POSTINSTALL))


def run(*argv: str) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, env=MTOOLS_ENV, check=False)
    assert done.returncode == 0, (argv, done.stdout, done.stderr)
    return done.stdout


def fsck_clusters(image: Path) -> tuple[int, int]:
    """Run `fsck.fat -n`; it must find nothing to fix. Returns (used, total) clusters."""
    output = run("fsck.fat", "-n", str(image))
    assert "differ" not in output and "Free cluster" not in output, output
    match = re.search(r"(\d+) files, (\d+)/(\d+) clusters", output)
    assert match, output
    return int(match.group(2)), int(match.group(3))


def mdir_paths(image: Path) -> set[str]:
    """Every file on the image as `mdir -/ -b` lists it (long names, folders end in /)."""
    lines = run("mdir", "-/", "-b", "-i", str(image), "::").splitlines()
    return {line.removeprefix("::/") for line in lines if not line.endswith("/")}


def expected_bytes(tree: Tree, planned: PlannedFile) -> bytes:
    if planned.data is not None:
        return planned.data
    assert planned.source_path is not None
    return tree.path(planned.source_path).read_bytes()


def assert_reads_back(tree: Tree, plan: FloppyPlan, image: Path, tmp_path: Path) -> None:
    assert mdir_paths(image) == {f.path for f in plan.files}
    for index, planned in enumerate(plan.files):
        target = tmp_path / f"readback-{index}"
        run("mcopy", "-n", "-i", str(image), f"::/{planned.path}", str(target))
        assert target.read_bytes() == expected_bytes(tree, planned), planned.path
    # pvinstall's own reader of driver floppies reads what mtools reads.
    with FloppySource(image) as floppy:
        assert {f.path for f in floppy.files()} == {f.path for f in plan.files}
        for planned in plan.files:
            assert floppy.read_exact(planned.path, planned.size) == expected_bytes(tree, planned)


@pytest.mark.parametrize(
    ("profile", "size"),
    [
        ("win2008r2-x64", "1.44"),
        ("win2008r2-x64", "2.88"),
        ("win2008-x64", "1.44"),
        ("win2003-x86", "1.44"),
        ("win2003-x64", "2.88"),
    ],
)
def test_floppy_passes_fsck_and_reads_back(
    tree: Tree, tmp_path: Path, profile: str, size: str
) -> None:
    plan = plan_for(tree, profile, size)
    image = tmp_path / "floppy.img"
    with DirectorySource(tree.root) as source:
        write_floppy(plan, image, source, epoch=EPOCH, serial=SERIAL)
    geometry = GEOMETRIES[plan.size_kib]
    assert image.stat().st_size == geometry.size
    assert fsck_clusters(image) == (plan.usage.clusters, geometry.data_clusters)
    assert_reads_back(tree, plan, image, tmp_path)
    info = run("minfo", "-i", str(image), "::")
    assert f"sectors per track: {geometry.sectors_per_track}" in info
    assert "heads: 2" in info
    listing = run("mdir", "-i", str(image), "::")
    assert f"Volume in drive : is {layout.FLOPPY_LABEL}" in listing
    assert "Volume Serial Number is 1AF4-1001" in listing
    assert "2023-11-14  22:13" in listing  # every entry dated from the epoch, in UTC
    if profile.startswith("win2003"):
        # The F6 disk: the tag file [Disks] names, TXTSETUP.OEM, WINNT.SIF, the driver.
        assert {"DISK1", "TXTSETUP.OEM", "WINNT.SIF", "VIOSTOR/viostor.sys"} <= mdir_paths(image)


def exactly_full_plan(kib: int, extra: int = 0) -> FloppyPlan:
    """Long names in a folder big enough to need several clusters, an 8.3 root file, an
    empty tag file, and a filler that makes the data area exactly full (+extra)."""
    geometry = GEOMETRIES[kib]
    files = [
        PlannedFile.inline(f"Drivers Folder/long driver name {i:02}.sys", bytes([i]) * 700)
        for i in range(40)
    ]
    files += [PlannedFile.inline("DISK1", b""), PlannedFile.inline("Autounattend.xml", b"<x/>")]
    used = floppy_usage([(f.path, f.size) for f in files] + [("FILLER.BIN", 1)], geometry)
    free = geometry.data_clusters - used.clusters + 1
    filler = bytes(range(256)) * ((free * geometry.cluster_bytes) // 256) + b"\xaa" * extra
    files.append(PlannedFile.inline("FILLER.BIN", filler))
    files.sort(key=lambda f: f.path)
    usage = floppy_usage([(f.path, f.size) for f in files], geometry)
    return FloppyPlan(kib, "FULL", tuple(files), usage)


@pytest.mark.parametrize("kib", [1440, 2880])
def test_exactly_full_floppy_is_written_and_clean(tmp_path: Path, kib: int) -> None:
    plan = exactly_full_plan(kib)
    geometry = GEOMETRIES[kib]
    assert plan.usage.clusters == geometry.data_clusters and plan.usage.fits
    image = tmp_path / "full.img"
    write_floppy(plan, image, DirectorySource(tmp_path), epoch=EPOCH, serial=SERIAL)
    assert image.stat().st_size == geometry.size
    assert fsck_clusters(image) == (geometry.data_clusters, geometry.data_clusters)
    assert_reads_back(Tree(tmp_path, "modern", "", (), ()), plan, image, tmp_path)


def test_one_cluster_over_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    plan = exactly_full_plan(1440, extra=1)
    assert not plan.usage.fits
    image = tmp_path / "over.img"
    with pytest.raises(BuildError, match="do not fit"):
        write_floppy(plan, image, DirectorySource(tmp_path), epoch=EPOCH, serial=SERIAL)
    assert not image.exists()


def test_root_entries_up_to_the_limit(tmp_path: Path) -> None:
    # 223 files and the volume label: all 224 root entries.
    files = tuple(PlannedFile.inline(f"F{i:03}.TXT", b"%d" % i) for i in range(223))
    plan = FloppyPlan(
        1440, "ROOT", files, floppy_usage([(f.path, f.size) for f in files], GEOMETRIES[1440])
    )
    assert plan.usage.root_entries == 224 and plan.usage.fits
    image = tmp_path / "root.img"
    write_floppy(plan, image, DirectorySource(tmp_path), epoch=EPOCH, serial=SERIAL)
    assert fsck_clusters(image)[0] == 223
    assert len(mdir_paths(image)) == 223


def test_the_epoch_dates_the_image(tree: Tree, tmp_path: Path) -> None:
    # That the same epoch gives the same bytes, in another process and time zone too, is
    # tests/integration/test_build.py's; here: the epoch is what dates the entries.
    plan = plan_for(tree, "win2008r2-x64", "1.44")
    with DirectorySource(tree.root) as source:
        write_floppy(plan, tmp_path / "a.img", source, epoch=EPOCH, serial=SERIAL)
        write_floppy(plan, tmp_path / "c.img", source, epoch=EPOCH + 2, serial=SERIAL)
    assert (tmp_path / "a.img").read_bytes() != (tmp_path / "c.img").read_bytes()


def test_a_changed_source_fails_and_leaves_nothing(tree: Tree, tmp_path: Path) -> None:
    plan = plan_for(tree, "win2003-x86", "1.44")
    planned = next(f for f in plan.files if f.source_path)
    assert planned.source_path is not None
    grown = PlannedFile.from_source(planned.path, planned.source_path, planned.size + 1)
    wrong = FloppyPlan(
        plan.size_kib,
        plan.label,
        tuple(grown if f is planned else f for f in plan.files),
        plan.usage,
    )
    image = tmp_path / "floppy.img"
    with pytest.raises(BuildError, match="driver source changed"):
        write_floppy(wrong, image, DirectorySource(tree.root), epoch=EPOCH, serial=SERIAL)
    assert not image.exists()


def test_boot_sector_is_the_blank_image_s(tree: Tree, tmp_path: Path) -> None:
    plan = plan_for(tree, "win2003-x86", "1.44")
    image = tmp_path / "floppy.img"
    write_floppy(plan, image, DirectorySource(tree.root), epoch=EPOCH, serial=SERIAL)
    blank = fat.blank_image(GEOMETRIES[1440], plan.label, SERIAL, EPOCH)
    assert image.read_bytes()[:512] == blank[:512]


# Names the writer must spell right: long ones, clashing short ones, spaces (which get a
# long name), dots, accents, characters an 8.3 name cannot hold.
_NAME = st.text(alphabet="abcXYZ .~_-+,;=[]é€ñ0123456789", min_size=1, max_size=20).map(
    lambda name: name.strip(" .") or "f"
)


@settings(max_examples=25, deadline=None, derandomize=True, database=None)
@given(
    names=st.lists(
        st.tuples(st.lists(_NAME, max_size=2), _NAME, st.sampled_from([0, 5, 600, 5000])),
        min_size=1,
        max_size=25,
    ),
    kib=st.sampled_from([1440, 2880]),
)
def test_any_tree_of_names_passes_fsck_and_reads_back_with_mcopy(
    names: list[tuple[list[str], str, int]], kib: int
) -> None:
    files: dict[str, bytes] = {}
    for folders, name, size in names:
        path = "/".join([*folders, name])
        taken = {p.lower() for p in files}
        if path.lower() in taken or any(
            t.startswith(path.lower() + "/") or path.lower().startswith(t + "/") for t in taken
        ):
            continue
        files[path] = bytes([len(files) % 256]) * size
    planned = tuple(PlannedFile.inline(path, data) for path, data in files.items())
    geometry = GEOMETRIES[kib]
    plan = FloppyPlan(
        kib, "NAMES", planned, floppy_usage([(f.path, f.size) for f in planned], geometry)
    )
    with tempfile.TemporaryDirectory() as work:
        image = Path(work) / "floppy.img"
        try:
            write_floppy(plan, image, DirectorySource(Path(work)), epoch=EPOCH, serial=SERIAL)
        except BuildError as refused:
            # Only a clash of an 8.3 name with a short name given before it in its folder.
            assert "already took it" in str(refused)
            return
        assert fsck_clusters(image) == (plan.usage.clusters, geometry.data_clusters)
        copied = Path(work) / "copied"
        copied.mkdir()
        run("mcopy", "-s", "-n", "-m", "-i", str(image), "::/*", str(copied))
        found = {
            str(p.relative_to(copied)): p.read_bytes() for p in copied.rglob("*") if p.is_file()
        }
        assert found == files
