"""The copy-on-write overlay of the user's DVD (the edge: qemu-img and qemu-io).

`write_install_dvd_overlay` makes `OUT/install-dvd.qcow2`: a qcow2 file whose backing
file is the user's ISO, read as raw (the format is written into the overlay's header,
so QEMU never guesses it), and writes the one patched sector of its plan into it.
The ISO is opened read-only and never written; QEMU reads the 64 KiB cluster around
the sector from it to fill the overlay's cluster, and nothing else. The same plan and
ISO path give the same bytes (qcow2 headers carry no time).

The backing path written into the overlay is given separately from the file that was
read: a remote host's copy of the DVD (rebased with `qemu-img rebase -u`) is another
path to the same bytes.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from builder import tools
from builder.media.eltorito import SECTOR
from builder.media.files import OverlayPlan

QEMU_UTILS = "qemu-utils"


def write_install_dvd_overlay(plan: OverlayPlan, out: Path, *, backing: Path) -> None:
    """Write the overlay of `backing` (an absolute path to the raw ISO) to `out`."""
    if not backing.is_absolute():
        raise ValueError(f"the overlay's backing file must be an absolute path: {backing}")
    tools.run(
        [
            "qemu-img",
            "create",
            "-q",
            "-f",
            "qcow2",
            "-o",
            "cluster_size=65536",
            "-F",
            "raw",
            "-b",
            str(backing),
            str(out),
        ],
        package=QEMU_UTILS,
    )
    if plan.patched_sector is None:
        return
    if len(plan.patched_sector) != SECTOR or plan.offset % SECTOR:
        raise ValueError("an overlay patch is one whole 2048-byte sector")
    # qemu-io reads its command as words: the sector's file goes where no space is.
    with tempfile.NamedTemporaryFile(prefix="pvinstall-sector-") as sector:
        sector.write(plan.patched_sector)
        sector.flush()
        tools.run(
            [
                "qemu-io",
                "-f",
                "qcow2",
                "-c",
                f"write -s {sector.name} {plan.offset} {SECTOR}",
                str(out),
            ],
            package=QEMU_UTILS,
        )
