"""The signature policy from the catalogs (builder/virtio/trust.py): what each profile
refuses or warns about, read from real catalogs signed by openssl in the fixture trees."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.errors import InputError
from builder.sources import read_catalogs
from builder.virtio.facts import load_driver_facts
from builder.virtio.packages import scan_source
from builder.virtio.selection import DriverSet, select_drivers
from builder.virtio.source import DirectorySource
from builder.virtio.trust import SHA1_RELEASES, apply_signatures, trusted_signers
from builder.windows.profiles import PROFILES
from tests.fixtures import signing
from tests.fixtures.virtio_win import Tree, edit_inf, truncate_file, write_modern_tree

FACTS = load_driver_facts()
DRIVERS = ("viostor", "NetKVM", "Balloon")


def tree(tmp_path: Path, release: str = "0.1.240") -> Tree:
    return write_modern_tree(
        tmp_path / "vw", release=release, drivers=DRIVERS, oses=("2k3", "2k8", "2k8R2")
    )


def select(root: Path, profile: str, **kwargs: bool) -> DriverSet:
    source = DirectorySource(root)
    drivers = select_drivers(scan_source(source, FACTS), PROFILES[profile], FACTS)
    return apply_signatures(drivers, read_catalogs(source, drivers), **kwargs)


def test_the_selection_carries_each_package_s_signatures(tmp_path: Path) -> None:
    drivers = select(tree(tmp_path).root, "win2008-x64")
    for driver in drivers.selected:
        assert driver.signatures is not None
        assert driver.signatures.digests == ("sha1",)
        assert driver.signatures.primary.signer.sha1 == signing.thumbprint("redhat-sha1")
    assert [s.sha1 for s in trusted_signers(drivers)] == [signing.thumbprint("redhat-sha1")]
    assert drivers.warnings == ()


@pytest.mark.parametrize(
    ("profile", "updates"),
    [("win2008-x64", "KB4493730"), ("win2008r2-x64", "KB4490628")],
)
def test_a_sha256_only_viostor_for_2008_x64_is_refused(
    tmp_path: Path, profile: str, updates: str
) -> None:
    # 0.1.185's legacy builds are signed with SHA-256 only, and the catalog shows it.
    with pytest.raises(InputError) as caught:
        select(tree(tmp_path, "0.1.185").root, profile)
    error = caught.value
    assert error.exit_code == 2
    (problem,) = error.problems  # only the boot-critical one; the others are warnings
    assert problem.key.startswith("viostor/") and problem.key.endswith("/viostor.cat")
    assert "viostor" in problem.message and "SHA-256 only" in problem.message
    assert "KB4474419" in problem.message and updates in problem.message
    assert problem.hint is not None
    assert "sha2_media = true" in problem.hint
    assert SHA1_RELEASES in problem.hint
    for bad in ("0.1.185", "0.1.187", "0.1.190"):
        assert bad not in problem.hint


def test_with_sha2_media_it_builds_and_warns(tmp_path: Path) -> None:
    drivers = select(tree(tmp_path, "0.1.185").root, "win2008-x64", sha2_media=True)
    assert drivers.get("viostor") is not None
    (warning,) = drivers.warnings
    assert warning.startswith("viostor (viostor/2k8/amd64/viostor.cat) is signed with SHA-256")
    assert "sha2_media = true" in warning


def test_other_sha256_only_packages_are_warnings(tmp_path: Path) -> None:
    drivers = select(tree(tmp_path, "0.1.185").root, "win2008-x64", strict=False)
    warned = {w.split(" ", 1)[0] for w in drivers.warnings}
    assert {"NetKVM", "Balloon"} <= warned
    assert {d.name for d in drivers.selected} == set(DRIVERS)


def test_32_bit_2008_only_warns(tmp_path: Path) -> None:
    drivers = select(tree(tmp_path, "0.1.185").root, "win2008-x86")
    assert {d.name for d in drivers.selected} == set(DRIVERS)
    assert len(drivers.warnings) == 3 and all("SHA-256 only" in w for w in drivers.warnings)


@pytest.mark.parametrize("profile", ["win2003-x86", "win2003-x64"])
def test_2003_ignores_signatures(tmp_path: Path, profile: str) -> None:
    drivers = select(tree(tmp_path, "0.1.185").root, profile)
    assert drivers.warnings == ()
    assert all(d.signatures and d.signatures.sha2_only for d in drivers.selected)


def test_sha1_with_a_nested_sha256_is_fine_everywhere(tmp_path: Path) -> None:
    made = tree(tmp_path, "0.1.185")
    content = signing.ctl_content([("viostor.inf", b"x")])
    nested = signing.nest(
        signing.sign(content, "redhat-sha1", "sha1"),
        signing.sign(content, "redhat-sha256", "sha256"),
    )
    made.path("viostor/2k8/amd64/viostor.cat").write_bytes(nested)
    drivers = select(made.root, "win2008-x64", strict=False)
    viostor = drivers.get("viostor")
    assert viostor is not None and viostor.signatures is not None
    assert viostor.signatures.digests == ("sha1", "sha256")
    assert not any(w.startswith("viostor") for w in drivers.warnings)
    # Both signers are trusted, once each.
    thumbprints = [s.sha1 for s in trusted_signers(drivers)]
    assert thumbprints.count(signing.thumbprint("redhat-sha1")) == 1
    assert signing.thumbprint("redhat-sha256") in thumbprints


def test_an_unreadable_catalog_of_a_required_driver_is_an_input_error(tmp_path: Path) -> None:
    made = tree(tmp_path)
    truncate_file(made, "viostor/2k8/amd64/viostor.cat", 100)
    with pytest.raises(InputError) as caught:
        select(made.root, "win2008-x64")
    (problem,) = caught.value.problems
    assert problem.key == "viostor/2k8/amd64/viostor.cat"
    assert "truncated" in problem.message


def test_an_unreadable_catalog_of_an_optional_driver_leaves_it_out(tmp_path: Path) -> None:
    made = tree(tmp_path)
    made.path("Balloon/2k8/amd64/balloon.cat").write_bytes(b"not a catalog at all")
    drivers = select(made.root, "win2008-x64")
    assert drivers.get("Balloon") is None
    (warning,) = drivers.warnings
    assert warning.startswith("Balloon is left out: its catalog Balloon/2k8/amd64/balloon.cat")
    reasons = {r.inf: r.reason for r in drivers.rejected}
    assert reasons["Balloon/2k8/amd64/balloon.inf"].startswith("catalog cannot be read")


def test_an_optional_package_without_a_catalog_is_left_out_on_2008(tmp_path: Path) -> None:
    made = tree(tmp_path)
    edit_inf(made, "Balloon/2k8/amd64/balloon.inf", "CatalogFile=Balloon.cat\r\n", "")
    drivers = select(made.root, "win2008-x64")
    assert drivers.get("Balloon") is None
    assert any("names no catalog" in w for w in drivers.warnings)


def test_a_listing_reports_what_a_build_refuses(tmp_path: Path) -> None:
    drivers = select(tree(tmp_path, "0.1.185").root, "win2008-x64", strict=False)
    assert drivers.get("viostor") is not None
    assert any(w.startswith("viostor/2k8/amd64/viostor.cat: ") for w in drivers.warnings)


def test_a_self_signed_signer_is_said_to_be(tmp_path: Path) -> None:
    made = write_modern_tree(tmp_path / "vw", drivers=("viostor",), oses=("2k12R2",))
    source = DirectorySource(made.root)
    catalogs = read_catalogs_of(source, "viostor/2k12R2/amd64/viostor.cat")
    from builder.virtio.signatures import read_catalog

    signer = read_catalog(catalogs, "viostor.cat").primary.signer
    assert signer.self_signed is True
    assert (signer.organization, signer.common_name) == ("virtio-win", "Red Hat Inc.")


def read_catalogs_of(source: DirectorySource, path: str) -> bytes:
    return source.read_bytes(path, 1 << 20)
