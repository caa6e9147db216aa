"""pvinstall: unattended Windows Server installs on KVM/libvirt with virtio drivers."""

__version__ = "0.1.0"
