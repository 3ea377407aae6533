from __future__ import annotations

import errno
from pathlib import Path

import pytest

from mockaccel_common.errors import SysfsError
from mockaccel_common.simulator.engine import SimulatedNode
from mockaccel_common.simulator.topology import loads_topology
from mockaccel_common.sysfs.writer import SysfsWriter

NODE = '[[node]]\nname = "n"\n[[node.pf]]\ntotal_vfs = 2\n'


@pytest.mark.asyncio
async def test_simulated_tree_applies_driver_rules(tmp_path: Path) -> None:
    sim = SimulatedNode.create(tmp_path / "sys", loads_topology(NODE).node("n"))
    writer = SysfsWriter(sim.root)
    await writer.set_allocated("mock0", True)
    assert (sim.root / "class/mock-accel/mock0/status").read_text() == "0x00000003\n"
    await writer.set_num_vfs("mock0", 2)
    assert (sim.root / "class/mock-accel/mock0v1").is_dir()
    with pytest.raises(SysfsError) as caught:
        await writer.set_num_vfs("mock0", 3)
    assert caught.value.errno == errno.ERANGE


@pytest.mark.asyncio
async def test_plain_tree_is_written_like_the_kernels(tmp_path: Path) -> None:
    device = tmp_path / "class/mock-accel/mock0"
    device.mkdir(parents=True)
    (device / "status").write_text("0x00000002\n")
    writer = SysfsWriter(tmp_path)
    await writer.set_allocated("mock0", True)
    assert (device / "status").read_text() == "1"
    with pytest.raises(SysfsError) as caught:
        await writer.set_allocated("mock7", True)
    assert caught.value.errno == errno.ENOENT
    assert "mock7/status" in str(caught.value)
