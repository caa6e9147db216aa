"""The error family (builder/errors.py)."""

from __future__ import annotations

import pytest

from builder.errors import BuildError, InputError, Problem, raise_problems


def test_input_error_carries_every_problem() -> None:
    error = InputError.collect([Problem("a", "first"), Problem("b", "second", "do this")])
    assert error.exit_code == 2
    assert [p.key for p in error.problems] == ["a", "b"]
    assert str(error) == "a: first\nb: second do this"
    assert error.as_json()["error"]["problems"][1] == {
        "key": "b",
        "message": "second",
        "hint": "do this",
    }


def test_single_problem_and_build_error() -> None:
    error = InputError("bad value.", "Use another.", key="computer_name")
    assert str(error) == "computer_name: bad value. Use another."
    assert BuildError("it broke.").exit_code == 1


def test_raise_problems() -> None:
    raise_problems([])
    with pytest.raises(InputError):
        raise_problems([Problem("x", "y")])
