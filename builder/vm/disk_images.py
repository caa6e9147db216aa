"""Disk images on the host: created and inspected with qemu-img (the one place that runs
it), through `builder.tools`.
"""

from __future__ import annotations

import json
from pathlib import Path

from builder import tools
from builder.errors import BuildError


def create_qcow2(path: Path, size: str) -> None:
    """Create an empty qcow2 image of `size` (qemu-img's notation: 64M, 20G)."""
    tools.run(["qemu-img", "create", "-q", "-f", "qcow2", path, size], package="qemu-utils")


def image_format(path: Path) -> str:
    """The format of a disk image (qcow2, raw, ...) as qemu-img detects it."""
    text = tools.run(["qemu-img", "info", "--output=json", "-U", path], package="qemu-utils")
    try:
        return str(json.loads(text)["format"])
    except (ValueError, KeyError):
        raise BuildError(f"qemu-img could not tell the format of {path}.") from None
