"""Ctrl-C, SIGTERM and SIGHUP: one way to stop pvinstall, with its cleanup.

`install()` is the first thing the entry point does (builder/entry.py), before the
command line's imports: from then on each of the three signals raises `Interrupted`
(a KeyboardInterrupt, so every `except KeyboardInterrupt` cleanup also runs for
SIGTERM) in the main thread. Only the first signal raises; later ones are noted and
ignored, so that a second Ctrl-C cannot break off the cleanup the first one started
(kill -9 still ends the process; the next run removes what it left).

`deferred()` holds the signals back for a few system calls that must happen together
(the rename that commits a build and the bookkeeping around it): a signal that arrives
meanwhile is raised when the block ends.

This module imports only the standard library's signal and os: it runs before
anything else is loaded.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

_received: list[int] = []
_deferring: list[bool] = []
_finished: list[bool] = []


class Interrupted(KeyboardInterrupt):
    """A stop signal arrived; `signum` says which (exit code 128 + signum)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def _on_signal(signum: int, _frame: FrameType | None) -> None:
    if _finished:
        return  # the work is done and being reported: nothing is left to stop
    _received.append(signum)
    if len(_received) == 1 and not _deferring:
        raise Interrupted(signum)


def finish() -> None:
    """The run's work is done (or has failed) and its result is being printed: a stop
    signal from now on changes nothing, so that the result is the one reported (with
    --json, the one document on stdout)."""
    _finished.append(True)


def install() -> None:
    """Route SIGINT, SIGTERM and SIGHUP to `Interrupted` (main thread only; idempotent)."""
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in STOP_SIGNALS:
        # A signal the parent set to ignored (nohup, a shell's background job) stays so.
        if signal.getsignal(signum) is not signal.SIG_IGN:
            signal.signal(signum, _on_signal)


def raise_noted(noted: list[int]) -> None:
    """Raise `Interrupted` for the first of the signals noted before `install()` (the
    entry point notes them while it loads this module)."""
    if noted and not _received:
        _received.extend(noted)
        raise Interrupted(noted[0])


def received() -> int | None:
    """The first stop signal this process got, or None."""
    return _received[0] if _received else None


def exit_code(default: int = 128 + signal.SIGINT) -> int:
    """128 + the first stop signal (130 for Ctrl-C, 143 for SIGTERM), else `default`."""
    first = received()
    return 128 + first if first is not None else default


def reset() -> None:
    """Forget the signals received and the end of the work (for tests that run several
    commands in one process)."""
    _received.clear()
    _finished.clear()


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Hold SIGINT, SIGTERM and SIGHUP back inside the block: the first one that arrives
    meanwhile raises `Interrupted` when the block ends (a flag, not a signal mask: libvirt's
    event thread would take a signal the main thread masks)."""
    before = len(_received)
    _deferring.append(True)
    try:
        yield
    finally:
        _deferring.pop()
    if not _deferring and before == 0 and _received:
        raise Interrupted(_received[0])
