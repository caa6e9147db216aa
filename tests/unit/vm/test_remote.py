"""Remote hosts (builder/vm/remote.py): which URIs are remote, the volumes' names, and
libvirt's ssh errors cut down to ssh's sentence (the messages as libvirt 9.0 gives
them over qemu+ssh; tests/integration/test_remote_host.py gets them from a real sshd)."""

from __future__ import annotations

import pytest

from builder.errors import InputError
from builder.vm import domain, remote


@pytest.mark.parametrize(
    ("uri", "setting", "expected"),
    [
        ("qemu:///system", False, False),
        ("qemu:///session", False, False),
        ("qemu+unix:///system", False, False),
        ("test:///default", False, False),
        ("qemu:///system", True, True),
        ("qemu+ssh://root@host/system", False, True),
        ("qemu+ssh://root@127.0.0.1:2222/system?keyfile=/k&no_verify=1", False, True),
        ("qemu+tls://host.example/system", False, True),
        ("qemu://host/system", False, True),
        ("qemu+ssh://[::1]:22/system", False, True),
        ("qemu+ssh://host:notaport/system", False, True),  # the URI check refuses it later
    ],
)
def test_a_connection_is_remote_by_its_host_part_or_the_setting(
    uri: str, setting: bool, expected: bool
) -> None:
    assert remote.is_remote(uri, setting) is expected


def test_volume_names_follow_the_domain_never_the_user_s_file() -> None:
    assert remote.media_volume_name("w8", "floppy.img", written=True) == "w8-floppy.img"
    assert remote.media_volume_name("w8", "drivers.iso", written=True) == "w8-drivers.iso"
    assert remote.media_volume_name("w8", "Windows ISO", written=False) == "w8-windows.iso"


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (
            "Cannot recv data: ssh: connect to host 127.0.0.1 port 35919: Connection refused: "
            "Connection reset by peer",
            "ssh: connect to host 127.0.0.1 port 35919: Connection refused",
        ),
        (
            "Cannot recv data: root@127.0.0.1: Permission denied (publickey).: Connection "
            "reset by peer",
            "root@127.0.0.1: Permission denied (publickey)",
        ),
        (
            "Cannot recv data: Warning: Identity file /nonexistent/key not accessible: No such "
            "file or directory.\nroot@127.0.0.1: Permission denied (publickey).: Connection "
            "reset by peer",
            "Warning: Identity file /nonexistent/key not accessible: No such file or directory "
            "root@127.0.0.1: Permission denied (publickey)",
        ),
        (
            "Cannot recv data: Host key verification failed.: Connection reset by peer",
            "Host key verification failed",
        ),
        (
            "End of file while reading data: Warning: Permanently added '[127.0.0.1]:4' "
            "(ED25519) to the list of known hosts.\r\nvirt-ssh-helper: cannot connect to "
            "'/var/run/libvirt/libvirt-sock': No such file or directory: Input/output error",
            "virt-ssh-helper: cannot connect to '/var/run/libvirt/libvirt-sock': No such file "
            "or directory",
        ),
        ("something else entirely", "something else entirely"),
    ],
)
def test_ssh_reasons_are_what_ssh_said(message: str, reason: str) -> None:
    assert remote.ssh_reason(message) == reason


def test_the_template_volume_is_named_as_no_domain_s_disk_or_medium_can_be() -> None:
    assert remote.template_volume_name("web") == "web@template.qcow2"
    # A domain whose disk would be called so ("web@template".qcow2) cannot exist.
    with pytest.raises(InputError, match="'@'"):
        domain.validate_domain_name("web@template")


@pytest.mark.parametrize(
    ("medium", "volume"),
    [
        ("floppy.img", "web-floppy.img"),
        ("drivers.iso", "web-drivers.iso"),
        ("install-dvd.qcow2", "web@install-dvd.qcow2"),
    ],
)
def test_no_media_volume_is_the_disk_of_another_domain(medium: str, volume: str) -> None:
    assert remote.media_volume_name("web", medium, written=True) == volume
    if volume.endswith(".qcow2"):
        # It would be the system disk of a domain named its stem, which cannot exist.
        with pytest.raises(InputError, match="'@'"):
            domain.validate_domain_name(volume.removesuffix(".qcow2"))
