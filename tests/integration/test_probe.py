"""The boot probe itself: build it, boot it through qemu:///system, read its report.

These tests pin down what later pvinstall boot tests rely on: the probe boots under
TCG from an IDE CD, sees transitional virtio devices with the IDs the Windows 2003
drivers match, reads the floppy and the CD, writes to the disk, and powers off so
that libvirt records a clean SHUTDOWN. Both probes: the amd64 one in an x86_64
domain, the i386 one in an i686 domain shaped like pvinstall's 32-bit profiles
(machine pc, no <cpu>, so QEMU's qemu32 CPU without long mode).
"""

from __future__ import annotations

import hashlib
import io
import struct
import subprocess
import time
from pathlib import Path

import pytest

from tests.integration import probe
from tests.integration.libvirt_env import boot_domain, qemu_system_uri, unique_domain_name

BOOT_TIMEOUT = 180.0
# Probe architecture -> the libvirt guest architecture it is booted in here.
GUEST_ARCH: dict[probe.ProbeArch, str] = {"amd64": "x86_64", "i386": "i686"}
# Debian kernel flavour (the release's suffix) of each probe.
KERNEL_FLAVOUR: dict[probe.ProbeArch, str] = {"amd64": "-amd64", "i386": "-686"}
DISK_BYTES = 64 * 1024 * 1024
NIC_MAC = "52:54:00:70:76:01"

# Transitional virtio PCI ids (what the 2003 viostor/netkvm INFs match).
VIRTIO_BLK = ("1af4", "1001", "1af4", "0002")
VIRTIO_NET = ("1af4", "1000", "1af4", "0001")


@pytest.fixture(scope="session")
def uri() -> str:
    return qemu_system_uri()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_floppy(path: Path, files: dict[str, bytes]) -> Path:
    """A 1.44 MB FAT12 image with ``files`` (paths use '/'), made with mtools."""
    subprocess.run(
        ["mformat", "-C", "-f", "1440", "-v", "PVFLOPPY", "-N", "0badcafe", "-i", str(path), "::"],
        check=True,
        capture_output=True,
    )
    staging = path.parent / f"{path.name}.files"
    made_dirs: set[str] = set()
    for rel, data in sorted(files.items()):
        parts = rel.split("/")
        for depth in range(1, len(parts)):
            d = "/".join(parts[:depth])
            if d not in made_dirs:
                subprocess.run(["mmd", "-i", str(path), f"::/{d}"], check=True, capture_output=True)
                made_dirs.add(d)
        src = staging / rel
        src.parent.mkdir(parents=True, exist_ok=True)
        src.write_bytes(data)
        subprocess.run(
            ["mcopy", "-i", str(path), str(src), f"::/{rel}"], check=True, capture_output=True
        )
    return path


def probe_domain_xml(
    name: str,
    *,
    cdrom: Path,
    serial: Path,
    floppy: Path | None = None,
    disk: Path | None = None,
    with_nic: bool = False,
    arch: str = "x86_64",
) -> str:
    """A TCG domain that boots ``cdrom`` (machine pc, no <cpu>, serial to a file).

    ``arch='i686'`` makes it 32-bit the way pvinstall's x86 profiles do: without a
    <cpu> element QEMU gives the qemu32 CPU, which has no long mode.
    """
    devices = [
        f"""<disk type='file' device='cdrom'>
      <driver name='qemu' type='raw'/>
      <source file='{cdrom}'/>
      <target dev='hdc' bus='ide'/>
      <readonly/>
    </disk>"""
    ]
    if floppy is not None:
        devices.append(f"""<disk type='file' device='floppy'>
      <driver name='qemu' type='raw'/>
      <source file='{floppy}'/>
      <target dev='fda' bus='fdc'/>
    </disk>""")
    if disk is not None:
        devices.append(f"""<disk type='file' device='disk' model='virtio-transitional'>
      <driver name='qemu' type='qcow2'/>
      <source file='{disk}'/>
      <target dev='vda' bus='virtio'/>
    </disk>""")
    if with_nic:
        devices.append(f"""<interface type='user'>
      <mac address='{NIC_MAC}'/>
      <model type='virtio-transitional'/>
    </interface>""")
    devices.append(f"""<serial type='file'>
      <source path='{serial}'/>
      <target port='0'/>
    </serial>""")
    devices.append("<memballoon model='none'/>")
    body = "\n    ".join(devices)
    return f"""<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>512</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='{arch}' machine='pc'>hvm</type>
    <boot dev='cdrom'/>
  </os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    {body}
  </devices>
</domain>
"""


def assert_guest_cpu(report: probe.ProbeReport, arch: probe.ProbeArch) -> None:
    """The probe of ``arch`` ran, in a guest with long mode only for amd64."""
    boot = probe.build_probe_boot_files(probe.DEFAULT_CACHE_DIR, arch=arch)
    assert report.kernel_release == boot.kernel_release
    assert boot.kernel_release.endswith(KERNEL_FLAVOUR[arch]), boot.kernel_release
    assert report.cpu_flags is not None
    assert ("lm" in report.cpu_flags) == (arch == "amd64"), report.cpu_flags


@pytest.mark.integration
@pytest.mark.boot
@pytest.mark.parametrize("arch", probe.PROBE_ARCHES)
def test_probe_boots_and_reports_devices(uri: str, tmp_path: Path, arch: probe.ProbeArch) -> None:
    start = time.monotonic()
    iso = probe.build_probe_iso(probe.DEFAULT_CACHE_DIR, arch=arch)
    print(f"{arch} probe ISO ready in {time.monotonic() - start:.1f}s: {iso}")
    floppy_files = {
        "TXTSETUP.OEM": b'[Disks]\r\nd1 = "pvinstall test",\\DISK1,\\\r\n',
        "DISK1": b"",
        "I386/VIOSTOR.SYS": bytes(range(256)) * 40,
        "Read Me 100%.txt": b"spaces and a percent sign\n",
    }
    floppy = make_floppy(tmp_path / "floppy.img", floppy_files)
    disk = tmp_path / "disk.qcow2"
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", str(disk), str(DISK_BYTES)], check=True
    )
    serial = tmp_path / "serial.log"
    xml = probe_domain_xml(
        unique_domain_name("pvprobe"),
        cdrom=iso,
        serial=serial,
        floppy=floppy,
        disk=disk,
        with_nic=True,
        arch=GUEST_ARCH[arch],
    )

    result = boot_domain(xml, uri=uri, timeout=BOOT_TIMEOUT)
    print(f"{arch} probe boot in {GUEST_ARCH[arch]}: {result.seconds:.1f}s, {result.reason_name}")
    report = probe.parse_probe_log(result.serial_log)

    assert result.clean_shutdown, result.describe()
    assert report.started and report.ended, result.describe()
    assert not report.unparsed, report.unparsed
    assert report.mode == "report"
    assert not report.modules_failed, report.modules_failed
    assert_guest_cpu(report, arch)

    blk = report.pci_with_ids("1af4", "1001")
    assert len(blk) == 1, report.pci
    assert (blk[0].vendor, blk[0].device, blk[0].subsys_vendor, blk[0].subsys_device) == VIRTIO_BLK
    assert blk[0].pci_class == "010000"
    assert blk[0].driver == "virtio-pci"
    net = report.pci_with_ids("1af4", "1000")
    assert len(net) == 1, report.pci
    assert (net[0].vendor, net[0].device, net[0].subsys_vendor, net[0].subsys_device) == VIRTIO_NET
    assert net[0].driver == "virtio-pci"
    assert [(n.mac, n.pci_bdf) for n in report.nics] == [(NIC_MAC, net[0].bdf)]

    assert report.floppy is not None, result.describe()
    assert {p: (f.size, f.sha256) for p, f in report.floppy.items()} == {
        p: (len(d), _sha256(d)) for p, d in floppy_files.items()
    }

    cd = report.cdrom_with_label(probe.PROBE_ISO_LABEL)
    assert cd is not None, report.cdroms
    kernel = probe.build_probe_boot_files(probe.DEFAULT_CACHE_DIR, arch=arch).kernel.read_bytes()
    krn = cd.files[f"{probe.BOOT_DIR}/{probe.KERNEL_NAME}"]
    assert (krn.size, krn.sha256) == (len(kernel), _sha256(kernel))

    assert set(report.disks) == {"vda"}
    assert report.disks["vda"].size_bytes == DISK_BYTES
    assert report.disks["vda"].writable
    assert result.seconds < BOOT_TIMEOUT


@pytest.mark.integration
@pytest.mark.boot
@pytest.mark.parametrize("arch", ["x86", "amd64"])
def test_fake_2003_cd_boots_and_shows_setup_tree(
    uri: str, tmp_path: Path, arch: probe.Arch
) -> None:
    """The x86 CD boots the i386 probe in an i686 guest, the amd64 CD the amd64 probe in
    an x86_64 one; either shows its whole Windows tree, byte for byte."""
    iso = probe.build_fake_2003_cd(probe.DEFAULT_CACHE_DIR, tmp_path / "w2k3.iso", arch=arch)
    probe_arch = probe.PROBE_ARCH_FOR[arch]
    serial = tmp_path / "serial.log"
    xml = probe_domain_xml(
        unique_domain_name("pvfake2003"), cdrom=iso, serial=serial, arch=GUEST_ARCH[probe_arch]
    )

    result = boot_domain(xml, uri=uri, timeout=BOOT_TIMEOUT)
    print(
        f"fake 2003 {arch} boot in {GUEST_ARCH[probe_arch]}: "
        f"{result.seconds:.1f}s, {result.reason_name}"
    )
    report = probe.parse_probe_log(result.serial_log)

    assert result.clean_shutdown, result.describe()
    assert report.ended, result.describe()
    assert_guest_cpu(report, probe_arch)
    cd = report.cdrom_with_label(probe.default_2003_label(arch))
    assert cd is not None, report.cdroms
    setup_dir = "I386" if arch == "x86" else "AMD64"
    sif = probe.fake_txtsetup_sif(arch)
    assert cd.files[f"{setup_dir}/TXTSETUP.SIF"].sha256 == _sha256(sif)
    assert f"{setup_dir}/SETUPLDR.BIN" in cd.files
    expected = probe.fake_2003_tree(tmp_path / "tree", arch=arch)
    seen = {p: (f.size, f.sha256) for p, f in cd.files.items()}
    assert {p: seen.get(p) for p in expected} == {
        p: (len(d), _sha256(d)) for p, d in expected.items()
    }
    assert {p for p in seen if not p.startswith(f"{probe.BOOT_DIR}/")} == set(expected)
    if arch == "amd64":
        assert any(p.startswith("I386/") for p in cd.files), sorted(cd.files)
    # No Rock Ridge, so Linux shows the Joliet names exactly as written.
    assert "WIN51" in cd.files


# ----------------------------------------------------------------- no boot needed


def _boot_image_info(data: bytes) -> tuple[int, int, int, int, int]:
    """(boot image LBA, table bi_file, bi_length, bi_csum, computed checksum)."""
    brvd = data[17 * 2048 : 18 * 2048]
    assert brvd[0] == 0 and brvd[1:6] == b"CD001"
    (catalog,) = struct.unpack_from("<I", brvd, 0x47)
    (lba,) = struct.unpack_from("<I", data, catalog * 2048 + 32 + 8)
    _pvd, bi_file, bi_len, bi_csum = struct.unpack_from("<IIII", data, lba * 2048 + 8)
    blob = data[lba * 2048 : lba * 2048 + bi_len]
    words = struct.unpack_from(f"<{(bi_len - 64) // 4}I", blob, 64)
    return lba, bi_file, bi_len, bi_csum, sum(words) & 0xFFFFFFFF


@pytest.mark.integration
def test_fake_2003_cd_is_deterministic_and_windows_shaped(tmp_path: Path) -> None:
    a = probe.build_fake_2003_cd(probe.DEFAULT_CACHE_DIR, tmp_path / "a.iso", arch="x86")
    b = probe.build_fake_2003_cd(probe.DEFAULT_CACHE_DIR, tmp_path / "b.iso", arch="x86")
    data = a.read_bytes()
    assert data == b.read_bytes()
    info = subprocess.run(
        ["xorriso", "-indev", str(a), "-report_el_torito", "plain", "-toc"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "ARMS_X86ENFRE" in info
    pvd_files = subprocess.run(
        ["xorriso", "-indev", str(a), "-rockridge", "off", "-lsd", "/I386/*"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "TXTSETUP.SIF" in pvd_files and ";1" not in pvd_files
    lba, bi_file, _len, bi_csum, computed = _boot_image_info(data)
    assert (bi_file, bi_csum) == (lba, computed)


@pytest.mark.integration
def test_pycdlib_remaster_rewrites_isolinux_boot_info_table(tmp_path: Path) -> None:
    """pycdlib 1.22 moves the boot image but patches the table (image must be visible)."""
    pycdlib = pytest.importorskip("pycdlib")
    src = probe.build_fake_2003_cd(probe.DEFAULT_CACHE_DIR, tmp_path / "src.iso", arch="x86")
    iso = pycdlib.PyCdlib()
    iso.open(str(src))
    payload = b"fake viostor\0" * 4000
    iso.add_fp(
        io.BytesIO(payload),
        len(payload),
        iso_path="/I386/VIOSTOR.SYS",
        joliet_path="/I386/viostor.sys",
    )
    out = tmp_path / "remastered.iso"
    iso.write(str(out))
    iso.close()
    before = _boot_image_info(src.read_bytes())
    after = _boot_image_info(out.read_bytes())
    assert after[0] != before[0], "expected the boot image to move"
    lba, bi_file, bi_len, bi_csum, computed = after
    assert (bi_file, bi_len, bi_csum, computed) == (lba, before[2], before[3], before[3])


def test_parse_probe_log_tolerates_noise_and_decodes_paths() -> None:
    log = (
        "SeaBIOS\r\n[    1.0] Run /init\r\n"
        "PVPROBE start report 6.1.0-56-amd64\r\n"
        "PVPROBE cpu fpu pae cx8 cmov sse2\r\n"
        "[    2.5] virtio_blk virtio0: 1/0/0 PVPROBE pci 0000:00:03.0 1AF4 1001 1af4 0002 00 "
        "010000 virtio-pci\r\n"
        "PVPROBE module floppy failed\r\n"
        "PVPROBE floppy none\r\n"
        "PVPROBE cdrom sr0 label ARMS_X86ENFRE\r\n"
        f"PVPROBE cdrom sr0 file I386/Read%20Me%2525.txt 3 {'a' * 64}\r\n"
        "PVPROBE cdrom sr1 nomedia\r\n"
        "PVPROBE disk vda 1073741824 writable no\r\n"
        "PVPROBE bogus line\r\n"
        "PVPROBE end\r\n"
    )
    report = probe.parse_probe_log(log.encode())
    assert report.started and report.ended and not report.hang
    assert report.cpu_flags == ("fpu", "pae", "cx8", "cmov", "sse2")
    assert report.pci[0].ids == "1af4:1001" and report.pci[0].driver == "virtio-pci"
    assert report.modules_failed == ["floppy"]
    assert report.floppy is None
    assert report.cdroms["sr0"].files["I386/Read Me%25.txt"].size == 3
    assert not report.cdroms["sr1"].media
    assert report.disks["vda"] == probe.Disk("vda", 1 << 30, False)
    assert report.unparsed == ["PVPROBE bogus line"]


@pytest.mark.integration
def test_i386_probe_is_a_686_kernel_with_elf32_modules() -> None:
    """The i386 boot files: their own cache entry, a -686 kernel from i386 packages, and
    every module resolved through the ELF32 .modinfo reader."""
    i386 = probe.build_probe_boot_files(probe.DEFAULT_CACHE_DIR, arch="i386")
    amd64 = probe.build_probe_boot_files(probe.DEFAULT_CACHE_DIR, arch="amd64")
    assert i386.directory != amd64.directory
    assert (i386.arch, amd64.arch) == ("i386", "amd64")
    assert i386.kernel_release.endswith("-686"), i386.kernel_release
    assert amd64.kernel_release.endswith("-amd64"), amd64.kernel_release
    assert f"linux-image-{i386.kernel_release}:i386" in i386.packages
    assert "busybox-static:i386" in i386.packages
    assert {"isolinux", "syslinux-common"} <= set(i386.packages)
    # bzImage: "HdrS" at 0x202; bit 0 of xloadflags (0x236) is "has a 64-bit entry point".
    kernel = i386.kernel.read_bytes()
    assert kernel[0x202:0x206] == b"HdrS"
    assert not kernel[0x236] & 1
    assert amd64.kernel.read_bytes()[0x236] & 1
    assert {"virtio_pci", "virtio_blk", "virtio_net", "isofs", "sr_mod"} <= set(i386.modules)


def _elf_with_modinfo(elf_class: int, modinfo: bytes) -> bytes:
    """A minimal little-endian ELF (1 = 32-bit, 2 = 64-bit): null, .shstrtab, .modinfo."""
    wide = elf_class == 2
    ehsize, shentsize = (64, 64) if wide else (52, 40)
    shstrtab = b"\0.shstrtab\0.modinfo\0"
    data = shstrtab + modinfo
    shoff = ehsize + len(data)
    ident = b"\x7fELF" + bytes([elf_class, 1, 1]) + bytes(9)
    word = "Q" if wide else "I"
    # e_type, e_machine, e_version, e_entry, e_phoff, e_shoff, e_flags, e_ehsize,
    # e_phentsize, e_phnum, e_shentsize, e_shnum, e_shstrndx
    fields = (1, 62 if wide else 3, 1, 0, 0, shoff, 0, ehsize, 0, 0, shentsize, 3, 1)
    header = ident + struct.pack(f"<HHI{word}{word}{word}IHHHHHH", *fields)
    assert len(header) == ehsize

    def section(name: int, offset: int, size: int) -> bytes:
        # sh_name, sh_type, sh_flags, sh_addr, sh_offset, sh_size, link, info, align, entsize
        fmt = f"<II{word}{word}{word}{word}II{word}{word}"
        return struct.pack(fmt, name, 1 if size else 0, 0, 0, offset, size, 0, 0, 1, 0)

    sections = (
        section(0, 0, 0)
        + section(1, ehsize, len(shstrtab))
        + section(11, ehsize + len(shstrtab), len(modinfo))
    )
    return header + data + sections


@pytest.mark.parametrize("elf_class", [1, 2])
def test_modinfo_reads_elf32_and_elf64_modules(elf_class: int) -> None:
    ko = _elf_with_modinfo(elf_class, b"license=GPL\0depends=virtio,virtio_ring\0depends=\0")
    info = probe.modinfo(ko)
    assert info == {"license": ["GPL"], "depends": ["virtio,virtio_ring", ""]}
    with pytest.raises(probe.ProbeBuildError):
        probe.modinfo(ko[:4] + b"\x03" + ko[5:])


def test_deb_file_names_map_to_apt_names() -> None:
    native = probe.native_arch()
    foreign = "i386" if native != "i386" else "amd64"
    deb = probe._deb_package_name
    assert deb(Path(f"busybox-static_1%3a1.35.0-4_{foreign}.deb")) == f"busybox-static:{foreign}"
    assert deb(Path(f"linux-image-amd64_6.1.1-1_{native}.deb")) == "linux-image-amd64"
    assert deb(Path("isolinux_3%3a6.04-3_all.deb")) == "isolinux"


def test_fake_txtsetup_sif_shape() -> None:
    for arch in ("x86", "amd64"):
        raw = probe.fake_txtsetup_sif(arch)
        assert raw.count(b"\r\n") == raw.count(b"\n")
        text = raw.decode("cp1252")
        assert 'Signature = "$Windows NT$"' in text
        src = "\\i386" if arch == "x86" else "\\amd64"
        assert f"[SourceDisksNames.{arch}]\r\n1 = %cdname%," in text
        assert f",,{src}\r\n" in text
        assert text.count("[SourceDisksFiles]\r\n") == 2
        assert f"[SourceDisksFiles.{arch}]" in text
        assert "atapi.sys = 1,,,,,,3_,4,1,,,1,4\r\n" in text
        assert "[SCSI.Load]\r\natapi = atapi.sys,4\r\n" in text
        assert 'PCI\\VEN_8086&DEV_7010 = "intelide"' in text
        assert 200 <= len(text.splitlines()) <= 600, len(text.splitlines())
