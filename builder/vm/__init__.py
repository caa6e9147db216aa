"""The libvirt domain: the device vocabulary, domain planning (pure), reading and editing
existing domain XML, and the libvirt edge (virt.py)."""
