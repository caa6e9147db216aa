"""Faults while pvinstall writes OUT, made real: stop signals sent to a running
`pvinstall` at every moment (while it loads, while it writes, during the commit), kill -9,
two builds at once, a full tmpfs (at each file, the manifest included), a read-only and
an immutable --out. After each, OUT is the previous complete build or the new one
(tests/fixtures/out_dir.py checks every file against its manifest), and what a dead run
left is gone after the next one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.out_dir import complete_build, snapshot
from tests.fixtures.virtio_win import write_modern_tree

pytestmark = pytest.mark.integration

PVINSTALL = Path(sys.executable).parent / "pvinstall"
EPOCH = "1700000000"
PAGE = 4096


@pytest.fixture(scope="module")
def vw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_modern_tree(
        tmp_path_factory.mktemp("vw") / "vw", drivers=["viostor", "NetKVM"], oses=["2k8", "2k3"]
    ).root


def command(vw: Path, out: Path, *extra: str, profile: str = "win2008-x64") -> list[str]:
    # --no-cache: these tests are about writing, which a reused build does not do.
    args = [str(PVINSTALL), "build", profile, "--drivers", str(vw), "--out", str(out), "--no-cache"]
    if profile.startswith("win2003"):
        args += ["--set", "product_key=QWERT-YUIOP-ASDFG-HJKLZ-XCVBN"]
    return [*args, *extra]


ENV = {**os.environ, "SOURCE_DATE_EPOCH": EPOCH, "PVINSTALL_ADMIN_PASSWORD": "Sup3r-Secr3t"}


def run(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, env=ENV, check=False, timeout=300)


def start(args: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV
    )


def handles_stop_signals(pid: int) -> bool:
    """Whether pvinstall's own code runs in `pid` (it catches SIGTERM; Python alone does
    not): from then on a stop signal must end it cleanly."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    caught = next(line for line in status.splitlines() if line.startswith("SigCgt:"))
    return bool(int(caught.split()[1], 16) >> (signal.SIGTERM - 1) & 1)


def wait_until_handled(proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 30
    while not handles_stop_signals(proc.pid):
        assert proc.poll() is None, "pvinstall ended before it handled signals"
        assert time.monotonic() < deadline, "pvinstall never routed its signals"
        time.sleep(0.001)


def generations(out: Path) -> list[str]:
    return sorted(p.name for p in (out / ".pvinstall").glob("gen-*"))


def computer_name(out: Path) -> str:
    return str(complete_build(out)["settings"]["computer_name"])


def only_the_current_build_is_kept(out: Path) -> None:
    state = out / ".pvinstall"
    current = (state / "current").readlink().name
    assert sorted(p.name for p in state.iterdir()) == sorted(
        ["cache.json", "current", current, "hmac.key", "lock"]
    )
    # The build cache's record is of the build OUT shows, and of no other.
    assert json.loads((state / "cache.json").read_text())["generation"] == current
    assert not [p for p in out.iterdir() if ".pvinstall-" in p.name]


# -- stop signals -----------------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_signal_while_pvinstall_loads_ends_it_with_one_line(
    vw: Path, tmp_path: Path, signum: int
) -> None:
    """Ctrl-C in the first half second, while the command line's libraries load: exit
    130 (143 for SIGTERM) with one line, the JSON error document with --json, never a
    traceback, nothing written."""
    name = signal.Signals(signum).name
    interrupted = 0
    for delay in (0.0, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3):
        out = tmp_path / f"out-{delay}"
        proc = start(command(vw, out, "--json"))
        wait_until_handled(proc)
        time.sleep(delay)
        proc.send_signal(signum)
        stdout, stderr = proc.communicate(timeout=60)
        assert "Traceback" not in stderr, (delay, stderr)
        if proc.returncode == 0:  # it was done before the signal came
            complete_build(out)
            continue
        interrupted += 1
        assert proc.returncode == 128 + signum, (delay, stderr)
        said = [line for line in stderr.splitlines() if not line.startswith("{")]
        assert said == [f"pvinstall: interrupted ({name})"], (delay, stderr)
        document = json.loads(stdout)
        assert document["error"]["kind"] == "interrupted"
        assert document["error"]["exit_code"] == 128 + signum
        assert not out.exists() or complete_build(out)
    assert interrupted >= 4


def test_stop_signals_during_a_rebuild_leave_the_old_or_the_new_build(
    vw: Path, tmp_path: Path
) -> None:
    """SIGINT and SIGTERM at moments spread over a whole rebuild (the final writes and
    the commit among them): OUT is always one complete build, the previous one unless
    the rebuild reached its commit, and the interrupted run leaves no generation behind."""
    out = tmp_path / "out"
    assert run(command(vw, out, "--set", "computer_name=OLD")).returncode == 0
    began = time.monotonic()
    proc = start(command(vw, out, "--set", "computer_name=TIMED"))
    wait_until_handled(proc)
    handled = time.monotonic()
    assert proc.wait(timeout=120) == 0
    took = time.monotonic() - handled
    assert took > 0 and handled > began
    shown = "TIMED"
    outcomes = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        for step in range(1, 9):
            new = f"NEW{signum}-{step}"
            proc = start(command(vw, out, "--set", f"computer_name={new}"))
            wait_until_handled(proc)
            time.sleep(took * step / 9)
            proc.send_signal(signum)
            _, stderr = proc.communicate(timeout=120)
            assert "Traceback" not in stderr
            if proc.returncode == 0:
                shown = new
            else:
                assert proc.returncode == 128 + signum, stderr
                # A signal during the commit waits for it (one rename, never broken off)
                # and is reported after it: then OUT is the new build, complete.
                if computer_name(out) == new:
                    shown = new
            assert computer_name(out) == shown, (signum, step, stderr)
            assert len(generations(out)) == 1
            outcomes.append(proc.returncode)
    assert outcomes.count(0) < len(outcomes)  # most signals came while it worked
    only_the_current_build_is_kept(out)


def test_kill_9_leaves_the_old_build_and_the_next_run_removes_the_rest(
    vw: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    assert run(command(vw, out, "--set", "computer_name=OLD")).returncode == 0
    shown = "OLD"
    for step in range(8):
        new = f"KILLED{step}"
        proc = start(command(vw, out, "--set", f"computer_name={new}"))
        wait_until_handled(proc)
        time.sleep(0.04 * step)
        proc.kill()
        proc.wait(timeout=60)
        # Old, or new if the commit was done; a dead run's generation may be left.
        name = computer_name(out)
        assert name in (shown, new)
        shown = name
    assert run(command(vw, out, "--set", "computer_name=AFTER")).returncode == 0
    assert computer_name(out) == "AFTER"
    only_the_current_build_is_kept(out)


# -- two builds at once -----------------------------------------------------------------


def test_a_second_build_into_the_same_out_is_refused_naming_the_first(
    vw: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    first = start(command(vw, out, "--set", "computer_name=FIRST"))
    lock = out / ".pvinstall" / "lock"
    deadline = time.monotonic() + 60
    while True:  # until the first build holds OUT's lock
        try:
            if json.loads(lock.read_text()).get("pid") == first.pid:
                break
        except (OSError, ValueError):
            pass
        assert first.poll() is None and time.monotonic() < deadline
        time.sleep(0.002)
    first.send_signal(signal.SIGSTOP)  # it holds the lock as long as we like
    try:
        second = run(command(vw, out, "--set", "computer_name=SECOND", "--json"))
        assert second.returncode == 2, second.stderr
        problem = json.loads(second.stdout)["error"]["problems"][0]
        assert problem["key"] == "--out"
        assert f"{out} is in use by another pvinstall run" in problem["message"]
        assert f"pid {first.pid}" in problem["message"] and "started 20" in problem["message"]
    finally:
        first.send_signal(signal.SIGCONT)
    assert first.wait(timeout=120) == 0
    assert computer_name(out) == "FIRST"
    only_the_current_build_is_kept(out)


def test_a_2008_build_over_a_2003_one_leaves_only_its_own_files(vw: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert run(command(vw, out, profile="win2003-x86")).returncode == 0
    assert {"winnt.sif", "txtsetup.oem"} <= {p.name for p in out.iterdir()}
    done = run(command(vw, out))
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        ".pvinstall",
        "autounattend.xml",
        "domain.xml",
        "drivers.iso",
        "floppy.img",
        "manifest.json",
        "notes.txt",
        "sysprep-unattend.xml",
    ]
    complete_build(out, others=frozenset({"notes.txt"}))
    assert not list((out / ".pvinstall").rglob("winnt.sif"))  # the old password is gone
    assert not list((out / ".pvinstall").rglob("sysprep.inf"))


# -- full, read-only and immutable file systems -------------------------------------------


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A small tmpfs of its own (root only: a real full disk, a real read-only one)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def pages(size: int) -> int:
    return -(-size // PAGE) * PAGE


def free_bytes(path: Path) -> int:
    found = os.statvfs(path)
    return found.f_bavail * found.f_frsize


@pytest.mark.parametrize(
    "failing", ["autounattend.xml", "floppy.img", "drivers.iso", "manifest.json"]
)
def test_a_full_disk_leaves_the_old_build_and_says_which_file_and_how_much_room(
    vw: Path, tmp_path: Path, tmpfs: Path, failing: str
) -> None:
    # What the new build takes on this file system, file by file, in the order it writes
    # them (drivers.iso has holes: what counts is what is allocated).
    reference = tmpfs / "reference"
    assert run(command(vw, reference, "--set", "computer_name=NEW")).returncode == 0
    written = json.loads((reference / "manifest.json").read_text())["outputs"]
    order = [o["name"] for o in written] + ["manifest.json"]
    taken = {n: (reference / n).stat().st_blocks * 512 for n in order}
    subprocess.run(["rm", "-rf", str(reference)], check=True)
    before = sum(taken[name] for name in order[: order.index(failing)])
    # The failing file gets about half of the pages it needs (at least one).
    room = before + max(PAGE, pages(taken[failing] // 2))

    out = tmpfs / "out"
    assert run(command(vw, out, "--set", "computer_name=OLD")).returncode == 0
    old = snapshot(out)
    filler = tmpfs / "filler"
    filler.write_bytes(bytes(free_bytes(tmpfs) - room))
    assert before < free_bytes(tmpfs) < before + taken[failing]

    done = run(command(vw, out, "--set", "computer_name=NEW"))
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr and "internal error" not in done.stderr
    assert f"no room left on the file system of {out} while writing {failing}." in done.stderr
    assert "The build needs about" in done.stderr and "were free when it began" in done.stderr
    assert snapshot(out) == old
    assert computer_name(out) == "OLD"

    filler.unlink()
    assert run(command(vw, out, "--set", "computer_name=NEW")).returncode == 0
    assert computer_name(out) == "NEW"
    only_the_current_build_is_kept(out)


def test_a_read_only_or_immutable_out_is_an_input_error(vw: Path, tmpfs: Path) -> None:
    out = tmpfs / "out"
    assert run(command(vw, out)).returncode == 0
    old = snapshot(out)
    immutable = tmpfs / "immutable"
    immutable.mkdir()
    subprocess.run(["chattr", "+i", str(immutable)], check=True)
    try:
        cases = [
            (immutable, "cannot write to"),  # EPERM even for root
            (immutable / "below", "cannot create"),
        ]
        for target, words in cases:
            done = run(command(vw, target, "--json"))
            assert done.returncode == 2, done.stderr
            problem = json.loads(done.stdout)["error"]["problems"][-1]
            assert problem["key"] == "--out" and words in problem["message"], problem
            assert "permission denied" in problem["message"]
    finally:
        subprocess.run(["chattr", "-i", str(immutable)], check=True)
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
    for target in (out, tmpfs / "new"):
        done = run(command(vw, target, "--json"))
        assert done.returncode == 2, done.stderr
        problem = json.loads(done.stdout)["error"]["problems"][-1]
        assert problem["key"] == "--out", problem
        assert "read-only file system" in problem["message"], problem
        assert "Traceback" not in done.stderr
    assert snapshot(out) == old
