"""The one Jinja2 environment, and the text rules every rendered file follows (pure).

Templates live in `templates/`; `*.xml.j2` are autoescaped, the others (winnt.sif,
txtsetup.oem, the cmd script) have no escaping syntax, so their values are checked
before rendering (`builder.config` refuses what they cannot carry). Every file
Windows reads gets CRLF line ends, and is encoded with the encoding its format
demands; a character that does not encode is a bug, reported without the text
(it may hold a secret). This is the only module that builds a Jinja2 Environment.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any

import jinja2

from builder.config import BuildConfig
from builder.errors import BuildError
from builder.resources import data_dir
from builder.virtio.selection import DriverSet
from builder.windows.profiles import Profile


@cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(data_dir("templates"))),
        # XML templates escape every value; winnt.sif, txtsetup.oem and the cmd script
        # have no escaping syntax, so their values are checked before rendering.
        autoescape=jinja2.select_autoescape(
            enabled_extensions=("xml", "xml.j2"), default_for_string=False, default=False
        ),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render(template: str, context: Mapping[str, Any]) -> str:
    """Render a template of `templates/` with the one Environment (`*.xml.j2` are
    autoescaped): the answer files, the post-install script, the domain XML."""
    return _environment().get_template(template).render(context)


def crlf(text: str) -> str:
    """Windows line ends: text-mode setup reads CRLF files (one stray LF in a SIF file
    is reported to make it "corrupt"), and so does everything else here."""
    lines = text.replace("\r\n", "\n").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return "".join(line + "\r\n" for line in lines)


def encode(name: str, text: str, encoding: str) -> bytes:
    try:
        return crlf(text).encode(encoding)
    except UnicodeEncodeError as exc:
        # builder.config refuses such values; reaching this is a bug. The message names
        # the position only: the text may hold a secret.
        raise BuildError(
            f"{name}: character {exc.start} cannot be written as {encoding}."
        ) from None


def check_profiles(config: BuildConfig, drivers: DriverSet) -> Profile:
    """The profile of settings and drivers that must be of one profile (BuildError if not)."""
    if config.profile.name != drivers.profile.name:
        raise BuildError(
            f"settings for {config.profile.name} but drivers for {drivers.profile.name}."
        )
    return config.profile
