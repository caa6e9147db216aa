"""Progress reporting: an injected monitor object, never `print`.

All write to stderr so stdout stays free for `--json` and `--print-xml`:
`RichMonitor` for a terminal; `LogMonitor` otherwise (plain lines for CI logs: steps,
warnings, and the install's status at most once a minute); `JsonMonitor` (one JSON
object per line) with `--json`; `QuietMonitor` (warnings only) for library use. Callers must
never pass secrets to a monitor; the pipeline only reports names, paths and sizes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import time
import warnings
from collections.abc import Iterator
from typing import Any, Protocol, TextIO


def format_elapsed(seconds: float) -> str:
    """`M:SS`, or `H:MM:SS` from an hour on: how long a build or an install has run."""
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    if hours:
        return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"
    return f"{rest // 60}:{rest % 60:02d}"


class Monitor(Protocol):
    def step(self, name: str, detail: str = "") -> None:
        """A build step begins (`select drivers`, `write floppy`...)."""

    def info(self, message: str) -> None:
        """Something worth telling a person watching."""

    def warning(self, message: str) -> None:
        """Something the user should know even when the build succeeds."""

    def status(self, **fields: Any) -> None:
        """A periodic status update (elapsed time, guest state, disk allocation)."""


class QuietMonitor:
    """No progress, only warnings (stderr is not a terminal and no --json)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream

    def step(self, name: str, detail: str = "") -> None:
        pass

    def info(self, message: str) -> None:
        pass

    def warning(self, message: str) -> None:
        print(f"warning: {message}", file=self._stream or sys.stderr)

    def status(self, **fields: Any) -> None:
        pass


class NullMonitor(QuietMonitor):
    """Nothing at all; for tests and library use."""

    def warning(self, message: str) -> None:
        pass


class JsonMonitor:
    """One JSON object per line on stderr: {"event": ..., ...}."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream
        self._start = time.monotonic()

    def _emit(self, event: str, **fields: Any) -> None:
        record = {"event": event, "t": round(time.monotonic() - self._start, 3), **fields}
        out = self._stream or sys.stderr
        out.write(json.dumps(record, sort_keys=True) + "\n")
        out.flush()

    def step(self, name: str, detail: str = "") -> None:
        self._emit("step", name=name, detail=detail)

    def info(self, message: str) -> None:
        self._emit("info", message=message)

    def warning(self, message: str) -> None:
        self._emit("warning", message=message)

    def status(self, **fields: Any) -> None:
        self._emit("status", **fields)


class RichMonitor:
    """Readable progress for a person at a terminal."""

    def __init__(self, stream: TextIO | None = None) -> None:
        # rich is imported only for a terminal: a CI log or --json never needs it.
        from rich.console import Console

        self._console = Console(file=stream or sys.stderr, highlight=False)
        self._start = time.monotonic()

    def _elapsed(self) -> str:
        return format_elapsed(time.monotonic() - self._start)

    def step(self, name: str, detail: str = "") -> None:
        suffix = f" [dim]{detail}[/dim]" if detail else ""
        self._console.print(
            f"[dim]{self._elapsed()}[/dim] [bold]{name}[/bold]{suffix}", markup=True
        )

    def info(self, message: str) -> None:
        self._console.print(f"      {message}", markup=False)

    def warning(self, message: str) -> None:
        self._console.print(f"[yellow]warning:[/yellow] {message}", markup=True)

    def status(self, **fields: Any) -> None:
        text = "  ".join(f"{k}={v}" for k, v in fields.items())
        self._console.print(f"[dim]{self._elapsed()}[/dim]   {text}", markup=True)


class LogMonitor(QuietMonitor):
    """Plain lines for a log (stderr is not a terminal): a step per line, warnings,
    and a status line at most every `status_every` seconds, so an install of an hour
    or two shows that it moves without flooding the log."""

    def __init__(self, stream: TextIO | None = None, *, status_every: float = 60.0) -> None:
        super().__init__(stream)
        self._start = time.monotonic()
        self._status_every = status_every
        self._last_status: float | None = None

    def _line(self, text: str) -> None:
        out = self._stream or sys.stderr
        out.write(f"pvinstall [{format_elapsed(time.monotonic() - self._start)}] {text}\n")
        out.flush()

    def step(self, name: str, detail: str = "") -> None:
        self._line(f"{name} {detail}".rstrip())

    def status(self, **fields: Any) -> None:
        now = time.monotonic()
        if self._last_status is not None and now - self._last_status < self._status_every:
            return
        self._last_status = now
        self._line("  ".join(f"{k}={v}" for k, v in fields.items()))


def choose_monitor(*, json_output: bool, stream: TextIO | None = None) -> Monitor:
    """The monitor the CLI uses: JSON lines with --json, rich on a terminal, else plain
    log lines."""
    out = stream or sys.stderr
    if json_output:
        return JsonMonitor(out)
    if out.isatty():
        return RichMonitor(out)
    return LogMonitor(out)


class _ToMonitor(logging.Handler):
    def __init__(self, monitor: Monitor) -> None:
        super().__init__(logging.WARNING)
        self._monitor = monitor

    def emit(self, record: logging.LogRecord) -> None:
        self._monitor.warning(f"{record.name}: {record.getMessage()}")


@contextlib.contextmanager
def route_warnings(monitor: Monitor) -> Iterator[None]:
    """Inside the block, what libraries say through `warnings` or `logging` (pycdlib and
    asn1crypto may) reaches the user as the monitor's warnings: one line each,
    a JSON line with --json, never Python's two-line warning text between them."""

    def show(  # noqa: PLR0917 - warnings.showwarning's signature
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: TextIO | None = None,
        line: str | None = None,
    ) -> None:
        del filename, lineno, file, line  # where in a library it warned is not the user's
        monitor.warning(f"{category.__name__}: {message}")

    handler = _ToMonitor(monitor)
    root = logging.getLogger()
    previous_show = warnings.showwarning
    warnings.showwarning = show
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        warnings.showwarning = previous_show
