"""Numbers as INF files and libvirt XML write them: decimal, or hexadecimal with `0x`."""

from __future__ import annotations


def parse_int(text: str | None) -> int | None:
    """`12`, `0x0C` -> 12; None for anything else (an absent value included)."""
    if text is None:
        return None
    text = text.strip()
    try:
        return int(text, 16) if text.lower().startswith("0x") else int(text)
    except ValueError:
        return None
