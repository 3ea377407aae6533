from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mockaccel_common.errors import TopologyError
from mockaccel_common.simulator.topology import (
    NodeSpec,
    PfSpec,
    Topology,
    dumps_topology,
    loads_topology,
    parse_size,
    pci_layout,
)

TWO_NUMA = """
[[node]]
name = "node-a"
[[node.pf]]
numa_node = 1
memory = "8Gi"
[[node.pf]]
numa_node = 0
count = 2
total_vfs = 4
"""


def test_pfs_are_numbered_in_pci_enumeration_order() -> None:
    node = loads_topology(TWO_NUMA).node("node-a")
    assert [(pf.name, pf.numa_node, pf.slot) for pf in node.pfs] == [
        ("mock0", 0, 0),
        ("mock1", 0, 1),
        ("mock2", 1, 0),
    ]
    assert [str(pci_layout(pf).address) for pf in node.pfs] == ["0000:11:00.0", "0000:12:00.0", "0000:21:00.0"]
    assert pci_layout(node.pfs[2]).pcie_root == "pci0000:20"
    assert node.pfs[2].memory == 8 << 30


def test_default_uuids_are_stable_and_distinct() -> None:
    first = loads_topology(TWO_NUMA).node("node-a")
    again = loads_topology(TWO_NUMA).node("node-a")
    assert [pf.uuid for pf in first.pfs] == [pf.uuid for pf in again.pfs]
    assert len({pf.uuid for pf in first.pfs}) == 3


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("node = 3", "expected at least one"),
        ("[[node]]\nname = 'Bad_Name'", "DNS label"),
        ("[[node]]\nname = 'a'\n[[node.pf]]\nnuma_node = 99", "outside"),
        ("[[node]]\nname = 'a'\n[[node.pf]]\ntotal_vfs = 8", "outside 0..7"),
        ("[[node]]\nname = 'a'\n[[node.pf]]\nmemory = '16GB'", "not a size"),
        ("[[node]]\nname = 'a'\n[[node.pf]]\nmemroy = '16Gi'", r"unknown key\(s\) memroy"),
        ("[[node]]\nname = 'a'\n[[node]]\nname = 'a'", "duplicate node"),
        ("[[node]]\nname = 'a'\n[[node.pf]]\nuuid = 'xyz'", "not a UUID"),
        ("[[node]\nname = 'a'", "not valid TOML"),
        ("[[node]]\nname = 'a'\n[[node.pf]]\ncount = 16", "outside 1..15"),
    ],
    ids=["no-nodes", "node-name", "numa", "vfs", "size-suffix", "typo", "duplicate", "uuid", "toml", "count"],
)
def test_malformed_topologies_name_the_field(text: str, message: str) -> None:
    with pytest.raises(TopologyError, match=message):
        loads_topology(text)


@pytest.mark.parametrize(
    ("value", "size"), [("16Gi", 16 << 30), ("2048Mi", 2 << 30), (4096, 4096), ("1Ti", 1 << 40)]
)
def test_sizes(value: object, size: int) -> None:
    assert parse_size(value, "memory") == size


@pytest.mark.parametrize("value", ["0", 0, -5, "1.5Gi", True, "Gi", "16 Gi"])
def test_bad_sizes(value: object) -> None:
    with pytest.raises(TopologyError):
        parse_size(value, "memory")


@st.composite
def topologies(draw: st.DrawFn) -> Topology:
    nodes = []
    names = draw(st.lists(st.from_regex(r"[a-z][a-z0-9]{0,8}", fullmatch=True), min_size=1, max_size=3, unique=True))
    for name in names:
        numas = draw(st.lists(st.integers(-1, 3), min_size=0, max_size=6))
        numas.sort()
        slots: dict[int, int] = {}
        pfs = []
        for index, numa in enumerate(numas):
            slot = slots.get(numa, 0)
            slots[numa] = slot + 1
            pfs.append(
                PfSpec(
                    index=index,
                    numa_node=numa,
                    slot=slot,
                    memory=draw(st.integers(1, 1 << 44)),
                    total_vfs=draw(st.integers(0, 7)),
                    vf_memory=draw(st.integers(1, 1 << 40)),
                    uuid=uuid.UUID(int=draw(st.integers(0, (1 << 128) - 1))),
                )
            )
        nodes.append(NodeSpec(name, tuple(pfs)))
    uuids = [pf.uuid for node in nodes for pf in node.pfs]
    if len(set(uuids)) != len(uuids):
        from hypothesis import reject

        reject()
    return Topology(tuple(nodes))


@given(topologies())
def test_dump_and_load_round_trip(topology: Topology) -> None:
    assert loads_topology(dumps_topology(topology)) == topology
