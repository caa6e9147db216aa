"""The one helper through which pvinstall runs external programs.

Argument lists only, never shell strings. A missing program or a failing one
becomes a `BuildError` sentence that names the program and quotes its last output.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from builder.errors import BuildError


def find_program(name: str, package: str) -> str:
    """Return the path of `name`, or raise a BuildError naming the Debian package to install."""
    path = shutil.which(name)
    if path is None:
        raise BuildError(
            f"{name} is not installed.",
            f"Install it with: apt-get install {package}",
        )
    return path


def run(
    argv: Sequence[str | Path],
    *,
    package: str,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float | None = 600,
) -> str:
    """Run a program with an argument list and return its stdout.

    `package` is the Debian package that provides the program, named in the error
    when it is missing.
    """
    program = find_program(str(argv[0]), package)
    args = [program, *(str(a) for a in argv[1:])]
    try:
        done = subprocess.run(
            args,
            capture_output=True,
            text=True,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise BuildError(f"{argv[0]} did not finish within {timeout} s.") from exc
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        raise BuildError(f"{argv[0]} failed with exit code {done.returncode}: {' / '.join(tail)}")
    return done.stdout


def run_with_progress(
    argv: Sequence[str | Path],
    *,
    package: str,
    on_line: Callable[[str], None],
) -> None:
    """Run a program that reports progress on stdout (`qemu-img convert -p` ends each
    report with a carriage return): each report goes to `on_line` as it comes. stderr
    is kept for the error, as in `run`."""
    program = find_program(str(argv[0]), package)
    args = [program, *(str(a) for a in argv[1:])]
    with subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1
    ) as process:
        assert process.stdout is not None
        pending = ""
        try:
            while chunk := process.stdout.read(64):
                pending += chunk
                *lines, pending = re.split(r"[\r\n]", pending)
                for line in lines:
                    if line.strip():
                        on_line(line.strip())
        except BaseException:
            process.kill()
            raise
        stderr = process.stderr.read() if process.stderr is not None else ""
        code = process.wait()
    if code != 0:
        tail = stderr.strip().splitlines()[-5:]
        raise BuildError(f"{argv[0]} failed with exit code {code}: {' / '.join(tail)}")
