"""Runs the conformance suite inside the emulated node (the guest half of the ABI check)."""
