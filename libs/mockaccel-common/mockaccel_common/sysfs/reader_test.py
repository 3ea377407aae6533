from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from mockaccel_common.simulator.engine import SimulatedNode
from mockaccel_common.simulator.topology import loads_topology
from mockaccel_common.sysfs.reader import scan_devices, scan_devices_sync

NODE = """
[[node]]
name = "n"
[[node.pf]]
numa_node = 0
count = 3
total_vfs = 2
"""


@pytest.fixture
def root(tmp_path: Path) -> Path:
    sim = SimulatedNode.create(tmp_path / "sys", loads_topology(NODE).node("n"))
    sim.write("mock0", "sriov_numvfs", "2")
    return sim.root


def test_missing_class_dir_is_an_empty_node(tmp_path: Path) -> None:
    assert scan_devices_sync(tmp_path).devices == ()


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda d: (d / "uuid").unlink(), "missing attribute uuid"),
        (lambda d: (d / "uuid").write_text("not-a-uuid\n"), "badly formed"),
        (lambda d: (d / "memory_size").write_text("17179869184"), "missing trailing newline"),
        (lambda d: (d / "memory_size").write_text("16Gi\n"), "not an unsigned 64-bit decimal"),
        (lambda d: (d / "status").write_text("\xff\n", encoding="latin-1"), "not ASCII"),
        (lambda d: (d / "status").write_text("3\n"), "not 0x followed by 8 hex digits"),
        (lambda d: (d / "device").unlink(), "device link"),
        (lambda d: (d / "device/numa_node").write_text("zero\n"), "numa_node"),
        (lambda d: ((d / "capabilities").unlink(), (d / "capabilities").mkdir()), "cannot read capabilities"),
    ],
    ids=[
        "missing", "garbled-uuid", "partial-write", "unit", "binary", "status-format", "no-link", "numa", "unreadable"
    ],
)
def test_a_bad_device_is_skipped_with_a_reason(root: Path, damage: object, reason: str) -> None:
    target = root / "class/mock-accel/mock1"
    damage(target)  # type: ignore[operator]
    result = scan_devices_sync(root)
    assert [d.name for d in result.devices] == ["mock0", "mock0v0", "mock0v1", "mock2"]
    assert len(result.skipped) == 1
    assert result.skipped[0].name == "mock1"
    assert reason in result.skipped[0].reason


def test_unknown_names_and_vanished_devices_are_skipped(root: Path) -> None:
    os.symlink("../../devices/nowhere", root / "class/mock-accel/mock0_vf0")
    shutil.rmtree(os.path.realpath(root / "class/mock-accel/mock2"))
    result = scan_devices_sync(root)
    assert sorted(s.name for s in result.skipped) == ["mock0_vf0", "mock2"]
    assert len(result.devices) == 4


def test_vf_with_a_wrong_physfn_is_skipped(root: Path) -> None:
    link = root / "class/mock-accel/mock0v1/physfn"
    link.unlink()
    os.symlink("../mock1", link)
    result = scan_devices_sync(root)
    assert [s.name for s in result.skipped] == ["mock0v1"]


@pytest.mark.asyncio
async def test_async_scan_matches_sync(root: Path) -> None:
    assert await scan_devices(root) == scan_devices_sync(root)
