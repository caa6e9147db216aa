"""INF files: parse the text and answer what a driver package declares (pure).

The parser follows the syntax Windows accepts in the virtio-win INFs and others:
CRLF or LF; ASCII/ANSI, UTF-8 with BOM or UTF-16 with BOM; section and key names in
any case; `;` comments outside quotes; backslash continuation; `%token%`
substitution from `[Strings]` (and `[Strings.0409]`), `%%` for a literal percent;
quoted fields with commas; a section header that appears twice is merged.

`supports()` implements Windows' rule for decorated models sections: of the
TargetOSVersion decorations that apply to an OS (architecture, version not newer
than the OS, product type), the closest one wins.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from builder.errors import shown
from builder.numbers import parse_int

# The largest INF pvinstall reads: real ones are tens of KiB, the largest known a few
# hundred; a bigger file is not an INF of a driver package.
MAX_INF_BYTES = 4 * 1024 * 1024

# VER_NT_SERVER: every profile is a server release.
PRODUCT_SERVER = 3
SERVICE_BOOT_START = 0

_ARCHES = ("x86", "amd64", "ia64", "arm64", "arm")


class InfError(ValueError):
    """An INF that cannot be read; names the file and, where known, the line."""

    def __init__(self, path: str, message: str, line: int | None = None) -> None:
        where = f"{path} line {line}" if line is not None else path
        super().__init__(f"{where}: {message}")
        self.path = path
        self.line = line
        self.reason = message


class InfNameError(InfError):
    """An INF that names a package file outside its own folder (`..`, a drive letter, an
    absolute path): no genuine driver package does, so the source is not trusted."""


@dataclass(frozen=True)
class InfLine:
    """One logical line of a section: `key = f1, f2` (key None for a value-only line)."""

    key: str | None
    fields: tuple[str, ...]
    lineno: int

    @property
    def value(self) -> str:
        return self.fields[0] if self.fields else ""


@dataclass(frozen=True)
class Decoration:
    """A TargetOSVersion decoration, e.g. `NTamd64.6.0` (fields missing are None)."""

    raw: str
    arch: str | None
    major: int | None
    minor: int | None
    product_type: int | None
    suite_mask: int | None
    build: int | None

    @classmethod
    def parse(cls, text: str) -> Decoration | None:
        """Parse `nt[arch][.major[.minor[.product[.suite[.build]]]]]`; None if not an NT one."""
        raw = text.strip()
        lowered = raw.lower()
        if not lowered.startswith("nt"):
            return None
        head, _, rest = lowered.partition(".")
        arch_part = head[2:]
        if arch_part and arch_part not in _ARCHES:
            return None
        numbers: list[int | None] = []
        for raw_part in rest.split(".") if rest else []:
            part = raw_part.strip()
            if not part:
                numbers.append(None)
                continue
            number = parse_int(part)
            if number is None:
                return None
            numbers.append(number)
        if len(numbers) > 5:
            return None
        numbers += [None] * (5 - len(numbers))
        major, minor, product_type, suite_mask, build = numbers
        return cls(raw, arch_part or None, major, minor, product_type, suite_mask, build)

    def applies_to(
        self,
        arch: str,
        nt_version: tuple[int, int],
        build: int | None = None,
        product_type: int = PRODUCT_SERVER,
    ) -> bool:
        """Whether Windows of this version and architecture may use this decoration.

        Since Windows Server 2003 SP1, non-x86 systems use only decorations that
        name their architecture; x86 also accepts a bare `NT`.
        """
        if self.arch is None:
            if arch != "x86":
                return False
        elif self.arch != arch:
            return False
        version = (self.major or 0, self.minor or 0)
        if version > nt_version:
            return False
        if self.product_type not in (None, 0) and self.product_type != product_type:
            return False
        return not (
            self.build is not None
            and build is not None
            and version == nt_version
            and self.build > build
        )

    def rank(self) -> tuple[int, int, int, int, int]:
        """Closeness: a higher rank is a closer match among applicable decorations."""
        return (
            self.major or 0,
            self.minor or 0,
            self.build or 0,
            1 if self.product_type else 0,
            1 if self.arch else 0,
        )

    def __str__(self) -> str:
        return self.raw


@dataclass(frozen=True)
class Model:
    """One device line of a models section: description, install section, hardware IDs."""

    description: str
    install_section: str
    hardware_ids: tuple[str, ...]
    lineno: int


@dataclass(frozen=True)
class Manufacturer:
    name: str
    models_section: str
    decorations: tuple[Decoration, ...]


@dataclass(frozen=True)
class SourceDisksFile:
    """A file `[SourceDisksFiles]` names: relative path inside the package folder."""

    name: str
    disk_id: str
    path: str


@dataclass(frozen=True)
class Service:
    name: str
    install_section: str
    service_type: int | None
    start_type: int | None
    binary: str
    load_order_group: str

    @property
    def boot_start(self) -> bool:
        return self.start_type == SERVICE_BOOT_START


@dataclass(frozen=True)
class Match:
    """How an INF installs on one OS: through which decoration and models section."""

    manufacturer: str
    decoration: Decoration | None
    models_section: str
    models: tuple[Model, ...]

    @property
    def decoration_text(self) -> str:
        return self.decoration.raw if self.decoration else ""

    @property
    def hardware_ids(self) -> tuple[str, ...]:
        seen: dict[str, None] = {}
        for model in self.models:
            for hwid in model.hardware_ids:
                seen.setdefault(hwid, None)
        return tuple(seen)


@dataclass(frozen=True)
class Inf:
    """A parsed INF file."""

    path: str
    sections: Mapping[str, tuple[InfLine, ...]]
    section_names: Mapping[str, str]
    strings: Mapping[str, str]
    encoding: str
    line_ending: str
    manufacturers: tuple[Manufacturer, ...] = field(default=())

    # -- [Version] ---------------------------------------------------------------

    def version_value(self, key: str) -> str | None:
        return self.value("version", key)

    @property
    def signature(self) -> str:
        return self.version_value("signature") or ""

    @property
    def driver_class(self) -> str:
        return self.version_value("class") or ""

    @property
    def class_guid(self) -> str:
        return self.version_value("classguid") or ""

    @property
    def provider(self) -> str:
        return self.version_value("provider") or ""

    @property
    def driver_ver(self) -> tuple[str, str]:
        """(date as written, version) from `DriverVer = mm/dd/yyyy,w.x.y.z`."""
        for line in self.section("version"):
            if line.key is not None and line.key.lower() == "driverver":
                date = line.fields[0] if line.fields else ""
                version = line.fields[1] if len(line.fields) > 1 else ""
                return date, version
        return "", ""

    @property
    def driver_ver_text(self) -> str:
        date, version = self.driver_ver
        return f"{date},{version}" if version else date

    def catalog_file(self, arch: str) -> str | None:
        """The catalog named for `arch` (`CatalogFile.NTamd64`, `.NT`, then plain)."""
        candidates = [f"catalogfile.nt{arch}", "catalogfile.nt", "catalogfile"]
        for key in candidates:
            value = self.version_value(key)
            if value:
                return value
        return None

    @property
    def catalog_files(self) -> Mapping[str, str]:
        """Every CatalogFile key of [Version] (lower-cased key -> file name)."""
        found: dict[str, str] = {}
        for line in self.section("version"):
            if line.key is not None and line.key.lower().startswith("catalogfile") and line.value:
                found[line.key.lower()] = line.value
        return MappingProxyType(found)

    # -- generic access ------------------------------------------------------------

    def section(self, name: str) -> tuple[InfLine, ...]:
        return self.sections.get(section_key(name), ())

    def has_section(self, name: str) -> bool:
        return section_key(name) in self.sections

    def section_name(self, name: str) -> str:
        """`name` as the INF's header spells it (`name` itself if there is none)."""
        return self.section_names.get(section_key(name), name)

    def value(self, section: str, key: str) -> str | None:
        """The first field of `key` in `section` (case-insensitive), or None."""
        wanted = key.lower()
        for line in self.section(section):
            if line.key is not None and line.key.lower() == wanted:
                return line.value
        return None

    # -- manufacturers and models ----------------------------------------------------

    @property
    def decorations(self) -> tuple[str, ...]:
        seen: dict[str, None] = {}
        for manufacturer in self.manufacturers:
            for decoration in manufacturer.decorations:
                seen.setdefault(decoration.raw, None)
        return tuple(seen)

    def models(self, section: str) -> tuple[Model, ...]:
        models = []
        for line in self.section(section):
            if line.key is None or len(line.fields) < 2:
                continue
            ids = tuple(f for f in line.fields[1:] if f)
            if ids:
                # A quoted install section may carry blanks ("` i`"); a header never does.
                models.append(Model(line.key, line.fields[0].strip(), ids, line.lineno))
        return tuple(models)

    def all_hardware_ids(self) -> tuple[str, ...]:
        seen: dict[str, None] = {}
        for manufacturer in self.manufacturers:
            names = [manufacturer.models_section] + [
                f"{manufacturer.models_section}.{d.raw}" for d in manufacturer.decorations
            ]
            for name in names:
                for model in self.models(name):
                    for hwid in model.hardware_ids:
                        seen.setdefault(hwid, None)
        return tuple(seen)

    # -- files -------------------------------------------------------------------

    def source_files(self, arch: str) -> tuple[SourceDisksFile, ...]:
        """Every file `[SourceDisksFiles]` and `[SourceDisksFiles.<arch>]` list, in order,
        at its path inside the package folder (`parse_inf` refused names that leave it)."""
        disk_paths: dict[str, str] = {}
        for name in ("sourcedisksnames", f"sourcedisksnames.{arch}"):
            for line in self.section(name):
                if line.key is None:
                    continue
                path = line.fields[3] if len(line.fields) > 3 else ""
                disk_paths[line.key.strip()] = path
        files: dict[str, SourceDisksFile] = {}
        for name in ("sourcedisksfiles", f"sourcedisksfiles.{arch}"):
            for line in self.section(name):
                filename = line.key if line.key is not None else line.value
                if not filename:
                    continue
                disk_id = line.fields[0] if line.key is not None and line.fields else ""
                subdir = line.fields[1] if line.key is not None and len(line.fields) > 1 else ""
                parts = [*path_parts(disk_paths.get(disk_id, "")), *path_parts(subdir), filename]
                relative = "/".join(parts)
                files[relative.lower()] = SourceDisksFile(filename, disk_id, relative)
        return tuple(files.values())

    # -- services ----------------------------------------------------------------

    def install_section(self, base: str, arch: str) -> str:
        """The section Windows uses for install section `base` on `arch`.

        The most specific that exists: `X.NTamd64`, then `X.NT`, then `X`.
        """
        for candidate in (f"{base}.nt{arch}", f"{base}.nt", base):
            if self.has_section(candidate):
                return self.section_name(candidate)
        return base

    def services(self, install_section: str | None = None) -> tuple[Service, ...]:
        """Services added by `<install>.Services` (all of them when no section is named)."""
        names = (
            [f"{install_section}.services"]
            if install_section is not None
            else [n for n in self.sections if n.endswith(".services")]
        )
        found: list[Service] = []
        for section_name in names:
            for line in self.section(section_name):
                if line.key is None or line.key.lower() != "addservice" or not line.fields:
                    continue
                service_name = line.fields[0]
                body = line.fields[2] if len(line.fields) > 2 else ""
                found.append(
                    Service(
                        name=service_name,
                        install_section=body,
                        service_type=parse_int(self.value(body, "ServiceType")) if body else None,
                        start_type=parse_int(self.value(body, "StartType")) if body else None,
                        binary=(self.value(body, "ServiceBinary") or "") if body else "",
                        load_order_group=(self.value(body, "LoadOrderGroup") or "") if body else "",
                    )
                )
        return tuple(found)

    def match_services(self, match: Match, arch: str) -> tuple[Service, ...]:
        """The services installed by the models of `match`."""
        found: dict[str, Service] = {}
        for model in match.models:
            section = self.install_section(model.install_section, arch)
            for service in self.services(section):
                found.setdefault(service.name.lower(), service)
        return tuple(found.values())


# -- names of the package's files ---------------------------------------------------


def section_key(name: str) -> str:
    """How section names compare: case-blind, without the blanks around them (a header
    `[ Name ]` and a reference `" name"` mean the same section)."""
    return name.strip().lower()


_SEPARATORS = re.compile(r"[\\/]")


def path_parts(path: str) -> list[str]:
    """The folders of a `[SourceDisksNames]` path or a `[SourceDisksFiles]` subdir, below
    the package folder: a leading `\\` means the package's own root, empty and `.` parts
    are nothing."""
    return [part for part in _SEPARATORS.split(path.strip()) if part not in ("", ".")]


def unsafe_name_reason(text: str, *, folder: bool) -> str | None:
    """Why a file name (or, with `folder`, a path) from `[SourceDisksFiles]` or
    `[SourceDisksNames]` would leave the package folder, or None if it stays inside."""
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        return "it has a control character"
    stripped = text.strip()
    parts = _SEPARATORS.split(stripped)
    if any(part.strip() == ".." for part in parts):
        return "'..' leads out of the package folder"
    if any(":" in part for part in parts):
        return "a drive letter or ':' names another place"
    if folder and stripped.startswith(("\\\\", "//")):
        return "it is a network path"
    if not folder and len(parts) > 1:
        return "a file name there cannot hold a folder separator"
    if not folder and stripped in ("", "."):
        return "it names no file"
    return None


def _check_package_names(path: str, sections: Mapping[str, tuple[InfLine, ...]]) -> None:
    """InfNameError for a `[SourceDisksFiles]` or `[SourceDisksNames]` name that leaves the
    package folder: the files of a package are read only from inside it."""
    for name in sorted(sections):
        base = name.split(".", 1)[0]
        if base not in ("sourcedisksfiles", "sourcedisksnames"):
            continue
        for line in sections[name]:
            if base == "sourcedisksfiles":
                names = [(line.key if line.key is not None else line.value, False)]
                if line.key is not None and len(line.fields) > 1:
                    names.append((line.fields[1], True))
            else:
                names = [(line.fields[3], True)] if len(line.fields) > 3 else []
            for text, folder in names:
                reason = unsafe_name_reason(text, folder=folder)
                if reason is not None:
                    header = (
                        "SourceDisksNames" if base == "sourcedisksnames" else ("SourceDisksFiles")
                    )
                    raise InfNameError(
                        path,
                        f"[{header}] names {shown(text)}: {reason}; every file of a package "
                        "comes from the INF's own folder",
                        line.lineno,
                    )


# -- writing INF-syntax text (txtsetup.oem, TXTSETUP.SIF) -------------------------------

# What an unquoted token of INF syntax cannot hold: a blank (it would be trimmed or split
# the token), `"` (quoting), `;` (a comment), `%` (a %string% reference), `,` (a field
# separator), `=` (the key separator) and brackets (a section header).
_TOKEN_SPECIALS = frozenset(' \t";%,=[]')


def quoted(text: str) -> str:
    """`text` as one quoted INF field that reads back as `text`: inside quotes `""` is a
    literal quote and `%%` a literal percent, and `;` and `,` are plain text. Control
    characters cannot be written at all: check `text_problem` first."""
    return '"' + text.replace('"', '""').replace("%", "%%") + '"'


def text_problem(text: str) -> str | None:
    """Why `text` cannot be a quoted field of an INF-syntax file, or None."""
    controls = sorted({c for c in text if ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F})
    if controls:
        return "it has control characters (" + ", ".join(f"U+{ord(c):04X}" for c in controls) + ")"
    return None


def token_problem(text: str) -> str | None:
    """Why `text` cannot be an unquoted token of an INF-syntax file (a hardware ID, a
    service or file name), or None: printable ASCII without blanks or specials."""
    if not text:
        return "it is empty"
    bad = sorted({c for c in text if c in _TOKEN_SPECIALS or not " " < c < "\x7f"})
    if bad:
        return "it has " + ", ".join(repr(c) for c in bad) + ", which an unquoted field cannot hold"
    return None


# -- decoding ----------------------------------------------------------------------


def _decode(data: bytes, path: str) -> tuple[str, str]:
    if data.startswith(codecs.BOM_UTF16_LE):
        encoding, body = "utf-16-le", data[2:]
    elif data.startswith(codecs.BOM_UTF16_BE):
        encoding, body = "utf-16-be", data[2:]
    elif data.startswith(codecs.BOM_UTF8):
        encoding, body = "utf-8-sig", data[3:]
    else:
        encoding, body = "ascii", data
    if encoding.startswith("utf-16"):
        if len(body) % 2:
            raise InfError(path, f"{encoding.upper()} text with an odd number of bytes")
        try:
            return body.decode(encoding), encoding
        except UnicodeDecodeError as exc:
            raise InfError(path, f"not valid {encoding.upper()} text ({exc.reason})") from None
    if b"\x00" in body:
        offset = body.index(b"\x00")
        raise InfError(path, f"NUL byte at offset {offset}: this is not a text INF file")
    if encoding == "utf-8-sig":
        try:
            return body.decode("utf-8"), encoding
        except UnicodeDecodeError as exc:
            raise InfError(path, f"not valid UTF-8 text ({exc.reason})") from None
    try:
        return body.decode("ascii"), "ascii"
    except UnicodeDecodeError:
        pass
    # A BOM-less INF is in the system ANSI code page; cp1252 leaves 5 bytes
    # undefined, which latin-1 maps, so reading never fails here.
    try:
        return body.decode("cp1252"), "cp1252"
    except UnicodeDecodeError:
        return body.decode("latin-1"), "latin-1"


# -- lexing ------------------------------------------------------------------------


def strip_comment(text: str) -> str:
    """`text` up to its `;` comment; a `;` inside double quotes is not one."""
    if '"' not in text:  # most lines: no quote to look inside (a scan lexes ~70,000)
        return text.partition(";")[0]
    in_quote = False
    for index, char in enumerate(text):
        if char == '"':
            in_quote = not in_quote
        elif char == ";" and not in_quote:
            return text[:index]
    return text


def _split_unquoted(text: str, separator: str, limit: int = -1) -> list[str]:
    """`text` split at `separator` outside double quotes, `limit` times at most (all
    of them when negative), the quotes kept."""
    if '"' not in text:  # nothing quoted: the plain split is the same split
        return text.split(separator, limit)
    # The pieces between quotes alternate: outside, inside, outside, ...
    parts: list[str] = []
    current: list[str] = []
    for index, piece in enumerate(text.split('"')):
        if index:
            current.append('"')
        if index % 2 or limit == 0 or separator not in piece:
            current.append(piece)
            continue
        pieces = piece.split(separator, limit)
        if limit > 0:
            limit -= len(pieces) - 1
        current.append(pieces[0])
        for rest in pieces[1:]:
            parts.append("".join(current))
            current = [rest]
    parts.append("".join(current))
    return parts


def _unquote(text: str) -> str:
    """Remove INF quoting: `"a, b"` -> `a, b`, `"a""b"` -> `a"b`."""
    text = text.strip()
    if '"' not in text:
        return text
    if '""' not in text:  # no escaped quote: every quote only opens or closes
        return text.replace('"', "")
    out: list[str] = []
    in_quote = False
    index = 0
    while index < len(text):
        char = text[index]
        if char == '"':
            if in_quote and index + 1 < len(text) and text[index + 1] == '"':
                out.append('"')
                index += 2
                continue
            in_quote = not in_quote
        else:
            out.append(char)
        index += 1
    return "".join(out)


_TOKEN = re.compile(r"%([^%\r\n]*)%")


def _substitute(text: str, strings: Mapping[str, str]) -> str:
    if "%" not in text:
        return text

    def replace(match: re.Match[str]) -> str:
        token = match.group(1)
        if token == "":
            return "%"
        return strings.get(token.lower(), match.group(0))

    return _TOKEN.sub(replace, text)


@dataclass
class _RawLine:
    text: str
    lineno: int


def _logical_lines(text: str, path: str) -> Iterator[_RawLine]:
    pending: list[str] = []
    start = 0
    for number, physical in enumerate(text.splitlines(), start=1):
        content = strip_comment(physical).rstrip()
        if not pending:
            start = number
        if content.endswith("\\") and not content.lstrip().startswith("["):
            pending.append(content[:-1])
            continue
        pending.append(content)
        joined = "".join(pending)
        pending = []
        if joined.strip():
            yield _RawLine(joined.strip(), start)
    if pending and "".join(pending).strip():
        yield _RawLine("".join(pending).strip(), start)


def _line_ending(data: bytes, encoding: str) -> str:
    crlf = "\r\n".encode(encoding.replace("-sig", ""))
    lf = "\n".encode(encoding.replace("-sig", ""))
    if crlf in data:
        return "crlf"
    if lf in data:
        return "lf"
    return "none"


# -- parsing -----------------------------------------------------------------------


def parse_inf(data: bytes, path: str) -> Inf:
    """Parse the bytes of an INF file. `path` names it in errors.

    Raises `InfError` (never anything else) for bytes that are not an INF.
    """
    if len(data) > MAX_INF_BYTES:
        raise InfError(path, f"{len(data)} bytes is too large for an INF file")
    text, encoding = _decode(data, path)
    raw_sections: dict[str, list[tuple[str, int]]] = {}
    names: dict[str, str] = {}
    current: str | None = None
    for line in _logical_lines(text, path):
        if line.text.startswith("["):
            close = line.text.find("]")
            if close < 0:
                raise InfError(path, f"section header without ']': {line.text[:60]!r}", line.lineno)
            name = line.text[1:close].strip()
            if not name:
                raise InfError(path, "empty section name", line.lineno)
            current = name.lower()
            names.setdefault(current, name)
            raw_sections.setdefault(current, [])
            continue
        if current is None:
            raise InfError(path, f"text before the first section: {line.text[:60]!r}", line.lineno)
        raw_sections[current].append((line.text, line.lineno))

    strings = _collect_strings(raw_sections)
    sections: dict[str, tuple[InfLine, ...]] = {}
    for name, lines in raw_sections.items():
        if name == "strings" or name.startswith("strings."):
            sections[name] = tuple(_entry(t, n, {}) for t, n in lines)
        else:
            sections[name] = tuple(_entry(t, n, strings) for t, n in lines)

    _check_package_names(path, sections)
    inf = Inf(
        path=path,
        sections=MappingProxyType(sections),
        section_names=MappingProxyType(names),
        strings=MappingProxyType(strings),
        encoding=encoding,
        line_ending=_line_ending(data, encoding),
    )
    if not inf.has_section("version"):
        raise InfError(path, "no [Version] section: this is not a driver INF file")
    signature = inf.signature.lower()
    if signature not in ("$windows nt$", "$chicago$", "$windows 95$"):
        raise InfError(
            path,
            f'[Version] Signature is {inf.signature!r}, expected "$Windows NT$"',
        )
    return _with_manufacturers(inf)


def _entry(text: str, lineno: int, strings: Mapping[str, str]) -> InfLine:
    parts = _split_unquoted(text, "=", limit=1)
    if len(parts) == 2:
        key: str | None = _substitute(_unquote(parts[0]), strings)
        rest = parts[1]
    else:
        key = None
        rest = parts[0]
    fields = tuple(_substitute(_unquote(f), strings) for f in _split_unquoted(rest, ","))
    if fields == ("",):
        fields = ()
    return InfLine(key, fields, lineno)


def _collect_strings(raw_sections: Mapping[str, list[tuple[str, int]]]) -> dict[str, str]:
    strings: dict[str, str] = {}
    # Generic [Strings] first; US English overrides; other languages only fill gaps.
    others = sorted(n for n in raw_sections if n.startswith("strings.") and n != "strings.0409")
    order = ["strings", "strings.0409", *others]
    for name in order:
        for text, _ in raw_sections.get(name, []):
            parts = _split_unquoted(text, "=", limit=1)
            if len(parts) != 2:
                continue
            key = _unquote(parts[0]).lower()
            value = _unquote(parts[1])
            if name in ("strings", "strings.0409") or key not in strings:
                strings[key] = value
    # %% inside a string value means a literal percent.
    return {k: v.replace("%%", "%") for k, v in strings.items()}


def _with_manufacturers(inf: Inf) -> Inf:
    manufacturers: list[Manufacturer] = []
    for line in inf.section("manufacturer"):
        if line.key is None:
            if line.value:
                manufacturers.append(Manufacturer(line.value, line.value, ()))
            continue
        if not line.fields or not line.fields[0]:
            continue
        decorations = tuple(
            d for d in (Decoration.parse(f) for f in line.fields[1:] if f) if d is not None
        )
        manufacturers.append(Manufacturer(line.key, line.fields[0], decorations))
    return Inf(
        path=inf.path,
        sections=inf.sections,
        section_names=inf.section_names,
        strings=inf.strings,
        encoding=inf.encoding,
        line_ending=inf.line_ending,
        manufacturers=tuple(manufacturers),
    )


# -- the decoration rule -------------------------------------------------------------


def supports(
    inf: Inf,
    nt_version: tuple[int, int],
    arch: str,
    *,
    build: int | None = None,
    product_type: int = PRODUCT_SERVER,
) -> Match | None:
    """Whether (and through which models section) `inf` installs on this Windows.

    Of the decorations a manufacturer lists, those that apply (architecture,
    version not newer than the OS, product type) compete and the closest wins. An
    undecorated models section is used only on x86 and only when no decoration of
    that manufacturer applies. Returns the best match over all manufacturers that
    has at least one model, or None.
    """
    best: tuple[tuple[int, ...], Match] | None = None
    for manufacturer in inf.manufacturers:
        applicable = [
            d
            for d in manufacturer.decorations
            if d.applies_to(arch, nt_version, build, product_type)
            and inf.has_section(f"{manufacturer.models_section}.{d.raw}")
        ]
        decoration: Decoration | None = None
        if applicable:
            closest = max(applicable, key=Decoration.rank)
            decoration = closest
            section = f"{manufacturer.models_section}.{closest.raw}"
            rank: tuple[int, ...] = (1, *closest.rank())
        elif arch == "x86" and inf.has_section(manufacturer.models_section):
            section = manufacturer.models_section
            rank = (0,)
        else:
            continue
        models = inf.models(section)
        if not models:
            continue
        match = Match(
            manufacturer=manufacturer.name,
            decoration=decoration,
            models_section=inf.section_name(section),
            models=models,
        )
        if best is None or rank > best[0]:
            best = (rank, match)
    return best[1] if best else None


@dataclass(frozen=True)
class Declared:
    """What a set of INF files declares about the Windows it installs on, as seen from
    one architecture (for saying why none of them fits)."""

    decorations: tuple[Decoration, ...]
    undecorated: bool  # some manufacturer lists an undecorated models section (x86)
    arch: str

    @property
    def names(self) -> tuple[str, ...]:
        """Every decoration as written, each once, sorted (`undecorated` if none)."""
        return tuple(sorted({d.raw for d in self.decorations})) or ("undecorated",)

    @property
    def arches(self) -> tuple[str, ...]:
        """The architectures the INFs install on (`x86` for a bare `NT`)."""
        found = {d.arch or "x86" for d in self.decorations}
        return tuple(sorted(found | ({"x86"} if self.undecorated else set())))

    @property
    def same_arch(self) -> tuple[Decoration, ...]:
        return tuple(d for d in self.decorations if (d.arch or "x86") == self.arch)

    def newer_only(self, nt_version: tuple[int, int]) -> tuple[int, int] | None:
        """The oldest NT version the INFs need for this architecture, when every
        decoration of it is newer than `nt_version`; else None."""
        versions = [(d.major or 0, d.minor or 0) for d in self.same_arch]
        if versions and all(v > nt_version for v in versions):
            return min(versions)
        return None


def declared(infs: Iterable[Inf], arch: str) -> Declared:
    """What `infs` declare, seen from `arch`."""
    manufacturers = [m for inf in infs for m in inf.manufacturers]
    return Declared(
        decorations=tuple(d for m in manufacturers for d in m.decorations),
        undecorated=any(not m.decorations for m in manufacturers),
        arch=arch,
    )


def describe_decorations(inf: Inf) -> str:
    """`NTamd64.6.1, NTx86.6.1` — the decorations an INF offers, for messages."""
    decorations = inf.decorations
    if decorations:
        return ", ".join(decorations)
    return "undecorated models only (x86)"


def hardware_id_matches(inf_id: str, device_ids: Sequence[str]) -> bool:
    """Whether an INF hardware ID equals one of a device's IDs (case-insensitive)."""
    wanted = inf_id.upper()
    return any(wanted == d.upper() for d in device_ids)
