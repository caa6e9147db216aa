"""The DVD's copy-on-write overlay (builder/media/overlay.py) on fake DVDs made by
genisoimage, read back by the real tools: `qemu-img info` (qcow2, backing file the ISO,
backing format raw), `qemu-img convert` (the overlay's view of the DVD) and `xorriso
-report_el_torito` (its catalog: the UEFI entry on efisys_noprompt.bin, the BIOS entry
as it was); every other byte equal to the ISO's, the ISO itself unchanged."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from pathlib import Path

import pytest

from builder import cli
from builder.media import iso9660
from tests.fixtures.virtio_win import PROFILE_OS_FOLDERS, make_iso, write_modern_tree
from tests.fixtures.windows_dvd import dvd_for

pytestmark = pytest.mark.integration

SECTOR = 2048


@pytest.fixture(scope="module")
def vw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("vw")
    tree = write_modern_tree(base / "tree", oses=PROFILE_OS_FOLDERS)
    return make_iso(tree, base / "virtio-win.iso").path


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def el_torito(image: Path) -> list[tuple[str, int, int]]:
    """(platform, sector count, LBA) of each boot image, as xorriso reports them."""
    report = subprocess.run(
        ["xorriso", "-indev", str(image), "-report_el_torito", "plain"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rows = re.findall(
        r"El Torito boot img :\s+\d+\s+(\w+)\s+\w\s+\w+\s+\S+\s+\S+\s+(\d+)\s+(\d+)", report
    )
    return [(platform, int(count), int(lba)) for platform, count, lba in rows]


def build(tmp_path: Path, vw: Path, dvd: Path, *sets: str) -> tuple[int, Path, str]:
    out = tmp_path / "out"
    args = ["build", "win2022-x64", "--drivers", str(vw), "--windows-iso", str(dvd)]
    args += ["--out", str(out), "--json", "--set", "admin_password=Sup3r-secret"]
    for setting in sets:
        args += ["--set", setting]
    code = cli.main(args)
    return code, out, ""


def test_the_overlay_boots_efisys_noprompt_and_leaves_the_dvd_alone(
    tmp_path: Path, vw: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dvd = dvd_for("2022").path
    before = sha256(dvd)
    code, out, _ = build(tmp_path, vw, dvd)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    overlay = out / "install-dvd.qcow2"
    info = json.loads(
        subprocess.run(
            ["qemu-img", "info", "--output=json", str(overlay)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    assert info["format"] == "qcow2"
    assert info["backing-filename"] == str(dvd.absolute())
    assert info["backing-filename-format"] == "raw"
    assert info["virtual-size"] == dvd.stat().st_size
    # Small: one 64 KiB cluster of data besides qcow2's own tables.
    assert overlay.stat().st_size < 512 * 1024
    assert sha256(dvd) == before

    # What the guest reads through the overlay.
    view = tmp_path / "view.iso"
    subprocess.run(
        ["qemu-img", "convert", "-f", "qcow2", "-O", "raw", str(overlay), str(view)], check=True
    )
    media = iso9660.read_install_media(dvd)
    assert media.noprompt is not None and media.boot_catalog is not None
    original, seen = el_torito(dvd), el_torito(view)
    assert original[0] == seen[0] and original[0][0] == "BIOS"  # the BIOS entry as it was
    assert original[1] == ("UEFI", 1, original[1][2])
    assert seen[1] == ("UEFI", 1, media.noprompt.lba)  # now on efisys_noprompt.bin
    with dvd.open("rb") as a, view.open("rb") as b:
        catalog = media.boot_catalog[0]
        differing = {
            index
            for index, (x, y) in enumerate(
                zip(
                    iter(lambda: a.read(SECTOR), b""),
                    iter(lambda: b.read(SECTOR), b""),
                    strict=True,
                )
            )
            if x != y
        }
    assert differing == {catalog}

    # The same inputs give the same overlay.
    again = tmp_path / "again"
    code = cli.main(
        [
            "build",
            "win2022-x64",
            "--drivers",
            str(vw),
            "--windows-iso",
            str(dvd),
            "--out",
            str(again),
            "--set",
            "admin_password=Sup3r-secret",
        ]
    )
    capsys.readouterr()
    assert code == 0
    assert sha256(again / "install-dvd.qcow2") == sha256(overlay)


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"noprompt": False}, "has no efi/microsoft/boot/efisys_noprompt.bin"),
    ],
)
def test_a_dvd_without_efisys_noprompt_is_refused_for_uefi(
    tmp_path: Path,
    vw: Path,
    capsys: pytest.CaptureFixture[str],
    changes: dict[str, object],
    says: str,
) -> None:
    dvd = dvd_for("2022", **changes).path
    code, out, _ = build(tmp_path, vw, dvd)
    captured = capsys.readouterr()
    assert code == 2
    assert says in captured.out and "--windows-iso" in captured.out
    assert not out.exists()
    # BIOS boots the BIOS entry: the same DVD builds.
    code, out, _ = build(tmp_path, vw, dvd, "firmware=bios")
    capsys.readouterr()
    assert code == 0 and (out / "install-dvd.qcow2").is_file()
