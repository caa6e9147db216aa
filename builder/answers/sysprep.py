"""The answer file of a template's clones: what Sysprep is given at the end of the
install (pure). 2008 and later: an unattend file (generalize, specialize and oobeSystem
passes) on drivers.iso; 2003: sysprep.inf for Mini-Setup, on the remastered CD's
`$OEM$\\$1\\sysprep`. Both hold the administrator password (encoded, or in clear in
sysprep.inf as in winnt.sif) and the product key: secret files, like the answer files.

Which settings a Windows version knows is, as for autounattend.xml, a table
(`CLONE_SETTINGS` here, `unattend.GATED_SETTINGS` for what both files share): an
unknown setting makes Setup refuse the whole pass.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from builder.answers.environment import check_profiles, encode, render
from builder.answers.unattend import (
    ACCOUNT_PASSWORD_SUFFIX,
    ADMIN_PASSWORD_SUFFIX,
    GATED_SETTINGS,
    SHELL_SETUP,
    GatedSetting,
    encode_password,
)
from builder.answers.winnt import sif_quoted
from builder.config import BuildConfig
from builder.media import layout
from builder.virtio.selection import DriverSet
from builder.windows.profiles import AnswerFormat, Profile

# Settings of the clones' answer file only (the build's own autounattend.xml has none
# of them). The licensing rearm switch moved from SLC (Vista / 2008) to SPP (Windows 7 /
# 2008 R2 and later); `skip_rearm` gives its value. The OOBE rows leave no page of the
# clones' first boot to a person: NetworkLocation answers the network-location dialog,
# ProtectYourPC the automatic-updates page (3: not now), HideWirelessSetupInOOBE the
# wireless page of Windows 8 / 2012 and later.
CLONE_SETTINGS: tuple[GatedSetting, ...] = (
    GatedSetting(
        "generalize",
        "Microsoft-Windows-Security-Licensing-SLC",
        "",
        "SkipRearm",
        "{skip_rearm}",
        (6, 0),
        (6, 0),
        "MS unattend reference, Microsoft-Windows-Security-Licensing-SLC: Vista and Server 2008",
    ),
    GatedSetting(
        "generalize",
        "Microsoft-Windows-Security-SPP",
        "",
        "SkipRearm",
        "{skip_rearm}",
        (6, 1),
        None,
        "MS unattend reference, Microsoft-Windows-Security-SPP: Windows 7 / Server 2008 "
        "R2 and later",
    ),
    GatedSetting(
        "oobeSystem",
        SHELL_SETUP,
        "OOBE",
        "NetworkLocation",
        "Work",
        (6, 0),
        None,
        "MS cc721948 (Vista / Server 2008 OOBE settings): Home, Work or Other",
    ),
    GatedSetting(
        "oobeSystem",
        SHELL_SETUP,
        "OOBE",
        "ProtectYourPC",
        "3",
        (6, 0),
        None,
        "MS cc721948 (Vista / Server 2008 OOBE settings): 1 to 3",
    ),
    GatedSetting(
        "oobeSystem",
        SHELL_SETUP,
        "OOBE",
        "HideWirelessSetupInOOBE",
        "true",
        (6, 2),
        None,
        "Windows 8 / Server 2012 OOBE; 2008 R2 Setup rejects the settings of 2012 "
        "(cloudbase/windows-imaging-tools#1)",
    ),
)


def clone_settings(
    profile: Profile, config: BuildConfig, config_pass: str, component: str, parent: str = ""
) -> tuple[GatedSetting, ...]:
    """The settings at one place of the clones' answer file that `profile` knows, in
    the alphabetical order Windows SIM writes them, values filled in from `config`."""
    rows = [
        s
        for s in (*GATED_SETTINGS, *CLONE_SETTINGS)
        if s.config_pass == config_pass
        and s.component == component
        and s.parent == parent
        and s.known_by(profile.nt_version)
        and (s.unless is None or not getattr(config, s.unless))
    ]
    value = {"skip_rearm": "1" if config.skip_rearm else "0"}
    filled = [replace(s, value=s.value.format(**value)) for s in rows]
    return tuple(sorted(filled, key=lambda s: s.name))


def clone_components(profile: Profile, config: BuildConfig, config_pass: str) -> tuple[str, ...]:
    """Components of `config_pass` made only of gated settings that `profile` knows."""
    found: dict[str, None] = {}
    for setting in (*GATED_SETTINGS, *CLONE_SETTINGS):
        if (
            setting.config_pass == config_pass
            and setting.parent == ""
            and clone_settings(profile, config, config_pass, setting.component)
        ):
            found.setdefault(setting.component, None)
    return tuple(found)


def _unattend_context(config: BuildConfig) -> dict[str, Any]:
    profile = config.profile
    password = config.admin_password.reveal()

    def gated(config_pass: str, component: str, parent: str = "") -> tuple[GatedSetting, ...]:
        return clone_settings(profile, config, config_pass, component, parent)

    def components(config_pass: str) -> tuple[str, ...]:
        return clone_components(profile, config, config_pass)

    return {
        "arch": profile.arch,
        "persist_device_installs": config.persist_device_installs,
        "computer_name": config.clone_computer_name,
        "product_key": config.product_key.reveal() if config.product_key else None,
        "full_name": config.full_name,
        "organization": config.organization,
        "timezone": config.timezone,
        "workgroup": config.workgroup,
        "locale": config.locale,
        "input_locale": config.input_locale,
        "admin_password": encode_password(password, ADMIN_PASSWORD_SUFFIX),
        "autologon_password": encode_password(password, ACCOUNT_PASSWORD_SUFFIX),
        "commands": config.clone_first_logon_commands,
        "gated": gated,
        "gated_components": components,
    }


def render_sysprep_unattend(config: BuildConfig, drivers: DriverSet) -> bytes:
    """The unattend file Sysprep of 2008 and later is given: UTF-8, CRLF."""
    check_profiles(config, drivers)
    name = config.profile.sysprep.answer_file
    return encode(name, render("sysprep-unattend.xml.j2", _unattend_context(config)), "utf-8")


def render_sysprep_inf(config: BuildConfig, drivers: DriverSet) -> bytes:
    """sysprep.inf of a 2003 template: Windows-1252, CRLF, quoted as winnt.sif is."""
    profile = check_profiles(config, drivers)
    product_key = config.product_key.reveal() if config.product_key else ""
    context = {
        "profile": profile,
        "oem_pnp_drivers_path": sif_quoted(
            "OemPnPDriversPath", ";".join(layout.oem_pnp_path(d) for d in drivers.selected)
        ),
        "admin_password": sif_quoted("admin_password", config.admin_password.reveal()),
        "timezone_index": config.timezone_index,
        "product_key": sif_quoted("product_key", product_key),
        "full_name": sif_quoted("full_name", config.full_name),
        "organization": (
            sif_quoted("organization", config.organization) if config.organization else None
        ),
        "computer_name": config.clone_computer_name,
        "workgroup": config.workgroup,
        "language": config.language_code,
        "commands": tuple(
            sif_quoted(f"clone_first_logon_commands[{i}]", c)
            for i, c in enumerate(config.clone_first_logon_commands)
        ),
    }
    name = profile.sysprep.answer_file
    return encode(name, render("sysprep.inf.j2", context), "cp1252")


_RENDERERS = {
    AnswerFormat.WINNT: render_sysprep_inf,
    AnswerFormat.UNATTEND: render_sysprep_unattend,
}


def render_sysprep(config: BuildConfig, drivers: DriverSet) -> dict[str, bytes]:
    """The clones' answer file by its name in OUT (`profile.sysprep.answer_file`), or
    nothing when the build is not generalized (`generalize = false`)."""
    profile = check_profiles(config, drivers)
    if not config.generalize:
        return {}
    return {profile.sysprep.answer_file: _RENDERERS[profile.answer_format](config, drivers)}
