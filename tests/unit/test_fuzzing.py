"""The fuzzers' bounds (tests/fuzzing.py): a fuzzer whose example never returns fails
within its bound, naming the example, and the run goes on."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

HANGING_FUZZER = """
from hypothesis import given, strategies as st

import tests.fuzzing as fuzzing

fuzzing.EXAMPLE_CPU_SECONDS = 1.0


@fuzzing.fuzz_settings(10)
@given(st.integers())
def test_a_reader_that_loops(number: int) -> None:
    chain = [number]
    while True:  # what pyfatfs did on a looping cluster chain
        chain.append(chain[-1])
        del chain[:-1]


def test_the_next_test_runs() -> None:
    pass
"""


def test_a_fuzzer_that_hangs_fails_within_its_bound(tmp_path: Path) -> None:
    fuzzer = tmp_path / "test_hanging.py"
    fuzzer.write_text(HANGING_FUZZER)
    environment = {k: v for k, v in os.environ.items() if k != "PVTEST_FUZZ"}
    environment["PYTHONPATH"] = str(REPO)
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(fuzzer)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=environment,
        check=False,
    )
    elapsed = time.monotonic() - started
    assert done.returncode == 1, done.stdout + done.stderr
    assert "1 failed, 1 passed" in done.stdout, done.stdout
    assert "FuzzerHang: an example took more than 1.0 s of CPU time" in done.stdout
    assert "number=0" in done.stdout  # the example that hung
    assert elapsed < 60, elapsed
