"""The repository explains itself: every reference in code, templates, tests and docs to a
file of the repository resolves (a `docs/<page>.md §N` to a section of that page), and nothing
points at files a person with only the clone does not have."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TEXT_FILES = ("*.py", "*.md", "*.j2", "*.toml", "Makefile", "*.cfg", "run", "setup-libvirtd")
PLACES = ("builder", "templates", "drivers", "tests", "docs", ".ci")
REFERENCE = re.compile(
    r"(?<![\w/.-])((?:builder|tests|docs|templates|drivers|\.ci)/[\w./-]+\.(?:py|md|j2|toml))"
    r"(?:\s+(§\d+)(?:\s+and\s+(§\d+))?)?"
)
# Spelled in pieces so that this file does not name them itself.
OUTSIDE = (
    "/work/" + "shared",
    "../" + "shared",
    "reference" + "/",
    "DESIGN" + ".md",
    "STYLE" + ".md",
)


def text_files() -> Iterator[Path]:
    yield from (ROOT / name for name in ("README.md", "Makefile", "pyproject.toml"))
    for place in PLACES:
        for pattern in TEXT_FILES:
            for path in (ROOT / place).rglob(pattern):
                if ".cache" not in path.parts and "__pycache__" not in path.parts:
                    yield path


def sections(page: Path) -> set[str]:
    return {f"§{m.group(1)}" for m in re.finditer(r"^## (\d+)\.", page.read_text(), re.M)}


def test_every_reference_to_a_file_of_the_repository_resolves() -> None:
    broken = []
    for path in text_files():
        for match in REFERENCE.finditer(path.read_text(encoding="utf-8")):
            target = ROOT / match.group(1)
            where = f"{path.relative_to(ROOT)}: {match.group(0)}"
            if not target.is_file():
                broken.append(where)
                continue
            for section in filter(None, match.groups()[1:]):
                if target.suffix == ".md" and section not in sections(target):
                    broken.append(where)
    assert broken == []


def test_nothing_points_outside_the_repository() -> None:
    found = [
        f"{path.relative_to(ROOT)}: {word}"
        for path in text_files()
        for word in OUTSIDE
        if word in path.read_text(encoding="utf-8")
    ]
    assert found == []


def test_the_docs_exist_and_have_their_sections() -> None:
    pages = ("design", "windows-2003", "windows-2008", "windows-modern", "virtio-win")
    for page in (*pages, "libraries", "testing"):
        assert sections(ROOT / "docs" / f"{page}.md"), page
