"""`pvinstall convert` and `attach` through the CLI against libvirt's test driver with
predefined domains (test:///<tmp>/node.xml): unknown domains, the dry run and its XML
(validated by libvirt's schema), nothing to change, the profile from the metadata, and
the refusals that come before any device change.

Every connection to a test:///<file> URI starts from the file again, so what a command
defines is gone for the next one: the staged phases, rollback, attach and running
guests are tested against the real libvirtd (tests/integration/test_convert_libvirtd.py).
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from uuid import NAMESPACE_URL, uuid5

import libvirt
import pytest

from builder import cli
from builder.convert import plan as convert
from tests.fixtures.virtio_win import PROFILE_OS_FOLDERS, write_modern_tree

OSINFO = (
    "<metadata><libosinfo:libosinfo xmlns:libosinfo='http://libosinfo.org/xmlns/"
    "libvirt/domain/1.0'><libosinfo:os id='http://microsoft.com/win/{}'/>"
    "</libosinfo:libosinfo></metadata>"
)
IDE_DISK = (
    "<disk type='file' device='disk'><source file='/img/{name}.qcow2'/>"
    "<target dev='hda' bus='ide'/></disk>"
)
CDROM = "<disk type='file' device='cdrom'><target dev='hdc' bus='ide'/><readonly/></disk>"
E1000 = "<interface type='network'><source network='default'/><model type='e1000'/></interface>"
VIRTIO = (
    "<disk type='file' device='disk' model='virtio'><source file='/img/v.qcow2'/>"
    "<target dev='vda' bus='virtio'/></disk><interface type='network'>"
    "<source network='default'/><model type='virtio'/></interface>"
)
SHUT_OFF, RUNNING = 5, 1


def node_domain(
    name: str,
    devices: str,
    *,
    osinfo: str | None = None,
    arch: str = "x86_64",
    state: int = SHUT_OFF,
) -> str:
    # A fixed UUID: without one every connection would make up another.
    uuid = uuid5(NAMESPACE_URL, name)
    return (
        f"<domain type='test' xmlns:test='http://libvirt.org/schemas/domain/test/1.0'>"
        f"<name>{name}</name><uuid>{uuid}</uuid>{OSINFO.format(osinfo) if osinfo else ''}"
        f"<memory>65536</memory><os><type arch='{arch}'>hvm</type><boot dev='hd'/></os>"
        f"<devices>{devices}</devices><test:runstate>{state}</test:runstate></domain>"
    )


DOMAINS = (
    node_domain("w2k8r2", IDE_DISK.format(name="w2k8r2") + CDROM + E1000, osinfo="2k8r2"),
    node_domain("w2k3", IDE_DISK.format(name="w2k3") + E1000, osinfo="2k3", arch="i686"),
    node_domain("plain", IDE_DISK.format(name="plain") + E1000),
    node_domain("done", VIRTIO, osinfo="2k8r2"),
    node_domain("busy", IDE_DISK.format(name="busy") + CDROM + E1000, osinfo="2k8", state=RUNNING),
    node_domain(
        "full",
        IDE_DISK.format(name="full")
        + "".join("<interface type='user'><model type='virtio'/></interface>" for _ in range(28)),
        osinfo="2k8r2",
    ),
)


@pytest.fixture(scope="module")
def uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    node = tmp_path_factory.mktemp("node") / "node.xml"
    node.write_text(
        "<node>" + "".join(DOMAINS) + "<network><name>default</name><bridge "
        "name='virbr0'/></network></node>",
        encoding="utf-8",
    )
    return f"test://{node}"


@pytest.fixture(scope="module")
def virtio_win(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_modern_tree(
        tmp_path_factory.mktemp("vw") / "virtio-win", oses=PROFILE_OS_FOLDERS
    ).root


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_the_test_driver_starts_shut_off_and_running_domains(uri: str) -> None:
    conn = libvirt.open(uri)
    try:
        assert conn.lookupByName("w2k8r2").state()[0] == libvirt.VIR_DOMAIN_SHUTOFF
        assert conn.lookupByName("busy").state()[0] == libvirt.VIR_DOMAIN_RUNNING
    finally:
        conn.close()


def test_dry_run_prints_a_definition_libvirt_accepts_and_changes_nothing(
    uri: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state"
    code, out, err = run(
        capsys, "convert", "w2k8r2", "--connect", uri, "--dry-run", "--out", str(state)
    )
    assert code == 0, err
    assert "dry run: nothing was changed" in err
    assert "later  boot disk hda (ide) -> virtio at --finish (/img/w2k8r2.qcow2)" in err
    assert not state.exists()  # no backup, no ISO, no disk
    root = ET.fromstring(out)
    targets = [
        (t.get("dev"), t.get("bus"))
        for d in root.iterfind("./devices/disk")
        if (t := d.find("target")) is not None
    ]
    assert ("hda", "ide") in targets and ("vda", "virtio") in targets
    assert [m.get("type") for m in root.iterfind("./devices/interface/model")] == ["virtio"]
    # The oracle: libvirt's schema takes the definition, and it keeps the domain's UUID.
    conn = libvirt.open(uri)
    try:
        before = conn.lookupByName("w2k8r2").UUIDString()
        conn.defineXMLFlags(out, libvirt.VIR_DOMAIN_DEFINE_VALIDATE)
        after = conn.lookupByName("w2k8r2")
        assert after.UUIDString() == before
        assert "w2k8r2-viostor.qcow2" in after.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    finally:
        conn.close()
    # A fresh connection: the dry run defined nothing.
    conn = libvirt.open(uri)
    try:
        assert "bus='ide'" in conn.lookupByName("w2k8r2").XMLDesc(0)
        assert "e1000" in conn.lookupByName("w2k8r2").XMLDesc(0)
    finally:
        conn.close()


def test_dry_run_of_drivers_installed_switches_the_boot_disk_too(
    uri: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "convert", "w2k8r2", "-c", uri, "--dry-run", "--drivers-installed")
    assert code == 0, err
    assert "switch boot disk hda (ide) -> vda (virtio)" in err
    root = ET.fromstring(out)
    assert [d.get("model") for d in root.iterfind("./devices/disk[@device='disk']")] == ["virtio"]


def test_the_profile_comes_from_the_metadata(uri: str, capsys: pytest.CaptureFixture[str]) -> None:
    # 2003 drivers know only the transitional IDs.
    code, out, err = run(capsys, "convert", "w2k3", "-c", uri, "--dry-run", "--json")
    assert code == 0, err
    document = json.loads(out)
    assert document["action"] == "phase-one" and document["applied"] is False
    assert [s["new"] for s in document["switched"]] == ["virtio-transitional"]
    assert "virtio-transitional" in document["xml"]
    # Without metadata, --profile is needed; an osinfo id takes the domain's arch.
    code, _, err = run(capsys, "convert", "plain", "-c", uri, "--dry-run")
    assert code == 2
    assert "plain does not say which Windows it runs" in err and "--profile" in err
    code, out, err = run(
        capsys, "convert", "plain", "-c", uri, "--dry-run", "-p", "win2k3", "--json"
    )
    assert code == 0, err
    assert [s["new"] for s in json.loads(out)["switched"]] == ["virtio-transitional"]


def test_a_virtio_guest_has_nothing_to_change(
    uri: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for extra in ([], ["--drivers-installed"], ["--dry-run"]):
        code, out, err = run(capsys, "convert", "done", "-c", uri, "--out", str(tmp_path), *extra)
        assert (code, out) == (0, ""), err
        assert "nothing to change: the disks and NICs of done are virtio already" in err
    code, out, _ = run(capsys, "convert", "done", "-c", uri, "--json")
    assert json.loads(out)["action"] == "nothing"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.integration  # qemu-img creates the temporary disk
def test_phase_one_writes_the_state_and_defines(
    uri: str, tmp_path: Path, virtio_win: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The test driver takes the definition (validated); the connection forgets it after.
    code, out, err = run(
        capsys,
        "convert",
        "w2k8r2",
        "-c",
        uri,
        "--out",
        str(tmp_path),
        "--drivers",
        str(virtio_win),
        "--json",
    )
    assert code == 0, err
    document = json.loads(out)
    assert document["action"] == "phase-one" and document["applied"] is True
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "w2k8r2-drivers.iso",
        "w2k8r2-viostor.qcow2",
        "w2k8r2.convert.json",
        "w2k8r2.orig.xml",
    ]
    record = convert.StagedRecord.from_json(
        (tmp_path / "w2k8r2.convert.json").read_text(), tmp_path
    )
    assert (record.temp_target, record.cd_target, record.boot_target) == ("vda", "hdc", "hda")
    assert "bus='ide'" in (tmp_path / "w2k8r2.orig.xml").read_text()
    assert any("CD:\\viostor\\2k8R2\\amd64" in step for step in document["next_steps"])


# -- refusals ----------------------------------------------------------------------------

# (arguments after the URI, exit code, error fragment)
REFUSALS: tuple[tuple[tuple[str, ...], int, str], ...] = (
    (("convert", "nope"), 2, "there is no domain named nope on test://"),
    (("convert", "w2k8r2", "--finish"), 2, "no phase-one record for w2k8r2"),
    (("convert", "w2k8r2", "--rollback"), 2, "no backup of w2k8r2's definition"),
    (
        ("convert", "w2k8r2", "--finish", "--rollback"),
        2,
        "--finish and --rollback cannot be combined",
    ),
    (
        ("convert", "busy", "--drivers-installed"),
        2,
        "busy is running; its boot disk is switched to virtio only while it is shut off",
    ),
    (("convert", "w2k8r2", "-p", "win95"), 2, "unknown profile 'win95'"),
    (
        ("convert", "w2k8r2", "--drivers", "/nonexistent/virtio-win.iso"),
        2,
        "driver source /nonexistent/virtio-win.iso does not exist",
    ),
    (("attach", "nope", "nic"), 2, "there is no domain named nope"),
    (
        ("attach", "w2k8r2", "nic", "--network", "nope"),
        2,
        "there is no libvirt network named nope on test://",
    ),
    (
        ("attach", "full", "nic", "--network", "user"),
        2,
        "full with a virtio NIC on the user-mode network needs 29 PCI slots, but a guest has 28",
    ),
    (
        ("attach", "w2k8r2", "disk", "--source", "/nonexistent/d.qcow2"),
        2,
        "the disk image /nonexistent/d.qcow2 does not exist",
    ),
    (("attach", "w2k8r2", "disk"), 2, "exactly one of --size"),
    (("attach", "w2k8r2", "disk", "--size", "0"), 2, "0 GiB is out of range; a disk is 1 to"),
    (("attach", "w2k8r2", "disk", "--size", "-3"), 2, "-3 GiB is out of range"),
    (("attach", "w2k8r2", "disk", "--size", "99999999999"), 2, "99999999999 GiB is out of range"),
    (("attach", "w2k8r2", "disk", "--size", "65537"), 2, "65537 GiB is out of range"),
    (("attach", "w2k8r2", "disk", "--size", "1", "--format", "raw"), 2, "--format says the format"),
    (("attach", "w2k8r2", "nic", "--format", "raw"), 2, "--format is for disks"),
    (("attach", "w2k8r2", "disk", "--size", "1", "--network", "user"), 2, "--network is for NICs"),
    (("attach", "w2k8r2", "cdrom"), 2, "cannot attach 'cdrom'"),
    (("attach", "plain", "nic", "--network", "user"), 2, "does not say which Windows"),
    (
        ("convert", "w2k8r2", "--storage-pool", "nope"),
        2,
        "there is no storage pool named nope on test://",
    ),
    (
        ("convert", "w2k8r2", "--storage-pool", "nope", "--dry-run"),
        2,
        "there is no storage pool named nope on test://",
    ),
    (("attach", "w2k8r2", "nic", "--storage-pool", "p"), 2, "--storage-pool says where"),
    (
        ("attach", "w2k8r2", "disk", "--source", "/dev/null", "--storage-pool", "p"),
        2,
        "--storage-pool says where",
    ),
    (
        ("attach", "w2k8r2", "disk", "--size", "1", "--storage-pool", "p"),
        2,
        "--out and --storage-pool both say where the new disk goes",
    ),
)


@pytest.mark.parametrize(
    ("args", "code", "fragment"), REFUSALS, ids=[" ".join(r[0]) for r in REFUSALS]
)
def test_refusals(
    uri: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    args: tuple[str, ...],
    code: int,
    fragment: str,
) -> None:
    got, out, err = run(capsys, *args, "--connect", uri, "--out", str(tmp_path))
    assert (got, fragment in err, out) == (code, True, ""), err
    assert "Traceback" not in err
    assert list(tmp_path.iterdir()) == []
