"""Remote libvirt hosts (pure): which connections are remote, what a remote build
names its volumes, and libvirt's ssh errors as the sentence ssh said.

A connection is *local* when the client and QEMU share a file system (`qemu:///system`,
`qemu:///session`): the domain may name files in OUT. It is *remote* when its URI has a
host part (`qemu+ssh://root@host/system`), or when the `remote` setting says so (a
host part-less URI whose daemon runs elsewhere, such as a forwarded socket): then no
path of the client means anything to QEMU, every medium is uploaded into the
`storage_pool` of the host as a volume, and the domain refers to volumes only
(docs/remote.md).
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

# The volume of a medium pvinstall does not write (the user's Windows ISO): the volume
# is named after the domain like the others, never after the user's file.
WINDOWS_ISO_VOLUME = "windows.iso"
# The suffix of the disks' volumes (`DOMAIN.qcow2`): no medium's volume may end in
# `-<anything>.qcow2`, which another domain's system disk could be named.
DISK_VOLUME_SUFFIX = ".qcow2"


def uri_has_host(uri: str) -> bool:
    """Whether a libvirt URI names a host (`qemu+ssh://host/system`, `qemu://h/system`)."""
    try:
        return bool(urllib.parse.urlsplit(uri).hostname)
    except ValueError:
        return False


def is_remote(uri: str, setting: bool) -> bool:
    """Whether a build over `uri` is remote: the URI has a host part, or the `remote`
    setting is true."""
    return setting or uri_has_host(uri)


def media_volume_name(domain: str, medium: str, *, written: bool) -> str:
    """The pool volume of a medium for the domain `domain`: `DOMAIN-floppy.img`,
    `DOMAIN-drivers.iso`, ... for what pvinstall writes (`written`), and
    `DOMAIN-windows.iso` for the user's install medium. Names are made only of the
    domain name (a checked token) and the media table's file names, so they are safe
    as volume names and never clash with the disks (`DOMAIN.qcow2`, `DOMAIN-dataN.qcow2`).
    A qcow2 medium (the DVD's overlay) is `DOMAIN@install-dvd.qcow2`: `DOMAIN-install-dvd.qcow2`
    would be the system disk of a domain named `DOMAIN-install-dvd`, and a domain name has
    no '@'."""
    if not written:
        return f"{domain}-{WINDOWS_ISO_VOLUME}"
    separator = "@" if medium.endswith(DISK_VOLUME_SUFFIX) else "-"
    return f"{domain}{separator}{medium}"


# The compressed template volume of `export = "pool"`: `DOMAIN@template.qcow2`. A domain
# name has no '@' (vm/domain.py), so no build's disk or medium, and no clone's, is ever
# named so: no build --replace of another name deletes it.
TEMPLATE_VOLUME_SUFFIX = "@template.qcow2"


def template_volume_name(domain: str) -> str:
    """The pool volume `export = "pool"` leaves the template of `domain` in."""
    return f"{domain}{TEMPLATE_VOLUME_SUFFIX}"


@dataclass(frozen=True)
class Upload:
    """A client file that becomes a volume of the host's pool: the medium it is (for
    messages and the manifest), the file, the volume, the format QEMU reads it as
    (written into the domain: the pool's own probe of the bytes is never trusted), and
    for an overlay the volume it is backed by."""

    medium: str
    path: Path
    volume: str
    format: str = "raw"
    # A qcow2 overlay (the install DVD's) whose backing file is the volume `backing` of
    # the same pool, uploaded before it: what goes up is a copy of `path` rebased onto
    # that volume's path on the host, read as raw (the file in OUT keeps its own).
    backing: str | None = None


# What libvirt puts around ssh's own words (see docs/remote.md, "errors"): its prefix
# for a dead transport, the socket error it appends, and the notes ssh prints while
# connecting.
_TRANSPORT_PREFIXES = ("Cannot recv data: ", "End of file while reading data: ")
_TRANSPORT_SUFFIXES = (": Connection reset by peer", ": Input/output error")
_SSH_NOTES = re.compile(r"^Warning: Permanently added .*$", re.MULTILINE)


def ssh_reason(message: str) -> str:
    """libvirt's message for a failed ssh transport, cut down to what ssh said:
    `Cannot recv data: root@h: Permission denied (publickey).: Connection reset by
    peer` -> `root@h: Permission denied (publickey)`."""
    text = message.strip()
    for prefix in _TRANSPORT_PREFIXES:
        if text.startswith(prefix):
            text = text[len(prefix) :]
    text = _SSH_NOTES.sub("", text).strip()
    for suffix in _TRANSPORT_SUFFIXES:
        if text.endswith(suffix):
            text = text[: -len(suffix)]
    lines = [line.strip() for line in text.replace("\r", "\n").split("\n") if line.strip()]
    return " ".join(line.rstrip(".") for line in lines) or message.strip()
