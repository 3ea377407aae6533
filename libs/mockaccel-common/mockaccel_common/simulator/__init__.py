"""mockaccel-sim: a sysfs tree that behaves like the mock-accel driver, without a guest."""
