"""A remote libvirt host on this machine, for the remote-host tests: a private sshd on
127.0.0.1 (no systemd, no /etc/ssh) in front of the real libvirtd, reached as
`qemu+ssh://root@127.0.0.1:PORT/system`, and storage pools made through that
connection (the tests never write into a pool's directory themselves).

libvirt runs `ssh` for the URI; the `command=` wrapper gives it a known-hosts file of
the test's own, so `no_verify=1` never writes into ~/.ssh, and a ConnectTimeout.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import libvirt

SSHD = "/usr/sbin/sshd"  # sshd re-executes itself and refuses a relative path
PREFIX = "pvt-i17"

_CONFIG = """\
Port {port}
ListenAddress 127.0.0.1
AddressFamily inet
HostKey {state}/host_ed25519
PidFile {state}/sshd.pid
AuthorizedKeysFile {state}/authorized_keys
# StrictModes walks every parent directory, and pytest's /tmp (1777) fails it.
StrictModes no
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
AuthenticationMethods publickey
UsePAM no
UseDNS no
PrintMotd no
PrintLastLog no
X11Forwarding no
AllowTcpForwarding no
PermitTunnel no
AcceptEnv none
MaxStartups 50:30:100
LoginGraceTime 20
LogLevel VERBOSE
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Sshd:
    """A running private sshd and what a client needs to reach libvirtd through it."""

    state: Path
    port: int
    pid: int

    @property
    def key(self) -> Path:
        return self.state / "client_ed25519"

    @property
    def wrong_key(self) -> Path:
        return self.state / "wrong_ed25519"

    def uri(self, *, key: Path | None = None, port: int | None = None) -> str:
        return (
            f"qemu+ssh://root@127.0.0.1:{port or self.port}/system?keyfile={key or self.key}"
            f"&no_verify=1&no_tty=1&command={self.state / 'ssh'}"
        )

    def stop(self) -> None:
        # By its pid, and only while it still is the sshd of our config.
        try:
            cmdline = Path(f"/proc/{self.pid}/cmdline").read_bytes()
        except OSError:
            return
        if str(self.state / "sshd_config").encode() in cmdline:
            os.kill(self.pid, 15)
            for _ in range(50):
                if not Path(f"/proc/{self.pid}").exists():
                    break
                time.sleep(0.1)


def start_sshd(state: Path) -> Sshd:
    state.mkdir(parents=True, exist_ok=True)
    state.chmod(0o700)
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation dir
    for name in ("host_ed25519", "client_ed25519", "wrong_ed25519"):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(state / name)],
            check=True,
        )
    shutil.copy(state / "client_ed25519.pub", state / "authorized_keys")
    (state / "authorized_keys").chmod(0o600)
    wrapper = state / "ssh"
    wrapper.write_text(
        "#!/bin/sh\n"
        f"exec ssh -o UserKnownHostsFile={state}/known_hosts -o GlobalKnownHostsFile=/dev/null "
        '-o ConnectTimeout=10 -o LogLevel=ERROR "$@"\n'
    )
    wrapper.chmod(0o755)
    port = free_port()
    config = state / "sshd_config"
    config.write_text(_CONFIG.format(port=port, state=state))
    subprocess.run([SSHD, "-t", "-f", str(config)], check=True)
    subprocess.run([SSHD, "-f", str(config), "-E", str(state / "sshd.log")], check=True)
    pid_file = state / "sshd.pid"
    for _ in range(100):
        if pid_file.is_file() and pid_file.read_text().strip():
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                pass
        time.sleep(0.1)
    else:
        raise RuntimeError(f"sshd did not start: {(state / 'sshd.log').read_text()}")
    return Sshd(state=state, port=port, pid=int(pid_file.read_text().strip()))


def unique(what: str) -> str:
    return f"{PREFIX}-{secrets.token_hex(4)}-{what}"


def create_dir_pool(conn: libvirt.virConnect, name: str, path: Path) -> libvirt.virStoragePool:
    """A transient directory pool at `path`, built (made) by the daemon."""
    xml = f"<pool type='dir'><name>{name}</name><target><path>{path}</path></target></pool>"
    return conn.storagePoolCreateXML(xml, libvirt.VIR_STORAGE_POOL_CREATE_WITH_BUILD)


def remove_pool(conn: libvirt.virConnect, name: str) -> None:
    """Delete every volume of the pool `name`, then stop (and undefine) it."""
    try:
        pool = conn.storagePoolLookupByName(name)
    except libvirt.libvirtError:
        return
    persistent = pool.isPersistent()
    if pool.isActive():
        pool.refresh(0)
        for volume in pool.listAllVolumes(0):
            volume.delete(0)
        pool.destroy()  # a transient pool is gone with it
    if persistent:
        pool.undefine()


def volume_names(conn: libvirt.virConnect, pool: str) -> set[str]:
    handle = conn.storagePoolLookupByName(pool)
    handle.refresh(0)
    return {str(v.name()) for v in handle.listAllVolumes(0)}
