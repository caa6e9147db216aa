"""Fixtures the integration tests share: the libvirt URI (libvirtd is started when it
is not running, see libvirt_env), an open connection, and a generated virtio-win tree."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from builder.vm import virt
from tests.fixtures.virtio_win import PROFILE_OS_FOLDERS, write_modern_tree
from tests.integration.libvirt_env import qemu_system_uri


@pytest.fixture(scope="session")
def uri() -> str:
    return qemu_system_uri()


@pytest.fixture
def conn(uri: str) -> Iterator[virt.Connection]:
    with virt.connect(uri) as connection:
        yield connection


@pytest.fixture(scope="session")
def virtio_win(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtio-win tree in today's layout with the 2003, 2008 and 2008 R2 folders
    (read only: tests that break a tree make their own)."""
    return write_modern_tree(
        tmp_path_factory.mktemp("vw") / "virtio-win", oses=PROFILE_OS_FOLDERS
    ).root
