from __future__ import annotations

import errno
import os
import stat
import tempfile
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mockaccel_common.errors import SysfsError
from mockaccel_common.model import DeviceKind, vf_uuid
from mockaccel_common.regmap import Status
from mockaccel_common.simulator.engine import DEVICE_WORDLIST_FILE, WORDLIST_FILE, SimulatedNode
from mockaccel_common.simulator.topology import NodeSpec, loads_topology, pci_layout
from mockaccel_common.simulator.topology_test import topologies
from mockaccel_common.sysfs import abi
from mockaccel_common.sysfs.reader import scan_devices_sync

NODE = """
[[node]]
name = "node-a"
[[node.pf]]
numa_node = 0
total_vfs = 4
[[node.pf]]
numa_node = 1
total_vfs = 2
memory = "32Gi"
"""


@pytest.fixture
def node() -> NodeSpec:
    return loads_topology(NODE).node("node-a")


@pytest.fixture
def sim(tmp_path: Path, node: NodeSpec) -> SimulatedNode:
    return SimulatedNode.create(tmp_path / "sys", node)


def devices(sim: SimulatedNode) -> dict[str, object]:
    result = scan_devices_sync(sim.root)
    assert result.skipped == ()
    return dict(result.by_name())


def test_tree_matches_the_abi_layout(sim: SimulatedNode) -> None:
    mock0 = sim.root / "class/mock-accel/mock0"
    assert os.readlink(mock0) == "../../devices/pci0000:10/0000:10:00.0/0000:11:00.0/mock-accel/mock0"
    assert os.readlink(mock0 / "device") == "../../../0000:11:00.0"
    assert (mock0 / "status").read_text() == "0x00000002\n"
    assert (mock0 / "device/numa_node").read_text() == "0\n"
    assert (mock0 / "memory_size").read_text() == "17179869184\n"
    for attribute in abi.attributes_for(kind_is_vf=False):
        assert (mock0 / attribute.name).stat().st_mode & 0o777 == attribute.mode, attribute.name


def test_status_write_sets_only_the_allocated_bit(sim: SimulatedNode) -> None:
    sim.write("mock0", "status", "1\n")
    assert (sim.root / "class/mock-accel/mock0/status").read_text() == "0x00000003\n"
    sim.write("mock0", "status", "0")
    assert (sim.root / "class/mock-accel/mock0/status").read_text() == "0x00000002\n"


@pytest.mark.parametrize(
    ("device", "attribute", "value", "code"),
    [
        ("mock0", "status", "2", errno.EINVAL),
        ("mock0", "status", "allocated", errno.EINVAL),
        ("mock0", "status", "1 ", errno.EINVAL),
        ("mock0", "status", "", errno.EINVAL),
        ("mock0", "status", "0x100000000", errno.ERANGE),
        ("mock9", "status", "1", errno.ENOENT),
        ("mock0", "uuid", "1", errno.EACCES),
        ("mock0", "bogus", "1", errno.ENOENT),
        ("mock0", "sriov_numvfs", "5", errno.ERANGE),
        ("mock0", "sriov_numvfs", "-1", errno.EINVAL),
        ("mock0", "sriov_numvfs", "two", errno.EINVAL),
        ("mock0", "passphrase_length", "3", errno.EINVAL),
        ("mock0", "passphrase_length", "13", errno.EINVAL),
        ("mock0", "passphrase_generate", "2", errno.EINVAL),
        ("mock0", "load_wordlist", "1", errno.ENOENT),
    ],
    ids=lambda v: str(v),
)
def test_invalid_writes_fail_like_the_driver(
    sim: SimulatedNode, device: str, attribute: str, value: str, code: int
) -> None:
    before = scan_devices_sync(sim.root)
    with pytest.raises(SysfsError) as caught:
        sim.write(device, attribute, value)
    assert caught.value.errno == code
    assert scan_devices_sync(sim.root) == before


def test_sriov_numvfs_creates_and_removes_vfs(sim: SimulatedNode, node: NodeSpec) -> None:
    sim.write("mock0", "sriov_numvfs", "3\n")
    found = scan_devices_sync(sim.root).by_name()
    assert sorted(found) == ["mock0", "mock0v0", "mock0v1", "mock0v2", "mock1"]
    vf = found["mock0v2"]
    assert vf.kind is DeviceKind.VF
    assert vf.physfn == "mock0"
    assert vf.uuid == vf_uuid(node.pfs[0].uuid, 2)
    assert str(vf.pci_address) == "0000:11:00.3"
    assert vf.numa_node == 0
    assert vf.memory_size == 2 << 30
    assert found["mock0"].sriov_numvfs == 3
    assert (sim.root / "class/mock-accel/mock0/device/sriov_numvfs").read_text() == "3\n"
    # Same value again is a no-op; a different non-zero value needs 0 first.
    sim.write("mock0", "sriov_numvfs", "3")
    with pytest.raises(SysfsError) as busy:
        sim.write("mock0", "sriov_numvfs", "1")
    assert busy.value.errno == errno.EBUSY
    sim.write("mock0", "sriov_numvfs", "0")
    assert sorted(scan_devices_sync(sim.root).by_name()) == ["mock0", "mock1"]


def test_allocated_vfs_cannot_be_removed(sim: SimulatedNode) -> None:
    sim.write("mock1", "sriov_numvfs", "2")
    sim.write("mock1v1", "status", "1")
    with pytest.raises(SysfsError) as caught:
        sim.write("mock1", "sriov_numvfs", "0")
    assert caught.value.errno == errno.EBUSY
    sim.write("mock1v1", "status", "0")
    sim.write("mock1", "sriov_numvfs", "0")


def test_health_is_a_separate_bit(sim: SimulatedNode) -> None:
    sim.write("mock0", "status", "1")
    sim.set_health("mock0", healthy=False)
    dev_dir = sim.root / "class/mock-accel/mock0"
    assert (dev_dir / "status").read_text() == "0x00000007\n"
    assert (dev_dir / "health").read_text() == "unhealthy\n"
    device = scan_devices_sync(sim.root).by_name()["mock0"]
    assert device.allocated
    assert device.ready
    assert not device.healthy
    sim.set_health("mock0", healthy=True)
    assert (dev_dir / "status").read_text() == "0x00000003\n"


def _wordlist_file(path: Path, prefix: str) -> Path:
    """7776 distinct lower-case words starting with ``prefix`` (base-26 letters)."""

    def word(i: int) -> str:
        return prefix + "".join(chr(ord("a") + (i // 26**k) % 26) for k in range(3))

    path.write_text("".join(f"{word(i)}\n" for i in range(7776)))
    return path


def test_passphrase_with_a_wordlist(tmp_path: Path, node: NodeSpec) -> None:
    wordlist = _wordlist_file(tmp_path / "words.txt", "w")
    sim = SimulatedNode.create(tmp_path / "sys", node, wordlist)
    sim.write("mock1", "load_wordlist", "1")
    sim.write("mock1", "passphrase_length", "8")
    sim.write("mock1", "passphrase_generate", "1")
    dev_dir = sim.root / "class/mock-accel/mock1"
    assert (dev_dir / "wordlist_words").read_text() == "7776\n"
    assert (dev_dir / "passphrase_status").read_text() == "ready\n"
    words = (dev_dir / "passphrase").read_text().split()
    assert len(words) == 8
    assert set(words) <= set(wordlist.read_text().split())


def test_the_engine_draws_from_the_device_list_not_the_firmware(tmp_path: Path, node: NodeSpec) -> None:
    firmware = _wordlist_file(tmp_path / "firmware.txt", "f")
    device = _wordlist_file(tmp_path / "device.txt", "d")
    sim = SimulatedNode.create(tmp_path / "sys", node, firmware, device_wordlist=device)
    (sim.root / WORDLIST_FILE).unlink()  # the firmware vanishes: the device's engine does not care
    with pytest.raises(SysfsError) as caught:
        sim.write("mock0", "load_wordlist", "1")
    assert caught.value.errno == errno.ENOENT
    sim.write("mock0", "passphrase_generate", "1")
    dev_dir = sim.root / "class/mock-accel/mock0"
    assert (dev_dir / "wordlist_loaded").read_text() == "0\n"
    assert (dev_dir / "passphrase_status").read_text() == "ready\n"
    assert set((dev_dir / "passphrase").read_text().split()) <= set(device.read_text().split())


@pytest.mark.parametrize("device_words", [None, "short\nlist\n", "w0\n" * 7776], ids=["absent", "short", "digits"])
def test_the_engine_reports_an_error_without_a_usable_device_list(
    tmp_path: Path, node: NodeSpec, device_words: str | None
) -> None:
    firmware = _wordlist_file(tmp_path / "firmware.txt", "f")
    sim = SimulatedNode.create(tmp_path / "sys", node, firmware)
    (sim.root / DEVICE_WORDLIST_FILE).unlink()
    if device_words is not None:
        (sim.root / DEVICE_WORDLIST_FILE).write_text(device_words)
    sim.write("mock0", "passphrase_generate", "1")
    dev_dir = sim.root / "class/mock-accel/mock0"
    assert (dev_dir / "wordlist_loaded").read_text() == "1\n", "the firmware is fine"
    assert (dev_dir / "passphrase_status").read_text() == "error\n"


def test_remove_pf_takes_its_vfs(sim: SimulatedNode) -> None:
    sim.write("mock1", "sriov_numvfs", "2")
    sim.remove_pf("mock1")
    assert sorted(scan_devices_sync(sim.root).by_name()) == ["mock0"]
    assert not (sim.root / "devices/pci0000:20/0000:20:00.0/0000:21:00.0").exists()


def test_create_refuses_an_existing_tree(sim: SimulatedNode, node: NodeSpec) -> None:
    with pytest.raises(SysfsError) as caught:
        SimulatedNode.create(sim.root, node)
    assert caught.value.errno == errno.EEXIST


def test_concurrent_writers_are_serialised(sim: SimulatedNode) -> None:
    errors: list[int | None] = []

    def toggle_vfs() -> None:
        other = SimulatedNode.open(sim.root)
        for _ in range(20):
            for value in ("4", "0"):
                try:
                    other.write("mock0", "sriov_numvfs", value)
                except SysfsError as exc:
                    errors.append(exc.errno)

    def toggle_status() -> None:
        other = SimulatedNode.open(sim.root)
        for i in range(1, 41):
            other.write("mock1", "status", str(i % 2))

    threads = [threading.Thread(target=toggle_vfs) for _ in range(3)] + [threading.Thread(target=toggle_status)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert set(errors) <= {errno.EBUSY}
    result = scan_devices_sync(sim.root)
    assert result.skipped == ()
    numvfs = result.by_name()["mock0"].sriov_numvfs
    assert sorted(d.name for d in result.devices if d.physfn == "mock0") == [f"mock0v{i}" for i in range(numvfs)]
    assert result.by_name()["mock1"].status == Status.READY


@settings(max_examples=25, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(topologies(), st.data())
def test_topology_to_tree_to_devices_round_trip(topology: object, data: st.DataObject) -> None:
    from mockaccel_common.simulator.topology import Topology

    assert isinstance(topology, Topology)
    node = topology.nodes[0]
    with tempfile.TemporaryDirectory() as tmp:
        sim = SimulatedNode.create(Path(tmp) / "sys", node)
        enabled = {pf.name: data.draw(st.integers(0, pf.total_vfs)) for pf in node.pfs}
        for name, count in enabled.items():
            if count:
                sim.write(name, "sriov_numvfs", str(count))
        result = scan_devices_sync(sim.root)
        assert result.skipped == ()
        found = result.by_name()
        assert len(found) == len(node.pfs) + sum(enabled.values())
        for pf in node.pfs:
            device = found[pf.name]
            assert device.uuid == pf.uuid
            assert device.memory_size == pf.memory
            assert device.numa_node == (pf.numa_node if pf.numa_node >= 0 else None)
            assert device.pci_address == pci_layout(pf).address
            assert device.pcie_root == pci_layout(pf).pcie_root
            assert device.sriov_totalvfs == pf.total_vfs
            assert device.status == Status.READY
            for vf_index in range(enabled[pf.name]):
                vf = found[f"{pf.name}v{vf_index}"]
                assert vf.uuid == vf_uuid(pf.uuid, vf_index)
                assert vf.memory_size == pf.vf_memory
                assert vf.numa_node == device.numa_node


def test_device_nodes_follow_the_class_devices(sim: SimulatedNode) -> None:
    """Each function has <root>/dev/<name>, a 1:3 character device (docs/abi.md §8.5).

    mknod needs CAP_MKNOD: the tests run as root (CI and the provisioning scripts
    do); without it this fails rather than skips.
    """
    dev = sim.root / "dev"
    node = os.stat(dev / "mock0")
    assert stat.S_ISCHR(node.st_mode)
    assert (os.major(node.st_rdev), os.minor(node.st_rdev)) == (1, 3)
    sim.write("mock0", "sriov_numvfs", "2")
    assert sorted(p.name for p in dev.iterdir() if p.name.startswith("mock0")) == ["mock0", "mock0v0", "mock0v1"]
    assert all(stat.S_ISCHR(os.stat(dev / n).st_mode) for n in ("mock0v0", "mock0v1"))
    sim.write("mock0", "sriov_numvfs", "0")
    assert sorted(p.name for p in dev.iterdir() if p.name.startswith("mock0")) == ["mock0"]
