"""tests/programs.py stays true: every program the code, the tests, the .ci scripts and
the Makefile run is in the table, every package sits in its tier's list, and the tiers
the unit tests are set up with (`make test-unit`: python and oracles) are there.

A missing program is a failure naming the package to add, never a skip: a test that
skips when a tool is missing would hide the missing install step.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Mapping
from pathlib import Path

import pytest

from tests import programs
from tests.programs import NEEDS, Need, Tier

REPO = Path(__file__).resolve().parents[2]


def _make_env() -> dict[str, str]:
    """The environment for asking make about the Makefile (not the outer make's flags)."""
    return {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}


def makefile_list(variable: str) -> list[str]:
    done = subprocess.run(
        [
            "make",
            "-s",
            "--no-print-directory",
            "-C",
            str(REPO),
            "--eval",
            f"pvtest-print: ; @echo $({variable})",
            "pvtest-print",
        ],
        capture_output=True,
        text=True,
        check=True,
        env=_make_env(),
    )
    return done.stdout.split()


def makefile_recipes() -> str:
    """Every recipe of the Makefile as the shell would get it (`make -n -B`)."""
    targets = sorted(
        set(re.findall(r"^([a-z][a-z0-9-]*):", (REPO / "Makefile").read_text(), re.MULTILINE))
    )
    done = subprocess.run(
        [
            "make",
            "-n",
            "-B",
            "--no-print-directory",
            "-C",
            str(REPO),
            *targets,
            "WINDOWS_ISO=windows.iso",
        ],
        capture_output=True,
        text=True,
        check=True,
        env=_make_env(),
    )
    return "\n".join(line for line in done.stdout.splitlines() if not line.startswith("make"))


def host_packages() -> set[str]:
    """The packages .ci/start-libvirtd may install (HOST_PACKAGES=(...) and +=(...))."""
    text = (REPO / ".ci" / "start-libvirtd").read_text()
    return {
        word
        for words in re.findall(r"^\s*HOST_PACKAGES\+?=\(([^)]*)\)", text, re.MULTILINE)
        for word in words.split()
    }


# -- the tiers this run is set up with ---------------------------------------------------


@pytest.mark.parametrize(
    "need",
    [n for n in NEEDS if n.tier in ("system", "python", "oracles") and not n.only_when],
    ids=lambda n: n.name,
)
def test_the_system_python_and_oracle_tiers_are_installed(need: Need) -> None:
    assert need.present(), need.missing_message()


def test_a_missing_program_names_the_package_and_the_makefile_list() -> None:
    missing = Need("pvtest-no-such-program", "pvtest-pkg", "oracles", "a test")
    assert not missing.present()
    assert missing.missing_message() == (
        "the program pvtest-no-such-program (a test) is missing: add pvtest-pkg to "
        "DEBIAN_ORACLES in the Makefile (`make setup-oracles` installs that list)."
    )
    pulled = Need("/pvtest/no/such/file", "pvtest-lib", "hypervisor", "a test", via="pvtest-pkg")
    assert not pulled.present()
    assert "add pvtest-pkg (which pulls in pvtest-lib) to DEBIAN_HYPERVISOR" in (
        pulled.missing_message()
    )


# -- the table and the lists agree -------------------------------------------------------


@pytest.mark.parametrize("tier", sorted(programs.MAKEFILE_LISTS))
def test_every_package_of_a_tier_is_in_its_makefile_list_and_explained(tier: Tier) -> None:
    listed = makefile_list(programs.MAKEFILE_LISTS[tier])
    rows = [n for n in NEEDS if n.tier == tier]
    assert listed, f"the Makefile has no {programs.MAKEFILE_LISTS[tier]}"
    unlisted = sorted({n.listed_package for n in rows} - set(listed))
    assert not unlisted, f"{programs.MAKEFILE_LISTS[tier]} lacks {unlisted}"
    unexplained = sorted(
        set(listed) - {n.listed_package for n in rows} - set(programs.PACKAGES_WITHOUT_NEEDS)
    )
    assert not unexplained, (
        f"{programs.MAKEFILE_LISTS[tier]} has {unexplained}, which no row of "
        f"tests/programs.py needs: add the programs they provide, or drop them"
    )


def test_every_package_of_the_host_tier_is_one_start_libvirtd_installs() -> None:
    packages = host_packages()
    assert {"libvirt-daemon-system", "qemu-system-x86"} <= packages
    rows = {n.listed_package for n in NEEDS if n.tier == "host"}
    assert rows <= packages, f"HOST_PACKAGES in .ci/start-libvirtd lacks {rows - packages}"


def test_every_program_is_listed_once() -> None:
    names = [n.name for n in NEEDS]
    assert len(names) == len(set(names))
    assert all(n.tier in (*programs.MAKEFILE_LISTS, "host", "system") for n in NEEDS)


# -- every program that is run is in the table -------------------------------------------


def _python_files() -> list[Path]:
    return sorted([*(REPO / "builder").rglob("*.py"), *(REPO / "tests").rglob("*.py")])


def test_every_program_builder_and_tests_run_is_in_the_table() -> None:
    unknown = [
        f"{path.relative_to(REPO)}:{use.line} runs {use.program}"
        for path in _python_files()
        for use in programs.python_programs(path.read_text(encoding="utf-8"))
        if programs.need_for(use.program) is None and use.program not in programs.NOT_PROGRAMS
    ]
    assert not unknown, (
        "programs that tests/programs.py does not list (add each with its Debian package "
        "and tier, and the package to that tier's list in the Makefile):\n" + "\n".join(unknown)
    )


def test_the_package_a_call_names_in_its_error_is_the_table_s() -> None:
    wrong = []
    for path in _python_files():
        for use in programs.python_programs(path.read_text(encoding="utf-8")):
            need = programs.need_for(use.program)
            if use.package is not None and need is not None and use.package != need.package:
                wrong.append(
                    f"{path.relative_to(REPO)}:{use.line}: {use.program} is in "
                    f"{need.package}, not {use.package}"
                )
    assert not wrong, "\n".join(wrong)


def _shell_sources() -> dict[str, str]:
    scripts = {
        str(p.relative_to(REPO)): p.read_text()
        for p in sorted((REPO / ".ci").iterdir())
        if p.is_file()
    }
    scripts["Makefile (recipes)"] = makefile_recipes()
    return scripts


def test_every_program_the_ci_scripts_and_the_makefile_run_is_in_the_table() -> None:
    found = programs.shell_programs(_shell_sources())
    assert found["Makefile (recipes)"], "make -n printed no recipes"
    unknown = [
        f"{script}:{line} runs {program}"
        for script, calls in found.items()
        for program, line in calls
        if programs.need_for(program) is None
    ]
    assert not unknown, (
        "programs that tests/programs.py does not list (add each with its Debian package "
        "and tier):\n" + "\n".join(unknown)
    )


def test_the_project_scripts_that_are_run_exist() -> None:
    scripts = set(re.findall(r"\./\.ci/[a-z-]+", "\n".join(_shell_sources().values())))
    assert "./.ci/start-libvirtd" in scripts
    for script in scripts:
        assert (REPO / script).is_file() and os.access(REPO / script, os.X_OK), script


# -- the finders find what they should ---------------------------------------------------

PYTHON_CASES: Mapping[str, set[str]] = {
    'subprocess.run(["xorriso", "-as", "mkisofs"], check=True)': {"xorriso"},
    'tools.run(["qemu-img", "info", path], package="qemu-utils")': {"qemu-img"},
    'run("isoinfo", "-d", "-i", image)': {"isoinfo"},
    'shutil.which("zstd")': {"zstd"},
    'find_program("xmllint", "libxml2-utils")': {"xmllint"},
    '_need("fsck.fat", "mtype")': {"fsck.fat", "mtype"},
    'def f():\n    argv = ["genisoimage", "-o", out]\n    argv += ["-J"]\n    _run(argv, {})': {
        "genisoimage"
    },
    'def f():\n    cmd = ["apt-get", "download"]\n    return _run(cmd)': {"apt-get"},
    'subprocess.Popen(("mdir", "-i", image))': {"mdir"},
    # Not programs: a caller's argv, the interpreter, data lists, a path computed at run time.
    "def run(*argv):\n    return subprocess.run(argv)": set(),
    'subprocess.run([sys.executable, "-m", "builder"])': set(),
    'profiles = ["win2008-x64", "win2003-x86"]': set(),
    'subprocess.run([str(busybox), "--list-full"])': set(),
}


@pytest.mark.parametrize("source", sorted(PYTHON_CASES))
def test_python_programs_finds_each_way_of_running_one(source: str) -> None:
    assert {use.program for use in programs.python_programs(source)} == PYTHON_CASES[source]


def test_python_programs_reads_the_package_the_call_names() -> None:
    uses = programs.python_programs(
        'tools.run(["qemu-img", "create"], package="qemu-utils")\nfind_program("a", "pkg-a")'
    )
    assert [(u.program, u.package) for u in uses] == [("qemu-img", "qemu-utils"), ("a", "pkg-a")]


SHELL_CASES: Mapping[str, list[str]] = {
    "apt-get update -q": ["apt-get"],
    'if ! dpkg-query -W "$p" | grep -q ok; then exit 1; fi': ["dpkg-query", "grep"],
    'x="$(dirname "$0")/a"; `uname -r`': ["dirname", "uname"],
    "f() { virsh version; }\nf && sleep 1 || tail -n 2 log": ["virsh", "sleep", "tail"],
    "/usr/sbin/libvirtd -d": ["libvirtd"],
    "FOO=1 make -C x": ["make"],
    'case "$1" in a) service libvirtd start ;; esac': ["service"],
    "conf='user = \"root\"\ngroup = x'\nprintf '%s' \"$conf\"": [],
    './.ci/install-debian-packages make\n"$@"\n"/usr/sbin/$1" -d': [],
    "command -v make >/dev/null; echo hi; [ -n x ]; local y=1; cd /": [],
}


@pytest.mark.parametrize("script", sorted(SHELL_CASES))
def test_shell_programs_finds_the_commands_a_script_runs(script: str) -> None:
    found = programs.shell_programs({"s": script})["s"]
    assert [program for program, _ in found] == SHELL_CASES[script]


def test_shell_programs_leaves_out_functions_another_script_defines() -> None:
    found = programs.shell_programs(
        {"lib": "running() { cat /proc/1/comm; }", "main": "running libvirtd || mkdir /run/x"}
    )
    assert [p for p, _ in found["main"]] == ["mkdir"]
    assert [p for p, _ in found["lib"]] == ["cat"]


def test_shell_programs_refuses_what_shfmt_cannot_parse() -> None:
    with pytest.raises(ValueError, match="shfmt cannot parse broken"):
        programs.shell_programs({"broken": "if then fi ("})
