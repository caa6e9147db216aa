"""The build's clock and identifiers (builder/reproducible.py)."""

from __future__ import annotations

import time

import pytest

from builder.errors import InputError
from builder.reproducible import build_id, source_date_epoch, volume_serial


@pytest.mark.parametrize(("text", "epoch"), [("1700000000", 1700000000), (" 12 ", 12), ("0", 0)])
def test_source_date_epoch(text: str, epoch: int) -> None:
    assert source_date_epoch({"SOURCE_DATE_EPOCH": text}) == epoch


@pytest.mark.parametrize("environ", [{}, {"SOURCE_DATE_EPOCH": ""}, {"SOURCE_DATE_EPOCH": " "}])
def test_without_an_epoch_the_build_is_dated_now(
    environ: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(time, "time", lambda: 1_234_567_890.75)
    assert source_date_epoch(environ) == 1_234_567_890


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("yesterday", "is not a number of seconds since 1970"),
        ("1.5", "is not a number of seconds since 1970"),
        ("-1", "is out of range"),
        (str(2**32), "is out of range"),
    ],
)
def test_a_bad_epoch_is_an_input_error(text: str, fragment: str) -> None:
    with pytest.raises(InputError) as raised:
        source_date_epoch({"SOURCE_DATE_EPOCH": text})
    assert fragment in str(raised.value)
    assert raised.value.problems[0].key == "SOURCE_DATE_EPOCH"


def test_the_build_id_names_its_parts_in_order() -> None:
    one = build_id(["a", "b"])
    assert one == build_id(["a", "b"]) and len(one) == 64
    assert one != build_id(["b", "a"]) and one != build_id(["ab"])
    assert volume_serial(one) == int(one[:8], 16)
