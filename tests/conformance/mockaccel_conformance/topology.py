"""The node every conformance run uses: 2 NUMA nodes x 2 PFs and one PF without NUMA affinity.

Each PF has 16 GiB and 4 VFs of 2 GiB. The NUMA-placed PFs sit behind
``pxb-pcie`` expanders in the guest; the fifth sits on a root port of the root
bus and, being first in PCI bus order, is mock0. Interrupt delivery differs
between the two placements in QEMU, so the suite covers both.

The simulator materialises it on the host; the e2e test boots the same text
as an emulated QEMU node. One definition, so both runs expect the same names,
UUIDs and PCI addresses.
"""

from __future__ import annotations

from mockaccel_common.simulator.topology import NodeSpec, loads_topology

NODE_NAME = "node-a"
TOPOLOGY_TOML = """
[[node]]
name = "node-a"

[[node.pf]]
numa_node = -1
memory = "16Gi"
total_vfs = 4
vf_memory = "2Gi"

[[node.pf]]
numa_node = 0
count = 2
memory = "16Gi"
total_vfs = 4
vf_memory = "2Gi"

[[node.pf]]
numa_node = 1
count = 2
memory = "16Gi"
total_vfs = 4
vf_memory = "2Gi"
"""


def conformance_node() -> NodeSpec:
    return loads_topology(TOPOLOGY_TOML).node(NODE_NAME)
