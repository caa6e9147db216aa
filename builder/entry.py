"""The console script's entry point (`pvinstall`, `python -m builder`).

The stop signals are routed to `Interrupted` when this module is imported, before the
command line and its libraries are (typer, rich, jinja2, libvirt take a noticeable
fraction of a second): a Ctrl-C or SIGTERM during that time ends pvinstall with one line
and exit code 130 or 143, never a traceback.
"""

from __future__ import annotations

import gc
import signal
import sys
from types import FrameType

# First of all, before even builder.interrupts is imported: a stop signal is noted here,
# and raised by main() once the handler that cleans up is in place.
_early: list[int] = []


def _note(signum: int, _frame: FrameType | None) -> None:
    _early.append(signum)


for _signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    if signal.getsignal(_signum) is not signal.SIG_IGN:
        signal.signal(_signum, _note)

from builder import interrupts  # noqa: E402 - after the signals are routed

interrupts.install()


def _interrupted_early(stop: interrupts.Interrupted, argv: list[str]) -> int:
    """Report a stop signal the command line did not see."""
    interrupts.finish()
    if "--json" in argv:
        import json

        document = {
            "error": {
                "kind": "interrupted",
                "exit_code": stop.exit_code,
                "problems": [{"key": "", "message": f"interrupted ({stop})", "hint": None}],
            }
        }
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
    sys.stderr.write(f"pvinstall: interrupted ({stop})\n")
    return stop.exit_code


def _ignore_stop_signals() -> None:
    """The result is reported: a stop signal from now on changes nothing. (The
    interpreter's shutdown resets a Python handler to the default action, and a late
    Ctrl-C would end a finished run by the signal instead of its exit code; an ignored
    signal stays ignored.)"""
    for signum in interrupts.STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)


def main() -> int:
    """Load the command line and run it; the exit code."""
    interrupts.install()
    argv = sys.argv[1:]
    try:
        interrupts.raise_noted(_early)
        from builder import cli

        code = cli.main(argv)
        interrupts.finish()
    except interrupts.Interrupted as stop:
        # Before the command line was loaded (or after it returned): it reports the
        # signals that arrive while it runs.
        code = _interrupted_early(stop, argv)
    _ignore_stop_signals()
    # The interpreter's shutdown collects garbage over every object still alive (the
    # modules, a build's tables): 0.1 to 0.4 s after a build is done. Frozen objects are
    # left out of those collections; atexit handlers and finalizers still run.
    gc.freeze()
    return code
