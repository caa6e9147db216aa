"""The one error family of pvinstall.

Every error is a sentence with an optional hint saying what to do. `InputError`
(exit 2) is the user's input being wrong and carries every problem found, each
with the setting or file it concerns; `BuildError` (exit 1) is a build or install
that failed although the input was valid. The CLI maps them to exit codes and
prints them; nothing else calls `sys.exit`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INVALID = 2
EXIT_INTERRUPTED = 130


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the input: where (`key`: a setting, option or file), what, and
    what to do about it."""

    key: str
    message: str
    hint: str | None = None

    def __str__(self) -> str:
        text = f"{self.key}: {self.message}" if self.key else self.message
        return f"{text} {self.hint}" if self.hint else text

    def as_json(self) -> dict[str, Any]:
        return {"key": self.key, "message": self.message, "hint": self.hint}


class PvError(Exception):
    """Base of all errors pvinstall reports as a sentence rather than a traceback."""

    exit_code = EXIT_FAILED
    kind = "error"

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    @property
    def problems(self) -> tuple[Problem, ...]:
        return (Problem("", self.message, self.hint),)

    def __str__(self) -> str:
        return "\n".join(str(p) for p in self.problems)

    def as_json(self) -> dict[str, Any]:
        return {
            "error": {
                "kind": self.kind,
                "exit_code": self.exit_code,
                "problems": [p.as_json() for p in self.problems],
            }
        }


class InputError(PvError):
    """The input (options, settings, files) is invalid: exit code 2, nothing written.

    Either one problem (`InputError(message, hint=..., key=...)`) or several
    (`InputError.collect(problems)`), so validation can report everything at once.
    """

    exit_code = EXIT_INVALID
    kind = "input"

    def __init__(
        self,
        message: str,
        hint: str | None = None,
        *,
        key: str = "",
        problems: Iterable[Problem] = (),
    ) -> None:
        super().__init__(message, hint)
        found = tuple(problems)
        self._problems = found if found else (Problem(key, message, hint),)

    @classmethod
    def collect(cls, problems: Iterable[Problem]) -> InputError:
        found = tuple(problems)
        if not found:
            raise ValueError("InputError.collect needs at least one problem")
        first = found[0]
        return cls(str(first), problems=found)

    @property
    def problems(self) -> tuple[Problem, ...]:
        return self._problems


class BuildError(PvError):
    """The build or the install failed although the input was valid: exit code 1."""

    exit_code = EXIT_FAILED
    kind = "build"


def shown(text: str) -> str:
    """A value read from a file, for a message: quoted as written (`'..\\x.sys'`), or
    escaped like Python when it holds characters a terminal would not show."""
    if text.isprintable():
        return f"'{text}'"
    return repr(text)


def raise_problems(problems: Iterable[Problem]) -> None:
    """Raise one `InputError` carrying every problem, or return when there are none."""
    found = tuple(problems)
    if found:
        raise InputError.collect(found)
