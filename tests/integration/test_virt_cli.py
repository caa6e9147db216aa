"""`pvinstall build ... --install` end to end, through the CLI, on the real libvirtd.

The install CD is the boot probe: for 2003 a fake 2003 CD that pvinstall remasters
(so the remastered install.iso must still boot), for 2008 the probe ISO as it is. The
probe powers off like setup's last step (or hangs, for the timeout case).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from builder import cli
from builder.vm import virt
from tests.fixtures.domain_xml import removable_media
from tests.fixtures.out_dir import complete_build, snapshot
from tests.integration import probe
from tests.integration.libvirt_env import unique_domain_name

pytestmark = [pytest.mark.integration, pytest.mark.boot]

KEY_2003 = "product_key=ABCDE-FGHIJ-KLMNO-PQRST-UVWXY"


@pytest.fixture
def name(uri: str) -> Iterator[str]:
    value = unique_domain_name("pvcli")
    yield value
    with virt.connect(uri) as conn:
        virt.remove_domain(conn, value)


def _require_install_flag(capsys: pytest.CaptureFixture[str]) -> None:
    cli.main(["build", "--help"])
    if "--install" not in capsys.readouterr().out:
        pytest.skip("`pvinstall build --install` is not wired into the CLI yet")


def build(
    profile: str, virtio_win: Path, windows_iso: Path, out: Path, name: str, uri: str, *extra: str
) -> int:
    sets = ["--set", "admin_password=Sup3r-secret", "--set", "network=user"]
    if profile.startswith("win2003"):
        sets += ["--set", KEY_2003]
    return cli.main(
        [
            "build",
            profile,
            "--drivers",
            str(virtio_win),
            "--windows-iso",
            str(windows_iso),
            "--out",
            str(out),
            "--name",
            name,
            "--install",
            "--connect",
            uri,
            "--domain-type",
            "qemu",
            *sets,
            *extra,
        ]
    )


def test_build_install_2003_succeeds_on_power_off(
    uri: str, virtio_win: Path, name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _require_install_flag(capsys)
    cd = probe.build_fake_2003_cd(probe.DEFAULT_CACHE_DIR, tmp_path / "w2k3.iso", arch="amd64")
    out = tmp_path / "out"
    code = build("win2003-x64", virtio_win, cd, out, name, uri, "--timeout", "3")
    captured = capsys.readouterr()
    assert code == 0, captured.err
    manifest = complete_build(out)
    record = manifest["domain"]
    assert record["installed"] is True and record["media_attached"] == []
    assert record["disks"] == [str(out / f"{name}.qcow2")]
    with virt.connect(uri) as conn:
        persistent = virt.inactive_xml(conn, name)
        assert virt.domain_state(conn, name) == ("shut off", "shutdown")
    assert removable_media(persistent) == ()
    assert (out / "domain.xml").is_file() and (out / f"{name}.qcow2").is_file()
    report = probe.parse_probe_log((out / "serial.log").read_text(errors="replace"))
    assert report.ended
    assert [(p.subsys_vendor, p.subsys_device) for p in report.pci_with_ids("1af4", "1001")] == [
        ("1af4", "0002")
    ]


def test_build_install_timeout_saves_a_screenshot_and_exits_1(
    uri: str, virtio_win: Path, name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _require_install_flag(capsys)
    hang = probe.build_probe_iso(probe.DEFAULT_CACHE_DIR, mode="hang")
    out = tmp_path / "out"
    code = build("win2008r2-x64", virtio_win, hang, out, name, uri, "--timeout", "0.25")
    captured = capsys.readouterr()
    assert code == 1, captured.err
    assert "did not power off within 0.25 minutes" in captured.err
    assert "screenshot.png" in captured.err and "Traceback" not in captured.err
    assert (out / "screenshot.png").read_bytes().startswith(b"\x89PNG")
    # The media were written; the manifest says how far the build got.
    record = complete_build(out)["domain"]
    assert record["defined"] is True and record["installed"] is False
    assert "did not power off" in record["error"]
    assert record["logs"] == ["screenshot.png"]  # the serial log is OUT's own serial.log
    (problem,) = record["problems"]
    assert problem["message"] in record["error"] and "screenshot" in problem["hint"]
    with virt.connect(uri) as conn:
        assert virt.domain_state(conn, name) == ("shut off", "destroyed")


def test_build_install_refusals(
    uri: str, virtio_win: Path, name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _require_install_flag(capsys)
    iso = probe.build_probe_iso(probe.DEFAULT_CACHE_DIR, mode="report")
    args = [
        "build",
        "win2008r2-x64",
        "--drivers",
        str(virtio_win),
        "--out",
        str(tmp_path / "o"),
        "--set",
        "admin_password=x",
        "--set",
        "network=user",
        "--domain-type",
        "qemu",
    ]
    cases = [
        (["--install", "--connect", uri], 2, "needs the Windows install ISO"),
        (["--define", "--connect", "::::"], 2, "is not a libvirt URI"),
        (
            ["--define", "--connect", "qemu+tcp://127.0.0.1:1/system", "--set", "storage_pool=p"],
            1,
            "cannot reach libvirt",
        ),
        # A remote host needs a pool for the uploads, whether or not it answers.
        (["--define", "--connect", "qemu+tcp://127.0.0.1:1/system"], 2, "needs a storage pool"),
        (["--define", "--connect", uri, "--name", "a/b"], 2, "not a usable domain name"),
        (
            ["--define", "--connect", uri, "--set", "data_disks=[" + ",".join(["1"] * 27) + "]"],
            2,
            "needs 29 PCI slots",
        ),
        (["--define", "--connect", uri, "--set", "network=nope"], 2, "no libvirt network"),
        (["--define", "--connect", uri, "--set", "storage_pool=nope"], 2, "no storage pool"),
        (["--define", "--connect", uri, "--set", "memory_mib=128"], 2, "below the 512 MiB"),
    ]
    for extra, expected, fragment in cases:
        code = cli.main(
            [*args, "--windows-iso", str(iso), *extra]
            if "--install" not in extra
            else [*args, *extra]
        )
        err = capsys.readouterr().err
        assert (code, fragment in err) == (expected, True), (extra, err)
    # An existing name without --replace.
    define = [*args, "--windows-iso", str(iso), "--define", "--connect", uri, "--name", name]
    assert cli.main(define) == 0, capsys.readouterr().err
    assert cli.main(define) == 2
    assert "already exists" in capsys.readouterr().err
    assert cli.main([*define, "--replace"]) == 0, capsys.readouterr().err


def test_every_problem_is_found_in_one_run_against_libvirtd(
    uri: str, virtio_win: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """vcpus=0 no longer hides the missing network and pool, nor they the PCI budget or
    SOURCE_DATE_EPOCH: one run names them all."""
    args = [
        "build", "win2008r2-x64", "--drivers", str(virtio_win), "--out", str(tmp_path / "o"),
        "--define", "--connect", uri, "--domain-type", "qemu", "--json",
        "--set", "admin_password=x", "--set", "vcpus=0", "--set", "network=nope-pvinstall",
        "--set", "storage_pool=nope-pvinstall",
        "--set", "data_disks=[" + ",".join(["1"] * 27) + "]",
    ]  # fmt: skip
    import os

    old = os.environ.get("SOURCE_DATE_EPOCH")
    os.environ["SOURCE_DATE_EPOCH"] = "not-a-number"
    try:
        code = cli.main(args)
    finally:
        if old is None:
            del os.environ["SOURCE_DATE_EPOCH"]
        else:
            os.environ["SOURCE_DATE_EPOCH"] = old
    out = capsys.readouterr().out
    assert code == 2
    problems = {p["key"]: p["message"] for p in json.loads(out)["error"]["problems"]}
    assert {"vcpus", "network", "storage_pool", "data_disks", "SOURCE_DATE_EPOCH"} <= set(problems)
    assert "no libvirt network named nope-pvinstall" in problems["network"]
    assert "no storage pool named nope-pvinstall" in problems["storage_pool"]
    assert not (tmp_path / "o").exists()


def test_replace_refuses_a_running_domain_unless_force_and_touches_no_disk_before(
    uri: str, virtio_win: Path, name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    define = [
        "build", "win2008r2-x64", "--drivers", str(virtio_win), "--out", str(out),
        "--name", name, "--define", "--connect", uri, "--domain-type", "qemu",
        "--set", "admin_password=x", "--set", "network=user",
    ]  # fmt: skip
    assert cli.main(define) == 0, capsys.readouterr().err
    capsys.readouterr()
    disk = out / f"{name}.qcow2"
    with virt.connect(uri) as conn:
        handle = conn.handle.lookupByName(name)
        handle.create()  # running (in its BIOS: the disk is empty, the CD drive too)
        try:
            before = (disk.stat().st_ino, disk.stat().st_mtime_ns)
            old = snapshot(out)
            assert cli.main([*define, "--replace", "--set", "vcpus=1"]) == 2
            err = capsys.readouterr().err
            assert f"the domain {name} is running on {uri}" in err and "--force" in err
            assert handle.isActive()  # still running, its disk untouched, OUT as it was
            assert (disk.stat().st_ino, disk.stat().st_mtime_ns) == before
            assert snapshot(out) == old
            assert cli.main([*define, "--force"]) == 2
            assert "--force: stops a running domain only for --replace" in capsys.readouterr().err
            assert cli.main([*define, "--replace", "--force", "--set", "vcpus=1"]) == 0
            capsys.readouterr()
        finally:
            if virt.domain_exists(conn, name) and conn.handle.lookupByName(name).isActive():
                conn.handle.lookupByName(name).destroy()
        assert virt.domain_state(conn, name) == ("shut off", "unknown")
        assert "<vcpu placement='static'>1</vcpu>" in virt.inactive_xml(conn, name)
    # Recreated (a new file, written anew), after the old domain was gone.
    assert (disk.stat().st_ino, disk.stat().st_mtime_ns) != before
    assert complete_build(out)["domain"]["defined"] is True


def test_an_interrupted_install_is_recorded_in_the_manifest(
    uri: str, virtio_win: Path, name: str, tmp_path: Path
) -> None:
    """SIGTERM while setup runs: the guest is stopped (it stays defined), the manifest of
    the build says so, and pvinstall exits 143."""
    import os
    import signal
    import subprocess
    import sys
    import time

    hang = probe.build_probe_iso(probe.DEFAULT_CACHE_DIR, mode="hang")
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "pvinstall"), "build", "win2008r2-x64",
            "--drivers", str(virtio_win), "--windows-iso", str(hang), "--out", str(out),
            "--name", name, "--install", "--connect", uri, "--domain-type", "qemu",
            "--timeout", "10", "--set", "admin_password=x", "--set", "network=user",
        ],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "SOURCE_DATE_EPOCH": "1700000000"},
    )  # fmt: skip
    deadline = time.monotonic() + 120
    with virt.connect(uri) as conn:
        while virt.domain_state(conn, name) != ("running", "1"):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 143, err
        assert "Traceback" not in err and "pvinstall: interrupted (SIGTERM)" in err
        assert virt.domain_state(conn, name) == ("shut off", "destroyed")
    record = complete_build(out)["domain"]
    assert record["defined"] is True and record["installed"] is False
    assert record["interrupted"] == "SIGTERM" and record["error"] == "interrupted (SIGTERM)"
