"""Per-node controller: publishes the node's mock-accel devices as ResourceSlices."""
