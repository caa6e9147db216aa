"""The main job's Makefile targets: they run `pvinstall build`, pass its messages and
exit status on, and say what to do next.

GNU make itself exits 2 whenever a recipe fails, so make's own status cannot tell
invalid input (pvinstall's 2) from a failed build (pvinstall's 1); the recipe prints
`make: pvinstall exited with N` so scripts and people can.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from builder.windows.profiles import PROFILES
from tests.fixtures.virtio_win import write_modern_tree
from tests.integration import probe

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def make(target: str, tmp_path: Path, **variables: str) -> subprocess.CompletedProcess[str]:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    env = {**os.environ, "PVINSTALL_ADMIN_PASSWORD": "Mak3-secret", "SOURCE_DATE_EPOCH": "0"}
    env.pop("VIRTIO_WIN", None)
    # The venv the tests run in (setup is then a no-op when it is up to date).
    argv = ["make", "-s", "-C", str(REPO), target, *(f"{k}={v}" for k, v in variables.items())]
    return subprocess.run(
        argv, check=False, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path
    )


@pytest.fixture(scope="module")
def virtio_win(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_modern_tree(tmp_path_factory.mktemp("vw") / "vw", oses=["2k8", "2k8R2"]).root


def test_without_windows_iso_the_target_builds_media_and_says_how_to_install(
    virtio_win: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    done = make("win2008r2-virtio", tmp_path, VIRTIO_WIN=str(virtio_win), OUT=str(out))
    assert done.returncode == 0, done.stderr
    assert {"autounattend.xml", "floppy.img", "drivers.iso", "domain.xml", "manifest.json"} <= {
        p.name for p in out.iterdir()
    }
    assert "make win2008r2-virtio WINDOWS_ISO=" in done.stdout


def test_2003_without_its_cd_says_setup_needs_f6_and_not_to_define_the_domain(
    tmp_path: Path,
) -> None:
    tree = write_modern_tree(tmp_path / "vw", oses=["2k3"], drivers=("viostor", "NetKVM"))
    out = tmp_path / "out"
    done = make(
        "win2003-virtio",
        tmp_path,
        VIRTIO_WIN=str(tree.root),
        OUT=str(out),
        CONFIG=str(_config_2003(tmp_path)),
    )
    assert done.returncode == 0, done.stderr
    said = done.stdout + done.stderr
    assert "F6" in said and "make win2003-virtio WINDOWS_ISO=" in done.stdout
    assert "virsh" not in said and "define" not in said


def _config_2003(tmp_path: Path) -> Path:
    config = tmp_path / "2003.toml"
    config.write_text('product_key = "QWERT-YUIOP-ASDFG-HJKLZ-XCVBN"\n')
    return config


MODERN_TARGETS = {
    "win2012r2-virtio": "win2012r2-x64",
    "win2016-virtio": "win2016-x64",
    "win2019-virtio": "win2019-x64",
    "win2022-virtio": "win2022-x64",
    "win2025-virtio": "win2025-x64",
}


@pytest.mark.parametrize("target", sorted(MODERN_TARGETS))
def test_the_modern_targets_build_their_profile(target: str, tmp_path: Path) -> None:
    drivers = write_modern_tree(
        tmp_path / "vw",
        drivers=["viostor", "NetKVM"],
        oses=[PROFILES[MODERN_TARGETS[target]].os_folder],
    ).root
    out = tmp_path / "out"
    done = make(target, tmp_path, VIRTIO_WIN=str(drivers), OUT=str(out))
    assert done.returncode == 0, done.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["profile"] == MODERN_TARGETS[target]
    assert {"answer.iso", "drivers.iso", "autounattend.xml"} <= {p.name for p in out.iterdir()}
    assert f"make {target} WINDOWS_ISO=" in done.stdout


def test_invalid_input_reaches_the_user_with_pvinstall_s_exit_code(tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = make(
        "win2008-virtio",
        tmp_path,
        VIRTIO_WIN=str(tmp_path / "nowhere"),
        OUT=str(out),
        CONFIG=str(tmp_path / "missing.toml"),
    )
    assert done.returncode == 2
    assert "--drivers: driver source" in done.stderr and "missing.toml" in done.stderr
    assert "make: pvinstall exited with 2" in done.stderr
    assert "Traceback" not in done.stderr and not out.exists()


def test_without_any_driver_source_it_names_the_search_order(tmp_path: Path) -> None:
    done = make("win2003-virtio", tmp_path, OUT=str(tmp_path / "out"))
    if "pvinstall exited with 2" not in done.stderr:
        pytest.fail(done.stderr)
    if Path("/usr/share/virtio-win").exists() or (REPO / "drivers" / "virtio-win.iso").exists():
        pytest.skip("a default driver source exists on this machine")
    assert "$VIRTIO_WIN" in done.stderr and "fedorapeople.org" in done.stderr


def test_a_failed_build_is_reported_as_pvinstall_s_exit_1(virtio_win: Path, tmp_path: Path) -> None:
    iso = probe.build_probe_iso(probe.DEFAULT_CACHE_DIR, mode="report")
    config = tmp_path / "remote.toml"  # a remote host needs a pool for the uploads
    config.write_text('storage_pool = "default"\n')
    done = make(
        "win2008r2-virtio",
        tmp_path,
        VIRTIO_WIN=str(virtio_win),
        OUT=str(tmp_path / "out"),
        WINDOWS_ISO=str(iso),
        CONNECT="qemu+tcp://127.0.0.1:1/system",
        CONFIG=str(config),
    )
    assert done.returncode == 2  # make's own status for any failed recipe
    assert "cannot reach libvirt" in done.stderr
    assert "make: pvinstall exited with 1" in done.stderr


# -- the main job's variables reach pvinstall as they are written ---------------------


def test_values_with_spaces_and_quotes_reach_pvinstall_as_one_argument_each(
    tmp_path: Path,
) -> None:
    drivers = write_modern_tree(tmp_path / 'a "b"' / "virtio-win", oses=["2k8R2"]).root
    config = tmp_path / 'it\'s my "config".toml'
    config.write_text('computer_name = "QUOTED-1"\n')
    out = tmp_path / "o u\"t\" 'x'"
    done = make(
        "win2008r2-virtio", tmp_path, VIRTIO_WIN=str(drivers), CONFIG=str(config), OUT=str(out)
    )
    assert done.returncode == 0, done.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    inputs = {i["name"]: i["path"] for i in manifest["inputs"]}
    assert inputs["drivers"] == str(drivers) and inputs["config"] == str(config)
    assert manifest["settings"]["computer_name"] == "QUOTED-1"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(['a "b"', config.name, out.name])


# Each form would run `touch MARKER` if make or the shell got to expand it: make's
# $(shell ...) in a command-line variable, the shell's $(...), make's escaped $$(...)
# (which make turns into the shell's $(...) when it pastes a value into a recipe) and a
# backtick command.
HOSTILE_VALUES = {
    "make-shell-function": "$(shell touch {marker})",
    "shell-substitution": "$(touch {marker})",
    "make-escaped-substitution": "$$(touch {marker})",
    "backtick": "`touch {marker}`",
}


@pytest.mark.parametrize("form", sorted(HOSTILE_VALUES))
def test_a_value_with_a_command_in_it_runs_nothing_and_reaches_pvinstall_literally(
    tmp_path: Path, form: str
) -> None:
    def hostile(variable: str) -> str:
        return HOSTILE_VALUES[form].format(marker=tmp_path / f"ran-{variable}")

    values = {
        "VIRTIO_WIN": f"{tmp_path}/vw {hostile('VIRTIO_WIN')}",
        "CONFIG": f"{tmp_path}/{hostile('CONFIG')}.toml",
        "WINDOWS_ISO": f"{tmp_path}/{hostile('WINDOWS_ISO')}.iso",
        "NAME": hostile("NAME"),
        "OUT": f"{tmp_path}/out {hostile('OUT')}",
        # Not this machine's qemu:///system: .ci/start-libvirtd leaves it alone.
        "CONNECT": f"test:///default?{hostile('CONNECT')}",
    }
    done = make("win2008-virtio", tmp_path, **values)
    arch = make(
        "win2008-virtio", tmp_path, ARCH=hostile("ARCH"), VIRTIO_WIN=str(tmp_path / "nowhere")
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == [], "a command in a value ran"
    assert done.returncode == 2 and "make: pvinstall exited with 2" in done.stderr, done.stderr
    # pvinstall names each bad path and name exactly as given.
    for variable in ("VIRTIO_WIN", "CONFIG", "WINDOWS_ISO", "NAME"):
        assert values[variable] in done.stderr, (variable, done.stderr)
    assert arch.returncode == 2
    assert f"unknown profile 'win2008-{hostile('ARCH')}'" in arch.stderr, arch.stderr


@pytest.mark.parametrize(
    "uri", ["test:///default", "qemu+tcp://127.0.0.1:1/system", "qemu:///session"]
)
def test_the_main_job_starts_no_libvirtd_for_another_uri(uri: str) -> None:
    done = subprocess.run(
        [str(REPO / ".ci" / "start-libvirtd"), uri],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
