"""The DVD's overlay writer (builder/media/overlay.py) with qemu-img and qemu-io (the
oracle tier): what it refuses, an overlay that changes nothing, one that changes one
sector; the real DVDs are in tests/integration/test_install_dvd_overlay.py."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from builder.media import overlay
from builder.media.files import OverlayPlan


def info(path: Path) -> dict[str, object]:
    done = subprocess.run(
        ["qemu-img", "info", "--output=json", str(path)], capture_output=True, text=True, check=True
    )
    return dict(json.loads(done.stdout))


def view(path: Path, tmp_path: Path) -> bytes:
    raw = tmp_path / "view.raw"
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(path), str(raw)], check=True)
    return raw.read_bytes()


@pytest.fixture
def iso(tmp_path: Path) -> Path:
    path = tmp_path / "dvd.iso"
    path.write_bytes(bytes(range(256)) * 8 * 64)  # 64 sectors of a pattern
    return path


def test_an_overlay_that_changes_nothing_reads_as_its_backing_file(
    iso: Path, tmp_path: Path
) -> None:
    out = tmp_path / "install-dvd.qcow2"
    overlay.write_install_dvd_overlay(OverlayPlan(0, None, "as it is"), out, backing=iso)
    found = info(out)
    assert (found["format"], found["backing-filename-format"]) == ("qcow2", "raw")
    assert found["backing-filename"] == str(iso)
    assert view(out, tmp_path) == iso.read_bytes()


def test_the_patched_sector_and_nothing_else_differs(iso: Path, tmp_path: Path) -> None:
    before = iso.read_bytes()
    sector = b"\xee" * 2048
    out = tmp_path / "install-dvd.qcow2"
    overlay.write_install_dvd_overlay(OverlayPlan(20 * 2048, sector, "catalog"), out, backing=iso)
    seen = view(out, tmp_path)
    assert seen[20 * 2048 : 21 * 2048] == sector
    assert seen[: 20 * 2048] == before[: 20 * 2048] and seen[21 * 2048 :] == before[21 * 2048 :]
    assert iso.read_bytes() == before  # the ISO is never written


@pytest.mark.parametrize(
    ("plan", "backing", "says"),
    [
        (OverlayPlan(0, None, ""), Path("dvd.iso"), "absolute path"),
        (OverlayPlan(100, b"\0" * 2048, ""), None, "whole 2048-byte sector"),
        (OverlayPlan(2048, b"\0" * 512, ""), None, "whole 2048-byte sector"),
    ],
)
def test_what_the_writer_refuses(
    iso: Path, tmp_path: Path, plan: OverlayPlan, backing: Path | None, says: str
) -> None:
    with pytest.raises(ValueError, match=says):
        overlay.write_install_dvd_overlay(plan, tmp_path / "o.qcow2", backing=backing or iso)
