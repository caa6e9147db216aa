"""The media table (builder/media/table.py): which media a build has, what each becomes in
the domain, and that a new row is all a new medium needs."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from builder.config import load_config
from builder.errors import BuildError
from builder.media import table
from builder.media.plan import MediaInputs
from builder.virtio.facts import load_driver_facts
from builder.virtio.packages import scan_source
from builder.virtio.selection import DriverSet, select_drivers
from builder.virtio.source import DirectorySource
from builder.vm import existing
from builder.windows.profiles import PROFILES, StorageRoute
from tests.fixtures.virtio_win import PROFILE_OS_FOLDERS, Tree, write_modern_tree

CD = Path("/srv/iso/windows.iso")
OUT = Path("/out")


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Tree:
    return write_modern_tree(
        tmp_path_factory.mktemp("vw") / "vw", drivers=["viostor", "NetKVM"], oses=PROFILE_OS_FOLDERS
    )


def select(tree: Tree, profile: str) -> DriverSet:
    facts = load_driver_facts()
    scan = scan_source(DirectorySource(tree.root), facts)
    return select_drivers(scan, PROFILES[profile], facts)


def inputs(tree: Tree, profile: str) -> MediaInputs:
    sets = ["admin_password=x"]
    if PROFILES[profile].product_key_required:
        sets.append("product_key=ABCDE-FGHIJ-KLMNO-PQRST-UVWXY")
    answers = {name: b"x" for name in PROFILES[profile].answer_files}
    config = load_config(PROFILES[profile], sets=sets)
    return MediaInputs(config, select(tree, profile), answers, {"POSTINST.CMD": b"@echo off"})


@pytest.mark.parametrize(
    ("profile", "windows_iso", "names"),
    [
        ("win2003-x86", CD, ["floppy.img", "drivers.iso", "install.iso"]),
        ("win2003-x86", None, ["floppy.img", "drivers.iso", "Windows ISO"]),
        ("win2008-x64", CD, ["floppy.img", "drivers.iso", "Windows ISO"]),
        ("win2008r2-x64", None, ["floppy.img", "drivers.iso", "Windows ISO"]),
        # No floppy on q35: the answer file and windowsPE's drivers on an answer ISO.
        # The DVD through the overlay that boots efisys_noprompt.bin.
        ("win2022-x64", CD, ["answer.iso", "drivers.iso", "install-dvd.qcow2"]),
        ("win2012r2-x64", None, ["answer.iso", "drivers.iso", "Windows ISO"]),
    ],
)
def test_which_media_a_build_has(profile: str, windows_iso: Path | None, names: list[str]) -> None:
    media = table.media_for(PROFILES[profile], windows_iso)
    assert [m.name for m in media] == names
    # Whatever the build, the install drive is there (empty without an ISO) and boots
    # after the system disk.
    (install,) = (m for m in media if (m.device, m.drive) == ("cdrom", 0))
    assert install.boot_order == 2
    attached = {a.name: a.path for a in table.attach(media, OUT, windows_iso)}
    written = next((n for n in ("install.iso", "install-dvd.qcow2") if n in names), None)
    expected_install = OUT / written if written else windows_iso
    assert attached[install.name] == expected_install


def test_what_pvinstall_writes_carries_the_answer_files_and_is_secret() -> None:
    written = [m for m in table.MEDIA if m.builder is not None]
    assert [m.name for m in written] == [
        "floppy.img",
        "answer.iso",
        "drivers.iso",
        "install.iso",
        "install-dvd.qcow2",
    ]
    assert all(m.removed_after_install for m in written)
    # The overlay holds the user's DVD, no secret; the rest carry the answer files.
    assert [m.name for m in written if not m.secret] == ["install-dvd.qcow2"]
    # The user's ISO is not pvinstall's to make 0600, but it leaves the template too.
    (user,) = (m for m in table.MEDIA if m.builder is None)
    assert not user.secret and user.removed_after_install


def test_the_dvd_overlay_is_read_as_qcow2_and_everything_else_as_raw() -> None:
    attached = table.attach(table.media_for(PROFILES["win2022-x64"], CD), OUT, CD)
    assert {(m.name, m.image_format) for m in attached} == {
        ("answer.iso", "raw"),
        ("drivers.iso", "raw"),
        ("install-dvd.qcow2", "qcow2"),
    }
    dvd = next(m for m in attached if m.name == "install-dvd.qcow2")
    assert (dvd.path, dvd.drive, dvd.boot_order) == (OUT / "install-dvd.qcow2", 0, 2)


def test_the_2003_cd_is_planned_only_when_given(tree: Tree) -> None:
    with_cd = table.plan_media(inputs(tree, "win2003-x86"), CD)
    planned = with_cd.get("install.iso")
    assert planned is not None and planned.plan.setup_dir == "I386"
    assert [p.medium.name for p in with_cd.planned] == ["floppy.img", "drivers.iso", "install.iso"]
    assert table.plan_media(inputs(tree, "win2003-x86"), None).get("install.iso") is None
    assert table.plan_media(inputs(tree, "win2008-x64"), CD).get("install.iso") is None


def test_the_manifest_lists_what_each_medium_holds(tree: Tree) -> None:
    media = table.plan_media(inputs(tree, "win2008-x64"), CD)
    floppy = media.get("floppy.img")
    assert floppy is not None
    paths = [f.path for f in floppy.builder.files(floppy.plan)]
    assert paths[0] == "Autounattend.xml" and any(p.startswith("VIOSTOR/") for p in paths)


def test_a_profile_whose_storage_route_no_medium_serves_is_refused() -> None:
    answer_iso = dataclasses.replace(
        PROFILES["win2008r2-x64"], storage_route=StorageRoute.ANSWER_ISO
    )
    without = tuple(m for m in table.MEDIA if m.serves is not StorageRoute.ANSWER_ISO)
    with pytest.raises(BuildError, match="no medium of the media table carries the storage"):
        table.media_for(answer_iso, None, without)
    no_floppy = dataclasses.replace(PROFILES["win2008r2-x64"], floppy_controller=False)
    with pytest.raises(BuildError, match="answer-floppy"):
        table.media_for(no_floppy, None)


def test_a_new_medium_is_one_row_and_leaves_with_the_others(tree: Tree) -> None:
    """An extra disc in a third CD-ROM drive: attached, and taken out after the install,
    with nothing else changed."""
    drivers_disc = next(m for m in table.MEDIA if m.name == "drivers.iso")
    extra = dataclasses.replace(
        drivers_disc, name="tools.iso", title="tools disc", drive=2, serves=None
    )
    rows = (*table.MEDIA, extra)
    media = table.plan_media(inputs(tree, "win2008-x64"), CD, rows)
    assert [p.medium.name for p in media.planned] == ["floppy.img", "drivers.iso", "tools.iso"]
    removed = media.removed_after_install(OUT, CD)
    assert {m.name for m in removed} == {"floppy.img", "drivers.iso", "tools.iso", "Windows ISO"}
    xml = (
        "<domain><devices>"
        + "".join(
            f"<disk type='file' device='{m.device}'><source file='{m.path}'/>"
            f"<target dev='t{i}'/></disk>"
            for i, m in enumerate(removed)
        )
        + "</devices></domain>"
    )
    stripped = existing.strip_install_media(xml, removed)
    assert existing.media_attached(stripped.xml, removed) == ()
    assert len(stripped.removed) == 4
