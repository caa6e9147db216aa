"""builder/cache.py: the build's material, taken without reading an input, and the
lookup the command line makes before the build's modules are loaded."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from builder import cache, pipeline
from builder.monitor import NullMonitor
from builder.options import BuildOptions
from builder.windows.profiles import Profile
from tests.fixtures.virtio_win import Tree, write_modern_tree

ENVIRON = {"PVINSTALL_ADMIN_PASSWORD": "Sup3r-secret", "SOURCE_DATE_EPOCH": "1700000000"}


@pytest.fixture
def tree(tmp_path: Path) -> Tree:
    return write_modern_tree(tmp_path / "vw", drivers=["viostor", "NetKVM"], oses=["2k8"])


def options(tree: Tree, out: Path, **changes: object) -> BuildOptions:
    fields: dict[str, object] = {"drivers": str(tree.root), **changes}
    return BuildOptions(profile="win2008-x64", out=out, **fields)  # type: ignore[arg-type]


def _named(opts: BuildOptions) -> Callable[[], Profile | None]:
    return lambda: cache.named_profile(opts)


def test_a_build_is_found_again_and_no_cache_only_takes_the_material(
    tree: Tree, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    opts = options(tree, out)
    assert cache.look_up(opts, ENVIRON, NullMonitor(), _named(opts)).result is None
    built = pipeline.run_build(opts, NullMonitor(), ENVIRON)
    found = cache.look_up(opts, ENVIRON, NullMonitor(), _named(opts))
    assert found.result is not None and found.result.reused
    assert found.result.manifest == built.manifest
    forced = options(tree, out, use_cache=False)
    asked: list[bool] = []

    def profile_of() -> Profile | None:
        asked.append(True)
        return None

    lookup = cache.look_up(forced, ENVIRON, NullMonitor(), profile_of)
    # --no-cache: the material is taken (the new build records it), OUT is not looked at.
    assert lookup.result is None and lookup.material == found.material and asked == []


@pytest.mark.parametrize(
    "change",
    [
        {"define": True},
        {"install": True},
        {"drivers": "/nonexistent/virtio-win.iso"},
    ],
)
def test_a_build_that_acts_or_whose_input_cannot_be_told_is_never_cached(
    tree: Tree, tmp_path: Path, change: dict[str, object]
) -> None:
    opts = options(tree, tmp_path / "out", **change)
    assert cache.cache_material(opts, ENVIRON) is None


def test_the_material_follows_every_input_identity_and_setting(tree: Tree, tmp_path: Path) -> None:
    opts = options(tree, tmp_path / "out")
    first = cache.cache_material(opts, ENVIRON)
    assert first is not None and cache.cache_material(opts, dict(ENVIRON)) == first
    assert cache.cache_material(options(tree, tmp_path / "out", sets=("a=b",)), ENVIRON) != first
    assert cache.cache_material(opts, {**ENVIRON, "PVINSTALL_ADMIN_PASSWORD": "x"}) != first
    inf = next(tree.root.rglob("*.inf"))
    os.utime(inf, ns=(1, 1))  # not read, only looked at: another identity
    assert cache.cache_material(opts, ENVIRON) != first


def test_the_profile_is_named_or_not_known() -> None:
    assert cache.named_profile(BuildOptions(profile=None)) is None
    assert cache.named_profile(BuildOptions(profile="no-such-profile")) is None
    named = cache.named_profile(BuildOptions(profile="win2003-x86"))
    assert named is not None and named.name == "win2003-x86"
