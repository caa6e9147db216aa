"""Builds on a remote libvirt host (docs/remote.md), for real: the real libvirtd reached
over qemu+ssh through a private sshd on 127.0.0.1 (tests/integration/remote_host.py),
its storage pools made over that connection and never written by the test itself,
uploads read back by downloading them, and the boot probe standing in for setup.
"""

from __future__ import annotations

import hashlib
import json
import socket
import subprocess
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import libvirt
import pytest

from builder import cli
from builder.errors import BuildError
from builder.monitor import NullMonitor
from builder.vm import transfer, virt
from tests.fixtures.virtio_win import PROFILE_OS_FOLDERS, make_iso, write_modern_tree
from tests.fixtures.windows_dvd import dvd_for
from tests.integration import probe, remote_host, sbprobe
from tests.integration.remote_host import Sshd

pytestmark = pytest.mark.integration

PASSWORD = "remote-Passw0rd"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


@pytest.fixture(scope="module")
def virtio_win_iso(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("vw")
    tree = write_modern_tree(base / "tree", oses=PROFILE_OS_FOLDERS)
    return make_iso(tree, base / "virtio-win.iso").path


@pytest.fixture(scope="module")
def windows_iso() -> Path:
    return probe.build_probe_iso(probe.DEFAULT_CACHE_DIR, mode="report", arch="amd64")


@pytest.fixture(scope="module")
def template_iso() -> Path:
    """The probe in its template mode: it reports what it sees as in the report mode,
    then writes its CD and a marker onto the system disk, which the export must keep."""
    return probe.build_probe_iso(probe.DEFAULT_CACHE_DIR, mode="template", arch="amd64")


@pytest.fixture
def name(uri: str) -> Iterator[str]:
    value = remote_host.unique("dom")
    yield value
    with virt.connect(uri) as conn:
        virt.remove_domain(conn, value)


def build(
    capsys: pytest.CaptureFixture[str],
    *args: str,
    drivers: Path,
    out: Path,
    name: str,
    connect: str,
    profile: str = "win2008-x64",
) -> tuple[int, Any, str]:
    code = cli.main(
        [
            "build",
            profile,
            "--drivers",
            str(drivers),
            "--out",
            str(out),
            "--name",
            name,
            "--connect",
            connect,
            "--domain-type",
            "qemu",
            "--set",
            "network=user",
            "--json",
            *args,
        ]
    )
    captured = capsys.readouterr()
    return code, json.loads(captured.out), captured.err


def disks_of(xml: str) -> list[ET.Element]:
    return list(ET.fromstring(xml).iterfind("./devices/disk"))


def download(conn: virt.Connection, pool: str, volume: str, dest: Path) -> Path:
    transfer.download(conn, pool, volume, dest, NullMonitor())
    return dest


# -- end to end ------------------------------------------------------------------------------


@pytest.mark.boot
def test_a_remote_install_uploads_reads_the_console_cleans_up_and_exports(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    remote_uri: str,
    remote_pool: str,
    virtio_win_iso: Path,
    template_iso: Path,
    name: str,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("PVINSTALL_ADMIN_PASSWORD", PASSWORD)
    monkeypatch.setenv("PVINSTALL_STORAGE_POOL", remote_pool)
    out = tmp_path / "out"
    windows_iso = template_iso

    def rebuild(*args: str) -> tuple[int, Any, str]:
        return build(
            capsys,
            *args,
            "--set",
            "disk_size_gib=10",
            drivers=virtio_win_iso,
            out=out,
            name=name,
            connect=remote_uri,
        )

    media = {f"{name}-floppy.img", f"{name}-drivers.iso", f"{name}-windows.iso"}

    # Someone else's volume in the same pool: no run of pvinstall touches it.
    other = f"{name}-other.img"
    raw = libvirt.open(remote_uri)
    raw.storagePoolLookupByName(remote_pool).createXML(
        f"<volume><name>{other}</name><capacity>1048576</capacity>"
        "<target><format type='raw'/></target></volume>",
        0,
    )
    raw.close()

    # --define: the media are uploaded and the domain names volumes only.
    code, manifest, err = rebuild("--windows-iso", str(windows_iso), "--define")
    assert code == 0, err
    record = manifest["domain"]
    assert record["volumes"]["pool"] == remote_pool and record["volumes"]["deleted"] is False
    assert set(record["volumes"]["media"]) == media
    with virt.connect(remote_uri) as conn:
        defined = virt.inactive_xml(conn, name)
        for disk in disks_of(defined):
            source = disk.find("source")
            assert disk.get("type") == "volume", ET.tostring(disk)
            if source is not None:
                assert source.get("pool") == remote_pool and source.get("file") is None
        assert str(tmp_path) not in defined
        serial = ET.fromstring(defined).find("./devices/serial")
        assert serial is not None and serial.get("type") == "pty"
        assert remote_host_volumes(remote_uri, remote_pool) == {
            *media,
            f"{name}.qcow2",
            other,
        }
        # The uploads hold exactly OUT's files (and the user's ISO), read back.
        back = tmp_path / "back"
        back.mkdir()
        for medium, volume in (
            (out / "floppy.img", f"{name}-floppy.img"),
            (out / "drivers.iso", f"{name}-drivers.iso"),
            (windows_iso, f"{name}-windows.iso"),
        ):
            assert sha256(download(conn, remote_pool, volume, back / volume)) == sha256(medium)

    # --install --replace: the volumes this OUT's build made are replaced, then the
    # probe boots from them, its console comes over the connection, and they go.
    code, manifest, err = rebuild(
        "--windows-iso", str(windows_iso), "--install", "--replace", "--timeout", "4"
    )
    assert code == 0, err
    record = manifest["domain"]
    assert record["installed"] is True and record["shutoff_reason"] == "shutdown"
    assert record["volumes"]["deleted"] is True
    assert set(record["volumes"]["media"]) == media
    report = probe.parse_probe_log((out / "serial.log").read_text(errors="replace"))
    assert report.started and report.ended and not report.unparsed
    # The guest read the uploaded drivers CD: the manifest's files, byte for byte.
    drivers_cd = report.cdrom_with_label(manifest["settings"]["drivers_iso_label"])
    assert drivers_cd is not None and drivers_cd.files
    assert remote_host_volumes(remote_uri, remote_pool) == {f"{name}.qcow2", other}
    with virt.connect(remote_uri) as conn:
        template = virt.inactive_xml(conn, name)
        assert all(
            d.find("source") is None for d in disks_of(template) if d.get("device") != "disk"
        )
        # The system disk comes back over the connection as the host has it.
        pool_path = Path(
            ET.fromstring(libvirt_pool_xml(remote_uri, remote_pool)).findtext("./target/path") or ""
        )
        got = download(conn, remote_pool, f"{name}.qcow2", tmp_path / "system.qcow2")
        assert sha256(got) == sha256(pool_path / f"{name}.qcow2")
        info = subprocess.run(
            ["qemu-img", "info", "--output=json", "-f", "qcow2", str(got)],
            capture_output=True,
            text=True,
            check=True,
        )
        assert json.loads(info.stdout)["format"] == "qcow2"

    # The template export: the system disk's volume came down (sparse) and was
    # compressed here; OUT shows the template the manifest records, marker and all.
    assert report.template == "written", report
    template = manifest["template"]
    exported = out / "template.qcow2"
    assert template["disk"] == "template.qcow2" and template["format"] == "qcow2"
    assert template["sha256"] == sha256(exported)
    assert template["size"] == exported.stat().st_size
    assert template["virtual_size"] == 10 * 2**30
    assert template["exported_from"] == str(pool_path / f"{name}.qcow2")
    assert json.loads(subprocess.run(
        ["qemu-img", "info", "--output=json", "-f", "qcow2", str(exported)],
        capture_output=True, text=True, check=True,
    ).stdout)["format"] == "qcow2"  # fmt: skip
    marker = probe.disk_sector(exported, "qcow2", probe.TEMPLATE_MARKER_SECTOR)
    assert marker.startswith(probe.TEMPLATE_MARKER.encode())
    # Compressed: smaller than the volume it was made from.
    assert exported.stat().st_size < (pool_path / f"{name}.qcow2").stat().st_size
    assert json.loads((out / "manifest.json").read_text()) == manifest
    # The download left nothing behind, in OUT or in any of its generations.
    left = sorted(p.name for p in out.rglob("*") if p.name.endswith(".download"))
    assert left == [], left


def qemu_img_chain(image: Path) -> list[dict[str, Any]]:
    """`qemu-img info --backing-chain` of a file, opened read-only without its lock
    (the pool's file is read, never written, by the test)."""
    done = subprocess.run(
        ["qemu-img", "info", "-U", "--backing-chain", "--output=json", "-f", "qcow2", str(image)],
        capture_output=True,
        text=True,
        check=True,
    )
    chain = json.loads(done.stdout)
    assert isinstance(chain, list)
    return chain


def pool_dir(uri: str, pool: str) -> Path:
    return Path(ET.fromstring(libvirt_pool_xml(uri, pool)).findtext("./target/path") or "")


def test_a_remote_define_of_a_modern_dvd_uploads_it_under_an_overlay_rebased_onto_it(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    remote_uri: str,
    remote_pool: str,
    virtio_win_iso: Path,
    name: str,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("PVINSTALL_ADMIN_PASSWORD", PASSWORD)
    monkeypatch.setenv("PVINSTALL_STORAGE_POOL", remote_pool)
    dvd = dvd_for("2022").path
    out = tmp_path / "out"
    code, manifest, err = build(
        capsys,
        "--windows-iso",
        str(dvd),
        "--define",
        drivers=virtio_win_iso,
        out=out,
        name=name,
        connect=remote_uri,
        profile="win2022-x64",
    )
    assert code == 0, err
    windows, overlay = f"{name}-windows.iso", f"{name}@install-dvd.qcow2"
    media = [f"{name}-answer.iso", f"{name}-drivers.iso", windows, overlay]
    assert manifest["domain"]["volumes"]["media"] == media
    assert remote_host_volumes(remote_uri, remote_pool) == {*media, f"{name}.qcow2"}
    folder = pool_dir(remote_uri, remote_pool)
    with virt.connect(remote_uri) as conn:
        defined = virt.inactive_xml(conn, name)
        assert str(tmp_path) not in defined and str(dvd) not in defined
        for disk in disks_of(defined):
            assert disk.get("type") == "volume", ET.tostring(disk)
            source = disk.find("source")
            assert source is not None and source.get("pool") == remote_pool
        cdroms = {
            d.find("source").get("volume"): d.find("driver").get("type")  # type: ignore[union-attr]
            for d in disks_of(defined)
            if d.get("device") == "cdrom"
        }
        # The domain boots the overlay; the DVD's volume is only its backing file.
        raw = {f"{name}-answer.iso": "raw", f"{name}-drivers.iso": "raw"}
        assert cdroms == {**raw, overlay: "qcow2"}
        # libvirt reads the overlay's backing file as the DVD's volume, raw.
        facts = virt.volume_facts(conn, remote_pool, overlay)
        assert facts.format == "qcow2"
        assert (facts.backing_path, facts.backing_format) == (str(folder / windows), "raw")
        back = download(conn, remote_pool, windows, tmp_path / "windows.iso")
        assert sha256(back) == sha256(dvd)
    # qemu-img on the pool's file: a chain of exactly two, the overlay and the raw DVD.
    chain = qemu_img_chain(folder / overlay)
    assert [c["format"] for c in chain] == ["qcow2", "raw"], chain
    assert chain[0]["backing-filename"] == str(folder / windows)
    assert chain[0]["backing-filename-format"] == "raw"
    assert chain[1]["filename"] == str(folder / windows) and "backing-filename" not in chain[1]
    # OUT's overlay keeps this machine's DVD as its backing file ...
    local = qemu_img_chain(out / "install-dvd.qcow2")
    assert local[0]["backing-filename"] == str(dvd.absolute())
    # ... and the host's overlay shows the guest the same bytes (the patched catalog too).
    same = subprocess.run(
        ["qemu-img", "compare", "-U", "-f", "qcow2", "-F", "qcow2", str(out / "install-dvd.qcow2"),
         str(folder / overlay)],
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    assert same.returncode == 0, same.stdout + same.stderr


def remote_host_volumes(uri: str, pool: str) -> set[str]:
    conn = libvirt.open(uri)
    try:
        return remote_host.volume_names(conn, pool)
    finally:
        conn.close()


def libvirt_pool_xml(uri: str, pool: str) -> str:
    conn = libvirt.open(uri)
    try:
        return str(conn.storagePoolLookupByName(pool).XMLDesc(0))
    finally:
        conn.close()


# -- bad input -------------------------------------------------------------------------------


@pytest.fixture
def inactive_pool(remote_uri: str, tmp_path: Path) -> Iterator[str]:
    name = remote_host.unique("inactive")
    conn = libvirt.open(remote_uri)
    try:
        conn.storagePoolDefineXML(
            f"<pool type='dir'><name>{name}</name><target><path>{tmp_path / 'p'}</path>"
            "</target></pool>",
            0,
        )
        yield name
        remote_host.remove_pool(conn, name)
    finally:
        conn.close()


@pytest.fixture
def small_pool(remote_uri: str, tmp_path: Path) -> Iterator[str]:
    """A directory pool on a 4 MiB tmpfs: no room for a probe ISO of 10 MiB."""
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "pvt-i17", str(mount)], check=True)
    name = remote_host.unique("small")
    conn = libvirt.open(remote_uri)
    try:
        remote_host.create_dir_pool(conn, name, mount)
        yield name
        remote_host.remove_pool(conn, name)
    finally:
        conn.close()
        subprocess.run(["umount", str(mount)], check=False)


@pytest.mark.parametrize(
    ("case", "code", "key", "fragment"),
    [
        ("no pool setting", 2, "storage_pool", "needs a storage pool there"),
        ("missing pool", 2, "storage_pool", "there is no storage pool named"),
        ("inactive pool", 2, "storage_pool", "is not active"),
        ("no room", 1, None, "free, but the media take"),
        ("clashing volume", 2, "--name", "already exists in the storage pool"),
        ("clash with --replace", 2, "--replace", "no build in this --out made it"),
    ],
)
def test_remote_builds_refuse_what_the_host_cannot_take(
    request: pytest.FixtureRequest,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    remote_uri: str,
    virtio_win_iso: Path,
    windows_iso: Path,
    name: str,
    tmp_path: Path,
    case: str,
    code: int,
    key: str | None,
    fragment: str,
) -> None:
    monkeypatch.setenv("PVINSTALL_ADMIN_PASSWORD", PASSWORD)
    pool: str | None = None
    extra: list[str] = []
    if case == "missing pool":
        pool = remote_host.unique("absent")
    elif case == "inactive pool":
        pool = request.getfixturevalue("inactive_pool")
    elif case == "no room":
        pool = request.getfixturevalue("small_pool")
    elif case.startswith("clash"):
        pool = request.getfixturevalue("remote_pool")
        conn = libvirt.open(remote_uri)
        conn.storagePoolLookupByName(pool).createXML(
            f"<volume><name>{name}-drivers.iso</name><capacity>4096</capacity>"
            "<target><format type='raw'/></target></volume>",
            0,
        )
        conn.close()
        extra = ["--replace"] if "replace" in case else []
    if pool is None:
        monkeypatch.delenv("PVINSTALL_STORAGE_POOL", raising=False)
    else:
        monkeypatch.setenv("PVINSTALL_STORAGE_POOL", pool)
    out = tmp_path / "out"
    got, document, err = build(
        capsys,
        "--windows-iso",
        str(windows_iso),
        "--install",
        *extra,
        drivers=virtio_win_iso,
        out=out,
        name=name,
        connect=remote_uri,
    )
    assert got == code, err
    error = document["error"]
    assert any(fragment in p["message"] for p in error["problems"]), error
    if key is not None:
        assert key in {p["key"] for p in error["problems"]}, error
    with virt.connect(remote_uri) as conn:
        assert not virt.domain_exists(conn, name)
    if case == "no room" or case.startswith("clash"):
        # Nothing of the build is left in the pool (a clash keeps only the other volume).
        left = remote_host_volumes(remote_uri, pool or "")
        assert left <= {f"{name}-drivers.iso"}, left
    if code == 2:
        assert not (out / "manifest.json").exists()


def test_a_failed_upload_leaves_no_partial_volume(
    remote_uri: str, small_pool: str, tmp_path: Path
) -> None:
    """The room check passed (or was raced): the host fails the upload at its full
    tmpfs, and the volume goes again."""
    big = tmp_path / "big.img"
    with big.open("wb") as handle:
        for _ in range(8):
            handle.write(b"\xa5" * (1 << 20))
    with virt.connect(remote_uri) as conn:
        with pytest.raises(BuildError, match="No space left on device") as failed:
            virt.upload_volume(conn, small_pool, "pvt-big.img", big)
        assert "deleted again" in str(failed.value.hint)
        assert virt.volume_names(conn, small_pool) == ()
        assert virt.pool_room(conn, small_pool) > 3 * (1 << 20)


def test_a_sparse_file_round_trips_with_its_holes(
    remote_uri: str, remote_pool: str, tmp_path: Path
) -> None:
    sparse = tmp_path / "sparse.img"
    with sparse.open("wb") as handle:
        handle.truncate(64 << 20)
        handle.seek(20 << 20)
        handle.write(b"data" * 4096)
    with virt.connect(remote_uri) as conn:
        virt.upload_volume(conn, remote_pool, "pvt-sparse.img", sparse)
        back = tmp_path / "back.img"
        assert virt.download_volume(conn, remote_pool, "pvt-sparse.img", back) == 64 << 20
    assert sha256(back) == sha256(sparse)
    assert back.stat().st_blocks * 512 < 8 << 20  # the holes stayed holes


# -- the connection --------------------------------------------------------------------------


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never says a word."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield int(listener.getsockname()[1])
    stop.set()
    thread.join()
    for peer in accepted:
        peer.close()
    listener.close()


@pytest.mark.parametrize(
    ("case", "fragment"),
    [
        ("wrong key", "root@127.0.0.1: Permission denied (publickey)"),
        ("closed port", "Connection refused"),
        ("silent port", "no answer within 3 seconds"),
    ],
)
def test_an_ssh_connection_that_fails_is_a_sentence(
    request: pytest.FixtureRequest,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    sshd: Sshd,
    virtio_win_iso: Path,
    tmp_path: Path,
    case: str,
    fragment: str,
) -> None:
    monkeypatch.setenv("PVINSTALL_ADMIN_PASSWORD", PASSWORD)
    monkeypatch.setattr(virt, "CONNECT_TIMEOUT_SECONDS", 3.0)
    if case == "wrong key":
        uri = sshd.uri(key=sshd.wrong_key)
    elif case == "closed port":
        uri = sshd.uri(port=remote_host.free_port())
    else:
        uri = sshd.uri(port=request.getfixturevalue("silent_port"))
    got, document, err = build(
        capsys,
        "--define",
        "--set",
        "storage_pool=default",
        drivers=virtio_win_iso,
        out=tmp_path / "out",
        name=remote_host.unique("dom"),
        connect=uri,
    )
    assert got == 1, err
    error = document["error"]
    message = error["problems"][0]["message"]
    assert message.startswith(f"cannot reach libvirt at {uri}: "), message
    assert fragment in message
    assert "Cannot recv data" not in message and "Connection reset by peer" not in message


# -- export = "pool" and clones of a template volume -----------------------------------------


def wait_shut_off(uri: str, name: str, seconds: float) -> tuple[str, str] | None:
    deadline = time.monotonic() + seconds
    with virt.connect(uri) as conn:
        while time.monotonic() < deadline:
            state = virt.domain_state(conn, name)
            if state is None or state[0] == "shut off":
                return state
            time.sleep(1)
        return virt.domain_state(conn, name)


@pytest.mark.boot
def test_export_pool_leaves_a_compressed_template_volume_that_clones_back_onto(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    remote_uri: str,
    remote_pool: str,
    virtio_win_iso: Path,
    template_iso: Path,
    name: str,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("PVINSTALL_ADMIN_PASSWORD", PASSWORD)
    monkeypatch.setenv("PVINSTALL_STORAGE_POOL", remote_pool)
    out = tmp_path / "out"
    volume = f"{name}@template.qcow2"
    folder = pool_dir(remote_uri, remote_pool)

    def install(out_dir: Path, *args: str) -> tuple[int, Any, str]:
        return build(
            capsys,
            "--windows-iso",
            str(template_iso),
            "--install",
            "--timeout",
            "4",
            "--set",
            "disk_size_gib=10",
            "--set",
            "export=pool",
            *args,
            drivers=virtio_win_iso,
            out=out_dir,
            name=name,
            connect=remote_uri,
        )

    code, manifest, err = install(out)
    assert code == 0, err
    template = manifest["template"]
    assert {k: template[k] for k in ("pool", "volume", "format", "xml")} == {
        "pool": remote_pool,
        "volume": volume,
        "format": "qcow2",
        "xml": "template.xml",
    }
    assert "disk" not in template and template["virtual_size"] == 10 * 2**30
    # The volume holds the bytes the manifest records, the probe's marker among them.
    with virt.connect(remote_uri) as conn:
        facts = virt.volume_facts(conn, remote_pool, volume)
        back = download(conn, remote_pool, volume, tmp_path / "template.qcow2")
    assert facts.backing_path is None and template["size"] == facts.physical
    assert sha256(back) == template["sha256"]
    assert json.loads(subprocess.run(
        ["qemu-img", "info", "--output=json", "-f", "qcow2", str(back)],
        capture_output=True, text=True, check=True,
    ).stdout)["format"] == "qcow2"  # fmt: skip
    marker = probe.disk_sector(back, "qcow2", probe.TEMPLATE_MARKER_SECTOR)
    assert marker.startswith(probe.TEMPLATE_MARKER.encode())
    # Compressed: smaller than the system disk it was made from.
    assert template["size"] < (folder / f"{name}.qcow2").stat().st_size
    # OUT has template.xml naming the volume, and no template file, staging or download.
    outputs = {o["name"] for o in manifest["outputs"]}
    assert "template.xml" in outputs and "template.qcow2" not in outputs
    assert not (out / "template.qcow2").exists()
    left = [p.name for p in out.rglob("*") if p.name.endswith((".download", ".staging"))]
    assert left == [], left
    system = ET.fromstring((out / "template.xml").read_text()).find("./devices/disk")
    assert system is not None and system.get("type") == "volume"
    source = system.find("source")
    assert source is not None and source.attrib == {"pool": remote_pool, "volume": volume}
    assert remote_host_volumes(remote_uri, remote_pool) == {f"{name}.qcow2", volume}

    # Another OUT may not take the volume over, with or without --replace.
    for extra, key in (((), "--name"), (("--replace",), "--replace")):
        code, document, err = install(tmp_path / "other", *extra)
        assert code == 2, err
        problems = document["error"]["problems"]
        assert any(p["key"] == key and volume in p["message"] for p in problems), problems

    clones = [remote_host.unique("linked"), remote_host.unique("full")]
    try:
        # A linked clone: a volume of the same pool backed by the template volume.
        code = cli.main(["clone", str(out), clones[0], "--connect", remote_uri, "--json"])
        captured = capsys.readouterr()
        assert code == 0, captured.err
        linked = json.loads(captured.out)
        assert linked["linked"] is True and linked["volume"] == f"{clones[0]}.qcow2"
        chain = qemu_img_chain(folder / f"{clones[0]}.qcow2")
        assert [c["format"] for c in chain] == ["qcow2", "qcow2"], chain
        assert chain[0]["backing-filename"] == str(folder / volume)
        assert chain[0]["backing-filename-format"] == "qcow2"
        assert "backing-filename" not in chain[1]
        # A full clone: a copy the host made, no backing file.
        code = cli.main(["clone", str(out), clones[1], "--connect", remote_uri, "--full"])
        assert code == 0, capsys.readouterr().err
        chain = qemu_img_chain(folder / f"{clones[1]}.qcow2")
        assert len(chain) == 1 and "backing-filename" not in chain[0], chain
        with virt.connect(remote_uri) as conn:
            for clone in clones:
                xml = virt.inactive_xml(conn, clone)
                assert str(tmp_path) not in xml
                for disk in disks_of(xml):
                    if disk.get("device") == "disk":
                        assert disk.get("type") == "volume", ET.tostring(disk)
        # The same NAME again is refused; nothing is overwritten.
        code = cli.main(["clone", str(out), clones[0], "--connect", remote_uri])
        assert code == 2 and "exists" in capsys.readouterr().err

        # The linked clone boots the template's bytes: the probe on its disk runs and
        # powers the guest off (an empty or broken disk would not boot at all).
        assert (
            cli.main(["clone", str(out), "--start", clones[0] + "x", "--connect", remote_uri]) == 0
        )
        clones.append(clones[0] + "x")
        capsys.readouterr()
        state = wait_shut_off(remote_uri, clones[-1], 240)
        assert state == ("shut off", "shutdown"), state
        assert sha256(folder / volume) == template["sha256"]  # the template never changed

        # --replace into the same OUT replaces the template volume its manifest lists.
        with virt.connect(remote_uri) as conn:
            for clone in clones:
                virt.remove_domain(conn, clone)
                virt.delete_volume(conn, remote_pool, f"{clone}.qcow2")
        code, again, err = install(out, "--replace")
        assert code == 0, err
        assert again["template"]["volume"] == volume
        with virt.connect(remote_uri) as conn:
            assert (
                virt.volume_facts(conn, remote_pool, volume).physical == again["template"]["size"]
            )
    finally:
        with virt.connect(remote_uri) as conn:
            for clone in clones:
                virt.remove_domain(conn, clone)


@pytest.mark.boot
def test_a_remote_install_of_a_modern_dvd_boots_through_the_rebased_overlay(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    remote_uri: str,
    remote_pool: str,
    virtio_win_iso: Path,
    name: str,
    tmp_path: Path,
) -> None:
    """The Secure Boot probe's DVD: its own UEFI boot entry is unsigned and refused
    under Secure Boot, the overlay's patched catalog boots the signed one. So the guest
    booting at all, with Secure Boot on, says it read the DVD through the overlay the
    host has, backed by the DVD's volume."""
    monkeypatch.setenv("PVINSTALL_ADMIN_PASSWORD", PASSWORD)
    monkeypatch.setenv("PVINSTALL_STORAGE_POOL", remote_pool)
    sb = sbprobe.build_sb_probe()
    dvd = dvd_for(
        "2022",
        efisys_image=str(sb.esp_unsigned),
        noprompt_image=str(sb.esp),
        visible_tree=str(sb.disc_tree),
    ).path
    out = tmp_path / "out"
    code, manifest, err = build(
        capsys,
        "--windows-iso",
        str(dvd),
        "--install",
        "--timeout",
        "5",
        "--set",
        "export=none",
        drivers=virtio_win_iso,
        out=out,
        name=name,
        connect=remote_uri,
        profile="win2022-x64",
    )
    log = (out / "serial.log").read_text(errors="replace") if (out / "serial.log").exists() else ""
    assert code == 0, f"{err}\n--- serial ---\n{log[-3000:]}"
    record = manifest["domain"]
    assert record["installed"] is True and record["shutoff_reason"] == "shutdown"
    report = sbprobe.parse_sb_report(log)
    assert report.base.started and report.base.ended, log[-3000:]
    assert report.efi is True and report.secure_boot is True
    drivers_cd = report.base.cdrom_with_label(manifest["settings"]["drivers_iso_label"])
    assert drivers_cd is not None and drivers_cd.files
    # The media volumes, the DVD's and its overlay's among them, are gone.
    assert record["volumes"]["deleted"] is True
    assert f"{name}-windows.iso" in record["volumes"]["media"]
    assert remote_host_volumes(remote_uri, remote_pool) == {f"{name}.qcow2"}


TEMPLATE_DOMAIN_XML = """<domain type='qemu'><name>pvt-i17-template</name><memory>65536</memory>
<os><type arch='x86_64'>hvm</type></os><devices>
<disk type='volume' device='disk'><driver name='qemu' type='qcow2'/>
<source pool='{pool}' volume='{volume}'/><target dev='vda' bus='virtio'/></disk>
</devices></domain>
"""


@pytest.mark.parametrize(
    ("case", "fragment"),
    [
        ("missing volume", "is missing"),
        ("volume with a slash", "names no usable template volume"),
        ("pool with a slash", "names no usable template volume"),
        ("changed size", "it changed after the build"),
        ("changed virtual size", "it changed after the build"),
        ("raw in the manifest", "a template volume is qcow2"),
        ("raw volume", "a template volume is qcow2"),
        ("backing file", "has a backing file"),
    ],
)
def test_a_clone_refuses_a_template_volume_that_is_not_as_recorded(
    capsys: pytest.CaptureFixture[str],
    remote_uri: str,
    remote_pool: str,
    tmp_path: Path,
    case: str,
    fragment: str,
) -> None:
    """An OUT whose manifest names a template volume (export = "pool"), made by hand:
    the volume is made over the connection, the manifest says what it should be."""
    volume = "pvt-i17-t@template.qcow2"
    conn = libvirt.open(remote_uri)
    try:
        pool = conn.storagePoolLookupByName(remote_pool)
        fmt = "raw" if case == "raw volume" else "qcow2"
        pool.createXML(
            f"<volume><name>{volume}</name><capacity>67108864</capacity>"
            f"<target><format type='{fmt}'/></target></volume>",
            0,
        )
        if case == "backing file":
            base = pool.storageVolLookupByName(volume)
            volume = "pvt-i17-u@template.qcow2"
            pool.createXML(
                f"<volume><name>{volume}</name><capacity>67108864</capacity>"
                "<target><format type='qcow2'/></target><backingStore>"
                f"<path>{base.path()}</path><format type='qcow2'/></backingStore></volume>",
                0,
            )
    finally:
        conn.close()
    with virt.connect(remote_uri) as vc:
        facts = virt.volume_facts(vc, remote_pool, volume)
    record: dict[str, Any] = {
        "pool": remote_pool,
        "volume": volume,
        "format": "qcow2",
        "size": facts.physical,
        "virtual_size": facts.capacity,
        "sha256": "0" * 64,
        "generalized": True,
        "xml": "template.xml",
        "data_disks": [],
    }
    changes: dict[str, Any] = {
        "missing volume": {"volume": "pvt-i17-absent@template.qcow2"},
        "volume with a slash": {"volume": "../x"},
        "pool with a slash": {"pool": "a/b"},
        "changed size": {"size": facts.physical + 1},
        "changed virtual size": {"virtual_size": facts.capacity * 2},
        "raw in the manifest": {"format": "raw"},
    }
    record.update(changes.get(case, {}))
    out = tmp_path / "out"
    out.mkdir()
    (out / "template.xml").write_text(TEMPLATE_DOMAIN_XML.format(pool=remote_pool, volume=volume))
    manifest = {"template": record, "outputs": [{"name": "template.xml"}]}
    (out / "manifest.json").write_text(json.dumps(manifest))
    clone = remote_host.unique("refused")
    code = cli.main(["clone", str(out), clone, "--connect", remote_uri, "--json"])
    error = json.loads(capsys.readouterr().out)["error"]
    assert code == 2, error
    assert any(p["key"] == "TEMPLATE" and fragment in p["message"] for p in error["problems"]), (
        error
    )
    with virt.connect(remote_uri) as vc:
        assert not virt.domain_exists(vc, clone)
        assert not virt.volume_exists(vc, remote_pool, f"{clone}.qcow2")


def test_a_template_domain_on_a_volume_clones_into_its_pool(
    capsys: pytest.CaptureFixture[str], remote_uri: str, remote_pool: str, name: str
) -> None:
    """A shut-off domain whose system disk is a qcow2 volume (template.xml of export =
    "pool", defined) is a template too: linked and full clones land in its pool."""
    volume = f"{name}@template.qcow2"
    conn = libvirt.open(remote_uri)
    try:
        conn.storagePoolLookupByName(remote_pool).createXML(
            f"<volume><name>{volume}</name><capacity>67108864</capacity>"
            "<target><format type='qcow2'/></target></volume>",
            0,
        )
        conn.defineXML(
            TEMPLATE_DOMAIN_XML.format(pool=remote_pool, volume=volume).replace(
                "pvt-i17-template", name
            )
        )
    finally:
        conn.close()
    clones = [remote_host.unique("dlinked"), remote_host.unique("dfull")]
    try:
        for clone, extra in zip(clones, ([], ["--full"]), strict=True):
            code = cli.main(["clone", name, clone, "--connect", remote_uri, "--json", *extra])
            captured = capsys.readouterr()
            assert code == 0, captured.err
            result = json.loads(captured.out)
            assert result["template"]["volume"] == volume and result["pool"] == remote_pool
        with virt.connect(remote_uri) as vc:
            linked = virt.volume_facts(vc, remote_pool, f"{clones[0]}.qcow2")
            template_path = virt.volume_path(vc, remote_pool, volume)
            assert (linked.backing_path, linked.backing_format) == (template_path, "qcow2")
            full = virt.volume_facts(vc, remote_pool, f"{clones[1]}.qcow2")
            assert full.backing_path is None and full.capacity == 67108864
            for clone in clones:
                xml = virt.inactive_xml(vc, clone)
                source = ET.fromstring(xml).find("./devices/disk/source")
                assert source is not None and source.get("pool") == remote_pool
                assert source.get("volume") == f"{clone}.qcow2"
    finally:
        with virt.connect(remote_uri) as vc:
            for clone in clones:
                virt.remove_domain(vc, clone)


# -- convert and attach over the connection ---------------------------------------------

OSINFO = (
    "<metadata><libosinfo:libosinfo xmlns:libosinfo='http://libosinfo.org/xmlns/"
    "libvirt/domain/1.0'><libosinfo:os id='http://microsoft.com/win/2k8r2'/>"
    "</libosinfo:libosinfo></metadata>"
)


def define_ide_guest(uri: str, name: str, boot_disk: str) -> str:
    """A stopped guest as virt-manager leaves one installed without virtio (IDE system
    disk `boot_disk`, an empty IDE CD-ROM, an e1000 NIC), defined over `uri`; its XML
    as libvirt keeps it."""
    xml = (
        f"<domain type='qemu'><name>{name}</name>{OSINFO}"
        "<memory unit='MiB'>64</memory><vcpu>1</vcpu>"
        "<os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>"
        f"<features><acpi/></features><devices>{boot_disk}"
        "<disk type='file' device='cdrom'><driver name='qemu' type='raw'/>"
        "<target dev='hdc' bus='ide'/><readonly/></disk>"
        "<interface type='user'><model type='e1000'/></interface>"
        "<graphics type='vnc' autoport='yes'><listen type='address' address='127.0.0.1'/>"
        "</graphics></devices></domain>"
    )
    conn = libvirt.open(uri)
    try:
        conn.defineXMLFlags(xml, libvirt.VIR_DOMAIN_DEFINE_VALIDATE)
        return str(conn.lookupByName(name).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
    finally:
        conn.close()


def volume_disk(pool: str, volume: str) -> str:
    return (
        f"<disk type='volume' device='disk'><driver name='qemu' type='qcow2'/>"
        f"<source pool='{pool}' volume='{volume}'/><target dev='hda' bus='ide'/></disk>"
    )


def create_volume(
    uri: str,
    pool: str,
    volume: str,
    *,
    fmt: str = "qcow2",
    size: int = 64 << 20,
    allocation: int = 0,
) -> None:
    conn = libvirt.open(uri)
    try:
        conn.storagePoolLookupByName(pool).createXML(
            f"<volume><name>{volume}</name><capacity unit='bytes'>{size}</capacity>"
            f"<allocation unit='bytes'>{allocation}</allocation>"
            f"<target><format type='{fmt}'/></target></volume>",
            0,
        )
    finally:
        conn.close()


def volume_facts(uri: str, pool: str, volume: str) -> tuple[str, int]:
    """The format and capacity the host has for a volume."""
    conn = libvirt.open(uri)
    try:
        handle = conn.storagePoolLookupByName(pool).storageVolLookupByName(volume)
        root = ET.fromstring(handle.XMLDesc(0))
        fmt = root.find("./target/format")
        return (fmt.get("type", "") if fmt is not None else "", int(handle.info()[1]))
    finally:
        conn.close()


def pvinstall(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any, str]:
    code = cli.main([*args, "--json"])
    captured = capsys.readouterr()
    return code, json.loads(captured.out), captured.err


def sources_of(xml: str) -> list[tuple[str, str, str, str, str]]:
    """(device, type, driver type, pool, volume or file) of every disk with a source."""
    found = []
    for disk in disks_of(xml):
        source = disk.find("source")
        driver = disk.find("driver")
        if source is None:
            continue
        found.append(
            (
                disk.get("device", ""),
                disk.get("type", ""),
                driver.get("type", "") if driver is not None else "",
                source.get("pool", ""),
                source.get("volume") or source.get("file") or "",
            )
        )
    return sorted(found)


def start_once(uri: str, name: str) -> None:
    """QEMU on the host opens every volume of the definition (the guest sits in its
    BIOS); then it stops again."""
    conn = libvirt.open(uri)
    try:
        handle = conn.lookupByName(name)
        handle.create()
        handle.destroy()
    finally:
        conn.close()


def test_convert_over_the_connection_puts_the_drivers_and_temporary_disk_into_the_pool(
    capsys: pytest.CaptureFixture[str],
    remote_uri: str,
    remote_pool: str,
    virtio_win_iso: Path,
    name: str,
    tmp_path: Path,
) -> None:
    create_volume(remote_uri, remote_pool, f"{name}.qcow2")
    other = f"{name}-other.img"  # someone else's volume: no run touches it
    create_volume(remote_uri, remote_pool, other, fmt="raw", size=1 << 20)
    original = define_ide_guest(remote_uri, name, volume_disk(remote_pool, f"{name}.qcow2"))
    state = tmp_path / "state"
    common = ("--connect", remote_uri, "--out", str(state))
    drivers_volume, temp_volume = f"{name}@convert-drivers.iso", f"{name}@convert-viostor.qcow2"
    before = {f"{name}.qcow2", other}

    # --dry-run: the definition it would get, and nothing made anywhere.
    code, document, err = pvinstall(
        capsys, "convert", name, *common, "--drivers", str(virtio_win_iso), "--dry-run"
    )
    assert code == 0, err
    assert document["applied"] is False
    assert document["volumes"] == {"pool": remote_pool, "names": [drivers_volume, temp_volume]}
    assert ("cdrom", "volume", "raw", remote_pool, drivers_volume) in sources_of(document["xml"])
    assert remote_host_volumes(remote_uri, remote_pool) == before
    assert not state.exists()

    for undo in ("--rollback", "--finish"):
        # Phase one, without --storage-pool: the pool of the boot disk.
        code, document, err = pvinstall(
            capsys, "convert", name, *common, "--drivers", str(virtio_win_iso)
        )
        assert code == 0, err
        assert document["action"] == "phase-one" and document["applied"] is True
        assert document["volumes"] == {"pool": remote_pool, "names": [drivers_volume, temp_volume]}
        assert remote_host_volumes(remote_uri, remote_pool) == {
            *before,
            drivers_volume,
            temp_volume,
        }
        with virt.connect(remote_uri) as conn:
            staged = virt.inactive_xml(conn, name)
            # The drivers CD holds the ISO convert wrote into the state directory.
            back = download(conn, remote_pool, drivers_volume, tmp_path / f"back{undo}.iso")
        assert sha256(back) == sha256(state / f"{name}-drivers.iso")
        assert sources_of(staged) == [
            ("cdrom", "volume", "raw", remote_pool, drivers_volume),
            ("disk", "volume", "qcow2", remote_pool, f"{name}.qcow2"),
            ("disk", "volume", "qcow2", remote_pool, temp_volume),
        ]
        assert str(tmp_path) not in staged  # nothing names a path of the client
        assert volume_facts(remote_uri, remote_pool, temp_volume) == ("qcow2", 64 << 20)
        record = json.loads((state / f"{name}.convert.json").read_text())
        assert (record["pool"], record["drivers_iso"], record["temp_disk"]) == (
            remote_pool,
            drivers_volume,
            temp_volume,
        )
        start_once(remote_uri, name)  # QEMU there opens the volumes as their formats

        if undo == "--rollback":
            # Undone by hand: phase one again replaces the volumes its record names.
            raw = libvirt.open(remote_uri)
            raw.defineXML(original)
            raw.close()
            code, document, err = pvinstall(
                capsys, "convert", name, *common, "--drivers", str(virtio_win_iso)
            )
            assert code == 0, err
            assert document["action"] == "phase-one"
            assert remote_host_volumes(remote_uri, remote_pool) == {
                *before,
                drivers_volume,
                temp_volume,
            }

        code, document, err = pvinstall(capsys, "convert", name, *common, undo)
        assert code == 0, err
        assert document["volumes"] == {"pool": remote_pool, "names": [drivers_volume, temp_volume]}
        # Exactly the recorded volumes are gone; the boot disk and the other stay.
        assert remote_host_volumes(remote_uri, remote_pool) == before
        assert not (state / f"{name}.convert.json").exists()
        assert not (state / f"{name}-drivers.iso").exists()
        with virt.connect(remote_uri) as conn:
            now = virt.inactive_xml(conn, name)
        if undo == "--rollback":
            assert now == original
    assert sources_of(now) == [("disk", "volume", "qcow2", remote_pool, f"{name}.qcow2")]
    (boot,) = (d for d in disks_of(now) if d.get("device") == "disk")
    assert boot.find("target").get("bus") == "virtio"  # type: ignore[union-attr]
    start_once(remote_uri, name)


def test_attach_over_the_connection_creates_a_volume(
    capsys: pytest.CaptureFixture[str],
    remote_uri: str,
    remote_pool: str,
    name: str,
    tmp_path: Path,
) -> None:
    # The boot disk is a file of the host, which the pool holds as a volume: attach
    # finds the pool by that path.
    create_volume(remote_uri, remote_pool, f"{name}.qcow2")
    raw = libvirt.open(remote_uri)
    try:
        pool = raw.storagePoolLookupByName(remote_pool)
        system = str(pool.storageVolLookupByName(f"{name}.qcow2").path())
    finally:
        raw.close()
    define_ide_guest(
        remote_uri,
        name,
        "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
        f"<source file='{system}'/><target dev='hda' bus='ide'/></disk>",
    )
    code, document, err = pvinstall(
        capsys, "attach", name, "disk", "--size", "2", "--connect", remote_uri
    )
    assert code == 0, err
    volume = f"{name}@vda.qcow2"
    assert document["created"] == f"volume {remote_pool}/{volume}"
    assert volume_facts(remote_uri, remote_pool, volume) == ("qcow2", 2 << 30)
    # A second one, into a pool named explicitly.
    code, document, err = pvinstall(
        capsys,
        "attach",
        name,
        "disk",
        "--size",
        "1",
        "--connect",
        remote_uri,
        "--storage-pool",
        remote_pool,
    )
    assert code == 0, err
    assert volume_facts(remote_uri, remote_pool, f"{name}@vdb.qcow2") == ("qcow2", 1 << 30)
    with virt.connect(remote_uri) as conn:
        defined = virt.inactive_xml(conn, name)
    assert sources_of(defined) == [
        ("disk", "file", "qcow2", "", system),
        ("disk", "volume", "qcow2", remote_pool, volume),
        ("disk", "volume", "qcow2", remote_pool, f"{name}@vdb.qcow2"),
    ]
    start_once(remote_uri, name)


@pytest.fixture
def full_pool(remote_uri: str, small_pool: str) -> str:
    """The 4 MiB pool with all but 256 KiB taken by a volume of its own: no room for a
    drivers ISO of about 500 KiB."""
    conn = libvirt.open(remote_uri)
    try:
        handle = conn.storagePoolLookupByName(small_pool)
        handle.refresh(0)
        room = int(handle.info()[3])
    finally:
        conn.close()
    filler = room - (256 << 10)
    create_volume(
        remote_uri, small_pool, "pvt-filler.img", fmt="raw", size=filler, allocation=filler
    )
    return small_pool


@pytest.mark.parametrize(
    ("command", "case", "code", "key", "fragment"),
    [
        ("convert", "no pool", 2, "--storage-pool", "the guest's boot disk is in none"),
        ("convert", "missing pool", 2, "--storage-pool", "there is no storage pool named"),
        ("convert", "inactive pool", 2, "--storage-pool", "is not active"),
        ("convert", "no room", 1, None, "free, but the media take"),
        ("convert", "clashing volume", 2, "--storage-pool", "and no phase one of"),
        ("convert", "wrong key", 1, None, "Permission denied (publickey)"),
        ("attach", "no pool", 2, "--storage-pool", "the guest's boot disk is in none"),
        ("attach", "missing pool", 2, "--storage-pool", "there is no storage pool named"),
        ("attach", "inactive pool", 2, "--storage-pool", "is not active"),
        ("attach", "clashing volume", 2, "--size", "already exists in the storage pool"),
        ("attach", "wrong key", 1, None, "Permission denied (publickey)"),
    ],
)
def test_convert_and_attach_refuse_what_the_host_cannot_take(
    request: pytest.FixtureRequest,
    capsys: pytest.CaptureFixture[str],
    sshd: Sshd,
    remote_uri: str,
    remote_pool: str,
    virtio_win_iso: Path,
    name: str,
    tmp_path: Path,
    command: str,
    case: str,
    code: int,
    key: str | None,
    fragment: str,
) -> None:
    uri = sshd.uri(key=sshd.wrong_key) if case == "wrong key" else remote_uri
    if case == "no pool":
        boot = (
            "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
            f"<source file='{tmp_path / 'client.qcow2'}'/><target dev='hda' bus='ide'/></disk>"
        )
    else:
        create_volume(remote_uri, remote_pool, f"{name}.qcow2")
        boot = volume_disk(remote_pool, f"{name}.qcow2")
    original = define_ide_guest(remote_uri, name, boot)
    pool: str | None = None
    if case == "missing pool":
        pool = remote_host.unique("absent")
    elif case == "inactive pool":
        pool = request.getfixturevalue("inactive_pool")
    elif case == "no room":
        pool = request.getfixturevalue("full_pool")
    elif case == "clashing volume":
        taken = f"{name}@convert-drivers.iso" if command == "convert" else f"{name}@vda.qcow2"
        create_volume(remote_uri, remote_pool, taken, fmt="raw", size=4096)
    watched = pool if case == "no room" and pool is not None else remote_pool
    volumes_before = remote_host_volumes(remote_uri, watched)
    state = tmp_path / "state"
    args = [command, name]
    if command == "convert":
        args += ["--drivers", str(virtio_win_iso), "--out", str(state)]
    else:
        args += ["disk", "--size", "1"]
    if pool is not None:
        args += ["--storage-pool", pool]
    got, document, err = pvinstall(capsys, *args, "--connect", uri)
    assert got == code, err
    problems = document["error"]["problems"]
    assert any(fragment in p["message"] for p in problems), problems
    if key is not None:
        assert key in {p["key"] for p in problems}, problems
    if case == "wrong key":
        assert problems[0]["message"].startswith(f"cannot reach libvirt at {uri}: ")
    # Nothing changed: the definition, the pool, the state directory.
    with virt.connect(remote_uri) as conn:
        assert virt.inactive_xml(conn, name) == original
    assert remote_host_volumes(remote_uri, watched) == volumes_before
    assert not (state / f"{name}.convert.json").exists()
    assert not (state / f"{name}-drivers.iso").exists()


@pytest.mark.boot
def test_a_guest_converted_over_the_connection_reads_the_pool_s_volumes(
    capsys: pytest.CaptureFixture[str],
    remote_uri: str,
    remote_pool: str,
    virtio_win_iso: Path,
    windows_iso: Path,
    name: str,
    tmp_path: Path,
) -> None:
    """The boot probe stands in for the guest's Windows: after phase one over the
    connection it boots from its own CD and reports the drivers CD and the temporary
    virtio disk, both read from the pool's volumes."""
    create_volume(remote_uri, remote_pool, f"{name}.qcow2")
    with virt.connect(remote_uri) as conn:
        virt.upload_volume(conn, remote_pool, f"{name}-probe.iso", windows_iso)
    serial = tmp_path / "serial.log"  # the test's own guest; the host is this machine
    xml = (
        f"<domain type='qemu'><name>{name}</name>{OSINFO}"
        "<memory unit='MiB'>512</memory><vcpu>1</vcpu>"
        "<os><type arch='x86_64' machine='pc'>hvm</type><boot dev='cdrom'/></os>"
        f"<features><acpi/></features><on_poweroff>destroy</on_poweroff><devices>"
        f"{volume_disk(remote_pool, f'{name}.qcow2')}"
        "<disk type='volume' device='cdrom'><driver name='qemu' type='raw'/>"
        f"<source pool='{remote_pool}' volume='{name}-probe.iso'/>"
        "<target dev='hdc' bus='ide'/><readonly/></disk>"
        "<interface type='user'><model type='e1000'/></interface>"
        f"<serial type='file'><source path='{serial}'/><target port='0'/></serial>"
        "</devices></domain>"
    )
    raw = libvirt.open(remote_uri)
    try:
        raw.defineXMLFlags(xml, libvirt.VIR_DOMAIN_DEFINE_VALIDATE)
    finally:
        raw.close()
    code, document, err = pvinstall(
        capsys,
        "convert",
        name,
        "--connect",
        remote_uri,
        "--out",
        str(tmp_path / "state"),
        "--drivers",
        str(virtio_win_iso),
    )
    assert code == 0, err
    assert document["volumes"]["pool"] == remote_pool
    raw = libvirt.open(remote_uri)
    try:
        handle = raw.lookupByName(name)
        handle.create()
        for _ in range(600):
            if not handle.isActive():
                break
            time.sleep(0.5)
        else:
            handle.destroy()
            pytest.fail(f"the probe did not power off: {serial.read_text(errors='replace')}")
    finally:
        raw.close()
    report = probe.parse_probe_log(serial.read_text(errors="replace"))
    assert report.started and report.ended and not report.unparsed
    drivers_cd = report.cdrom_with_label("PVDRIVERS")
    assert drivers_cd is not None and drivers_cd.files, report.cdroms
    # The temporary disk: the only virtio disk (the boot disk is still IDE).
    virtio_disks = [d for d in report.disks.values() if d.dev.startswith("vd")]
    assert [(d.size_bytes, d.writable) for d in virtio_disks] == [(64 << 20, True)]
