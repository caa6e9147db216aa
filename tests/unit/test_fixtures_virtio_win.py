"""Checks of the virtio-win fixture generator itself (tests/fixtures/virtio_win.py).

The product's INF parser and driver scanners are tested against these trees, so the
trees must be what the reference describes and the ground truth must match the bytes.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fixtures import virtio_win as vw
from tests.fixtures.virtio_win import InfTruth, Quirk, Tree


@pytest.fixture(scope="module")
def modern(tmp_path_factory: pytest.TempPathFactory) -> Tree:
    return vw.write_modern_tree(tmp_path_factory.mktemp("modern"))


@pytest.fixture(scope="module")
def pre2015(tmp_path_factory: pytest.TempPathFactory) -> Tree:
    return vw.write_pre2015_tree(tmp_path_factory.mktemp("pre2015"))


def text_of(tree: Tree, truth: InfTruth) -> str:
    return vw.decode_inf(tree.path(truth.relpath).read_bytes(), truth.encoding)


def headers_of(text: str) -> list[str]:
    return [line.strip() for line in text.split("\r\n") if line.strip().startswith("[")]


# --- format -----------------------------------------------------------------------------


def test_every_inf_uses_crlf_and_only_crlf(modern: Tree) -> None:
    for truth in modern.infs:
        text = text_of(modern, truth)
        assert "\r\n" in text, truth.relpath
        rest = text.replace("\r\n", "")
        assert "\n" not in rest and "\r" not in rest, truth.relpath


def test_inf_encodings_are_as_declared(modern: Tree) -> None:
    seen = set()
    for truth in modern.infs:
        raw = modern.path(truth.relpath).read_bytes()
        seen.add(truth.encoding)
        if truth.encoding == "utf-16le-bom":
            assert raw.startswith(codecs.BOM_UTF16_LE)
            assert raw[2:].decode("utf-16-le").startswith(";")
        elif truth.encoding == "utf-8-bom":
            assert raw.startswith(codecs.BOM_UTF8)
            raw[3:].decode("utf-8")
        else:
            assert raw[:1] == b";", truth.relpath
            raw.decode("ascii")
        assert hashlib.sha256(raw).hexdigest() == truth.sha256
    assert seen == {"ascii", "utf-8-bom", "utf-16le-bom"}


def test_every_package_file_sits_next_to_its_inf(modern: Tree) -> None:
    for truth in modern.infs:
        for relpath in truth.package_relpaths():
            assert modern.path(relpath).is_file(), relpath
        for name in truth.extras:
            assert modern.path(f"{truth.directory}/{name}").is_file()
    files = set(modern.files)
    assert {r for t in modern.infs for r in t.package_relpaths()} <= files


def test_fake_binaries_look_like_their_kind(modern: Tree) -> None:
    sys_file = modern.path("viostor/2k8/amd64/viostor.sys").read_bytes()
    assert sys_file[:2] == b"MZ" and sys_file[0x80:0x84] == b"PE\x00\x00"
    assert 4096 <= len(sys_file) <= 64 * 1024
    assert modern.path("viostor/2k8/amd64/viostor.cat").read_bytes()[:2] == b"\x30\x82"
    assert modern.path("viostor/2k8/amd64/viostor.pdb").read_bytes().startswith(b"Microsoft C/C++")


def test_balloon_catalog_differs_in_case_from_the_file(modern: Tree) -> None:
    balloons = modern.select(driver="Balloon")
    assert balloons
    for truth in balloons:
        assert truth.catalog_in_inf == "Balloon.cat"
        assert truth.catalog_on_disk == "balloon.cat"
        assert "CatalogFile=Balloon.cat" in text_of(modern, truth)
        names = os.listdir(modern.path(truth.directory))
        assert "balloon.cat" in names and "Balloon.cat" not in names
        assert Quirk.CATALOG_CASE_MISMATCH in truth.quirks


# --- layouts ----------------------------------------------------------------------------


def test_modern_tree_has_the_documented_folders(modern: Tree) -> None:
    dirs = set(modern.directories)
    for expected in (
        "viostor/2k3/x86",
        "viostor/2k3/amd64",
        "viostor/xp/amd64",
        "viostor/2k8/x86",
        "viostor/2k8/amd64",
        "viostor/2k8R2/amd64",
        "NetKVM/2k8/amd64",
        "Balloon/2k8R2/amd64",
        "vioserial/2k8/amd64",
        "qemupciserial/2k8/x86",
        "vioinput/2k8R2/amd64",
        "qxl/2k8R2/amd64",
        "amd64/w10",
        "i386/w10",
        "amd64/2k22",
        "guest-agent",
        "data",
    ):
        assert expected in dirs, expected
    for absent in (
        "viostor/2k8r2/amd64",
        "viostor/2k8R2/x86",
        "vioscsi/2k3",
        "vioinput/2k8/amd64",
        "amd64/2k8R2",
        "amd64/2k8",
        "amd64/2k3",
        "i386/2k8",
        "netkvm",
        "balloon",
    ):
        assert absent not in dirs, absent
    assert "vioserial/2k8/amd64/vioser.inf" in modern.files
    assert "NetKVM/2k8/amd64/netkvm.inf" in modern.files
    assert "pvpanic/w10/amd64/pvpanic-pci.inf" in modern.files
    for name in ("virtio-win_license.txt", "data/info.json", "guest-agent/qemu-ga-x86_64.msi"):
        assert name in modern.files


def test_auto_detect_tree_holds_only_viostor_and_vioscsi(modern: Tree) -> None:
    auto = modern.select(auto_detect=True)
    assert {t.driver for t in auto} == {"viostor", "vioscsi"}
    assert {t.os_folder for t in auto} == {"w10", "2k16", "2k19", "2k22", "w11", "2k25"}
    auto_files = [f for f in modern.files if f.split("/")[0] in ("amd64", "i386")]
    assert not [f for f in auto_files if f.endswith(".pdb")]
    assert (
        modern.inf("amd64/w10/viostor.inf").sha256
        == modern.inf("viostor/w10/amd64/viostor.inf").sha256
    )


def test_info_json_indexes_the_driver_folders(modern: Tree) -> None:
    info = json.loads(modern.path("data/info.json").read_text())
    paths = {entry["inf_path"] for entry in info["drivers"]}
    assert paths == {t.relpath for t in modern.infs if not t.auto_detect}


def test_one_build_is_copied_byte_for_byte_into_each_of_its_os_folders(modern: Tree) -> None:
    for left, right in (("w7/amd64", "2k8R2/amd64"), ("2k3/amd64", "xp/amd64")):
        for driver in ("viostor", "NetKVM", "Balloon"):
            a = modern.path(f"{driver}/{left}")
            b = modern.path(f"{driver}/{right}")
            assert sorted(os.listdir(a)) == sorted(os.listdir(b))
            for name in os.listdir(a):
                assert (a / name).read_bytes() == (b / name).read_bytes(), (driver, name)


def test_pre2015_tree_mixes_drivers_per_os_folder(pre2015: Tree) -> None:
    top = {d for d in pre2015.directories if "/" not in d}
    assert top == {"Wxp", "XP", "Wnet", "Vista", "Wlh", "Win7", "Win8"}
    for folder in ("XP", "Wnet", "Vista", "Wlh", "Win7", "Win8"):
        assert {f"{folder}/x86", f"{folder}/amd64"} <= set(pre2015.directories)
    assert pre2015.select(driver="NetKVM", os_folder="Vista", build="Wlh", arch="amd64")
    assert not pre2015.select(driver="viostor", os_folder="Win7")
    assert len(pre2015.select(os_folder="Wlh", arch="amd64")) == 4
    # Before virtio 1.0 there were no modern (DEV_104x) IDs.
    for truth in pre2015.infs:
        assert not [i for i in truth.hardware_ids if "DEV_104" in i or "DEV_105" in i]
    # 2008 R2 gets its storage driver from Wlh: a .6.0 INF matches 6.1.
    r2_viostor = [t for t in pre2015.supporting((6, 1), "amd64") if t.driver == "viostor"]
    assert [t.relpath for t in r2_viostor] == ["Wlh/amd64/viostor.inf", "Wnet/amd64/viostor.inf"]


def test_floppy_tree_has_the_vfd_layout(tmp_path: Path) -> None:
    tree = vw.write_floppy_tree(tmp_path / "amd64", "amd64")
    assert tree.layout == "floppy"
    assert tree.path("disk1").stat().st_size == 0
    oem = tree.path("txtsetup.oem").read_bytes()
    assert b"\r\n" in oem and b"\\amd64\\Win2003" in oem
    assert set(tree.directories) == {
        "amd64",
        *(
            f"amd64/{os}"
            for os in (
                "Win2003",
                "Win2008",
                "Win2008R2",
                "Win2012",
                "Win2012R2",
                "Win2016",
                "Win2019",
            )
        ),
    }
    assert {t.inf_name for t in tree.select(os_folder="Win2008")} == {
        "viostor.inf",
        "vioscsi.inf",
        "netkvm.inf",
    }
    assert {t.inf_name for t in tree.select(os_folder="Win2003")} == {"viostor.inf", "netkvm.inf"}
    assert not [f for f in tree.files if f.endswith((".pdb", ".doc", "netkvmco.dll"))]
    x86 = vw.write_floppy_tree(tmp_path / "x86", "x86", oses=["WinXP", "Win2003"])
    assert {d for d in x86.directories} == {"i386", "i386/WinXP", "i386/Win2003"}
    assert b"WXP32" in x86.path("txtsetup.oem").read_bytes()


def test_by_os_tree_is_flattened_without_pdb(tmp_path: Path) -> None:
    tree = vw.write_by_os_tree(tmp_path, oses=["2k8", "2k8R2"])
    assert set(tree.directories) == {"i386", "amd64", "i386/2k8", "amd64/2k8", "amd64/2k8R2"}
    assert not [f for f in tree.files if f.endswith(".pdb")]
    names = {t.inf_name for t in tree.select(os_folder="2k8", arch="amd64")}
    assert names == {
        "viostor.inf",
        "vioscsi.inf",
        "netkvm.inf",
        "balloon.inf",
        "vioser.inf",
        "pvpanic.inf",
        "viorng.inf",
        "qemupciserial.inf",
    }
    assert "amd64/2k8/WdfCoInstaller01009.dll" in tree.files
    assert "amd64/2k8/blnsvr.exe" in tree.files


def test_filters_and_unknown_names(tmp_path: Path) -> None:
    tree = vw.write_modern_tree(tmp_path / "w", drivers=["viostor"], oses=["2k8"], arches=["amd64"])
    assert [t.relpath for t in tree.infs] == ["viostor/2k8/amd64/viostor.inf"]
    with pytest.raises(ValueError, match="unknown drivers"):
        vw.write_modern_tree(tmp_path / "x", drivers=["netkvm"])
    with pytest.raises(ValueError, match="unknown OS folders"):
        vw.write_modern_tree(tmp_path / "y", oses=["2k8r2"])
    with pytest.raises(ValueError, match="release"):
        vw.write_modern_tree(tmp_path / "z", release="1.0")
    with pytest.raises(ValueError, match="not empty"):
        vw.write_modern_tree(tmp_path / "w")


def test_generation_is_deterministic(tmp_path: Path) -> None:
    a = vw.write_modern_tree(tmp_path / "a", oses=["2k8", "2k8R2"])
    b = vw.write_modern_tree(tmp_path / "b", oses=["2k8", "2k8R2"])
    assert a.files == b.files
    for relpath in a.files:
        assert a.path(relpath).read_bytes() == b.path(relpath).read_bytes(), relpath
        assert a.path(relpath).stat().st_mtime == vw.FIXTURE_EPOCH
    assert a.infs == b.infs


def test_bench_tree_hits_its_targets_cheaply(tmp_path: Path) -> None:
    total = 24 * 2**20
    tree = vw.write_bench_tree(tmp_path, total_bytes=total, files=1100)
    assert len(tree.files) == 1100
    assert tree.total_bytes == total
    payload = tree.path("virtio-win-gt-x64.msi")
    assert payload.stat().st_blocks * 512 < payload.stat().st_size  # sparse
    assert len(tree.select(driver="viostor")) > 20


# --- content against the reference ----------------------------------------------------


@pytest.mark.parametrize(
    ("relpath", "driver_ver", "decoration"),
    [
        ("viostor/2k3/x86/viostor.inf", "11/27/2012,52.64.104.4800", "NTx86"),
        ("viostor/2k3/amd64/viostor.inf", "11/27/2012,52.64.104.4800", "NTAMD64"),
        ("NetKVM/2k3/x86/netkvm.inf", "11/27/2012,51.64.104.4900", "NTx86.5.1"),
        ("NetKVM/2k3/amd64/netkvm.inf", "11/27/2012,52.64.104.4900", "NTAMD64.5.2"),
        ("viostor/2k8/amd64/viostor.inf", "07/25/2018,60.76.104.15800", "NTamd64.6.0"),
        ("viostor/2k8/x86/viostor.inf", "07/25/2018,60.76.104.15800", "NTx86.6.0"),
        ("vioscsi/2k8/amd64/vioscsi.inf", "08/21/2018,60.76.104.16000", "NTamd64.6.0"),
        ("NetKVM/2k8/amd64/netkvm.inf", "08/21/2018,60.76.104.16000", "NTamd64.6.0"),
        ("Balloon/2k8/amd64/balloon.inf", "06/20/2018,60.76.104.15400", "NTamd64.6.0"),
        ("viostor/2k8R2/amd64/viostor.inf", "06/10/2019,61.77.104.17200", "NTamd64.6.1"),
        ("NetKVM/2k8R2/amd64/netkvm.inf", "06/10/2019,61.77.104.17200", "NTamd64.6.1"),
        ("viostor/w8/x86/viostor.inf", "01/25/2022,62.94.104.24000", "NTx86.6.2"),
        ("viostor/2k19/amd64/viostor.inf", "01/25/2022,100.94.104.24000", "NTamd64.10.0"),
        ("viostor/2k25/amd64/viostor.inf", "01/25/2022,100.94.104.24000", "NTamd64.10.0...16299"),
    ],
)
def test_driver_versions_and_decorations_follow_the_reference(
    modern: Tree, relpath: str, driver_ver: str, decoration: str
) -> None:
    truth = modern.inf(relpath)
    text = text_of(modern, truth)
    assert truth.driver_ver == driver_ver
    assert f"DriverVer={driver_ver}\r\n" in text
    assert [d.text for d in truth.decorations] == [decoration]
    assert f",{decoration}\r\n" in text


@pytest.mark.parametrize(
    ("release", "wlh_viostor", "win7_viostor"),
    [
        ("0.1.173", "60.77.104.17300", "61.77.104.17300"),
        ("0.1.185", "60.81.104.17600", "61.81.104.17600"),
        ("0.1.190", "60.81.104.17400", "61.81.104.17400"),
        ("0.1.217", "60.76.104.15800", "61.77.104.17200"),
    ],
)
def test_frozen_legacy_builds_change_with_the_release(
    tmp_path: Path, release: str, wlh_viostor: str, win7_viostor: str
) -> None:
    tree = vw.write_modern_tree(
        tmp_path, release=release, drivers=["viostor"], oses=["2k8", "2k8R2"]
    )
    assert tree.inf("viostor/2k8/amd64/viostor.inf").driver_version == wlh_viostor
    assert tree.inf("viostor/2k8R2/amd64/viostor.inf").driver_version == win7_viostor


def test_hardware_id_styles_per_build(modern: Tree) -> None:
    wnet = modern.inf("viostor/2k3/amd64/viostor.inf")
    assert wnet.hardware_ids == (
        "PCI\\VEN_1AF4&DEV_1001&SUBSYS_00000000",
        "PCI\\VEN_1AF4&DEV_1001&SUBSYS_00020000",
        "PCI\\VEN_1AF4&DEV_1001&SUBSYS_00021AF4",
    )
    assert modern.inf("NetKVM/2k3/x86/netkvm.inf").hardware_ids == (
        "PCI\\VEN_1AF4&DEV_1000&SUBSYS_00011AF4",
    )
    wlh = modern.inf("viostor/2k8/amd64/viostor.inf")
    assert [m.hardware_ids for m in wlh.models] == [
        ("PCI\\VEN_1AF4&DEV_1001&SUBSYS_00021AF4&REV_00",),
        ("PCI\\VEN_1AF4&DEV_1042&SUBSYS_11001AF4&REV_01",),
    ]
    assert {m.section for m in wlh.models} == {"RHEL.NTamd64.6.0"}
    win7 = modern.inf("viostor/2k8R2/amd64/viostor.inf")
    assert [m.hardware_ids for m in win7.models] == [
        ("PCI\\VEN_1AF4&DEV_1001&SUBSYS_00021AF4&REV_00", "PCI\\VEN_1AF4&DEV_1001"),
        ("PCI\\VEN_1AF4&DEV_1042&SUBSYS_11001AF4&REV_01", "PCI\\VEN_1AF4&DEV_1042"),
    ]
    assert {m.section for m in win7.models} == {"VioStor.NTamd64.6.1"}
    assert modern.inf("vioscsi/2k8R2/amd64/vioscsi.inf").models[0].section == "RHEL.NTamd64.6.1"
    assert modern.inf("NetKVM/2k8R2/amd64/netkvm.inf").models[0].section == "NetKVM.NTamd64.6.1"
    assert modern.inf("pvpanic/2k8/amd64/pvpanic.inf").hardware_ids == ("ACPI\\QEMU0001",)
    vioinput = modern.inf("vioinput/w10/amd64/vioinput.inf")
    assert "VIOINPUT\\REV_01" in vioinput.hardware_ids


def test_truth_matches_the_inf_text(modern: Tree) -> None:
    for truth in modern.infs:
        text = text_of(modern, truth)
        lower = text.lower()
        assert f"Class={truth.inf_class}\r\n" in text
        assert f"ClassGuid={truth.class_guid}\r\n" in text
        assert truth.catalog_in_inf in text
        for line in truth.models:
            assert f"[{line.section.lower()}]" in lower
            assert f"{line.install_section}, {', '.join(line.hardware_ids)}\r\n" in text
        for name in truth.source_disks_files:
            assert re.search(rf"^{re.escape(name)} = 1", text, re.MULTILINE), name
        if truth.service is not None and truth.start_type is not None:
            assert f"%12%\\{truth.source_disks_files[0]}" in text or truth.driver == "vioinput"
        assert truth.provider == "Red Hat, Inc."


def test_service_and_boot_critical_flags(modern: Tree) -> None:
    for truth in modern.infs:
        if truth.driver in ("viostor", "vioscsi"):
            assert truth.boot_critical and truth.start_type == 0, truth.relpath
            text = text_of(modern, truth)
            assert "LoadOrderGroup = SCSI miniport" in text
            assert 'HKR, "Parameters\\PnpInterface", "5", %REG_DWORD%, 0x00000001' in text
            assert '"BusType"' in text
        else:
            assert not truth.boot_critical, truth.relpath
    assert modern.inf("qemupciserial/2k8/amd64/qemupciserial.inf").start_type is None


def test_source_disks_files_per_reference(modern: Tree) -> None:
    expected = {
        "viostor": ("viostor.sys",),
        "vioscsi": ("vioscsi.sys",),
        "NetKVM": ("netkvm.sys",),
        "Balloon": ("balloon.sys", "WdfCoInstaller01009.dll"),
        "vioserial": ("vioser.sys", "WdfCoInstaller01009.dll"),
        "viorng": ("viorng.sys", "viorngum.dll", "viorngci.dll", "WdfCoInstaller01009.dll"),
    }
    for driver, files in expected.items():
        (truth,) = modern.select(driver=driver, os_folder="2k8", arch="amd64")
        assert truth.source_disks_files == files
    assert modern.inf("Balloon/w10/amd64/balloon.inf").source_disks_files == ("balloon.sys",)
    assert set(modern.inf("NetKVM/2k8/amd64/netkvm.inf").extras) == {
        "netkvm.pdb",
        "netkvmco.dll",
        "readme.doc",
    }
    assert "blnsvr.exe" in modern.inf("Balloon/2k8/amd64/balloon.inf").extras


@pytest.mark.parametrize(
    ("version", "arch", "relpath", "supported"),
    [
        ((6, 0), "amd64", "viostor/2k8/amd64/viostor.inf", True),
        ((6, 0), "amd64", "viostor/2k8R2/amd64/viostor.inf", False),
        ((6, 1), "amd64", "viostor/2k8/amd64/viostor.inf", True),
        ((6, 1), "amd64", "viostor/2k8R2/amd64/viostor.inf", True),
        ((6, 0), "x86", "viostor/2k8/amd64/viostor.inf", False),
        ((5, 2), "x86", "viostor/2k3/x86/viostor.inf", True),
        ((5, 2), "x86", "NetKVM/2k3/x86/netkvm.inf", True),
        ((5, 1), "amd64", "NetKVM/2k3/amd64/netkvm.inf", False),
        ((10, 0), "amd64", "viostor/2k25/amd64/viostor.inf", False),
        ((10, 0, 16299), "amd64", "viostor/2k25/amd64/viostor.inf", True),
        ((10, 0, 26100), "amd64", "viostor/2k25/amd64/viostor.inf", True),
    ],
)
def test_supports_follows_the_decoration_rule(
    modern: Tree, version: tuple[int, ...], arch: str, relpath: str, supported: bool
) -> None:
    assert modern.inf(relpath).supports(version, arch) is supported


def test_which_infs_support_2008_amd64(modern: Tree) -> None:
    storage = {t.relpath for t in modern.supporting((6, 0), "amd64") if t.driver == "viostor"}
    assert storage == {
        "viostor/2k3/amd64/viostor.inf",  # undecorated NTAMD64 matches every version
        "viostor/xp/amd64/viostor.inf",
        "viostor/2k8/amd64/viostor.inf",
    }


def test_strings_are_resolved(modern: Tree) -> None:
    netkvm = modern.inf("NetKVM/2k8/amd64/netkvm.inf")
    assert netkvm.string("txcapacity") == "Init.MaxTxBuffers (100% = one full ring)"
    assert "100%% = one full ring" in text_of(modern, netkvm)
    vioscsi = modern.inf("vioscsi/2k8R2/amd64/vioscsi.inf")
    assert vioscsi.models[0].description == "Red Hat VirtIO SCSI pass-through controller"
    assert vioscsi.string("SERVICE_BOOT_START") == "0"
    vioser = modern.inf("vioserial/2k8/amd64/vioser.inf")
    assert "Provider=%REDHAT%" in text_of(modern, vioser)
    assert vioser.provider == "Red Hat, Inc."


# --- quirks -----------------------------------------------------------------------------


def has_duplicate_header(text: str) -> bool:
    names = [h.strip("[] ").lower() for h in headers_of(text)]
    return len(names) != len(set(names))


QUIRK_PROBES: dict[Quirk, Callable[[str, bytes, InfTruth], bool]] = {
    Quirk.CRLF: lambda text, raw, t: "\r\n" in text,
    Quirk.UTF16LE_BOM: lambda text, raw, t: raw.startswith(codecs.BOM_UTF16_LE),
    Quirk.UTF8_BOM: lambda text, raw, t: raw.startswith(codecs.BOM_UTF8),
    Quirk.LOWERCASE_SECTION: lambda text, raw, t: "\r\n[version]\r\n" in text,
    Quirk.SECTION_CASE_MISMATCH: lambda text, raw, t: (
        f"[{t.models[0].section}]" not in text
        and f"[{t.models[0].section.lower()}]" in text.lower()
    ),
    Quirk.TRAILING_SPACE_HEADER: lambda text, raw, t: bool(
        re.search(r"^\[[^\]\r\n]+\] +\r$", text, re.MULTILINE)
    ),
    Quirk.INLINE_COMMENT: lambda text, raw, t: bool(
        re.search(r"^[^;\r\n]*\S\s*;", text, re.MULTILINE)
    ),
    Quirk.QUOTED_COMMENT_NO_SPACE: lambda text, raw, t: '";' in text,
    Quirk.STAR_KEY: lambda text, raw, t: bool(re.search(r"^\*\w+\s*=", text, re.MULTILINE)),
    Quirk.LINE_CONTINUATION: lambda text, raw, t: "\\\r\n" in text,
    Quirk.PERCENT_LITERAL: lambda text, raw, t: "%%" in text,
    Quirk.STRINGS_LOCALIZED: lambda text, raw, t: "\r\n[Strings.0409]\r\n" in text,
    Quirk.DUPLICATE_SECTION: lambda text, raw, t: has_duplicate_header(text),
    Quirk.QUOTED_COMMA: lambda text, raw, t: '"Red Hat, Inc."' in text,
    Quirk.MULTI_HWID_LINE: lambda text, raw, t: any(len(m.hardware_ids) > 1 for m in t.models),
    Quirk.DECORATED_CATALOG: lambda text, raw, t: (
        bool(re.search(r"^CatalogFile\.NT(x86|amd64) = ", text, re.MULTILINE))
        and not re.search(r"^CatalogFile\s*=", text, re.MULTILINE)
    ),
    Quirk.CATALOG_CASE_MISMATCH: lambda text, raw, t: (
        t.catalog_in_inf != t.catalog_on_disk
        and t.catalog_in_inf.lower() == t.catalog_on_disk.lower()
    ),
    Quirk.TOKEN_CASE_MISMATCH: lambda text, raw, t: (
        "Provider=%REDHAT%" in text and "\r\nRedHat = " in text
    ),
    Quirk.TOKEN_START_TYPE: lambda text, raw, t: bool(
        re.search(r"^StartType\s*=\s*%SERVICE_BOOT_START%\r$", text, re.MULTILINE)
    ),
    Quirk.DIRID_PERCENT: lambda text, raw, t: bool(re.search(r"%\d+%\\", text)),
    Quirk.NO_SOURCE_DISKS_FILES: lambda text, raw, t: (
        "[SourceDisksFiles]" not in text and not t.source_disks_files
    ),
    Quirk.EMPTY_DECORATION_FIELDS: lambda text, raw, t: (
        "..." in t.decorations[0].text and f",{t.decorations[0].text}\r\n" in text
    ),
}


def test_every_quirk_has_a_probe() -> None:
    assert set(QUIRK_PROBES) == set(Quirk)


@pytest.mark.parametrize("quirk", list(Quirk))
def test_each_quirk_is_present_and_visible(modern: Tree, quirk: Quirk) -> None:
    carriers = modern.with_quirk(quirk)
    assert carriers, f"no INF in the default modern tree has {quirk}"
    for truth in carriers:
        raw = modern.path(truth.relpath).read_bytes()
        assert QUIRK_PROBES[quirk](text_of(modern, truth), raw, truth), truth.relpath


@pytest.mark.parametrize(
    ("relpath", "quirk"),
    [
        ("viostor/2k8/amd64/viostor.inf", Quirk.LOWERCASE_SECTION),
        ("NetKVM/2k8/amd64/netkvm.inf", Quirk.TRAILING_SPACE_HEADER),
        ("NetKVM/2k8/amd64/netkvm.inf", Quirk.STAR_KEY),
        ("Balloon/2k8/amd64/balloon.inf", Quirk.DUPLICATE_SECTION),
        ("Balloon/2k8R2/amd64/balloon.inf", Quirk.DUPLICATE_SECTION),
        ("viorng/2k8/amd64/viorng.inf", Quirk.LINE_CONTINUATION),
        ("pvpanic/2k8/amd64/pvpanic.inf", Quirk.UTF8_BOM),
        ("qemupciserial/2k8/amd64/qemupciserial.inf", Quirk.UTF16LE_BOM),
        ("vioscsi/2k8R2/amd64/vioscsi.inf", Quirk.STRINGS_LOCALIZED),
        ("vioserial/2k8R2/amd64/vioser.inf", Quirk.DECORATED_CATALOG),
        ("viostor/2k3/amd64/viostor.inf", Quirk.SECTION_CASE_MISMATCH),
        ("viostor/2k8R2/amd64/viostor.inf", Quirk.MULTI_HWID_LINE),
    ],
)
def test_quirks_sit_where_the_docs_say(modern: Tree, relpath: str, quirk: Quirk) -> None:
    assert quirk in modern.inf(relpath).quirks


def test_balloon_duplicate_section_splits_the_source_files(modern: Tree) -> None:
    text = text_of(modern, modern.inf("Balloon/2k8/amd64/balloon.inf"))
    first, second = text.split("[SourceDisksFiles]\r\n")[1:]
    assert first.startswith("balloon.sys = 1\r\n") and "WdfCoInstaller" not in first.split("[")[0]
    assert second.startswith("WdfCoInstaller01009.dll = 1\r\n")


# --- breaking helpers -------------------------------------------------------------------


def test_breaking_helpers(tmp_path: Path) -> None:
    tree = vw.write_modern_tree(tmp_path, drivers=["qemupciserial", "Balloon"], oses=["2k8"])
    relpath = "qemupciserial/2k8/amd64/qemupciserial.inf"
    vw.edit_inf(tree, relpath, "PCI\\VEN_1B36&DEV_0002&CC_0700", "PCI\\VEN_1B36&DEV_0003")
    raw = tree.path(relpath).read_bytes()
    assert raw.startswith(codecs.BOM_UTF16_LE)
    assert "DEV_0003" in vw.decode_inf(raw, "utf-16le-bom")
    with pytest.raises(ValueError, match="does not occur"):
        vw.edit_inf(tree, relpath, "no such text", "x")
    cat = "Balloon/2k8/amd64/balloon.cat"
    before = tree.path(cat).read_bytes()
    vw.corrupt_file(tree, cat, offset=10)
    after = tree.path(cat).read_bytes()
    assert len(after) == len(before) and after != before
    vw.truncate_file(tree, cat, 3)
    assert tree.path(cat).stat().st_size == 3
    vw.remove_file(tree, "Balloon/2k8/amd64/WdfCoInstaller01009.dll")
    assert not tree.path("Balloon/2k8/amd64/WdfCoInstaller01009.dll").exists()
    # The truth still describes the intact tree.
    assert "WdfCoInstaller01009.dll" in tree.inf("Balloon/2k8/amd64/balloon.inf").source_disks_files
