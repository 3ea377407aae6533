from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from mockaccel_common.simulator.engine import SimulatedNode
from mockaccel_common.simulator.topology import loads_topology
from mockaccel_common.sysfs.watcher import SysfsWatcher

TOPOLOGY = '[[node]]\nname = "n1"\n[[node.pf]]\nnuma_node = 0\ncount = 2\ntotal_vfs = 4\n'
pytestmark = pytest.mark.asyncio


class Recorder(list[str]):
    """The reasons reported, in order; ``named`` the devices each report named (None: rescan all)."""

    def __init__(self) -> None:
        super().__init__()
        self.named: list[tuple[str, frozenset[str] | None]] = []

    def __call__(self, reason: str, devices: frozenset[str] | None) -> None:
        self.append(reason)
        self.named.append((reason, devices))

    def devices(self, reason: str) -> set[str]:
        """Every device named by reports of ``reason``."""
        return {d for r, names in self.named if r == reason for d in (names or ())}


async def wait_for(reasons: list[str], wanted: str, deadline: float = 5.0) -> None:
    async with asyncio.timeout(deadline):
        while wanted not in reasons:
            await asyncio.sleep(0.01)


async def test_device_add_attribute_write_and_removal_are_reported(tmp_path: Path) -> None:
    sim = SimulatedNode.create(tmp_path / "sys", loads_topology(TOPOLOGY).node("n1"))
    reasons = Recorder()
    watcher = SysfsWatcher(sim.root, reasons)
    watcher.start()
    try:
        assert watcher.watched_devices == {"mock0", "mock1"}
        sim.write("mock0", "status", "1")
        await wait_for(reasons, "device_changed")
        assert reasons.devices("device_changed") == {"mock0"}  # only the written device is named
        sim.write("mock0", "sriov_numvfs", "2")
        await wait_for(reasons, "device_set_changed")
        assert watcher.watched_devices == {"mock0", "mock1", "mock0v0", "mock0v1"}
        async with asyncio.timeout(5):
            while not {"mock0v0", "mock0v1"} <= reasons.devices("device_set_changed"):
                await asyncio.sleep(0.01)
        assert reasons.devices("device_set_changed") <= {"mock0", "mock0v0", "mock0v1"}
        assert all(names is not None for _, names in reasons.named)  # nothing asked for a full rescan
        reasons.clear()
        reasons.named.clear()
        sim.remove_pf("mock1")
        await wait_for(reasons, "device_set_changed")
        assert "mock1" in reasons.devices("device_set_changed")
        async with asyncio.timeout(5):
            while "mock1" in watcher.watched_devices:
                await asyncio.sleep(0.01)
    finally:
        watcher.close()


async def test_a_class_directory_that_appears_later_is_picked_up(tmp_path: Path) -> None:
    root = tmp_path / "sys"
    root.mkdir()
    reasons = Recorder()
    watcher = SysfsWatcher(root, reasons)
    watcher.start()
    try:
        SimulatedNode.create(root, loads_topology(TOPOLOGY).node("n1"))
        async with asyncio.timeout(5):
            while watcher.watched_devices != {"mock0", "mock1"}:
                await asyncio.sleep(0.01)
        assert ("class_dir_appeared", None) in reasons.named  # a new class directory: rescan everything
    finally:
        watcher.close()


async def test_an_attribute_filter_ignores_other_writes(tmp_path: Path) -> None:
    sim = SimulatedNode.create(tmp_path / "sys", loads_topology(TOPOLOGY).node("n1"))
    reasons = Recorder()
    watcher = SysfsWatcher(sim.root, reasons, attributes=("health",))
    watcher.start()
    try:
        sim.write("mock0", "status", "1")  # filtered out
        sim.set_health("mock1", healthy=False)
        await wait_for(reasons, "device_changed")
        assert reasons == ["device_changed"]
        assert "mock1" in reasons.devices("device_changed")  # (mock0's status write rewrites its health too)
    finally:
        watcher.close()
