"""Reproducibility: the build's clock (SOURCE_DATE_EPOCH) and identifiers derived from inputs.

Every timestamp pvinstall writes (FAT directory entries, ISO volume and record
dates) comes from `source_date_epoch()`, and every "random" identifier (floppy
volume id, ISO volume set id) from `build_id()`, so the same inputs and the same
SOURCE_DATE_EPOCH give byte-identical outputs.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Mapping

from builder.errors import InputError

# A floppy or ISO cannot record dates before these; clamp to them.
FAT_EPOCH = 315532800  # 1980-01-01T00:00:00Z


def source_date_epoch(environ: Mapping[str, str]) -> int:
    """SOURCE_DATE_EPOCH as an integer; the current time when it is not set."""
    text = environ.get("SOURCE_DATE_EPOCH")
    if text is None or text.strip() == "":
        return int(time.time())
    try:
        value = int(text.strip())
    except ValueError:
        raise InputError(
            f"{text!r} is not a number of seconds since 1970.",
            "Set SOURCE_DATE_EPOCH to an integer, e.g. $(git log -1 --format=%ct).",
            key="SOURCE_DATE_EPOCH",
        ) from None
    if not 0 <= value < 2**32:
        raise InputError(
            f"{value} is out of range.",
            "Use a time between 1970 and 2106.",
            key="SOURCE_DATE_EPOCH",
        )
    return value


def build_id(parts: Iterable[str]) -> str:
    """A stable hex digest naming one build (its inputs and its epoch)."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()


def volume_serial(build: str) -> int:
    """A 32-bit volume serial number derived from the build id."""
    return int(build[:8], 16)
