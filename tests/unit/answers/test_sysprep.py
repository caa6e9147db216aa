"""The clones' answer file (builder/answers/sysprep.py): passes, version-gated settings,
password encodings decoded back, the settings that shape it, and sysprep.inf's rules.
Oracles: lxml for the XML, the answer tests' own INI reader for sysprep.inf, base64 and
UTF-16 decoding written here."""

from __future__ import annotations

import base64

import pytest
from lxml import etree

from builder.answers import postinstall, sysprep
from builder.virtio.selection import DriverSet
from builder.windows.profiles import PROFILES
from tests.unit.answers.common import (
    PASSWORD,
    PROFILES_2003,
    PROFILES_2008,
    U,
    config_for,
    golden_config,
    read_ini,
    section,
    unquote,
)


def clone_root(profile: str, driversets: dict[str, DriverSet], *sets: str) -> etree._Element:
    data = sysprep.render_sysprep(golden_config(profile, *sets), driversets[profile])
    return etree.fromstring(data[PROFILES[profile].sysprep.answer_file])


def component(root: etree._Element, config_pass: str, name: str) -> etree._Element | None:
    for settings in root.iter(f"{U}settings"):
        if settings.get("pass") == config_pass:
            for found in settings.iter(f"{U}component"):
                if found.get("name") == name:
                    return found
    return None


def decoded(value: str, suffix: str) -> str:
    text = base64.b64decode(value).decode("utf-16-le")
    assert text.endswith(suffix)
    return text[: -len(suffix)]


@pytest.mark.parametrize("profile", PROFILES_2008)
def test_three_passes_and_the_password_decodes(
    profile: str, driversets: dict[str, DriverSet]
) -> None:
    root = clone_root(profile, driversets)
    passes = [s.get("pass") for s in root.iter(f"{U}settings")]
    assert passes == ["generalize", "specialize", "oobeSystem"]
    shell = component(root, "oobeSystem", "Microsoft-Windows-Shell-Setup")
    assert shell is not None
    value = shell.findtext(f"{U}UserAccounts/{U}AdministratorPassword/{U}Value")
    assert value is not None and decoded(value, "AdministratorPassword") == PASSWORD
    assert shell.findtext(f"{U}UserAccounts/{U}AdministratorPassword/{U}PlainText") == "false"
    autologon = shell.findtext(f"{U}AutoLogon/{U}Password/{U}Value")
    assert autologon is not None and decoded(autologon, "Password") == PASSWORD
    assert PASSWORD.encode() not in etree.tostring(root)
    assert shell.findtext(f"{U}OOBE/{U}HideEULAPage") == "true"
    assert shell.findtext(f"{U}OOBE/{U}NetworkLocation") == "Work"
    specialize = component(root, "specialize", "Microsoft-Windows-Shell-Setup")
    assert specialize is not None and specialize.findtext(f"{U}ComputerName") == "*"


@pytest.mark.parametrize("profile", PROFILES_2008)
def test_the_rearm_switch_and_the_2012_oobe_keys_per_version(
    profile: str, driversets: dict[str, DriverSet]
) -> None:
    version = PROFILES[profile].nt_version
    root = clone_root(profile, driversets, "skip_rearm=true")
    slc = component(root, "generalize", "Microsoft-Windows-Security-Licensing-SLC")
    spp = component(root, "generalize", "Microsoft-Windows-Security-SPP")
    expected, other = (slc, spp) if version == (6, 0) else (spp, slc)
    assert other is None
    assert expected is not None and expected.findtext(f"{U}SkipRearm") == "1"
    wireless = root.find(f".//{U}HideWirelessSetupInOOBE")
    assert (wireless is not None) == (version >= (6, 2))
    assert (root.find(f".//{U}HideOnlineAccountScreens") is not None) == (version >= (6, 2))


@pytest.mark.parametrize("profile", ["win2008-x64", "win2022-x64"])
def test_persist_device_installs_and_vm_mode(
    profile: str, driversets: dict[str, DriverSet]
) -> None:
    kept = clone_root(profile, driversets)
    dropped = clone_root(profile, driversets, "persist_device_installs=false")
    pnp = component(kept, "generalize", "Microsoft-Windows-PnpSysprep")
    assert pnp is not None and pnp.findtext(f"{U}PersistAllDeviceInstalls") == "true"
    assert component(dropped, "generalize", "Microsoft-Windows-PnpSysprep") is None
    step = postinstall.sysprep_step(golden_config(profile))
    assert step is not None
    assert ("/mode:vm" in step.command) == PROFILES[profile].sysprep.vm_mode
    off = postinstall.sysprep_step(golden_config(profile, "persist_device_installs=false"))
    assert off is not None and "/mode:vm" not in off.command


def test_clone_settings_reach_the_file(driversets: dict[str, DriverSet]) -> None:
    root = clone_root(
        "win2008r2-x64",
        driversets,
        "clone_computer_name=CLONE-01",
        'clone_first_logon_commands=["a.cmd", "b & <c>"]',
    )
    specialize = component(root, "specialize", "Microsoft-Windows-Shell-Setup")
    assert specialize is not None and specialize.findtext(f"{U}ComputerName") == "CLONE-01"
    commands = [c.text for c in root.iter(f"{U}CommandLine")]
    assert commands == ["a.cmd", "b & <c>"]
    assert root.findtext(f".//{U}AutoLogon/{U}LogonCount") == "1"
    without = clone_root("win2008r2-x64", driversets, "clone_first_logon_commands=[]")
    assert without.find(f".//{U}AutoLogon") is None


@pytest.mark.parametrize("profile", PROFILES_2003)
def test_sysprep_inf_answers_mini_setup(profile: str, driversets: dict[str, DriverSet]) -> None:
    data = sysprep.render_sysprep(golden_config(profile), driversets[profile])["sysprep.inf"]
    ini = read_ini(data)
    assert unquote(section(ini, "GuiUnattended")["AdminPassword"]) == PASSWORD
    assert section(ini, "GuiUnattended")["OEMSkipRegional"] == "1"
    assert section(ini, "GuiUnattended")["OemSkipWelcome"] == "1"
    assert section(ini, "Unattended")["OemSkipEula"] == "Yes"
    assert section(ini, "UserData")["ComputerName"] == "*"
    assert section(ini, "LicenseFilePrintData")["AutoMode"] == "PerServer"
    assert section(ini, "Identification")["JoinWorkgroup"] == "WORKGROUP"
    paths = unquote(section(ini, "Unattended")["OemPnPDriversPath"]).split(";")
    assert "Drivers\\viostor" in paths and "Drivers\\NetKVM" in paths
    data.decode("cp1252")


def test_generalize_false_renders_nothing_and_powers_off(driversets: dict[str, DriverSet]) -> None:
    for profile in ("win2003-x86", "win2008r2-x64"):
        config = config_for(profile, f"admin_password={PASSWORD}", "generalize=false")
        assert sysprep.render_sysprep(config, driversets[profile]) == {}
        assert postinstall.sysprep_step(config) is None
        script = postinstall.render_postinstall(config, driversets[profile])["POSTINST.CMD"]
        assert b"sysprep" not in script.lower()
