"""Where each file goes (builder/media/layout.py)."""

from __future__ import annotations

import pytest

from builder.media import layout
from builder.windows.profiles import StorageRoute


@pytest.mark.parametrize(
    ("name", "short"),
    [
        ("viostor", "VIOSTOR"),
        ("NetKVM", "NETKVM"),
        ("pvpanic-pci", "PVPANIC-"),
        ("a.b c", "ABC"),
        ("!!!", "DRIVER"),
    ],
)
def test_floppy_folders_are_8_3_safe(name: str, short: str) -> None:
    assert layout.short_name(name) == short


def test_answer_files_are_named_as_setup_reads_them() -> None:
    assert layout.media_name("autounattend.xml") == "Autounattend.xml"
    assert layout.media_name("winnt.sif") == "WINNT.SIF"
    assert layout.media_name("POSTINST.CMD") == "POSTINST.CMD"


def test_every_storage_route_says_what_its_answer_medium_carries() -> None:
    assert set(layout.ANSWER_MEDIA) == set(StorageRoute)
    # Only the F6 disk needs the tag file text-mode setup checks for.
    assert layout.ANSWER_MEDIA[StorageRoute.SLIPSTREAM].tag_files == (layout.F6_TAG_FILE,)
    assert layout.ANSWER_MEDIA[StorageRoute.ANSWER_FLOPPY].tag_files == ()
