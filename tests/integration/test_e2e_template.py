"""End to end on the real libvirtd (TCG): `pvinstall build --install` exports the
template, and `pvinstall clone` defines a linked clone of it that boots.

The boot probe in its template mode stands for Windows setup and Sysprep: it copies
its own hybrid CD onto the system disk (so that the disk boots, as an installed Windows
does), writes a known marker there and powers off. The test holds pvinstall's claims
against independent readers: qemu-img reads the marker out of template.qcow2 and the
overlay's backing file, hashlib the template's sha256 (against the manifest, and again
after the clone ran), the clone's serial log says it booted from the template's bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from builder import cli
from builder.vm import virt
from tests.fixtures.domain_xml import removable_media
from tests.fixtures.virtio_win import PROFILE_OS_FOLDERS, make_iso, write_modern_tree
from tests.integration import probe
from tests.integration.libvirt_env import unique_domain_name

pytestmark = [pytest.mark.integration, pytest.mark.boot]

PASSWORD = "e2e-Templ4te"
PROFILE = "win2008r2-x64"


@pytest.fixture(scope="module")
def virtio_win_iso(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("vw")
    tree = write_modern_tree(base / "tree", oses=PROFILE_OS_FOLDERS)
    return make_iso(tree, base / "virtio-win.iso").path


@pytest.fixture
def names(uri: str) -> Iterator[tuple[str, str]]:
    pair = (unique_domain_name("pvt-i14-tpl"), unique_domain_name("pvt-i14-clone"))
    yield pair
    with virt.connect(uri) as conn:
        for name in pair:
            virt.remove_domain(conn, name)


def sha256(path: Path) -> str:
    """The file's sha256, its holes hashed as the zeros they read as: reading the holes
    of a 10 GiB sparse raw template costs a minute here (the kernel fills the page
    cache with zero pages), hashing that many zeros a few seconds."""
    digest = hashlib.sha256()
    zeros = bytes(1 << 20)
    with path.open("rb") as handle:
        size, position = os.fstat(handle.fileno()).st_size, 0
        while position < size:
            try:
                data = os.lseek(handle.fileno(), position, os.SEEK_DATA)
            except OSError:  # ENXIO: a hole to the end
                data = size
            for offset in range(position, data, len(zeros)):
                digest.update(zeros[: min(len(zeros), data - offset)])
            if data >= size:
                break
            hole = os.lseek(handle.fileno(), data, os.SEEK_HOLE)
            handle.seek(data)
            digest.update(handle.read(hole - data))  # data extents of a template: small
            position = hole
    return digest.hexdigest()


def qemu_img_info(image: Path) -> dict[str, object]:
    done = subprocess.run(
        ["qemu-img", "info", "-U", "--output=json", str(image)],
        check=True,
        capture_output=True,
        text=True,
    )
    info = json.loads(done.stdout)
    assert isinstance(info, dict)
    return info


def wait_shut_off(uri: str, name: str, seconds: float) -> tuple[str, str] | None:
    deadline = time.monotonic() + seconds
    with virt.connect(uri) as conn:
        while time.monotonic() < deadline:
            state = virt.domain_state(conn, name)
            if state is None or state[0] == "shut off":
                return state
            time.sleep(1)
        return virt.domain_state(conn, name)


def install_template(virtio_win_iso: Path, out: Path, name: str, uri: str, *extra: str) -> int:
    """`pvinstall build --install` of the template-mode probe into `out` (--json)."""
    windows_iso = probe.build_probe_iso(probe.DEFAULT_CACHE_DIR, mode="template", arch="amd64")
    return cli.main(
        [
            "build", PROFILE, "--drivers", str(virtio_win_iso), "--windows-iso",
            str(windows_iso), "--out", str(out), "--name", name, "--install", *extra,
            "--connect", uri, "--domain-type", "qemu", "--timeout", "6",
            "--set", "network=user", "--set", "disk_size_gib=10", "--json",
        ]
    )  # fmt: skip


def test_install_exports_a_template_and_clone_boots_a_linked_clone_of_it(
    uri: str,
    virtio_win_iso: Path,
    names: tuple[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PVINSTALL_ADMIN_PASSWORD", PASSWORD)
    build_name, clone_name = names
    out = tmp_path / "out"
    code = install_template(virtio_win_iso, out, build_name, uri)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    manifest = json.loads(captured.out)
    assert manifest == json.loads((out / "manifest.json").read_text())
    report = probe.parse_probe_log((out / "serial.log").read_text(errors="replace"))
    assert report.template == "written", report

    # The template record: the disk OUT shows, what qemu-img says of it, its sha256.
    template = manifest["template"]
    disk = out / "template.qcow2"
    info = qemu_img_info(disk)
    assert template["disk"] == "template.qcow2" and template["xml"] == "template.xml"
    assert template["format"] == info["format"] == "qcow2"
    assert template["virtual_size"] == info["virtual-size"] == 10 * 2**30
    assert template["size"] == disk.stat().st_size
    assert template["sha256"] == sha256(disk)
    assert template["generalized"] is True
    outputs = {o["name"]: o for o in manifest["outputs"]}
    assert outputs["template.qcow2"]["sha256"] == template["sha256"]
    assert "template.xml" in outputs
    # Compressed: far smaller than the build's own disk, which the template copies.
    assert disk.stat().st_size < Path(manifest["domain"]["disks"][0]).stat().st_size
    assert stat.S_IMODE(disk.stat().st_mode) & 0o077 == 0  # it carries the password
    assert PASSWORD not in (out / "manifest.json").read_text()

    # The marker the probe wrote onto the system disk is in the template.
    marker = probe.disk_sector(disk, "qcow2", probe.TEMPLATE_MARKER_SECTOR)
    assert marker.startswith(probe.TEMPLATE_MARKER.encode())

    # template.xml: no UUID, no MAC, no media, the system disk is the template.
    xml = (out / "template.xml").read_text()
    assert "<uuid>" not in xml and "<mac " not in xml
    assert removable_media(xml) == ()
    assert f"file='{out / 'template.qcow2'}'" in xml or f'file="{out / "template.qcow2"}"' in xml
    # The build's domain stays defined, without its install media.
    with virt.connect(uri) as conn:
        assert removable_media(virt.inactive_xml(conn, build_name)) == ()

    # pvinstall clone: a linked clone, booted.
    clone_out = tmp_path / "clone"
    code = cli.main(
        [
            "clone",
            str(out),
            clone_name,
            "--connect",
            uri,
            "--out",
            str(clone_out),
            "--start",
            "--json",
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    result = json.loads(captured.out)
    assert result["linked"] is True and result["defined"] is True and result["started"] is True
    overlay = clone_out / f"{clone_name}.qcow2"
    assert result["disk"] == str(overlay)
    overlay_info = qemu_img_info(overlay)
    real_template = disk.resolve()
    assert overlay_info["backing-filename"] == str(real_template)
    assert overlay_info["backing-filename-format"] == "qcow2"
    assert stat.S_IMODE(real_template.stat().st_mode) == 0o400

    state = wait_shut_off(uri, clone_name, 240)
    assert state is not None and state[0] == "shut off", state
    clone_report = probe.parse_probe_log(
        (clone_out / f"{clone_name}-serial.log").read_text(errors="replace")
    )
    assert clone_report.template == "clone", clone_report
    assert clone_report.ended

    # Its own identity: another UUID and MAC than the build's domain.
    with virt.connect(uri) as conn:
        clone_xml = virt.inactive_xml(conn, clone_name)
        build_xml = virt.inactive_xml(conn, build_name)
    uuid = clone_xml.split("<uuid>")[1].split("</uuid>")[0]
    assert uuid not in build_xml
    mac = clone_xml.split("<mac address='")[1].split("'")[0]
    assert mac not in build_xml

    # The template's bytes did not change.
    assert sha256(disk) == template["sha256"]

    # Bad input, siblings: the same NAME again; an OUT without a template.
    code = cli.main(["clone", str(out), clone_name, "--connect", uri, "--out", str(tmp_path / "x")])
    assert code == 2
    assert "exists on" in capsys.readouterr().err
    code = cli.main(["clone", str(tmp_path / "nothing"), "pvt-i14-none", "--connect", uri])
    assert code == 2
    assert "unknown template" in capsys.readouterr().err


def test_export_only_leaves_a_raw_template_and_no_domain(
    uri: str,
    virtio_win_iso: Path,
    names: tuple[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PVINSTALL_ADMIN_PASSWORD", PASSWORD)
    build_name, _ = names
    out = tmp_path / "out"
    code = install_template(
        virtio_win_iso, out, build_name, uri, "--export-only", "--set", "export=raw"
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    manifest = json.loads(captured.out)
    template = manifest["template"]
    disk = out / "template.raw"
    assert template["disk"] == "template.raw" and template["format"] == "raw"
    assert qemu_img_info(disk)["format"] == "raw"
    assert template["virtual_size"] == disk.stat().st_size == 10 * 2**30
    assert disk.stat().st_blocks * 512 < disk.stat().st_size  # sparse
    assert template["sha256"] == sha256(disk)
    marker = probe.disk_sector(disk, "raw", probe.TEMPLATE_MARKER_SECTOR)
    assert marker.startswith(probe.TEMPLATE_MARKER.encode())
    # --export-only: the domain and its disk are gone, the manifest says so.
    assert manifest["domain"]["removed"] is True and manifest["domain"]["defined"] is False
    assert "disks" not in manifest["domain"]
    assert not (out / f"{build_name}.qcow2").exists()
    with virt.connect(uri) as conn:
        assert not virt.domain_exists(conn, build_name)
