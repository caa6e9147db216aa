"""Where the data directories (`templates/`, `drivers/`) are at run time.

In a checkout (and an editable install) they sit beside the package; a wheel
carries them inside it as `builder/templates` and `builder/drivers`.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    """The directory `name` (`templates` or `drivers`) shipped with pvinstall."""
    for candidate in (_PACKAGE / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"pvinstall's {name}/ directory is missing beside {_PACKAGE}")
