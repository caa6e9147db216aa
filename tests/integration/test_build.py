"""`pvinstall build` without a hypervisor: the output directory contract, checked with
real tools (fsck.fat, mtools, xorriso), determinism, secrets, and every bad input
refused with exit 2 and nothing written."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from builder import cli
from builder.media import iso9660
from builder.windows.profiles import PROFILES
from tests.fixtures.out_dir import complete_build, snapshot
from tests.fixtures.virtio_win import PROFILE_OS_FOLDERS, make_iso, write_modern_tree
from tests.integration.windows_cd import build_windows_style_cd

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "Sup3r-Secr3t-pw"
KEY_2003 = "QWERT-YUIOP-ASDFG-HJKLZ-XCVBN"
EPOCH = "1700000000"
# The answer files, and the clones' answer file of a generalized build (the default).
ANSWERS = {
    "win2003": {"winnt.sif", "txtsetup.oem", "sysprep.inf"},
    "win2008": {"autounattend.xml", "sysprep-unattend.xml"},
}


def _need(*tools: str) -> None:
    for tool in tools:
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")


@pytest.fixture(scope="module")
def vw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated virtio-win ISO (Rock Ridge, no Joliet, as released today)."""
    _need("xorriso")
    base = tmp_path_factory.mktemp("vw")
    tree = write_modern_tree(base / "tree", oses=PROFILE_OS_FOLDERS)
    return make_iso(tree, base / "virtio-win.iso").path


@pytest.fixture(scope="module")
def cd_x86(tmp_path_factory: pytest.TempPathFactory) -> Path:
    _need("genisoimage")
    return build_windows_style_cd(tmp_path_factory.mktemp("cd") / "w2k3.iso", arch="x86")


@pytest.fixture(autouse=True)
def _environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)
    monkeypatch.setenv("PVINSTALL_ADMIN_PASSWORD", PASSWORD)
    monkeypatch.delenv("VIRTIO_WIN", raising=False)
    monkeypatch.chdir(tmp_path)


def build(
    capsys: pytest.CaptureFixture[str], profile: str, vw: Path, out: Path, *extra: str
) -> tuple[int, str, str]:
    args = ["build", profile, "--drivers", str(vw), "--out", str(out), *extra]
    if profile.startswith("win2003"):
        args += ["--set", f"product_key={KEY_2003}"]
    code = cli.main(args)
    stdout, stderr = capsys.readouterr()
    return code, stdout, stderr


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def volume_id(image: Path) -> str:
    """The volume id as isoinfo reads it from the primary volume descriptor."""
    shown = subprocess.run(
        ["isoinfo", "-d", "-i", str(image)], capture_output=True, text=True, check=True
    ).stdout
    return next(
        line.split(":", 1)[1].strip()
        for line in shown.splitlines()
        if line.startswith("Volume id:")
    )


def files_digest(selected: list[dict[str, Any]]) -> str:
    """docs/design.md §6: the sha256 of each used file's path and sha256, in order."""
    digest = hashlib.sha256()
    for driver in selected:
        for file in driver["files"]:
            digest.update(f"{file['path']}\0{file['sha256']}\n".encode())
    return digest.hexdigest()


def hmac_sha256(path: Path, key: bytes) -> str:
    return hmac.new(key, path.read_bytes(), hashlib.sha256).hexdigest()


def digest_of_bytes(data: bytes, entry: dict[str, object], key: bytes) -> bool:
    if "sha256" in entry:
        return hashlib.sha256(data).hexdigest() == entry["sha256"]
    return hmac.new(key, data, hashlib.sha256).hexdigest() == entry["hmac_sha256"]


def mtools_read(image: Path, path: str) -> bytes:
    return subprocess.run(
        ["mtype", "-i", str(image), f"::{path}"],
        check=True,
        capture_output=True,
        env={**os.environ, "MTOOLS_SKIP_CHECK": "1"},
    ).stdout


def xorriso_read(image: Path, path: str, tmp: Path) -> bytes:
    target = tmp / hashlib.sha256(f"{image}{path}".encode()).hexdigest()
    subprocess.run(
        ["xorriso", "-osirrox", "on", "-indev", str(image), "-extract", "/" + path, str(target)],
        check=True,
        capture_output=True,
    )
    return target.read_bytes()


# -- the output directory -----------------------------------------------------------


FLOPPY_PROFILES = [name for name, p in PROFILES.items() if p.floppy_controller]


@pytest.mark.parametrize("profile", FLOPPY_PROFILES)
def test_build_writes_the_contract_outputs(
    capsys: pytest.CaptureFixture[str], vw: Path, tmp_path: Path, profile: str
) -> None:
    _need("fsck.fat", "mtype", "xorriso")
    out = tmp_path / "out"
    code, stdout, stderr = build(capsys, profile, vw, out)
    assert code == 0, stderr
    assert stdout == ""
    family = "win2003" if profile.startswith("win2003") else "win2008"
    expected = {*ANSWERS[family], "floppy.img", "drivers.iso", "domain.xml", "manifest.json"}
    # The manifest's files and pvinstall's bookkeeping (the generations, the lock, the key).
    assert {p.name for p in out.iterdir()} == expected | {".pvinstall"}
    assert complete_build(out)["profile"] == profile

    # Secrets: the answer file that holds them and the media that carry it are 0600;
    # txtsetup.oem holds none.
    secrets: tuple[str, ...] = (
        ("winnt.sif", "sysprep.inf")
        if family == "win2003"
        else ("autounattend.xml", "sysprep-unattend.xml")
    )
    for name in (*secrets, "floppy.img", "drivers.iso", "manifest.json"):
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o600, name
    assert PASSWORD not in (out / "domain.xml").read_text()

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["profile"] == profile
    assert manifest["source_date_epoch"] == int(EPOCH)
    # The virtio-win ISO is read in place, only what selection needs: it is known by
    # its identity and the digest of the files used (its own sha256 with --hash-inputs).
    info = vw.stat()
    assert manifest["inputs"][0] == {
        "name": "drivers",
        "path": str(vw),
        "kind": "iso",
        "identity": {
            "size": info.st_size,
            "mtime_ns": info.st_mtime_ns,
            "volume_id": volume_id(vw),
        },
        "files_sha256": files_digest(manifest["drivers"]["selected"]),
    }
    selected = {d["name"]: d for d in manifest["drivers"]["selected"]}
    assert {"viostor", "NetKVM"} <= set(selected)
    for driver in selected.values():
        assert driver["inf"] and driver["os_folder"] and driver["arch"]
        assert driver["driver_ver"] and driver["hardware_ids"] and driver["files"]
    outputs = {o["name"]: o for o in manifest["outputs"]}
    assert set(outputs) == expected - {"manifest.json"}
    # What holds or carries the password has no plain digest (it would be a verifier):
    # an HMAC under OUT's own key, which the manifest does not hold.
    key = bytes.fromhex((out / manifest["hmac_key"]).read_text().strip())
    assert stat.S_IMODE((out / manifest["hmac_key"]).stat().st_mode) == 0o600
    assert key.hex() not in (out / "manifest.json").read_text()
    carries_secret = {*secrets, "floppy.img", "drivers.iso"}
    for name, record in outputs.items():
        assert record["path"] == str(out / name)
        assert record["size"] == (out / name).stat().st_size
        if name in carries_secret:
            assert "sha256" not in record, name
            assert record["hmac_sha256"] == hmac_sha256(out / name, key), name
        else:
            assert record["sha256"] == sha256(out / name)
    assert manifest["domain"] == {
        "name": f"pvinstall-{profile}",
        "type": "kvm",
        "xml": "domain.xml",
        "defined": False,
        "installed": False,
    }

    # The floppy: a clean FAT12 whose files are the manifest's, byte for byte.
    subprocess.run(["fsck.fat", "-n", str(out / "floppy.img")], check=True, capture_output=True)
    floppy_files = outputs["floppy.img"]["files"]
    for entry in floppy_files:
        data = mtools_read(out / "floppy.img", entry["path"])
        assert digest_of_bytes(data, entry, key), entry["path"]
    answer_on_floppy = "WINNT.SIF" if family == "win2003" else "Autounattend.xml"
    answer_name = "winnt.sif" if family == "win2003" else "autounattend.xml"
    assert mtools_read(out / "floppy.img", answer_on_floppy) == (out / answer_name).read_bytes()

    # The drivers ISO: every selected driver file, and the answer files.
    iso_files = {e["path"]: e for e in outputs["drivers.iso"]["files"]}
    for entry in list(iso_files.values())[:40]:
        data = xorriso_read(out / "drivers.iso", entry["path"], tmp_path)
        assert digest_of_bytes(data, entry, key), entry["path"]
    driver_shas = {f["sha256"] for d in selected.values() for f in d["files"]}
    assert driver_shas <= {e.get("sha256") for e in iso_files.values()}
    # The answer files on the media are keyed; the driver files and the script are not.
    keyed = {e["path"].lower() for e in [*floppy_files, *iso_files.values()] if "hmac_sha256" in e}
    assert keyed and all(p.endswith((".sif", ".xml")) for p in keyed), keyed

    # The domain XML the manifest names is the one --print-xml prints.
    code, printed, _ = build(capsys, profile, vw, out, "--print-xml")
    assert code == 0 and printed == (out / "domain.xml").read_text()


def test_2003_with_its_cd_writes_a_remastered_install_iso(
    capsys: pytest.CaptureFixture[str], vw: Path, cd_x86: Path, tmp_path: Path
) -> None:
    _need("xorriso")
    out = tmp_path / "out"
    code, _, stderr = build(capsys, "win2003-x86", vw, out, "--windows-iso", str(cd_x86))
    assert code == 0, stderr
    assert stat.S_IMODE((out / "install.iso").stat().st_mode) == 0o600
    manifest = json.loads((out / "manifest.json").read_text())
    # The CD is hashed while the remaster copies it (read once).
    info = cd_x86.stat()
    assert {
        "name": "windows_iso",
        "path": str(cd_x86),
        "kind": "iso",
        "sha256": sha256(cd_x86),
        "identity": {
            "size": info.st_size,
            "mtime_ns": info.st_mtime_ns,
            "volume_id": volume_id(cd_x86),
        },
    } in manifest["inputs"]
    record = next(o for o in manifest["outputs"] if o["name"] == "install.iso")
    by_path = {f["path"].upper(): f for f in record["files"]}
    assert {"I386/TXTSETUP.SIF", "I386/VIOSTOR.SYS"} <= set(by_path)
    sif = xorriso_read(out / "install.iso", "I386/TXTSETUP.SIF", tmp_path)
    assert hashlib.sha256(sif).hexdigest() == by_path["I386/TXTSETUP.SIF"]["sha256"]
    assert b"viostor" in sif.lower()
    assert iso9660.read_volume_info(out / "install.iso") is not None
    # The domain boots setup from the remastered copy, not from the user's CD.
    xml = (out / "domain.xml").read_text()
    assert str(out / "install.iso") in xml and str(cd_x86) not in xml


def build_in_a_process(vw: Path, cd: Path, out: Path, **env: str) -> dict[str, bytes]:
    """`python -m builder build` in a process of its own into `out`; every output, by
    name (the next build into the same `out` replaces them)."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "builder",
            "build",
            "win2003-x86",
            "--drivers",
            str(vw),
            "--windows-iso",
            str(cd),
            "--out",
            str(out),
            "--set",
            f"product_key={KEY_2003}",
            "--set",
            "computer_name=GOLD",
            # Built again for real: unchanged inputs would otherwise reuse OUT's build.
            "--no-cache",
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
        env={**os.environ, "SOURCE_DATE_EPOCH": EPOCH, "PVINSTALL_ADMIN_PASSWORD": PASSWORD, **env},
    )
    assert done.returncode == 0, done.stderr
    return {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.name != ".pvinstall"}


def without_keyed_digests(document: object) -> object:
    """A manifest with its keyed digests (OUT's own key) taken out."""
    if isinstance(document, dict):
        return {k: without_keyed_digests(v) for k, v in document.items() if k != "hmac_sha256"}
    if isinstance(document, list):
        return [without_keyed_digests(v) for v in document]
    return document


def test_two_processes_give_the_same_bytes(vw: Path, cd_x86: Path, tmp_path: Path) -> None:
    """Same inputs and SOURCE_DATE_EPOCH: every output byte for byte the same, from two
    processes with different hash seeds and time zones (nothing may depend on set or
    dict order, the clock or the local time). The manifest too, into the same OUT (its
    keyed digests are under OUT's key); into a fresh OUT only those differ."""
    out = tmp_path / "out"
    first = build_in_a_process(vw, cd_x86, out, PYTHONHASHSEED="1", TZ="UTC")
    second = build_in_a_process(vw, cd_x86, out, PYTHONHASHSEED="4242", TZ="Asia/Kathmandu")
    expected = {
        "winnt.sif",
        "txtsetup.oem",
        "sysprep.inf",
        "floppy.img",
        "drivers.iso",
        "install.iso",
        "domain.xml",
        "manifest.json",
    }
    assert set(first) == set(second) == expected
    assert [name for name in sorted(first) if first[name] != second[name]] == []
    shutil.rmtree(out)  # a fresh OUT has a key of its own
    fresh = build_in_a_process(vw, cd_x86, out, PYTHONHASHSEED="7")
    assert [name for name in sorted(first) if first[name] != fresh[name]] == ["manifest.json"]
    old, new = (json.loads(d["manifest.json"]) for d in (first, fresh))
    assert old != new and without_keyed_digests(old) == without_keyed_digests(new)
    # Another epoch dates the media otherwise.
    third = build_in_a_process(vw, cd_x86, out, SOURCE_DATE_EPOCH=str(int(EPOCH) + 86400))
    for name in ("floppy.img", "drivers.iso", "install.iso"):
        assert third[name] != first[name], name


def test_secrets_stay_out_of_manifest_progress_and_domain(
    capsys: pytest.CaptureFixture[str], vw: Path, tmp_path: Path
) -> None:
    for profile, extra in (
        ("win2003-x64", ()),
        ("win2008-x64", ("--set", f"product_key={KEY_2003}")),
    ):
        for json_flag in ((), ("--json",)):
            out = tmp_path / f"{profile}{len(json_flag)}"
            code, stdout, stderr = build(capsys, profile, vw, out, *extra, *json_flag)
            assert code == 0, stderr
            for public in ("manifest.json", "domain.xml"):
                text = (out / public).read_text()
                assert PASSWORD not in text and KEY_2003 not in text, public
            assert PASSWORD not in stdout + stderr and KEY_2003 not in stdout + stderr
            settings = json.loads((out / "manifest.json").read_text())["settings"]
            assert settings["admin_password"] == "(set)"
            assert settings["product_key"] == "(set)"


def test_json_prints_only_the_manifest(
    capsys: pytest.CaptureFixture[str], vw: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    code, stdout, stderr = build(capsys, "win2008r2-x64", vw, out, "--json")
    assert code == 0
    assert json.loads(stdout) == json.loads((out / "manifest.json").read_text())
    events = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    assert events and all("event" in e for e in events)


def test_a_rebuild_replaces_the_outputs_and_keeps_other_files(
    capsys: pytest.CaptureFixture[str], vw: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert build(capsys, "win2008-x64", vw, out)[0] == 0
    before = (out / "floppy.img").stat().st_ino
    assert build(capsys, "win2008-x64", vw, out, "--set", "computer_name=OTHER")[0] == 0
    assert (out / "floppy.img").stat().st_ino != before  # renamed into place, not rewritten
    assert (out / "notes.txt").read_text() == "mine"
    assert not [p for p in out.iterdir() if p.name.startswith(".pvinstall-")]


# -- bad input: exit 2, a sentence naming the setting, nothing written ---------------


def _bad_inputs(vw: Path, cd_x86: Path, tmp_path: Path) -> list[tuple[str, list[str], str]]:
    not_iso = tmp_path / "not.iso"
    not_iso.write_bytes(b"\0" * 65536)
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    cd_x64_profile = "win2003-x64"
    return [
        ("win2008-x64", ["--set", "computer_name=THIS-NAME-IS-TOO-LONG"], "computer_name:"),
        ("win2008-x64", ["--set", "colour=blue"], "colour: unknown setting"),
        ("win2008-x64", ["--set", "memory_mib=128"], "below the 512 MiB"),
        (
            "win2008-x64",
            ["--set", "data_disks=[" + ",".join(["1"] * 27) + "]"],
            "needs 29 PCI slots",
        ),
        ("win2003-x86", ["--set", "virtio_model=virtio-non-transitional"], "viostor"),
        ("win2008-x64", ["--set", "virtio_model=virtio-scsi"], "virtio_model:"),
        ("win2008-x64", ["--windows-iso", str(tmp_path / "missing.iso")], "--windows-iso:"),
        ("win2008-x64", ["--windows-iso", str(not_iso)], "not an ISO 9660 image"),
        (cd_x64_profile, ["--windows-iso", str(cd_x86)], "--windows-iso:"),
        ("win2008-x64", ["--install"], "needs the Windows install ISO"),
        ("win2008-x64", ["--name", "a/b"], "not a usable domain name"),
        ("win2008-x64", ["--domain-type", "xen"], "unknown domain type"),
        ("win2008-x64", ["--timeout", "0"], "--timeout:"),
        ("win2008-x64", ["--json", "--print-xml"], "--print-xml:"),
        ("win2008-x64", ["--set", "floppy_size=3.5"], "floppy_size:"),
        ("win2008-x64", ["--drivers", str(tmp_path / "nowhere")], "--drivers:"),
        ("win2008-x64", ["--drivers", str(a_file)], "--drivers:"),
        ("win2008-x64", ["--config", str(tmp_path / "missing.toml")], "missing.toml"),
        ("nt4", [], "nt4"),
        ("win2008-x64", ["--connect", "::::", "--define"], "is not a libvirt URI"),
    ]


def test_bad_input_exits_2_and_writes_nothing(
    capsys: pytest.CaptureFixture[str], vw: Path, cd_x86: Path, tmp_path: Path
) -> None:
    for profile, extra, fragment in _bad_inputs(vw, cd_x86, tmp_path):
        out = tmp_path / "never"
        code, _, stderr = build(capsys, profile, vw, out, *extra)
        assert (code, fragment in stderr) == (2, True), (profile, extra, stderr)
        assert "Traceback" not in stderr
        assert not out.exists(), (profile, extra)


def test_every_problem_is_listed_at_once(
    capsys: pytest.CaptureFixture[str], vw: Path, tmp_path: Path
) -> None:
    code, stdout, _ = build(
        capsys,
        "win2008-x64",
        vw,
        tmp_path / "o",
        "--json",
        "--set",
        "computer_name=x y",
        "--set",
        "vcpus=0",
        "--timeout",
        "-1",
        "--name",
        "",
    )
    assert code == 2
    keys = {p["key"] for p in json.loads(stdout)["error"]["problems"]}
    assert {"computer_name", "vcpus", "--timeout", "--name"} <= keys


def test_a_refused_build_leaves_an_existing_out_as_it_was(
    capsys: pytest.CaptureFixture[str], vw: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    assert build(capsys, "win2008-x64", vw, out)[0] == 0
    before = snapshot(out)
    code, _, _ = build(capsys, "win2008-x64", vw, out, "--set", "floppy_size=9")
    assert code == 2
    assert snapshot(out) == before


def test_interrupted_while_writing_exits_130_and_leaves_nothing(
    capsys: pytest.CaptureFixture[str], vw: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(*_: object, **__: object) -> None:
        raise KeyboardInterrupt

    # Ctrl-C arrives while the drivers ISO is being written (after the floppy).
    monkeypatch.setattr(iso9660, "write_drivers_iso", interrupted)
    out = tmp_path / "out"
    code, _, stderr = build(capsys, "win2008-x64", vw, out)
    assert code == 130 and "interrupted" in stderr
    assert not out.exists()


def test_the_keyed_digests_check_out_with_openssl_and_the_config_file_is_keyed(
    capsys: pytest.CaptureFixture[str], vw: Path, tmp_path: Path
) -> None:
    """The manifest's HMACs are what `openssl dgst -mac HMAC` computes with OUT's key (the
    way docs/design.md tells a reader to check them), and the --config file, which may
    hold the password, has no plain digest either."""
    _need("openssl")
    config = tmp_path / "settings.toml"
    config.write_text(f'admin_password = "{PASSWORD}"\ncomputer_name = "KEYED"\n')
    out = tmp_path / "out"
    code, _, stderr = build(capsys, "win2008-x64", vw, out, "--config", str(config))
    assert code == 0, stderr
    manifest = complete_build(out)
    key = (out / manifest["hmac_key"]).read_text().strip()
    for record in manifest["outputs"]:
        if "hmac_sha256" not in record:
            continue
        done = subprocess.run(
            ["openssl", "dgst", "-sha256", "-mac", "HMAC", "-macopt", f"hexkey:{key}",
             str(out / record["name"])],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        assert done.stdout.split()[-1] == record["hmac_sha256"], record["name"]
    (entry,) = [i for i in manifest["inputs"] if i["name"] == "config"]
    assert "sha256" not in entry and sha256(config) not in json.dumps(manifest)
    assert entry["hmac_sha256"] == hmac_sha256(config, bytes.fromhex(key))
    # No plain digest of anything that carries the password is anywhere in the manifest.
    for secret in ("autounattend.xml", "floppy.img", "drivers.iso"):
        assert sha256(out / secret) not in json.dumps(manifest), secret


def test_an_inf_description_with_a_registered_sign_reaches_2003_setup(
    capsys: pytest.CaptureFixture[str], cd_x86: Path, tmp_path: Path
) -> None:
    """Issue 18's "(R) is reported as a damaged Windows ISO": a description with a cp1252
    character goes into txtsetup.oem and TXTSETUP.SIF as that byte, and the build says
    nothing about the ISO."""
    _need("xorriso")
    tree = write_modern_tree(tmp_path / "vw", drivers=("viostor", "NetKVM"), oses=("2k3",))
    inf = tree.path("viostor/2k3/x86/viostor.inf")
    plain = b'RHELScsi.DeviceDesc = "Red Hat VirtIO SCSI controller"'
    assert plain in inf.read_bytes()
    inf.write_bytes(inf.read_bytes().replace(plain, plain[:-1] + b' \xae"'))  # cp1252 (R)
    out = tmp_path / "out"
    code, _, stderr = build(capsys, "win2003-x86", tree.root, out, "--windows-iso", str(cd_x86))
    assert code == 0, stderr
    assert "damaged" not in stderr
    described = b"Red Hat VirtIO SCSI controller \xae"
    assert described in (out / "txtsetup.oem").read_bytes()
    assert described in xorriso_read(out / "install.iso", "I386/TXTSETUP.SIF", tmp_path)
