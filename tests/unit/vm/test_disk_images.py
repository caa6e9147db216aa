"""Disk images (builder/vm/disk_images.py), made and read by the real qemu-img: new images
are private, and an image to attach is what qemu-img reads it as, never what QEMU would
guess, with no backing file outside its folder."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from builder.errors import BuildError, InputError
from builder.vm import disk_images

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _qemu_img() -> None:
    if shutil.which("qemu-img") is None:
        pytest.skip("qemu-img is not installed")


def qemu_img(*args: str | Path) -> None:
    subprocess.run(["qemu-img", *map(str, args)], check=True, capture_output=True)


def test_a_new_qcow2_has_its_size_and_format_and_is_private(tmp_path: Path) -> None:
    image = tmp_path / "disk.qcow2"
    old = os.umask(0)  # even with nothing masked, the image is 0600
    try:
        disk_images.create_qcow2(image, "64M")
    finally:
        os.umask(old)
    info = json.loads(
        subprocess.run(
            ["qemu-img", "info", "--output=json", str(image)], capture_output=True, check=True
        ).stdout
    )
    assert (info["format"], info["virtual-size"]) == ("qcow2", 64 * 1024**2)
    assert disk_images.image_format(image) == "qcow2"
    assert stat.S_IMODE(image.stat().st_mode) == 0o600


def test_an_existing_file_or_link_is_never_overwritten(tmp_path: Path) -> None:
    target = tmp_path / "precious"
    target.write_bytes(b"precious")
    (tmp_path / "link.qcow2").symlink_to(target)
    for path in (target, tmp_path / "link.qcow2"):
        with pytest.raises(BuildError, match="appeared"):
            disk_images.create_qcow2(path, "1M")
    assert target.read_bytes() == b"precious"


def test_a_raw_image_is_raw_and_a_failure_is_a_sentence(tmp_path: Path) -> None:
    raw = tmp_path / "disk.raw"
    raw.write_bytes(bytes(4096))
    assert disk_images.image_format(raw) == "raw"
    with pytest.raises(BuildError, match="cannot create the disk image"):
        disk_images.create_qcow2(tmp_path / "no-such-dir" / "x.qcow2", "1M")
    with pytest.raises(BuildError, match="qemu-img failed with exit code"):
        disk_images.create_qcow2(tmp_path / "huge.qcow2", "99999999999999G")
    assert not (tmp_path / "huge.qcow2").exists()


# -- what attach --source hands to libvirt ----------------------------------------------


BACKING_FORMAT_EXTENSION = 0xE2792ACA  # qcow2's header extension "backing file format"


def forget_backing_format(image: Path) -> None:
    """Make `image` a qcow2 whose header names its backing file but not its format, as
    images of old qemu-img versions are (today's qemu-img refuses to make one)."""
    data = bytearray(image.read_bytes()[:65536])
    offset = int.from_bytes(data[100:104], "big")  # qcow2 v3: the header's length
    while True:
        kind = int.from_bytes(data[offset : offset + 4], "big")
        length = int.from_bytes(data[offset + 4 : offset + 8], "big")
        assert kind != 0, "no backing format extension"
        if kind == BACKING_FORMAT_EXTENSION:
            data[offset : offset + 4] = (0x0BADF00D).to_bytes(4, "big")  # unknown: ignored
            break
        offset += 8 + (length + 7) // 8 * 8
    with image.open("r+b") as handle:
        handle.write(bytes(data))


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of images: raw, qcow2, a chain inside the folder, and hostile ones (read
    only: made once for all the tests)."""
    if shutil.which("qemu-img") is None:
        pytest.skip("qemu-img is not installed")
    tmp_path = tmp_path_factory.mktemp("images")
    folder = tmp_path / "images"
    folder.mkdir()

    def hostile(name: str, backing: str, backing_format: str) -> None:
        # -u: the backing file is named, never opened (qemu-img would read /etc/shadow).
        qemu_img("create", "-q", "-f", "qcow2", "-u", "-b", backing, "-F", backing_format,
                 folder / name, "16M")  # fmt: skip

    (folder / "plain.raw").write_bytes(bytes(1024 * 1024))
    qemu_img("create", "-q", "-f", "qcow2", folder / "plain.qcow2", "16M")
    qemu_img("create", "-q", "-f", "qcow2", folder / "base.qcow2", "16M")
    qemu_img("create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", folder / "top.qcow2")
    qemu_img("create", "-q", "-f", "qcow2", "-b", "plain.raw", "-F", "raw", folder / "on-raw.qcow2")
    # The case: a ".raw" that holds a qcow2 header backed by a host file.
    hostile("evil.raw", "/etc/shadow", "raw")
    (tmp_path / "outside.raw").write_bytes(bytes(4096))
    hostile("up.qcow2", "../outside.raw", "raw")
    (folder / "escape.raw").symlink_to(tmp_path / "outside.raw")
    hostile("via-link.qcow2", "escape.raw", "raw")
    qemu_img(
        "create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", folder / "unsaid.qcow2"
    )
    forget_backing_format(folder / "unsaid.qcow2")
    qemu_img(
        "create",
        "-q",
        "-f",
        "qcow2",
        "-u",
        "-b",
        'json:{"file.filename":"/etc/shadow"}',
        "-F",
        "raw",
        folder / "json.qcow2",
        "16M",
    )
    qemu_img(
        "create",
        "-q",
        "-f",
        "qcow2",
        "-u",
        "-b",
        "gone.qcow2",
        "-F",
        "qcow2",
        folder / "dangling.qcow2",
        "16M",
    )
    qemu_img("create", "-q", "-f", "vmdk", folder / "disk.vmdk", "16M")
    # A loop: a.qcow2 -> b.qcow2 -> a.qcow2 (only an unsafe rebase can make one).
    qemu_img("create", "-q", "-f", "qcow2", folder / "a.qcow2", "16M")
    qemu_img("create", "-q", "-f", "qcow2", "-b", "a.qcow2", "-F", "qcow2", folder / "b.qcow2")
    qemu_img("rebase", "-u", "-b", "b.qcow2", "-F", "qcow2", folder / "a.qcow2")
    # A chain longer than the bound.
    previous = "plain.qcow2"
    for index in range(disk_images.MAX_CHAIN + 1):
        name = f"long{index}.qcow2"
        qemu_img("create", "-q", "-f", "qcow2", "-b", previous, "-F", "qcow2", folder / name)
        previous = name
    return folder


ACCEPTED = [
    ("plain.raw", None, "raw", ()),
    ("plain.qcow2", None, "qcow2", ()),
    ("top.qcow2", None, "qcow2", (("base.qcow2", "qcow2"),)),
    ("on-raw.qcow2", None, "qcow2", (("plain.raw", "raw"),)),
    ("plain.qcow2", "qcow2", "qcow2", ()),
    # --format raw: the bytes as they are, a qcow2 header and its backing name included.
    ("evil.raw", "raw", "raw", ()),
    ("top.qcow2", "raw", "raw", ()),
]


@pytest.mark.parametrize(("image", "declared", "found", "chain"), ACCEPTED)
def test_images_attach_as_what_they_are(
    images: Path, image: str, declared: str | None, found: str, chain: tuple[tuple[str, str], ...]
) -> None:
    probed = disk_images.probe_image(images / image, declared)
    assert probed.format == found
    assert tuple((p.name, f) for p, f in probed.chain) == chain


REFUSED = [
    ("evil.raw", None, "is backed by /etc/shadow, outside the image's folder", "--format raw"),
    ("up.qcow2", None, "is backed by ../outside.raw (", "flatten"),
    ("via-link.qcow2", None, "is backed by escape.raw (", "flatten"),
    ("json.qcow2", None, "outside the image's folder", "--format raw"),
    ("unsaid.qcow2", None, "which does not say its format", "qemu-img rebase -u -F"),
    ("dangling.qcow2", None, "gone.qcow2, which does not exist", None),
    ("a.qcow2", None, "loops at", None),
    (
        f"long{disk_images.MAX_CHAIN}.qcow2",
        None,
        f"more than {disk_images.MAX_CHAIN} images",
        "Flatten",
    ),
    ("disk.vmdk", None, "is a vmdk image; pvinstall attaches raw and qcow2", "qemu-img convert"),
    ("plain.raw", "qcow2", "is not a qcow2 image", "--format"),
    ("plain.raw", "vmdk", "'vmdk' is not a format pvinstall attaches", "--format raw"),
]


@pytest.mark.parametrize(("image", "declared", "words", "hint"), REFUSED)
def test_hostile_or_unclear_images_are_refused(
    images: Path, image: str, declared: str | None, words: str, hint: str | None
) -> None:
    with pytest.raises(InputError) as refused:
        disk_images.probe_image(images / image, declared)
    (problem,) = refused.value.problems
    assert words in problem.message, problem
    assert problem.key in ("--source", "--format")
    if hint is not None:
        assert problem.hint is not None and hint in problem.hint, problem


def test_an_unsafe_rebase_names_a_path_that_need_not_exist_and_its_format(tmp_path: Path) -> None:
    iso = tmp_path / "dvd.iso"
    iso.write_bytes(b"\x5a" * (1 << 20))
    overlay = tmp_path / "over.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", "-F", "raw", "-b", iso, overlay)
    before = overlay.read_bytes()
    host = "/var/lib/libvirt/images/nowhere-here/dom-windows.iso"
    disk_images.rebase_unsafe(overlay, host, "raw")
    info = json.loads(
        subprocess.run(
            ["qemu-img", "info", "-U", "--output=json", "-f", "qcow2", str(overlay)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    assert info["backing-filename"] == host and info["backing-filename-format"] == "raw"
    assert len(overlay.read_bytes()) == len(before)  # only the header changed
