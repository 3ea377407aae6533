"""Which devices a pass re-reads, and what it keeps when a read fails (a simulated node in a temp dir)."""

from __future__ import annotations

import asyncio
import dataclasses
import re
from pathlib import Path
from typing import cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mockaccel_common.logging import get_logger
from mockaccel_common.simulator.engine import SimulatedNode
from mockaccel_common.simulator.topology import loads_topology
from mockaccel_common.sysfs.reader import class_dir, scan_devices_sync
from mockaccel_controller.adapters.k8s import KubeApi, Owner
from mockaccel_controller.domain import reconcile
from mockaccel_controller.domain.reconcile import Create, Delete, Plan, SliceWrite, StoredSlice, Update
from mockaccel_controller.domain.slices import desired_state
from mockaccel_controller.errors import ConflictError
from mockaccel_controller.publishing import WRITES_IN_FLIGHT, Publisher, _concurrently, affected, merge_reads
from mockaccel_controller.settings import Settings

TOPOLOGY = '[[node]]\nname = "n1"\n\n[[node.pf]]\nnuma_node = 0\ncount = 2\nmemory = "16Gi"\ntotal_vfs = 2\n'


def _node(tmp_path: Path) -> SimulatedNode:
    return SimulatedNode.create(tmp_path, loads_topology(TOPOLOGY).nodes[0])


def _break(root: Path, device: str, attribute: str) -> None:
    """Make one attribute unreadable (EISDIR on read), as EIO from a busy device would be."""
    path = class_dir(root) / device / attribute
    path.unlink()
    path.mkdir()


def _publisher(root: Path) -> Publisher:
    """A publisher whose reads are under test; ``refresh`` never calls the API."""
    settings = Settings.load(["--node-name", "n1", "--sysfs-root", str(root)], {})
    return Publisher(settings, cast(KubeApi, None), get_logger("test"))


def test_a_transient_read_error_keeps_the_last_good_device(tmp_path: Path) -> None:
    root = _node(tmp_path).root
    good = scan_devices_sync(root)
    assert [d.name for d in good.devices] == ["mock0", "mock1"]
    _break(root, "mock1", "capabilities")
    failing = scan_devices_sync(root)
    assert [d.name for d in failing.devices] == ["mock0"]
    assert [(s.name, s.transient) for s in failing.skipped] == [("mock1", True)]
    kept = merge_reads(good.by_name(), failing, None)
    assert kept == good.by_name()  # the last good reading, unchanged


def test_a_device_that_is_gone_is_dropped(tmp_path: Path) -> None:
    root = _node(tmp_path).root
    good = scan_devices_sync(root)
    (class_dir(root) / "mock1" / "capabilities").unlink()  # missing, not unreadable
    failing = scan_devices_sync(root)
    assert [(s.name, s.transient) for s in failing.skipped] == [("mock1", False)]
    assert list(merge_reads(good.by_name(), failing, None)) == ["mock0"]


@pytest.mark.asyncio
async def test_an_event_re_reads_only_the_devices_it_names(tmp_path: Path) -> None:
    sim = _node(tmp_path)
    publisher = _publisher(sim.root)
    first = await publisher.refresh(["mock0"])  # no scan yet: the first pass reads everything
    assert sorted(first) == ["mock0", "mock1"]
    sim.write("mock0", "status", "1")
    sim.write("mock1", "status", "1")  # changed too, but no event names it
    after = await publisher.refresh(["mock0"])
    assert after["mock0"].allocated
    assert not after["mock1"].allocated
    assert after["mock1"] is first["mock1"]  # the very same reading: mock1 was not read again
    unchanged = await publisher.refresh([])  # a slice or agent event: no sysfs read at all
    assert unchanged == after
    everything = await publisher.refresh(None)  # resync
    assert everything["mock1"].allocated


@pytest.mark.asyncio
async def test_a_named_vf_re_reads_its_pf_and_a_named_pf_its_vfs(tmp_path: Path) -> None:
    sim = _node(tmp_path)
    publisher = _publisher(sim.root)
    await publisher.refresh(None)
    sim.write("mock0", "sriov_numvfs", "2")  # the VFs appear, and the PF's sriov_numvfs changes
    known = await publisher.refresh(["mock0v0", "mock0v1"])
    assert sorted(known) == ["mock0", "mock0v0", "mock0v1", "mock1"]
    assert known["mock0"].sriov_numvfs == 2
    sim.remove_pf("mock0")  # the PF goes, and with it its VFs
    known = await publisher.refresh(["mock0"])
    assert sorted(known) == ["mock1"]


@pytest.mark.asyncio
async def test_an_unreadable_named_device_keeps_its_last_reading_and_recovers(tmp_path: Path) -> None:
    sim = _node(tmp_path)
    publisher = _publisher(sim.root)
    before = await publisher.refresh(None)
    status = class_dir(sim.root) / "mock1" / "status"
    good = status.read_text()
    _break(sim.root, "mock1", "status")
    kept = await publisher.refresh(["mock1"])
    assert kept["mock1"] is before["mock1"]
    status.rmdir()
    status.write_text(good.replace(good.strip(), f"{int(good, 16) | 1:#010x}"))  # readable again, and ALLOCATED
    assert (await publisher.refresh(["mock1"]))["mock1"].allocated


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        ({"mock0v1"}, {"mock0v1", "mock0"}),
        ({"mock0"}, {"mock0", "mock0v0", "mock0v1"}),
        ({"mock1"}, {"mock1"}),
        ({"not-a-device"}, {"not-a-device"}),
        (set(), set()),
    ],
    ids=["vf-brings-its-pf", "pf-brings-its-vfs", "pf-without-vfs", "unparsable-name", "nothing"],
)
def test_affected(tmp_path: Path, names: set[str], expected: set[str]) -> None:
    sim = _node(tmp_path)
    sim.write("mock0", "sriov_numvfs", "2")
    assert affected(names, scan_devices_sync(sim.root).by_name()) == expected


_PF = st.integers(0, 999).map(lambda i: f"mock{i}")
_VF = st.tuples(st.integers(0, 999), st.integers(0, 6)).map(lambda t: f"mock{t[0]}v{t[1]}")
_VF_RE = re.compile(r"(mock\d+)v\d+")


@given(st.sets(_PF | _VF | st.text(max_size=8), max_size=6))
def test_affected_adds_exactly_the_pfs_of_named_vfs(names: set[str]) -> None:
    out = affected(names, {})  # no VFs known yet: a PF brings nothing more
    pfs = {m.group(1) for name in names if (m := _VF_RE.fullmatch(name))}
    assert out == names | pfs


@pytest.mark.asyncio
async def test_writes_of_a_phase_run_at_most_limit_at_a_time_and_the_first_failure_is_raised() -> None:
    running = 0
    most = 0
    done: list[int] = []

    async def run(item: int) -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        try:
            await asyncio.sleep(0)
            if item == 5:
                raise ConflictError("slice changed")
            await asyncio.sleep(0)
            done.append(item)
        finally:
            running -= 1

    await _concurrently(list(range(5)), run, asyncio.Semaphore(2))
    assert most == 2
    assert sorted(done) == [0, 1, 2, 3, 4]
    with pytest.raises(ConflictError):
        await _concurrently(list(range(10)), run, asyncio.Semaphore(3))
    assert running == 0  # the rest were cancelled, none left behind


class _SlowApi:
    """Answers an update only when released, as a busy API server whose watch echo comes first."""

    def __init__(self) -> None:
        self.release = asyncio.Event()

    async def update(self, target: StoredSlice, content: SliceWrite) -> StoredSlice:
        await self.release.wait()
        return dataclasses.replace(target, resource_version="2")


@pytest.mark.asyncio
async def test_a_watch_echo_that_beats_the_writes_answer_is_judged_after_the_write(tmp_path: Path) -> None:
    api = _SlowApi()
    settings = Settings.load(["--node-name", "n1", "--sysfs-root", str(tmp_path)], {})
    publisher = Publisher(settings, cast(KubeApi, api), get_logger("test"))
    target = StoredSlice("s", "uid", "1", "n1/numa0", 1, 1, ())
    content = SliceWrite("n1/numa0", 1, 1, (), {})
    writing = asyncio.create_task(publisher._apply(Plan((Update(target, content),))))
    await asyncio.sleep(0)
    assert not publisher.someone_else_wrote("MODIFIED", "s", "2")  # our own echo, not known as ours yet
    assert not publisher.someone_else_wrote("MODIFIED", "other", "3")  # someone else's: judged later too
    api.release.set()
    await writing
    assert publisher.take_foreign_change()  # "3" was not ours
    assert not publisher.take_foreign_change()  # judged once
    assert not publisher.someone_else_wrote("MODIFIED", "s", "2")  # ours, now known
    assert publisher.someone_else_wrote("MODIFIED", "s", "4")  # not writing: at once


TWO_NUMA = (
    '[[node]]\nname = "n1"\n\n[[node.pf]]\nnuma_node = 0\ncount = 3\ntotal_vfs = 2\n\n'
    '[[node.pf]]\nnuma_node = 1\ncount = 2\ntotal_vfs = 2\n'
)


class _MemoryApi:
    """Stores slices in a dict and counts the writes in flight; each write yields to the loop first."""

    version = "v1"

    def __init__(self, stored: list[StoredSlice]) -> None:
        self.stored = {s.name: s for s in stored}
        self.in_flight = 0
        self.most_in_flight = 0
        self.owner_fetches = 0
        self._next = 100

    async def list_slices(self) -> tuple[list[StoredSlice], str]:
        return list(self.stored.values()), "1"

    async def node_owner(self) -> Owner:
        self.owner_fetches += 1
        return Owner("n1", "node-uid")

    async def _write(self, written: StoredSlice | None, gone: str | None = None) -> StoredSlice | None:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(0)
            if gone is not None:
                del self.stored[gone]
            if written is not None:
                self.stored[written.name] = written
            return written
        finally:
            self.in_flight -= 1

    def _stored(self, name: str, content: SliceWrite) -> StoredSlice:
        self._next += 1
        return StoredSlice(
            name, f"uid-{name}", str(self._next), content.pool, content.generation, content.slice_count,
            content.devices, dict(content.labels),
        )  # fmt: skip

    async def create(self, content: SliceWrite, owner: Owner) -> StoredSlice:
        written = await self._write(self._stored(f"slice-{self._next}", content))
        assert written is not None
        return written

    async def update(self, target: StoredSlice, content: SliceWrite) -> StoredSlice:
        written = await self._write(self._stored(target.name, content))
        assert written is not None
        return written

    async def delete(self, target: StoredSlice) -> None:
        await self._write(None, gone=target.name)


@pytest.mark.asyncio
async def test_the_first_pass_publishes_pool_by_pool_what_a_full_pass_would(tmp_path: Path) -> None:
    sim = SimulatedNode.create(tmp_path, loads_topology(TWO_NUMA).nodes[0])
    for pf in ("mock0", "mock3"):
        sim.write(pf, "sriov_numvfs", "2")
    settings = Settings.load(["--node-name", "n1", "--sysfs-root", str(sim.root)], {})
    desired = desired_state("n1", settings.driver_name, scan_devices_sync(sim.root).devices)
    numa0 = desired.pools["n1/numa0"].slices[0].devices
    stale = [
        StoredSlice("old0", "u0", "1", "n1/numa0", 1, 1, numa0[:2]),  # numa0, a different set of devices
        StoredSlice("gone", "u1", "1", "n1/numa7", 3, 1, numa0[2:3]),  # a NUMA node the node no longer has
    ]
    api = _MemoryApi(stale)
    publisher = Publisher(settings, cast(KubeApi, api), get_logger("test"))
    full = reconcile.plan(desired, stale, driver=settings.driver_name, node=settings.node_name)

    plan = await publisher.reconcile(["startup"], None)

    assert sorted(map(repr, plan.operations)) == sorted(map(repr, full.operations))
    assert plan.generations == full.generations
    assert {type(op) for op in plan.operations} == {Update, Create, Delete}
    assert api.owner_fetches == 1  # once for the pass, not once per pool
    assert 1 < api.most_in_flight <= WRITES_IN_FLIGHT
    # the API now holds what a second, ordinary pass finds nothing to change in
    assert sorted(s.pool for s in api.stored.values()) == ["n1/numa0", "n1/numa1"]
    assert (await publisher.reconcile(["resync"], None)).empty
