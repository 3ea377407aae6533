"""The emulated PCIe function: a vfio-user server on libvfio-user."""
