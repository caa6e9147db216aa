"""Helpers for tests that boot guests through the real libvirtd (qemu:///system).

``qemu_system_uri()`` makes sure the daemon answers (running ``.ci/setup-libvirtd``
when root), and ``boot_domain()`` defines a given domain XML, starts it, waits until
it shuts off (or a timeout), and returns its serial log and libvirt's shut-off reason.

These tests must really run in CI: when libvirtd cannot be reached they fail, unless
``PVTEST_ALLOW_NO_LIBVIRTD=1`` is set, in which case they are skipped.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import libvirt
import pytest

from builder.vm import virt

QEMU_SYSTEM_URI = "qemu:///system"
SETUP_SCRIPT = Path(__file__).resolve().parents[2] / ".ci" / "setup-libvirtd"
ALLOW_SKIP_ENV = "PVTEST_ALLOW_NO_LIBVIRTD"

# Serial-log markers that mean the guest will never shut down by itself.
DEFAULT_FATAL_MARKERS: tuple[str, ...] = (
    "Kernel panic - not syncing",
    "isolinux: Image checksum error",
    "No bootable device",
    "Boot failed: could not read the boot disk",
)
# OVMF refusing an EFI binary under Secure Boot, and grub (through shim) a kernel.
SECURE_BOOT_REFUSALS: tuple[str, ...] = (
    "Access Denied",
    "Security Violation",
    "bad shim signature",
    "No bootable option or device was found",
)

# Importing builder.virt registered the handler that keeps libvirt from printing
# the errors we catch (e.g. lookupByName for a domain that does not exist).


class LibvirtUnavailableError(RuntimeError):
    """qemu:///system cannot be reached and could not be set up."""


def _reachable(uri: str) -> str | None:
    """None when ``uri`` answers, else the error text."""
    try:
        conn = libvirt.open(uri)
    except libvirt.libvirtError as exc:
        return str(exc)
    try:
        conn.getVersion()
    finally:
        conn.close()
    return None


def ensure_libvirtd(uri: str = QEMU_SYSTEM_URI) -> str:
    """Return ``uri`` once libvirtd answers on it; run the setup script as root.

    Raises LibvirtUnavailableError with the reason otherwise.
    """
    error = _reachable(uri)
    if error is None:
        return uri
    if os.geteuid() != 0:
        raise LibvirtUnavailableError(
            f"{uri} is not reachable ({error}) and setting it up needs root: "
            f"run 'sudo {SETUP_SCRIPT}'"
        )
    proc = subprocess.run(
        [str(SETUP_SCRIPT)], capture_output=True, text=True, check=False, timeout=900
    )
    if proc.returncode != 0:
        raise LibvirtUnavailableError(
            f"{SETUP_SCRIPT} failed (exit {proc.returncode}):\n{proc.stderr}{proc.stdout}"
        )
    error = _reachable(uri)
    if error is not None:
        raise LibvirtUnavailableError(f"{uri} still not reachable after {SETUP_SCRIPT}: {error}")
    return uri


def qemu_system_uri() -> str:
    """For tests: qemu:///system, set up if needed; fail (or skip if allowed) otherwise."""
    try:
        return ensure_libvirtd(QEMU_SYSTEM_URI)
    except LibvirtUnavailableError as exc:
        if os.environ.get(ALLOW_SKIP_ENV) == "1":
            pytest.skip(f"libvirtd unavailable and {ALLOW_SKIP_ENV}=1: {exc}")
        pytest.fail(
            f"libvirtd unavailable: {exc}\n(set {ALLOW_SKIP_ENV}=1 to skip instead)",
            pytrace=False,
        )


def unique_domain_name(prefix: str = "pvtest") -> str:
    """A domain name no other test run uses."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def serial_log_path(domain_xml: str) -> Path:
    """The file of the domain's first ``<serial type='file'>``."""
    root = ET.fromstring(domain_xml)
    for serial in root.iterfind("./devices/serial"):
        source = serial.find("source")
        if serial.get("type") == "file" and source is not None and source.get("path"):
            return Path(str(source.get("path")))
    raise ValueError("domain XML has no <serial type='file'><source path=.../></serial>")


@dataclass(frozen=True)
class BootResult:
    name: str
    serial_log: str
    state: int  # libvirt.VIR_DOMAIN_* after the wait
    reason: int  # the state's reason, e.g. VIR_DOMAIN_SHUTOFF_SHUTDOWN
    seconds: float  # from create() to shut off (or to giving up)
    timed_out: bool
    fatal_marker: str | None  # a DEFAULT_FATAL_MARKERS hit that ended the wait early

    @property
    def shut_off(self) -> bool:
        return bool(self.state == libvirt.VIR_DOMAIN_SHUTOFF)

    @property
    def clean_shutdown(self) -> bool:
        """The guest powered itself off (not destroyed, crashed or failed)."""
        return self.shut_off and self.reason == libvirt.VIR_DOMAIN_SHUTOFF_SHUTDOWN

    @property
    def reason_name(self) -> str:
        if not self.shut_off:
            return f"state {self.state} reason {self.reason}"
        return virt.shutoff_reason(self.reason)

    def describe(self) -> str:
        """A one-paragraph summary with the log tail, for assertion messages."""
        tail = "\n".join(self.serial_log.replace("\r", "").splitlines()[-25:])
        return (
            f"domain {self.name}: {self.reason_name} after {self.seconds:.1f}s "
            f"(timed out: {self.timed_out}, fatal marker: {self.fatal_marker})\n"
            f"--- serial log tail ---\n{tail}"
        )


def _read(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return ""


def boot_domain(
    domain_xml: str,
    *,
    uri: str = QEMU_SYSTEM_URI,
    timeout: float = 180.0,
    poll_interval: float = 0.25,
    fatal_markers: Sequence[str] = DEFAULT_FATAL_MARKERS,
    stop_when: Callable[[str], bool] | None = None,
    keep_defined: bool = False,
) -> BootResult:
    """Define ``domain_xml`` (validated), start it and wait until it shuts off.

    The XML must carry a ``<serial type='file'>``; its file is removed before the
    start and returned as ``serial_log``. The wait ends early (the domain is then
    destroyed) when a ``fatal_markers`` string shows up in the log, or when
    ``stop_when(log)`` returns true. On timeout the domain is destroyed too. The
    domain is undefined afterwards unless ``keep_defined``. Refuses to touch a
    domain that already exists under the same name.
    """
    log_path = serial_log_path(domain_xml)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.unlink(missing_ok=True)
    conn = libvirt.open(uri)
    try:
        name = ET.fromstring(domain_xml).findtext("name") or ""
        try:
            conn.lookupByName(name)
        except libvirt.libvirtError:
            pass
        else:
            raise RuntimeError(f"a domain named {name!r} already exists; not touching it")
        dom = conn.defineXMLFlags(domain_xml, libvirt.VIR_DOMAIN_DEFINE_VALIDATE)
        try:
            return _run_until_off(
                dom, name, log_path, timeout, poll_interval, fatal_markers, stop_when
            )
        finally:
            if dom.isActive():
                dom.destroy()
            if not keep_defined:
                # A UEFI domain's variable store and a TPM's state go with it; a plain
                # undefine refuses a domain with NVRAM.
                dom.undefineFlags(
                    libvirt.VIR_DOMAIN_UNDEFINE_NVRAM | libvirt.VIR_DOMAIN_UNDEFINE_TPM
                )
    finally:
        conn.close()


def _run_until_off(
    dom: libvirt.virDomain,
    name: str,
    log_path: Path,
    timeout: float,
    poll_interval: float,
    fatal_markers: Sequence[str],
    stop_when: Callable[[str], bool] | None,
) -> BootResult:
    start = time.monotonic()
    dom.create()
    timed_out = False
    fatal: str | None = None
    while True:
        state, reason = dom.state()
        if state == libvirt.VIR_DOMAIN_SHUTOFF:
            break
        log = _read(log_path)
        fatal = next((m for m in fatal_markers if m in log), None)
        if fatal is not None or (stop_when is not None and stop_when(log)):
            break
        if time.monotonic() - start > timeout:
            timed_out = True
            break
        time.sleep(poll_interval)
    elapsed = time.monotonic() - start
    if dom.isActive():
        # Timed out, fatal marker or stop_when: the reason will say "destroyed".
        dom.destroy()
        state, reason = dom.state()
    return BootResult(
        name=name,
        serial_log=_read(log_path),
        state=int(state),
        reason=int(reason),
        seconds=elapsed,
        timed_out=timed_out,
        fatal_marker=fatal,
    )
