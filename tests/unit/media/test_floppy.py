"""FAT12 floppies as data (builder/media/floppy.py): the standard geometries, the
capacity model, and the 8.3 rule (pyfatfs's, but for the space) compared with what the
writer puts on the image.

Writing floppies and checking them with fsck.fat/mtools is in
tests/integration/test_media_floppy.py, which also proves the capacity model against
the writer at exactly full.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from builder.errors import BuildError
from builder.media import floppy
from builder.media.fat import write_floppy
from builder.media.files import PlannedFile
from builder.media.floppy import GEOMETRIES, FloppyGeometry, dir_entries, floppy_usage
from builder.virtio.source import DirectorySource

G144 = GEOMETRIES[1440]
G288 = GEOMETRIES[2880]


def test_standard_geometries() -> None:
    assert (G144.size, G144.data_clusters, G144.cluster_bytes, G144.root_entries) == (
        1474560,
        2847,
        512,
        224,
    )
    assert (G288.size, G288.data_clusters, G288.cluster_bytes, G288.root_entries) == (
        2949120,
        2863,
        1024,
        240,
    )
    assert (G144.sectors_per_track, G288.sectors_per_track) == (18, 36)
    assert G144.root_dir_sector == G288.root_dir_sector == 19


@pytest.mark.parametrize(
    ("name", "entries"),
    [
        ("WINNT.SIF", 1),
        ("DISK1", 1),
        ("VIOSTOR", 1),
        ("TXTSETUP.OEM", 1),
        ("viostor.sys", 2),  # lower case is kept through a long name
        ("Autounattend.xml", 3),  # 16 characters: two long-name slots
        ("WDFCOINSTALLER01009.DLL", 3),
        ("ABCDEFGHIJKLM", 2),  # 13 characters fit one slot
        ("ABCDEFGHIJKLMN", 3),
        ("NetKVM", 2),
    ],
)
def test_directory_entries_per_name(name: str, entries: int) -> None:
    assert dir_entries(name) == entries


def full(geo: FloppyGeometry, extra: int = 0) -> int:
    return geo.data_clusters * geo.cluster_bytes + extra


@pytest.mark.parametrize(
    ("geo", "files", "clusters", "root", "fits"),
    [
        # Nothing but the volume label.
        (G144, [], 0, 1, True),
        # Exactly full, and one byte (one cluster) over.
        (G144, [("BIG.BIN", full(G144))], 2847, 2, True),
        (G144, [("BIG.BIN", full(G144, 1))], 2848, 2, False),
        (G288, [("BIG.BIN", full(G288))], 2863, 2, True),
        (G288, [("BIG.BIN", full(G288, 1))], 2864, 2, False),
        # An empty file takes no cluster, a 1-byte file one.
        (G144, [("DISK1", 0), ("A.TXT", 1)], 1, 3, True),
        # A folder takes a cluster for . and .. and grows with its entries:
        # 2 + 3 * 2 = 8 entries = 256 bytes, one 512-byte cluster.
        (
            G144,
            [("VIOSTOR/viostor.inf", 10), ("VIOSTOR/viostor.cat", 10), ("VIOSTOR/viostor.sys", 10)],
            3 + 1,
            2,
            True,
        ),
        # 2 + 15 * 3 = 47 entries = 1504 bytes: three clusters.
        (G144, [(f"D/long-name-{i:02}.sys", 0) for i in range(15)], 3, 2, True),
        # Nested folders each count, the root holds only the first.
        (G144, [("A/B/C/X.TXT", 600)], 2 + 1 + 1 + 1, 2, True),
        # Full with a folder: 2846 data clusters + 1 folder cluster.
        (G144, [("D/X.BIN", full(G144, -512))], 2847, 2, True),
        (G144, [("D/X.BIN", full(G144, -511))], 2848, 2, False),
    ],
)
def test_capacity(
    geo: FloppyGeometry, files: list[tuple[str, int]], clusters: int, root: int, fits: bool
) -> None:
    usage = floppy_usage(files, geo)
    assert (usage.clusters, usage.root_entries, usage.fits) == (clusters, root, fits)


@pytest.mark.parametrize(
    ("geo", "count", "fits"),
    [(G144, 223, True), (G144, 224, False), (G288, 239, True), (G288, 240, False)],
)
def test_root_entry_limit(geo: FloppyGeometry, count: int, fits: bool) -> None:
    # The volume label takes one of the 224 (240) root entries.
    usage = floppy_usage([(f"F{i:03}.TXT", 0) for i in range(count)], geo)
    assert usage.root_entries == count + 1
    assert usage.fits is fits


@pytest.mark.parametrize(("count", "fits"), [(74, True), (75, False)])
def test_long_names_fill_the_root_sooner(count: int, fits: bool) -> None:
    # 16 characters: the 8.3 entry and two long-name slots each.
    usage = floppy_usage([(f"Long name {i:03}.txt", 0) for i in range(count)], G144)
    assert usage.root_entries == 1 + count * 3
    assert usage.fits is fits


def test_unknown_size_is_a_build_error() -> None:
    with pytest.raises(BuildError):
        floppy.geometry(720)


NAME_CHARACTERS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-~$ abc"*+,/:;<=>?[]|é'
NAMES = ["VIOSTOR", "VIOSTOR.SYS", "Autounattend.xml", "TXTSETUP.OEM", ".A", "A.B.C"]
NAMES += ["ABCDEFGHI", "ABC.DEFG", "ÄBC", "A\x01B", "$OEM$", "12345678.ABC"]


@given(st.one_of(st.text(alphabet=NAME_CHARACTERS, max_size=16), st.sampled_from(NAMES)))
def test_the_plan_counts_the_entries_the_writer_writes(name: str) -> None:
    """A file named `name` alone in a folder: the folder holds `.`, `..` and exactly
    `dir_entries(name)` entries, and a name with no long entries is its own 8.3 name."""
    name = name.replace("/", "_").strip(" .") or "X"
    if name in (".", ".."):
        return
    geo = G144
    planned = (PlannedFile.inline(f"D/{name}", b"x"),)
    plan = floppy.FloppyPlan(1440, "PV", planned, floppy_usage([(f"D/{name}", 1)], geo))
    out = io.BytesIO()
    try:
        write_floppy(plan, out, DirectorySource(Path.cwd()), epoch=1_700_000_000, serial=1)
    except BuildError:
        assert len(name.encode("utf-16-le")) > 255
        return
    image = out.getvalue()
    folder_at = (geo.root_dir_sector + geo.root_dir_sectors) * 512  # D is cluster 2
    slots = [image[folder_at + 32 * i : folder_at + 32 * (i + 1)] for i in range(16)]
    used = [slot for slot in slots if slot[0] != 0]
    assert len(used) == 2 + dir_entries(name)
    if not floppy.needs_long_name(name):
        stem, _, extension = name.partition(".")
        assert used[2][:11] == (stem.ljust(8) + extension.ljust(3)).encode("ibm437")


@pytest.mark.parametrize("name", ["A B.TXT", "A B", "AB .TXT"])
def test_a_space_makes_a_long_name(name: str) -> None:
    # pyfatfs failed on such names; mtools misreads a space inside a short name
    assert floppy.needs_long_name(name)
    assert dir_entries(name) == 2
