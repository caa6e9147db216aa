"""The boot probe: a tiny Linux that stands in for Windows setup in boot tests.

Windows media cannot be shipped, so integration tests boot the exact libvirt domain
pvinstall defines with this probe instead and assert on what the guest saw. The probe
is built from Debian packages (kernel, busybox-static, isolinux) fetched with
``apt-get download`` and cached in ``tests/.cache/probe/<key>/``, where the key
covers the architecture, the package versions and everything in this file that shapes
the output.

Two architectures (``ProbeArch``): ``amd64`` (linux-image-amd64, for x86_64 guests)
and ``i386`` (linux-image-686 and busybox-static:i386, for the i686 guests of the
32-bit profiles: machine ``pc`` without a ``<cpu>`` element, so QEMU's qemu32 CPU,
which has no long mode). ``-686`` rather than ``-686-pae``: it needs the least of the
CPU; both boot on qemu32 under TCG. ``build_fake_2003_cd(arch="x86")`` uses the i386
probe, ``arch="amd64"`` the amd64 one.

The probe's ``/init`` reports over the serial console (ttyS0), one fact per line,
then powers off through ACPI. Line format (fields separated by single spaces; paths
and labels are percent-encoded: ``%`` -> ``%25``, space -> ``%20``, tab -> ``%09``,
CR -> ``%0D``; everything else is as Linux shows it, UTF-8)::

    PVPROBE start <mode> <kernel release>
    PVPROBE cpu <flag>...
    PVPROBE module <name> loaded|failed
    PVPROBE pci <bdf> <vendor> <device> <subsys_vendor> <subsys_device> <rev> <class> <driver|->
    PVPROBE net <iface> <mac> <pci bdf|->
    PVPROBE floppy none
    PVPROBE floppy <path> <size> <sha256>
    PVPROBE cdrom <dev> nomedia
    PVPROBE cdrom <dev> label <volume label from the primary volume descriptor>
    PVPROBE cdrom <dev> file <path> <size> <sha256>
    PVPROBE disk <dev> <size_bytes> writable yes|no
    PVPROBE hang
    PVPROBE template written|clone|failed
    PVPROBE end

Hex ids are lowercase without ``0x`` (``1af4 1001 1af4 0002 00 010000``). Paths are
relative to the medium's root (``I386/TXTSETUP.SIF``). ``<dev>`` is the kernel name
(``sr0``, ``vda``). Disks are ``/sys/block/{vd,sd,hd}*``; the writable test writes a
marker into the last sector, reads it back past the page cache and restores the
sector. Lines may be preceded by kernel noise on the same line; the parser looks for
``PVPROBE `` anywhere in a line.

``cpu`` lists the flags of the first CPU in /proc/cpuinfo (``lm`` is long mode).

Kernel command line: ``pvprobe=report`` (default) or ``pvprobe=hang`` (print
``PVPROBE start``/``PVPROBE hang`` and never power off).

Host requirements: apt-get/apt-cache with current package lists (``apt-get update``),
dpkg-deb, xorriso. No root needed. For the i386 probe, dpkg must know the i386
architecture (``dpkg --add-architecture i386``, then ``apt-get update``; ``make setup``
does both as root) and the host must run i386 binaries (busybox lists its applets).
"""

from __future__ import annotations

import fcntl
import functools
import gzip
import hashlib
import json
import lzma
import os
import re
import shutil
import stat
import struct
import subprocess
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Literal
from urllib.parse import unquote

# Bump when the probe's layout or behaviour changes in a way the cache key does not
# already capture (the init script, module list and versions are hashed anyway).
PROBE_FORMAT_VERSION = 2

DEFAULT_CACHE_DIR = Path(__file__).resolve().parents[1] / ".cache" / "probe"

ProbeArch = Literal["amd64", "i386"]
PROBE_ARCHES: tuple[ProbeArch, ...] = ("amd64", "i386")

# Per probe architecture: the kernel meta package (its Depends names the real one)
# and the packages of that architecture; ARCH_ALL_PACKAGES are Architecture: all.
KERNEL_META_PACKAGES: Mapping[ProbeArch, str] = MappingProxyType(
    {"amd64": "linux-image-amd64", "i386": "linux-image-686"}
)
ARCH_PACKAGES = ("busybox-static",)
ARCH_ALL_PACKAGES = ("isolinux", "syslinux-common")

# Modules the probe loads (with their dependencies, resolved from .modinfo).
# Optional ones are skipped when the kernel does not have them.
REQUIRED_MODULES = (
    "virtio_pci",
    "virtio_blk",
    "virtio_net",
    "floppy",
    "fat",
    "vfat",
    "nls_cp437",
    "nls_iso8859_1",
    "nls_utf8",
    "nls_ascii",
    "isofs",
    "scsi_mod",
    "sd_mod",
    "cdrom",
    "sr_mod",
    "libata",
    "ata_piix",
    "ata_generic",
)
OPTIONAL_MODULES = ("virtio_scsi", "ahci")
# insmod does not read module options from the kernel command line.
MODULE_PARAMS: Mapping[str, str] = {"scsi_mod": "scan=sync"}

ProbeMode = Literal["report", "hang", "template"]
PROBE_MODES: tuple[ProbeMode, ...] = ("report", "hang", "template")
# The template mode (stands for Windows setup + Sysprep in the export and clone tests):
# the probe copies its own hybrid CD onto the system disk (so that the disk boots, as
# an installed system does), writes TEMPLATE_MARKER at TEMPLATE_MARKER_SECTOR and
# reports "template written"; booted from that disk (a clone), it finds the marker and
# reports "template clone". Both then report as usual and power off.
TEMPLATE_MARKER = "PVPROBE-TEMPLATE-MARKER-1"
TEMPLATE_MARKER_SECTOR = 1048576  # 512 MiB in: past the probe's CD image


def disk_sector(image: Path, image_format: str, number: int) -> bytes:
    """One 512-byte sector of a disk image, read by qemu-io (not by pvinstall)."""
    done = subprocess.run(
        ["qemu-io", "-r", "-f", image_format, "-c", f"read -v {number * 512} 512", str(image)],
        check=True,
        capture_output=True,
        text=True,
    )
    data = bytearray()
    for line in done.stdout.splitlines():
        head, sep, rest = line.partition(":  ")
        if sep and all(c in "0123456789abcdef" for c in head):
            data += bytes.fromhex(rest[: 16 * 3])
    assert len(data) == 512, done.stdout
    return bytes(data)


# Every timestamp in the initramfs and ISOs (2005-03-30 00:00:00 UTC, 2003 SP1 era).
FIXED_EPOCH = 1112140800

PROBE_ISO_LABEL = "PVPROBE"
BOOT_DIR = "ISOLINUX"  # isolinux searches /isolinux for its config; ISO9660 is case-blind
KERNEL_NAME = "PROBE.KRN"
INITRD_NAME = "PROBE.IGZ"

APT_UPDATE_HINT = (
    "apt's package lists look missing or stale: run 'apt-get update' (as root) first; "
    "the CI setup does this before the tests"
)
FOREIGN_ARCH_HINT = (
    "dpkg must know the {arch} architecture and apt have its package lists: as root, run "
    "'dpkg --add-architecture {arch} && apt-get update' ('make setup' does this)"
)


class ProbeBuildError(RuntimeError):
    """Building the probe failed (missing tool, apt lists, package layout)."""


# --------------------------------------------------------------------------- init

INIT_SCRIPT = r"""#!/bin/sh
# pvprobe /init: report what the guest sees over the serial console, then power off.
# Generated by pvinstall tests/integration/probe.py.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mkdir -p /proc /sys /dev /tmp /mnt
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null || mdev -s

mode=report
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        pvprobe=*) mode="${arg#pvprobe=}" ;;
    esac
done
# Keep kernel messages from interleaving with the report on the console.
echo 1 > /proc/sys/kernel/printk

TAB="$(printf '\t')"
CR="$(printf '\r')"
say() { echo "PVPROBE $*"; }
enc() {
    local s="$1"
    s="${s//%/%25}"
    s="${s// /%20}"
    s="${s//$TAB/%09}"
    s="${s//$CR/%0D}"
    printf '%s' "$s"
}
# rd FILE: R = first line of FILE without a 0x prefix
rd() { R=; read -r R < "$1" 2>/dev/null; R="${R#0x}"; }

say start "$mode" "$(uname -r)"
if [ "$mode" = hang ]; then
    say hang
    while :; do sleep 3600; done
fi

flags=
while IFS= read -r line; do
    case "$line" in flags*) flags="${line#*:}"; break ;; esac
done < /proc/cpuinfo
say cpu $flags

while read -r mod args; do
    [ -n "$mod" ] || continue
    if insmod "/lib/modules/pvprobe/$mod.ko" $args 2>/dev/null; then
        say module "$mod" loaded
    else
        say module "$mod" failed
    fi
done < /etc/pvprobe/modules

# Wait until the set of block and network devices has been stable for 1.6 s
# (at least 1 s, at most 15 s): ATA/SCSI probing is asynchronous.
prev=
stable=0
i=0
while [ "$i" -lt 75 ]; do
    cur="$(ls /sys/block /sys/class/net 2>/dev/null | tr '\n' ' ')"
    if [ "$cur" = "$prev" ]; then stable=$((stable + 1)); else stable=0; prev="$cur"; fi
    [ "$stable" -ge 8 ] && [ "$i" -ge 5 ] && break
    sleep 0.2
    i=$((i + 1))
done

for d in /sys/bus/pci/devices/*; do
    [ -e "$d/vendor" ] || continue
    rd "$d/vendor"; ven="$R"
    rd "$d/device"; dev="$R"
    rd "$d/subsystem_vendor"; sven="$R"
    rd "$d/subsystem_device"; sdev="$R"
    rd "$d/revision"; rev="$R"
    rd "$d/class"; cls="$R"
    drv=-
    if [ -e "$d/driver" ]; then drv="$(readlink "$d/driver")"; drv="${drv##*/}"; fi
    say pci "${d##*/}" "$ven" "$dev" "$sven" "$sdev" "$rev" "$cls" "$drv"
done

for n in /sys/class/net/*; do
    name="${n##*/}"
    [ "$name" = lo ] && continue
    [ -e "$n/address" ] || continue
    rd "$n/address"; mac="$R"
    bdf=-
    if [ -e "$n/device" ]; then
        p="$(readlink -f "$n/device")"
        case "${p##*/}" in virtio*) p="${p%/*}" ;; esac
        bdf="${p##*/}"
    fi
    say net "$name" "$mac" "$bdf"
done

# list_files MOUNTPOINT WORDS...: one line per regular file
list_files() {
    local root="$1"
    shift
    (cd "$root" && find . -type f | sort) | while IFS= read -r f; do
        f="${f#./}"
        size="$(wc -c < "$root/$f")"
        sum="$(sha256sum "$root/$f")"
        say "$@" "$(enc "$f")" "$size" "${sum%% *}"
    done
}

mkdir -p /mnt/fd0
if [ -b /dev/fd0 ] && mount -t vfat -o ro /dev/fd0 /mnt/fd0 2>/dev/null; then
    list_files /mnt/fd0 floppy
    umount /mnt/fd0
else
    say floppy none
fi

for b in /sys/block/sr*; do
    [ -e "$b" ] || continue
    dev="${b##*/}"
    mkdir -p "/mnt/$dev"
    if mount -t iso9660 -o ro "/dev/$dev" "/mnt/$dev" 2>/dev/null; then
        label="$(dd if="/dev/$dev" bs=2048 skip=16 count=1 2>/dev/null \
                 | dd bs=1 skip=40 count=32 2>/dev/null)"
        label="${label%"${label##*[! ]}"}"
        say cdrom "$dev" label "$(enc "$label")"
        list_files "/mnt/$dev" cdrom "$dev" file
        umount "/mnt/$dev"
    else
        say cdrom "$dev" nomedia
    fi
done

for b in /sys/block/vd* /sys/block/sd* /sys/block/hd*; do
    [ -e "$b/size" ] || continue
    dev="${b##*/}"
    rd "$b/size"; sectors="$R"
    rd "$b/ro"; ro="$R"
    writable=no
    if [ "$ro" = 0 ] && [ "$sectors" -gt 0 ]; then
        last=$((sectors - 1))
        marker="PVPROBE-WRITE-TEST-$dev-$last"
        if dd if="/dev/$dev" of=/tmp/sector bs=512 skip="$last" count=1 2>/dev/null \
            && printf '%s' "$marker" | dd of="/dev/$dev" bs=512 seek="$last" count=1 \
                   conv=notrunc,sync,fsync 2>/dev/null; then
            blockdev --flushbufs "/dev/$dev" 2>/dev/null
            back="$(dd if="/dev/$dev" bs=512 skip="$last" count=1 iflag=direct 2>/dev/null \
                    | head -c "${#marker}")"
            [ "$back" = "$marker" ] && writable=yes
            dd if=/tmp/sector of="/dev/$dev" bs=512 seek="$last" count=1 \
                conv=notrunc,fsync 2>/dev/null
        fi
    fi
    say disk "$dev" $((sectors * 512)) writable "$writable"
done

if [ "$mode" = template ]; then
    tmark="@TEMPLATE_MARKER@"
    tsector=@TEMPLATE_MARKER_SECTOR@
    got="$(dd if=/dev/vda bs=512 skip="$tsector" count=1 2>/dev/null | head -c "${#tmark}")"
    if [ "$got" = "$tmark" ]; then
        say template clone
    else
        src=
        for b in /sys/block/sr*; do
            [ -e "$b" ] || continue
            dev="${b##*/}"
            label="$(dd if="/dev/$dev" bs=2048 skip=16 count=1 2>/dev/null \
                     | dd bs=1 skip=40 count=32 2>/dev/null)"
            label="${label%"${label##*[! ]}"}"
            if [ "$label" = "@PROBE_ISO_LABEL@" ]; then src="/dev/$dev"; break; fi
        done
        if [ -n "$src" ] && dd if="$src" of=/dev/vda bs=65536 conv=fsync 2>/dev/null \
            && printf '%s' "$tmark" | dd of=/dev/vda bs=512 seek="$tsector" count=1 \
                   conv=notrunc,sync,fsync 2>/dev/null; then
            say template written
        else
            say template failed
        fi
    fi
fi

say end
sync
# Let the UART drain before the power goes.
sleep 1
poweroff -f
while :; do sleep 3600; done
"""


INIT_SCRIPT = (
    INIT_SCRIPT.replace("@TEMPLATE_MARKER@", TEMPLATE_MARKER)
    .replace("@TEMPLATE_MARKER_SECTOR@", str(TEMPLATE_MARKER_SECTOR))
    .replace("@PROBE_ISO_LABEL@", PROBE_ISO_LABEL)
)


def isolinux_cfg(mode: ProbeMode) -> str:
    """The isolinux configuration: serial first, no prompt, boot the probe at once."""
    if mode not in PROBE_MODES:
        raise ValueError(f"unknown probe mode {mode!r}; expected one of {PROBE_MODES}")
    return (
        "SERIAL 0 115200\n"
        "DEFAULT pvprobe\n"
        "PROMPT 0\n"
        "TIMEOUT 0\n"
        "NOESCAPE 1\n"
        "LABEL pvprobe\n"
        f"  LINUX /{BOOT_DIR}/{KERNEL_NAME}\n"
        f"  INITRD /{BOOT_DIR}/{INITRD_NAME}\n"
        f"  APPEND console=tty0 console=ttyS0,115200 pvprobe={mode}\n"
    )


# --------------------------------------------------------------------------- helpers


def _run(cmd: list[str], *, cwd: Path | None = None, env: Mapping[str, str] | None = None) -> str:
    if shutil.which(cmd[0]) is None:
        raise ProbeBuildError(f"{cmd[0]} not found; install it (see tests/integration/probe.py)")
    proc = subprocess.run(
        cmd,
        cwd=cwd,
        env=None if env is None else dict(env),
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise ProbeBuildError(
            f"{' '.join(cmd)} failed with exit code {proc.returncode}:\n"
            f"{proc.stderr.strip() or proc.stdout.strip()}"
        )
    return proc.stdout


@functools.cache
def native_arch() -> str:
    """dpkg's native architecture (``amd64`` on the usual host)."""
    return _run(["dpkg", "--print-architecture"]).strip()


def _qualified(name: str, arch: str) -> str:
    """``name`` as apt names it: ``name:arch`` unless ``arch`` is native (or all)."""
    return name if arch in (native_arch(), "all") else f"{name}:{arch}"


def _arch_hint(arch: ProbeArch) -> str:
    if arch == native_arch():
        return APT_UPDATE_HINT
    return FOREIGN_ARCH_HINT.format(arch=arch)


def _candidate_versions(packages: Iterable[str], hint: str = APT_UPDATE_HINT) -> dict[str, str]:
    """Candidate version of each package, from one ``apt-cache policy`` call.

    Names may carry an architecture (``busybox-static:i386``), as apt prints them.
    """
    wanted = list(packages)
    out = _run(["apt-cache", "policy", *wanted])
    found: dict[str, str] = {}
    current: str | None = None
    for line in out.splitlines():
        header = re.fullmatch(r"(\S+):", line)
        if header:
            current = header.group(1)
            continue
        m = re.match(r"\s+Candidate:\s*(\S+)", line)
        if m and current is not None and m.group(1) != "(none)":
            found[current] = m.group(1)
    missing = [p for p in wanted if p not in found]
    if missing:
        raise ProbeBuildError(f"apt knows no installable version of {missing}; {hint}")
    return found


def _kernel_package(arch: ProbeArch) -> str:
    """The real kernel package behind the meta package, e.g. linux-image-<abi>-686:i386."""
    meta = _qualified(KERNEL_META_PACKAGES[arch], arch)
    try:
        out = _run(["apt-cache", "show", "--no-all-versions", meta])
    except ProbeBuildError as exc:
        raise ProbeBuildError(f"{exc}\n{_arch_hint(arch)}") from exc
    m = re.search(r"^Depends:.*?\b(linux-image-[0-9][^\s,()]*)", out, re.MULTILINE)
    if m is None:
        raise ProbeBuildError(
            f"cannot find the kernel package in {meta}'s Depends; {_arch_hint(arch)}"
        )
    return _qualified(m.group(1), arch)


@functools.cache
def resolve_packages(arch: ProbeArch = "amd64") -> Mapping[str, str]:
    """Package name (as apt names it) -> candidate version for everything the probe
    of ``arch`` is built from.

    Asked once per process and architecture (about 1 s of apt-cache).
    """
    if arch not in PROBE_ARCHES:
        raise ValueError(f"unknown probe arch {arch!r}; expected one of {PROBE_ARCHES}")
    names = [
        _kernel_package(arch),
        *(_qualified(name, arch) for name in ARCH_PACKAGES),
        *ARCH_ALL_PACKAGES,
    ]
    return MappingProxyType(_candidate_versions(names, _arch_hint(arch)))


def _deb_package_name(deb: Path) -> str:
    """``name_version_arch.deb`` -> the package name as apt names it."""
    parts = deb.name.removesuffix(".deb").split("_")
    if len(parts) != 3:
        raise ProbeBuildError(f"unexpected .deb file name {deb.name}")
    return _qualified(parts[0], parts[2])


def _apt_download(
    packages: Mapping[str, str], dest: Path, hint: str = APT_UPDATE_HINT
) -> dict[str, Path]:
    cmd = ["apt-get", "download", "-q"]
    if os.geteuid() == 0:
        # As root apt would try to drop to _apt, which cannot write our temp dir.
        cmd += ["-o", "APT::Sandbox::User=root"]
    cmd += [f"{name}={version}" for name, version in sorted(packages.items())]
    try:
        _run(cmd, cwd=dest)
    except ProbeBuildError as exc:
        raise ProbeBuildError(f"{exc}\n{hint}") from exc
    debs = {_deb_package_name(deb): deb for deb in dest.glob("*.deb")}
    missing = sorted(set(packages) - set(debs))
    if missing:
        raise ProbeBuildError(f"apt-get download produced no .deb for {missing}")
    return debs


def _first_existing(root: Path, candidates: Iterable[str], what: str) -> Path:
    for rel in candidates:
        path = root / rel
        if path.exists():
            return path
    raise ProbeBuildError(f"{what} not found in the extracted packages under {root}")


# --------------------------------------------------------------------------- modules


def _normalize_module(name: str) -> str:
    return name.replace("-", "_")


def _read_module(path: Path) -> bytes:
    data = path.read_bytes()
    if path.name.endswith(".ko"):
        return data
    if path.name.endswith(".ko.xz"):
        return lzma.decompress(data)
    if path.name.endswith(".ko.gz"):
        return gzip.decompress(data)
    if path.name.endswith(".ko.zst"):
        if shutil.which("zstd") is None:
            raise ProbeBuildError(f"{path.name} is zstd-compressed; install zstd")
        proc = subprocess.run(["zstd", "-dc", str(path)], capture_output=True, check=True)
        return proc.stdout
    raise ProbeBuildError(f"unknown module file type: {path}")


def modinfo(ko: bytes) -> dict[str, list[str]]:
    """Parse the .modinfo section of an ELF64 or ELF32 little-endian kernel module."""
    if ko[:4] != b"\x7fELF" or ko[4] not in (1, 2) or ko[5] != 1:
        raise ProbeBuildError("not an ELF32/ELF64 little-endian kernel module")
    if ko[4] == 2:  # ELF64: e_shoff at 0x28; sh_offset, sh_size at 0x18 (8 bytes each)
        word, shoff_at, shnum_at, shoffset_at = "Q", 0x28, 0x3A, 0x18
    else:  # ELF32: e_shoff at 0x20; sh_offset, sh_size at 0x10 (4 bytes each)
        word, shoff_at, shnum_at, shoffset_at = "I", 0x20, 0x2E, 0x10
    (e_shoff,) = struct.unpack_from(f"<{word}", ko, shoff_at)
    e_shentsize, e_shnum, e_shstrndx = struct.unpack_from("<HHH", ko, shnum_at)

    def section(index: int) -> tuple[int, int, int]:
        base = e_shoff + index * e_shentsize
        (name,) = struct.unpack_from("<I", ko, base)
        offset, size = struct.unpack_from(f"<{word}{word}", ko, base + shoffset_at)
        return name, offset, size

    _, str_off, str_size = section(e_shstrndx)
    strtab = ko[str_off : str_off + str_size]
    info: dict[str, list[str]] = {}
    for index in range(e_shnum):
        name_off, offset, size = section(index)
        name = strtab[name_off : strtab.index(b"\0", name_off)]
        if name != b".modinfo":
            continue
        for entry in ko[offset : offset + size].split(b"\0"):
            key, sep, value = entry.partition(b"=")
            if sep:
                info.setdefault(key.decode(), []).append(value.decode(errors="replace"))
    return info


@dataclass(frozen=True)
class KernelModule:
    name: str
    data: bytes
    params: str = ""


def resolve_modules(
    modules_dir: Path,
    required: Iterable[str] = REQUIRED_MODULES,
    optional: Iterable[str] = OPTIONAL_MODULES,
) -> list[KernelModule]:
    """The wanted modules plus their dependencies, dependencies first.

    Debian's kernel package ships no modules.dep (depmod runs in postinst), so the
    dependencies come from each module's .modinfo ``depends=``. Built-in modules
    (modules.builtin) are skipped.
    """
    index: dict[str, Path] = {}
    for path in sorted(modules_dir.rglob("*.ko*")):
        m = re.fullmatch(r"(.+)\.ko(\.xz|\.gz|\.zst)?", path.name)
        if m:
            index.setdefault(_normalize_module(m.group(1)), path)
    builtin: set[str] = set()
    builtin_file = modules_dir / "modules.builtin"
    if builtin_file.exists():
        for line in builtin_file.read_text().splitlines():
            stem = line.rsplit("/", 1)[-1]
            builtin.add(_normalize_module(stem.split(".ko", 1)[0]))

    order: list[KernelModule] = []
    done: set[str] = set()

    def visit(name: str, chain: tuple[str, ...], must: bool) -> None:
        name = _normalize_module(name)
        if name in done or name in builtin:
            return
        if name in chain:
            raise ProbeBuildError(f"module dependency cycle: {' -> '.join((*chain, name))}")
        path = index.get(name)
        if path is None:
            if must:
                raise ProbeBuildError(f"kernel module {name} not found under {modules_dir}")
            return
        data = _read_module(path)
        for deps in modinfo(data).get("depends", []):
            for dep in filter(None, deps.split(",")):
                visit(dep, (*chain, name), True)
        done.add(name)
        order.append(KernelModule(name, data, MODULE_PARAMS.get(name, "")))

    for name in required:
        visit(name, (), True)
    for name in optional:
        visit(name, (), False)
    return order


# --------------------------------------------------------------------------- cpio


@dataclass(frozen=True)
class CpioEntry:
    path: str  # relative, no leading slash
    mode: int  # including the file type bits
    data: bytes = b""  # file content, or the symlink target
    rdev: tuple[int, int] = (0, 0)


def write_newc(entries: Iterable[CpioEntry], *, mtime: int = FIXED_EPOCH) -> bytes:
    """A deterministic newc ("070701") cpio archive: sorted by path, fixed metadata."""
    out = bytearray()

    def pad4() -> None:
        out.extend(b"\0" * (-len(out) % 4))

    def record(ino: int, entry: CpioEntry, name: str) -> None:
        nlink = 2 if stat.S_ISDIR(entry.mode) else 1
        name_bytes = name.encode() + b"\0"
        fields = (
            ino,
            entry.mode,
            0,
            0,
            nlink,
            mtime,
            len(entry.data),
            0,
            0,
            entry.rdev[0],
            entry.rdev[1],
            len(name_bytes),
            0,
        )
        out.extend(b"070701" + b"".join(b"%08X" % v for v in fields))
        out.extend(name_bytes)
        pad4()
        out.extend(entry.data)
        pad4()

    ordered = sorted(entries, key=lambda e: e.path)
    paths = [e.path for e in ordered]
    if len(set(paths)) != len(paths):
        raise ValueError("duplicate paths in cpio entries")
    for ino, entry in enumerate(ordered, start=1):
        record(ino, entry, entry.path)
    record(0, CpioEntry("TRAILER!!!", 0), "TRAILER!!!")
    return bytes(out)


def _initramfs_entries(
    busybox: bytes, applets: Iterable[str], modules: list[KernelModule]
) -> list[CpioEntry]:
    dirs = {
        "bin",
        "dev",
        "etc",
        "etc/pvprobe",
        "lib",
        "lib/modules",
        "lib/modules/pvprobe",
        "mnt",
        "proc",
        "root",
        "sbin",
        "sys",
        "tmp",
        "usr",
        "usr/bin",
        "usr/sbin",
    }
    entries: dict[str, CpioEntry] = {}
    entries["bin/busybox"] = CpioEntry("bin/busybox", stat.S_IFREG | 0o755, busybox)
    for applet in applets:
        path = applet.strip().lstrip("/")
        if not path or path in entries or path == "init":
            continue
        parent = path.rsplit("/", 1)[0] if "/" in path else ""
        if parent and parent not in dirs:
            continue
        entries[path] = CpioEntry(path, stat.S_IFLNK | 0o777, b"/bin/busybox")
    entries["init"] = CpioEntry("init", stat.S_IFREG | 0o755, INIT_SCRIPT.encode())
    entries["dev/console"] = CpioEntry("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1))
    listing = "".join(f"{m.name} {m.params}".rstrip() + "\n" for m in modules)
    entries["etc/pvprobe/modules"] = CpioEntry(
        "etc/pvprobe/modules", stat.S_IFREG | 0o644, listing.encode()
    )
    for m in modules:
        path = f"lib/modules/pvprobe/{m.name}.ko"
        entries[path] = CpioEntry(path, stat.S_IFREG | 0o644, m.data)
    for d in dirs:
        entries[d] = CpioEntry(d, stat.S_IFDIR | 0o755)
    return list(entries.values())


# --------------------------------------------------------------------------- cache


@contextmanager
def _locked(cache_dir: Path) -> Iterator[None]:
    cache_dir.mkdir(parents=True, exist_ok=True)
    with (cache_dir / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _cache_key(packages: Mapping[str, str], arch: ProbeArch) -> str:
    material = {
        "format": PROBE_FORMAT_VERSION,
        "arch": arch,
        "packages": dict(sorted(packages.items())),
        "required": REQUIRED_MODULES,
        "optional": OPTIONAL_MODULES,
        "params": dict(sorted(MODULE_PARAMS.items())),
        "init": hashlib.sha256(INIT_SCRIPT.encode()).hexdigest(),
    }
    blob = json.dumps(material, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


@dataclass(frozen=True)
class ProbeBootFiles:
    """The cached pieces every probe medium is made of."""

    directory: Path
    kernel: Path
    initrd: Path
    isolinux_bin: Path
    ldlinux_c32: Path
    isohybrid_mbr: Path  # isolinux's MBR for a CD image that boots as a disk too
    arch: ProbeArch = "amd64"
    packages: Mapping[str, str] = field(default_factory=dict)
    kernel_release: str = ""
    modules: tuple[str, ...] = ()


def _load_boot_files(directory: Path) -> ProbeBootFiles | None:
    manifest = directory / "manifest.json"
    if not manifest.exists():
        return None
    meta = json.loads(manifest.read_text())
    return ProbeBootFiles(
        directory=directory,
        kernel=directory / "vmlinuz",
        initrd=directory / "initrd.gz",
        isolinux_bin=directory / "isolinux.bin",
        ldlinux_c32=directory / "ldlinux.c32",
        isohybrid_mbr=directory / "isohdpfx.bin",
        arch=meta["arch"],
        packages=meta["packages"],
        kernel_release=meta["kernel_release"],
        modules=tuple(meta["modules"]),
    )


def build_probe_boot_files(
    cache_dir: Path = DEFAULT_CACHE_DIR, *, arch: ProbeArch = "amd64"
) -> ProbeBootFiles:
    """Kernel, initramfs and isolinux files of ``arch``, built once per package-version set."""
    packages = resolve_packages(arch)
    directory = cache_dir / _cache_key(packages, arch)
    with _locked(cache_dir):
        cached = _load_boot_files(directory)
        if cached is not None:
            return cached
        with tempfile.TemporaryDirectory(prefix="pvprobe-") as tmp_name:
            tmp = Path(tmp_name)
            debs = _apt_download(packages, tmp, _arch_hint(arch))
            root = tmp / "root"
            for deb in sorted(debs.values()):
                _run(["dpkg-deb", "-x", str(deb), str(root)])
            kernels = sorted(
                p for base in ("boot", "usr/lib/linux") for p in (root / base).glob("vmlinuz-*")
            )
            if len(kernels) != 1:
                raise ProbeBuildError(f"expected one vmlinuz in the kernel package, got {kernels}")
            release = kernels[0].name.removeprefix("vmlinuz-")
            modules_dir = _first_existing(
                root, (f"lib/modules/{release}", f"usr/lib/modules/{release}"), "modules"
            )
            busybox_path = _first_existing(root, ("bin/busybox", "usr/bin/busybox"), "busybox")
            applets = _busybox_applets(busybox_path, arch)
            modules = resolve_modules(modules_dir)
            initrd = gzip.compress(
                write_newc(_initramfs_entries(busybox_path.read_bytes(), applets, modules)),
                compresslevel=9,
                mtime=0,
            )
            isolinux_bin = _first_existing(root, ("usr/lib/ISOLINUX/isolinux.bin",), "isolinux.bin")
            ldlinux = _first_existing(
                root, ("usr/lib/syslinux/modules/bios/ldlinux.c32",), "ldlinux.c32"
            )

            staging = cache_dir / f".{directory.name}.tmp"
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir(parents=True)
            shutil.copyfile(kernels[0], staging / "vmlinuz")
            (staging / "initrd.gz").write_bytes(initrd)
            shutil.copyfile(isolinux_bin, staging / "isolinux.bin")
            shutil.copyfile(ldlinux, staging / "ldlinux.c32")
            shutil.copyfile(
                _first_existing(root, ("usr/lib/ISOLINUX/isohdpfx.bin",), "isohdpfx.bin"),
                staging / "isohdpfx.bin",
            )
            manifest = {
                "arch": arch,
                "packages": dict(sorted(packages.items())),
                "kernel_release": release,
                "modules": [m.name for m in modules],
            }
            (staging / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
            shutil.rmtree(directory, ignore_errors=True)
            staging.rename(directory)
        loaded = _load_boot_files(directory)
        assert loaded is not None
        return loaded


def _busybox_applets(busybox: Path, arch: ProbeArch) -> list[str]:
    """busybox's applet paths (``usr/bin/[``, ``sbin/acpid``...), from the binary itself."""
    try:
        return _run([str(busybox), "--list-full"]).splitlines()
    except OSError as exc:  # ENOEXEC: a host kernel without 32-bit (IA32) emulation
        raise ProbeBuildError(
            f"cannot run the {arch} busybox to list its applets ({exc}); the host must "
            f"run {arch} binaries"
        ) from exc


# --------------------------------------------------------------------------- ISO


def _fix_times(tree: Path) -> None:
    for path in sorted(tree.rglob("*"), reverse=True):
        os.utime(path, (FIXED_EPOCH, FIXED_EPOCH), follow_symlinks=False)
    os.utime(tree, (FIXED_EPOCH, FIXED_EPOCH))


def _stage_boot_files(boot: ProbeBootFiles, tree: Path, mode: ProbeMode) -> None:
    bootdir = tree / BOOT_DIR
    bootdir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(boot.isolinux_bin, bootdir / "ISOLINUX.BIN")
    shutil.copyfile(boot.ldlinux_c32, bootdir / "LDLINUX.C32")
    shutil.copyfile(boot.kernel, bootdir / KERNEL_NAME)
    shutil.copyfile(boot.initrd, bootdir / INITRD_NAME)
    (bootdir / "ISOLINUX.CFG").write_text(isolinux_cfg(mode))


def make_iso(tree: Path, out: Path, *, label: str, hybrid_mbr: Path | None = None) -> Path:
    """Write a bootable (isolinux, El Torito no-emulation) ISO of ``tree`` with xorriso.

    Windows-CD style: ISO9660 level 2 names without ``;1`` (-N), relaxed names, no
    deep-directory relocation (-D), Joliet with long names, and no Rock Ridge.
    Byte-identical for identical input: all dates come from FIXED_EPOCH.
    """
    _fix_times(tree)
    env = dict(os.environ)
    env.pop("MKISOFSRC", None)
    env.update(SOURCE_DATE_EPOCH=str(FIXED_EPOCH), TZ="UTC", HOME=str(tree.parent))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out.with_name(f".{out.name}.tmp")
    tmp_out.unlink(missing_ok=True)
    _run(
        [
            "xorriso",
            "-as",
            "mkisofs",
            "-quiet",
            "-o",
            str(tmp_out),
            "--norock",
            "-iso-level",
            "2",
            "-N",
            "-relaxed-filenames",
            "-D",
            "-J",
            "-joliet-long",
            "-V",
            label,
            "-b",
            f"{BOOT_DIR}/ISOLINUX.BIN",
            "-c",
            f"{BOOT_DIR}/BOOT.CAT",
            "-no-emul-boot",
            "-boot-load-size",
            "4",
            "-boot-info-table",
            *(["-isohybrid-mbr", str(hybrid_mbr)] if hybrid_mbr is not None else []),
            str(tree),
        ],
        env=env,
    )
    tmp_out.replace(out)
    return out


def build_probe_iso(
    cache_dir: Path = DEFAULT_CACHE_DIR,
    *,
    mode: ProbeMode = "report",
    arch: ProbeArch = "amd64",
) -> Path:
    """The probe boot CD (label PVPROBE) of ``arch``, cached next to its boot files."""
    boot = build_probe_boot_files(cache_dir, arch=arch)
    iso = boot.directory / f"probe-{mode}.iso"
    with _locked(cache_dir):
        if iso.exists():
            return iso
        with tempfile.TemporaryDirectory(prefix="pvprobe-iso-") as tmp_name:
            tree = Path(tmp_name) / "tree"
            _stage_boot_files(boot, tree, mode)
            # The template mode copies this CD onto the system disk, which must boot.
            hybrid = boot.isohybrid_mbr if mode == "template" else None
            return make_iso(tree, iso, label=PROBE_ISO_LABEL, hybrid_mbr=hybrid)


# --------------------------------------------------------------------------- fake 2003 CD

Arch = Literal["x86", "amd64"]

# The probe a fake 2003 CD of each Windows architecture boots: a 32-bit one for x86
# (its domains are i686, without long mode), the 64-bit one for amd64.
PROBE_ARCH_FOR: Mapping[Arch, ProbeArch] = MappingProxyType({"x86": "i386", "amd64": "amd64"})


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


# "file token" pairs for [SourceDisksFiles.<arch>]: text-mode boot drivers and the
# boot-floppy token retail 2003 gives them; all go to dir id 4 (system32\drivers).
_BOOT_DRIVERS: tuple[tuple[str, str], ...] = tuple(
    (name, token)
    for name, token in (
        pair.split(":")
        for pair in _words(
            """
    atapi.sys:3_ intelide.sys:3_ pciide.sys:3_ pciidex.sys:3_ viaide.sys:3_ cmdide.sys:3_
    aliide.sys:3_ disk.sys:2_ classpnp.sys:2_ cdrom.sys:3_ cdfs.sys:3_ partmgr.sys:2_
    volsnap.sys:2_ ftdisk.sys:2_ dmio.sys:2_ dmload.sys:2_ mountmgr.sys:2_ fastfat.sys:2_
    ntfs.sys:2_ scsiport.sys:3_ storport.sys:3_ acpi.sys:2_ pci.sys:2_ isapnp.sys:2_
    sfloppy.sys:4_ flpydisk.sys:4_ fdc.sys:4_ i8042prt.sys:2_ kbdclass.sys:2_ kbdhid.sys:2_
    usbport.sys:3_ usbuhci.sys:3_ usbohci.sys:3_ usbehci.sys:3_ usbhub.sys:3_ usbstor.sys:3_
    hidclass.sys:3_ hidparse.sys:3_ hidusb.sys:3_ videoprt.sys:2_ vga.sys:2_
    """
        )
    )
)
# SCSI miniports: (service, file, description, [PCI hardware ids]).
_MINIPORTS = (
    (
        "aic78xx",
        "aic78xx.sys",
        "Adaptec AHA-294X/AHA-394X/AIC-78XX SCSI Controller",
        ["PCI\\VEN_9004&DEV_7178", "PCI\\VEN_9004&DEV_7278", "PCI\\VEN_9004&DEV_7895"],
    ),
    (
        "symmpi",
        "symmpi.sys",
        "LSI Logic PCI Fibre Channel/Ultra320 SCSI Adapter",
        ["PCI\\VEN_1000&DEV_0030", "PCI\\VEN_1000&DEV_0020", "PCI\\VEN_1000&DEV_0621"],
    ),
    (
        "megasas",
        "megasas.sys",
        "LSI Logic MegaRAID SAS RAID Controller",
        ["PCI\\VEN_1000&DEV_0411", "PCI\\VEN_1028&DEV_0015"],
    ),
    (
        "ql2300",
        "ql2300.sys",
        "QLogic Fibre Channel Adapter",
        ["PCI\\VEN_1077&DEV_2300", "PCI\\VEN_1077&DEV_2312"],
    ),
    (
        "dac2w2k",
        "dac2w2k.sys",
        "Mylex DAC960/DAC1100 PCI RAID Controller",
        ["PCI\\VEN_1069&DEV_0001", "PCI\\VEN_1069&DEV_0002"],
    ),
    (
        "cpqcissm",
        "cpqcissm.sys",
        "Smart Array 5x and 6x Controllers",
        ["PCI\\VEN_0E11&DEV_B060", "PCI\\VEN_0E11&DEV_B178"],
    ),
)
# Other [SourceDisksFiles] (not .x86/.amd64) entries: ordinary system files.
_SYSTEM_FILES = _words(
    """
    advapi32.dll atl.dll authz.dll basesrv.dll browseui.dll cabinet.dll clbcatq.dll
    comctl32.dll comdlg32.dll crypt32.dll csrsrv.dll dnsapi.dll gdi32.dll hal.dll
    halacpi.dll halaacpi.dll halmacpi.dll imagehlp.dll iphlpapi.dll kernel32.dll lsasrv.dll
    msasn1.dll msv1_0.dll msvcrt.dll netapi32.dll ntdll.dll ole32.dll oleaut32.dll
    rpcrt4.dll samlib.dll samsrv.dll secur32.dll setupapi.dll shell32.dll shlwapi.dll
    user32.dll userenv.dll version.dll winlogon.exe winsrv.dll wintrust.dll ws2_32.dll
    ws2help.dll wsock32.dll c_1252.nls c_437.nls c_850.nls l_intl.nls locale.nls sortkey.nls
    sorttbls.nls unicode.nls ctype.nls vgaoem.fon bootfont.bin ntdetect.com setupldr.bin
    txtsetup.sif dosnet.inf layout.inf hivesys.inf hivesft.inf hivedef.inf hiveusd.inf
    hivecls.inf drvindex.inf driver.cab sp2.cab netkvm.inf machine.inf mshdc.inf scsi.inf
    disk.inf cdrom.inf volume.inf keyboard.inf msmouse.inf net.inf netrtl.inf nettcpip.inf
    netrtpnt.inf display.inf usb.inf
    """
)


def _sif_lines(arch: Arch) -> list[str]:
    """A realistic-looking TXTSETUP.SIF (own text; shape per docs/windows-2003.md §3)."""
    src_dir = "\\i386" if arch == "x86" else "\\amd64"
    tag_key = "cdtagfilei" if arch == "x86" else "cdtagfilea"
    lines: list[str] = [
        "; TXTSETUP.SIF fixture for pvinstall tests (not Microsoft's file).",
        "; Generé pour les tests : structure d'un CD d'installation Windows Server 2003.",
        "",
        "[Version]",
        'Signature = "$Windows NT$"',
        "LayoutFile = layout.inf",
        "DriverVer = 03/24/2005,5.2.3790.1830",
        "",
        "[SetupData]",
        "ProductType = 1",
        f"Architecture = {arch if arch == 'amd64' else 'i386'}",
        "MajorVersion = 5",
        "MinorVersion = 2",
        "DefaultPath = \\WINDOWS",
        "LoadIdentifier = %wntlo%",
        "BaseVideoLoadId = %wntbvlo%",
        'OsLoadOptionsVar = "/fastdetect"',
        "SetupSourceDevice = \\device\\cdrom0",
        "RequiredMemory = 134217728",
        "",
        f"[SourceDisksNames.{arch}]",
        f"1 = %cdname%,%{tag_key}%,,{src_dir}",
        f"2 = %cdname%,%{tag_key}%,,{src_dir}\\lang",
        "",
        "[SourceDisksNames]",
        f"100 = %spcdname%,%{tag_key}%.sp2,,{src_dir}",
        "",
        "[WinntDirectories]",
        "1  = \\",
        "2  = system32",
        "3  = system32\\config",
        "4  = system32\\drivers",
        "5  = system",
        "7  = system32\\spool",
        "8  = system32\\spool\\drivers\\w32x86\\3",
        "9  = inf",
        "10 = help",
        "11 = fonts",
        "20 = repair",
        "",
        "; File entries: disk,subdir,size,checksum,,,bootmedia,targetdir,upgrade,",
        ";                textmode,newname,spare,spare",
        "[SourceDisksFiles]",
    ]
    for name in _SYSTEM_FILES[: len(_SYSTEM_FILES) // 2]:
        lines.append(f"{name} = 1,,,,,,,2,0,0")
    lines += ["", f"[SourceDisksFiles.{arch}]"]
    for name, token in _BOOT_DRIVERS:
        lines.append(f"{name} = 1,,,,,,{token},4,1,,,1,4")
    for _, sysfile, _, _ in _MINIPORTS:
        lines.append(f"{sysfile} = 1,,,,,,4_,4,1,,,1,4")
    lines += [
        "",
        "; A second header with the same name, as in the retail file.",
        "[SourceDisksFiles]",
    ]
    for name in _SYSTEM_FILES[len(_SYSTEM_FILES) // 2 :]:
        lines.append(f"{name} = 1,,,,,,_x,2,0,0,,1,2")
    lines += [
        "",
        "[HardwareIdsDatabase]",
        'PCI\\CC_0101 = "pciide"',
        'PCI\\VEN_8086&DEV_7010 = "intelide"',
        'PCI\\VEN_8086&DEV_7111 = "intelide"',
        'PCI\\VEN_8086&DEV_24DB = "intelide"',
        'PCI\\VEN_1106&DEV_0571 = "viaide"',
        'PCI\\VEN_1095&DEV_0646 = "cmdide"',
        'PCI\\VEN_10B9&DEV_5229 = "aliide"',
        'PCI\\CC_0604 = "pci"',
        'ACPI\\PNP0A03 = "pci"',
        'ACPI\\PNP0700 = "fdc"',
        'ACPI\\PNP0303 = "i8042prt"',
        'USB\\CLASS_09 = "usbhub"',
        'USB\\CLASS_08 = "usbstor"',
    ]
    for service, _, _, ids in _MINIPORTS:
        lines += [f'{hwid} = "{service}"' for hwid in ids]
    lines += ["", "[SCSI.Load]", "atapi = atapi.sys,4"]
    lines += [f"{service} = {sysfile},4" for service, sysfile, _, _ in _MINIPORTS]
    lines += ["", "[SCSI]"]
    lines += [f'{service} = "{desc}"' for service, _, desc, _ in _MINIPORTS]
    lines += [
        "",
        "[BusExtenders.Load]",
        "pciide = pciide.sys",
        "intelide = intelide.sys",
        "viaide = viaide.sys",
        "acpi = acpi.sys",
        "pci = pci.sys",
        "isapnp = isapnp.sys",
        "",
        "[InputDevicesSupport.Load]",
        "usbehci = usbehci.sys",
        "usbuhci = usbuhci.sys",
        "usbhub = usbhub.sys",
        "hidusb = hidusb.sys",
        "kbdhid = kbdhid.sys",
        "",
        "[Computer.Load]",
        "acpiapic_up = halaacpi.dll",
        "acpiapic_mp = halmacpi.dll",
        "acpipic_up = halacpi.dll",
        "",
        "[Computer]",
        'acpiapic_mp = "ACPI Multiprocessor PC",files.none',
        'acpiapic_up = "ACPI Uniprocessor PC",files.none',
        'acpipic_up = "Advanced Configuration and Power Interface (ACPI) PC",files.none',
        "",
        "[Display]",
        'vga = "VGA",files.none',
        "",
        "[Keyboard]",
        'STANDARD = "XT, AT, or Enhanced Keyboard (83-104 keys)",files.i8042,i8042prt',
        "",
        "[Files.i8042]",
        "i8042prt.sys,4",
        "kbdclass.sys,4",
        "",
        "[Strings]",
        'cdname = "Windows Server 2003, Enterprise Edition CD-ROM"',
        'spcdname = "Windows Server 2003 Service Pack 2 CD-ROM"',
        f'{tag_key} = "\\win51i{"s" if arch == "x86" else "a"}"',
        'wntlo = "Windows Server 2003, Enterprise"',
        'wntbvlo = "Windows Server 2003, Enterprise [VGA mode]"',
        'cpyright = "© pvinstall test fixture"',
        'fr_note = "Programme d\'installation — édition de test"',
    ]
    return lines


def fake_txtsetup_sif(arch: Arch) -> bytes:
    """TXTSETUP.SIF bytes: CRLF line ends, cp1252."""
    return ("\r\n".join(_sif_lines(arch)) + "\r\n").encode("cp1252")


def _fake_dosnet_inf(arch: Arch) -> bytes:
    src = "\\i386" if arch == "x86" else "\\amd64"
    lines = [
        "[Version]",
        'Signature = "$Windows NT$"',
        "",
        "[Miscellaneous]",
        "ProductType = 1",
        "",
        "[Directories]",
        f"d1 = {src}",
        "",
        "[Files]",
        *(f"d1,{name}" for name, _ in _BOOT_DRIVERS),
        "",
        "[FloppyFiles.1]",
        "d1,disk.sys",
        "d1,classpnp.sys",
        "d1,atapi.sys",
    ]
    return ("\r\n".join(lines) + "\r\n").encode("cp1252")


# SUPPORT/TOOLS/DEPLOY.CAB of the fake 2003 CDs: the Deployment Tools' members (Sysprep
# and what pvinstall leaves in the cabinet), deterministic bytes, in a real MSZIP
# cabinet made by gcab.
DEPLOY_CAB = "SUPPORT/TOOLS/DEPLOY.CAB"
DEPLOY_MEMBERS: Mapping[str, bytes] = MappingProxyType(
    {
        name: b"MZ fake " + name.encode() + b"\0" + hashlib.sha256(name.encode()).digest() * 64
        for name in ("sysprep.exe", "setupcl.exe", "factory.exe", "setupmgr.exe", "deploy.chm")
    }
)


def make_cabinet(members: Mapping[str, bytes], out: Path) -> bytes:
    """An MSZIP cabinet of `members` (name -> bytes) made by gcab, with fixed times so
    that the same members give the same bytes; returns them."""
    with tempfile.TemporaryDirectory(prefix="pvcab-") as folder:
        names = []
        for name, data in members.items():
            path = Path(folder) / name
            path.write_bytes(data)
            os.utime(path, (FIXED_EPOCH, FIXED_EPOCH))
            names.append(name)
        out.unlink(missing_ok=True)
        _run(["gcab", "-c", "-z", str(out.absolute()), *names], cwd=Path(folder))
    return out.read_bytes()


def fake_2003_tree(tree: Path, *, arch: Arch, deploy_cab: bool = True) -> dict[str, bytes]:
    """Write the Windows part of a fake 2003 CD into ``tree``; returns path -> bytes.
    ``deploy_cab`` False leaves out SUPPORT/TOOLS/DEPLOY.CAB (Sysprep)."""
    if arch not in ("x86", "amd64"):
        raise ValueError(f"arch must be 'x86' or 'amd64', not {arch!r}")
    setup_dir = "I386" if arch == "x86" else "AMD64"
    edition = "IS" if arch == "x86" else "AA"
    tag = b"Windows Server 2003 fake CD tag\r\n"
    files: dict[str, bytes] = {
        "WIN51": tag,
        f"WIN51{edition}": tag,
        f"WIN51{edition}.SP2": tag,
        "AUTORUN.INF": b"[autorun]\r\nopen=setup.exe\r\nicon=setup.exe,0\r\n",
        "README.HTM": b"<html><body>pvinstall fake 2003 CD</body></html>\r\n",
        f"{setup_dir}/TXTSETUP.SIF": fake_txtsetup_sif(arch),
        f"{setup_dir}/DOSNET.INF": _fake_dosnet_inf(arch),
        f"{setup_dir}/SETUPLDR.BIN": b"PVINSTALL FAKE SETUPLDR.BIN\0" + bytes(2020),
        f"{setup_dir}/NTDETECT.COM": b"PVINSTALL FAKE NTDETECT.COM\0",
        f"{setup_dir}/ATAPI.SYS": b"MZ fake atapi.sys\0",
        f"{setup_dir}/INTELIDE.SYS": b"MZ fake intelide.sys\0",
        f"{setup_dir}/DISK.SY_": b"MSCF fake cabinet for disk.sys\0",
        f"{setup_dir}/LANG/README.TXT": b"language files\r\n",
    }
    if arch == "amd64":
        # x64 media also carry an I386 folder with 32-bit (WOW64) files.
        files.update(
            {
                "I386/WKERNEL32.DL_": b"MSCF fake wow64 kernel32\0",
                "I386/WNTDLL.DL_": b"MSCF fake wow64 ntdll\0",
                "I386/WUSER32.DL_": b"MSCF fake wow64 user32\0",
                "I386/WOWREG32.EX_": b"MSCF fake wowreg32\0",
            }
        )
    for rel, data in files.items():
        path = tree / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    if deploy_cab:
        (tree / DEPLOY_CAB).parent.mkdir(parents=True, exist_ok=True)
        files[DEPLOY_CAB] = make_cabinet(DEPLOY_MEMBERS, tree / DEPLOY_CAB)
    return files


def default_2003_label(arch: Arch) -> str:
    return "ARMS_X86ENFRE" if arch == "x86" else "ARMS_X64ENFRE"


def build_fake_2003_cd(
    cache_dir: Path,
    out: Path,
    *,
    arch: Arch,
    mode: ProbeMode = "report",
    label: str | None = None,
    deploy_cab: bool = True,
) -> Path:
    """A bootable fake Windows Server 2003 install CD that boots the probe.

    Root: ISOLINUX/ (probe boot files), WIN51* tag files, AUTORUN.INF; ``I386/`` (x86)
    or ``AMD64/`` plus a small WOW ``I386/`` (amd64) with TXTSETUP.SIF, DOSNET.INF,
    SETUPLDR.BIN and a few driver placeholders. Written like a retail CD: no ``;1``,
    Joliet, no Rock Ridge (see make_iso). The probe is the i386 one for x86 (it boots
    in the i686 domains of the 32-bit profiles), the amd64 one for amd64.
    """
    if arch not in PROBE_ARCH_FOR:
        raise ValueError(f"arch must be 'x86' or 'amd64', not {arch!r}")
    boot = build_probe_boot_files(cache_dir, arch=PROBE_ARCH_FOR[arch])
    with tempfile.TemporaryDirectory(prefix="pvprobe-2003-") as tmp_name:
        tree = Path(tmp_name) / "tree"
        _stage_boot_files(boot, tree, mode)
        fake_2003_tree(tree, arch=arch, deploy_cab=deploy_cab)
        return make_iso(tree, out, label=label or default_2003_label(arch))


# --------------------------------------------------------------------------- report


@dataclass(frozen=True)
class PciDevice:
    bdf: str
    vendor: str
    device: str
    subsys_vendor: str
    subsys_device: str
    revision: str
    pci_class: str
    driver: str | None

    @property
    def ids(self) -> str:
        """``vendor:device``, e.g. ``1af4:1001``."""
        return f"{self.vendor}:{self.device}"

    @property
    def subsys(self) -> str:
        """``subsys_vendor:subsys_device``, e.g. ``1af4:0002``."""
        return f"{self.subsys_vendor}:{self.subsys_device}"


@dataclass(frozen=True)
class ProbeFile:
    path: str
    size: int
    sha256: str


@dataclass
class CdRom:
    dev: str
    media: bool = True
    label: str | None = None
    files: dict[str, ProbeFile] = field(default_factory=dict)


@dataclass(frozen=True)
class Disk:
    dev: str
    size_bytes: int
    writable: bool


@dataclass(frozen=True)
class Nic:
    name: str
    mac: str
    pci_bdf: str | None


@dataclass
class ProbeReport:
    started: bool = False
    mode: str | None = None
    kernel_release: str | None = None
    cpu_flags: tuple[str, ...] | None = None  # None: never reported
    modules_loaded: list[str] = field(default_factory=list)
    modules_failed: list[str] = field(default_factory=list)
    pci: list[PciDevice] = field(default_factory=list)
    nics: list[Nic] = field(default_factory=list)
    floppy: dict[str, ProbeFile] | None = None  # None: no floppy (or never reported)
    cdroms: dict[str, CdRom] = field(default_factory=dict)
    disks: dict[str, Disk] = field(default_factory=dict)
    template: str | None = None  # template mode: written, clone or failed
    hang: bool = False
    ended: bool = False
    unparsed: list[str] = field(default_factory=list)

    def pci_with_ids(self, vendor: str, device: str) -> list[PciDevice]:
        return [p for p in self.pci if p.vendor == vendor.lower() and p.device == device.lower()]

    def cdrom_with_label(self, label: str) -> CdRom | None:
        return next((c for c in self.cdroms.values() if c.label == label), None)


_MARK = "PVPROBE "


def _dec(field_: str) -> str:
    return unquote(field_, errors="surrogateescape")


def _file(fields: list[str]) -> ProbeFile:
    path, size, digest = fields
    if not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise ValueError(f"bad sha256 {digest!r}")
    return ProbeFile(_dec(path), int(size), digest)


def _apply(report: ProbeReport, kind: str, rest: list[str]) -> None:
    if kind == "start":
        report.started = True
        report.mode = rest[0] if rest else None
        report.kernel_release = rest[1] if len(rest) > 1 else None
    elif kind == "cpu":
        report.cpu_flags = tuple(flag for flag in rest if flag)
    elif kind == "module" and len(rest) == 2 and rest[1] in ("loaded", "failed"):
        (report.modules_loaded if rest[1] == "loaded" else report.modules_failed).append(rest[0])
    elif kind == "pci" and len(rest) in (7, 8):
        driver = rest[7] if len(rest) == 8 and rest[7] != "-" else None
        bdf, vendor, device, svendor, sdevice, revision, pci_class = (v.lower() for v in rest[:7])
        report.pci.append(
            PciDevice(bdf, vendor, device, svendor, sdevice, revision, pci_class, driver)
        )
    elif kind == "net" and len(rest) == 3:
        report.nics.append(Nic(rest[0], rest[1].lower(), None if rest[2] == "-" else rest[2]))
    elif kind == "floppy" and rest == ["none"]:
        report.floppy = None
    elif kind == "floppy" and len(rest) == 3:
        f = _file(rest)
        if report.floppy is None:
            report.floppy = {}
        report.floppy[f.path] = f
    elif kind == "cdrom" and len(rest) >= 2:
        cd = report.cdroms.setdefault(rest[0], CdRom(rest[0]))
        if rest[1] == "nomedia" and len(rest) == 2:
            cd.media = False
        elif rest[1] == "label" and len(rest) in (2, 3):
            cd.label = _dec(rest[2]) if len(rest) == 3 else ""
        elif rest[1] == "file" and len(rest) == 5:
            f = _file(rest[2:])
            cd.files[f.path] = f
        else:
            raise ValueError("bad cdrom line")
    elif kind == "disk" and len(rest) == 4 and rest[2] == "writable" and rest[3] in ("yes", "no"):
        report.disks[rest[0]] = Disk(rest[0], int(rest[1]), rest[3] == "yes")
    elif kind == "template" and len(rest) == 1 and rest[0] in ("written", "clone", "failed"):
        report.template = rest[0]
    elif kind == "hang" and not rest:
        report.hang = True
    elif kind == "end" and not rest:
        report.ended = True
    else:
        raise ValueError("unknown line")


def parse_probe_log(log: str | bytes) -> ProbeReport:
    """Parse a probe serial log into a ProbeReport.

    Tolerates CR/LF line ends and kernel noise before ``PVPROBE`` on a line. Lines
    that look like probe lines but do not parse end up in ``unparsed``.
    """
    text = log.decode("utf-8", errors="replace") if isinstance(log, bytes) else log
    report = ProbeReport()
    for raw in text.replace("\r", "\n").split("\n"):
        pos = raw.find(_MARK)
        if pos < 0:
            continue
        line = raw[pos + len(_MARK) :].strip()
        kind, *rest = line.split(" ") if line else [""]
        try:
            _apply(report, kind, rest)
        except (ValueError, IndexError, TypeError):
            report.unparsed.append(raw[pos:])
    return report
