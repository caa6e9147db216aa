"""Fixtures the integration tests share: the libvirt URI (libvirtd is started when it
is not running, see libvirt_env), an open connection, and a generated virtio-win tree."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest

from builder.vm import virt
from tests.fixtures.virtio_win import PROFILE_OS_FOLDERS, write_modern_tree
from tests.integration import remote_host
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


@pytest.fixture(scope="session")
def sshd(uri: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[remote_host.Sshd]:
    """A private sshd on 127.0.0.1 in front of the real libvirtd (`uri` makes sure it
    runs): the remote host of the remote-host tests."""
    server = remote_host.start_sshd(tmp_path_factory.mktemp("sshd"))
    yield server
    server.stop()


@pytest.fixture
def remote_uri(sshd: remote_host.Sshd) -> str:
    return sshd.uri()


@pytest.fixture
def remote_pool(remote_uri: str, tmp_path: Path) -> Iterator[str]:
    """A directory pool of the remote host, made over the ssh connection; removed with
    its volumes afterwards."""
    name = remote_host.unique("pool")
    conn = libvirt.open(remote_uri)
    try:
        remote_host.create_dir_pool(conn, name, tmp_path / "pool")
        yield name
        remote_host.remove_pool(conn, name)
    finally:
        conn.close()
