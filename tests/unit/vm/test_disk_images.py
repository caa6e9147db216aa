"""Disk images (builder/vm/disk_images.py), made and read by the real qemu-img."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from builder.errors import BuildError
from builder.vm import disk_images

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _qemu_img() -> None:
    if shutil.which("qemu-img") is None:
        pytest.skip("qemu-img is not installed")


def test_a_new_qcow2_has_its_size_and_format(tmp_path: Path) -> None:
    image = tmp_path / "disk.qcow2"
    disk_images.create_qcow2(image, "64M")
    info = json.loads(
        subprocess.run(
            ["qemu-img", "info", "--output=json", str(image)], capture_output=True, check=True
        ).stdout
    )
    assert (info["format"], info["virtual-size"]) == ("qcow2", 64 * 1024**2)
    assert disk_images.image_format(image) == "qcow2"


def test_a_raw_image_is_raw_and_a_failure_is_a_sentence(tmp_path: Path) -> None:
    raw = tmp_path / "disk.raw"
    raw.write_bytes(bytes(4096))
    assert disk_images.image_format(raw) == "raw"
    with pytest.raises(BuildError, match="qemu-img failed with exit code"):
        disk_images.create_qcow2(tmp_path / "no-such-dir" / "x.qcow2", "1M")
