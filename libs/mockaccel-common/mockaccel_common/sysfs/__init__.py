"""The sysfs ABI of mock-accel (docs/abi.md), a reader and a writer for it."""
