"""Windows locales pvinstall accepts for `locale` (facts as data; a profile carries its
table).

2008-family answer files take the locale name (`en-US`) for UILanguage,
SystemLocale and UserLocale, and `<LCID>:<keyboard layout>` for InputLocale;
winnt.sif (2003) takes the LCID as 8 hex digits (`Language=00000409`).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

LCIDS: Mapping[str, int] = MappingProxyType(
    {
        "ar-SA": 0x0401,
        "bg-BG": 0x0402,
        "zh-TW": 0x0404,
        "cs-CZ": 0x0405,
        "da-DK": 0x0406,
        "de-DE": 0x0407,
        "el-GR": 0x0408,
        "en-US": 0x0409,
        "fi-FI": 0x040B,
        "fr-FR": 0x040C,
        "he-IL": 0x040D,
        "hu-HU": 0x040E,
        "it-IT": 0x0410,
        "ja-JP": 0x0411,
        "ko-KR": 0x0412,
        "nl-NL": 0x0413,
        "nb-NO": 0x0414,
        "pl-PL": 0x0415,
        "pt-BR": 0x0416,
        "ro-RO": 0x0418,
        "ru-RU": 0x0419,
        "hr-HR": 0x041A,
        "sk-SK": 0x041B,
        "sv-SE": 0x041D,
        "th-TH": 0x041E,
        "tr-TR": 0x041F,
        "uk-UA": 0x0422,
        "sl-SI": 0x0424,
        "et-EE": 0x0425,
        "lv-LV": 0x0426,
        "lt-LT": 0x0427,
        "zh-CN": 0x0804,
        "de-CH": 0x0807,
        "en-GB": 0x0809,
        "es-MX": 0x080A,
        "fr-BE": 0x080C,
        "nl-BE": 0x0813,
        "pt-PT": 0x0816,
        "sr-Latn-CS": 0x081A,
        "de-AT": 0x0C07,
        "zh-HK": 0x0C04,
        "en-AU": 0x0C09,
        "es-ES": 0x0C0A,
        "fr-CA": 0x0C0C,
        "en-CA": 0x1009,
        "fr-CH": 0x100C,
        "en-NZ": 0x1409,
        "en-IE": 0x1809,
    }
)


def canonical(name: str, table: Mapping[str, int] = LCIDS) -> str | None:
    """The locale name as Windows spells it (`en-us` -> `en-US`), or None if unknown."""
    wanted = name.strip().lower()
    for known in table:
        if known.lower() == wanted:
            return known
    return None


def input_locale(lcid: int) -> str:
    """`0409:00000409`: the LCID and the locale's default keyboard layout."""
    return f"{lcid:04x}:{lcid:08x}"


def language_code(lcid: int) -> str:
    """`00000409`: the LCID as winnt.sif's [RegionalSettings] wants it."""
    return f"{lcid:08x}"
