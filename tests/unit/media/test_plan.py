"""The media plan (builder/media/plan.py): what goes on the floppy and the drivers ISO, and the
floppy capacity check that runs before anything is written."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from builder.config import BuildConfig, load_config
from builder.errors import BuildError, InputError
from builder.media import eltorito, layout
from builder.media.plan import (
    MediaInputs,
    plan_answer_disc,
    plan_answer_floppy,
    plan_drivers_disc,
    plan_drivers_iso,
    plan_install_dvd_overlay,
)
from builder.virtio.facts import load_driver_facts
from builder.virtio.packages import scan_source
from builder.virtio.selection import DriverSet, select_drivers
from builder.virtio.source import DirectorySource
from builder.vm.devices import StorageBus
from builder.windows.install_media import InstallMedia
from builder.windows.profiles import PROFILES
from tests.fixtures.el_torito import microsoft_catalog
from tests.fixtures.virtio_win import PROFILE_OS_FOLDERS, Tree, write_modern_tree
from tests.unit.windows.common import CATALOG_LBA, NOPROMPT, boot_only_media

PASSWORD = "admin_password=Sup3r-secret"
KEY_2003 = "product_key=ABCDE-FGHIJ-KLMNO-PQRST-UVWXY"
ANSWERS_2008 = {"autounattend.xml": b"<unattend/>\r\n"}
ANSWERS_2003 = {"winnt.sif": b"[Data]\r\n", "txtsetup.oem": b"[Disks]\r\n"}
POSTINSTALL = {layout.POSTINSTALL_SCRIPT: b"@echo off\r\n", layout.MARKER_FILE: b"pvinstall\r\n"}


def config_for(profile: str, *sets: str) -> BuildConfig:
    extra = [KEY_2003] if profile.startswith("win2003") else []
    return load_config(PROFILES[profile], sets=[PASSWORD, *extra, *sets])


def select(tree: Tree, profile: str) -> DriverSet:
    return select_drivers(
        scan_source(DirectorySource(tree.root), load_driver_facts()), PROFILES[profile]
    )


@pytest.fixture(scope="module")
def modern(tmp_path_factory: pytest.TempPathFactory) -> Tree:
    return write_modern_tree(tmp_path_factory.mktemp("vw") / "virtio-win", oses=PROFILE_OS_FOLDERS)


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Tree:
    # Every binary 500,000 bytes (catalogs are real, and small): viostor + vioscsi +
    # NetKVM are too much for 1.44 MB, not for 2.88 MB.
    return write_modern_tree(
        tmp_path_factory.mktemp("big") / "virtio-win", oses=["2k8R2"], binary_size=500_000
    )


def test_2008_floppy_has_the_answer_file_and_the_boot_and_network_drivers(modern: Tree) -> None:
    drivers = select(modern, "win2008r2-x64")
    floppy = plan_answer_floppy(
        MediaInputs(config_for("win2008r2-x64"), drivers, ANSWERS_2008, POSTINSTALL)
    )
    paths = [f.path for f in floppy.files]
    assert paths[0] == "Autounattend.xml"
    assert floppy.files[0].data == ANSWERS_2008["autounattend.xml"]
    folders = {p.partition("/")[0] for p in paths[1:]}
    assert folders == {"NETKVM", "VIOSCSI", "VIOSTOR"}
    expected = {
        f"{layout.floppy_folder(d)}/{f.path.rpartition('/')[2]}": f.path
        for d in drivers.selected
        if d.name in ("NetKVM", "vioscsi", "viostor")
        for f in d.files
    }
    assert {f.path: f.source_path for f in floppy.files[1:]} == expected
    assert floppy.size_kib == 1440
    assert floppy.label == layout.FLOPPY_LABEL
    assert floppy.usage.fits


def test_2003_floppy_is_the_f6_disk(modern: Tree) -> None:
    drivers = select(modern, "win2003-x86")
    floppy = plan_answer_floppy(
        MediaInputs(config_for("win2003-x86"), drivers, ANSWERS_2003, POSTINSTALL)
    )
    by_path = {f.path: f for f in floppy.files}
    assert set(by_path) == {
        "DISK1",
        "TXTSETUP.OEM",
        "WINNT.SIF",
        "VIOSTOR/viostor.inf",
        "VIOSTOR/viostor.cat",
        "VIOSTOR/viostor.sys",
    }
    assert by_path[layout.F6_TAG_FILE].data == b""
    assert by_path["WINNT.SIF"].data == ANSWERS_2003["winnt.sif"]
    assert by_path["VIOSTOR/viostor.sys"].source_path == "viostor/2k3/x86/viostor.sys"


@pytest.mark.parametrize("profile", ["win2003-x64", "win2008-x64", "win2008r2-x64"])
def test_drivers_iso_has_every_package_in_the_virtio_win_layout(modern: Tree, profile: str) -> None:
    drivers = select(modern, profile)
    answers = ANSWERS_2003 if profile.startswith("win2003") else ANSWERS_2008
    plan = plan_drivers_disc(
        MediaInputs(
            config_for(profile, "drivers_iso_label=MYDRIVERS"), drivers, answers, POSTINSTALL
        )
    )
    assert plan.label == "MYDRIVERS"
    os_arch = drivers.profile.virtio_win_folder
    expected_packages = {
        f"{d.name}/{os_arch}/{f.path.rpartition('/')[2]}": f.path
        for d in drivers.selected
        for f in d.files
    }
    root = {layout.media_name(n): data for n, data in [*answers.items(), *POSTINSTALL.items()]}
    by_path = {f.path: f for f in plan.files}
    assert {p: f.source_path for p, f in by_path.items() if "/" in p} == expected_packages
    assert {p: f.data for p, f in by_path.items() if "/" not in p} == root
    assert [f.path for f in plan.files] == sorted(by_path)
    # The sizes come from the source listing; the writers check them while copying.
    for planned in plan.files:
        if planned.source_path:
            assert planned.size == modern.path(planned.source_path).stat().st_size


def test_overflow_is_refused_before_writing_with_the_largest_files(big: Tree) -> None:
    drivers = select(big, "win2008r2-x64")
    with pytest.raises(InputError) as caught:
        plan_answer_floppy(
            MediaInputs(config_for("win2008r2-x64"), drivers, ANSWERS_2008, POSTINSTALL)
        )
    problem = caught.value.problems[0]
    assert problem.key == "floppy_size"
    assert "does not fit on a 1.44 MB floppy" in problem.message
    assert "of 512 bytes" in problem.message and "where it has 2847" in problem.message
    largest = problem.message.partition("Largest files: ")[2]
    assert largest.count("(488 KiB)") == 3
    for name in ("NETKVM/netkvm.sys", "VIOSCSI/vioscsi.sys", "VIOSTOR/viostor.sys"):
        assert f"{name} (488 KiB)" in largest
    assert problem.hint is not None
    assert "floppy_size = 2.88" in problem.hint
    assert "leave NetKVM to drivers.iso" in problem.hint


def test_the_same_files_fit_on_2_88(big: Tree) -> None:
    drivers = select(big, "win2008r2-x64")
    floppy = plan_answer_floppy(
        MediaInputs(
            config_for("win2008r2-x64", "floppy_size=2.88"), drivers, ANSWERS_2008, POSTINSTALL
        )
    )
    assert floppy.size_kib == 2880
    assert floppy.usage.fits


def test_overflow_on_2_88_says_it_is_the_largest(tmp_path: Path) -> None:
    tree = write_modern_tree(tmp_path / "vw", oses=["2k8R2"], binary_size=1_000_000)
    drivers = select(tree, "win2008r2-x64")
    with pytest.raises(InputError) as caught:
        plan_answer_floppy(
            MediaInputs(
                config_for("win2008r2-x64", "floppy_size=2.88"), drivers, ANSWERS_2008, POSTINSTALL
            )
        )
    problem = caught.value.problems[0]
    assert "2.88 MB floppy" in problem.message
    assert problem.hint is not None and problem.hint.startswith("2.88 MB is the largest")


def test_two_files_at_one_path_are_a_bug(modern: Tree) -> None:
    drivers = select(modern, "win2008-x64")
    answers = {"autounattend.xml": b"a", "AUTOUNATTEND.XML": b"b"}
    with pytest.raises(BuildError, match="same path"):
        plan_answer_floppy(MediaInputs(config_for("win2008-x64"), drivers, answers, POSTINSTALL))


@pytest.mark.parametrize("profile", ["win2003-x86", "win2008r2-x64"])
def test_a_drivers_only_iso_has_the_packages_and_nothing_else(modern: Tree, profile: str) -> None:
    drivers = select(modern, profile)
    plan = plan_drivers_iso(drivers, "PVDRIVERS")
    full = plan_drivers_disc(
        MediaInputs(
            config_for(profile),
            drivers,
            ANSWERS_2003 if profile.startswith("win2003") else ANSWERS_2008,
            POSTINSTALL,
        )
    )
    assert plan.label == "PVDRIVERS"
    # The same packages at the same places as the build's drivers.iso, no answer files.
    assert plan.files == tuple(f for f in full.files if "/" in f.path)
    assert all(f.source_path for f in plan.files)


def test_settings_and_drivers_of_two_profiles_are_refused(modern: Tree) -> None:
    with pytest.raises(BuildError, match="settings for win2008-x64 but drivers for win2003-x86"):
        MediaInputs(config_for("win2008-x64"), select(modern, "win2003-x86"), {}, {})


# -- the answer ISO and the installers -------------------------------------------------------


@pytest.mark.parametrize(
    ("bus", "storage"), [("virtio-blk", "viostor"), ("virtio-scsi", "vioscsi")]
)
def test_the_answer_iso_has_the_answer_file_and_winpe_s_drivers_at_its_root(
    modern: Tree, bus: str, storage: str
) -> None:
    drivers = select_drivers(
        scan_source(DirectorySource(modern.root), load_driver_facts()),
        PROFILES["win2022-x64"],
        storage_bus=StorageBus(bus),
    )
    config = config_for("win2022-x64", f"storage_bus={bus}")
    plan = plan_answer_disc(MediaInputs(config, drivers, ANSWERS_2008, POSTINSTALL))
    assert plan.label == layout.ANSWER_ISO_LABEL == "PVANSWER"
    by_path = {f.path: f for f in plan.files}
    assert by_path["Autounattend.xml"].data == ANSWERS_2008["autounattend.xml"]
    # The system disk's storage driver and NetKVM, each in $WinPEDriver$/<driver>/; not
    # the other bus's driver, not the post-install step.
    expected = {
        f"$WinPEDriver$/{d.name}/{f.path.rpartition('/')[2]}": f.path
        for d in drivers.selected
        if d.name in (storage, "NetKVM")
        for f in d.files
    }
    assert {p: f.source_path for p, f in by_path.items() if p != "Autounattend.xml"} == expected
    assert all(f.path.startswith(("$WinPEDriver$/", "Autounattend.xml")) for f in plan.files)
    assert {p.split("/")[1] for p in expected} == {storage, "NetKVM"}


def test_the_drivers_iso_carries_the_installers_at_their_source_paths(modern: Tree) -> None:
    drivers = select(modern, "win2022-x64")
    plan = plan_drivers_disc(
        MediaInputs(config_for("win2022-x64"), drivers, ANSWERS_2008, POSTINSTALL)
    )
    by_path = {f.path: f for f in plan.files}
    for name in ("guest-agent/qemu-ga-x86_64.msi", "virtio-win-gt-x64.msi"):
        assert by_path[name].source_path == name
        assert by_path[name].size == modern.path(name).stat().st_size
    legacy = plan_drivers_disc(
        MediaInputs(
            config_for("win2008r2-x64"), select(modern, "win2008r2-x64"), ANSWERS_2008, POSTINSTALL
        )
    )
    assert not [f for f in legacy.files if f.path.endswith(".msi")]


# -- the DVD's overlay: the UEFI entry on efisys_noprompt.bin ---------------------------


def overlay_inputs(tree: Tree, dvd: InstallMedia, *sets: str) -> MediaInputs:
    return MediaInputs(config_for("win2022-x64", *sets), select(tree, "win2022-x64"), {}, {}, dvd)


def test_the_overlay_points_the_uefi_entry_at_efisys_noprompt(modern: Tree) -> None:
    plan = plan_install_dvd_overlay(overlay_inputs(modern, boot_only_media()))
    assert plan.offset == CATALOG_LBA * 2048
    assert plan.patched_sector is not None
    entries = eltorito.parse_catalog(plan.patched_sector)
    original = eltorito.parse_catalog(microsoft_catalog().sector)
    assert entries[0] == original[0]  # the BIOS entry as it was
    assert (entries[1].platform, entries[1].load_rba) == (0xEF, NOPROMPT.lba)
    assert "efisys_noprompt.bin" in plan.note


def _no_uefi() -> tuple[int, bytes]:
    sector = bytearray(microsoft_catalog().sector)
    sector[64:128] = bytes(64)  # the UEFI section header and entry gone
    return CATALOG_LBA, bytes(sector)


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"boot_record": b"\0" * 2048, "boot_catalog": None}, "not an El Torito boot record"),
        ({"boot_catalog": (CATALOG_LBA, b"\0" * 2048)}, "no validation entry"),
        ({"boot_catalog": _no_uefi()}, "no UEFI boot entry"),
        ({"noprompt": None, "efisys_noprompt": False}, "has no efi/microsoft/boot/efisys_noprompt"),
        ({"noprompt": dataclasses.replace(NOPROMPT, contiguous=False)}, "stored in pieces"),
        ({"noprompt": dataclasses.replace(NOPROMPT, size=0)}, "is empty"),
    ],
)
def test_a_dvd_uefi_cannot_boot_without_the_prompt_is_refused(
    modern: Tree, changes: dict[str, object], says: str
) -> None:
    dvd = boot_only_media(**changes)
    with pytest.raises(InputError, match=says) as raised:
        plan_install_dvd_overlay(overlay_inputs(modern, dvd))
    assert raised.value.problems[0].key == "--windows-iso"
    assert str(dvd.path) in raised.value.problems[0].message
    # A BIOS build boots the BIOS entry: the same DVD is fine, the overlay unchanged.
    bios = plan_install_dvd_overlay(overlay_inputs(modern, dvd, "firmware=bios"))
    assert bios.patched_sector is None


def test_the_overlay_needs_the_dvd_read(modern: Tree) -> None:
    inputs = dataclasses.replace(overlay_inputs(modern, boot_only_media()), install_media=None)
    with pytest.raises(BuildError):
        plan_install_dvd_overlay(inputs)
