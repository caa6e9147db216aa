"""The Windows imaging format: what an install.wim (or install.esd) says about its
images, read from its header and its XML resource with the standard library (pure over
a binary stream).

A WIM starts with a 208-byte header (magic `MSWIM\\0\\0\\0`, version, flags, chunk size,
GUID, part numbers, image count, then 24-byte resource headers: blob table, XML data,
boot metadata, boot index, integrity table). The XML data is UTF-16LE text describing
every image (NAME, EDITIONID, INSTALLATIONTYPE, VERSION, ARCH, LANGUAGES ...). `read_wim`
reads exactly those two pieces, wherever the header says the XML is, and nothing of the
image data, so a 5 GB install.wim on a DVD costs two small reads. docs/windows-modern.md
§2 has the format and where it is documented.

Everything Windows Setup could not use is refused with a `WimError` whose message is a
clause ("it is part 1 of a 2-part split WIM ..."), for the caller to prefix with the
file it read.
"""

from __future__ import annotations

import re
import struct
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import IO

# struct wim_header_disk (wimlib include/wimlib/header.h): 208 bytes, little-endian.
HEADER = struct.Struct("<8sIIII16sHHI24s24s24sI24s60x")
# struct wim_reshdr_disk: a 56-bit stored size, a flags byte, the offset from the start
# of the file, the original (uncompressed) size.
RESOURCE_HEADER = struct.Struct("<7sBQQ")
MAGIC = b"MSWIM\0\0\0"
PIPABLE_MAGIC = b"WLPWM\0\0\0"  # wimlib's pipable WIMs, which Windows cannot read

# Header versions: 0x10d00 every WIM; 0xe00 "solid" (LZMS, as install.esd is), Windows 8+.
VERSIONS = {0x10D00: "wim", 0x0E00: "solid"}
HEADER_SPANNED = 0x08  # a part of a split WIM (.swm)
HEADER_WRITE_IN_PROGRESS = 0x40
COMPRESSION = {0x20000: "XPRESS", 0x40000: "LZX", 0x80000: "LZMS", 0x200000: "XPRESS2"}
RESOURCE_COMPRESSED = 0x04
RESOURCE_SOLID = 0x10

# Real install.wim XML is 10 to 100 KiB; a hostile header may claim anything.
MAX_XML_BYTES = 16 * 2**20
# WINDOWS/ARCH: PROCESSOR_ARCHITECTURE_* values, named as the profiles name them.
ARCHES = {0: "x86", 5: "arm", 6: "ia64", 9: "amd64", 12: "arm64"}
# Evaluation media carry the edition with this suffix (ServerStandardEval).
EVALUATION_SUFFIX = "Eval"

_NUMBER = re.compile(r"(0[xX][0-9a-fA-F]+|[0-9]+)")


class WimError(ValueError):
    """The stream is not a WIM Windows Setup can install from; the message says why, as
    a clause about "it" (the file)."""


@dataclass(frozen=True)
class WimImage:
    """One image of a WIM, as its XML describes it ("" or None where it says nothing)."""

    index: int
    name: str
    description: str
    display_name: str
    flags: str
    edition_id: str
    installation_type: str
    product_type: str
    arch: str
    major: int | None
    minor: int | None
    build: int | None
    sp_build: int | None
    languages: tuple[str, ...]
    default_language: str

    @property
    def evaluation(self) -> bool:
        """Whether this is an evaluation image (EDITIONID `ServerStandardEval`)."""
        return self.edition_id.endswith(EVALUATION_SUFFIX)

    @property
    def edition(self) -> str:
        """The EDITIONID without the evaluation suffix (`ServerStandard`)."""
        return self.edition_id.removesuffix(EVALUATION_SUFFIX)

    @property
    def version(self) -> str:
        """`10.0.20348`, as far as the XML says."""
        parts = [p for p in (self.major, self.minor, self.build) if p is not None]
        return ".".join(str(p) for p in parts) or "unknown"

    @property
    def language(self) -> str:
        """The image's default language (the first listed when DEFAULT is missing)."""
        return self.default_language or (self.languages[0] if self.languages else "")


@dataclass(frozen=True)
class WimInfo:
    """What the header and the XML of a WIM say."""

    version: int
    kind: str  # "wim", or "solid" (LZMS: install.esd)
    compression: str
    chunk_size: int
    guid: str
    boot_index: int
    images: tuple[WimImage, ...]


def _resource(raw: bytes) -> tuple[int, int, int, int]:
    """(stored size, flags, offset, original size) of a 24-byte resource header."""
    stored, flags, offset, original = RESOURCE_HEADER.unpack(raw)
    return int.from_bytes(stored, "little"), flags, offset, original


def _read_exactly(stream: IO[bytes], count: int) -> bytes:
    """`count` bytes from `stream`, fewer only at its end (streams may return less)."""
    chunks: list[bytes] = []
    wanted = count
    while wanted > 0:
        chunk = stream.read(wanted)
        if not chunk:
            break
        chunks.append(chunk)
        wanted -= len(chunk)
    return b"".join(chunks)


def _text(node: ET.Element | None, path: str) -> str:
    found = None if node is None else node.find(path)
    return (found.text or "").strip() if found is not None else ""


def _number(node: ET.Element | None, path: str, index: int) -> int | None:
    value = _text(node, path)
    if not value:
        return None
    if not _NUMBER.fullmatch(value):
        raise WimError(f"its XML says image {index} {path} = {value!r}, which is not a number")
    return int(value, 0)


def _image(index: int, element: ET.Element) -> WimImage:
    windows = element.find("WINDOWS")
    arch = _number(windows, "ARCH", index)
    languages = tuple(
        (e.text or "").strip()
        for e in (windows.findall("LANGUAGES/LANGUAGE") if windows is not None else [])
        if (e.text or "").strip()
    )
    return WimImage(
        index=index,
        name=_text(element, "NAME"),
        description=_text(element, "DESCRIPTION"),
        display_name=_text(element, "DISPLAYNAME"),
        flags=_text(element, "FLAGS"),
        edition_id=_text(windows, "EDITIONID"),
        installation_type=_text(windows, "INSTALLATIONTYPE"),
        product_type=_text(windows, "PRODUCTTYPE"),
        arch="" if arch is None else ARCHES.get(arch, f"unknown ({arch})"),
        major=_number(windows, "VERSION/MAJOR", index),
        minor=_number(windows, "VERSION/MINOR", index),
        build=_number(windows, "VERSION/BUILD", index),
        sp_build=_number(windows, "VERSION/SPBUILD", index),
        languages=languages,
        default_language=_text(windows, "LANGUAGES/DEFAULT"),
    )


def _parse_xml(data: bytes, count: int) -> tuple[WimImage, ...]:
    try:
        text = data.decode("utf-16-le").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        raise WimError(f"its XML data is not UTF-16 text ({exc.reason})") from None
    # WIM XML never has a DTD; refusing one keeps entity expansion out entirely.
    if "<!DOCTYPE" in text or "<!ENTITY" in text:
        raise WimError("its XML data declares a DTD, which WIM XML never has")
    try:
        # The DTD is refused above and expat resolves no external entity, so the
        # attacks S314 warns of have nothing to work with.
        root = ET.fromstring(text)  # noqa: S314
    except ET.ParseError as exc:
        raise WimError(f"its XML data is damaged ({exc})") from None
    if root.tag != "WIM":
        raise WimError(f"its XML data has the root <{root.tag}>, not <WIM>")
    if root.find("ESD/ENCRYPTED") is not None:
        raise WimError(
            "it is an encrypted ESD, which Windows Setup cannot install from until it is decrypted"
        )
    by_index: dict[int, ET.Element] = {}
    for element in root.findall("IMAGE"):
        attribute = element.get("INDEX", "")
        if not attribute.isdigit() or int(attribute) in by_index:
            raise WimError(f"its XML data has a bad or repeated IMAGE INDEX {attribute!r}")
        by_index[int(attribute)] = element
    if sorted(by_index) != list(range(1, count + 1)):
        raise WimError(
            f"its header says {count} images but its XML data describes "
            f"{len(by_index)} (indexes {', '.join(map(str, sorted(by_index))) or 'none'})"
        )
    return tuple(_image(index, element) for index, element in sorted(by_index.items()))


def read_wim(stream: IO[bytes], size: int) -> WimInfo:
    """What the WIM in `stream` (`size` bytes long) says about its images.

    Reads the 208-byte header, then the XML resource at the offset the header gives,
    and nothing else.

    Raises:
        WimError: not a WIM (or a wimlib pipable one); a header version or size Windows
            does not write; a part of a split WIM; copied while written; no images; XML
            that is compressed, of an impossible size, beyond the end of the file, not
            UTF-16, damaged, with a DTD, with another root, encrypted, or whose images
            do not match the header's count.
    """
    stream.seek(0)
    raw = _read_exactly(stream, HEADER.size)
    if raw[:8] == PIPABLE_MAGIC:
        raise WimError("it is a wimlib 'pipable' WIM, which Windows Setup cannot read")
    if len(raw) < HEADER.size or raw[:8] != MAGIC:
        raise WimError("it is not a WIM file (it does not start with the MSWIM header)")
    (
        _,
        header_size,
        version,
        flags,
        chunk_size,
        guid,
        part,
        parts,
        count,
        blob_table,
        xml_header,
        boot_metadata,
        boot_index,
        integrity,
    ) = HEADER.unpack(raw)
    if header_size != HEADER.size or version not in VERSIONS:
        raise WimError(
            f"its header (size {header_size}, version {version:#x}) is not one Windows writes"
        )
    if parts != 1 or part != 1 or flags & HEADER_SPANNED:
        raise WimError(
            f"it is part {part} of a {parts}-part split WIM (.swm), which pvinstall cannot "
            "read in place; join the parts with `wimlib-imagex join`"
        )
    if flags & HEADER_WRITE_IN_PROGRESS:
        raise WimError("it was copied while it was being written (its header says so)")
    if count == 0:
        raise WimError("it holds no images")
    xml_size, xml_flags, xml_offset, xml_original = _resource(xml_header)
    if xml_flags & (RESOURCE_COMPRESSED | RESOURCE_SOLID) or xml_size != xml_original:
        raise WimError("its XML data is compressed, which Windows' own WIMs never are")
    ends = [xml_offset + xml_size]
    ends += [
        offset + stored
        for stored, _, offset, _ in map(_resource, (blob_table, boot_metadata, integrity))
        if stored
    ]
    if max(ends) > size:
        raise WimError(f"it is truncated: its header needs {max(ends)} bytes, it has {size}")
    if not 2 <= xml_size <= MAX_XML_BYTES or xml_size % 2:
        raise WimError(f"its XML data has an impossible size ({xml_size} bytes)")
    stream.seek(xml_offset)
    data = _read_exactly(stream, xml_size)
    if len(data) != xml_size:
        raise WimError(f"it is truncated: its XML data ends after {len(data)} of {xml_size} bytes")
    images = _parse_xml(data, count)
    compression = next((name for bit, name in COMPRESSION.items() if flags & bit), "none")
    return WimInfo(
        version=version,
        kind=VERSIONS[version],
        compression=compression,
        chunk_size=chunk_size,
        guid=guid.hex(),
        boot_index=boot_index,
        images=images,
    )
