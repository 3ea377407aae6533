"""Plan the writes that make stored ResourceSlices equal to the desired ones.

A copy of the reference resourceslice controller's ``syncPool``
(k8s.io/dynamic-resource-allocation v0.35.0, see kubernetes-dra.md §3.2),
as a pure function from (desired, stored) to an ordered list of operations:

1. per pool, the highest stored generation is current; lower ones are obsolete;
2. current slices are matched to desired slices by their set of device names;
   desired slices left over then take the remaining current slices in order
   (index matching, as the reference controller does), so a changed slice is
   updated in place instead of deleted and re-created; current slices still
   left over are obsolete;
3. a matched slice needs an update when its devices, pool fields or our
   labels differ;
4. the generation is bumped when the change touches more than one slice
   (several updates, any create, or an update next to a delete), and then
   every matched slice is rewritten with it; consumers only trust a pool once
   they see ``resourceSliceCount`` slices of one generation, so a multi-slice
   change is never half-visible;
5. operations run updates first, then creates, then deletes (with uid +
   resourceVersion preconditions), so a pool that stays desired never has
   zero slices during a change;
6. pools that are no longer desired lose all their slices.

When nothing differs the plan is empty: an idle controller makes no writes.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mockaccel_controller.domain.slices import DesiredState, DeviceSpec, PoolSpec, slice_labels


@dataclass(frozen=True)
class StoredSlice:
    """A ResourceSlice of this node and driver as the API server holds it.

    ``foreign_spec`` names spec fields this controller never sets (nodeSelector,
    sharedCounters …); ``raw`` is the adapter's object, handed back for updates
    so metadata we do not manage (ownerReferences, annotations) is kept.
    """

    name: str
    uid: str
    resource_version: str
    pool: str
    generation: int
    slice_count: int
    devices: tuple[DeviceSpec, ...]
    labels: Mapping[str, str] = field(default_factory=dict)
    foreign_spec: tuple[str, ...] = ()
    raw: Any = field(default=None, compare=False, repr=False)

    @property
    def device_names(self) -> frozenset[str]:
        return frozenset(d.name for d in self.devices)


@dataclass(frozen=True)
class SliceWrite:
    """The content a create or update writes."""

    pool: str
    generation: int
    slice_count: int
    devices: tuple[DeviceSpec, ...]
    labels: Mapping[str, str]


@dataclass(frozen=True)
class Delete:
    target: StoredSlice


@dataclass(frozen=True)
class Update:
    target: StoredSlice
    content: SliceWrite


@dataclass(frozen=True)
class Create:
    content: SliceWrite


Operation = Delete | Update | Create


@dataclass(frozen=True)
class Plan:
    operations: tuple[Operation, ...] = ()
    generations: Mapping[str, int] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not self.operations

    def count(self, kind: type[Operation]) -> int:
        return sum(1 for op in self.operations if isinstance(op, kind))


def _needs_update(stored: StoredSlice, content: SliceWrite) -> bool:
    return (
        stored.devices != content.devices
        or stored.generation != content.generation
        or stored.slice_count != content.slice_count
        or bool(stored.foreign_spec)
        or any(stored.labels.get(k) != v for k, v in content.labels.items())
    )


def _plan_pool(
    pool: str, desired: PoolSpec | None, stored: list[StoredSlice], labels: Mapping[str, str]
) -> tuple[list[Delete], list[Update], list[Create], int]:
    generation = max((s.generation for s in stored), default=0)
    if desired is None:
        return [Delete(s) for s in sorted(stored, key=lambda s: s.name)], [], [], generation
    obsolete = [s for s in stored if s.generation < generation]
    wanted: dict[frozenset[str], list[int]] = defaultdict(list)
    for index, content in enumerate(desired.slices):
        wanted[content.device_names].append(index)
    matched: dict[int, StoredSlice] = {}
    leftover: list[StoredSlice] = []
    for current in sorted((s for s in stored if s.generation == generation), key=lambda s: s.name):
        candidates = wanted.get(current.device_names)
        if candidates:
            matched[candidates.pop(0)] = current
        else:
            leftover.append(current)
    count = len(desired.slices)
    for index in range(count):
        if index not in matched and leftover:
            matched[index] = leftover.pop(0)  # updated in place
    obsolete += leftover

    def write(index: int, gen: int) -> SliceWrite:
        return SliceWrite(pool, gen, count, desired.slices[index].devices, labels)

    to_create = [i for i in range(count) if i not in matched]
    to_update = [i for i, s in sorted(matched.items()) if _needs_update(s, write(i, generation))]
    if len(to_update) > 1 or to_create or (to_update and leftover):
        generation += 1
        to_update = sorted(matched)
    deletes = [Delete(s) for s in sorted(obsolete, key=lambda s: s.name)]
    updates = [Update(matched[i], write(i, generation)) for i in to_update]
    creates = [Create(write(i, generation)) for i in to_create]
    return deletes, updates, creates, generation


def plan(
    desired: DesiredState,
    stored: Iterable[StoredSlice],
    *,
    driver: str,
    node: str,
    pools: Collection[str] | None = None,
) -> Plan:
    """The ordered operations that turn ``stored`` into ``desired`` (empty when equal).

    ``pools`` limits the plan to those pools (None: all): a caller that knows
    which pools changed since a plan that left nothing to do need not compare
    the others' devices again.
    """
    by_pool: dict[str, list[StoredSlice]] = defaultdict(list)
    for s in stored:
        if pools is None or s.pool in pools:
            by_pool[s.pool].append(s)
    wanted = desired.pools.keys() if pools is None else desired.pools.keys() & pools
    deletes: list[Delete] = []
    updates: list[Update] = []
    creates: list[Create] = []
    generations: dict[str, int] = {}
    for pool in sorted(by_pool.keys() | wanted):
        spec = desired.pools.get(pool)
        labels = slice_labels(driver, node, spec) if spec is not None else {}
        d, u, c, generation = _plan_pool(pool, spec, by_pool.get(pool, []), labels)
        deletes += d
        updates += u
        creates += c
        if spec is not None:
            generations[pool] = generation
    return Plan((*updates, *creates, *deletes), generations)
