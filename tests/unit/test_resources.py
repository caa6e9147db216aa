"""Where templates/ and drivers/ are at run time (builder/resources.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder import resources
from builder.errors import BuildError


def test_the_data_directories_are_found() -> None:
    assert (resources.data_dir("templates") / "domain.xml.j2").is_file()
    assert (resources.data_dir("drivers") / "catalog.toml").is_file()


def test_a_broken_installation_is_a_sentence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(resources, "_PACKAGE", tmp_path / "site-packages" / "builder")
    with pytest.raises(BuildError) as raised:
        resources.data_dir("templates")
    assert "templates/ directory is missing" in str(raised.value)
    assert raised.value.hint is not None and "Reinstall" in raised.value.hint
