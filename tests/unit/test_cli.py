"""The command line: output shapes, exit codes, error reporting (builder/cli.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from builder import cli, sources
from builder.windows.profiles import PROFILES
from tests.fixtures import signing
from tests.fixtures.virtio_win import Tree, remove_file, write_modern_tree


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Tree:
    return write_modern_tree(
        tmp_path_factory.mktemp("cli") / "vw", drivers=("viostor", "NetKVM", "Balloon")
    )


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_profiles_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "profiles", "--json")
    assert code == 0 and err == ""
    document = json.loads(out)
    assert [p["name"] for p in document["profiles"]] == list(PROFILES)
    first = document["profiles"][0]
    assert first["virtio_win_folder"] == "2k3/x86"
    assert first["virtio_model"] == "virtio-transitional"
    assert first["storage_route"] == "slipstream"


def test_profiles_table(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "profiles")
    assert code == 0
    for name in PROFILES:
        assert name in out


def test_drivers_listing_json(capsys: pytest.CaptureFixture[str], tree: Tree) -> None:
    code, out, _ = run(capsys, "drivers", str(tree.root), "--json")
    assert code == 0
    document = json.loads(out)
    assert document["source"]["kind"] == "dir"
    assert {p["inf"] for p in document["packages"]} == {t.relpath for t in tree.infs}
    row = next(p for p in document["packages"] if p["inf"] == "viostor/2k8/amd64/viostor.inf")
    assert row["decorations"] == ["NTamd64.6.0"] and row["signed"] and row["complete"]


def test_drivers_selection_json_and_osinfo_alias(
    capsys: pytest.CaptureFixture[str], tree: Tree
) -> None:
    code, out, err = run(
        capsys, "drivers", str(tree.root), "--profile", "win2k8", "--arch", "x64", "--json"
    )
    assert code == 0, err
    document = json.loads(out)
    assert document["profile"] == "win2008-x64"
    assert {d["name"] for d in document["selected"]} == {"viostor", "NetKVM", "Balloon"}


def test_drivers_selection_shows_signers_and_digests(
    capsys: pytest.CaptureFixture[str], tree: Tree
) -> None:
    code, out, err = run(capsys, "drivers", str(tree.root), "--profile", "win2008-x64", "--json")
    assert code == 0, err
    for driver in json.loads(out)["selected"]:
        assert driver["digest"] == "sha1"
        assert driver["signer"]["sha1"] == signing.thumbprint("redhat-sha1")
        assert driver["signer"]["self_signed"] is False
        assert driver["catalog"].endswith(".cat")
    code, out, _ = run(capsys, "drivers", str(tree.root), "--profile", "win2008-x64")
    assert code == 0
    header = out.splitlines()[1]
    assert "DIGEST" in header and "SIGNER" in header
    assert "Red Hat, Inc." in out
    assert f"Signers:\n  {signing.thumbprint('redhat-sha1')}  C=US" in out
    assert "issued by C=US, O=pvinstall tests, CN=pvinstall test code signing CA" in out


def test_drivers_listing_reports_what_a_build_refuses_as_a_warning(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    old = write_modern_tree(tmp_path / "vw", release="0.1.185", drivers=("viostor", "NetKVM"))
    code, out, err = run(capsys, "drivers", str(old.root), "--profile", "win2008-x64")
    assert code == 0
    assert "sha256" in out
    assert "warning: viostor/2k8/amd64/viostor.cat: viostor" in err and "KB4474419" in err


def test_drivers_selection_table(capsys: pytest.CaptureFixture[str], tree: Tree) -> None:
    code, out, _ = run(capsys, "drivers", str(tree.root), "--profile", "win2003-x86", "--rejected")
    assert code == 0
    assert "viostor/2k3/x86/viostor.inf" in out
    assert "Rejected:" in out


# An optional package the build would leave out: what `drivers --rejected` says of it.
LEFT_OUT: dict[str, tuple[Callable[[Tree], object], str, str]] = {
    "incomplete": (
        lambda t: remove_file(t, "Balloon/2k8/amd64/WdfCoInstaller01009.dll"),
        "incomplete: missing WdfCoInstaller01009.dll",
        "Balloon is left out: Balloon/2k8/amd64/balloon.inf is incomplete",
    ),
    "unreadable-catalog": (
        lambda t: t.path("Balloon/2k8/amd64/balloon.cat").write_bytes(b"not a catalog"),
        "catalog cannot be read: it is not DER-encoded PKCS#7 SignedData",
        "Balloon is left out: its catalog Balloon/2k8/amd64/balloon.cat cannot be read",
    ),
}


@pytest.mark.parametrize("damage", list(LEFT_OUT))
def test_drivers_rejected_shows_why_an_optional_package_is_left_out(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, damage: str
) -> None:
    made = write_modern_tree(tmp_path / "vw", drivers=("viostor", "NetKVM", "Balloon"))
    spoil, reason, warning = LEFT_OUT[damage]
    spoil(made)
    args = ("drivers", str(made.root), "--profile", "win2008-x64")
    code, out, err = run(capsys, *args, "--rejected")
    assert code == 0, err
    selected, _, rejected = out.partition("\nRejected:\n")
    assert "Balloon/2k8/amd64/balloon.inf" not in selected
    assert f"  Balloon/2k8/amd64/balloon.inf: {reason}" in rejected
    assert f"warning: {warning}" in err
    code, out, _ = run(capsys, *args, "--json")
    document = json.loads(out)
    assert "Balloon" not in {d["name"] for d in document["selected"]}
    reasons = {r["inf"]: r["reason"] for r in document["rejected"]}
    assert reasons["Balloon/2k8/amd64/balloon.inf"].startswith(reason)
    assert any(w.startswith(warning) for w in document["warnings"])


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["drivers", "/no/such/path"], "does not exist"),
        (["drivers", "/etc/hostname"], "is not an ISO 9660 image"),
        (["drivers", ".", "--profile", "win2012"], "unknown profile 'win2012'"),
        (["drivers", ".", "--profile", "win2k8"], "several architectures"),
    ],
)
def test_bad_input_exits_2_with_a_sentence(
    capsys: pytest.CaptureFixture[str], args: list[str], fragment: str
) -> None:
    code, out, err = run(capsys, *args)
    assert code == 2
    assert fragment in err
    assert "Traceback" not in err
    assert out == ""


def test_bad_input_with_json_prints_the_error_document(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    tree = write_modern_tree(tmp_path / "vw", drivers=("viostor", "NetKVM"))
    remove_file(tree, "viostor/2k8/amd64/viostor.sys")
    code, out, _ = run(capsys, "drivers", str(tree.root), "--profile", "win2008-x64", "--json")
    assert code == 2
    document = json.loads(out)
    assert document["error"]["kind"] == "input"
    assert document["error"]["exit_code"] == 2
    assert "viostor.sys" in document["error"]["problems"][0]["message"]


def test_usage_error_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "no-such-command")
    assert code == 2
    assert "No such command" in err


def test_interrupt_exits_130(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def interrupted(*_: object, **__: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(sources, "find_source", interrupted)
    code, _, err = run(capsys, "drivers")
    assert code == 130
    assert "interrupted" in err


def test_unexpected_error_is_a_sentence_unless_debug(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(*_: object, **__: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(sources, "find_source", broken)
    code, _, err = run(capsys, "drivers")
    assert code == 1
    assert "internal error: RuntimeError: boom" in err and "Traceback" not in err
    with pytest.raises(RuntimeError):
        cli.main(["--debug", "drivers"])


def test_console_script_and_module_entry_points() -> None:
    for argv in (
        [sys.executable, "-m", "builder", "profiles", "--json"],
        [str(Path(sys.executable).parent / "pvinstall"), "profiles", "--json"],
    ):
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["profiles"]
    done = subprocess.run(
        [sys.executable, "-m", "builder", "drivers", "/nonexistent"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2


def test_every_setting_is_documented_in_build_help_and_the_readme(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from builder.config import SETTINGS

    code, out, _ = run(capsys, "build", "--help")
    assert code == 0
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for setting in SETTINGS:
        assert setting.key in out, setting.key
        assert f"`{setting.key}`" in readme, setting.key
    for flag in (
        "--define",
        "--install",
        "--print-xml",
        "--replace",
        "--timeout",
        "--domain-type",
        "--connect",
        "--windows-iso",
        "--drivers",
        "--set",
    ):
        assert flag in out and flag in readme, flag


# -- --json: exactly one document on stdout, whatever happens -----------------------------

USAGE_ERRORS = [
    (["convert", "--json"], "Missing argument"),
    (["build", "win2008-x64", "--json", "--bogus"], "No such option: --bogus"),
    (["build", "win2008-x64", "--json", "--timeout", "soon"], "Invalid value for '--timeout'"),
    (["nosuch", "--json"], "No such command 'nosuch'"),
    (["--json"], "No such option: --json"),
    (["attach", "x", "disk", "--json", "--size", "many"], "Invalid value for '--size'"),
]


@pytest.mark.parametrize(("args", "words"), USAGE_ERRORS)
def test_a_usage_error_with_json_is_one_error_document(
    capsys: pytest.CaptureFixture[str], args: list[str], words: str
) -> None:
    code, out, err = run(capsys, *args)
    assert code == 2
    document = json.loads(out)  # one document, nothing else on stdout
    error = document["error"]
    assert (error["kind"], error["exit_code"]) == ("usage", 2)
    (problem,) = error["problems"]
    assert words in problem["message"] and "--help" in problem["hint"]
    assert words in err  # and the person reading stderr sees click's usage text


def test_an_internal_error_with_json_is_one_error_document(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from builder import pipeline

    def broken(*_: object, **__: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(pipeline, "run_build", broken)
    code, out, err = run(capsys, "build", "win2008-x64", "--json")
    assert code == 1
    error = json.loads(out)["error"]
    assert error["kind"] == "internal" and error["exit_code"] == 1
    assert error["problems"][0]["message"] == "internal error: RuntimeError: a bug"
    assert "please report it" in err and "Traceback" not in err


@pytest.mark.parametrize(("signum", "code"), [(2, 130), (15, 143)])
def test_an_interruption_with_json_is_one_error_document(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, signum: int, code: int
) -> None:
    """(Real signals sent to a real process: tests/integration/test_out_faults.py.)"""
    from builder import interrupts, pipeline

    def stopped(*_: object, **__: object) -> None:
        interrupts._received.append(signum)
        raise interrupts.Interrupted(signum)

    monkeypatch.setattr(pipeline, "run_build", stopped)
    got, out, err = run(capsys, "build", "win2008-x64", "--json")
    assert got == code
    error = json.loads(out)["error"]
    assert error["kind"] == "interrupted" and error["exit_code"] == code
    assert err.strip().splitlines()[-1].startswith("pvinstall: interrupted (SIG")


def test_warnings_of_libraries_are_json_lines_with_json(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tree: Tree, tmp_path: Path
) -> None:
    import warnings

    from builder.media import fat

    write_floppy = fat.write_floppy

    def warning_writer(*args: object, **kwargs: object) -> None:
        warnings.warn("Filesystem was not cleanly unmounted", UserWarning, stacklevel=1)
        write_floppy(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(fat, "write_floppy", warning_writer)
    monkeypatch.setenv("PVINSTALL_ADMIN_PASSWORD", "pw")
    code, out, err = run(
        capsys, "build", "win2008-x64", "--drivers", str(tree.root), "--out", str(tmp_path / "o"),
        "--json",
    )  # fmt: skip
    assert code == 0, err
    json.loads(out)
    events = [json.loads(line) for line in err.splitlines()]  # every stderr line is JSON
    assert {
        "event": "warning",
        "message": "UserWarning: Filesystem was not cleanly unmounted",
    } in [{k: v for k, v in e.items() if k != "t"} for e in events]


def test_every_parameter_is_coerced_as_typer_would(tmp_path: Path) -> None:
    """builder.cli._PlainCoercion stands in for typer's pydantic coercion on every
    parameter (--help included) and gives what typer gives, for values it takes and for
    those it hands on."""
    from typer._click import Context
    from typer._coercion import build_runtime_param
    from typer.core import _TyperParameter

    command = cli._command_line()
    commands = [command, *getattr(command, "commands", {}).values()]
    samples: dict[object, list[object]] = {
        str: ["win2008-x64", ""],
        bool: [True, False],
        list[str]: [("a=1", "b=2"), ()],
        Path: [str(tmp_path), "no/such/file", str(tmp_path / "x.iso")],
        int: ["3"],
        float: ["1.5"],
    }
    seen = set()
    for each in commands:
        ctx = Context(each)
        for param in [*each.params, each.get_help_option(ctx)]:
            assert isinstance(param, _TyperParameter)
            ours = param.get_runtime_param()
            assert isinstance(ours, cli._PlainCoercion), (each.name, param.name)
            typers = build_runtime_param(param.type_descriptor)
            for value in samples.get(param.type_descriptor.annotation, []):
                seen.add(param.type_descriptor.annotation)
                expected = typers._coerce_value(value, param=param, ctx=ctx)
                assert ours._coerce_value(value, param=param, ctx=ctx) == expected
    assert seen == set(samples)
