"""Test-bed helpers for mock-accel: a loopback Kubernetes control plane and a pytest plugin.

The control plane runs etcd, kube-apiserver, kube-controller-manager and kube-scheduler as
plain processes (no kubelet, no containers), so Dynamic Resource Allocation can be tested
end to end on a machine without a container runtime: the real scheduler allocates devices
that a test publishes as ResourceSlices on fake Nodes.
"""

from mockaccel_testing.binaries import BinariesNotFoundError, KubeBinaries
from mockaccel_testing.client import admin_client, impersonate, service_account_client
from mockaccel_testing.control_plane import ControlPlane, ControlPlaneStartError
from mockaccel_testing.nodes import create_node
from mockaccel_testing.settings import Settings

__all__ = [
    "BinariesNotFoundError",
    "ControlPlane",
    "ControlPlaneStartError",
    "KubeBinaries",
    "Settings",
    "admin_client",
    "create_node",
    "impersonate",
    "service_account_client",
]
