"""Selecting the packages a profile needs (builder/virtio/selection.py).

The oracle is the fixture generator's ground truth (tests/fixtures/virtio_win.py): it
records what every INF it wrote declares, independently of the product's parser.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from builder.errors import InputError
from builder.sources import driver_digests, open_source
from builder.virtio.facts import load_driver_facts
from builder.virtio.inf import supports
from builder.virtio.packages import Scan, scan_source
from builder.virtio.selection import driverset_json, select_drivers
from builder.virtio.source import DirectorySource
from builder.vm.devices import StorageBus
from builder.windows.profiles import PROFILES, Profile
from tests.fixtures.virtio_win import (
    Tree,
    edit_inf,
    remove_file,
    write_by_os_tree,
    write_modern_tree,
    write_pre2015_tree,
)

FACTS = load_driver_facts()


@pytest.fixture(scope="module")
def modern(tmp_path_factory: pytest.TempPathFactory) -> Tree:
    return write_modern_tree(tmp_path_factory.mktemp("modern") / "virtio-win")


def scan_dir(root: Path) -> Scan:
    return scan_source(DirectorySource(root), FACTS)


def test_decoration_rule_agrees_with_the_ground_truth(modern: Tree) -> None:
    scan = scan_dir(modern.root)
    by_path = {p.inf_path: p for p in scan.packages}
    for version in ((5, 2), (6, 0), (6, 1)):
        for arch in ("x86", "amd64"):
            for truth in modern.infs:
                match = supports(by_path[truth.relpath].inf, version, arch)
                assert (match is not None) == truth.supports(version, arch), (
                    truth.relpath,
                    version,
                    arch,
                )
                if match is not None:
                    expected = {
                        i.upper()
                        for line in truth.models
                        if line.section.lower() == match.models_section.lower()
                        for i in line.hardware_ids
                    }
                    assert {i.upper() for i in match.hardware_ids} == expected, truth.relpath


EXPECTED_FOLDER = {
    "win2003-x86": "2k3/x86",
    "win2003-x64": "2k3/amd64",
    "win2008-x86": "2k8/x86",
    "win2008-x64": "2k8/amd64",
    "win2008r2-x64": "2k8R2/amd64",
    "win2012r2-x64": "2k12R2/amd64",
    "win2016-x64": "2k16/amd64",
    "win2019-x64": "2k19/amd64",
    "win2022-x64": "2k22/amd64",
    "win2025-x64": "2k25/amd64",
}


def windows(profile: Profile) -> tuple[int, ...]:
    """The profile's Windows as the fixture's ground truth compares versions."""
    return (*profile.nt_version, *((profile.build,) if profile.build else ()))


@pytest.mark.parametrize("profile", list(PROFILES.values()), ids=list(PROFILES))
def test_selection_per_profile_modern_layout(modern: Tree, profile: Profile) -> None:
    selection = select_drivers(scan_dir(modern.root), profile, FACTS)
    names = {d.name for d in selection.selected}
    assert {"viostor", "NetKVM"} <= names
    if profile.os_folder == "2k3":
        assert "vioscsi" not in names  # no 2003 build exists
    for driver in selection.selected:
        truth = modern.inf(driver.inf_path)
        assert truth.supports(windows(profile), profile.arch)
        assert driver.folder.endswith(EXPECTED_FOLDER[profile.name]), driver.inf_path
        assert sorted(f.path for f in driver.files) == sorted(truth.package_relpaths())
        assert driver.boot_critical == truth.boot_critical
        assert not driver.folder.startswith(("amd64/", "i386/"))  # not the auto-detect tree
    assert selection.storage.name == "viostor"


def test_rejections_say_why(modern: Tree) -> None:
    selection = select_drivers(scan_dir(modern.root), PROFILES["win2008-x64"], FACTS)
    reasons = {r.inf: r.reason for r in selection.rejected}
    assert "needs Windows Server 2008 R2" in reasons["viostor/2k8R2/amd64/viostor.inf"]
    assert reasons["viostor/2k8/x86/viostor.inf"].startswith("for x86 only")
    assert "closer match" not in reasons["viostor/2k8/x86/viostor.inf"]


def test_pre2015_layout(tmp_path: Path) -> None:
    tree = write_pre2015_tree(tmp_path / "old")
    selection = select_drivers(scan_dir(tree.root), PROFILES["win2008r2-x64"], FACTS)
    viostor = selection.get("viostor")
    assert viostor is not None
    # Win7/ has no viostor in the old layout; the 2008 (Wlh) build installs on 2008 R2.
    assert viostor.inf_path == "Wlh/amd64/viostor.inf"
    assert viostor.match.decoration_text == "NTamd64.6.0"
    netkvm = selection.get("NetKVM")
    assert netkvm is not None and netkvm.inf_path.startswith("Win7/amd64/")


def test_by_os_layout(tmp_path: Path) -> None:
    tree = write_by_os_tree(tmp_path / "by-os")
    selection = select_drivers(scan_dir(tree.root), PROFILES["win2003-x86"], FACTS)
    assert {d.inf_path for d in selection.selected} >= {
        "i386/2k3/viostor.inf",
        "i386/2k3/netkvm.inf",
    }


def test_balloon_catalog_case_mismatch_is_matched(modern: Tree) -> None:
    selection = select_drivers(scan_dir(modern.root), PROFILES["win2008-x64"], FACTS)
    balloon = selection.get("Balloon")
    assert balloon is not None
    catalogs = [f.path for f in balloon.files if f.kind == "catalog"]
    assert catalogs == ["Balloon/2k8/amd64/balloon.cat"]


# -- bad input ------------------------------------------------------------------------------


def small_tree(tmp_path: Path, **kwargs: object) -> Tree:
    return write_modern_tree(tmp_path / "vw", drivers=("viostor", "NetKVM"), **kwargs)  # type: ignore[arg-type]


def test_missing_catalog_is_an_input_error_naming_the_file(tmp_path: Path) -> None:
    tree = small_tree(tmp_path)
    remove_file(tree, "viostor/2k8/amd64/viostor.cat")
    with pytest.raises(InputError) as caught:
        select_drivers(scan_dir(tree.root), PROFILES["win2008-x64"], FACTS)
    text = str(caught.value)
    assert "viostor/2k8/amd64/viostor.inf is incomplete" in text
    assert "viostor.cat" in text
    assert caught.value.exit_code == 2


def test_missing_sys_is_an_input_error(tmp_path: Path) -> None:
    tree = small_tree(tmp_path)
    remove_file(tree, "NetKVM/2k3/x86/netkvm.sys")  # xp/x86 holds a complete copy
    with pytest.raises(InputError, match=r"netkvm\.sys"):
        select_drivers(scan_dir(tree.root), PROFILES["win2003-x86"], FACTS)


def test_incomplete_package_for_another_profile_does_not_matter(tmp_path: Path) -> None:
    tree = small_tree(tmp_path)
    remove_file(tree, "viostor/2k8R2/amd64/viostor.sys")
    selection = select_drivers(scan_dir(tree.root), PROFILES["win2008-x64"], FACTS)
    assert selection.get("viostor") is not None


def test_drivers_for_another_architecture_only(tmp_path: Path) -> None:
    tree = write_modern_tree(tmp_path / "vw", drivers=("viostor", "NetKVM"), arches=("x86",))
    with pytest.raises(InputError) as caught:
        select_drivers(scan_dir(tree.root), PROFILES["win2008-x64"], FACTS)
    text = str(caught.value)
    assert "for x86 only" in text
    assert "win2008-x86" in text


def test_only_2008r2_drivers_for_2008(tmp_path: Path) -> None:
    tree = write_modern_tree(
        tmp_path / "vw", drivers=("viostor", "NetKVM"), oses=("2k8R2",), arches=("amd64",)
    )
    with pytest.raises(InputError) as caught:
        select_drivers(scan_dir(tree.root), PROFILES["win2008-x64"], FACTS)
    text = str(caught.value)
    assert "found NTamd64.6.1 only" in text
    assert "2k8 folder" in text
    assert {p.key for p in caught.value.problems} == {str(tree.root)}


@pytest.mark.parametrize("release", ["0.1.185", "0.1.190"])
def test_a_release_reported_with_invalid_signatures_warns(tmp_path: Path, release: str) -> None:
    # 0.1.190 has the builds of the good 0.1.189: only the release label tells.
    tree = write_modern_tree(
        tmp_path / f"virtio-win-{release}", release=release, drivers=("viostor", "NetKVM")
    )
    selection = select_drivers(scan_dir(tree.root), PROFILES["win2008-x64"], FACTS)
    (warning,) = selection.warnings
    assert warning.startswith("NetKVM ") and ", viostor " in warning
    assert "invalid signatures" in warning and "#43" in warning
    hint = warning.partition("Use ")[2]
    assert "0.1.217" in hint
    for bad in ("0.1.185", "0.1.187", "0.1.190"):
        assert bad not in hint
    # A range in the hint never contains a bad release.
    for low, high in re.findall(r"0\.1\.(\d+) to 0\.1\.(\d+)", hint):
        assert not any(int(low) <= bad <= int(high) for bad in (185, 187, 190))


@pytest.mark.parametrize("release", ["0.1.189", "0.1.240"])
def test_good_releases_do_not_warn(tmp_path: Path, release: str) -> None:
    tree = write_modern_tree(
        tmp_path / f"virtio-win-{release}", release=release, drivers=("viostor", "NetKVM")
    )
    assert select_drivers(scan_dir(tree.root), PROFILES["win2008-x64"], FACTS).warnings == ()


def test_an_incomplete_best_package_is_not_silently_replaced(tmp_path: Path) -> None:
    # A 2003 build (bare NTAMD64) would install on 2008 too; falling back to it
    # because the 2k8 folder is broken would hide the broken source.
    tree = small_tree(tmp_path)
    remove_file(tree, "viostor/2k8/amd64/viostor.cat")
    with pytest.raises(InputError, match=r"viostor/2k8/amd64/viostor\.inf is incomplete"):
        select_drivers(scan_dir(tree.root), PROFILES["win2008-x64"], FACTS)


def test_inf_edit_changes_selection(tmp_path: Path) -> None:
    # The INF decides, not the folder name: a 2k8 folder whose INF says .6.1 is not 2008's.
    tree = write_modern_tree(tmp_path / "vw", drivers=("viostor", "NetKVM"), oses=("2k8",))
    edit_inf(tree, "viostor/2k8/amd64/viostor.inf", "NTamd64.6.0", "NTamd64.6.1")
    with pytest.raises(InputError, match=r"no INF for viostor matches Windows 6\.0 amd64"):
        select_drivers(scan_dir(tree.root), PROFILES["win2008-x64"], FACTS)


# -- JSON shape -------------------------------------------------------------------------------


def test_driverset_json_shape(modern: Tree) -> None:
    with open_source(modern.root) as source:
        selection = select_drivers(scan_source(source, FACTS), PROFILES["win2008-x64"], FACTS)
        document = driverset_json(selection, driver_digests(source, selection))
    assert set(document) == {
        "source",
        "profile",
        "storage_bus",
        "selected",
        "installers",
        "rejected",
        "warnings",
    }
    assert document["source"] == {
        "path": str(modern.root),
        "kind": "dir",
        "label": modern.root.name,
    }
    assert document["profile"] == "win2008-x64"
    viostor = next(d for d in document["selected"] if d["name"] == "viostor")
    assert set(viostor) == {
        "name",
        "inf",
        "arch",
        "decoration",
        "driver_ver",
        "boot_critical",
        "hardware_ids",
        "files",
        "catalog",
        "signer",
        "digest",
        "signatures",
        "signers",
    }
    # Without its signatures read (that is virtio/trust.py's step) the catalog is named
    # and nothing is claimed about it.
    assert viostor["catalog"] == "viostor/2k8/amd64/viostor.cat"
    assert (viostor["signer"], viostor["digest"], viostor["signatures"]) == (None, None, [])
    truth = modern.inf("viostor/2k8/amd64/viostor.inf")
    assert viostor["inf"] == truth.relpath
    assert viostor["arch"] == "amd64"
    assert viostor["decoration"] == "NTamd64.6.0"
    assert viostor["driver_ver"] == truth.driver_ver
    assert viostor["boot_critical"] is True
    assert viostor["hardware_ids"] == list(truth.hardware_ids)
    import hashlib

    for entry in viostor["files"]:
        data = modern.path(entry["path"]).read_bytes()
        assert entry == {
            "path": entry["path"],
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        }
    assert all(set(r) == {"inf", "reason"} for r in document["rejected"])


def test_a_selection_without_a_storage_driver_says_so(modern: Tree) -> None:
    selection = select_drivers(scan_dir(modern.root), PROFILES["win2008-x64"], FACTS)
    without = dataclasses.replace(
        selection, selected=tuple(d for d in selection.selected if d.role != "storage")
    )
    with pytest.raises(InputError, match="no boot-critical storage driver was selected") as caught:
        _ = without.storage
    assert caught.value.problems[0].key == "--drivers"


# -- optional drivers never block; the drivers setting; damaged INFs ------------------------


def tree_2k3_2k8(tmp_path: Path) -> Tree:
    return write_modern_tree(
        tmp_path / "vw",
        drivers=("viostor", "NetKVM", "Balloon", "vioscsi", "pvpanic"),
        oses=("2k3", "2k8"),
    )


# An incomplete package: the INF names a file its folder lacks.
@pytest.mark.parametrize(
    ("relpath", "driver", "blocks"),
    [
        ("Balloon/2k8/amd64/WdfCoInstaller01009.dll", "Balloon", False),
        ("Balloon/2k8/amd64/balloon.sys", "Balloon", False),
        ("pvpanic/2k8/amd64/pvpanic.cat", "pvpanic", False),
        # Required or boot-critical: still an error.
        ("viostor/2k8/amd64/viostor.sys", "viostor", True),
        ("NetKVM/2k8/amd64/netkvm.cat", "NetKVM", True),
        ("vioscsi/2k8/amd64/vioscsi.sys", "vioscsi", True),
    ],
)
def test_an_incomplete_package_blocks_only_when_the_driver_is_essential(
    tmp_path: Path, relpath: str, driver: str, blocks: bool
) -> None:
    tree = tree_2k3_2k8(tmp_path)
    remove_file(tree, relpath)
    missing = relpath.rpartition("/")[2]
    inf = next(t.relpath for t in tree.infs if t.directory == relpath.rpartition("/")[0])
    if blocks:
        with pytest.raises(InputError) as caught:
            select_drivers(scan_dir(tree.root), PROFILES["win2008-x64"], FACTS)
        assert f"{inf} is incomplete: {missing}" in str(caught.value)
        assert caught.value.exit_code == 2
        return
    selection = select_drivers(scan_dir(tree.root), PROFILES["win2008-x64"], FACTS)
    assert selection.get(driver) is None  # left out: on neither medium
    assert {"viostor", "NetKVM"} <= {d.name for d in selection.selected}
    (warning,) = [w for w in selection.warnings if w.startswith(f"{driver} is left out")]
    assert f"{inf} is incomplete: {missing}" in warning
    reasons = {r.inf: r.reason for r in selection.rejected}
    assert reasons[inf] == f"incomplete: missing {missing}"


def test_the_drivers_setting_chooses_what_goes_onto_the_media(tmp_path: Path) -> None:
    tree = tree_2k3_2k8(tmp_path)
    selection = select_drivers(
        scan_dir(tree.root), PROFILES["win2008-x64"], FACTS, wanted=("viostor", "netkvm")
    )
    assert [d.name for d in selection.selected] == ["NetKVM", "viostor"]
    reasons = {r.inf: r.reason for r in selection.rejected}
    assert reasons["Balloon/2k8/amd64/balloon.inf"] == "left out by the drivers setting"
    # Leaving out a driver whose package is incomplete avoids its warning too.
    remove_file(tree, "Balloon/2k8/amd64/WdfCoInstaller01009.dll")
    again = select_drivers(
        scan_dir(tree.root), PROFILES["win2008-x64"], FACTS, wanted=("viostor", "NetKVM")
    )
    assert again.warnings == ()


@pytest.mark.parametrize(
    ("wanted", "expected"),
    [
        (("viostor", "NetKVM", "nosuch"), "'nosuch': no such virtio driver"),
        (("nosuch", "other"), "'nosuch', 'other': no such virtio driver"),
        (("Balloon",), "leaves out viostor"),
        (("Balloon",), "leaves out NetKVM"),
        ((), "leaves out viostor"),
        (("viostor",), "leaves out NetKVM"),
        # A driver pvinstall knows, without a package for 2008 in this source.
        (("viostor", "NetKVM", "vioinput"), "vioinput: "),
    ],
)
def test_bad_drivers_settings_list_the_valid_names(
    tmp_path: Path, wanted: tuple[str, ...], expected: str
) -> None:
    tree = tree_2k3_2k8(tmp_path)
    with pytest.raises(InputError) as caught:
        select_drivers(scan_dir(tree.root), PROFILES["win2008-x64"], FACTS, wanted=wanted)
    assert caught.value.exit_code == 2
    problems = caught.value.problems
    assert all(p.key == "drivers" for p in problems)
    assert any(expected in p.message for p in problems), [p.message for p in problems]
    for problem in problems:
        assert problem.hint is not None
        assert "Balloon, NetKVM, pvpanic, vioscsi, viostor" in problem.hint


GARBAGE = bytes(range(256)) * 8


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda tree, path: tree.path(path).write_bytes(GARBAGE), id="binary"),
        pytest.param(
            lambda tree, path: edit_inf(tree, path, "[Manufacturer]", "[Nothing]"),
            id="no-manufacturer",
        ),
    ],
)
def test_a_damaged_2k8_viostor_inf_is_not_replaced_by_the_2003_build(
    tmp_path: Path, damage: object
) -> None:
    tree = tree_2k3_2k8(tmp_path)
    damage(tree, "viostor/2k8/amd64/viostor.inf")  # type: ignore[operator]
    with pytest.raises(InputError) as caught:
        select_drivers(scan_dir(tree.root), PROFILES["win2008-x64"], FACTS)
    (problem,) = caught.value.problems
    assert problem.message.startswith("viostor/2k8/amd64/viostor.inf cannot be read")
    assert "leaves viostor without a package in win2008-x64's 2k8 folder" in problem.message
    assert "viostor/2k3/amd64/viostor.inf" in problem.message
    assert caught.value.exit_code == 2


def test_a_damaged_optional_inf_is_a_warning(tmp_path: Path) -> None:
    tree = tree_2k3_2k8(tmp_path)
    tree.path("Balloon/2k8/amd64/balloon.inf").write_bytes(GARBAGE)
    selection = select_drivers(scan_dir(tree.root), PROFILES["win2008-x64"], FACTS)
    balloon = selection.get("Balloon")
    # The 2003 build installs on 2008 (undecorated NTAMD64): it is taken, and both the
    # damaged INF and the fallback are said.
    assert balloon is not None and balloon.folder == "Balloon/2k3/amd64"
    assert any(
        w.startswith("Balloon/2k8/amd64/balloon.inf cannot be read")
        and "Balloon comes from Balloon/2k3/amd64/balloon.inf" in w
        for w in selection.warnings
    )
    assert any(
        w.startswith("Balloon for win2008-x64 comes from Balloon/2k3/amd64, a folder of another")
        for w in selection.warnings
    )


def test_a_fallback_to_another_windows_versions_folder_is_a_warning(tmp_path: Path) -> None:
    # No 2k8 Balloon at all: the 2003 build fits 2008 and is taken, with a warning.
    tree = tree_2k3_2k8(tmp_path)
    for name in ("balloon.inf", "balloon.cat", "balloon.sys", "WdfCoInstaller01009.dll"):
        remove_file(tree, f"Balloon/2k8/amd64/{name}")
    selection = select_drivers(scan_dir(tree.root), PROFILES["win2008-x64"], FACTS)
    assert selection.get("Balloon") is not None
    (warning,) = selection.warnings
    assert "Balloon for win2008-x64 comes from Balloon/2k3/amd64" in warning
    assert "(2k3)" in warning


def test_a_damaged_inf_of_another_windows_version_does_not_matter(tmp_path: Path) -> None:
    tree = tree_2k3_2k8(tmp_path)
    tree.path("viostor/2k3/amd64/viostor.inf").write_bytes(GARBAGE)
    selection = select_drivers(scan_dir(tree.root), PROFILES["win2008-x64"], FACTS)
    assert selection.warnings == ()


# -- the modern profiles: build numbers and virtio-win's folder map ------------------------

WIN10 = "NTamd64.10.0"
WIN11 = "NTamd64.10.0...16299"
MODERN = ("win2012r2-x64", "win2016-x64", "win2019-x64", "win2022-x64", "win2025-x64")
# The decoration each release's own folder holds (filemap.py: Win10 build in
# 2k16/2k19/2k22, Win11 in 2k25, the Windows 8.1 build in 2k12R2).
OWN_DECORATION = {
    "win2012r2-x64": "NTamd64.6.3",
    "win2016-x64": WIN10,
    "win2019-x64": WIN10,
    "win2022-x64": WIN10,
    "win2025-x64": WIN11,
}


def tree_with(tmp_path: Path, oses: tuple[str, ...], name: str = "vw") -> Tree:
    return write_modern_tree(
        tmp_path / name, drivers=("viostor", "vioscsi", "NetKVM", "Balloon", "qxl"), oses=oses
    )


@pytest.mark.parametrize("profile", MODERN)
def test_each_release_takes_its_own_folder_and_its_build(modern: Tree, profile: str) -> None:
    selection = select_drivers(scan_dir(modern.root), PROFILES[profile], FACTS)
    folder = EXPECTED_FOLDER[profile]
    assert selection.selected and selection.warnings == ()
    for driver in selection.selected:
        assert driver.info is not None
        assert driver.folder.endswith(folder) and driver.folder.split("/")[0] in driver.info.folders
        assert driver.match.decoration_text == OWN_DECORATION[profile]


def test_windows_own_ranking_would_give_2022_the_win11_build(modern: Tree) -> None:
    """Why the folder decides: for build 20348 both builds apply and Windows ranks the
    Win11 one closer, but virtio-win made the Win10 build for 2022."""
    by_path = {p.inf_path: p for p in scan_dir(modern.root).packages}
    win10 = supports(by_path["viostor/2k22/amd64/viostor.inf"].inf, (10, 0), "amd64", build=20348)
    win11 = supports(by_path["viostor/2k25/amd64/viostor.inf"].inf, (10, 0), "amd64", build=20348)
    assert win10 is not None and win11 is not None
    assert win11.decoration is not None and win10.decoration is not None
    assert win11.decoration.rank() > win10.decoration.rank()
    chosen = select_drivers(scan_dir(modern.root), PROFILES["win2022-x64"], FACTS).get("viostor")
    assert chosen is not None and chosen.inf_path == "viostor/2k22/amd64/viostor.inf"


def test_the_win11_build_does_not_fit_2016(tmp_path: Path) -> None:
    # .10.0...16299 applies from build 16299 on; 2016 is 14393.
    tree = tree_with(tmp_path, ("w11", "2k25"))
    with pytest.raises(InputError) as caught:
        select_drivers(scan_dir(tree.root), PROFILES["win2016-x64"], FACTS)
    text = str(caught.value)
    assert "no INF for viostor matches Windows 10.0.14393 amd64" in text
    assert WIN11 in text and "2k16 folder" in text
    selection = select_drivers(scan_dir(tree.root), PROFILES["win2019-x64"], FACTS)
    assert {d.match.decoration_text for d in selection.selected} == {WIN11}


def test_a_tree_without_2k22_takes_the_closest_fit_and_warns(tmp_path: Path) -> None:
    tree = tree_with(tmp_path, ("w10", "2k16", "2k19", "w11", "2k25"))
    selection = select_drivers(scan_dir(tree.root), PROFILES["win2022-x64"], FACTS)
    viostor = selection.get("viostor")
    assert viostor is not None
    # The closest decoration that fits 20348 is the Win11 build; among its two folders
    # the names decide nothing and the path does (2k25 before w11).
    assert viostor.match.decoration_text == WIN11
    assert viostor.folder == "viostor/2k25/amd64"
    (warning,) = selection.warnings
    assert f"{tree.root} has no 2k22 folder for win2022-x64" in warning
    assert "viostor from viostor/2k25/amd64 (NTamd64.10.0...16299)" in warning
    assert "NetKVM from NetKVM/2k25/amd64" in warning


def test_2025_never_takes_2k19_or_2k22_while_2k25_exists(tmp_path: Path) -> None:
    tree = tree_with(tmp_path, ("2k19", "2k22", "2k25"))
    selection = select_drivers(scan_dir(tree.root), PROFILES["win2025-x64"], FACTS)
    assert {d.folder.split("/")[1] for d in selection.selected} == {"2k25"}
    assert selection.warnings == ()
    reasons = {r.inf: r.reason for r in selection.rejected}
    assert (
        "viostor/2k25/amd64/viostor.inf is a closer match"
        in reasons["viostor/2k22/amd64/viostor.inf"]
    )
    # Without 2k25 (nor w11) the Win10 build of 2k19/2k22 is the fit, with a warning.
    older = tree_with(tmp_path, ("2k19", "2k22"), "older")
    fallback = select_drivers(scan_dir(older.root), PROFILES["win2025-x64"], FACTS)
    assert {d.match.decoration_text for d in fallback.selected} == {WIN10}
    assert "has no 2k25 folder" in fallback.warnings[0]


def test_a_driver_virtio_win_did_not_build_for_the_release_is_left_out(tmp_path: Path) -> None:
    """qxl (XPDM, Windows 7) has no 2k22 folder while the tree has 2k22 for the other
    drivers: it is rejected with the reason, not taken from 2k8R2 with a warning."""
    tree = tree_with(tmp_path, ("2k8R2", "2k22"))
    selection = select_drivers(scan_dir(tree.root), PROFILES["win2022-x64"], FACTS)
    assert selection.get("qxl") is None and selection.warnings == ()
    reason = {r.inf: r.reason for r in selection.rejected}["qxl/2k8R2/amd64/qxl.inf"]
    assert "virtio-win has no 2k22 build of qxl" in reason
    # The legacy rule takes the closest decoration, folders or not: 2008 R2 keeps qxl.
    legacy = select_drivers(scan_dir(tree.root), PROFILES["win2008r2-x64"], FACTS)
    assert legacy.get("qxl") is not None


def test_the_root_auto_detect_copy_is_not_chosen(modern: Tree) -> None:
    # amd64/2k22/viostor.inf is the same package as viostor/2k22/amd64/viostor.inf.
    assert modern.select(driver="viostor", os_folder="2k22", auto_detect=True)
    selection = select_drivers(scan_dir(modern.root), PROFILES["win2022-x64"], FACTS)
    for name in ("viostor", "vioscsi"):
        chosen = selection.get(name)
        assert chosen is not None and chosen.folder == f"{name}/2k22/amd64"


@pytest.mark.parametrize("profile", ["win2019-x64", "win2025-x64", "win2012r2-x64"])
def test_the_by_os_layout(tmp_path: Path, profile: str) -> None:
    tree = write_by_os_tree(tmp_path / "by-os")
    selection = select_drivers(scan_dir(tree.root), PROFILES[profile], FACTS)
    folder = f"amd64/{PROFILES[profile].os_folder}"
    assert {d.folder for d in selection.selected} == {folder}
    assert selection.warnings == ()


def test_virtio_scsi_needs_vioscsi_and_makes_it_the_storage_driver(tmp_path: Path) -> None:
    tree = tree_with(tmp_path, ("2k22",))
    profile = PROFILES["win2022-x64"]
    blk = select_drivers(scan_dir(tree.root), profile, FACTS)
    scsi = select_drivers(scan_dir(tree.root), profile, FACTS, storage_bus=StorageBus.VIRTIO_SCSI)
    assert (blk.storage.name, scsi.storage.name) == ("viostor", "vioscsi")
    without = write_modern_tree(
        tmp_path / "novioscsi", drivers=("viostor", "NetKVM"), oses=("2k22",)
    )
    with pytest.raises(InputError, match="no vioscsi driver in"):
        select_drivers(scan_dir(without.root), profile, FACTS, storage_bus=StorageBus.VIRTIO_SCSI)
    # viostor is not needed on virtio-scsi, nor vioscsi on virtio-blk.
    no_viostor = write_modern_tree(
        tmp_path / "noviostor", drivers=("vioscsi", "NetKVM"), oses=("2k22",)
    )
    select_drivers(scan_dir(no_viostor.root), profile, FACTS, storage_bus=StorageBus.VIRTIO_SCSI)
    assert select_drivers(scan_dir(without.root), profile, FACTS).storage.name == "viostor"


@pytest.mark.parametrize(
    ("profile", "names"),
    [
        ("win2008r2-x64", []),
        ("win2012r2-x64", ["qemu-ga"]),
        ("win2016-x64", ["qemu-ga", "guest-tools"]),
        ("win2025-x64", ["qemu-ga", "guest-tools"]),
    ],
)
def test_the_installers_of_the_profile_are_found(
    modern: Tree, profile: str, names: list[str]
) -> None:
    selection = select_drivers(scan_dir(modern.root), PROFILES[profile], FACTS)
    assert [i.name for i in selection.installers] == names
    paths = {i.name: i.path for i in selection.installers}
    if "qemu-ga" in paths:
        assert paths["qemu-ga"] == "guest-agent/qemu-ga-x86_64.msi"
        assert modern.path(paths["qemu-ga"]).stat().st_size == selection.installers[0].size


def test_an_installer_the_source_lacks_is_left_out(tmp_path: Path) -> None:
    tree = tree_with(tmp_path, ("2k22",))
    remove_file(tree, "virtio-win-gt-x64.msi")
    selection = select_drivers(scan_dir(tree.root), PROFILES["win2022-x64"], FACTS)
    assert [i.name for i in selection.installers] == ["qemu-ga"]
