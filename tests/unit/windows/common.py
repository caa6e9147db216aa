"""What the tests of windows/ and of the settings share: an install medium made of a
real WIM (wimlib-imagex, tests/fixtures/windows_dvd.py), without the DVD around it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from builder.windows.install_media import DiscExtent, InstallMedia
from builder.windows.wim import read_wim
from tests.fixtures.el_torito import boot_record, microsoft_catalog
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
        boot_record=boot_record(CATALOG_LBA),
        boot_catalog=(CATALOG_LBA, microsoft_catalog().sector),
        noprompt=NOPROMPT,
    )


# Where the fake DVD's catalog and efisys_noprompt.bin are (sectors).
CATALOG_LBA = 299
NOPROMPT = DiscExtent("efi/microsoft/boot/efisys_noprompt.bin", 1024, 1474560, True)


def boot_only_media(**changes: object) -> InstallMedia:
    """A DVD as the reader describes it, for what needs only its boot sectors (the
    no-prompt overlay's plan): no install.wim read."""
    media = InstallMedia(
        path=ISO,
        label="SSS_X64FRE_EN-US_DV9",
        setup="windows-setup",
        udf=True,
        install_image="sources/install.wim",
        wim=None,
        setup_dir=None,
        arch=None,
        tags=(),
        boot=(),
        efisys_noprompt=True,
        boot_record=boot_record(CATALOG_LBA),
        boot_catalog=(CATALOG_LBA, microsoft_catalog().sector),
        noprompt=NOPROMPT,
    )
    return dataclasses.replace(media, **changes)  # type: ignore[arg-type]
