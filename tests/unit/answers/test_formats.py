"""The answer files of each profile (builder/answers/formats.py): golden files, names,
and which of them hold secrets.

Golden files live in tests/golden/<profile>/. After an intended change, regenerate them
with

    PVTEST_REGENERATE_GOLDEN=1 .venv/bin/pytest tests/unit/answers

and review the diff.
"""

from __future__ import annotations

import pytest

from builder.answers import formats, postinstall
from builder.errors import BuildError
from builder.media import layout
from builder.virtio.selection import DriverSet
from builder.windows.profiles import PROFILES, PostInstall
from tests.unit.answers.common import (
    GOLDEN,
    GOLDEN_CASES,
    PASSWORD,
    REGENERATE,
    expected_encoding,
    golden_config,
    rendered,
)

# -- golden files ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stem", "profile", "sets"), GOLDEN_CASES, ids=[c[0] for c in GOLDEN_CASES]
)
def test_golden_files(
    stem: str, profile: str, sets: tuple[str, ...], driversets: dict[str, DriverSet]
) -> None:
    # Text only: the certificates are the fixture's own (test_postinstall checks them).
    files = {
        name: data
        for name, data in rendered(
            profile, driversets[profile], golden_config(profile, *sets)
        ).items()
        if not name.startswith(f"{layout.CERTIFICATE_DIR}/")
    }
    folder = GOLDEN / stem
    if REGENERATE:
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.iterdir():
            old.unlink()
        for name, data in files.items():
            (folder / name).write_bytes(data)
    expected = {p.name: p.read_bytes() for p in sorted(folder.iterdir())}
    assert set(files) == set(expected), "regenerate with PVTEST_REGENERATE_GOLDEN=1"
    for name, data in files.items():
        assert data == expected[name], f"{profile}/{name} differs from the golden file"


def test_answer_file_names_are_the_profiles(driversets: dict[str, DriverSet]) -> None:
    for name, profile in PROFILES.items():
        files = formats.render_answer_files(golden_config(name), driversets[name])
        assert tuple(files) == profile.answer_files
        post = postinstall.render_postinstall(golden_config(name), driversets[name])
        # The script, its marker and the certificates it trusts (2008 family only).
        certificates = {p for p in post if p.startswith(f"{layout.CERTIFICATE_DIR}/")}
        assert set(post) - certificates == {layout.POSTINSTALL_SCRIPT, layout.MARKER_FILE}
        assert bool(certificates) == (profile.post_install is not PostInstall.NONE)


def test_settings_and_drivers_of_different_profiles_are_refused(
    driversets: dict[str, DriverSet],
) -> None:
    with pytest.raises(BuildError, match="settings for win2008-x64 but drivers for win2008r2"):
        formats.render_answer_files(golden_config("win2008-x64"), driversets["win2008r2-x64"])
    with pytest.raises(BuildError):
        postinstall.render_postinstall(golden_config("win2003-x86"), driversets["win2003-x64"])


def test_the_golden_folders_are_exactly_the_cases() -> None:
    folders = sorted(p.name for p in GOLDEN.iterdir() if p.is_dir() and p.name != "domain")
    assert folders == sorted(c[0] for c in GOLDEN_CASES)
    assert {"win2022-x64", "win2022-x64-core", "win2022-x64-bios", "win2022-x64-core-bios"} <= {
        c[0] for c in GOLDEN_CASES
    }
    assert "win2025-x64-bios" not in {c[0] for c in GOLDEN_CASES}


# -- secrets and the one Environment ---------------------------------------------------------


def test_secret_files_are_the_ones_with_secrets(driversets: dict[str, DriverSet]) -> None:
    for profile in PROFILES:
        files = rendered(profile, driversets[profile])
        config = golden_config(profile)
        secrets = [config.admin_password.reveal().encode()]
        if config.product_key:
            secrets.append(config.product_key.reveal().encode())
        for name, data in files.items():
            holds = (
                any(s in data for s in secrets)
                or expected_encoding(PASSWORD, "AdministratorPassword").encode() in data
            )
            secret = {*PROFILES[profile].secret_answer_files, PROFILES[profile].sysprep.answer_file}
            assert holds == (name in secret), (profile, name)
