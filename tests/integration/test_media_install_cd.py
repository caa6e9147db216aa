"""The remastered Windows Server 2003 install CD (builder/media/iso9660.py remaster_install_cd).

Two fake CDs per architecture: the probe's bootable one (isolinux, a visible boot file
with a boot-info table) and a retail-shaped one (a hidden 2048-byte boot image without
a table, load segment 0x07C0). xorriso's El Torito report and isoinfo are the oracles:
the boot record must survive exactly, TXTSETUP.SIF must be patched, VIOSTOR.SYS,
WINNT.SIF and the $OEM$ driver folders added with the CD's naming conventions, and the
rest of the CD untouched. Bad Windows ISOs are refused before anything is written.
"""

from __future__ import annotations

import codecs
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from builder.errors import InputError
from builder.media.iso9660 import inspect_install_cd, remaster_install_cd
from builder.media.slipstream import InstallCdPlan, patch_txtsetup_sif, plan_install_cd
from builder.virtio.facts import load_driver_facts
from builder.virtio.packages import scan_source
from builder.virtio.selection import DriverSet, select_drivers
from builder.virtio.source import DirectorySource
from builder.windows.profiles import PROFILES, Arch
from tests.fixtures.virtio_win import Tree, make_iso, tool_available, write_modern_tree
from tests.integration import probe
from tests.integration.windows_cd import LOAD_SEGMENT, build_windows_style_cd

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not all(tool_available(t) for t in ("isoinfo", "xorriso", "genisoimage")),
        reason="needs isoinfo and genisoimage (genisoimage) and xorriso",
    ),
]

EPOCH = 1_700_000_000
REPO = Path(__file__).resolve().parents[2]
PROFILE: dict[Arch, str] = {"x86": "win2003-x86", "amd64": "win2003-x64"}
SETUP_DIR = {"x86": "I386", "amd64": "AMD64"}
WINNT = b'[Data]\r\nUnattendedInstall="Yes"\r\n'


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Tree:
    return write_modern_tree(tmp_path_factory.mktemp("vw") / "virtio-win", oses=["2k3"])


@pytest.fixture(scope="module")
def drivers(tree: Tree) -> dict[Arch, DriverSet]:
    scan = scan_source(DirectorySource(tree.root), load_driver_facts())
    return {arch: select_drivers(scan, PROFILES[name]) for arch, name in PROFILE.items()}


class FakeCds:
    """The fake CDs, built on first use: ("probe" | "retail", arch) -> image. The probe's
    needs its boot files (Debian packages, cached); without them only its tests skip."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.made: dict[tuple[str, Arch], Path] = {}

    def __getitem__(self, key: tuple[str, Arch]) -> Path:
        if key not in self.made:
            kind, arch = key
            out = self.directory / f"{kind}-{arch}.iso"
            if kind == "retail":
                self.made[key] = build_windows_style_cd(out, arch=arch)
            else:
                try:
                    self.made[key] = probe.build_fake_2003_cd(
                        probe.DEFAULT_CACHE_DIR, out, arch=arch
                    )
                except probe.ProbeBuildError as exc:
                    pytest.skip(f"cannot build the probe's boot files: {exc}")
        return self.made[key]


@pytest.fixture(scope="module")
def cds(tmp_path_factory: pytest.TempPathFactory) -> FakeCds:
    return FakeCds(tmp_path_factory.mktemp("cds"))


def plan_for(drivers: dict[Arch, DriverSet], arch: Arch) -> InstallCdPlan:
    return plan_install_cd(drivers[arch], {"winnt.sif": WINNT, "txtsetup.oem": b""})


def run(*argv: str) -> str:
    done = subprocess.run(argv, capture_output=True, check=False)
    assert done.returncode == 0, (argv, done.stderr)
    return done.stdout.decode("utf-8", "replace")


def el_torito(image: Path) -> dict[str, str]:
    """The first boot image as `xorriso -report_el_torito plain` reports it."""
    report = run("xorriso", "-indev", str(image), "-report_el_torito", "plain")
    fields: dict[str, str] = {}
    for line in report.splitlines():
        if line.startswith("El Torito boot img :"):
            (_, platform, bootable, emulation, segment, _, size, lba) = line.split(":", 1)[
                1
            ].split()
            fields.update(
                platform=platform,
                bootable=bootable,
                emulation=emulation,
                segment=segment,
                size=size,
                lba=lba,
            )
        elif line.startswith("El Torito img opts :"):
            fields["options"] = line.split(":", 1)[1]
    return fields


def boot_image_bytes(image: Path, lba: int) -> bytes:
    with image.open("rb") as handle:
        handle.seek(lba * 2048)
        return handle.read(2048)


def iso_listing(image: Path, *namespace: str) -> list[str]:
    return run("isoinfo", "-f", *namespace, "-i", str(image)).splitlines()


def extract(image: Path, path: str, *namespace: str) -> bytes:
    done = subprocess.run(
        ["isoinfo", *namespace, "-i", str(image), "-x", path], capture_output=True, check=True
    )
    return done.stdout


@pytest.mark.parametrize("kind", ["probe", "retail"])
@pytest.mark.parametrize("arch", ["x86", "amd64"])
def test_remastered_cd(
    cds: FakeCds,
    drivers: dict[Arch, DriverSet],
    tree: Tree,
    tmp_path: Path,
    kind: str,
    arch: Arch,
) -> None:
    source_cd = cds[kind, arch]
    plan = plan_for(drivers, arch)
    info = inspect_install_cd(source_cd, PROFILES[PROFILE[arch]], plan)
    setup = SETUP_DIR[arch]
    assert (info.arch, info.setup_dir, info.joliet, info.rock_ridge, info.version_suffix) == (
        arch,
        setup,
        True,
        False,
        False,
    )
    out = tmp_path / "install.iso"
    with DirectorySource(tree.root) as source:
        remaster_install_cd(source_cd, out, plan, source, epoch=EPOCH)

    # El Torito: same platform, no emulation, load segment and 4 sectors, same image.
    before, after = el_torito(source_cd), el_torito(out)
    assert (after["platform"], after["bootable"], after["emulation"], after["size"]) == (
        "BIOS",
        "y",
        "none",
        "4",
    )
    assert after["segment"] == before["segment"]
    if kind == "retail":
        assert int(after["segment"], 16) == LOAD_SEGMENT
    old_boot = boot_image_bytes(source_cd, int(before["lba"]))
    new_boot = boot_image_bytes(out, int(after["lba"]))
    if "boot-info-table" in before.get("options", ""):
        # isolinux's boot-info table (bytes 8-63) records where the image now lies.
        assert "boot-info-table" in after["options"]
        assert new_boot[:8] == old_boot[:8] and new_boot[64:] == old_boot[64:]
    else:
        assert new_boot == old_boot

    # ISO 9660 names: the new ones without ';1', like the rest of this CD.
    names = iso_listing(out)
    assert not [n for n in names if ";" in n]
    assert set(iso_listing(source_cd)) <= set(names)
    for path in (
        f"/{setup}/VIOSTOR.SYS",
        f"/{setup}/WINNT.SIF",
        "/$OEM$/$1/DRIVERS/VIOSTOR",
        "/$OEM$/$1/DRIVERS/NETKVM/NETKVM.INF",
    ):
        assert path in names
    # Joliet names, which Windows reads, keep the drivers' own spelling.
    joliet = set(iso_listing(out, "-J"))
    for driver in drivers[arch].selected:
        for file in driver.files:
            name = file.path.rpartition("/")[2]
            joliet_path = f"/$OEM$/$1/Drivers/{driver.name}/{name}"
            assert joliet_path in joliet
            assert extract(out, joliet_path, "-J") == tree.path(file.path).read_bytes()
    assert {f"/{setup}/VIOSTOR.SYS", f"/{setup}/WINNT.SIF"} <= joliet

    # The driver is the build for the CD's architecture; WINNT.SIF is the answer file.
    sys_path = f"viostor/2k3/{arch}/viostor.sys"
    assert extract(out, f"/{setup}/VIOSTOR.SYS") == tree.path(sys_path).read_bytes()
    assert extract(out, f"/{setup}/WINNT.SIF") == WINNT
    # TXTSETUP.SIF is the original with exactly the slipstream edits.
    original = extract(source_cd, f"/{setup}/TXTSETUP.SIF")
    assert extract(out, f"/{setup}/TXTSETUP.SIF") == patch_txtsetup_sif(
        original, drivers[arch].storage, arch
    )
    # Everything else is untouched.
    for path in (f"/{setup}/SETUPLDR.BIN", f"/{setup}/DOSNET.INF", "/AUTORUN.INF"):
        assert extract(out, path) == extract(source_cd, path)
    assert run("isoinfo", "-d", "-i", str(out)).count("Joliet with UCS level 3 found") == 1


@pytest.mark.parametrize("kind", ["probe", "retail"])
def test_remastering_a_remastered_cd_changes_nothing(
    cds: FakeCds,
    drivers: dict[Arch, DriverSet],
    tree: Tree,
    tmp_path: Path,
    kind: str,
) -> None:
    plan = plan_for(drivers, "x86")
    first, again = tmp_path / "first.iso", tmp_path / "again.iso"
    with DirectorySource(tree.root) as source:
        remaster_install_cd(cds[kind, "x86"], first, plan, source, epoch=EPOCH)
        inspect_install_cd(first, PROFILES["win2003-x86"], plan)
        remaster_install_cd(first, again, plan, source, epoch=EPOCH)
    assert first.read_bytes() == again.read_bytes()


@pytest.mark.parametrize(
    ("version_suffix", "rock_ridge"), [(True, False), (True, True), (False, True)]
)
def test_new_names_follow_the_cd(
    drivers: dict[Arch, DriverSet],
    tree: Tree,
    tmp_path: Path,
    version_suffix: bool,
    rock_ridge: bool,
) -> None:
    cd = build_windows_style_cd(
        tmp_path / "odd.iso", arch="amd64", version_suffix=version_suffix, rock_ridge=rock_ridge
    )
    plan = plan_for(drivers, "amd64")
    info = inspect_install_cd(cd, PROFILES["win2003-x64"], plan)
    assert (info.version_suffix, info.rock_ridge) == (version_suffix, rock_ridge)
    out = tmp_path / "install.iso"
    remaster_install_cd(cd, out, plan, DirectorySource(tree.root), epoch=EPOCH)
    names = set(iso_listing(out))
    version = ";1" if version_suffix else ""
    assert f"/AMD64/VIOSTOR.SYS{version}" in names
    assert f"/$OEM$/$1/DRIVERS/VIOSTOR/VIOSTOR.INF{version}" in names
    assert "/$OEM$/$1/DRIVERS" in names  # folders never carry a version
    if rock_ridge:
        rr_names = set(iso_listing(out, "-R"))
        assert "/$OEM$/$1/Drivers/viostor/viostor.inf" in rr_names
        assert "/AMD64/VIOSTOR.SYS" in rr_names
    assert (
        extract(out, f"/AMD64/VIOSTOR.SYS{version}")
        == tree.path("viostor/2k3/amd64/viostor.sys").read_bytes()
    )


def test_a_utf16_txtsetup_sif_stays_utf16(
    drivers: dict[Arch, DriverSet], tree: Tree, tmp_path: Path
) -> None:
    """Issue 18: ASCII lines were inserted into UTF-16 text. The remastered file is
    UTF-16LE with its byte-order mark, every original line kept, the four edits added."""
    cd = build_windows_style_cd(tmp_path / "utf16.iso", arch="x86", txtsetup_utf16=True)
    plan = plan_for(drivers, "x86")
    inspect_install_cd(cd, PROFILES["win2003-x86"], plan)
    out = tmp_path / "install.iso"
    remaster_install_cd(cd, out, plan, DirectorySource(tree.root), epoch=EPOCH)
    original = extract(cd, "/I386/TXTSETUP.SIF")
    patched = extract(out, "/I386/TXTSETUP.SIF")
    assert original.startswith(codecs.BOM_UTF16_LE) and patched.startswith(codecs.BOM_UTF16_LE)
    before = original[2:].decode("utf-16-le").split("\r\n")
    after = patched[2:].decode("utf-16-le").split("\r\n")
    added = [line for line in after if line not in before]
    assert len(after) == len(before) + len(added)
    assert 'viostor = "Red Hat VirtIO SCSI controller"' in added
    assert "viostor = viostor.sys,4" in added
    assert len(added) == 3 + len(drivers["x86"].storage.hardware_ids)


def test_wrong_architecture_is_refused(
    cds: FakeCds,
    drivers: dict[Arch, DriverSet],
    tree: Tree,
    tmp_path: Path,
) -> None:
    pairs: tuple[tuple[Arch, Arch], ...] = (("x86", "amd64"), ("amd64", "x86"))
    for cd_arch, profile_arch in pairs:
        with pytest.raises(InputError) as caught:
            inspect_install_cd(cds["retail", cd_arch], PROFILES[PROFILE[profile_arch]])
        problem = caught.value.problems[0]
        assert problem.key == "--windows-iso"
        assert f"is an {cd_arch} Windows CD ({SETUP_DIR[cd_arch]}\\TXTSETUP.SIF)" in (
            problem.message
        )
        assert f"needs an {profile_arch} CD" in problem.message
        out = tmp_path / "install.iso"
        with pytest.raises(InputError):
            remaster_install_cd(
                cds["retail", cd_arch],
                out,
                plan_for(drivers, profile_arch),
                DirectorySource(tree.root),
                epoch=EPOCH,
            )
        assert not out.exists()


def bad_windows_isos(tmp_path: Path, tree: Tree, good: Path) -> dict[str, tuple[Path, str]]:
    text = tmp_path / "notes.iso"
    text.write_text("this is not a CD image\n" * 2000)
    truncated = tmp_path / "truncated.iso"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    virtio = make_iso(tree, tmp_path / "virtio-win.iso", style="joliet").path
    return {
        "text": (text, "is not an ISO 9660 image"),
        "truncated": (truncated, "is truncated"),
        "virtio-win": (
            virtio,
            "has no I386\\TXTSETUP.SIF, so it is not a Windows Server 2003 "
            "install CD (its root holds: ",
        ),
        "missing": (tmp_path / "nowhere.iso", "does not exist"),
        "directory": (tmp_path, "is not a file"),
    }


@pytest.mark.parametrize("case", ["text", "truncated", "virtio-win", "missing", "directory"])
def test_bad_windows_isos_are_refused_with_a_sentence(
    cds: FakeCds,
    drivers: dict[Arch, DriverSet],
    tree: Tree,
    tmp_path: Path,
    case: str,
) -> None:
    path, fragment = bad_windows_isos(tmp_path, tree, cds["retail", "x86"])[case]
    with pytest.raises(InputError) as caught:
        inspect_install_cd(path, PROFILES["win2003-x86"], plan_for(drivers, "x86"))
    assert caught.value.problems[0].key == "--windows-iso"
    assert fragment in caught.value.problems[0].message
    assert caught.value.problems[0].hint
    out = tmp_path / "out" / "install.iso"
    out.parent.mkdir()
    with pytest.raises(InputError):
        remaster_install_cd(
            path, out, plan_for(drivers, "x86"), DirectorySource(tree.root), epoch=EPOCH
        )
    assert list(out.parent.iterdir()) == []


REMASTER_CHILD = """
import json, resource, sys
from pathlib import Path
from builder.virtio.facts import load_driver_facts
from builder.virtio.packages import scan_source
from builder.virtio.selection import select_drivers
from builder.media.iso9660 import remaster_install_cd
from builder.windows.profiles import PROFILES
from builder.media.slipstream import plan_install_cd
from builder.virtio.source import DirectorySource
source = DirectorySource(Path(sys.argv[3]))
drivers = select_drivers(scan_source(source, load_driver_facts()), PROFILES["win2003-x86"])
plan = plan_install_cd(drivers, {"winnt.sif": b"[Data]\\r\\n"})
remaster_install_cd(Path(sys.argv[1]), Path(sys.argv[2]), plan, source, epoch=1700000000)
print(json.dumps({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""
PAYLOAD = 512 * 2**20
RSS_BOUND_MB = 200


def test_remastering_streams_file_data(tree: Tree, tmp_path: Path) -> None:
    big_cd = build_windows_style_cd(tmp_path / "big.iso", arch="x86", payload_bytes=PAYLOAD)
    out = tmp_path / "install.iso"
    done = subprocess.run(
        [sys.executable, "-c", REMASTER_CHILD, str(big_cd), str(out), str(tree.root)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    peak = json.loads(done.stdout)["peak_rss_mb"]
    assert out.stat().st_size > PAYLOAD
    # A CD's worth of file data passes through; only metadata may stay in memory.
    assert peak < RSS_BOUND_MB, f"peak RSS {peak:.0f} MB while remastering a 512 MB CD"
    assert re.search(r"/I386/DRIVER\.CAB", run("isoinfo", "-f", "-i", str(out)))


@pytest.mark.boot
def test_remastered_cd_boots_and_a_kernel_reads_it_and_the_floppy(
    cds: FakeCds,
    drivers: dict[Arch, DriverSet],
    tree: Tree,
    tmp_path: Path,
) -> None:
    """Boot the remastered probe CD with the answer floppy: El Torito still works, and
    Linux (isofs via Joliet, vfat via long names) reads every added file intact."""
    from builder.config import load_config
    from builder.media import layout
    from builder.media.fat import write_floppy
    from builder.media.plan import MediaInputs, plan_answer_floppy
    from builder.media.slipstream import plan_install_cd
    from tests.integration.libvirt_env import boot_domain, qemu_system_uri, unique_domain_name
    from tests.integration.test_probe import probe_domain_xml

    uri = qemu_system_uri()
    config = load_config(
        PROFILES["win2003-x86"],
        sets=["admin_password=x", "product_key=ABCDE-FGHIJ-KLMNO-PQRST-UVWXY"],
    )
    answers = {"winnt.sif": WINNT, "txtsetup.oem": b"[Disks]\r\n"}
    post = {layout.POSTINSTALL_SCRIPT: b"@echo off\r\n", layout.MARKER_FILE: b"pv\r\n"}
    install_cd = plan_install_cd(drivers["x86"], answers)
    floppy = plan_answer_floppy(MediaInputs(config, drivers["x86"], answers, post))
    cd, floppy_img = tmp_path / "install.iso", tmp_path / "floppy.img"
    with DirectorySource(tree.root) as source:
        remaster_install_cd(cds["probe", "x86"], cd, install_cd, source, epoch=EPOCH)
        write_floppy(floppy, floppy_img, source, epoch=EPOCH, serial=0x1234ABCD)
    xml = probe_domain_xml(
        unique_domain_name("pvmedia"), cdrom=cd, serial=tmp_path / "serial.log", floppy=floppy_img
    )
    result = boot_domain(xml, uri=uri, timeout=180.0)
    report = probe.parse_probe_log(result.serial_log)
    assert result.clean_shutdown, result.describe()
    assert report.ended, result.describe()

    def sha(data: bytes) -> str:
        import hashlib

        return hashlib.sha256(data).hexdigest()

    def content(planned_data: bytes | None, source_path: str | None) -> bytes:
        if planned_data is not None:
            return planned_data
        assert source_path is not None
        return tree.path(source_path).read_bytes()

    seen = report.cdrom_with_label(probe.default_2003_label("x86"))
    assert seen is not None, report.cdroms
    for planned in install_cd.files:
        found = seen.files.get(planned.path)
        assert found is not None, (planned.path, sorted(seen.files))
        assert found.sha256 == sha(content(planned.data, planned.source_path)), planned.path
    sif = patch_txtsetup_sif(probe.fake_txtsetup_sif("x86"), drivers["x86"].storage, "x86")
    assert seen.files["I386/TXTSETUP.SIF"].sha256 == sha(sif)
    assert report.floppy is not None
    assert {p: f.sha256 for p, f in report.floppy.items()} == {
        f.path: sha(content(f.data, f.source_path)) for f in floppy.files
    }
