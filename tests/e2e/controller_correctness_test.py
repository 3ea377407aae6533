"""Issue #13 against the real control plane: pools never blink, transient read errors keep a
device, and a 250-character node name is not an exit loop. (Oversized watch lines cannot come
from a real API server, whose objects are far below aiohttp's 4 MiB line limit here; see
services/controller/mockaccel_controller/adapters/watch_test.py.)"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, MutableMapping
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from kubernetes_asyncio.client import ApiClient, CoreV1Api
from kubernetes_asyncio.client.exceptions import ApiException
from structlog.testing import capture_logs

from mockaccel_common.simulator.engine import SimulatedNode
from mockaccel_common.simulator.topology import loads_topology
from mockaccel_testing import ControlPlane, create_node
from mockaccel_testing.controller import (
    PoolRecorder,
    controller_settings,
    device_names,
    list_slices,
    running_controller,
)
from mockaccel_testing.polling import wait_until

pytestmark = pytest.mark.asyncio
TOPOLOGY = """
[[node]]
name = "n"
[[node.pf]]
numa_node = 0
count = 2
total_vfs = 4
"""
Logs = list[MutableMapping[str, Any]]


@pytest_asyncio.fixture
async def node(kube: ApiClient, tmp_path: Path) -> AsyncIterator[tuple[str, SimulatedNode]]:
    name = f"ctl-corr-{uuid.uuid4().hex[:6]}"
    await create_node(kube, name)
    sim = SimulatedNode.create(tmp_path / "sys", loads_topology(TOPOLOGY).node("n"))
    yield name, sim
    with contextlib.suppress(ApiException):
        await CoreV1Api(kube).delete_node(name)


async def published(kube: ApiClient, node: str, expected: dict[str, list[str]], within: float = 30.0) -> None:
    async def probe() -> bool:
        return device_names(await list_slices(kube, node)) == expected

    await wait_until(f"slices of {node} == {expected}", probe, within)


async def passes_after(logs: Logs, node: str, count: int, change: Callable[[], None]) -> None:
    """Make ``change`` (which causes a pass) and wait until the controller logged ``count`` more passes."""
    start = sum(1 for e in logs if e["event"] == "reconciled" and e.get("node") == node)
    change()

    async def probe() -> bool:
        return sum(1 for e in logs if e["event"] == "reconciled" and e.get("node") == node) >= start + count

    await wait_until(f"{count} more passes", probe, 15)


async def test_a_pool_never_has_zero_slices_while_its_devices_change(
    kube: ApiClient, control_plane: ControlPlane, node: tuple[str, SimulatedNode]
) -> None:
    name, sim = node
    pool = f"{name}/numa0"
    async with running_controller(controller_settings(name, sim.root, control_plane.kubeconfig)):
        await published(kube, name, {pool: ["mock0", "mock1"]})
        first = (await list_slices(kube, name))[0]["metadata"]["name"]
        async with PoolRecorder(kube, name) as recorder:
            sim.write("mock0", "sriov_numvfs", "2")
            await published(kube, name, {pool: ["mock0", "mock0v0", "mock0v1", "mock1"]})
            sim.write("mock0", "sriov_numvfs", "0")
            await published(kube, name, {pool: ["mock0", "mock1"]})
            await recorder.barrier()
        assert recorder.views, "the recorder saw no write"
        empty = [view for view in recorder.views if view.get(pool, 0) == 0]
        assert not empty, f"the pool had no slice in {len(empty)} of {len(recorder.views)} states"
        slices = await list_slices(kube, name)
        assert [s["metadata"]["name"] for s in slices] == [first]  # updated in place
        assert slices[0]["spec"]["pool"]["generation"] == 1


async def test_a_transient_read_error_keeps_the_device_published(
    kube: ApiClient, control_plane: ControlPlane, node: tuple[str, SimulatedNode]
) -> None:
    name, sim = node
    pool = f"{name}/numa0"
    capabilities = sim.root / "class/mock-accel/mock1/capabilities"
    with capture_logs():
        async with running_controller(controller_settings(name, sim.root, control_plane.kubeconfig)):
            await published(kube, name, {pool: ["mock0", "mock1"]})
            saved = capabilities.read_text()
            capabilities.unlink()
            capabilities.mkdir()  # reads now fail with EISDIR, as EIO from a busy device would
            sim.write("mock0", "sriov_numvfs", "1")  # a change elsewhere: a pass reads mock1 again
            await published(kube, name, {pool: ["mock0", "mock0v0", "mock1"]})
            # One more pass, caused by a change elsewhere, still finds mock1 unreadable and keeps it.
            sim.write("mock0", "sriov_numvfs", "0")
            await published(kube, name, {pool: ["mock0", "mock1"]})
            capabilities.rmdir()
            capabilities.write_text(saved)


async def test_a_250_character_node_name_is_not_an_exit_loop(
    kube: ApiClient, control_plane: ControlPlane, tmp_path: Path
) -> None:
    name = "n" + uuid.uuid4().hex[:8] + "x" * 241  # 250 characters: its pool name would be 256
    body: Any = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}}
    await CoreV1Api(kube).create_node(body)
    sim = SimulatedNode.create(tmp_path / "sys", loads_topology(TOPOLOGY).node("n"))
    try:
        with capture_logs() as logs:
            async with running_controller(controller_settings(name, sim.root, control_plane.kubeconfig)) as controller:

                async def skipped() -> bool:
                    found = {e["device"] for e in logs if e["event"] == "device_skipped"}
                    return {"mock0", "mock1"} <= found

                await wait_until("both devices skipped as unpublishable", skipped, 15)
                # A change causes another pass: the controller keeps running instead of exiting.
                await passes_after(logs, name, 1, lambda: sim.write("mock0", "sriov_numvfs", "1"))
                assert not controller.task.done()
                assert await list_slices(kube, name) == []
        reasons = [e["reason"] for e in logs if e["event"] == "device_skipped"]
        assert all("cannot be published" in r for r in reasons)
    finally:
        await CoreV1Api(kube).delete_node(name)
