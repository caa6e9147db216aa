"""Reading driver catalogs: what openssl signs is what pvinstall reads (digests, signers,
signing times, nested signatures), and every malformed or hostile catalog is an
InputError naming the file, never a traceback. The catalogs are made here by openssl
(tests/fixtures/signing.py); openssl's own view of them is the oracle."""

from __future__ import annotations

import datetime
import hashlib
import random
import re
import subprocess
from pathlib import Path

import pytest
from asn1crypto import cms, tsp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from builder.errors import InputError
from builder.virtio.signatures import (
    MAX_CATALOG_BYTES,
    MAX_NESTING,
    MAX_SIGNATURES,
    CatalogError,
    Signer,
    read_catalog,
)
from tests.fixtures import signing

CONTENT = signing.ctl_content([("viostor.inf", b"[Version]\r\n"), ("viostor.sys", b"MZ" * 500)])


@pytest.fixture(scope="module")
def made() -> dict[str, bytes]:
    """The catalogs of the tests, each made once by openssl."""
    sha1 = signing.sign(CONTENT, "redhat-sha1", "sha1")
    sha256 = signing.sign(CONTENT, "redhat-sha256", "sha256")
    timed = signing.sign(CONTENT, "redhat-sha256", "sha256", attributes=True)
    return {
        "sha1": sha1,
        "sha256": sha256,
        "timed": timed,
        "two-signers": signing.combine(sha1, sha256),
        "nested": signing.nest(sha1, sha256),
        "self-signed": signing.sign(CONTENT, "virtio-win-dev", "sha256"),
        "counter-signed": signing.counter_sign(sha1, timed),
        "deep": signing.nested_deeply(CONTENT, MAX_NESTING + 2),
        "data": signing.sign(CONTENT, "redhat-sha1", "sha1", content_type="1.2.840.113549.1.7.1"),
    }


def openssl(tmp_path: Path, data: bytes, *args: str) -> str:
    path = tmp_path / "x.cat"
    path.write_bytes(data)
    return subprocess.run(
        ["openssl", *args, "-inform", "DER", "-in", str(path)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def openssl_digests(tmp_path: Path, data: bytes) -> list[str]:
    """The digest algorithm of each SignerInfo, as `openssl cms -cmsout -print` shows it."""
    text = openssl(tmp_path, data, "cms", "-cmsout", "-print")
    return re.findall(r"digestAlgorithm: \n\s+algorithm: (\w+)", text)


def openssl_thumbprints(tmp_path: Path, data: bytes) -> set[str]:
    """The SHA-1 thumbprints of the certificates `openssl pkcs7 -print_certs` finds."""
    pems = openssl(tmp_path, data, "pkcs7", "-print_certs")
    found = set()
    for block in re.findall(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", pems, re.S):
        der = subprocess.run(
            ["openssl", "x509", "-outform", "DER"],
            input=block.encode(),
            capture_output=True,
            check=True,
        ).stdout
        found.add(hashlib.sha1(der).hexdigest().upper())
    return found


# -- what openssl signed ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "digests", "sha2_only"),
    [
        ("sha1", ("sha1",), False),
        ("sha256", ("sha256",), True),
        # Two signatures, SHA-1 and SHA-256: not SHA-2-only, both read.
        ("two-signers", ("sha1", "sha256"), False),
        ("nested", ("sha1", "sha256"), False),
        ("self-signed", ("sha256",), True),
    ],
)
def test_the_digest_of_every_signature_is_read(
    made: dict[str, bytes], tmp_path: Path, name: str, digests: tuple[str, ...], sha2_only: bool
) -> None:
    catalog = read_catalog(made[name], f"{name}.cat")
    assert catalog.digests == digests
    assert catalog.sha2_only is sha2_only
    if name != "nested":  # openssl prints only the outer signatures
        assert openssl_digests(tmp_path, made[name]) == [s.digest for s in catalog.signatures]


def test_a_nested_signature_is_read_after_its_outer_one(made: dict[str, bytes]) -> None:
    catalog = read_catalog(made["nested"], "nested.cat")
    outer, inner = catalog.signatures
    assert (outer.depth, inner.depth) == (0, 1)
    assert outer.signer.sha1 == signing.thumbprint("redhat-sha1")
    assert inner.signer.sha1 == signing.thumbprint("redhat-sha256")
    assert catalog.primary is outer
    assert [s.sha1 for s in catalog.signers] == [
        signing.thumbprint("redhat-sha1"),
        signing.thumbprint("redhat-sha256"),
    ]


@pytest.mark.parametrize("name", ["sha1", "sha256", "two-signers", "self-signed"])
def test_signers_are_the_certificates_openssl_finds(
    made: dict[str, bytes], tmp_path: Path, name: str
) -> None:
    catalog = read_catalog(made[name], f"{name}.cat")
    # The catalog also carries the CA's certificate; the signers are among them.
    assert {s.sha1 for s in catalog.signers} <= openssl_thumbprints(tmp_path, made[name])
    for signer in catalog.signers:
        assert signer.der and hashlib.sha1(signer.der).hexdigest().upper() == signer.sha1


def test_a_ca_issued_signer_and_a_self_signed_one(made: dict[str, bytes], tmp_path: Path) -> None:
    issued = read_catalog(made["sha1"], "a.cat").primary.signer
    assert issued.self_signed is False
    assert issued.common_name == "Red Hat, Inc."
    assert issued.organization == "Red Hat, Inc."
    assert issued.subject == "C=US, ST=North Carolina, L=Raleigh, O=Red Hat, Inc., CN=Red Hat, Inc."
    assert issued.issuer == "C=US, O=pvinstall tests, CN=pvinstall test code signing CA"
    serial = subprocess.run(
        [
            "openssl",
            "x509",
            "-noout",
            "-serial",
            "-in",
            str(signing.certificate_pem("redhat-sha1")),
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert serial.strip() == f"serial={issued.serial}"
    test_signed = read_catalog(made["self-signed"], "b.cat").primary.signer
    assert test_signed.self_signed is True
    assert test_signed.subject == "O=virtio-win, OU=Dev, CN=Red Hat Inc."
    assert test_signed.issuer == test_signed.subject


def test_the_signing_time_when_there_is_one(made: dict[str, bytes], tmp_path: Path) -> None:
    assert read_catalog(made["sha1"], "a.cat").primary.signing_time is None
    timed = read_catalog(made["timed"], "t.cat").primary.signing_time
    assert timed is not None and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", timed)
    # openssl prints the same moment.
    text = openssl(tmp_path, made["timed"], "cms", "-cmsout", "-print")
    shown = re.search(r"UTCTIME:(\w+ +\d+ [\d:]+ \d{4}) GMT", text)
    assert shown is not None
    moment = datetime.datetime.strptime(" ".join(shown.group(1).split()), "%b %d %H:%M:%S %Y")
    assert timed == moment.isoformat() + "Z"
    # A counter-signature's time is the signature's time.
    assert read_catalog(made["counter-signed"], "c.cat").primary.signing_time == timed


def test_an_rfc3161_timestamp_gives_the_signing_time(made: dict[str, bytes]) -> None:
    when = datetime.datetime(2019, 10, 24, 12, 30, tzinfo=datetime.UTC)
    info = tsp.TSTInfo(
        {
            "version": "v1",
            "policy": "1.2.3.4",
            "message_imprint": {
                "hash_algorithm": {"algorithm": "sha256"},
                "hashed_message": hashlib.sha256(b"signature").digest(),
            },
            "serial_number": 7,
            "gen_time": when,
        }
    )
    token = signing.sign(info.dump(), "whcp", "sha256", content_type="1.2.840.113549.1.9.16.1.4")
    attribute = cms.CMSAttribute(
        {"type": "microsoft_time_stamp_token", "values": [cms.ContentInfo.load(token)]}
    )
    stamped = signing._add_unsigned(made["sha1"], attribute)
    assert read_catalog(stamped, "ts.cat").primary.signing_time == "2019-10-24T12:30:00Z"


def test_the_json_names_the_primary_signer_and_every_signature(made: dict[str, bytes]) -> None:
    document = read_catalog(made["nested"], "n.cat").as_json()
    assert document["digest"] == "sha1"
    assert document["signer"]["sha1"] == signing.thumbprint("redhat-sha1")
    assert [(s["digest"], s["nested"]) for s in document["signatures"]] == [
        ("sha1", False),
        ("sha256", True),
    ]
    assert "der" not in document["signer"]


# -- malformed and hostile catalogs --------------------------------------------------------


def _without_certificates(data: bytes) -> bytes:
    info = cms.ContentInfo.load(data)
    info["content"]["certificates"] = cms.CertificateSet([])
    return bytes(info.dump(force=True))


def _many_signers(data: bytes, count: int) -> bytes:
    info = cms.ContentInfo.load(data)
    signer = info["content"]["signer_infos"][0]
    info["content"]["signer_infos"] = cms.SignerInfos([signer] * count)
    return bytes(info.dump(force=True))


BAD: dict[str, tuple[object, str]] = {
    # name: (how to make it from the good catalogs, what the reason says)
    "empty": (lambda m: b"", "empty"),
    "truncated-header": (lambda m: m["sha1"][:3], "truncated"),
    "truncated-half": (lambda m: m["sha1"][: len(m["sha1"]) // 2], "truncated"),
    "truncated-by-one": (lambda m: m["sha1"][:-1], "truncated"),
    "trailing-garbage": (lambda m: m["sha1"] + b"\x00\x00", "DER"),
    "random-bytes": (lambda m: random.Random(1).randbytes(2048), "DER"),
    "inf-text": (lambda m: b'[Version]\r\nSignature="$Windows NT$"\r\n', "DER"),
    "a-certificate": (lambda m: signing.certificate_der("ca"), "DER"),
    "wrong-content-type": (lambda m: m["data"], "not a certificate trust list"),
    "unsigned": (lambda m: _many_signers(m["sha1"], 0), "no signature"),
    "no-signer-certificate": (
        lambda m: _without_certificates(m["sha1"]),
        "does not carry the certificate of its signer",
    ),
    "huge-nesting": (lambda m: m["deep"], f"more than {MAX_NESTING} levels"),
    "too-many-signatures": (
        lambda m: _many_signers(m["sha1"], MAX_SIGNATURES + 1),
        f"more than {MAX_SIGNATURES} signatures",
    ),
    "too-large": (lambda m: b"\x30" * (MAX_CATALOG_BYTES + 1), "larger than"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_a_malformed_catalog_is_an_input_error_naming_the_file(
    made: dict[str, bytes], name: str
) -> None:
    make, reason = BAD[name]
    data = make(made)  # type: ignore[operator]
    path = f"viostor/2k8/amd64/{name}.cat"
    with pytest.raises(CatalogError) as caught:
        read_catalog(data, path)
    error = caught.value
    assert isinstance(error, InputError)
    assert error.problems[0].key == path
    assert path in error.message
    assert reason in error.reason
    assert len(error.message) < 400  # a sentence, not a dump of the bytes


def test_enveloped_data_is_not_a_catalog(tmp_path: Path) -> None:
    source = tmp_path / "m.bin"
    source.write_bytes(CONTENT)
    enveloped = subprocess.run(
        [
            *("openssl", "cms", "-encrypt", "-binary", "-outform", "DER", "-in", str(source)),
            str(signing.certificate_pem("redhat-sha256")),
        ],
        check=True,
        capture_output=True,
    ).stdout
    with pytest.raises(CatalogError, match="enveloped_data, not SignedData"):
        read_catalog(enveloped, "e.cat")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_damaged_catalogs_never_raise_anything_else(
    made: dict[str, bytes], data: st.DataObject
) -> None:
    good = bytearray(made[data.draw(st.sampled_from(["sha1", "nested", "two-signers"]))])
    for _ in range(data.draw(st.integers(1, 8))):
        where = data.draw(st.integers(0, len(good) - 1))
        good[where] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(1, len(good)))
    try:
        read_catalog(bytes(good[:cut]), "fuzz.cat")
    except CatalogError as error:
        assert "fuzz.cat" in error.message


@pytest.mark.parametrize(
    ("common_name", "organization", "subject", "shown"),
    [
        (
            "Red Hat, Inc.",
            "Red Hat, Inc.",
            "C=US, O=Red Hat, Inc., CN=Red Hat, Inc.",
            "Red Hat, Inc.",
        ),
        (None, "virtio-win", "O=virtio-win, OU=Dev", "virtio-win"),
        (None, None, "OU=Dev", "OU=Dev"),
        (None, None, "", "AB" * 20),
    ],
)
def test_a_signer_is_shown_by_its_best_name(
    common_name: str | None, organization: str | None, subject: str, shown: str
) -> None:
    signer = Signer(subject, common_name, organization, "CN=x", "1", "AB" * 20, False, b"")
    assert signer.display_name == shown
