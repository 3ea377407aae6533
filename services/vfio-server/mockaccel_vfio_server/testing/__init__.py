"""Test support for the vfio-server: a vfio-user protocol client, prerequisites, a guest VM."""
