"""The libvirt edge: connect, create disks, define, install and watch. The only module
that imports libvirt.

Everything libvirt can say goes through here and comes out as a sentence
(`InputError` when the user's input is wrong, such as a missing network or pool or
an existing domain; `BuildError` when the hypervisor refuses or the install fails),
never as a traceback or as libvirt's own stderr output. The XML itself is built and
edited by `builder/vm/domain.py`; this module only hands it to libvirt.

libvirt-python has no type information: its objects are held as `Any` inside this
module and never leak out except through the `Connection` wrapper.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import re
import shutil
import threading
import time
import urllib.parse
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import libvirt

from builder.config import BuildConfig
from builder.errors import BuildError, InputError, Problem, raise_problems
from builder.monitor import Monitor, format_elapsed
from builder.options import SCREENSHOT, SERIAL_TAIL
from builder.vm import devices, disk_images, domain, existing, remote
from builder.vm.devices import AttachedMedium, Firmware
from builder.vm.uri import DEFAULT_URI

SERIAL_TAIL_BYTES = 64 * 1024
# How long opening a remote connection may take: libvirt gives ssh no ConnectTimeout,
# so a port that accepts and never answers would hang the build for ever.
CONNECT_TIMEOUT_SECONDS = 30.0
# One send() of a stream takes at most 32 MiB; smaller pieces keep the progress moving.
STREAM_CHUNK = 4 * 1024 * 1024

# Pool types whose volumes are plain files a <disk type='file'> can name.
FILE_POOL_TYPES = ("dir", "fs", "netfs")


def _ignore_error(_ctx: object, _error: object) -> None:
    """libvirt prints every error to stderr unless a handler takes it, even the ones
    pvinstall catches and turns into sentences."""


libvirt.registerErrorHandler(_ignore_error, None)

_STATE_NAMES = MappingProxyType(
    {
        libvirt.VIR_DOMAIN_NOSTATE: "no state",
        libvirt.VIR_DOMAIN_RUNNING: "running",
        libvirt.VIR_DOMAIN_BLOCKED: "blocked",
        libvirt.VIR_DOMAIN_PAUSED: "paused",
        libvirt.VIR_DOMAIN_SHUTDOWN: "shutting down",
        libvirt.VIR_DOMAIN_SHUTOFF: "shut off",
        libvirt.VIR_DOMAIN_CRASHED: "crashed",
        libvirt.VIR_DOMAIN_PMSUSPENDED: "suspended",
    }
)

_SHUTOFF_REASONS = MappingProxyType(
    {
        libvirt.VIR_DOMAIN_SHUTOFF_UNKNOWN: "unknown",
        libvirt.VIR_DOMAIN_SHUTOFF_SHUTDOWN: "shutdown",
        libvirt.VIR_DOMAIN_SHUTOFF_DESTROYED: "destroyed",
        libvirt.VIR_DOMAIN_SHUTOFF_CRASHED: "crashed",
        libvirt.VIR_DOMAIN_SHUTOFF_MIGRATED: "migrated",
        libvirt.VIR_DOMAIN_SHUTOFF_SAVED: "saved",
        libvirt.VIR_DOMAIN_SHUTOFF_FAILED: "failed",
        libvirt.VIR_DOMAIN_SHUTOFF_FROM_SNAPSHOT: "from-snapshot",
        libvirt.VIR_DOMAIN_SHUTOFF_DAEMON: "daemon",
    }
)


def shutoff_reason(reason: int) -> str:
    """libvirt's reason for a shut-off domain, in a word (`shutdown`, `destroyed`, ...)."""
    return _SHUTOFF_REASONS.get(reason, str(reason))


# Pauses a guest never comes back from by itself.
_FATAL_PAUSES = (libvirt.VIR_DOMAIN_PAUSED_IOERROR, libvirt.VIR_DOMAIN_PAUSED_CRASHED)

_PERMISSION_CODES = (
    libvirt.VIR_ERR_AUTH_FAILED,
    libvirt.VIR_ERR_AUTH_CANCELLED,
    libvirt.VIR_ERR_AUTH_UNAVAILABLE,
    libvirt.VIR_ERR_OPERATION_DENIED,
)
_URI_SHAPE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://\S*")
# Hypervisor drivers libvirt has (the part of the scheme before any "+transport").
# Checked here because a client without a reachable daemon reports an unknown
# driver only as "cannot connect to the socket".
_DRIVERS = frozenset(
    {
        "qemu",
        "test",
        "xen",
        "lxc",
        "vbox",
        "esx",
        "gsx",
        "vpx",
        "bhyve",
        "ch",
        "vz",
        "openvz",
        "hyperv",
        "vmwareplayer",
        "vmwarews",
        "vmwarefusion",
        "libxl",
        "xenapi",
        "phyp",
        "uml",
        "remote",
        "interface",
        "network",
        "nodedev",
        "nwfilter",
        "secret",
        "storage",
    }
)
_QEMU_LOCAL_PATHS = ("/system", "/session", "/embed")


# -- errors ------------------------------------------------------------------------------


def _message(error: Any) -> str:
    text = str(error.get_error_message() or error).strip()
    return text.rstrip(".")


def _code(error: Any) -> int:
    return int(error.get_error_code() or 0)


def _is_permission(error: Any) -> bool:
    # A system error (a socket libvirt may not open) carries its errno in int1.
    system_denied = _code(error) == libvirt.VIR_ERR_SYSTEM_ERROR and error.get_int1() in (
        errno.EACCES,
        errno.EPERM,
    )
    return _code(error) in _PERMISSION_CODES or system_denied


@contextmanager
def _refused(what: str, uri: str) -> Iterator[None]:
    """Turn any libvirt error inside the block into a BuildError: `what` failed."""
    try:
        yield
    except libvirt.libvirtError as error:
        if _is_permission(error):
            raise BuildError(
                f"{what} on {uri}: permission denied ({_message(error)}).", _PERMISSION_HINT
            ) from None
        raise BuildError(f"{what} on {uri} failed: {_message(error)}.") from None


_PERMISSION_HINT = (
    "Run as root, join the libvirt group, or use --connect qemu:///session "
    "for guests of your own user."
)


# -- the event loop ----------------------------------------------------------------------

_EVENT_LOOP_LOCK = threading.Lock()
_event_loop_running = False


def _run_event_loop() -> None:
    while True:
        try:
            libvirt.virEventRunDefaultImpl()
        except libvirt.libvirtError:
            time.sleep(0.1)


def _start_event_loop() -> None:
    """Register libvirt's default event loop and run it on a daemon thread, once.

    It must be registered before a connection is opened for that connection to
    deliver events, and it must keep running: the keepalive of remote connections
    is served by it, and the connection drops when nobody turns the loop.
    """
    global _event_loop_running  # noqa: PLW0603 - one loop per process, by libvirt's design
    with _EVENT_LOOP_LOCK:
        if _event_loop_running:
            return
        libvirt.virEventRegisterDefaultImpl()
        threading.Thread(target=_run_event_loop, name="libvirt-events", daemon=True).start()
        _event_loop_running = True


# -- connections -------------------------------------------------------------------------


class Connection:
    """An open libvirt connection and the URI it was opened with."""

    def __init__(self, handle: Any, uri: str) -> None:
        self.handle = handle
        self.uri = uri

    def close(self) -> None:
        with contextlib.suppress(libvirt.libvirtError):
            # Closing a dropped connection has nothing left to report.
            self.handle.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def connect(uri: str = DEFAULT_URI) -> Connection:
    """Open `uri`. InputError when it is not a URI libvirt knows; BuildError when the
    hypervisor there does not answer or refuses us."""
    if not _URI_SHAPE.fullmatch(uri):
        raise InputError(
            f"{uri!r} is not a libvirt URI.",
            "Use a URI such as qemu:///system or qemu+ssh://host/system.",
            key="--connect",
        )
    _check_uri(uri)
    _start_event_loop()
    try:
        if remote.uri_has_host(uri):
            handle = _open_bounded(uri, CONNECT_TIMEOUT_SECONDS)
        else:
            handle = libvirt.open(uri)
    except libvirt.libvirtError as error:
        raise _connect_error(uri, error) from None
    if handle is None:  # old bindings return None instead of raising
        raise BuildError(f"cannot connect to {uri}.")
    return Connection(handle, uri)


def _open_bounded(uri: str, seconds: float) -> Any:
    """libvirt.open(uri) on a thread of its own, given up after `seconds`: a host that
    accepts the connection and never answers would block open() for ever. A late
    answer after the bound is closed again by the thread."""
    done = threading.Event()
    lock = threading.Lock()
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            handle = libvirt.open(uri)
        except libvirt.libvirtError as error:
            result["error"] = error
            handle = None
        with lock:
            if result.get("abandoned") and handle is not None:
                with contextlib.suppress(libvirt.libvirtError):
                    handle.close()
                return
            result["handle"] = handle
        done.set()

    threading.Thread(target=run, name="libvirt-connect", daemon=True).start()
    if not done.wait(seconds):
        with lock:
            if not done.is_set():
                result["abandoned"] = True
                raise BuildError(
                    f"cannot reach libvirt at {uri}: no answer within {seconds:g} seconds.",
                    "Check the host name and port of the URI, and that sshd and libvirtd "
                    "answer there (e.g. ssh -p PORT user@host virsh version).",
                )
    if "error" in result:
        raise result["error"]
    return result.get("handle")


def _check_uri(uri: str) -> None:
    """Refuse, before any connection attempt, a URI whose driver libvirt does not have
    or a local QEMU URI with a path the QEMU driver does not serve."""
    scheme, _, rest = uri.partition("://")
    driver = scheme.split("+", 1)[0].lower()
    if driver not in _DRIVERS:
        raise InputError(
            f"no libvirt driver handles {uri} (unknown driver {driver!r}).",
            "Use a URI such as qemu:///system or qemu+ssh://host/system.",
            key="--connect",
        )
    try:
        urllib.parse.urlsplit(uri).port  # noqa: B018 - parsing the port is the check
    except ValueError as error:
        raise InputError(
            f"{uri} is not a valid libvirt URI: {error}.",
            "Use a URI such as qemu:///system or qemu+ssh://user@host:22/system.",
            key="--connect",
        ) from None
    _, _, path = rest.partition("/")
    path = "/" + path.split("?", 1)[0]
    if driver == "qemu" and not path.startswith(_QEMU_LOCAL_PATHS):
        raise InputError(
            f"{uri} is not a valid libvirt URI: the QEMU driver serves "
            f"{', '.join(_QEMU_LOCAL_PATHS)}, not {path!r}.",
            "Use qemu:///system (or qemu:///session for your own user).",
            key="--connect",
        )


def _connect_error(uri: str, error: Any) -> InputError | BuildError:
    code, text = _code(error), _message(error)
    if code == libvirt.VIR_ERR_NO_CONNECT:
        return InputError(
            f"no libvirt driver handles {uri} ({text}).",
            "Use a URI such as qemu:///system or qemu+ssh://host/system.",
            key="--connect",
        )
    if _is_permission(error):
        return BuildError(f"permission denied connecting to {uri} ({text}).", _PERMISSION_HINT)
    ssh = "ssh" in uri.partition("://")[0].lower()
    if ssh and remote.uri_has_host(uri) and error.get_error_domain() == libvirt.VIR_FROM_RPC:
        # The transport failed: libvirt wraps what ssh (or the helper) said.
        return BuildError(
            f"cannot reach libvirt at {uri}: {remote.ssh_reason(text)}.",
            "Check the user, the keyfile= and the host key of the URI (ssh must log in "
            "without a prompt), and that libvirtd runs on the host.",
        )
    return BuildError(
        f"cannot reach libvirt at {uri}: {text}.",
        "Check that libvirtd runs there (as root: .ci/setup-libvirtd starts one without "
        "systemd), or choose another hypervisor with --connect.",
    )


def domain_types_offered(capabilities_xml: str, arches: tuple[str, ...]) -> set[str]:
    """The domain types (kvm, qemu, ...) the capabilities XML offers for `arches`."""
    root = existing.parse_xml(capabilities_xml)
    offered: set[str] = set()
    for guest in root.iterfind("guest"):
        if guest.findtext("os_type") != "hvm":
            continue
        arch = guest.find("arch")
        if arch is None or arch.get("name") not in arches:
            continue
        offered.update(str(d.get("type")) for d in arch.iterfind("domain"))
    return offered


def choose_domain_type(conn: Connection, forced: str | None, *, arch: str | None = None) -> str:
    """`kvm` when the connection offers it, else `qemu` (TCG); `forced` picks one.

    `arch` is the libvirt guest arch (i686, x86_64); by default either counts.
    """
    if forced is not None:
        domain.validate_domain_type(forced)
    with _refused("reading the capabilities", conn.uri):
        capabilities = str(conn.handle.getCapabilities())
    arches = (arch,) if arch else ("x86_64", "i686")
    offered = domain_types_offered(capabilities, arches)
    if forced is not None:
        if forced not in offered:
            have = ", ".join(sorted(offered)) or "none"
            raise InputError(
                f"{conn.uri} offers no {forced} guests for {'/'.join(arches)} (it offers: {have}).",
                "Leave out --domain-type, or use --domain-type qemu (TCG) where there is no KVM.",
                key="--domain-type",
            )
        return forced
    for kind in domain.DOMAIN_TYPES:
        if kind in offered:
            return kind
    raise BuildError(
        f"{conn.uri} offers neither kvm nor qemu guests for {'/'.join(arches)}.",
        "Install qemu-system-x86 on the host, or connect to another hypervisor.",
    )


# -- what the machine needs of the host ----------------------------------------------------

# The Debian packages that give a host what the modern machine needs.
OVMF_PACKAGE = "ovmf"
SWTPM_PROGRAMS = (("swtpm", "swtpm"), ("swtpm_setup", "swtpm-tools"))


def _is_local(uri: str) -> bool:
    host = urllib.parse.urlsplit(uri).hostname
    return host in (None, "", "localhost", "127.0.0.1", "::1")


def _enum_values(caps: ET.Element, path: str, name: str) -> set[str]:
    return {v.text or "" for v in caps.iterfind(f"{path}/enum[@name='{name}']/value")}


def machine_problems(
    caps_xml: str, *, efi: bool, secure_boot: bool, tpm: bool, where: str
) -> list[str]:
    """What a host's domain capabilities (`virsh domcapabilities`) say it lacks for the
    machine (pure): UEFI firmware, its Secure Boot build, an emulated TPM 2.0."""
    caps = existing.parse_xml(caps_xml)
    problems = []
    if efi and "efi" not in _enum_values(caps, "os", "firmware"):
        problems.append(
            f"{where} has no UEFI firmware for this machine: install {OVMF_PACKAGE} there"
        )
    elif secure_boot and "yes" not in _enum_values(caps, "os/loader", "secure"):
        problems.append(
            f"{where} has no Secure Boot build of the UEFI firmware: install {OVMF_PACKAGE} "
            "there (or set secure_boot = false)"
        )
    if tpm:
        tpm_caps = caps.find("devices/tpm")
        emulated = (
            tpm_caps is not None
            and tpm_caps.get("supported") == "yes"
            and "emulator" in _enum_values(tpm_caps, ".", "backendModel")
            and "tpm-crb" in _enum_values(tpm_caps, ".", "model")
        )
        if not emulated:
            problems.append(
                f"{where} cannot emulate a TPM 2.0 (libvirt finds no swtpm): install swtpm "
                "and swtpm-tools there (or set tpm = false)"
            )
    return problems


def missing_swtpm(search_path: str | None = None) -> list[str]:
    """The swtpm programs this machine lacks, each with its package (for a local host)."""
    path = search_path if search_path is not None else _libvirtd_path()
    return [
        f"{program} (package {package})"
        for program, package in SWTPM_PROGRAMS
        if shutil.which(program, path=path) is None
    ]


def _libvirtd_path() -> str:
    # libvirtd looks swtpm up on its own PATH, which has the sbin directories too.
    extra = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
    return os.pathsep.join([*os.environ.get("PATH", "").split(os.pathsep), *extra])


def check_machine(
    conn: Connection,
    config: BuildConfig,
    *,
    domain_type: str,
    arch: str,
    search_path: str | None = None,
) -> Mapping[str, int]:
    """Refuse, before anything is written, a machine the host cannot run: UEFI without
    OVMF, Secure Boot without its build, a TPM without swtpm (on this machine: the
    programs themselves; on a remote host: what its libvirt says), each a sentence
    naming the package. Returns the x86-64 level of every CPU model pvinstall knows, and
    of the domain's own model when pvinstall does not know it (the host's libvirt
    expands its features)."""
    profile = config.profile
    efi = config.firmware is Firmware.EFI
    problems: list[str] = []
    if config.tpm and _is_local(conn.uri):
        missing = missing_swtpm(search_path)
        if missing:
            problems.append(
                f"tpm = true needs swtpm, the TPM emulator libvirt starts for the guest, but "
                f"this machine has no {' and no '.join(missing)}: install them with apt-get "
                "install swtpm swtpm-tools (or set tpm = false)"
            )
    if efi or config.tpm:
        caps_xml = _domain_capabilities(
            conn, arch=arch, machine=profile.machine, virttype=domain_type
        )
        if caps_xml is not None:
            found = machine_problems(
                caps_xml,
                efi=efi,
                secure_boot=config.secure_boot,
                tpm=config.tpm and not problems,
                where=conn.uri,
            )
            problems += found
    if problems:
        raise InputError.collect(
            [Problem("firmware" if "UEFI" in p else "tpm", p + ".") for p in problems]
        )
    levels = dict(devices.CPU_LEVELS)
    model = config.cpu_model
    if model and model not in levels and model not in devices.HOST_CPU_MODES:
        flags = _cpu_model_features(
            conn, model, arch=arch, machine=profile.machine, virttype=domain_type
        )
        if flags is not None:
            two = devices.CPU_LEVEL_FLAGS[2]
            levels[model] = 2 if all(f in flags for f in two) else 1
    return levels


def _domain_capabilities(conn: Connection, *, arch: str, machine: str, virttype: str) -> str | None:
    try:
        return str(conn.handle.getDomainCapabilities(None, arch, machine, virttype, 0))
    except libvirt.libvirtError as error:
        if _code(error) in (libvirt.VIR_ERR_NO_SUPPORT, libvirt.VIR_ERR_ARGUMENT_UNSUPPORTED):
            return None  # a driver without domain capabilities (the test driver)
        raise BuildError(
            f"reading the domain capabilities of {conn.uri} failed: {_message(error)}."
        ) from None


def _cpu_model_features(
    conn: Connection, model: str, *, arch: str, machine: str, virttype: str
) -> frozenset[str] | None:
    """The features of CPU model `model` as the host's libvirt defines them (expanded);
    None when the driver cannot say. InputError for a model the host does not know."""
    cpu = ET.Element("cpu", mode="custom", match="exact")
    ET.SubElement(cpu, "model").text = model
    try:
        expanded = conn.handle.baselineHypervisorCPU(
            None,
            arch,
            machine,
            virttype,
            [ET.tostring(cpu, encoding="unicode")],
            libvirt.VIR_CONNECT_BASELINE_CPU_EXPAND_FEATURES,
        )
    except libvirt.libvirtError as error:
        if _code(error) in (libvirt.VIR_ERR_NO_SUPPORT, libvirt.VIR_ERR_ARGUMENT_UNSUPPORTED):
            return None
        raise InputError(
            f"{conn.uri} does not know the CPU model {model!r}: {_message(error)}.",
            "Use a model `virsh cpu-models x86_64` lists, e.g. Nehalem.",
            key="cpu_model",
        ) from None
    root = existing.parse_xml(str(expanded))
    return frozenset(
        f.get("name", "") for f in root.iterfind("feature") if f.get("policy") != "disable"
    )


# -- before defining ---------------------------------------------------------------------


def _lookup_domain(conn: Connection, name: str) -> Any | None:
    try:
        return conn.handle.lookupByName(name)
    except libvirt.libvirtError as error:
        if _code(error) == libvirt.VIR_ERR_NO_DOMAIN:
            return None
        raise BuildError(
            f"looking up the domain {name} on {conn.uri} failed: {_message(error)}."
        ) from None


def domain_exists(conn: Connection, name: str) -> bool:
    return _lookup_domain(conn, name) is not None


def _existing_domain_error(conn: Connection, name: str) -> InputError:
    return InputError(
        f"a domain named {name} already exists on {conn.uri}.",
        "Choose another --name, or add --replace to undefine it and start over "
        "(its disks are recreated).",
        key="--name",
    )


def _problems_of(check: Any) -> list[Problem]:
    try:
        check()
    except InputError as error:
        return list(error.problems)
    return []


def _running_domain_error(conn: Connection, name: str) -> InputError:
    return InputError(
        f"the domain {name} is running on {conn.uri}; --replace stops a running guest only "
        "when --force is given too.",
        f"Shut it down first (virsh -c {conn.uri} shutdown {name}), or add --force to "
        "stop it as if its power were cut.",
        key="--replace",
    )


def define_problems(
    conn: Connection,
    name: str | None,
    *,
    replace: bool,
    force: bool = False,
    network: str | None,
    pool: str | None,
    disks: domain.DiskPaths | None = None,
    volumes: Sequence[str] = (),
    replaceable: frozenset[str] = frozenset(),
) -> list[Problem]:
    """Everything that would make define or start fail, each checked whatever the others
    found (None skips a check whose input is already known to be wrong): an existing
    domain of that name (unless `replace`; a running one also needs `force`), existing
    `disks` (unless `replace`), a missing or inactive libvirt network, a missing,
    inactive or non-file storage pool, and existing media `volumes` of a remote build
    in the pool (with `replace` only those in `replaceable`, the volumes an earlier
    build into the same OUT made, may be there: pvinstall replaces no others)."""
    problems: list[Problem] = []
    if name is not None:
        handle = _lookup_domain(conn, name)
        if handle is not None and not replace:
            problems += _existing_domain_error(conn, name).problems
        elif handle is not None and not force and _is_active(conn, handle, name):
            problems += _running_domain_error(conn, name).problems
    if network is not None and network != "user":
        problems += _problems_of(lambda: _check_network(conn, network))
    pool_ok = True
    if pool is not None:
        found = _problems_of(lambda: _pool_path(conn, pool))
        problems += found
        pool_ok = not found
    if disks is not None and not replace and pool_ok:
        for path in (disks[0], *disks[1]):
            if pool is not None and _pool_volume(conn, pool, path.name) is not None:
                problems += _existing_disk_error(f"{path.name} in the pool {pool}").problems
            if pool is None and (path.exists() or path.is_symlink()):
                problems += _existing_disk_error(str(path)).problems
    if pool is not None and pool_ok:
        for volume in volumes:
            if (replace and volume in replaceable) or _pool_volume(conn, pool, volume) is None:
                continue
            problems.append(_existing_volume_problem(conn, pool, volume, replace=replace))
    return problems


def _existing_volume_problem(conn: Connection, pool: str, volume: str, *, replace: bool) -> Problem:
    if replace:
        return Problem(
            "--replace",
            f"the volume {volume} in the storage pool {pool} on {conn.uri} exists, and no "
            "build in this --out made it: pvinstall replaces only volumes it made.",
            f"Delete it yourself (virsh -c {conn.uri} vol-delete --pool {pool} {volume}) if "
            "it may go, or choose another --name.",
        )
    return Problem(
        "--name",
        f"the volume {volume} already exists in the storage pool {pool} on {conn.uri} "
        "(from an earlier build?).",
        "Add --replace to replace the volumes an earlier build into this --out made, or "
        "choose another --name.",
    )


def check_can_define(
    conn: Connection,
    name: str,
    *,
    replace: bool,
    network: str,
    pool: str | None,
    disks: domain.DiskPaths | None = None,
    force: bool = False,
    volumes: Sequence[str] = (),
    replaceable: frozenset[str] = frozenset(),
) -> None:
    """Refuse, before anything is written, what would make define or start fail (see
    `define_problems`); InputError lists every problem."""
    domain.validate_domain_name(name)
    raise_problems(
        define_problems(
            conn,
            name,
            replace=replace,
            force=force,
            network=network,
            pool=pool,
            disks=disks,
            volumes=volumes,
            replaceable=replaceable,
        )
    )


def _is_active(conn: Connection, handle: Any, name: str) -> bool:
    with _refused(f"reading the domain {name}", conn.uri):
        return bool(handle.isActive())


@dataclass(frozen=True)
class _NetworkProblem:
    """Why a libvirt network cannot be used: missing (with the names there are) or down."""

    missing: bool
    message: str
    start_command: str


def _network_problem(conn: Connection, network: str) -> _NetworkProblem | None:
    try:
        handle = conn.handle.networkLookupByName(network)
        active = bool(handle.isActive())
    except libvirt.libvirtError as error:
        if _code(error) != libvirt.VIR_ERR_NO_NETWORK:
            raise BuildError(
                f"looking up the network {network} on {conn.uri} failed: {_message(error)}."
            ) from None
        with _refused("listing networks", conn.uri):
            names = sorted(str(n.name()) for n in conn.handle.listAllNetworks(0))
        there = f" (networks there: {', '.join(names)})" if names else " (it has none)"
        return _NetworkProblem(
            True, f"there is no libvirt network named {network} on {conn.uri}{there}.", ""
        )
    if active:
        return None
    return _NetworkProblem(
        False,
        f"the libvirt network {network} on {conn.uri} is not active.",
        f"virsh -c {conn.uri} net-start {network}",
    )


def _check_network(conn: Connection, network: str) -> None:
    """Refuse the `network` setting when that network is missing or down."""
    problem = _network_problem(conn, network)
    if problem is None:
        return
    hint = (
        "Set network to one of them, or to 'user' for QEMU's user-mode network."
        if problem.missing
        else f"Start it with: {problem.start_command}"
    )
    raise InputError(problem.message, hint, key="network")


# How each setting that names a storage pool is fixed when the pool is not there.
_POOL_HINTS = MappingProxyType(
    {
        "storage_pool": "Set storage_pool to one of them, or leave it out for qcow2 files "
        "next to the outputs.",
        "--storage-pool": "Give --storage-pool one of them.",
    }
)


def _storage_pool(conn: Connection, pool: str, *, key: str = "storage_pool") -> Any:
    try:
        return conn.handle.storagePoolLookupByName(pool)
    except libvirt.libvirtError as error:
        if _code(error) != libvirt.VIR_ERR_NO_STORAGE_POOL:
            raise BuildError(
                f"looking up the storage pool {pool} on {conn.uri} failed: {_message(error)}."
            ) from None
        with _refused("listing storage pools", conn.uri):
            names = sorted(str(p.name()) for p in conn.handle.listAllStoragePools(0))
        there = f" (pools there: {', '.join(names)})" if names else " (it has none)"
        raise InputError(
            f"there is no storage pool named {pool} on {conn.uri}{there}.",
            _POOL_HINTS[key],
            key=key,
        ) from None


def check_pool(conn: Connection, pool: str, *, key: str) -> None:
    """Refuse (InputError naming `key`) a storage pool that is not there or not active:
    what convert and attach put into it must land in a pool QEMU can read from."""
    handle = _storage_pool(conn, pool, key=key)
    with _refused(f"reading the storage pool {pool}", conn.uri):
        active = bool(handle.isActive())
    if not active:
        raise InputError(
            f"the storage pool {pool} on {conn.uri} is not active.",
            f"Start it with: virsh -c {conn.uri} pool-start {pool}",
            key=key,
        )


def pool_of_path(conn: Connection, path: str) -> str | None:
    """The storage pool of the host that holds the file `path` as a volume, if one does."""
    try:
        volume = conn.handle.storageVolLookupByPath(path)
        return str(volume.storagePoolLookupByVolume().name())
    except libvirt.libvirtError:
        return None  # no pool holds it (or the host will not say): not a volume


def _pool_path(conn: Connection, pool: str) -> Path:
    handle = _storage_pool(conn, pool)
    with _refused(f"reading the storage pool {pool}", conn.uri):
        active = bool(handle.isActive())
        root = existing.parse_xml(str(handle.XMLDesc(0)))
    if not active:
        raise InputError(
            f"the storage pool {pool} on {conn.uri} is not active.",
            f"Start it with: virsh -c {conn.uri} pool-start {pool}",
            key="storage_pool",
        )
    kind = root.get("type", "")
    path = root.findtext("./target/path")
    if kind not in FILE_POOL_TYPES or not path:
        raise InputError(
            f"the storage pool {pool} is of type {kind}, whose volumes are not files.",
            f"Use a pool of type {', '.join(FILE_POOL_TYPES)}.",
            key="storage_pool",
        )
    return Path(path)


def _pool_volume(
    conn: Connection, pool: str, volume_name: str, *, refresh: bool = True
) -> Any | None:
    handle = _storage_pool(conn, pool)
    try:
        if refresh:
            handle.refresh(0)  # see files put there behind libvirt's back
        return handle.storageVolLookupByName(volume_name)
    except libvirt.libvirtError as error:
        if _code(error) == libvirt.VIR_ERR_NO_STORAGE_VOL:
            return None
        raise BuildError(
            f"looking up the volume {volume_name} in the pool {pool} on "
            f"{conn.uri} failed: {_message(error)}."
        ) from None


def disk_paths(conn: Connection, config: BuildConfig, out_dir: Path, name: str) -> domain.DiskPaths:
    """Where the system and data disks will be: in the storage pool when one is
    configured, else next to the outputs."""
    if config.storage_pool is None:
        return domain.default_disk_paths(config, out_dir, name)
    folder = _pool_path(conn, config.storage_pool)
    system, data = domain.disk_file_names(config, name)
    return folder / system, tuple(folder / d for d in data)


# -- disks -------------------------------------------------------------------------------


def create_disks(
    conn: Connection,
    config: BuildConfig,
    out_dir: Path,
    name: str,
    monitor: Monitor,
    *,
    replace: bool = False,
) -> domain.DiskPaths:
    """Create the empty qcow2 system and data disks; return their paths.

    Through the storage pool when one is configured, else with `qemu-img` next to
    the outputs. An existing disk is an InputError unless `replace`, which
    recreates it: setup must start from an empty disk, or the old system boots.
    """
    sizes = (config.disk_size_gib, *config.data_disks)
    system_name, data_names = domain.disk_file_names(config, name)
    names = (system_name, *data_names)
    if config.storage_pool is not None:
        return _create_pool_disks(conn, config.storage_pool, names, sizes, monitor, replace=replace)
    paths = domain.default_disk_paths(config, out_dir, name)
    out_dir.mkdir(parents=True, exist_ok=True)
    for path, size in zip((paths[0], *paths[1]), sizes, strict=True):
        if path.exists():
            if not replace:
                raise _existing_disk_error(str(path))
            path.unlink()
        monitor.info(f"create {path.name} ({size} GiB qcow2)")
        disk_images.create_qcow2(path, f"{size}G")
    return paths


def _existing_disk_error(where: str) -> InputError:
    return InputError(
        f"the disk {where} already exists (from an earlier build?).",
        "Add --replace to recreate it empty, or choose another --name.",
        key="--name",
    )


def _create_pool_disks(
    conn: Connection,
    pool: str,
    names: tuple[str, ...],
    sizes: tuple[int, ...],
    monitor: Monitor,
    *,
    replace: bool,
) -> domain.DiskPaths:
    folder = _pool_path(conn, pool)
    handle = _storage_pool(conn, pool)
    with _refused(f"refreshing the storage pool {pool}", conn.uri):
        handle.refresh(0)  # see files put there behind libvirt's back
    paths: list[Path] = []
    for volume_name, size in zip(names, sizes, strict=True):
        existing = _pool_volume(conn, pool, volume_name, refresh=False)
        if existing is not None:
            if not replace:
                raise _existing_disk_error(f"{volume_name} in the pool {pool}")
            with _refused(f"deleting the volume {volume_name}", conn.uri):
                existing.delete(0)
        monitor.info(f"create {volume_name} ({size} GiB qcow2) in the pool {pool}")
        with _refused(f"creating the volume {volume_name} in {pool}", conn.uri):
            volume = handle.createXML(domain.volume_xml(volume_name, size), 0)
            paths.append(Path(str(volume.path())) if volume is not None else folder / volume_name)
    return paths[0], tuple(paths[1:])


# -- volumes: uploads and downloads over the connection ---------------------------------------

Progress = Callable[[int], None]


def pool_room(conn: Connection, pool: str) -> int:
    """The bytes free in the storage pool `pool`, as the host sees them now (libvirt
    caches the figure until the pool is refreshed)."""
    handle = _storage_pool(conn, pool)
    with _refused(f"reading the storage pool {pool}", conn.uri):
        handle.refresh(0)
        return int(handle.info()[3])


def volume_names(conn: Connection, pool: str) -> tuple[str, ...]:
    """The volumes of the storage pool `pool`, sorted."""
    handle = _storage_pool(conn, pool)
    with _refused(f"listing the volumes of {pool}", conn.uri):
        handle.refresh(0)
        return tuple(sorted(str(v.name()) for v in handle.listAllVolumes(0)))


def volume_exists(conn: Connection, pool: str, volume: str) -> bool:
    """Whether the pool `pool` has a volume `volume` (refreshed first: files put there
    behind libvirt's back count too)."""
    return _pool_volume(conn, pool, volume) is not None


def create_volume(conn: Connection, pool: str, volume: str, capacity: int, fmt: str) -> None:
    """Create the empty volume `volume` of `capacity` bytes and format `fmt` (`qcow2`,
    `raw`) in `pool`; the host allocates what the guest writes."""
    handle = _storage_pool(conn, pool)
    with _refused(f"creating the volume {volume} in {pool}", conn.uri):
        handle.createXML(_new_volume_xml(volume, capacity, fmt), 0)


def volume_path(conn: Connection, pool: str, volume: str) -> str:
    """The path of the volume `volume` of `pool` on the host (what a qcow2 file there
    names as its backing file)."""
    found = _pool_volume(conn, pool, volume, refresh=False)
    if found is None:
        raise BuildError(f"there is no volume {volume} in the storage pool {pool} on {conn.uri}.")
    with _refused(f"reading the volume {volume} of {pool}", conn.uri):
        return str(found.path())


@dataclass(frozen=True)
class VolumeFacts:
    """What the host's libvirt says of a volume: its path, format and size on disk, and
    the backing file (path and format) its header names, if any."""

    path: str
    format: str | None
    capacity: int
    allocation: int
    physical: int  # the file's size on the host
    backing_path: str | None
    backing_format: str | None


def volume_facts(conn: Connection, pool: str, volume: str) -> VolumeFacts:
    """The volume `volume` of `pool` as libvirt reads it (after a refresh of the pool)."""
    found = _pool_volume(conn, pool, volume)
    if found is None:
        raise BuildError(f"there is no volume {volume} in the storage pool {pool} on {conn.uri}.")
    with _refused(f"reading the volume {volume} of {pool}", conn.uri):
        root = existing.parse_xml(str(found.XMLDesc(0)))
        physical = int(found.infoFlags(libvirt.VIR_STORAGE_VOL_GET_PHYSICAL)[2])
    fmt = root.find("./target/format")
    backing = root.find("./backingStore")
    backing_format = backing.find("./format") if backing is not None else None
    return VolumeFacts(
        path=root.findtext("./target/path") or "",
        format=fmt.get("type") if fmt is not None else None,
        capacity=int(root.findtext("./capacity") or 0),
        allocation=int(root.findtext("./allocation") or 0),
        physical=physical,
        backing_path=(backing.findtext("./path") or None) if backing is not None else None,
        backing_format=backing_format.get("type") if backing_format is not None else None,
    )


def create_clone_volume(
    conn: Connection, pool: str, volume: str, template: str, *, linked: bool
) -> str:
    """A new qcow2 volume `volume` of `pool` from the qcow2 volume `template` of the
    same pool; its path on the host. Linked: an overlay whose backing file is the
    template's path, its format said (qcow2: nothing is probed), of the template's
    virtual size. Otherwise a copy the host makes (`createXMLFrom`)."""
    handle = _storage_pool(conn, pool)
    source = _pool_volume(conn, pool, template)
    if source is None:
        raise BuildError(f"there is no volume {template} in the storage pool {pool} on {conn.uri}.")
    with _refused(f"reading the volume {template} of {pool}", conn.uri):
        capacity = int(source.info()[1])
        backing = str(source.path())
    xml = (
        "<volume><name>" + _xml_text(volume) + "</name>"
        f"<capacity unit='bytes'>{capacity}</capacity>"
        "<target><format type='qcow2'/></target>"
    )
    if linked:
        xml += (
            "<backingStore><path>" + _xml_text(backing) + "</path>"
            "<format type='qcow2'/></backingStore>"
        )
    xml += "</volume>"
    with _refused(f"creating the volume {volume} in {pool}", conn.uri):
        made = handle.createXML(xml, 0) if linked else handle.createXMLFrom(xml, source, 0)
        return str(made.path())


def _new_volume_xml(name: str, capacity: int, fmt: str) -> str:
    # Allocation 0: the upload decides what the host allocates (holes stay holes).
    return (
        "<volume><name>" + _xml_text(name) + f"</name><capacity unit='bytes'>{capacity}</capacity>"
        "<allocation unit='bytes'>0</allocation>"
        f"<target><format type='{fmt}'/></target></volume>"
    )


def _xml_text(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def upload_volume(
    conn: Connection,
    pool: str,
    volume: str,
    path: Path,
    *,
    fmt: str = "raw",
    progress: Progress | None = None,
) -> None:
    """Create the volume `volume` in `pool` and send the client file `path` into it over
    the connection, holes as holes (libvirt's sparse stream). The volume must not exist:
    an upload into an old volume would keep its bytes under the holes and past the end.

    On any failure (the pool full, the file unreadable, the connection lost, Ctrl-C)
    the stream is aborted and the volume deleted, so no partial volume is left; then
    BuildError (or the KeyboardInterrupt) goes on.
    """
    handle = _storage_pool(conn, pool)
    try:
        source = path.open("rb")
    except OSError as error:
        raise BuildError(f"cannot read {path} to upload it: {error.strerror}.") from None
    with source:
        size = os.fstat(source.fileno()).st_size
        with _refused(f"creating the volume {volume} in {pool}", conn.uri):
            vol = handle.createXML(_new_volume_xml(volume, size, fmt), 0)
        stream = None
        try:
            stream = conn.handle.newStream(0)
            vol.upload(stream, 0, size, libvirt.VIR_STORAGE_VOL_UPLOAD_SPARSE_STREAM)
            sent = _send_sparse(stream, source.fileno(), size, progress)
            stream.finish()
            _check_landed(handle, vol, sent)
        except BaseException as failure:
            if stream is not None:
                with contextlib.suppress(libvirt.libvirtError):
                    stream.abort()
            _delete_after_failure(conn, pool, volume, vol)
            if isinstance(failure, libvirt.libvirtError | _ShortUploadError):
                why = _message(failure) if isinstance(failure, libvirt.libvirtError) else failure
                raise BuildError(
                    f"uploading {path} into the volume {volume} of {pool} on {conn.uri} "
                    f"failed: {why}.",
                    "The volume was deleted again. Make room in the pool (or choose "
                    "another storage_pool) and run the build again.",
                ) from None
            if isinstance(failure, OSError):
                raise BuildError(
                    f"reading {path} to upload it failed: {failure.strerror}; the volume "
                    f"{volume} was deleted again."
                ) from None
            raise


def _check_landed(pool: Any, vol: Any, sent: int) -> None:
    """Refuse an upload the host lost the end of without saying so.

    The host writes what a stream brings behind the stream's back: a pool that runs
    full reports ENOSPC at a later send(), and when the last few MiB are what did not
    fit, finish() succeeds and the volume is short. That leaves a full pool and a
    volume that holds fewer bytes than were sent (on a file system that does not
    compress, which a full one cannot be told apart from)."""
    pool.refresh(0)
    allocation = int(vol.info()[2])
    if allocation < sent and int(pool.info()[3]) == 0:
        raise _ShortUploadError(
            f"No space left on device: the pool is full, and the volume holds "
            f"{allocation} of the {sent} bytes sent"
        )


class _ShortUploadError(Exception):
    """The host took fewer bytes than were sent and did not say so."""


def _send_sparse(stream: Any, fd: int, size: int, progress: Progress | None) -> int:
    """Send the file's data sections and tell the host about its holes; the data bytes
    sent."""
    sent = 0
    offset = 0
    while offset < size:
        data = _next_data(fd, offset, size)
        if data > offset:
            stream.sendHole(data - offset, 0)
            offset = data
            continue
        end = _next_hole(fd, offset, size)
        while offset < end:
            chunk = os.pread(fd, min(STREAM_CHUNK, end - offset), offset)
            if not chunk:
                raise OSError(errno.EIO, "the file got shorter while it was sent")
            stream.send(chunk)
            offset += len(chunk)
            sent += len(chunk)
            if progress is not None:
                progress(offset)
    return sent


def _next_data(fd: int, offset: int, size: int) -> int:
    try:
        return os.lseek(fd, offset, os.SEEK_DATA)
    except OSError as error:
        if error.errno == errno.ENXIO:  # only a hole from here to the end
            return size
        if error.errno == errno.EINVAL:  # a file system that cannot say: all data
            return offset
        raise


def _next_hole(fd: int, offset: int, size: int) -> int:
    try:
        return min(os.lseek(fd, offset, os.SEEK_HOLE), size)
    except OSError as error:
        if error.errno == errno.EINVAL:
            return size
        raise


def _delete_after_failure(conn: Connection, pool: str, volume: str, vol: Any) -> None:
    """Delete a volume whose upload failed; through a fresh connection when the old one
    died with the upload (the partial volume stays on the host otherwise)."""
    try:
        vol.delete(0)
        return
    except libvirt.libvirtError:
        pass
    with contextlib.suppress(BuildError, InputError), connect(conn.uri) as fresh:
        delete_volume(fresh, pool, volume)


def delete_volume(conn: Connection, pool: str, volume: str) -> bool:
    """Delete the volume `volume` of `pool`; False when there is none."""
    found = _pool_volume(conn, pool, volume, refresh=False)
    if found is None:
        return False
    with _refused(f"deleting the volume {volume} of {pool}", conn.uri):
        found.delete(0)
    return True


def download_volume(
    conn: Connection, pool: str, volume: str, dest: Path, *, progress: Progress | None = None
) -> int:
    """Download the volume `volume` of `pool` into the client file `dest` (created; it
    must not exist), holes as holes; returns its size. A failed download leaves no
    `dest`. What export uses for the system disk of a remote template."""
    found = _pool_volume(conn, pool, volume)
    if found is None:
        raise BuildError(f"there is no volume {volume} in the storage pool {pool} on {conn.uri}.")
    try:
        target = dest.open("xb")
    except OSError as error:
        raise BuildError(f"cannot create {dest} to download into: {error.strerror}.") from None
    stream = None
    try:
        with target:
            stream = conn.handle.newStream(0)
            found.download(stream, 0, 0, libvirt.VIR_STORAGE_VOL_DOWNLOAD_SPARSE_STREAM)
            received = 0
            while True:
                got = stream.recvFlags(STREAM_CHUNK, libvirt.VIR_STREAM_RECV_STOP_AT_HOLE)
                if got == -3:  # a hole: skip it in the file too
                    length = int(stream.recvHole(0))
                    target.seek(length, os.SEEK_CUR)
                    received += length
                    continue
                if not isinstance(got, bytes):
                    raise BuildError(f"downloading {volume}: the stream said {got!r}.")
                if not got:
                    break
                target.write(got)
                received += len(got)
                if progress is not None:
                    progress(received)
            target.truncate()  # a hole at the end still counts to the size
            stream.finish()
            return received
    except BaseException as failure:
        if stream is not None:
            with contextlib.suppress(libvirt.libvirtError):
                stream.abort()
        dest.unlink(missing_ok=True)
        if isinstance(failure, libvirt.libvirtError):
            raise BuildError(
                f"downloading the volume {volume} of {pool} from {conn.uri} failed: "
                f"{_message(failure)}."
            ) from None
        if isinstance(failure, OSError):
            raise BuildError(f"writing {dest} failed: {failure.strerror}.") from None
        raise


# -- define ------------------------------------------------------------------------------


def define(conn: Connection, xml: str, *, replace: bool, force: bool = False) -> None:
    """Define the domain with libvirt's schema validation, so that XML libvirt does not
    know is an error rather than silently dropped.

    An existing domain of the same name is an InputError, unless `replace`: then it
    is undefined first (with its snapshot and checkpoint metadata), and stopped first
    only with `force` (a running one is an InputError without it).
    """
    name = existing.describe_domain(xml).name
    if replace:
        replace_domain(conn, name, force=force)
    elif _lookup_domain(conn, name) is not None:
        raise _existing_domain_error(conn, name)
    with _refused(f"defining the domain {name}", conn.uri):
        conn.handle.defineXMLFlags(xml, libvirt.VIR_DOMAIN_DEFINE_VALIDATE)


def replace_domain(conn: Connection, name: str, *, force: bool) -> bool:
    """Take the domain `name` away for a new one: refuse a running domain unless
    `force`, then stop it and undefine it (its disks stay; the caller recreates them
    only now that nothing uses them). False when there was none."""
    handle = _lookup_domain(conn, name)
    if handle is None:
        return False
    if _is_active(conn, handle, name) and not force:
        raise _running_domain_error(conn, name)
    return remove_domain(conn, name)


def remove_domain(conn: Connection, name: str) -> bool:
    """Stop and undefine the domain `name` (its disks stay). False when there is none."""
    handle = _lookup_domain(conn, name)
    if handle is None:
        return False
    with _refused(f"removing the domain {name}", conn.uri):
        if handle.isActive():
            handle.destroy()
        _undefine(handle)
    return True


def _undefine(handle: Any) -> None:
    # Saved state and snapshot/checkpoint metadata would block a plain undefine, and so
    # would a UEFI domain's NVRAM (its variable store); the TPM's state goes with the
    # domain too. Drivers that do not know a flag refuse it, so fall back flag by flag.
    base = libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
    machine = libvirt.VIR_DOMAIN_UNDEFINE_NVRAM | libvirt.VIR_DOMAIN_UNDEFINE_TPM
    checkpoints = libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA
    for flags in (
        base | checkpoints | machine,
        base | checkpoints | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM,
        base | checkpoints,
        base,
    ):
        try:
            handle.undefineFlags(flags)
            return
        except libvirt.libvirtError as error:
            if _code(error) not in (libvirt.VIR_ERR_NO_SUPPORT, libvirt.VIR_ERR_INVALID_ARG):
                raise
    handle.undefine()


def inactive_xml(conn: Connection, name: str) -> str:
    """The persistent definition of the domain `name`."""
    handle = _lookup_domain(conn, name)
    if handle is None:
        raise BuildError(f"there is no domain {name} on {conn.uri}.")
    with _refused(f"reading the domain {name}", conn.uri):
        return str(handle.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))


# -- install -----------------------------------------------------------------------------


@dataclass(frozen=True)
class InstallResult:
    """A finished install: how long it took, how big the system disk got, the media
    taken out of the definition, and the definition left behind (the template)."""

    name: str
    seconds: float
    shutoff_reason: str
    system_disk_bytes: int | None
    removed_media: tuple[str, ...]
    media_attached: tuple[str, ...]
    final_xml: str

    def as_json(self) -> dict[str, Any]:
        return {
            "install_seconds": round(self.seconds, 1),
            "shutoff_reason": self.shutoff_reason,
            "system_disk_allocation_bytes": self.system_disk_bytes,
            "removed_media": list(self.removed_media),
            "media_attached": list(self.media_attached),
            "final_xml": self.final_xml,
        }


@dataclass(frozen=True)
class _Outcome:
    """How the wait ended: the guest powered off (`ok`), or what went wrong."""

    ok: bool
    what: str
    reason: str
    active: bool


class _StopEvents:
    """Wakes the waiter when libvirt reports that the domain stopped, crashed or paused.

    Without events (a driver that has none, or `enabled=False`) `wait` simply
    sleeps, and the state polling in `_wait_for_power_off` does the work.
    """

    _WAKE = (
        libvirt.VIR_DOMAIN_EVENT_STOPPED,
        libvirt.VIR_DOMAIN_EVENT_CRASHED,
        libvirt.VIR_DOMAIN_EVENT_SUSPENDED,
    )

    def __init__(self, conn: Connection, handle: Any, *, enabled: bool) -> None:
        self._conn = conn
        self._flag = threading.Event()
        self._callback_id: int | None = None
        self.events = 0
        if not enabled:
            return
        try:
            self._callback_id = int(
                conn.handle.domainEventRegisterAny(
                    handle, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._on_lifecycle, None
                )
            )
        except libvirt.libvirtError:
            self._callback_id = None  # no events from this driver: polling only

    @property
    def active(self) -> bool:
        return self._callback_id is not None

    def _on_lifecycle(
        self, _conn: Any, _dom: Any, event: int, _detail: int, _opaque: object
    ) -> None:
        self.events += 1
        if event in self._WAKE:
            self._flag.set()

    def wait(self, seconds: float) -> None:
        if self._flag.wait(max(seconds, 0.0)):
            self._flag.clear()

    def close(self) -> None:
        if self._callback_id is not None:
            with contextlib.suppress(libvirt.libvirtError):
                # When the connection is gone, so is the callback.
                self._conn.handle.domainEventDeregisterAny(self._callback_id)
            self._callback_id = None


class _Console:
    """The guest's serial console, read over the connection into a client file.

    A non-blocking stream served by the event loop: a thread blocked in recv() on a
    quiet console stalls other calls on the same connection for seconds. The guest
    is started paused and resumed only once the stream is open, since what a pty
    prints while nobody reads it is lost. The stream ends (EOF) at the guest's
    power-off.
    """

    _EVENTS = (
        libvirt.VIR_STREAM_EVENT_READABLE
        | libvirt.VIR_STREAM_EVENT_ERROR
        | libvirt.VIR_STREAM_EVENT_HANGUP
    )

    def __init__(self, conn: Connection, handle: Any, log: Path) -> None:
        self._lock = threading.Lock()
        self._ended = threading.Event()
        self.problem: str | None = None
        log.parent.mkdir(parents=True, exist_ok=True)
        log.unlink(missing_ok=True)  # an old log would describe another run
        self._file = log.open("wb")
        self._stream = conn.handle.newStream(libvirt.VIR_STREAM_NONBLOCK)
        try:
            handle.openConsole(None, self._stream, 0)
            self._stream.eventAddCallback(self._EVENTS, self._readable, None)
        except BaseException:
            self._file.close()
            with contextlib.suppress(libvirt.libvirtError):
                self._stream.abort()
            raise

    def _readable(self, stream: Any, _events: int, _opaque: object) -> None:
        with self._lock:
            if self._ended.is_set():
                return
            try:
                while True:
                    got = stream.recv(64 * 1024)
                    if got == -2:  # nothing more for now
                        return
                    if not got:
                        self._end(finish=True)
                        return
                    self._file.write(got)
                    self._file.flush()
            except (libvirt.libvirtError, OSError) as error:
                self.problem = str(error)
                self._end(finish=False)

    def _end(self, *, finish: bool) -> None:
        self._ended.set()
        with contextlib.suppress(libvirt.libvirtError):
            self._stream.eventRemoveCallback()
        with contextlib.suppress(libvirt.libvirtError):
            if finish:
                self._stream.finish()
            else:
                self._stream.abort()
        self._file.close()

    def close(self, wait: float) -> None:
        """Stop reading, after waiting up to `wait` seconds for the guest's last bytes."""
        self._ended.wait(wait)
        with self._lock:
            if not self._ended.is_set():
                self._end(finish=False)


def _start(conn: Connection, handle: Any, name: str, console_log: Path | None) -> _Console | None:
    """Start the domain; with `console_log`, paused first, so that the console reader
    is there before the guest's first byte."""
    if console_log is None:
        with _refused(f"starting the domain {name}", conn.uri):
            handle.create()
        return None
    with _refused(f"starting the domain {name}", conn.uri):
        handle.createWithFlags(libvirt.VIR_DOMAIN_START_PAUSED)
    try:
        with _refused(f"opening the serial console of {name}", conn.uri):
            console = _Console(conn, handle, console_log)
        with _refused(f"resuming the domain {name}", conn.uri):
            handle.resume()
    except BaseException:
        _destroy_quietly(handle)
        raise
    return console


def install(
    conn: Connection,
    name: str,
    *,
    media: Sequence[AttachedMedium],
    timeout_minutes: float,
    out_dir: Path,
    monitor: Monitor,
    status_seconds: float = 10.0,
    poll_seconds: float = 2.0,
    events: bool = True,
    console_log: Path | None = None,
) -> InstallResult:
    """Start the defined domain `name` and wait until the guest powers itself off.

    Lifecycle events wake the wait at once; the state is also polled every
    `poll_seconds`, so a driver without events works too. Every `status_seconds`
    the monitor gets the elapsed time, the state and the system disk's allocation.

    On power-off `media` (the install media of the media table) are taken out of the
    persistent definition (a floppy drive goes, a CD-ROM drive is emptied), which then
    is the golden template. On timeout, a crash,
    a fatal pause or any other stop: `screenshot.png` (while the guest still runs)
    and the serial log's tail are kept in `out_dir`, the domain is destroyed (it
    stays defined), and BuildError says where they are. Ctrl-C destroys the guest
    and re-raises KeyboardInterrupt.

    `console_log` (a remote host, whose files the client cannot read): the guest's
    serial console (a pty) is read over the connection into that client file, from
    its first byte on; it is the serial log of the messages and the kept tail.
    """
    if timeout_minutes <= 0:
        raise InputError(
            f"{timeout_minutes:g} minutes is no time to install in.",
            "Give --timeout a positive number of minutes.",
            key="--timeout",
        )
    handle = _lookup_domain(conn, name)
    if handle is None:
        raise BuildError(
            f"there is no domain {name} on {conn.uri} to install.",
            "Define it first (--define or --install).",
        )
    with _refused(f"reading the domain {name}", conn.uri):
        if handle.isActive():
            raise BuildError(
                f"the domain {name} is already running on {conn.uri}.",
                f"Stop it (virsh -c {conn.uri} destroy {name}) or use --replace.",
            )
        facts = existing.describe_domain(str(handle.XMLDesc(0)))
    if console_log is not None:
        facts = dataclasses.replace(facts, serial_log=console_log)
    if facts.install_cd is None:
        raise InputError(
            f"the domain {name} has no install CD to boot setup from.",
            "Give the Windows install ISO with --windows-iso.",
            key="--install",
        )
    watcher = _StopEvents(conn, handle, enabled=events)
    console: _Console | None = None
    try:
        start = time.monotonic()
        try:
            # A stop signal can arrive the moment create() returns (Python runs its
            # handler then): from here on it stops the guest too.
            console = _start(conn, handle, name, console_log)
            _announce(conn, handle, name, monitor)
            outcome = _wait_for_power_off(
                handle,
                watcher,
                facts,
                start=start,
                timeout=timeout_minutes * 60.0,
                monitor=monitor,
                status_seconds=status_seconds,
                poll_seconds=poll_seconds,
            )
        except KeyboardInterrupt:
            _destroy_quietly(handle)
            monitor.warning(f"interrupted: the guest {name} was stopped (it stays defined).")
            raise
        seconds = time.monotonic() - start
    finally:
        watcher.close()
        if console is not None:
            # EOF comes with the power-off; a guest still running has no last bytes.
            console.close(wait=5.0 if not _is_running_quietly(handle) else 0.0)
            if console.problem:
                monitor.warning(f"the serial console of {name} broke off: {console.problem}")
    if not outcome.ok:
        raise _install_failed(
            conn,
            handle,
            name,
            facts=facts,
            outcome=outcome,
            seconds=seconds,
            timeout_minutes=timeout_minutes,
            out_dir=out_dir,
            monitor=monitor,
        )
    allocation = _allocation(handle, facts)
    removed, final_xml = _detach_install_media(conn, handle, name, media)
    return InstallResult(
        name=name,
        seconds=seconds,
        shutoff_reason=outcome.reason,
        system_disk_bytes=allocation,
        removed_media=removed,
        media_attached=existing.media_attached(final_xml, media),
        final_xml=final_xml,
    )


def _announce(conn: Connection, handle: Any, name: str, monitor: Monitor) -> None:
    try:
        port = existing.describe_domain(str(handle.XMLDesc(0))).vnc_port
    except libvirt.libvirtError:
        port = None
    where = f" (VNC 127.0.0.1:{port})" if port else ""
    monitor.info(f"watch setup with: virt-viewer --connect {conn.uri} {name}{where}")


def _wait_for_power_off(
    handle: Any,
    watcher: _StopEvents,
    facts: existing.DomainFacts,
    *,
    start: float,
    timeout: float,
    monitor: Monitor,
    status_seconds: float,
    poll_seconds: float,
) -> _Outcome:
    deadline = start + timeout
    next_status = start
    while True:
        state, reason = _state(handle)
        if state == libvirt.VIR_DOMAIN_SHUTOFF:
            name = shutoff_reason(reason)
            if reason == libvirt.VIR_DOMAIN_SHUTOFF_SHUTDOWN:
                return _Outcome(True, "the guest powered off", name, active=False)
            return _Outcome(False, _shutoff_text(reason), name, active=False)
        if state == libvirt.VIR_DOMAIN_CRASHED:
            return _Outcome(False, "the guest crashed", "crashed", active=True)
        if state == libvirt.VIR_DOMAIN_PAUSED and reason in _FATAL_PAUSES:
            what = (
                "QEMU paused the guest after a disk I/O error (is the host's disk full?)"
                if reason == libvirt.VIR_DOMAIN_PAUSED_IOERROR
                else "the guest crashed and was paused"
            )
            return _Outcome(False, what, "paused", active=True)
        now = time.monotonic()
        if now >= next_status:
            _report(handle, facts, monitor, state, now - start)
            next_status = now + status_seconds
        if now >= deadline:
            return _Outcome(False, "timeout", _STATE_NAMES.get(state, str(state)), active=True)
        watcher.wait(min(poll_seconds, deadline - now, next_status - now))


def _state(handle: Any) -> tuple[int, int]:
    try:
        state, reason = handle.state()
    except libvirt.libvirtError as error:
        raise BuildError(f"lost the domain while waiting for it: {_message(error)}.") from None
    return int(state), int(reason)


def _shutoff_text(reason: int) -> str:
    if reason == libvirt.VIR_DOMAIN_SHUTOFF_DESTROYED:
        return "the guest was stopped from outside (destroyed)"
    if reason == libvirt.VIR_DOMAIN_SHUTOFF_CRASHED:
        return "the guest crashed"
    if reason == libvirt.VIR_DOMAIN_SHUTOFF_FAILED:
        return "QEMU failed and the guest stopped"
    return f"the guest stopped ({shutoff_reason(reason)})"


def _report(
    handle: Any, facts: existing.DomainFacts, monitor: Monitor, state: int, elapsed: float
) -> None:
    allocation = _allocation(handle, facts)
    fields: dict[str, Any] = {
        "elapsed": format_elapsed(elapsed),
        "state": _STATE_NAMES.get(state, str(state)),
    }
    if allocation is not None:
        fields["disk"] = format_size(allocation)
    monitor.status(**fields)


def _allocation(handle: Any, facts: existing.DomainFacts) -> int | None:
    """The bytes the system disk takes on the host: how far setup has got."""
    if facts.system_disk is None:
        return None
    try:
        return int(handle.blockInfo(facts.system_disk)[1])
    except libvirt.libvirtError:
        return None


def format_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _is_running_quietly(handle: Any) -> bool:
    try:
        return bool(handle.isActive())
    except libvirt.libvirtError:
        return False


def _destroy_quietly(handle: Any) -> None:
    try:
        if handle.isActive():
            handle.destroy()
    except libvirt.libvirtError:
        pass  # already gone: that is what we wanted


def _detach_install_media(
    conn: Connection, handle: Any, name: str, media: Sequence[AttachedMedium]
) -> tuple[tuple[str, ...], str]:
    """Take the install media out of the persistent definition.

    The domain is shut off, so redefining it from its own edited XML changes exactly
    the persistent configuration (and works on drivers without device updates).
    """
    with _refused(f"detaching the install media of {name}", conn.uri):
        # With its secrets: the redefinition must keep a VNC password someone set.
        stripped = existing.strip_install_media(
            str(handle.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE)),
            media,
        )
        conn.handle.defineXMLFlags(stripped.xml, libvirt.VIR_DOMAIN_DEFINE_VALIDATE)
    final_xml = inactive_xml(conn, name)
    left = existing.media_attached(final_xml, media)
    if left:
        raise BuildError(
            f"the install of {name} finished, but its definition still has "
            f"{', '.join(left)} attached."
        )
    return stripped.removed, final_xml


def _install_failed(
    conn: Connection,
    handle: Any,
    name: str,
    *,
    facts: existing.DomainFacts,
    outcome: _Outcome,
    seconds: float,
    timeout_minutes: float,
    out_dir: Path,
    monitor: Monitor,
) -> BuildError:
    """Keep what shows why (screenshot, serial tail), stop the guest, and say so."""
    out_dir.mkdir(parents=True, exist_ok=True)
    kept: list[str] = []
    screenshot = out_dir / SCREENSHOT
    screenshot.unlink(missing_ok=True)  # an old one would describe another run
    if outcome.active:
        problem = save_screenshot(conn, handle, screenshot)
        if problem is None:
            kept.append(f"screenshot {screenshot}")
        else:
            monitor.warning(f"no screenshot: {problem}")
    serial = _keep_serial_tail(facts.serial_log, out_dir)
    if serial is not None:
        kept.append(f"serial log {serial}")
    _destroy_quietly(handle)
    if outcome.what == "timeout":
        what = (
            f"the guest did not power off within {timeout_minutes:g} minutes "
            f"(it was {outcome.reason})"
        )
    else:
        what = f"{outcome.what} after {format_elapsed(seconds)}"
    last = _last_serial_line(facts.serial_log)
    said = f" Its last serial output: {last!r}." if last else ""
    look = f"See the {' and the '.join(kept)}." if kept else "Nothing could be saved."
    return BuildError(
        f"the install of {name} failed: {what}.{said}",
        f"{look} The domain is stopped and still defined: start it with "
        f"`virsh -c {conn.uri} start {name}` to look, or rerun with --replace.",
    )


def save_screenshot(conn: Connection, handle: Any, path: Path) -> str | None:
    """Save the guest's screen as PNG at `path`; None on success, else why not."""
    try:
        stream = conn.handle.newStream(0)
        mime = str(handle.screenshot(stream, 0, 0))
        data = bytearray()
        while True:
            chunk = stream.recv(256 * 1024)
            if not chunk:
                break
            data.extend(chunk)
        stream.finish()
    except libvirt.libvirtError as error:
        return _message(error)
    image = bytes(data)
    if mime != "image/png":
        try:
            image = ppm_to_png(image)
        except ValueError as error:
            return f"libvirt sent {mime}, which pvinstall cannot convert ({error})"
    partial = path.with_name(path.name + ".part")
    partial.write_bytes(image)
    partial.replace(path)
    return None


def ppm_to_png(data: bytes) -> bytes:
    """Convert a binary PPM (P6, 8 bits per channel; QEMU's screendump format) to PNG."""
    header = re.match(
        rb"P6(?:\s+|#[^\n]*\n)+(\d+)(?:\s+|#[^\n]*\n)+(\d+)"
        rb"(?:\s+|#[^\n]*\n)+(\d+)\s",
        data,
    )
    if header is None:
        raise ValueError("not a binary PPM image")
    width, height, maxval = (int(g) for g in header.groups())
    if maxval != 255 or width <= 0 or height <= 0:
        raise ValueError(f"unsupported PPM ({width}x{height}, maxval {maxval})")
    pixels = data[header.end() :]
    row = width * 3
    if len(pixels) < row * height:
        raise ValueError("truncated PPM image")
    raw = b"".join(b"\x00" + pixels[y * row : (y + 1) * row] for y in range(height))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")
        )

    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(raw, 6))
        + chunk(b"IEND", b"")
    )


def _read_tail(path: Path, size: int) -> bytes:
    with path.open("rb") as handle:
        handle.seek(0, 2)
        length = handle.tell()
        handle.seek(max(0, length - size))
        return handle.read()


def _keep_serial_tail(serial_log: Path | None, out_dir: Path) -> Path | None:
    """The serial log is kept where it is when it lies in `out_dir`; elsewhere its
    tail is copied into `out_dir`."""
    if serial_log is None or not serial_log.is_file():
        return None
    if serial_log.parent.resolve() == out_dir.resolve():
        return serial_log
    tail = out_dir / SERIAL_TAIL
    tail.write_bytes(_read_tail(serial_log, SERIAL_TAIL_BYTES))
    return tail


def _last_serial_line(serial_log: Path | None) -> str:
    if serial_log is None or not serial_log.is_file():
        return ""
    text = _read_tail(serial_log, 4096).decode("utf-8", errors="replace")
    lines = [_printable(line) for line in text.replace("\r", "\n").split("\n")]
    lines = [line for line in lines if line]
    return lines[-1][:200] if lines else ""


def _printable(text: str) -> str:
    # Terminal escapes and control characters from the guest stay out of messages.
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)
    return "".join(c for c in text if c.isprintable()).strip()


# -- for tests and callers that only need the handle's facts ------------------------------


def domain_state(conn: Connection, name: str) -> tuple[str, str] | None:
    """(state, reason) of the domain `name` in words, or None when it is not defined."""
    handle = _lookup_domain(conn, name)
    if handle is None:
        return None
    state, reason = _state(handle)
    if state == libvirt.VIR_DOMAIN_SHUTOFF:
        return "shut off", shutoff_reason(reason)
    return _STATE_NAMES.get(state, str(state)), str(reason)


# -- existing guests: convert and attach ---------------------------------------------------


@dataclass(frozen=True)
class ExistingDomain:
    """A defined domain as convert and attach see it: the persistent definition, and
    whether (and as what) it runs."""

    name: str
    xml: str
    running: bool
    live_xml: str | None


def existing_domain(conn: Connection, name: str, *, secure: bool = False) -> ExistingDomain:
    """The domain `name`; InputError (key DOMAIN) when there is none, or when it is
    transient and so has no definition to change.

    `secure` reads the definitions with their secrets (VNC and SPICE passwords): what
    is redefined from them, or backed up to be restored, must keep them."""
    handle = _lookup_domain(conn, name)
    if handle is None:
        with _refused("listing domains", conn.uri):
            names = sorted(str(d.name()) for d in conn.handle.listAllDomains(0))
        there = f" (domains there: {', '.join(names)})" if names else " (it has none)"
        raise InputError(
            f"there is no domain named {name} on {conn.uri}{there}.",
            "Check the name with: virsh -c " + conn.uri + " list --all",
            key="DOMAIN",
        )
    with _refused(f"reading the domain {name}", conn.uri):
        if not handle.isPersistent():
            raise InputError(
                f"{name} on {conn.uri} is a transient domain: it has no "
                "persistent definition to change.",
                f"Make it persistent first: virsh -c {conn.uri} dumpxml {name} "
                f"> {name}.xml && virsh -c {conn.uri} define {name}.xml",
                key="DOMAIN",
            )
        flags = libvirt.VIR_DOMAIN_XML_SECURE if secure else 0
        xml = str(handle.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE | flags))
        running = bool(handle.isActive())
        live_xml = str(handle.XMLDesc(flags)) if running else None
    return ExistingDomain(name=name, xml=xml, running=running, live_xml=live_xml)


def redefine(conn: Connection, xml: str) -> None:
    """Replace the persistent definition of an existing domain with `xml` (validated
    against libvirt's schema). A running domain keeps running as it is: the new
    definition takes effect at its next start."""
    name = existing.describe_domain(xml).name
    with _refused(f"defining the new definition of {name}", conn.uri):
        conn.handle.defineXMLFlags(xml, libvirt.VIR_DOMAIN_DEFINE_VALIDATE)


def attach_device(conn: Connection, name: str, device_xml: str, *, live: bool) -> str | None:
    """Add a device to the persistent definition of `name`, and to the running guest
    when `live`. Returns None, or why the live attach failed (the persistent change is
    then made alone, and the device appears at the next start)."""
    handle = _lookup_domain(conn, name)
    if handle is None:
        raise BuildError(f"the domain {name} disappeared from {conn.uri}.")
    config = libvirt.VIR_DOMAIN_AFFECT_CONFIG
    if live:
        try:
            handle.attachDeviceFlags(device_xml, config | libvirt.VIR_DOMAIN_AFFECT_LIVE)
            return None
        except libvirt.libvirtError as error:
            problem = _message(error)
    else:
        problem = None
    with _refused(f"attaching the device to {name}", conn.uri):
        handle.attachDeviceFlags(device_xml, config)
    return problem


def check_attach_network(conn: Connection, network: str) -> None:
    """Refuse a libvirt network that does not exist or is not active (key --network)."""
    problem = _network_problem(conn, network)
    if problem is None:
        return
    hint = (
        "Use one of them, or --network user for QEMU's user-mode network."
        if problem.missing
        else f"Start it with: {problem.start_command}, or use --network user for QEMU's "
        "user-mode network."
    )
    raise InputError(problem.message, hint, key="--network")


# -- templates and clones ----------------------------------------------------------------


def remove_disks(conn: Connection, pool: str | None, paths: Sequence[Path]) -> None:
    """Delete a removed domain's disks: the files, or the volumes of its storage pool."""
    for path in paths:
        if pool is None:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            continue
        with _refused(f"deleting the volume {path}", conn.uri):
            conn.handle.storageVolLookupByPath(str(path)).delete(0)


def start(conn: Connection, name: str) -> None:
    """Start the defined domain `name`."""
    handle = _lookup_domain(conn, name)
    if handle is None:
        raise BuildError(f"there is no domain {name} on {conn.uri} to start.")
    with _refused(f"starting the domain {name}", conn.uri):
        handle.create()
