"""Hypothesis settings of the fuzzers.

By default a fuzzer runs a modest number of examples, derandomized (the same examples
on every run, so CI is repeatable and the suite stays fast) and without the example
database. `PVTEST_FUZZ=long` runs fifty times as many, random ones, for a search that
may take hours: `PVTEST_FUZZ=long .venv/bin/pytest -k fuzz`.

Every example is bounded in CPU time. Hypothesis's deadline fails an example only once
it returns, and it replays a failing example to shrink it, so neither its deadline nor
one alarm of pytest-timeout can stop a reader that loops: the bound here interrupts each
example (the shrinking replays too) and stops the fuzzer with the example that hung.
"""

from __future__ import annotations

import functools
import os
import signal
from collections.abc import Callable
from datetime import timedelta
from types import FrameType
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, settings

LONG = os.environ.get("PVTEST_FUZZ") == "long"
LONG_FACTOR = 50
# CPU seconds one example may take (they take milliseconds). ITIMER_PROF and SIGPROF
# leave ITIMER_REAL and SIGALRM to pytest-timeout.
EXAMPLE_CPU_SECONDS = 10.0
# A whole fuzzer's wall time in the ordinary suite (each takes a few seconds): the last
# resort for a hang that takes no CPU; pytest-timeout's thread method then ends the run
# with every thread's stack. The long search has no such bound.
FUZZER_SECONDS = 300

_Test = TypeVar("_Test", bound=Callable[..., None])


class FuzzerHang(BaseException):
    """An example that did not return within its bound. Not an Exception, so that
    Hypothesis does not take it for a failure to shrink (a replayed hang hangs again)
    but lets it end the test."""


def _bounded_examples(test: Any, cpu_seconds: float) -> None:
    """Make every example of the Hypothesis test `test` raise FuzzerHang, naming its
    arguments, once it has taken `cpu_seconds` of CPU time."""
    inner = test.hypothesis.inner_test

    @functools.wraps(inner)
    def bounded(*args: Any, **kwargs: Any) -> None:
        def expired(signum: int, frame: FrameType | None) -> None:
            shown = ", ".join([*map(repr, args), *(f"{k}={v!r}" for k, v in kwargs.items())])
            raise FuzzerHang(
                f"an example took more than {cpu_seconds} s of CPU time (a walk or chain "
                f"that does not end?): {shown[:2000]}"
            )

        previous = signal.signal(signal.SIGPROF, expired)
        signal.setitimer(signal.ITIMER_PROF, cpu_seconds)
        try:
            inner(*args, **kwargs)
        finally:
            signal.setitimer(signal.ITIMER_PROF, 0)
            signal.signal(signal.SIGPROF, previous)

    test.hypothesis.inner_test = bounded


def fuzz_settings(
    examples: int, *, deadline_seconds: float | None = 5.0
) -> Callable[[_Test], _Test]:
    """Settings for a fuzzer (put above `@given`) that runs `examples` examples, fifty
    times as many with PVTEST_FUZZ=long: a deadline per example (a slow example fails),
    `EXAMPLE_CPU_SECONDS` per example (a hanging one is stopped) and, in the ordinary
    suite, `FUZZER_SECONDS` for the whole test."""
    chosen = settings(
        max_examples=examples * LONG_FACTOR if LONG else examples,
        derandomize=not LONG,
        database=None,
        deadline=None if deadline_seconds is None else timedelta(seconds=deadline_seconds),
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        print_blob=LONG,
    )
    whole = pytest.mark.timeout(0 if LONG else FUZZER_SECONDS, method="thread")
    cpu_seconds = EXAMPLE_CPU_SECONDS

    def apply(test: _Test) -> _Test:
        _bounded_examples(test, cpu_seconds)
        return whole(chosen(test))  # type: ignore[no-any-return]

    return apply
