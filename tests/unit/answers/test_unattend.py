"""autounattend.xml (builder/answers/unattend.py), read back with lxml."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from builder.answers import formats, unattend
from builder.errors import BuildError
from builder.media import layout
from builder.virtio.selection import DriverSet
from builder.windows.profiles import PROFILES, DiskLayout, Profile
from tests.unit.answers.common import (
    FLOPPY_ANSWERED,
    GOLDEN_SETTINGS,
    ISO_ANSWERED,
    PASSWORD,
    PROFILES_2008,
    WCM,
    U,
    components,
    config_for,
    expected_encoding,
    golden_config,
    medium,
    plan,
    rendered,
    settle,
    text,
    unattend_root,
)

# -- autounattend.xml --------------------------------------------------------------------------


@pytest.mark.parametrize("profile", PROFILES_2008)
def test_every_profile_xml_parses_with_the_three_passes(
    profile: str, driversets: dict[str, DriverSet]
) -> None:
    root = unattend_root(profile, driversets)
    assert root.tag == f"{U}unattend"
    assert [s.get("pass") for s in root] == ["windowsPE", "specialize", "oobeSystem"]


@pytest.mark.parametrize("profile", PROFILES_2008)
def test_every_component_carries_the_header(profile: str, driversets: dict[str, DriverSet]) -> None:
    root = unattend_root(profile, driversets)
    every = root.findall(f"{U}settings/{U}component")
    assert len(every) >= 7
    for component in every:
        assert component.get("processorArchitecture") == PROFILES[profile].arch
        assert component.get("publicKeyToken") == "31bf3856ad364e35"
        assert component.get("language") == "neutral"
        assert component.get("versionScope") == "nonSxS"
        assert component.nsmap.get("wcm") == WCM


@pytest.mark.parametrize("profile", FLOPPY_ANSWERED)
def test_driver_paths_name_the_floppy_folders_only_in_windows_pe(
    profile: str, driversets: dict[str, DriverSet]
) -> None:
    drivers = driversets[profile]
    root = unattend_root(profile, driversets)
    everywhere = root.findall(f".//{U}DriverPaths")
    pe = components(root, "windowsPE")["Microsoft-Windows-PnpCustomizationsWinPE"]
    assert everywhere == pe.findall(f"{U}DriverPaths")
    entries = pe.findall(f"{U}DriverPaths/{U}PathAndCredentials")
    keys = [e.get(f"{{{WCM}}}keyValue") for e in entries]
    assert len(set(keys)) == len(keys) and all(keys)
    assert all(e.get(f"{{{WCM}}}action") == "add" for e in entries)
    paths = [text(e, "Path") for e in entries]
    # The boot-critical storage drivers and NetKVM, each its own exact folder on A:.
    expected = sorted(
        d.name
        for d in drivers.selected
        if (d.role == "storage" and d.boot_critical) or d.role == "network"
    )
    assert sorted(p.rpartition("\\")[2].lower() for p in paths if p) == sorted(
        n.lower() for n in expected
    )
    # Each path is a folder that the floppy plan fills with an INF.
    floppy = {
        f.path for f in medium(plan(profile, drivers, rendered(profile, drivers)), "floppy.img")
    }
    for path in paths:
        assert path is not None and path.startswith("A:\\")
        folder = path[3:]
        assert any(p.startswith(folder + "/") and p.lower().endswith(".inf") for p in floppy)


@pytest.mark.parametrize("profile", PROFILES_2008)
def test_passwords_are_encoded(profile: str, driversets: dict[str, DriverSet]) -> None:
    root = unattend_root(profile, driversets)
    shell = components(root, "oobeSystem")["Microsoft-Windows-Shell-Setup"]
    admin = shell.find(f"{U}UserAccounts/{U}AdministratorPassword")
    assert admin is not None
    assert text(admin, "PlainText") == "false"
    assert text(admin, "Value") == expected_encoding(PASSWORD, "AdministratorPassword")
    logon = shell.find(f"{U}AutoLogon")
    assert logon is not None
    assert text(logon, "Password/PlainText") == "false"
    assert text(logon, "Password/Value") == expected_encoding(PASSWORD, "Password")
    assert text(logon, "LogonCount") == "2"
    assert text(logon, "Username") == "Administrator"
    assert (
        PASSWORD.encode()
        not in formats.render_answer_files(golden_config(profile), driversets[profile])[
            "autounattend.xml"
        ]
    )


def test_encode_password_matches_the_worked_example() -> None:
    # docs/windows-2008.md §3
    assert unattend.encode_password("P@ssw0rd", "AdministratorPassword") == (
        "UABAAHMAcwB3ADAAcgBkAEEAZABtAGkAbgBpAHMAdAByAGEAdABvAHIAUABhAHMAcwB3AG8AcgBkAA=="
    )
    assert unattend.encode_password("P@ssw0rd", "Password") == (
        "UABAAHMAcwB3ADAAcgBkAFAAYQBzAHMAdwBvAHIAZAA="
    )


@pytest.mark.parametrize("profile", PROFILES_2008)
def test_settings_reach_their_elements(profile: str, driversets: dict[str, DriverSet]) -> None:
    config = golden_config(profile)
    root = unattend_root(profile, driversets)
    setup = components(root, "windowsPE")["Microsoft-Windows-Setup"]
    assert text(setup, "ImageInstall/OSImage/InstallFrom/MetaData/Key") == "/IMAGE/NAME"
    assert text(setup, "ImageInstall/OSImage/InstallFrom/MetaData/Value") == config.image_name
    assert text(setup, "UserData/AcceptEula") == "true"
    assert text(setup, "UserData/FullName") == "Ops & <Team>"
    assert text(setup, "UserData/Organization") == "Example Corp"
    assert config.product_key is not None
    assert text(setup, "UserData/ProductKey/Key") == config.product_key.reveal()
    windows = [p for p in setup.iterfind(f".//{U}ModifyPartition") if text(p, "Letter") == "C"]
    assert len(windows) == 1
    partition = windows[0]
    active = None if PROFILES[profile].firmware.value == "efi" else "true"
    assert (text(partition, "Format"), text(partition, "Active")) == ("NTFS", active)
    install_to = text(setup, "ImageInstall/OSImage/InstallTo/PartitionID")
    assert text(partition, "PartitionID") == install_to
    specialize = components(root, "specialize")
    assert text(specialize["Microsoft-Windows-Shell-Setup"], "ComputerName") == "PVGOLDEN"
    assert (
        text(specialize["Microsoft-Windows-Shell-Setup"], "TimeZone") == "W. Europe Standard Time"
    )
    assert (
        text(specialize["Microsoft-Windows-UnattendedJoin"], "Identification/JoinWorkgroup")
        == "WORKGROUP"
    )
    pe = components(root, "windowsPE")["Microsoft-Windows-International-Core-WinPE"]
    assert text(pe, "InputLocale") == "0409:00000409"
    assert text(pe, "SetupUILanguage/UILanguage") == "en-US"


def test_no_product_key_never_shows_the_key_page(driversets: dict[str, DriverSet]) -> None:
    config = config_for(
        "win2008r2-x64", f"admin_password={PASSWORD}", 'product_key=""', "organization="
    )
    setup = components(unattend_root("win2008r2-x64", driversets, config), "windowsPE")[
        "Microsoft-Windows-Setup"
    ]
    key = setup.find(f"{U}UserData/{U}ProductKey")
    assert key is not None
    assert key.find(f"{U}Key") is None
    assert text(key, "WillShowUI") == "Never"
    assert setup.find(f"{U}UserData/{U}Organization") is None


@pytest.mark.parametrize("profile", PROFILES_2008)
def test_first_logon_runs_the_script_from_any_drive(
    profile: str, driversets: dict[str, DriverSet]
) -> None:
    shell = components(unattend_root(profile, driversets), "oobeSystem")[
        "Microsoft-Windows-Shell-Setup"
    ]
    commands = shell.findall(f"{U}FirstLogonCommands/{U}SynchronousCommand")
    assert len(commands) == 1
    line = text(commands[0], "CommandLine") or ""
    assert f"%d:\\{layout.MARKER_FILE}" in line and f"%d:\\{layout.POSTINSTALL_SCRIPT}" in line
    letters = re.search(r"in \(([A-Z ]+)\)", line)
    assert letters is not None and letters.group(1).split() == list("CDEFGHIJKLMNOPQRSTUVWXYZ")
    assert not re.search(r"\b[D-Z]:\\", line), "no fixed drive letter"
    assert text(commands[0], "Order") == "1"


# -- the version-gated settings --------------------------------------------------------------


def element_paths(root: etree._Element) -> set[tuple[str, str, str]]:
    """(pass, component, element path) of every element inside a component."""
    found: set[tuple[str, str, str]] = set()
    for settings_el in root.findall(f"{U}settings"):
        for component in settings_el.findall(f"{U}component"):
            for element in component.iter():
                if element is component or not isinstance(element.tag, str):
                    continue
                parts = []
                node: etree._Element | None = element
                while node is not None and node is not component:
                    parts.append(etree.QName(node).localname)
                    node = node.getparent()
                found.add(
                    (
                        settings_el.get("pass", ""),
                        component.get("name", ""),
                        "/".join(reversed(parts)),
                    )
                )
    return found


@pytest.mark.parametrize("profile", PROFILES_2008)
def test_gated_settings_appear_exactly_where_the_table_allows(
    profile: str, driversets: dict[str, DriverSet]
) -> None:
    paths = element_paths(unattend_root(profile, driversets))
    version = PROFILES[profile].nt_version
    for setting in unattend.GATED_SETTINGS:
        path = f"{setting.parent}/{setting.name}" if setting.parent else setting.name
        present = (setting.config_pass, setting.component, path) in paths
        assert present == setting.known_by(version), (profile, setting.component, path)


def test_the_auto_activation_switch_per_version(driversets: dict[str, DriverSet]) -> None:
    slc = "Microsoft-Windows-Security-Licensing-SLC-UX"
    spp = "Microsoft-Windows-Security-SPP-UX"
    for profile in ("win2008-x86", "win2008-x64"):
        names = set(components(unattend_root(profile, driversets), "specialize"))
        assert slc in names and spp not in names
    names = set(components(unattend_root("win2008r2-x64", driversets), "specialize"))
    assert spp in names and slc not in names


def test_no_2012_era_oobe_key_reaches_2008_or_2008r2(driversets: dict[str, DriverSet]) -> None:
    newer = {s.name for s in unattend.GATED_SETTINGS if s.since >= (6, 2)}
    assert {"HideOnlineAccountScreens", "HideLocalAccountScreen"} <= newer
    for profile in (p for p in PROFILES_2008 if PROFILES[p].nt_version < (6, 2)):
        data = formats.render_answer_files(golden_config(profile), driversets[profile])
        for name in newer:
            assert name.encode() not in data["autounattend.xml"]


def test_gated_table_for_a_future_profile() -> None:
    # A 2012-era profile (NT 6.2) would get SPP-UX, the Server Manager switch (not the
    # Initial Configuration Tasks one: that window is gone) and the account-screen switches.
    from dataclasses import replace

    future: Profile = replace(PROFILES["win2008r2-x64"], nt_version=(6, 2))
    assert unattend.gated_components(future, "specialize") == (
        "Microsoft-Windows-Security-SPP-UX",
        "Microsoft-Windows-ServerManager-SvrMgrNc",
    )
    names = {
        s.name
        for s in unattend.gated_settings(
            future, "oobeSystem", "Microsoft-Windows-Shell-Setup", "OOBE"
        )
    }
    assert names == {
        "HideEULAPage",
        "HideLocalAccountScreen",
        "HideOnlineAccountScreens",
        "HideOEMRegistrationScreen",
    }


# -- arbitrary text in every free-text setting ----------------------------------------------


XML_PLACES = {
    "computer_name": ("specialize", "Microsoft-Windows-Shell-Setup", "ComputerName"),
    "full_name": ("windowsPE", "Microsoft-Windows-Setup", "UserData/FullName"),
    "organization": ("windowsPE", "Microsoft-Windows-Setup", "UserData/Organization"),
    "workgroup": ("specialize", "Microsoft-Windows-UnattendedJoin", "Identification/JoinWorkgroup"),
    "image_name": (
        "windowsPE",
        "Microsoft-Windows-Setup",
        "ImageInstall/OSImage/InstallFrom/MetaData/Value",
    ),
    "admin_password": (
        "oobeSystem",
        "Microsoft-Windows-Shell-Setup",
        "UserAccounts/AdministratorPassword/Value",
    ),
}


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.sampled_from(sorted(XML_PLACES)), value=st.text(max_size=40))
def test_free_text_renders_to_xml_that_round_trips_or_is_refused(
    win2008r2: DriverSet, key: str, value: str
) -> None:
    config = settle("win2008r2-x64", key, value)
    if config is None:
        return
    data = formats.render_answer_files(config, win2008r2)["autounattend.xml"]
    root = etree.fromstring(data)  # well-formed, or this raises
    config_pass, component, path = XML_PLACES[key]
    found = text(components(root, config_pass)[component], path)
    if key == "admin_password":
        assert found == expected_encoding(value, "AdministratorPassword")
    elif key == "organization" and value == "":
        assert found is None
    else:
        assert found == getattr(config, key) == value


def test_the_disk_is_partitioned_as_the_layout_table_says(
    driversets: dict[str, DriverSet], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The partitions come from PARTITION_LAYOUTS, not from the template: a layout with
    an EFI system partition, an unformatted MSR and Windows renders as such."""
    efi_like = unattend.PartitionLayout(
        partitions=(
            unattend.Partition(1, "EFI", False, 260, "FAT32", "System", None, active=False),
            unattend.Partition(2, "MSR", False, 16, None, None, None, active=False),
            unattend.Partition(3, "Primary", True, None, "NTFS", "Windows", "C", active=False),
        ),
        install_to=3,
    )
    monkeypatch.setattr(unattend, "PARTITION_LAYOUTS", {DiskLayout.MBR: efi_like})
    setup = components(unattend_root("win2008r2-x64", driversets), "windowsPE")[
        "Microsoft-Windows-Setup"
    ]
    disk = setup.find(f"{U}DiskConfiguration/{U}Disk")
    assert disk is not None
    created = [
        (text(c, "Order"), text(c, "Type"), text(c, "Size"))
        for c in disk.iterfind(f"{U}CreatePartitions/{U}CreatePartition")
    ]
    assert created == [("1", "EFI", "260"), ("2", "MSR", "16"), ("3", "Primary", None)]
    modified = [
        (text(m, "PartitionID"), text(m, "Format"), text(m, "Active"))
        for m in disk.iterfind(f"{U}ModifyPartitions/{U}ModifyPartition")
    ]
    assert modified == [("1", "FAT32", None), ("3", "NTFS", None)]
    assert text(setup, "ImageInstall/OSImage/InstallTo/PartitionID") == "3"
    monkeypatch.setattr(unattend, "PARTITION_LAYOUTS", {})
    with pytest.raises(BuildError, match="cannot partition a mbr disk"):
        unattend_root("win2008r2-x64", driversets)


@pytest.mark.parametrize("profile", PROFILES_2008)
@pytest.mark.parametrize("keep", [False, True])
def test_server_manager_and_initial_configuration_tasks_stay_closed_unless_kept(
    profile: str, keep: bool, driversets: dict[str, DriverSet]
) -> None:
    sets = [*GOLDEN_SETTINGS, f"server_manager_at_logon={'true' if keep else 'false'}"]
    data = formats.render_answer_files(config_for(profile, *sets), driversets[profile])
    root = etree.fromstring(data["autounattend.xml"])
    settings = {
        (component.get("name"), child.tag.removeprefix(U), child.text)
        for component in root.iterfind(f"{U}settings[@pass='specialize']/{U}component")
        for child in component
    }
    wanted = {
        ("Microsoft-Windows-ServerManager-SvrMgrNc", "DoNotOpenServerManagerAtLogon", "true"),
        (
            "Microsoft-Windows-OutOfBoxExperience",
            "DoNotOpenInitialConfigurationTasksAtLogon",
            "true",
        ),
    }
    if PROFILES[profile].nt_version > (6, 1):  # Initial Configuration Tasks is gone
        wanted = {w for w in wanted if w[0] != "Microsoft-Windows-OutOfBoxExperience"}
    assert (wanted & settings) == (set() if keep else wanted)


# -- the releases answered from the answer ISO ---------------------------------------------


@pytest.mark.parametrize("profile", ISO_ANSWERED)
def test_an_iso_answered_file_names_no_driver_path_and_no_drive_letter(
    profile: str, driversets: dict[str, DriverSet]
) -> None:
    """Setup finds Autounattend.xml and $WinPEDriver$ on whatever drive the answer ISO
    is: the file has no DriverPaths, and the only letter in it is the Windows
    partition's C."""
    root = unattend_root(profile, driversets)
    assert root.findall(f".//{U}DriverPaths") == []
    assert "Microsoft-Windows-PnpCustomizationsWinPE" not in components(root, "windowsPE")
    data = formats.render_answer_files(golden_config(profile), driversets[profile])
    text_of_file = data["autounattend.xml"].decode("utf-8")
    assert not re.search(r"\b[A-Z]:\\", text_of_file.replace("%d:\\", ""))
    assert [e.text for e in root.iter(f"{U}Letter")] == ["C"]


@pytest.mark.parametrize("profile", ISO_ANSWERED)
def test_uefi_gets_microsoft_s_gpt_layout_and_bios_the_mbr_one(
    profile: str, driversets: dict[str, DriverSet]
) -> None:
    setup = components(unattend_root(profile, driversets), "windowsPE")["Microsoft-Windows-Setup"]
    created = [
        (text(c, "Order"), text(c, "Type"), text(c, "Size"), text(c, "Extend"))
        for c in setup.iterfind(f".//{U}CreatePartition")
    ]
    # EFI system partition FAT32 260 MB, MSR 16 MB unformatted, Windows NTFS on the rest.
    assert created == [
        ("1", "EFI", "260", None),
        ("2", "MSR", "16", None),
        ("3", "Primary", None, "true"),
    ]
    formats_of = {
        text(m, "PartitionID"): (text(m, "Format"), text(m, "Label"))
        for m in setup.iterfind(f".//{U}ModifyPartition")
    }
    assert formats_of == {"1": ("FAT32", "System"), "3": ("NTFS", "Windows")}
    assert text(setup, "ImageInstall/OSImage/InstallTo/PartitionID") == "3"
    if "bios" not in PROFILES[profile].firmwares:
        return
    bios = config_for(profile, f"admin_password={PASSWORD}", "firmware=bios")
    setup = components(unattend_root(profile, driversets, bios), "windowsPE")[
        "Microsoft-Windows-Setup"
    ]
    assert [text(c, "Type") for c in setup.iterfind(f".//{U}CreatePartition")] == ["Primary"]
    assert text(setup, "DiskConfiguration/Disk/ModifyPartitions/ModifyPartition/Active") == "true"


def test_the_image_is_named_by_index_when_an_index_is_given(
    driversets: dict[str, DriverSet],
) -> None:
    config = config_for("win2022-x64", f"admin_password={PASSWORD}", "image_index=3")
    setup = components(unattend_root("win2022-x64", driversets, config), "windowsPE")[
        "Microsoft-Windows-Setup"
    ]
    assert text(setup, "ImageInstall/OSImage/InstallFrom/MetaData/Key") == "/IMAGE/INDEX"
    assert text(setup, "ImageInstall/OSImage/InstallFrom/MetaData/Value") == "3"
    core = config_for("win2022-x64", f"admin_password={PASSWORD}", "server_core=true")
    setup = components(unattend_root("win2022-x64", driversets, core), "windowsPE")[
        "Microsoft-Windows-Setup"
    ]
    assert text(setup, "ImageInstall/OSImage/InstallFrom/MetaData/Value") == (
        "Windows Server 2022 SERVERSTANDARDCORE"
    )


@pytest.mark.parametrize(
    "sets",
    [(), ("data_disks=[20, 40]",), ("storage_bus=virtio-scsi", "data_disks=[20]")],
)
def test_disk_id_is_the_system_disk_s_number_among_the_domain_s_disks(
    driversets: dict[str, DriverSet], sets: tuple[str, ...]
) -> None:
    config = config_for("win2022-x64", f"admin_password={PASSWORD}", *sets)
    root = unattend_root("win2022-x64", driversets, config)
    expected = str(unattend.disk_id(config))
    ids = [e.text for e in root.iter(f"{U}DiskID")]
    assert ids == [expected, expected] and expected == "0"
