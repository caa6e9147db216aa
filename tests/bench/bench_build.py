"""Benchmark: whole builds against the peer tools, measured in the same run (issue 19).

Each case runs pvinstall (`python -m builder`) and its peer as fresh processes, in
pairs, three times; the table shows the medians, the ratio pvinstall/peer, and the peak
RSS of each (the maximum resident set wait4 reports). The machine is shared and noisy: only
ratios measured side by side mean anything, and nothing here is asserted.

- `build win2003-x86` with a ~700 MB CD vs `cp` of the CD, and vs an xorriso remaster
  that does the same edit (maps VIOSTOR.SYS and the patched TXTSETUP.SIF, keeps the
  boot image);
- `build win2008-x64` from a ~700 MB virtio-win ISO vs the shell pipeline that extracts
  the whole ISO first (what the peers do), and vs the selective one (extract only the
  chosen folders; mkfs.fat + mcopy; genisoimage);
- a rebuild with unchanged inputs vs a fresh build;
- `pvinstall --help` vs `python3 -c pass`;
- `pvinstall drivers` on the 6000-file ISO;
- peak RSS of the builds at 1x, 2x and 4x the input size (it must stay flat).

The table is printed and written into README.md's Performance section. `--only
CASE[,CASE...]` (cases: 2003, rebuild, 2008, help, drivers, flat) runs a subset and
prints its rows without touching README.md.

pvinstall runs from its compiled bytecode, as an installed pvinstall does (pip compiles
the modules when it installs them, and an editable install on first import): the bench
compiles builder/ first, so that no run measures Python's compiler, also where
PYTHONDONTWRITEBYTECODE is set.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import py_compile
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from tests.bench.bench_media import EPOCH
from tests.bench.bench_scan import CACHE

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
START, END = "<!-- bench:start -->", "<!-- bench:end -->"
MIB = 2**20
KEY_2003 = "ABCDE-FGHIJ-KLMNO-PQRST-UVWXY"
RUNS = 3
ENV = {
    **os.environ,
    "SOURCE_DATE_EPOCH": str(EPOCH),
    "PVINSTALL_ADMIN_PASSWORD": "bench-Passw0rd",
    "PYTHONPATH": str(REPO),
}


def timed(argv: Sequence[str], cwd: Path | None = None) -> tuple[float, float]:
    """(wall seconds, peak RSS MiB) of one run; wait4 gives the peak of the process and
    of the processes it waited for (a pipeline's tools)."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV, cwd=cwd
    )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise subprocess.CalledProcessError(proc.returncode, list(argv))
    return wall, usage.ru_maxrss / 1024


def sh(script: str) -> list[str]:
    return ["bash", "-euo", "pipefail", "-c", script]


def pvinstall(*args: str) -> list[str]:
    return [sys.executable, "-m", "builder", *args]


def cd_of(scale: int) -> Path:
    """The fake 2003 CD at `scale` times ~700 MB, made once and cached."""
    from tests.bench.bench_media import CD_PAYLOAD, bench_cd
    from tests.integration.windows_cd import build_windows_style_cd

    if scale == 1:
        return bench_cd()
    cd = CACHE / f"win2003-x86-bench-{scale}x.iso"
    if not cd.exists():
        build_windows_style_cd(cd, arch="x86", payload_bytes=CD_PAYLOAD * scale)
    return cd


def virtio_of(scale: int) -> Path:
    """The 6000-file virtio-win ISO at `scale` times ~700 MB, made once and cached."""
    from tests.bench.bench_scan import _generator_key, bench_iso
    from tests.fixtures.virtio_win import make_iso, write_bench_tree

    if scale == 1:
        return bench_iso()
    iso = CACHE / f"virtio-win-bench-{_generator_key()}-{scale}x.iso"
    if not iso.exists():
        tree = CACHE / f"tree-{scale}x"
        shutil.rmtree(tree, ignore_errors=True)
        make_iso(write_bench_tree(tree, total_bytes=700 * MIB * scale), iso, style="modern")
        shutil.rmtree(tree, ignore_errors=True)
    return iso


def build_2003(cd: Path, virtio: Path, out: Path, *extra: str) -> list[str]:
    return pvinstall(
        "build", "win2003-x86", "--drivers", str(virtio), "--windows-iso", str(cd),
        "--out", str(out), "--set", f"product_key={KEY_2003}", *extra,
    )  # fmt: skip


def build_2008(virtio: Path, out: Path, *extra: str) -> list[str]:
    return pvinstall("build", "win2008-x64", "--drivers", str(virtio), "--out", str(out), *extra)


def paired(ours: Sequence[str], peer: Sequence[str], *, before_peer: str = "") -> dict[str, float]:
    """Medians of RUNS paired runs: (ours, peer) wall and peak RSS."""
    results: dict[str, list[float]] = {"ours": [], "ours_rss": [], "peer": [], "peer_rss": []}
    for _ in range(RUNS):
        wall, rss = timed(ours)
        results["ours"].append(wall)
        results["ours_rss"].append(rss)
        if before_peer:
            subprocess.run(sh(before_peer), check=True)
        wall, rss = timed(peer)
        results["peer"].append(wall)
        results["peer_rss"].append(rss)
    return {k: statistics.median(v) for k, v in results.items()}


def selected_folders(manifest: Path) -> tuple[list[str], list[str]]:
    """(every selected driver folder, the boot-critical ones) of a build's manifest."""
    document = json.loads(manifest.read_text())
    selected = document["drivers"]["selected"]
    return (
        [d["os_folder"] for d in selected],
        [d["os_folder"] for d in selected if d["boot_critical"]],
    )


def extract_and_pack(
    iso: Path, work: Path, folders: list[str], boot: list[str], whole: bool
) -> str:
    """The shell pipeline of the peers: extract (the whole ISO, or the folders), then an
    answer floppy with mkfs.fat + mcopy and a drivers ISO with genisoimage."""
    extract = (
        f"xorriso -osirrox on -indev {iso} -extract / {work}/x >/dev/null 2>&1"
        if whole
        else f"xorriso -osirrox on -indev {iso} "
        + " ".join(f"-extract /{f} {work}/x/{f}" for f in folders)
        + " >/dev/null 2>&1"
    )
    floppy = f"{work}/floppy.img"
    names = [(f, f.split("/")[0]) for f in boot]
    copies = "; ".join(
        f"mmd -i {floppy} ::/{name}; mcopy -i {floppy} {work}/x/{f}/* ::/{name}/"
        for f, name in names
    )
    grafts = " ".join(f"{f}={work}/x/{f}" for f in folders)
    return (
        f"rm -rf {work}/x {floppy} {work}/drivers.iso; {extract}; "
        f"mkfs.fat -C {floppy} 1440 >/dev/null; {copies}; "
        f"genisoimage -quiet -J -r -graft-points -o {work}/drivers.iso {grafts}"
    )


def xorriso_remaster(cd: Path, work: Path, out: Path) -> str:
    """The same CD edit with xorriso: map VIOSTOR.SYS and the patched TXTSETUP.SIF in,
    keep the boot image as it is (the two files taken from pvinstall's install.iso)."""
    for name in ("VIOSTOR.SYS", "TXTSETUP.SIF"):
        subprocess.run(
            ["xorriso", "-osirrox", "on", "-indev", str(out / "install.iso"),
             "-extract", f"/I386/{name}", str(work / name)],
            check=True, capture_output=True,
        )  # fmt: skip
    return (
        f"rm -f {work}/remastered.iso; xorriso -indev {cd} -outdev {work}/remastered.iso "
        f"-boot_image any keep -map {work}/VIOSTOR.SYS /I386/VIOSTOR.SYS "
        f"-map {work}/TXTSETUP.SIF /I386/TXTSETUP.SIF -commit >/dev/null 2>&1"
    )


def row(measure: str, peer_name: str, goal: str, result: dict[str, float]) -> str:
    """One line of the table: the medians, their ratio and both peak RSS."""
    ours, peer = result["ours"], result["peer"]
    ratio = ours / peer if peer else float("inf")
    rss = f"{result['ours_rss']:.0f} / {result['peer_rss']:.0f} MiB"
    return f"| {measure} | {ours:.2f} s | {peer_name} {peer:.2f} s | {ratio:.2f} | {goal} | {rss} |"


CASES = ("2003", "rebuild", "2008", "help", "drivers", "flat")


def chosen_cases(argv: Sequence[str]) -> tuple[str, ...]:
    """The cases `--only` names (every case without it)."""
    parser = argparse.ArgumentParser(prog="python -m tests.bench.bench_build")
    parser.add_argument("--only", default=",".join(CASES), help=f"cases: {', '.join(CASES)}")
    chosen = tuple(c for c in parser.parse_args(argv).only.split(",") if c)
    unknown = sorted(set(chosen) - set(CASES))
    if unknown:
        parser.error(f"unknown case {', '.join(unknown)}; the cases are {', '.join(CASES)}")
    return chosen


def compile_builder() -> None:
    """Compile builder/ into its __pycache__ (timestamp-checked, as an import writes it)."""
    compileall.compile_dir(
        REPO / "builder",
        quiet=1,
        invalidation_mode=py_compile.PycInvalidationMode.TIMESTAMP,
    )


def main(argv: Sequence[str] | None = None) -> None:
    cases = chosen_cases(sys.argv[1:] if argv is None else argv)
    compile_builder()
    work = CACHE / "bench-build"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    out = work / "out"
    needs_cd = {"2003", "rebuild"} & set(cases)
    cd, virtio = cd_of(1) if needs_cd else None, virtio_of(1)
    rows = []

    if cd is not None:
        # 2003 with its CD, vs cp and vs an xorriso remaster.
        fresh = build_2003(cd, virtio, out, "--no-cache")
        subprocess.run(fresh, check=True, capture_output=True, env=ENV)
    if cd is not None and "2003" in cases:
        result = paired(fresh, ["cp", str(cd), str(work / "copy.iso")])
        rows.append(row("`build win2003-x86`, ~700 MB CD", "`cp` of the CD", "<= 1.5", result))
        (work / "copy.iso").unlink()
        result = paired(fresh, sh(xorriso_remaster(cd, work, out)))
        rows.append(row("`build win2003-x86`, ~700 MB CD", "xorriso remaster", "<= 1.0", result))
        (work / "remastered.iso").unlink(missing_ok=True)

    if cd is not None and "rebuild" in cases:
        # A rebuild with unchanged inputs (the cache) vs a fresh build.
        cached = build_2003(cd, virtio, out)
        subprocess.run(cached, check=True, capture_output=True, env=ENV)
        result = paired(cached, fresh)
        rows.append(row("rebuild, unchanged inputs (2003)", "fresh build", "<= 0.1", result))

    out08 = work / "out08"
    if "2008" in cases:
        # 2008 from the virtio-win ISO vs the shell pipelines.
        build08 = build_2008(virtio, out08, "--no-cache")
        subprocess.run(build08, check=True, capture_output=True, env=ENV)
        folders, boot = selected_folders(out08 / "manifest.json")
        title = "`build win2008-x64`, ~700 MB virtio-win ISO"
        whole = extract_and_pack(virtio, work, folders, boot, whole=True)
        result = paired(build08, sh(whole))
        rows.append(
            row(title, "extract whole ISO + mkfs.fat/mcopy + genisoimage", "<= 0.5", result)
        )
        result = paired(build08, sh(extract_and_pack(virtio, work, folders, boot, whole=False)))
        rows.append(row(title, "extract the chosen folders + the same", "<= 3", result))
        shutil.rmtree(work / "x", ignore_errors=True)

    if "help" in cases:
        # Start-up.
        result = paired(pvinstall("--help"), [sys.executable, "-c", "pass"])
        rows.append(row("`pvinstall --help`", "`python3 -c pass`", "<= 0.15 s", result))
    if "drivers" in cases:
        # The drivers listing of the 6000-file ISO.
        result = paired(
            pvinstall("drivers", str(virtio), "--profile", "win2008-x64"),
            sh(f"xorriso -osirrox on -indev {virtio} -extract / {work}/x >/dev/null 2>&1"),
            before_peer=f"rm -rf {work}/x",
        )
        rows.append(
            row(
                "`drivers --profile win2008-x64`, 6000 files",
                "extract whole ISO",
                "< 100 MB RSS",
                result,
            )
        )
        shutil.rmtree(work / "x", ignore_errors=True)

    # Peak RSS flat in the input size.
    flat = []
    for scale in (1, 2, 4) if "flat" in cases else ():
        big_cd, big_virtio = cd_of(scale), virtio_of(scale)
        _, rss03 = timed(build_2003(big_cd, virtio, out, "--no-cache"))
        _, rss08 = timed(build_2008(big_virtio, out08, "--no-cache"))
        size = (big_cd.stat().st_size + virtio.stat().st_size) / MIB
        flat.append(
            f"| {scale}x | 2003: {size:.0f} MiB in, {rss03:.0f} MiB peak | 2008: "
            f"{big_virtio.stat().st_size / MIB:.0f} MiB in, {rss08:.0f} MiB peak |"
        )
    shutil.rmtree(work, ignore_errors=True)

    table = "\n".join(
        [
            f"Medians of {RUNS} paired runs on this machine (2 shared cores), `make bench`:",
            "",
            "| measure | pvinstall | peer | ratio | goal | peak RSS (pvinstall / peer) |",
            "|---|---|---|---|---|---|",
            *rows,
            "",
            "Peak RSS against the input size:",
            "",
            "| scale | `build win2003-x86` (CD + virtio-win ISO) "
            "| `build win2008-x64` (virtio-win ISO) |",
            "|---|---|---|",
            *flat,
        ]
    )
    print(table)
    text = README.read_text()
    if cases == CASES and START in text and END in text:
        head, rest = text.split(START, 1)
        README.write_text(f"{head}{START}\n{table}\n{END}{rest.split(END, 1)[1]}")


if __name__ == "__main__":
    main()
