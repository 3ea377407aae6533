"""Preparer against a simulated node: what prepare and unprepare change, and what they refuse."""

from __future__ import annotations

import asyncio
import errno
import json

import pytest

from mockaccel_common.errors import SysfsError
from mockaccel_common.simulator.engine import SimulatedNode
from mockaccel_node_agent.adapters.host import Host
from mockaccel_node_agent.adapters.metrics import Metrics
from mockaccel_node_agent.adapters.state import CheckpointStore, SerialLock
from mockaccel_node_agent.conftest import NODE, StaticClaims
from mockaccel_node_agent.domain.cdi_building import spec_file_name
from mockaccel_node_agent.domain.claims import AllocationResult, ClaimAllocation, ClaimRef
from mockaccel_node_agent.preparing import Preparer
from mockaccel_testing.node_agent import DRIVER, AgentDirs

pytestmark = pytest.mark.asyncio

POOL0, POOL1 = f"{NODE}/numa0", f"{NODE}/numa1"


def make(dirs: AgentDirs, claims: StaticClaims, host: Host | None = None) -> Preparer:
    return Preparer(
        driver=DRIVER,
        node=NODE,
        host=host or Host(dirs.sysfs, dirs.cdi),
        store=CheckpointStore(dirs.plugin),
        lock=SerialLock(dirs.plugin),
        claims=claims,
        metrics=Metrics(),
    )


def allocate(claims: StaticClaims, name: str, uid: str, *results: tuple[str, str, str, str]) -> ClaimRef:
    claims.allocations[name] = ClaimAllocation(
        uid=uid, allocated=True, results=tuple(AllocationResult(*r) for r in results)
    )
    return ClaimRef(namespace="ns", uid=uid, name=name)


async def test_prepare_marks_devices_writes_one_spec_and_checkpoints(dirs: AgentDirs) -> None:
    claims = StaticClaims()
    ref = allocate(
        claims,
        "c1",
        "uid-1",
        ("gpu/small", DRIVER, POOL0, "mock1"),
        ("other", DRIVER, POOL1, "mock5"),
        ("net", "other.example.com", "elsewhere", "nic0"),
    )
    outcome = (await make(dirs, claims).prepare([ref]))["uid-1"]
    assert outcome.error == ""
    assert [(d.pool, d.device, d.request_names) for d in outcome.devices] == [
        (POOL0, "mock1", ("gpu",)),
        (POOL1, "mock5", ("other",)),
    ]
    assert outcome.devices[0].cdi_device_ids == ("k8s.mock-accel.example.com/device=uid-1-mock1",)
    assert dirs.allocated() == {"mock1", "mock5"}
    assert dirs.specs() == {spec_file_name("uid-1")}
    spec = dirs.spec(spec_file_name("uid-1"))
    assert spec["cdiVersion"] == "0.5.0"
    assert [d["name"] for d in spec["devices"]] == ["uid-1-mock1", "uid-1-mock5"]
    assert dirs.checkpoint_devices() == {"uid-1": {"mock1", "mock5"}}


async def test_prepare_is_idempotent_and_does_no_work_twice(dirs: AgentDirs) -> None:
    claims = StaticClaims()
    ref = allocate(claims, "c1", "uid-1", ("r", DRIVER, POOL0, "mock0"))
    preparer = make(dirs, claims)
    first = await preparer.prepare([ref])
    spec_path = dirs.cdi / spec_file_name("uid-1")
    written = spec_path.stat().st_mtime_ns
    second = await preparer.prepare([ref, ref])
    assert first == second
    assert spec_path.stat().st_mtime_ns == written
    assert dirs.allocated() == {"mock0"}


@pytest.mark.parametrize(
    ("results", "expected"),
    [
        ([("r", DRIVER, POOL0, "mock9")], "mock9 is not usable"),
        ([("r", DRIVER, f"{NODE}/numa1", "mock0")], "not on this node"),
        ([("r", DRIVER, "other-node/numa0", "mock0")], "not on this node"),
        ([("r", "other.example.com", POOL0, "mock0")], "no device of driver"),
        ([], "no device of driver"),
    ],
    ids=["missing-device", "wrong-numa-pool", "other-node", "other-driver-only", "empty"],
)
async def test_bad_allocations_fail_the_claim_and_change_nothing(
    dirs: AgentDirs, results: list[tuple[str, str, str, str]], expected: str
) -> None:
    claims = StaticClaims()
    ref = allocate(claims, "c1", "uid-1", ("ok", DRIVER, POOL0, "mock2"), *results)
    if not results or results[0][1] != DRIVER:
        claims.allocations["c1"] = ClaimAllocation(
            uid="uid-1", allocated=True, results=tuple(AllocationResult(*r) for r in results)
        )
    outcome = (await make(dirs, claims).prepare([ref]))["uid-1"]
    assert expected in outcome.error
    assert outcome.devices == ()
    assert dirs.allocated() == set()
    assert dirs.specs() == set()
    assert dirs.checkpoint_devices() == {}


async def test_a_device_held_by_another_claim_is_refused(dirs: AgentDirs) -> None:
    claims = StaticClaims()
    first = allocate(claims, "c1", "uid-1", ("r", DRIVER, POOL0, "mock0"))
    second = allocate(claims, "c2", "uid-2", ("r", DRIVER, POOL0, "mock1"), ("r", DRIVER, POOL0, "mock0"))
    preparer = make(dirs, claims)
    await preparer.prepare([first])
    outcome = (await preparer.prepare([second]))["uid-2"]
    assert "mock0 is already prepared for claim uid-1" in outcome.error
    assert dirs.allocated() == {"mock0"}  # mock1 was not touched
    assert dirs.checkpoint_devices() == {"uid-1": {"mock0"}}


async def test_claim_lookup_errors_are_per_claim(dirs: AgentDirs) -> None:
    claims = StaticClaims()
    good = allocate(claims, "good", "uid-g", ("r", DRIVER, POOL0, "mock0"))
    claims.allocations["pending"] = ClaimAllocation(uid="uid-p", allocated=False)
    claims.allocations["replaced"] = ClaimAllocation(uid="uid-new", allocated=True)
    refs = [
        good,
        ClaimRef("ns", "uid-p", "pending"),
        ClaimRef("ns", "uid-old", "replaced"),
        ClaimRef("ns", "uid-x", "missing"),
        ClaimRef("", "uid-e", "noname"),
    ]
    outcomes = await make(dirs, claims).prepare(refs)
    assert outcomes["uid-g"].error == ""
    assert "not allocated" in outcomes["uid-p"].error
    assert "replaced" in outcomes["uid-old"].error
    assert "not found" in outcomes["uid-x"].error
    assert "empty namespace" in outcomes["uid-e"].error
    assert dirs.allocated() == {"mock0"}


async def test_api_server_down_is_a_claim_error(dirs: AgentDirs) -> None:
    claims = StaticClaims()
    ref = allocate(claims, "c1", "uid-1", ("r", DRIVER, POOL0, "mock0"))
    claims.down = True
    outcome = (await make(dirs, claims).prepare([ref]))["uid-1"]
    assert "unreachable" in outcome.error
    assert dirs.allocated() == set()


class FailingHost(Host):
    """Fails writes to one device, as an unreadable or broken sysfs attribute would."""

    def __init__(self, dirs: AgentDirs, broken: str) -> None:
        super().__init__(dirs.sysfs, dirs.cdi)
        self.broken = broken

    def set_allocated_sync(self, name: str, allocated: bool) -> None:
        if name == self.broken and allocated:
            from mockaccel_node_agent.errors import DeviceUnavailableError

            raise DeviceUnavailableError(f"cannot allocate device {name}: EIO") from SysfsError("EIO", errno=errno.EIO)
        super().set_allocated_sync(name, allocated)


async def test_failure_midway_rolls_back_this_call(dirs: AgentDirs) -> None:
    claims = StaticClaims()
    ref = allocate(claims, "c1", "uid-1", ("a", DRIVER, POOL0, "mock0"), ("b", DRIVER, POOL0, "mock1"))
    outcome = (await make(dirs, claims, FailingHost(dirs, "mock1")).prepare([ref]))["uid-1"]
    assert "cannot allocate device mock1" in outcome.error
    assert dirs.allocated() == set()  # mock0 was freed again
    assert dirs.specs() == set()
    assert dirs.checkpoint_devices() == {}


async def test_unreadable_sysfs_attribute_is_a_claim_error(dirs: AgentDirs) -> None:
    claims = StaticClaims()
    ref = allocate(claims, "c1", "uid-1", ("a", DRIVER, POOL0, "mock3"))
    status = dirs.sysfs / "class/mock-accel/mock3/uuid"
    status.unlink()
    outcome = (await make(dirs, claims).prepare([ref]))["uid-1"]
    assert "mock3 is not usable" in outcome.error
    assert dirs.allocated() == set()


async def test_cancelled_prepare_finishes_and_the_repeat_gets_the_same_answer(dirs: AgentDirs) -> None:
    claims = StaticClaims()
    ref = allocate(claims, "c1", "uid-1", ("a", DRIVER, POOL0, "mock0"), ("b", DRIVER, POOL0, "mock1"))
    preparer = make(dirs, claims)
    call = asyncio.create_task(preparer.prepare([ref]))
    # Cancel as soon as the state change has started (kubelet's connection dropped).
    deadline = asyncio.get_running_loop().time() + 5
    while not preparer._inflight and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    await preparer.aclose()
    assert dirs.consistent() == []
    assert dirs.checkpoint_devices() == {"uid-1": {"mock0", "mock1"}}
    again = (await preparer.prepare([ref]))["uid-1"]
    assert again.error == ""
    assert {d.device for d in again.devices} == {"mock0", "mock1"}


async def test_unprepare_uses_the_checkpoint_alone_and_is_idempotent(dirs: AgentDirs) -> None:
    claims = StaticClaims()
    ref = allocate(claims, "c1", "uid-1", ("a", DRIVER, POOL0, "mock0"), ("b", DRIVER, POOL1, "mock4"))
    preparer = make(dirs, claims)
    await preparer.prepare([ref])
    claims.allocations.clear()
    claims.down = True  # the claim is gone and the API server too: unprepare must not care
    unknown = ClaimRef("ns", "uid-unknown", "never")
    assert await preparer.unprepare([ref, unknown]) == {"uid-1": "", "uid-unknown": ""}
    assert dirs.allocated() == set()
    assert dirs.specs() == set()
    assert dirs.checkpoint_devices() == {}
    assert await preparer.unprepare([ref]) == {"uid-1": ""}


async def test_unprepare_of_an_unplugged_device_still_succeeds(dirs: AgentDirs, sim: SimulatedNode) -> None:
    claims = StaticClaims()
    ref = allocate(claims, "c1", "uid-1", ("a", DRIVER, POOL0, "mock2"))
    preparer = make(dirs, claims)
    await preparer.prepare([ref])
    sim.set_health("mock2", True)
    await asyncio.to_thread(sim.write, "mock2", "status", "0")  # the driver's remove path frees it
    sim.remove_pf("mock2")
    assert await preparer.unprepare([ref]) == {"uid-1": ""}
    assert dirs.checkpoint_devices() == {}


async def test_vf_gets_its_physfn_in_the_environment(dirs: AgentDirs, sim: SimulatedNode) -> None:
    await asyncio.to_thread(sim.write, "mock0", "sriov_numvfs", "2")
    claims = StaticClaims()
    ref = allocate(claims, "c1", "uid-1", ("a", DRIVER, POOL0, "mock0v1"), ("b", DRIVER, POOL0, "mock1"))
    outcome = (await make(dirs, claims).prepare([ref]))["uid-1"]
    assert outcome.error == ""
    devices = dirs.spec(spec_file_name("uid-1"))["devices"]
    assert isinstance(devices, list)
    env = devices[0]["containerEdits"]["env"]
    assert "MOCK_ACCEL_MOCK0V1_PHYSFN=mock0" in env
    assert all(e.startswith("MOCK_ACCEL_MOCK0V1_") for e in env)
    edits = devices[0]["containerEdits"]
    assert edits["deviceNodes"] == [{"path": "/dev/mock0v1", "hostPath": "/dev/mock0v1"}]
    (mount,) = edits["mounts"]
    assert mount["containerPath"] == "/sys/class/mock-accel/mock0v1"
    assert "ro" in mount["options"]
    assert not json.dumps(mount["hostPath"]).count("/class/")  # the real directory, not the class symlink


class CountingClaims(StaticClaims):
    """A ClaimSource that records how many GETs run at once."""

    def __init__(self) -> None:
        super().__init__()
        self.running = 0
        self.peak = 0

    async def get(self, ref: ClaimRef) -> ClaimAllocation:
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            await asyncio.sleep(0)  # let every other fetch start if nothing holds it back
            await asyncio.sleep(0)
            return await super().get(ref)
        finally:
            self.running -= 1


async def test_claim_fetches_of_one_request_are_capped(dirs: AgentDirs) -> None:
    claims = CountingClaims()
    refs = [ClaimRef("ns", f"uid-{i}", f"missing-{i}") for i in range(100)]
    outcomes = await make(dirs, claims).prepare(refs)
    assert all("not found" in o.error for o in outcomes.values())
    assert claims.calls == 100
    assert claims.peak == 8


def allocate_admin(claims: StaticClaims, name: str, uid: str, device: str) -> ClaimRef:
    claims.allocations[name] = ClaimAllocation(
        uid=uid, allocated=True, results=(AllocationResult("monitor", DRIVER, POOL0, device, admin_access=True),)
    )
    return ClaimRef(namespace="ns", uid=uid, name=name)


@pytest.mark.parametrize("owner_first", [True, False], ids=["owner-first", "monitor-first"])
async def test_admin_access_shares_the_device_and_leaves_its_allocated_bit_alone(
    dirs: AgentDirs, owner_first: bool
) -> None:
    claims = StaticClaims()
    owner = allocate(claims, "owner", "uid-owner", ("r", DRIVER, POOL0, "mock2"))
    monitor = allocate_admin(claims, "monitor", "uid-mon", "mock2")
    preparer = make(dirs, claims)
    order = [owner, monitor] if owner_first else [monitor, owner]
    for ref in order:
        outcome = (await preparer.prepare([ref]))[ref.uid]
        assert outcome.error == "", outcome.error
    assert dirs.allocated() == {"mock2"}  # marked by the owner only
    monitor_spec = dirs.spec(spec_file_name("uid-mon"))
    assert "DRA_ADMIN_ACCESS=true" in monitor_spec["devices"][0]["containerEdits"]["env"]
    owner_spec = dirs.spec(spec_file_name("uid-owner"))
    assert "DRA_ADMIN_ACCESS=true" not in owner_spec["devices"][0]["containerEdits"]["env"]
    assert await preparer.unprepare([monitor]) == {"uid-mon": ""}
    assert dirs.allocated() == {"mock2"}  # the owner still has it
    assert await preparer.unprepare([owner]) == {"uid-owner": ""}
    assert dirs.allocated() == set()
    assert dirs.consistent() == []


async def test_a_second_ordinary_claim_is_still_refused(dirs: AgentDirs) -> None:
    claims = StaticClaims()
    monitor = allocate_admin(claims, "monitor", "uid-mon", "mock2")
    other = allocate(claims, "other", "uid-2", ("r", DRIVER, POOL0, "mock2"))
    owner = allocate(claims, "owner", "uid-1", ("r", DRIVER, POOL0, "mock2"))
    preparer = make(dirs, claims)
    assert (await preparer.prepare([monitor]))["uid-mon"].error == ""
    assert (await preparer.prepare([owner]))["uid-1"].error == ""
    assert "already prepared for claim uid-1" in (await preparer.prepare([other]))["uid-2"].error


async def test_admin_access_is_read_from_the_allocation() -> None:
    obj = {
        "metadata": {"uid": "u"},
        "status": {
            "allocation": {
                "devices": {
                    "results": [
                        {"request": "a", "driver": DRIVER, "pool": POOL0, "device": "mock0", "adminAccess": True},
                        {"request": "b", "driver": DRIVER, "pool": POOL0, "device": "mock1"},
                    ]
                }
            }
        },
    }
    allocation = ClaimAllocation.from_object(obj)
    assert [r.admin_access for r in allocation.results] == [True, False]
