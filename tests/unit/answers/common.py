"""What the answer-file tests share: settings, renderers and independent readers.

Oracles: lxml parses and walks the XML; winnt.sif and txtsetup.oem are read back by a
small INI reader written here (not the product's INF parser); hardware IDs come from the
fixture generator's ground truth; paths are checked against the media plan, which is
what the floppy, the drivers ISO and the 2003 CD are written from.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

from lxml import etree

from builder.answers import formats, postinstall, sysprep
from builder.config import BuildConfig, load_config
from builder.errors import InputError
from builder.media import table
from builder.media.files import PlannedFile
from builder.media.plan import MediaInputs
from builder.virtio.selection import DriverSet
from builder.windows.profiles import PROFILES, AnswerFormat, StorageRoute
from tests.unit.windows.common import boot_only_media

GOLDEN = Path(__file__).resolve().parents[3] / "tests" / "golden"
REGENERATE = os.environ.get("PVTEST_REGENERATE_GOLDEN") == "1"

NS = "urn:schemas-microsoft-com:unattend"
WCM = "http://schemas.microsoft.com/WMIConfig/2002/State"
U = f"{{{NS}}}"
PASSWORD = "P@ssw0rd!"
KEY_2003 = "ABCDE-FGHIJ-KLMNO-PQRST-UVWXY"
PROFILES_2008 = [p for p in PROFILES if PROFILES[p].answer_format is AnswerFormat.UNATTEND]
PROFILES_2003 = [p for p in PROFILES if PROFILES[p].answer_format is AnswerFormat.WINNT]
# Answered from the floppy (2008, 2008 R2) or from the answer ISO (2012 R2 and later).
FLOPPY_ANSWERED = [
    p for p in PROFILES_2008 if PROFILES[p].storage_route is StorageRoute.ANSWER_FLOPPY
]
ISO_ANSWERED = [p for p in PROFILES_2008 if PROFILES[p].storage_route is StorageRoute.ANSWER_ISO]

GOLDEN_SETTINGS = [
    f"admin_password={PASSWORD}",
    "computer_name=PVGOLDEN",
    "full_name=Ops & <Team>",
    "organization=Example Corp",
    "autologon_count=2",
    'first_logon_commands=["echo golden > %SystemDrive%\\\\golden.txt", '
    '"\\"C:\\\\Program Files\\\\tool.exe\\" /q \\"a & b\\""]',
    'clone_first_logon_commands=["net user Administrator /active:yes", "echo <clone> & ver"]',
]


def _golden_cases() -> tuple[tuple[str, str, tuple[str, ...]], ...]:
    """(folder under tests/golden, profile, extra settings): every profile; for the
    releases with Server Core images, core and desktop, with each firmware they boot."""
    cases: list[tuple[str, str, tuple[str, ...]]] = []
    for name, profile in PROFILES.items():
        kinds = (False, True) if profile.installation_types else (False,)
        for core in kinds:
            for firmware in profile.firmwares:
                stem = name + ("-core" if core else "")
                sets: tuple[str, ...] = ("server_core=true",) if core else ()
                if firmware is not profile.firmware:
                    stem += f"-{firmware}"
                    sets += (f"firmware={firmware}",)
                cases.append((stem, name, sets))
    return tuple(cases)


GOLDEN_CASES = _golden_cases()


def config_for(profile: str, *sets: str, environ: dict[str, str] | None = None) -> BuildConfig:
    extra = [f"product_key={KEY_2003}"] if PROFILES[profile].product_key_required else []
    return load_config(PROFILES[profile], sets=[*extra, *sets], environ=environ)


def golden_config(profile: str, *extra: str) -> BuildConfig:
    timezone = "110" if PROFILES[profile].timezones.style == "index" else "W. Europe Standard Time"
    return config_for(profile, *GOLDEN_SETTINGS, f"timezone={timezone}", *extra)


def rendered(
    profile: str, drivers: DriverSet, config: BuildConfig | None = None
) -> dict[str, bytes]:
    config = config or golden_config(profile)
    return {
        **formats.render_answer_files(config, drivers),
        **postinstall.render_postinstall(config, drivers),
        **sysprep.render_sysprep(config, drivers),
    }


def plan(profile: str, drivers: DriverSet, files: dict[str, bytes]) -> table.MediaPlan:
    """The media of a build with the user's CD given (so that 2003 remasters it)."""
    answers = {k: v for k, v in files.items() if k in PROFILES[profile].answer_files}
    clones = {k: v for k, v in files.items() if k == PROFILES[profile].sysprep.answer_file}
    post = {k: v for k, v in files.items() if k not in answers and k not in clones}
    dvd = boot_only_media() if PROFILES[profile].reads_install_image else None
    inputs = MediaInputs(golden_config(profile), drivers, answers, post, dvd, clones)
    return table.plan_media(inputs, windows_iso=Path("/cd/windows.iso"))


def medium(media: table.MediaPlan, name: str) -> tuple[PlannedFile, ...]:
    """The planned files of the medium `name` of a build."""
    planned = media.get(name)
    assert planned is not None, name
    return planned.builder.files(planned.plan)


def unattend_root(
    profile: str, driversets: dict[str, DriverSet], config: BuildConfig | None = None
) -> etree._Element:
    data = formats.render_answer_files(config or golden_config(profile), driversets[profile])[
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


def expected_encoding(password: str, suffix: str) -> str:
    return base64.b64encode((password + suffix).encode("utf-16-le")).decode("ascii")


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


def script_lines(data: bytes) -> list[str]:
    assert data.endswith(b"\r\n")
    assert b"\n" not in data.replace(b"\r\n", b"")
    return data.decode("ascii").split("\r\n")[:-1]


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


def unquote_inf(value: str) -> str:
    """A quoted field read by the INF rules (written here, not the product's parser):
    inside the quotes `""` is one quote and `%%` one percent."""
    assert value.startswith('"') and value.endswith('"'), value
    inner = value[1:-1]
    out: list[str] = []
    index = 0
    while index < len(inner):
        pair = inner[index : index + 2]
        if pair in ('""', "%%"):
            out.append(pair[0])
            index += 2
            continue
        assert inner[index] not in '"%', f"a lone {inner[index]} in {value!r}"
        out.append(inner[index])
        index += 1
    return "".join(out)
