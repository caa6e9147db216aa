"""`python -m tests.bench` (`make bench`): run every benchmark and print its report."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path


def main() -> None:
    here = Path(__file__).parent
    for module in sorted(m.name for m in pkgutil.iter_modules([str(here)])):
        if module.startswith("bench_"):
            print(f"== {module}")
            importlib.import_module(f"tests.bench.{module}").main()
            print()


main()
