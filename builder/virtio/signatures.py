"""What a driver catalog (`.cat`) is signed with (pure; the only asn1crypto importer).

A catalog is a CMS / PKCS#7 `SignedData` (DER) whose content is a Microsoft certificate
trust list (szOID_CTL) of the package's file hashes. Each `SignerInfo` is one signature:
its digest algorithm, the certificate of its signer (among the `certificates` the
catalog carries), a signing time when a signed attribute or a timestamp says one. More
signatures hide in a SignerInfo's unsigned attributes: nested signatures
(szOID_NESTED_SIGNATURE, each a whole SignedData) and timestamps (a PKCS#9
counter-signature or an RFC 3161 token). docs/virtio-win.md §5 says what they mean for
each Windows release.

Catalogs come from the user's driver source, so they are hostile: the size, the nesting
depth and the number of signatures and certificates are bounded, and whatever
asn1crypto cannot make sense of is a `CatalogError` naming the file, never a traceback.
"""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from asn1crypto import cms, tsp, x509

from builder.errors import InputError

# Real virtio-win catalogs are 2 to 40 KB; Windows' own are a few MB at most.
MAX_CATALOG_BYTES = 4 * 1024 * 1024
# Authenticode nests one signature in another (SHA-1 with a SHA-256 inside); deeper
# chains are not made by signtool and only cost time.
MAX_NESTING = 4
MAX_SIGNATURES = 16
MAX_CERTIFICATES = 64

CTL_CONTENT_TYPE = "1.3.6.1.4.1.311.10.1"  # szOID_CTL: the content of every catalog
# The digests Windows validated before the SHA-2 code signing updates (KB4474419).
PRE_SHA2_DIGESTS = frozenset({"md5", "sha1"})

# Short labels of the name attributes a signer certificate has, as openssl prints them.
_NAME_LABELS = {
    "common_name": "CN",
    "organization_name": "O",
    "organizational_unit_name": "OU",
    "locality_name": "L",
    "state_or_province_name": "ST",
    "country_name": "C",
    "email_address": "emailAddress",
    "domain_component": "DC",
    "serial_number": "serialNumber",
}

# What asn1crypto raises on bytes that are not what the schema says (it parses lazily,
# so any access can raise one of them).
_MALFORMED = (
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    AttributeError,
    OverflowError,
    RecursionError,
    UnicodeDecodeError,
)


class CatalogError(InputError):
    """A catalog that cannot be read: `reason` says why, the message names the file."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(
            f"{path} is not a readable signed catalog: {reason}.",
            "Copy the package again from a virtio-win release; a catalog is the "
            "PKCS#7 signature the INF's CatalogFile names.",
            key=path,
        )
        self.path = path
        self.reason = reason


@dataclass(frozen=True)
class Signer:
    """The certificate a signature was made with."""

    subject: str  # "C=US, O=Red Hat, Inc., CN=Red Hat, Inc." (RDN order, as openssl)
    common_name: str | None
    organization: str | None
    issuer: str
    serial: str  # upper-case hex, as openssl x509 -serial prints it
    sha1: str  # the thumbprint: upper-case hex SHA-1 of the DER certificate
    self_signed: bool  # issued by itself (subject == issuer): a test certificate
    der: bytes = field(repr=False, compare=False)

    @property
    def display_name(self) -> str:
        """The name to show: the common name, else the organization, else the subject
        (a certificate need not have either)."""
        return self.common_name or self.organization or self.subject or self.sha1

    def as_json(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "common_name": self.common_name,
            "organization": self.organization,
            "issuer": self.issuer,
            "serial": self.serial,
            "sha1": self.sha1,
            "self_signed": self.self_signed,
        }


@dataclass(frozen=True)
class Signature:
    """One signature of a catalog: its digest algorithm, signer and signing time."""

    digest: str  # "sha1", "sha256" (asn1crypto's names; a dotted OID when unknown)
    signer: Signer
    signing_time: str | None  # ISO 8601 UTC, from a signed attribute or a timestamp
    depth: int  # 0 for a signature of the catalog, 1 for one nested in it, ...

    def as_json(self) -> dict[str, Any]:
        return {
            "digest": self.digest,
            "signer": self.signer.sha1,
            "signing_time": self.signing_time,
            "nested": self.depth > 0,
        }


@dataclass(frozen=True)
class CatalogSignatures:
    """Every signature of one catalog, outer ones first, each followed by its nested ones."""

    signatures: tuple[Signature, ...]

    @property
    def primary(self) -> Signature:
        """The first signature: the one every Windows release reads."""
        return self.signatures[0]

    @property
    def digests(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(s.digest for s in self.signatures))

    @property
    def sha2_only(self) -> bool:
        """Whether no signature uses a digest that Windows validated before SHA-2 support."""
        return not any(s.digest in PRE_SHA2_DIGESTS for s in self.signatures)

    @property
    def signers(self) -> tuple[Signer, ...]:
        """The distinct signer certificates, in the order their signatures come."""
        found: dict[str, Signer] = {}
        for signature in self.signatures:
            found.setdefault(signature.signer.sha1, signature.signer)
        return tuple(found.values())

    def as_json(self) -> dict[str, Any]:
        return {
            "signer": self.primary.signer.as_json(),
            "digest": self.primary.digest,
            "signatures": [s.as_json() for s in self.signatures],
            "signers": [s.as_json() for s in self.signers],
        }


def read_catalog(data: bytes, path: str) -> CatalogSignatures:
    """The signatures of the catalog `data` (the file `path`, for messages).

    Raises:
        CatalogError: `data` is too large, truncated, not DER, not a SignedData, not a
            catalog (its content is not a certificate trust list), unsigned, nests
            signatures deeper than `MAX_NESTING`, has more than `MAX_SIGNATURES`
            signatures, or names a signer whose certificate it does not carry.
    """
    if len(data) > MAX_CATALOG_BYTES:
        raise CatalogError(path, f"it is larger than the {MAX_CATALOG_BYTES} bytes a catalog has")
    if not data:
        raise CatalogError(path, "it is empty")
    try:
        info = cms.ContentInfo.load(data, strict=True)
        signed = _signed_data(info, "the file")
        content_type = signed["encap_content_info"]["content_type"].dotted
        if content_type != CTL_CONTENT_TYPE:
            raise _UnreadableError(
                f"it signs content of type {content_type}, not a certificate trust list "
                f"({CTL_CONTENT_TYPE})"
            )
        found = tuple(_signatures(signed, depth=0, budget=_Budget()))
    except _UnreadableError as exc:
        raise CatalogError(path, exc.reason) from None
    except _MALFORMED as exc:
        raise CatalogError(path, f"it is not DER-encoded PKCS#7 SignedData: {_why(exc)}") from None
    if not found:
        raise CatalogError(path, "it has no signature")
    return CatalogSignatures(found)


# -- reading ---------------------------------------------------------------------------


class _UnreadableError(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class _Budget:
    signatures: int = 0


def _why(exc: BaseException) -> str:
    """asn1crypto's complaint, in a few words (its messages can quote kilobytes)."""
    if isinstance(exc, RecursionError):
        return "its structures nest too deeply"
    text = str(exc).strip().splitlines()
    if not text:
        return type(exc).__name__
    if text[0].startswith("Insufficient data"):
        return "it ends before the data its own headers announce: truncated, or not DER"
    return text[0] if len(text[0]) <= 120 else text[0][:117] + "..."


def _signed_data(info: Any, what: str) -> Any:
    if info["content_type"].native != "signed_data":
        raise _UnreadableError(f"{what} is a PKCS#7 {info['content_type'].native}, not SignedData")
    return info["content"]


def _certificates(signed: Any) -> list[Any]:
    found: list[Any] = []
    certificates = signed["certificates"]
    if certificates.native is None:
        return found
    for choice in certificates:
        if choice.name == "certificate":
            found.append(choice.chosen)
            if len(found) > MAX_CERTIFICATES:
                raise _UnreadableError(f"it carries more than {MAX_CERTIFICATES} certificates")
    return found


def _signatures(
    signed: Any, depth: int, budget: _Budget, outer: Iterable[Any] = ()
) -> Iterator[Signature]:
    """The signatures of one SignedData and, after each, those nested in it."""
    if depth > MAX_NESTING:
        raise _UnreadableError(f"it nests signatures more than {MAX_NESTING} levels deep")
    certificates = [*_certificates(signed), *outer]
    for signer_info in signed["signer_infos"]:
        budget.signatures += 1
        if budget.signatures > MAX_SIGNATURES:
            raise _UnreadableError(f"it has more than {MAX_SIGNATURES} signatures")
        certificate = _signer_certificate(signer_info, certificates)
        yield Signature(
            digest=signer_info["digest_algorithm"]["algorithm"].native,
            signer=_signer(certificate),
            signing_time=_signing_time(signer_info),
            depth=depth,
        )
        for nested in _unsigned(signer_info, "microsoft_nested_signature"):
            yield from _signatures(
                _signed_data(nested, "a nested signature"), depth + 1, budget, certificates
            )


def _signer_certificate(signer_info: Any, certificates: list[Any]) -> Any:
    sid = signer_info["sid"]
    if sid.name == "issuer_and_serial_number":
        issuer = sid.chosen["issuer"]
        serial = sid.chosen["serial_number"].native
        for certificate in certificates:
            if certificate.serial_number == serial and certificate.issuer == issuer:
                return certificate
        wanted = f"serial {serial:X} from {_name(issuer)}"
    else:
        key_id = sid.chosen.native
        for certificate in certificates:
            if certificate.key_identifier == key_id:
                return certificate
        wanted = f"key identifier {key_id.hex()}"
    raise _UnreadableError(f"it does not carry the certificate of its signer ({wanted})")


def _attributes(signer_info: Any, which: str) -> Iterator[Any]:
    attributes = signer_info[which]
    if attributes.native is None:
        return
    yield from attributes


def _unsigned(signer_info: Any, kind: str) -> Iterator[Any]:
    for attribute in _attributes(signer_info, "unsigned_attrs"):
        if attribute["type"].native == kind:
            yield from attribute["values"]


def _signing_time(signer_info: Any) -> str | None:
    """The signed signing-time attribute, else the time of a timestamp."""
    for attribute in _attributes(signer_info, "signed_attrs"):
        if attribute["type"].native == "signing_time":
            return _iso(attribute["values"][0].native)
    for counter in _unsigned(signer_info, "counter_signature"):
        found = _signing_time(counter)
        if found:
            return found
    for kind in ("microsoft_time_stamp_token", "signature_time_stamp_token"):
        for token in _unsigned(signer_info, kind):
            content = _signed_data(token, "a timestamp")["encap_content_info"]
            if content["content_type"].native == "tst_info":
                info = content["content"].parsed
                if isinstance(info, tsp.TSTInfo):
                    return _iso(info["gen_time"].native)
    return None


def _iso(moment: Any) -> str | None:
    if not isinstance(moment, datetime.datetime):
        return None
    if moment.tzinfo is not None:
        moment = moment.astimezone(datetime.UTC)
    return str(moment.replace(tzinfo=None).isoformat(timespec="seconds")) + "Z"


def _name(name: Any) -> str:
    parts = []
    for rdn in name.chosen:
        for attribute in rdn:
            kind = attribute["type"].native
            value = attribute["value"].native
            parts.append(f"{_NAME_LABELS.get(kind, kind)}={value}")
    return ", ".join(parts)


def _attribute(name: Any, kind: str) -> str | None:
    for rdn in reversed(list(name.chosen)):
        for attribute in rdn:
            if attribute["type"].native == kind:
                value = attribute["value"].native
                return str(value)
    return None


def _signer(certificate: x509.Certificate) -> Signer:
    der = certificate.dump()
    subject = certificate.subject
    return Signer(
        subject=_name(subject),
        common_name=_attribute(subject, "common_name"),
        organization=_attribute(subject, "organization_name"),
        issuer=_name(certificate.issuer),
        serial=f"{certificate.serial_number:X}",
        sha1=hashlib.sha1(der, usedforsecurity=False).hexdigest().upper(),
        self_signed=bool(certificate.self_issued),
        der=der,
    )
