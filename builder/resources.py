"""Where the data directories (`templates/`, `drivers/`) are at run time.

In a checkout (and an editable install) they sit beside the package; a wheel
carries them inside it as `builder/templates` and `builder/drivers`.
"""

from __future__ import annotations

from pathlib import Path

from builder.errors import BuildError

_PACKAGE = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    """The directory `name` (`templates` or `drivers`) shipped with pvinstall."""
    for candidate in (_PACKAGE / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise BuildError(
        f"pvinstall's {name}/ directory is missing (looked in {_PACKAGE / name} and "
        f"{_PACKAGE.parent / name}): this installation of pvinstall is incomplete.",
        "Reinstall it (pip install --force-reinstall pvinstall), or run it from a complete "
        "checkout.",
    )
