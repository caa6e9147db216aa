"""The locale table (builder/windows/locales.py)."""

from __future__ import annotations

import pytest

from builder.windows import locales


@pytest.mark.parametrize(
    ("name", "canonical"), [("en-us", "en-US"), (" DE-de ", "de-DE"), ("sr-latn-cs", "sr-Latn-CS")]
)
def test_names_are_spelled_as_windows_spells_them(name: str, canonical: str) -> None:
    assert locales.canonical(name) == canonical


def test_an_unknown_locale_is_none_and_a_profile_can_carry_its_own_table() -> None:
    assert locales.canonical("tlh-KX") is None
    assert locales.canonical("tlh-KX", {"tlh-KX": 0x0B0B}) == "tlh-KX"


def test_the_answer_files_forms_of_an_lcid() -> None:
    lcid = locales.LCIDS["de-CH"]
    assert locales.input_locale(lcid) == "0807:00000807"
    assert locales.language_code(lcid) == "00000807"
