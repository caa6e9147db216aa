"""The hypervisor tier of tests/programs.py is there after `make test`'s set-up: QEMU
with its firmware, libvirtd with its QEMU driver, and the boot probe's tools. A missing
one fails, naming the package to add to DEBIAN_HYPERVISOR in the Makefile."""

from __future__ import annotations

import pytest

from tests.programs import NEEDS, Need

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    "need", [n for n in NEEDS if n.tier == "hypervisor" and not n.only_when], ids=lambda n: n.name
)
def test_the_hypervisor_tier_is_installed(need: Need) -> None:
    assert need.present(), need.missing_message()
