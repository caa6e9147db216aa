"""The virtio-win drivers: driver sources, INF files, the driver facts of
drivers/catalog.toml, packages and the selection per profile."""
