"""The post-install script on drivers.iso (builder/answers/postinstall.py)."""

from __future__ import annotations

import dataclasses
import re
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from builder.answers import postinstall
from builder.media import layout
from builder.virtio.selection import DriverSet
from builder.virtio.signatures import read_catalog
from builder.windows.profiles import PROFILES
from tests.fixtures import signing
from tests.unit.answers.common import (
    FLOPPY_ANSWERED,
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


# -- trust before install, exit codes, RunOnce --------------------------------------------


def _steps(lines: list[str]) -> list[str]:
    return [line for line in lines if line and not line.startswith(("rem", ">>", "if ", "@"))]


@pytest.mark.parametrize("profile", PROFILES_2008)
def test_2008_script_trusts_each_distinct_signer_before_the_first_pnputil(
    profile: str, driversets: dict[str, DriverSet]
) -> None:
    drivers = driversets[profile]
    files = rendered(profile, drivers)
    lines = script_lines(files[layout.POSTINSTALL_SCRIPT])
    steps = _steps(lines)
    trusts = [s for s in steps if s.startswith("certutil ")]
    installs = [s for s in steps if s.startswith("pnputil ")]
    assert trusts and installs
    assert steps.index(installs[0]) > steps.index(trusts[-1])
    signers = {
        signer.sha1: signer
        for driver in drivers.selected
        if driver.signatures
        for signer in driver.signatures.signers
    }
    assert len(trusts) == len(signers)  # one per distinct signer
    iso = {f.path: f for f in medium(plan(profile, drivers, files), "drivers.iso")}
    for sha1, signer in signers.items():
        path = layout.certificate_path(sha1)
        windows = "%PV_DRIVE%\\" + path.replace("/", "\\")
        assert f'certutil -addstore -f TrustedPublisher "{windows}" >> "%PV_LOG%" 2>&1' in trusts
        # The path exists on drivers.iso and holds the signer's certificate.
        assert path in iso
        assert iso[path].data == signer.der
        if profile in FLOPPY_ANSWERED:  # the 2008-family fixture builds: Red Hat's
            assert signer.der == signing.certificate_der("redhat-sha1")


def test_several_signers_are_each_trusted_once_in_the_order_of_the_packages(
    driversets: dict[str, DriverSet],
) -> None:
    # Packages signed three ways: SHA-1 by one certificate (the first and most others),
    # SHA-1 with a nested SHA-256 by a second certificate (the second), by a third
    # certificate (the third and the fourth): three certutil lines, in that order.
    drivers = driversets["win2008r2-x64"]
    _, second, third, fourth, *_ = drivers.selected
    schemes = {second.name: "sha1+nested-sha256", third.name: "whcp", fourth.name: "whcp"}
    changed = []
    for driver in drivers.selected:
        scheme = schemes.get(driver.name, "sha1")
        cat = signing.catalog([(driver.name, driver.name.encode())], scheme)
        read = read_catalog(cat, f"{driver.name}.cat")
        changed.append(dataclasses.replace(driver, signatures=read))
    several = dataclasses.replace(drivers, selected=tuple(changed))
    files = rendered("win2008r2-x64", several)
    trusts = [
        line
        for line in script_lines(files[layout.POSTINSTALL_SCRIPT])
        if line.startswith("certutil ")
    ]
    order = ["redhat-sha1", "redhat-sha256", "whcp"]
    expected = [layout.certificate_path(signing.thumbprint(name)) for name in order]
    named = [re.findall(r'"%PV_DRIVE%\\([^"]+)"', line)[0] for line in trusts]
    assert [n.replace("\\", "/") for n in named] == expected
    iso = {f.path: f for f in medium(plan("win2008r2-x64", several, files), "drivers.iso")}
    assert sorted(p for p in iso if p.startswith(f"{layout.CERTIFICATE_DIR}/")) == sorted(expected)
    for name, path in zip(order, expected, strict=True):
        assert iso[path].data == signing.certificate_der(name)


@pytest.mark.parametrize("profile", list(PROFILES))
def test_every_step_is_followed_by_its_exit_code_check(
    profile: str, driversets: dict[str, DriverSet]
) -> None:
    lines = script_lines(rendered(profile, driversets[profile])[layout.POSTINSTALL_SCRIPT])
    for index, line in enumerate(lines):
        if line.startswith(("certutil ", "pnputil ", "cmd /s /c ")):
            check = lines[index + 1]
            assert check.startswith("if %ERRORLEVEL% NEQ 0 (set /a PV_FAILED+=1 & "), line
            assert "FAILED with exit code %ERRORLEVEL%" in check
    # Nothing jumps past the power-off: no goto, no exit before it.
    body = [line for line in lines if not line.startswith("rem")]
    assert not any(re.match(r"(goto|exit)\b", line, re.I) for line in body)
    assert body[-1].startswith("shutdown ")
    assert body[-2] == '>> "%PV_LOG%" echo [%DATE% %TIME%] powering off; %PV_FAILED% steps failed'


@pytest.mark.parametrize("profile", PROFILES_2003)
def test_2003_script_trusts_nothing_and_removes_its_run_once_commands(
    profile: str, driversets: dict[str, DriverSet]
) -> None:
    files = rendered(profile, driversets[profile])
    assert not any(name.startswith(f"{layout.CERTIFICATE_DIR}/") for name in files)
    lines = script_lines(files[layout.POSTINSTALL_SCRIPT])
    assert not any(line.startswith("certutil") for line in lines)
    deletes = [line for line in lines if line.startswith('for /f "tokens=1" %%V in')]
    assert len(deletes) == 2
    for key, line in zip(postinstall.RUN_ONCE_KEYS, deletes, strict=True):
        assert f'reg query "{key}"' in line and f'reg delete "{key}" /v "%%V" /f' in line
        assert f'findstr /l /c:"{postinstall.RUN_ONCE_MATCH}"' in line
    assert lines.index(deletes[-1]) < lines.index("shutdown -s -t 0")
    # The match is in every [GuiRunOnce] command of winnt.sif, and in nothing else there.
    sif = files["winnt.sif"].decode("cp1252")
    run_once = sif.partition("\r\n[GuiRunOnce]\r\n")[2].strip().splitlines()
    assert len(run_once) == len(layout.SEARCH_DRIVE_LETTERS)
    assert all(postinstall.RUN_ONCE_MATCH in line for line in run_once)
    assert sif.count(postinstall.RUN_ONCE_MATCH) == len(run_once)


@pytest.mark.parametrize("profile", PROFILES_2008)
def test_2008_script_leaves_run_once_alone(profile: str, driversets: dict[str, DriverSet]) -> None:
    lines = script_lines(rendered(profile, driversets[profile])[layout.POSTINSTALL_SCRIPT])
    assert not any("RunOnce" in line for line in lines)


def test_a_hostile_certificate_name_cannot_reach_cmd() -> None:
    assert postinstall._log_safe('Red Hat & "x" | <y> (z) ^%PATH%!') == (
        "Red Hat _ _x_ _ _y_ _z_ __PATH__"
    )
