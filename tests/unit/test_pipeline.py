"""The build script (builder/pipeline.py) without a hypervisor: every bad input is refused
before anything is written, a failed write leaves OUT as it was, and a failed define or
install is in the manifest with every problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder import pipeline
from builder.errors import BuildError, InputError, Problem
from builder.media import iso9660
from builder.monitor import NullMonitor
from builder.options import BuildOptions, BuildResult
from builder.vm import existing
from builder.windows.profiles import resolve_profile
from tests.fixtures.out_dir import complete_build, snapshot
from tests.fixtures.virtio_win import PROFILE_OS_FOLDERS, Tree, remove_file, write_modern_tree
from tests.fixtures.windows_dvd import dvd_for
from tests.unit.windows.common import media_of

ENVIRON = {"PVINSTALL_ADMIN_PASSWORD": "Sup3r-secret", "SOURCE_DATE_EPOCH": "1700000000"}


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Tree:
    return write_modern_tree(
        tmp_path_factory.mktemp("vw") / "vw", drivers=["viostor", "NetKVM"], oses=PROFILE_OS_FOLDERS
    )


def build(
    drivers: Path, out: Path, environ: dict[str, str] | None = None, **options: object
) -> BuildResult:
    settings: dict[str, object] = {"profile": "win2008-x64", **options}
    opts = BuildOptions(
        drivers=str(drivers),
        out=out,
        **settings,  # type: ignore[arg-type]
    )
    return pipeline.run_build(opts, NullMonitor(), ENVIRON if environ is None else environ)


def test_a_build_writes_what_its_manifest_lists(tree: Tree, tmp_path: Path) -> None:
    result = build(tree.root, tmp_path / "out")
    names = {o["name"] for o in result.manifest["outputs"]}
    assert names == {
        "autounattend.xml",
        "sysprep-unattend.xml",
        "floppy.img",
        "drivers.iso",
        "domain.xml",
    }
    assert {p.name for p in (tmp_path / "out").iterdir()} == names | {"manifest.json", ".pvinstall"}
    assert complete_build(tmp_path / "out") == result.manifest
    assert result.manifest["domain"]["defined"] is False


def test_a_source_without_a_storage_driver_is_refused_before_writing(
    tmp_path: Path,
) -> None:
    netkvm_only = write_modern_tree(tmp_path / "vw", drivers=["NetKVM"], oses=["2k8"])
    with pytest.raises(InputError) as raised:
        build(netkvm_only.root, tmp_path / "out")
    assert "no viostor driver in" in str(raised.value)
    assert not (tmp_path / "out").exists()


def test_a_bad_source_date_epoch_is_refused_before_writing(tree: Tree, tmp_path: Path) -> None:
    with pytest.raises(InputError) as raised:
        build(tree.root, tmp_path / "out", {**ENVIRON, "SOURCE_DATE_EPOCH": "tomorrow"})
    assert raised.value.problems[0].key == "SOURCE_DATE_EPOCH"
    assert not (tmp_path / "out").exists()


def test_every_input_problem_is_reported_at_once(tmp_path: Path) -> None:
    with pytest.raises(InputError) as raised:
        build(
            tmp_path / "no-such-source",
            tmp_path / "out",
            {"SOURCE_DATE_EPOCH": "1"},
            name="a/b",
            timeout_minutes=0,
        )
    keys = {p.key for p in raised.value.problems}
    assert {"--drivers", "admin_password", "--name", "--timeout"} <= keys


def test_an_incomplete_package_is_refused(tree: Tree, tmp_path: Path) -> None:
    broken = write_modern_tree(tmp_path / "vw", drivers=["viostor", "NetKVM"], oses=["2k8"])
    remove_file(broken, "viostor/2k8/amd64/viostor.sys")
    with pytest.raises(InputError, match=r"viostor\.sys"):
        build(broken.root, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_failed_write_leaves_out_as_it_was(
    tree: Tree, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    build(tree.root, out)
    before = snapshot(out)

    def fail(*_: object, **__: object) -> None:
        raise BuildError("drivers.iso: pycdlib failed: disk full")

    monkeypatch.setattr(iso9660, "write_drivers_iso", fail)
    with pytest.raises(BuildError, match="disk full"):
        build(tree.root, out, sets=("computer_name=OTHER",))
    assert snapshot(out) == before


def test_a_failed_step_is_recorded_with_every_problem() -> None:
    """After define or install fails, the manifest's domain record keeps all of it (the
    real failure is tests/integration/test_virt_cli.py's)."""
    error = InputError.collect(
        [Problem("network", "there is no network x.", "Use user."), Problem("", "and this", None)]
    )
    record: dict[str, object] = {"name": "pv", "defined": True}
    pipeline.record_failure(record, error)
    assert record["error"] == "network: there is no network x. Use user.\nand this"
    assert record["problems"] == [
        {"key": "network", "message": "there is no network x.", "hint": "Use user."},
        {"key": "", "message": "and this", "hint": None},
    ]


# -- the profile and the install DVD ---------------------------------------------------------


def test_a_modern_build_writes_the_answer_iso_and_records_the_image(
    tree: Tree, tmp_path: Path
) -> None:
    dvd = dvd_for("2022")
    result = build(tree.root, tmp_path / "out", profile="win2022-x64", windows_iso=dvd.path)
    names = {o["name"] for o in result.manifest["outputs"]}
    assert names == {
        "autounattend.xml",
        "sysprep-unattend.xml",
        "answer.iso",
        "drivers.iso",
        "install-dvd.qcow2",
        "domain.xml",
    }
    assert result.manifest["install_image"]["name"] == "Windows Server 2022 SERVERSTANDARD"
    assert result.manifest["install_image"]["index"] == 2


def test_without_a_profile_the_dvd_names_it(tree: Tree, tmp_path: Path) -> None:
    result = build(tree.root, tmp_path / "out", profile=None, windows_iso=dvd_for("2019").path)
    assert result.manifest["profile"] == "win2019-x64"


def test_without_a_profile_or_a_dvd_there_is_nothing_to_build(tmp_path: Path) -> None:
    with pytest.raises(InputError) as raised:
        build(tmp_path, tmp_path / "out", profile=None)
    assert raised.value.problems[0].key == "profile"
    assert "no profile was given, and no --windows-iso" in str(raised.value)


def test_a_dvd_problem_is_listed_with_the_setting_problems(tree: Tree, tmp_path: Path) -> None:
    with pytest.raises(InputError) as raised:
        build(
            tree.root,
            tmp_path / "out",
            {"SOURCE_DATE_EPOCH": "1"},
            profile="win2022-x64",
            windows_iso=dvd_for("2022", kind="encrypted").path,
        )
    keys = {p.key for p in raised.value.problems}
    assert {"--windows-iso", "admin_password"} <= keys
    assert not (tmp_path / "out").exists()


def test_the_profile_of_a_medium() -> None:
    assert pipeline.profile_from_media(media_of("2025"), None).name == "win2025-x64"
    with pytest.raises(InputError, match="is for win2025-x64, but --arch says x86"):
        pipeline.profile_from_media(media_of("2025"), "x86")


def test_a_uefi_build_boots_the_dvd_through_the_overlay_and_without_warning(
    tree: Tree, tmp_path: Path
) -> None:
    dvd = dvd_for("2022")
    result = build(tree.root, tmp_path / "out", profile="win2022-x64", windows_iso=dvd.path)
    assert not any("firmware" in w for w in result.manifest["warnings"])
    overlay = tmp_path / "out" / "install-dvd.qcow2"
    record = next(o for o in result.manifest["outputs"] if o["name"] == "install-dvd.qcow2")
    assert record["size"] == overlay.stat().st_size
    # The domain boots the overlay from SATA, as qcow2, after the disk.
    root = existing.parse_xml((tmp_path / "out" / "domain.xml").read_text())
    (cd,) = (d for d in root.iterfind("./devices/disk") if d.find("boot[@order='2']") is not None)
    assert cd.find("source").get("file") == str(overlay)  # type: ignore[union-attr]
    assert cd.find("driver").get("type") == "qcow2"  # type: ignore[union-attr]
    assert cd.find("target").get("bus") == "sata"  # type: ignore[union-attr]
    # A DVD without efisys_noprompt.bin cannot boot UEFI without the prompt: refused,
    # nothing written; with BIOS it boots its BIOS entry.
    bare = dvd_for("2022", noprompt=False)
    with pytest.raises(InputError, match=r"efisys_noprompt\.bin") as raised:
        build(tree.root, tmp_path / "never", profile="win2022-x64", windows_iso=bare.path)
    assert raised.value.problems[0].key == "--windows-iso"
    assert not (tmp_path / "never").exists()
    bios = build(
        tree.root,
        tmp_path / "bios",
        profile="win2022-x64",
        windows_iso=bare.path,
        sets=("firmware=bios",),
    )
    assert (tmp_path / "bios" / "install-dvd.qcow2").is_file()
    assert not any("firmware" in w for w in bios.manifest["warnings"])


def test_every_problem_is_found_in_the_first_run(tree: Tree, tmp_path: Path) -> None:
    """The issue's sequence (vcpus=0 hid a missing network and pool, which hid the PCI
    budget, which hid SOURCE_DATE_EPOCH): all of them in one run, against libvirt's test
    driver (the real libvirtd: tests/integration/test_virt_cli.py)."""
    with pytest.raises(InputError) as raised:
        build(
            tree.root,
            tmp_path / "out",
            {**ENVIRON, "SOURCE_DATE_EPOCH": "yesterday"},
            sets=(
                "vcpus=0",
                "network=nope-net",
                "storage_pool=nope-pool",
                "data_disks=[" + ",".join(["1"] * 27) + "]",
            ),
            define=True,
            connect="test:///default",
        )
    keys = {p.key for p in raised.value.problems}
    assert {"vcpus", "network", "storage_pool", "data_disks", "SOURCE_DATE_EPOCH"} <= keys
    assert not (tmp_path / "out").exists()


def test_both_device_checks_run_with_the_setting_problems(tmp_path: Path) -> None:
    vw = write_modern_tree(tmp_path / "vw", drivers=["viostor", "NetKVM"], oses=["2k3"])
    with pytest.raises(InputError) as raised:
        pipeline.run_build(
            BuildOptions(
                profile="win2003-x86",
                drivers=str(vw.root),
                out=tmp_path / "out",
                sets=(
                    "vcpus=0",
                    "virtio_model=virtio-non-transitional",  # 2003's drivers do not bind it
                    "data_disks=[" + ",".join(["1"] * 27) + "]",
                ),
            ),
            NullMonitor(),
            ENVIRON,
        )
    problems = {p.key: p.message for p in raised.value.problems}
    assert {"vcpus", "virtio_model", "data_disks", "product_key"} <= set(problems)
    assert "needs 29 PCI slots" in problems["data_disks"]
    assert "viostor" in problems["virtio_model"]


def test_a_check_whose_setting_is_wrong_does_not_run(tree: Tree, tmp_path: Path) -> None:
    # A bad virtio_model is said once, by its own check, not again by the driver check.
    with pytest.raises(InputError) as raised:
        build(tree.root, tmp_path / "out", sets=("virtio_model=virtio-scsi",))
    assert [p.key for p in raised.value.problems] == ["virtio_model"]


def test_a_sysprep_failure_on_the_serial_port_fails_the_build(tree: Tree, tmp_path: Path) -> None:
    from builder.answers.postinstall import SYSPREP_FAILED_LINE
    from builder.errors import BuildError

    result = build(tree.root, tmp_path / "out")
    options = BuildOptions(profile="win2008-x64", drivers=str(tree.root), out=tmp_path / "out")
    ctx = pipeline.prepare(options, ENVIRON, NullMonitor())
    try:
        serial = result.out_dir / pipeline.SERIAL_LOG
        serial.write_bytes(b"noise\r\n" * 20000 + SYSPREP_FAILED_LINE.encode() + b"\r\n")
        with pytest.raises(BuildError, match="Sysprep failed in pvinstall-win2008-x64"):
            pipeline.check_generalized(ctx)
        serial.write_bytes(b"PVINSTALL powering off\r\n")
        pipeline.check_generalized(ctx)  # no failure said: nothing to refuse
    finally:
        ctx.close()


@pytest.mark.parametrize(
    ("profile", "iso", "volumes"),
    [
        # 2012 R2 and later: the DVD goes up raw before the overlay rebased onto it.
        ("win2022-x64", "dvd", ("n-answer.iso", "n-drivers.iso", "n-windows.iso",
                                "n@install-dvd.qcow2")),
        ("win2022-x64", None, ("n-answer.iso", "n-drivers.iso")),
        # 2008: the user's ISO is attached as it is.
        ("win2008-x64", "iso", ("n-floppy.img", "n-drivers.iso", "n-windows.iso")),
        ("win2008-x64", None, ("n-floppy.img", "n-drivers.iso")),
        # 2003: the remastered CD replaces the user's, which stays on the client.
        ("win2003-x86", "iso", ("n-floppy.img", "n-drivers.iso", "n-install.iso")),
    ],
)  # fmt: skip
def test_a_remote_build_uploads_the_volumes_its_media_need_in_order(
    profile: str, iso: str | None, volumes: tuple[str, ...]
) -> None:
    windows_iso = dvd_for("2022").path if iso == "dvd" else Path("/x.iso") if iso else None
    assert pipeline.media_volumes(resolve_profile(profile), windows_iso, "n") == volumes
