from __future__ import annotations

import itertools
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mockaccel_common.model import Device
from mockaccel_controller.domain.reconcile import Create, Delete, Plan, SliceWrite, StoredSlice, Update, plan
from mockaccel_controller.domain.slices import DesiredState, SliceBuilder, desired_state
from mockaccel_controller.domain.slices_test import pf, vf

DRIVER = "mock-accel.example.com"
NODE = "node-a"


class FakeStore:
    """What the API server does with a plan: preconditions, new resourceVersions, generated names."""

    def __init__(self) -> None:
        self.slices: dict[str, StoredSlice] = {}
        self._counter = itertools.count(1)
        self.writes = 0

    def apply(self, ops: Plan) -> None:
        for op in ops.operations:
            self.writes += 1
            version = str(next(self._counter))
            if isinstance(op, Delete):
                current = self.slices[op.target.name]
                assert (current.uid, current.resource_version) == (op.target.uid, op.target.resource_version)
                del self.slices[op.target.name]
            elif isinstance(op, Update):
                assert self.slices[op.target.name].resource_version == op.target.resource_version
                self.slices[op.target.name] = self._stored(op.target.name, op.target.uid, version, op.content)
            else:
                name = f"{NODE}-{DRIVER}-{version}"
                self.slices[name] = self._stored(name, f"uid-{version}", version, op.content)

    @staticmethod
    def _stored(name: str, uid: str, version: str, c: SliceWrite) -> StoredSlice:
        return StoredSlice(
            name=name,
            uid=uid,
            resource_version=version,
            pool=c.pool,
            generation=c.generation,
            slice_count=c.slice_count,
            devices=c.devices,
            labels=dict(c.labels),
        )

    def sync(self, desired: DesiredState) -> Plan:
        ops = plan(desired, self.slices.values(), driver=DRIVER, node=NODE)
        self.apply(ops)
        return ops


def state(devices: list[Device]) -> DesiredState:
    return desired_state(NODE, DRIVER, devices)


def two_numa() -> list[Device]:
    a, b = pf(0, numa=0), pf(1, numa=1)
    return [a, vf(a, 0), b]


def test_first_sync_creates_one_slice_per_pool_at_generation_one() -> None:
    store = FakeStore()
    ops = store.sync(state(two_numa()))
    assert [type(op) for op in ops.operations] == [Create, Create]
    assert {(s.pool, s.generation, s.slice_count) for s in store.slices.values()} == {
        ("node-a/numa0", 1, 1),
        ("node-a/numa1", 1, 1),
    }


def test_nothing_changed_means_no_operations() -> None:
    store = FakeStore()
    store.sync(state(two_numa()))
    assert store.sync(state(two_numa())).empty


def test_a_new_vf_updates_the_pools_one_slice_in_place() -> None:
    """Before: the slice was deleted and a new one created, leaving the pool empty in between."""
    store = FakeStore()
    store.sync(state(two_numa()))
    before = {s.pool: s.name for s in store.slices.values()}
    devices = two_numa()
    devices.append(vf(devices[0], 1))
    ops = store.sync(state(devices))
    assert [type(op) for op in ops.operations] == [Update]
    assert ops.generations == {"node-a/numa0": 1, "node-a/numa1": 1}
    assert {s.pool: s.name for s in store.slices.values()} == before


def test_an_attribute_change_in_one_slice_updates_in_place_without_a_bump() -> None:
    store = FakeStore()
    store.sync(state(two_numa()))
    devices = two_numa()
    devices[2] = replace(devices[2], memory_size=devices[2].memory_size * 2)
    ops = store.sync(state(devices))
    assert [type(op) for op in ops.operations] == [Update]
    assert ops.generations["node-a/numa1"] == 1


def test_a_slice_deleted_from_outside_is_recreated_with_a_bumped_generation() -> None:
    store = FakeStore()
    store.sync(state([pf(i, numa=0) for i in range(200)]))  # two slices: 128 + 72
    victim = sorted(store.slices)[0]
    del store.slices[victim]
    ops = store.sync(state([pf(i, numa=0) for i in range(200)]))
    assert (ops.count(Update), ops.count(Create)) == (1, 1)
    assert {s.generation for s in store.slices.values()} == {2}


def test_a_pool_that_empties_is_deleted() -> None:
    store = FakeStore()
    store.sync(state(two_numa()))
    ops = store.sync(state(two_numa()[:2]))
    assert [type(op) for op in ops.operations] == [Delete]
    assert {s.pool for s in store.slices.values()} == {"node-a/numa0"}


def test_a_duplicated_slice_is_deleted() -> None:
    store = FakeStore()
    store.sync(state(two_numa()))
    original = next(s for s in store.slices.values() if s.pool == "node-a/numa1")
    store.slices["dup"] = replace(original, name="dup", uid="dup-uid")
    ops = store.sync(state(two_numa()))
    assert [type(op) for op in ops.operations] == [Delete]
    assert len([s for s in store.slices.values() if s.pool == "node-a/numa1"]) == 1


def test_stripped_labels_and_foreign_fields_are_restored() -> None:
    store = FakeStore()
    store.sync(state(two_numa()))
    name, stored = next(iter(store.slices.items()))
    store.slices[name] = replace(stored, labels={}, foreign_spec=("sharedCounters",))
    ops = store.sync(state(two_numa()))
    assert [type(op) for op in ops.operations] == [Update]


@pytest.mark.parametrize("pfs", [1, 16, 17, 40], ids=["1pf", "128-devices", "136-devices", "320-devices"])
def test_resource_slice_count_matches_the_slices_of_each_generation(pfs: int) -> None:
    store = FakeStore()
    parents = [pf(i, numa=0) for i in range(pfs)]
    store.sync(state([d for p in parents for d in (p, *(vf(p, i) for i in range(7)))]))
    counts = {s.slice_count for s in store.slices.values()}
    assert counts == {len(store.slices)} == {-(-pfs * 8 // 128)}


def _functions(indices: list[int]) -> list[Device]:
    """PF i (NUMA i % 3, or none) with i % 4 VFs."""
    parents = [pf(i, numa=i % 3 or None) for i in indices]
    return [d for p in parents for d in (p, *(vf(p, j) for j in range(p.pci_address.bus % 4)))]


device_sets = st.lists(st.integers(0, 60), unique=True, max_size=40).map(_functions)


@settings(max_examples=80, deadline=None)
@given(device_sets, device_sets, st.integers(0, 3))
def test_any_change_converges_in_one_pass_with_consistent_pools(
    before: list[Device], after: list[Device], lose: int
) -> None:
    store = FakeStore()
    store.sync(state(before))
    for name in sorted(store.slices)[:lose]:  # slices deleted from outside (kubelet, a user)
        del store.slices[name]
    store.sync(state(after))
    assert store.sync(state(after)).empty
    published = sorted(d.name for s in store.slices.values() for d in s.devices)
    assert published == sorted(d.name for d in after)
    by_pool: dict[str, list[StoredSlice]] = {}
    for s in store.slices.values():
        by_pool.setdefault(s.pool, []).append(s)
    for slices in by_pool.values():
        assert len({s.generation for s in slices}) == 1
        assert {s.slice_count for s in slices} == {len(slices)}


@settings(max_examples=40, deadline=None)
@given(device_sets)
def test_stored_equal_to_desired_yields_no_operations(devices: list[Device]) -> None:
    store = FakeStore()
    store.sync(state(devices))
    writes = store.writes
    assert plan(state(devices), store.slices.values(), driver=DRIVER, node=NODE).empty
    assert store.writes == writes


class RecordingStore(FakeStore):
    """A FakeStore that records the slices of every pool after each single write (a watcher's view)."""

    def __init__(self) -> None:
        super().__init__()
        self.views: list[dict[str, int]] = []

    def apply(self, ops: Plan) -> None:
        for op in ops.operations:
            super().apply(Plan((op,)))
            counts: dict[str, int] = {}
            for s in self.slices.values():
                counts[s.pool] = counts.get(s.pool, 0) + 1
            self.views.append(counts)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.integers(0, 300), min_size=1, max_size=4, unique=True), min_size=2, max_size=5))
def test_a_pool_that_stays_desired_never_has_zero_slices(steps: list[list[int]]) -> None:
    """Every intermediate state a watcher can see, across device sets that grow past 128 and shrink."""
    store = RecordingStore()
    previous: set[str] = set()
    for sizes in steps:
        devices = [pf(i, numa=n % 2) for n, size in enumerate(sizes[:2]) for i in range(n * 1000, n * 1000 + size)]
        desired = state(devices)
        start = len(store.views)
        store.sync(desired)
        for view in store.views[start:]:
            for pool in previous & set(desired.pools):
                assert view.get(pool, 0) > 0, f"pool {pool} had no slice during a change"
        previous = set(desired.pools)
        assert store.sync(desired).empty


@settings(max_examples=60, deadline=None)
@given(st.lists(device_sets, min_size=1, max_size=5))
def test_planning_only_the_pools_the_builder_names_converges_like_a_full_plan(steps: list[list[Device]]) -> None:
    store = FakeStore()
    builder = SliceBuilder(NODE, DRIVER)
    for devices in steps:
        dirty = builder.replace(devices)
        desired = builder.state()
        store.apply(plan(desired, store.slices.values(), driver=DRIVER, node=NODE, pools=dirty))
        assert plan(desired, store.slices.values(), driver=DRIVER, node=NODE).empty  # nothing left elsewhere
        assert desired == state(devices)


def test_a_plan_limited_to_some_pools_leaves_the_others_alone() -> None:
    store = FakeStore()
    store.sync(state(two_numa()))
    a = pf(0, numa=0)
    desired = state([a, pf(1, numa=1, memory=2 * 2**30)])  # both pools differ now
    ops = plan(desired, store.slices.values(), driver=DRIVER, node=NODE, pools={f"{NODE}/numa1"})
    assert {op.content.pool for op in ops.operations if isinstance(op, Update)} == {f"{NODE}/numa1"}
    assert ops.count(Delete) == ops.count(Create) == 0
