"""One ABI conformance suite for the simulator's tree and the real driver's sysfs (docs/kernel-module.md)."""
