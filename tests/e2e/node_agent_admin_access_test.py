"""Admin access (DRAAdminAccess) end to end: the real scheduler gives the one device of a node to a
workload and to a monitoring claim, and the agent prepares both, in either order (#13 item 2).

kubelet is played by the test (KubeletClient); the scheduler, the API server and the agent are real.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from kubernetes_asyncio.client import ApiClient, CoreV1Api, ResourceV1Api

from mockaccel_node_agent.domain.cdi_building import spec_file_name
from mockaccel_node_agent.domain.claims import ClaimRef
from mockaccel_testing import ControlPlane, create_node
from mockaccel_testing.kubelet_client import KubeletClient
from mockaccel_testing.node_agent import DRIVER, AgentDirs, agent_dirs, simulated_node
from mockaccel_testing.polling import wait_for
from mockaccel_testing.service_process import service_process

pytestmark = pytest.mark.asyncio
ADMIN_LABEL = "resource.kubernetes.io/admin-access"


def one_device_slice(node: str) -> dict[str, Any]:
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceSlice",
        "metadata": {"generateName": f"{node}-{DRIVER}-"},
        "spec": {
            "driver": DRIVER,
            "nodeName": node,
            "pool": {"name": f"{node}/numa0", "generation": 1, "resourceSliceCount": 1},
            "devices": [{"name": "mock0", "attributes": {"deviceType": {"string": "pf"}}}],
        },
    }


def claim(name: str, device_class: str, *, admin: bool) -> dict[str, Any]:
    exactly: dict[str, Any] = {"deviceClassName": device_class, "count": 1}
    if admin:
        exactly["adminAccess"] = True
    return {"metadata": {"name": name}, "spec": {"devices": {"requests": [{"name": "accel", "exactly": exactly}]}}}


def pod(name: str, claim_name: str, node: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {
            "nodeSelector": {"kubernetes.io/hostname": node},
            "containers": [{"name": "c", "image": "pause", "resources": {"claims": [{"name": "accel"}]}}],
            "resourceClaims": [{"name": "accel", "resourceClaimName": claim_name}],
        },
    }


@pytest_asyncio.fixture
async def scene(kube: ApiClient, control_plane: ControlPlane) -> AsyncIterator[dict[str, Any]]:
    core, resource = CoreV1Api(kube), ResourceV1Api(kube)
    suffix = uuid.uuid4().hex[:8]
    node, ns, device_class = f"adm-{suffix}", f"adm-e2e-{suffix}", f"mock-accel-adm-{suffix}"
    with agent_dirs() as dirs:
        simulated_node(dirs, node, pfs=1, total_vfs=0)
        await create_node(kube, node)
        body: Any = {"metadata": {"name": ns, "labels": {ADMIN_LABEL: "true"}}}
        await core.create_namespace(body)
        body = {
            "metadata": {"name": device_class},
            "spec": {"selectors": [{"cel": {"expression": f'device.driver == "{DRIVER}"'}}]},
        }
        await resource.create_device_class(body)
        body = one_device_slice(node)
        slice_obj = await resource.create_resource_slice(body)
        await wait_for("the default ServiceAccount", lambda: core.read_namespaced_service_account("default", ns), bool)
        try:
            yield {"dirs": dirs, "node": node, "ns": ns, "class": device_class, "kubeconfig": control_plane.kubeconfig}
        finally:
            await core.delete_namespace(ns)
            await resource.delete_resource_slice(slice_obj.metadata.name)
            await resource.delete_device_class(device_class)
            await core.delete_node(node)


async def schedule(kube: ApiClient, scene: dict[str, Any], name: str, *, admin: bool) -> ClaimRef:
    """Create claim and pod; wait until the scheduler bound the pod (it writes the allocation first)."""
    core, resource = CoreV1Api(kube), ResourceV1Api(kube)
    ns = scene["ns"]
    body: Any = claim(name, scene["class"], admin=admin)
    await resource.create_namespaced_resource_claim(ns, body)
    body = pod(name, name, scene["node"])
    await core.create_namespaced_pod(ns, body)
    await wait_for(
        f"pod {name} bound to {scene['node']}",
        lambda: core.read_namespaced_pod(name, ns),
        lambda p: p.spec.node_name == scene["node"],
    )
    allocated = await resource.read_namespaced_resource_claim(name, ns)
    results = allocated.status.allocation.devices.results
    assert [(r.device, bool(r.admin_access)) for r in results] == [("mock0", admin)]
    return ClaimRef(ns, allocated.metadata.uid, name)


@pytest.mark.parametrize("owner_first", [True, False], ids=["owner-first", "monitor-first"])
async def test_a_monitoring_claim_and_the_owner_both_start(
    kube: ApiClient, scene: dict[str, Any], owner_first: bool
) -> None:
    dirs: AgentDirs = scene["dirs"]
    with service_process("mockaccel_node_agent", env=dirs.env(scene["node"], scene["kubeconfig"])) as agent:
        await asyncio.to_thread(agent.wait_for_event, "agent_ready", 30)
        client = KubeletClient(dirs.registration_socket, timeout=30)
        try:
            refs: dict[str, ClaimRef] = {}
            for name in ["owner", "monitor"] if owner_first else ["monitor", "owner"]:
                refs[name] = await schedule(kube, scene, name, admin=name == "monitor")
                answer = (await client.prepare([refs[name]]))[refs[name].uid]
                assert answer.error == "", f"{name}: {answer.error}"
                assert [device for _, device, _, _ in answer.devices] == ["mock0"]
            assert dirs.allocated() == {"mock0"}  # the owner's mark, untouched by the monitor
            env = dirs.spec(spec_file_name(refs["monitor"].uid))["devices"][0]["containerEdits"]["env"]
            assert "DRA_ADMIN_ACCESS=true" in env
            assert await client.unprepare([refs["monitor"]]) == {refs["monitor"].uid: ""}
            assert dirs.allocated() == {"mock0"}
            assert await client.unprepare([refs["owner"]]) == {refs["owner"].uid: ""}
            assert dirs.allocated() == set()
            assert dirs.consistent() == []
        finally:
            client.close()
