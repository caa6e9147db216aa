"""`pvinstall build` and the driver catalogs, with real tools: the signer certificates on
drivers.iso read by `openssl x509`, the manifest's signer and digest against openssl's
view of the same catalogs, optional drivers that never block, the drivers setting, the
SHA-2 policy and the clean templates (issue 13), each bad input table-driven."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from builder import cli
from tests.fixtures import signing
from tests.fixtures.virtio_win import Tree, make_iso, remove_file, write_modern_tree

pytestmark = pytest.mark.integration

PASSWORD = "Sup3r-Secr3t-pw"
KEY_2003 = "QWERT-YUIOP-ASDFG-HJKLZ-XCVBN"
DRIVERS = ("viostor", "NetKVM", "Balloon", "vioserial", "pvpanic")


def _need(*tools: str) -> None:
    for tool in tools:
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")


@pytest.fixture(autouse=True)
def _environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    monkeypatch.setenv("PVINSTALL_ADMIN_PASSWORD", PASSWORD)
    monkeypatch.delenv("VIRTIO_WIN", raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="module")
def vw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtio-win ISO of today's release (SHA-1 legacy builds)."""
    _need("xorriso")
    base = tmp_path_factory.mktemp("vw")
    tree = write_modern_tree(base / "tree", drivers=DRIVERS, oses=("2k3", "2k8", "2k8R2"))
    return make_iso(tree, base / "virtio-win.iso").path


def build(
    capsys: pytest.CaptureFixture[str], profile: str, drivers: Path, out: Path, *extra: str
) -> tuple[int, str, str]:
    args = ["build", profile, "--drivers", str(drivers), "--out", str(out), *extra]
    if profile.startswith("win2003"):
        args += ["--set", f"product_key={KEY_2003}"]
    code = cli.main(args)
    stdout, stderr = capsys.readouterr()
    return code, stdout, stderr


def extract(image: Path, path: str, into: Path) -> Path:
    target = into / hashlib.sha256(f"{image}{path}".encode()).hexdigest()
    subprocess.run(
        ["xorriso", "-osirrox", "on", "-indev", str(image), "-extract", "/" + path, str(target)],
        check=True,
        capture_output=True,
    )
    return target


def openssl(*args: str) -> str:
    return subprocess.run(["openssl", *args], check=True, capture_output=True, text=True).stdout


def iso_paths(image: Path) -> set[str]:
    listing = subprocess.run(
        ["xorriso", "-indev", str(image), "-find", "/", "-type", "f"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return {line.strip().strip("'").lstrip("/") for line in listing.splitlines() if "'" in line}


def manifest_of(out: Path) -> Any:
    return json.loads((out / "manifest.json").read_text())


@pytest.mark.parametrize("profile", ["win2008-x64", "win2008r2-x64", "win2008-x86"])
def test_drivers_iso_carries_the_signer_certificates_openssl_reads(
    capsys: pytest.CaptureFixture[str], vw: Path, tmp_path: Path, profile: str
) -> None:
    _need("xorriso", "openssl")
    out = tmp_path / "out"
    code, _, stderr = build(capsys, profile, vw, out)
    assert code == 0, stderr
    paths = iso_paths(out / "drivers.iso")
    certificates = sorted(p for p in paths if p.startswith("certs/"))
    assert certificates == [f"certs/{signing.thumbprint('redhat-sha1')}.cer"]
    for path in certificates:
        der = extract(out / "drivers.iso", path, tmp_path)
        fingerprint = openssl(
            "x509", "-inform", "DER", "-noout", "-fingerprint", "-sha1", "-in", str(der)
        )
        assert fingerprint.strip().split("=")[1].replace(":", "") == Path(path).stem
        subject = openssl("x509", "-inform", "DER", "-noout", "-subject", "-in", str(der))
        assert "Red Hat, Inc." in subject
    # The script names exactly these paths, before its first pnputil.
    script = extract(out / "drivers.iso", "POSTINST.CMD", tmp_path).read_text("ascii")
    named = re.findall(
        r'^certutil -addstore -f TrustedPublisher "%PV_DRIVE%\\(certs\\[0-9A-F]+\.cer)"',
        script,
        re.M,
    )
    assert [n.replace("\\", "/") for n in named] == certificates
    lines = script.splitlines()
    first = {
        w: next(i for i, x in enumerate(lines) if x.startswith(w)) for w in ("certutil", "pnputil")
    }
    assert first["certutil"] < first["pnputil"]


def test_the_manifest_s_signer_and_digest_are_openssl_s_view_of_the_catalogs(
    capsys: pytest.CaptureFixture[str], vw: Path, tmp_path: Path
) -> None:
    _need("xorriso", "openssl")
    out = tmp_path / "out"
    code, _, stderr = build(capsys, "win2008-x64", vw, out)
    assert code == 0, stderr
    selected = manifest_of(out)["drivers"]["selected"]
    assert {d["name"] for d in selected} == set(DRIVERS)
    for driver in selected:
        catalog = extract(vw, driver["catalog"], tmp_path)
        printed = openssl("cms", "-cmsout", "-print", "-inform", "DER", "-in", str(catalog))
        digests = re.findall(r"digestAlgorithm: \n\s+algorithm: (\w+)", printed)
        assert digests == [s["digest"] for s in driver["signatures"]] == [driver["digest"]]
        pems = openssl("pkcs7", "-print_certs", "-inform", "DER", "-in", str(catalog))
        signer = driver["signer"]
        # The signer is one of the certificates, with openssl's serial and thumbprint.
        blocks = re.findall(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", pems, re.S)
        views = []
        for block in blocks:
            pem = tmp_path / "c.pem"
            pem.write_text(block)
            views.append(
                openssl("x509", "-noout", "-serial", "-fingerprint", "-sha1", "-in", str(pem))
            )
        assert any(
            f"serial={signer['serial']}" in view
            and view.split("Fingerprint=")[1].strip().replace(":", "") == signer["sha1"]
            for view in views
        ), driver["name"]
        assert signer["common_name"] == "Red Hat, Inc." and signer["self_signed"] is False


def test_2003_gets_no_certificates_and_cleans_its_run_once(
    capsys: pytest.CaptureFixture[str], vw: Path, tmp_path: Path
) -> None:
    _need("xorriso")
    out = tmp_path / "out"
    code, _, stderr = build(capsys, "win2003-x86", vw, out)
    assert code == 0, stderr
    assert not [p for p in iso_paths(out / "drivers.iso") if p.startswith("certs/")]
    script = extract(out / "drivers.iso", "POSTINST.CMD", tmp_path).read_text("ascii")
    assert 'findstr /l /c:"PVDRIVERS.TAG call "' in script
    assert script.index("reg delete") < script.index("shutdown -s -t 0")
    # Without --windows-iso: setup needs F6; no suggestion to define the domain as it is.
    assert "F6" in stderr and "--windows-iso" in stderr
    assert "virsh" not in stderr
    assert any("F6" in w for w in manifest_of(out)["warnings"])


def test_the_2008_template_keeps_server_manager_closed_unless_asked(
    capsys: pytest.CaptureFixture[str], vw: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    assert build(capsys, "win2008r2-x64", vw, out)[0] == 0
    assert "<DoNotOpenServerManagerAtLogon>true<" in (out / "autounattend.xml").read_text()
    kept = tmp_path / "kept"
    assert build(capsys, "win2008r2-x64", vw, kept, "--set", "server_manager_at_logon=true")[0] == 0
    text = (kept / "autounattend.xml").read_text()
    assert "DoNotOpenServerManagerAtLogon" not in text
    assert "DoNotOpenInitialConfigurationTasksAtLogon" not in text


# -- optional drivers never block; bad inputs --------------------------------------------


@pytest.fixture
def tree(tmp_path: Path) -> Tree:
    return write_modern_tree(tmp_path / "virtio-win", drivers=DRIVERS, oses=("2k3", "2k8"))


def test_an_incomplete_optional_package_is_left_out_of_both_media(
    capsys: pytest.CaptureFixture[str], tree: Tree, tmp_path: Path
) -> None:
    _need("xorriso", "mdir")
    remove_file(tree, "pvpanic/2k8/amd64/pvpanic.cat")
    out = tmp_path / "out"
    code, _, stderr = build(capsys, "win2008-x64", tree.root, out)
    assert code == 0, stderr
    assert "pvpanic is left out" in stderr
    manifest = manifest_of(out)
    assert any(w.startswith("pvpanic is left out") for w in manifest["warnings"])
    assert "pvpanic" not in {d["name"] for d in manifest["drivers"]["selected"]}
    rejected = {r["inf"]: r["reason"] for r in manifest["drivers"]["rejected"]}
    assert rejected["pvpanic/2k8/amd64/pvpanic.inf"] == "incomplete: missing pvpanic.cat"
    assert not [p for p in iso_paths(out / "drivers.iso") if p.lower().startswith("pvpanic/")]
    floppy = subprocess.run(
        ["mdir", "-/", "-b", "-i", str(out / "floppy.img"), "::"],
        check=True,
        capture_output=True,
        text=True,
        env={"MTOOLS_SKIP_CHECK": "1", "PATH": "/usr/bin:/bin"},
    ).stdout
    assert "pvpanic" not in floppy.lower()
    script = extract(out / "drivers.iso", "POSTINST.CMD", tmp_path).read_text("ascii")
    assert "pvpanic" not in script


def test_sha2_media_builds_a_sha256_only_viostor_and_warns(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    old = write_modern_tree(
        tmp_path / "vw", release="0.1.185", drivers=("viostor", "NetKVM"), oses=("2k8",)
    )
    out = tmp_path / "out"
    code, _, stderr = build(capsys, "win2008-x64", old.root, out, "--set", "sha2_media=true")
    assert code == 0, stderr
    warnings = manifest_of(out)["warnings"]
    assert any("viostor" in w and "SHA-256 only" in w for w in warnings)
    viostor = next(d for d in manifest_of(out)["drivers"]["selected"] if d["name"] == "viostor")
    assert viostor["digest"] == "sha256"


def _bad(tree: Tree, tmp_path: Path) -> list[tuple[str, list[str], list[str]]]:
    """(what is wrong, extra arguments, fragments stderr must hold)."""
    return [
        (
            "drivers-nosuch",
            ["--set", 'drivers=["nosuch"]'],
            ["'nosuch': no such virtio driver", "viostor"],
        ),
        (
            "drivers-without-viostor",
            ["--set", 'drivers=["Balloon"]'],
            ["leaves out viostor", "leaves out NetKVM", "Balloon, NetKVM, pvpanic"],
        ),
        (
            "drivers-not-a-name",
            ["--set", 'drivers=["vio stor"]'],
            ["drivers[0]:", "not a driver name"],
        ),
        ("sha2-media-not-a-bool", ["--set", "sha2_media=yes"], ["sha2_media:", "true or false"]),
    ]


def test_bad_driver_settings_exit_2_and_write_nothing(
    capsys: pytest.CaptureFixture[str], tree: Tree, tmp_path: Path
) -> None:
    for name, extra, fragments in _bad(tree, tmp_path):
        out = tmp_path / name
        code, _, stderr = build(capsys, "win2008-x64", tree.root, out, *extra)
        assert code == 2, (name, stderr)
        for fragment in fragments:
            assert fragment in stderr, (name, fragment, stderr)
        assert "Traceback" not in stderr and not out.exists(), name


@pytest.mark.parametrize(
    ("damage", "fragments"),
    [
        (
            "viostor/2k8/amd64/viostor.sys",
            ["viostor/2k8/amd64/viostor.inf is incomplete: viostor.sys"],
        ),
        ("NetKVM/2k8/amd64/netkvm.cat", ["NetKVM/2k8/amd64/netkvm.inf is incomplete: netkvm.cat"]),
    ],
)
def test_an_incomplete_required_package_exits_2(
    capsys: pytest.CaptureFixture[str],
    tree: Tree,
    tmp_path: Path,
    damage: str,
    fragments: list[str],
) -> None:
    remove_file(tree, damage)
    out = tmp_path / "out"
    code, _, stderr = build(capsys, "win2008-x64", tree.root, out)
    assert code == 2
    for fragment in fragments:
        assert fragment in stderr
    assert not out.exists()


def test_a_damaged_2k8_viostor_inf_exits_2_naming_it(
    capsys: pytest.CaptureFixture[str], tree: Tree, tmp_path: Path
) -> None:
    tree.path("viostor/2k8/amd64/viostor.inf").write_bytes(bytes(range(256)) * 4)
    out = tmp_path / "out"
    code, _, stderr = build(capsys, "win2008-x64", tree.root, out)
    assert code == 2
    assert "viostor/2k8/amd64/viostor.inf cannot be read" in stderr
    assert not out.exists()


# Damaged catalogs, each a function of the good bytes, and what the reason says.
DAMAGED_CATALOGS: dict[str, tuple[Any, str]] = {
    "truncated": (lambda good: good[: len(good) // 2], "truncated"),
    "not-pkcs7": (lambda good: b"[Version]\r\nSignature=$Windows NT$\r\n", "not DER-encoded"),
    "a-certificate": (lambda good: signing.certificate_der("ca"), "not DER-encoded"),
    "empty": (lambda good: b"", "empty"),
}


@pytest.mark.parametrize("damage", list(DAMAGED_CATALOGS))
def test_a_damaged_viostor_catalog_exits_2_naming_it(
    capsys: pytest.CaptureFixture[str], tree: Tree, tmp_path: Path, damage: str
) -> None:
    spoil, reason = DAMAGED_CATALOGS[damage]
    catalog = tree.path("viostor/2k8/amd64/viostor.cat")
    catalog.write_bytes(spoil(catalog.read_bytes()))
    out = tmp_path / "out"
    code, stdout, stderr = build(capsys, "win2008-x64", tree.root, out, "--json")
    assert code == 2, stderr
    assert "Traceback" not in stderr
    (problem,) = json.loads(stdout)["error"]["problems"]
    assert problem["key"] == "viostor/2k8/amd64/viostor.cat"
    assert "viostor/2k8/amd64/viostor.cat is not a readable signed catalog" in problem["message"]
    assert reason in problem["message"]
    assert not out.exists()


@pytest.mark.parametrize("damage", list(DAMAGED_CATALOGS))
def test_a_damaged_optional_catalog_leaves_the_package_out(
    capsys: pytest.CaptureFixture[str], tree: Tree, tmp_path: Path, damage: str
) -> None:
    _need("xorriso")
    spoil, reason = DAMAGED_CATALOGS[damage]
    catalog = tree.path("Balloon/2k8/amd64/balloon.cat")
    catalog.write_bytes(spoil(catalog.read_bytes()))
    out = tmp_path / "out"
    code, _, stderr = build(capsys, "win2008-x64", tree.root, out)
    assert code == 0, stderr
    warning = "Balloon is left out: its catalog Balloon/2k8/amd64/balloon.cat cannot be read"
    assert warning in stderr and reason in stderr
    manifest = manifest_of(out)
    assert any(w.startswith(warning) for w in manifest["warnings"])
    assert "Balloon" not in {d["name"] for d in manifest["drivers"]["selected"]}
    assert not [p for p in iso_paths(out / "drivers.iso") if p.lower().startswith("balloon/")]


@pytest.mark.parametrize(
    ("profile", "prerequisite"), [("win2008-x64", "KB4493730"), ("win2008r2-x64", "KB4490628")]
)
def test_a_sha256_only_viostor_for_2008_x64_exits_2_naming_the_update_and_the_setting(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, profile: str, prerequisite: str
) -> None:
    old = write_modern_tree(
        tmp_path / "virtio-win-0.1.185",
        release="0.1.185",
        drivers=("viostor", "NetKVM"),
        oses=("2k8", "2k8R2"),
    )
    out = tmp_path / "out"
    code, stdout, stderr = build(capsys, profile, old.root, out, "--json")
    assert code == 2, stderr
    problems = json.loads(stdout)["error"]["problems"]
    (problem,) = [p for p in problems if "SHA-256 only" in p["message"]]
    assert problem["key"].endswith("/viostor.cat") and "viostor" in problem["message"]
    assert "KB4474419" in problem["message"] and prerequisite in problem["message"]
    assert "sha2_media = true" in problem["hint"]
    assert not out.exists()
