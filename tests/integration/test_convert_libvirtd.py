"""`pvinstall convert` and `attach` through the CLI on the real libvirtd (qemu:///system,
TCG): the staged phases on a shut-off guest with an IDE disk and an e1000 NIC,
--drivers-installed, rollback, a running guest, attaching disks and NICs (live where
QEMU allows), and the refusals.

No Windows boots here: a guest that "runs" sits in its BIOS with an empty disk. Each
definition convert leaves behind is also started once, so QEMU itself, not only
libvirt's schema, accepts it.
"""

from __future__ import annotations

import json
import stat
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from xml.sax.saxutils import escape

import libvirt
import pytest

from builder import cli
from builder.vm import virt
from tests.integration.libvirt_env import unique_domain_name

pytestmark = pytest.mark.integration

OSINFO = (
    "<metadata><libosinfo:libosinfo xmlns:libosinfo='http://libosinfo.org/xmlns/"
    "libvirt/domain/1.0'><libosinfo:os id='http://microsoft.com/win/{}'/>"
    "</libosinfo:libosinfo></metadata>"
)
E1000 = "<interface type='user'><model type='e1000'/></interface>"


@pytest.fixture
def name(conn: virt.Connection) -> Iterator[str]:
    value = unique_domain_name("pvconv")
    yield value
    virt.remove_domain(conn, value)


def define_guest(
    conn: virt.Connection,
    name: str,
    folder: Path,
    *,
    osinfo: str = "2k8r2",
    nics: str = E1000,
    data_disk: bool = False,
    vnc_password: str | None = None,
) -> Path:
    """A guest as virt-manager leaves one installed without virtio: IDE system disk, an
    empty IDE CD-ROM, an e1000 NIC, booting by <os><boot dev='hd'/>."""
    folder.mkdir(parents=True, exist_ok=True)
    system = folder / f"{name.replace(' ', '-')}.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(system), "64M"], check=True)
    data = ""
    if data_disk:
        subprocess.run(
            ["qemu-img", "create", "-q", "-f", "qcow2", str(folder / "data.qcow2"), "16M"],
            check=True,
        )
        data = (
            f"<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
            f"<source file='{folder / 'data.qcow2'}'/><target dev='hdb' bus='ide'/></disk>"
        )
    passwd = f" passwd='{vnc_password}'" if vnc_password else ""
    xml = (
        f"<domain type='qemu'><name>{escape(name)}</name>{OSINFO.format(osinfo)}"
        "<memory unit='MiB'>64</memory><vcpu>1</vcpu>"
        "<os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>"
        "<features><acpi/></features><devices>"
        f"<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
        f"<source file='{system}'/><target dev='hda' bus='ide'/></disk>{data}"
        "<disk type='file' device='cdrom'><driver name='qemu' type='raw'/>"
        "<target dev='hdc' bus='ide'/><readonly/></disk>"
        f"{nics}<graphics type='vnc' autoport='yes'{passwd}><listen type='address' "
        "address='127.0.0.1'/></graphics></devices></domain>"
    )
    conn.handle.defineXMLFlags(xml, libvirt.VIR_DOMAIN_DEFINE_VALIDATE)
    return system


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def devices(xml: str) -> dict[str, list[tuple[str, ...]]]:
    """The disks (target, bus, source, model) and NIC models of a domain XML."""
    root = ET.fromstring(xml)
    disks = []
    for disk in root.iterfind("./devices/disk"):
        target = disk.find("target")
        source = disk.find("source")
        disks.append(
            (
                disk.get("device", ""),
                target.get("dev", "") if target is not None else "",
                target.get("bus", "") if target is not None else "",
                source.get("file", "") if source is not None else "",
                disk.get("model", ""),
            )
        )
    nics: list[tuple[str, ...]] = [
        (m.get("type", ""),) for m in root.iterfind("./devices/interface/model")
    ]
    return {"disks": sorted(disks), "nics": nics}


def persistent(conn: virt.Connection, name: str) -> str:
    return virt.inactive_xml(conn, name)


def start_once(conn: virt.Connection, name: str) -> None:
    """QEMU starts the definition (it sits in the BIOS); then stop it again."""
    handle = conn.handle.lookupByName(name)
    handle.create()
    handle.destroy()


def test_staged_phases_then_nothing_to_change_then_rollback(
    conn: virt.Connection,
    uri: str,
    name: str,
    tmp_path: Path,
    virtio_win: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    system = define_guest(conn, name, tmp_path / "img", data_disk=True)
    original = persistent(conn, name)
    state = tmp_path / "state"
    common = ("--connect", uri, "--out", str(state))

    code, out, err = run(capsys, "convert", name, *common, "--drivers", str(virtio_win))
    assert code == 0, err
    assert f"phase one done for {name}" in err and "--finish" in err
    iso, temp = state / f"{name}-drivers.iso", state / f"{name}-viostor.qcow2"
    assert iso.is_file() and temp.is_file() and (state / f"{name}.orig.xml").is_file()
    after_one = persistent(conn, name)
    assert devices(after_one) == {
        "disks": sorted(
            [
                ("disk", "hda", "ide", str(system), ""),
                ("disk", "vda", "virtio", str(tmp_path / "img" / "data.qcow2"), "virtio"),
                ("disk", "vdb", "virtio", str(temp), "virtio"),
                ("cdrom", "hdc", "ide", str(iso), ""),
            ]
        ),
        "nics": [("virtio",)],
    }
    start_once(conn, name)

    # Phase one again changes nothing: the guest has not been through its boot yet.
    code, _, err = run(capsys, "convert", name, *common)
    assert code == 0 and "phase one is done already" in err
    assert persistent(conn, name) == after_one

    code, _, err = run(capsys, "convert", name, *common, "--finish")
    assert code == 0, err
    finished = persistent(conn, name)
    assert devices(finished) == {
        "disks": sorted(
            [
                ("disk", "vda", "virtio", str(tmp_path / "img" / "data.qcow2"), "virtio"),
                ("disk", "vdb", "virtio", str(system), "virtio"),
                ("cdrom", "hdc", "ide", "", ""),
            ]
        ),
        "nics": [("virtio",)],
    }
    boot = ET.fromstring(finished).find(f"./devices/disk/source[@file='{system}']/../boot")
    assert boot is not None and boot.get("order") == "1"
    assert not iso.exists() and not temp.exists()
    start_once(conn, name)

    code, out, err = run(capsys, "convert", name, *common)
    assert (code, out) == (0, "") and "nothing to change" in err
    code, _, err = run(capsys, "convert", name, *common, "--finish")
    assert code == 2 and "no phase-one record" in err
    assert persistent(conn, name) == finished

    code, _, err = run(capsys, "convert", name, *common, "--rollback")
    assert code == 0, err
    assert devices(persistent(conn, name)) == devices(original)
    assert persistent(conn, name) == original


def test_drivers_installed_switches_at_once_and_rolls_back(
    conn: virt.Connection,
    uri: str,
    name: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    system = define_guest(conn, name, tmp_path / "img", osinfo="2k3")
    original = persistent(conn, name)
    common = ("--connect", uri, "--out", str(tmp_path / "state"))
    code, out, err = run(capsys, "convert", name, *common, "--drivers-installed", "--json")
    assert code == 0, err
    document = json.loads(out)
    assert document["action"] == "switch" and document["applied"] is True
    assert devices(persistent(conn, name)) == {
        "disks": [
            ("cdrom", "hdc", "ide", "", ""),
            ("disk", "vda", "virtio", str(system), "virtio-transitional"),
        ],
        "nics": [("virtio-transitional",)],
    }
    start_once(conn, name)
    code, _, err = run(capsys, "convert", name, *common, "--rollback")
    assert code == 0, err
    assert persistent(conn, name) == original


def test_a_running_guest_gets_config_only_changes_and_keeps_its_boot_disk(
    conn: virt.Connection,
    uri: str,
    name: str,
    tmp_path: Path,
    virtio_win: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    define_guest(conn, name, tmp_path / "img")
    handle = conn.handle.lookupByName(name)
    handle.create()
    try:
        common = ("--connect", uri, "--out", str(tmp_path / "state"))
        code, _, err = run(capsys, "convert", name, *common, "--drivers-installed")
        assert code == 2
        assert (
            f"{name} is running; its boot disk is switched to virtio only while it is "
            "shut off" in err
        )
        code, _, err = run(capsys, "convert", name, *common, "--drivers", str(virtio_win))
        assert code == 0, err
        assert "takes effect at its next start" in err
        assert devices(handle.XMLDesc(0))["nics"] == [("e1000",)]  # the guest as it runs
        assert devices(persistent(conn, name))["nics"] == [("virtio",)]
        code, _, err = run(capsys, "convert", name, *common, "--finish")
        assert code == 2 and "only while it is shut off" in err
        handle.destroy()
        code, _, err = run(capsys, "convert", name, *common, "--finish")
        assert code == 0, err
    finally:
        if handle.isActive():
            handle.destroy()


def test_attach_disks_and_nics_to_a_shut_off_and_a_running_guest(
    conn: virt.Connection,
    uri: str,
    name: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    system = define_guest(conn, name, tmp_path / "img", osinfo="2k3")
    code, _, err = run(capsys, "attach", name, "disk", "--size", "1", "--connect", uri)
    assert code == 0, err
    created = system.parent / f"{name}-vda.qcow2"
    assert created.is_file() and f"created {created}" in err
    assert "Windows may need a restart to see it" in err
    code, out, err = run(
        capsys, "attach", name, "nic", "--network", "user", "--connect", uri, "--json"
    )
    assert code == 0, err
    assert json.loads(out)["live"] is False
    assert ("disk", "vda", "virtio", str(created), "virtio-transitional") in devices(
        persistent(conn, name)
    )["disks"]
    assert devices(persistent(conn, name))["nics"] == [("e1000",), ("virtio-transitional",)]

    handle = conn.handle.lookupByName(name)
    handle.create()
    try:
        extra = tmp_path / "extra.raw"
        extra.write_bytes(b"\0" * 1024 * 1024)
        code, out, err = run(
            capsys, "attach", name, "disk", "--source", str(extra), "--connect", uri, "--json"
        )
        assert code == 0, err
        document = json.loads(out)
        assert (document["live"], document["target"], document["created"]) == (True, "vdb", None)
        live = devices(handle.XMLDesc(0))["disks"]
        assert ("disk", "vdb", "virtio", str(extra), "virtio-transitional") in live
        assert ("disk", "vdb", "virtio", str(extra), "virtio-transitional") in devices(
            persistent(conn, name)
        )["disks"]
        driver = ET.fromstring(handle.XMLDesc(0)).find(
            f"./devices/disk/source[@file='{extra}']/../driver"
        )
        assert driver is not None and driver.get("type") == "raw"  # as qemu-img found it
        code, _, err = run(capsys, "attach", name, "nic", "--network", "user", "--connect", uri)
        assert code == 0, err
        assert "to the running guest and its definition" in err
        assert len(devices(handle.XMLDesc(0))["nics"]) == 3
    finally:
        handle.destroy()


def test_attach_refusals(
    conn: virt.Connection, uri: str, name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    full = "".join("<interface type='user'><model type='virtio'/></interface>" for _ in range(28))
    define_guest(conn, name, tmp_path / "img", nics=full)
    network = unique_domain_name("pvnet")
    # Defined but not started: starting one needs dnsmasq and iptables.
    conn.handle.networkDefineXML(f"<network><name>{network}</name></network>")
    try:
        cases = [
            (
                ["nic", "--network", "user"],
                2,
                "with a virtio NIC on the user-mode network needs 29",
            ),
            (["disk", "--size", "1"], 2, "with a virtio disk"),
            (
                ["nic", "--network", "nope-pvinstall"],
                2,
                "there is no libvirt network named nope-pvinstall",
            ),
            (
                ["nic", "--network", network],
                2,
                f"the libvirt network {network} on {uri} is not active",
            ),
            (
                ["disk", "--source", str(tmp_path / "missing.qcow2")],
                2,
                f"the disk image {tmp_path / 'missing.qcow2'} does not exist",
            ),
        ]
        for extra, expected, fragment in cases:
            code, _, err = run(capsys, "attach", name, *extra, "--connect", uri)
            assert (code, fragment in err) == (expected, True), (extra, err)
            assert "Traceback" not in err
        assert not (tmp_path / "img" / f"{name}-vda.qcow2").exists()
    finally:
        conn.handle.networkLookupByName(network).undefine()


# A local URI whose daemon socket is not there.
UNREACHABLE = "qemu+unix:///system?socket=/nonexistent/pvinstall-libvirt-sock"


def test_connection_and_domain_refusals(
    uri: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cases = [
        (
            ["convert", "pvinstall-no-such-domain", "--connect", uri],
            2,
            "there is no domain named pvinstall-no-such-domain",
        ),
        (
            ["convert", "x", "--connect", UNREACHABLE],
            1,
            f"cannot reach libvirt at {UNREACHABLE}",
        ),
        (["attach", "x", "nic", "--connect", UNREACHABLE], 1, "cannot reach libvirt"),
        # A remote host is tried (its media become volumes); unreachable, it is exit 1.
        (
            ["convert", "x", "--connect", "qemu+tcp://127.0.0.1:1/system"],
            1,
            "cannot reach libvirt at qemu+tcp://127.0.0.1:1/system",
        ),
        # A path of this machine (--source, --out) means nothing there: refused first.
        (
            ["attach", "x", "disk", "--source", __file__, "--connect", "qemu+tcp://h/system"],
            2,
            "--source is a path of this machine",
        ),
        (
            ["attach", "x", "disk", "--size", "1", "--connect", "qemu+tcp://h/system"],
            2,
            "a new disk there is a volume of a storage pool",
        ),
        (["convert", "x", "--connect", "::::"], 2, "is not a libvirt URI"),
    ]
    for args, expected, fragment in cases:
        code, _, err = run(capsys, *args, "--out", str(tmp_path))
        assert (code, fragment in err) == (expected, True), (args, err)


def secure_xml(conn: virt.Connection, name: str) -> str:
    handle = conn.handle.lookupByName(name)
    return str(handle.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE))


def vnc_password(xml: str) -> str | None:
    graphics = ET.fromstring(xml).find("./devices/graphics")
    return graphics.get("passwd") if graphics is not None else None


def test_convert_keeps_the_vnc_password_and_rollback_restores_it(
    conn: virt.Connection,
    uri: str,
    name: str,
    tmp_path: Path,
    virtio_win: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    password = "vnc-s3cr"  # VNC passwords have at most 8 characters
    define_guest(conn, name, tmp_path / "img", vnc_password=password)
    original = secure_xml(conn, name)
    assert vnc_password(original) == password
    state = tmp_path / "state"
    common = ("--connect", uri, "--out", str(state))

    # What convert shows does not show the password; what it defines keeps it.
    code, out, err = run(capsys, "convert", name, *common, "--dry-run", "--json")
    assert code == 0, err
    assert password not in out + err and 'passwd="(set)"' in json.loads(out)["xml"]
    code, out, err = run(capsys, "convert", name, *common, "--drivers", str(virtio_win))
    assert code == 0, err
    assert password not in out + err
    assert vnc_password(secure_xml(conn, name)) == password
    backup = state / f"{name}.orig.xml"
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600
    assert vnc_password(backup.read_text()) == password
    start_once(conn, name)
    code, _, err = run(capsys, "convert", name, *common, "--finish")
    assert code == 0, err
    assert vnc_password(secure_xml(conn, name)) == password
    code, _, err = run(capsys, "convert", name, *common, "--rollback")
    assert code == 0, err
    assert secure_xml(conn, name) == original


def test_two_domains_whose_names_a_file_name_would_merge_keep_their_own_state(
    conn: virt.Connection, uri: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stem = unique_domain_name("rt-col")
    names = (f"{stem} a", f"{stem}_a")
    state = tmp_path / "state"
    try:
        for index, name in enumerate(names):
            define_guest(conn, name, tmp_path / f"img{index}", osinfo="2k3")
            code, _, err = run(
                capsys,
                "convert",
                name,
                "--connect",
                uri,
                "--out",
                str(state),
                "--drivers-installed",
            )
            assert code == 0, err
        backups = sorted(p.name for p in state.iterdir())
        assert backups == sorted([f"{stem}%20a.orig.xml", f"{stem}_a.orig.xml"])
        for name in names:  # each rollback finds its own domain's backup
            code, _, err = run(
                capsys, "convert", name, "--connect", uri, "--out", str(state), "--rollback"
            )
            assert code == 0, err
            assert "<target dev='hda' bus='ide'/>" in persistent(conn, name)
    finally:
        for name in names:
            virt.remove_domain(conn, name)


def test_attach_reads_the_format_and_refuses_a_backing_file_outside_the_folder(
    conn: virt.Connection, uri: str, name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The issue's image: a .raw file holding a qcow2 header backed by /etc/shadow. Guessed
    as qcow2 it would give the guest the host's file; it is refused, and attached with
    --format raw it is the file's own bytes. A new disk is private (0600)."""
    define_guest(conn, name, tmp_path / "img", osinfo="2k3")
    evil = tmp_path / "evil.raw"
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-u", "-b", "/etc/shadow", "-F", "raw",
         str(evil), "16M"],
        check=True,
    )  # fmt: skip
    before = persistent(conn, name)
    code, out, err = run(
        capsys, "attach", name, "disk", "--source", str(evil), "--connect", uri, "--json"
    )
    assert code == 2, err
    problem = json.loads(out)["error"]["problems"][0]
    assert problem["key"] == "--source" and "is backed by /etc/shadow" in problem["message"]
    assert "--format raw" in problem["hint"]
    assert persistent(conn, name) == before
    code, _, err = run(
        capsys, "attach", name, "disk", "--source", str(evil), "--format", "raw", "--connect", uri
    )
    assert code == 0, err
    driver = ET.fromstring(persistent(conn, name)).find(
        f"./devices/disk/source[@file='{evil}']/../driver"
    )
    assert driver is not None and driver.get("type") == "raw"
    start_once(conn, name)  # QEMU opens it as raw: no backing file is followed
    code, _, err = run(capsys, "attach", name, "disk", "--size", "1", "--connect", uri)
    assert code == 0, err
    created = next((tmp_path / "img").glob("*-vd*.qcow2"))
    assert stat.S_IMODE(created.stat().st_mode) == 0o600
    start_once(conn, name)  # libvirt gives QEMU the 0600 image for as long as it runs
