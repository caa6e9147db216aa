"""The post-install script on drivers.iso (builder/answers/postinstall.py)."""

from __future__ import annotations

import re
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from builder.answers import postinstall
from builder.media import layout
from builder.virtio.selection import DriverSet
from builder.windows.profiles import PROFILES
from tests.unit.answers.common import (
    PROFILES_2003,
    PROFILES_2008,
    medium,
    plan,
    rendered,
    script_lines,
)

# -- the post-install step ---------------------------------------------------------------------


@pytest.mark.parametrize("profile", PROFILES_2008)
def test_2008_script_installs_every_package_from_the_iso(
    profile: str, driversets: dict[str, DriverSet]
) -> None:
    drivers = driversets[profile]
    files = rendered(profile, drivers)
    lines = script_lines(files[layout.POSTINSTALL_SCRIPT])
    installs = [line for line in lines if line.startswith("pnputil ")]
    assert len(installs) == len(drivers.selected)
    iso = {f.path for f in medium(plan(profile, drivers, files), "drivers.iso")}
    command = postinstall.INSTALL_COMMANDS[PROFILES[profile].post_install]
    assert command is not None
    for driver, line in zip(drivers.selected, installs, strict=True):
        folder = layout.iso_folder(driver, drivers.profile)
        inf = f'"%PV_DRIVE%\\{folder.replace("/", chr(92))}\\*.inf"'
        assert line.startswith(command.format(inf=inf))
        assert any(p.startswith(folder + "/") and p.lower().endswith(".inf") for p in iso)
    assert 'set "PV_DRIVE=%~d0"' in lines
    assert [line for line in lines if line.strip()][-1] == "shutdown /s /t 0"
    assert layout.POSTINSTALL_SCRIPT in {
        f.path for f in medium(plan(profile, drivers, files), "drivers.iso")
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
    assert batch_child_sees(f'cmd /s /c "{postinstall.cmd_child_command(command)}"') == command


_COMMAND_CHARS = st.sampled_from(string.ascii_letters[:6] + string.digits[:3] + ' "%^&|<>()!.\\/')


@given(st.lists(_COMMAND_CHARS, max_size=30).map("".join).filter(lambda c: c.count('"') % 2 == 0))
def test_cmd_child_command_round_trips(command: str) -> None:
    assert batch_child_sees(f'cmd /s /c "{postinstall.cmd_child_command(command)}"') == command
