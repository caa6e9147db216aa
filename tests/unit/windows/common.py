"""What the tests of windows/ and of the settings share: an install medium made of a
real WIM (wimlib-imagex, tests/fixtures/windows_dvd.py), without the DVD around it."""

from __future__ import annotations

from pathlib import Path

from builder.windows.install_media import InstallMedia
from builder.windows.wim import read_wim
from tests.fixtures.windows_dvd import RELEASES, WimSpec, windows_wim

ISO = Path("/srv/iso/windows.iso")


def media_of(release: str, **changes: object) -> InstallMedia:
    """The DVD of `release` as the DVD reader would describe it, its install.wim made
    by wimlib-imagex with `changes` to its spec (evaluation, languages)."""
    made = windows_wim(WimSpec(release=release, **changes))  # type: ignore[arg-type]
    with made.path.open("rb") as handle:
        wim = read_wim(handle, made.path.stat().st_size)
    return InstallMedia(
        path=ISO,
        label=RELEASES[release].label,
        setup="windows-setup",
        udf=True,
        install_image="sources/install.wim",
        wim=wim,
        setup_dir=None,
        arch=None,
        tags=(),
        boot=(),
        efisys_noprompt=True,
    )
