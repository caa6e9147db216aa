"""Running external programs (builder/tools.py): output, failures, time-outs, a missing
program."""

from __future__ import annotations

import pytest

from builder import tools
from builder.errors import BuildError


def test_run_returns_stdout() -> None:
    assert tools.run(["printf", "a b"], package="coreutils") == "a b"


def test_a_failing_program_is_a_sentence_with_its_last_output() -> None:
    with pytest.raises(BuildError) as raised:
        tools.run(["sh", "-c", "echo first >&2; echo last >&2; exit 3"], package="dash")
    assert str(raised.value) == "sh failed with exit code 3: first / last"


def test_a_program_that_does_not_finish_is_stopped() -> None:
    with pytest.raises(BuildError, match=r"sleep did not finish within 0\.2 s"):
        tools.run(["sleep", "30"], package="coreutils", timeout=0.2)


def test_a_missing_program_names_its_package() -> None:
    with pytest.raises(BuildError) as raised:
        tools.run(["pvinstall-no-such-program"], package="pvinstall-tools")
    assert "pvinstall-no-such-program is not installed" in str(raised.value)
    assert raised.value.hint == "Install it with: apt-get install pvinstall-tools"
