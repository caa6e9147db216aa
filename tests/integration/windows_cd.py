"""A fake Windows Server 2003 CD mastered like the retail one, for remaster tests.

`probe.build_fake_2003_cd` boots (isolinux, a visible boot file with a boot-info
table). A retail CD differs in what matters to El Torito: its boot image is a 2048-byte
loader that is *not* in the directory tree, has no boot-info table, and is loaded at
segment 0x07C0. This builds that shape with genisoimage (xorriso cannot set the load
segment): the fake 2003 tree of `probe.fake_2003_tree`, ISO 9660 names without `;1`,
relaxed names, Joliet, no Rock Ridge, optionally a large file to measure streaming.
"""

from __future__ import annotations

import codecs
import hashlib
import os
import subprocess
import tempfile
from pathlib import Path

from tests.integration.probe import Arch, fake_2003_tree

BOOT_DIR = "BOOT"
BOOT_IMAGE = "ETFSBOOT.COM"
LOAD_SEGMENT = 0x07C0


def boot_image() -> bytes:
    """2048 deterministic bytes standing in for Microsoft's CD boot sector."""
    seed = b"pvinstall fake etfsboot"
    data = b"".join(hashlib.sha256(seed + bytes([i])).digest() for i in range(64))
    return data[:2046] + b"\x55\xaa"


def build_windows_style_cd(
    out: Path,
    *,
    arch: Arch,
    payload_bytes: int = 0,
    label: str | None = None,
    version_suffix: bool = False,
    rock_ridge: bool = False,
    txtsetup_utf16: bool = False,
    deploy_cab: bool = True,
) -> Path:
    """Write a retail-shaped fake 2003 CD to `out`.

    `payload_bytes` > 0 adds `<setup dir>/DRIVER.CAB` of that size (a sparse file in the
    tree, real zeros on the CD), for tests and benchmarks of memory use.
    `version_suffix` and `rock_ridge` make a CD that is *not* retail-shaped (`;1` names,
    Rock Ridge), to check that new names follow whatever the CD does.
    `txtsetup_utf16` writes TXTSETUP.SIF as UTF-16LE with a byte-order mark (the form
    setup also reads) instead of Windows-1252.
    """
    with tempfile.TemporaryDirectory(prefix="pvwincd-", dir=out.parent) as tmp_name:
        tree = Path(tmp_name) / "tree"
        fake_2003_tree(tree, arch=arch, deploy_cab=deploy_cab)
        if txtsetup_utf16:
            sif = tree / ("I386" if arch == "x86" else "AMD64") / "TXTSETUP.SIF"
            text = sif.read_bytes().decode("cp1252")
            sif.write_bytes(codecs.BOM_UTF16_LE + text.encode("utf-16-le"))
        (tree / BOOT_DIR).mkdir()
        (tree / BOOT_DIR / BOOT_IMAGE).write_bytes(boot_image())
        if payload_bytes:
            setup_dir = "I386" if arch == "x86" else "AMD64"
            with (tree / setup_dir / "DRIVER.CAB").open("wb") as handle:
                handle.truncate(payload_bytes)
        out.unlink(missing_ok=True)
        subprocess.run(
            [
                "genisoimage",
                "-quiet",
                "-o",
                str(out),
                "-iso-level",
                "2",
                *([] if version_suffix else ["-N"]),
                *(["-r"] if rock_ridge else []),
                "-relaxed-filenames",
                "-D",
                "-J",
                "-joliet-long",
                "-V",
                label or ("WIN2003_X86" if arch == "x86" else "WIN2003_X64"),
                "-b",
                f"{BOOT_DIR}/{BOOT_IMAGE}",
                "-c",
                f"{BOOT_DIR}/BOOT.CAT",
                "-hide",
                BOOT_IMAGE,
                "-hide-joliet",
                BOOT_IMAGE,
                "-no-emul-boot",
                "-boot-load-size",
                "4",
                "-boot-load-seg",
                str(LOAD_SEGMENT),
                str(tree),
            ],
            check=True,
            capture_output=True,
            env={**os.environ, "TZ": "UTC"},
        )
    return out
