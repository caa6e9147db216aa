"""The INF parser and Windows' decoration rule (builder/virtio/inf.py)."""

from __future__ import annotations

import codecs

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from builder.virtio.inf import (
    Decoration,
    InfError,
    _split_unquoted,
    _unquote,
    parse_inf,
    quoted,
    strip_comment,
    supports,
    text_problem,
    token_problem,
)
from tests.fuzzing import fuzz_settings

VIOSTOR_2K8 = (
    "; viostor.inf for Windows Server 2008\r\n"
    "[Version]\r\n"
    'Signature="$WINDOWS NT$"\r\n'
    "Class=SCSIAdapter\r\n"
    "ClassGUID={4D36E97B-E325-11CE-BFC1-08002BE10318}\r\n"
    "Provider=%RHEL%\r\n"
    "DriverVer=07/25/2018,60.76.104.15800\r\n"
    "CatalogFile=viostor.cat\r\n"
    "DriverPackageType=PlugAndPlay\r\n"
    "\r\n"
    "[Manufacturer]\r\n"
    "%RHEL% = RHEL,NTamd64.6.0\r\n"
    "\r\n"
    "[RHEL.NTamd64.6.0] \r\n"
    "%RHELScsi.DeviceDesc% = rhelscsi_inst, PCI\\VEN_1AF4&DEV_1001&SUBSYS_00021AF4&REV_00\r\n"
    "%RHELScsi.DeviceDesc% = rhelscsi_inst, PCI\\VEN_1AF4&DEV_1042&SUBSYS_11001AF4&REV_01\r\n"
    "\r\n"
    "[SourceDisksNames]\r\n"
    '1 = %DiskId1%,,,""\r\n'
    "\r\n"
    "[SourceDisksFiles]\r\n"
    "viostor.sys = 1,,\r\n"
    "\r\n"
    "[rhelscsi_inst]\r\n"
    "CopyFiles=Drivers_Dir\r\n"
    "\r\n"
    "[rhelscsi_inst.Services]\r\n"
    "AddService = viostor, 0x00000002 , rhelscsi_Service_Inst, rhelscsi_EventLog_Inst\r\n"
    "\r\n"
    "[rhelscsi_Service_Inst]\r\n"
    "ServiceType    = 1 ; %SERVICE_KERNEL_DRIVER%\r\n"
    "StartType      = 0 ; %SERVICE_BOOT_START%\r\n"
    "ErrorControl   = 1\r\n"
    "ServiceBinary  = %12%\\viostor.sys\r\n"
    "LoadOrderGroup = SCSI miniport\r\n"
    "\r\n"
    "[Strings]\r\n"
    'RHEL = "Red Hat, Inc."\r\n'
    'RHELScsi.DeviceDesc = "Red Hat VirtIO SCSI controller";no space before comment\r\n'
    'DiskId1 = "Red Hat VirtIO SCSI controller Installation Disk #1"\r\n'
)


def inf_text(text: str, path: str = "test.inf"):  # type: ignore[no-untyped-def]
    return parse_inf(text.encode("ascii"), path)


def test_parses_a_real_shaped_viostor_inf() -> None:
    inf = inf_text(VIOSTOR_2K8)
    assert inf.driver_class == "SCSIAdapter"
    assert inf.class_guid == "{4D36E97B-E325-11CE-BFC1-08002BE10318}"
    assert inf.provider == "Red Hat, Inc."
    assert inf.driver_ver == ("07/25/2018", "60.76.104.15800")
    assert inf.catalog_file("amd64") == "viostor.cat"
    assert inf.decorations == ("NTamd64.6.0",)
    assert inf.line_ending == "crlf"
    assert [f.path for f in inf.source_files("amd64")] == ["viostor.sys"]
    match = supports(inf, (6, 0), "amd64")
    assert match is not None
    assert match.models_section == "RHEL.NTamd64.6.0"
    assert match.hardware_ids == (
        "PCI\\VEN_1AF4&DEV_1001&SUBSYS_00021AF4&REV_00",
        "PCI\\VEN_1AF4&DEV_1042&SUBSYS_11001AF4&REV_01",
    )
    assert match.models[0].description == "Red Hat VirtIO SCSI controller"
    services = inf.match_services(match, "amd64")
    assert [(s.name, s.start_type, s.boot_start) for s in services] == [("viostor", 0, True)]
    assert services[0].load_order_group == "SCSI miniport"


@pytest.mark.parametrize(
    ("encode", "encoding"),
    [
        (lambda t: t.encode("ascii"), "ascii"),
        (lambda t: t.replace("\r\n", "\n").encode("ascii"), "ascii"),
        (lambda t: codecs.BOM_UTF8 + t.encode("utf-8"), "utf-8-sig"),
        (lambda t: codecs.BOM_UTF16_LE + t.encode("utf-16-le"), "utf-16-le"),
        (lambda t: codecs.BOM_UTF16_BE + t.encode("utf-16-be"), "utf-16-be"),
    ],
    ids=["ascii-crlf", "ascii-lf", "utf8-bom", "utf16le-bom", "utf16be-bom"],
)
def test_every_encoding_gives_the_same_answer(encode, encoding) -> None:  # type: ignore[no-untyped-def]
    inf = parse_inf(encode(VIOSTOR_2K8), "x.inf")
    assert inf.encoding == encoding
    match = supports(inf, (6, 0), "amd64")
    assert match is not None and len(match.hardware_ids) == 2
    assert inf.provider == "Red Hat, Inc."


def test_ansi_inf_with_cp1252_bytes() -> None:
    data = VIOSTOR_2K8.replace('"Red Hat, Inc."', '"Red Hat\u00ae, Inc."').encode("cp1252")
    inf = parse_inf(data, "x.inf")
    assert inf.encoding == "cp1252"
    assert inf.provider == "Red Hat\u00ae, Inc."


SYNTAX_CASES = [
    # (inf body after [Version], section, key, expected first field)
    ("[Data]\r\nkey = value ;comment\r\n", "data", "key", "value"),
    ('[Data]\r\nkey = "quoted; not a comment";c\r\n', "data", "key", "quoted; not a comment"),
    ('[Data]\r\nkey = "a, b", c\r\n', "data", "key", "a, b"),
    ('[Data]\r\nkey = "say ""hi"""\r\n', "data", "key", 'say "hi"'),
    ("[DATA]\r\nKEY = v\r\n", "data", "key", "v"),
    ("[ Data ]  \r\nkey=v\r\n", "data", "key", "v"),
    ("[Data]\r\n*IfType = 6\r\n", "data", "*iftype", "6"),
    ("[Data]\r\nkey = first \\\r\n  second\r\n", "data", "key", "first   second"),
    ('[Data]\r\nkey = %tok%\r\n[Strings]\r\ntok = "value"\r\n', "data", "key", "value"),
    ("[Data]\r\nkey = 100%%\r\n", "data", "key", "100%"),
    ("[Data]\r\nkey = %missing%\r\n", "data", "key", "%missing%"),
    ("[Data]\r\na = 1\r\n[Other]\r\n[data]\r\nkey = merged\r\n", "data", "key", "merged"),
    (
        "[Data]\r\nkey = %tok%\r\n[Strings]\r\ntok = generic\r\n"
        "[Strings.0409]\r\ntok = english\r\n",
        "data",
        "key",
        "english",
    ),
    ('[Data]\r\nkey = %tok%\r\n[Strings]\r\ntok = "50%% off"\r\n', "data", "key", "50% off"),
]


@pytest.mark.parametrize(("body", "section", "key", "expected"), SYNTAX_CASES)
def test_syntax(body: str, section: str, key: str, expected: str) -> None:
    inf = inf_text('[Version]\r\nSignature="$Windows NT$"\r\n' + body)
    assert inf.value(section, key) == expected


def test_duplicate_section_headers_merge() -> None:
    inf = inf_text('[Version]\r\nSignature="$Windows NT$"\r\n[A]\r\nx=1\r\n[B]\r\n[a]\r\ny=2\r\n')
    assert [line.key for line in inf.section("A")] == ["x", "y"]


def test_several_hardware_ids_on_one_model_line() -> None:
    inf = inf_text(
        '[Version]\r\nSignature="$Windows NT$"\r\n[Manufacturer]\r\n%V% = VioStor,NTamd64.6.1\r\n'
        "[VioStor.NTamd64.6.1]\r\n"
        "%D% = inst, PCI\\VEN_1AF4&DEV_1001&SUBSYS_00021AF4&REV_00, PCI\\VEN_1AF4&DEV_1001\r\n"
        "[Strings]\r\nV = vendor\r\nD = disk\r\n"
    )
    match = supports(inf, (6, 1), "amd64")
    assert match is not None
    assert match.hardware_ids == (
        "PCI\\VEN_1AF4&DEV_1001&SUBSYS_00021AF4&REV_00",
        "PCI\\VEN_1AF4&DEV_1001",
    )


def test_decorated_catalog_and_source_files() -> None:
    inf = inf_text(
        '[Version]\r\nSignature="$Windows NT$"\r\nCatalogFile=generic.cat\r\n'
        "CatalogFile.NTamd64=Balloon.cat\r\n"
        "[SourceDisksNames]\r\n1 = disk,,,\\sub\r\n"
        "[SourceDisksFiles]\r\ncommon.dll = 1\r\n"
        "[SourceDisksFiles.amd64]\r\nballoon.sys = 1,bin\r\n"
        "[SourceDisksFiles.x86]\r\nballoon32.sys = 1\r\n"
    )
    assert inf.catalog_file("amd64") == "Balloon.cat"
    assert inf.catalog_file("x86") == "generic.cat"
    assert [f.path for f in inf.source_files("amd64")] == ["sub/common.dll", "sub/bin/balloon.sys"]
    assert [f.path for f in inf.source_files("x86")] == ["sub/common.dll", "sub/balloon32.sys"]


# -- the decoration rule ------------------------------------------------------------------

DECORATION_CASES = [
    # decorations offered, OS (major, minor), arch -> chosen decoration (None: no match)
    (["NTamd64.6.1"], (6, 0), "amd64", None),  # a 2008 R2 INF does not install on 2008
    (["NTamd64.6.0"], (6, 1), "amd64", "NTamd64.6.0"),  # a 2008 INF does on 2008 R2
    (["NTamd64.6.0", "NTamd64.6.1"], (6, 1), "amd64", "NTamd64.6.1"),  # closest wins
    (["NTamd64.6.0", "NTamd64.6.1"], (6, 0), "amd64", "NTamd64.6.0"),
    (["NTamd64.6.1", "NTamd64.10.0"], (6, 0), "amd64", None),
    (["NTAMD64"], (5, 2), "amd64", "NTAMD64"),  # bare: any version
    (["NTx86"], (5, 2), "amd64", None),  # wrong architecture
    (["NTx86.6.0"], (6, 0), "x86", "NTx86.6.0"),
    (["NT"], (5, 2), "x86", "NT"),  # a bare NT applies to x86
    (["NT"], (5, 2), "amd64", None),  # ... but not to x64 (Server 2003 SP1 rule)
    (["NTx86.5.1", "NTAMD64.5.2"], (5, 2), "amd64", "NTAMD64.5.2"),
    (["NTx86.5.1", "NTAMD64.5.2"], (5, 2), "x86", "NTx86.5.1"),
    (["NTamd64.6.0.1"], (6, 0), "amd64", None),  # product type 1: workstation only
    (["NTamd64.6.0.3"], (6, 0), "amd64", "NTamd64.6.0.3"),  # server
    (["NTamd64.6.0", "NTamd64.6.0.3"], (6, 0), "amd64", "NTamd64.6.0.3"),  # more specific
    (["NTamd64.10.0...16299"], (6, 1), "amd64", None),
]


@pytest.mark.parametrize(("decorations", "os_version", "arch", "chosen"), DECORATION_CASES)
def test_decoration_rule(
    decorations: list[str], os_version: tuple[int, int], arch: str, chosen: str | None
) -> None:
    models = "".join(
        f"[M.{d}]\r\n%D% = inst, PCI\\VEN_1AF4&DEV_1001&SUBSYS_{i:04X}1AF4\r\n"
        for i, d in enumerate(decorations)
    )
    inf = inf_text(
        '[Version]\r\nSignature="$Windows NT$"\r\n[Manufacturer]\r\n'
        f"%V% = M, {', '.join(decorations)}\r\n{models}[Strings]\r\nV=v\r\nD=d\r\n"
    )
    match = supports(inf, os_version, arch)
    assert (match.decoration_text if match else None) == chosen


def test_undecorated_models_install_on_x86_only() -> None:
    inf = inf_text(
        '[Version]\r\nSignature="$Windows NT$"\r\n[Manufacturer]\r\nRed Hat\r\n'
        "[Red Hat]\r\ndisk = inst, PCI\\VEN_1AF4&DEV_1001\r\n"
    )
    match = supports(inf, (5, 2), "x86")
    assert match is not None and match.decoration is None
    assert supports(inf, (5, 2), "amd64") is None


def test_models_section_that_does_not_exist_is_no_match() -> None:
    inf = inf_text(
        '[Version]\r\nSignature="$Windows NT$"\r\n[Manufacturer]\r\n%V% = M,NTamd64.6.0\r\n'
    )
    assert supports(inf, (6, 0), "amd64") is None


@pytest.mark.parametrize(
    ("text", "fields"),
    [
        ("NTamd64.6.0", ("amd64", 6, 0, None, None, None)),
        ("ntAMD64", ("amd64", None, None, None, None, None)),
        ("NT", (None, None, None, None, None, None)),
        ("NTx86.5.1", ("x86", 5, 1, None, None, None)),
        ("NTamd64.10.0...16299", ("amd64", 10, 0, None, None, 16299)),
        ("NTamd64.6.0.0x3", ("amd64", 6, 0, 3, None, None)),
    ],
)
def test_decoration_parse(text: str, fields: tuple[object, ...]) -> None:
    decoration = Decoration.parse(text)
    assert decoration is not None
    assert (
        decoration.arch,
        decoration.major,
        decoration.minor,
        decoration.product_type,
        decoration.suite_mask,
        decoration.build,
    ) == fields


@pytest.mark.parametrize("text", ["Win9x", "NTsparc", "NTamd64.six", "NTamd64.1.2.3.4.5.6"])
def test_not_an_nt_decoration(text: str) -> None:
    assert Decoration.parse(text) is None


# -- bad INF bytes --------------------------------------------------------------------------

BAD_INFS = [
    (b"MZ\x90\x00\x03\x00", "NUL byte"),
    (codecs.BOM_UTF16_LE + b"[\x00V", "odd number of bytes"),
    (codecs.BOM_UTF16_LE + b"\x00\xd8\x00\x00", "not valid UTF-16"),
    (codecs.BOM_UTF8 + b"[Version]\r\n\xff\xfe", "not valid UTF-8"),
    (b"[Strings]\r\na=b\r\n", "no [Version] section"),
    (b"hello = world\r\n", "text before the first section"),
    (b'[Version\r\nSignature="$Windows NT$"\r\n', "without ']'"),
    (b"[]\r\n", "empty section name"),
    (b'[Version]\r\nSignature="$Chicken$"\r\n', "Signature"),
]


@pytest.mark.parametrize(("data", "fragment"), BAD_INFS)
def test_bad_inf_bytes_raise_inferror_naming_the_file(data: bytes, fragment: str) -> None:
    with pytest.raises(InfError) as caught:
        parse_inf(data, "viostor/2k8/amd64/viostor.inf")
    assert fragment in str(caught.value)
    assert str(caught.value).startswith("viostor/2k8/amd64/viostor.inf")


def test_error_names_the_line() -> None:
    with pytest.raises(InfError, match=r"bad\.inf line 4: section header"):
        parse_inf(b'[Version]\r\nSignature="$Windows NT$"\r\n\r\n[Broken\r\n', "bad.inf")


@fuzz_settings(400)
@given(st.binary(max_size=2048))
def test_fuzz_arbitrary_bytes_only_raise_inferror(data: bytes) -> None:
    try:
        inf = parse_inf(data, "fuzz.inf")
    except InfError:
        return
    supports(inf, (6, 0), "amd64")
    supports(inf, (5, 2), "x86")
    inf.source_files("amd64")
    inf.services()
    _ = inf.driver_ver, inf.catalog_file("x86"), inf.all_hardware_ids()


_INF_PIECES = st.sampled_from(
    [
        "[Version]",
        'Signature="$Windows NT$"',
        "[Manufacturer]",
        "%A% = M,NTamd64.6.0",
        "[M.NTamd64.6.0]",
        "%D% = i, PCI\\VEN_1",
        "[Strings]",
        "A = a",
        '"',
        "%",
        "%%",
        "\\",
        ";",
        ",",
        "=",
        "[",
        "]",
        "[i.Services]",
        "AddService = s,2,svc",
        "[svc]",
        "StartType = 0x",
        "CatalogFile.NTamd64 =",
        "[SourceDisksFiles]",
        "x.sys = 1,,,",
        "DriverVer = 1/1/2000",
        "\t",
        " ",
        # Found by the fuzzer once: a quoted install section with blanks (KeyError).
        '%D% = " i", PCI\\VEN_1',
        '%D% = "i ", PCI\\VEN_1',
        "[i.NTamd64]",
        "[i.NTamd64.Services]",
        "[SourceDisksNames]",
        "1 = d,,,\\x86",
        "1 = d,,,..",
        "x.sys = 1,..\\",
        "..\\x.sys = 1",
        "C:",
        "\\\\srv",
    ]
)


@fuzz_settings(400)
@given(st.lists(st.lists(_INF_PIECES, max_size=6), max_size=30), st.sampled_from(["\r\n", "\n"]))
def test_fuzz_inf_shaped_text_only_raises_inferror(lines: list[list[str]], eol: str) -> None:
    text = eol.join("".join(line) for line in lines)
    for data in (text.encode("ascii"), codecs.BOM_UTF16_LE + text.encode("utf-16-le")):
        try:
            inf = parse_inf(data, "fuzz.inf")
        except InfError:
            continue
        match = supports(inf, (6, 0), "amd64")
        if match is not None:
            inf.match_services(match, "amd64")
        inf.source_files("amd64")


# -- install sections named with blanks (a KeyError once) ------------------------------------

MODELS_WITH = (
    '[Version]\r\nSignature="$Windows NT$"\r\n[Manufacturer]\r\nA = M,NTamd64.6.0\r\n'
    "[M.NTamd64.6.0]\r\nD = {install}, PCI\\VEN_1AF4&DEV_1001\r\n"
    "[{header}.NTamd64]\r\n[{header}.NTamd64.Services]\r\nAddService = viostor,2,svc\r\n"
    "[svc]\r\nStartType = 0\r\n"
)


@pytest.mark.parametrize(
    ("install", "header"),
    [('" i"', "i"), ('"i "', "i"), ('" i "', " I"), ("i", "i"), ('"i"', "I"), ("I", " i")],
)
def test_an_install_section_is_found_however_it_is_quoted_or_spaced(
    install: str, header: str
) -> None:
    inf = inf_text(MODELS_WITH.format(install=install, header=header))
    match = supports(inf, (6, 0), "amd64")
    assert match is not None
    assert [s.name for s in inf.match_services(match, "amd64")] == ["viostor"]
    assert inf.install_section(match.models[0].install_section, "amd64").strip().lower() == (
        "i.ntamd64"
    )


# -- [SourceDisksFiles] / [SourceDisksNames] names never leave the package folder -------------

FILES_INF = '[Version]\r\nSignature="$Windows NT$"\r\n{body}'

UNSAFE_NAMES = [
    ("[SourceDisksFiles]\r\n..\\..\\shadow = 1\r\n", "'..\\..\\shadow'", "'..' leads out"),
    ("[SourceDisksFiles]\r\n../shadow = 1\r\n", "'../shadow'", "'..' leads out"),
    ("[SourceDisksFiles]\r\n/etc/shadow = 1\r\n", "'/etc/shadow'", "separator"),
    ("[SourceDisksFiles]\r\n\\windows\\x.sys = 1\r\n", "x.sys'", "separator"),
    ("[SourceDisksFiles]\r\nC:x.sys = 1\r\n", "'C:x.sys'", "drive letter"),
    ("[SourceDisksFiles]\r\n.. = 1\r\n", "'..'", "'..' leads out"),
    ("[SourceDisksFiles.amd64]\r\n..\r\n", "'..'", "'..' leads out"),
    ("[SourceDisksFiles]\r\nx.sys = 1,..\\..\r\n", "'..\\..'", "'..' leads out"),
    ("[SourceDisksFiles]\r\nx.sys = 1,sub\\..\\..\\..\r\n", "'sub", "'..' leads out"),
    ("[SourceDisksFiles]\r\nx.sys = 1,\\\\server\\share\r\n", "server", "network path"),
    ("[SourceDisksFiles]\r\nx.sys = 1,D:\\x\r\n", "'D:\\x'", "drive letter"),
    ('[SourceDisksFiles]\r\n"x\tsys" = 1\r\n', "'x\\tsys'", "control character"),
    ("[SourceDisksNames]\r\n1 = disk,,,..\\..\r\n", "'..\\..'", "'..' leads out"),
    ("[SourceDisksNames.x86]\r\n1 = disk,,,C:\\Windows\r\n", "C:", "drive letter"),
    ('[SourceDisksNames]\r\n1 = disk,,,".."\r\n', "'..'", "'..' leads out"),
    ('[SourceDisksNames]\r\n1 = disk,,,%up%\r\n[Strings]\r\nup = "..\\.."\r\n', "'..", "'..'"),
]


@pytest.mark.parametrize(("body", "named", "reason"), UNSAFE_NAMES)
def test_a_name_that_leaves_the_package_folder_refuses_the_inf(
    body: str, named: str, reason: str
) -> None:
    with pytest.raises(InfError) as raised:
        inf_text(FILES_INF.format(body=body), "viostor/2k8/amd64/viostor.inf")
    message = str(raised.value)
    assert message.startswith("viostor/2k8/amd64/viostor.inf line ")
    assert named in message and reason in message
    assert "every file of a package comes from the INF's own folder" in message


@pytest.mark.parametrize(
    ("body", "paths"),
    [
        ("[SourceDisksFiles]\r\nviostor.sys = 1,,\r\n", ["viostor.sys"]),
        ("[SourceDisksFiles]\r\nx.dll = 1,sub\r\n", ["sub/x.dll"]),
        ("[SourceDisksFiles]\r\nx.dll = 1,.\\sub\\\r\n", ["sub/x.dll"]),
        (
            "[SourceDisksNames]\r\n1 = d,,,\\amd64\r\n[SourceDisksFiles]\r\nx.sys=1\r\n",
            ["amd64/x.sys"],
        ),
        ('[SourceDisksNames]\r\n1 = d,,,""\r\n[SourceDisksFiles]\r\nx.sys=1\r\n', ["x.sys"]),
        (
            '[SourceDisksNames]\r\n1 = d,,,"\\"\r\n[SourceDisksFiles]\r\nx.sys=1,a//b\r\n',
            ["a/b/x.sys"],
        ),
        ("[SourceDisksFiles]\r\n..x.sys = 1\r\n", ["..x.sys"]),  # dots, not a parent folder
    ],
)
def test_names_inside_the_package_folder_are_paths_below_it(body: str, paths: list[str]) -> None:
    inf = inf_text(FILES_INF.format(body=body))
    assert [f.path for f in inf.source_files("amd64")] == paths


# -- writing INF-syntax text: quoted fields read back as written -------------------------------


@fuzz_settings(400)
@given(st.text(alphabet=st.characters(exclude_categories=("Cc", "Cs")), max_size=40))
def test_fuzz_a_quoted_field_reads_back_as_written(text: str) -> None:
    assume(text_problem(text) is None)
    body = f'[Version]\r\nSignature="$Windows NT$"\r\n[Data]\r\nkey = {quoted(text)} ; comment\r\n'
    inf = parse_inf(codecs.BOM_UTF16_LE + body.encode("utf-16-le"), "q.inf")
    assert inf.value("data", "key") == text


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("PCI\\VEN_1AF4&DEV_1001", None),
        ("*PNP0A03", None),
        ("{4D36E97B-E325-11CE-BFC1-08002BE10318}", None),
        ("", "it is empty"),
        ("a=b", "'='"),
        ('a"b', "'\"'"),
        ("a;b", "';'"),
        ("a%b", "'%'"),
        ("a,b", "','"),
        ("a b", "' '"),
        ("[a]", "'['"),
        ("caf\u00e9", "'\u00e9'"),
        ("a\x00b", "'\\x00'"),
    ],
)
def test_what_an_unquoted_token_can_hold(text: str, problem: str | None) -> None:
    found = token_problem(text)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("Red Hat, Inc. \u00ae", None),
        ("a\tb", "U+0009"),
        ("a\r\nb", "U+000A, U+000D"),
        ("\x85", "U+0085"),
        ("\x7f", "U+007F"),
    ],
)
def test_what_a_quoted_field_cannot_hold(text: str, problem: str | None) -> None:
    found = text_problem(text)
    assert (found is None) if problem is None else (found is not None and problem in found)


# -- the lexer's fast paths ---------------------------------------------------------------
# The lexer takes str methods where a line has no quote (most lines of an INF) and splits
# at the quotes where it has some; these are the character-by-character readings of the
# INF quoting rules it must agree with.


def _split_reference(text: str, separator: str, limit: int) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    in_quote = False
    for char in text:
        if char == '"':
            in_quote = not in_quote
            current.append(char)
        elif char == separator and not in_quote and limit != 0:
            parts.append("".join(current))
            current = []
            limit -= 1
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def _unquote_reference(text: str) -> str:
    text = text.strip()
    out: list[str] = []
    in_quote = False
    index = 0
    while index < len(text):
        char = text[index]
        if char == '"' and in_quote and text[index + 1 : index + 2] == '"':
            out.append('"')
            index += 2
            continue
        if char == '"':
            in_quote = not in_quote
        else:
            out.append(char)
        index += 1
    return "".join(out)


def _comment_reference(text: str) -> str:
    in_quote = False
    for index, char in enumerate(text):
        if char == '"':
            in_quote = not in_quote
        elif char == ";" and not in_quote:
            return text[:index]
    return text


_LEXED = st.text(alphabet='ab=,; "\t', max_size=24)


@fuzz_settings(400)
@given(text=_LEXED, separator=st.sampled_from("=,"), limit=st.integers(-1, 3))
def test_fuzz_splitting_outside_quotes_agrees_with_the_quoting_rules(
    text: str, separator: str, limit: int
) -> None:
    assert _split_unquoted(text, separator, limit) == _split_reference(text, separator, limit)


@fuzz_settings(400)
@given(text=_LEXED)
def test_fuzz_unquoting_and_comments_agree_with_the_quoting_rules(text: str) -> None:
    assert _unquote(text) == _unquote_reference(text)
    assert strip_comment(text) == _comment_reference(text)


@pytest.mark.parametrize(
    ("text", "separator", "limit", "parts"),
    [
        ('a="x=y"=b', "=", 1, ["a", '"x=y"=b']),
        ('"a,b",c,"d"', ",", -1, ['"a,b"', "c", '"d"']),
        ("a,b,c", ",", 1, ["a", "b,c"]),
        ('a,"b,c', ",", -1, ["a", '"b,c']),  # an unclosed quote runs to the end
    ],
)
def test_splitting_keeps_quoted_separators(
    text: str, separator: str, limit: int, parts: list[str]
) -> None:
    assert _split_unquoted(text, separator, limit) == parts
