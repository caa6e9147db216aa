"""Driver sources, the interface (builder/virtio/source.py): sizes from the listing, reads
checked against them, one digest per file."""

from __future__ import annotations

import hashlib
import os
import re
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from builder.errors import BuildError, InputError, shown
from builder.virtio.source import DEFAULT_LIMITS, DirectorySource, SourceLimits


@pytest.fixture
def source(tmp_path: Path) -> DirectorySource:
    (tmp_path / "viostor" / "2k8").mkdir(parents=True)
    (tmp_path / "viostor" / "2k8" / "viostor.inf").write_bytes(b"[Version]\r\n")
    (tmp_path / "viostor" / "2k8" / "viostor.sys").write_bytes(b"MZ" + bytes(100))
    return DirectorySource(tmp_path)


def test_files_are_listed_sorted_with_their_sizes(source: DirectorySource) -> None:
    assert [(f.path, f.size) for f in source.files()] == [
        ("viostor/2k8/viostor.inf", 11),
        ("viostor/2k8/viostor.sys", 102),
    ]


def test_reads_are_checked_against_the_listing(source: DirectorySource) -> None:
    assert source.read_exact("viostor/2k8/viostor.inf", 11) == b"[Version]\r\n"
    with pytest.raises(BuildError, match="ended after 11 bytes where 12 were expected"):
        source.read_exact("viostor/2k8/viostor.inf", 12)
    with pytest.raises(BuildError, match="longer than the 10 bytes expected") as raised:
        source.read_exact("viostor/2k8/viostor.inf", 10)
    assert "the driver source changed during the build" in str(raised.value)


def test_a_stream_is_opened_on_its_first_read_and_can_be_rewound(source: DirectorySource) -> None:
    stream = source.open_exact("viostor/2k8/viostor.sys", 102)
    assert stream.read(2) == b"MZ"
    stream.seek(0)
    assert stream.read() == b"MZ" + bytes(100)
    stream.close()


def test_an_oversized_small_file_is_refused(source: DirectorySource) -> None:
    with pytest.raises(InputError, match="more than the 50 expected"):
        source.read_bytes("viostor/2k8/viostor.sys", 50)


def test_each_file_is_hashed_once(source: DirectorySource, monkeypatch: pytest.MonkeyPatch) -> None:
    path = "viostor/2k8/viostor.sys"
    digest = source.sha256(path)
    assert digest == hashlib.sha256(b"MZ" + bytes(100)).hexdigest()

    def no_more_reads(*_: object) -> None:
        raise AssertionError("read twice")

    monkeypatch.setattr(source, "open_exact", no_more_reads)
    assert source.sha256(path) == digest


def test_paths_are_described_for_messages(source: DirectorySource, tmp_path: Path) -> None:
    assert source.describe("a/b.inf") == str(tmp_path / "a/b.inf")
    assert source.as_json() == {"path": str(tmp_path), "kind": "dir", "label": tmp_path.name}


def test_a_small_file_read_whole_is_not_read_again_for_its_digest(
    source: DirectorySource, tmp_path: Path
) -> None:
    data = source.read_bytes("viostor/2k8/viostor.inf", 1024)
    # Same size, other bytes: a second read would see them.
    (tmp_path / "viostor" / "2k8" / "viostor.inf").write_bytes(b"[Changed]\r\n")
    assert source.sha256("viostor/2k8/viostor.inf") == hashlib.sha256(data).hexdigest()


# -- a directory source never reads outside itself -----------------------------------------

SECRET = b"root:$y$secret:19000:0:99999:7:::\n"


def hostile_tree(tmp_path: Path) -> Path:
    """A small driver folder, and beside it (outside it) a file and a folder it must
    never read."""
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "shadow").write_bytes(SECRET)
    (tmp_path / "outside" / "viostor.sys").write_bytes(SECRET)
    root = tmp_path / "src"
    (root / "viostor" / "2k8").mkdir(parents=True)
    (root / "viostor" / "2k8" / "viostor.inf").write_bytes(b"[Version]\r\n")
    return root


def _link(target: str) -> Callable[[Path], None]:
    return lambda at: at.symlink_to(target)


def _fifo(at: Path) -> None:
    os.mkfifo(at)


def _socket(at: Path) -> None:
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(at))


def _loop_pair(at: Path) -> None:
    at.symlink_to(at.name + ".other")
    at.with_name(at.name + ".other").symlink_to(at.name)


# (where in the tree, how it is made, what the error says): each is refused naming it.
HOSTILE_ENTRIES = [
    ("viostor/2k8/viostor.sys", _link("/etc/shadow"), "outside the driver source"),
    ("viostor/2k8/viostor.sys", _link("../../../outside/shadow"), "outside the driver source"),
    (
        "viostor/2k8/viostor.sys",
        lambda at: at.symlink_to(at.parents[3] / "outside" / "shadow"),
        "outside the driver source",
    ),
    ("viostor/2k8/amd64", _link("../../../outside"), "outside the driver source"),
    ("viostor/2k8/viostor.sys", _link("viostor.sys"), "in a loop"),
    ("viostor/2k8/viostor.sys", _loop_pair, "in a loop"),
    ("viostor/2k8/up", _link(".."), "leads back to a folder above it (a loop)"),
    ("viostor/2k8/here", _link("."), "leads back to a folder above it (a loop)"),
    ("viostor/root", _link("/"), "outside the driver source"),
    ("viostor/2k8/viostor.sys", _link("missing.sys"), "which does not exist"),
    ("viostor/2k8/viostor.sys", _fifo, "is a fifo (named pipe), not a file"),
    ("viostor/2k8/viostor.sys", _socket, "is a socket, not a file"),
]


@pytest.mark.parametrize(("where", "make", "fragment"), HOSTILE_ENTRIES)
def test_a_hostile_entry_is_refused_naming_it(
    tmp_path: Path, where: str, make: Callable[[Path], None], fragment: str
) -> None:
    root = hostile_tree(tmp_path)
    make(root / where)
    with pytest.raises(InputError) as raised:
        DirectorySource(root).files()
    message = str(raised.value)
    assert fragment in message
    assert str(root / where) in message
    assert SECRET.decode() not in message


@pytest.mark.parametrize(
    "name",
    [
        "back\\slash.sys",
        "new\nline.inf",
        "tab\there",
        b"\xff\xfe.sys".decode("utf-8", "surrogateescape"),
    ],
)
def test_a_name_that_is_not_one_plain_name_is_refused(tmp_path: Path, name: str) -> None:
    root = hostile_tree(tmp_path)
    (root / "viostor" / os.fsdecode(os.fsencode(name))).write_bytes(b"x")
    with pytest.raises(InputError, match="has an entry named") as raised:
        DirectorySource(root).files()
    assert shown(name) in str(raised.value)


def test_links_that_stay_inside_are_followed(tmp_path: Path) -> None:
    root = hostile_tree(tmp_path)
    folder = root / "viostor" / "2k8"
    (folder / "real.sys").write_bytes(b"MZ driver")
    (folder / "viostor.sys").symlink_to("real.sys")
    (root / "viostor" / "2k8R2").symlink_to("2k8")  # a sibling folder, not a loop
    (root / "by-os").mkdir()
    (root / "by-os" / "viostor.inf").symlink_to(folder / "viostor.inf")  # absolute, inside
    outer = tmp_path / "link-to-src"
    outer.symlink_to(root)  # the source itself may be reached through a link
    source = DirectorySource(outer)
    listed = {f.path: f.size for f in source.files()}
    assert listed == {
        "by-os/viostor.inf": 11,
        "viostor/2k8/real.sys": 9,
        "viostor/2k8/viostor.inf": 11,
        "viostor/2k8/viostor.sys": 9,
        "viostor/2k8R2/real.sys": 9,
        "viostor/2k8R2/viostor.inf": 11,
        "viostor/2k8R2/viostor.sys": 9,
    }
    assert source.read_exact("viostor/2k8R2/viostor.sys", 9) == b"MZ driver"
    assert source.read_exact("by-os/viostor.inf", 11) == b"[Version]\r\n"


@pytest.mark.parametrize(
    ("limits", "build", "fragment"),
    [
        (
            SourceLimits(entries=5),
            lambda r: [(r / f"f{i}").write_bytes(b"") for i in range(6)],
            "has more than 5 files and folders",
        ),
        (
            SourceLimits(depth=3),
            lambda r: (r / "a/b/c/d").mkdir(parents=True),
            "has folders nested more than 3 deep (a/b/c/d",
        ),
        (
            SourceLimits(path_chars=20),
            lambda r: (r / ("x" * 21)).write_bytes(b""),
            "has a path longer than 20 characters",
        ),
    ],
)
def test_walks_are_bounded(
    tmp_path: Path, limits: SourceLimits, build: Callable[[Path], object], fragment: str
) -> None:
    build(tmp_path)
    with pytest.raises(InputError, match=re.escape(fragment)):
        DirectorySource(tmp_path, limits).files()
    # Just inside each limit is fine.
    relaxed = SourceLimits(
        entries=limits.entries + 10,
        depth=limits.depth + 1,
        path_chars=limits.path_chars + 1,
    )
    DirectorySource(tmp_path, relaxed).files()  # does not raise


@pytest.mark.parametrize(
    ("limits", "fragment"),
    [
        (SourceLimits(links=300), "has more than 300 symbolic links"),
        (SourceLimits(entries=300), "has more than 300 files and folders"),
    ],
)
def test_links_that_multiply_the_tree_are_bounded(
    tmp_path: Path, limits: SourceLimits, fragment: str
) -> None:
    """Links that multiply the tree without a loop (each folder links to the next one
    twice: 2**40 paths) end at a budget, not after 2**40 steps."""
    for level in range(40):
        (tmp_path / f"d{level}").mkdir()
    for level in range(39):
        for copy in ("a", "b"):
            (tmp_path / f"d{level}" / copy).symlink_to(tmp_path / f"d{level + 1}")
    with pytest.raises(InputError, match=fragment):
        DirectorySource(tmp_path, limits).files()


# Swapped after the listing: the open goes one folder at a time without following links
# and must find the inode it listed.
def _file_becomes_a_link(root: Path) -> None:
    target = root / "viostor" / "2k8" / "viostor.sys"
    target.unlink()
    target.symlink_to(root.parent / "outside" / "viostor.sys")


def _folder_becomes_a_link(root: Path) -> None:
    folder = root / "viostor" / "2k8"
    folder.rename(root / "viostor" / "moved")
    folder.symlink_to(root.parent / "outside")


def _file_becomes_a_fifo(root: Path) -> None:
    target = root / "viostor" / "2k8" / "viostor.sys"
    target.unlink()
    os.mkfifo(target)


@pytest.mark.parametrize(
    "swap", [_file_becomes_a_link, _folder_becomes_a_link, _file_becomes_a_fifo]
)
def test_a_file_swapped_after_the_listing_is_not_read(
    tmp_path: Path, swap: Callable[[Path], None]
) -> None:
    root = hostile_tree(tmp_path)
    (root / "viostor" / "2k8" / "viostor.sys").write_bytes(b"MZ driver")
    source = DirectorySource(root)
    assert len(source.files()) == 2
    swap(root)
    with pytest.raises(BuildError, match="the driver source changed during the build"):
        source.read_exact("viostor/2k8/viostor.sys", 9)


def test_an_unreadable_file_is_a_sentence_naming_it(
    source: DirectorySource, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The permission error itself, as a user without read access gets it, is in
    tests/integration/test_sources.py (run without the capability that lets root read)."""
    real_open = os.open

    def denied(path: str, flags: int, *args: object, **kwargs: object) -> int:
        if path == "viostor.sys":
            raise PermissionError(13, "Permission denied")
        return real_open(path, flags, *args, **kwargs)  # type: ignore[arg-type]

    source.files()
    monkeypatch.setattr(os, "open", denied)
    with pytest.raises(InputError) as raised:
        source.read_exact("viostor/2k8/viostor.sys", 102)
    assert f"cannot read {tmp_path / 'viostor/2k8/viostor.sys'}: Permission denied." in str(
        raised.value
    )
    assert "Check its permissions" in str(raised.value)


def test_the_limits_are_the_ones_drivers_readme_states() -> None:
    readme = (Path(__file__).resolve().parents[3] / "drivers" / "README.md").read_text()
    text = " ".join(readme.split())
    limits = DEFAULT_LIMITS
    assert (
        f"more than {limits.entries:,} files and folders, {limits.links:,} links, "
        f"{limits.depth} levels, {limits.path_chars:,}-character paths, "
        f"{limits.scan_bytes // 2**20} MiB of INF files, or "
        f"{limits.selected_bytes // 2**30} GiB of selected packages" in text
    )


def test_check_name_refuses_exactly_the_characters_that_are_no_part_of_a_name() -> None:
    """Every code point, one at a time inside a name: the separators, the controls and
    the lone surrogates (bytes that were not UTF-8) are refused, nothing else is."""
    from builder.virtio.source import check_name

    refused = {"/", "\\", "\x7f", *map(chr, range(0x20)), *map(chr, range(0xD800, 0xE000))}
    for point in range(0x110000):
        char = chr(point)
        try:
            check_name(Path("virtio-win.iso"), "viostor", f"a{char}b")
        except InputError:
            assert char in refused, hex(point)
        else:
            assert char not in refused, hex(point)
    for name in ("", ".", ".."):
        with pytest.raises(InputError, match="has an entry named"):
            check_name(Path("virtio-win.iso"), "", name)
