"""The profile table and osinfo aliases (builder/windows/profiles.py)."""

from __future__ import annotations

import pytest

from builder.errors import InputError
from builder.windows.profiles import PROFILES, resolve_profile


def test_profile_table_matches_the_design_card() -> None:
    facts = {
        name: (
            p.family,
            p.arch,
            p.nt_version,
            p.answer_files,
            p.virtio_win_folder,
            p.machine,
            p.virtio_model,
        )
        for name, p in PROFILES.items()
    }
    assert facts == {
        "win2003-x86": (
            "win2003",
            "x86",
            (5, 2),
            ("winnt.sif", "txtsetup.oem"),
            "2k3/x86",
            "pc",
            "virtio-transitional",
        ),
        "win2003-x64": (
            "win2003",
            "amd64",
            (5, 2),
            ("winnt.sif", "txtsetup.oem"),
            "2k3/amd64",
            "pc",
            "virtio-transitional",
        ),
        "win2008-x86": (
            "win2008",
            "x86",
            (6, 0),
            ("autounattend.xml",),
            "2k8/x86",
            "pc",
            "virtio",
        ),
        "win2008-x64": (
            "win2008",
            "amd64",
            (6, 0),
            ("autounattend.xml",),
            "2k8/amd64",
            "pc",
            "virtio",
        ),
        "win2008r2-x64": (
            "win2008r2",
            "amd64",
            (6, 1),
            ("autounattend.xml",),
            "2k8R2/amd64",
            "pc",
            "virtio",
        ),
    }


def test_kms_keys_and_image_names_are_well_formed() -> None:
    for profile in PROFILES.values():
        assert profile.default_edition in profile.editions
        for edition in profile.editions.values():
            if edition.kms_key is not None:
                parts = edition.kms_key.split("-")
                assert len(parts) == 5 and all(len(p) == 5 for p in parts)
    assert PROFILES["win2008r2-x64"].editions["standard"].image_name == (
        "Windows Server 2008 R2 SERVERSTANDARD"
    )
    assert PROFILES["win2008-x64"].editions["enterprise"].kms_key == (
        "YQGMW-MPWTJ-34KDK-48M3W-X4Q6V"
    )


@pytest.mark.parametrize(
    ("name", "arch", "expected"),
    [
        ("win2008-x64", None, "win2008-x64"),
        ("win2008-x64", "x64", "win2008-x64"),
        ("win2008-x64", "amd64", "win2008-x64"),
        ("win2k3", "x86", "win2003-x86"),
        ("win2k3", "x64", "win2003-x64"),
        ("win2k3r2", "x86_64", "win2003-x64"),
        ("win2k8", "i386", "win2008-x86"),
        ("win2k8r2", None, "win2008r2-x64"),
        ("win2k8r2", "x64", "win2008r2-x64"),
    ],
)
def test_resolve(name: str, arch: str | None, expected: str) -> None:
    assert resolve_profile(name, arch).name == expected


@pytest.mark.parametrize(
    ("name", "arch", "fragment"),
    [
        ("win2012", None, "unknown profile 'win2012'"),
        ("win2k8", None, "several architectures"),
        ("win2k8r2", "x86", "no x86 profile"),
        ("win2008-x64", "x86", "is x64"),
        ("win2k8", "sparc", "unknown architecture"),
    ],
)
def test_resolve_errors(name: str, arch: str | None, fragment: str) -> None:
    with pytest.raises(InputError) as caught:
        resolve_profile(name, arch)
    assert fragment in str(caught.value)
    assert caught.value.exit_code == 2
