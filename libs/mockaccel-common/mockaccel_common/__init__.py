"""mock-accel's shared library: the device model, the register map, the sysfs ABI
and its simulator, CDI, logging, settings and the service runner."""
