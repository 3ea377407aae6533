"""End-to-end tests run against the loopback control plane of mockaccel_testing."""

pytest_plugins = ["mockaccel_testing.pytest_plugin"]
