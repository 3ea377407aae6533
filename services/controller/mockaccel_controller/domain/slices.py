"""Desired ResourceSlices of one node, built from a sysfs scan (docs/abi.md §8.1 and §8.2).

Pure domain: no I/O and no Kubernetes client types. The adapter turns these
values into ``resource.k8s.io`` JSON of whichever version the server serves,
and turns stored slices back into the same values, so that "desired equals
stored" is a plain ``==`` on frozen dataclasses.

Layout (a public contract: meta-drivers read it):
* one pool per node and NUMA node, ``<node>/numa<n>`` or ``<node>/numa-none``,
  so a pool name is unique cluster-wide and the scheduler never confuses the
  devices of two nodes (it tracks allocations by driver/pool/device);
* at most 128 devices per slice, devices sorted by name, so the split of a
  pool into slices is a function of its device names only;
* attributes and the ``memory`` capacity exactly as the table in §8.2.
"""

from __future__ import annotations

import functools
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from mockaccel_common.model import Device, DeviceKind, pool_label, pool_name
from mockaccel_common.quantity import canonical_bytes

MAX_DEVICES_PER_SLICE = 128  # ResourceSliceMaxDevices (no taints or counters here)
MAX_ATTRIBUTES_AND_CAPACITIES = 32
MAX_POOL_NAME = 253
MAX_STRING_ATTRIBUTE = 64
INT64_MAX = 2**63 - 1
PCIE_ROOT_ATTRIBUTE = "resource.kubernetes.io/pcieRoot"

DNS_LABEL_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
DNS_SUBDOMAIN_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_VALUE_RE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$")
C_IDENTIFIER_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,31}$")

AttributeValue = int | str | bool


class Attribute(NamedTuple):
    """One device attribute; ``kind`` is the DeviceAttribute field: int, string, bool or version.

    A named tuple, not a dataclass: a pass compares every desired device with
    its stored twin, and tuple equality runs in C (a third of the planning
    time on a 1,024-device node went to dataclass ``__eq__``).
    """

    kind: str
    value: AttributeValue


class DeviceSpec(NamedTuple):
    """One device entry of a slice, in canonical form.

    ``extras`` names fields a stored device carries that this controller never
    writes (taints, counters …); a non-empty value makes it differ from any
    desired device, so the next update removes them. A named tuple for the
    same reason as ``Attribute``: equality and hashing run in C, and a
    10,000-device node keeps one per device.
    """

    name: str
    attributes: tuple[tuple[str, Attribute], ...]
    capacity: tuple[tuple[str, str], ...]
    extras: tuple[str, ...] = ()

    @classmethod
    def of(
        cls, name: str, attributes: Mapping[str, Attribute], capacity: Mapping[str, str], extras: Iterable[str] = ()
    ) -> DeviceSpec:
        return cls(name, tuple(sorted(attributes.items())), tuple(sorted(capacity.items())), tuple(sorted(extras)))


@dataclass(frozen=True)
class SliceContent:
    """The devices of one desired slice."""

    devices: tuple[DeviceSpec, ...]

    @property
    def device_names(self) -> frozenset[str]:
        return frozenset(d.name for d in self.devices)


@dataclass(frozen=True)
class PoolSpec:
    """A desired pool: its full name, its short label value and its slices."""

    name: str
    label: str
    slices: tuple[SliceContent, ...]


@dataclass(frozen=True)
class Rejected:
    """A device that was read but cannot be published; ``reason`` says why."""

    name: str
    reason: str


@dataclass(frozen=True)
class DesiredState:
    pools: dict[str, PoolSpec] = field(default_factory=dict)
    rejected: tuple[Rejected, ...] = ()

    @property
    def device_count(self) -> int:
        return sum(len(s.devices) for p in self.pools.values() for s in p.slices)


class _Keys(NamedTuple):
    """A driver's attribute and capacity names, built once: every device shares the same strings."""

    uuid: str
    memory: str
    device_type: str
    pci_address: str
    capabilities: str
    numa_node: str
    physfn: str
    vf_index: str


@functools.lru_cache(maxsize=8)
def _keys(driver: str) -> _Keys:
    names = ("uuid", "memory", "deviceType", "pciAddress", "capabilities", "numaNode", "physfn", "vfIndex")
    return _Keys(*(sys.intern(f"{driver}/{n}") for n in names))


@functools.lru_cache(maxsize=4096)
def _shared(pair: tuple[str, Attribute]) -> tuple[str, Attribute]:
    """One object for an attribute many devices share (type, memory, capabilities, NUMA node …)."""
    return pair


@functools.lru_cache(maxsize=256)
def _capacity(key: str, memory_size: int) -> tuple[tuple[str, str], ...]:
    return ((key, canonical_bytes(memory_size)),)


def device_spec(device: Device, driver: str) -> DeviceSpec:
    """The slice entry of one function (docs/abi.md §8.2 table)."""
    keys = _keys(driver)
    attributes: list[tuple[str, Attribute]] = [
        (keys.uuid, Attribute("string", str(device.uuid))),
        _shared((keys.memory, Attribute("int", device.memory_size))),
        _shared((keys.device_type, Attribute("string", device.kind.value))),
        (keys.pci_address, Attribute("string", str(device.pci_address))),
        _shared((keys.capabilities, Attribute("int", int(device.capabilities)))),
    ]
    if device.numa_node is not None:
        attributes.append(_shared((keys.numa_node, Attribute("int", device.numa_node))))
    if device.kind is DeviceKind.VF:
        if device.physfn is not None:  # shared by the PF's VFs (~1 MiB on a 10,240-function node)
            attributes.append(_shared((keys.physfn, Attribute("string", device.physfn))))
        if device.vf_index is not None:
            attributes.append(_shared((keys.vf_index, Attribute("int", device.vf_index))))
    if device.pcie_root is not None:
        attributes.append(_shared((PCIE_ROOT_ATTRIBUTE, Attribute("string", device.pcie_root))))
    attributes.sort()
    return DeviceSpec(device.name, tuple(attributes), _capacity(keys.memory, device.memory_size))


@functools.lru_cache(maxsize=1024)
def _name_problem(key: str) -> str | None:
    domain, _, ident = key.rpartition("/")
    if not C_IDENTIFIER_RE.match(ident) or (domain and not DNS_SUBDOMAIN_RE.match(domain)):
        return f"bad qualified name {key}"
    return None


def device_problem(spec: DeviceSpec) -> str | None:
    """Why the API server would reject this device entry (alone, outside its pool), or None."""
    if not DNS_LABEL_RE.match(spec.name):
        return f"device name {spec.name!r} is not a DNS label"
    if len(spec.attributes) + len(spec.capacity) > MAX_ATTRIBUTES_AND_CAPACITIES:
        return "too many attributes and capacities"
    for key, attribute in spec.attributes:
        if isinstance(attribute.value, bool):
            continue
        if isinstance(attribute.value, int) and not -INT64_MAX - 1 <= attribute.value <= INT64_MAX:
            return f"attribute {key} does not fit in int64"
        if isinstance(attribute.value, str) and len(attribute.value) > MAX_STRING_ATTRIBUTE:
            return f"attribute {key} is longer than {MAX_STRING_ATTRIBUTE} characters"
    for key in [k for k, _ in spec.attributes] + [k for k, _ in spec.capacity]:
        if (problem := _name_problem(key)) is not None:
            return problem
    return None


class _Entry(NamedTuple):
    device: Device
    spec: DeviceSpec
    problem: str | None  # why the API server would refuse the entry; None: fine
    pool: str
    label: str


class SliceBuilder:
    """The node's desired slices, kept up to date device by device: an index of devices by pool.

    A pass hands over the devices it re-read and the names of those that are
    gone; only the pools those devices were or are in are rebuilt, and
    ``update`` returns them, so the planner need only look at those pools. A
    device read again unchanged costs one comparison; a change that leaves
    its slice entry as it was (status, firmware) rebuilds nothing. On a
    1,024-device node a change of one PF rebuilds one pool of ~73 devices
    instead of converting, hashing and sorting all 1,024.
    """

    def __init__(self, node: str, driver: str) -> None:
        self.node = node
        self.driver = driver
        self._entries: dict[str, _Entry] = {}
        self._members: dict[str, set[str]] = {}  # pool -> names of its devices (published or rejected)
        self._pools: dict[str, PoolSpec] = {}  # the desired pools
        self._rejected: dict[str, tuple[Rejected, ...]] = {}  # pool -> its devices that cannot be published
        self._pool_names: dict[int | None, tuple[str, str]] = {}

    def _pool_of(self, numa_node: int | None) -> tuple[str, str]:
        """The pool's name and label: one pair of strings per NUMA node, shared by its devices."""
        names = self._pool_names.get(numa_node)
        if names is None:
            names = self._pool_names[numa_node] = (pool_name(self.node, numa_node), pool_label(numa_node))
        return names

    def __len__(self) -> int:
        return len(self._entries)

    def update(self, devices: Iterable[Device], gone: Iterable[str] = ()) -> set[str]:
        """Take new readings of ``devices`` and forget ``gone``; the names of the pools that changed."""
        dirty: set[str] = set()
        for device in devices:
            old = self._entries.get(device.name)
            if old is not None and old.device == device:
                continue
            spec = device_spec(device, self.driver)
            if old is not None and old.spec == spec:
                self._entries[device.name] = old._replace(device=device)  # same entry, same pool
                continue
            if old is not None:
                self._leave(old, dirty)
            pool, label = self._pool_of(device.numa_node)
            self._entries[device.name] = _Entry(device, spec, device_problem(spec), pool, label)
            self._members.setdefault(pool, set()).add(device.name)
            dirty.add(pool)
        for name in gone:
            if (old := self._entries.pop(name, None)) is not None:
                self._leave(old, dirty)
        for pool in dirty:
            self._rebuild(pool)
        return dirty

    def replace(self, devices: Iterable[Device]) -> set[str]:
        """A full reading: ``devices`` are all there is; the names of the pools that changed."""
        devices = list(devices)
        present = {d.name for d in devices}
        return self.update(devices, [n for n in self._entries if n not in present])

    def _leave(self, entry: _Entry, dirty: set[str]) -> None:
        members = self._members.get(entry.pool)
        if members is not None:
            members.discard(entry.device.name)
        dirty.add(entry.pool)

    def _rebuild(self, name: str) -> None:
        self._pools.pop(name, None)
        self._rejected.pop(name, None)
        members = self._members.get(name)
        if not members:
            self._members.pop(name, None)
            return
        specs: list[DeviceSpec] = []
        rejected: list[Rejected] = []
        label = ""
        for device_name in sorted(members):
            entry = self._entries[device_name]
            label = entry.label
            if entry.problem is not None:
                rejected.append(Rejected(device_name, entry.problem))
            else:
                specs.append(entry.spec)
        if specs:
            step = MAX_DEVICES_PER_SLICE
            chunks = tuple(SliceContent(tuple(specs[i : i + step])) for i in range(0, len(specs), step))
            pool = PoolSpec(name, label, chunks)
            # What the API server would refuse with a 422 is not published (the rest of the node is);
            # a write that can never succeed would otherwise fail every pass.
            problems = _pool_problems(pool)  # each device was checked on its way in
            if problems:
                reason = f"pool {name[:80]!r} cannot be published: {'; '.join(problems)[:400]}"
                rejected += [Rejected(spec.name, reason) for spec in specs]
            else:
                self._pools[name] = pool
        if rejected:
            self._rejected[name] = tuple(rejected)

    def state(self) -> DesiredState:
        """The desired pools (by name, in name order) and the devices that cannot be published."""
        return DesiredState(
            {name: self._pools[name] for name in sorted(self._pools)},
            tuple(r for name in sorted(self._rejected) for r in self._rejected[name]),
        )


def desired_state(node: str, driver: str, devices: Iterable[Device]) -> DesiredState:
    """Group the node's devices into pools and split each pool into slices of ≤128 devices."""
    builder = SliceBuilder(node, driver)
    builder.update(devices)
    return builder.state()


def slice_labels(driver: str, node: str, pool: PoolSpec) -> dict[str, str]:
    """Labels of every slice of ``pool`` (docs/abi.md §8.2).

    A node name longer than a label value allows (63) cannot be a label; the
    ``node`` label is then left out, which is harmless because the controller
    selects its slices by the ``spec.nodeName`` and ``spec.driver`` fields.
    """
    labels = {"driver": driver, f"{driver}/pool": pool.label}
    if LABEL_VALUE_RE.match(node):
        labels["node"] = node
    return labels


def validate_pool(pool: PoolSpec) -> list[str]:
    """Problems the API server or the scheduler would have with ``pool``; empty when none.

    Mirrors the checks the reference controller runs before publishing
    (duplicate device names) plus the API's validation limits.
    """
    problems = _pool_problems(pool)
    for content in pool.slices:
        problems += [p for spec in content.devices if (p := device_problem(spec)) is not None]
    return problems


def _pool_problems(pool: PoolSpec) -> list[str]:
    """The pool-wide checks of ``validate_pool``: name, slice sizes, duplicate devices."""
    problems: list[str] = []
    if len(pool.name) > MAX_POOL_NAME or not all(DNS_SUBDOMAIN_RE.match(p) for p in pool.name.split("/")):
        problems.append(f"pool name {pool.name!r} is not DNS subdomains separated by '/'")
    seen: set[str] = set()
    for content in pool.slices:
        if not 0 < len(content.devices) <= MAX_DEVICES_PER_SLICE:
            problems.append(f"slice with {len(content.devices)} devices")
        for spec in content.devices:
            if spec.name in seen:
                problems.append(f"duplicate device {spec.name}")
            seen.add(spec.name)
    return problems
