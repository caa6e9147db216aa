"""Fixtures of the domain tests: a selection per profile from a virtio-win fixture tree."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from builder.virtio.selection import DriverSet
from tests.unit.vm.common import driversets


@pytest.fixture(scope="module")
def drivers(tmp_path_factory: pytest.TempPathFactory) -> Mapping[str, DriverSet]:
    return driversets(tmp_path_factory.mktemp("vw"))
