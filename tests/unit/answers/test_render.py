"""Answer files and the post-install script (builder/answers/render.py).

Oracles: lxml parses and walks the XML; winnt.sif and txtsetup.oem are read back by a
small INI reader written here (not the product's INF parser); hardware IDs come from the
fixture generator's ground truth; paths are checked against the media plan, which is
what the floppy, the drivers ISO and the 2003 CD are written from.

Golden files live in tests/golden/<profile>/. After an intended change, regenerate them
with

    PVTEST_REGENERATE_GOLDEN=1 .venv/bin/pytest tests/unit/test_render.py

and review the diff.
"""

from __future__ import annotations

import base64
import os
import re
import string
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from builder.answers import render
from builder.config import BuildConfig, load_config
from builder.errors import BuildError, InputError
from builder.media import layout
from builder.media.plan import MediaPlan, plan_media
from builder.virtio.facts import load_driver_facts
from builder.virtio.inf import parse_inf
from builder.virtio.packages import scan_source
from builder.virtio.selection import DriverSet, select_drivers
from builder.virtio.source import DirectorySource
from builder.windows.profiles import PROFILES, Profile
from tests.fixtures.virtio_win import Tree, edit_inf, write_modern_tree

GOLDEN = Path(__file__).resolve().parents[3] / "tests" / "golden"
REGENERATE = os.environ.get("PVTEST_REGENERATE_GOLDEN") == "1"

NS = "urn:schemas-microsoft-com:unattend"
WCM = "http://schemas.microsoft.com/WMIConfig/2002/State"
U = f"{{{NS}}}"
PASSWORD = "P@ssw0rd!"
KEY_2003 = "ABCDE-FGHIJ-KLMNO-PQRST-UVWXY"
PROFILES_2008 = [p for p in PROFILES if not PROFILES[p].is_2003]
PROFILES_2003 = [p for p in PROFILES if PROFILES[p].is_2003]

GOLDEN_SETTINGS = [
    f"admin_password={PASSWORD}",
    "computer_name=PVGOLDEN",
    "full_name=Ops & <Team>",
    "organization=Example Corp",
    "autologon_count=2",
    'first_logon_commands=["echo golden > %SystemDrive%\\\\golden.txt", '
    '"\\"C:\\\\Program Files\\\\tool.exe\\" /q \\"a & b\\""]',
]


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Tree:
    return write_modern_tree(
        tmp_path_factory.mktemp("vw") / "virtio-win", oses=["2k3", "2k8", "2k8R2"]
    )


@pytest.fixture(scope="module")
def driversets(tree: Tree) -> dict[str, DriverSet]:
    scan = scan_source(DirectorySource(tree.root), load_driver_facts())
    return {name: select_drivers(scan, profile) for name, profile in PROFILES.items()}


def config_for(profile: str, *sets: str, environ: dict[str, str] | None = None) -> BuildConfig:
    extra = [f"product_key={KEY_2003}"] if PROFILES[profile].is_2003 else []
    return load_config(PROFILES[profile], sets=[*extra, *sets], environ=environ)


def golden_config(profile: str) -> BuildConfig:
    timezone = "110" if PROFILES[profile].is_2003 else "W. Europe Standard Time"
    return config_for(profile, *GOLDEN_SETTINGS, f"timezone={timezone}")


def rendered(
    profile: str, drivers: DriverSet, config: BuildConfig | None = None
) -> dict[str, bytes]:
    config = config or golden_config(profile)
    return {
        **render.render_answer_files(config, drivers),
        **render.render_postinstall(config, drivers),
    }


def plan(profile: str, drivers: DriverSet, files: dict[str, bytes]) -> MediaPlan:
    answers = {k: v for k, v in files.items() if k in PROFILES[profile].answer_files}
    post = {k: v for k, v in files.items() if k not in answers}
    return plan_media(golden_config(profile), drivers, answers, post)


# -- golden files ----------------------------------------------------------------------------


@pytest.mark.parametrize("profile", list(PROFILES))
def test_golden_files(profile: str, driversets: dict[str, DriverSet]) -> None:
    files = rendered(profile, driversets[profile])
    folder = GOLDEN / profile
    if REGENERATE:
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.iterdir():
            old.unlink()
        for name, data in files.items():
            (folder / name).write_bytes(data)
    expected = {p.name: p.read_bytes() for p in sorted(folder.iterdir())}
    assert set(files) == set(expected), "regenerate with PVTEST_REGENERATE_GOLDEN=1"
    for name, data in files.items():
        assert data == expected[name], f"{profile}/{name} differs from the golden file"


@pytest.mark.parametrize("profile", list(PROFILES))
def test_rendering_is_deterministic(profile: str, driversets: dict[str, DriverSet]) -> None:
    assert rendered(profile, driversets[profile]) == rendered(profile, driversets[profile])


def test_answer_file_names_are_the_profiles(driversets: dict[str, DriverSet]) -> None:
    for name, profile in PROFILES.items():
        files = render.render_answer_files(golden_config(name), driversets[name])
        assert tuple(files) == profile.answer_files
        post = render.render_postinstall(golden_config(name), driversets[name])
        assert set(post) == {layout.POSTINSTALL_SCRIPT, layout.MARKER_FILE}


def test_settings_and_drivers_of_different_profiles_are_refused(
    driversets: dict[str, DriverSet],
) -> None:
    with pytest.raises(BuildError, match="settings for win2008-x64 but drivers for win2008r2"):
        render.render_answer_files(golden_config("win2008-x64"), driversets["win2008r2-x64"])
    with pytest.raises(BuildError):
        render.render_postinstall(golden_config("win2003-x86"), driversets["win2003-x64"])


# -- autounattend.xml --------------------------------------------------------------------------


def unattend(
    profile: str, driversets: dict[str, DriverSet], config: BuildConfig | None = None
) -> etree._Element:
    data = render.render_answer_files(config or golden_config(profile), driversets[profile])[
        "autounattend.xml"
    ]
    return etree.fromstring(data)


def components(root: etree._Element, config_pass: str) -> dict[str, etree._Element]:
    found = root.findall(f"{U}settings[@pass='{config_pass}']/{U}component")
    return {c.get("name", ""): c for c in found}


def text(element: etree._Element, path: str) -> str | None:
    """The text of the element at `path` (`/`-separated local names), or None."""
    found = element.find("/".join(f"{U}{part}" for part in path.split("/")))
    return None if found is None else (found.text or "")


@pytest.mark.parametrize("profile", PROFILES_2008)
def test_every_profile_xml_parses_with_the_three_passes(
    profile: str, driversets: dict[str, DriverSet]
) -> None:
    root = unattend(profile, driversets)
    assert root.tag == f"{U}unattend"
    assert [s.get("pass") for s in root] == ["windowsPE", "specialize", "oobeSystem"]


@pytest.mark.parametrize("profile", PROFILES_2008)
def test_every_component_carries_the_header(profile: str, driversets: dict[str, DriverSet]) -> None:
    root = unattend(profile, driversets)
    every = root.findall(f"{U}settings/{U}component")
    assert len(every) >= 7
    for component in every:
        assert component.get("processorArchitecture") == PROFILES[profile].arch
        assert component.get("publicKeyToken") == "31bf3856ad364e35"
        assert component.get("language") == "neutral"
        assert component.get("versionScope") == "nonSxS"
        assert component.nsmap.get("wcm") == WCM


@pytest.mark.parametrize("profile", PROFILES_2008)
def test_driver_paths_name_the_floppy_folders_only_in_windows_pe(
    profile: str, driversets: dict[str, DriverSet]
) -> None:
    drivers = driversets[profile]
    root = unattend(profile, driversets)
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
    floppy = {f.path for f in plan(profile, drivers, rendered(profile, drivers)).floppy.files}
    for path in paths:
        assert path is not None and path.startswith("A:\\")
        folder = path[3:]
        assert any(p.startswith(folder + "/") and p.lower().endswith(".inf") for p in floppy)


def expected_encoding(password: str, suffix: str) -> str:
    return base64.b64encode((password + suffix).encode("utf-16-le")).decode("ascii")


@pytest.mark.parametrize("profile", PROFILES_2008)
def test_passwords_are_encoded(profile: str, driversets: dict[str, DriverSet]) -> None:
    root = unattend(profile, driversets)
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
        not in render.render_answer_files(golden_config(profile), driversets[profile])[
            "autounattend.xml"
        ]
    )


def test_encode_password_matches_the_worked_example() -> None:
    # reference/windows-2008.md §1.4
    assert render.encode_password("P@ssw0rd", "AdministratorPassword") == (
        "UABAAHMAcwB3ADAAcgBkAEEAZABtAGkAbgBpAHMAdAByAGEAdABvAHIAUABhAHMAcwB3AG8AcgBkAA=="
    )
    assert render.encode_password("P@ssw0rd", "Password") == (
        "UABAAHMAcwB3ADAAcgBkAFAAYQBzAHMAdwBvAHIAZAA="
    )


@pytest.mark.parametrize("profile", PROFILES_2008)
def test_settings_reach_their_elements(profile: str, driversets: dict[str, DriverSet]) -> None:
    config = golden_config(profile)
    root = unattend(profile, driversets)
    setup = components(root, "windowsPE")["Microsoft-Windows-Setup"]
    assert text(setup, "ImageInstall/OSImage/InstallFrom/MetaData/Key") == "/IMAGE/NAME"
    assert text(setup, "ImageInstall/OSImage/InstallFrom/MetaData/Value") == config.image_name
    assert text(setup, "UserData/AcceptEula") == "true"
    assert text(setup, "UserData/FullName") == "Ops & <Team>"
    assert text(setup, "UserData/Organization") == "Example Corp"
    assert config.product_key is not None
    assert text(setup, "UserData/ProductKey/Key") == config.product_key.reveal()
    partition = setup.find(f".//{U}ModifyPartition")
    assert partition is not None
    assert (text(partition, "Format"), text(partition, "Letter"), text(partition, "Active")) == (
        "NTFS",
        "C",
        "true",
    )
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
    setup = components(unattend("win2008r2-x64", driversets, config), "windowsPE")[
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
    shell = components(unattend(profile, driversets), "oobeSystem")["Microsoft-Windows-Shell-Setup"]
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
    paths = element_paths(unattend(profile, driversets))
    version = PROFILES[profile].nt_version
    for setting in render.GATED_SETTINGS:
        path = f"{setting.parent}/{setting.name}" if setting.parent else setting.name
        present = (setting.config_pass, setting.component, path) in paths
        assert present == setting.known_by(version), (profile, setting.component, path)


def test_the_auto_activation_switch_per_version(driversets: dict[str, DriverSet]) -> None:
    slc = "Microsoft-Windows-Security-Licensing-SLC-UX"
    spp = "Microsoft-Windows-Security-SPP-UX"
    for profile in ("win2008-x86", "win2008-x64"):
        names = set(components(unattend(profile, driversets), "specialize"))
        assert slc in names and spp not in names
    names = set(components(unattend("win2008r2-x64", driversets), "specialize"))
    assert spp in names and slc not in names


def test_no_2012_era_oobe_key_reaches_2008_or_2008r2(driversets: dict[str, DriverSet]) -> None:
    newer = {s.name for s in render.GATED_SETTINGS if s.since >= (6, 2)}
    assert {"HideOnlineAccountScreens", "HideLocalAccountScreen"} <= newer
    for profile in PROFILES_2008:
        data = render.render_answer_files(golden_config(profile), driversets[profile])
        for name in newer:
            assert name.encode() not in data["autounattend.xml"]


def test_gated_table_for_a_future_profile() -> None:
    # A 2012-era profile (NT 6.2) would get SPP-UX and the account-screen switches.
    from dataclasses import replace

    future: Profile = replace(PROFILES["win2008r2-x64"], nt_version=(6, 2))
    assert render.gated_components(future, "specialize") == ("Microsoft-Windows-Security-SPP-UX",)
    names = {
        s.name
        for s in render.gated_settings(
            future, "oobeSystem", "Microsoft-Windows-Shell-Setup", "OOBE"
        )
    }
    assert names == {
        "HideEULAPage",
        "HideLocalAccountScreen",
        "HideOnlineAccountScreens",
        "HideOEMRegistrationScreen",
    }


# -- winnt.sif and txtsetup.oem: read back with an independent INI reader --------------------


def read_ini(data: bytes) -> list[tuple[str, list[tuple[str, str]]]]:
    """Sections in file order, each with its `key=value` lines (comments dropped)."""
    assert b"\r\n" in data
    assert b"\n" not in data.replace(b"\r\n", b""), "a bare LF"
    assert b"\r" not in data.replace(b"\r\n", b""), "a bare CR"
    sections: list[tuple[str, list[tuple[str, str]]]] = []
    for line in data.decode("cp1252").split("\r\n"):
        stripped = line.strip()
        if not stripped or stripped.startswith(";"):
            continue
        if stripped.startswith("["):
            sections.append((stripped[1 : stripped.index("]")], []))
            continue
        key, sep, value = stripped.partition("=")
        assert sep, f"not a key=value line: {line!r}"
        sections[-1][1].append((key.strip(), value.strip()))
    return sections


def section(ini: list[tuple[str, list[tuple[str, str]]]], name: str) -> dict[str, str]:
    found = [lines for title, lines in ini if title.lower() == name.lower()]
    assert len(found) == 1, f"[{name}] appears {len(found)} times"
    return dict(found[0])


def unquote(value: str) -> str:
    assert value.startswith('"') and value.endswith('"') and value.count('"') == 2, value
    return value[1:-1]


@pytest.mark.parametrize("profile", PROFILES_2003)
def test_winnt_sif(profile: str, driversets: dict[str, DriverSet]) -> None:
    drivers = driversets[profile]
    files = rendered(profile, drivers)
    ini = read_ini(files["winnt.sif"])
    assert section(ini, "Data") == {
        "AutoPartition": "1",
        "MsDosInitiated": '"0"',
        "UnattendedInstall": '"Yes"',
    }
    unattended = section(ini, "Unattended")
    assert unattended["UnattendMode"] == "FullUnattended"
    assert unattended["OemSkipEula"] == "Yes"
    assert unattended["OemPreinstall"] == "Yes"
    assert unattended["DriverSigningPolicy"] == "Ignore"
    assert unattended["TargetPath"] == "\\WINDOWS"
    folders = unquote(unattended["OemPnPDriversPath"]).split(";")
    assert folders == [f"Drivers\\{d.name}" for d in drivers.selected]
    # Each names a folder that the CD remaster fills with an INF ($OEM$\$1 = C:\).
    cd = plan(profile, drivers, files).install_cd
    assert cd is not None
    cd_paths = {f.path for f in cd.files}
    for folder in folders:
        prefix = "$OEM$/$1/" + folder.replace("\\", "/") + "/"
        assert any(p.startswith(prefix) and p.lower().endswith(".inf") for p in cd_paths)
    gui = section(ini, "GuiUnattended")
    assert unquote(gui["AdminPassword"]) == PASSWORD
    assert gui["TimeZone"] == "110"
    assert gui["OemSkipWelcome"] == "1" and gui["OemSkipRegional"] == "1"
    assert gui["AutoLogon"] == "Yes" and gui["AutoLogonCount"] == "2"
    user = section(ini, "UserData")
    assert unquote(user["ProductKey"]) == KEY_2003
    assert unquote(user["FullName"]) == "Ops & <Team>"
    assert unquote(user["OrgName"]) == "Example Corp"
    assert user["ComputerName"] == "PVGOLDEN"
    assert section(ini, "LicenseFilePrintData")["AutoMode"] == "PerServer"
    assert section(ini, "Identification") == {"JoinWorkgroup": "WORKGROUP"}
    assert section(ini, "Networking") == {"InstallDefaultComponents": "Yes"}
    run_once = [unquote(v) for v in section(ini, "GuiRunOnce").values()]
    assert len(run_once) == 24
    for letter, command in zip("CDEFGHIJKLMNOPQRSTUVWXYZ", run_once, strict=True):
        assert command == (
            f"cmd.exe /c if exist {letter}:\\{layout.MARKER_FILE} "
            f"call {letter}:\\{layout.POSTINSTALL_SCRIPT}"
        )


def test_winnt_sif_is_cp1252(driversets: dict[str, DriverSet]) -> None:
    config = config_for("win2003-x86", "admin_password=Pässwörd", "full_name=Zoë Ærø")
    data = render.render_answer_files(config, driversets["win2003-x86"])["winnt.sif"]
    user = section(read_ini(data), "UserData")
    assert unquote(user["FullName"]) == "Zoë Ærø"
    assert "Zoë Ærø".encode("cp1252") in data
    assert unquote(section(read_ini(data), "GuiUnattended")["AdminPassword"]) == "Pässwörd"


@pytest.mark.parametrize("profile", PROFILES_2003)
def test_txtsetup_oem(profile: str, driversets: dict[str, DriverSet], tree: Tree) -> None:
    drivers = driversets[profile]
    storage = drivers.storage
    files = rendered(profile, drivers)
    ini = read_ini(files["txtsetup.oem"])
    titles = [title for title, _ in ini]
    option = "WNET64" if PROFILES[profile].arch == "amd64" else "WNET32"
    assert titles == [
        "Disks",
        "Defaults",
        "scsi",
        f"Files.scsi.{option}",
        f"HardwareIds.scsi.{option}",
        "Config.viostor",
    ]
    disks = section(ini, "Disks")
    assert list(disks) == ["d1"]
    description, tag, directory = disks["d1"].rsplit(",", 2)
    assert description.startswith('"') and description.endswith('"')
    assert tag == "\\" + layout.F6_TAG_FILE
    assert directory == "\\" + layout.floppy_folder(storage)
    assert section(ini, "Defaults") == {"scsi": option}
    assert list(section(ini, "scsi")) == [option]
    file_lines = [line for title, lines in ini if title == f"Files.scsi.{option}" for line in lines]
    assert file_lines == [
        ("driver", "d1,viostor.sys,viostor"),
        ("inf", "d1,viostor.inf"),
        ("catalog", "d1,viostor.cat"),
    ]
    # The files are where [Disks] says, on the floppy the media plan writes.
    floppy = {f.path for f in plan(profile, drivers, files).floppy.files}
    for _, value in file_lines:
        assert f"{directory[1:]}/{value.split(',')[1]}" in floppy
    assert layout.F6_TAG_FILE in floppy
    # Every hardware ID of the INF's models section, as the fixture wrote them.
    truth = tree.inf(storage.inf_path)
    id_lines = [
        v
        for title, lines in ini
        if title == f"HardwareIds.scsi.{option}"
        for k, v in lines
        if k == "id"
    ]
    assert [tuple(unquote(f) for f in v.split(",")) for v in id_lines] == [
        (hwid, "viostor") for hwid in truth.hardware_ids
    ]
    config = [v for title, lines in ini if title == "Config.viostor" for _, v in lines]
    assert "Parameters\\PnpInterface,5,REG_DWORD,1" in config
    assert not any(t.startswith(f"Config.{option}") for t in titles)


# -- the post-install step ---------------------------------------------------------------------


def script_lines(data: bytes) -> list[str]:
    assert data.endswith(b"\r\n")
    assert b"\n" not in data.replace(b"\r\n", b"")
    return data.decode("ascii").split("\r\n")[:-1]


@pytest.mark.parametrize("profile", PROFILES_2008)
def test_2008_script_installs_every_package_from_the_iso(
    profile: str, driversets: dict[str, DriverSet]
) -> None:
    drivers = driversets[profile]
    files = rendered(profile, drivers)
    lines = script_lines(files[layout.POSTINSTALL_SCRIPT])
    installs = [line for line in lines if line.startswith("pnputil ")]
    assert len(installs) == len(drivers.selected)
    iso = {f.path for f in plan(profile, drivers, files).drivers_iso.files}
    for driver, line in zip(drivers.selected, installs, strict=True):
        folder = layout.iso_folder(driver, drivers.profile)
        assert line.startswith(f'pnputil -i -a "%PV_DRIVE%\\{folder.replace("/", chr(92))}\\*.inf"')
        assert any(p.startswith(folder + "/") and p.lower().endswith(".inf") for p in iso)
    assert 'set "PV_DRIVE=%~d0"' in lines
    assert [line for line in lines if line.strip()][-1] == "shutdown /s /t 0"
    assert layout.POSTINSTALL_SCRIPT in {
        f.path for f in plan(profile, drivers, files).drivers_iso.files
    }


@pytest.mark.parametrize("profile", PROFILES_2003)
def test_2003_script_runs_commands_and_powers_off(
    profile: str, driversets: dict[str, DriverSet]
) -> None:
    lines = script_lines(rendered(profile, driversets[profile])[layout.POSTINSTALL_SCRIPT])
    assert not any("pnputil" in line and not line.startswith("rem") for line in lines)
    assert [line for line in lines if line.strip()][-1] == "shutdown -s -t 0"


@pytest.mark.parametrize("profile", list(PROFILES))
def test_script_runs_the_commands_in_order_and_logs(
    profile: str, driversets: dict[str, DriverSet]
) -> None:
    lines = script_lines(rendered(profile, driversets[profile])[layout.POSTINSTALL_SCRIPT])
    runs = [line for line in lines if line.startswith("cmd /s /c ")]
    assert runs == [
        'cmd /s /c "echo golden > %%SystemDrive%%\\golden.txt" >> "%PV_LOG%" 2>&1',
        'cmd /s /c ""C:\\Program Files\\tool.exe" /q "a ^& b"" >> "%PV_LOG%" 2>&1',
    ]
    assert f'set "PV_LOG={layout.POSTINSTALL_LOG}"' in lines
    assert layout.POSTINSTALL_LOG.startswith("%SystemDrive%\\")
    # Log lines redirect first: "echo ... 1>> log" would eat the digit.
    assert all(not re.search(r"\d>>", line) for line in lines if "echo" in line)
    marker = rendered(profile, driversets[profile])[layout.MARKER_FILE]
    assert marker == f"pvinstall drivers disc for {profile}\r\n".encode()


def batch_child_sees(line: str) -> str:
    """What the child cmd of `cmd /s /c "<...>"` on a batch-file line receives: a model of
    cmd's batch parsing (percent phase, then quotes and carets), written from Microsoft's
    cmd documentation and the well-known phase rules, independent of render.py."""
    # Phase 1: %% is a literal percent.
    expanded = line.replace("%%", "\0").replace("%", "")
    expanded = expanded.replace("\0", "%")
    # Phase 2: outside quotes a caret escapes the next character; an unescaped special
    # character would end the command (a separator or a redirection).
    out: list[str] = []
    quoted = False
    chars = iter(expanded)
    for char in chars:
        if char == '"':
            quoted = not quoted
            out.append(char)
        elif not quoted and char == "^":
            out.append(next(chars))
        elif not quoted and char in "&|<>":
            raise AssertionError(f"unescaped {char!r} outside quotes in {line!r}")
        else:
            out.append(char)
    parsed = "".join(out)
    prefix = "cmd /s /c "
    assert parsed.startswith(prefix)
    argument = parsed[len(prefix) :]
    # /s: the first and the last quote go, everything between stays.
    assert argument.startswith('"') and argument.endswith('"')
    return argument[1:-1]


@pytest.mark.parametrize(
    "command",
    [
        "echo hi",
        "echo 100% & exit 3",
        'echo "a & b" | find "a"',
        '"C:\\Program Files\\x.exe" /a "<in>" > out.txt',
        "echo ^caret (paren)",
        'echo "^" "(" ")" "%PATH%"',
        '""',
    ],
)
def test_cmd_child_command_table(command: str) -> None:
    assert batch_child_sees(f'cmd /s /c "{render.cmd_child_command(command)}"') == command


_COMMAND_CHARS = st.sampled_from(string.ascii_letters[:6] + string.digits[:3] + ' "%^&|<>()!.\\/')


@given(st.lists(_COMMAND_CHARS, max_size=30).map("".join).filter(lambda c: c.count('"') % 2 == 0))
def test_cmd_child_command_round_trips(command: str) -> None:
    assert batch_child_sees(f'cmd /s /c "{render.cmd_child_command(command)}"') == command


# -- arbitrary text in every free-text setting ----------------------------------------------


def toml_string(value: str) -> str:
    """`value` as a TOML basic string (the form PVINSTALL_* variables are parsed in)."""
    out = ['"']
    for char in value:
        code = ord(char)
        if char in '"\\':
            out.append("\\" + char)
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\u{code:04X}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


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


def settle(profile: str, key: str, value: str) -> BuildConfig | None:
    """The config with `key` set to `value`, or None when it is refused the right way."""
    sets = [] if key == "admin_password" else [f"admin_password={PASSWORD}"]
    try:
        return config_for(profile, *sets, environ={f"PVINSTALL_{key.upper()}": toml_string(value)})
    except InputError as error:
        assert error.exit_code == 2
        assert any(p.key == key for p in error.problems), error.problems
        if key == "admin_password" and len(value) > 2:
            assert value not in str(error)
        return None


@pytest.fixture(scope="module")
def win2008r2(driversets: dict[str, DriverSet]) -> DriverSet:
    return driversets["win2008r2-x64"]


@pytest.fixture(scope="module")
def win2003(driversets: dict[str, DriverSet]) -> DriverSet:
    return driversets["win2003-x86"]


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.sampled_from(sorted(XML_PLACES)), value=st.text(max_size=40))
def test_free_text_renders_to_xml_that_round_trips_or_is_refused(
    win2008r2: DriverSet, key: str, value: str
) -> None:
    config = settle("win2008r2-x64", key, value)
    if config is None:
        return
    data = render.render_answer_files(config, win2008r2)["autounattend.xml"]
    root = etree.fromstring(data)  # well-formed, or this raises
    config_pass, component, path = XML_PLACES[key]
    found = text(components(root, config_pass)[component], path)
    if key == "admin_password":
        assert found == expected_encoding(value, "AdministratorPassword")
    elif key == "organization" and value == "":
        assert found is None
    else:
        assert found == getattr(config, key) == value


SIF_PLACES = {
    "full_name": ("UserData", "FullName"),
    "organization": ("UserData", "OrgName"),
    "admin_password": ("GuiUnattended", "AdminPassword"),
    "computer_name": ("UserData", "ComputerName"),
}


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.sampled_from(sorted(SIF_PLACES)), value=st.text(max_size=40))
def test_free_text_renders_to_winnt_sif_that_round_trips_or_is_refused(
    win2003: DriverSet, key: str, value: str
) -> None:
    config = settle("win2003-x86", key, value)
    if config is None:
        return
    data = render.render_answer_files(config, win2003)["winnt.sif"]
    section_name, entry = SIF_PLACES[key]
    found = section(read_ini(data), section_name).get(entry)
    if key == "organization" and value == "":
        assert found is None
    elif key == "computer_name":
        assert found == value
    else:
        assert found is not None and unquote(found) == value


# -- secrets and the one Environment ---------------------------------------------------------


def test_secret_files_are_the_ones_with_secrets(driversets: dict[str, DriverSet]) -> None:
    assert {"autounattend.xml", "winnt.sif"} == render.SECRET_FILES
    for profile in PROFILES:
        files = rendered(profile, driversets[profile])
        config = golden_config(profile)
        secrets = [config.admin_password.reveal().encode()]
        if config.product_key:
            secrets.append(config.product_key.reveal().encode())
        for name, data in files.items():
            holds = (
                any(s in data for s in secrets)
                or expected_encoding(PASSWORD, "AdministratorPassword").encode() in data
            )
            assert holds == (name in render.SECRET_FILES), (profile, name)


BUILDER = Path(__file__).resolve().parents[3] / "builder"


def builder_sources() -> Iterator[Path]:
    yield from BUILDER.rglob("*.py")


def test_render_is_the_only_module_that_builds_a_jinja_environment() -> None:
    users = {
        p.relative_to(BUILDER).as_posix()
        for p in builder_sources()
        if "jinja2.Environment(" in p.read_text()
    }
    assert users == {"answers/render.py"}


# -- txtsetup.oem from unusual INFs ----------------------------------------------------------


def test_a_driver_file_in_a_subfolder_gets_a_disk_of_its_own(tmp_path: Path) -> None:
    tree = write_modern_tree(
        tmp_path / "vw", drivers=["viostor", "NetKVM"], oses=["2k3"], arches=["x86"]
    )
    inf = "viostor/2k3/x86/viostor.inf"
    edit_inf(tree, inf, "viostor.sys = 1,,", "viostor.sys = 1,bin,")
    folder = tree.root / "viostor/2k3/x86"
    (folder / "bin").mkdir()
    (folder / "viostor.sys").rename(folder / "bin/viostor.sys")
    drivers = select_drivers(
        scan_source(DirectorySource(tree.root), load_driver_facts()), PROFILES["win2003-x86"]
    )
    disk = render.f6_disk(drivers)
    assert disk.disks == (("d1", "\\VIOSTOR\\bin"), ("d2", "\\VIOSTOR"))
    assert [(f.kind, f.disk, f.name) for f in disk.files] == [
        ("driver", "d1", "viostor.sys"),
        ("inf", "d2", "viostor.inf"),
        ("catalog", "d2", "viostor.cat"),
    ]
    # The media plan puts the file where [Disks] says.
    config = config_for("win2003-x86", f"admin_password={PASSWORD}")
    answers = render.render_answer_files(config, drivers)
    floppy = plan_media(config, drivers, answers, render.render_postinstall(config, drivers))
    assert "VIOSTOR/bin/viostor.sys" in {f.path for f in floppy.floppy.files}


ADDREG_INF = """\
[Version]
Signature="$Windows NT$"
Class=SCSIAdapter
DriverVer=01/01/2012,1.0.0.0
CatalogFile=demo.cat

[SourceDisksNames]
1 = "Disk",,,""

[SourceDisksFiles]
demo.sys = 1,,

[Manufacturer]
%Vendor% = Models,NTx86

[Models.NTx86]
"Demo controller" = demo_inst, PCI\\VEN_1234&DEV_0001

[demo_inst.Services]
AddService = demo, 0x00000002, demo_service

[demo_service]
ServiceType = 1
StartType = 0
ServiceBinary = %12%\\demo.sys
AddReg = demo_reg, more_reg

[demo_reg]
HKR, "Parameters\\PnpInterface", "5", 0x00010001, 1
HKR, "Interrupt Management\\Limits", Count, 0x00010001, 256
HKR, Parameters, Name, 0x00000000, "a value"
HKR, Parameters, Path, 0x00020000, "%%SystemRoot%%\\x"
HKR, Parameters, Blob, 0x00000001, 01, 02
HKR, Parameters, Gone, 0x00010005, 1
HKLM, "Software\\Demo", Key, 0x00010001, 1

[more_reg]
HKR, Parameters, List, 0x00010000, "a", "b"

[Strings]
Vendor = "Demo"
"""


def test_config_values_come_from_the_service_addreg() -> None:
    inf = parse_inf(ADDREG_INF.replace("\n", "\r\n").encode("ascii"), "demo.inf")
    services = inf.services()
    assert [s.name for s in services] == ["demo"]
    assert render._config_values(inf, services[0]) == (
        "Parameters\\PnpInterface,5,REG_DWORD,1",
        '"Interrupt Management\\Limits",Count,REG_DWORD,100',  # 256, in hex
        'Parameters,Name,REG_SZ,"a value"',
        'Parameters,Path,REG_EXPAND_SZ,"%SystemRoot%\\x"',
        'Parameters,List,REG_MULTI_SZ,"a","b"',
    )
