"""Names, PCI placement and NUMA nodes: what the topology promises is what user space sees."""

from __future__ import annotations

import os

from mockaccel_common.simulator.topology import pci_layout
from mockaccel_common.sysfs import abi
from mockaccel_conformance.target import Target


def test_one_class_device_per_pf_named_in_pci_bus_order(target: Target) -> None:
    assert target.devices() == [pf.name for pf in target.node.pfs]
    addresses = [target.read(pf.name, "pci_address") for pf in target.node.pfs]
    assert addresses == sorted(addresses), "mockN must follow PCI bus order"


def test_pci_placement_matches_the_topology_rule(target: Target) -> None:
    for pf in target.node.pfs:
        placement = pci_layout(pf)
        assert target.read(pf.name, "pci_address") == f"{placement.address}\n"
        device = target.dev_dir(pf.name) / "device"
        assert os.readlink(device) == f"../../../{placement.address}"
        real = device.resolve()
        assert real.name == str(placement.address)
        assert real.parent.name == str(placement.root_port)
        assert real.parent.parent.name == placement.pcie_root


def test_numa_node_of_class_device_and_pci_function_agree(target: Target) -> None:
    for pf in target.node.pfs:
        assert target.read(pf.name, "numa_node") == f"{pf.numa_node}\n"
        assert (target.dev_dir(pf.name) / "device" / "numa_node").read_text() == f"{pf.numa_node}\n"
    assert {pf.numa_node for pf in target.node.pfs} == {-1, 0, 1}


def test_class_link_points_into_the_pci_function(target: Target) -> None:
    for pf in target.node.pfs:
        link = os.readlink(target.class_dir / pf.name)
        assert link.endswith(f"/{pci_layout(pf).address}/{abi.CLASS_NAME}/{pf.name}"), link
