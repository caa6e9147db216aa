"""The targets pvinstall builds for (profiles): everything that differs between Windows
releases, as frozen data.

Each profile is a row built from its family's row with `dataclasses.replace`: the
family row says how a generation of Windows installs (answer-file format, how the
storage driver reaches setup, machine, firmware, buses, disk layout, time-zone style,
post-install method, the text rules of its answer file), the release row what is its
own (NT version, virtio-win folder, editions, time zones, osinfo id). Nothing outside
this module branches on a release: the rest of pvinstall reads these fields. Adding a
release of an existing family is one row; adding a family is a row plus its
templates. docs/design.md has the table as users see it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Literal

from builder.errors import InputError
from builder.vm.devices import (
    CPU_LEVELS,
    CdBus,
    Firmware,
    StorageBus,
    VirtioModel,
    cpu_level_number,
)
from builder.windows import locales, timezones
from builder.windows.timezones import TimeZoneTable

Arch = Literal["x86", "amd64"]


class AnswerFormat(StrEnum):
    """How setup is answered: winnt.sif for text-mode setup (with txtsetup.oem for the
    F6 disk), or autounattend.xml for Windows Setup installing from install.wim."""

    WINNT = "winnt"
    UNATTEND = "unattend"


class StorageRoute(StrEnum):
    """How the virtio storage driver reaches setup before it looks for the disk."""

    SLIPSTREAM = "slipstream"  # into the install CD's TXTSETUP.SIF (remastered CD)
    ANSWER_FLOPPY = "answer-floppy"  # windowsPE DriverPaths on the answer floppy (A:)
    ANSWER_ISO = "answer-iso"  # $WinPEDriver$ on an answer ISO, for machines without floppy


# What `pvinstall profiles` says about each route.
STORAGE_ROUTE_PROSE: Mapping[StorageRoute, str] = MappingProxyType(
    {
        StorageRoute.SLIPSTREAM: "slipstreamed into the install CD's TXTSETUP.SIF (F6 floppy "
        "also built)",
        StorageRoute.ANSWER_FLOPPY: "Autounattend.xml + boot-critical drivers on the floppy "
        "(A:), windowsPE DriverPaths",
        StorageRoute.ANSWER_ISO: "Autounattend.xml + $WinPEDriver$ on the answer ISO (no "
        "drive letter)",
    }
)


class DiskLayout(StrEnum):
    """The partition table setup writes on the system disk."""

    MBR = "mbr"
    GPT = "gpt"  # UEFI: EFI system partition, MSR, Windows


class PostInstall(StrEnum):
    """How the post-install script installs the driver packages at the first logon."""

    NONE = "none"  # GUI-mode setup installed them (winnt.sif OemPnPDriversPath)
    PNPUTIL_LEGACY = "pnputil -i -a"  # Vista to 2012 R2 syntax
    PNPUTIL_ADD_DRIVER = "pnputil /add-driver /install"  # Windows 10 / Server 2016 and later


class SelectionRule(StrEnum):
    """How the driver package of a profile is chosen among those whose INF fits it."""

    # The closest decoration, then the folder names: each legacy folder has a build of
    # its own, with its own decoration.
    CLOSEST_DECORATION = "closest-decoration"
    # The profile's own virtio-win folder first: virtio-win copies one modern build into
    # several folders, and Windows' ranking would give 2022 the build made for 2025.
    OWN_FOLDER = "own-folder"


class SignaturePolicy(StrEnum):
    """What a release can validate of the driver catalogs' signatures (docs/virtio-win.md
    §5), and so what pvinstall refuses or warns about (builder/virtio/trust.py)."""

    # Setup installs whatever it is given (winnt.sif DriverSigningPolicy=Ignore).
    IGNORE = "ignore"
    # x64 kernel-mode code signing before the SHA-2 updates: a boot-critical driver
    # needs a SHA-1 signature unless the media have the updates (`sha2_media`); other
    # SHA-2-only packages are warnings.
    SHA1_FOR_BOOT = "sha1-for-boot"
    # No kernel-mode code signing (32-bit): SHA-2-only packages are warnings.
    WARN_SHA2 = "warn-sha2"
    # SHA-2 is validated: nothing to say.
    SHA2 = "sha2"


@dataclass(frozen=True)
class AnswerText:
    """What a user's free-text value must be to go into a profile's answer file.

    `encoding` None is any Unicode text (XML, escaped by the template); otherwise the
    value must encode with it, and `unencodable` says why not. `forbidden` characters
    cannot be written at all, each with the reason. `no_password` is the value the
    format reads as "no password".
    """

    file: str
    encoding: str | None = None
    unencodable: str = ""
    forbidden: tuple[tuple[str, str], ...] = ()
    no_password: str | None = None


@dataclass(frozen=True)
class AnswerFiles:
    """The files of an answer format, in the order they are rendered, and which hold
    the administrator password or the product key (written with mode 0600)."""

    names: tuple[str, ...]
    secret: frozenset[str]
    text: AnswerText
    installs_image: bool  # whether the answer file picks an install.wim image by name
    # Whether its first-logon commands stay in a RunOnce key after the one that ran the
    # post-install script (winnt.sif's [GuiRunOnce]: one command per drive letter).
    leaves_run_once: bool = False


ANSWER_FILES: Mapping[AnswerFormat, AnswerFiles] = MappingProxyType(
    {
        AnswerFormat.WINNT: AnswerFiles(
            names=("winnt.sif", "txtsetup.oem"),
            secret=frozenset({"winnt.sif"}),
            text=AnswerText(
                file="winnt.sif",
                encoding="cp1252",
                unencodable="Windows Server 2003's winnt.sif cannot hold (it is read as "
                "Windows-1252)",
                # Setup reads winnt.sif with the INF parser, which replaces %name% with a
                # [Strings] entry or the environment; a value cannot carry a literal '%'.
                forbidden=(
                    ('"', "cannot be quoted in winnt.sif"),
                    ("%", "setup would read as the start of a %variable%"),
                ),
                no_password="*",  # noqa: S106 - winnt.sif's sentinel, not a password
            ),
            installs_image=False,
            leaves_run_once=True,
        ),
        AnswerFormat.UNATTEND: AnswerFiles(
            names=("autounattend.xml",),
            secret=frozenset({"autounattend.xml"}),
            text=AnswerText(file="autounattend.xml"),
            installs_image=True,
        ),
    }
)


@dataclass(frozen=True)
class Sysprep:
    """How a release is generalized at the end of its install (the `generalize`
    setting), and how the clones' first boot is answered (docs/golden-templates.md).

    `answer_file` is the rendered answer file of the clones' first boot (in OUT, mode
    0600), `medium` and `media_path` where the guest finds it; `executable` and
    `arguments` the post-install script's last step instead of the power-off (Sysprep
    shuts the guest down itself). `vm_mode` adds /mode:vm (Windows 8 / Server 2012 and
    later) when the clones keep the template's devices. A release without Sysprep on the
    installed system takes `tools` from the install CD's cabinet `tools_cabinet` into
    `tools_dir` on the remastered CD. `generalize_pass` says whether the answer file has
    a generalize pass (PersistAllDeviceInstalls, SkipRearm).
    """

    answer_file: str
    medium: str
    media_path: str
    executable: str
    arguments: str
    generalize_pass: bool
    vm_mode: bool = False
    tools_cabinet: str | None = None
    tools: tuple[str, ...] = ()
    tools_dir: str = ""


# Windows Server 2003: Sysprep comes from SUPPORT\TOOLS\DEPLOY.CAB of the CD; the
# remastered CD's $OEM$\$1\sysprep lands in C:\sysprep with sysprep.inf, which
# answers Mini-Setup. factory.exe is not run, but Sysprep's folder is documented with it.
SYSPREP_2003 = Sysprep(
    answer_file="sysprep.inf",
    medium="install.iso",
    media_path="$OEM$/$1/sysprep/SYSPREP.INF",
    executable="%SystemDrive%\\sysprep\\sysprep.exe",
    arguments="-reseal -mini -quiet -shutdown",
    generalize_pass=False,
    tools_cabinet="SUPPORT/TOOLS/DEPLOY.CAB",
    tools=("sysprep.exe", "setupcl.exe", "factory.exe"),
    tools_dir="$OEM$/$1/sysprep",
)
# Windows Server 2008 and later: Sysprep is in System32; the unattend file it is given
# is cached as %WINDIR%\Panther\unattend.xml and answers the clones' specialize and
# oobeSystem passes, so drivers.iso may go once the install is over.
SYSPREP_2008 = Sysprep(
    answer_file="sysprep-unattend.xml",
    medium="drivers.iso",
    media_path="SYSPREP.XML",
    executable="%WINDIR%\\System32\\sysprep\\sysprep.exe",
    arguments="/generalize /oobe /shutdown /quiet",
    generalize_pass=True,
)


@dataclass(frozen=True)
class Edition:
    """One edition of a release: the install.wim image name (and, where the release has
    Server Core images, the core image's name), its EDITIONID in the image's XML, and the
    KMS client key (GVLK; the same for core and desktop)."""

    name: str
    image_name: str | None = None
    kms_key: str | None = None
    core_image_name: str | None = None
    edition_id: str = ""

    def image_for(self, server_core: bool) -> str | None:
        """The image name of the core or the desktop installation."""
        return self.core_image_name if server_core else self.image_name


# INSTALLATIONTYPE of the images, by whether they are Server Core (docs/windows-modern.md).
InstallationTypes = Mapping[bool, str]


@dataclass(frozen=True)
class Profile:
    """Everything pvinstall knows about one Windows target that is not a user setting."""

    name: str
    title: str
    family: str
    arch: Arch
    nt_version: tuple[int, int]
    os_folder: str  # virtio-win's folder for this release (`2k8R2`)
    answer_format: AnswerFormat
    storage_route: StorageRoute
    remasters_install_cd: bool  # whether the user's install CD is remastered
    machine: str  # libvirt machine type
    firmware: Firmware  # the default
    firmwares: tuple[Firmware, ...]  # what the release boots with (the `firmware` setting)
    tpm: bool  # whether the machine gets a TPM 2.0 by default
    cpu_level: str | None  # the x86-64 level the release needs (x86-64-v2), None: any
    secure_boot: bool  # whether UEFI boots with Secure Boot (Microsoft's keys) by default
    cpu_model: str | None  # the named CPU model of the domain (None: the hypervisor's default)
    hyperv_modern: bool  # the full Hyper-V set where the hypervisor has it (KVM)
    discard_granularity: int | None  # bytes, for the virtio disks' trim (None: QEMU's)
    cd_bus: CdBus
    floppy_controller: bool  # whether the machine has a floppy controller
    usb_model: str  # the libvirt model of the USB controller
    disk_layouts: Mapping[Firmware, DiskLayout]  # the system disk's partitions by firmware
    storage_buses: tuple[StorageBus, ...]  # the `storage_bus` setting; the first is default
    storage_bus_caveats: Mapping[StorageBus, str]  # a warning for a bus known to fail
    virtio_model: VirtioModel  # libvirt's model for the virtio disks and NICs
    hyperv: bool  # Hyper-V enlightenments
    timezones: TimeZoneTable
    default_timezone: str
    locales: Mapping[str, int]
    default_locale: str
    post_install: PostInstall
    signature_policy: SignaturePolicy
    # The updates that give the release SHA-2 code signing (KB4474419) and their
    # prerequisites, for messages; empty when it has it or never checks.
    sha2_updates: tuple[str, ...]
    installers: tuple[str, ...]  # [installers] of drivers/catalog.toml run after the drivers
    shutdown_command: str
    sysprep: Sysprep
    editions: Mapping[str, Edition]
    default_edition: str
    product_key_required: bool
    installation_types: InstallationTypes  # empty: no `server_core` choice
    reads_install_image: bool  # the user's DVD is read: checked, its image chosen from it
    selection_rule: SelectionRule
    build: int | None  # the NT build of the release's media (None: any build of nt_version)
    min_memory_mib: int
    memory_mib: int
    vcpus: int
    min_disk_gib: int
    disk_size_gib: int
    timeout_minutes: int
    osinfo_id: str
    osinfo_url: str  # libosinfo's id, in the domain's metadata
    osinfo_aliases: tuple[str, ...] = field(default=())

    @property
    def arch_label(self) -> str:
        """The architecture as the profile name spells it (`x86` or `x64`)."""
        return "x64" if self.arch == "amd64" else "x86"

    @property
    def version_text(self) -> str:
        """`10.0.20348`, or `6.1` where the profile takes any build."""
        numbers = (*self.nt_version, *((self.build,) if self.build is not None else ()))
        return ".".join(map(str, numbers))

    @property
    def virtio_win_folder(self) -> str:
        """The folder of the modern virtio-win layout, e.g. `2k8/amd64`."""
        return f"{self.os_folder}/{self.arch}"

    @property
    def answer_files(self) -> tuple[str, ...]:
        return ANSWER_FILES[self.answer_format].names

    @property
    def secret_answer_files(self) -> frozenset[str]:
        return ANSWER_FILES[self.answer_format].secret

    @property
    def answer_text(self) -> AnswerText:
        return ANSWER_FILES[self.answer_format].text

    @property
    def installs_image(self) -> bool:
        return ANSWER_FILES[self.answer_format].installs_image

    @property
    def leaves_run_once(self) -> bool:
        return ANSWER_FILES[self.answer_format].leaves_run_once

    @property
    def storage_prose(self) -> str:
        return STORAGE_ROUTE_PROSE[self.storage_route]

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "family": self.family,
            "arch": self.arch,
            "nt_version": f"{self.nt_version[0]}.{self.nt_version[1]}",
            "build": self.build,
            "answer_files": list(self.answer_files),
            "virtio_win_folder": self.virtio_win_folder,
            "storage_route": self.storage_route.value,
            "storage_driver_path": self.storage_prose,
            "signature_policy": self.signature_policy.value,
            "machine": self.machine,
            "firmware": self.firmware.value,
            "firmwares": [f.value for f in self.firmwares],
            "tpm": self.tpm,
            "cpu_level": self.cpu_level,
            "secure_boot": self.secure_boot,
            "cpu_model": self.cpu_model,
            "storage_buses": [b.value for b in self.storage_buses],
            "server_core": bool(self.installation_types),
            "virtio_model": self.virtio_model,
            "osinfo": [self.osinfo_id, *self.osinfo_aliases],
            "editions": sorted(self.editions),
            "default_edition": self.default_edition,
            "product_key_required": self.product_key_required,
            "memory_mib": self.memory_mib,
            "min_memory_mib": self.min_memory_mib,
            "vcpus": self.vcpus,
            "disk_size_gib": self.disk_size_gib,
            "timeout_minutes": self.timeout_minutes,
        }


def _editions(*items: Edition) -> Mapping[str, Edition]:
    return MappingProxyType({e.name: e for e in items})


# Windows Server 2003: no image names (winnt.sif installs the edition of the CD) and
# no KMS; the product key is always required (KB Q250985).
_W2003_X86 = _editions(
    Edition("standard"), Edition("enterprise"), Edition("datacenter"), Edition("web")
)
_W2003_X64 = _editions(Edition("standard"), Edition("enterprise"), Edition("datacenter"))

# Image names as `dism /Get-WimInfo` lists them (docs/windows-2008.md), KMS
# client keys from Microsoft's "KMS client activation and product keys" page. The 2008 Web
# edition ships on its own media whose image name is not in that listing: the user
# gives `image_name` for it.
_W2008 = _editions(
    Edition("standard", "Windows Longhorn SERVERSTANDARD", "TM24T-X9RMF-VWXK6-X8JC9-BFGM2"),
    Edition("enterprise", "Windows Longhorn SERVERENTERPRISE", "YQGMW-MPWTJ-34KDK-48M3W-X4Q6V"),
    Edition("datacenter", "Windows Longhorn SERVERDATACENTER", "7M67G-PC374-GR742-YH8V4-TCBY3"),
    Edition("web", None, "WYR28-R7TFJ-3X2YQ-YCY4H-M249D"),
)
_W2008R2 = _editions(
    Edition("standard", "Windows Server 2008 R2 SERVERSTANDARD", "YC6KT-GKW9T-YTKYR-T4X34-R7VHC"),
    Edition(
        "enterprise", "Windows Server 2008 R2 SERVERENTERPRISE", "489J6-VHDMP-X63PK-3K798-CPX3Y"
    ),
    Edition(
        "datacenter", "Windows Server 2008 R2 SERVERDATACENTER", "74YFP-3QFB3-KQT8W-PMXWJ-7M648"
    ),
    Edition("web", "Windows Server 2008 R2 SERVERWEB", "6TPJF-RBVHG-WBW2R-86QPH-6RTM4"),
)


# Windows Server 2012 R2 and later: Standard and Datacenter, each with Server Core and
# desktop images (INSTALLATIONTYPE "Server Core" / "Server"), named after the product
# the way their install.wim names them; the KMS client keys of Microsoft's "KMS client
# activation and product keys" page (docs/windows-modern.md §4). The same key serves
# core and desktop.
def _server_editions(product: str, standard_key: str, datacenter_key: str) -> Mapping[str, Edition]:
    return _editions(
        Edition(
            "standard",
            f"{product} SERVERSTANDARD",
            standard_key,
            core_image_name=f"{product} SERVERSTANDARDCORE",
            edition_id="ServerStandard",
        ),
        Edition(
            "datacenter",
            f"{product} SERVERDATACENTER",
            datacenter_key,
            core_image_name=f"{product} SERVERDATACENTERCORE",
            edition_id="ServerDatacenter",
        ),
    )


_W2012R2 = _server_editions(
    "Windows Server 2012 R2", "D2N9P-3P6X9-2R39C-7RTCD-MDVJX", "W3GGN-FT8W3-Y4M27-J84CP-Q3VJ9"
)
_W2016 = _server_editions(
    "Windows Server 2016", "WC2BQ-8NRM3-FDDYY-2BFGV-KHKQY", "CB7KF-BWN84-R7R2Y-793K2-8XDDG"
)
_W2019 = _server_editions(
    "Windows Server 2019", "N69G4-B89J2-4G8F4-WWYCC-J464C", "WMDGN-G9PQG-XVVXX-R3X43-63DFG"
)
_W2022 = _server_editions(
    "Windows Server 2022", "VDYBN-27WPP-V4HQT-9VMD4-VMK7H", "WX4NM-KYWYW-QJJR4-XV3QB-6VM33"
)
_W2025 = _server_editions(
    "Windows Server 2025", "TVRH6-WHNXV-R9WG3-9XRFY-MY832", "D764K-2NDRG-47T6Q-P8T8W-YP6DF"
)
_SERVER_INSTALLATION_TYPES: InstallationTypes = MappingProxyType(
    {True: "Server Core", False: "Server"}
)


# -- the family rows ----------------------------------------------------------------------

# Windows Server 2003 / 2003 R2: text-mode setup from a remastered CD (docs/windows-2003.md).
# Its drivers know only the transitional virtio IDs, and it predates the Hyper-V
# enlightenments. shutdown.exe of 2003 takes the dash form.
WIN2003_FAMILY = Profile(
    name="win2003",
    title="Windows Server 2003 / 2003 R2",
    family="win2003",
    arch="x86",
    nt_version=(5, 2),
    os_folder="2k3",
    answer_format=AnswerFormat.WINNT,
    storage_route=StorageRoute.SLIPSTREAM,
    remasters_install_cd=True,
    machine="pc",
    firmware=Firmware.BIOS,
    firmwares=(Firmware.BIOS,),
    tpm=False,
    cpu_level=None,
    secure_boot=False,
    cpu_model=None,
    hyperv_modern=False,
    discard_granularity=None,
    cd_bus="ide",
    floppy_controller=True,
    usb_model="piix3-uhci",
    disk_layouts=MappingProxyType({Firmware.BIOS: DiskLayout.MBR}),
    storage_buses=(StorageBus.VIRTIO_BLK,),
    storage_bus_caveats=MappingProxyType({}),
    virtio_model="virtio-transitional",
    hyperv=False,
    timezones=timezones.ZONES_2003,
    default_timezone="090",
    locales=locales.LCIDS,
    default_locale="en-US",
    post_install=PostInstall.NONE,
    signature_policy=SignaturePolicy.IGNORE,
    sha2_updates=(),
    installers=(),
    shutdown_command="shutdown -s -t 0",
    sysprep=SYSPREP_2003,
    editions=_W2003_X86,
    default_edition="standard",
    product_key_required=True,
    installation_types=MappingProxyType({}),
    reads_install_image=False,
    selection_rule=SelectionRule.CLOSEST_DECORATION,
    build=None,
    min_memory_mib=128,
    memory_mib=512,
    vcpus=1,
    min_disk_gib=4,
    disk_size_gib=16,
    timeout_minutes=120,
    osinfo_id="win2k3",
    osinfo_url="http://microsoft.com/win/2k3",
    osinfo_aliases=("win2k3r2",),
)

# Windows Server 2008 and 2008 R2: Windows Setup from the user's DVD, answered from the
# floppy (docs/windows-2008.md).
WIN2008_FAMILY = replace(
    WIN2003_FAMILY,
    name="win2008",
    title="Windows Server 2008",
    family="win2008",
    nt_version=(6, 0),
    os_folder="2k8",
    answer_format=AnswerFormat.UNATTEND,
    storage_route=StorageRoute.ANSWER_FLOPPY,
    remasters_install_cd=False,
    virtio_model="virtio",
    hyperv=True,
    timezones=timezones.ZONES_2008,
    # "UTC" arrived with Windows 7 / 2008 R2; Greenwich has no DST either.
    default_timezone="Greenwich Standard Time",
    post_install=PostInstall.PNPUTIL_LEGACY,
    # Microsoft's "2019 SHA-2 code signing support requirement" (KB4472027): KB4474419
    # with the servicing stack update of the release (2008 SP2: KB4493730).
    signature_policy=SignaturePolicy.SHA1_FOR_BOOT,
    sha2_updates=("KB4474419", "KB4493730"),
    shutdown_command="shutdown /s /t 0",
    sysprep=SYSPREP_2008,
    editions=_W2008,
    product_key_required=False,
    min_memory_mib=512,
    memory_mib=2048,
    vcpus=2,
    min_disk_gib=10,
    disk_size_gib=32,
    osinfo_id="win2k8",
    osinfo_url="http://microsoft.com/win/2k8",
    osinfo_aliases=(),
)


# Windows Server 2012 R2 and later (docs/windows-modern.md): Windows Setup from the
# user's DVD, read in place to check it and choose the image; answered from a small
# answer ISO (Autounattend.xml and $WinPEDriver$ at its root, found by Setup on any
# drive, so no drive letter is named); q35 with UEFI (BIOS allowed up to 2022), modern
# virtio devices, no floppy. The rows below differ in version, folder, post-install
# method, TPM and CPU.
WIN2012R2_FAMILY = replace(
    WIN2008_FAMILY,
    name="win2012r2",
    title="Windows Server 2012 R2",
    family="win2012r2",
    arch="amd64",
    nt_version=(6, 3),
    build=9600,
    os_folder="2k12R2",
    storage_route=StorageRoute.ANSWER_ISO,
    machine="q35",
    firmware=Firmware.EFI,
    firmwares=(Firmware.EFI, Firmware.BIOS),
    # UEFI without Secure Boot: virtio-win's 2k12R2 drivers are test-signed since
    # 0.1.217, and Secure Boot keeps test-signed drivers from loading (Setup would see
    # no disk). `secure_boot = true` is allowed for older, WHQL-signed drivers.
    secure_boot=False,
    # A named model of the x86-64-v2 level, the same under KVM and TCG (QEMU's default,
    # qemu64, lacks POPCNT and SSE4.2; host-model follows the host).
    cpu_model="Nehalem",
    hyperv_modern=True,
    # viostor's trim works with a granularity of 32 KiB or more; 64 KiB is qcow2's
    # cluster size (docs/windows-modern.md §7).
    discard_granularity=65536,
    cd_bus="sata",
    floppy_controller=False,
    usb_model="qemu-xhci",
    disk_layouts=MappingProxyType({Firmware.EFI: DiskLayout.GPT, Firmware.BIOS: DiskLayout.MBR}),
    storage_buses=(StorageBus.VIRTIO_BLK, StorageBus.VIRTIO_SCSI),
    virtio_model="virtio",
    timezones=timezones.ZONES_MODERN,
    default_timezone="UTC",
    post_install=PostInstall.PNPUTIL_LEGACY,
    # Windows 8 / Server 2012 and later validate SHA-2 signatures out of the box.
    signature_policy=SignaturePolicy.SHA2,
    sha2_updates=(),
    installers=("qemu-ga",),
    # /mode:vm: the clones run on the same hypervisor and virtio devices (Windows 8 /
    # Server 2012 and later; it skips the hardware detection of the clones' first boot).
    sysprep=replace(SYSPREP_2008, vm_mode=True),
    editions=_W2012R2,
    installation_types=_SERVER_INSTALLATION_TYPES,
    reads_install_image=True,
    selection_rule=SelectionRule.OWN_FOLDER,
    min_memory_mib=512,
    memory_mib=4096,
    min_disk_gib=32,
    disk_size_gib=64,
    timeout_minutes=180,
    osinfo_id="win2k12r2",
    osinfo_url="http://microsoft.com/win/2k12r2",
)

# Windows Server 2016 and later: pnputil /add-driver, the guest tools MSI, a TPM 2.0,
# Secure Boot.
WIN2016_FAMILY = replace(
    WIN2012R2_FAMILY,
    name="win2016",
    title="Windows Server 2016",
    family="win2016",
    nt_version=(10, 0),
    build=14393,
    os_folder="2k16",
    tpm=True,
    # Secure Boot with the Microsoft keys OVMF enrolls; its db holds the 2011 CAs that
    # sign these releases' boot loaders (docs/windows-modern.md §7).
    secure_boot=True,
    post_install=PostInstall.PNPUTIL_ADD_DRIVER,
    installers=("qemu-ga", "guest-tools"),
    editions=_W2016,
    osinfo_id="win2k16",
    osinfo_url="http://microsoft.com/win/2k16",
)


def release(family_row: Profile, arch: Arch, **changes: Any) -> Profile:
    """A release's profile: `family_row` with `changes`, named for `arch` (`win2008-x64`)."""
    row = replace(family_row, arch=arch, **changes)
    label = row.arch_label
    return replace(row, name=f"{row.family}-{label}", title=f"{row.title} ({label})")


def _check(profile: Profile) -> Profile:
    """A row whose own facts contradict each other is a bug in this table."""
    problems = [
        text
        for text, bad in (
            (
                "its default edition is not one of its editions",
                profile.default_edition not in profile.editions,
            ),
            (
                "its default time zone is not in its time zone table",
                profile.timezones.resolve(profile.default_timezone) is None,
            ),
            (
                "its default locale is not in its locale table",
                profile.default_locale not in profile.locales,
            ),
            (
                "its default firmware is not one it boots with",
                profile.firmware not in profile.firmwares,
            ),
            (
                "it has no disk layout for a firmware it boots with",
                any(f not in profile.disk_layouts for f in profile.firmwares),
            ),
            ("it has no storage bus", not profile.storage_buses),
            (
                "it boots with Secure Boot by default but not with UEFI",
                profile.secure_boot and profile.firmware is not Firmware.EFI,
            ),
            (
                "its CPU model is below the x86-64 level it needs",
                profile.cpu_model is not None
                and cpu_level_number(profile.cpu_level) > CPU_LEVELS.get(profile.cpu_model, 0),
            ),
            (
                "its install image is read but it names no release build",
                profile.reads_install_image and profile.build is None,
            ),
            ("its memory is below its minimum", profile.memory_mib < profile.min_memory_mib),
            ("its disk is below its minimum", profile.disk_size_gib < profile.min_disk_gib),
        )
        if bad
    ]
    if problems:
        raise ValueError(f"profile {profile.name}: {'; '.join(problems)}")
    return profile


PROFILES: Mapping[str, Profile] = MappingProxyType(
    {
        p.name: _check(p)
        for p in (
            release(WIN2003_FAMILY, "x86"),
            release(WIN2003_FAMILY, "amd64", editions=_W2003_X64),
            # 32-bit Windows does not enforce kernel-mode code signing.
            release(WIN2008_FAMILY, "x86", signature_policy=SignaturePolicy.WARN_SHA2),
            release(WIN2008_FAMILY, "amd64"),
            release(
                WIN2008_FAMILY,
                "amd64",
                title="Windows Server 2008 R2",
                family="win2008r2",
                nt_version=(6, 1),
                os_folder="2k8R2",
                timezones=timezones.ZONES_2008R2,
                default_timezone="UTC",
                editions=_W2008R2,
                sha2_updates=("KB4474419", "KB4490628"),  # 2008 R2 SP1's servicing stack
                osinfo_id="win2k8r2",
                osinfo_url="http://microsoft.com/win/2k8r2",
            ),
            release(WIN2012R2_FAMILY, "amd64"),
            release(WIN2016_FAMILY, "amd64"),
            release(
                WIN2016_FAMILY,
                "amd64",
                title="Windows Server 2019",
                family="win2019",
                build=17763,
                os_folder="2k19",
                editions=_W2019,
                osinfo_id="win2k19",
                osinfo_url="http://microsoft.com/win/2k19",
            ),
            release(
                WIN2016_FAMILY,
                "amd64",
                title="Windows Server 2022",
                family="win2022",
                build=20348,
                os_folder="2k22",
                editions=_W2022,
                osinfo_id="win2k22",
                osinfo_url="http://microsoft.com/win/2k22",
            ),
            # 2025 needs x86-64-v2 (POPCNT, SSE4.2) and is installed with UEFI only.
            release(
                WIN2016_FAMILY,
                "amd64",
                title="Windows Server 2025",
                family="win2025",
                build=26100,
                os_folder="2k25",
                firmwares=(Firmware.EFI,),
                cpu_level="x86-64-v2",
                storage_bus_caveats=MappingProxyType(
                    {
                        StorageBus.VIRTIO_SCSI: "Windows Server 2025 setup is reported to "
                        "fail with vioscsi loaded unattended (kvm-guest-drivers-windows issue "
                        "1100, open); virtio-blk is the choice known to work"
                    }
                ),
                editions=_W2025,
                osinfo_id="win2k25",
                osinfo_url="http://microsoft.com/win/2k25",
            ),
        )
    }
)

ARCH_NAMES: Mapping[str, Arch] = MappingProxyType(
    {
        "x86": "x86",
        "i386": "x86",
        "i686": "x86",
        "x64": "amd64",
        "amd64": "amd64",
        "x86_64": "amd64",
    }
)


def _alias_targets(alias: str) -> list[Profile]:
    return [p for p in PROFILES.values() if alias in (p.osinfo_id, *p.osinfo_aliases)]


def resolve_profile(name: str, arch: str | None = None) -> Profile:
    """Return the profile named `name`, or the one an osinfo id (`win2k8`) names with `arch`.

    Raises `InputError` naming the known profiles when there is none.
    """
    wanted_arch: Arch | None = None
    if arch is not None:
        if arch.lower() not in ARCH_NAMES:
            raise InputError(
                f"unknown architecture {arch!r}.",
                "Use --arch x86 or --arch x64.",
                key="--arch",
            )
        wanted_arch = ARCH_NAMES[arch.lower()]
    known = ", ".join(PROFILES)
    aliases = ", ".join(
        sorted({a for p in PROFILES.values() for a in (p.osinfo_id, *p.osinfo_aliases)})
    )
    if name in PROFILES:
        profile = PROFILES[name]
        if wanted_arch is not None and wanted_arch != profile.arch:
            raise InputError(
                f"profile {name} is {profile.arch_label}, but --arch says {arch}.",
                "Leave out --arch, or name the profile of that architecture.",
                key="--arch",
            )
        return profile
    candidates = _alias_targets(name.lower())
    if not candidates:
        raise InputError(
            f"unknown profile {name!r}.",
            f"Known profiles: {known}; osinfo ids {aliases} with --arch.",
            key="profile",
        )
    if wanted_arch is not None:
        matching = [p for p in candidates if p.arch == wanted_arch]
        if not matching:
            have = ", ".join(p.arch_label for p in candidates)
            raise InputError(
                f"{name} has no {arch} profile (only {have}).",
                f"Use --arch {candidates[0].arch_label}.",
                key="--arch",
            )
        return matching[0]
    if len(candidates) == 1:
        return candidates[0]
    raise InputError(
        f"{name} exists for several architectures ({', '.join(p.name for p in candidates)}).",
        "Add --arch x86 or --arch x64.",
        key="--arch",
    )


def sibling(profile: Profile, arch: str) -> Profile | None:
    """The profile of the same release for another architecture, if there is one."""
    for other in PROFILES.values():
        if other.family == profile.family and other.arch == arch:
            return other
    return None
