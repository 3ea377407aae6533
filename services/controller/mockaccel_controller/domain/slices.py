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

import re
from collections import defaultdict
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


@dataclass(frozen=True)
class DeviceSpec:
    """One device entry of a slice, in canonical form.

    ``extras`` names fields a stored device carries that this controller never
    writes (taints, counters …); a non-empty value makes it differ from any
    desired device, so the next update removes them.
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


Checked = tuple[DeviceSpec, str | None]
"""A device's slice entry and the problem the API server would have with it (None: fine)."""


@dataclass(frozen=True)
class DesiredState:
    pools: dict[str, PoolSpec] = field(default_factory=dict)
    rejected: tuple[Rejected, ...] = ()
    checked: Mapping[Device, Checked] = field(default_factory=dict, compare=False, repr=False)
    """Each device's entry, to pass to the next ``desired_state`` call (a device read again unchanged
    is not converted and checked again: on a 1,024-device node that was most of a pass)."""

    @property
    def device_count(self) -> int:
        return sum(len(s.devices) for p in self.pools.values() for s in p.slices)


def device_spec(device: Device, driver: str) -> DeviceSpec:
    """The slice entry of one function (docs/abi.md §8.2 table)."""
    attributes: dict[str, Attribute] = {
        f"{driver}/uuid": Attribute("string", str(device.uuid)),
        f"{driver}/memory": Attribute("int", device.memory_size),
        f"{driver}/deviceType": Attribute("string", device.kind.value),
        f"{driver}/pciAddress": Attribute("string", str(device.pci_address)),
        f"{driver}/capabilities": Attribute("int", int(device.capabilities)),
    }
    if device.numa_node is not None:
        attributes[f"{driver}/numaNode"] = Attribute("int", device.numa_node)
    if device.kind is DeviceKind.VF:
        if device.physfn is not None:
            attributes[f"{driver}/physfn"] = Attribute("string", device.physfn)
        if device.vf_index is not None:
            attributes[f"{driver}/vfIndex"] = Attribute("int", device.vf_index)
    if device.pcie_root is not None:
        attributes[PCIE_ROOT_ATTRIBUTE] = Attribute("string", device.pcie_root)
    return DeviceSpec.of(device.name, attributes, {f"{driver}/memory": canonical_bytes(device.memory_size)})


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
        domain, _, ident = key.rpartition("/")
        if not C_IDENTIFIER_RE.match(ident) or (domain and not DNS_SUBDOMAIN_RE.match(domain)):
            return f"bad qualified name {key}"
    return None


def desired_state(
    node: str, driver: str, devices: Iterable[Device], checked: Mapping[Device, Checked] | None = None
) -> DesiredState:
    """Group the node's devices into pools and split each pool into slices of ≤128 devices.

    ``checked`` is the previous state's ``checked``: entries of devices that did not change are reused.
    """
    by_pool: dict[str, list[DeviceSpec]] = defaultdict(list)
    labels: dict[str, str] = {}
    rejected: list[Rejected] = []
    previous = checked or {}
    now: dict[Device, Checked] = {}
    for device in devices:
        entry = previous.get(device)
        if entry is None:
            spec = device_spec(device, driver)
            entry = (spec, device_problem(spec))
        now[device] = entry
        spec, problem = entry
        if problem is not None:
            rejected.append(Rejected(device.name, problem))
            continue
        name = pool_name(node, device.numa_node)
        by_pool[name].append(spec)
        labels[name] = pool_label(device.numa_node)
    pools: dict[str, PoolSpec] = {}
    for name, specs in sorted(by_pool.items()):
        specs.sort(key=lambda s: s.name)
        step = MAX_DEVICES_PER_SLICE
        chunks = tuple(SliceContent(tuple(specs[i : i + step])) for i in range(0, len(specs), step))
        pool = PoolSpec(name, labels[name], chunks)
        # What the API server would refuse with a 422 is not published (the rest of the node is);
        # a write that can never succeed would otherwise fail every pass.
        problems = _pool_problems(pool)  # each device was checked above
        if problems:
            reason = f"pool {name[:80]!r} cannot be published: {'; '.join(problems)[:400]}"
            rejected += [Rejected(spec.name, reason) for chunk in chunks for spec in chunk.devices]
            continue
        pools[name] = pool
    return DesiredState(pools, tuple(rejected), now)


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
