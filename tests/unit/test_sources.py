"""Driver sources, the dispatcher (builder/sources.py): the search order and what is not a
source. Real images are read in tests/integration/test_sources.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder import sources
from builder.errors import InputError
from builder.virtio.facts import load_driver_facts
from builder.virtio.packages import scan_source
from builder.virtio.selection import select_drivers
from builder.virtio.source import DirectorySource, SourceLimits
from builder.windows.profiles import PROFILES
from tests.fixtures.virtio_win import write_modern_tree


def test_the_search_order() -> None:
    everything = {Path(p) for p in sources.DEFAULT_SOURCES}
    assert sources.find_source("x.iso", {"VIRTIO_WIN": "y.iso"}, everything.__contains__) == Path(
        "x.iso"
    )
    assert sources.find_source(None, {"VIRTIO_WIN": "y.iso"}, everything.__contains__) == Path(
        "y.iso"
    )
    for index, candidate in enumerate(sources.DEFAULT_SOURCES):
        present = {Path(p) for p in sources.DEFAULT_SOURCES[index:]}
        assert sources.find_source(None, {}, present.__contains__) == Path(candidate)
    with pytest.raises(InputError) as raised:
        sources.find_source(None, {}, lambda _: False)
    assert "searched --drivers, $VIRTIO_WIN, drivers/virtio-win.iso" in str(raised.value)
    assert raised.value.problems[0].key == "--drivers"


def test_what_is_not_a_source(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        sources.open_source(tmp_path / "missing")
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    with pytest.raises(InputError, match="is not an ISO 9660 image, a FAT floppy image"):
        sources.open_source(text)
    assert isinstance(sources.open_source(tmp_path), DirectorySource)


def test_the_selected_packages_are_bounded_before_anything_is_read(tmp_path: Path) -> None:
    tree = write_modern_tree(tmp_path / "vw", drivers=("viostor", "NetKVM"))
    source = DirectorySource(tree.root)
    drivers = select_drivers(scan_source(source, load_driver_facts()), PROFILES["win2008-x64"])
    total = sum(f.size for d in drivers.selected for f in d.files)
    assert len(sources.driver_digests(source, drivers, SourceLimits(selected_bytes=total))) > 0
    with pytest.raises(InputError) as raised:
        sources.driver_digests(source, drivers, SourceLimits(selected_bytes=total - 1))
    message = str(raised.value)
    assert f"are {total} bytes together" in message
    largest = max((f for d in drivers.selected for f in d.files), key=lambda f: f.size)
    assert f"{source.describe(largest.path)} ({largest.size} bytes)" in message
