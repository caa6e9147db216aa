"""TXTSETUP.SIF slipstream edits and the 2003 CD plan (builder/media/slipstream.py), on text.

The viostor package comes from the virtio-win fixture (its INF lists the transitional
hardware IDs of the frozen 2003 build); the TXTSETUP.SIF text from the fake 2003 CD
generator, which is CRLF, cp1252 and repeats section headers like the retail file.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Callable
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from builder.errors import InputError
from builder.media.slipstream import (
    SOURCE_DISKS_FILES_VALUE,
    SifEntry,
    apply_sif_entries,
    patch_txtsetup_sif,
    plan_install_cd,
    sif_entries,
)
from builder.virtio.facts import load_driver_facts
from builder.virtio.inf import quoted
from builder.virtio.packages import scan_source
from builder.virtio.selection import DriverSet, SelectedDriver, select_drivers
from builder.virtio.source import DirectorySource
from builder.windows.profiles import PROFILES, Arch
from tests.fixtures.virtio_win import write_modern_tree
from tests.fuzzing import fuzz_settings
from tests.integration.probe import fake_txtsetup_sif

ARCHES: tuple[Arch, ...] = ("x86", "amd64")


@pytest.fixture(scope="module")
def driversets(tmp_path_factory: pytest.TempPathFactory) -> dict[Arch, DriverSet]:
    tree = write_modern_tree(tmp_path_factory.mktemp("vw") / "virtio-win", oses=["2k3"])
    scan = scan_source(DirectorySource(tree.root), load_driver_facts())
    return {
        "x86": select_drivers(scan, PROFILES["win2003-x86"]),
        "amd64": select_drivers(scan, PROFILES["win2003-x64"]),
    }


def lines_of(text: bytes) -> list[bytes]:
    return text.split(b"\r\n")


def inserted(original: bytes, patched: bytes) -> list[bytes]:
    """The lines of `patched` that are not in `original`, checking that every original
    line is still there, in order."""
    old = lines_of(original)
    new = lines_of(patched)
    extra: list[bytes] = []
    position = 0
    for line in new:
        if position < len(old) and line == old[position]:
            position += 1
        else:
            extra.append(line)
    assert position == len(old), "an original line was lost or reordered"
    return extra


@pytest.mark.parametrize("arch", ARCHES)
def test_the_four_sections_get_the_viostor_lines(
    driversets: dict[Arch, DriverSet], arch: Arch
) -> None:
    storage = driversets[arch].storage
    original = fake_txtsetup_sif(arch)
    patched = patch_txtsetup_sif(original, storage, arch)
    added = [line.decode("ascii") for line in inserted(original, patched)]
    ids = storage.hardware_ids
    assert len(ids) == 3
    assert added == [
        f"viostor.sys = {SOURCE_DISKS_FILES_VALUE}",
        *(f'{hwid} = "viostor"' for hwid in ids),
        "viostor = viostor.sys,4",
        'viostor = "Red Hat VirtIO SCSI controller"',
    ]


@pytest.mark.parametrize("arch", ARCHES)
def test_each_line_goes_right_after_the_first_header_of_its_section(
    driversets: dict[Arch, DriverSet], arch: Arch
) -> None:
    patched = lines_of(patch_txtsetup_sif(fake_txtsetup_sif(arch), driversets[arch].storage, arch))
    expected_after = {
        f"[SourceDisksFiles.{arch}]": "viostor.sys = ",
        "[HardwareIdsDatabase]": "PCI\\VEN_1AF4&DEV_1001&SUBSYS_",
        "[SCSI.Load]": "viostor = viostor.sys,4",
        "[SCSI]": 'viostor = "Red Hat',
    }
    for header, start in expected_after.items():
        index = patched.index(header.encode())
        assert patched[index + 1].decode().startswith(start), header
    # The other architecture's section is not touched.
    other = "amd64" if arch == "x86" else "x86"
    assert f"[SourceDisksFiles.{other}]".encode() not in patched


def test_repeated_headers_only_the_first_gets_the_lines(
    driversets: dict[Arch, DriverSet],
) -> None:
    text = (
        b'[Version]\r\nSignature = "$Windows NT$"\r\n'
        b"[SCSI.Load]\r\natapi = atapi.sys,4\r\n"
        b"[SourceDisksFiles.x86]\r\nfirst.sys = 1,,,,,,3_,4,1\r\n"
        b'[HardwareIdsDatabase]\r\nPCI\\CC_0101 = "pciide"\r\n'
        b'[SCSI]\r\nsymmpi = "LSI"\r\n'
        b"[SourceDisksFiles.x86]\r\nsecond.sys = 1,,,,,,3_,4,1\r\n"
        b"[SCSI.Load]\r\nsymmpi = symmpi.sys,4\r\n"
        b'[HardwareIdsDatabase]\r\nPCI\\VEN_1000&DEV_0030 = "symmpi"\r\n'
        b'[SCSI]\r\naic78xx = "Adaptec"\r\n'
    )
    patched = lines_of(patch_txtsetup_sif(text, driversets["x86"].storage, "x86"))
    for header in (b"[SCSI.Load]", b"[SourceDisksFiles.x86]", b"[HardwareIdsDatabase]", b"[SCSI]"):
        positions = [i for i, line in enumerate(patched) if line == header]
        assert len(positions) == 2
        assert b"viostor" in patched[positions[0] + 1].lower()
        assert b"viostor" not in patched[positions[1] + 1].lower()


@pytest.mark.parametrize("arch", ARCHES)
def test_crlf_is_kept_and_nothing_else_changes(
    driversets: dict[Arch, DriverSet], arch: Arch
) -> None:
    original = fake_txtsetup_sif(arch)
    patched = patch_txtsetup_sif(original, driversets[arch].storage, arch)
    assert b"\n" not in patched.replace(b"\r\n", b"")
    assert b"\r" not in patched.replace(b"\r\n", b"")
    assert patched.endswith(b"\r\n")
    # The cp1252 bytes of the original (accented comments, the (c) sign) are untouched.
    assert original.count(b"\xe9") == patched.count(b"\xe9") > 0
    assert len(inserted(original, patched)) == 3 + len(driversets[arch].storage.hardware_ids)


@pytest.mark.parametrize("arch", ARCHES)
def test_patching_twice_changes_nothing(driversets: dict[Arch, DriverSet], arch: Arch) -> None:
    storage = driversets[arch].storage
    once = patch_txtsetup_sif(fake_txtsetup_sif(arch), storage, arch)
    assert patch_txtsetup_sif(once, storage, arch) == once


def test_an_lf_file_stays_lf(driversets: dict[Arch, DriverSet]) -> None:
    text = fake_txtsetup_sif("x86").replace(b"\r\n", b"\n")
    patched = patch_txtsetup_sif(text, driversets["x86"].storage, "x86")
    assert b"\r" not in patched
    assert patched.count(b"\n") == text.count(b"\n") + 6


def test_hardware_id_key_is_unquoted_and_the_service_quoted(
    driversets: dict[Arch, DriverSet],
) -> None:
    entries = [
        e
        for e in sif_entries(driversets["x86"].storage, "x86")
        if e.section == "HardwareIdsDatabase"
    ]
    assert entries
    for entry in entries:
        assert re.fullmatch(r'PCI\\VEN_1AF4&DEV_1001&SUBSYS_[0-9A-F]{8} = "viostor"', entry.line)


def test_amd64_uses_the_amd64_section(driversets: dict[Arch, DriverSet]) -> None:
    sections = [e.section for e in sif_entries(driversets["amd64"].storage, "amd64")]
    assert sections[0] == "SourceDisksFiles.amd64"
    assert "SourceDisksFiles.x86" not in sections


def test_a_missing_section_is_appended(driversets: dict[Arch, DriverSet]) -> None:
    text = b'[Version]\r\nSignature = "$Windows NT$"\r\n[SCSI.Load]\r\natapi = atapi.sys,4'
    patched = patch_txtsetup_sif(text, driversets["x86"].storage, "x86")
    lines = lines_of(patched)
    assert lines[:3] == [b"[Version]", b'Signature = "$Windows NT$"', b"[SCSI.Load]"]
    assert lines[3] == b"viostor = viostor.sys,4"
    assert lines[4] == b"atapi = atapi.sys,4"  # its missing line end was added
    for header in (b"[SourceDisksFiles.x86]", b"[HardwareIdsDatabase]", b"[SCSI]"):
        assert header in lines
    assert patch_txtsetup_sif(patched, driversets["x86"].storage, "x86") == patched


def test_headers_and_keys_compare_case_blind(driversets: dict[Arch, DriverSet]) -> None:
    storage = driversets["x86"].storage
    once = patch_txtsetup_sif(fake_txtsetup_sif("x86"), storage, "x86")
    shouted = once.replace(b"[SCSI.Load]", b"[scsi.load]").replace(
        b"viostor = viostor.sys,4", b"VIOSTOR=VIOSTOR.SYS, 4"
    )
    assert patch_txtsetup_sif(shouted, storage, "x86") == shouted


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        (b'PCI\\VEN_1AF4&DEV_1001&SUBSYS_00021AF4 = "othersvc"', "HardwareIdsDatabase"),
        (b"viostor = other.sys,4", "SCSI.Load"),
    ],
)
def test_a_cd_slipstreamed_with_another_driver_is_refused(
    driversets: dict[Arch, DriverSet], line: bytes, fragment: str
) -> None:
    section = b"[HardwareIdsDatabase]" if b"PCI" in line else b"[SCSI.Load]"
    text = fake_txtsetup_sif("x86").replace(section + b"\r\n", section + b"\r\n" + line + b"\r\n")
    with pytest.raises(InputError) as caught:
        patch_txtsetup_sif(text, driversets["x86"].storage, "x86")
    assert fragment in caught.value.message
    assert caught.value.problems[0].key == "--windows-iso"


def test_apply_with_no_entries_is_the_identity() -> None:
    text = fake_txtsetup_sif("amd64")
    assert apply_sif_entries(text, ()) == text


@pytest.mark.parametrize(("arch", "setup_dir"), [("x86", "I386"), ("amd64", "AMD64")])
def test_plan_adds_the_driver_winnt_sif_and_every_package(
    driversets: dict[Arch, DriverSet], arch: Arch, setup_dir: str
) -> None:
    drivers = driversets[arch]
    plan = plan_install_cd(drivers, {"winnt.sif": b"[Data]\r\n", "txtsetup.oem": b""})
    assert plan.setup_dir == setup_dir
    assert plan.txtsetup_path == f"{setup_dir}/TXTSETUP.SIF"
    by_path = {f.path: f for f in plan.files}
    sys_file = by_path[f"{setup_dir}/VIOSTOR.SYS"]
    assert sys_file.source_path == f"viostor/2k3/{arch}/viostor.sys"
    assert by_path[f"{setup_dir}/WINNT.SIF"].data == b"[Data]\r\n"
    expected_oem = {
        f"$OEM$/$1/Drivers/{d.name}/{f.path.rpartition('/')[2]}": f.path
        for d in drivers.selected
        for f in d.files
    }
    assert {p: f.source_path for p, f in by_path.items() if p.startswith("$OEM$")} == expected_oem
    assert {d.name for d in drivers.selected} >= {"viostor", "NetKVM"}
    assert [f.path for f in plan.files] == sorted(by_path)
    assert plan.entries == sif_entries(drivers.storage, arch)


# -- the file's own encoding (issue 18: UTF-16 text got ASCII lines inserted) ------------------

ENCODINGS = [
    # (name, how the fake SIF is encoded, how to decode the result)
    ("ansi-crlf", lambda t: t.encode("cp1252"), lambda b: b.decode("cp1252")),
    ("ansi-lf", lambda t: t.replace("\r\n", "\n").encode("cp1252"), lambda b: b.decode("cp1252")),
    (
        "utf16le-bom",
        lambda t: codecs.BOM_UTF16_LE + t.encode("utf-16-le"),
        lambda b: b.removeprefix(codecs.BOM_UTF16_LE).decode("utf-16-le"),
    ),
    (
        "utf16be-bom",
        lambda t: codecs.BOM_UTF16_BE + t.encode("utf-16-be"),
        lambda b: b.removeprefix(codecs.BOM_UTF16_BE).decode("utf-16-be"),
    ),
    (
        "utf8-bom",
        lambda t: codecs.BOM_UTF8 + t.encode("utf-8"),
        lambda b: b.removeprefix(codecs.BOM_UTF8).decode("utf-8"),
    ),
]


@pytest.mark.parametrize(("name", "encode", "decode"), ENCODINGS, ids=[e[0] for e in ENCODINGS])
def test_the_file_keeps_its_encoding_bom_and_line_ends(
    driversets: dict[Arch, DriverSet],
    name: str,
    encode: Callable[[str], bytes],
    decode: Callable[[bytes], str],
) -> None:
    storage = driversets["x86"].storage
    text = fake_txtsetup_sif("x86").decode("cp1252")
    original = encode(text)
    patched = patch_txtsetup_sif(original, storage, "x86")
    assert patched[:3] == original[:3]  # the byte-order mark, or the first bytes
    before, after = decode(original), decode(patched)
    eol = "\n" if name == "ansi-lf" else "\r\n"
    assert after.count(eol) == before.count(eol) + 6
    assert "\r" not in after.replace("\r\n", "") and "\n" not in after.replace(eol, "")
    added = [line for line in after.split(eol) if line not in before.split(eol)]
    assert 'viostor = "Red Hat VirtIO SCSI controller"' in added
    assert f"viostor.sys = {SOURCE_DISKS_FILES_VALUE}" in added
    assert "\u00e9" in after  # the original's non-ASCII text is intact
    assert patch_txtsetup_sif(patched, storage, "x86") == patched


def _with_model(storage: SelectedDriver, **fields: object) -> SelectedDriver:
    """The storage driver with its models' description or hardware IDs replaced."""
    models = tuple(replace(m, **fields) for m in storage.match.models)  # type: ignore[arg-type]
    return replace(storage, match=replace(storage.match, models=models))


@pytest.mark.parametrize(
    ("description", "encoding", "written"),
    [
        ("Contr\u00f4leur SCSI VirtIO", "cp1252", "Contr\u00f4leur SCSI VirtIO".encode("cp1252")),
        (
            "Contr\u00f4leur SCSI VirtIO",
            "utf-16-le",
            "Contr\u00f4leur SCSI VirtIO".encode("utf-16-le"),
        ),
        (
            "VirtIO \u03a9 \u4e2d\u6587",
            "utf-16-le",
            "VirtIO \u03a9 \u4e2d\u6587".encode("utf-16-le"),
        ),
        ('Say "hi"; 100% fast', "cp1252", b'"Say ""hi""; 100%% fast"'),
    ],
)
def test_new_lines_are_written_in_the_file_s_encoding(
    driversets: dict[Arch, DriverSet], description: str, encoding: str, written: bytes
) -> None:
    storage = _with_model(driversets["x86"].storage, description=description)
    text = fake_txtsetup_sif("x86").decode("cp1252")
    bom = codecs.BOM_UTF16_LE if encoding == "utf-16-le" else b""
    patched = patch_txtsetup_sif(bom + text.encode(encoding), storage, "x86")
    assert written in patched
    assert patch_txtsetup_sif(patched, storage, "x86") == patched


def test_characters_an_ansi_file_cannot_hold_are_refused_by_name(
    driversets: dict[Arch, DriverSet],
) -> None:
    storage = _with_model(driversets["x86"].storage, description="VirtIO \u03a9 \u4e2d")
    with pytest.raises(InputError) as raised:
        patch_txtsetup_sif(fake_txtsetup_sif("x86"), storage, "x86")
    message = str(raised.value)
    assert "TXTSETUP.SIF is Windows-1252 text, which cannot hold '\u03a9', '\u4e2d'" in message


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (codecs.BOM_UTF16_LE + b"[\x00S", "starts with a UTF-16LE byte-order mark but is not"),
        (codecs.BOM_UTF16_LE + "[SCSI]".encode("utf-16-le") + b"\x00", "is not UTF-16LE text"),
        (codecs.BOM_UTF16_LE + b"\x00\xd8[\x00", "is not UTF-16LE text"),  # a lone surrogate
        (codecs.BOM_UTF16_BE + b"\xdc\x00\x00[", "is not UTF-16BE text"),
        (codecs.BOM_UTF8 + b"[SCSI]\r\n\xff\r\n", "is not UTF-8 text"),
        ("[SCSI]\r\n".encode("utf-16-le"), "holds NUL bytes but no byte-order mark"),
        (b"[SCSI]\r\nx = \x00\r\n", "holds NUL bytes but no byte-order mark"),
    ],
)
def test_a_sif_that_is_not_text_in_any_encoding_is_refused(
    driversets: dict[Arch, DriverSet], data: bytes, fragment: str
) -> None:
    with pytest.raises(InputError) as raised:
        patch_txtsetup_sif(data, driversets["x86"].storage, "x86")
    assert fragment in str(raised.value)
    assert raised.value.problems[0].key == "--windows-iso"


# -- INF values setup's parser would misread (issue 18: `=` in a hardware ID broke re-patching)

BAD_INF_VALUES = [
    (
        "hardware_ids",
        ("PCI\\VEN_1AF4&DEV_1001=X",),
        "hardware ID 'PCI\\VEN_1AF4&DEV_1001=X'",
        "'='",
    ),
    ("hardware_ids", ('PCI\\VEN_1AF4"x',), "hardware ID", "'\"'"),
    ("hardware_ids", ("PCI\\VEN_1AF4;x",), "hardware ID", "';'"),
    ("hardware_ids", ("PCI\\VEN_%x%",), "hardware ID", "'%'"),
    ("hardware_ids", ("PCI\\VEN 1AF4",), "hardware ID", "' '"),
    ("hardware_ids", ("PCI\\VEN_1AF4,x",), "hardware ID", "','"),
    ("hardware_ids", ("PCI\\VEN_1AF4\u00e9",), "hardware ID", "'\u00e9'"),
    ("hardware_ids", ("PCI\\VEN_1AF4\x07",), "hardware ID", "'\\x07'"),
    ("description", "Red Hat\tVirtIO", "description", "control characters (U+0009)"),
    ("description", "Red Hat\x85VirtIO", "description", "control characters (U+0085)"),
]


@pytest.mark.parametrize(("field", "value", "named", "problem"), BAD_INF_VALUES)
def test_an_inf_value_setup_would_misread_is_refused_naming_the_inf(
    driversets: dict[Arch, DriverSet], field: str, value: object, named: str, problem: str
) -> None:
    storage = _with_model(driversets["x86"].storage, **{field: value})
    with pytest.raises(InputError) as raised:
        sif_entries(storage, "x86")
    message = str(raised.value)
    assert message.startswith(f"--drivers: {storage.inf_path}: its {named}")
    assert problem in message


def test_a_service_name_setup_would_misread_is_refused(driversets: dict[Arch, DriverSet]) -> None:
    storage = driversets["x86"].storage
    service = replace(storage.services[0], name="vio stor")
    odd = replace(storage, services=(service,))
    if odd.service_name != "vio stor":
        pytest.fail("the service name does not come from the services")
    with pytest.raises(InputError, match="its service name 'vio stor'"):
        sif_entries(odd, "x86")


# -- properties: for any valid file and entries, idempotent, every byte and the encoding kept --

_SIF_PIECES = st.sampled_from(
    [
        "[SCSI]",
        "[SCSI.Load]",
        "[ HardwareIdsDatabase ]",
        "[SourceDisksFiles.x86]",
        "[Strings]",
        "atapi = atapi.sys,4",
        'PCI\\VEN_8086&DEV_7111 = "pciide"',
        'viostor = "Other, driver"',
        'x = "a = b; c"',
        "; a comment = with an equals sign",
        "key",
        "= value",
        '"quoted=key" = v',
        "caf\u00e9 = cr\u00e8me",
        "\u20ac\u2026 = \u00a0",
        "",
        " ",
        "\t",
    ]
)
_TOKENS = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters=' ";%,=[]'),
    min_size=1,
    max_size=12,
)
_FREE_TEXT = st.text(
    alphabet=st.characters(
        codec="cp1252", exclude_categories=("Cc", "Cs"), exclude_characters="\x85\xa0"
    ),
    max_size=20,
)
_SECTIONS = st.sampled_from(["SCSI", "SCSI.Load", "HardwareIdsDatabase", "New.Section"])
_ENTRIES = st.lists(
    st.builds(
        SifEntry,
        _SECTIONS,
        _TOKENS,
        st.one_of(_TOKENS, _FREE_TEXT.map(quoted)),
    ),
    max_size=6,
)
_FILE_ENCODINGS = st.sampled_from(ENCODINGS)


@fuzz_settings(300)
@given(
    st.lists(_SIF_PIECES, max_size=25),
    st.sampled_from(["\r\n", "\n"]),
    st.booleans(),
    _FILE_ENCODINGS,
    _ENTRIES,
)
def test_fuzz_the_sif_editor_is_idempotent_and_keeps_every_byte(
    pieces: list[str],
    eol: str,
    final_newline: bool,
    encoding: tuple[str, Callable[[str], bytes], Callable[[bytes], str]],
    entries: list[SifEntry],
) -> None:
    name, encode, decode = encoding
    text = eol.join(pieces) + (eol if final_newline and pieces else "")
    original = encode(text.replace("\r\n", "\n") if name == "ansi-lf" else text)
    try:
        once = apply_sif_entries(original, entries)
    except InputError:
        return  # a key present with another value: refused, which is allowed
    assert apply_sif_entries(once, entries) == once
    # The encoding and its byte-order mark are kept, and every original line survives.
    before, after = decode(original), decode(once)
    old_lines, new_lines = before.splitlines(), after.splitlines()
    position = 0
    for line in new_lines:
        if position < len(old_lines) and line == old_lines[position]:
            position += 1
    assert position == len(old_lines)
    assert once.startswith(original[:2]) or not original
