"""What pvinstall, its tests and the tools they call need from Debian: every external
program (and the few files those programs read), the package that provides it and the
set-up tier that installs it.

Tiers (the Makefile's lists DEBIAN_PYTHON, DEBIAN_ORACLES, DEBIAN_HYPERVISOR):

- ``python``: building the venv (``make setup-python``; lint needs only this one);
- ``oracles``: the real tools the tests check pvinstall's output with (``make
  setup-oracles``; the unit tests need this one too, the hypervisor not);
- ``hypervisor``: QEMU, libvirtd and the boot probe's tools (``make setup-hypervisor``;
  ``make test`` sets up all three);
- ``host``: the main job's system libvirtd, installed by .ci/start-libvirtd (HOST_PACKAGES)
  when ``make win2008-virtio WINDOWS_ISO=...`` runs, never by ``make test``;
- ``system``: part of every Debian 12 system (its required packages, or the init system
  that runs the machine); the project installs none of them.

The table is kept true by tests: tests/unit/test_programs.py checks that the system,
python and oracle tiers are there, that every package sits in its tier's list, and that
every program builder/, tests/, .ci/ and the Makefile's recipes run is in the table
(``python_programs``, ``shell_programs`` find them); tests/integration/test_programs.py
checks the hypervisor tier.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

Tier = Literal["system", "python", "oracles", "hypervisor", "host"]

# The Makefile variable that lists each tier's packages (the host tier's list is
# HOST_PACKAGES in .ci/start-libvirtd; the system tier has none).
MAKEFILE_LISTS: Final[Mapping[Tier, str]] = {
    "python": "DEBIAN_PYTHON",
    "oracles": "DEBIAN_ORACLES",
    "hypervisor": "DEBIAN_HYPERVISOR",
}


@dataclass(frozen=True)
class Need:
    """One program (looked up on PATH) or file (an absolute path; may be a glob)."""

    name: str
    package: str  # the Debian package that provides it
    tier: Tier
    why: str  # who runs or reads it
    via: str = ""  # the listed package that pulls `package` in, when it is not listed itself
    only_when: str = ""  # run only on some machines: not checked for being there

    @property
    def listed_package(self) -> str:
        """The package the tier's list must name."""
        return self.via or self.package

    @property
    def is_file(self) -> bool:
        return self.name.startswith("/")

    def present(self) -> bool:
        if self.is_file:
            return any(Path("/").glob(self.name.lstrip("/")))
        # The set-up scripts run as root, whose PATH has the sbin directories.
        path = os.pathsep.join([os.environ.get("PATH", os.defpath), "/usr/sbin", "/sbin"])
        return shutil.which(self.name, path=path) is not None

    def missing_message(self) -> str:
        what = "file" if self.is_file else "program"
        head = f"the {what} {self.name} ({self.why}) is missing"
        if self.tier == "system":
            return f"{head}: it comes with Debian's {self.package}; install that package."
        listed = f"{self.via} (which pulls in {self.package})" if self.via else self.package
        if self.tier == "host":
            return f"{head}: HOST_PACKAGES in .ci/start-libvirtd must name {listed}."
        return (
            f"{head}: add {listed} to {MAKEFILE_LISTS[self.tier]} in the Makefile "
            f"(`make setup-{self.tier}` installs that list)."
        )


NEEDS: Final[tuple[Need, ...]] = (
    # -- python: the venv ---------------------------------------------------------------
    Need("make", "make", "python", "runs everything; test_makefile runs the main job"),
    Need(
        "python3",
        "python3",
        "python",
        "the project's Python (make setup-python)",
        via="python3-venv",
    ),
    Need("gcc", "gcc", "python", "pip compiles libvirt-python"),
    Need("pkg-config", "pkg-config", "python", "libvirt-python's build finds libvirt"),
    Need(
        "/usr/include/libvirt/libvirt.h",
        "libvirt-dev",
        "python",
        "libvirt-python compiles against it",
    ),
    Need(
        "/usr/share/libvirt/api/libvirt-api.xml",
        "libvirt-dev",
        "python",
        "libvirt-python generates its bindings from it",
    ),
    Need(
        "/usr/lib/*/libvirt.so.0",
        "libvirt0",
        "python",
        "libvirt-python loads it; it holds the test:///default driver of the unit tests",
        via="libvirt-dev",
    ),
    # -- oracles: the tools the tests check output with --------------------------------
    Need("fsck.fat", "dosfstools", "oracles", "checks floppies"),
    Need(
        "mkfs.fat",
        "dosfstools",
        "oracles",
        "the fixture DVDs' efisys.bin images",
    ),
    Need("mformat", "mtools", "oracles", "fixture floppy images"),
    Need("mmd", "mtools", "oracles", "fixture floppy images"),
    Need("mcopy", "mtools", "oracles", "fixture floppy images; reads floppies back"),
    Need("mdir", "mtools", "oracles", "lists floppies"),
    Need("minfo", "mtools", "oracles", "reads floppy geometry"),
    Need("mtype", "mtools", "oracles", "reads files off floppies"),
    Need("mshowfat", "mtools", "oracles", "shows a file's clusters (hostile floppy tests)"),
    Need("xorriso", "xorriso", "oracles", "fixture ISOs, the probe ISO; reads ISOs back"),
    Need("genisoimage", "genisoimage", "oracles", "fixture ISOs and Windows-style CDs"),
    Need("isoinfo", "genisoimage", "oracles", "reads ISOs back"),
    Need(
        "virt-xml-validate",
        "libvirt-clients",
        "oracles",
        "validates domain XML against libvirt's schema",
    ),
    Need("xmllint", "libxml2-utils", "oracles", "virt-xml-validate runs it"),
    Need(
        "/usr/share/libvirt/schemas/domain.rng",
        "libvirt0",
        "oracles",
        "virt-xml-validate's schema",
        via="libvirt-clients",
    ),
    Need("shfmt", "shfmt", "oracles", "parses .ci scripts for the programs they run"),
    Need(
        "openssl",
        "openssl",
        "oracles",
        "signs the fixture catalogs; reads catalogs and certificates back; checks the "
        "manifest's keyed digests (HMAC-SHA256)",
    ),
    Need(
        "wimlib-imagex",
        "wimtools",
        "oracles",
        "the fixture DVDs' install.wim; the oracle of the WIM reader",
    ),
    Need("udfinfo", "udftools", "oracles", "reads the UDF side of DVDs back"),
    Need(
        "qemu-img",
        "qemu-utils",
        "oracles",
        "pvinstall creates disks, the DVD's overlay, exports and clones; tests read them",
    ),
    Need(
        "qemu-io",
        "qemu-utils",
        "oracles",
        "pvinstall writes the DVD overlay's boot catalog; tests read sectors of templates",
    ),
    Need(
        "cabextract",
        "cabextract",
        "oracles",
        "pvinstall takes Sysprep out of a 2003 CD's DEPLOY.CAB (libmspack: MSZIP, LZX, "
        "Quantum); tests list cabinets with it",
    ),
    Need("gcab", "gcab", "oracles", "makes the fixture CDs' DEPLOY.CAB (MSZIP)"),
    # -- hypervisor: QEMU, libvirtd, the boot probe -------------------------------------
    Need("qemu-system-x86_64", "qemu-system-x86", "hypervisor", "libvirtd runs x86_64 guests"),
    Need("qemu-system-i386", "qemu-system-x86", "hypervisor", "libvirtd runs i686 guests"),
    Need(
        "/usr/share/seabios/bios-256k.bin",
        "seabios",
        "hypervisor",
        "QEMU's BIOS",
        via="qemu-system-x86",
    ),
    Need(
        "/usr/lib/ipxe/qemu/efi-virtio.rom",
        "ipxe-qemu",
        "hypervisor",
        "QEMU's option ROM for virtio NICs",
        via="qemu-system-x86",
    ),
    Need(
        "/usr/share/OVMF/OVMF_CODE_4M.ms.fd",
        "ovmf",
        "hypervisor",
        "UEFI with Secure Boot and Microsoft's keys for q35 guests",
    ),
    Need(
        "/usr/share/qemu/firmware/40-edk2-x86_64-secure-enrolled.json",
        "ovmf",
        "hypervisor",
        "the firmware descriptor libvirt picks OVMF by",
    ),
    Need("swtpm", "swtpm", "hypervisor", "libvirtd emulates the guests' TPM 2.0 with it"),
    Need("swtpm_setup", "swtpm-tools", "hypervisor", "libvirtd manufactures the vTPM with it"),
    Need("sbverify", "sbsigntool", "hypervisor", "the Secure Boot probe's signatures, checked"),
    Need("libvirtd", "libvirt-daemon", "hypervisor", ".ci/setup-libvirtd starts it"),
    Need("virtlogd", "libvirt-daemon", "hypervisor", "libvirtd writes serial logs through it"),
    Need(
        "/usr/lib/*/libvirt/connection-driver/libvirt_driver_qemu.so",
        "libvirt-daemon-driver-qemu",
        "hypervisor",
        "libvirtd's QEMU driver",
    ),
    Need("virsh", "libvirt-clients", "hypervisor", ".ci/setup-libvirtd asks the daemon"),
    Need("zstd", "zstd", "hypervisor", "the boot probe unpacks .ko.zst kernel modules"),
    Need("sshd", "openssh-server", "hypervisor", "the remote-host tests' sshd on 127.0.0.1"),
    Need(
        "ssh-keygen",
        "openssh-client",
        "hypervisor",
        "the remote-host tests make their host and client keys",
        via="openssh-server",
    ),
    Need(
        "ssh",
        "openssh-client",
        "hypervisor",
        "libvirt's qemu+ssh transport runs it (the remote-host tests)",
        via="openssh-server",
    ),
    Need(
        "virt-ssh-helper",
        "libvirt-daemon",
        "hypervisor",
        "the host end of a qemu+ssh connection",
    ),
    # -- host: the main job's libvirtd (.ci/start-libvirtd) ------------------------------
    Need(
        "/usr/share/libvirt/networks/default.xml",
        "libvirt-daemon-config-network",
        "host",
        "the `default` network that guests use",
        via="libvirt-daemon-system",
    ),
    Need("dnsmasq", "dnsmasq-base", "host", "libvirtd runs it for the `default` network"),
    Need(
        "/etc/init.d/libvirtd",
        "libvirt-daemon-system-sysv",
        "host",
        "start-libvirtd starts libvirtd without systemd",
        only_when="no systemd",
    ),
    # -- system: every Debian 12 system has these --------------------------------------
    Need("apt-get", "apt", "system", "install-debian-packages; the probe's apt-get download"),
    Need("apt-cache", "apt", "system", "the probe picks package versions"),
    Need("dpkg", "dpkg", "system", "architectures (the probe, install-debian-packages)"),
    Need("dpkg-deb", "dpkg", "system", "the probe unpacks packages"),
    Need("dpkg-query", "dpkg", "system", "the set-up scripts ask what is installed"),
    Need("getent", "libc-bin", "system", ".ci/setup-libvirtd looks up libvirt-qemu"),
    Need(
        "setpriv",
        "util-linux",
        "system",
        "tests run pvinstall as root without the capabilities that override file permissions",
    ),
    Need("groupadd", "passwd", "system", ".ci/setup-libvirtd creates libvirt-qemu"),
    Need("useradd", "passwd", "system", ".ci/setup-libvirtd creates libvirt-qemu"),
    Need("service", "init-system-helpers", "system", "start-libvirtd, without systemd"),
    Need(
        "systemctl",
        "systemd",
        "system",
        "start-libvirtd, under systemd",
        only_when="systemd runs the machine",
    ),
    Need("grep", "grep", "system", "the set-up scripts; virt-xml-validate"),
    Need("sh", "dash", "system", "tests of builder/tools.py run a failing shell command"),
    Need("mount", "mount", "system", "the fault tests mount a small tmpfs (full, read-only)"),
    Need("umount", "mount", "system", "the fault tests unmount their tmpfs"),
    Need("chattr", "e2fsprogs", "system", "the fault tests make an --out immutable"),
    *(
        Need(name, "coreutils", "system", "the set-up scripts, the Makefile, the bench")
        for name in (
            "cat",
            "cp",
            "dirname",
            "id",
            "mkdir",
            "mv",
            "printf",
            "rm",
            "sleep",
            "tail",
            "touch",
        )
    ),
)

# Names tests run on purpose because no such program exists (the missing-program error).
NOT_PROGRAMS: Final = frozenset({"pvinstall-no-such-program"})

# Listed packages that provide no program or file the code looks for, and why they are there.
PACKAGES_WITHOUT_NEEDS: Final[Mapping[str, str]] = {
    "python3-dev": "Python.h, which pip compiles libvirt-python against (Debian's python3)",
}

# -- finding the programs that code runs ---------------------------------------------------

# Calls that run a program or look one up; the program is their first argument, a
# string or a list whose first item is one (or, for _need, every string argument).
RUNNERS: Final = frozenset(
    {
        "run",
        "_run",
        "run_bytes",
        "Popen",
        "call",
        "check_call",
        "check_output",
        "which",
        "find_program",
        "tool_available",
        "_need",
    }
)
EVERY_ARGUMENT_RUNNERS: Final = frozenset({"_need"})


def _callee(node: ast.Call) -> str:
    func = node.func
    if isinstance(func, ast.Attribute):
        return func.attr
    if isinstance(func, ast.Name):
        return func.id
    return ""


def _first_string(node: ast.expr) -> str | None:
    """The program of an argv: a string, or a list/tuple literal's first item."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.List | ast.Tuple) and node.elts:
        first = node.elts[0]
        if isinstance(first, ast.Constant) and isinstance(first.value, str):
            return first.value
    return None


def _scopes(tree: ast.Module) -> Iterator[ast.AST]:
    yield tree
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node


def _own_nodes(scope: ast.AST) -> Iterator[ast.AST]:
    """The nodes of a module or function, not those of the functions defined inside it."""
    stack = list(ast.iter_child_nodes(scope))
    while stack:
        node = stack.pop()
        yield node
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            stack.extend(ast.iter_child_nodes(node))


@dataclass(frozen=True)
class ProgramUse:
    program: str
    line: int
    package: str | None = None  # the Debian package the call names (tools.run(package=...))


def python_programs(source: str) -> list[ProgramUse]:
    """The programs a Python module runs or looks up, by the calls in RUNNERS.

    A list assigned to a name in the same function (``argv = ["xorriso", ...]``) counts
    where the name is passed; a name that is a parameter is a caller's argv, found at
    the caller's call.
    """
    tree = ast.parse(source)
    uses: list[ProgramUse] = []
    for scope in _scopes(tree):
        nodes = list(_own_nodes(scope))
        lists: dict[str, set[str]] = {}
        for node in nodes:
            if isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                program = _first_string(node.value)
                if program is not None and isinstance(node.value, ast.List | ast.Tuple):
                    for target in targets:
                        if isinstance(target, ast.Name):
                            lists.setdefault(target.id, set()).add(program)
        for node in nodes:
            if not isinstance(node, ast.Call) or _callee(node) not in RUNNERS or not node.args:
                continue
            package = next(
                (
                    kw.value.value
                    for kw in node.keywords
                    if kw.arg == "package" and isinstance(kw.value, ast.Constant)
                ),
                None,
            )
            if _callee(node) == "find_program" and len(node.args) > 1:
                second = node.args[1]
                if isinstance(second, ast.Constant) and isinstance(second.value, str):
                    package = second.value
            arguments = node.args if _callee(node) in EVERY_ARGUMENT_RUNNERS else node.args[:1]
            for argument in arguments:
                programs: set[str] = set()
                first = _first_string(argument)
                if first is not None:
                    programs.add(first)
                elif isinstance(argument, ast.Name):
                    programs |= lists.get(argument.id, set())
                uses.extend(
                    ProgramUse(p, node.lineno, package if isinstance(package, str) else None)
                    for p in sorted(programs)
                )
    return sorted(uses, key=lambda use: (use.line, use.program))


# Shell builtins and keywords: run by the shell itself, not programs.
SHELL_BUILTINS: Final = frozenset(
    {
        ".",
        ":",
        "[",
        "[[",
        "alias",
        "break",
        "cd",
        "command",
        "compgen",
        "continue",
        "declare",
        "echo",
        "eval",
        "exec",
        "exit",
        "export",
        "false",
        "getopts",
        "hash",
        "kill",
        "local",
        "printf",
        "pwd",
        "read",
        "readonly",
        "return",
        "set",
        "shift",
        "source",
        "test",
        "trap",
        "true",
        "type",
        "ulimit",
        "umask",
        "unset",
        "wait",
    }
)


def _shell_calls(node: Any, functions: set[str], calls: list[tuple[str, int]]) -> None:
    if isinstance(node, dict):
        if node.get("Type") == "FuncDecl":
            functions.add(node["Name"]["Value"])
        if node.get("Type") == "CallExpr" and node.get("Args"):
            parts = node["Args"][0].get("Parts", [])
            if len(parts) == 1 and parts[0].get("Type") == "Lit":
                calls.append((parts[0]["Value"], parts[0]["Pos"]["Line"]))
        for value in node.values():
            _shell_calls(value, functions, calls)
    elif isinstance(node, list):
        for item in node:
            _shell_calls(item, functions, calls)


def shell_programs(scripts: Mapping[str, str]) -> dict[str, list[tuple[str, int]]]:
    """The programs each shell script runs (by name; a literal absolute path counts by
    its file name), parsed by shfmt. Builtins, the functions any of the scripts define
    (they source each other) and relative paths (the project's own scripts) are left out.
    """
    functions: set[str] = set()
    calls_by_script: dict[str, list[tuple[str, int]]] = {}
    for name, text in scripts.items():
        done = subprocess.run(
            ["shfmt", "--tojson"], input=text, capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise ValueError(f"shfmt cannot parse {name}: {done.stderr.strip()}")
        calls: list[tuple[str, int]] = []
        _shell_calls(json.loads(done.stdout), functions, calls)
        calls_by_script[name] = calls
    found: dict[str, list[tuple[str, int]]] = {}
    for name, calls in calls_by_script.items():
        found[name] = [
            (word.rsplit("/", 1)[-1], line)
            for word, line in calls
            if word not in SHELL_BUILTINS
            and word not in functions
            and (word.startswith("/") or "/" not in word)
            and "=" not in word
        ]
    return found


def need_for(program: str) -> Need | None:
    """The table's row for a program name (a file row counts by its file name)."""
    for need in NEEDS:
        if program == (Path(need.name).name if need.is_file else need.name):
            return need
    return None
