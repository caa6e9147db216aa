"""Scanning a driver source into packages (builder/virtio/packages.py).

The oracle is the fixture generator's ground truth (tests/fixtures/virtio_win.py): it
records what every INF it wrote declares, independently of the product's parser.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from builder.errors import InputError
from builder.virtio.facts import load_driver_facts
from builder.virtio.inf import MAX_INF_BYTES
from builder.virtio.packages import Scan, scan_source
from builder.virtio.source import DirectorySource, SourceLimits
from tests.fixtures.virtio_win import Tree, edit_inf, write_modern_tree

FACTS = load_driver_facts()


@pytest.fixture(scope="module")
def modern(tmp_path_factory: pytest.TempPathFactory) -> Tree:
    return write_modern_tree(tmp_path_factory.mktemp("modern") / "virtio-win")


def scan_dir(root: Path) -> Scan:
    return scan_source(DirectorySource(root), FACTS)


def small_tree(tmp_path: Path, **kwargs: object) -> Tree:
    return write_modern_tree(tmp_path / "vw", drivers=("viostor", "NetKVM"), **kwargs)  # type: ignore[arg-type]


def test_every_inf_parses_as_the_fixture_wrote_it(modern: Tree) -> None:
    scan = scan_dir(modern.root)
    assert scan.broken == ()
    by_path = {p.inf_path: p for p in scan.packages}
    assert set(by_path) == {t.relpath for t in modern.infs}
    for truth in modern.infs:
        inf = by_path[truth.relpath].inf
        assert inf.driver_class == truth.inf_class, truth.relpath
        assert inf.class_guid.lower() == truth.class_guid.lower(), truth.relpath
        assert inf.provider == truth.provider, truth.relpath
        assert inf.driver_ver == (truth.driver_date, truth.driver_version), truth.relpath
        assert set(inf.decorations) == {d.text for d in truth.decorations}, truth.relpath
        assert inf.catalog_file(truth.arch) == truth.catalog_in_inf, truth.relpath
        assert [f.name for f in inf.source_files(truth.arch)] == list(truth.source_disks_files), (
            truth.relpath
        )
        assert inf.encoding.replace("-sig", "") in truth.encoding.replace("-bom", "").replace(
            "utf-16le", "utf-16-le"
        ) or (truth.encoding == "ascii" and inf.encoding == "ascii"), truth.relpath


def test_no_inf_files(tmp_path: Path) -> None:
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "sub" / "readme.txt").write_text("nothing here")
    with pytest.raises(InputError, match="has no INF files"):
        scan_dir(tmp_path / "empty")


def test_unreadable_inf_is_reported_not_fatal(tmp_path: Path) -> None:
    tree = small_tree(tmp_path)
    tree.path("viostor/2k8/x86/broken.inf").write_bytes(b"\x00\x01binary")
    scan = scan_dir(tree.root)
    assert [b.path for b in scan.broken] == ["viostor/2k8/x86/broken.inf"]
    assert "NUL byte" in scan.broken[0].reason


def test_an_oversized_inf_is_reported_without_being_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree = small_tree(tmp_path)
    big = tree.path("viostor/2k8/x86/huge.inf")
    with big.open("wb") as handle:
        handle.truncate(MAX_INF_BYTES + 1)  # sparse: nothing to read but its size
    source = DirectorySource(tree.root)
    real_read = source.read_exact

    def read_exact(path: str, size: int) -> bytes:
        assert path != "viostor/2k8/x86/huge.inf", "read an INF known to be too large"
        return real_read(path, size)

    monkeypatch.setattr(source, "read_exact", read_exact)
    scan = scan_source(source, FACTS)
    assert [(b.path, b.reason) for b in scan.broken] == [
        ("viostor/2k8/x86/huge.inf", f"{MAX_INF_BYTES + 1} bytes is too large for an INF file")
    ]


def test_the_inf_bytes_of_one_scan_are_bounded(tmp_path: Path) -> None:
    tree = small_tree(tmp_path)
    total = sum(tree.path(t.relpath).stat().st_size for t in tree.infs)
    scan_source(DirectorySource(tree.root), FACTS, SourceLimits(scan_bytes=total))
    with pytest.raises(InputError, match="MiB of INF files"):
        scan_source(DirectorySource(tree.root), FACTS, SourceLimits(scan_bytes=total - 1))


def test_an_inf_the_user_cannot_read_stops_the_scan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not a broken package to skip: a permission problem is the user's to fix, so the
    scan stops with the file's name (a real denial: tests/integration/test_sources.py)."""
    tree = small_tree(tmp_path)
    source = DirectorySource(tree.root)
    source.files()
    real_open = os.open

    def denied(path: str, flags: int, *args: object, **kwargs: object) -> int:
        if path == "viostor.inf":
            raise PermissionError(13, "Permission denied")
        return real_open(path, flags, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", denied)
    with pytest.raises(InputError) as raised:
        scan_source(source, FACTS)
    assert "cannot read" in str(raised.value) and "viostor.inf: Permission denied" in str(
        raised.value
    )


@pytest.mark.parametrize(
    ("old", "new", "named"),
    [
        ("viostor.sys = 1,,", "viostor.sys = 1,..\\..\\..\\NetKVM\\2k8\\amd64", "'..\\..\\..\\Ne"),
        ("viostor.sys = 1,,", "..\\..\\x86\\viostor.sys = 1,,", "'..\\..\\x86\\viostor.sys'"),
        ("viostor.sys = 1,,", "C:\\Windows\\viostor.sys = 1,,", "'C:\\Windows\\viostor.sys'"),
        ("viostor.sys = 1,,", "/etc/shadow = 1,,", "'/etc/shadow'"),
    ],
)
def test_an_inf_naming_files_outside_its_folder_refuses_the_source(
    tmp_path: Path, old: str, new: str, named: str
) -> None:
    """Not skipped like a damaged INF: no genuine package does this, so nothing of the
    source is trusted (the same on ISOs and floppies: tests/integration/)."""
    tree = small_tree(tmp_path)
    edit_inf(tree, "viostor/2k8/amd64/viostor.inf", old, new)
    with pytest.raises(InputError) as raised:
        scan_dir(tree.root)
    message = str(raised.value)
    assert f"{tree.path('viostor/2k8/amd64/viostor.inf')} line " in message
    assert named in message
    assert "not a genuine virtio-win release" in message
