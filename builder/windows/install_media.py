"""What is on a Windows install medium, and how it meets the profiles (pure).

`media/iso9660.py` reads a DVD or CD in place into an `InstallMedia` (the install.wim's
images, the El Torito boot images, a 2003 CD's setup folder); this module says which
profiles the medium is for (`profiles_for`), whether it is the one a profile needs
(`check_media`), and which of its images a build installs (`choose_image`). Nothing
here reads a file.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from builder.errors import Problem
from builder.windows.profiles import PROFILES, Edition, Profile
from builder.windows.wim import WimImage, WimInfo

WINDOWS_ISO_KEY = "--windows-iso"

# How a medium installs Windows: Windows Setup from install.wim (2008 and later), or
# the text-mode setup of a 2003 CD.
SetupKind = Literal["windows-setup", "text-mode"]


@dataclass(frozen=True)
class BootImage:
    """One El Torito entry: what the firmware loads from the disc, and the file it is."""

    platform: str  # "bios", "uefi", or the platform id in hex
    bootable: bool
    emulation: str  # "no-emulation", "floppy-1.44M", ...
    load_segment: int  # as the entry says; 0 is El Torito's default, 0x7C0
    sectors: int  # 512-byte sectors the firmware loads (1 on UEFI entries: "the image")
    lba: int  # 2048-byte sector of the image
    file: str | None  # the file at that sector, None when no directory lists it
    size: int | None  # that file's size

    def as_json(self) -> dict[str, Any]:
        return {
            "platform": self.platform,
            "bootable": self.bootable,
            "emulation": self.emulation,
            "load_segment": f"{self.load_segment:#06x}",
            "sectors": self.sectors,
            "lba": self.lba,
            "file": self.file,
            "size": self.size,
        }


@dataclass(frozen=True)
class DiscExtent:
    """Where a file's data is on the disc: its first sector, its size, and whether it is
    one contiguous run (the only kind a boot entry can point at)."""

    path: str
    lba: int
    size: int
    contiguous: bool


@dataclass(frozen=True)
class InstallMedia:
    """What pvinstall sees on a Windows install DVD or a Windows Server 2003 CD."""

    path: Path
    label: str
    setup: SetupKind
    udf: bool
    install_image: str | None  # its path on the DVD: sources/install.wim
    wim: WimInfo | None
    setup_dir: str | None  # a 2003 CD's I386 or AMD64
    arch: str | None  # a 2003 CD's architecture, from its setup folder
    tags: tuple[str, ...]  # a 2003 CD's WIN51* tag files
    boot: tuple[BootImage, ...]
    efisys_noprompt: bool  # efi/microsoft/boot/efisys_noprompt.bin is on the DVD
    # The raw sectors the no-prompt overlay is planned from (media/eltorito.py): the El
    # Torito boot record (sector 17), the catalog's sector and where it is, and
    # efisys_noprompt.bin's data.
    boot_record: bytes = b""
    boot_catalog: tuple[int, bytes] | None = None
    noprompt: DiscExtent | None = None

    @property
    def service_pack(self) -> str | None:
        """A 2003 CD's service pack, from its tag file (`WIN51IS.SP2`: SP2)."""
        found = sorted(tag.rpartition(".")[2].upper() for tag in self.tags if ".SP" in tag.upper())
        return found[-1] if found else None

    @property
    def images(self) -> tuple[WimImage, ...]:
        return self.wim.images if self.wim is not None else ()

    def holds(self) -> str:
        """What the medium holds, for messages: `Windows 10.0.17763 amd64 (4 images:
        Windows Server 2019 SERVERSTANDARDCORE, ...)`."""
        if self.setup == "text-mode":
            return f"a Windows Server 2003 {self.arch} text-mode setup CD ({self.setup_dir})"
        releases = sorted(
            {f"Windows {i.version} {i.arch or 'of no stated architecture'}" for i in self.images}
        )
        names = ", ".join(i.name or f"image {i.index}" for i in self.images[:6])
        more = f" and {len(self.images) - 6} more" if len(self.images) > 6 else ""
        return f"{' and '.join(releases)} ({len(self.images)} images: {names}{more})"

    def as_json(self) -> dict[str, Any]:
        """What `pvinstall inspect --json` prints (with the profiles it is for)."""
        document: dict[str, Any] = {
            "path": str(self.path),
            "label": self.label,
            "setup": self.setup,
            "udf": self.udf,
            "profiles": [p.name for p in profiles_for(self)],
        }
        if self.setup == "windows-setup":
            wim = self.wim
            versions = sorted({i.version for i in self.images})
            document.update(
                version=versions[0] if len(versions) == 1 else versions,
                arch=sorted({i.arch for i in self.images}),
                install_image=self.install_image,
                format=None
                if wim is None
                else {
                    "version": f"{wim.version:#x}",
                    "kind": wim.kind,
                    "compression": wim.compression,
                },
                images=[image_json(i) for i in self.images],
            )
        else:
            document.update(
                # The NT version of the release whose CD this is (a 2003 CD's setup
                # folder and tag files say which, not a version number).
                version=sorted(
                    {f"{p.nt_version[0]}.{p.nt_version[1]}" for p in profiles_for(self)}
                ),
                arch=self.arch,
                setup_dir=self.setup_dir,
                tags=list(self.tags),
                service_pack=self.service_pack,
            )
        document["boot"] = [b.as_json() for b in self.boot]
        document["efisys_noprompt"] = self.efisys_noprompt
        return document


def image_json(image: WimImage) -> dict[str, Any]:
    return {
        "index": image.index,
        "name": image.name,
        "display_name": image.display_name,
        "edition_id": image.edition_id,
        "installation_type": image.installation_type,
        "evaluation": image.evaluation,
        "version": image.version,
        "arch": image.arch,
        "languages": list(image.languages),
        "default_language": image.language,
    }


# -- which profiles a medium is for ------------------------------------------------------


def image_fits(profile: Profile, image: WimImage) -> bool:
    """Whether an install.wim image is of the profile's release (version, build, arch)."""
    if (image.major, image.minor) != profile.nt_version or image.arch != profile.arch:
        return False
    return profile.build is None or image.build == profile.build


def profiles_for(
    media: InstallMedia, profiles: Iterable[Profile] = PROFILES.values()
) -> tuple[Profile, ...]:
    """The profiles whose release the medium installs."""
    if media.setup == "text-mode":
        return tuple(p for p in profiles if p.remasters_install_cd and p.arch == media.arch)
    return tuple(
        p
        for p in profiles
        if p.installs_image
        and not p.remasters_install_cd
        and any(image_fits(p, i) for i in media.images)
    )


def check_media(profile: Profile, media: InstallMedia) -> list[Problem]:
    """Why the medium is not one `profile` installs from (none when it is)."""
    if profile in profiles_for(media):
        return []
    others = [p.name for p in profiles_for(media)]
    instead = f"Use the {' or '.join(others)} profile, or " if others else "Give "
    return [
        Problem(
            WINDOWS_ISO_KEY,
            f"{media.path} holds {media.holds()}; {profile.name} needs "
            f"{profile.title} (Windows {profile.version_text} {profile.arch}).",
            f"{instead}the {profile.title} DVD.",
        )
    ]


# -- which image a build installs ----------------------------------------------------------


@dataclass(frozen=True)
class ImageChoice:
    """The image of the DVD a build installs, and the profile edition it is (None for an
    EDITIONID no profile edition has)."""

    image: WimImage
    edition: Edition | None


def _listing(images: Iterable[WimImage]) -> str:
    return "; ".join(
        f"{i.index}: {i.name} ({i.edition_id or 'no EDITIONID'}, "
        f"{i.installation_type or 'no INSTALLATIONTYPE'})"
        for i in images
    )


def edition_of(profile: Profile, image: WimImage) -> Edition | None:
    """The profile's edition an image is, by its EDITIONID without `Eval`."""
    return next((e for e in profile.editions.values() if e.edition_id == image.edition), None)


def choose_image(
    profile: Profile,
    media: InstallMedia,
    *,
    edition: str,
    server_core: bool,
    image_name: str | None,
    image_index: int | None,
) -> ImageChoice | Problem:
    """The image to install: the one at `image_index`, else the one named `image_name`,
    else the one of `edition` that is (or is not) Server Core, matched by EDITIONID
    (without `Eval`) and INSTALLATIONTYPE, never by FLAGS. A problem, listing the images
    the DVD has, when there is none."""
    images = media.images
    where = f"{media.path}:{media.install_image}"
    if image_index is not None:
        if not 1 <= image_index <= len(images):
            return Problem(
                "image_index",
                f"{image_index} is not an image of {where}, which has images 1 to "
                f"{len(images)} ({_listing(images)}).",
            )
        image = images[image_index - 1]
    elif image_name is not None:
        found = [i for i in images if i.name.casefold() == image_name.casefold()]
        if not found:
            return Problem(
                "image_name",
                f"{image_name!r} is not an image of {where}; it has {_listing(images)}.",
                "Set image_name to one of those names, or leave it out and choose by "
                "edition and server_core.",
            )
        image = found[0]
    else:
        wanted = profile.editions[edition]
        kind = profile.installation_types[server_core]
        found = [
            i
            for i in images
            if i.edition == wanted.edition_id
            and i.installation_type == kind
            and image_fits(profile, i)
        ]
        if not found:
            return Problem(
                "edition",
                f"{where} has no {edition} {'Server Core' if server_core else 'desktop'} "
                f"image (EDITIONID {wanted.edition_id}, INSTALLATIONTYPE {kind!r}); it has "
                f"{_listing(images)}.",
                "Choose another edition or server_core, or name the image with image_name "
                "or image_index.",
            )
        image = found[0]
    if not image_fits(profile, image):
        return Problem(
            "image_index" if image_index is not None else "image_name",
            f"image {image.index} of {where} ({image.name}) is Windows {image.version} "
            f"{image.arch}, not {profile.title} ({profile.version_text} {profile.arch}).",
        )
    return ImageChoice(image, edition_of(profile, image))


def default_locale(image: WimImage, locales: Mapping[str, int]) -> str | None:
    """The image's language as the profile's locale table spells it, if it has it."""
    wanted = image.language.casefold()
    return next((name for name in locales if name.casefold() == wanted), None)
