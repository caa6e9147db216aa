"""`pvinstall build` and `pvinstall inspect` for Windows Server 2012 R2 to 2025, with
fake DVDs made by the real tools (tests/fixtures/windows_dvd.py): the answer ISO and
the drivers ISO read back by xorriso and isoinfo, the domain against libvirt's schema,
the profile chosen from the DVD, and every bad DVD refused with exit 2, nothing
written. No boot: the machine these profiles run on is not built here."""

from __future__ import annotations

import hashlib
import hmac
import json
import stat
import subprocess
from pathlib import Path

import pytest
from lxml import etree

from builder import cli
from builder.windows.profiles import PROFILES
from tests.fixtures.out_dir import read_key
from tests.fixtures.virtio_win import PROFILE_OS_FOLDERS, make_iso, write_modern_tree
from tests.fixtures.windows_dvd import DvdSpec, WimSpec, dvd_for, windows_dvd
from tests.integration.windows_cd import build_windows_style_cd

pytestmark = pytest.mark.integration

PASSWORD = "Sup3r-Secr3t-pw"
EPOCH = "1700000000"
NS = "{urn:schemas-microsoft-com:unattend}"
MODERN = [name for name, p in PROFILES.items() if p.reads_install_image]
RELEASE = {
    "win2012r2-x64": "2012R2",
    "win2016-x64": "2016",
    "win2019-x64": "2019",
    "win2022-x64": "2022",
    "win2025-x64": "2025",
}


@pytest.fixture(scope="module")
def vw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtio-win ISO (Rock Ridge, as released today) with every profile's folder."""
    base = tmp_path_factory.mktemp("vw")
    tree = write_modern_tree(base / "tree", oses=PROFILE_OS_FOLDERS)
    return make_iso(tree, base / "virtio-win.iso").path


@pytest.fixture(autouse=True)
def _environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)
    monkeypatch.setenv("PVINSTALL_ADMIN_PASSWORD", PASSWORD)
    monkeypatch.delenv("VIRTIO_WIN", raising=False)
    monkeypatch.chdir(tmp_path)


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main(list(args))
    stdout, stderr = capsys.readouterr()
    return code, stdout, stderr


def xorriso_files(image: Path) -> dict[str, str]:
    """Every file of an ISO by its Joliet/Rock Ridge path (what Windows reads), via
    xorriso -find, with its size."""
    done = subprocess.run(
        ["xorriso", "-indev", str(image), "-find", "/", "-type", "f", "-exec", "lsdl"],
        check=True,
        capture_output=True,
        text=True,
    )
    found = {}
    for line in done.stdout.splitlines():
        parts = line.split(None, 8)
        if len(parts) == 9 and parts[0].startswith("-"):
            found[parts[8].strip("'").lstrip("/")] = parts[4]
    return found


def xorriso_read(image: Path, path: str, tmp: Path) -> bytes:
    target = tmp / hashlib.sha256(f"{image}{path}".encode()).hexdigest()
    subprocess.run(
        ["xorriso", "-osirrox", "on", "-indev", str(image), "-extract", "/" + path, str(target)],
        check=True,
        capture_output=True,
    )
    return target.read_bytes()


def joliet_names(image: Path) -> list[str]:
    """The Joliet tree as isoinfo lists it (what Windows' CDFS reads)."""
    done = subprocess.run(
        ["isoinfo", "-J", "-f", "-i", str(image)], check=True, capture_output=True, text=True
    )
    return done.stdout.split("\n")


def test_2022_with_its_dvd_writes_the_answer_iso_and_the_drivers_iso(
    capsys: pytest.CaptureFixture[str], vw: Path, tmp_path: Path
) -> None:
    dvd = dvd_for("2022")
    out = tmp_path / "out"
    code, _, stderr = run(
        capsys, "build", "win2022-x64", "--drivers", str(vw), "--windows-iso", str(dvd.path),
        "--out", str(out), "--set", "server_core=true", "--set", "edition=datacenter",
    )  # fmt: skip
    assert code == 0, stderr
    names = {p.name for p in out.iterdir()}
    assert names == {
        ".pvinstall",
        "autounattend.xml",
        "sysprep-unattend.xml",
        "answer.iso",
        "drivers.iso",
        "install-dvd.qcow2",
        "domain.xml",
        "manifest.json",
    }
    for secret in ("autounattend.xml", "sysprep-unattend.xml", "answer.iso", "drivers.iso"):
        assert stat.S_IMODE((out / secret).stat().st_mode) == 0o600, secret
    # The DVD's overlay holds no secret (docs/windows-modern.md §8).
    assert stat.S_IMODE((out / "install-dvd.qcow2").stat().st_mode) != 0o600

    # The answer ISO: Autounattend.xml and $WinPEDriver$ at its root, as Windows reads it.
    answer = out / "answer.iso"
    joliet = joliet_names(answer)
    assert "/Autounattend.xml" in joliet
    assert "/$WinPEDriver$/viostor/viostor.inf" in joliet
    assert "/$WinPEDriver$/NetKVM/netkvm.inf" in joliet
    assert not [n for n in joliet if n.startswith("/$WinPEDriver$/vioscsi")]
    assert (
        xorriso_read(answer, "Autounattend.xml", tmp_path)
        == (out / "autounattend.xml").read_bytes()
    )
    manifest = json.loads((out / "manifest.json").read_text())
    outputs = {o["name"]: o for o in manifest["outputs"]}
    on_answer = {f["path"]: f for f in outputs["answer.iso"]["files"]}
    assert set(on_answer) == set(xorriso_files(answer))
    key = read_key(out)
    assert key is not None
    for path, entry in on_answer.items():
        data = xorriso_read(answer, path, tmp_path)
        if "sha256" in entry:
            assert hashlib.sha256(data).hexdigest() == entry["sha256"], path
        else:  # the answer file: keyed (it holds the password)
            assert path == "Autounattend.xml" and "sha256" not in entry
            assert hmac.new(key, data, hashlib.sha256).hexdigest() == entry["hmac_sha256"]
    # The drivers in $WinPEDriver$ are the selected packages of 2k22, byte for byte.
    viostor = next(d for d in manifest["drivers"]["selected"] if d["name"] == "viostor")
    assert viostor["os_folder"] == "viostor/2k22/amd64"
    assert viostor["decoration"] == "NTamd64.10.0"
    assert {f["sha256"] for f in viostor["files"]} <= {f.get("sha256") for f in on_answer.values()}

    # The drivers ISO: the packages, the post-install step and the installers.
    on_drivers = {f["path"]: f for f in outputs["drivers.iso"]["files"]}
    assert {"POSTINST.CMD", "PVDRIVERS.TAG", "guest-agent/qemu-ga-x86_64.msi"} <= set(on_drivers)
    assert "virtio-win-gt-x64.msi" in on_drivers
    assert set(on_drivers) == set(xorriso_files(out / "drivers.iso"))
    msi = xorriso_read(out / "drivers.iso", "guest-agent/qemu-ga-x86_64.msi", tmp_path)
    assert hashlib.sha256(msi).hexdigest() == on_drivers["guest-agent/qemu-ga-x86_64.msi"]["sha256"]
    assert [i["name"] for i in manifest["drivers"]["installers"]] == ["qemu-ga", "guest-tools"]
    script = (
        xorriso_read(out / "drivers.iso", "POSTINST.CMD", tmp_path).decode("ascii").split("\r\n")
    )
    assert any(line.startswith('pnputil /add-driver "%PV_DRIVE%\\viostor\\2k22') for line in script)
    assert any(
        line.startswith('msiexec /i "%PV_DRIVE%\\guest-agent\\qemu-ga-x86_64.msi"')
        for line in script
    )

    # The answer file installs the image the DVD has for datacenter core, by name, on GPT.
    root = etree.fromstring((out / "autounattend.xml").read_bytes())
    value = root.find(f".//{NS}InstallFrom/{NS}MetaData/{NS}Value")
    assert value is not None and value.text == "Windows Server 2022 SERVERDATACENTERCORE"
    assert [t.text for t in root.iter(f"{NS}Type")] == ["EFI", "MSR", "Primary"]
    assert root.find(f".//{NS}DriverPaths") is None
    assert manifest["install_image"]["index"] == 3
    # The manifest contract (docs/design.md §6).
    assert set(manifest["install_image"]) == {
        "index", "name", "display_name", "edition_id", "installation_type", "evaluation",
        "version", "arch", "languages", "default_language",
    }  # fmt: skip
    assert set(manifest["drivers"]) == {
        "source",
        "storage_bus",
        "selected",
        "installers",
        "rejected",
    }
    for installer in manifest["drivers"]["installers"]:
        assert set(installer) == {"name", "description", "path", "size", "sha256"}
    assert manifest["install_image"]["edition_id"] == "ServerDatacenter"
    assert manifest["settings"]["image_name"] == "Windows Server 2022 SERVERDATACENTERCORE"

    # The domain: libvirt's schema accepts it; the three CD-ROM drives are on SATA.
    done = subprocess.run(
        ["virt-xml-validate", str(out / "domain.xml"), "domain"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    xml = etree.fromstring((out / "domain.xml").read_bytes())
    cdroms = {
        d.find("source").get("file"): d.find("target").get("bus")  # type: ignore[union-attr]
        for d in xml.iterfind("./devices/disk[@device='cdrom']")
    }
    # The DVD through its overlay (the ISO as its backing file).
    assert cdroms == {
        str(out / "install-dvd.qcow2"): "sata",
        str(out / "drivers.iso"): "sata",
        str(out / "answer.iso"): "sata",
    }
    assert xml.find("./devices/disk[@device='floppy']") is None


@pytest.mark.parametrize("profile", MODERN)
def test_without_a_profile_the_dvd_chooses_it(
    capsys: pytest.CaptureFixture[str], vw: Path, tmp_path: Path, profile: str
) -> None:
    dvd = dvd_for(RELEASE[profile])
    out = tmp_path / "out"
    code, stdout, stderr = run(
        capsys, "build", "--drivers", str(vw), "--windows-iso", str(dvd.path), "--out", str(out),
        "--json",
    )  # fmt: skip
    assert code == 0, stderr
    manifest = json.loads(stdout)
    assert manifest["profile"] == profile
    assert manifest["install_image"]["name"] == PROFILES[profile].editions["standard"].image_name
    assert f"profile {profile}" in stderr


def test_an_evaluation_dvd_gets_no_key(
    capsys: pytest.CaptureFixture[str], vw: Path, tmp_path: Path
) -> None:
    dvd = dvd_for("2019", evaluation=True)
    out = tmp_path / "out"
    code, _, stderr = run(
        capsys, "build", "win2019-x64", "--drivers", str(vw), "--windows-iso", str(dvd.path),
        "--out", str(out),
    )  # fmt: skip
    assert code == 0, stderr
    root = etree.fromstring((out / "autounattend.xml").read_bytes())
    key = root.find(f".//{NS}UserData/{NS}ProductKey")
    assert key is not None and key.find(f"{NS}Key") is None
    assert json.loads((out / "manifest.json").read_text())["settings"]["product_key"] == "(none)"


def test_a_tree_without_2k22_builds_with_the_warning_in_the_manifest(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    tree = write_modern_tree(tmp_path / "vw", oses=("2k19", "2k25"))
    out = tmp_path / "out"
    code, _, stderr = run(
        capsys, "build", "win2022-x64", "--drivers", str(tree.root), "--out", str(out)
    )
    assert code == 0, stderr
    warnings = json.loads((out / "manifest.json").read_text())["warnings"]
    assert any(
        "has no 2k22 folder for win2022-x64" in w and "viostor/2k25/amd64" in w for w in warnings
    )


def _bad_dvds(tmp_path: Path) -> list[tuple[str, list[str], str]]:
    cd = build_windows_style_cd(tmp_path / "w2k3.iso", arch="x86")
    return [
        ("win2022-x64", ["--windows-iso", str(dvd_for("2019").path)], "holds Windows 10.0.17763"),
        (
            "win2025-x64",
            ["--windows-iso", str(dvd_for("2022").path)],
            "Use the win2022-x64 profile",
        ),
        ("win2022-x64", ["--windows-iso", str(cd)], "text-mode setup CD"),
        (
            "win2022-x64",
            ["--windows-iso", str(dvd_for("2022", kind="encrypted").path)],
            "encrypted ESD",
        ),
        ("win2022-x64", ["--windows-iso", str(dvd_for("2022", kind="split").path)], "split WIM"),
        (
            "win2022-x64",
            ["--windows-iso", str(dvd_for("2022", kind="truncated").path)],
            "truncated",
        ),
        (
            "win2022-x64",
            ["--windows-iso", str(dvd_for("2022", kind="empty").path)],
            "holds no images",
        ),
        (
            "win2022-x64",
            ["--windows-iso", str(dvd_for("2022", kind="not-a-wim").path)],
            "not a WIM",
        ),
        (
            "win2022-x64",
            ["--windows-iso", str(dvd_for("2022", sources=False).path)],
            "no sources/ folder",
        ),
        (
            "win2022-x64",
            ["--windows-iso", str(dvd_for("2022").path), "--set", "image_index=9"],
            "image_index: 9 is not an image of",
        ),
        (
            "win2022-x64",
            [
                "--windows-iso",
                str(dvd_for("2022").path),
                "--set",
                "image_name=Windows Server 2022 SERVERWEB",
            ],
            "image_name: 'Windows Server 2022 SERVERWEB' is not an image of",
        ),
        (
            "win2022-x64",
            ["--windows-iso", str(dvd_for("2022").path), "--set", "locale=fr-FR"],
            "not a language of the image",
        ),
        ("win2025-x64", ["--set", "firmware=bios"], "firmware:"),
        ("win2025-x64", ["--set", "firmware=bios"], "installs with efi only; 'bios' is refused"),
        # The machine: Secure Boot needs UEFI, 2025 needs POPCNT and SSE4.2.
        (
            "win2022-x64",
            ["--set", "firmware=bios", "--set", "secure_boot=true"],
            "secure_boot: true needs UEFI",
        ),
        (
            "win2012r2-x64",
            ["--set", "firmware=bios", "--set", "secure_boot=true"],
            "SeaBIOS, which has no Secure Boot",
        ),
        ("win2025-x64", ["--set", "cpu_model=qemu64"], "cpu_model: qemu64 is an x86-64-v1 CPU"),
        ("win2025-x64", ["--set", "cpu_model=Penryn"], "without POPCNT, SSE4.2"),
        ("win2025-x64", ["--set", "cpu_model="], "no POPCNT, no SSE4.2"),
        (
            "win2025-x64",
            ["--set", "cpu_model=GraniteRapids"],
            "does not know whether GraniteRapids has them",
        ),
        (
            "win2022-x64",
            ["--set", "cpu_model=host-passthrough", "--domain-type", "qemu"],
            "host-passthrough needs KVM",
        ),
        (
            "win2022-x64",
            ["--windows-iso", str(dvd_for("2022", noprompt=False).path)],
            "has no efi/microsoft/boot/efisys_noprompt.bin",
        ),
        ("win2022-x64", ["--set", "storage_bus=nvme"], "storage_bus:"),
        (
            "",
            ["--windows-iso", str(cd), "--arch", "x64"],
            "is for win2003-x86, but --arch says x64",
        ),
        ("", ["--windows-iso", str(dvd_for("2022", kind="not-a-wim").path)], "not a WIM"),
        ("", [], "no profile was given, and no --windows-iso"),
    ]


def test_a_bad_dvd_or_setting_exits_2_and_writes_nothing(
    capsys: pytest.CaptureFixture[str], vw: Path, tmp_path: Path
) -> None:
    for profile, extra, fragment in _bad_dvds(tmp_path):
        out = tmp_path / "never"
        args = ["build", *([profile] if profile else []), "--drivers", str(vw), "--out", str(out)]
        code, _, stderr = run(capsys, *args, *extra)
        assert (code, fragment in stderr) == (2, True), (profile, extra, stderr)
        assert "Traceback" not in stderr
        assert not out.exists(), (profile, extra)


def test_virtio_scsi_on_2025_builds_with_a_warning(
    capsys: pytest.CaptureFixture[str], vw: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    code, _, stderr = run(
        capsys, "build", "win2025-x64", "--drivers", str(vw), "--out", str(out),
        "--set", "storage_bus=virtio-scsi",
    )  # fmt: skip
    assert code == 0, stderr
    assert "run the same command with --install" not in stderr  # no --windows-iso given
    assert "run the same command with --windows-iso ISO --install" in stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert any("issue 1100" in w for w in manifest["warnings"])
    assert manifest["drivers"]["storage_bus"] == "virtio-scsi"
    joliet = joliet_names(out / "answer.iso")
    assert "/$WinPEDriver$/vioscsi/vioscsi.inf" in joliet
    assert not [n for n in joliet if n.startswith("/$WinPEDriver$/viostor")]
    xml = (out / "domain.xml").read_text()
    assert "<controller type='scsi' index='0' model='virtio-scsi'/>" in xml


# -- pvinstall inspect ---------------------------------------------------------------------


def test_inspect_prints_what_is_on_the_dvd(capsys: pytest.CaptureFixture[str]) -> None:
    dvd = windows_dvd(DvdSpec(wim=WimSpec(release="2025", languages=("en-US", "de-DE"))))
    code, stdout, stderr = run(capsys, "inspect", str(dvd.path), "--json")
    assert code == 0, stderr
    document = json.loads(stdout)
    assert document["profiles"] == ["win2025-x64"] and document["version"] == "10.0.26100"
    assert [(i["index"], i["name"], i["languages"]) for i in document["images"]] == [
        (i.index, i.name, ["en-US", "de-DE"]) for i in dvd.images
    ]
    assert [(b["platform"], b["file"]) for b in document["boot"]] == [
        ("bios", "boot/etfsboot.com"),
        ("uefi", "efi/microsoft/boot/efisys.bin"),
    ]
    assert document["efisys_noprompt"] is True
    code, text, _ = run(capsys, "inspect", str(dvd.path))
    assert code == 0
    assert "Windows 10.0.26100 amd64" in text and "profile: win2025-x64" in text
    assert "Windows Server 2025 SERVERDATACENTERCORE" in text
    assert "uefi  no-emulation, 1 sectors at LBA" in text and "efisys_noprompt.bin: present" in text


def test_inspect_reads_a_2003_cd(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    cd = build_windows_style_cd(tmp_path / "w2k3-x64.iso", arch="amd64")
    code, stdout, stderr = run(capsys, "inspect", str(cd), "--json")
    assert code == 0, stderr
    document = json.loads(stdout)
    assert (document["setup"], document["arch"], document["setup_dir"]) == (
        "text-mode",
        "amd64",
        "AMD64",
    )
    assert document["profiles"] == ["win2003-x64"] and document["version"] == ["5.2"]
    assert "WIN51" in document["tags"] and document["service_pack"] == "SP2"
    code, text, _ = run(capsys, "inspect", str(cd))
    assert code == 0 and "NT 5.2 SP2 amd64, setup in AMD64" in text
    (boot,) = document["boot"]
    assert boot["platform"] == "bios" and boot["file"] is None  # hidden, as on retail CDs


def test_inspect_refuses_what_is_no_windows_medium(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    for path, fragment in (
        (dvd_for("2022", kind="encrypted").path, "encrypted ESD"),
        (tmp_path / "missing.iso", "does not exist"),
    ):
        code, stdout, stderr = run(capsys, "inspect", str(path), "--json")
        assert code == 2 and fragment in stderr
        assert json.loads(stdout)["error"]["problems"][0]["key"] == "--windows-iso"
