"""The shape of builder/: its module graph is acyclic (every import counts, those inside
functions and under TYPE_CHECKING too), each wrapped library has exactly one importer,
and the only imports inside functions are the ones that keep start-up fast."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

BUILDER = Path(__file__).resolve().parents[2] / "builder"

# The library each module wraps, and the packages that belong to it. (The floppy writer
# is pvinstall's own: nothing imports pyfatfs or its `fs`, see NEVER_IMPORTED.)
ONE_IMPORTER = {
    "builder.media.iso9660": {"pycdlib"},
    "builder.vm.virt": {"libvirt", "libvirtaio"},
    "builder.virtio.signatures": {"asn1crypto"},
}
# Imports allowed inside a function, each for start-up time: rich is needed only on a
# terminal; the entry
# point routes the stop signals before it loads the command line (and json, for a
# signal that comes first); the command line loads each command's modules (libvirt,
# jinja2, pycdlib) only for the command that uses them.
LAZY = {
    "builder.cli": {"builder"},  # each command loads what it runs, when it runs
    "builder.monitor": {"rich"},
    "builder.entry": {"builder", "json"},
    "builder.pipeline": {"builder"},  # builder.vm.virt (libvirt) only when a build acts
}


def module_name(path: Path) -> str:
    parts = path.relative_to(BUILDER.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(BUILDER.rglob("*.py"))}


def imports(path: Path) -> Iterator[tuple[str, bool]]:
    """(imported module, inside a function) for every import of a file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    functions = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    nested = {id(n) for f in functions for n in ast.walk(f) if n is not f}
    for node in ast.walk(tree):
        lazy = id(node) in nested
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, lazy
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            assert node.level == 0, f"{path}: relative import"
            yield node.module, lazy
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                if candidate in MODULES:
                    yield candidate, lazy


def graph() -> dict[str, set[str]]:
    return {
        name: {m for m, _ in imports(path) if m in MODULES and m != name}
        for name, path in MODULES.items()
    }


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle found by a depth-first search (each reported once, from its entry)."""
    found: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for target in sorted(edges[node]):
            if state.get(target) == 1:
                found.append([*stack[stack.index(target) :], target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)
    return found


def test_the_module_graph_is_acyclic() -> None:
    assert cycles(graph()) == []


def test_the_cycle_finder_finds_cycles() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c", "a"]]


NEVER_IMPORTED = {"pyfatfs", "fs", "pkg_resources"}


def test_no_module_imports_pyfatfs() -> None:
    importers = {
        name
        for name, path in MODULES.items()
        for module, _ in imports(path)
        if module.split(".")[0] in NEVER_IMPORTED
    }
    assert importers == set()


def test_each_library_has_exactly_one_importer() -> None:
    for owner, libraries in ONE_IMPORTER.items():
        importers = {
            name
            for name, path in MODULES.items()
            for module, _ in imports(path)
            if module.split(".")[0] in libraries
        }
        assert importers == {owner}, libraries


def test_the_only_lazy_imports_keep_start_up_fast() -> None:
    lazy = {
        (name, module.split(".")[0])
        for name, path in MODULES.items()
        for module, inside in imports(path)
        if inside
    }
    assert lazy == {(owner, lib) for owner, libs in LAZY.items() for lib in libs}


def test_the_command_line_starts_without_the_lazy_libraries() -> None:
    code = (
        "import sys, builder.cli; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'pyfatfs', 'fs', 'rich'}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=BUILDER.parent,
    )
    assert done.stdout.strip() == "[]"


# What each command loads of the heavy libraries (docs/design.md §4): libvirt only
# `build` (which may define a domain), `convert` and `attach`; pyfatfs (and its `fs`,
# which imports pkg_resources) never, the floppy writer is our own; jinja2 only a
# build; pycdlib only what reads a Windows medium or writes an ISO (a virtio-win ISO is
# read without it); rich only on a terminal.
_HEAVY = ("libvirt", "pyfatfs", "fs", "jinja2", "pycdlib", "rich")
_RUN_AND_REPORT = f"""
import json, sys
from builder import cli
code = cli.main(sys.argv[1:])
heavy = sorted({{m.split('.')[0] for m in sys.modules}} & set({_HEAVY!r}))
print(json.dumps({{"code": code, "loaded": heavy}}), file=sys.stderr)
"""


def _loaded(*argv: str, cwd: Path) -> tuple[int, list[str]]:
    done = subprocess.run(
        [sys.executable, "-c", _RUN_AND_REPORT, *argv],
        capture_output=True,
        text=True,
        check=False,
        cwd=cwd,
        env={
            **os.environ,
            "PYTHONPATH": str(BUILDER.parent),
            "SOURCE_DATE_EPOCH": "1700000000",
            "PVINSTALL_ADMIN_PASSWORD": "Imports-0nly",
        },
    )
    report = json.loads(done.stderr.strip().splitlines()[-1])
    return int(report["code"]), list(report["loaded"])


def test_each_command_loads_only_what_it_uses(tmp_path: Path) -> None:
    from builder.media.files import IsoPlan, PlannedFile
    from builder.media.iso9660 import write_drivers_iso
    from builder.virtio.source import DirectorySource
    from tests.fixtures.virtio_win import write_modern_tree

    tree = write_modern_tree(tmp_path / "vw", drivers=["viostor", "NetKVM"], oses=["2k8", "2k12R2"])
    data_iso = tmp_path / "data.iso"
    plan = IsoPlan("DATA", (PlannedFile.inline("README.TXT", b"not a DVD"),))
    write_drivers_iso(plan, data_iso, DirectorySource(tmp_path), epoch=0)
    source = str(tree.root)
    cases = [
        (("--help",), 0, set()),
        (("build", "--help"), 0, set()),
        (("profiles",), 0, set()),
        (("drivers", source), 0, set()),
        (("drivers", source, "--profile", "win2008-x64"), 0, set()),
        # inspect reads the medium with pycdlib (this one is no Windows medium: exit 2)
        (("inspect", str(data_iso)), 2, {"pycdlib"}),
        # a build without a floppy (q35: the answer ISO); a build that only writes OUT
        # never loads libvirt (only --define, --install and an export do)
        (
            ("build", "win2012r2-x64", "--drivers", source, "--out", str(tmp_path / "o1")),
            0,
            {"jinja2", "pycdlib"},
        ),
        (
            ("build", "win2008-x64", "--drivers", source, "--out", str(tmp_path / "o2")),
            0,
            {"jinja2", "pycdlib"},
        ),
    ]
    for argv, code, loaded in cases:
        assert _loaded(*argv, cwd=tmp_path) == (code, sorted(loaded)), argv


# What `pvinstall --help` must not load of pvinstall itself: the settings table is made
# when `build --help` shows it, the profiles when a command resolves one, and the device
# tables and libvirt's URI handling when a build plans a domain.
_NOT_FOR_HELP = ("builder.config", "builder.windows", "builder.vm.devices", "builder.pipeline")
_RUN_AND_LIST = """
import json, sys
from builder import cli
code = cli.main(sys.argv[1:])
mine = sorted(m for m in sys.modules if m.startswith("builder"))
print(json.dumps({"code": code, "loaded": mine}), file=sys.stderr)
"""


def test_the_help_loads_no_table_of_settings_or_profiles(tmp_path: Path) -> None:
    for argv, absent in [
        (("--help",), _NOT_FOR_HELP),
        (("drivers", "--help"), _NOT_FOR_HELP),
        # build's help ends with the settings table: that one loads builder.config
        (("build", "--help"), ("builder.pipeline",)),
    ]:
        done = subprocess.run(
            [sys.executable, "-c", _RUN_AND_LIST, *argv],
            capture_output=True,
            text=True,
            check=False,
            cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(BUILDER.parent)},
        )
        report = json.loads(done.stderr.strip().splitlines()[-1])
        assert report["code"] == 0, argv
        loaded = set(report["loaded"])
        assert not {m for m in loaded for a in absent if m == a or m.startswith(a + ".")}, argv
        assert ("Settings (--config FILE" in done.stdout) == (argv[0] == "build"), argv
