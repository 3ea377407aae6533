"""The controller against the real control plane: the slice layout of docs/abi.md §8.2 and
allocation by the real scheduler through the documented DeviceClasses (§8.3).

Two simulated nodes with the topology of deploy/examples/topology-two-numa.toml, one
controller per node, each with its own sysfs root.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from kubernetes_asyncio.client import ApiClient, CoreV1Api, ResourceV1Api, V1Namespace, V1ObjectMeta

from mockaccel_common.simulator.engine import SimulatedNode
from mockaccel_common.simulator.topology import load_topology
from mockaccel_testing import ControlPlane, create_node
from mockaccel_testing.controller import (
    DRIVER,
    apply_device_classes,
    controller_settings,
    device_names,
    list_slices,
    running_controller,
)
from mockaccel_testing.examples import EXAMPLES, apply_example, claim_of
from mockaccel_testing.polling import wait_until

pytestmark = pytest.mark.asyncio
GiB = 2**30

TOPOLOGY = Path("deploy/examples/topology-two-numa.toml")
EXPECTED_POOLS = {
    "numa0": ["mock0", "mock0v0", "mock0v1", "mock0v2", "mock0v3", "mock1"],
    "numa1": ["mock2", "mock2v0", "mock2v1", "mock2v2", "mock2v3", "mock3"],
}


class Cluster:
    def __init__(self, nodes: dict[str, SimulatedNode]) -> None:
        self.nodes = nodes


async def delete_nodes(kube: ApiClient, nodes: list[str]) -> None:
    """Remove the test's Nodes; the garbage collector then removes their slices."""
    for node in nodes:
        await CoreV1Api(kube).delete_node(node)


@pytest_asyncio.fixture
async def two_nodes(kube: ApiClient, control_plane: ControlPlane, tmp_path: Path) -> AsyncIterator[Cluster]:
    """Two Nodes with two NUMA nodes each, VFs on mock0 and mock2, and their controllers running."""
    suffix = uuid.uuid4().hex[:6]
    spec = load_topology(TOPOLOGY).node("node-a")
    sims: dict[str, SimulatedNode] = {}
    async with AsyncExitStack() as stack:
        for letter in "ab":
            node = f"ctl-{suffix}-{letter}"
            await create_node(kube, node)
            stack.push_async_callback(delete_nodes, kube, [node])  # after its controller stopped
            sim = sims[node] = SimulatedNode.create(tmp_path / node, spec)
            for pf in ("mock0", "mock2"):
                sim.write(pf, "sriov_numvfs", "4")
            settings = controller_settings(node, sim.root, control_plane.kubeconfig)
            await stack.enter_async_context(running_controller(settings))
        for node in sims:
            expected = {f"{node}/{pool}": names for pool, names in EXPECTED_POOLS.items()}

            async def published(node: str = node, expected: dict[str, list[str]] = expected) -> bool:
                return device_names(await list_slices(kube, node)) == expected

            await wait_until(f"slices of {node}", published)
        yield Cluster(sims)


def attributes(device: dict[str, Any]) -> dict[str, Any]:
    return {key: next(iter(value.values())) for key, value in device["attributes"].items()}


async def test_two_nodes_publish_exactly_the_documented_slices(kube: ApiClient, two_nodes: Cluster) -> None:
    core = CoreV1Api(kube)
    for node, sim in two_nodes.nodes.items():
        owner_uid = (await core.read_node(node)).metadata.uid
        slices = await list_slices(kube, node)
        assert len(slices) == 2
        for s, pool in zip(slices, ("numa0", "numa1"), strict=True):
            meta, spec = s["metadata"], s["spec"]
            assert meta["generateName"] == f"{node}-{DRIVER}-"
            assert meta["labels"] == {"driver": DRIVER, "node": node, f"{DRIVER}/pool": pool}
            assert meta["ownerReferences"] == [
                {"apiVersion": "v1", "kind": "Node", "name": node, "uid": owner_uid, "controller": True}
            ]
            assert spec["driver"] == DRIVER
            assert spec["nodeName"] == node
            assert spec["pool"] == {"name": f"{node}/{pool}", "generation": 1, "resourceSliceCount": 1}
        devices = {d["name"]: d for s in slices for d in s["spec"]["devices"]}
        sysfs = sim.root / "class/mock-accel"
        assert attributes(devices["mock2"]) == {
            f"{DRIVER}/uuid": (sysfs / "mock2/uuid").read_text().strip(),
            f"{DRIVER}/memory": 16 * GiB,
            f"{DRIVER}/deviceType": "pf",
            f"{DRIVER}/pciAddress": "0000:21:00.0",
            f"{DRIVER}/numaNode": 1,
            f"{DRIVER}/capabilities": int((sysfs / "mock2/capabilities").read_text(), 16),
            "resource.kubernetes.io/pcieRoot": "pci0000:20",
        }
        assert devices["mock2"]["capacity"] == {f"{DRIVER}/memory": {"value": "16Gi"}}
        assert attributes(devices["mock0v3"]) == {
            f"{DRIVER}/uuid": (sysfs / "mock0v3/uuid").read_text().strip(),
            f"{DRIVER}/memory": 2 * GiB,
            f"{DRIVER}/deviceType": "vf",
            f"{DRIVER}/pciAddress": "0000:11:00.4",
            f"{DRIVER}/numaNode": 0,
            f"{DRIVER}/capabilities": int((sysfs / "mock0v3/capabilities").read_text(), 16),
            f"{DRIVER}/physfn": "mock0",
            f"{DRIVER}/vfIndex": 3,
            "resource.kubernetes.io/pcieRoot": "pci0000:10",
        }
        assert devices["mock0v3"]["capacity"] == {f"{DRIVER}/memory": {"value": "2Gi"}}


async def test_the_scheduler_allocates_through_each_device_class(kube: ApiClient, two_nodes: Cluster) -> None:
    core, resource = CoreV1Api(kube), ResourceV1Api(kube)
    classes = await apply_device_classes(kube)
    assert classes == ["mock-accel-numa-aware-pf", "mock-accel-numa-aware-vf", "mock-accel-pf", "mock-accel-vf"]
    ns = f"ctl-sched-{uuid.uuid4().hex[:6]}"
    await core.create_namespace(V1Namespace(metadata=V1ObjectMeta(name=ns)))

    async def sa_ready() -> bool:
        accounts = await core.list_namespaced_service_account(ns, field_selector="metadata.name=default")
        return bool(accounts.items)

    await wait_until("the default ServiceAccount", sa_ready)
    nodes = sorted(two_nodes.nodes)
    for example in EXAMPLES:
        await apply_example(kube, ns, example, nodes)

    async def bound(name: str) -> Any:
        """The pod once the scheduler bound it (its claim was allocated and reserved before that)."""
        pod = await core.read_namespaced_pod(name, ns)
        return pod if pod.spec and pod.spec.node_name and claim_of(pod) else None

    by_case = {}
    for example in EXAMPLES:
        pod = await wait_until(f"pod {example} bound", lambda example=example: bound(example), 60)  # type: ignore[misc]
        claim = await resource.read_namespaced_resource_claim(str(claim_of(pod)), ns)
        results = claim.status.allocation.devices.results
        assert {r.driver for r in results} == {DRIVER}
        assert pod.spec.node_name in two_nodes.nodes
        assert {r.pool.split("/")[0] for r in results} == {pod.spec.node_name}
        assert [r.name for r in claim.status.reserved_for] == [example]
        by_case[example] = results
    assert "v" not in by_case["pf"][0].device  # PFs are mockN, VFs mockNvM
    mixed = {r.request: r.device for r in by_case["mixed"]}
    assert "v" not in mixed["pf"]
    assert "v" in mixed["vf"]
    numa = by_case["numa-pair"]
    assert len(numa) == 2
    assert len({r.device for r in numa}) == 2
    assert len({r.pool for r in numa}) == 1  # one pool = one NUMA node of one node
    assert all("v" not in r.device for r in numa)
    vfs = by_case["vfs-of-one-pf"]
    assert len({r.device for r in vfs}) == 2
    assert len({r.device.rsplit("v", 1)[0] for r in vfs}) == 1  # both VFs of one PF
