"""The hypervisor pvinstall talks to unless --connect says otherwise: a leaf module, so
that the command line names it without loading libvirt or the device tables."""

DEFAULT_URI = "qemu:///system"
