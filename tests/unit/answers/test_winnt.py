"""winnt.sif and txtsetup.oem (builder/answers/winnt.py), read back with an independent INI
reader."""

from __future__ import annotations

import codecs
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from builder.answers import formats, postinstall, winnt
from builder.errors import InputError
from builder.media import layout
from builder.media.plan import MediaInputs, plan_answer_floppy
from builder.virtio.facts import load_driver_facts
from builder.virtio.inf import parse_inf
from builder.virtio.packages import scan_source
from builder.virtio.selection import DriverSet, select_drivers
from builder.virtio.source import DirectorySource
from builder.windows.profiles import PROFILES
from tests.fixtures.virtio_win import Tree, edit_inf, write_modern_tree
from tests.unit.answers.common import (
    KEY_2003,
    PASSWORD,
    PROFILES_2003,
    config_for,
    medium,
    plan,
    read_ini,
    rendered,
    section,
    settle,
    unquote,
    unquote_inf,
)

# -- winnt.sif and txtsetup.oem: read back with an independent INI reader --------------------


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
    cd_paths = {f.path for f in medium(plan(profile, drivers, files), "install.iso")}
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
    data = formats.render_answer_files(config, driversets["win2003-x86"])["winnt.sif"]
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
    floppy = {f.path for f in medium(plan(profile, drivers, files), "floppy.img")}
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
    data = formats.render_answer_files(config, win2003)["winnt.sif"]
    section_name, entry = SIF_PLACES[key]
    found = section(read_ini(data), section_name).get(entry)
    if key == "organization" and value == "":
        assert found is None
    elif key == "computer_name":
        assert found == value
    else:
        assert found is not None and unquote(found) == value


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
    disk = winnt.f6_disk(drivers)
    assert disk.disks == (("d1", "\\VIOSTOR\\bin"), ("d2", "\\VIOSTOR"))
    assert [(f.kind, f.disk, f.name) for f in disk.files] == [
        ("driver", "d1", "viostor.sys"),
        ("inf", "d2", "viostor.inf"),
        ("catalog", "d2", "viostor.cat"),
    ]
    # The media plan puts the file where [Disks] says.
    config = config_for("win2003-x86", f"admin_password={PASSWORD}")
    answers = formats.render_answer_files(config, drivers)
    floppy = plan_answer_floppy(
        MediaInputs(config, drivers, answers, postinstall.render_postinstall(config, drivers))
    )
    assert "VIOSTOR/bin/viostor.sys" in {f.path for f in floppy.files}


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
    assert winnt._config_values(inf, services[0]) == (
        "Parameters\\PnpInterface,5,REG_DWORD,1",
        '"Interrupt Management\\Limits",Count,REG_DWORD,100',  # 256, in hex
        'Parameters,Name,REG_SZ,"a value"',
        # The INF's %%SystemRoot%% is a literal percent; written the same way again.
        'Parameters,Path,REG_EXPAND_SZ,"%%SystemRoot%%\\x"',
        'Parameters,List,REG_MULTI_SZ,"a","b"',
    )


# -- INF text that txtsetup.oem must quote, or cannot hold --------------------------------------

STORAGE_INF = "viostor/2k3/x86/viostor.inf"
DESCRIPTION_LINE = 'RHELScsi.DeviceDesc = "Red Hat VirtIO SCSI controller"'
FIRST_ID = "PCI\\VEN_1AF4&DEV_1001&SUBSYS_00000000"


def drivers_with(tmp_path: Path, old: str, new: str) -> DriverSet:
    """The win2003-x86 drivers of a tree whose storage INF has `old` replaced by `new`
    (saved as UTF-16LE with a byte-order mark, as INFs with non-ASCII text are)."""
    tree = write_modern_tree(
        tmp_path / "vw", drivers=["viostor", "NetKVM"], oses=["2k3"], arches=["x86"]
    )
    path = tree.path(STORAGE_INF)
    text = path.read_bytes().decode("ascii")
    assert old in text
    path.write_bytes(codecs.BOM_UTF16_LE + text.replace(old, new).encode("utf-16-le"))
    scan = scan_source(DirectorySource(tree.root), load_driver_facts())
    return select_drivers(scan, PROFILES["win2003-x86"])


def oem_of(drivers: DriverSet) -> bytes:
    config = config_for("win2003-x86", f"admin_password={PASSWORD}")
    return formats.render_answer_files(config, drivers)["txtsetup.oem"]


@pytest.mark.parametrize(
    ("description_in_inf", "reads_back"),
    [
        ('"Red Hat ""VirtIO"" SCSI"', 'Red Hat "VirtIO" SCSI'),
        ('"100%% VirtIO; fast, small"', "100% VirtIO; fast, small"),
        ('"Contr\u00f4leur VirtIO \u00ae"', "Contr\u00f4leur VirtIO \u00ae"),
        ('"%%SystemRoot%% #1"', "%SystemRoot% #1"),
    ],
)
def test_txtsetup_oem_quotes_the_description_by_the_inf_rules(
    tmp_path: Path, description_in_inf: str, reads_back: str
) -> None:
    drivers = drivers_with(
        tmp_path, DESCRIPTION_LINE, f"RHELScsi.DeviceDesc = {description_in_inf}"
    )
    data = formats.render_answer_files(
        config_for("win2003-x86", f"admin_password={PASSWORD}"), drivers
    )["txtsetup.oem"]
    ini = read_ini(data)
    assert unquote_inf(section(ini, "scsi")["WNET32"]) == f"{reads_back} (x86)"
    disk_line = section(ini, "Disks")["d1"]
    assert unquote_inf(disk_line[: disk_line.rindex('",') + 1]) == f"{reads_back} (x86)"


@pytest.mark.parametrize(
    ("old", "new", "named", "problem"),
    [
        (FIRST_ID, "PCI\\VEN_1AF4&DEV_1001=0", "hardware ID 'PCI\\VEN_1AF4&DEV_1001=0'", "'='"),
        (FIRST_ID, '"PCI\\VEN_1AF4""x"', "hardware ID 'PCI\\VEN_1AF4\"x'", "'\"'"),
        (FIRST_ID, '"PCI\\VEN_1AF4;x"', "hardware ID 'PCI\\VEN_1AF4;x'", "';'"),
        (FIRST_ID, "PCI\\VEN_%%1AF4", "hardware ID 'PCI\\VEN_%1AF4'", "'%'"),
        (FIRST_ID, '"PCI\\VEN 1AF4"', "hardware ID 'PCI\\VEN 1AF4'", "' '"),
        (DESCRIPTION_LINE, 'RHELScsi.DeviceDesc = "VirtIO \u03a9"', "description", "'\u03a9'"),
        (DESCRIPTION_LINE, 'RHELScsi.DeviceDesc = "Virt\tIO"', "description", "U+0009"),
        (
            'HKR, "Parameters", "BusType"',
            'HKR, "Para\u4e2dmeters", "BusType"',
            "registry key 'Para\u4e2dmeters'",
            "'\u4e2d'",
        ),
    ],
)
def test_an_inf_value_txtsetup_oem_cannot_hold_is_refused_naming_the_inf(
    tmp_path: Path, old: str, new: str, named: str, problem: str
) -> None:
    drivers = drivers_with(tmp_path, old, new)
    with pytest.raises(InputError) as raised:
        oem_of(drivers)
    message = str(raised.value)
    assert message.startswith(f"--drivers: {STORAGE_INF}: its {named}"), message
    assert problem in message
