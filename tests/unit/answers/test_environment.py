"""The one Jinja2 environment (builder/answers/environment.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

BUILDER = Path(__file__).resolve().parents[3] / "builder"


def builder_sources() -> Iterator[Path]:
    yield from BUILDER.rglob("*.py")


def test_render_is_the_only_module_that_builds_a_jinja_environment() -> None:
    users = {
        p.relative_to(BUILDER).as_posix()
        for p in builder_sources()
        if "jinja2.Environment(" in p.read_text()
    }
    assert users == {"answers/environment.py"}
