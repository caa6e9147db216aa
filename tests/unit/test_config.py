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

W2008 = PROFILES["win2008-x64"]
W2008R2 = PROFILES["win2008r2-x64"]
W2003 = PROFILES["win2003-x86"]
PASSWORD = ["admin_password=Sup3r-secret"]
KEY_2003 = "product_key=ABCDE-FGHIJ-KLMNO-PQRST-UVWXY"


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
    (W2008, ["setwithoutequals"], "--set", "has no '='"),
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
