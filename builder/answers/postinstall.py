"""The post-install step at the root of drivers.iso: the script the first logon runs,
and the marker file it is found by (pure).

The answer files start it (`drive_search` is what they need to find it on whatever
letter Windows gave the drivers disc). It runs its steps in order, each logged with its
exit code: the trusted-publisher import of the packages' signers, the driver packages,
the installers (the QEMU guest agent, the virtio-win guest tools), then the user's
first-logon commands and the power-off.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from builder.answers.environment import check_profiles, crlf, encode, render
from builder.config import BuildConfig
from builder.media import layout
from builder.virtio.selection import DriverSet
from builder.virtio.signatures import Signer
from builder.virtio.trust import trusted_signers
from builder.windows.profiles import PostInstall


def drive_search() -> dict[str, Any]:
    """What a first-logon command needs to find the script on any drive letter."""
    return {
        "drive_letters": layout.SEARCH_DRIVE_LETTERS,
        "marker": layout.MARKER_FILE,
        "script": layout.POSTINSTALL_SCRIPT,
    }


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


# The command that installs one package from its folder on the drivers disc, per
# post-install method ({inf} is the INF glob, quoted where cmd needs it). NONE installs
# nothing: on 2003, GUI-mode setup installed every package from OemPnPDriversPath.
# pnputil of Windows 10 / Server 2016 and later takes /add-driver; -i -a is the syntax
# of Vista to 8.1 / 2012 R2 (Microsoft's PnPUtil command syntax page).
INSTALL_COMMANDS: Mapping[PostInstall, str | None] = MappingProxyType(
    {
        PostInstall.NONE: None,
        PostInstall.PNPUTIL_LEGACY: "pnputil -i -a {inf}",
        PostInstall.PNPUTIL_ADD_DRIVER: "pnputil /add-driver {inf} /install",
    }
)
# An installer runs silently, without a restart (the power-off follows), with its own
# verbose log next to the script's.
MSI_COMMAND = "msiexec /i {msi} /qn /norestart /l*v {log}"
MSI_LOG = "%SystemDrive%\\pvinstall-{name}.log"


# The command that makes a package's signer a trusted publisher before the install
# command runs, per post-install method ({cer} is the certificate file): pnputil on
# Vista / 2008 / 2008 R2 asks "Would you like to install this device software?" for a
# publisher that is not in LocalMachine\TrustedPublisher, and no one is there to answer.
TRUST_COMMANDS: Mapping[PostInstall, str | None] = MappingProxyType(
    {
        PostInstall.NONE: None,
        PostInstall.PNPUTIL_LEGACY: "certutil -addstore -f TrustedPublisher {cer}",
        PostInstall.PNPUTIL_ADD_DRIVER: "certutil -addstore -f TrustedPublisher {cer}",
    }
)

# What [GuiRunOnce] commands of winnt.sif contain (and nothing else in a RunOnce key
# does): the script deletes exactly the values whose command holds it.
RUN_ONCE_MATCH = f"{layout.MARKER_FILE} call "
RUN_ONCE_KEYS = (
    "HKLM\\Software\\Microsoft\\Windows\\CurrentVersion\\RunOnce",
    "HKCU\\Software\\Microsoft\\Windows\\CurrentVersion\\RunOnce",
)


@dataclass(frozen=True)
class PostinstallStep:
    """One logged step of the script."""

    name: str
    command: str  # as cmd runs it
    shown: str  # as the log says it


@dataclass(frozen=True)
class _TrustStep:
    label: str  # the certificate, for the log: thumbprint and (sanitized) name
    command: str  # as cmd runs it
    path: str  # the certificate's path on drivers.iso


def _log_safe(text: str) -> str:
    """`text` reduced to characters that mean nothing to cmd's echo (it comes from a
    certificate in the user's driver source)."""
    return "".join(c if c.isascii() and (c.isalnum() or c in " .,-_") else "_" for c in text)


def _trust_steps(drivers: DriverSet) -> tuple[tuple[_TrustStep, ...], dict[str, bytes]]:
    """The certutil steps of the script and the certificate files they read."""
    command = TRUST_COMMANDS[drivers.profile.post_install]
    if command is None:
        return (), {}
    steps = []
    files: dict[str, bytes] = {}
    for signer in trusted_signers(drivers):
        path = layout.certificate_path(signer.sha1)
        files[path] = signer.der
        windows = "%PV_DRIVE%\\" + path.replace("/", "\\")
        steps.append(_TrustStep(_signer_label(signer), command.format(cer=f'"{windows}"'), path))
    return tuple(steps), files


def _signer_label(signer: Signer) -> str:
    return f"{signer.sha1} {_log_safe(signer.display_name)}"


def driver_steps(drivers: DriverSet) -> tuple[PostinstallStep, ...]:
    command = INSTALL_COMMANDS[drivers.profile.post_install]
    if command is None:
        return ()
    # Every selected package, the answer medium's too: those are already in the driver
    # store (windowsPE), and adding the same package again changes nothing, while it
    # gives NetKVM a second chance if staging it in windowsPE failed.
    found = []
    for driver in drivers.selected:
        inf = layout.iso_path_windows(driver, drivers.profile, "%PV_DRIVE%") + "\\*.inf"
        found.append(
            PostinstallStep(driver.name, command.format(inf=f'"{inf}"'), command.format(inf=inf))
        )
    return tuple(found)


def installer_steps(drivers: DriverSet) -> tuple[PostinstallStep, ...]:
    """The installers found for the profile (`DriverSet.installers`), from drivers.iso,
    where they sit at their paths in the source."""
    found = []
    for installer in drivers.installers:
        msi = "%PV_DRIVE%\\" + installer.path.replace("/", "\\")
        log = MSI_LOG.format(name=installer.name)
        found.append(
            PostinstallStep(
                installer.name,
                MSI_COMMAND.format(msi=f'"{msi}"', log=f'"{log}"'),
                MSI_COMMAND.format(msi=msi, log=log),
            )
        )
    return tuple(found)


# What the script writes to the guest's first serial port (the build's serial.log)
# when Sysprep fails, before it powers the guest off: the build reads it there and
# fails instead of exporting a template that is not generalized.
SYSPREP_FAILED_LINE = "PVINSTALL-SYSPREP-FAILED"


@dataclass(frozen=True)
class SysprepStep:
    """The script's last step when the build is generalized: Sysprep, which shuts the
    guest down itself."""

    executable: str
    command: str


def sysprep_step(config: BuildConfig) -> SysprepStep | None:
    """The Sysprep command of the profile (None: `generalize = false`). 2008 and later
    get the clones' unattend file from drivers.iso; /mode:vm (2012 and later) only when
    the clones keep the template's devices."""
    if not config.generalize:
        return None
    sysprep = config.profile.sysprep
    arguments = sysprep.arguments
    if sysprep.vm_mode and config.persist_device_installs:
        arguments += " /mode:vm"
    if sysprep.medium == "drivers.iso":
        arguments += " /unattend:%PV_DRIVE%\\" + sysprep.media_path.replace("/", "\\")
    return SysprepStep(sysprep.executable, f'"{sysprep.executable}" {arguments}')


def render_postinstall(config: BuildConfig, drivers: DriverSet) -> dict[str, bytes]:
    """The post-install step on drivers.iso: the script, its marker and the
    certificates it trusts, by path on the disc.

    The first logon runs the script from whichever drive holds `layout.MARKER_FILE`.
    It first puts the distinct signer certificate of the packages into
    TrustedPublisher (`TRUST_COMMANDS`, from `layout.certificate_path`), then installs
    every selected package from the ISO with the profile's post-install method
    (`INSTALL_COMMANDS`; none on 2003, where GUI-mode setup did it), then each
    installer found (`installer_steps`). Then the user's `first_logon_commands`, each
    in its own cmd; where the answer file leaves its other first-logon commands in
    RunOnce (2003's [GuiRunOnce]) it deletes them; then the power-off that tells
    `pvinstall build --install` that setup has finished. Every step's exit code is
    checked and a failure logged to `layout.POSTINSTALL_LOG` on the installed system;
    none stops the power-off. With `generalize` (the default) Sysprep takes the
    power-off's place (`sysprep_step`); when it fails the script says so on COM1
    (`SYSPREP_FAILED_LINE`, the build's serial.log) and powers off.

    Returns:
        `{layout.POSTINSTALL_SCRIPT: ASCII cmd script, CRLF, layout.MARKER_FILE: text,
        "certs/<thumbprint>.cer": DER certificate, ...}`.
    """
    profile = check_profiles(config, drivers)
    trust, certificates = _trust_steps(drivers)
    context = {
        "profile": profile,
        "log": layout.POSTINSTALL_LOG,
        "marker": layout.MARKER_FILE,
        "trust": trust,
        "drivers": driver_steps(drivers),
        "installers": installer_steps(drivers),
        "commands": tuple(cmd_child_command(c) for c in config.first_logon_commands),
        "run_once_keys": RUN_ONCE_KEYS if profile.leaves_run_once else (),
        "run_once_match": RUN_ONCE_MATCH,
        "shutdown": profile.shutdown_command,
        "sysprep": sysprep_step(config),
        "sysprep_failed": SYSPREP_FAILED_LINE,
    }
    script = encode(layout.POSTINSTALL_SCRIPT, render("postinst.cmd.j2", context), "ascii")
    marker = crlf(f"pvinstall drivers disc for {profile.name}\n").encode("ascii")
    return {layout.POSTINSTALL_SCRIPT: script, layout.MARKER_FILE: marker, **certificates}
