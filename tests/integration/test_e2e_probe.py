"""End to end: `pvinstall build P --install` on the real libvirtd, with the boot probe
standing in for Windows setup, one boot per family.

The probe boots the very domain pvinstall defined (from the remastered install.iso
for 2003, from the probe ISO as "Windows DVD" for 2008), reports what the guest saw
over the serial console and powers off like setup's last step. The test holds the
report against pvinstall's own claims: the manifest's selected drivers must bind the
virtio devices the guest sees (matched here by Windows' hardware-ID rules, not by
pvinstall's code), and the media must hold the manifest's files byte for byte.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from builder import cli
from builder.vm import virt
from tests.fixtures.domain_xml import removable_media
from tests.fixtures.virtio_win import PROFILE_OS_FOLDERS, make_iso, write_modern_tree
from tests.integration import probe
from tests.integration.libvirt_env import unique_domain_name

pytestmark = [pytest.mark.integration, pytest.mark.boot]

PASSWORD = "e2e-Passw0rd"
KEY_2003 = "ABCDE-FGHIJ-KLMNO-PQRST-UVWXY"
VIRTIO_VENDOR = "1af4"
# PCI class of the guest's device -> the driver role that must bind it.
CLASS_ROLE = {"0100": "viostor", "0200": "NetKVM"}


@pytest.fixture(scope="module")
def virtio_win_iso(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("vw")
    tree = write_modern_tree(base / "tree", oses=PROFILE_OS_FOLDERS)
    return make_iso(tree, base / "virtio-win.iso").path


@pytest.fixture
def name(uri: str) -> Iterator[str]:
    value = unique_domain_name("pve2e")
    yield value
    with virt.connect(uri) as conn:
        virt.remove_domain(conn, value)


def windows_hardware_ids(dev: probe.PciDevice) -> set[str]:
    """The hardware IDs Windows' PCI bus driver reports for a device, most specific
    first (MS docs, "Identifiers for PCI Devices"), upper-case."""
    ven, devid = dev.vendor.upper(), dev.device.upper()
    subsys = f"{dev.subsys_device.upper()}{dev.subsys_vendor.upper()}"
    rev = dev.revision.upper()
    base = f"PCI\\VEN_{ven}&DEV_{devid}"
    return {
        f"{base}&SUBSYS_{subsys}&REV_{rev}",
        f"{base}&SUBSYS_{subsys}",
        f"{base}&REV_{rev}",
        base,
    }


def binds(driver: dict[str, Any], dev: probe.PciDevice) -> bool:
    return bool({h.upper() for h in driver["hardware_ids"]} & windows_hardware_ids(dev))


def by_path(files: dict[str, probe.ProbeFile]) -> dict[str, str]:
    return {path.upper(): f.sha256 for path, f in files.items()}


def manifest_files(manifest: dict[str, Any], output: str, out: Path) -> dict[str, str]:
    """The sha256 of each file on the medium `output`, as the manifest says it. An answer
    file there has an HMAC under OUT's key instead (its sha256 would be a password
    verifier): it stands for the answer file in OUT whose HMAC it is, and that file's
    sha256 is what the guest must see."""
    key = bytes.fromhex((out / manifest["hmac_key"]).read_text().strip())
    answers = {}
    for record in manifest["outputs"]:
        if "hmac_sha256" in record and "files" not in record:  # an answer file, not a medium
            data = (out / record["name"]).read_bytes()
            keyed = hmac.new(key, data, hashlib.sha256).hexdigest()
            assert keyed == record["hmac_sha256"], record["name"]
            answers[keyed] = hashlib.sha256(data).hexdigest()
    record = next(o for o in manifest["outputs"] if o["name"] == output)
    return {
        f["path"].upper(): f["sha256"] if "sha256" in f else answers[f["hmac_sha256"]]
        for f in record["files"]
    }


@pytest.mark.parametrize(
    "profile", ["win2003-x86", "win2003-x64", "win2008-x86", "win2008-x64", "win2008r2-x64"]
)
def test_install_boots_the_defined_domain_with_the_right_devices_and_media(
    uri: str,
    virtio_win_iso: Path,
    name: str,
    tmp_path: Path,
    profile: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PVINSTALL_ADMIN_PASSWORD", PASSWORD)
    family_2003 = profile.startswith("win2003")
    arch: probe.Arch = "x86" if profile.endswith("x86") else "amd64"
    if family_2003:
        windows_iso = probe.build_fake_2003_cd(
            probe.DEFAULT_CACHE_DIR, tmp_path / "w2k3.iso", arch=arch
        )
    else:
        # A 32-bit guest (i686, qemu32) needs the 32-bit probe.
        windows_iso = probe.build_probe_iso(
            probe.DEFAULT_CACHE_DIR, mode="report", arch="i386" if arch == "x86" else "amd64"
        )
    out = tmp_path / "out"
    args = [
        "build",
        profile,
        "--drivers",
        str(virtio_win_iso),
        "--windows-iso",
        str(windows_iso),
        "--out",
        str(out),
        "--name",
        name,
        "--install",
        "--connect",
        uri,
        "--domain-type",
        "qemu",
        "--timeout",
        "4",
        "--set",
        "network=user",
        "--json",
    ]
    if family_2003:
        args += ["--set", f"product_key={KEY_2003}"]
    code = cli.main(args)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    manifest = json.loads(captured.out)
    assert manifest == json.loads((out / "manifest.json").read_text())

    # --install saw the power-off and left a template without install media.
    record = manifest["domain"]
    assert record["installed"] is True and record["shutoff_reason"] == "shutdown"
    assert record["media_attached"] == []
    with virt.connect(uri) as conn:
        assert removable_media(virt.inactive_xml(conn, name)) == ()

    report = probe.parse_probe_log((out / "serial.log").read_text(errors="replace"))
    assert report.started and report.ended and not report.unparsed
    # The guest is what the profile says: no long mode in a 32-bit one.
    assert report.cpu_flags is not None
    assert ("lm" in report.cpu_flags) == (arch == "amd64")

    # Every virtio disk and NIC the guest sees is bound by the driver pvinstall chose.
    selected = {d["name"]: d for d in manifest["drivers"]["selected"]}
    virtio = [p for p in report.pci if p.vendor == VIRTIO_VENDOR]
    classes = sorted(p.pci_class[:4] for p in virtio)
    assert classes == ["0100", "0200"], virtio
    for dev in virtio:
        driver = selected[CLASS_ROLE[dev.pci_class[:4]]]
        assert binds(driver, dev), (dev, driver["hardware_ids"])
    if family_2003:
        # The 2003 drivers know only the transitional devices.
        assert {p.device for p in virtio} == {"1001", "1000"}
    else:
        assert {p.device for p in virtio} <= {"1001", "1000", "1042", "1041"}

    # The system disk is there and writable (setup can partition it).
    assert any(d.writable for dev, d in report.disks.items() if dev.startswith("vd"))

    # The floppy and the drivers CD hold exactly the manifest's files.
    assert report.floppy is not None
    assert by_path(report.floppy) == manifest_files(manifest, "floppy.img", out)
    drivers_cd = report.cdrom_with_label(manifest["settings"]["drivers_iso_label"])
    assert drivers_cd is not None
    assert by_path(drivers_cd.files) == manifest_files(manifest, "drivers.iso", out)

    if family_2003:
        # Setup booted from the remastered CD: the patched TXTSETUP.SIF and the driver.
        setup_dir = "I386" if arch == "x86" else "AMD64"
        install_cd = next(c for c in report.cdroms.values() if c is not drivers_cd and c.files)
        seen = by_path(install_cd.files)
        added = manifest_files(manifest, "install.iso", out)
        assert f"{setup_dir}/TXTSETUP.SIF" in added and f"{setup_dir}/VIOSTOR.SYS" in added
        assert {p: seen.get(p) for p in added} == added
