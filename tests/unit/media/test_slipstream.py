"""TXTSETUP.SIF slipstream edits and the 2003 CD plan (builder/media/slipstream.py), on text.

The viostor package comes from the virtio-win fixture (its INF lists the transitional
hardware IDs of the frozen 2003 build); the TXTSETUP.SIF text from the fake 2003 CD
generator, which is CRLF, cp1252 and repeats section headers like the retail file.
"""

from __future__ import annotations

import re

import pytest

from builder.errors import InputError
from builder.media.slipstream import (
    SOURCE_DISKS_FILES_VALUE,
    apply_sif_entries,
    patch_txtsetup_sif,
    plan_install_cd,
    sif_entries,
)
from builder.virtio.facts import load_driver_facts
from builder.virtio.packages import scan_source
from builder.virtio.selection import DriverSet, select_drivers
from builder.virtio.source import DirectorySource
from builder.windows.profiles import PROFILES, Arch
from tests.fixtures.virtio_win import write_modern_tree
from tests.integration.probe import fake_txtsetup_sif

ARCHES: tuple[Arch, ...] = ("x86", "amd64")


@pytest.fixture(scope="module")
def driversets(tmp_path_factory: pytest.TempPathFactory) -> dict[Arch, DriverSet]:
    tree = write_modern_tree(tmp_path_factory.mktemp("vw") / "virtio-win", oses=["2k3"])
    scan = scan_source(DirectorySource(tree.root), load_driver_facts())
    return {
        "x86": select_drivers(scan, PROFILES["win2003-x86"]),
        "amd64": select_drivers(scan, PROFILES["win2003-x64"]),
    }


def lines_of(text: bytes) -> list[bytes]:
    return text.split(b"\r\n")


def inserted(original: bytes, patched: bytes) -> list[bytes]:
    """The lines of `patched` that are not in `original`, checking that every original
    line is still there, in order."""
    old = lines_of(original)
    new = lines_of(patched)
    extra: list[bytes] = []
    position = 0
    for line in new:
        if position < len(old) and line == old[position]:
            position += 1
        else:
            extra.append(line)
    assert position == len(old), "an original line was lost or reordered"
    return extra


@pytest.mark.parametrize("arch", ARCHES)
def test_the_four_sections_get_the_viostor_lines(
    driversets: dict[Arch, DriverSet], arch: Arch
) -> None:
    storage = driversets[arch].storage
    original = fake_txtsetup_sif(arch)
    patched = patch_txtsetup_sif(original, storage, arch)
    added = [line.decode("ascii") for line in inserted(original, patched)]
    ids = storage.hardware_ids
    assert len(ids) == 3
    assert added == [
        f"viostor.sys = {SOURCE_DISKS_FILES_VALUE}",
        *(f'{hwid} = "viostor"' for hwid in ids),
        "viostor = viostor.sys,4",
        'viostor = "Red Hat VirtIO SCSI controller"',
    ]


@pytest.mark.parametrize("arch", ARCHES)
def test_each_line_goes_right_after_the_first_header_of_its_section(
    driversets: dict[Arch, DriverSet], arch: Arch
) -> None:
    patched = lines_of(patch_txtsetup_sif(fake_txtsetup_sif(arch), driversets[arch].storage, arch))
    expected_after = {
        f"[SourceDisksFiles.{arch}]": "viostor.sys = ",
        "[HardwareIdsDatabase]": "PCI\\VEN_1AF4&DEV_1001&SUBSYS_",
        "[SCSI.Load]": "viostor = viostor.sys,4",
        "[SCSI]": 'viostor = "Red Hat',
    }
    for header, start in expected_after.items():
        index = patched.index(header.encode())
        assert patched[index + 1].decode().startswith(start), header
    # The other architecture's section is not touched.
    other = "amd64" if arch == "x86" else "x86"
    assert f"[SourceDisksFiles.{other}]".encode() not in patched


def test_repeated_headers_only_the_first_gets_the_lines(
    driversets: dict[Arch, DriverSet],
) -> None:
    text = (
        b'[Version]\r\nSignature = "$Windows NT$"\r\n'
        b"[SCSI.Load]\r\natapi = atapi.sys,4\r\n"
        b"[SourceDisksFiles.x86]\r\nfirst.sys = 1,,,,,,3_,4,1\r\n"
        b'[HardwareIdsDatabase]\r\nPCI\\CC_0101 = "pciide"\r\n'
        b'[SCSI]\r\nsymmpi = "LSI"\r\n'
        b"[SourceDisksFiles.x86]\r\nsecond.sys = 1,,,,,,3_,4,1\r\n"
        b"[SCSI.Load]\r\nsymmpi = symmpi.sys,4\r\n"
        b'[HardwareIdsDatabase]\r\nPCI\\VEN_1000&DEV_0030 = "symmpi"\r\n'
        b'[SCSI]\r\naic78xx = "Adaptec"\r\n'
    )
    patched = lines_of(patch_txtsetup_sif(text, driversets["x86"].storage, "x86"))
    for header in (b"[SCSI.Load]", b"[SourceDisksFiles.x86]", b"[HardwareIdsDatabase]", b"[SCSI]"):
        positions = [i for i, line in enumerate(patched) if line == header]
        assert len(positions) == 2
        assert b"viostor" in patched[positions[0] + 1].lower()
        assert b"viostor" not in patched[positions[1] + 1].lower()


@pytest.mark.parametrize("arch", ARCHES)
def test_crlf_is_kept_and_nothing_else_changes(
    driversets: dict[Arch, DriverSet], arch: Arch
) -> None:
    original = fake_txtsetup_sif(arch)
    patched = patch_txtsetup_sif(original, driversets[arch].storage, arch)
    assert b"\n" not in patched.replace(b"\r\n", b"")
    assert b"\r" not in patched.replace(b"\r\n", b"")
    assert patched.endswith(b"\r\n")
    # The cp1252 bytes of the original (accented comments, the (c) sign) are untouched.
    assert original.count(b"\xe9") == patched.count(b"\xe9") > 0
    assert len(inserted(original, patched)) == 3 + len(driversets[arch].storage.hardware_ids)


@pytest.mark.parametrize("arch", ARCHES)
def test_patching_twice_changes_nothing(driversets: dict[Arch, DriverSet], arch: Arch) -> None:
    storage = driversets[arch].storage
    once = patch_txtsetup_sif(fake_txtsetup_sif(arch), storage, arch)
    assert patch_txtsetup_sif(once, storage, arch) == once


def test_an_lf_file_stays_lf(driversets: dict[Arch, DriverSet]) -> None:
    text = fake_txtsetup_sif("x86").replace(b"\r\n", b"\n")
    patched = patch_txtsetup_sif(text, driversets["x86"].storage, "x86")
    assert b"\r" not in patched
    assert patched.count(b"\n") == text.count(b"\n") + 6


def test_hardware_id_key_is_unquoted_and_the_service_quoted(
    driversets: dict[Arch, DriverSet],
) -> None:
    entries = [
        e
        for e in sif_entries(driversets["x86"].storage, "x86")
        if e.section == "HardwareIdsDatabase"
    ]
    assert entries
    for entry in entries:
        assert re.fullmatch(r'PCI\\VEN_1AF4&DEV_1001&SUBSYS_[0-9A-F]{8} = "viostor"', entry.line)


def test_amd64_uses_the_amd64_section(driversets: dict[Arch, DriverSet]) -> None:
    sections = [e.section for e in sif_entries(driversets["amd64"].storage, "amd64")]
    assert sections[0] == "SourceDisksFiles.amd64"
    assert "SourceDisksFiles.x86" not in sections


def test_a_missing_section_is_appended(driversets: dict[Arch, DriverSet]) -> None:
    text = b'[Version]\r\nSignature = "$Windows NT$"\r\n[SCSI.Load]\r\natapi = atapi.sys,4'
    patched = patch_txtsetup_sif(text, driversets["x86"].storage, "x86")
    lines = lines_of(patched)
    assert lines[:3] == [b"[Version]", b'Signature = "$Windows NT$"', b"[SCSI.Load]"]
    assert lines[3] == b"viostor = viostor.sys,4"
    assert lines[4] == b"atapi = atapi.sys,4"  # its missing line end was added
    for header in (b"[SourceDisksFiles.x86]", b"[HardwareIdsDatabase]", b"[SCSI]"):
        assert header in lines
    assert patch_txtsetup_sif(patched, driversets["x86"].storage, "x86") == patched


def test_headers_and_keys_compare_case_blind(driversets: dict[Arch, DriverSet]) -> None:
    storage = driversets["x86"].storage
    once = patch_txtsetup_sif(fake_txtsetup_sif("x86"), storage, "x86")
    shouted = once.replace(b"[SCSI.Load]", b"[scsi.load]").replace(
        b"viostor = viostor.sys,4", b"VIOSTOR=VIOSTOR.SYS, 4"
    )
    assert patch_txtsetup_sif(shouted, storage, "x86") == shouted


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        (b'PCI\\VEN_1AF4&DEV_1001&SUBSYS_00021AF4 = "othersvc"', "HardwareIdsDatabase"),
        (b"viostor = other.sys,4", "SCSI.Load"),
    ],
)
def test_a_cd_slipstreamed_with_another_driver_is_refused(
    driversets: dict[Arch, DriverSet], line: bytes, fragment: str
) -> None:
    section = b"[HardwareIdsDatabase]" if b"PCI" in line else b"[SCSI.Load]"
    text = fake_txtsetup_sif("x86").replace(section + b"\r\n", section + b"\r\n" + line + b"\r\n")
    with pytest.raises(InputError) as caught:
        patch_txtsetup_sif(text, driversets["x86"].storage, "x86")
    assert fragment in caught.value.message
    assert caught.value.problems[0].key == "--windows-iso"


def test_apply_with_no_entries_is_the_identity() -> None:
    text = fake_txtsetup_sif("amd64")
    assert apply_sif_entries(text, ()) == text


@pytest.mark.parametrize(("arch", "setup_dir"), [("x86", "I386"), ("amd64", "AMD64")])
def test_plan_adds_the_driver_winnt_sif_and_every_package(
    driversets: dict[Arch, DriverSet], arch: Arch, setup_dir: str
) -> None:
    drivers = driversets[arch]
    plan = plan_install_cd(drivers, {"winnt.sif": b"[Data]\r\n", "txtsetup.oem": b""})
    assert plan.setup_dir == setup_dir
    assert plan.txtsetup_path == f"{setup_dir}/TXTSETUP.SIF"
    by_path = {f.path: f for f in plan.files}
    sys_file = by_path[f"{setup_dir}/VIOSTOR.SYS"]
    assert sys_file.source_path == f"viostor/2k3/{arch}/viostor.sys"
    assert by_path[f"{setup_dir}/WINNT.SIF"].data == b"[Data]\r\n"
    expected_oem = {
        f"$OEM$/$1/Drivers/{d.name}/{f.path.rpartition('/')[2]}": f.path
        for d in drivers.selected
        for f in d.files
    }
    assert {p: f.source_path for p, f in by_path.items() if p.startswith("$OEM$")} == expected_oem
    assert {d.name for d in drivers.selected} >= {"viostor", "NetKVM"}
    assert [f.path for f in plan.files] == sorted(by_path)
    assert plan.entries == sif_entries(drivers.storage, arch)
