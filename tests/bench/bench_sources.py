"""Benchmark: driver sources read as untrusted, on the normal and the worst case.

- a directory of virtio-win size (~6000 files): list, scan the INFs, select per
  profile (every entry is stat'ed, every name checked, every link resolved);
- the worst directories the limits allow: links that multiply the tree (each folder
  linked twice to the next: 2**40 paths), refused at the link budget, and a flat
  folder of 60,000 empty files, refused at the entry budget;
- a legacy floppy image (mtools, 2.88 MB): list and read every file through the
  bounded FAT reader, and the same image with a looping chain, refused.

Each runs in a fresh process and reports wall time and peak RSS. Targets: the normal
directory in under 2 s, every refusal in under 10 s, all under 100 MB peak RSS.
"""

from __future__ import annotations

import contextlib
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

from tests.fixtures.virtio_win import make_floppy_image, write_bench_tree, write_floppy_tree

CACHE = Path(__file__).resolve().parents[1] / ".cache" / "bench-sources"


def _prepare() -> dict[str, Path]:
    """The inputs, generated once and cached."""
    made = {
        "directory": CACHE / "tree",
        "links": CACHE / "links",
        "flat": CACHE / "flat",
        "floppy": CACHE / "servers_amd64.vfd",
        "looping floppy": CACHE / "looping.vfd",
    }
    if all(path.exists() for path in made.values()):
        return made
    subprocess.run(["rm", "-rf", str(CACHE)], check=True)
    CACHE.mkdir(parents=True)
    write_bench_tree(made["directory"])
    for level in range(40):
        (made["links"] / f"d{level}").mkdir(parents=True)
    for level in range(39):
        for copy in ("a", "b"):
            (made["links"] / f"d{level}" / copy).symlink_to(made["links"] / f"d{level + 1}")
    made["flat"].mkdir()
    for index in range(60_000):
        (made["flat"] / f"f{index:05}.sys").touch()
    tree = write_floppy_tree(CACHE / "ftree", "amd64")
    make_floppy_image(tree, made["floppy"])
    data = bytearray(made["floppy"].read_bytes())
    # Every FAT entry of the first FAT points at cluster 2: every chain loops at once.
    for offset in range(512 + 3, 512 + 9 * 512 - 2, 3):
        data[offset : offset + 3] = b"\x02\x20\x00"
    made["looping floppy"].write_bytes(data)
    return made


def measure(kind: str, path: Path) -> dict[str, object]:
    """Open, list, scan, select (and read, for the floppy) in this process."""
    from builder.errors import InputError
    from builder.sources import open_source
    from builder.virtio.facts import load_driver_facts
    from builder.virtio.packages import scan_source
    from builder.virtio.selection import select_drivers
    from builder.windows.profiles import PROFILES

    facts = load_driver_facts()
    start = time.perf_counter()
    outcome = "read"
    files = 0
    try:
        with open_source(path) as source:
            files = len(source.files())
            scan = scan_source(source, facts)
            for profile in PROFILES.values():
                # A floppy has drivers for some profiles only.
                with contextlib.suppress(InputError):
                    select_drivers(scan, profile, facts)
            if kind.endswith("floppy"):
                for entry in source.files():
                    source.read_exact(entry.path, entry.size)
    except InputError as exc:
        outcome = f"refused: {exc.message[:70]}"
    return {
        "wall_s": round(time.perf_counter() - start, 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "files": files,
        "outcome": outcome,
    }


def main() -> None:
    if len(sys.argv) > 3 and sys.argv[1] == "--child":
        print(json.dumps(measure(sys.argv[2], Path(sys.argv[3]))))
        return
    inputs = _prepare()
    print("driver sources read as untrusted (fresh process each, best of 3):")
    for kind, path in inputs.items():
        runs = []
        for _ in range(3):
            done = subprocess.run(
                [sys.executable, "-m", "tests.bench.bench_sources", "--child", kind, str(path)],
                capture_output=True,
                text=True,
                check=True,
            )
            runs.append(json.loads(done.stdout))
        best = min(runs, key=lambda r: float(str(r["wall_s"])))
        print(
            f"  {kind:15} {best['wall_s']:>7} s  {best['peak_rss_mb']:>6} MB  "
            f"{best['files']:>5} files  {best['outcome']}"
        )
    print("  target          normal < 2 s, refusals < 10 s, all < 100 MB peak RSS")


if __name__ == "__main__":
    main()
