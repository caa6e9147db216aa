"""Numbers as INF files and libvirt write them (builder/numbers.py)."""

from __future__ import annotations

import pytest

from builder.numbers import parse_int


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("12", 12),
        (" 0x0C ", 12),
        ("0X1f", 31),
        ("0", 0),
        ("-1", -1),
        ("", None),
        ("0x", None),
        ("twelve", None),
        ("1.5", None),
        (None, None),
    ],
)
def test_parse_int(text: str | None, number: int | None) -> None:
    assert parse_int(text) == number
