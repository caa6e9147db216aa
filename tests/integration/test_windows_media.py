"""Windows install media read in place, against the real tools: the WIM reader against
`wimlib-imagex info`, the DVD reader against xorriso (El Torito), udfinfo (UDF) and
isoinfo (ISO 9660), and the bytes it reads from a DVD whose install.wim is large."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from builder.errors import InputError
from builder.media.iso9660 import read_install_media
from builder.windows.wim import read_wim
from tests.fixtures.windows_dvd import WimSpec, dvd_for, etfsboot_bytes, windows_dvd, windows_wim

pytestmark = pytest.mark.integration

SPECS = [
    WimSpec(release="2012R2"),
    WimSpec(release="2016", kind="integrity"),
    WimSpec(release="2019", evaluation=True),
    WimSpec(release="2022", languages=("de-DE", "en-US", "fr-FR")),
    WimSpec(release="2022", kind="esd"),
    WimSpec(release="2025", kind="lzms"),
]

# `wimlib-imagex info` labels -> (WimImage attribute, how to read wimlib's text)
ARCHES = {"x86_64": "amd64", "x86": "x86", "ARM64": "arm64"}
FIELDS: dict[str, tuple[str, Callable[[str], object]]] = {
    "Index": ("index", int),
    "Name": ("name", str),
    "Description": ("description", str),
    "Display Name": ("display_name", str),
    "Flags": ("flags", str),
    "Edition ID": ("edition_id", str),
    "Installation Type": ("installation_type", str),
    "Product Type": ("product_type", str),
    "Architecture": ("arch", ARCHES.__getitem__),
    "Languages": ("languages", lambda text: tuple(text.split())),
    "Default Language": ("default_language", str),
    "Major Version": ("major", int),
    "Minor Version": ("minor", int),
    "Build": ("build", int),
    "Service Pack Build": ("sp_build", int),
}


def wimlib_info(path: Path) -> tuple[dict[str, str], list[dict[str, str]]]:
    out = subprocess.run(
        ["wimlib-imagex", "info", str(path)], check=True, capture_output=True, text=True
    ).stdout
    header: dict[str, str] = {}
    images: list[dict[str, str]] = []
    for line in out.splitlines():
        key, sep, value = line.partition(":")
        if not sep or not value.strip():
            continue
        key, value = key.strip(), value.strip()
        if key == "Index":
            images.append({})
        (images[-1] if images else header)[key] = value
    return header, images


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{s.release}-{s.kind}")
def test_the_wim_reader_agrees_with_wimlib(spec: WimSpec) -> None:
    path = windows_wim(spec).path
    with path.open("rb") as handle:
        info = read_wim(handle, path.stat().st_size)
    header, images = wimlib_info(path)
    assert header["GUID"] == f"0x{info.guid}"
    assert int(header["Version"]) == info.version
    assert int(header["Image Count"]) == len(info.images)
    assert header["Compression"] == info.compression
    assert header["Chunk Size"] == f"{info.chunk_size} bytes"
    assert int(header["Boot Index"]) == info.boot_index
    assert len(images) == len(info.images)
    for theirs, ours in zip(images, info.images, strict=True):
        for label, (attribute, convert) in FIELDS.items():
            assert convert(theirs[label]) == getattr(ours, attribute), (label, ours.index)


def test_wimlib_refuses_what_the_reader_refuses_as_damaged() -> None:
    # Truncated and not-a-WIM files are format errors for wimlib too; split parts and
    # empty WIMs are pvinstall's policy (wimlib shows them), tested in the unit tests.
    for kind in ("truncated", "not-a-wim"):
        path = windows_wim(WimSpec(kind=kind)).path
        done = subprocess.run(
            ["wimlib-imagex", "info", str(path)], check=False, capture_output=True
        )
        assert done.returncode != 0, kind


# -- the DVD -------------------------------------------------------------------------------


# "El Torito boot img :   1  BIOS  y   none  0x0000  0x00      8         295"
_EL_TORITO_LINE = re.compile(
    r"El Torito boot img :\s+\d+\s+(\w+)\s+\w\s+\w+\s+0x[0-9a-f]+\s+0x[0-9a-f]+\s+(\d+)\s+(\d+)"
)


def xorriso_el_torito(path: Path) -> list[tuple[str, int, int]]:
    """(platform, load size, LBA) of every El Torito image, as xorriso reports them."""
    out = subprocess.run(
        ["xorriso", "-indev", str(path), "-report_el_torito", "plain"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    found = []
    for line in out.splitlines():
        match = re.match(_EL_TORITO_LINE, line)
        if match:
            found.append((match.group(1).lower(), int(match.group(2)), int(match.group(3))))
    return found


@pytest.mark.parametrize("release", ["2012R2", "2016", "2019", "2022", "2025"])
def test_a_dvd_is_read_as_the_tools_see_it(release: str) -> None:
    dvd = dvd_for(release)
    media = read_install_media(dvd.path)
    # UDF: udfinfo reads the same volume; ISO 9660 holds README.TXT only, as on
    # Microsoft's DVDs, so everything pvinstall read came from UDF.
    udf = subprocess.run(["udfinfo", str(dvd.path)], check=True, capture_output=True, text=True)
    assert f"label={media.label}" in udf.stdout and "udfrev=1.02" in udf.stdout
    listing = subprocess.run(
        ["isoinfo", "-i", str(dvd.path), "-f"], check=True, capture_output=True, text=True
    ).stdout.split()
    assert listing == ["/README.TXT;1"]
    assert media.udf and media.setup == "windows-setup"
    assert media.install_image == "sources/install.wim"
    assert [(i.name, i.edition_id, i.installation_type, i.build) for i in media.images] == [
        (i.name, i.edition_id, i.installation_type, i.build) for i in dvd.images
    ]
    # El Torito: what xorriso reports, and the files behind the LBAs.
    assert [(b.platform, b.sectors, b.lba) for b in media.boot] == xorriso_el_torito(dvd.path)
    assert [(b.file, b.size) for b in media.boot] == [
        ("boot/etfsboot.com", 4096),
        ("efi/microsoft/boot/efisys.bin", dvd.efisys_size),
    ]
    with dvd.path.open("rb") as raw:
        raw.seek(media.boot[0].lba * 2048)
        assert raw.read(4096) == etfsboot_bytes()
    assert media.efisys_noprompt


def test_names_are_found_case_blind_and_the_esd_is_read() -> None:
    upper = read_install_media(dvd_for("2019", upper=True).path)
    assert upper.install_image == "SOURCES/INSTALL.WIM" and len(upper.images) == 4
    esd = read_install_media(dvd_for("2022", kind="esd").path)
    assert esd.install_image == "sources/install.esd" and esd.wim is not None
    assert esd.wim.compression == "LZMS"
    assert not read_install_media(dvd_for("2022", noprompt=False).path).efisys_noprompt


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"sources": False}, "has no sources/ folder, so it is not a Windows Setup DVD"),
        ({"kind": "esd", "install_name": "other.esd"}, "no sources/install.wim or install.esd"),
        ({"kind": "split"}, "install.swm: it is part 1 of a 2-part split WIM"),
        ({"kind": "empty"}, "install.wim: it holds no images"),
        ({"kind": "truncated"}, "install.wim: it is truncated"),
        ({"kind": "not-a-wim"}, "install.wim: it is not a WIM file"),
        ({"kind": "encrypted"}, "install.esd: it is an encrypted ESD"),
    ],
)
def test_a_dvd_pvinstall_cannot_use_is_an_input_error(
    changes: dict[str, object], fragment: str
) -> None:
    dvd = dvd_for("2022", **changes)
    with pytest.raises(InputError) as caught:
        read_install_media(dvd.path)
    assert caught.value.exit_code == 2
    problem = caught.value.problems[0]
    assert problem.key == "--windows-iso"
    assert str(dvd.path) in problem.message and fragment in problem.message
    assert problem.hint


def test_a_truncated_or_foreign_file_is_an_input_error(tmp_path: Path) -> None:
    dvd = windows_dvd()
    cut = tmp_path / "cut.iso"
    cut.write_bytes(dvd.path.read_bytes()[: 300 * 2048])
    text = tmp_path / "notes.iso"
    text.write_text("not an image\n")
    for path, fragment in (
        (cut, "is truncated"),
        (text, "not an ISO 9660 image"),
        (tmp_path / "missing.iso", "does not exist"),
        (tmp_path, "is not a file"),
    ):
        with pytest.raises(InputError, match=fragment):
            read_install_media(path)


def _rchar() -> int:
    with Path("/proc/self/io").open() as handle:
        return int(next(line for line in handle if line.startswith("rchar")).split()[1])


def test_a_large_install_wim_is_never_read_whole() -> None:
    """A DVD whose install.wim holds 48 MiB of incompressible data: reading it costs the
    UDF descriptors, the directories, the WIM header and XML (well under 2 MiB), never
    the image data. Counted by the kernel (/proc/self/io), so it cannot pass by accident."""
    dvd = dvd_for("2022", payload_mib=48)
    assert dvd.path.stat().st_size > 48 * 2**20
    before = _rchar()
    media = read_install_media(dvd.path)
    read = _rchar() - before
    assert len(media.images) == 4
    assert read < 2 * 2**20, f"read {read} bytes of a {dvd.path.stat().st_size}-byte DVD"
