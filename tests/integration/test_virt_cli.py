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
    manifest = json.loads((out / "manifest.json").read_text())
    record = manifest["domain"]
    assert record["installed"] is True and record["media_attached"] == []
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
    record = json.loads((out / "manifest.json").read_text())["domain"]
    assert record["defined"] is True and record["installed"] is False
    assert "did not power off" in record["error"]
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
        (["--define", "--connect", "qemu+tcp://127.0.0.1:1/system"], 1, "cannot reach libvirt"),
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
