"""Crash safety: the agent is SIGKILLed at every step of prepare and unprepare.

Each case runs the real process (``python -m mockaccel_node_agent``) with a
fault point armed, lets it die in the middle of a call, restarts it, repeats
the call as kubelet would, and checks that sysfs, the CDI directory and the
checkpoint agree at every stage. Tagged integration.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

import pytest
import pytest_asyncio

from mockaccel_node_agent.adapters.faults import POINTS
from mockaccel_node_agent.conftest import NODE
from mockaccel_node_agent.domain.cdi_building import spec_file_name
from mockaccel_node_agent.domain.claims import ClaimRef
from mockaccel_testing.kubelet_client import KubeletClient
from mockaccel_testing.node_agent import DRIVER, AgentDirs, FakeApiServer, claim_object, kubeconfig_for
from mockaccel_testing.service_process import ServiceProcess, service_process

pytestmark = pytest.mark.asyncio

CLAIM = ClaimRef("ns", "0c9e1b7e-5d7f-4a84-9d6b-6b2f1b0f0001", "two-devices")
DEVICES = {"mock0", "mock1"}


@pytest_asyncio.fixture
async def api() -> AsyncIterator[FakeApiServer]:
    server = FakeApiServer()
    server.add(
        claim_object(
            CLAIM.namespace,
            CLAIM.name,
            CLAIM.uid,
            [("first", DRIVER, f"{NODE}/numa0", "mock0"), ("second", DRIVER, f"{NODE}/numa0", "mock1")],
        )
    )
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@contextmanager
def agent(dirs: AgentDirs, api: FakeApiServer, fault: str = "") -> Iterator[ServiceProcess]:
    kubeconfig = kubeconfig_for(dirs.root / "kubeconfig", server=api.url)
    env = dirs.env(NODE, kubeconfig, MOCKACCEL_FAULT_POINT=fault, MOCKACCEL_LOG_LEVEL="info")
    with service_process("mockaccel_node_agent", env=env) as process:
        yield process


@asynccontextmanager
async def started(dirs: AgentDirs, api: FakeApiServer, fault: str = "") -> AsyncIterator[ServiceProcess]:
    with agent(dirs, api, fault) as process:
        # The helper polls with blocking reads: keep this loop (and the fake API server) running.
        await asyncio.to_thread(process.wait_for_event, "agent_ready", 30)
        yield process


async def call(dirs: AgentDirs, verb: str) -> object:
    client = KubeletClient(dirs.registration_socket, timeout=20)
    try:
        if verb == "prepare":
            return (await client.prepare([CLAIM]))[CLAIM.uid]
        return (await client.unprepare([CLAIM]))[CLAIM.uid]
    finally:
        client.close()


async def crash_during(dirs: AgentDirs, api: FakeApiServer, point: str) -> None:
    verb = point.split(":")[0]
    async with started(dirs, api, point) as process:
        with pytest.raises(Exception):  # noqa: B017, PT011 - the connection dies with the process
            await call(dirs, verb)
        code = await asyncio.to_thread(process.process.wait, 20)
        assert code == -signal.SIGKILL
        await asyncio.to_thread(process.wait_for_event, "fault_point_hit", 5)


def assert_prepared(dirs: AgentDirs) -> None:
    assert dirs.consistent() == []
    assert dirs.allocated() == DEVICES
    assert dirs.specs() == {spec_file_name(CLAIM.uid)}
    assert dirs.checkpoint_devices() == {CLAIM.uid: DEVICES}


def assert_clean(dirs: AgentDirs) -> None:
    assert dirs.consistent() == []
    assert dirs.allocated() == set()
    assert dirs.specs() == set()
    assert dirs.checkpoint_devices() == {}


@pytest.mark.parametrize("point", [p for p in POINTS if p.startswith("prepare:")])
async def test_kill_during_prepare_then_retry(dirs: AgentDirs, api: FakeApiServer, point: str) -> None:
    await crash_during(dirs, api, point)
    async with started(dirs, api) as process:
        # Reconciliation already made the node agree with the checkpoint.
        assert dirs.consistent() == []
        answer = await call(dirs, "prepare")
        assert getattr(answer, "error", "?") == ""
        assert {d[1] for d in getattr(answer, "devices", ())} == DEVICES
        assert_prepared(dirs)
        assert await call(dirs, "unprepare") == ""
        assert_clean(dirs)
        code, _ = await asyncio.to_thread(process.stop, signal.SIGTERM, 10)
        assert code == 0


@pytest.mark.parametrize("point", [p for p in POINTS if p.startswith("unprepare:")])
async def test_kill_during_unprepare_then_retry(dirs: AgentDirs, api: FakeApiServer, point: str) -> None:
    async with started(dirs, api) as process:
        assert getattr(await call(dirs, "prepare"), "error", "?") == ""
        code, _ = await asyncio.to_thread(process.stop, signal.SIGTERM, 10)
        assert code == 0
    assert_prepared(dirs)
    api.claims.clear()  # kubelet unprepares after the claim is gone
    await crash_during(dirs, api, point)
    async with started(dirs, api):
        assert dirs.consistent() == []
        assert await call(dirs, "unprepare") == ""
        assert_clean(dirs)


@contextmanager
def instance(dirs: AgentDirs, api: FakeApiServer, pod_uid: str, fault: str = "") -> Iterator[ServiceProcess]:
    """One of two rolling-update instances (maxSurge): its own per-pod sockets, shared state."""
    kubeconfig = kubeconfig_for(dirs.root / "kubeconfig", server=api.url)
    env = dirs.env(NODE, kubeconfig, POD_UID=pod_uid, MOCKACCEL_FAULT_POINT=fault, MOCKACCEL_LOG_LEVEL="info")
    with service_process("mockaccel_node_agent", env=env) as process:
        yield process


async def test_a_stray_allocated_bit_is_reclaimed_while_another_instance_serves(
    dirs: AgentDirs, api: FakeApiServer
) -> None:
    """Instance A is killed between its status write and its checkpoint write; B, already serving, takes over.

    B's start-up reconciliation ran before A's kill, so only B's prepare (under the
    flock) can see that no checkpointed claim owns the bit.
    """
    old_socket = dirs.registry / f"{DRIVER}-pod-a-reg.sock"
    new_socket = dirs.registry / f"{DRIVER}-pod-b-reg.sock"
    with instance(dirs, api, "pod-b") as survivor, instance(dirs, api, "pod-a", "prepare:after_sysfs") as victim:
        for process in (survivor, victim):
            await asyncio.to_thread(process.wait_for_event, "agent_ready", 30)
        doomed = KubeletClient(old_socket, timeout=20)
        try:
            with pytest.raises(Exception):  # noqa: B017, PT011 - the connection dies with the process
                await doomed.prepare([CLAIM])
        finally:
            doomed.close()
        assert await asyncio.to_thread(victim.process.wait, 20) == -signal.SIGKILL
        assert dirs.allocated() == DEVICES  # the stray bits
        assert dirs.checkpoint_devices() == {}
        client = KubeletClient(new_socket, timeout=20)
        try:
            answer = (await client.prepare([CLAIM]))[CLAIM.uid]
            assert answer.error == ""
            assert_prepared(dirs)
            assert await client.unprepare([CLAIM]) == {CLAIM.uid: ""}
            assert_clean(dirs)
        finally:
            client.close()
        reclaimed = await asyncio.to_thread(survivor.wait_for_event, "stray_allocation_reclaimed", 5)
        assert reclaimed["device"] in DEVICES
