"""The answer files of a profile: which renderer writes them, and which hold secrets."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

from builder.answers import unattend, winnt
from builder.answers.environment import check_profiles
from builder.config import BuildConfig
from builder.errors import BuildError
from builder.virtio.selection import DriverSet
from builder.windows.profiles import AnswerFormat

# The renderer of each answer format; it returns the format's files by name (the
# profile's `answer_files`, of which `secret_answer_files` hold secrets).
RENDERERS: Mapping[AnswerFormat, Callable[[BuildConfig, DriverSet], dict[str, bytes]]] = (
    MappingProxyType(
        {
            AnswerFormat.WINNT: winnt.render_winnt_files,
            AnswerFormat.UNATTEND: unattend.render_unattend_files,
        }
    )
)


def render_answer_files(config: BuildConfig, drivers: DriverSet) -> dict[str, bytes]:
    """The answer files of the profile, by name.

    Args:
        config: the validated settings.
        drivers: the drivers selected for the same profile.

    Returns:
        2008 family: `{"autounattend.xml": UTF-8 XML}`; 2003: `{"winnt.sif": ...,
        "txtsetup.oem": ...}` (Windows-1252, CRLF). Names are the profile's
        `answer_files`; `layout.media_name` spells them for the media.

    Raises:
        BuildError: settings and drivers of different profiles, or a storage package
            without its driver file.
    """
    profile = check_profiles(config, drivers)
    files = RENDERERS[profile.answer_format](config, drivers)
    if tuple(files) != profile.answer_files:
        raise BuildError(
            f"the {profile.answer_format} renderer wrote {', '.join(files)}, not "
            f"{', '.join(profile.answer_files)}."
        )
    return files
