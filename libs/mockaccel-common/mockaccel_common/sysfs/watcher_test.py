from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from mockaccel_common.simulator.engine import SimulatedNode
from mockaccel_common.simulator.topology import loads_topology
from mockaccel_common.sysfs.watcher import SysfsWatcher

TOPOLOGY = '[[node]]\nname = "n1"\n[[node.pf]]\nnuma_node = 0\ncount = 2\ntotal_vfs = 4\n'
pytestmark = pytest.mark.asyncio


async def wait_for(reasons: list[str], wanted: str, deadline: float = 5.0) -> None:
    async with asyncio.timeout(deadline):
        while wanted not in reasons:
            await asyncio.sleep(0.01)


async def test_device_add_attribute_write_and_removal_are_reported(tmp_path: Path) -> None:
    sim = SimulatedNode.create(tmp_path / "sys", loads_topology(TOPOLOGY).node("n1"))
    reasons: list[str] = []
    watcher = SysfsWatcher(sim.root, reasons.append)
    watcher.start()
    try:
        assert watcher.watched_devices == {"mock0", "mock1"}
        sim.write("mock0", "status", "1")
        await wait_for(reasons, "device_changed")
        sim.write("mock0", "sriov_numvfs", "2")
        await wait_for(reasons, "device_set_changed")
        assert watcher.watched_devices == {"mock0", "mock1", "mock0v0", "mock0v1"}
        reasons.clear()
        sim.remove_pf("mock1")
        await wait_for(reasons, "device_set_changed")
        async with asyncio.timeout(5):
            while "mock1" in watcher.watched_devices:
                await asyncio.sleep(0.01)
    finally:
        watcher.close()


async def test_a_class_directory_that_appears_later_is_picked_up(tmp_path: Path) -> None:
    root = tmp_path / "sys"
    root.mkdir()
    reasons: list[str] = []
    watcher = SysfsWatcher(root, reasons.append)
    watcher.start()
    try:
        SimulatedNode.create(root, loads_topology(TOPOLOGY).node("n1"))
        async with asyncio.timeout(5):
            while watcher.watched_devices != {"mock0", "mock1"}:
                await asyncio.sleep(0.01)
        assert reasons
    finally:
        watcher.close()


async def test_an_attribute_filter_ignores_other_writes(tmp_path: Path) -> None:
    sim = SimulatedNode.create(tmp_path / "sys", loads_topology(TOPOLOGY).node("n1"))
    reasons: list[str] = []
    watcher = SysfsWatcher(sim.root, reasons.append, attributes=("health",))
    watcher.start()
    try:
        sim.write("mock0", "status", "1")  # filtered out
        sim.set_health("mock1", healthy=False)
        await wait_for(reasons, "device_changed")
        assert reasons == ["device_changed"]
    finally:
        watcher.close()
