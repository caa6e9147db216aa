"""What the modern machine needs of the host, asked of the real libvirtd before anything
is written (builder/vm/virt.py `check_machine`): swtpm for a TPM (a sentence naming the
packages), and the features of a CPU model pvinstall's table does not know (libvirt's
expanded model: Snowridge has POPCNT and SSE4.2, 486 has not, GraniteRapids is unknown
to QEMU 7.2)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from builder import cli
from builder.vm import virt
from tests.fixtures.virtio_win import PROFILE_OS_FOLDERS, make_iso, write_modern_tree
from tests.integration.libvirt_env import unique_domain_name

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def vw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("vw")
    tree = write_modern_tree(base / "tree", oses=PROFILE_OS_FOLDERS)
    return make_iso(tree, base / "virtio-win.iso").path


@pytest.fixture
def name(uri: str) -> Iterator[str]:
    value = unique_domain_name("pvt-i16-host")
    yield value
    with virt.connect(uri) as conn:
        virt.remove_domain(conn, value)


def define(
    capsys: pytest.CaptureFixture[str], vw: Path, out: Path, name: str, uri: str, *sets: str
) -> tuple[int, str]:
    args = ["build", "win2025-x64", "--drivers", str(vw), "--out", str(out), "--name", name]
    args += ["--define", "--connect", uri, "--domain-type", "qemu", "--set", "network=user"]
    args += ["--set", "admin_password=Sup3r-secret"]
    for setting in sets:
        args += ["--set", setting]
    code = cli.main(args)
    return code, capsys.readouterr().err


def test_a_host_without_swtpm_is_refused_when_tpm_is_true(
    capsys: pytest.CaptureFixture[str],
    vw: Path,
    tmp_path: Path,
    name: str,
    uri: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # swtpm cannot be uninstalled on a shared machine: the search for it looks in an
    # empty folder instead (the one stand-in; the other tests find the real programs).
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setattr(virt, "_libvirtd_path", lambda: str(empty))
    out = tmp_path / "never"
    code, err = define(capsys, vw, out, name, uri)
    assert code == 2, err
    assert "tpm: tpm = true needs swtpm" in err
    assert "swtpm (package swtpm)" in err and "swtpm_setup (package swtpm-tools)" in err
    assert "apt-get install swtpm swtpm-tools" in err and "Traceback" not in err
    assert not out.exists()
    with virt.connect(uri) as conn:
        assert not virt.domain_exists(conn, name)
    # Its sibling: without a TPM the same host defines the domain.
    code, err = define(capsys, vw, tmp_path / "out", name, uri, "tpm=false")
    assert code == 0, err
    with virt.connect(uri) as conn:
        xml = virt.inactive_xml(conn, name)
    assert "<tpm" not in xml and "firmware='efi'" in xml


def test_the_host_says_what_a_cpu_model_pvinstall_does_not_know_has(
    capsys: pytest.CaptureFixture[str], vw: Path, tmp_path: Path, name: str, uri: str
) -> None:
    code, err = define(capsys, vw, tmp_path / "486", name, uri, "cpu_model=486")
    assert code == 2 and "needs an x86-64-v2 CPU (POPCNT, SSE4.2), and 486 is x86-64-v1" in err
    assert not (tmp_path / "486").exists()
    code, err = define(capsys, vw, tmp_path / "unknown", name, uri, "cpu_model=GraniteRapids")
    assert code == 2 and "does not know the CPU model 'GraniteRapids'" in err
    code, err = define(capsys, vw, tmp_path / "snowridge", name, uri, "cpu_model=Snowridge")
    assert code == 0, err
    with virt.connect(uri) as conn:
        xml = virt.inactive_xml(conn, name)
    assert "<model fallback='forbid'>Snowridge</model>" in xml
    assert "<feature policy='require' name='popcnt'/>" in xml
