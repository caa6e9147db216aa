"""Hostile driver sources, built into real media by real tools and given to the real
command line: a directory with links out of itself, ISOs mastered by xorriso and
genisoimage with Rock Ridge links and fifos, mtools floppies with looping chains, and
files the user cannot read. Each is exit 2 with a sentence naming the path, nothing is
written, and no byte of what lies outside the source reaches an output.

Permission problems are real: as root, the command runs under `setpriv` without the
capabilities that let root read any file (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import resource
import shutil
import socket
import struct
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from builder import cli
from builder.media.fat_reader import FloppySource
from tests.fixtures.virtio_win import (
    Tree,
    edit_inf,
    make_floppy_image,
    make_iso,
    write_floppy_tree,
    write_modern_tree,
)

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SECRET = b"root:$y$j9T$not-a-real-hash-but-a-secret:19000:0:99999:7:::\n"
SYS = "viostor/2k8/amd64/viostor.sys"


@pytest.fixture(autouse=True)
def _environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    monkeypatch.setenv("PVINSTALL_ADMIN_PASSWORD", "Sup3r-Secr3t-pw")
    monkeypatch.delenv("VIRTIO_WIN", raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def tree(tmp_path: Path) -> Tree:
    """A small virtio-win tree, and beside it a secret it must never read."""
    (tmp_path / "host").mkdir()
    (tmp_path / "host" / "shadow").write_bytes(SECRET)
    return write_modern_tree(tmp_path / "vw", drivers=("viostor", "NetKVM"), oses=("2k8",))


def build(capsys: pytest.CaptureFixture[str], source: Path, out: Path) -> tuple[int, str]:
    code = cli.main(["build", "win2008-x64", "--drivers", str(source), "--out", str(out)])
    return code, capsys.readouterr().err


def assert_refused(code: int, stderr: str, out: Path, *fragments: str) -> None:
    assert code == 2, stderr
    for fragment in fragments:
        assert fragment in stderr, stderr
    assert "Traceback" not in stderr and "internal error" not in stderr
    assert SECRET.decode() not in stderr
    assert not out.exists()


# -- a directory never reads outside itself ---------------------------------------------


def _to_host(tree: Tree) -> str:
    return str(tree.root.parent / "host" / "shadow")


def _link_out(tree: Tree) -> None:
    target = tree.path(SYS)
    target.unlink()
    target.symlink_to(_to_host(tree))


def _relative_link_out(tree: Tree) -> None:
    target = tree.path(SYS)
    target.unlink()
    target.symlink_to("../../../../host/shadow")


def _folder_link_out(tree: Tree) -> None:
    folder = tree.path("viostor/2k8/amd64")
    shutil.rmtree(folder)
    folder.symlink_to(tree.root.parent / "host")


def _self_loop(tree: Tree) -> None:
    tree.path("viostor/2k8/amd64/again").symlink_to("again")


def _folder_loop(tree: Tree) -> None:
    tree.path("viostor/2k8/amd64/up").symlink_to("../..")


def _fifo(tree: Tree) -> None:
    target = tree.path(SYS)
    target.unlink()
    os.mkfifo(target)


def _socket(tree: Tree) -> None:
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(tree.path("viostor/2k8/amd64/agent.sock")))


def _device(tree: Tree) -> None:
    target = tree.path(SYS)
    target.unlink()
    os.mknod(target, 0o600 | 0o020000, os.makedev(1, 3))  # /dev/null's numbers


DIRECTORY_CASES = [
    (_link_out, SYS, "outside the driver source"),
    (_relative_link_out, SYS, "outside the driver source"),
    (_folder_link_out, "viostor/2k8/amd64", "outside the driver source"),
    (_self_loop, "viostor/2k8/amd64/again", "in a loop"),
    (_folder_loop, "viostor/2k8/amd64/up", "a loop"),
    (_fifo, SYS, "is a fifo (named pipe), not a file"),
    (_socket, "viostor/2k8/amd64/agent.sock", "is a socket, not a file"),
]
if os.geteuid() == 0:  # only root may make a device node
    DIRECTORY_CASES.append((_device, SYS, "is a character device, not a file"))


@pytest.mark.parametrize(("damage", "where", "fragment"), DIRECTORY_CASES)
def test_a_directory_source_never_reads_outside_itself(
    capsys: pytest.CaptureFixture[str],
    tree: Tree,
    tmp_path: Path,
    damage: Callable[[Tree], None],
    where: str,
    fragment: str,
) -> None:
    damage(tree)
    out = tmp_path / "out"
    code, stderr = build(capsys, tree.root, out)
    assert_refused(code, stderr, out, str(tree.path(where)), fragment)


def test_links_inside_the_tree_build(
    capsys: pytest.CaptureFixture[str], tree: Tree, tmp_path: Path
) -> None:
    """The sibling that works: a package whose files are links to files in the tree (as
    a by-os tree next to its by-driver tree has) builds, with the files' bytes."""
    data = tree.path(SYS).read_bytes()
    (tree.root / "store").mkdir()
    tree.path(SYS).rename(tree.root / "store" / "viostor.sys")
    tree.path(SYS).symlink_to("../../../store/viostor.sys")
    out = tmp_path / "out"
    code, stderr = build(capsys, tree.root, out)
    assert code == 0, stderr
    manifest = json.loads((out / "manifest.json").read_text())
    on_iso = next(
        f["path"]
        for o in manifest["outputs"]
        if o["name"] == "drivers.iso"
        for f in o["files"]
        if f["path"].lower().endswith("amd64/viostor.sys")
    )
    back = tmp_path / "back.sys"
    subprocess.run(
        [
            "xorriso",
            "-osirrox",
            "on",
            "-indev",
            str(out / "drivers.iso"),
            "-extract",
            f"/{on_iso}",
            str(back),
        ],
        capture_output=True,
        check=True,
    )
    assert back.read_bytes() == data


# -- ISOs: Rock Ridge links and other entries that are not files --------------------------


def _iso_link(root: Path, tree: Tree) -> None:
    target = tree.path(SYS)
    target.unlink()
    target.symlink_to("/etc/shadow")


def _iso_fifo(root: Path, tree: Tree) -> None:
    target = tree.path(SYS)
    target.unlink()
    os.mkfifo(target)


def _iso_device(root: Path, tree: Tree) -> None:
    target = tree.path(SYS)
    target.unlink()
    os.mknod(target, 0o600 | 0o020000, os.makedev(1, 3))  # /dev/null's numbers


ISO_CASES = [
    (_iso_link, "is a Rock Ridge symbolic link to /etc/shadow"),
    (_iso_fifo, "is listed as a file but is a fifo (named pipe)"),
]
if os.geteuid() == 0:  # only root may make a device node to master into an image
    ISO_CASES.append((_iso_device, "is listed as a file but is a character device"))


@pytest.mark.parametrize("tool", ["xorriso", "genisoimage"])
@pytest.mark.parametrize(("damage", "fragment"), ISO_CASES)
def test_an_iso_with_entries_that_are_not_files_is_refused(
    capsys: pytest.CaptureFixture[str],
    tree: Tree,
    tmp_path: Path,
    tool: str,
    damage: Callable[[Path, Tree], None],
    fragment: str,
) -> None:
    damage(tree.root, tree)
    image = make_iso(tree, tmp_path / "vw.iso", style="joliet", tool=tool)  # type: ignore[arg-type]
    out = tmp_path / "out"
    code, stderr = build(capsys, image.path, out)
    assert_refused(code, stderr, out, f"{image.path}:{SYS}", fragment)


def test_an_iso_directory_that_loops_is_refused(
    capsys: pytest.CaptureFixture[str], tree: Tree, tmp_path: Path
) -> None:
    """A directory record pointing at the root's extent (checked by pycdlib at open)."""
    image = make_iso(tree, tmp_path / "vw.iso", style="plain", tool="genisoimage").path
    data = bytearray(image.read_bytes())
    root_extent = struct.unpack_from("<I", data, 16 * 2048 + 156 + 2)[0]
    offset = root_extent * 2048
    while data[offset]:
        length = data[offset]
        name = bytes(data[offset + 33 : offset + 33 + data[offset + 32]])
        if name == b"VIOSTOR":
            folder = struct.unpack_from("<I", data, offset + 2)[0]
            break
        offset += length
    else:
        raise AssertionError("no VIOSTOR folder in the root")
    offset = folder * 2048
    while data[offset]:
        if bytes(data[offset + 33 : offset + 33 + data[offset + 32]]) == b"2K8":
            struct.pack_into("<I", data, offset + 2, root_extent)
            struct.pack_into(">I", data, offset + 6, root_extent)
            break
        offset += data[offset]
    else:
        raise AssertionError("no 2K8 folder in VIOSTOR")
    image.write_bytes(data)
    out = tmp_path / "out"
    code, stderr = build(capsys, image, out)
    assert_refused(code, stderr, out, str(image), "ISO Directory Records form a loop")


# -- floppies: chains that loop, and images cut short ------------------------------------


@pytest.fixture
def floppy(tmp_path: Path) -> tuple[Path, Tree]:
    tree = write_floppy_tree(tmp_path / "ftree", "amd64", oses=("Win2008",))
    return make_floppy_image(tree, tmp_path / "v.vfd").path, tree


def mshowfat(image: Path, path: str) -> list[int]:
    """The clusters of `path` as mtools sees them (`<53-65>` ranges)."""
    shown = subprocess.run(
        ["mshowfat", "-i", str(image), f"::/{path}"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "MTOOLS_SKIP_CHECK": "1"},
    ).stdout
    clusters: list[int] = []
    for first, last in re.findall(r"<(\d+)(?:-(\d+))?>", shown):
        clusters += range(int(first), int(last or first) + 1)
    return clusters


def set_fat12(image: Path, cluster: int, value: int) -> None:
    """Set one FAT12 entry in every FAT copy (geometry from the boot sector)."""
    data = bytearray(image.read_bytes())
    bps, _, reserved, fats = struct.unpack_from("<HBHB", data, 11)
    (fat_sectors,) = struct.unpack_from("<H", data, 22)
    for copy in range(fats):
        offset = (reserved + copy * fat_sectors) * bps + cluster * 3 // 2
        pair = data[offset] | data[offset + 1] << 8
        pair = (pair & 0x000F) | (value << 4) if cluster & 1 else (pair & 0xF000) | value
        struct.pack_into("<H", data, offset, pair)
    image.write_bytes(data)


def test_a_floppy_reads_as_mtools_reads_it(floppy: tuple[Path, Tree]) -> None:
    image, tree = floppy
    with FloppySource(image) as source:
        assert {f.path for f in source.files()} == set(tree.files)
        for entry in source.files():
            shown = subprocess.run(
                ["mtype", "-i", str(image), f"::/{entry.path}"],
                capture_output=True,
                check=True,
                env={**os.environ, "MTOOLS_SKIP_CHECK": "1"},
            ).stdout
            assert source.read_exact(entry.path, entry.size) == shown, entry.path


def _limited_memory() -> None:
    # The looping chain grew pyfatfs's memory by 45 MB/s; 1 GiB of address space is far
    # more than pvinstall needs and far less than a runaway reader reaches in a minute.
    resource.setrlimit(resource.RLIMIT_AS, (2**30, 2**30))


@pytest.mark.parametrize(
    ("member", "index", "value", "fragment"),
    [
        # (what, which of its clusters, what its FAT entry becomes)
        ("amd64/Win2008/viostor.sys", -2, "first", "has a cluster chain that loops"),
        ("amd64/Win2008/viostor.sys", 1, "itself", "has a cluster chain that loops"),
        ("amd64/Win2008/viostor.sys", -1, "first", "has a cluster chain longer than"),
        ("amd64/Win2008/viostor.sys", -2, 4000, "in its chain, outside the volume"),
        ("amd64/Win2008/viostor.inf", -1, 0, "has a free cluster in its chain"),
        ("amd64/Win2008/viostor.cat", 0, 0xFF7, "has a bad cluster after"),
        ("amd64/Win2008", -1, "first", "has a cluster chain that loops"),
    ],
)
def test_a_floppy_with_a_broken_chain_is_refused_quickly(
    floppy: tuple[Path, Tree],
    tmp_path: Path,
    member: str,
    index: int,
    value: int | str,
    fragment: str,
) -> None:
    image, _ = floppy
    clusters = mshowfat(image, member)
    assert len(clusters) >= 2 or index in (0, -1), clusters
    target = {"first": clusters[0], "itself": clusters[index]}.get(str(value), value)
    set_fat12(image, clusters[index], int(target))
    out = tmp_path / "out"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "builder",
            "build",
            "win2008-x64",
            "--drivers",
            str(image),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=_limited_memory,
        check=False,
    )
    assert_refused(done.returncode, done.stderr, out, str(image), fragment)


@pytest.mark.parametrize("keep", [0.0, 0.3, 0.9, 0.999])
def test_a_truncated_floppy_is_refused(
    capsys: pytest.CaptureFixture[str], floppy: tuple[Path, Tree], tmp_path: Path, keep: float
) -> None:
    image, _ = floppy
    data = image.read_bytes()
    image.write_bytes(data[: max(512, int(len(data) * keep))])
    out = tmp_path / "out"
    code, stderr = build(capsys, image, out)
    assert_refused(code, stderr, out, str(image), "is truncated: its boot sector says")


# -- files the user cannot read ---------------------------------------------------------


def unprivileged(argv: list[str]) -> list[str]:
    """`argv` run so that file permissions apply, even to root."""
    if os.geteuid() != 0:
        return argv
    dropped = "-dac_override,-dac_read_search"
    return ["setpriv", f"--bounding-set={dropped}", f"--inh-caps={dropped}", *argv]


def _unreadable_inf(tree: Tree, tmp_path: Path) -> tuple[Path, str]:
    target = tree.path("viostor/2k8/amd64/viostor.inf")
    target.chmod(0)
    return tree.root, str(target)


def _unreadable_sys(tree: Tree, tmp_path: Path) -> tuple[Path, str]:
    target = tree.path(SYS)
    target.chmod(0)
    return tree.root, str(target)


def _unreadable_folder(tree: Tree, tmp_path: Path) -> tuple[Path, str]:
    target = tree.path("viostor/2k8")
    target.chmod(0)
    return tree.root, str(target)


def _unreadable_iso(tree: Tree, tmp_path: Path) -> tuple[Path, str]:
    image = make_iso(tree, tmp_path / "vw.iso").path
    image.chmod(0)
    return image, str(image)


def _unreadable_floppy(tree: Tree, tmp_path: Path) -> tuple[Path, str]:
    floppy_tree = write_floppy_tree(tmp_path / "ftree", "amd64", oses=("Win2008",))
    image = make_floppy_image(floppy_tree, tmp_path / "v.vfd").path
    image.chmod(0)
    return image, str(image)


@pytest.mark.parametrize(
    "make",
    [_unreadable_inf, _unreadable_sys, _unreadable_folder, _unreadable_iso, _unreadable_floppy],
)
def test_a_file_the_user_cannot_read_is_a_sentence(
    tree: Tree, tmp_path: Path, make: Callable[[Tree, Path], tuple[Path, str]]
) -> None:
    source, unreadable = make(tree, tmp_path)
    out = tmp_path / "out"
    done = subprocess.run(
        unprivileged(
            [
                sys.executable,
                "-m",
                "builder",
                "build",
                "win2008-x64",
                "--drivers",
                str(source),
                "--out",
                str(out),
            ]
        ),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=REPO,
        env={**os.environ, "PVINSTALL_ADMIN_PASSWORD": "Sup3r-Secr3t-pw"},
    )
    assert_refused(
        done.returncode, done.stderr, out, f"cannot read {unreadable}: Permission denied"
    )
    assert "Check its permissions" in done.stderr


# -- INF names that leave the package folder, on every kind of source ---------------------

# The package folder lies three levels below the root of a virtio-win tree (and of its
# ISO) and two below the root of a floppy. `{up}` climbs to that root and `{file}` is a
# real file there, so a reader that resolved the name would find something to copy.
_LAYOUTS = {
    "tree": ("viostor/2k8/amd64/viostor.inf", "..\\..\\..", "virtio-win_license.txt"),
    "floppy": ("amd64/Win2008/viostor.inf", "..\\..", "txtsetup.oem"),
}
_FILES_LINE = "viostor.sys = 1,,"
_DISK_LINE = '1 = %DiskId1%,,,""'
_LEADS_OUT = "'..' leads out of the package folder"
_SEPARATOR = "a file name there cannot hold a folder separator"
_DRIVE = "a drive letter or ':' names another place"

# (id, edits of viostor.inf as (old, new) pairs, the section and the name the message
# shows, why it is refused). The first edit's new line is the line the message names.
CRAFTED_NAMES = [
    ("parent-backslash", [(_FILES_LINE, "{up}\\{file} = 1,,")], "SourceDisksFiles",
     "{up}\\{file}", _LEADS_OUT),
    ("parent-slash", [(_FILES_LINE, "{up_slash}/{file} = 1,,")], "SourceDisksFiles",
     "{up_slash}/{file}", _LEADS_OUT),
    ("absolute", [(_FILES_LINE, "/etc/shadow = 1,,")], "SourceDisksFiles", "/etc/shadow",
     _SEPARATOR),
    ("rooted", [(_FILES_LINE, "\\{file} = 1,,")], "SourceDisksFiles", "\\{file}", _SEPARATOR),
    ("drive-letter", [(_FILES_LINE, "C:\\Windows\\System32\\config\\SAM = 1,,")],
     "SourceDisksFiles", "C:\\Windows\\System32\\config\\SAM", _DRIVE),
    ("drive-relative", [(_FILES_LINE, "C:viostor.sys = 1,,")], "SourceDisksFiles",
     "C:viostor.sys", _DRIVE),
    ("subdir-parent", [(_FILES_LINE, "viostor.sys = 1,{up}")], "SourceDisksFiles", "{up}",
     _LEADS_OUT),
    ("subdir-inner-parent", [(_FILES_LINE, "viostor.sys = 1,sub\\..\\{up}")],
     "SourceDisksFiles", "sub\\..\\{up}", _LEADS_OUT),
    ("subdir-network", [(_FILES_LINE, "viostor.sys = 1,\\\\server\\share")],
     "SourceDisksFiles", "\\\\server\\share", "it is a network path"),
    ("disk-parent", [(_DISK_LINE, '1 = %DiskId1%,,,"{up}"')], "SourceDisksNames", "{up}",
     _LEADS_OUT),
    # (not `D:\`: a backslash at the end of a line continues it, by the INF rules)
    ("disk-drive", [(_DISK_LINE, "1 = %DiskId1%,,,D:\\Windows")], "SourceDisksNames",
     "D:\\Windows", _DRIVE),
    ("disk-string", [(_DISK_LINE, "1 = %DiskId1%,,,%up%"),
                     ("[Strings]", '[Strings]\r\nup = "{up}"')],
     "SourceDisksNames", "{up}", _LEADS_OUT),
]  # fmt: skip

SOURCE_KINDS = ["dir", "iso-xorriso", "iso-genisoimage", "floppy"]


@dataclass(frozen=True)
class Crafted:
    """A source made with an edited viostor.inf."""

    source: Path
    tree: Tree  # what the source was made of
    inf: str  # the INF's path in the tree
    shown_as: str  # how messages name the INF
    fill: dict[str, str]  # what `{up}`, `{up_slash}` and `{file}` were
    line: int  # the INF's line the first edit made


def crafted_source(kind: str, tree: Tree, tmp_path: Path, edits: list[tuple[str, str]]) -> Crafted:
    """A source of `kind` whose viostor.inf has `edits`, with `{up}`, `{up_slash}` and
    `{file}` filled in for its layout."""
    if kind == "floppy":
        tree = write_floppy_tree(tmp_path / "ftree", "amd64", oses=("Win2008",))
    inf, up, file = _LAYOUTS["floppy" if kind == "floppy" else "tree"]
    fill = {"up": up, "up_slash": up.replace("\\", "/"), "file": file}
    assert tree.path(file).is_file()  # the name would lead to a real file
    for old, new in edits:
        edit_inf(tree, inf, old, new.format(**fill))
    first = edits[0][1].format(**fill).split("\r\n")[0]
    lines = tree.path(inf).read_bytes().decode("ascii").split("\r\n")
    line = lines.index(first) + 1
    if kind == "dir":
        return Crafted(tree.root, tree, inf, str(tree.path(inf)), fill, line)
    if kind == "floppy":
        image = make_floppy_image(tree, tmp_path / "v.vfd").path
    else:
        tool = kind.removeprefix("iso-")
        style = "modern" if tool == "xorriso" else "joliet-only"  # Rock Ridge, Joliet names
        image = make_iso(tree, tmp_path / "vw.iso", style=style, tool=tool).path  # type: ignore[arg-type]
    return Crafted(image, tree, inf, f"{image}:{inf}", fill, line)


@pytest.mark.parametrize("kind", SOURCE_KINDS)
@pytest.mark.parametrize(
    ("edits", "section", "named", "reason"),
    [pytest.param(*case[1:], id=case[0]) for case in CRAFTED_NAMES],
)
def test_an_inf_naming_files_outside_its_folder_is_refused_on_every_source(
    capsys: pytest.CaptureFixture[str],
    tree: Tree,
    tmp_path: Path,
    kind: str,
    edits: list[tuple[str, str]],
    section: str,
    named: str,
    reason: str,
) -> None:
    """Issue 18: crafted names in an INF on an ISO or a floppy were internal errors. Now
    `build` and `drivers` refuse the source, naming the INF, its line and the name, and
    nothing is written."""
    crafted = crafted_source(kind, tree, tmp_path, edits)
    out = tmp_path / "out"
    code, stderr = build(capsys, crafted.source, out)
    expected = (
        f"{crafted.shown_as} line {crafted.line}: [{section}] names "
        f"'{named.format(**crafted.fill)}': {reason}"
    )
    assert_refused(code, stderr, out, expected, "not a genuine virtio-win release")
    assert cli.main(["drivers", str(crafted.source)]) == 2
    stderr = capsys.readouterr().err
    assert expected in stderr and "Traceback" not in stderr


@pytest.mark.parametrize("kind", SOURCE_KINDS)
@pytest.mark.parametrize(
    "edits",
    [
        pytest.param([(_DISK_LINE, '1 = %DiskId1%,,,"\\"')], id="disk-root"),
        pytest.param([(_DISK_LINE, '1 = %DiskId1%,,,".\\"')], id="disk-dot"),
        pytest.param([(_FILES_LINE, "viostor.sys = 1,.")], id="subdir-dot"),
    ],
)
def test_names_of_the_package_folder_itself_build(
    capsys: pytest.CaptureFixture[str],
    tree: Tree,
    tmp_path: Path,
    kind: str,
    edits: list[tuple[str, str]],
) -> None:
    """The siblings that stay inside: a disk path of the package's own root (`\\`, `.\\`)
    and a `.` subdir name the file next to the INF, and the build takes it."""
    crafted = crafted_source(kind, tree, tmp_path, edits)
    out = tmp_path / "out"
    code, stderr = build(capsys, crafted.source, out)
    assert code == 0, stderr
    package_sys = crafted.tree.path(crafted.inf).with_name("viostor.sys").read_bytes()
    manifest = json.loads((out / "manifest.json").read_text())
    on_iso = [
        f["sha256"]
        for o in manifest["outputs"]
        if o["name"] == "drivers.iso"
        for f in o["files"]
        if f["path"].lower().endswith("amd64/viostor.sys")
    ]
    assert on_iso == [hashlib.sha256(package_sys).hexdigest()]


@pytest.mark.parametrize("kind", SOURCE_KINDS)
def test_a_name_that_only_starts_with_dots_is_looked_for_in_the_package_folder(
    capsys: pytest.CaptureFixture[str], tree: Tree, tmp_path: Path, kind: str
) -> None:
    """`..viostor.sys` is a file name, not a parent folder: the package is read, found
    incomplete (its own problem, listed by `drivers`), and the source is not refused."""
    crafted = crafted_source(kind, tree, tmp_path, [(_FILES_LINE, "..viostor.sys = 1,,")])
    assert cli.main(["drivers", str(crafted.source)]) == 0
    captured = capsys.readouterr()
    assert "missing ..viostor.sys" in captured.out + captured.err
    assert "not a genuine virtio-win release" not in captured.err
