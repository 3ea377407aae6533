"""The emulated node: a QEMU guest running the real driver against vfio-servers (docs/kernel-module.md)."""
