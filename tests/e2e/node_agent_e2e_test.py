"""The node agent end to end: real API server and scheduler, a simulated node, kubelet's own stubs.

The test publishes a ResourceSlice for the simulated devices in the docs/abi.md
§8.2 layout (the controller is a separate service), lets the real scheduler
allocate a two-request claim for a pod, runs the agent as a process under a
service account that may only ``get`` ResourceClaims, and then:

* prepares the claim as kubelet would: exactly the allocated devices become
  allocated in sysfs, one CDI spec appears, each device maps to its request;
  unprepare restores both;
* runs the Go client built from the official k8s.io/kubelet stubs
  (tools/go/kubelet-client): registration, prepare/unprepare in v1 and
  v1beta1, and CDI validation with the official CDI library.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from kubernetes_asyncio.client import (
    ApiClient,
    CoreV1Api,
    RbacAuthorizationV1Api,
    ResourceV1Api,
)

from mockaccel_common.provisioned import require
from mockaccel_common.sysfs.reader import scan_devices_sync
from mockaccel_node_agent.domain.cdi_building import spec_file_name
from mockaccel_node_agent.domain.claims import ClaimRef
from mockaccel_testing import ControlPlane, create_node
from mockaccel_testing.kubelet_client import KubeletClient
from mockaccel_testing.node_agent import DRIVER, AgentDirs, agent_dirs, kubeconfig_for, simulated_node
from mockaccel_testing.polling import wait_for
from mockaccel_testing.service_process import service_process

pytestmark = pytest.mark.asyncio


def kubelet_client_binary() -> Path:
    """The Go kubelet client that tools/provision/kubelet-client.sh builds."""
    return require("MOCKACCEL_KUBELET_CLIENT")


def device_slice(node: str, dirs: AgentDirs) -> dict[str, Any]:
    devices = []
    for d in scan_devices_sync(dirs.sysfs).devices:
        attributes: dict[str, Any] = {
            "uuid": {"string": str(d.uuid)},
            "memory": {"int": d.memory_size},
            "deviceType": {"string": d.kind.value},
            "pciAddress": {"string": str(d.pci_address)},
            "capabilities": {"int": int(d.capabilities)},
            "resource.kubernetes.io/pcieRoot": {"string": d.pcie_root},
        }
        if d.numa_node is not None:
            attributes["numaNode"] = {"int": d.numa_node}
        devices.append({"name": d.name, "attributes": attributes, "capacity": {"memory": {"value": "16Gi"}}})
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceSlice",
        "metadata": {
            "generateName": f"{node}-{DRIVER}-",
            "labels": {"driver": DRIVER, "node": node, f"{DRIVER}/pool": "numa0"},
        },
        "spec": {
            "driver": DRIVER,
            "nodeName": node,
            "pool": {"name": f"{node}/numa0", "generation": 1, "resourceSliceCount": 1},
            "devices": sorted(devices, key=lambda x: x["name"]),
        },
    }


@pytest_asyncio.fixture
async def scene(kube: ApiClient, control_plane: ControlPlane) -> AsyncIterator[dict[str, Any]]:
    """Node, slice, class, namespace, an allocated two-request claim, and an agent token."""
    core, resource, rbac = CoreV1Api(kube), ResourceV1Api(kube), RbacAuthorizationV1Api(kube)
    suffix = uuid.uuid4().hex[:8]
    node, ns, device_class = f"na-{suffix}", f"na-e2e-{suffix}", f"mock-accel-{suffix}"
    with agent_dirs() as dirs:
        simulated_node(dirs, node, pfs=4)
        await create_node(kube, node)
        await core.create_namespace({"metadata": {"name": ns}})  # type: ignore[arg-type]
        await resource.create_device_class(
            {  # type: ignore[arg-type]
                "metadata": {"name": device_class},
                "spec": {"selectors": [{"cel": {"expression": f'device.driver == "{DRIVER}"'}}]},
            }
        )
        slice_obj = await resource.create_resource_slice(device_slice(node, dirs))  # type: ignore[arg-type]
        # The agent's identity: a service account that may only get ResourceClaims.
        await core.create_namespaced_service_account(ns, {"metadata": {"name": "node-agent"}})  # type: ignore[arg-type]
        role = f"mock-accel-node-agent-{suffix}"
        await rbac.create_cluster_role(
            {  # type: ignore[arg-type]
                "metadata": {"name": role},
                "rules": [{"apiGroups": ["resource.k8s.io"], "resources": ["resourceclaims"], "verbs": ["get"]}],
            }
        )
        await rbac.create_cluster_role_binding(
            {  # type: ignore[arg-type]
                "metadata": {"name": role},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
                "subjects": [{"kind": "ServiceAccount", "name": "node-agent", "namespace": ns}],
            }
        )
        token = await core.create_namespaced_service_account_token(
            "node-agent", ns, {"spec": {"expirationSeconds": 3600}}  # type: ignore[arg-type]
        )
        kubeconfig = kubeconfig_for(
            dirs.root / "kubeconfig",
            server=control_plane.server,
            ca=str(control_plane.ca_cert),
            token=token.status.token,
        )
        await resource.create_namespaced_resource_claim(
            ns,
            {  # type: ignore[arg-type]
                "metadata": {"name": "pair"},
                "spec": {
                    "devices": {
                        "requests": [
                            {"name": "single", "exactly": {"deviceClassName": device_class, "count": 1}},
                            {"name": "double", "exactly": {"deviceClassName": device_class, "count": 2}},
                        ]
                    }
                },
            },
        )
        await wait_for("the default ServiceAccount", lambda: core.read_namespaced_service_account("default", ns), bool)
        await core.create_namespaced_pod(
            ns,
            {  # type: ignore[arg-type]
                "metadata": {"name": "user"},
                "spec": {
                    "containers": [{"name": "c", "image": "pause", "resources": {"claims": [{"name": "accel"}]}}],
                    "resourceClaims": [{"name": "accel", "resourceClaimName": "pair"}],
                },
            },
        )
        claim = await wait_for(
            "the claim to be allocated",
            lambda: resource.read_namespaced_resource_claim("pair", ns),
            lambda c: bool(c.status and c.status.allocation),
        )
        try:
            yield {"dirs": dirs, "node": node, "ns": ns, "claim": claim, "kubeconfig": kubeconfig}
        finally:
            await core.delete_namespace(ns)
            await resource.delete_resource_slice(slice_obj.metadata.name)
            await resource.delete_device_class(device_class)
            await rbac.delete_cluster_role_binding(role)
            await rbac.delete_cluster_role(role)
            await core.delete_node(node)


async def test_prepare_and_unprepare_the_scheduler_allocation(scene: dict[str, Any]) -> None:
    dirs: AgentDirs = scene["dirs"]
    claim = scene["claim"]
    results = claim.status.allocation.devices.results
    expected = {r.device: r.request for r in results}
    assert sorted(expected.values()) == ["double", "double", "single"]
    ref = ClaimRef(scene["ns"], claim.metadata.uid, "pair")
    with service_process("mockaccel_node_agent", env=dirs.env(scene["node"], scene["kubeconfig"])) as agent:
        await asyncio.to_thread(agent.wait_for_event, "agent_ready", 30)
        client = KubeletClient(dirs.registration_socket, timeout=30)
        try:
            answer = (await client.prepare([ref]))[ref.uid]
            assert answer.error == ""
            assert {device: requests for _, device, requests, _ in answer.devices} == {
                device: (request,) for device, request in expected.items()
            }
            assert {pool for pool, *_ in answer.devices} == {f"{scene['node']}/numa0"}
            assert dirs.allocated() == set(expected)
            assert dirs.specs() == {spec_file_name(ref.uid)}
            spec = dirs.spec(spec_file_name(ref.uid))
            names = sorted(d["name"] for d in spec["devices"])
            assert names == sorted(f"{ref.uid}-{d}" for d in expected)
            assert await client.unprepare([ref]) == {ref.uid: ""}
            assert dirs.allocated() == set()
            assert dirs.specs() == set()
            assert dirs.consistent() == []
        finally:
            client.close()


async def test_official_kubelet_stubs_and_cdi_library_accept_the_agent(scene: dict[str, Any]) -> None:
    dirs: AgentDirs = scene["dirs"]
    claim = scene["claim"]
    binary = kubelet_client_binary()
    with service_process("mockaccel_node_agent", env=dirs.env(scene["node"], scene["kubeconfig"])) as agent:
        await asyncio.to_thread(agent.wait_for_event, "agent_ready", 30)
        run = await asyncio.to_thread(
            subprocess.run,
            [
                str(binary),
                f"--registration-socket={dirs.registration_socket}",
                f"--claim-namespace={scene['ns']}",
                f"--claim-uid={claim.metadata.uid}",
                "--claim-name=pair",
                f"--cdi-dir={dirs.cdi}",
                "--versions=v1,v1beta1",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        await asyncio.to_thread(agent.wait_for_event, "plugin_registered", 5)
    report = json.loads(run.stdout)
    assert run.returncode == 0, (report, run.stderr)
    assert report["ok"] is True
    assert report["info"]["supportedVersions"][:2] == ["v1.DRAPlugin", "v1beta1.DRAPlugin"]
    for version in ("v1", "v1beta1"):
        result = report["versions"][version]
        assert result["problems"] is None or result["problems"] == []
        assert len(result["prepare"]["devices"]) == 3
        assert all(result["cdiDevicesResolved"].values())
        assert result["cdiVersions"] == ["0.5.0"]
        assert result["prepareAgainSame"] is True
        assert result["cdiGoneAfterUnprepare"] is True
    assert dirs.allocated() == set()
    assert dirs.specs() == set()


async def test_reference_plugin_writes_the_agents_spec_and_passes_the_kubelet_client(scene: dict[str, Any]) -> None:
    """tools/go/reference-plugin, the benchmark's measuring stick, does the agent's work on the same claim."""
    dirs: AgentDirs = scene["dirs"]
    claim = scene["claim"]
    ref = ClaimRef(scene["ns"], claim.metadata.uid, "pair")
    spec_name = spec_file_name(ref.uid)
    with service_process("mockaccel_node_agent", env=dirs.env(scene["node"], scene["kubeconfig"])) as agent:
        await asyncio.to_thread(agent.wait_for_event, "agent_ready", 30)
        client = KubeletClient(dirs.registration_socket, timeout=30)
        try:
            assert (await client.prepare([ref]))[ref.uid].error == ""
            agents_spec = dirs.spec(spec_name)
            assert await client.unprepare([ref]) == {ref.uid: ""}
        finally:
            client.close()
        agent.stop()
    plugin_dir = dirs.root / "reference"
    argv = [
        str(require("MOCKACCEL_REFERENCE_PLUGIN")),
        f"--kubeconfig={scene['kubeconfig']}",
        f"--plugin-dir={plugin_dir}",
        f"--registry-dir={dirs.registry}",
        f"--cdi-dir={dirs.cdi}",
        f"--sysfs-root={dirs.sysfs}",
    ]
    reference = await asyncio.to_thread(subprocess.Popen, argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        await wait_for(
            "the reference plugin's socket", lambda: asyncio.to_thread(dirs.registration_socket.exists), bool
        )
        client = KubeletClient(dirs.registration_socket, timeout=30)
        try:
            answer = (await client.prepare([ref]))[ref.uid]
            assert answer.error == ""
            assert len(answer.devices) == 3
            assert dirs.spec(spec_name) == agents_spec
            assert await client.unprepare([ref]) == {ref.uid: ""}
            assert dirs.specs() == set()
            assert json.loads((plugin_dir / "checkpoint.json").read_text()) == {"claims": {}}
        finally:
            client.close()
        run = await asyncio.to_thread(
            subprocess.run,
            [
                str(kubelet_client_binary()),
                f"--registration-socket={dirs.registration_socket}",
                f"--claim-namespace={scene['ns']}",
                f"--claim-uid={claim.metadata.uid}",
                "--claim-name=pair",
                f"--cdi-dir={dirs.cdi}",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert run.returncode == 0, (run.stdout, run.stderr)
        assert json.loads(run.stdout)["ok"] is True
    finally:
        reference.terminate()
        await asyncio.to_thread(reference.wait, 10)
