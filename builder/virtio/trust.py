"""What the selected packages' catalogs are signed with, and what that means for the
profile (pure): the last step of selecting drivers.

The edge reads the catalog of every selected package (`sources.read_catalogs`); this
module reads their signatures (`signatures.read_catalog`) into the `DriverSet` and
applies the profile's `SignaturePolicy`. A required or boot-critical package whose
catalog cannot be read, or that Windows could not validate at all, is an InputError;
an optional one is left out with a warning, so that it never blocks a build. Which
certificates the post-install script must trust follows from the result
(`trusted_signers`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from builder.errors import InputError, Problem
from builder.virtio.selection import DriverSet, Rejection, SelectedDriver
from builder.virtio.signatures import CatalogError, Signer, read_catalog
from builder.windows.profiles import Profile, SignaturePolicy

# The releases whose legacy (2k3/2k8/2k8R2) builds are SHA-1 signed (docs/virtio-win.md
# §2); 0.1.185, 0.1.187 and 0.1.190 are not among them.
SHA1_RELEASES = "virtio-win 0.1.217 or later, 0.1.196 to 0.1.215, 0.1.189 or 0.1.173"

# The policies under which a package must be signed at all: pnputil asks before it
# installs an unsigned package, and x64 refuses an unsigned boot-start driver.
_NEEDS_SIGNATURE = frozenset(
    {SignaturePolicy.SHA1_FOR_BOOT, SignaturePolicy.WARN_SHA2, SignaturePolicy.SHA2}
)


def apply_signatures(
    drivers: DriverSet,
    catalogs: Mapping[str, bytes],
    *,
    sha2_media: bool = False,
    strict: bool = True,
) -> DriverSet:
    """`drivers` with each package's signatures read from `catalogs` (the bytes of each
    selected package's catalog, by path in the source), after the profile's policy.

    Raises InputError for every required or boot-critical package whose catalog cannot
    be read, that has no catalog where the profile needs one, or that is signed with
    SHA-2 only for a profile that needs SHA-1 for boot-critical drivers (unless
    `sha2_media`). With `strict` False (`pvinstall drivers`, which only reports) those
    are warnings instead.
    """
    profile = drivers.profile
    kept: list[SelectedDriver] = []
    rejected = list(drivers.rejected)
    warnings = list(drivers.warnings)
    problems: list[Problem] = []
    for driver in drivers.selected:
        essential = driver.required or driver.boot_critical
        catalog = driver.catalog
        if catalog is None:
            if profile.signature_policy not in _NEEDS_SIGNATURE:
                kept.append(driver)
                continue
            text = (
                f"{driver.inf_path} names no catalog (CatalogFile): {profile.title} treats "
                "the package as unsigned and asks before it installs it"
            )
            if essential:
                problems.append(
                    Problem(driver.inf_path, text + ".", "Use a signed virtio-win release.")
                )
            else:
                warnings.append(f"{driver.name} is left out: {text}.")
                rejected.append(Rejection(driver.inf_path, "unsigned: names no catalog"))
            continue
        try:
            read = read_catalog(catalogs[catalog.path], catalog.path)
        except CatalogError as error:
            if essential:
                problems.extend(error.problems)
            else:
                warnings.append(
                    f"{driver.name} is left out: its catalog {catalog.path} cannot be read "
                    f"({error.reason})."
                )
                rejected.append(
                    Rejection(driver.inf_path, f"catalog cannot be read: {error.reason}")
                )
            continue
        signed = dataclasses.replace(driver, signatures=read)
        found = _sha2_findings(profile, signed, sha2_media=sha2_media)
        if found is not None:
            message, refused = found
            if refused:
                problems.append(Problem(catalog.path, message, _sha2_hint(profile)))
            else:
                warnings.append(message)
        kept.append(signed)
    if problems and strict:
        raise InputError.collect(problems)
    warnings += [str(p) for p in problems]  # key, message and hint
    return dataclasses.replace(
        drivers,
        selected=tuple(kept),
        rejected=tuple(sorted(rejected, key=lambda r: r.inf)),
        warnings=tuple(warnings),
    )


def _sha2_findings(
    profile: Profile, driver: SelectedDriver, *, sha2_media: bool
) -> tuple[str, bool] | None:
    """What to say about a package signed with SHA-2 only: (message, refused), or None."""
    signatures = driver.signatures
    if signatures is None or not signatures.sha2_only:
        return None
    policy = profile.signature_policy
    if policy in (SignaturePolicy.IGNORE, SignaturePolicy.SHA2):
        return None
    digests = "/".join(d.upper().replace("SHA", "SHA-") for d in signatures.digests)
    catalog = driver.catalog.path if driver.catalog else driver.inf_path
    updates = _updates(profile)
    what = f"{driver.name} ({catalog}) is signed with {digests} only"
    if policy is SignaturePolicy.SHA1_FOR_BOOT and driver.boot_critical:
        if sha2_media:
            return (
                f"{what}: a boot-critical driver that {profile.title} setup validates only "
                f"with {updates}; sha2_media = true says the install media have them.",
                False,
            )
        return (
            f"{what}: {profile.title} setup cannot validate a boot-critical driver signed "
            f"so without {updates}, and stops without a disk to install on.",
            True,
        )
    if sha2_media:
        return None
    return (
        f"{what}: {profile.title} validates it only with {updates}; without them "
        "installing it at the first logon fails or asks.",
        False,
    )


def _updates(profile: Profile) -> str:
    updates = profile.sha2_updates
    if not updates:
        return "the SHA-2 code signing update"
    if len(updates) == 1:
        return updates[0]
    prerequisites = ", ".join(updates[1:])
    return f"{updates[0]} (SHA-2 code signing support) with its prerequisite {prerequisites}"


def _sha2_hint(profile: Profile) -> str:
    return (
        f"Use a release whose legacy drivers are SHA-1 signed ({SHA1_RELEASES}), or, when "
        f"your install media have {_updates(profile)} slipstreamed, set sha2_media = true."
    )


def trusted_signers(drivers: DriverSet) -> tuple[Signer, ...]:
    """The distinct signer certificates of the selected packages, in the order of the
    packages: what the post-install script puts into TrustedPublisher."""
    found: dict[str, Signer] = {}
    for driver in drivers.selected:
        if driver.signatures is not None:
            for signer in driver.signatures.signers:
                found.setdefault(signer.sha1, signer)
    return tuple(found.values())
