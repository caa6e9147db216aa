"""What a Windows install medium holds and how it meets the profiles
(builder/windows/install_media.py): which profiles it is for, the check against a
profile, and the choice of the image.

The media are real WIMs made by wimlib-imagex (tests/fixtures/windows_dvd.py), read by
the WIM reader; the DVD around them is tests/integration/test_windows_media.py's.
"""

from __future__ import annotations

import dataclasses

import pytest

from builder.errors import Problem
from builder.windows.install_media import (
    ImageChoice,
    InstallMedia,
    check_media,
    choose_image,
    default_locale,
    profiles_for,
)
from builder.windows.locales import LCIDS
from builder.windows.profiles import PROFILES
from tests.fixtures.windows_dvd import WimSpec, windows_wim
from tests.unit.windows.common import ISO, media_of

RELEASE_OF = {
    "win2012r2-x64": "2012R2",
    "win2016-x64": "2016",
    "win2019-x64": "2019",
    "win2022-x64": "2022",
    "win2025-x64": "2025",
}


def cd_2003(arch: str) -> InstallMedia:
    return InstallMedia(
        path=ISO,
        label="ARMS_X86ENFRE",
        setup="text-mode",
        udf=False,
        install_image=None,
        wim=None,
        setup_dir="I386" if arch == "x86" else "AMD64",
        arch=arch,
        tags=("WIN51", "WIN51IS"),
        boot=(),
        efisys_noprompt=False,
    )


@pytest.mark.parametrize(("profile", "release"), list(RELEASE_OF.items()))
def test_a_dvd_is_for_the_profile_of_its_build(profile: str, release: str) -> None:
    media = media_of(release)
    assert [p.name for p in profiles_for(media)] == [profile]
    assert check_media(PROFILES[profile], media) == []


def test_a_2003_cd_is_for_the_2003_profile_of_its_architecture() -> None:
    assert [p.name for p in profiles_for(cd_2003("x86"))] == ["win2003-x86"]
    assert [p.name for p in profiles_for(cd_2003("amd64"))] == ["win2003-x64"]
    assert cd_2003("amd64").holds() == "a Windows Server 2003 amd64 text-mode setup CD (AMD64)"


def test_the_wrong_dvd_names_what_it_holds_and_the_profile_it_is_for() -> None:
    (problem,) = check_media(PROFILES["win2022-x64"], media_of("2019"))
    assert problem.key == "--windows-iso"
    assert str(ISO) in problem.message
    assert "Windows 10.0.17763 amd64 (4 images: Windows Server 2019 SERVERSTANDARDCORE" in (
        problem.message
    )
    assert "win2022-x64 needs Windows Server 2022 (x64) (Windows 10.0.20348 amd64)" in (
        problem.message
    )
    assert problem.hint is not None and "win2019-x64" in problem.hint
    (cd,) = check_media(PROFILES["win2022-x64"], cd_2003("x86"))
    assert "text-mode setup CD" in cd.message and "win2003-x86" in (cd.hint or "")


@pytest.mark.parametrize("profile", list(RELEASE_OF))
@pytest.mark.parametrize("edition", ["standard", "datacenter"])
@pytest.mark.parametrize("core", [False, True])
def test_the_image_of_each_edition_is_the_dvd_s_and_the_table_s(
    profile: str, edition: str, core: bool
) -> None:
    """Matched by EDITIONID and INSTALLATIONTYPE; the name the profile's table predicts
    for a build without a DVD is the DVD's name."""
    release = RELEASE_OF[profile]
    made = windows_wim(WimSpec(release=release))
    expected = next(
        i for i in made.images if i.edition_id == f"Server{edition.capitalize()}" and i.core == core
    )
    choice = choose_image(
        PROFILES[profile],
        media_of(release),
        edition=edition,
        server_core=core,
        image_name=None,
        image_index=None,
    )
    assert isinstance(choice, ImageChoice)
    assert (choice.image.index, choice.image.name) == (expected.index, expected.name)
    assert choice.edition is not None and choice.edition.name == edition
    assert PROFILES[profile].editions[edition].image_for(core) == expected.name


def test_evaluation_images_match_their_edition_without_eval() -> None:
    choice = choose_image(
        PROFILES["win2019-x64"],
        media_of("2019", evaluation=True),
        edition="datacenter",
        server_core=False,
        image_name=None,
        image_index=None,
    )
    assert isinstance(choice, ImageChoice)
    assert choice.image.edition_id == "ServerDatacenterEval" and choice.image.evaluation
    assert choice.edition is not None and choice.edition.name == "datacenter"


def test_by_name_case_blind_and_by_index() -> None:
    media = media_of("2022")
    profile = PROFILES["win2022-x64"]
    by_name = choose_image(
        profile,
        media,
        edition="standard",
        server_core=False,
        image_name="windows server 2022 serverdatacentercore",
        image_index=None,
    )
    assert isinstance(by_name, ImageChoice) and by_name.image.index == 3
    assert by_name.edition is not None and by_name.edition.name == "datacenter"
    by_index = choose_image(
        profile, media, edition="standard", server_core=False, image_name="x", image_index=4
    )
    assert isinstance(by_index, ImageChoice) and by_index.image.name.endswith("SERVERDATACENTER")


@pytest.mark.parametrize(
    ("kwargs", "key", "fragments"),
    [
        (
            {"image_name": "Windows Server 2022 SERVERWEB", "image_index": None},
            "image_name",
            (
                "'Windows Server 2022 SERVERWEB' is not an image of",
                "4: Windows Server 2022 SERVERDATACENTER (ServerDatacenter, Server)",
            ),
        ),
        (
            {"image_name": None, "image_index": 5},
            "image_index",
            ("5 is not an image of", "which has images 1 to 4"),
        ),
        (
            {"image_name": None, "image_index": 0},
            "image_index",
            ("0 is not an image of",),
        ),
    ],
)
def test_an_image_the_dvd_does_not_have_is_a_problem_listing_its_images(
    kwargs: dict[str, object], key: str, fragments: tuple[str, ...]
) -> None:
    found = choose_image(
        PROFILES["win2022-x64"],
        media_of("2022"),
        edition="standard",
        server_core=False,
        **kwargs,  # type: ignore[arg-type]
    )
    assert isinstance(found, Problem) and found.key == key
    for fragment in fragments:
        assert fragment in found.message


def test_an_edition_the_dvd_does_not_have_is_a_problem() -> None:
    # A DVD whose images are all another edition's: only Datacenter left.
    media = media_of("2022")
    assert media.wim is not None
    only_datacenter = dataclasses.replace(
        media, wim=dataclasses.replace(media.wim, images=media.wim.images[2:])
    )
    found = choose_image(
        PROFILES["win2022-x64"],
        only_datacenter,
        edition="standard",
        server_core=True,
        image_name=None,
        image_index=None,
    )
    assert isinstance(found, Problem) and found.key == "edition"
    assert "has no standard Server Core image (EDITIONID ServerStandard" in found.message


def test_the_image_s_language_is_the_default_locale() -> None:
    german = media_of("2022", languages=("de-DE", "en-US")).images[0]
    assert default_locale(german, LCIDS) == "de-DE"
    unknown = media_of("2022", languages=("xx-XX",)).images[0]
    assert default_locale(unknown, LCIDS) is None


def test_inspect_json_says_what_the_dvd_holds() -> None:
    document = media_of("2025").as_json()
    assert document["profiles"] == ["win2025-x64"]
    assert document["version"] == "10.0.26100" and document["arch"] == ["amd64"]
    assert [i["installation_type"] for i in document["images"]] == [
        "Server Core",
        "Server",
        "Server Core",
        "Server",
    ]
    assert document["format"]["compression"] == "LZX"
    text_mode = cd_2003("x86").as_json()
    assert (text_mode["arch"], text_mode["setup_dir"], text_mode["profiles"]) == (
        "x86",
        "I386",
        ["win2003-x86"],
    )
