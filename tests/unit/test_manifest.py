"""manifest.json (builder/manifest.py): the shaping takes digests and hashes nothing; the
edge hashes the files; no secret reaches it."""

from __future__ import annotations

import hashlib
import json
import os
from contextlib import AbstractContextManager
from pathlib import Path
from typing import IO

import pytest

from builder import manifest
from builder.config import load_config
from builder.media.files import PlannedFile
from builder.virtio.facts import load_driver_facts
from builder.virtio.packages import scan_source
from builder.virtio.selection import DriverSet, select_drivers
from builder.virtio.source import DirectorySource, DriverSource, SourceEntry
from builder.windows.profiles import PROFILES
from tests.fixtures.virtio_win import Tree, write_modern_tree


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Tree:
    return write_modern_tree(
        tmp_path_factory.mktemp("vw") / "vw", drivers=["viostor", "NetKVM"], oses=["2k8"]
    )


def select(source: DriverSource) -> DriverSet:
    facts = load_driver_facts()
    return select_drivers(scan_source(source, facts), PROFILES["win2008-x64"], facts)


class NoReading(DirectorySource):
    """A source that refuses to be read: the shaping must not hash anything."""

    def open_exact(self, path: str, size: int) -> object:  # type: ignore[override]
        raise AssertionError(f"{path} was read")


def test_the_shaping_uses_the_digests_it_is_given(tree: Tree) -> None:
    drivers = select(DirectorySource(tree.root))
    digests = {f.path: f"digest-of-{f.path}" for d in drivers.selected for f in d.files}
    source = NoReading(tree.root)
    record = manifest.drivers_json(drivers, digests)
    files = [f for d in record["selected"] for f in d["files"]]
    assert files and all(f["sha256"] == f"digest-of-{f['path']}" for f in files)
    assert {d["os_folder"] for d in record["selected"]} == {"viostor/2k8/amd64", "NetKVM/2k8/amd64"}
    planned = [
        PlannedFile.inline("B.TXT", b"b"),
        PlannedFile.from_source("a/viostor.sys", "viostor/2k8/amd64/viostor.sys", 1),
    ]
    shaped = manifest.planned_files_json(planned, digests)
    assert [f["path"] for f in shaped] == ["a/viostor.sys", "B.TXT"]  # case-blind order
    assert shaped[0]["sha256"] == "digest-of-viostor/2k8/amd64/viostor.sys"
    assert shaped[1]["sha256"] == hashlib.sha256(b"b").hexdigest()
    # A directory has no bytes of its own: its digest covers the selected files' digests.
    one = manifest.source_record(source, drivers, digests)
    other = manifest.source_record(source, drivers, {**digests, files[0]["path"]: "changed"})
    assert one.kind == "dir" and one.sha256 != other.sha256


def test_an_image_source_is_known_by_its_identity_and_hashed_only_on_request(
    tmp_path: Path, tree: Tree
) -> None:
    image = tmp_path / "image.iso"
    image.write_bytes(b"\0" * 4096)
    os.utime(image, ns=(1_600_000_000_000_000_000, 1_600_000_000_123_456_789))

    class Image(DriverSource):
        kind = "iso"

        def files(self) -> tuple[SourceEntry, ...]:
            return ()

        def open(self, path: str) -> AbstractContextManager[IO[bytes]]:
            raise AssertionError("the image is hashed as a file")

    drivers = select(DirectorySource(tree.root))
    digests = {f.path: f"digest-of-{f.path}" for d in drivers.selected for f in d.files}
    record = manifest.source_record(Image(image, "IMAGE"), drivers, digests)
    assert record.sha256 is None
    assert record.as_json() == {
        "name": "drivers",
        "path": str(image),
        "kind": "iso",
        "identity": {"size": 4096, "mtime_ns": 1_600_000_000_123_456_789, "volume_id": "IMAGE"},
        "files_sha256": manifest.files_digest(drivers, digests),
    }
    whole = manifest.source_record(Image(image, "IMAGE"), drivers, digests, hash_inputs=True)
    assert whole.sha256 == hashlib.sha256(b"\0" * 4096).hexdigest()
    assert manifest.file_record("config", image, "toml").as_json()["sha256"] == whole.sha256


def test_an_output_record_is_shaped_from_what_its_writer_saw(tmp_path: Path) -> None:
    out = tmp_path / "drivers.iso"
    files = [{"path": "A", "size": 1, "sha256": "x"}]
    record = manifest.output_record("drivers.iso", out, 3, {"sha256": "d"}, files)
    assert record == {
        "name": "drivers.iso",
        "path": str(out),
        "size": 3,
        "sha256": "d",
        "files": [{"path": "A", "size": 1, "sha256": "x"}],
    }
    assert not out.exists()  # nothing is read back
    assert "files" not in manifest.output_record("domain.xml", out, 1, {"hmac_sha256": "k"})


def test_no_secret_reaches_the_manifest(tree: Tree) -> None:
    config = load_config(
        PROFILES["win2008-x64"],
        sets=["admin_password=Hunter2-secret", "product_key=ABCDE-FGHIJ-KLMNO-PQRST-UVWXY"],
    )
    document = manifest.build_manifest(
        config=config,
        build_id="b" * 64,
        epoch=1,
        inputs=[],
        drivers={},
        outputs=[],
        domain={},
        warnings=[],
    )
    text = manifest.manifest_bytes(document).decode()
    assert "Hunter2-secret" not in text and "ABCDE-FGHIJ" not in text
    assert json.loads(text)["settings"]["admin_password"] == "(set)"
