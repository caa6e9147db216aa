"""The post-install step at the root of drivers.iso: the script the first logon runs,
and the marker file it is found by (pure).

The answer files start it (`drive_search` is what they need to find it on whatever
letter Windows gave the drivers disc); it installs the remaining drivers, runs the
user's first-logon commands and powers the guest off.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from builder.answers.environment import check_profiles, crlf, encode, render
from builder.config import BuildConfig
from builder.media import layout
from builder.virtio.selection import DriverSet


def drive_search() -> dict[str, Any]:
    """What a first-logon command needs to find the script on any drive letter."""
    return {
        "drive_letters": layout.SEARCH_DRIVE_LETTERS,
        "marker": layout.MARKER_FILE,
        "script": layout.POSTINSTALL_SCRIPT,
    }


_CMD_SPECIAL = frozenset("^&|<>()")


def cmd_child_command(command: str) -> str:
    """`command` escaped to stand inside `cmd /s /c "..."` on a line of a batch file, so
    that the child cmd receives exactly `command` and runs it as if typed at a prompt.

    The batch parser sees the user's quoted parts as unquoted (the outer quotes flip
    them), so special characters there get a caret; '%' is doubled everywhere, leaving
    %VAR% for the child to expand. `builder.config` refuses unbalanced quotes, which
    would leave the rest of the line quoted.
    """
    out: list[str] = []
    quoted = False
    for char in command:
        if char == '"':
            quoted = not quoted
            out.append(char)
        elif char == "%":
            out.append("%%")
        elif quoted and char in _CMD_SPECIAL:
            out.append("^" + char)
        else:
            out.append(char)
    return "".join(out)


@dataclass(frozen=True)
class _PostinstallDriver:
    name: str
    path: str


def _postinstall_drivers(drivers: DriverSet) -> Iterable[_PostinstallDriver]:
    # 2003 has no pnputil: GUI-mode setup installed every package from OemPnPDriversPath.
    if drivers.profile.is_2003:
        return ()
    # Every selected package, the floppy's too: those are already in the driver store
    # (windowsPE DriverPaths), and adding the same package again changes nothing, while
    # it gives NetKVM a second chance if staging from A: failed.
    return tuple(
        _PostinstallDriver(d.name, layout.iso_path_windows(d, drivers.profile, "%PV_DRIVE%"))
        for d in drivers.selected
    )


def render_postinstall(config: BuildConfig, drivers: DriverSet) -> dict[str, bytes]:
    """The files for the root of drivers.iso: the post-install script and its marker.

    The first logon runs the script from whichever drive holds `layout.MARKER_FILE`.
    2008 family: `pnputil -i -a` for every selected package from the ISO; 2003: nothing
    to install. Then the user's `first_logon_commands`, each in its own cmd, then the
    power-off that tells `pvinstall build --install` that setup has finished. Everything
    is logged to `layout.POSTINSTALL_LOG` on the installed system.

    Returns:
        `{layout.POSTINSTALL_SCRIPT: ASCII cmd script, CRLF, layout.MARKER_FILE: text}`.
    """
    profile = check_profiles(config, drivers)
    context = {
        "profile": profile,
        "log": layout.POSTINSTALL_LOG,
        "marker": layout.MARKER_FILE,
        "drivers": _postinstall_drivers(drivers),
        "commands": tuple(cmd_child_command(c) for c in config.first_logon_commands),
        # 2003's shutdown.exe takes the dash form; 2008's both.
        "shutdown": "shutdown -s -t 0" if profile.is_2003 else "shutdown /s /t 0",
    }
    script = encode(layout.POSTINSTALL_SCRIPT, render("postinst.cmd.j2", context), "ascii")
    marker = crlf(f"pvinstall drivers disc for {profile.name}\n").encode("ascii")
    return {layout.POSTINSTALL_SCRIPT: script, layout.MARKER_FILE: marker}
