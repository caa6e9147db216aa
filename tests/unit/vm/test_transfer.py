"""builder/vm/transfer.py's failure paths that a real host does not produce on demand:
libvirt reading an uploaded overlay as backed by something else than the DVD's volume.
(The uploads themselves, the room check and the clean-up after a failed upload run
against a real libvirtd over qemu+ssh in tests/integration/test_remote_host.py.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from builder.errors import BuildError
from builder.monitor import NullMonitor
from builder.vm import disk_images, transfer, virt
from builder.vm.remote import Upload

HOST_DVD = "/var/lib/pool/web-windows.iso"


class _Host:
    """The pool of a host as transfer.upload_all sees it through builder.vm.virt."""

    def __init__(self, backing: tuple[str | None, str | None]) -> None:
        self.volumes: list[str] = []
        self.deleted: list[str] = []
        self.rebased: list[tuple[str, str]] = []
        self._backing = backing

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(virt, "pool_room", lambda conn, pool: 1 << 40)
        monkeypatch.setattr(virt, "upload_volume", self._upload)
        monkeypatch.setattr(virt, "volume_path", lambda conn, pool, volume: HOST_DVD)
        monkeypatch.setattr(virt, "volume_facts", self._facts)
        monkeypatch.setattr(virt, "delete_volume", self._delete)
        monkeypatch.setattr(disk_images, "rebase_unsafe", self._rebase)

    def _upload(self, conn: Any, pool: str, volume: str, path: Path, **_: Any) -> None:
        assert path.is_file()
        self.volumes.append(volume)

    def _facts(self, conn: Any, pool: str, volume: str) -> virt.VolumeFacts:
        path, fmt = self._backing
        return virt.VolumeFacts(
            path=f"/var/lib/pool/{volume}",
            format="qcow2",
            capacity=4096,
            allocation=0,
            physical=4096,
            backing_path=path,
            backing_format=fmt,
        )

    def _delete(self, conn: Any, pool: str, volume: str) -> bool:
        self.deleted.append(volume)
        return volume in self.volumes

    def _rebase(self, path: Path, backing: str, backing_format: str) -> None:
        self.rebased.append((backing, backing_format))


def _uploads(tmp_path: Path) -> list[Upload]:
    dvd = tmp_path / "dvd.iso"
    dvd.write_bytes(b"\0" * 4096)
    overlay = tmp_path / "install-dvd.qcow2"
    overlay.write_bytes(b"QFI\xfb" + b"\0" * 4092)
    return [
        Upload(medium="Windows ISO", path=dvd, volume="web-windows.iso"),
        Upload(
            medium="install-dvd.qcow2",
            path=overlay,
            volume="web@install-dvd.qcow2",
            format="qcow2",
            backing="web-windows.iso",
        ),
    ]


def test_an_overlay_backed_as_asked_stays(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    host = _Host((HOST_DVD, "raw"))
    host.install(monkeypatch)
    done = transfer.upload_all(None, "pool", _uploads(tmp_path), NullMonitor())  # type: ignore[arg-type]
    assert done == ("web-windows.iso", "web@install-dvd.qcow2")
    assert host.rebased == [(HOST_DVD, "raw")] and host.deleted == []


@pytest.mark.parametrize(
    "backing",
    [
        (None, None),  # the host sees no backing file at all
        (HOST_DVD, "qcow2"),  # the right file, probed as another format
        ("/etc/shadow", "raw"),  # another file
        (HOST_DVD, None),  # no format: QEMU would guess
    ],
)
def test_an_overlay_the_host_reads_otherwise_is_deleted_with_the_dvd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backing: tuple[str | None, str | None]
) -> None:
    host = _Host(backing)
    host.install(monkeypatch)
    with pytest.raises(BuildError, match=r"web@install-dvd\.qcow2.*deleted again"):
        transfer.upload_all(None, "pool", _uploads(tmp_path), NullMonitor())  # type: ignore[arg-type]
    # The overlay goes at once, the DVD's volume with the clean-up of the failed upload.
    assert host.deleted == ["web@install-dvd.qcow2", "web-windows.iso"]
    # The user's files are left as they were; the rebased copy was a temporary one.
    assert (tmp_path / "install-dvd.qcow2").read_bytes()[:4] == b"QFI\xfb"
