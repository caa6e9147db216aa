"""The answer files of a profile: which renderer writes them, and which hold secrets."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

from builder.answers import unattend, winnt
from builder.answers.environment import check_profiles
from builder.config import BuildConfig
from builder.virtio.selection import DriverSet

# Answer files that hold the administrator password or the product key; the pipeline
# writes them with mode 0600. txtsetup.oem and the post-install script hold neither.
SECRET_FILES: frozenset[str] = frozenset({"autounattend.xml", "winnt.sif"})

_RENDERERS: Mapping[str, Callable[[BuildConfig, DriverSet], bytes]] = MappingProxyType(
    {
        "autounattend.xml": unattend.render_autounattend,
        "winnt.sif": winnt.render_winnt_sif,
        "txtsetup.oem": winnt.render_txtsetup_oem,
    }
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
    return {name: _RENDERERS[name](config, drivers) for name in profile.answer_files}
