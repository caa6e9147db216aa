"""The boot probe itself: build it, boot it through qemu:///system, read its report.

These tests pin down what later pvinstall boot tests rely on: the probe boots under
TCG from an IDE CD, sees transitional virtio devices with the IDs the Windows 2003
drivers match, reads the floppy and the CD, writes to the disk, and powers off so
that libvirt records a clean SHUTDOWN.
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
DISK_BYTES = 64 * 1024 * 1024
NIC_MAC = "52:54:00:70:76:01"

# Transitional virtio PCI ids (what the 2003 viostor/netkvm INFs match).
VIRTIO_BLK = ("1af4", "1001", "1af4", "0002")
VIRTIO_NET = ("1af4", "1000", "1af4", "0001")


@pytest.fixture(scope="session")
def libvirt_uri() -> str:
    return qemu_system_uri()


@pytest.fixture(scope="session")
def probe_iso() -> Path:
    start = time.monotonic()
    iso = probe.build_probe_iso(probe.DEFAULT_CACHE_DIR)
    print(f"probe ISO ready in {time.monotonic() - start:.1f}s: {iso}")
    return iso


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
) -> str:
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
    <type arch='x86_64' machine='pc'>hvm</type>
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


@pytest.mark.integration
@pytest.mark.boot
def test_probe_boots_and_reports_devices(libvirt_uri: str, probe_iso: Path, tmp_path: Path) -> None:
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
        cdrom=probe_iso,
        serial=serial,
        floppy=floppy,
        disk=disk,
        with_nic=True,
    )

    result = boot_domain(xml, uri=libvirt_uri, timeout=BOOT_TIMEOUT)
    print(f"probe boot: {result.seconds:.1f}s, {result.reason_name}")
    report = probe.parse_probe_log(result.serial_log)

    assert result.clean_shutdown, result.describe()
    assert report.ended, result.describe()
    assert not report.unparsed, report.unparsed
    assert report.mode == "report"

    blk = report.pci_with_ids("1af4", "1001")
    assert len(blk) == 1, report.pci
    assert (blk[0].vendor, blk[0].device, blk[0].subsys_vendor, blk[0].subsys_device) == VIRTIO_BLK
    assert blk[0].pci_class == "010000"
    net = report.pci_with_ids("1af4", "1000")
    assert len(net) == 1, report.pci
    assert (net[0].vendor, net[0].device, net[0].subsys_vendor, net[0].subsys_device) == VIRTIO_NET
    assert [(n.mac, n.pci_bdf) for n in report.nics] == [(NIC_MAC, net[0].bdf)]

    assert report.floppy is not None, result.describe()
    assert {p: (f.size, f.sha256) for p, f in report.floppy.items()} == {
        p: (len(d), _sha256(d)) for p, d in floppy_files.items()
    }

    cd = report.cdrom_with_label(probe.PROBE_ISO_LABEL)
    assert cd is not None, report.cdroms
    kernel = probe.build_probe_boot_files(probe.DEFAULT_CACHE_DIR).kernel.read_bytes()
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
    libvirt_uri: str, probe_iso: Path, tmp_path: Path, arch: probe.Arch
) -> None:
    iso = probe.build_fake_2003_cd(probe.DEFAULT_CACHE_DIR, tmp_path / "w2k3.iso", arch=arch)
    serial = tmp_path / "serial.log"
    xml = probe_domain_xml(unique_domain_name("pvfake2003"), cdrom=iso, serial=serial)

    result = boot_domain(xml, uri=libvirt_uri, timeout=BOOT_TIMEOUT)
    print(f"fake 2003 {arch} boot: {result.seconds:.1f}s, {result.reason_name}")
    report = probe.parse_probe_log(result.serial_log)

    assert result.clean_shutdown, result.describe()
    assert report.ended, result.describe()
    cd = report.cdrom_with_label(probe.default_2003_label(arch))
    assert cd is not None, report.cdroms
    setup_dir = "I386" if arch == "x86" else "AMD64"
    sif = probe.fake_txtsetup_sif(arch)
    assert cd.files[f"{setup_dir}/TXTSETUP.SIF"].sha256 == _sha256(sif)
    assert f"{setup_dir}/SETUPLDR.BIN" in cd.files
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
    assert report.pci[0].ids == "1af4:1001" and report.pci[0].driver == "virtio-pci"
    assert report.modules_failed == ["floppy"]
    assert report.floppy is None
    assert report.cdroms["sr0"].files["I386/Read Me%25.txt"].size == 3
    assert not report.cdroms["sr1"].media
    assert report.disks["vda"] == probe.Disk("vda", 1 << 30, False)
    assert report.unparsed == ["PVPROBE bogus line"]


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
