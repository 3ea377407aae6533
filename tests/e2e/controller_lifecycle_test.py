"""The controller keeps slices equal to sysfs through changes, deletions, restarts, bad
sysfs content, a missing node agent and an API server outage (real control plane)."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
import uuid
from collections.abc import AsyncIterator, MutableMapping
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from kubernetes_asyncio.client import ApiClient, CoreV1Api
from kubernetes_asyncio.client.exceptions import ApiException
from structlog.testing import capture_logs

from mockaccel_common.plugin_socket import dra_socket
from mockaccel_common.simulator.engine import SimulatedNode
from mockaccel_common.simulator.topology import loads_topology
from mockaccel_controller.settings import Settings
from mockaccel_testing import ControlPlane, create_node
from mockaccel_testing.controller import (
    PausableProxy,
    WriteCounter,
    controller_settings,
    device_names,
    kubeconfig_via,
    list_slices,
    running_controller,
)
from mockaccel_testing.polling import wait_until
from mockaccel_testing.topologies import SMALL_NODE

pytestmark = pytest.mark.asyncio
TOPOLOGY = SMALL_NODE
# PCI bus order numbers the PF without NUMA affinity (buses 0x01…) before NUMA 0's (0x11…).
BASE = ["mock1", "mock2"]
NONE = ["mock0"]


class NodeUnderTest:
    def __init__(self, name: str, sim: SimulatedNode, kubeconfig: Path) -> None:
        self.name = name
        self.sim = sim
        self.kubeconfig = kubeconfig

    def settings(self, *extra: str, kubeconfig: Path | None = None) -> Settings:
        return controller_settings(self.name, self.sim.root, kubeconfig or self.kubeconfig, *extra)

    def pools(self, numa0: list[str], none: list[str] | None = None) -> dict[str, list[str]]:
        result = {f"{self.name}/numa0": numa0}
        if none is not None:
            result[f"{self.name}/numa-none"] = none
        return result


@pytest_asyncio.fixture
async def node(kube: ApiClient, control_plane: ControlPlane, tmp_path: Path) -> AsyncIterator[NodeUnderTest]:
    name = f"ctl-life-{uuid.uuid4().hex[:6]}"
    await create_node(kube, name)
    sim = SimulatedNode.create(tmp_path / "sys", loads_topology(TOPOLOGY).node("n"))
    yield NodeUnderTest(name, sim, control_plane.kubeconfig)
    with contextlib.suppress(ApiException):  # the GC test deletes it itself
        await CoreV1Api(kube).delete_node(name)


async def published(kube: ApiClient, node: str, expected: dict[str, list[str]], within: float = 30.0) -> None:
    async def probe() -> bool:
        return device_names(await list_slices(kube, node)) == expected

    await wait_until(f"slices of {node} == {expected}", probe, within)


Logs = list[MutableMapping[str, Any]]


def events(logs: Logs, name: str, node: str) -> list[MutableMapping[str, Any]]:
    return [e for e in logs if e["event"] == name and e.get("node") == node]


async def logged(logs: Logs, name: str, node: str, count: int = 1) -> list[MutableMapping[str, Any]]:
    async def probe() -> list[MutableMapping[str, Any]] | None:
        found = events(logs, name, node)
        return found if len(found) >= count else None

    return await wait_until(f"{count} {name} event(s)", probe)


async def test_new_vfs_and_a_removed_device_show_up_in_the_slices(kube: ApiClient, node: NodeUnderTest) -> None:
    async with running_controller(node.settings()):
        await published(kube, node.name, node.pools(BASE, NONE))
        node.sim.write("mock1", "sriov_numvfs", "2")
        await published(kube, node.name, node.pools(["mock1", "mock1v0", "mock1v1", "mock2"], NONE))
        slices = await list_slices(kube, node.name)
        (numa0,) = (s for s in slices if s["spec"]["pool"]["name"].endswith("numa0"))
        assert numa0["spec"]["pool"]["generation"] == 1  # the pool's one slice was updated in place
        node.sim.remove_pf("mock0")
        await published(kube, node.name, node.pools(["mock1", "mock1v0", "mock1v1", "mock2"]))


async def test_a_slice_deleted_by_hand_comes_back(kube: ApiClient, node: NodeUnderTest) -> None:
    async with running_controller(node.settings()):
        await published(kube, node.name, node.pools(BASE, NONE))
        victim = (await list_slices(kube, node.name))[0]["metadata"]["name"]
        await kube.call_api(
            f"/apis/resource.k8s.io/v1/resourceslices/{victim}", "DELETE", auth_settings=["BearerToken"]
        )
        await published(kube, node.name, node.pools(BASE, NONE), within=5)
        assert victim not in {s["metadata"]["name"] for s in await list_slices(kube, node.name)}


async def test_deleting_the_node_removes_its_slices_for_good(kube: ApiClient, node: NodeUnderTest) -> None:
    with capture_logs() as logs:
        async with running_controller(node.settings()):
            await published(kube, node.name, node.pools(BASE, NONE))
            await CoreV1Api(kube).delete_node(node.name)
            await published(kube, node.name, {}, within=60)  # the garbage collector follows the ownerReference
            await logged(logs, "node_missing", node.name)  # the controller saw the deletion and did not re-create
            assert device_names(await list_slices(kube, node.name)) == {}


async def test_a_restarted_controller_writes_nothing(kube: ApiClient, node: NodeUnderTest) -> None:
    settings = node.settings("--resync-interval", "0.3")
    async with running_controller(settings):
        await published(kube, node.name, node.pools(BASE, NONE))
    with capture_logs() as logs:
        async with WriteCounter(kube, node.name) as counter, running_controller(settings):
            await logged(logs, "ready", node.name)
            passes = await logged(logs, "reconciled", node.name, count=4)  # start-up, watch, resyncs
            await counter.barrier()
            assert counter.writes == 0, counter.events
    assert any("resync" in p["reasons"] for p in passes)
    assert all((p["created"], p["updated"], p["deleted"]) == (0, 0, 0) for p in passes)


async def test_bad_sysfs_content_skips_the_device_and_the_loop_lives_on(kube: ApiClient, node: NodeUnderTest) -> None:
    mock1 = node.sim.root / "class/mock-accel/mock1"
    with capture_logs() as logs:
        async with running_controller(node.settings()):
            await published(kube, node.name, node.pools(BASE, NONE))
            good = (mock1 / "memory_size").read_text()
            (mock1 / "memory_size").write_text("lots\n")  # garbled
            await published(kube, node.name, node.pools(["mock2"], NONE), within=5)
            os.unlink(node.sim.root / "class/mock-accel/mock0/uuid")  # missing
            await published(kube, node.name, node.pools(["mock2"]), within=5)
            # A device vanishing mid-scan leaves a class entry whose directory is gone.
            os.symlink("../../devices/gone/mock-accel/mock9", node.sim.root / "class/mock-accel/mock9")
            (mock1 / "memory_size").write_text(good)
            await published(kube, node.name, node.pools(BASE), within=5)
            skipped = {e["device"]: e["reason"] for e in events(logs, "device_skipped", node.name)}
            assert "memory_size" in skipped["mock1"]
            assert "uuid" in skipped["mock0"]
            assert "mock9" in skipped
            assert events(logs, "device_readable_again", node.name)[0]["device"] == "mock1"


async def test_slices_are_published_only_while_the_agent_serves(
    kube: ApiClient, node: NodeUnderTest, tmp_path: Path
) -> None:
    # The chart's agent serves dra-<pod UID>.sock; the controller knows only the shared plugin directory.
    plugin_dir = Path(tempfile.mkdtemp(prefix="ctl-", dir="/tmp"))  # AF_UNIX paths are short: no deep tmp_path
    sock = dra_socket(plugin_dir, str(uuid.uuid4()))
    settings = node.settings(
        "--require-agent", "true", "--plugin-dir", str(plugin_dir), "--agent-check-interval", "0.2"
    )
    try:
        with capture_logs() as logs:
            async with running_controller(settings):
                paused = await logged(logs, "publishing_paused", node.name)
                assert paused[0]["reason"] == "no DRA socket in the plugin directory"
                assert device_names(await list_slices(kube, node.name)) == {}
                # The controller only connects, and the backlog takes that: a listening socket that
                # never accepts leaves no connection behind (an asyncio server's accepted transports
                # could outlive the test's loop and fail a later test with ResourceWarning).
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
                    listener.bind(str(sock))
                    listener.listen(128)
                    await published(kube, node.name, node.pools(BASE, NONE), within=5)
                    await logged(logs, "agent_serving", node.name)
    finally:
        shutil.rmtree(plugin_dir, ignore_errors=True)


async def test_an_api_outage_is_ridden_out(kube: ApiClient, node: NodeUnderTest, control_plane: ControlPlane) -> None:
    async with PausableProxy(control_plane.apiserver_port) as proxy:
        kubeconfig = kubeconfig_via(control_plane.kubeconfig, node.sim.root.parent / "proxy.kubeconfig", proxy.port)
        with capture_logs() as logs:
            async with running_controller(node.settings("--request-timeout", "2", kubeconfig=kubeconfig)):
                await published(kube, node.name, node.pools(BASE, NONE))
                proxy.pause()
                node.sim.write("mock1", "sriov_numvfs", "1")
                await logged(logs, "api_unavailable", node.name, count=2)
                assert device_names(await list_slices(kube, node.name)) == node.pools(BASE, NONE)
                proxy.resume()
                await published(kube, node.name, node.pools(["mock1", "mock1v0", "mock2"], NONE), within=10)
                await logged(logs, "api_recovered", node.name)


async def test_remove_on_shutdown_and_the_v1beta1_shape(kube: ApiClient, node: NodeUnderTest) -> None:
    settings = node.settings("--resource-api-version", "v1beta1", "--remove-on-shutdown", "true")
    with capture_logs() as logs:
        async with running_controller(settings) as controller:
            await published(kube, node.name, node.pools(BASE, NONE))  # read back through v1
            beta = await list_slices(kube, node.name, "v1beta1")
            assert all("basic" in d for s in beta for d in s["spec"]["devices"])
            await controller.stop()
        assert device_names(await list_slices(kube, node.name)) == {}
    assert events(logs, "api_discovered", node.name)[0]["version"] == "v1beta1"
    assert events(logs, "slices_removed", node.name)[0]["count"] == 2
