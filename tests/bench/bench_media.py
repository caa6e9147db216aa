"""Benchmark: write drivers.iso from a virtio-win-sized ISO, and remaster a ~700 MB CD.

Each case runs in a fresh process and reports wall time, peak RSS and the bytes the
process read (/proc/self/io rchar), best of 3. The drivers ISO is built for
win2008r2-x64 from the ~700 MB benchmark virtio-win ISO of bench_scan (read in place);
the remaster adds viostor and the $OEM$ driver folders to a retail-shaped fake 2003 CD
of about 700 MB (tests/integration/windows_cd.py). Both must stream: peak RSS should
stay far below the image sizes. Not a timed test: `make bench` prints the numbers.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

from tests.bench.bench_scan import CACHE, bench_iso

CD_PAYLOAD = 680 * 2**20
EPOCH = 1_700_000_000


def bench_cd() -> Path:
    """The ~700 MB fake 2003 CD, generated once and cached."""
    from tests.integration.windows_cd import build_windows_style_cd

    cd = CACHE / "win2003-x86-bench.iso"
    if not cd.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        build_windows_style_cd(cd, arch="x86", payload_bytes=CD_PAYLOAD)
    return cd


def _io_read_bytes() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    return 0


def _answers(profile_2003: bool) -> dict[str, bytes]:
    if profile_2003:
        return {"winnt.sif": b"[Data]\r\n", "txtsetup.oem": b"[Disks]\r\n"}
    return {"autounattend.xml": b"<unattend/>\r\n"}


def measure_drivers_iso(source_iso: Path, out: Path) -> dict[str, float | int]:
    from builder.config import load_config
    from builder.media import layout
    from builder.media.iso9660 import write_drivers_iso
    from builder.media.plan import MediaInputs, plan_drivers_disc
    from builder.sources import open_source
    from builder.virtio.facts import load_driver_facts
    from builder.virtio.packages import scan_source
    from builder.virtio.selection import select_drivers
    from builder.windows.profiles import PROFILES

    profile = PROFILES["win2008r2-x64"]
    config = load_config(profile, sets=["admin_password=x"])
    post = {layout.POSTINSTALL_SCRIPT: b"@echo off\r\n", layout.MARKER_FILE: b"pv\r\n"}
    before = _io_read_bytes()
    start = time.perf_counter()
    with open_source(source_iso) as source:
        drivers = select_drivers(scan_source(source, load_driver_facts()), profile)
        plan = plan_drivers_disc(MediaInputs(config, drivers, _answers(False), post))
        write_start = time.perf_counter()
        write_drivers_iso(plan, out, source, epoch=EPOCH)
    end = time.perf_counter()
    return {
        "wall_s": round(end - start, 3),
        "write_s": round(end - write_start, 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "read_mb": round((_io_read_bytes() - before) / 2**20, 2),
        "source_mb": round(source_iso.stat().st_size / 2**20, 1),
        "out_mb": round(out.stat().st_size / 2**20, 2),
        "files": len(plan.files),
    }


def measure_remaster(cd: Path, drivers_iso: Path, out: Path) -> dict[str, float | int]:
    from builder.media.iso9660 import inspect_install_cd, remaster_install_cd
    from builder.media.slipstream import plan_install_cd
    from builder.sources import open_source
    from builder.virtio.facts import load_driver_facts
    from builder.virtio.packages import scan_source
    from builder.virtio.selection import select_drivers
    from builder.windows.profiles import PROFILES

    profile = PROFILES["win2003-x86"]
    before = _io_read_bytes()
    start = time.perf_counter()
    with open_source(drivers_iso) as source:
        drivers = select_drivers(scan_source(source, load_driver_facts()), profile)
        plan = plan_install_cd(drivers, _answers(True))
        inspect_install_cd(cd, profile, plan)
        write_start = time.perf_counter()
        remaster_install_cd(cd, out, plan, source, epoch=EPOCH)
    end = time.perf_counter()
    return {
        "wall_s": round(end - start, 3),
        "remaster_s": round(end - write_start, 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "read_mb": round((_io_read_bytes() - before) / 2**20, 1),
        "cd_mb": round(cd.stat().st_size / 2**20, 1),
        "out_mb": round(out.stat().st_size / 2**20, 1),
        "added_files": len(plan.files),
    }


def _child(args: list[str]) -> None:
    if args[0] == "drivers-iso":
        print(json.dumps(measure_drivers_iso(Path(args[1]), Path(args[2]))))
    else:
        print(json.dumps(measure_remaster(Path(args[1]), Path(args[2]), Path(args[3]))))


def _best_of_3(title: str, argv: list[str], target: str) -> None:
    runs = []
    for _ in range(3):
        done = subprocess.run(
            [sys.executable, "-m", "tests.bench.bench_media", "--child", *argv],
            capture_output=True,
            text=True,
            check=True,
        )
        runs.append(json.loads(done.stdout))
    best = min(runs, key=lambda r: r["wall_s"])
    print(f"{title}, best of 3:")
    for key, value in best.items():
        print(f"  {key:16} {value}")
    print(f"  wall times       {[r['wall_s'] for r in runs]}")
    print(f"  target           {target}")


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        _child(sys.argv[2:])
        return
    source_iso = bench_iso()
    cd = bench_cd()
    work = CACHE / "media-out"
    work.mkdir(parents=True, exist_ok=True)
    drivers_iso = work / "drivers.iso"
    _best_of_3(
        "drivers.iso for win2008r2-x64 from a virtio-win-sized ISO (read in place)",
        ["drivers-iso", str(source_iso), str(drivers_iso)],
        "seconds, peak RSS well under the source size",
    )
    _best_of_3(
        "remaster a ~700 MB 2003 CD (drivers from the virtio-win-sized ISO)",
        ["remaster", str(cd), str(source_iso), str(work / "install.iso")],
        "seconds, peak RSS independent of the CD size (< 100 MB)",
    )
    for name in ("drivers.iso", "install.iso"):
        (work / name).unlink(missing_ok=True)


if __name__ == "__main__":
    main()
