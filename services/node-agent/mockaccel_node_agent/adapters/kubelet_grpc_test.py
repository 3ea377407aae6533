"""The agent in-process behind its real sockets, a fake API server behind the real client.

Tagged integration (real Unix sockets and TCP ports).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

import pytest
import pytest_asyncio
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from structlog.testing import capture_logs

from mockaccel_common.simulator.engine import SimulatedNode
from mockaccel_node_agent import app
from mockaccel_node_agent.adapters.kubelet_grpc import check_liveness
from mockaccel_node_agent.conftest import NODE
from mockaccel_node_agent.domain.claims import ClaimRef
from mockaccel_node_agent.domain.health import Health
from mockaccel_node_agent.settings import Settings
from mockaccel_testing.kubelet_client import KubeletClient
from mockaccel_testing.node_agent import DRIVER, AgentDirs, FakeApiServer, claim_object, kubeconfig_for
from mockaccel_testing.polling import wait_until

pytestmark = pytest.mark.asyncio
T = TypeVar("T")
POOL0 = f"{NODE}/numa0"


class Agent:
    def __init__(self, dirs: AgentDirs, settings: Settings, task: asyncio.Task[None], stop: asyncio.Event) -> None:
        self.dirs, self.settings, self.task, self.stop = dirs, settings, task, stop
        self.client = KubeletClient(settings.registration_socket, timeout=10)


@contextlib.asynccontextmanager
async def running(dirs: AgentDirs, settings: Settings) -> AsyncIterator[Agent]:
    stop = asyncio.Event()
    task = asyncio.create_task(app.run(settings, stop))

    async def up() -> bool:
        if task.done():
            task.result()
        return settings.registration_socket.exists()

    await wait_until("the registration socket", up)
    agent = Agent(dirs, settings, task, stop)
    try:
        yield agent
    finally:
        agent.client.close()
        stop.set()
        await asyncio.wait_for(task, 15)


@pytest_asyncio.fixture
async def api() -> AsyncIterator[FakeApiServer]:
    server = FakeApiServer()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def settings_for(dirs: AgentDirs, api: FakeApiServer, **overrides: object) -> Settings:
    kubeconfig = kubeconfig_for(dirs.root / "kubeconfig", server=api.url)
    env = dirs.env(NODE, kubeconfig)
    settings = Settings.load([], env)
    return replace(settings, **overrides)  # type: ignore[arg-type]


async def test_registration_answers_like_the_reference_helper(dirs: AgentDirs, api: FakeApiServer) -> None:
    async with running(dirs, settings_for(dirs, api)) as agent:
        info = await agent.client.get_info()
        assert info.name == DRIVER
        assert info.endpoint == str(dirs.plugin / "dra.sock")
        assert info.supported_versions == ("v1.DRAPlugin", "v1beta1.DRAPlugin", "v1alpha1.DRAResourceHealth")
        await agent.client.notify(True)
        with pytest.raises(GRPCError) as failed:
            await agent.client.notify(False, "version mismatch")
        assert "version mismatch" in str(failed.value.message)


async def test_without_health_stream_it_is_neither_served_nor_advertised(dirs: AgentDirs, api: FakeApiServer) -> None:
    async with running(dirs, settings_for(dirs, api, health_stream=False)) as agent:
        assert (await agent.client.get_info()).supported_versions == ("v1.DRAPlugin", "v1beta1.DRAPlugin")
        # grpclib answers an unknown streaming method with UNIMPLEMENTED, seen by its
        # client as UNKNOWN "Missing content-type header"; either way: not served.
        with pytest.raises(GRPCError):
            await anext(agent.client.watch_health())


@pytest.mark.parametrize("version", ["v1", "v1beta1"])
async def test_prepare_and_unprepare_over_the_socket(dirs: AgentDirs, api: FakeApiServer, version: str) -> None:
    api.add(claim_object("ns", "c1", "uid-1", [("accel/sub", DRIVER, POOL0, "mock3"), ("x", "other", "p", "d")]))
    async with running(dirs, settings_for(dirs, api)) as agent:
        ref = ClaimRef("ns", "uid-1", "c1")
        answer = (await agent.client.prepare([ref], version))["uid-1"]
        assert answer.error == ""
        assert answer.devices == ((POOL0, "mock3", ("accel",), ("k8s.mock-accel.example.com/device=uid-1-mock3",)),)
        assert dirs.allocated() == {"mock3"}
        assert await agent.client.unprepare([ref, ClaimRef("ns", "uid-2", "gone")], version) == {
            "uid-1": "",
            "uid-2": "",
        }
        assert dirs.allocated() == set()
        assert dirs.specs() == set()


async def test_malformed_requests_get_a_status_or_a_claim_error(dirs: AgentDirs, api: FakeApiServer) -> None:
    async with running(dirs, settings_for(dirs, api)) as agent:
        with pytest.raises(GRPCError) as failed:
            await agent.client.prepare([ClaimRef("ns", "", "c1")])
        assert failed.value.status is Status.INVALID_ARGUMENT
        with pytest.raises(GRPCError):
            await agent.client.unprepare([ClaimRef("ns", "", "c1")])
        answer = await agent.client.prepare([ClaimRef("ns", "uid-9", "")])
        assert "empty name" in answer["uid-9"].error
        assert await agent.client.prepare([]) == {}
        # Still serving after all of that.
        assert (await agent.client.get_info()).name == DRIVER
    assert dirs.allocated() == set()


async def test_api_server_down_is_a_claim_error(dirs: AgentDirs, api: FakeApiServer) -> None:
    settings = settings_for(dirs, api)
    await api.stop()  # nothing listens on its port any more
    async with running(dirs, replace(settings, api_timeout=2.0)) as agent:
        answer = await agent.client.prepare([ClaimRef("ns", "uid-1", "c1")])
        assert "unreachable" in answer["uid-1"].error
    assert dirs.allocated() == set()


async def test_api_errors_map_to_claim_errors(dirs: AgentDirs, api: FakeApiServer) -> None:
    async with running(dirs, settings_for(dirs, api)) as agent:
        assert "not found" in (await agent.client.prepare([ClaimRef("ns", "u", "nope")]))["u"].error
        api.status_override = 403
        assert "RBAC" in (await agent.client.prepare([ClaimRef("ns", "u", "nope")]))["u"].error
        api.status_override = 500
        assert "API server failed" in (await agent.client.prepare([ClaimRef("ns", "u", "nope")]))["u"].error


async def test_a_server_without_resource_v1_is_named_not_claim_not_found(dirs: AgentDirs, api: FakeApiServer) -> None:
    """Outside the support matrix (docs/versions.md) the error says so instead of a misleading "not found"."""
    api.add(claim_object("ns", "c1", "uid-1", [("r", DRIVER, POOL0, "mock0")]))
    api.serves_v1 = False
    async with running(dirs, settings_for(dirs, api)) as agent:
        error = (await agent.client.prepare([ClaimRef("ns", "uid-1", "c1")]))["uid-1"].error
    assert "does not serve resource.k8s.io/v1" in error
    assert "docs/versions.md" in error
    assert "not found" not in error


async def test_health_stream_sends_the_full_list_then_every_change(
    dirs: AgentDirs, api: FakeApiServer, sim: SimulatedNode
) -> None:
    async with running(dirs, settings_for(dirs, api)) as agent:
        stream = agent.client.watch_health()
        first = await asyncio.wait_for(anext(stream), 10)
        assert [d.device for d in first] == [f"mock{i}" for i in range(8)]
        assert {d.pool for d in first} == {POOL0, f"{NODE}/numa1"}
        assert all(d.health is Health.HEALTHY for d in first)
        await asyncio.to_thread(sim.set_health, "mock5", False)
        second = await asyncio.wait_for(anext(stream), 10)
        bad = [d for d in second if d.health is Health.UNHEALTHY]
        assert [d.device for d in bad] == ["mock5"]
        assert "fault" in bad[0].message
        await asyncio.to_thread(sim.write, "mock0", "sriov_numvfs", "2")  # new devices appear
        # The VFs appear one after the other; each appearance is a new complete list.
        seen: set[str] = set()
        while not {"mock0v0", "mock0v1"} <= seen:
            seen = {d.device for d in await asyncio.wait_for(anext(stream), 10)}
        assert len(seen) == 10
        await stream.aclose()


async def test_health_list_is_resent_well_inside_kubelets_timeout(dirs: AgentDirs, api: FakeApiServer) -> None:
    """kubelet reports a device Unknown when its last list is older than the health timeout (30 s).

    Scaled down: a 0.3 s resend period against a 1.5 s timeout (kubelet's 30 s is
    three of our 10 s periods; the margin absorbs a loaded CI machine), the stream
    held open for five timeouts with no health change at all.
    """
    timeout = 1.5
    async with running(dirs, settings_for(dirs, api, health_resend_interval=0.3)) as agent:
        stream = agent.client.watch_health()
        arrivals = [time.monotonic()]
        first = await asyncio.wait_for(anext(stream), 10)
        arrivals[0] = time.monotonic()
        held_until = arrivals[0] + 5 * timeout
        while (remaining := held_until - time.monotonic()) > 0:
            try:
                async with asyncio.timeout(min(remaining, 2 * timeout)):
                    again = await anext(stream)
            except TimeoutError:
                break
            arrivals.append(time.monotonic())
            assert again == first  # the complete list, unchanged
        arrivals.append(time.monotonic())
        await stream.aclose()
    gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
    assert max(gaps) < timeout, f"a device would have turned Unknown: gaps {gaps}"


async def test_liveness_exercises_the_sockets_and_metrics_count(dirs: AgentDirs, api: FakeApiServer) -> None:
    api.add(claim_object("ns", "c1", "uid-1", [("r", DRIVER, POOL0, "mock0")]))
    settings = settings_for(dirs, api, health_port=0, metrics_port=0)
    with capture_logs() as logs:
        async with running(dirs, settings) as agent:

            async def ports() -> dict[str, int] | None:
                found = {e["event"]: e["port"] for e in logs if e["event"].endswith("_listening")}
                return found if len(found) == 2 else None

            found = await wait_until("both ports", ports)
            liveness, metrics = found["liveness_listening"], found["metrics_listening"]
            assert liveness > 0
            assert metrics > 0
            assert await check_liveness("127.0.0.1", liveness)
            await agent.client.prepare([ClaimRef("ns", "uid-1", "c1")])
            await agent.client.prepare([ClaimRef("ns", "uid-x", "missing")])
            text = await asyncio.to_thread(_get, f"http://127.0.0.1:{metrics}/metrics")
            assert 'mockaccel_node_agent_prepare_claims_total{result="success"} 1.0' in text
            assert 'mockaccel_node_agent_prepare_claims_total{result="error"} 1.0' in text
            assert "mockaccel_node_agent_prepare_claim_duration_seconds_bucket" in text
            with pytest.raises(GRPCError):
                await agent.client.notify(False, "rejected")
            assert not await check_liveness("127.0.0.1", liveness)  # surfaced in health
            text = await asyncio.to_thread(_get, f"http://127.0.0.1:{metrics}/metrics")
            assert "mockaccel_node_agent_registered 0.0" in text
            await agent.client.notify(True)
            assert await check_liveness("127.0.0.1", liveness)


async def test_liveness_fails_when_a_socket_is_gone(dirs: AgentDirs, api: FakeApiServer) -> None:
    settings = settings_for(dirs, api, health_port=0)
    with capture_logs() as logs:
        async with running(dirs, settings):

            async def bound() -> int | None:
                return next((e["port"] for e in logs if e["event"] == "liveness_listening"), None)

            port = await wait_until("the liveness port", bound)
            assert await check_liveness("127.0.0.1", port)
            settings.dra_socket.unlink()  # what a stray cleanup on the host would do
            assert not await check_liveness("127.0.0.1", port)


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        body: bytes = response.read()
    return body.decode()


async def test_per_pod_sockets_and_their_removal_on_stop(dirs: AgentDirs, api: FakeApiServer) -> None:
    old = settings_for(dirs, api, pod_uid="pod-a")
    new = settings_for(dirs, api, pod_uid="pod-b")
    assert old.registration_socket.name == f"{DRIVER}-pod-a-reg.sock"
    assert old.dra_socket.name == "dra-pod-a.sock"
    async with running(dirs, old) as first:
        async with running(dirs, new) as second:
            assert (await first.client.get_info()).endpoint == str(old.dra_socket)
            assert (await second.client.get_info()).endpoint == str(new.dra_socket)
        assert not new.registration_socket.exists()
        assert not new.dra_socket.exists()
        assert old.registration_socket.exists()
    assert not old.registration_socket.exists()
    assert not Path(old.dra_socket).exists()
