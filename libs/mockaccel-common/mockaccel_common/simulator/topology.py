"""Topology files: which nodes, NUMA nodes and PFs an emulated cluster has.

The same TOML format drives the sysfs simulator and the emulated QEMU node,
and ``pci_layout`` is the single rule that turns a PF's place in the topology
into its PCI address, so both agree on every address. Example::

    [[node]]
    name = "node-a"

    [[node.pf]]
    numa_node = 0
    memory = "16Gi"
    total_vfs = 4
    vf_memory = "2Gi"

Parsing is strict: unknown keys, wrong types and out-of-range values are
errors that name the offending field.
"""

from __future__ import annotations

import re
import tomllib
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mockaccel_common.errors import TopologyError
from mockaccel_common.model import PciAddress
from mockaccel_common.quantity import MAX_BYTES, QuantityError, parse_quantity
from mockaccel_common.regmap import DEFAULT_PF_MEMORY, DEFAULT_VF_MEMORY, MAX_VFS

# Namespace for the default PF UUIDs (derived from node name and PF index).
TOPOLOGY_UUID_NAMESPACE = uuid.UUID("6d6f636b-2d61-4363-8500-746f706f6c6f")
MAX_NUMA_NODES = 14
MAX_PFS_PER_NUMA = 15
MAX_NODES = 64
_NODE_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def parse_size(value: object, field: str) -> int:
    """A plain byte count or a Kubernetes Quantity (``16Gi``; mockaccel_common.quantity)."""
    if isinstance(value, bool):
        raise TopologyError(f"{field}: expected a size, got {value!r}")
    if isinstance(value, int):
        if not 0 < value <= MAX_BYTES:
            raise TopologyError(f"{field}: size must be 1..2^64-1 bytes, got {value}")
        return value
    if isinstance(value, str):
        try:
            return parse_quantity(value)
        except QuantityError as exc:
            raise TopologyError(f"{field}: {exc}") from exc
    raise TopologyError(f"{field}: expected bytes or a size such as 16Gi, got {value!r}")


@dataclass(frozen=True)
class PfSpec:
    index: int  # N of mockN on its node
    numa_node: int  # -1: no NUMA affinity
    slot: int  # position among the PFs of the same NUMA node
    memory: int
    total_vfs: int
    vf_memory: int
    uuid: uuid.UUID

    @property
    def name(self) -> str:
        return f"mock{self.index}"


@dataclass(frozen=True)
class NodeSpec:
    name: str
    pfs: tuple[PfSpec, ...]

    @property
    def numa_nodes(self) -> tuple[int, ...]:
        return tuple(sorted({pf.numa_node for pf in self.pfs if pf.numa_node >= 0}))


@dataclass(frozen=True)
class Topology:
    nodes: tuple[NodeSpec, ...]

    def node(self, name: str) -> NodeSpec:
        for node in self.nodes:
            if node.name == name:
                return node
        known = ", ".join(n.name for n in self.nodes)
        raise TopologyError(f"node {name!r} is not in the topology (known: {known})")


@dataclass(frozen=True)
class PciPlacement:
    """Where a PF sits: its root port, its own address and its PCIe root."""

    expander_bus: int  # pxb-pcie bus_nr in QEMU; 0 means the root bus pcie.0
    root_port: PciAddress
    address: PciAddress

    @property
    def pcie_root(self) -> str:
        return f"pci{self.address.domain:04x}:{self.expander_bus:02x}"


def pci_layout(pf: PfSpec) -> PciPlacement:
    """The PCI address rule shared by the simulator and the emulated node.

    NUMA node n gets a PCIe expander bridge with bus number 0x10 * (n + 1);
    the k-th PF of that node sits behind root port ``0000:E:k.0`` on bus
    E + 1 + k. PFs without NUMA affinity hang off root ports 0x10 + k of the
    root bus, on buses 1 + k.

    A topology file allows at most MAX_PFS_PER_NUMA PFs per NUMA node (what
    fits in a bus range). Scale benchmarks build larger simulated nodes in
    code (tools/bench/controller_bench.py, 10,000 functions): slot k then
    continues in PCI domain k // MAX_PFS_PER_NUMA, a layout no QEMU node uses.
    """
    domain, slot = divmod(pf.slot, MAX_PFS_PER_NUMA)
    if pf.numa_node < 0:
        port = PciAddress(domain, 0, 0x10 + slot, 0)
        return PciPlacement(0, port, PciAddress(domain, 1 + slot, 0, 0))
    expander = 0x10 * (pf.numa_node + 1)
    port = PciAddress(domain, expander, slot, 0)
    return PciPlacement(expander, port, PciAddress(domain, expander + 1 + slot, 0, 0))


_PF_KEYS = {"numa_node", "memory", "total_vfs", "vf_memory", "uuid", "count"}
_NODE_KEYS = {"name", "pf"}


def _expect(table: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise TopologyError(f"{where}: unknown key(s) {', '.join(unknown)}")


def _int_field(table: dict[str, Any], key: str, default: int, low: int, high: int, where: str) -> int:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise TopologyError(f"{where}.{key}: expected an integer, got {value!r}")
    if not low <= value <= high:
        raise TopologyError(f"{where}.{key}: {value} is outside {low}..{high}")
    return value


def _parse_node(raw: object, position: int) -> NodeSpec:
    where = f"node[{position}]"
    if not isinstance(raw, dict):
        raise TopologyError(f"{where}: expected a table")
    _expect(raw, _NODE_KEYS, where)
    name = raw.get("name")
    if not isinstance(name, str) or not _NODE_NAME_RE.match(name):
        raise TopologyError(f"{where}.name: expected a DNS label (a Kubernetes node name), got {name!r}")
    raw_pfs = raw.get("pf", [])
    if not isinstance(raw_pfs, list):
        raise TopologyError(f"{where}.pf: expected an array of tables")
    declared: list[tuple[int, int, dict[str, Any]]] = []
    for pf_position, raw_pf in enumerate(raw_pfs):
        pf_where = f"{where}.pf[{pf_position}]"
        if not isinstance(raw_pf, dict):
            raise TopologyError(f"{pf_where}: expected a table")
        _expect(raw_pf, _PF_KEYS, pf_where)
        numa = _int_field(raw_pf, "numa_node", 0, -1, MAX_NUMA_NODES - 1, pf_where)
        count = _int_field(raw_pf, "count", 1, 1, MAX_PFS_PER_NUMA, pf_where)
        if count > 1 and "uuid" in raw_pf:
            raise TopologyError(f"{pf_where}: uuid cannot be combined with count > 1")
        for _ in range(count):
            declared.append((numa, pf_position, raw_pf))
    # PCI enumeration order: buses ascend, and NUMA n's buses come before n+1's.
    declared.sort(key=lambda item: (item[0] if item[0] >= 0 else -1, item[1]))
    per_numa: dict[int, int] = {}
    pfs: list[PfSpec] = []
    for index, (numa, pf_position, raw_pf) in enumerate(declared):
        pf_where = f"{where}.pf[{pf_position}]"
        slot = per_numa.get(numa, 0)
        if slot >= MAX_PFS_PER_NUMA:
            raise TopologyError(f"{where}: more than {MAX_PFS_PER_NUMA} PFs on NUMA node {numa}")
        per_numa[numa] = slot + 1
        raw_uuid = raw_pf.get("uuid")
        if raw_uuid is None:
            pf_uuid = uuid.uuid5(TOPOLOGY_UUID_NAMESPACE, f"{name}/mock{index}")
        else:
            try:
                pf_uuid = uuid.UUID(str(raw_uuid))
            except ValueError as exc:
                raise TopologyError(f"{pf_where}.uuid: not a UUID: {raw_uuid!r}") from exc
        pfs.append(
            PfSpec(
                index=index,
                numa_node=numa,
                slot=slot,
                memory=parse_size(raw_pf.get("memory", DEFAULT_PF_MEMORY), f"{pf_where}.memory"),
                total_vfs=_int_field(raw_pf, "total_vfs", 0, 0, MAX_VFS, pf_where),
                vf_memory=parse_size(raw_pf.get("vf_memory", DEFAULT_VF_MEMORY), f"{pf_where}.vf_memory"),
                uuid=pf_uuid,
            )
        )
    return NodeSpec(name=name, pfs=tuple(pfs))


def parse_topology(data: dict[str, Any]) -> Topology:
    _expect(data, {"node"}, "topology")
    raw_nodes = data.get("node")
    if not isinstance(raw_nodes, list) or not raw_nodes:
        raise TopologyError("topology: expected at least one [[node]] table")
    if len(raw_nodes) > MAX_NODES:
        raise TopologyError(f"topology: at most {MAX_NODES} nodes")
    nodes = tuple(_parse_node(raw, i) for i, raw in enumerate(raw_nodes))
    names = [n.name for n in nodes]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise TopologyError(f"topology: duplicate node name(s) {', '.join(duplicates)}")
    uuids = [pf.uuid for n in nodes for pf in n.pfs]
    if len(set(uuids)) != len(uuids):
        raise TopologyError("topology: two PFs share a uuid")
    return Topology(nodes)


def loads_topology(text: str) -> Topology:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TopologyError(f"topology: not valid TOML: {exc}") from exc
    return parse_topology(data)


def load_topology(path: Path) -> Topology:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TopologyError(f"cannot read topology file {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise TopologyError(f"topology file {path} is not UTF-8") from exc
    return loads_topology(text)


def dumps_topology(topology: Topology) -> str:
    """Render a topology back to TOML (every field explicit)."""
    lines: list[str] = []
    for node in topology.nodes:
        lines += ["[[node]]", f'name = "{node.name}"', ""]
        for pf in node.pfs:
            lines += [
                "[[node.pf]]",
                f"numa_node = {pf.numa_node}",
                f"memory = {pf.memory}",
                f"total_vfs = {pf.total_vfs}",
                f"vf_memory = {pf.vf_memory}",
                f'uuid = "{pf.uuid}"',
                "",
            ]
    return "\n".join(lines)
