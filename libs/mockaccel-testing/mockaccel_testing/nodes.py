"""Fake Nodes: API objects without a kubelet, good enough for the scheduler."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kubernetes_asyncio.client import ApiClient, CoreV1Api, V1Node, V1ObjectMeta

NOT_READY_TAINT = "node.kubernetes.io/not-ready"
DEFAULT_CAPACITY: Mapping[str, str] = {"cpu": "8", "memory": "32Gi", "pods": "110"}


async def create_node(
    api_client: ApiClient,
    name: str,
    labels: Mapping[str, str] | None = None,
    capacity: Mapping[str, str] | None = None,
) -> V1Node:
    """Create Node `name` and give it a Ready status with allocatable resources.

    The status goes through the status subresource because the apiserver drops status
    fields on create, and the not-ready taint added at admission is removed. Nothing
    heartbeats, so the control plane runs without the node-lifecycle controller (see
    control_plane.DEFAULT_DISABLED_CONTROLLERS), which would taint the node unreachable.
    """
    core = CoreV1Api(api_client)
    all_labels = {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        **(labels or {}),
    }
    resources = dict(capacity or DEFAULT_CAPACITY)
    await core.create_node(V1Node(metadata=V1ObjectMeta(name=name, labels=all_labels)))
    status: dict[str, Any] = {
        "status": {
            "capacity": resources,
            "allocatable": resources,
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "MockAccelFakeNode",
                    "message": "fake node of the mock-accel test-bed (no kubelet)",
                }
            ],
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
            "nodeInfo": {
                "architecture": "amd64",
                "operatingSystem": "linux",
                "bootID": "",
                "containerRuntimeVersion": "",
                "kernelVersion": "",
                "kubeProxyVersion": "",
                "kubeletVersion": "",
                "machineID": "",
                "osImage": "",
                "systemUUID": "",
            },
        }
    }
    await core.patch_node_status(name, status)
    # The TaintNodesByCondition admission plugin taints every new Node not-ready; the
    # node-lifecycle controller would lift it once a kubelet reports Ready. Lift it here.
    created: V1Node = await core.read_node(name)
    taints = [t for t in (created.spec.taints or []) if t.key != NOT_READY_TAINT]
    node: V1Node = await core.patch_node(name, {"spec": {"taints": [t.to_dict() for t in taints]}})
    return node
