"""Sysprep for Windows Server 2003, out of the CD's SUPPORT\\TOOLS\\DEPLOY.CAB (the I/O
edge).

The cabinet is read from the user's CD in place (`iso9660.copy_cd_file`) into a private
temporary folder, listed and unpacked with cabextract (libmspack: MSZIP, LZX and
Quantum, the compressions Microsoft's cabinets use; run through `builder.tools`), and
only the members the profile names are taken, each bounded in size. The CD is never
extracted; nothing outside the temporary folder is written.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

from builder import tools
from builder.errors import BuildError, InputError
from builder.media import iso9660
from builder.windows.install_media import WINDOWS_ISO_KEY
from builder.windows.profiles import Profile

# DEPLOY.CAB of a 2003 CD is about 1 MB, its sysprep.exe about 100 KB.
MAX_CABINET_BYTES = 32 * 2**20
MAX_MEMBER_BYTES = 8 * 2**20
PACKAGE = "cabextract"
# `cabextract -l`'s member lines: " size | date time | name".
_LISTING = re.compile(r"^\s*(\d+)\s*\|\s*[^|]*\|\s*(.+?)\s*$")


def list_cabinet(cabinet: Path) -> Mapping[str, int]:
    """The members of a cabinet (name as stored -> size), as cabextract lists them;
    BuildError when cabextract cannot read it."""
    text = tools.run([PACKAGE, "-l", "-q", cabinet], package=PACKAGE, timeout=120)
    members: dict[str, int] = {}
    for line in text.splitlines():
        match = _LISTING.match(line)
        if match:
            members[match.group(2)] = int(match.group(1))
    return MappingProxyType(members)


def _member(members: Mapping[str, int], wanted: str) -> tuple[str, int] | None:
    for name, size in members.items():
        if name.replace("\\", "/").lower() == wanted.lower():
            return name, size
    return None


def _missing(cd: Path, what: str, profile: Profile) -> InputError:
    return InputError(
        f"{cd} has no {what}: Windows Server 2003 keeps Sysprep there, and a generalized "
        "template needs it.",
        "Give the original CD (its SUPPORT\\TOOLS\\DEPLOY.CAB), or set generalize = false "
        f"to end the {profile.name} install without Sysprep.",
        key=WINDOWS_ISO_KEY,
    )


def sysprep_tools(cd: Path, profile: Profile) -> dict[str, bytes]:
    """The Sysprep programs of `profile.sysprep.tools`, by their names there, out of the
    CD's cabinet; InputError (--windows-iso) for a CD without the cabinet, a cabinet
    without them, or one that cannot be read."""
    sysprep = profile.sysprep
    if sysprep.tools_cabinet is None:
        return {}
    shown = sysprep.tools_cabinet.replace("/", "\\")
    with tempfile.TemporaryDirectory(prefix="pvinstall-deploy-") as folder:
        cabinet = Path(folder) / "deploy.cab"
        fd = os.open(cabinet, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            size = iso9660.copy_cd_file(cd, sysprep.tools_cabinet, handle, limit=MAX_CABINET_BYTES)
        if size is None:
            raise _missing(cd, shown, profile)
        try:
            members = list_cabinet(cabinet)
        except BuildError as error:
            raise InputError(
                f"{cd}: {shown} is not a cabinet cabextract can read ({error.message}).",
                "Copy the CD image again, or set generalize = false.",
                key=WINDOWS_ISO_KEY,
            ) from None
        found: dict[str, bytes] = {}
        unpacked = Path(folder) / "members"
        unpacked.mkdir(mode=0o700)
        for wanted in sysprep.tools:
            member = _member(members, wanted)
            if member is None:
                raise _missing(cd, f"{wanted} in {shown}", profile)
            name, listed = member
            if listed > MAX_MEMBER_BYTES:
                raise InputError(
                    f"{cd}: {wanted} in {shown} is {listed} bytes; at most "
                    f"{MAX_MEMBER_BYTES // 2**20} MiB is taken.",
                    "Give the original CD, or set generalize = false.",
                    key=WINDOWS_ISO_KEY,
                )
            try:
                tools.run(
                    [PACKAGE, "-q", "-F", name, "-d", unpacked, cabinet],
                    package=PACKAGE,
                    timeout=120,
                )
            except BuildError as error:
                raise InputError(
                    f"{cd}: {wanted} in {shown} cannot be unpacked ({error.message}).",
                    "Copy the CD image again, or set generalize = false.",
                    key=WINDOWS_ISO_KEY,
                ) from None
            path = unpacked / name.replace("\\", "/")
            if path.is_symlink() or not path.is_file() or path.stat().st_size != listed:
                raise InputError(
                    f"{cd}: cabextract did not unpack {wanted} of {shown} as listed.",
                    "Copy the CD image again, or set generalize = false.",
                    key=WINDOWS_ISO_KEY,
                )
            found[wanted] = path.read_bytes()
    return found
