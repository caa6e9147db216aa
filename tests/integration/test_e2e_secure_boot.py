"""End to end for Windows Server 2012 R2 to 2025: `pvinstall build P --install` on the real
libvirtd (TCG), with the Secure Boot probe (tests/integration/sbprobe.py) standing in for
Windows Setup on a fake DVD of the release (tests/fixtures/windows_dvd.py).

The fake DVD is shaped like Microsoft's: its UEFI entry loads efisys.bin, here an
unsigned EFI binary (an unsigned grub), and efisys_noprompt.bin beside it is the signed
chain (shim, Debian's grub, the signed kernel). pvinstall's domain boots the DVD through
its overlay, whose catalog points at efisys_noprompt.bin, so the probe boots only if the
overlay works and Secure Boot accepts the chain; the negative test boots the same domain
with the DVD as it is, and OVMF refuses efisys.bin.

What the probe reports is held against the profile row and pvinstall's manifest by this
file's own rules: Secure Boot (SecureBoot 1, SetupMode 0, lockdown refusing an unsigned
module) as the row says, a TPM 2.0 on the CRB interface, POPCNT and SSE4.2, every virtio
device modern and bound by the selected driver's INF (Windows' hardware-ID rules), the
guest agent's port, the answer ISO's files on a SATA drive as the manifest lists them,
no floppy, the disk's discard granularity. One boot per profile.
"""

from __future__ import annotations

import json
import re
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

from builder import cli
from builder.vm import virt
from builder.windows.profiles import PROFILES
from tests.fixtures.domain_xml import removable_media
from tests.fixtures.virtio_win import PROFILE_OS_FOLDERS, make_iso, write_modern_tree
from tests.fixtures.windows_dvd import WindowsDvd, dvd_for
from tests.integration import probe, sbprobe
from tests.integration.libvirt_env import SECURE_BOOT_REFUSALS, boot_domain, unique_domain_name
from tests.integration.test_e2e_probe import manifest_files

pytestmark = [pytest.mark.integration, pytest.mark.boot]

PASSWORD = "e2e-Passw0rd"
RELEASE = {
    "win2012r2-x64": "2012R2",
    "win2016-x64": "2016",
    "win2019-x64": "2019",
    "win2022-x64": "2022",
    "win2025-x64": "2025",
}
MODERN = [name for name, p in PROFILES.items() if p.reads_install_image]
VIRTIO_VENDOR = "1af4"
# PCI class of the guest's virtio device -> the driver whose INF must bind it.
CLASS_DRIVER = {"0100": "viostor", "0200": "NetKVM", "0780": "vioserial"}
ANSI = re.compile(r"\x1b\[[0-9;=?]*[A-Za-z]")


@pytest.fixture(scope="module")
def sb() -> sbprobe.SbProbe:
    return sbprobe.build_sb_probe()


@pytest.fixture(scope="module")
def virtio_win_iso(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("vw")
    tree = write_modern_tree(base / "tree", oses=PROFILE_OS_FOLDERS)
    return make_iso(tree, base / "virtio-win.iso").path


def probe_dvd(sb: sbprobe.SbProbe, profile: str) -> WindowsDvd:
    return dvd_for(
        RELEASE[profile],
        efisys_image=str(sb.esp_unsigned),
        noprompt_image=str(sb.esp),
        visible_tree=str(sb.disc_tree),
    )


@pytest.fixture
def name(uri: str) -> Iterator[str]:
    value = unique_domain_name("pvt-i16-sb")
    yield value
    with virt.connect(uri) as conn:
        virt.remove_domain(conn, value)


def windows_hardware_ids(dev: probe.PciDevice) -> set[str]:
    """The hardware IDs Windows' PCI bus driver reports for a device (MS docs,
    "Identifiers for PCI Devices"), upper-case."""
    base = f"PCI\\VEN_{dev.vendor.upper()}&DEV_{dev.device.upper()}"
    subsys = f"{dev.subsys_device.upper()}{dev.subsys_vendor.upper()}"
    rev = dev.revision.upper()
    return {
        f"{base}&SUBSYS_{subsys}&REV_{rev}",
        f"{base}&SUBSYS_{subsys}",
        f"{base}&REV_{rev}",
        base,
    }


def by_path(files: dict[str, probe.ProbeFile]) -> dict[str, str]:
    return {path.upper(): f.sha256 for path, f in files.items()}


def build_args(profile: str, vw: Path, dvd: Path, out: Path, name: str, uri: str) -> list[str]:
    return [
        "build",
        profile,
        "--drivers",
        str(vw),
        "--windows-iso",
        str(dvd),
        "--out",
        str(out),
        "--name",
        name,
        "--connect",
        uri,
        "--domain-type",
        "qemu",
        "--set",
        "network=user",
        "--json",
    ]


@pytest.mark.parametrize("profile", MODERN)
def test_install_boots_the_profile_s_domain_with_secure_boot_tpm_and_its_devices(
    uri: str,
    sb: sbprobe.SbProbe,
    virtio_win_iso: Path,
    name: str,
    tmp_path: Path,
    profile: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PVINSTALL_ADMIN_PASSWORD", PASSWORD)
    row = PROFILES[profile]
    out = tmp_path / "out"
    dvd = probe_dvd(sb, profile)
    args = build_args(profile, virtio_win_iso, dvd.path, out, name, uri)
    code = cli.main([*args, "--install", "--timeout", "5"])
    captured = capsys.readouterr()
    log = (out / "serial.log").read_text(errors="replace") if (out / "serial.log").exists() else ""
    assert code == 0, f"{captured.err}\n--- serial ---\n{ANSI.sub('', log)[-3000:]}"
    manifest = json.loads(captured.out)
    record = manifest["domain"]
    assert record["installed"] is True and record["shutoff_reason"] == "shutdown"
    with virt.connect(uri) as conn:
        assert removable_media(virt.inactive_xml(conn, name)) == ()

    report = sbprobe.parse_sb_report(log)
    base = report.base
    assert base.started and base.ended, ANSI.sub("", log)[-3000:]
    assert not report.unparsed, report.unparsed

    # The firmware: UEFI, with Secure Boot enforced where the row says so.
    assert report.efi is True
    assert report.secure_boot == row.secure_boot, report.efivars
    if row.secure_boot:
        assert report.lockdown is not None and "[integrity]" in report.lockdown
        assert report.unsigned_module == "rejected"
    # A TPM 2.0 on the CRB interface (ACPI MSFT0101) where the row has one.
    assert report.tpms == ([("tpm0", "2", "tpm_crb", "MSFT0101")] if row.tpm else [])
    # The CPU has what 2025 needs.
    assert base.cpu_flags is not None
    assert {"popcnt", "sse4_2", "sse4_1", "ssse3", "cx16", "lahf_lm"} <= set(base.cpu_flags)

    # Every virtio device is modern and bound by the INF of the driver pvinstall chose.
    selected = {d["name"]: d for d in manifest["drivers"]["selected"]}
    virtio = [p for p in base.pci if p.vendor == VIRTIO_VENDOR]
    assert sorted(p.pci_class[:4] for p in virtio) == ["0100", "0200", "0780"], virtio
    for dev in virtio:
        assert dev.device.startswith("104") and dev.revision == "01", dev
        assert dev.subsys == "1af4:1100", dev
        driver = selected[CLASS_DRIVER[dev.pci_class[:4]]]
        listed = {h.upper() for h in driver["hardware_ids"]}
        assert listed & windows_hardware_ids(dev), (dev, driver["hardware_ids"])
    assert "org.qemu.guest_agent.0" in report.vports.values()

    # The answer ISO and the drivers ISO on SATA, holding exactly the manifest's files;
    # the system disk on virtio, writable, trimmed at 64 KiB; no floppy anywhere.
    answer = base.cdrom_with_label("PVANSWER")
    assert answer is not None
    assert by_path(answer.files) == manifest_files(manifest, "answer.iso", out)
    assert report.blocks[answer.dev].transport == "sata"
    drivers_cd = base.cdrom_with_label(manifest["settings"]["drivers_iso_label"])
    assert drivers_cd is not None and report.blocks[drivers_cd.dev].transport == "sata"
    assert by_path(drivers_cd.files) == manifest_files(manifest, "drivers.iso", out)
    assert report.blocks["vda"].transport == "virtio-blk"
    assert report.blocks["vda"].discard_granularity == row.discard_granularity
    assert base.disks["vda"].writable
    assert base.floppy is None and not report.floppy_present


def test_an_unsigned_efi_binary_is_refused_in_the_same_domain(
    uri: str,
    sb: sbprobe.SbProbe,
    virtio_win_iso: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The 2025 domain pvinstall writes, with the DVD as it is in place of its overlay:
    OVMF boots the DVD's own UEFI entry, efisys.bin (an unsigned grub), and refuses it.
    The test waits for OVMF's refusal, 90 s at most under TCG, and says so."""
    monkeypatch.setenv("PVINSTALL_ADMIN_PASSWORD", PASSWORD)
    out = tmp_path / "out"
    dvd = probe_dvd(sb, "win2025-x64")
    name = unique_domain_name("pvt-i16-unsigned")
    code = cli.main(build_args("win2025-x64", virtio_win_iso, dvd.path, out, name, uri))
    captured = capsys.readouterr()
    assert code == 0, captured.err
    root = ET.fromstring((out / "domain.xml").read_text())  # our own file
    (cdrom,) = (
        d for d in root.iterfind("./devices/disk") if d.find("boot[@order='2']") is not None
    )
    source, driver = cdrom.find("source"), cdrom.find("driver")
    assert source is not None and driver is not None
    assert source.get("file") == str(out / "install-dvd.qcow2")
    source.set("file", str(dvd.path))
    driver.set("type", "raw")
    system = root.find("./devices/disk[@device='disk']/source")
    assert system is not None
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", str(system.get("file")), "1G"], check=True
    )
    result = boot_domain(
        ET.tostring(root, encoding="unicode"),
        uri=uri,
        timeout=90,
        fatal_markers=SECURE_BOOT_REFUSALS,
    )
    log = ANSI.sub("", result.serial_log)
    assert not result.timed_out, (
        f"OVMF did not refuse the unsigned efisys.bin within 90 s:\n{result.describe()}"
    )
    assert result.fatal_marker in ("Access Denied", "Security Violation"), result.describe()
    assert "PVPROBE start" not in log and "PVGRUB" not in log
    refusal = next(line for line in log.splitlines() if result.fatal_marker in line)
    assert "DVD-ROM" in refusal or "Sata" in refusal, refusal
