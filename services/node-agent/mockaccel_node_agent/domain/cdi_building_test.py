from __future__ import annotations

import uuid

from mockaccel_common.model import Device, DeviceKind, PciAddress
from mockaccel_common.regmap import Capability, Status
from mockaccel_node_agent.domain.cdi_building import CdiLayout, DeviceSource, claim_spec

DEVICE = Device(
    name="mock0v1",
    uuid=uuid.UUID("00000000-0000-4000-8000-000000000001"),
    kind=DeviceKind.VF,
    memory_size=1 << 30,
    capabilities=Capability.COMPUTE,
    status=Status.READY,
    numa_node=0,
    pci_address=PciAddress.parse("0000:11:00.2"),
    pcie_root="pci0000:10",
    fw_version="1.0.0",
    physfn="mock0",
    vf_index=1,
)
SOURCE = DeviceSource(device=DEVICE, sysfs_dir="/sim/devices/x/mock-accel/mock0v1")


def test_default_layout_is_the_real_driver() -> None:
    (device,) = claim_spec("uid-1", [SOURCE]).devices
    assert device.device_nodes[0].path == "/dev/mock0v1"
    assert device.device_nodes[0].host_path == "/dev/mock0v1"
    assert device.mounts[0].container_path == "/sys/class/mock-accel/mock0v1"
    assert device.mounts[0].host_path == SOURCE.sysfs_dir
    assert "MOCK_ACCEL_MOCK0V1_SYSFS=/sys/class/mock-accel/mock0v1" in device.env


def test_simulated_layout_moves_host_nodes_and_the_sysfs_mount() -> None:
    layout = CdiLayout(device_dir="/sim/dev/", sysfs_dir="/run/mock-accel")
    (device,) = claim_spec("uid-1", [SOURCE], layout).devices
    assert device.device_nodes[0].path == "/dev/mock0v1"
    assert device.device_nodes[0].host_path == "/sim/dev/mock0v1"
    assert device.mounts[0].container_path == "/run/mock-accel/mock0v1"
    assert "MOCK_ACCEL_MOCK0V1_SYSFS=/run/mock-accel/mock0v1" in device.env
