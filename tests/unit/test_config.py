"""Settings: sources, precedence and validation (builder/config.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from builder.config import SETTINGS, Secret, load_config, settings_help
from builder.errors import InputError
from builder.windows.profiles import PROFILES
from tests.fuzzing import fuzz_settings
from tests.unit.windows.common import media_of

W2008 = PROFILES["win2008-x64"]
W2008R2 = PROFILES["win2008r2-x64"]
W2003 = PROFILES["win2003-x86"]
W2022 = PROFILES["win2022-x64"]
W2025 = PROFILES["win2025-x64"]
W2012R2 = PROFILES["win2012r2-x64"]
PASSWORD = ["admin_password=Sup3r-secret"]
KEY_2003 = "product_key=ABCDE-FGHIJ-KLMNO-PQRST-UVWXY"


def test_the_driver_settings_default_to_every_driver_and_no_sha2_media() -> None:
    config = load_config(W2008, sets=PASSWORD)
    assert (config.drivers, config.sha2_media, config.server_manager_at_logon) == (
        None,
        False,
        False,
    )
    assert config.public_json()["drivers"] is None
    assert config.public_json()["sha2_media"] is False


def test_the_bool_settings_come_from_the_environment_and_the_file(tmp_path: Path) -> None:
    file = tmp_path / "c.toml"
    file.write_text('drivers = ["viostor", "NetKVM"]\nsha2_media = true\n')
    config = load_config(
        W2008,
        config_file=file,
        sets=PASSWORD,
        environ={"PVINSTALL_SERVER_MANAGER_AT_LOGON": "true"},
    )
    assert (config.drivers, config.sha2_media, config.server_manager_at_logon) == (
        ("viostor", "NetKVM"),
        True,
        True,
    )


def test_defaults_for_2008() -> None:
    config = load_config(W2008, sets=PASSWORD)
    assert config.computer_name == "*"
    assert config.edition == "standard"
    assert config.image_name == "Windows Longhorn SERVERSTANDARD"
    assert config.product_key == Secret("TM24T-X9RMF-VWXK6-X8JC9-BFGM2")
    assert config.timezone == "Greenwich Standard Time"
    assert config.locale == "en-US" and config.input_locale == "0409:00000409"
    assert config.floppy_kib == 1440
    assert (config.memory_mib, config.vcpus, config.disk_size_gib) == (2048, 2, 32)
    assert config.network == "default" and config.data_disks == ()


def test_precedence_set_beats_env_beats_file(tmp_path: Path) -> None:
    file = tmp_path / "c.toml"
    file.write_text(
        'computer_name = "FROMFILE"\nworkgroup = "FILEWG"\nvcpus = 3\nadmin_password = "x1"\n'
    )
    env = {"PVINSTALL_COMPUTER_NAME": "FROMENV", "PVINSTALL_VCPUS": "4"}
    config = load_config(W2008, config_file=file, environ=env, sets=["computer_name=FROMSET"])
    assert config.computer_name == "FROMSET"
    assert config.vcpus == 4
    assert config.workgroup == "FILEWG"
    assert config.origins["computer_name"] == "--set"
    assert config.origins["vcpus"] == "$PVINSTALL_VCPUS"


@pytest.mark.parametrize(
    ("item", "key", "expected"),
    [
        ("admin_password=123456", "admin_password", Secret("123456")),  # stays a string
        ("data_disks=[20, 40]", "data_disks", (20, 40)),
        ("data_disks=30", "data_disks", (30,)),
        ('first_logon_commands=["a.cmd", "b.cmd"]', "first_logon_commands", ("a.cmd", "b.cmd")),
        ("first_logon_commands=echo hi", "first_logon_commands", ("echo hi",)),
        ("floppy_size=2.88", "floppy_kib", 2880),
        ('floppy_size="1.44"', "floppy_kib", 1440),
        ("edition=enterprise", "image_name", "Windows Longhorn SERVERENTERPRISE"),
        ("timezone=w. europe standard time", "timezone", "W. Europe Standard Time"),
        ("locale=de-de", "locale", "de-DE"),
        ('product_key=""', "product_key", None),
        (
            "product_key=abcde-fghij-klmno-pqrst-uvwxy",
            "product_key",
            Secret("ABCDE-FGHIJ-KLMNO-PQRST-UVWXY"),
        ),
        ("computer_name=WEB-01", "computer_name", "WEB-01"),
        ("storage_pool=images", "storage_pool", "images"),
        ('drivers=["viostor", "NetKVM"]', "drivers", ("viostor", "NetKVM")),
        ('drivers=["viostor", "VIOSTOR", "NetKVM"]', "drivers", ("viostor", "NetKVM")),
        ("drivers=viostor", "drivers", ("viostor",)),
        ("sha2_media=true", "sha2_media", True),
        ("server_manager_at_logon=true", "server_manager_at_logon", True),
    ],
)
def test_good_values(item: str, key: str, expected: object) -> None:
    config = load_config(W2008, sets=[*PASSWORD, item])
    assert getattr(config, key) == expected


def test_2003_timezone_accepts_index_and_name() -> None:
    assert load_config(W2003, sets=[*PASSWORD, KEY_2003, "timezone=035"]).timezone_index == "035"
    by_name = load_config(W2003, sets=[*PASSWORD, KEY_2003, "timezone=W. Europe Standard Time"])
    assert by_name.timezone_index == "110"
    assert load_config(W2003, sets=[*PASSWORD, KEY_2003]).timezone_index == "090"


BAD = [
    # The template's settings, and their siblings.
    (W2008, ["generalize=maybe"], "generalize", "true or false"),
    (W2008, ["persist_device_installs=1"], "persist_device_installs", "true or false"),
    (W2008, ["skip_rearm=yes"], "skip_rearm", "true or false"),
    (W2008, ["generalize=false", "skip_rearm=true"], "skip_rearm", "leaves Sysprep out"),
    (
        W2008,
        ["generalize=false", "persist_device_installs=false"],
        "persist_device_installs",
        "leaves Sysprep out",
    ),
    (W2008, ["generalize=false", "clone_computer_name=X"], "clone_computer_name", "leaves"),
    (W2003, [KEY_2003, "skip_rearm=true"], "skip_rearm", "sysprep.inf, which has none"),
    (
        W2003,
        [KEY_2003, "persist_device_installs=false"],
        "persist_device_installs",
        "sysprep.inf, which has none",
    ),
    (W2008, ["clone_computer_name=a b"], "clone_computer_name", "contains ' '"),
    (W2008, ["clone_computer_name=12345"], "clone_computer_name", "only digits"),
    (W2008, ["clone_computer_name=ABCDEFGHIJKLMNOP"], "clone_computer_name", "at most 15"),
    (
        W2008,
        ["generalize=false", 'clone_first_logon_commands=["x"]'],
        "clone_first_logon_commands",
        "leaves Sysprep out",
    ),
    (W2008, ['clone_first_logon_commands=["ok", ""]'], "clone_first_logon_commands[1]", "empty"),
    (
        W2008,
        ["clone_first_logon_commands=caf\u00e9"],
        "clone_first_logon_commands[0]",
        "ASCII",
    ),
    (
        W2003,
        [KEY_2003, 'clone_first_logon_commands=["echo \\"q\\""]'],
        "clone_first_logon_commands[0]",
        "cannot be quoted in winnt.sif",
    ),
    (
        W2003,
        [KEY_2003, "clone_first_logon_commands=echo %PATH%"],
        "clone_first_logon_commands[0]",
        "%variable%",
    ),
    (
        W2008,
        ["clone_first_logon_commands=[" + '"x", ' * 51 + "]"],
        "clone_first_logon_commands",
        "at most 50",
    ),
    (W2008, ["export=vmdk"], "export", "not one of qcow2, raw, pool, none"),
    # A template volume needs a pool to be in (on any connection, local or remote).
    (W2008, ["export=pool"], "storage_pool", "export = pool leaves the template as a volume"),
    (W2022, ["export=pool", "storage_pool="], "storage_pool", "and none is set"),
    (W2008, ["export=pool", "storage_pool=a/b"], "storage_pool", "/"),
    (W2008, ["export="], "export", "is empty"),
    # (profile, settings, key, fragment)
    (W2008, ["computer_name=ABCDEFGHIJKLMNOP"], "computer_name", "16 characters; a NetBIOS name"),
    (W2008, ["computer_name=a<b"], "computer_name", "'<'"),
    (W2008, ['computer_name=a"b'], "computer_name", "'\"'"),
    (W2008, ["computer_name=a/b"], "computer_name", "'/'"),
    (W2008, ["computer_name=a b"], "computer_name", "' '"),
    (W2008, ["computer_name=12345"], "computer_name", "only digits"),
    (W2008, ["product_key=ABCDE-FGHIJ"], "product_key", "XXXXX-XXXXX"),
    (W2003, [], "product_key", "required for win2003-x86"),
    (W2003, ['product_key=""'], "product_key", "cannot be empty"),
    (W2008, ["edition=home"], "edition", "not an edition of win2008-x64"),
    (W2008, ["edition=web"], "image_name", "no image name is known"),
    (W2008, ["timezone=Mars Standard Time"], "timezone", "not a time zone"),
    (W2008, ["timezone=UTC"], "timezone", "arrived with Windows Server 2008 R2"),
    (W2003, [KEY_2003, "timezone=999"], "timezone", "not a time zone Windows Server 2003"),
    (W2003, [KEY_2003, "full_name=Snow \u2603 man"], "full_name", "Windows-1252"),
    (W2003, [KEY_2003, "organization=Line\nBreak"], "organization", "line break"),
    (W2003, [KEY_2003, 'full_name=Say "hi"'], "full_name", "cannot be quoted"),
    (W2008, ["full_name=Tab\there"], "full_name", "control character U+0009"),
    (W2008, ["computre_name=x"], "computre_name", "Did you mean computer_name"),
    (W2008, ["locale=xx-YY"], "locale", "not a locale"),
    (W2008, ["autologon_count=0"], "autologon_count", "turns AutoLogon off"),
    (W2008, ["autologon_count=many"], "autologon_count", "whole number"),
    (W2008, ["floppy_size=720"], "floppy_size", "1.44 or 2.88"),
    (W2008, ["memory_mib=256"], "memory_mib", "below the 512 MiB"),
    (W2008, ["data_disks=[10, 0]"], "data_disks[1]", "out of range"),
    (W2008, ["data_disks=big"], "data_disks", "list of whole numbers"),
    (W2008, ['first_logon_commands=["ok", ""]'], "first_logon_commands[1]", "is empty"),
    (W2008, ["drivers_iso_label=my label"], "drivers_iso_label", "volume label"),
    (W2008, ["network=a/b"], "network", "not a libvirt network"),
    (W2003, [KEY_2003, "image_name=x"], "image_name", "no image name"),
    (W2003, [KEY_2003, "organization=100% fun"], "organization", "%variable%"),
    (W2003, [KEY_2003, "admin_password=*"], "admin_password", "means no password"),
    (W2008, ["first_logon_commands=caf\u00e9.cmd"], "first_logon_commands[0]", "ASCII"),
    (W2008, ['first_logon_commands=["echo \\"half"]'], "first_logon_commands[0]", "unmatched"),
    (W2008, ["drivers=viostor NetKVM"], "drivers[0]", "not a driver name"),
    (W2008, ["drivers=[1, 2]"], "drivers", "list of driver names"),
    (W2008, ["drivers={a = 1}"], "drivers", "list of driver names"),
    (W2008, ['drivers=["viostor", "../x"]'], "drivers[1]", "not a driver name"),
    (W2008, ['drivers=["viostor", ""]'], "drivers[1]", "not a driver name"),
    (W2008, [f"drivers={['d'] * 65}"], "drivers", "at most 64"),
    (W2008, ["sha2_media=yes"], "sha2_media", "true or false"),
    (W2008, ["sha2_media=1"], "sha2_media", "true or false"),
    (W2008, ['sha2_media="true"'], "sha2_media", "true or false"),
    (W2008, ["server_manager_at_logon=on"], "server_manager_at_logon", "true or false"),
    (W2008, ["setwithoutequals"], "--set", "has no '='"),
    (W2022, ["edition=enterprise"], "edition", "not an edition of win2022-x64"),
    (W2022, ["server_core=yes"], "server_core", "must be true or false"),
    (W2008, ["server_core=true"], "server_core", "has no Server Core choice"),
    (W2022, ["image_index=0"], "image_index", "out of range"),
    (W2022, ["image_index=first"], "image_index", "whole number"),
    (W2003, [KEY_2003, "image_index=1"], "image_index", "has no image to choose"),
    (W2022, ["storage_bus=ide"], "storage_bus", "not one of virtio-blk, virtio-scsi"),
    (W2008, ["storage_bus=virtio-scsi"], "storage_bus", "not one of virtio-blk"),
    (W2022, ["firmware=uefi"], "firmware", "not one of efi, bios"),
    (W2025, ["firmware=bios"], "firmware", "Windows Server 2025 (x64) installs with efi only"),
    (W2008, ["firmware=efi"], "firmware", "installs with bios only; 'efi' is refused"),
    # Secure Boot needs UEFI; the CPU must have what the release needs.
    (W2022, ["firmware=bios", "secure_boot=true"], "secure_boot", "true needs UEFI"),
    (W2012R2, ["firmware=bios", "secure_boot=true"], "secure_boot", "SeaBIOS"),
    (W2008, ["secure_boot=true"], "secure_boot", 'firmware = "bios" boots SeaBIOS'),
    (W2022, ["secure_boot=maybe"], "secure_boot", "must be true or false"),
    (W2022, ["tpm=1"], "tpm", "must be true or false"),
    (W2025, ["cpu_model=qemu64"], "cpu_model", "qemu64 is an x86-64-v1 CPU without POPCNT"),
    (W2025, ["cpu_model=Penryn"], "cpu_model", "needs x86-64-v2"),
    (W2025, ["cpu_model=kvm64"], "cpu_model", "without POPCNT, SSE4.2"),
    (W2025, ["cpu_model=qemu32"], "cpu_model", "x86-64-v0"),
    (W2025, ["cpu_model="], "cpu_model", "qemu64: no POPCNT"),
    (W2022, ["cpu_model=Nehalem; rm -rf"], "cpu_model", "not a CPU model name"),
    (W2022, ["cpu_model=<x/>"], "cpu_model", "not a CPU model name"),
    # A control character is said as such (the fuzzer found it ended in a ValueError).
    (W2022, ['storage_bus="\u001f"'], "storage_bus", "control character"),
    (W2022, ['firmware="bios\u0007"'], "firmware", "control character"),
    (W2022, ['cpu_model="Nehalem\u0000"'], "cpu_model", "control character"),
    (W2022, ["timezone=Turkey Standard Time"], "timezone", "pick the zone it was split from"),
    (W2008, ["=value"], "--set", "no key"),
]


@pytest.mark.parametrize(("profile", "sets", "key", "fragment"), BAD)
def test_bad_values(profile, sets: list[str], key: str, fragment: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InputError) as caught:
        load_config(profile, sets=[*PASSWORD, *sets])
    problems = {p.key: str(p) for p in caught.value.problems}
    assert key in problems, problems
    assert fragment in problems[key]
    assert caught.value.exit_code == 2


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(InputError) as caught:
        load_config(
            W2003,
            sets=["computer_name=way-too-long-name", "timezone=nowhere", "edition=home", "bogus=1"],
        )
    keys = {p.key for p in caught.value.problems}
    assert keys == {
        "computer_name",
        "timezone",
        "edition",
        "bogus",
        "admin_password",
        "product_key",
    }


def test_missing_password_and_empty_password() -> None:
    with pytest.raises(InputError, match="admin_password: not set"):
        load_config(W2008)
    with pytest.raises(InputError, match="admin_password: is empty"):
        load_config(W2008, sets=['admin_password=""'])


def test_toml_file_that_does_not_parse_names_the_line(tmp_path: Path) -> None:
    file = tmp_path / "bad.toml"
    file.write_text('computer_name = "ok"\nadmin_password = unquoted words\n')
    with pytest.raises(InputError) as caught:
        load_config(W2008, config_file=file)
    assert "line 2" in str(caught.value)
    assert caught.value.problems[0].key == "--config"


def test_missing_config_file_and_tables(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        load_config(W2008, config_file=tmp_path / "nope.toml", sets=PASSWORD)
    file = tmp_path / "t.toml"
    file.write_text('admin_password = "x"\n[domain]\nvcpus = 2\n')
    with pytest.raises(InputError, match="tables are not settings"):
        load_config(W2008, config_file=file)


def test_unknown_environment_setting_is_an_error() -> None:
    with pytest.raises(InputError, match=r"unknown setting .from .PVINSTALL_COMPUTERNAME"):
        load_config(W2008, sets=PASSWORD, environ={"PVINSTALL_COMPUTERNAME": "x"})


def test_secrets_never_print() -> None:
    config = load_config(
        W2008, sets=["admin_password=Sup3r-secret", "product_key=ABCDE-FGHIJ-KLMNO-PQRST-UVWXY"]
    )
    for text in (repr(config), str(config), str(config.public_json())):
        assert "Sup3r-secret" not in text
        assert "ABCDE-FGHIJ" not in text
    assert config.public_json()["admin_password"] == "(set)"
    with pytest.raises(InputError) as caught:
        load_config(W2008, sets=["admin_password=Sup3r-secret", "product_key=SECRET-KEY-12"])
    assert "SECRET-KEY-12" not in str(caught.value)


def test_help_lists_every_setting() -> None:
    text = settings_help()
    for setting in SETTINGS:
        assert setting.key in text


def test_2008r2_accepts_utc() -> None:
    assert load_config(W2008R2, sets=[*PASSWORD, "timezone=UTC"]).timezone == "UTC"


def test_2003_first_logon_commands_may_quote_and_use_variables(tmp_path: Path) -> None:
    # They go into the post-install script, not into winnt.sif.
    file = tmp_path / "c.toml"
    file.write_text("first_logon_commands = ['\"%ProgramFiles%\\tool.exe\" /x']\n")
    config = load_config(W2003, config_file=file, sets=[*PASSWORD, KEY_2003])
    assert config.first_logon_commands == ('"%ProgramFiles%\\tool.exe" /x',)


def test_a_bad_character_of_a_secret_is_not_shown() -> None:
    with pytest.raises(InputError) as caught:
        load_config(W2003, sets=["admin_password=pass\u2603word", KEY_2003])
    assert "\u2603" not in str(caught.value)
    assert "admin_password: contains a character" in str(caught.value)


def test_2008r2_refuses_zones_created_after_it() -> None:
    with pytest.raises(InputError, match="after Windows Server 2008 R2"):
        load_config(W2008R2, sets=[*PASSWORD, "timezone=Turkey Standard Time"])


def test_pvinstall_s_own_environment_switches_are_not_settings() -> None:
    from builder.config import ENV_NOT_SETTINGS

    config = load_config(W2008, sets=PASSWORD, environ=dict.fromkeys(ENV_NOT_SETTINGS, "1"))
    assert config.vcpus == W2008.vcpus
    # The test harness's knobs are not pvinstall's: they do not even look like settings.
    harness = {"PVTEST_REQUIRE_REAL_TOOLS": "1", "PVTEST_REGENERATE_GOLDEN": "0"}
    assert load_config(W2008, sets=PASSWORD, environ=harness).vcpus == W2008.vcpus
    with pytest.raises(InputError, match="require_real_tools: unknown setting"):
        load_config(W2008, sets=PASSWORD, environ={"PVINSTALL_REQUIRE_REAL_TOOLS": "1"})


# -- the releases of 2012 R2 and later -------------------------------------------------------


def test_defaults_for_2022() -> None:
    config = load_config(W2022, sets=PASSWORD)
    assert (config.edition, config.server_core) == ("standard", False)
    assert config.image_name == "Windows Server 2022 SERVERSTANDARD"
    assert config.image_index is None
    assert config.product_key == Secret("VDYBN-27WPP-V4HQT-9VMD4-VMK7H")
    assert (config.firmware, config.storage_bus, config.disk_layout) == (
        "efi",
        "virtio-blk",
        "gpt",
    )
    assert config.timezone == "UTC" and config.locale == "en-US"
    assert (config.memory_mib, config.disk_size_gib) == (4096, 64)
    assert config.warnings == () and config.image is None
    public = config.public_json()
    assert (public["firmware"], public["storage_bus"], public["server_core"]) == (
        "efi",
        "virtio-blk",
        False,
    )


@pytest.mark.parametrize(
    ("profile", "items", "key", "expected"),
    [
        (W2022, ["server_core=true"], "image_name", "Windows Server 2022 SERVERSTANDARDCORE"),
        (
            W2022,
            ["edition=datacenter", "server_core=true"],
            "image_name",
            "Windows Server 2022 SERVERDATACENTERCORE",
        ),
        (W2022, ["edition=datacenter"], "product_key", Secret("WX4NM-KYWYW-QJJR4-XV3QB-6VM33")),
        (W2012R2, ["edition=datacenter"], "product_key", Secret("W3GGN-FT8W3-Y4M27-J84CP-Q3VJ9")),
        (W2025, [], "product_key", Secret("TVRH6-WHNXV-R9WG3-9XRFY-MY832")),
        # Without the DVD the index cannot be checked, and no name is guessed for it.
        (W2022, ["image_index=3"], "image_name", None),
        (W2022, ["image_index=3"], "image_index", 3),
        (W2022, ["firmware=bios"], "disk_layout", "mbr"),
        (W2012R2, ["storage_bus=virtio-scsi"], "storage_bus", "virtio-scsi"),
        (W2022, ['image_name="My own image"'], "image_name", "My own image"),
    ],
)
def test_good_modern_values(profile, items: list[str], key: str, expected: object) -> None:  # type: ignore[no-untyped-def]
    config = load_config(profile, sets=[*PASSWORD, *items])
    assert getattr(config, key) == expected


def test_virtio_scsi_on_2025_gives_a_warning() -> None:
    (warning,) = load_config(W2025, sets=[*PASSWORD, "storage_bus=virtio-scsi"]).warnings
    assert "storage_bus = virtio-scsi" in warning and "issue 1100" in warning
    assert load_config(W2022, sets=[*PASSWORD, "storage_bus=virtio-scsi"]).warnings == ()


def test_the_environment_reads_booleans_as_toml() -> None:
    environ = {"PVINSTALL_SERVER_CORE": "true"}
    assert load_config(W2022, sets=PASSWORD, environ=environ).server_core is True


# -- settings against the user's DVD ---------------------------------------------------------


def test_the_dvd_chooses_the_image_and_its_edition_the_key() -> None:
    media = media_of("2022")
    config = load_config(W2022, sets=[*PASSWORD, "image_index=3"], media=media)
    assert config.image is not None and config.image.index == 3
    assert (config.edition, config.image_name, config.image_index) == (
        "datacenter",
        "Windows Server 2022 SERVERDATACENTERCORE",
        3,
    )
    assert config.product_key == Secret("WX4NM-KYWYW-QJJR4-XV3QB-6VM33")
    by_edition = load_config(W2022, sets=[*PASSWORD, "server_core=true"], media=media)
    assert by_edition.image is not None and by_edition.image.index == 1


def test_evaluation_media_get_no_key_unless_one_is_given() -> None:
    media = media_of("2019", evaluation=True)
    assert load_config(PROFILES["win2019-x64"], sets=PASSWORD, media=media).product_key is None
    given = load_config(
        PROFILES["win2019-x64"],
        sets=[*PASSWORD, "product_key=ABCDE-FGHIJ-KLMNO-PQRST-UVWXY"],
        media=media,
    )
    assert given.product_key == Secret("ABCDE-FGHIJ-KLMNO-PQRST-UVWXY")


def test_the_image_s_language_is_the_default_locale_and_bounds_the_setting() -> None:
    media = media_of("2022", languages=("de-DE", "en-US"))
    assert load_config(W2022, sets=PASSWORD, media=media).locale == "de-DE"
    assert load_config(W2022, sets=[*PASSWORD, "locale=en-us"], media=media).locale == "en-US"
    with pytest.raises(InputError) as caught:
        load_config(W2022, sets=[*PASSWORD, "locale=fr-FR"], media=media)
    assert "locale: fr-FR is not a language of the image chosen" in str(caught.value)


BAD_WITH_DVD = [
    # (profile, DVD release, settings, key, fragment)
    (W2022, "2019", [], "--windows-iso", "holds Windows 10.0.17763 amd64"),
    (W2025, "2022", [], "--windows-iso", "Use the win2022-x64 profile"),
    (W2022, "2022", ["image_index=7"], "image_index", "7 is not an image of"),
    (W2022, "2022", ["image_name=SERVERWEB"], "image_name", "'SERVERWEB' is not an image of"),
    (
        W2022,
        "2022",
        ["edition=standard", "image_index=4"],
        "edition",
        "is the datacenter edition (ServerDatacenter)",
    ),
]


@pytest.mark.parametrize(("profile", "release", "sets", "key", "fragment"), BAD_WITH_DVD)
def test_settings_the_dvd_contradicts(  # type: ignore[no-untyped-def]
    profile, release: str, sets: list[str], key: str, fragment: str
) -> None:
    with pytest.raises(InputError) as caught:
        load_config(profile, sets=[*PASSWORD, *sets], media=media_of(release))
    problems = {p.key: str(p) for p in caught.value.problems}
    assert key in problems, problems
    assert fragment in problems[key]


def test_a_profile_that_does_not_read_its_dvd_ignores_it() -> None:
    # 2008's DVD is attached as it is (the image name comes from the table).
    config = load_config(W2008, sets=PASSWORD, media=media_of("2022"))
    assert config.image is None and config.image_name == "Windows Longhorn SERVERSTANDARD"


# -- fuzzing: whatever the settings say, a config or an InputError ------------------------------


def _toml_float(number: float) -> str:
    if number != number:
        return "nan"
    if number in (float("inf"), float("-inf")):
        return "inf" if number > 0 else "-inf"
    return repr(number)


_TOML_SCALARS = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.floats().map(_toml_float),
    st.booleans().map(lambda b: str(b).lower()),
    st.text(max_size=30).map(json.dumps),  # a basic string (a lone surrogate is invalid TOML)
    st.text(alphabet=st.characters(exclude_characters="'\r\n"), max_size=20).map(
        lambda t: f"'{t}'"
    ),
    st.sampled_from(
        ["1979-05-27", "07:32:00", "1979-05-27T07:32:00Z", '""', "''", "0x10", "1_000", "+1"]
    ),
)
_TOML_VALUES = st.recursive(
    _TOML_SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4).map(lambda items: "[" + ", ".join(items) + "]"),
        st.dictionaries(st.from_regex(r"[a-z]{1,5}", fullmatch=True), inner, max_size=3).map(
            lambda table: "{" + ", ".join(f"{k} = {v}" for k, v in table.items()) + "}"
        ),
    ),
    max_leaves=8,
)
_KEYS = st.one_of(st.sampled_from(sorted(s.key for s in SETTINGS)), st.text(max_size=12))
_RAW_TEXT = st.text(max_size=40)


@fuzz_settings(300)
@given(
    st.sampled_from(sorted(PROFILES)),
    st.lists(st.tuples(_KEYS, _TOML_VALUES), max_size=8),
    st.lists(st.tuples(_KEYS, st.one_of(_TOML_VALUES, _RAW_TEXT)), max_size=6),
    st.dictionaries(
        st.sampled_from(sorted(s.key for s in SETTINGS)),
        st.one_of(_TOML_VALUES, _RAW_TEXT),
        max_size=4,
    ),
    st.one_of(st.none(), st.binary(max_size=200)),
)
def test_fuzz_settings_give_a_config_or_an_input_error(
    tmp_path_factory: pytest.TempPathFactory,
    profile: str,
    file_lines: list[tuple[str, str]],
    sets: list[tuple[str, str]],
    environment: dict[str, str],
    raw_file: bytes | None,
) -> None:
    """TOML files (well-formed or bytes), --set items and PVINSTALL_* variables of any
    shape: load_config returns a config or raises InputError, nothing else."""
    path = tmp_path_factory.mktemp("fuzz") / "settings.toml"
    if raw_file is not None:
        path.write_bytes(raw_file)
    else:
        text = "".join(f"{json.dumps(key)} = {value}\n" for key, value in file_lines)
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
    environ = {f"PVINSTALL_{key.upper()}": value for key, value in environment.items()}
    try:
        load_config(
            PROFILES[profile],
            config_file=path,
            sets=[f"{key}={value}" for key, value in sets],
            environ=environ,
        )
    except InputError as error:
        assert error.problems


# -- limits: every string setting has the bound of the format it goes into ---------------

# (key, the longest value the format holds, a value one longer, the words of the refusal)
LIMITS = [
    ("computer_name", "A" * 15, "A" * 16, "16 characters; a NetBIOS name has at most 15"),
    ("workgroup", "W" * 15, "W" * 16, "16 characters; a NetBIOS name has at most 15"),
    ("admin_password", "p" * 127, "p" * 128, "128 characters; Windows allows at most 127"),
    ("image_name", "I" * 255, "I" * 256, "256 characters; at most 255"),
    ("full_name", "F" * 63, "F" * 64, "64 characters; at most 63"),
    ("organization", "O" * 63, "O" * 64, "64 characters; at most 63"),
    ("drivers_iso_label", "L" * 16, "L" * 17, "a Joliet volume label has at most 16"),
    ("network", "n" * 200, "n" * 201, "201 characters; at most 200"),
    ("storage_pool", "p" * 200, "p" * 201, "201 characters; at most 200"),
]


@pytest.mark.parametrize(("key", "longest", "too_long", "words"), LIMITS)
def test_string_settings_stop_at_their_format_s_limit(
    key: str, longest: str, too_long: str, words: str
) -> None:
    config = load_config(W2008, sets=[*PASSWORD, f"{key}={longest}"])
    assert getattr(config, key) in (longest, Secret(longest))
    with pytest.raises(InputError) as caught:
        load_config(W2008, sets=[*PASSWORD, f"{key}={too_long}"])
    problems = {p.key: str(p) for p in caught.value.problems}
    assert words in problems[key]


def test_a_huge_value_is_refused_by_its_length_and_not_echoed() -> None:
    # The 200,000-character image name built; now it is refused, and no message
    # carries the value itself (nor any value of more than a few dozen characters).
    huge = "x" * 200_000
    for key in ("image_name", "timezone", "locale", "edition", "virtio_model", "network"):
        with pytest.raises(InputError) as caught:
            load_config(W2008, sets=[*PASSWORD, f"{key}={huge}"])
        assert len(str(caught.value)) < 400, key


def test_first_logon_commands_have_a_count_and_a_line_limit() -> None:
    from builder.config import COMMAND_MAX, COMMANDS_MAX

    many = "[" + ", ".join(['"echo x"'] * COMMANDS_MAX) + "]"
    assert (
        len(
            load_config(
                W2008, sets=[*PASSWORD, f"first_logon_commands={many}"]
            ).first_logon_commands
        )
        == COMMANDS_MAX
    )
    too_many = "[" + ", ".join(['"echo x"'] * (COMMANDS_MAX + 1)) + "]"
    with pytest.raises(InputError, match=f"{COMMANDS_MAX + 1} items; at most {COMMANDS_MAX}"):
        load_config(W2008, sets=[*PASSWORD, f"first_logon_commands={too_many}"])
    longest = "echo " + "x" * (COMMAND_MAX - 5)
    load_config(W2008, sets=[*PASSWORD, f"first_logon_commands={longest}"])
    with pytest.raises(InputError, match=r"first_logon_commands\[0\]: 4001 characters.*8191"):
        load_config(W2008, sets=[*PASSWORD, f"first_logon_commands={longest}x"])


def test_the_longest_command_still_fits_cmd_s_line_when_every_character_is_escaped() -> None:
    from builder.answers.postinstall import cmd_child_command
    from builder.config import COMMAND_MAX
    from builder.media import layout

    # '%' is doubled everywhere: the worst case.
    escaped = cmd_child_command("%" * COMMAND_MAX)
    log = layout.POSTINSTALL_LOG.replace("%SystemDrive%", "C:")
    line = f'cmd /s /c "{escaped}" >> "{log}" 2>&1'
    assert len(line) <= 8191


# Empty values: said to be empty, never "'' contains" or "'' is not a ...".
EMPTY = [
    (W2008, "computer_name"),
    (W2008, "workgroup"),
    (W2008, "edition"),
    (W2008, "image_name"),
    (W2008, "timezone"),
    (W2008, "locale"),
    (W2008, "drivers_iso_label"),
    (W2008, "network"),
    (W2008, "full_name"),
    (W2008, "admin_password"),
    (W2003, "computer_name"),
    (W2003, "full_name"),
    (W2022, "storage_bus"),
    (W2022, "firmware"),
    (W2022, "edition"),
]


@pytest.mark.parametrize(("profile", "key"), EMPTY)
def test_an_empty_value_is_said_to_be_empty(profile, key: str) -> None:  # type: ignore[no-untyped-def]
    sets = [*PASSWORD, KEY_2003] if profile is W2003 else list(PASSWORD)
    with pytest.raises(InputError) as caught:
        load_config(profile, sets=[*sets, f'{key}=""'])
    problems = [p for p in caught.value.problems if p.key == key]
    assert len(problems) == 1, caught.value.problems
    assert problems[0].message.startswith("is empty"), problems[0]
    assert "''" not in str(problems[0])


@pytest.mark.parametrize("key", ["organization", "storage_pool", "virtio_model", "product_key"])
def test_settings_whose_empty_value_means_something_take_it(key: str) -> None:
    load_config(W2008, sets=[*PASSWORD, f'{key}=""'])


def test_a_secret_of_the_wrong_type_is_not_shown(tmp_path: Path) -> None:
    file = tmp_path / "c.toml"
    file.write_text("admin_password = 918273645\n")
    with pytest.raises(InputError) as caught:
        load_config(W2008, config_file=file)
    assert "918273645" not in str(caught.value)
    assert "must be a string, not int" in str(caught.value)


def test_a_forbidden_character_of_a_secret_is_not_named() -> None:
    # A password with '%' and one with '"' get the same sentence: it does not tell which.
    messages = set()
    for password in ("50%off", 'say"hi'):
        with pytest.raises(InputError) as caught:
            load_config(W2003, sets=[f"admin_password={password}", KEY_2003])
        (problem,) = [p for p in caught.value.problems if p.key == "admin_password"]
        messages.add(problem.message)
    assert messages == {"contains '\"' or '%', which winnt.sif cannot hold."}


def test_every_limit_is_in_the_help_and_the_readme() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    text = settings_help()
    for setting in SETTINGS:
        if setting.max_length is None:
            continue
        assert f"at most {setting.max_length} characters" in setting.help_line()
        row = next(line for line in readme.splitlines() if line.startswith(f"| `{setting.key}`"))
        assert str(setting.max_length) in row, setting.key
    assert "at most 4000 characters" in text


def test_validation_gives_a_config_with_every_problem() -> None:
    from builder.config import failed_keys, validate_config

    config, problems = validate_config(
        W2008, sets=[*PASSWORD, "vcpus=0", "data_disks=[1, 2]", "network=a b"]
    )
    assert failed_keys(problems) == {"vcpus", "network"}
    assert config.data_disks == (1, 2)  # the checks that need it can still run


@pytest.mark.parametrize(
    ("profile", "sets", "expected"),
    [
        # (firmware, secure_boot, tpm, cpu_model)
        (W2003, [KEY_2003], ("bios", False, False, None)),
        (W2008, [], ("bios", False, False, None)),
        # 2012 R2: UEFI without Secure Boot (virtio-win's 2k12R2 drivers are test-signed).
        (W2012R2, [], ("efi", False, False, "Nehalem")),
        (W2012R2, ["secure_boot=true", "tpm=true"], ("efi", True, True, "Nehalem")),
        (W2022, [], ("efi", True, True, "Nehalem")),
        # BIOS drops Secure Boot by itself; the TPM stays (SeaBIOS knows TPM 2.0).
        (W2022, ["firmware=bios"], ("bios", False, True, "Nehalem")),
        (W2022, ["secure_boot=false", "tpm=false"], ("efi", False, False, "Nehalem")),
        (W2022, ["cpu_model=qemu64"], ("efi", True, True, "qemu64")),
        (W2025, [], ("efi", True, True, "Nehalem")),
        (W2025, ["cpu_model=host-passthrough"], ("efi", True, True, "host-passthrough")),
        # Not in pvinstall's table: the host is asked when the domain is planned.
        (W2025, ["cpu_model=GraniteRapids"], ("efi", True, True, "GraniteRapids")),
    ],
)
def test_the_machine_settings(profile, sets: list[str], expected: tuple[object, ...]) -> None:  # type: ignore[no-untyped-def]
    config = load_config(profile, sets=["admin_password=x", *sets])
    assert (config.firmware.value, config.secure_boot, config.tpm, config.cpu_model) == expected
    public = config.public_json()
    assert (public["secure_boot"], public["tpm"], public["cpu_model"]) == expected[1:]


def test_export_pool_takes_the_storage_pool_it_leaves_the_template_in() -> None:
    config = load_config(W2008, sets=[*PASSWORD, "export=pool", "storage_pool=default"])
    assert (config.export, config.storage_pool) == ("pool", "default")
