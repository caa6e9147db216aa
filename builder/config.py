"""User settings: one frozen `BuildConfig`, loaded from a TOML file, environment and --set.

Every setting is declared once in `SETTINGS` (key, type, help). Precedence, lowest
first: the profile's default, the `--config` file, `PVINSTALL_<KEY>` environment
variables, `--set KEY=VALUE`. Validation collects every problem, each with its key,
before anything is written. Secrets (admin password, product key) are held in
`Secret` so that they never print by accident.
"""

from __future__ import annotations

import difflib
import re
import tomllib
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from builder.errors import InputError, Problem
from builder.vm.devices import (
    CPU_LEVEL_FLAGS,
    CPU_LEVELS,
    VIRTIO_MODELS,
    Firmware,
    StorageBus,
    cpu_level_number,
)
from builder.windows import locales
from builder.windows.install_media import (
    ImageChoice,
    InstallMedia,
    check_media,
    choose_image,
    default_locale,
)
from builder.windows.profiles import AnswerText, DiskLayout, Edition, Profile
from builder.windows.wim import WimImage

ENV_PREFIX = "PVINSTALL_"
# PVINSTALL_* variables that are not settings: pvinstall's own switches (the state
# directory of convert). Any other PVINSTALL_* name is a setting, and an unknown one an
# error, so that a misspelt setting is not silently ignored. The test harness's knobs
# have a prefix of their own (PVTEST_*) and are none of pvinstall's business.
ENV_NOT_SETTINGS = frozenset({"PVINSTALL_STATE_DIR"})


class Secret:
    """A password or product key: `str()`/`repr()` never show it; `reveal()` does."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__


Kind = Literal["str", "int", "bool", "str_list", "int_list", "size"]


@dataclass(frozen=True)
class Setting:
    """One user setting: its key, type, help text, whether it is a secret, the longest
    value its format holds (`max_length` characters; for a list, of each item, with at
    most `max_items` items), and whether an empty string means something."""

    key: str
    kind: Kind
    help: str
    secret: bool = False
    max_length: int | None = None
    max_items: int | None = None
    may_be_empty: bool = False
    length_rule: str = ""  # why `max_length`, for the message: "a NetBIOS name has at most 15"

    def too_long(self, length: int) -> str:
        """The sentence for a value of `length` characters over `max_length`."""
        return f"{length} characters; {self.length_rule or f'at most {self.max_length}'}."

    def help_line(self) -> str:
        """The help text with the limits the validation enforces."""
        limits = []
        if self.max_items is not None:
            limits.append(f"at most {self.max_items} items")
        if self.max_length is not None:
            each = "each " if self.kind == "str_list" else ""
            limits.append(f"{each}at most {self.max_length} characters")
        return f"{self.help} ({'; '.join(limits)}.)" if limits else self.help


# The limits of the formats the settings go into (docs/design.md, the settings table).
NETBIOS_MAX = 15  # a NetBIOS name (computer name, workgroup)
PASSWORD_MAX = 127  # the longest password Windows' logon and `net user` accept
# An install.wim image's <NAME>: the WIM XML sets no bound, so pvinstall takes the 255
# characters of a file name, far above any name Microsoft's media use.
WIM_NAME_MAX = 255
OWNER_MAX = 63  # RegisteredOwner/Organization, FullName/OrgName
# A first-logon command stands on one line of the post-install script; cmd reads at most
# 8191 characters of a line, and the escaping for `cmd /s /c "..."` (a caret before a
# special character, '%' doubled) can double a command, next to about 50 of the wrapper.
COMMAND_MAX = 4000
COMMANDS_MAX = 100
# The Joliet volume descriptor holds 16 UCS-2 characters (ISO 9660's own label 32).
ISO_LABEL_MAX = 16
# libvirt keeps a network or pool in files named after it (NAME.xml; a network's dnsmasq
# NAME.conf, NAME.hostsfile ...), and a file name has at most 255 bytes: 200 characters
# (and bytes) leave room for the longest suffix.
LIBVIRT_NAME_MAX = 200
DRIVER_NAME_MAX = 32  # virtio-win's longest driver name is 13 (qemupciserial)
MAX_DRIVER_NAMES = 64
CPU_MODEL_MAX = 64  # QEMU's model names are short; libvirt's cpu_map has none over 32
# An unattend FirstLogonCommands CommandLine (and a sysprep.inf [GuiRunOnce] line) holds
# at most 1024 characters (Microsoft's unattend reference, SynchronousCommand).
CLONE_COMMAND_MAX = 1024
CLONE_COMMANDS_MAX = 50
# What `export` writes (the template disk's format), in the order the help names them.
EXPORT_FORMATS = ("qcow2", "raw", "pool", "none")


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "computer_name",
        "str",
        "NetBIOS computer name: letters, digits, '-' or '_'; '*' for a random name (default '*').",
        max_length=NETBIOS_MAX,
        length_rule=f"a NetBIOS name has at most {NETBIOS_MAX}",
    ),
    Setting(
        "admin_password",
        "str",
        "Administrator password (required). Kept out of logs and the manifest; prefer "
        "PVINSTALL_ADMIN_PASSWORD or the config file to --set.",
        secret=True,
        max_length=PASSWORD_MAX,
        length_rule=f"Windows allows at most {PASSWORD_MAX}",
    ),
    Setting(
        "product_key",
        "str",
        "Product key XXXXX-XXXXX-XXXXX-XXXXX-XXXXX. Required for 2003; for 2008 the "
        'edition\'s KMS client key by default, "" to leave it out (evaluation media).',
        secret=True,
        may_be_empty=True,
    ),
    Setting(
        "edition",
        "str",
        "standard, enterprise, datacenter or web (2003 to 2008 R2); standard or datacenter "
        "(2012 R2 and later): picks the image and the default KMS client key (default "
        "standard).",
    ),
    Setting(
        "server_core",
        "bool",
        "2012 R2 and later: true installs the edition's Server Core image, false (default) "
        "the one with the desktop.",
    ),
    Setting(
        "image_name",
        "str",
        "The install.wim image to install (/IMAGE/NAME), overriding edition and "
        "server_core; checked against --windows-iso.",
        max_length=WIM_NAME_MAX,
    ),
    Setting(
        "image_index",
        "int",
        "The install.wim image to install by its index (/IMAGE/INDEX, from 1), overriding "
        "the others; checked against --windows-iso.",
    ),
    Setting(
        "full_name", "str", "Registered owner (default 'Administrator').", max_length=OWNER_MAX
    ),
    Setting(
        "organization",
        "str",
        "Registered organization (default empty).",
        max_length=OWNER_MAX,
        may_be_empty=True,
    ),
    Setting(
        "timezone",
        "str",
        "Time zone: the Windows name ('W. Europe Standard Time'); 2003 also takes its "
        "index ('110'). Default: Greenwich, UTC on 2008 R2.",
    ),
    Setting(
        "locale",
        "str",
        "Locale for UI language, input, system and user locale, e.g. en-US (default).",
    ),
    Setting(
        "workgroup",
        "str",
        "Workgroup to join, a NetBIOS name (default WORKGROUP).",
        max_length=NETBIOS_MAX,
        length_rule=f"a NetBIOS name has at most {NETBIOS_MAX}",
    ),
    Setting(
        "autologon_count",
        "int",
        "How many times Administrator logs on automatically (default 1; at least 1, "
        "because the post-install step runs at the first logon).",
    ),
    Setting(
        "first_logon_commands",
        "str_list",
        "Commands run at the first logon, after the drivers are installed and before the "
        "guest powers off (a list of strings, ASCII; each runs as if typed at a cmd "
        "prompt).",
        max_length=COMMAND_MAX,
        max_items=COMMANDS_MAX,
        length_rule=f"at most {COMMAND_MAX}, so that the script's line stays within cmd's "
        "8191 characters",
    ),
    Setting("floppy_size", "size", "Answer floppy size: 1.44 (default) or 2.88 (MB)."),
    Setting(
        "drivers_iso_label",
        "str",
        "Volume label of drivers.iso: A-Z, 0-9 and '_' (default PVDRIVERS).",
        max_length=ISO_LABEL_MAX,
        length_rule=f"a Joliet volume label has at most {ISO_LABEL_MAX}",
    ),
    Setting("memory_mib", "int", "Guest memory in MiB (profile default; at least its minimum)."),
    Setting("vcpus", "int", "Virtual CPUs (profile default)."),
    Setting("disk_size_gib", "int", "System disk size in GiB (profile default)."),
    Setting("data_disks", "int_list", "Sizes in GiB of extra virtio data disks, e.g. [20, 40]."),
    Setting(
        "network",
        "str",
        "libvirt network for the virtio NIC (default 'default'), or 'user' for user-mode "
        "networking.",
        max_length=LIBVIRT_NAME_MAX,
    ),
    Setting(
        "storage_pool",
        "str",
        "libvirt storage pool for the disks (default: qcow2 files next to the outputs).",
        max_length=LIBVIRT_NAME_MAX,
        may_be_empty=True,
    ),
    Setting(
        "remote",
        "bool",
        "true when the libvirt host of --connect does not share this machine's files though "
        "its URI names no host: the media are then uploaded into storage_pool as for a URI "
        "with a host part (default false).",
    ),
    Setting(
        "drivers",
        "str_list",
        'The virtio drivers to put on the media, e.g. ["viostor", "NetKVM", '
        '"Balloon"] (default: every driver with a package for the profile). viostor and '
        "NetKVM are required; `pvinstall drivers --profile P` lists the names.",
        max_length=DRIVER_NAME_MAX,
        max_items=MAX_DRIVER_NAMES,
    ),
    Setting(
        "sha2_media",
        "bool",
        "true when the 2008 / 2008 R2 install media carry the SHA-2 code signing update "
        "(KB4474419 and its servicing stack update): then a boot-critical driver signed "
        "with SHA-256 only is accepted (default false).",
    ),
    Setting(
        "server_manager_at_logon",
        "bool",
        "true keeps Server Manager (and, on 2008 / 2008 R2, Initial Configuration Tasks) "
        "opening at every logon (default false: the template does not open them).",
    ),
    Setting(
        "storage_bus",
        "str",
        "virtio-blk (default: one virtio disk device each, driver viostor) or virtio-scsi "
        "(2012 R2 and later: the disks on one virtio-scsi controller, driver vioscsi).",
    ),
    Setting(
        "firmware",
        "str",
        "efi (the 2012 R2 and later default: GPT system disk) or bios (MBR; 2003 to 2022).",
    ),
    Setting(
        "secure_boot",
        "bool",
        "UEFI Secure Boot with the Microsoft keys (default true from 2016 on; needs "
        'firmware = "efi").',
    ),
    Setting(
        "tpm",
        "bool",
        "A TPM 2.0 (tpm-crb, emulated by swtpm on the host; default true from 2016 on).",
    ),
    Setting(
        "cpu_model",
        "str",
        "The guest's CPU: a QEMU model name (default Nehalem from 2012 R2 on, the oldest "
        "with POPCNT and SSE4.2, which 2025 needs), or host-model / host-passthrough (KVM).",
        max_length=CPU_MODEL_MAX,
        may_be_empty=True,
    ),
    Setting(
        "virtio_model",
        "str",
        "libvirt model of the virtio disks and NIC: virtio-transitional (the 2003 "
        "default: its drivers know only the transitional IDs), virtio (the 2008 "
        "default) or virtio-non-transitional. The selected drivers must bind to it.",
        may_be_empty=True,
    ),
    Setting(
        "generalize",
        "bool",
        "true (default) ends the install with Sysprep, so that every clone of the template "
        "gets its own SID and name (2003: the tools from the CD's SUPPORT\\TOOLS\\DEPLOY.CAB); "
        "false powers off without it (the template is then a copy of one machine).",
    ),
    Setting(
        "persist_device_installs",
        "bool",
        "2008 and later: true (default) keeps the installed virtio devices across Sysprep "
        "(PersistAllDeviceInstalls; clones run on the same virtio hardware), false lets "
        "each clone detect them again.",
    ),
    Setting(
        "skip_rearm",
        "bool",
        "2008 and later: true keeps the licensing state through Sysprep (SkipRearm=1, "
        "no rearm used up); false (default) rearms it, as Microsoft's default does.",
    ),
    Setting(
        "clone_computer_name",
        "str",
        "The computer name of the clones' first boot: '*' (default) for a random one "
        "each, or a NetBIOS name.",
        max_length=NETBIOS_MAX,
        length_rule=f"a NetBIOS name has at most {NETBIOS_MAX}",
    ),
    Setting(
        "clone_first_logon_commands",
        "str_list",
        "Commands each clone runs at its first logon (Administrator logs on once "
        "automatically when there are any); ASCII.",
        max_length=CLONE_COMMAND_MAX,
        max_items=CLONE_COMMANDS_MAX,
        length_rule=f"an unattend CommandLine has at most {CLONE_COMMAND_MAX}",
    ),
    Setting(
        "export",
        "str",
        "With --install, the template disk written once the guest is off: qcow2 "
        "(default: OUT/template.qcow2, compressed), raw (OUT/template.raw, sparse), pool "
        "(the compressed qcow2 volume NAME@template.qcow2 of storage_pool) or none.",
    ),
)
SETTINGS_BY_KEY: Mapping[str, Setting] = {s.key: s for s in SETTINGS}


@dataclass(frozen=True)
class BuildConfig:
    """The user's intent for one build, validated. Frozen; derive, don't mutate."""

    profile: Profile
    computer_name: str
    admin_password: Secret
    product_key: Secret | None
    edition: str
    server_core: bool
    image_name: str | None
    image_index: int | None
    full_name: str
    organization: str
    timezone: str
    locale: str
    workgroup: str
    autologon_count: int
    first_logon_commands: tuple[str, ...]
    floppy_kib: int
    drivers_iso_label: str
    memory_mib: int
    vcpus: int
    disk_size_gib: int
    data_disks: tuple[int, ...]
    network: str
    storage_pool: str | None
    virtio_model: str | None
    storage_bus: StorageBus
    firmware: Firmware
    secure_boot: bool = False
    tpm: bool = False
    cpu_model: str | None = None
    image: WimImage | None = None  # the image of --windows-iso the build installs
    warnings: tuple[str, ...] = field(default=(), compare=False)
    drivers: tuple[str, ...] | None = None  # None: every driver that fits
    sha2_media: bool = False
    server_manager_at_logon: bool = False
    generalize: bool = True
    persist_device_installs: bool = True
    skip_rearm: bool = False
    clone_computer_name: str = "*"
    clone_first_logon_commands: tuple[str, ...] = ()
    export: str = "qcow2"
    remote: bool = False  # the host does not share the client's files (see vm/remote.py)
    origins: Mapping[str, str] = field(default_factory=dict, compare=False)

    @property
    def disk_layout(self) -> DiskLayout:
        """How setup partitions the system disk for the chosen firmware."""
        return self.profile.disk_layouts[self.firmware]

    @property
    def timezone_index(self) -> str:
        """The 2003 index, three digits (`090`)."""
        return f"{int(self.timezone):03d}"

    @property
    def input_locale(self) -> str:
        return locales.input_locale(self.profile.locales[self.locale])

    @property
    def language_code(self) -> str:
        return locales.language_code(self.profile.locales[self.locale])

    def public_json(self) -> dict[str, Any]:
        """The settings for the manifest: secrets are only said to be set or not."""
        out: dict[str, Any] = {}
        for setting in SETTINGS:
            if setting.key == "floppy_size":
                out["floppy_size"] = "2.88" if self.floppy_kib == 2880 else "1.44"
                continue
            value = getattr(self, setting.key)
            if setting.secret:
                out[setting.key] = "(set)" if value else "(none)"
            elif isinstance(value, StrEnum):
                out[setting.key] = value.value
            elif isinstance(value, tuple):
                out[setting.key] = list(value)
            else:
                out[setting.key] = value
        return out


# -- gathering raw values ------------------------------------------------------------------


def _parse_value(text: str) -> Any:
    """A --set or environment value: TOML when it parses as a TOML value, else the text."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _read_file(path: Path, problems: list[Problem]) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        problems.append(Problem("--config", f"{path} does not exist.", "Check the path."))
        return {}
    except IsADirectoryError:
        problems.append(Problem("--config", f"{path} is a directory, not a TOML file."))
        return {}
    except OSError as exc:
        problems.append(Problem("--config", f"cannot read {path}: {exc.strerror}."))
        return {}
    except tomllib.TOMLDecodeError as exc:
        problems.append(
            Problem(
                "--config",
                f"{path} is not valid TOML: {exc}.",
                "Fix the line it names; strings need quotes.",
            )
        )
        return {}
    except UnicodeDecodeError:
        problems.append(Problem("--config", f"{path} is not UTF-8 text."))
        return {}
    for key, value in data.items():
        if isinstance(value, dict):
            problems.append(
                Problem(
                    f"{path}: [{key}]",
                    "tables are not settings; write key = value lines at the top level.",
                )
            )
    return {k: v for k, v in data.items() if not isinstance(v, dict)}


def gather(
    *,
    config_file: Path | None,
    sets: Sequence[str],
    environ: Mapping[str, str],
) -> tuple[dict[str, tuple[Any, str, str | None]], list[Problem]]:
    """Collect raw values with where they came from: key -> (value, origin, raw text)."""
    problems: list[Problem] = []
    values: dict[str, tuple[Any, str, str | None]] = {}
    if config_file is not None:
        for key, value in _read_file(config_file, problems).items():
            values[key] = (value, str(config_file), None)
    for name, text in sorted(environ.items()):
        if (
            name.startswith(ENV_PREFIX)
            and len(name) > len(ENV_PREFIX)
            and name not in ENV_NOT_SETTINGS
        ):
            key = name[len(ENV_PREFIX) :].lower()
            values[key] = (_parse_value(text), f"${name}", text)
    for item in sets:
        if "=" not in item:
            problems.append(
                Problem("--set", f"{shown_value(item)} has no '='.", "Write --set KEY=VALUE.")
            )
            continue
        key, _, text = item.partition("=")
        key = key.strip()
        if not key:
            problems.append(
                Problem(
                    "--set", f"{shown_value(item)} has no key before '='.", "Write --set KEY=VALUE."
                )
            )
            continue
        values[key] = (_parse_value(text), "--set", text)
    return values, problems


# -- validation ------------------------------------------------------------------------------

_NETBIOS = re.compile(r"^[A-Za-z0-9_-]{1,15}$")
_PRODUCT_KEY = re.compile(r"^[A-Z0-9]{5}(-[A-Z0-9]{5}){4}$")
_ISO_LABEL = re.compile(rf"^[A-Z0-9_]{{1,{ISO_LABEL_MAX}}}$")


def _text_problem(
    value: str, *, rules: AnswerText | None = None, secret: bool = False
) -> str | None:
    """Why a free-text value cannot go into an answer file, or None if it can.

    `rules` are the profile's answer-file text rules (winnt.sif's code page and
    characters); without them only what no file can hold is refused. For a `secret` the
    offending character is described but not shown.
    """
    for char in value:
        if char in "\r\n":
            return "contains a line break, which would end the line in the answer file"
        category = unicodedata.category(char)
        if category == "Cc":
            return f"contains the control character U+{ord(char):04X}"
        if category == "Cs":
            return f"contains the lone surrogate U+{ord(char):04X}"
        if category == "Cn" and (ord(char) & 0xFFFE) == 0xFFFE:
            return f"contains the non-character U+{ord(char):04X}"
    if rules is None:
        return None
    if rules.encoding is not None:
        try:
            value.encode(rules.encoding)
        except UnicodeEncodeError as exc:
            bad = value[exc.start]
            shown = "a character" if secret else f"{bad!r} (U+{ord(bad):04X})"
            return f"contains {shown}, which {rules.unencodable}"
    for char, why in rules.forbidden:
        if char in value:
            if secret:  # say which characters are refused, not which one it holds
                chars = " or ".join(repr(c) for c, _ in rules.forbidden)
                return f"contains {chars}, which {rules.file} cannot hold"
            return f"contains {char!r}, which {why}"
    return None


def shown_value(value: object, limit: int = 60) -> str:
    """`repr(value)` for a message, cut after `limit` characters (a value may be huge)."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text)} characters)"


def _script_problem(value: str) -> str | None:
    """Why a command cannot go into the post-install cmd script, or None if it can."""
    problem = _text_problem(value)
    if problem:
        return problem
    if value.count('"') % 2:
        # The script runs each command as cmd /s /c "<command>"; an open quote would
        # swallow the rest of that line, its log redirection included.
        return "has an unmatched '\"'; quotes must come in pairs"
    for char in value:
        if not char.isascii():
            # cmd reads a batch file in the guest's OEM code page (437, 850, 866, 932...,
            # by locale); only ASCII reads the same in all of them.
            return (
                f"contains {char!r} (U+{ord(char):04X}); the post-install cmd script "
                "holds ASCII only, because cmd reads it in the guest's OEM code page"
            )
    return None


class _Validator:
    def __init__(self, profile: Profile, raw: Mapping[str, tuple[Any, str, str | None]]) -> None:
        self.profile = profile
        self.raw = raw
        self.problems: list[Problem] = []

    def fail(self, key: str, message: str, hint: str | None = None) -> None:
        origin = self.raw.get(key.split("[", maxsplit=1)[0], (None, "", None))[1]
        if origin and origin != "--set":
            message = f"{message.rstrip('.')} (set in {origin})."
        self.problems.append(Problem(key, message, hint))

    def problems_for(self, key: str) -> bool:
        return any(p.key == key for p in self.problems)

    def get(self, key: str, default: Any) -> Any:
        if key not in self.raw:
            return default
        value, _, text = self.raw[key]
        kind = SETTINGS_BY_KEY[key].kind
        # --set admin_password=123456 means the string "123456", not a number.
        if kind == "str" and text is not None and not isinstance(value, str):
            return text
        return value

    def text(
        self,
        key: str,
        default: str,
        *,
        answer_file: bool = True,
        empty: str = "is empty.",
    ) -> str:
        """A string setting, checked against what its file holds (`answer_file`: the
        profile's answer-file rules), its `max_length` and, unless it `may_be_empty`,
        refused when empty (`empty` says why)."""
        setting = SETTINGS_BY_KEY[key]
        value = self.get(key, default)
        if not isinstance(value, str):
            shown = "" if setting.secret else f" {shown_value(value)}"
            self.fail(key, f"must be a string, not {type(value).__name__}{shown}.")
            return default
        if value == "" and not setting.may_be_empty:
            self.fail(key, empty, "Give a value, or leave the setting out for its default.")
            return value
        if setting.max_length is not None and len(value) > setting.max_length:
            self.fail(key, setting.too_long(len(value)), None if setting.secret else "Shorten it.")
            return value
        rules = self.profile.answer_text if answer_file else None
        problem = _text_problem(value, rules=rules, secret=setting.secret)
        if problem:
            self.fail(key, problem + ".", "Use plain printable characters.")
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self.get(key, default)
        if not isinstance(value, bool):
            self.fail(key, f"must be true or false, not {value!r}.")
            return default
        return value

    def choice(self, key: str, default: str, allowed: Sequence[str], why: str) -> str:
        """A setting that is one of `allowed` (`why` says whose list that is)."""
        value = self.text(key, default, answer_file=False)
        if value in allowed:
            return value
        if not self.problems_for(key):
            self.fail(key, f"{value!r} is not one of {', '.join(allowed)} ({why}).")
        return default  # the problem is noted; the checks that follow see a valid value

    def integer(self, key: str, default: int, low: int, high: int, unit: str = "") -> int:
        value = self.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(key, f"must be a whole number, not {shown_value(value)}.")
            return default
        if not low <= value <= high:
            self.fail(key, f"{value}{unit} is out of range; allowed {low}{unit} to {high}{unit}.")
        return value


def validate_config(
    profile: Profile,
    *,
    config_file: Path | None = None,
    sets: Sequence[str] = (),
    environ: Mapping[str, str] | None = None,
    media: InstallMedia | None = None,
) -> tuple[BuildConfig, list[Problem]]:
    """Gather and validate the settings for `profile`: the config and every problem.

    The config holds every value, a wrong one as it was given (or its default when it
    has no usable type), so that the checks that need the settings (the domain's
    devices, the hypervisor's network and pool) can run in the same pass; use it for
    anything else only when there are no problems. `failed_keys` says which settings
    have one."""
    raw, problems = gather(config_file=config_file, sets=sets, environ=environ or {})
    for key, (_, origin, _) in sorted(raw.items()):
        if key not in SETTINGS_BY_KEY:
            near = difflib.get_close_matches(key.replace("-", "_"), SETTINGS_BY_KEY, n=1)
            hint = f"Did you mean {near[0]}?" if near else "See `pvinstall build --help`."
            problems.append(Problem(key, f"unknown setting (from {origin}).", hint))
    known = {k: v for k, v in raw.items() if k in SETTINGS_BY_KEY}
    check = _Validator(profile, known)
    config = _validate(check, media)
    return config, [*problems, *check.problems]


def failed_keys(problems: Sequence[Problem]) -> frozenset[str]:
    """The settings (and options) the problems concern: `data_disks[1]` is `data_disks`."""
    return frozenset(p.key.split("[", maxsplit=1)[0] for p in problems)


def load_config(
    profile: Profile,
    *,
    config_file: Path | None = None,
    sets: Sequence[str] = (),
    environ: Mapping[str, str] | None = None,
    extra_problems: Callable[[], list[Problem]] | None = None,
    media: InstallMedia | None = None,
) -> BuildConfig:
    """Gather and validate the settings for `profile`; InputError lists every problem.

    With `media` (the user's install DVD, read in place), a profile that reads its
    install image is checked against it, and the image is chosen from it: its edition
    gives the KMS client key (none for evaluation media), its language the default locale.
    """
    config, problems = validate_config(
        profile, config_file=config_file, sets=sets, environ=environ, media=media
    )
    if extra_problems is not None:
        problems += extra_problems()
    if problems:
        raise InputError.collect(problems)
    return config


def _validate(check: _Validator, media: InstallMedia | None) -> BuildConfig:
    """The settings, each checked whatever the others are: every problem goes into
    `check.problems`, and a value with a problem is kept as it is, or its default
    where it has no usable type. The config is for the checks that follow (the drivers,
    the domain, the hypervisor) and is used only when there are no problems."""
    profile = check.profile
    computer_name = _computer_name(check)
    password = _admin_password(check)
    edition = check.text("edition", profile.default_edition)
    if edition not in profile.editions:
        if not check.problems_for("edition"):
            check.fail(
                "edition",
                f"{shown_value(edition)} is not an edition of {profile.name}; choose one of "
                f"{', '.join(profile.editions)}.",
            )
        edition = profile.default_edition
    server_core = _server_core(check)
    image_index = _image_index(check)
    choice = _image_choice(check, media, edition, server_core, image_index)
    if choice is not None and choice.edition is not None:
        edition = _edition_of_image(check, edition, choice)
    edition_info = profile.editions[edition]
    evaluation = choice is not None and choice.image.evaluation
    product_key = _product_key(check, None if evaluation else edition_info.kms_key)
    if choice is not None:
        image_name: str | None = choice.image.name
    elif image_index is not None:
        image_name = None  # the index decides; without the DVD there is no name to check
    else:
        image_name = _image_name(check, edition, edition_info.image_for(server_core))

    owner_empty = "is empty; Windows setup requires a registered owner."
    full_name = check.text("full_name", "Administrator", empty=owner_empty)
    if not full_name.strip() and not check.problems_for("full_name"):
        check.fail("full_name", owner_empty)
    organization = check.text("organization", "")

    timezone = _timezone(check)
    locale = _locale(check, choice.image if choice else None)
    workgroup = check.text("workgroup", "WORKGROUP")
    if not _NETBIOS.match(workgroup) and not check.problems_for("workgroup"):
        check.fail(
            "workgroup",
            f"{shown_value(workgroup)} is not a NetBIOS name (at most {NETBIOS_MAX} letters, "
            "digits, '-' or '_').",
        )
    autologon = check.integer("autologon_count", 1, 0, 999)
    if autologon == 0:
        check.fail(
            "autologon_count",
            "0 turns AutoLogon off, but the post-install step and the "
            "power-off that ends the install run at the first logon.",
            "Use 1 or more.",
        )
    commands = _string_list(check, "first_logon_commands")
    floppy_kib = _floppy_size(check)
    label = check.text("drivers_iso_label", "PVDRIVERS", answer_file=False)
    if not _ISO_LABEL.match(label) and not check.problems_for("drivers_iso_label"):
        check.fail(
            "drivers_iso_label",
            f"{shown_value(label)}: a volume label of drivers.iso has 1 to {ISO_LABEL_MAX} of A-Z, "
            "0-9 and '_'.",
        )
    domain = _domain_settings(check)
    drivers = _driver_names(check)
    sha2_media = check.boolean("sha2_media", False)
    server_manager = check.boolean("server_manager_at_logon", False)
    clone = _clone_settings(check)
    if (
        clone["export"] == "pool"
        and domain["storage_pool"] is None
        and not check.problems_for("storage_pool")
    ):
        check.fail(
            "storage_pool",
            "export = pool leaves the template as a volume of storage_pool, and none is set.",
            "Set storage_pool to a pool of the host (it may be a local one), or choose "
            "export = qcow2 for OUT/template.qcow2.",
        )
    remote = check.boolean("remote", False)
    return BuildConfig(
        profile=profile,
        computer_name=computer_name,
        admin_password=Secret(password),
        product_key=product_key,
        edition=edition,
        server_core=server_core,
        image_name=image_name,
        image_index=image_index,
        full_name=full_name,
        organization=organization,
        timezone=timezone,
        locale=locale,
        workgroup=workgroup,
        autologon_count=autologon,
        first_logon_commands=commands,
        floppy_kib=floppy_kib,
        drivers_iso_label=label,
        **domain,
        drivers=drivers,
        sha2_media=sha2_media,
        server_manager_at_logon=server_manager,
        **clone,
        remote=remote,
        image=choice.image if choice else None,
        warnings=_warnings(profile, domain["storage_bus"]),
        origins={k: v[1] for k, v in check.raw.items()},
    )


def _clone_settings(check: _Validator) -> dict[str, Any]:
    """The template's settings: Sysprep and what the clones' first boot answers, and the
    export of the template disk."""
    profile = check.profile
    generalize = check.boolean("generalize", True)
    persist = check.boolean("persist_device_installs", True)
    skip_rearm = check.boolean("skip_rearm", False)
    if not generalize:
        for key in ("persist_device_installs", "skip_rearm", "clone_computer_name"):
            if key in check.raw:
                check.fail(
                    key,
                    "applies to Sysprep, and generalize = false leaves Sysprep out.",
                    f"Leave {key} out, or set generalize = true.",
                )
    if generalize and not profile.sysprep.generalize_pass:
        for key in ("persist_device_installs", "skip_rearm"):
            if key in check.raw:
                check.fail(
                    key,
                    f"is a setting of the unattend Sysprep of 2008 and later; {profile.title} "
                    f"is generalized with {profile.sysprep.answer_file}, which has none.",
                    "Leave it out.",
                )
    name = _computer_name(check, "clone_computer_name")
    commands = _string_list(check, "clone_first_logon_commands", rules=profile.answer_text)
    if commands and not generalize:
        check.fail(
            "clone_first_logon_commands",
            "run at a clone's first boot, which only Sysprep answers; generalize = false "
            "leaves Sysprep out.",
            "Set generalize = true, or leave clone_first_logon_commands out.",
        )
    export = check.choice("export", "qcow2", EXPORT_FORMATS, "the template disk's formats")
    return {
        "generalize": generalize,
        "persist_device_installs": persist,
        "skip_rearm": skip_rearm,
        "clone_computer_name": name,
        "clone_first_logon_commands": commands,
        "export": export,
    }


def _computer_name(check: _Validator, key: str = "computer_name") -> str:
    name = check.text(key, "*")
    if name == "*" or check.problems_for(key):
        return name
    if not _NETBIOS.match(name):
        bad = sorted({c for c in name if not re.match(r"[A-Za-z0-9_-]", c)})
        check.fail(
            key,
            f"{shown_value(name)} contains {' '.join(repr(c) for c in bad)}; use letters, digits, "
            "'-' and '_' only, or '*' for a random name.",
        )
    elif name.isdigit():
        check.fail(key, "a computer name cannot be only digits.")
    return name


def _admin_password(check: _Validator) -> str:
    if "admin_password" not in check.raw:
        check.fail(
            "admin_password",
            "not set.",
            "Give it in the --config file or as PVINSTALL_ADMIN_PASSWORD.",
        )
        return ""
    password = check.text(
        "admin_password",
        "",
        empty="is empty; AutoLogon and the post-install step need a password.",
    )
    if check.problems_for("admin_password"):
        return password
    if password == check.profile.answer_text.no_password:
        # winnt.sif: AdminPassword=* means an empty password (docs/windows-2003.md §2).
        check.fail(
            "admin_password",
            f"{password!r} means no password in {check.profile.answer_text.file}; AutoLogon "
            "and the post-install step need one.",
        )
    return password


def _image_name(check: _Validator, edition: str, default: str | None) -> str | None:
    profile = check.profile
    if not profile.installs_image:
        if "image_name" in check.raw:
            check.fail(
                "image_name",
                f"{profile.title} installs from {profile.answer_text.file}, which has no "
                "image name; leave it out.",
            )
        return None
    if "image_name" in check.raw or default:
        return check.text("image_name", default or "")
    check.fail(
        "image_name",
        f"no image name is known for the {edition} edition of {profile.name}.",
        "Set image_name to the name `wiminfo install.wim` lists for it.",
    )
    return ""


def _server_core(check: _Validator) -> bool:
    profile = check.profile
    value = check.boolean("server_core", False)
    if value and not profile.installation_types:
        check.fail(
            "server_core",
            f"{profile.name} has no Server Core choice.",
            "Name the image with image_name instead.",
        )
    return value


def _image_index(check: _Validator) -> int | None:
    if "image_index" not in check.raw:
        return None
    if not check.profile.installs_image:
        check.fail(
            "image_index",
            f"{check.profile.title} installs from {check.profile.answer_text.file}, which has "
            "no image to choose; leave it out.",
        )
        return None
    return check.integer("image_index", 1, 1, 255)


def _image_choice(
    check: _Validator,
    media: InstallMedia | None,
    edition: str,
    server_core: bool,
    image_index: int | None,
) -> ImageChoice | None:
    """The DVD's image the build installs (None without a DVD or with a wrong one)."""
    profile = check.profile
    if media is None or not profile.reads_install_image:
        return None
    wrong = check_media(profile, media)
    if wrong:
        check.problems += wrong
        return None
    image_name = check.text("image_name", "") if "image_name" in check.raw else None
    if check.problems_for("image_index") or check.problems_for("image_name"):
        return None
    found = choose_image(
        profile,
        media,
        edition=edition,
        server_core=server_core,
        image_name=image_name or None,
        image_index=image_index,
    )
    if isinstance(found, Problem):
        check.fail(found.key, found.message, found.hint)
        return None
    return found


def _edition_of_image(check: _Validator, edition: str, choice: ImageChoice) -> str:
    """The edition of an image chosen by name or index, which must agree with an
    `edition` the user gave."""
    chosen: Edition | None = choice.edition
    if chosen is None or chosen.name == edition:
        return edition
    if "edition" in check.raw and ("image_name" in check.raw or "image_index" in check.raw):
        check.fail(
            "edition",
            f"{edition!r}, but the image chosen, {choice.image.name}, is the {chosen.name} "
            f"edition ({choice.image.edition_id}).",
            "Leave edition out, or choose an image of that edition.",
        )
    return chosen.name


def _warnings(profile: Profile, storage_bus: StorageBus) -> tuple[str, ...]:
    caveat = profile.storage_bus_caveats.get(storage_bus)
    return (f"storage_bus = {storage_bus}: {caveat}",) if caveat else ()


def _domain_settings(check: _Validator) -> dict[str, Any]:
    profile = check.profile
    memory = check.integer("memory_mib", profile.memory_mib, 1, 4 * 1024 * 1024, " MiB")
    if memory < profile.min_memory_mib and not check.problems_for("memory_mib"):
        check.fail(
            "memory_mib",
            f"{memory} MiB is below the {profile.min_memory_mib} MiB {profile.title} needs.",
        )
    network = check.text("network", "default", answer_file=False)
    _libvirt_name(check, "network", network)
    pool = check.text("storage_pool", "", answer_file=False)
    if pool:
        _libvirt_name(check, "storage_pool", pool)
    model = check.text("virtio_model", "", answer_file=False)
    if model and model not in VIRTIO_MODELS:
        check.fail(
            "virtio_model",
            f"{shown_value(model)} is not a virtio device model; use one of "
            f"{', '.join(VIRTIO_MODELS)}.",
        )
    bus = check.choice(
        "storage_bus",
        profile.storage_buses[0],
        [b.value for b in profile.storage_buses],
        f"the storage buses of {profile.name}",
    )
    firmware = _firmware(check)
    return {
        "storage_bus": StorageBus(bus),
        "firmware": firmware,
        "secure_boot": _secure_boot(check, firmware),
        "tpm": check.boolean("tpm", profile.tpm),
        "cpu_model": _cpu_model(check),
        "memory_mib": memory,
        "vcpus": check.integer("vcpus", profile.vcpus, 1, 255),
        "disk_size_gib": check.integer(
            "disk_size_gib", profile.disk_size_gib, profile.min_disk_gib, 2047, " GiB"
        ),
        "data_disks": _int_list(check, "data_disks", 1, 65536),
        "network": network,
        "storage_pool": pool or None,
        "virtio_model": model or None,
    }


def _libvirt_name(check: _Validator, key: str, name: str) -> None:
    """Refuse a network or pool name libvirt would refuse or trip over: a '/' (libvirt
    keeps the object as NAME.xml), blanks around or inside it (virsh splits on them)."""
    if check.problems_for(key):
        return
    size = len(name.encode("utf-8"))
    if size > LIBVIRT_NAME_MAX:
        check.fail(key, f"{size} bytes in UTF-8; at most {LIBVIRT_NAME_MAX}.", "Shorten it.")
        return
    bad = sorted({c for c in name if c == "/" or c.isspace()})
    if bad:
        shown = ", ".join("a blank" if c.isspace() else repr(c) for c in bad)
        what = "network" if key == "network" else "storage pool"
        check.fail(key, f"{shown_value(name)} is not a libvirt {what} name: it contains {shown}.")


def _firmware(check: _Validator) -> Firmware:
    profile = check.profile
    allowed = [f.value for f in profile.firmwares]
    value = check.text("firmware", profile.firmware.value, answer_file=False)
    if check.problems_for("firmware"):
        return profile.firmware
    if value not in allowed:
        known = value in [f.value for f in Firmware]
        check.fail(
            "firmware",
            f"{profile.title} installs with {' or '.join(allowed)} only; {value!r} is refused."
            if known
            else f"{value!r} is not one of {', '.join(allowed)} (what {profile.title} boots with).",
            f"Leave firmware out ({profile.firmware.value}).",
        )
        return profile.firmware
    return Firmware(value)


def _secure_boot(check: _Validator, firmware: Firmware) -> bool:
    """Secure Boot: the profile's default under UEFI, never under BIOS, where asking for
    it is refused (SeaBIOS has no Secure Boot)."""
    default = check.profile.secure_boot and firmware is Firmware.EFI
    value = check.boolean("secure_boot", default)
    if value and firmware is not Firmware.EFI:
        check.fail(
            "secure_boot",
            f'true needs UEFI, but firmware = "{firmware.value}" boots SeaBIOS, which has no '
            "Secure Boot.",
            'Set firmware = "efi", or leave secure_boot out.',
        )
        return False
    return value


_CPU_MODEL = re.compile(rf"^[A-Za-z0-9][A-Za-z0-9_.-]{{0,{CPU_MODEL_MAX - 1}}}$")


def _cpu_model(check: _Validator) -> str | None:
    """The CPU model: a name, or host-model / host-passthrough. A release that needs an
    x86-64 level refuses a model pvinstall knows to be below it; a model it does not know
    is asked of the host when the domain is defined."""
    profile = check.profile
    value = check.text("cpu_model", profile.cpu_model or "", answer_file=False)
    if check.problems_for("cpu_model"):
        return profile.cpu_model
    if not value:
        if profile.cpu_level:
            check.fail(
                "cpu_model",
                f"is empty, which leaves QEMU's default CPU (qemu64: no POPCNT, no SSE4.2), "
                f"but {profile.title} needs {profile.cpu_level}.",
                f"Leave cpu_model out ({profile.cpu_model}).",
            )
        return None
    if not _CPU_MODEL.match(value):
        check.fail("cpu_model", f"{value!r} is not a CPU model name.", "Use e.g. Nehalem.")
        return profile.cpu_model
    needed = cpu_level_number(profile.cpu_level)
    level = CPU_LEVELS.get(value)
    if needed and level is not None and level < needed:
        flags = ", ".join(f.upper() for f in CPU_LEVEL_FLAGS[needed][:2])
        check.fail(
            "cpu_model",
            f"{value} is an x86-64-v{level} CPU without {flags}; {profile.title} needs "
            f"{profile.cpu_level} and does not boot on it.",
            f"Use {profile.cpu_model} or a newer model (Westmere, SandyBridge, Haswell, "
            "EPYC ...), or host-passthrough on KVM.",
        )
    return value


def _product_key(check: _Validator, kms_key: str | None) -> Secret | None:
    profile = check.profile
    if "product_key" not in check.raw:
        if profile.product_key_required:
            check.fail(
                "product_key",
                f"required for {profile.name}: {profile.title} setup stops without one.",
                "Set the key printed on your media's licence.",
            )
            return None
        return Secret(kms_key) if kms_key else None
    value = check.text("product_key", "")
    if value == "":
        if profile.product_key_required:
            check.fail("product_key", f"required for {profile.name}; it cannot be empty.")
        return None
    normalized = value.strip().upper()
    if not _PRODUCT_KEY.match(normalized):
        # The value is a secret: describe its shape, never echo it.
        check.fail(
            "product_key",
            f"is not of the form XXXXX-XXXXX-XXXXX-XXXXX-XXXXX (got {len(value)} characters).",
        )
        return None
    return Secret(normalized)


def _timezone(check: _Validator) -> str:
    profile = check.profile
    value = check.text("timezone", profile.default_timezone)
    if check.problems_for("timezone"):
        return value
    resolved = profile.timezones.resolve(value)
    if resolved is None:
        check.fail(
            "timezone",
            f"{shown_value(value)} is not a time zone {profile.title} knows.",
            profile.timezones.hint(value),
        )
        return value
    return resolved


def _locale(check: _Validator, image: WimImage | None) -> str:
    """The locale: the setting, else the language of the DVD's image, else the profile's
    default. Setup shows its pages and the installed system in it, so with a DVD it must
    be a language of the chosen image."""
    fallback = check.profile.default_locale
    if image is not None:
        fallback = default_locale(image, check.profile.locales) or fallback
    value = check.text("locale", fallback)
    if check.problems_for("locale"):
        return value
    canonical = locales.canonical(value, check.profile.locales)
    if canonical is None:
        check.fail(
            "locale",
            f"{shown_value(value)} is not a locale pvinstall knows.",
            "Use a name such as en-US, en-GB, de-DE or fr-FR.",
        )
        return value
    languages = {language.casefold() for language in image.languages} if image else set()
    if image is not None and canonical.casefold() not in languages:
        check.fail(
            "locale",
            f"{canonical} is not a language of the image chosen ({image.name}: "
            f"{', '.join(image.languages) or 'none listed'}).",
            "Leave locale out to use the image's language, or give a DVD of that language.",
        )
    return canonical


def _string_list(
    check: _Validator, key: str, *, rules: AnswerText | None = None
) -> tuple[str, ...]:
    """A list of commands. Without `rules` they go into the post-install cmd script
    (its rules apply); with them, into an answer file (the profile's text rules: a
    sysprep.inf line is Windows-1252 and quoted), and run by Windows itself."""
    setting = SETTINGS_BY_KEY[key]
    value = check.get(key, [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        check.fail(key, f"must be a list of strings, not {shown_value(value)}.")
        return ()
    if setting.max_items is not None and len(value) > setting.max_items:
        check.fail(
            key,
            f"{len(value)} items; at most {setting.max_items}.",
            "Put the commands into a script and run that.",
        )
        return tuple(value)
    for index, item in enumerate(value):
        # The commands go into the post-install script on drivers.iso, not into
        # winnt.sif, so winnt.sif's rules do not apply; the script's do.
        if setting.max_length is not None and len(item) > setting.max_length:
            check.fail(
                f"{key}[{index}]",
                setting.too_long(len(item)),
                "Put the command into a script and run that.",
            )
            continue
        problem = _script_problem(item)
        if problem is None and rules is not None:
            problem = _text_problem(item, rules=rules)
        if problem:
            check.fail(f"{key}[{index}]", problem + ".")
        elif not item.strip():
            check.fail(f"{key}[{index}]", "is empty.")
    return tuple(value)


_DRIVER_NAME = re.compile(rf"^[A-Za-z0-9_-]{{1,{DRIVER_NAME_MAX}}}$")


def _driver_names(check: _Validator) -> tuple[str, ...] | None:
    """The `drivers` setting: driver names (which ones exist, and which are required,
    is checked against the source when the drivers are selected)."""
    if "drivers" not in check.raw:
        return None
    value = check.get("drivers", [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        check.fail(
            "drivers", f'must be a list of driver names, e.g. ["viostor", "NetKVM"], not {value!r}.'
        )
        return None
    if len(value) > MAX_DRIVER_NAMES:
        check.fail("drivers", f"{len(value)} names; at most {MAX_DRIVER_NAMES}.")
        return None
    names: dict[str, str] = {}
    for index, item in enumerate(value):
        if not _DRIVER_NAME.match(item):
            check.fail(
                f"drivers[{index}]",
                f"{item[:40]!r} is not a driver name (1 to {DRIVER_NAME_MAX} letters, digits, '-' "
                "or '_').",
                "`pvinstall drivers --profile P` lists the names.",
            )
        names.setdefault(item.lower(), item)
    return tuple(names.values())


def _int_list(check: _Validator, key: str, low: int, high: int) -> tuple[int, ...]:
    value = check.get(key, [])
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, list) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        check.fail(
            key, f"must be a list of whole numbers, e.g. [20, 40], not {shown_value(value)}."
        )
        return ()
    for index, item in enumerate(value):
        if not low <= item <= high:
            check.fail(f"{key}[{index}]", f"{item} GiB is out of range; allowed {low} to {high}.")
    return tuple(value)


def _floppy_size(check: _Validator) -> int:
    value = check.get("floppy_size", "1.44")
    text = str(value).strip().lower().removesuffix("mb").strip()
    sizes = {"1.44": 1440, "1440": 1440, "2.88": 2880, "2880": 2880}
    if text not in sizes:
        check.fail("floppy_size", f"{shown_value(value)}: a floppy is 1.44 or 2.88 (MB).")
        return 1440
    return sizes[text]


def settings_help() -> str:
    """The settings table for `pvinstall build --help` and the README."""
    width = max(len(s.key) for s in SETTINGS)
    return "\n".join(f"{s.key.ljust(width)}  {s.help_line()}" for s in SETTINGS)
