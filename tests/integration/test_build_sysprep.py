"""Generalized builds: Sysprep of 2003 out of the CD's DEPLOY.CAB onto the remastered CD,
the clones' answer file on its medium, and what is refused.

Oracles: the cabinets are real MSZIP cabinets made by gcab and listed by cabextract;
the remastered CD is read back with xorriso (not pvinstall's ISO code); sysprep.inf is
read with the answer tests' own INI reader; the password appears in no log and, as a
digest, in no manifest.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from builder import cli
from builder.answers.unattend import (
    ACCOUNT_PASSWORD_SUFFIX,
    ADMIN_PASSWORD_SUFFIX,
    encode_password,
)
from builder.windows.profiles import PROFILES
from tests.fixtures.virtio_win import PROFILE_OS_FOLDERS, make_iso, write_modern_tree
from tests.integration import probe
from tests.integration.windows_cd import build_windows_style_cd
from tests.unit.answers.common import read_ini, section, unquote

pytestmark = pytest.mark.integration

EPOCH = "1700000000"
PASSWORD = "Sysprep-Passw0rd"
KEY_2003 = "ABCDE-FGHIJ-KLMNO-PQRST-UVWXY"


@pytest.fixture(scope="module")
def vw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("vw")
    tree = write_modern_tree(base / "tree", oses=PROFILE_OS_FOLDERS)
    return make_iso(tree, base / "virtio-win.iso").path


@pytest.fixture(autouse=True)
def _environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)
    monkeypatch.setenv("PVINSTALL_ADMIN_PASSWORD", PASSWORD)
    monkeypatch.delenv("VIRTIO_WIN", raising=False)
    monkeypatch.chdir(tmp_path)


def build(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main(["build", *args])
    stdout, stderr = capsys.readouterr()
    return code, stdout, stderr


def xorriso_read(image: Path, path: str, tmp: Path) -> bytes:
    target = tmp / hashlib.sha256(f"{image}{path}".encode()).hexdigest()
    subprocess.run(
        ["xorriso", "-osirrox", "on", "-indev", str(image), "-extract", "/" + path, str(target)],
        check=True,
        capture_output=True,
    )
    return target.read_bytes()


def cabextract_members(cabinet: bytes, tmp: Path) -> set[str]:
    path = tmp / "listed.cab"
    path.write_bytes(cabinet)
    done = subprocess.run(
        ["cabextract", "-l", "-q", str(path)], check=True, capture_output=True, text=True
    )
    return {line.rsplit("|", 1)[1].strip() for line in done.stdout.splitlines()[2:] if "|" in line}


@pytest.mark.parametrize("arch", ["x86", "amd64"])
def test_2003_takes_sysprep_from_deploy_cab_onto_the_remastered_cd(
    capsys: pytest.CaptureFixture[str], vw: Path, tmp_path: Path, arch: probe.Arch
) -> None:
    profile = "win2003-x86" if arch == "x86" else "win2003-x64"
    cd = build_windows_style_cd(tmp_path / "w2k3.iso", arch=arch)
    out = tmp_path / "out"
    code, _, stderr = build(
        capsys,
        profile,
        "--drivers",
        str(vw),
        "--windows-iso",
        str(cd),
        "--out",
        str(out),
        "--set",
        f"product_key={KEY_2003}",
        "--set",
        'clone_first_logon_commands=["net time /set /y"]',
    )
    assert code == 0, stderr
    # The fixture's cabinet is a real one, with more members than Sysprep needs.
    cabinet = xorriso_read(cd, probe.DEPLOY_CAB, tmp_path)
    assert cabextract_members(cabinet, tmp_path) == set(probe.DEPLOY_MEMBERS)
    install = out / "install.iso"
    for name in ("sysprep.exe", "setupcl.exe", "factory.exe"):
        on_cd = xorriso_read(install, f"$OEM$/$1/sysprep/{name.upper()}", tmp_path)
        assert on_cd == probe.DEPLOY_MEMBERS[name], name
    listing = subprocess.run(
        ["xorriso", "-indev", str(install), "-find", "/$OEM$/$1/sysprep", "-type", "f"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert "SETUPMGR" not in listing and "DEPLOY.CHM" not in listing
    # sysprep.inf on the CD is OUT's, which answers Mini-Setup.
    inf = xorriso_read(install, "$OEM$/$1/sysprep/SYSPREP.INF", tmp_path)
    assert inf == (out / "sysprep.inf").read_bytes()
    ini = read_ini(inf)
    assert unquote(section(ini, "GuiUnattended")["AdminPassword"]) == PASSWORD
    assert section(ini, "UserData")["ComputerName"] == "*"
    assert unquote(section(ini, "UserData")["ProductKey"]) == KEY_2003
    assert section(ini, "Unattended")["DriverSigningPolicy"] == "Ignore"
    assert unquote(section(ini, "GuiRunOnce")["Command0"]) == "net time /set /y"
    assert b"\r\n" in inf and b"\n" not in inf.replace(b"\r\n", b"")
    # The post-install script ends with Sysprep's reseal.
    script = xorriso_read(out / "drivers.iso", "POSTINST.CMD", tmp_path).decode("ascii")
    assert '"%SystemDrive%\\sysprep\\sysprep.exe" -reseal -mini -quiet -shutdown' in script

    # Secrets: nowhere in the progress output, no plain digest of the files that hold them.
    manifest = json.loads((out / "manifest.json").read_text())
    assert PASSWORD not in stderr and PASSWORD not in json.dumps(manifest)
    text = json.dumps(manifest)
    for name in ("sysprep.inf", "winnt.sif", "install.iso"):
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() not in text, name
    record = next(o for o in manifest["outputs"] if o["name"] == "install.iso")
    files = {f["path"]: f for f in record["files"]}
    sysprep_inf = files["$OEM$/$1/sysprep/SYSPREP.INF"]
    assert "hmac_sha256" in sysprep_inf and "sha256" not in sysprep_inf
    exe = files["$OEM$/$1/sysprep/SYSPREP.EXE"]
    assert exe["sha256"] == hashlib.sha256(probe.DEPLOY_MEMBERS["sysprep.exe"]).hexdigest()


def test_a_2003_cd_without_deploy_cab_is_refused_unless_generalize_is_false(
    capsys: pytest.CaptureFixture[str], vw: Path, tmp_path: Path
) -> None:
    cd = build_windows_style_cd(tmp_path / "w2k3.iso", arch="x86", deploy_cab=False)
    out = tmp_path / "out"
    base = ["win2003-x86", "--drivers", str(vw), "--windows-iso", str(cd), "--out", str(out)]
    base += ["--set", f"product_key={KEY_2003}"]
    code, _, stderr = build(capsys, *base)
    assert code == 2
    assert "has no SUPPORT\\TOOLS\\DEPLOY.CAB" in stderr
    assert "generalize = false" in stderr
    assert not out.exists()  # nothing half-written
    code, _, stderr = build(capsys, *base, "--set", "generalize=false")
    assert code == 0, stderr
    assert not (out / "sysprep.inf").exists()
    script = xorriso_read(out / "drivers.iso", "POSTINST.CMD", tmp_path).decode("ascii")
    assert "sysprep" not in script.lower() and script.rstrip().endswith("shutdown -s -t 0")


@pytest.mark.parametrize(
    ("members", "said"),
    [
        ({"setupcl.exe": b"MZ", "factory.exe": b"MZ"}, "sysprep.exe in SUPPORT\\TOOLS"),
        ({"sysprep.exe": b"MZ", "factory.exe": b"MZ"}, "setupcl.exe in SUPPORT\\TOOLS"),
        (None, "not a cabinet cabextract can read"),
    ],
)
def test_a_cabinet_without_sysprep_or_a_damaged_one_is_refused(
    capsys: pytest.CaptureFixture[str],
    vw: Path,
    tmp_path: Path,
    members: dict[str, bytes] | None,
    said: str,
) -> None:
    tree = tmp_path / "tree"
    probe.fake_2003_tree(tree, arch="x86", deploy_cab=False)
    cab = tree / probe.DEPLOY_CAB
    cab.parent.mkdir(parents=True)
    if members is None:
        cab.write_bytes(b"MSCF" + bytes(60))  # a header and nothing behind it
    else:
        probe.make_cabinet(members, cab)
    (tree / "BOOT").mkdir()
    (tree / "BOOT" / "ETFSBOOT.COM").write_bytes(bytes(2046) + b"\x55\xaa")
    cd = tmp_path / "cd.iso"
    subprocess.run(
        [
            *("genisoimage", "-quiet", "-o", str(cd), "-N", "-relaxed-filenames", "-J", "-D"),
            *("-b", "BOOT/ETFSBOOT.COM", "-no-emul-boot", "-boot-load-size", "4", str(tree)),
        ],
        check=True,
        capture_output=True,
    )
    out = tmp_path / "out"
    code, _, stderr = build(
        capsys,
        "win2003-x86",
        "--drivers",
        str(vw),
        "--windows-iso",
        str(cd),
        "--out",
        str(out),
        "--set",
        f"product_key={KEY_2003}",
    )
    assert code == 2, stderr
    assert said in stderr and "--windows-iso" in stderr
    assert not out.exists()


@pytest.mark.parametrize("profile", ["win2008-x64", "win2008r2-x64", "win2022-x64"])
def test_the_clones_answer_file_is_on_drivers_iso_and_sysprep_ends_the_script(
    capsys: pytest.CaptureFixture[str], vw: Path, tmp_path: Path, profile: str
) -> None:
    out = tmp_path / "out"
    args = [profile, "--drivers", str(vw), "--out", str(out)]
    if PROFILES[profile].firmwares != (PROFILES[profile].firmware,):
        args += ["--set", "firmware=bios"]
    code, _, stderr = build(capsys, *args)
    assert code == 0, stderr
    # The password, in clear or as either unattend encoding, is in no log and no
    # manifest; the files that hold it have no plain digest there.
    manifest_text = (out / "manifest.json").read_text()
    for secret in (
        PASSWORD,
        encode_password(PASSWORD, ADMIN_PASSWORD_SUFFIX),
        encode_password(PASSWORD, ACCOUNT_PASSWORD_SUFFIX),
    ):
        assert secret not in stderr and secret not in manifest_text
    for name in ("sysprep-unattend.xml", "autounattend.xml", "drivers.iso"):
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() not in manifest_text
    on_disc = xorriso_read(out / "drivers.iso", "SYSPREP.XML", tmp_path)
    assert on_disc == (out / "sysprep-unattend.xml").read_bytes()
    assert oct((out / "sysprep-unattend.xml").stat().st_mode & 0o777) == "0o600"
    script = xorriso_read(out / "drivers.iso", "POSTINST.CMD", tmp_path).decode("ascii")
    vm_mode = " /mode:vm" if PROFILES[profile].sysprep.vm_mode else ""
    assert (
        '"%WINDIR%\\System32\\sysprep\\sysprep.exe" /generalize /oobe /shutdown /quiet'
        f"{vm_mode} /unattend:%PV_DRIVE%\\SYSPREP.XML"
    ) in script
    # Not on the answer medium: Setup has no use for it there.
    if (out / "floppy.img").exists():
        listing = subprocess.run(
            ["mdir", "-b", "-i", str(out / "floppy.img"), "::"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    else:
        listing = subprocess.run(
            ["xorriso", "-indev", str(out / "answer.iso"), "-find", "/", "-type", "f"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    assert "SYSPREP" not in listing.upper()
