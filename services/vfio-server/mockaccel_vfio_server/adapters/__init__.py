"""Adapters: the only code in the vfio-server that touches I/O libraries (cffi, sockets)."""
