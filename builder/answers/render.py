"""Answer files and the post-install script, rendered from `templates/` (pure).

This module owns the text Windows setup reads: `autounattend.xml` (Windows Server
2008 and 2008 R2), `winnt.sif` and the F6 disk's `txtsetup.oem` (Windows Server
2003), and the post-install script with its marker file at the root of drivers.iso.
It is the only module that builds a Jinja2 Environment. Data in, bytes out:

- every path on the media comes from `builder.layout`, which the media writers use
  too, so the answer files name exactly the folders that get written;
- which unattend settings a Windows version knows is the table `GATED_SETTINGS`
  (a setting an older Setup does not know makes it refuse the whole pass);
- `txtsetup.oem` is derived from the selected storage INF (hardware IDs, service,
  files, registry values), not copied from virtio-win's own, which has defects;
- user values reach XML through Jinja2 autoescaping, and winnt.sif only after
  `builder.config` refused what a quoted winnt.sif value cannot carry.

Secrets (the administrator password, the product key) appear only in the rendered
bytes; no error raised here quotes them.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from types import MappingProxyType
from typing import Any

import jinja2

from builder.config import BuildConfig
from builder.errors import BuildError
from builder.media import layout
from builder.media.slipstream import storage_sys_name
from builder.resources import data_dir
from builder.virtio.inf import Inf, Service
from builder.virtio.packages import PackageFile
from builder.virtio.selection import DriverSet, SelectedDriver
from builder.windows.profiles import Arch, Profile

# Answer files that hold the administrator password or the product key; the pipeline
# writes them with mode 0600. txtsetup.oem and the post-install script hold neither.
SECRET_FILES: frozenset[str] = frozenset({"autounattend.xml", "winnt.sif"})

# The suffix Windows appends before encoding a password with PlainText=false
# (reference/windows-2008.md §1.4): AdministratorPassword for UserAccounts, Password
# for AutoLogon and LocalAccount passwords.
ADMIN_PASSWORD_SUFFIX = "AdministratorPassword"  # noqa: S105 - an element name
ACCOUNT_PASSWORD_SUFFIX = "Password"  # noqa: S105 - an element name

NtVersion = tuple[int, int]

SHELL_SETUP = "Microsoft-Windows-Shell-Setup"


@dataclass(frozen=True)
class GatedSetting:
    """An unattend setting that only some Windows versions know, and its value.

    `parent` is the element path inside the component ("" for a direct child of the
    component). The setting is emitted for NT versions `since` to `until` (inclusive;
    None: no end). `source` says where the version range comes from.
    """

    config_pass: str
    component: str
    parent: str
    name: str
    value: str
    since: NtVersion
    until: NtVersion | None
    source: str

    def known_by(self, version: NtVersion) -> bool:
        return self.since <= version and (self.until is None or version <= self.until)


# Settings whose existence depends on the Windows version. Unknown settings are not
# ignored: Setup stops with "could not parse or process unattend answer file for pass
# [oobeSystem]" (cloudbase/windows-imaging-tools#1: a 2012 R2 file on 2008 R2). The
# templates emit these only through `gated()`/`gated_components()`, so this table
# decides; the 6.2 rows exist for the 2012-and-later profiles and are never emitted
# for 2008 or 2008 R2 (a unit test checks that).
GATED_SETTINGS: tuple[GatedSetting, ...] = (
    GatedSetting(
        "specialize",
        "Microsoft-Windows-Security-Licensing-SLC-UX",
        "",
        "SkipAutoActivation",
        "true",
        (6, 0),
        (6, 0),
        "MS cc749137/cc749043 (Vista, Server 2008); deprecated in Windows 7, removed in "
        "Windows 8 (MS ff715721)",
    ),
    GatedSetting(
        "specialize",
        "Microsoft-Windows-Security-SPP-UX",
        "",
        "SkipAutoActivation",
        "true",
        (6, 1),
        None,
        "MS ff715518: Windows Server 2008 R2 and later",
    ),
    GatedSetting(
        "oobeSystem",
        SHELL_SETUP,
        "OOBE",
        "HideEULAPage",
        "true",
        (6, 0),
        None,
        "MS cc721948 (Vista/Server 2008 OOBE settings)",
    ),
    GatedSetting(
        "oobeSystem",
        SHELL_SETUP,
        "OOBE",
        "HideLocalAccountScreen",
        "true",
        (6, 2),
        None,
        "Windows 8 / Server 2012 OOBE; 2008 R2 Setup rejects it "
        "(cloudbase/windows-imaging-tools#1)",
    ),
    GatedSetting(
        "oobeSystem",
        SHELL_SETUP,
        "OOBE",
        "HideOnlineAccountScreens",
        "true",
        (6, 2),
        None,
        "Windows 8 / Server 2012 OOBE; 2008 R2 Setup rejects it "
        "(cloudbase/windows-imaging-tools#1)",
    ),
    GatedSetting(
        "oobeSystem",
        SHELL_SETUP,
        "OOBE",
        "HideOEMRegistrationScreen",
        "true",
        (6, 2),
        None,
        "Windows 8 / Server 2012 OOBE (inferred: introduced with the account screens)",
    ),
)


def gated_settings(
    profile: Profile, config_pass: str, component: str, parent: str = ""
) -> tuple[GatedSetting, ...]:
    """The rows of `GATED_SETTINGS` at one place of the answer file that `profile` knows."""
    return tuple(
        s
        for s in GATED_SETTINGS
        if s.config_pass == config_pass
        and s.component == component
        and s.parent == parent
        and s.known_by(profile.nt_version)
    )


def gated_components(profile: Profile, config_pass: str) -> tuple[str, ...]:
    """Components of `config_pass` made only of gated settings that `profile` knows
    (the auto-activation switch: SLC-UX on 2008, SPP-UX from 2008 R2 on)."""
    found: dict[str, None] = {}
    for setting in GATED_SETTINGS:
        if (
            setting.config_pass == config_pass
            and setting.parent == ""
            and setting.known_by(profile.nt_version)
        ):
            found.setdefault(setting.component, None)
    return tuple(found)


def encode_password(password: str, suffix: str) -> str:
    """A password as unattend.xml holds it with PlainText=false.

    Args:
        password: the password in clear.
        suffix: `ADMIN_PASSWORD_SUFFIX` for UserAccounts/AdministratorPassword,
            `ACCOUNT_PASSWORD_SUFFIX` for AutoLogon and LocalAccount passwords.

    Returns:
        base64(UTF-16LE(password + suffix)): obfuscation, not encryption.
    """
    return base64.b64encode((password + suffix).encode("utf-16-le")).decode("ascii")


# -- the Jinja2 environment ------------------------------------------------------------------


@cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(data_dir("templates"))),
        # XML templates escape every value; winnt.sif, txtsetup.oem and the cmd script
        # have no escaping syntax, so their values are checked before rendering.
        autoescape=jinja2.select_autoescape(
            enabled_extensions=("xml", "xml.j2"), default_for_string=False, default=False
        ),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def _render(template: str, context: Mapping[str, Any]) -> str:
    return _environment().get_template(template).render(context)


def render_template(template: str, context: Mapping[str, Any]) -> str:
    """Render a template of `templates/` with the one Environment (`*.xml.j2` are
    autoescaped); for other modules' templates, such as the domain XML."""
    return _render(template, context)


def _crlf(text: str) -> str:
    """Windows line ends: text-mode setup reads CRLF files (one stray LF in a SIF file
    is reported to make it "corrupt"), and so does everything else here."""
    lines = text.replace("\r\n", "\n").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return "".join(line + "\r\n" for line in lines)


def _encode(name: str, text: str, encoding: str) -> bytes:
    try:
        return _crlf(text).encode(encoding)
    except UnicodeEncodeError as exc:
        # builder.config refuses such values; reaching this is a bug. The message names
        # the position only: the text may hold a secret.
        raise BuildError(
            f"{name}: character {exc.start} cannot be written as {encoding}."
        ) from None


# -- autounattend.xml (2008 family) ---------------------------------------------------------


def _first_logon_drive_search() -> dict[str, Any]:
    return {
        "drive_letters": layout.SEARCH_DRIVE_LETTERS,
        "marker": layout.MARKER_FILE,
        "script": layout.POSTINSTALL_SCRIPT,
    }


def _unattend_context(config: BuildConfig, drivers: DriverSet) -> dict[str, Any]:
    profile = config.profile
    password = config.admin_password.reveal()

    def gated(config_pass: str, component: str, parent: str = "") -> tuple[GatedSetting, ...]:
        return gated_settings(profile, config_pass, component, parent)

    def components(config_pass: str) -> tuple[str, ...]:
        return gated_components(profile, config_pass)

    return {
        "profile": profile,
        "arch": profile.arch,
        "locale": config.locale,
        "input_locale": config.input_locale,
        "image_name": config.image_name,
        "product_key": config.product_key.reveal() if config.product_key else None,
        "full_name": config.full_name,
        "organization": config.organization,
        "driver_paths": tuple(
            layout.floppy_path_windows(d) for d in layout.floppy_drivers(drivers)
        ),
        "computer_name": config.computer_name,
        "timezone": config.timezone,
        "workgroup": config.workgroup,
        "admin_password": encode_password(password, ADMIN_PASSWORD_SUFFIX),
        "autologon_password": encode_password(password, ACCOUNT_PASSWORD_SUFFIX),
        "autologon_count": config.autologon_count,
        "gated": gated,
        "gated_components": components,
        **_first_logon_drive_search(),
    }


def render_autounattend(config: BuildConfig, drivers: DriverSet) -> bytes:
    """`autounattend.xml` for a 2008-family profile, UTF-8."""
    text = _render("autounattend.xml.j2", _unattend_context(config, drivers))
    return _encode("autounattend.xml", text, "utf-8")


# -- winnt.sif (2003) ------------------------------------------------------------------------


def _sif_quoted(key: str, value: str) -> str:
    """`"value"` for winnt.sif. A quoted value cannot hold a quote, a line break or (the
    INF parser expands %name%) a percent sign; builder.config refuses those first."""
    if any(c in value for c in '"%\r\n'):
        raise BuildError(f"{key} cannot be quoted in winnt.sif.")
    return f'"{value}"'


def _winnt_context(config: BuildConfig, drivers: DriverSet) -> dict[str, Any]:
    if config.product_key is None:
        raise BuildError("Windows Server 2003 needs a product key; the settings have none.")
    return {
        "profile": config.profile,
        "oem_pnp_drivers_path": _sif_quoted(
            "OemPnPDriversPath", ";".join(layout.oem_pnp_path(d) for d in drivers.selected)
        ),
        "admin_password": _sif_quoted("admin_password", config.admin_password.reveal()),
        "timezone_index": config.timezone_index,
        "autologon_count": config.autologon_count,
        "product_key": _sif_quoted("product_key", config.product_key.reveal()),
        "full_name": _sif_quoted("full_name", config.full_name),
        "organization": (
            _sif_quoted("organization", config.organization) if config.organization else None
        ),
        "computer_name": config.computer_name,
        "workgroup": config.workgroup,
        "language": config.language_code,
        **_first_logon_drive_search(),
    }


def render_winnt_sif(config: BuildConfig, drivers: DriverSet) -> bytes:
    """`winnt.sif` for a 2003 profile: Windows-1252, CRLF."""
    return _encode("winnt.sif", _render("winnt.sif.j2", _winnt_context(config, drivers)), "cp1252")


# -- txtsetup.oem (2003 F6 disk) -------------------------------------------------------------

# The F6 menu option per architecture, named as virtio-win's own F6 floppies named it.
F6_OPTIONS: Mapping[Arch, str] = MappingProxyType({"x86": "WNET32", "amd64": "WNET64"})

# INF AddReg value types (the type bits of the flags) -> txtsetup.oem [Config] types.
# Types txtsetup.oem cannot express (binary, none) are left to GUI-mode setup, which
# applies the INF itself.
_REG_TYPES: Mapping[int, str] = MappingProxyType(
    {
        0x00000000: "REG_SZ",
        0x00010001: "REG_DWORD",
        0x00020000: "REG_EXPAND_SZ",
        0x00010000: "REG_MULTI_SZ",
    }
)
_REG_TYPE_MASK = 0xFFFF0001
# FLG_ADDREG_DELVAL, _APPEND, _KEYONLY, _KEYONLY_COMMON and the DelReg bit: these do
# not set a value, or (APPEND) add to one in a way [Config] cannot say.
_REG_SKIP_FLAGS = 0x4 | 0x8 | 0x10 | 0x2000 | 0x8000


@dataclass(frozen=True)
class OemFile:
    """One line of `[Files.scsi.<option>]`: kind (driver, inf, catalog), disk, name, and
    the driver key for a `driver` line."""

    kind: str
    disk: str
    name: str
    driver_key: str = ""


@dataclass(frozen=True)
class F6Disk:
    """What `txtsetup.oem` says, derived from the storage INF."""

    source: str
    driver_ver: str
    description: str
    option: str
    disks: tuple[tuple[str, str], ...]
    files: tuple[OemFile, ...]
    hardware_ids: tuple[tuple[str, str], ...]
    driver_key: str
    config_values: tuple[str, ...]


def _oem_text(text: str) -> str:
    """Free text for a quoted txtsetup.oem field: no quotes, Windows-1252 only."""
    cleaned = text.replace('"', "'").replace("\r", " ").replace("\n", " ").strip()
    return cleaned.encode("cp1252", errors="replace").decode("cp1252")


def _oem_field(text: str) -> str:
    """A field quoted when it has to be (spaces, commas, '#', ';', '=')."""
    if any(c in text for c in ' ,#;="'):
        return f'"{_oem_text(text)}"'
    return text


def _int(text: str) -> int | None:
    text = text.strip()
    try:
        return int(text, 16) if text.lower().startswith("0x") else int(text)
    except ValueError:
        return None


def _config_values(inf: Inf, service: Service) -> tuple[str, ...]:
    """The service's registry values as `[Config.<driver key>]` lines.

    The service install section's AddReg writes under HKR = Services\\<service>, which
    is exactly where `[Config.<driver key>]` values go (viostor: `Parameters\\PnpInterface`
    `5` = 1, which marks the ScsiPort miniport as PnP on PCI, and `Parameters` `BusType`).
    """
    lines: list[str] = []
    if not service.install_section:
        return ()
    for line in inf.section(service.install_section):
        if line.key is None or line.key.lower() != "addreg":
            continue
        for section in line.fields:
            for entry in inf.section(section):
                fields = list(entry.fields)
                if entry.key is not None or len(fields) < 5 or fields[0].upper() != "HKR":
                    continue
                subkey, name, flags_text, data = fields[1], fields[2], fields[3], fields[4]
                flags = _int(flags_text or "0")
                if not subkey or not name or flags is None or flags & _REG_SKIP_FLAGS:
                    continue
                reg_type = _REG_TYPES.get(flags & _REG_TYPE_MASK)
                if reg_type is None:
                    continue
                if reg_type == "REG_DWORD":
                    number = _int(data)
                    if number is None or not 0 <= number <= 0xFFFFFFFF:
                        continue
                    # txtsetup.oem REG_DWORD data is hexadecimal, without 0x.
                    value = f"{number:x}"
                elif reg_type == "REG_MULTI_SZ":
                    value = ",".join(f'"{_oem_text(item)}"' for item in fields[4:])
                else:
                    value = f'"{_oem_text(data)}"'
                lines.append(f"{_oem_field(subkey)},{_oem_field(name)},{reg_type},{value}")
    return tuple(dict.fromkeys(lines))


def _model_service(inf: Inf, install_section: str, arch: str, fallback: str) -> str:
    services = inf.services(inf.install_section(install_section, arch))
    return services[0].name if services else fallback


def f6_disk(drivers: DriverSet) -> F6Disk:
    """The F6 disk's `txtsetup.oem` contents for the selected storage driver.

    The storage package sits in `layout.floppy_folder(storage)` on the floppy, each file
    at its path relative to the INF (`layout.package_relative`); a file in a subfolder
    gets a disk entry of its own, because `[Files]` lines name files without folders.
    """
    profile = drivers.profile
    storage: SelectedDriver = drivers.storage
    inf = storage.package.inf
    sys_name = storage_sys_name(storage).lower()
    driver_key = storage.service_name
    folder = "\\" + layout.floppy_folder(storage)

    disks: dict[str, str] = {}
    files: list[OemFile] = []
    kinds: list[tuple[str, PackageFile]] = []
    for file in storage.files:
        base = file.path.rpartition("/")[2]
        if file.kind == "inf":
            kinds.append(("inf", file))
        elif file.kind == "catalog":
            kinds.append(("catalog", file))
        elif base.lower() == sys_name:
            kinds.append(("driver", file))
    if not any(kind == "driver" for kind, _ in kinds):
        raise BuildError(f"the {storage.name} package {storage.inf_path} has no {sys_name}.")
    # driver first, then inf, then catalog: the order of Microsoft's examples.
    order = {"driver": 0, "inf": 1, "catalog": 2}
    for kind, file in sorted(kinds, key=lambda item: order[item[0]]):
        relative = layout.package_relative(storage, file)
        sub, _, name = relative.rpartition("/")
        directory = folder + ("\\" + sub.replace("/", "\\") if sub else "")
        disk = disks.setdefault(directory, f"d{len(disks) + 1}")
        files.append(OemFile(kind, disk, name, driver_key if kind == "driver" else ""))

    hardware_ids: dict[str, str] = {}
    for model in storage.match.models:
        model_service = _model_service(inf, model.install_section, storage.arch, driver_key)
        for hwid in model.hardware_ids:
            hardware_ids.setdefault(hwid, model_service)

    config_values: tuple[str, ...] = ()
    for service in storage.services:
        if service.name.lower() == driver_key.lower():
            config_values = _config_values(inf, service)
            break

    description = _storage_description(storage)
    return F6Disk(
        source=_oem_text(storage.inf_path),
        driver_ver=_oem_text(storage.driver_ver),
        description=f"{description} ({profile.arch_label})",
        option=F6_OPTIONS[profile.arch],
        disks=tuple((disk, directory) for directory, disk in disks.items()),
        files=tuple(files),
        hardware_ids=tuple(hardware_ids.items()),
        driver_key=driver_key,
        config_values=config_values,
    )


def _storage_description(storage: SelectedDriver) -> str:
    for model in storage.match.models:
        if model.description.strip():
            return _oem_text(model.description)
    return _oem_text(storage.info.description if storage.info else storage.service_name)


def render_txtsetup_oem(config: BuildConfig, drivers: DriverSet) -> bytes:
    """`txtsetup.oem` of the 2003 F6 disk: Windows-1252, CRLF."""
    context = {"disk": f6_disk(drivers), "tag_file": "\\" + layout.F6_TAG_FILE}
    return _encode("txtsetup.oem", _render("txtsetup.oem.j2", context), "cp1252")


# -- the answer files of a profile -----------------------------------------------------------

_RENDERERS: Mapping[str, Callable[[BuildConfig, DriverSet], bytes]] = MappingProxyType(
    {
        "autounattend.xml": render_autounattend,
        "winnt.sif": render_winnt_sif,
        "txtsetup.oem": render_txtsetup_oem,
    }
)


def _check_profiles(config: BuildConfig, drivers: DriverSet) -> Profile:
    if config.profile.name != drivers.profile.name:
        raise BuildError(
            f"settings for {config.profile.name} but drivers for {drivers.profile.name}."
        )
    return config.profile


def render_answer_files(config: BuildConfig, drivers: DriverSet) -> dict[str, bytes]:
    """The answer files of the profile, by name.

    Args:
        config: the validated settings.
        drivers: the drivers selected for the same profile.

    Returns:
        2008 family: `{"autounattend.xml": UTF-8 XML}`; 2003: `{"winnt.sif": ...,
        "txtsetup.oem": ...}` (Windows-1252, CRLF). Names are the profile's
        `answer_files`; `layout.media_name` spells them for the media.

    Raises:
        BuildError: settings and drivers of different profiles, or a storage package
            without its driver file.
    """
    profile = _check_profiles(config, drivers)
    return {name: _RENDERERS[name](config, drivers) for name in profile.answer_files}


# -- the post-install step on drivers.iso ----------------------------------------------------

_CMD_SPECIAL = frozenset("^&|<>()")


def cmd_child_command(command: str) -> str:
    """`command` escaped to stand inside `cmd /s /c "..."` on a line of a batch file, so
    that the child cmd receives exactly `command` and runs it as if typed at a prompt.

    The batch parser sees the user's quoted parts as unquoted (the outer quotes flip
    them), so special characters there get a caret; '%' is doubled everywhere, leaving
    %VAR% for the child to expand. `builder.config` refuses unbalanced quotes, which
    would leave the rest of the line quoted.
    """
    out: list[str] = []
    quoted = False
    for char in command:
        if char == '"':
            quoted = not quoted
            out.append(char)
        elif char == "%":
            out.append("%%")
        elif quoted and char in _CMD_SPECIAL:
            out.append("^" + char)
        else:
            out.append(char)
    return "".join(out)


@dataclass(frozen=True)
class _PostinstallDriver:
    name: str
    path: str


def _postinstall_drivers(drivers: DriverSet) -> Iterable[_PostinstallDriver]:
    # 2003 has no pnputil: GUI-mode setup installed every package from OemPnPDriversPath.
    if drivers.profile.is_2003:
        return ()
    # Every selected package, the floppy's too: those are already in the driver store
    # (windowsPE DriverPaths), and adding the same package again changes nothing, while
    # it gives NetKVM a second chance if staging from A: failed.
    return tuple(
        _PostinstallDriver(d.name, layout.iso_path_windows(d, drivers.profile, "%PV_DRIVE%"))
        for d in drivers.selected
    )


def render_postinstall(config: BuildConfig, drivers: DriverSet) -> dict[str, bytes]:
    """The files for the root of drivers.iso: the post-install script and its marker.

    The first logon runs the script from whichever drive holds `layout.MARKER_FILE`.
    2008 family: `pnputil -i -a` for every selected package from the ISO; 2003: nothing
    to install. Then the user's `first_logon_commands`, each in its own cmd, then the
    power-off that tells `pvinstall build --install` that setup has finished. Everything
    is logged to `layout.POSTINSTALL_LOG` on the installed system.

    Returns:
        `{layout.POSTINSTALL_SCRIPT: ASCII cmd script, CRLF, layout.MARKER_FILE: text}`.
    """
    profile = _check_profiles(config, drivers)
    context = {
        "profile": profile,
        "log": layout.POSTINSTALL_LOG,
        "marker": layout.MARKER_FILE,
        "drivers": _postinstall_drivers(drivers),
        "commands": tuple(cmd_child_command(c) for c in config.first_logon_commands),
        # 2003's shutdown.exe takes the dash form; 2008's both.
        "shutdown": "shutdown -s -t 0" if profile.is_2003 else "shutdown /s /t 0",
    }
    script = _encode(layout.POSTINSTALL_SCRIPT, _render("postinst.cmd.j2", context), "ascii")
    marker = _crlf(f"pvinstall drivers disc for {profile.name}\n").encode("ascii")
    return {layout.POSTINSTALL_SCRIPT: script, layout.MARKER_FILE: marker}
