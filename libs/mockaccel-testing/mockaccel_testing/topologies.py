"""Topology files the tests share (the TOML format of mockaccel_common.simulator.topology)."""

from __future__ import annotations

# Node "n": two PFs on NUMA node 0 (four VFs each possible) and one PF without NUMA
# affinity. PCI bus order numbers the PF without NUMA affinity (buses 0x01…) first,
# so it is mock0 and the NUMA 0 PFs are mock1 and mock2.
SMALL_NODE = """
[[node]]
name = "n"
[[node.pf]]
numa_node = 0
count = 2
total_vfs = 4
[[node.pf]]
numa_node = -1
"""
