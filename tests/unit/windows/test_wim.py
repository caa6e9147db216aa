"""The WIM reader (builder/windows/wim.py): what it reads from real WIMs made by
wimlib-imagex (the fixture's ground truth), what it refuses, and that it reads only the
header and the XML.

The comparison with `wimlib-imagex info` itself is tests/integration/test_windows_media.py.
"""

from __future__ import annotations

import io
import struct
from pathlib import Path

import pytest

from builder.windows import wim
from builder.windows.wim import WimError, WimInfo, read_wim
from tests.fixtures.windows_dvd import (
    ImageTruth,
    WimSpec,
    release_images,
    windows_wim,
)

XML_AT = 0x48  # the XML resource header inside the WIM header


def read(data: bytes) -> WimInfo:
    return read_wim(io.BytesIO(data), len(data))


def good() -> bytes:
    return windows_wim(WimSpec(release="2022")).path.read_bytes()


def xml_of(data: bytes) -> str:
    size = int.from_bytes(data[XML_AT : XML_AT + 7], "little")
    (offset,) = struct.unpack_from("<Q", data, XML_AT + 8)
    return data[offset : offset + size].decode("utf-16-le").removeprefix("\ufeff")


def with_xml(data: bytes, xml: str, *, flags: int = 0x02, bom: bool = True, cut: int = 0) -> bytes:
    """`data` with a new XML resource appended and the header pointing at it."""
    body = (("\ufeff" if bom else "") + xml).encode("utf-16-le")
    size = len(body) - cut
    header = size.to_bytes(7, "little") + bytes([flags]) + struct.pack("<QQ", len(data), size)
    return data[:XML_AT] + header + data[XML_AT + 24 :] + body


def patch(data: bytes, offset: int, fmt: str, value: int) -> bytes:
    return data[:offset] + struct.pack(fmt, value) + data[offset + struct.calcsize(fmt) :]


def assert_images(info: WimInfo, truth: tuple[ImageTruth, ...]) -> None:
    assert [i.index for i in info.images] == [t.index for t in truth]
    for image, expected in zip(info.images, truth, strict=True):
        assert image.name == expected.name
        assert image.description == expected.description
        assert image.display_name == expected.display_name
        assert image.flags == expected.flags
        assert image.edition_id == expected.edition_id
        assert image.installation_type == expected.installation_type
        assert image.arch == "amd64"
        assert (image.major, image.minor, image.build) == (
            expected.major,
            expected.minor,
            expected.build,
        )
        assert image.sp_build == expected.sp_build
        assert image.languages == expected.languages
        assert image.default_language == expected.default_language


# -- what it reads ---------------------------------------------------------------------------


@pytest.mark.parametrize("release", ["2012R2", "2016", "2019", "2022", "2025"])
def test_every_release_s_four_images(release: str) -> None:
    made = windows_wim(WimSpec(release=release))
    info = read(made.path.read_bytes())
    assert_images(info, made.images)
    assert (info.kind, info.compression, info.version) == ("wim", "LZX", 0x10D00)
    assert (
        info.images[0].version
        == {
            "2012R2": "6.3.9600",
            "2016": "10.0.14393",
            "2019": "10.0.17763",
            "2022": "10.0.20348",
            "2025": "10.0.26100",
        }[release]
    )


@pytest.mark.parametrize(
    ("kind", "version", "compression"),
    [("esd", 0xE00, "LZMS"), ("lzms", 0xE00, "LZMS"), ("integrity", 0x10D00, "LZX")],
)
def test_esd_lzms_and_integrity_table_read_like_a_wim(
    kind: str, version: int, compression: str
) -> None:
    made = windows_wim(WimSpec(kind=kind))  # type: ignore[arg-type]
    info = read(made.path.read_bytes())
    assert (info.version, info.compression) == (version, compression)
    assert_images(info, made.images)


def test_evaluation_media_and_several_languages() -> None:
    made = windows_wim(WimSpec(release="2019", evaluation=True, languages=("de-DE", "en-US")))
    info = read(made.path.read_bytes())
    assert_images(info, made.images)
    image = info.images[0]
    assert image.edition_id == "ServerStandardEval" and image.evaluation
    assert image.edition == "ServerStandard"
    assert image.languages == ("de-DE", "en-US") and image.language == "de-DE"
    assert not read(good()).images[0].evaluation


def test_the_xml_is_found_where_the_header_says_and_without_a_bom() -> None:
    data = good()
    moved = with_xml(data, xml_of(data), bom=False)
    assert [i.name for i in read(moved).images] == [i.name for i in read(data).images]


def test_elements_are_read_by_name_not_position() -> None:
    # Windows writes WINDOWS first, wimlib NAME first: both orders read the same.
    data = good()
    xml = xml_of(data)
    start = xml.index("<WINDOWS>")
    end = xml.index("</WINDOWS>") + len("</WINDOWS>")
    first = xml.index('<IMAGE INDEX="1">') + len('<IMAGE INDEX="1">')
    reordered = xml[:first] + xml[start:end] + xml[first:start] + xml[end:]
    assert read(with_xml(data, reordered)).images[0] == read(data).images[0]


class CountingStream(io.BytesIO):
    """Counts the bytes read, so a test sees what the reader asked for."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.bytes_read = 0

    def read(self, size: int | None = -1) -> bytes:
        chunk = super().read(size)
        self.bytes_read += len(chunk)
        return chunk


def test_only_the_header_and_the_xml_are_read() -> None:
    """A WIM with 32 MiB of image data: the reader takes the 208-byte header and the
    XML resource and nothing else, wherever the data is."""
    made = windows_wim(WimSpec(release="2022", payload_mib=32))
    data = made.path.read_bytes()
    assert len(data) > 32 * 2**20
    xml_size = int.from_bytes(data[XML_AT : XML_AT + 7], "little")
    stream = CountingStream(data)
    info = read_wim(stream, len(data))
    assert_images(info, made.images)
    assert stream.bytes_read == wim.HEADER.size + xml_size


# -- what it refuses -------------------------------------------------------------------------


def _variants() -> dict[str, tuple[bytes, str]]:
    data = good()
    xml = xml_of(data)
    flags = struct.unpack_from("<I", data, 16)[0]
    return {
        "empty file": (b"", "not a WIM file"),
        "text": (b"This is not a WIM\r\n", "not a WIM file"),
        "pipable": (b"WLPWM\0\0\0" + data[8:], "pipable"),
        "version 0xb00": (patch(data, 12, "<I", 0x0B00), "version 0xb00"),
        "header size 200": (patch(data, 8, "<I", 200), "size 200"),
        "split part": (patch(data, 42, "<H", 2), "part 1 of a 2-part split WIM"),
        "spanned flag": (patch(data, 16, "<I", flags | 0x08), "split WIM"),
        "being written": (patch(data, 16, "<I", flags | 0x40), "while it was being written"),
        "no images": (patch(data, 44, "<I", 0), "holds no images"),
        "count 5 for 4 images": (patch(data, 44, "<I", 5), "says 5 images"),
        "compressed XML": (with_xml(data, xml, flags=0x06), "XML data is compressed"),
        "truncated": (data[: len(data) - 100], "truncated"),
        "odd XML size": (with_xml(data, xml, cut=1), "impossible size"),
        "encrypted ESD": (
            with_xml(data, xml.replace("<WIM>", "<WIM><ESD><ENCRYPTED/></ESD>", 1)),
            "encrypted ESD",
        ),
        "repeated index": (
            with_xml(data, xml.replace('INDEX="2"', 'INDEX="1"', 1)),
            "repeated IMAGE INDEX",
        ),
        "a DTD": (with_xml(data, '<!DOCTYPE WIM [<!ENTITY a "b">]>' + xml), "declares a DTD"),
        "damaged XML": (with_xml(data, xml[: len(xml) // 2]), "XML data is damaged"),
        "another root": (
            with_xml(data, xml.replace("<WIM>", "<XIM>").replace("</WIM>", "</XIM>")),
            "root <XIM>",
        ),
        "a build that is no number": (
            with_xml(data, xml.replace("<BUILD>", "<BUILD>x", 1)),
            "BUILD = 'x20348', which is not a number",
        ),
        "not UTF-16": (
            data[:XML_AT]
            + (2).to_bytes(7, "little")
            + b"\x02"
            + struct.pack("<QQ", len(data), 2)
            + data[XML_AT + 24 :]
            + b"\x00\xd8",
            "not UTF-16",
        ),
    }


VARIANTS = _variants()


@pytest.mark.parametrize("name", list(VARIANTS))
def test_what_windows_setup_cannot_use_is_refused_with_a_clause(name: str) -> None:
    data, fragment = VARIANTS[name]
    with pytest.raises(WimError) as caught:
        read(data)
    message = str(caught.value)
    assert fragment in message
    assert message.startswith(("it ", "its ")) and not message.endswith(".")


@pytest.mark.parametrize(
    ("kind", "fragment"),
    [
        ("split", "split WIM"),
        ("empty", "holds no images"),
        ("truncated", "truncated"),
        ("not-a-wim", "not a WIM file"),
        ("encrypted", "encrypted ESD"),
    ],
)
def test_the_fixture_s_broken_files_are_refused(kind: str, fragment: str) -> None:
    path: Path = windows_wim(WimSpec(kind=kind)).path  # type: ignore[arg-type]
    with pytest.raises(WimError, match=fragment), path.open("rb") as handle:
        read_wim(handle, path.stat().st_size)


def test_the_fixture_images_are_the_public_dumps() -> None:
    # What the image table of docs/windows-modern.md says of a 2022 DVD.
    images = release_images("2022")
    assert [(i.name, i.edition_id, i.installation_type, i.flags) for i in images] == [
        (
            "Windows Server 2022 SERVERSTANDARDCORE",
            "ServerStandard",
            "Server Core",
            "ServerStandardCore",
        ),
        ("Windows Server 2022 SERVERSTANDARD", "ServerStandard", "Server", "ServerStandard"),
        (
            "Windows Server 2022 SERVERDATACENTERCORE",
            "ServerDatacenter",
            "Server Core",
            "ServerDataCenterCore",
        ),
        ("Windows Server 2022 SERVERDATACENTER", "ServerDatacenter", "Server", "ServerDataCenter"),
    ]
