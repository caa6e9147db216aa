"""What a build is asked for (the command line's options, besides the settings) and
what it reports. Light on purpose: the command line and the build cache use them
before the build's own modules are loaded (a rebuild that reuses OUT loads neither
jinja2 nor libvirt nor pycdlib)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from builder.vm.uri import DEFAULT_URI
from builder.windows.profiles import Profile

DOMAIN_XML = "domain.xml"
# What a failed install keeps in OUT to show why (builder.vm.virt writes them).
SCREENSHOT = "screenshot.png"
SERIAL_TAIL = "serial-tail.log"


@dataclass(frozen=True)
class BuildOptions:
    """What the command line asked for, besides the settings."""

    profile: str | None  # None: the profile --windows-iso is for
    arch: str | None = None
    drivers: str | None = None
    windows_iso: Path | None = None
    out: Path | None = None
    name: str | None = None
    config_file: Path | None = None
    sets: tuple[str, ...] = ()
    define: bool = False
    install: bool = False
    replace: bool = False
    force: bool = False
    export_only: bool = False
    connect: str = DEFAULT_URI
    domain_type: str | None = None
    timeout_minutes: float | None = None
    # The sha256 of every input image, each read whole for it (docs/design.md §6).
    hash_inputs: bool = False
    # Reuse OUT's build when nothing it was made from changed (--no-cache: never).
    use_cache: bool = True

    @property
    def acting(self) -> bool:
        """Whether the build touches a hypervisor (--define or --install)."""
        return self.define or self.install


def default_name(profile: Profile) -> str:
    return f"pvinstall-{profile.name}"


def default_out(name: str) -> Path:
    return Path("out") / name


@dataclass(frozen=True)
class BuildResult:
    """What a finished build reports: the manifest, the domain XML and where they are."""

    manifest: dict[str, Any]
    domain_xml: str
    out_dir: Path
    installed: bool
    next_step: str | None = None
    # Whether OUT already held this build (the cache), and nothing was written.
    reused: bool = False
