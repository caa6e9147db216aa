"""Fixtures of the answer-file tests: a virtio-win tree and a selection per profile."""

from __future__ import annotations

import pytest

from builder.sources import read_catalogs
from builder.virtio.facts import load_driver_facts
from builder.virtio.packages import scan_source
from builder.virtio.selection import DriverSet, select_drivers
from builder.virtio.source import DirectorySource
from builder.virtio.trust import apply_signatures
from builder.windows.profiles import PROFILES
from tests.fixtures.virtio_win import PROFILE_OS_FOLDERS, Tree, write_modern_tree


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Tree:
    return write_modern_tree(tmp_path_factory.mktemp("vw") / "virtio-win", oses=PROFILE_OS_FOLDERS)


@pytest.fixture(scope="module")
def driversets(tree: Tree) -> dict[str, DriverSet]:
    """Every profile's selection, with the signatures of its catalogs read (as a build
    has them)."""
    source = DirectorySource(tree.root)
    scan = scan_source(source, load_driver_facts())
    found = {}
    for name, profile in PROFILES.items():
        drivers = select_drivers(scan, profile)
        found[name] = apply_signatures(drivers, read_catalogs(source, drivers))
    return found


@pytest.fixture(scope="module")
def win2008r2(driversets: dict[str, DriverSet]) -> DriverSet:
    return driversets["win2008r2-x64"]


@pytest.fixture(scope="module")
def win2003(driversets: dict[str, DriverSet]) -> DriverSet:
    return driversets["win2003-x86"]
