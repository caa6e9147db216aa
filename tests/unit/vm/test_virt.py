"""The libvirt edge (builder/vm/virt.py) without a daemon: URIs, capabilities, screenshots
as PNG, formatting. The in-process test driver has its own module (test_virt_testdriver)."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest

from builder.errors import BuildError, InputError
from builder.vm import virt

CAPABILITIES = """<capabilities>
  <host><cpu><arch>x86_64</arch></cpu></host>
  <guest>
    <os_type>hvm</os_type>
    <arch name='i686'><domain type='qemu'/><domain type='kvm'/></arch>
  </guest>
  <guest>
    <os_type>hvm</os_type>
    <arch name='x86_64'><domain type='qemu'/></arch>
  </guest>
  <guest>
    <os_type>exe</os_type>
    <arch name='x86_64'><domain type='lxc'/></arch>
  </guest>
</capabilities>"""


@pytest.mark.parametrize(
    ("arches", "expected"),
    [
        (("x86_64",), {"qemu"}),
        (("i686",), {"qemu", "kvm"}),
        (("x86_64", "i686"), {"qemu", "kvm"}),
        (("aarch64",), set()),
    ],
)
def test_domain_types_offered(arches: tuple[str, ...], expected: set[str]) -> None:
    assert virt.domain_types_offered(CAPABILITIES, arches) == expected


@pytest.mark.parametrize(
    ("uri", "error", "kind"),
    [
        ("::::", "is not a libvirt URI", InputError),
        ("qemu", "is not a libvirt URI", InputError),
        ("", "is not a libvirt URI", InputError),
        ("qemu:/system", "is not a libvirt URI", InputError),
        ("bogus://", "no libvirt driver handles bogus://", InputError),
        ("qemu:///nonsense", "is not a valid libvirt URI", InputError),
        ("qemu+ssh://host:port/system", "is not a valid libvirt URI: Port could not", InputError),
        (
            "qemu+tcp://127.0.0.1:1/system",
            "cannot reach libvirt at qemu+tcp://127.0.0.1:1/system",
            BuildError,
        ),
        ("qemu:///system?socket=/nonexistent/libvirt-sock", "cannot reach libvirt", BuildError),
    ],
)
def test_connect_errors_are_sentences(uri: str, error: str, kind: type[Exception]) -> None:
    with pytest.raises(kind) as raised:
        virt.connect(uri)
    assert error in str(raised.value)
    if kind is InputError:
        assert isinstance(raised.value, InputError)
        assert raised.value.problems[0].key == "--connect"


def _png_pixels(png: bytes) -> tuple[int, int, bytes]:
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    pos, width, height, idat = 8, 0, 0, b""
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        kind = png[pos + 4 : pos + 8]
        body = png[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", png[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(kind + body)
        if kind == b"IHDR":
            width, height = struct.unpack(">II", body[:8])
            assert body[8:] == bytes([8, 2, 0, 0, 0])
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    return width, height, zlib.decompress(idat)


def test_ppm_screenshots_become_png() -> None:
    pixels = bytes(range(2 * 3 * 3))
    ppm = b"P6\n# from QEMU\n3 2\n255\n" + pixels
    width, height, raw = _png_pixels(virt.ppm_to_png(ppm))
    assert (width, height) == (3, 2)
    assert raw == b"\x00" + pixels[:9] + b"\x00" + pixels[9:]


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"\x89PNG....", "not a binary PPM"),
        (b"P6\n3 2\n65535\n" + bytes(36), "maxval 65535"),
        (b"P6\n3 2\n255\n" + bytes(5), "truncated"),
    ],
)
def test_bad_ppm_is_refused(data: bytes, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        virt.ppm_to_png(data)


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1536, "1.5 KiB"),
        (200 * 1024**2, "200.0 MiB"),
        (5 * 1024**4, "5120.0 GiB"),
    ],
)
def test_format_size(size: int, text: str) -> None:
    assert virt.format_size(size) == text


class FakeLibvirtError:
    """Stands in for libvirt.libvirtError, whose constructor reads libvirt's last error."""

    def __init__(self, code: int, message: str, errno: int = 0) -> None:
        self._code, self._message, self._errno = code, message, errno

    def get_error_code(self) -> int:
        return self._code

    def get_error_message(self) -> str:
        return self._message

    def get_int1(self) -> int:
        return self._errno


@pytest.mark.parametrize(
    ("code", "errno", "message", "kind", "fragment"),
    [
        (
            38,
            13,
            "Failed to connect socket to '/var/run/libvirt/libvirt-sock': Permission denied",
            BuildError,
            "permission denied connecting to qemu:///system",
        ),
        (45, 0, "authentication failed: access denied by policy", BuildError, "permission denied"),
        (
            94,
            0,
            "authentication unavailable: no polkit agent available",
            BuildError,
            "permission denied",
        ),
        (
            38,
            2,
            "Failed to connect socket to '/var/run/libvirt/libvirt-sock': No such file or "
            "directory",
            BuildError,
            "cannot reach libvirt at qemu:///system: Failed to connect",
        ),
        (
            5,
            0,
            "no connection driver available for qemu:///system",
            InputError,
            "no libvirt driver handles qemu:///system",
        ),
        (
            1,
            0,
            "internal error: something libvirt did not expect",
            BuildError,
            "cannot reach libvirt at qemu:///system",
        ),
    ],
)
def test_connect_error_sentences(
    code: int, errno: int, message: str, kind: type[Exception], fragment: str
) -> None:
    error = virt._connect_error("qemu:///system", FakeLibvirtError(code, message, errno))
    assert isinstance(error, kind)
    assert fragment in str(error)
    if "permission" in fragment:
        assert "libvirt group" in str(error)


# -- what the machine needs of the host (domain capabilities, swtpm) ------------------------

_CAPS = """<domainCapabilities>
  <os supported='yes'>
    <enum name='firmware'>{firmware}</enum>
    <loader supported='yes'><enum name='secure'>{secure}</enum></loader>
  </os>
  <devices>
    <tpm supported='{tpm}'>
      <enum name='model'><value>tpm-tis</value>{crb}</enum>
      <enum name='backendModel'><value>passthrough</value>{emulator}</enum>
    </tpm>
  </devices>
</domainCapabilities>"""
_FULL = {
    "firmware": "<value>efi</value>",
    "secure": "<value>yes</value><value>no</value>",
    "tpm": "yes",
    "crb": "<value>tpm-crb</value>",
    "emulator": "<value>emulator</value>",
}


@pytest.mark.parametrize(
    ("changes", "wanted", "problems"),
    [
        ({}, {}, []),
        ({"firmware": ""}, {}, ["no UEFI firmware for this machine: install ovmf"]),
        ({"secure": "<value>no</value>"}, {}, ["no Secure Boot build", "secure_boot = false"]),
        ({"secure": "<value>no</value>"}, {"secure_boot": False}, []),
        ({"firmware": ""}, {"efi": False, "secure_boot": False}, []),
        ({"emulator": ""}, {}, ["cannot emulate a TPM 2.0", "install swtpm and swtpm-tools"]),
        ({"tpm": "no"}, {}, ["cannot emulate a TPM 2.0"]),
        ({"crb": ""}, {}, ["cannot emulate a TPM 2.0"]),
        ({"emulator": ""}, {"tpm": False}, []),
    ],
)
def test_what_the_domain_capabilities_say_a_host_lacks(
    changes: dict[str, str], wanted: dict[str, bool], problems: list[str]
) -> None:
    caps = _CAPS.format(**{**_FULL, **changes})
    options = {"efi": True, "secure_boot": True, "tpm": True, **wanted}
    found = virt.machine_problems(caps, where="qemu+ssh://host/system", **options)
    assert len(found) == (1 if problems else 0), found
    for fragment in problems:
        assert fragment in found[0]
    assert all("qemu+ssh://host/system" in p for p in found)


def test_missing_swtpm_names_each_program_and_its_package(tmp_path: Path) -> None:
    assert virt.missing_swtpm(str(tmp_path)) == [
        "swtpm (package swtpm)",
        "swtpm_setup (package swtpm-tools)",
    ]
    for program in ("swtpm", "swtpm_setup"):
        (tmp_path / program).write_text("#!/bin/sh\n")
        (tmp_path / program).chmod(0o755)
    assert virt.missing_swtpm(str(tmp_path)) == []
