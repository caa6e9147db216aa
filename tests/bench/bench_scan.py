"""Benchmark: scan a virtio-win-sized ISO (~700 MB, ~6000 files) and select per profile.

Reports wall time, peak RSS and the bytes the scan read (from /proc/self/io), so one
can see that only directory records and INF bytes are read, never whole driver files.
Target (issue 2): under 2 s and under 100 MB peak RSS on the 2-core build machine.
"""

from __future__ import annotations

import hashlib
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

from tests.fixtures.virtio_win import make_iso, write_bench_tree

CACHE = Path(__file__).resolve().parents[1] / ".cache" / "bench"


def _generator_key() -> str:
    """A digest of the fixture generator's source: a cached image of an older generator
    (fake catalogs, say) is never used."""
    from tests.fixtures import signing, virtio_win

    digest = hashlib.sha256()
    for module in (virtio_win, signing):
        digest.update(Path(str(module.__file__)).read_bytes())
    return digest.hexdigest()[:12]


def bench_iso() -> Path:
    """The benchmark ISO, generated once per fixture generator and cached (it is large)."""
    iso = CACHE / f"virtio-win-bench-{_generator_key()}.iso"
    if not iso.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        for stale in CACHE.glob("virtio-win-bench*.iso"):
            stale.unlink()  # an older generator's: 700 MB each
        tree_root = CACHE / "tree"
        if tree_root.exists():
            subprocess.run(["rm", "-rf", str(tree_root)], check=True)
        tree = write_bench_tree(tree_root)
        make_iso(tree, iso, style="modern")
        subprocess.run(["rm", "-rf", str(tree_root)], check=True)
    return iso


def _io_read_bytes() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    return 0


def measure(iso: Path) -> dict[str, float | int]:
    """Run in a fresh process: open, scan, select for every profile."""
    from builder.sources import open_source
    from builder.virtio.facts import load_driver_facts
    from builder.virtio.packages import scan_source
    from builder.virtio.selection import select_drivers
    from builder.windows.profiles import PROFILES

    facts = load_driver_facts()
    before = _io_read_bytes()
    start = time.perf_counter()
    with open_source(iso) as source:
        scan = scan_source(source, facts)
        selected = 0
        for profile in PROFILES.values():
            selected += len(select_drivers(scan, profile, facts).selected)
    wall = time.perf_counter() - start
    return {
        "wall_s": round(wall, 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "read_mb": round((_io_read_bytes() - before) / 2**20, 2),
        "iso_mb": round(iso.stat().st_size / 2**20, 1),
        "files": len(source.files()),
        "infs": len(scan.packages),
        "selected_total": selected,
    }


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        print(json.dumps(measure(Path(sys.argv[2]))))
        return
    iso = bench_iso()
    runs = []
    for _ in range(3):
        done = subprocess.run(
            [sys.executable, "-m", "tests.bench.bench_scan", "--child", str(iso)],
            capture_output=True,
            text=True,
            check=True,
        )
        runs.append(json.loads(done.stdout))
    best = min(runs, key=lambda r: r["wall_s"])
    print("scan + select (5 profiles) of a virtio-win-sized ISO, best of 3:")
    for key, value in best.items():
        print(f"  {key:16} {value}")
    print(f"  wall times       {[r['wall_s'] for r in runs]}")
    print("  target           < 2 s, < 100 MB peak RSS")


if __name__ == "__main__":
    main()
