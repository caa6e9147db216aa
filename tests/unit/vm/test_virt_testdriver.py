"""builder/vm/virt.py against libvirt's in-process test driver (test:///default): define,
start, destroy, undefine, refusals, pools and networks, and the install wait with its
success, failure, timeout and Ctrl-C paths.

test:///default is shared by every connection of this process and already holds a
running domain `test`, a network `default` and a pool `default-pool`; each test uses
its own domain names and removes what it defined.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import libvirt
import pytest

from builder.errors import BuildError, InputError
from builder.monitor import NullMonitor
from builder.options import SCREENSHOT
from builder.virtio.facts import load_driver_facts
from builder.virtio.selection import DriverSet
from builder.vm import domain, existing, virt
from builder.vm.devices import AttachedMedium
from tests.fixtures.domain_xml import removable_media
from tests.unit.vm.common import config_for, driversets, media_for

URI = "test:///default"


class Recorder(NullMonitor):
    """Records status updates; `on_status` acts on the guest from inside the wait."""

    def __init__(self, on_status: Callable[[int], None] | None = None) -> None:
        self.statuses: list[dict[str, Any]] = []
        self.infos: list[str] = []
        self.warnings: list[str] = []
        self._on_status = on_status

    def info(self, message: str) -> None:
        self.infos.append(message)

    def warning(self, message: str) -> None:
        self.warnings.append(message)

    def status(self, **fields: Any) -> None:
        self.statuses.append(fields)
        if self._on_status is not None:
            self._on_status(len(self.statuses))


@pytest.fixture(scope="module")
def drivers(tmp_path_factory: pytest.TempPathFactory) -> Mapping[str, DriverSet]:
    return driversets(tmp_path_factory.mktemp("vw"))


@pytest.fixture
def conn() -> Iterator[virt.Connection]:
    with virt.connect(URI) as connection:
        yield connection


@pytest.fixture
def name(conn: virt.Connection) -> Iterator[str]:
    value = f"pvtest-{uuid.uuid4().hex[:8]}"
    yield value
    virt.remove_domain(conn, value)


FACTS = load_driver_facts()


def xml_for(
    drivers: Mapping[str, DriverSet], name: str, out: Path, profile: str = "win2008r2-x64"
) -> str:
    config = config_for(profile, "network=user")
    return domain.domain_xml(
        config,
        drivers[profile],
        media_for(config, out, name),
        facts=FACTS,
        name=name,
        domain_type="qemu",
    )


def lookup(conn: virt.Connection, name: str) -> Any:
    return conn.handle.lookupByName(name)


# -- define / start / destroy / undefine ---------------------------------------------------


def test_define_start_destroy_undefine(
    conn: virt.Connection, name: str, drivers: Mapping[str, DriverSet], tmp_path: Path
) -> None:
    virt.define(conn, xml_for(drivers, name, tmp_path), replace=False)
    assert virt.domain_state(conn, name) == ("shut off", "unknown")
    handle = lookup(conn, name)
    handle.create()
    assert virt.domain_state(conn, name) == ("running", str(libvirt.VIR_DOMAIN_RUNNING_BOOTED))
    handle.destroy()
    assert virt.domain_state(conn, name) == ("shut off", "destroyed")
    assert virt.remove_domain(conn, name) is True
    assert virt.domain_state(conn, name) is None
    assert virt.remove_domain(conn, name) is False


def test_an_existing_name_is_refused_unless_replace(
    conn: virt.Connection, name: str, drivers: Mapping[str, DriverSet], tmp_path: Path
) -> None:
    xml = xml_for(drivers, name, tmp_path)
    virt.define(conn, xml, replace=False)
    with pytest.raises(InputError, match=f"a domain named {name} already exists on {URI}"):
        virt.define(conn, xml, replace=False)
    with pytest.raises(InputError, match="already exists") as raised:
        virt.check_can_define(conn, name, replace=False, network="user", pool=None)
    assert raised.value.problems[0].key == "--name"
    virt.check_can_define(conn, name, replace=True, network="user", pool=None)
    # --replace refuses a running domain; with --force it stops it and defines the new
    # XML in its place.
    lookup(conn, name).create()
    old_uuid = lookup(conn, name).UUIDString()
    new_xml = xml.replace("<vcpu placement='static'>2<", "<vcpu placement='static'>3<")
    with pytest.raises(InputError, match=r"is running on .*only when --force") as refused:
        virt.define(conn, new_xml, replace=True)
    assert refused.value.problems[0].key == "--replace"
    with pytest.raises(InputError, match="--force"):
        virt.check_can_define(conn, name, replace=True, network="user", pool=None)
    assert lookup(conn, name).isActive() and lookup(conn, name).UUIDString() == old_uuid
    virt.check_can_define(conn, name, replace=True, force=True, network="user", pool=None)
    virt.define(conn, new_xml, replace=True, force=True)
    handle = lookup(conn, name)
    assert not handle.isActive()
    assert handle.UUIDString() != old_uuid
    assert "<vcpu placement='static'>3</vcpu>" in handle.XMLDesc(0)


def test_unknown_xml_is_an_error_not_silently_dropped(
    conn: virt.Connection, name: str, drivers: Mapping[str, DriverSet], tmp_path: Path
) -> None:
    xml = xml_for(drivers, name, tmp_path).replace("<devices>", "<bogus/><devices>")
    with pytest.raises(BuildError, match=f"defining the domain {name} on {URI} failed"):
        virt.define(conn, xml, replace=False)
    assert virt.domain_state(conn, name) is None


# -- checks before defining --------------------------------------------------------------


def test_networks_and_pools_are_checked(conn: virt.Connection) -> None:
    virt.check_can_define(conn, "pv-free", replace=False, network="default", pool="default-pool")
    with pytest.raises(InputError) as raised:
        virt.check_can_define(conn, "pv-free", replace=False, network="nope", pool=None)
    assert "no libvirt network named nope on test:///default (networks there: default)" in str(
        raised.value
    )
    assert "'user'" in str(raised.value)
    assert raised.value.problems[0].key == "network"
    with pytest.raises(InputError) as raised:
        virt.check_can_define(conn, "pv-free", replace=False, network="user", pool="nope")
    assert "no storage pool named nope on test:///default (pools there: default-pool)" in str(
        raised.value
    )
    assert raised.value.problems[0].key == "storage_pool"
    with pytest.raises(InputError, match="not a usable domain name"):
        virt.check_can_define(conn, "a b", replace=False, network="user", pool=None)


def test_an_inactive_network_is_refused(conn: virt.Connection) -> None:
    net = conn.handle.networkLookupByName("default")
    net.destroy()
    try:
        with pytest.raises(
            InputError,
            match=r"network default on test:///default is not "
            r"active.*net-start default",
        ):
            virt.check_can_define(conn, "pv-free", replace=False, network="default", pool=None)
    finally:
        net.create()


def test_disks_in_a_pool(conn: virt.Connection, name: str, tmp_path: Path) -> None:
    config = config_for("win2008-x64", "storage_pool=default-pool", "data_disks=[3]")
    expected = (Path(f"/default-pool/{name}.qcow2"), (Path(f"/default-pool/{name}-data1.qcow2"),))
    assert virt.disk_paths(conn, config, tmp_path, name) == expected
    monitor = Recorder()
    pool = conn.handle.storagePoolLookupByName("default-pool")
    try:
        assert virt.create_disks(conn, config, tmp_path, name, monitor) == expected
        volume = pool.storageVolLookupByName(f"{name}.qcow2")
        assert volume.info()[1] == 32 * 1024**3
        assert "qcow2" in volume.XMLDesc(0)
        assert pool.storageVolLookupByName(f"{name}-data1.qcow2").info()[1] == 3 * 1024**3
        with pytest.raises(
            InputError, match=f"{name}.qcow2 in the pool default-pool already exists.*--replace"
        ):
            virt.create_disks(conn, config, tmp_path, name, monitor)
        assert virt.create_disks(conn, config, tmp_path, name, monitor, replace=True) == expected
        assert not list(tmp_path.iterdir())  # nothing next to the outputs
    finally:
        for volume_name in (f"{name}.qcow2", f"{name}-data1.qcow2"):
            with contextlib.suppress(libvirt.libvirtError):
                pool.storageVolLookupByName(volume_name).delete(0)


def test_domain_type_on_a_connection_without_kvm_or_qemu(conn: virt.Connection) -> None:
    with pytest.raises(BuildError, match="offers neither kvm nor qemu"):
        virt.choose_domain_type(conn, None)
    with pytest.raises(InputError, match="offers no qemu guests") as raised:
        virt.choose_domain_type(conn, "qemu")
    assert raised.value.problems[0].key == "--domain-type"
    with pytest.raises(InputError, match="unknown domain type 'xen'"):
        virt.choose_domain_type(conn, "xen")


# -- install -----------------------------------------------------------------------------


def _define(conn: virt.Connection, drivers: Mapping[str, DriverSet], name: str, out: Path) -> None:
    virt.define(conn, xml_for(drivers, name, out), replace=False)


def media_of(out: Path, name: str, profile: str = "win2008r2-x64") -> tuple[AttachedMedium, ...]:
    """The install media of the domain `xml_for` defines."""
    return media_for(config_for(profile, "network=user"), out, name).media


@pytest.mark.parametrize("events", [True, False], ids=["events", "polling"])
def test_install_success_detaches_the_install_media(
    conn: virt.Connection,
    name: str,
    drivers: Mapping[str, DriverSet],
    tmp_path: Path,
    events: bool,
) -> None:
    _define(conn, drivers, name, tmp_path)
    # The guest "finishes setup" by powering off at the second status report.
    monitor = Recorder(lambda n: lookup(conn, name).shutdown() if n == 2 else None)
    result = virt.install(
        conn,
        name,
        media=media_of(tmp_path, name),
        timeout_minutes=1,
        out_dir=tmp_path,
        monitor=monitor,
        status_seconds=0.05,
        poll_seconds=0.05,
        events=events,
    )
    assert result.shutoff_reason == "shutdown"
    assert result.removed_media == (
        f"hda: {tmp_path / 'install.iso'}",
        f"hdc: {tmp_path / 'drivers.iso'}",
        f"fda: {tmp_path / 'floppy.img'}",
    )
    persistent = virt.inactive_xml(conn, name)
    assert removable_media(persistent) == ()
    assert result.final_xml == persistent
    root = existing.parse_xml(persistent)
    assert [d.get("device") for d in root.iterfind("./devices/disk")] == ["disk", "cdrom", "cdrom"]
    models = [m.get("type") for m in root.iterfind("./devices/interface/model")]
    assert models == ["virtio"]
    assert [s["state"] for s in monitor.statuses] == ["running", "running"]
    assert all("elapsed" in s and "disk" in s for s in monitor.statuses)
    assert any("virt-viewer --connect test:///default" in i for i in monitor.infos)
    record = result.as_json()
    assert record["media_attached"] == [] and record["shutoff_reason"] == "shutdown"
    assert not (tmp_path / SCREENSHOT).exists()


def test_install_timeout_keeps_a_screenshot_and_stops_the_guest(
    conn: virt.Connection, name: str, drivers: Mapping[str, DriverSet], tmp_path: Path
) -> None:
    _define(conn, drivers, name, tmp_path)
    with pytest.raises(BuildError) as raised:
        virt.install(
            conn,
            name,
            media=media_of(tmp_path, name),
            timeout_minutes=0.002,
            out_dir=tmp_path,
            monitor=Recorder(),
            status_seconds=0.05,
            poll_seconds=0.05,
        )
    message = str(raised.value)
    assert (
        f"the install of {name} failed: the guest did not power off within 0.002 minutes "
        "(it was running)"
    ) in message
    assert f"screenshot {tmp_path / 'screenshot.png'}" in message
    assert "--replace" in message
    assert (tmp_path / "screenshot.png").read_bytes().startswith(b"\x89PNG")
    assert virt.domain_state(conn, name) == ("shut off", "destroyed")
    # The media stay attached: the domain is not a template.
    assert len(removable_media(virt.inactive_xml(conn, name))) == 3


def test_install_refuses_a_guest_stopped_from_outside(
    conn: virt.Connection, name: str, drivers: Mapping[str, DriverSet], tmp_path: Path
) -> None:
    _define(conn, drivers, name, tmp_path)
    serial = tmp_path / "serial.log"
    serial.write_bytes(b"boot\r\n\x1b[2JSTOP: 0x0000007B\r\n")
    monitor = Recorder(lambda n: lookup(conn, name).destroy())
    with pytest.raises(BuildError) as raised:
        virt.install(
            conn,
            name,
            media=media_of(tmp_path, name),
            timeout_minutes=1,
            out_dir=tmp_path,
            monitor=monitor,
            status_seconds=0.05,
            poll_seconds=0.05,
        )
    message = str(raised.value)
    assert "the guest was stopped from outside (destroyed) after 0:00" in message
    assert "Its last serial output: 'STOP: 0x0000007B'" in message
    assert f"serial log {serial}" in message
    assert not (tmp_path / "screenshot.png").exists()  # nothing left on screen to take


def test_ctrl_c_stops_the_guest(
    conn: virt.Connection, name: str, drivers: Mapping[str, DriverSet], tmp_path: Path
) -> None:
    _define(conn, drivers, name, tmp_path)

    def interrupt(_: int) -> None:
        raise KeyboardInterrupt

    monitor = Recorder(interrupt)
    with pytest.raises(KeyboardInterrupt):
        virt.install(
            conn,
            name,
            media=media_of(tmp_path, name),
            timeout_minutes=1,
            out_dir=tmp_path,
            monitor=monitor,
            status_seconds=0.05,
            poll_seconds=0.05,
        )
    assert virt.domain_state(conn, name) == ("shut off", "destroyed")
    assert any("interrupted" in w for w in monitor.warnings)


def test_install_refusals(
    conn: virt.Connection, name: str, drivers: Mapping[str, DriverSet], tmp_path: Path
) -> None:
    with pytest.raises(BuildError, match=f"there is no domain {name}"):
        virt.install(conn, name, media=(), timeout_minutes=1, out_dir=tmp_path, monitor=Recorder())
    config = config_for("win2008-x64", "network=user")
    no_cd = media_for(config, tmp_path, name, windows_iso=None)
    virt.define(
        conn,
        domain.domain_xml(
            config, drivers["win2008-x64"], no_cd, facts=FACTS, name=name, domain_type="qemu"
        ),
        replace=False,
    )
    with pytest.raises(InputError, match="has no install CD") as raised:
        virt.install(conn, name, media=(), timeout_minutes=1, out_dir=tmp_path, monitor=Recorder())
    assert raised.value.problems[0].key == "--install"
    with pytest.raises(InputError, match="no time to install"):
        virt.install(conn, name, media=(), timeout_minutes=0, out_dir=tmp_path, monitor=Recorder())
    lookup(conn, name).create()
    with pytest.raises(BuildError, match="already running"):
        virt.install(conn, name, media=(), timeout_minutes=1, out_dir=tmp_path, monitor=Recorder())


def test_lifecycle_events_end_the_wait_without_polling(
    conn: virt.Connection, name: str, drivers: Mapping[str, DriverSet], tmp_path: Path
) -> None:
    _define(conn, drivers, name, tmp_path)
    # Power off at the first report, then nothing would look again for 30 s: only the
    # STOPPED event can end the wait quickly.
    monitor = Recorder(lambda n: lookup(conn, name).shutdown() if n == 1 else None)
    start = time.monotonic()
    result = virt.install(
        conn,
        name,
        media=media_of(tmp_path, name),
        timeout_minutes=1,
        out_dir=tmp_path,
        monitor=monitor,
        status_seconds=30,
        poll_seconds=30,
    )
    assert time.monotonic() - start < 5
    assert result.shutoff_reason == "shutdown"


def test_existing_disks_are_refused_before_anything_is_written(
    conn: virt.Connection, name: str, tmp_path: Path
) -> None:
    config = config_for("win2008-x64", "data_disks=[3]")
    disks = virt.disk_paths(conn, config, tmp_path, name)
    virt.check_can_define(conn, name, replace=False, network="user", pool=None, disks=disks)
    disks[1][0].write_bytes(b"old")
    with pytest.raises(InputError, match=f"{name}-data1.qcow2 already exists.*--replace"):
        virt.check_can_define(conn, name, replace=False, network="user", pool=None, disks=disks)
    virt.check_can_define(conn, name, replace=True, network="user", pool=None, disks=disks)

    pooled = config_for("win2008-x64", "storage_pool=default-pool")
    in_pool = virt.disk_paths(conn, pooled, tmp_path, name)
    virt.check_can_define(
        conn, name, replace=False, network="user", pool="default-pool", disks=in_pool
    )
    pool = conn.handle.storagePoolLookupByName("default-pool")
    volume = pool.createXML(domain.volume_xml(f"{name}.qcow2", 1), 0)
    try:
        with pytest.raises(InputError, match=f"{name}.qcow2 in the pool default-pool already"):
            virt.check_can_define(
                conn, name, replace=False, network="user", pool="default-pool", disks=in_pool
            )
    finally:
        volume.delete(0)
