from __future__ import annotations

import dataclasses
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mockaccel_common.model import Device, DeviceKind, PciAddress
from mockaccel_common.quantity import canonical_bytes, canonicalise
from mockaccel_common.regmap import Capability, Status
from mockaccel_controller.domain.slices import (
    MAX_DEVICES_PER_SLICE,
    Attribute,
    SliceBuilder,
    desired_state,
    slice_labels,
    validate_pool,
)

DRIVER = "mock-accel.example.com"
GiB = 2**30


def pf(index: int, numa: int | None = 0, memory: int = 16 * GiB) -> Device:
    return Device(
        name=f"mock{index}",
        kind=DeviceKind.PF,
        uuid=uuid.UUID(int=index + 1),
        memory_size=memory,
        capabilities=Capability.COMPUTE | Capability.SRIOV,
        status=Status.READY,
        numa_node=numa,
        pci_address=PciAddress(0, 0x11 + index, 0, 0),
        pcie_root="pci0000:10" if numa is not None else "pci0000:00",
        fw_version="1.0.0",
        sriov_totalvfs=4,
    )


def vf(parent: Device, index: int) -> Device:
    return Device(
        name=f"{parent.name}v{index}",
        kind=DeviceKind.VF,
        uuid=uuid.UUID(int=1000 + index),
        memory_size=2 * GiB,
        capabilities=Capability.COMPUTE,
        status=Status.READY,
        numa_node=parent.numa_node,
        pci_address=parent.pci_address.with_function(index + 1),
        pcie_root=parent.pcie_root,
        fw_version="1.0.0",
        physfn=parent.name,
        vf_index=index,
    )


def test_a_vf_carries_every_attribute_of_the_abi_table() -> None:
    parent = pf(0)
    state = desired_state("node-a", DRIVER, [parent, vf(parent, 1)])
    (content,) = state.pools["node-a/numa0"].slices
    device = dict(content.devices[1].attributes)
    assert content.devices[1].name == "mock0v1"
    assert device == {
        f"{DRIVER}/uuid": Attribute("string", str(uuid.UUID(int=1001))),
        f"{DRIVER}/memory": Attribute("int", 2 * GiB),
        f"{DRIVER}/deviceType": Attribute("string", "vf"),
        f"{DRIVER}/pciAddress": Attribute("string", "0000:11:00.2"),
        f"{DRIVER}/numaNode": Attribute("int", 0),
        f"{DRIVER}/capabilities": Attribute("int", int(Capability.COMPUTE)),
        f"{DRIVER}/physfn": Attribute("string", "mock0"),
        f"{DRIVER}/vfIndex": Attribute("int", 1),
        "resource.kubernetes.io/pcieRoot": Attribute("string", "pci0000:10"),
    }
    assert dict(content.devices[1].capacity) == {f"{DRIVER}/memory": "2Gi"}


def test_a_function_without_numa_goes_to_numa_none_without_the_attribute() -> None:
    state = desired_state("node-a", DRIVER, [pf(0, numa=None), pf(1, numa=1)])
    assert sorted(state.pools) == ["node-a/numa-none", "node-a/numa1"]
    (device,) = state.pools["node-a/numa-none"].slices[0].devices
    assert f"{DRIVER}/numaNode" not in dict(device.attributes)
    assert slice_labels(DRIVER, "node-a", state.pools["node-a/numa-none"]) == {
        "driver": DRIVER,
        "node": "node-a",
        f"{DRIVER}/pool": "numa-none",
    }


def test_a_node_name_too_long_for_a_label_is_left_out_of_the_labels() -> None:
    node = "n" * 40 + "." + "m" * 40
    state = desired_state(node, DRIVER, [pf(0)])
    assert "node" not in slice_labels(DRIVER, node, state.pools[f"{node}/numa0"])


def test_a_device_whose_memory_does_not_fit_int64_is_rejected_not_published() -> None:
    state = desired_state("n", DRIVER, [pf(0, memory=2**64 - 1), pf(1)])
    assert [r.name for r in state.rejected] == ["mock0"]
    assert "int64" in state.rejected[0].reason
    assert state.device_count == 1


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (16 * GiB, "16Gi"),
        (2 * GiB, "2Gi"),
        (1536 * 2**20, "1536Mi"),
        (1024, "1Ki"),
        (1000, "1k"),
        (1500, "1500"),
        (0, "0"),
        (3 * 10**9, "3G"),
        (17179869185, "17179869185"),
    ],
    ids=["16Gi", "2Gi", "1536Mi", "1Ki", "1k", "plain", "zero", "3G", "odd"],
)
def test_quantities_are_written_in_the_servers_canonical_form(value: int, text: str) -> None:
    assert canonical_bytes(value) == text


@pytest.mark.parametrize(
    ("stored", "canonical"),
    [("16Gi", "16Gi"), ("16384Mi", "16Gi"), ("1024Ki", "1Mi"), ("1000", "1k"), ("1.5Gi", "1.5Gi"), ("2e3", "2e3")],
    ids=["same", "mebi-to-gibi", "kibi-to-mebi", "decimal", "fraction-untouched", "exponent-untouched"],
)
def test_stored_quantities_compare_in_canonical_form(stored: str, canonical: str) -> None:
    assert canonicalise(stored) == canonical


def devices_strategy() -> st.SearchStrategy[list[Device]]:
    """Random PFs (index unique) with random NUMA nodes and VF counts."""

    @st.composite
    def build(draw: st.DrawFn) -> list[Device]:
        indices = draw(st.lists(st.integers(0, 200), unique=True, max_size=60))
        devices: list[Device] = []
        for index in indices:
            parent = pf(index, numa=draw(st.sampled_from([None, 0, 1, 13])), memory=draw(st.integers(0, 2**40)))
            devices.append(parent)
            devices += [vf(parent, i) for i in range(draw(st.integers(0, 7)))]
        return devices

    return build()


@settings(max_examples=60, deadline=None)
@given(devices_strategy())
def test_desired_slices_always_validate(devices: list[Device]) -> None:
    state = desired_state("node-a.example", DRIVER, devices)
    assert state.device_count == len(devices)
    for pool in state.pools.values():
        assert validate_pool(pool) == []
        names = [d.name for s in pool.slices for d in s.devices]
        assert names == sorted(names)


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 700))
def test_large_pools_split_into_full_slices_of_128(count: int) -> None:
    devices = [pf(i, numa=0) for i in range(count)]
    pool = desired_state("n", DRIVER, devices).pools["n/numa0"]
    sizes = [len(s.devices) for s in pool.slices]
    assert len(sizes) == -(-count // MAX_DEVICES_PER_SLICE)
    assert all(size == MAX_DEVICES_PER_SLICE for size in sizes[:-1])
    assert sum(sizes) == count


def test_a_250_character_node_name_makes_the_pool_unpublishable_not_an_api_error() -> None:
    """``<node>/numa0`` would be 256 characters; the API server answers 422 to every write of it."""
    node = "n" * 250
    state = desired_state(node, DRIVER, [pf(0), pf(1)])
    assert state.pools == {}
    assert [r.name for r in state.rejected] == ["mock0", "mock1"]
    assert all("cannot be published" in r.reason and len(r.reason) < 600 for r in state.rejected)
    short = desired_state("n" * 240, DRIVER, [pf(0)])  # 246 characters: fine
    assert list(short.pools) == ["n" * 240 + "/numa0"]


def test_the_builder_reuses_an_unchanged_entry_and_rebuilds_only_the_pools_that_changed() -> None:
    parent = pf(0)
    builder = SliceBuilder("n", DRIVER)
    assert builder.update([parent, vf(parent, 0), pf(1)]) == {"n/numa0"}
    first = builder.state()
    moved = pf(1, numa=1)
    assert builder.update([parent, moved]) == {"n/numa0", "n/numa1"}  # mock1 left numa0 for numa1
    second = builder.state()
    assert second == desired_state("n", DRIVER, [parent, vf(parent, 0), moved])
    assert second.pools["n/numa0"].slices[0].devices[0] is first.pools["n/numa0"].slices[0].devices[0]
    assert builder.update([dataclasses.replace(parent, status=Status.ALLOCATED)]) == set()  # same entry
    assert builder.update([], gone=["mock1"]) == {"n/numa1"}
    assert list(builder.state().pools) == ["n/numa0"]
    assert builder.replace([vf(parent, 0)]) == {"n/numa0"}
    assert builder.state() == desired_state("n", DRIVER, [vf(parent, 0)])
    assert len(builder) == 1


def test_a_rejected_device_is_reported_by_the_builder_until_it_is_fixed() -> None:
    builder = SliceBuilder("n", DRIVER)
    builder.update([pf(0, memory=2**64 - 1), pf(1)])
    assert [r.name for r in builder.state().rejected] == ["mock0"]
    assert builder.update([pf(0)]) == {"n/numa0"}
    assert builder.state().rejected == ()
    assert builder.state().device_count == 2


_readings = st.lists(
    st.tuples(
        st.integers(0, 5),  # PF index
        st.one_of(st.none(), st.integers(0, 2)),  # NUMA node
        st.sampled_from([16 * GiB, 2**64 - 1]),  # memory: the second cannot be published
        st.booleans(),  # gone instead of read
    ),
    max_size=12,
)


@settings(max_examples=200, deadline=None)
@given(st.lists(_readings, min_size=1, max_size=6), st.integers(1, 3))
def test_the_builder_after_any_updates_equals_a_fresh_build_and_names_every_changed_pool(
    passes: list[list[tuple[int, int | None, int, bool]]], vfs: int
) -> None:
    builder = SliceBuilder("n", DRIVER)
    known: dict[str, Device] = {}
    before = builder.state()
    for readings in passes:
        read: list[Device] = []
        gone: list[str] = []
        last = {index: (numa, memory, is_gone) for index, numa, memory, is_gone in readings}  # one per pass
        for index, (numa, memory, is_gone) in last.items():
            parent = pf(index, numa=numa, memory=memory)
            family = [parent, *(vf(parent, i) for i in range(vfs))]
            if is_gone:
                gone += [d.name for d in family]
                for d in family:
                    known.pop(d.name, None)
            else:
                read += family
                known.update((d.name, d) for d in family)
        dirty = builder.update(read, gone)
        after = builder.state()
        assert after == desired_state("n", DRIVER, known.values())
        changed = {p for p in before.pools.keys() | after.pools.keys() if before.pools.get(p) != after.pools.get(p)}
        assert changed <= dirty
        before = after
