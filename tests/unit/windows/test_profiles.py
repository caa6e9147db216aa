"""The profile table (builder/windows/profiles.py): every row consistent with the other
tables, a new release in one row, osinfo aliases."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import MappingProxyType

import pytest

from builder.answers import formats, postinstall
from builder.config import load_config
from builder.errors import InputError
from builder.media import table
from builder.media.plan import MediaInputs
from builder.virtio.facts import load_driver_facts
from builder.virtio.packages import scan_source
from builder.virtio.selection import select_drivers
from builder.virtio.source import DirectorySource
from builder.vm import domain
from builder.vm.devices import DRIVE_TARGETS
from builder.windows.profiles import (
    PROFILES,
    STORAGE_ROUTE_PROSE,
    WIN2003_FAMILY,
    WIN2008_FAMILY,
    WIN2012R2_FAMILY,
    WIN2016_FAMILY,
    Profile,
    StorageRoute,
    _check,
    release,
    resolve_profile,
)
from tests.fixtures.virtio_win import PROFILE_OS_FOLDERS, write_modern_tree

# -- every row is consistent with the other tables ------------------------------------------


@pytest.mark.parametrize("profile", list(PROFILES.values()), ids=list(PROFILES))
def test_every_row_is_served_by_the_other_tables(profile: Profile) -> None:
    """What a golden file cannot say: each profile's facts have their counterparts."""
    facts = load_driver_facts()
    # The driver facts know its machine, its virtio-win folder and its device model.
    assert profile.machine in facts.device_models
    assert profile.virtio_model in facts.device_models[profile.machine]
    assert profile.os_folder in facts.os_folders
    assert facts.os_folders[profile.os_folder][0] == profile.os_folder
    # The media table carries its storage driver to setup, on drives its machine has.
    media = table.media_for(profile, Path("windows.iso"))
    assert any(m.serves is profile.storage_route for m in media)
    assert profile.floppy_controller or all(m.device != "floppy" for m in media)
    assert profile.cd_bus in DRIVE_TARGETS
    # Its defaults are in its own tables, and the name says what it is.
    assert profile.timezones.resolve(profile.default_timezone) is not None
    assert profile.default_locale in profile.locales
    assert profile.default_edition in profile.editions
    assert profile.name == f"{profile.family}-{profile.arch_label}"
    assert profile.min_memory_mib <= profile.memory_mib
    assert profile.min_disk_gib <= profile.disk_size_gib
    # An answer file that picks an image by name has a name for the default edition.
    assert profile.installs_image == bool(profile.editions[profile.default_edition].image_name)


def test_the_known_bad_releases_name_profile_folders() -> None:
    folders = {p.os_folder for p in PROFILES.values()}
    for bad in load_driver_facts().known_bad:
        assert set(bad.os_folders) <= folders


def test_family_rows_rebuild_the_releases() -> None:
    assert release(WIN2008_FAMILY, "amd64") == PROFILES["win2008-x64"]
    assert release(WIN2003_FAMILY, "x86") == PROFILES["win2003-x86"]
    assert release(WIN2012R2_FAMILY, "amd64") == PROFILES["win2012r2-x64"]
    assert release(WIN2016_FAMILY, "amd64") == PROFILES["win2016-x64"]


def test_a_contradicting_row_is_refused() -> None:
    bad = dataclasses.replace(PROFILES["win2008-x64"], default_timezone="Mars Standard Time")
    with pytest.raises(ValueError, match="default time zone is not in its time zone table"):
        _check(bad)


def test_storage_routes_say_what_they_do() -> None:
    for route in StorageRoute:
        assert STORAGE_ROUTE_PROSE[route]
    assert PROFILES["win2003-x86"].as_json()["storage_route"] == "slipstream"
    assert "DriverPaths" in PROFILES["win2008r2-x64"].as_json()["storage_driver_path"]


# -- a new release is one row ------------------------------------------------------------


def test_a_new_release_of_a_family_is_one_row_and_runs_through_the_pure_core(
    tmp_path: Path,
) -> None:
    """A hypothetical win2008-family release with its own virtio-win folder: a profile
    row and a driver-facts row are all it takes for selection, the answer files, the
    media and the domain."""
    new = release(
        WIN2008_FAMILY,
        "amd64",
        title="Windows Server 2008 SP9",
        family="win2008sp9",
        os_folder="2k8SP9",
        osinfo_id="win2k8sp9",
        osinfo_url="http://microsoft.com/win/2k8sp9",
    )
    base = load_driver_facts()
    facts = dataclasses.replace(
        base, os_folders=MappingProxyType({**base.os_folders, "2k8SP9": ("2k8SP9",)})
    )
    # virtio-win copies the 2008 (Wlh) build into the new release's folder too.
    tree = write_modern_tree(
        tmp_path / "vw",
        drivers=["viostor", "NetKVM", "Balloon"],
        oses=PROFILE_OS_FOLDERS,
        extra_os_folders={new.os_folder: "Wlh"},
    )
    drivers = select_drivers(scan_source(DirectorySource(tree.root), facts), new, facts)
    assert {d.folder for d in drivers.selected} == {
        f"{name}/2k8SP9/amd64" for name in ("viostor", "NetKVM", "Balloon")
    }
    config = load_config(new, sets=["admin_password=Sup3r-secret"])
    answers = formats.render_answer_files(config, drivers)
    post = postinstall.render_postinstall(config, drivers)
    assert list(answers) == ["autounattend.xml"]
    assert b"A:\\VIOSTOR" in answers["autounattend.xml"]
    assert b"%PV_DRIVE%\\viostor\\2k8SP9\\amd64" in post["POSTINST.CMD"]
    media = table.plan_media(MediaInputs(config, drivers, answers, post), windows_iso=None)
    disc = media.get("drivers.iso")
    assert disc is not None
    assert "viostor/2k8SP9/amd64/viostor.inf" in {f.path for f in disc.plan.files}
    out = Path("/out")
    paths = domain.MediaPaths(
        media=media.attached(out, None),
        system_disk=out / "new.qcow2",
        data_disks=(),
        serial_log=out / "serial.log",
    )
    xml = domain.domain_xml(config, drivers, paths, facts=facts, name="new", domain_type="kvm")
    assert "http://microsoft.com/win/2k8sp9" in xml and "Windows Server 2008 SP9 (x64)" in xml
    assert "model='virtio'" in xml


def test_kms_keys_and_image_names_are_well_formed() -> None:
    for profile in PROFILES.values():
        assert profile.default_edition in profile.editions
        for edition in profile.editions.values():
            if edition.kms_key is not None:
                parts = edition.kms_key.split("-")
                assert len(parts) == 5 and all(len(p) == 5 for p in parts)
    assert PROFILES["win2008r2-x64"].editions["standard"].image_name == (
        "Windows Server 2008 R2 SERVERSTANDARD"
    )
    assert PROFILES["win2008-x64"].editions["enterprise"].kms_key == (
        "YQGMW-MPWTJ-34KDK-48M3W-X4Q6V"
    )


@pytest.mark.parametrize(
    ("name", "arch", "expected"),
    [
        ("win2008-x64", None, "win2008-x64"),
        ("win2008-x64", "x64", "win2008-x64"),
        ("win2008-x64", "amd64", "win2008-x64"),
        ("win2k3", "x86", "win2003-x86"),
        ("win2k3", "x64", "win2003-x64"),
        ("win2k3r2", "x86_64", "win2003-x64"),
        ("win2k8", "i386", "win2008-x86"),
        ("win2k8r2", None, "win2008r2-x64"),
        ("win2k8r2", "x64", "win2008r2-x64"),
    ],
)
def test_resolve(name: str, arch: str | None, expected: str) -> None:
    assert resolve_profile(name, arch).name == expected


@pytest.mark.parametrize(
    ("name", "arch", "fragment"),
    [
        ("win2012", None, "unknown profile 'win2012'"),
        ("win2k8", None, "several architectures"),
        ("win2k8r2", "x86", "no x86 profile"),
        ("win2008-x64", "x86", "is x64"),
        ("win2k8", "sparc", "unknown architecture"),
    ],
)
def test_resolve_errors(name: str, arch: str | None, fragment: str) -> None:
    with pytest.raises(InputError) as caught:
        resolve_profile(name, arch)
    assert fragment in str(caught.value)
    assert caught.value.exit_code == 2


def test_a_new_modern_release_is_one_row_and_runs_through_the_pure_core(
    tmp_path: Path,
) -> None:
    """A hypothetical release of the 2016 family with a folder of its own, into which
    virtio-win copies the Win11 build: one profile row and one driver-facts row, and it
    gets its own folder's drivers, an answer ISO and a q35 domain."""
    new = release(
        WIN2016_FAMILY,
        "amd64",
        title="Windows Server 2028",
        family="win2028",
        build=30000,
        os_folder="2k28",
        osinfo_id="win2k28",
        osinfo_url="http://microsoft.com/win/2k28",
    )
    base = load_driver_facts()
    facts = dataclasses.replace(
        base, os_folders=MappingProxyType({**base.os_folders, "2k28": ("2k28",)})
    )
    tree = write_modern_tree(
        tmp_path / "vw",
        drivers=["viostor", "NetKVM"],
        oses=("2k22", "2k25"),
        extra_os_folders={new.os_folder: "Win11"},
    )
    drivers = select_drivers(scan_source(DirectorySource(tree.root), facts), new, facts)
    assert {d.folder for d in drivers.selected} == {"viostor/2k28/amd64", "NetKVM/2k28/amd64"}
    assert drivers.warnings == ()
    config = load_config(new, sets=["admin_password=Sup3r-secret", "server_core=true"])
    assert config.image_name == "Windows Server 2016 SERVERSTANDARDCORE"  # the 2016 row's
    answers = formats.render_answer_files(config, drivers)
    post = postinstall.render_postinstall(config, drivers)
    assert b"DriverPaths" not in answers["autounattend.xml"]
    assert b"pnputil /add-driver" in post["POSTINST.CMD"]
    media = table.plan_media(MediaInputs(config, drivers, answers, post), windows_iso=None)
    answer = media.get("answer.iso")
    assert answer is not None
    assert "$WinPEDriver$/viostor/viostor.inf" in {f.path for f in answer.plan.files}
    out = Path("/out")
    paths = domain.MediaPaths(
        media=media.attached(out, None),
        system_disk=out / "new.qcow2",
        data_disks=(),
        serial_log=out / "serial.log",
    )
    xml = domain.domain_xml(config, drivers, paths, facts=facts, name="new", domain_type="kvm")
    assert "machine='q35'" in xml and "answer.iso" in xml and "bus='sata'" in xml
