"""The time zone tables (builder/windows/timezones.py)."""

from __future__ import annotations

import pytest

from builder.windows import timezones


@pytest.mark.parametrize(
    ("name", "index"),
    [
        # As Microsoft's "Time Zone Index Values" table spells them...
        ("GMT Standard Time", 85),
        ("U.S. Mountain Standard Time", 15),
        ("A.U.S. Eastern Standard Time", 255),
        ("Transitional Islamic State of Afghanistan Standard Time", 175),
        # ...and as the registry keys spell the same zones.
        ("US Mountain Standard Time", 15),
        ("SA Pacific Standard Time", 45),
        ("SE Asia Standard Time", 205),
        ("AUS Central Standard Time", 245),
        ("w. europe standard time", 110),
        ("Mars Standard Time", None),
    ],
)
def test_2003_index_for_name(name: str, index: int | None) -> None:
    assert timezones.index_for_name(name) == index


def test_2003_indexes_are_the_microsoft_table() -> None:
    # Spot checks against learn.microsoft.com ms912391 (000-056 shown there verbatim).
    assert timezones.INDEX_2003[0] == "Dateline Standard Time"
    assert timezones.INDEX_2003[13] == "Mexico Standard Time 2"
    assert timezones.INDEX_2003[56] == "Pacific S.A. Standard Time"
    assert timezones.INDEX_2003[90] == "Greenwich Standard Time"
    assert timezones.INDEX_2003[300] == "Tonga Standard Time"
    assert len(timezones.INDEX_2003) == 75


def test_2008r2_adds_to_2008_and_leaves_out_later_zones() -> None:
    assert timezones.NAMES_2008 < timezones.NAMES_2008R2
    assert "UTC" in timezones.NAMES_2008R2 - timezones.NAMES_2008
    assert not timezones.NAMES_AFTER_2008R2 & timezones.NAMES_2008R2
