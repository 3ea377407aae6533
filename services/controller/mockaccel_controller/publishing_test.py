"""What the publisher does with a device whose attribute read fails (a simulated node in a temp dir)."""

from __future__ import annotations

from pathlib import Path

from mockaccel_common.simulator.engine import SimulatedNode
from mockaccel_common.simulator.topology import loads_topology
from mockaccel_common.sysfs.reader import class_dir, scan_devices_sync
from mockaccel_controller.publishing import with_last_good

TOPOLOGY = '[[node]]\nname = "n1"\n\n[[node.pf]]\nnuma_node = 0\ncount = 2\nmemory = "16Gi"\ntotal_vfs = 0\n'


def _node(tmp_path: Path) -> Path:
    SimulatedNode.create(tmp_path, loads_topology(TOPOLOGY).nodes[0])
    return tmp_path


def _break(root: Path, device: str, attribute: str) -> None:
    """Make one attribute unreadable (EISDIR on read), as EIO from a busy device would be."""
    path = class_dir(root) / device / attribute
    path.unlink()
    path.mkdir()


def test_a_transient_read_error_keeps_the_last_good_device(tmp_path: Path) -> None:
    root = _node(tmp_path)
    good = scan_devices_sync(root)
    assert [d.name for d in good.devices] == ["mock0", "mock1"]
    _break(root, "mock1", "capabilities")
    failing = scan_devices_sync(root)
    assert [d.name for d in failing.devices] == ["mock0"]
    assert [(s.name, s.transient) for s in failing.skipped] == [("mock1", True)]
    kept = with_last_good(failing, good.by_name())
    assert kept == good.devices  # the last good reading, unchanged


def test_a_device_that_is_gone_is_dropped(tmp_path: Path) -> None:
    root = _node(tmp_path)
    good = scan_devices_sync(root)
    (class_dir(root) / "mock1" / "capabilities").unlink()  # missing, not unreadable
    failing = scan_devices_sync(root)
    assert [(s.name, s.transient) for s in failing.skipped] == [("mock1", False)]
    assert [d.name for d in with_last_good(failing, good.by_name())] == ["mock0"]
