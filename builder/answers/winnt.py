"""winnt.sif and the F6 disk's txtsetup.oem, for Windows Server 2003 (pure).

winnt.sif answers text-mode and GUI-mode setup; user values reach it quoted, after
`builder.config` refused what a quoted winnt.sif value cannot carry. `txtsetup.oem` is
derived from the selected storage INF (hardware IDs, service, files, registry values),
not copied from virtio-win's own, which has defects.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from builder.answers.environment import encode, render
from builder.answers.postinstall import drive_search
from builder.config import BuildConfig
from builder.errors import BuildError
from builder.media import layout
from builder.media.slipstream import (
    checked_ansi,
    checked_quoted,
    checked_token,
    storage_description,
    storage_sys_name,
)
from builder.numbers import parse_int
from builder.virtio.inf import Inf, Service, token_problem
from builder.virtio.packages import PackageFile
from builder.virtio.selection import DriverSet, SelectedDriver
from builder.windows.profiles import Arch, DiskLayout


def sif_quoted(key: str, value: str) -> str:
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
        "oem_pnp_drivers_path": sif_quoted(
            "OemPnPDriversPath", ";".join(layout.oem_pnp_path(d) for d in drivers.selected)
        ),
        "admin_password": sif_quoted("admin_password", config.admin_password.reveal()),
        "timezone_index": config.timezone_index,
        "autologon_count": config.autologon_count,
        "product_key": sif_quoted("product_key", config.product_key.reveal()),
        "full_name": sif_quoted("full_name", config.full_name),
        "organization": (
            sif_quoted("organization", config.organization) if config.organization else None
        ),
        "computer_name": config.computer_name,
        "workgroup": config.workgroup,
        "language": config.language_code,
        **drive_search(),
    }


# The disk layouts winnt.sif can ask for: Repartition makes one NTFS partition on an MBR
# disk (docs/windows-2003.md §2).
WINNT_DISK_LAYOUTS: frozenset[DiskLayout] = frozenset({DiskLayout.MBR})


def render_winnt_sif(config: BuildConfig, drivers: DriverSet) -> bytes:
    """`winnt.sif` for a 2003 profile: Windows-1252, CRLF."""
    if config.disk_layout not in WINNT_DISK_LAYOUTS:
        raise BuildError(
            f"winnt.sif cannot partition a {config.disk_layout} disk for "
            f"{config.profile.name}; it repartitions MBR disks only."
        )
    return encode("winnt.sif", render("winnt.sif.j2", _winnt_context(config, drivers)), "cp1252")


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
    """What `txtsetup.oem` says, derived from the storage INF: `description` is quoted
    already, names and hardware IDs are checked tokens, `source` and `driver_ver` are
    comment text."""

    source: str
    driver_ver: str
    description: str
    option: str
    disks: tuple[tuple[str, str], ...]
    files: tuple[OemFile, ...]
    hardware_ids: tuple[tuple[str, str], ...]
    driver_key: str
    config_values: tuple[str, ...]


def _oem_quoted(inf_path: str, what: str, text: str) -> str:
    """A quoted txtsetup.oem field (`""` for a quote, `%%` for a percent) in
    Windows-1252; InputError naming the INF for what it cannot hold."""
    return checked_quoted(inf_path, what, checked_ansi(inf_path, what, text))


def _oem_field(inf_path: str, what: str, text: str) -> str:
    """A field as it is when it is a plain token, quoted when it has to be (spaces,
    commas, `#`, `;`, `=`, quotes, `%`)."""
    if token_problem(text) is None and "#" not in text:
        return text
    return _oem_quoted(inf_path, what, text)


def _comment(text: str) -> str:
    """Text for a `;` comment line: any character, but on one line and in Windows-1252
    (a comment is never read, so what it cannot hold becomes `?` or a blank)."""
    one_line = "".join(" " if ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F else c for c in text)
    return one_line.encode("cp1252", errors="replace").decode("cp1252")


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
                flags = parse_int(flags_text or "0")
                if not subkey or not name or flags is None or flags & _REG_SKIP_FLAGS:
                    continue
                reg_type = _REG_TYPES.get(flags & _REG_TYPE_MASK)
                if reg_type is None:
                    continue
                if reg_type == "REG_DWORD":
                    number = parse_int(data)
                    if number is None or not 0 <= number <= 0xFFFFFFFF:
                        continue
                    # txtsetup.oem REG_DWORD data is hexadecimal, without 0x.
                    value = f"{number:x}"
                elif reg_type == "REG_MULTI_SZ":
                    value = ",".join(
                        _oem_quoted(inf.path, "registry value", item) for item in fields[4:]
                    )
                else:
                    value = _oem_quoted(inf.path, "registry value", data)
                key_path = _oem_field(inf.path, "registry key", subkey)
                value_name = _oem_field(inf.path, "registry value name", name)
                lines.append(f"{key_path},{value_name},{reg_type},{value}")
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
    driver_key = checked_token(storage.inf_path, "service name", storage.service_name)
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
        directory = checked_token(storage.inf_path, "folder", directory)
        disk = disks.setdefault(directory, f"d{len(disks) + 1}")
        name = checked_token(storage.inf_path, "file name", name)
        files.append(OemFile(kind, disk, name, driver_key if kind == "driver" else ""))

    hardware_ids: dict[str, str] = {}
    for model in storage.match.models:
        model_service = _model_service(inf, model.install_section, storage.arch, driver_key)
        model_service = checked_token(storage.inf_path, "service name", model_service)
        for hwid in model.hardware_ids:
            hardware_ids.setdefault(
                checked_token(storage.inf_path, "hardware ID", hwid), model_service
            )

    config_values: tuple[str, ...] = ()
    for service in storage.services:
        if service.name.lower() == driver_key.lower():
            config_values = _config_values(inf, service)
            break

    description = f"{storage_description(storage)} ({profile.arch_label})"
    return F6Disk(
        source=_comment(storage.inf_path),
        driver_ver=_comment(storage.driver_ver),
        description=_oem_quoted(storage.inf_path, "description", description),
        option=F6_OPTIONS[profile.arch],
        disks=tuple((disk, directory) for directory, disk in disks.items()),
        files=tuple(files),
        hardware_ids=tuple(hardware_ids.items()),
        driver_key=driver_key,
        config_values=config_values,
    )


def render_txtsetup_oem(config: BuildConfig, drivers: DriverSet) -> bytes:
    """`txtsetup.oem` of the 2003 F6 disk: Windows-1252, CRLF."""
    context = {"disk": f6_disk(drivers), "tag_file": "\\" + layout.F6_TAG_FILE}
    return encode("txtsetup.oem", render("txtsetup.oem.j2", context), "cp1252")


def render_winnt_files(config: BuildConfig, drivers: DriverSet) -> dict[str, bytes]:
    """The winnt format's answer files: winnt.sif, and txtsetup.oem for the F6 disk."""
    return {
        "winnt.sif": render_winnt_sif(config, drivers),
        "txtsetup.oem": render_txtsetup_oem(config, drivers),
    }
