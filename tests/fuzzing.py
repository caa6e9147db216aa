"""Hypothesis settings of the fuzzers.

By default a fuzzer runs a modest number of examples, derandomized (the same examples
on every run, so CI is repeatable and the suite stays fast) and without the example
database. `PVTEST_FUZZ=long` runs fifty times as many, random ones, for a search that
may take hours: `PVTEST_FUZZ=long .venv/bin/pytest -k fuzz`.
"""

from __future__ import annotations

import os
from datetime import timedelta

from hypothesis import HealthCheck, settings

LONG = os.environ.get("PVTEST_FUZZ") == "long"
LONG_FACTOR = 50


def fuzz_settings(examples: int, *, deadline_seconds: float | None = 5.0) -> settings:
    """Settings for a fuzzer that runs `examples` examples (fifty times as many with
    PVTEST_FUZZ=long). The deadline bounds one example's time: a reader that loops
    fails it rather than hanging the suite."""
    return settings(
        max_examples=examples * LONG_FACTOR if LONG else examples,
        derandomize=not LONG,
        database=None,
        deadline=None if deadline_seconds is None else timedelta(seconds=deadline_seconds),
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        print_blob=LONG,
    )
