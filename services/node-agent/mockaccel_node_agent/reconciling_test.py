"""Start-up reconciliation repairs every divergence from the checkpoint, and refuses a corrupt one."""

from __future__ import annotations

import asyncio

import pytest

from mockaccel_common.simulator.engine import SimulatedNode
from mockaccel_node_agent.adapters.host import Host
from mockaccel_node_agent.adapters.state import CheckpointStore, SerialLock
from mockaccel_node_agent.conftest import NODE
from mockaccel_node_agent.domain import checkpoint as codec
from mockaccel_node_agent.domain.cdi_building import DeviceSource, spec_file_name
from mockaccel_node_agent.domain.checkpoint import Checkpoint
from mockaccel_node_agent.domain.claims import ClaimRef, PreparedClaim, PreparedDevice
from mockaccel_node_agent.errors import CheckpointCorruptError, DeviceUnavailableError
from mockaccel_node_agent.reconciling import reconcile
from mockaccel_testing.node_agent import AgentDirs

pytestmark = pytest.mark.asyncio


def prepared(uid: str, *devices: str) -> PreparedClaim:
    return PreparedClaim(
        ref=ClaimRef("ns", uid, "c"),
        cdi_spec=spec_file_name(uid),
        devices=tuple(PreparedDevice(f"{NODE}/numa0", d, ("r",), ()) for d in devices),
    )


async def test_every_divergence_is_repaired(dirs: AgentDirs, sim: SimulatedNode) -> None:
    host, store = Host(dirs.sysfs, dirs.cdi), CheckpointStore(dirs.plugin)
    store.save_sync(Checkpoint().with_claim(prepared("kept", "mock0", "mock1")))
    await asyncio.to_thread(sim.write, "mock1", "status", "1")  # held and marked: untouched
    await asyncio.to_thread(sim.write, "mock2", "status", "1")  # marked but held by nobody
    stale = await host.write_spec("gone", [DeviceSource((await host.read("mock3")).device, "/x")])
    (dirs.cdi / "other-vendor.json").write_text("{}")  # not ours: left alone
    checkpoint, repairs = await reconcile(host, store, SerialLock(dirs.plugin))
    assert repairs.freed == ["mock2"]
    assert repairs.marked == ["mock0"]
    assert repairs.specs_deleted == [stale]
    assert repairs.specs_written == [spec_file_name("kept")]
    assert dirs.consistent() == []
    assert (dirs.cdi / "other-vendor.json").exists()
    _, again = await reconcile(host, store, SerialLock(dirs.plugin))
    assert (again.freed, again.marked, again.specs_deleted, again.specs_written) == ([], [], [], [])


async def test_a_corrupt_checkpoint_stops_start_up_and_is_kept(dirs: AgentDirs, sim: SimulatedNode) -> None:
    raw = codec.encode(Checkpoint().with_claim(prepared("a", "mock0")))
    (dirs.plugin / "checkpoint.json").write_bytes(raw.replace(b"mock0", b"mock1"))
    await asyncio.to_thread(sim.write, "mock0", "status", "1")
    with pytest.raises(CheckpointCorruptError, match="checksum"):
        await reconcile(Host(dirs.sysfs, dirs.cdi), CheckpointStore(dirs.plugin), SerialLock(dirs.plugin))
    assert dirs.allocated() == {"mock0"}  # nothing was freed on a guess
    assert (dirs.plugin / "checkpoint.json").read_bytes() == raw.replace(b"mock0", b"mock1")


class BrokenDeviceHost(Host):
    """A device whose sysfs writes fail (EIO), as a wedged device's would."""

    def __init__(self, dirs: AgentDirs, broken: str) -> None:
        super().__init__(dirs.sysfs, dirs.cdi)
        self.broken = broken

    async def set_allocated(self, name: str, allocated: bool) -> None:
        if name == self.broken:
            raise DeviceUnavailableError(f"cannot write device {name}: EIO")
        await super().set_allocated(name, allocated)


async def test_one_device_whose_writes_fail_does_not_stop_reconciliation(dirs: AgentDirs, sim: SimulatedNode) -> None:
    store = CheckpointStore(dirs.plugin)
    store.save_sync(Checkpoint().with_claim(prepared("kept", "mock0")))
    for name in ("mock2", "mock3"):
        await asyncio.to_thread(sim.write, name, "status", "1")  # stray bits
    checkpoint, repairs = await reconcile(BrokenDeviceHost(dirs, "mock2"), store, SerialLock(dirs.plugin))
    assert repairs.failed == ["mock2"]
    assert repairs.freed == ["mock3"]
    assert repairs.marked == ["mock0"]
    assert dirs.allocated() == {"mock0", "mock2"}
    assert list(checkpoint.claims) == ["kept"]
