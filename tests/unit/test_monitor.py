"""Progress output (builder/monitor.py): which monitor the CLI picks and what each writes."""

from __future__ import annotations

import io
import json
import logging
import warnings

import pytest

from builder.monitor import (
    JsonMonitor,
    LogMonitor,
    QuietMonitor,
    RichMonitor,
    choose_monitor,
    format_elapsed,
    route_warnings,
)


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_choose_monitor_by_output() -> None:
    assert isinstance(choose_monitor(json_output=True, stream=_Tty()), JsonMonitor)
    assert isinstance(choose_monitor(json_output=False, stream=_Tty()), RichMonitor)
    assert isinstance(choose_monitor(json_output=False, stream=io.StringIO()), LogMonitor)


def test_json_monitor_writes_one_object_per_line() -> None:
    stream = io.StringIO()
    monitor = JsonMonitor(stream)
    monitor.step("write", "floppy.img")
    monitor.warning("careful")
    monitor.status(state="running", elapsed="00:10")
    events = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [e["event"] for e in events] == ["step", "warning", "status"]
    assert events[0]["detail"] == "floppy.img" and events[2]["state"] == "running"


def test_log_monitor_writes_steps_and_warnings_and_throttles_status() -> None:
    stream = io.StringIO()
    monitor = LogMonitor(stream, status_every=3600)
    monitor.step("write", "drivers.iso")
    monitor.info("details stay out of logs")
    monitor.warning("known-bad release")
    monitor.status(state="running", disk="1.0 GiB")
    monitor.status(state="running", disk="1.1 GiB")  # within the interval: dropped
    lines = stream.getvalue().splitlines()
    assert lines[0].endswith("write drivers.iso") and lines[0].startswith("pvinstall [0:00]")
    assert lines[1] == "warning: known-bad release"
    assert lines[2].endswith("state=running  disk=1.0 GiB")
    assert len(lines) == 3


def test_quiet_monitor_only_warns() -> None:
    stream = io.StringIO()
    monitor = QuietMonitor(stream)
    monitor.step("write")
    monitor.info("x")
    monitor.status(state="running")
    monitor.warning("w")
    assert stream.getvalue() == "warning: w\n"


@pytest.mark.parametrize(
    ("seconds", "text"), [(0, "0:00"), (59.9, "0:59"), (61, "1:01"), (3725, "1:02:05")]
)
def test_format_elapsed(seconds: float, text: str) -> None:
    assert format_elapsed(seconds) == text


def test_library_warnings_become_monitor_lines() -> None:
    """A library that warns (warnings.warn, as pycdlib and asn1crypto may) or logs:
    inside route_warnings that is one JSON line like every other, not Python's two
    lines."""
    stream = io.StringIO()
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        with route_warnings(JsonMonitor(stream)):
            warnings.warn("The FATs differ", UserWarning, stacklevel=1)
            logging.getLogger("fs.osfs").warning("a library's %s", "log line")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["event"] for line in lines] == ["warning"] * len(lines)
    messages = [line["message"] for line in lines]
    assert any("FATs differ" in m for m in messages), messages
    assert "fs.osfs: a library's log line" in messages
    # Outside the block, warnings are Python's again.
    assert warnings.showwarning.__module__ == "warnings"
