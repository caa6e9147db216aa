"""The console script's entry point: once the result is reported, a stop signal changes
nothing, up to the process's very end (the interpreter's shutdown would otherwise put
the default action back, and a late Ctrl-C would end a finished build by the signal)."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

import pytest

AFTER_THE_RESULT = textwrap.dedent(
    """
    import os, signal, sys
    from builder import cli, entry

    cli.main = lambda argv: print("result") or {code}
    code = entry.main()
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        assert signal.getsignal(signum) is signal.SIG_IGN, signum
        os.kill(os.getpid(), {signum})
    sys.exit(code)
    """
)


@pytest.mark.parametrize("code", [0, 1, 2])
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_stop_signal_after_the_result_changes_nothing(code: int, signum: int) -> None:
    script = AFTER_THE_RESULT.format(code=code, signum=int(signum))
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False, timeout=60
    )
    assert (done.returncode, done.stdout, done.stderr) == (code, "result\n", "")
