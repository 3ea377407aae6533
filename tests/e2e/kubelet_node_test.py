"""A real kubelet node runs a plain pod, and its logs come back through the API server.

This is the base every runtime-level e2e case stands on (issue #11): containerd with the
local pause image, the CNI network, kubelet registered with its own identity, and the API
server reaching kubelet for `pods/log`.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from kubernetes_asyncio.client import ApiClient, CoreV1Api, V1Namespace, V1Node, V1ObjectMeta, V1Pod

from mockaccel_testing.kubelet_node import REAL_NODE_TAINT, KubeletNode
from mockaccel_testing.polling import wait_for

pytestmark = pytest.mark.asyncio

MESSAGE = "hello from the mock-accel kubelet node"


def busybox_pod(name: str, node: KubeletNode) -> Any:
    """A pod pinned to the real node by the scheduler (selector + toleration), no pulls."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "nodeSelector": {"kubernetes.io/hostname": node.name},
            "tolerations": [{"key": REAL_NODE_TAINT["key"], "operator": "Exists", "effect": "NoSchedule"}],
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {
                    "name": "main",
                    "image": node.runtime.busybox_image,
                    "imagePullPolicy": "Never",
                    "command": ["sh", "-c", f"echo {MESSAGE}; echo uid=$(id -u)"],
                }
            ],
        },
    }


def node_ready(node: V1Node) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])


async def test_node_is_ready(kubelet_node: KubeletNode, kube: ApiClient) -> None:
    core = CoreV1Api(kube)
    node = await wait_for("the real node Ready", lambda: core.read_node(kubelet_node.name), node_ready)
    assert node.status.node_info.container_runtime_version.startswith("containerd://")
    assert {"type": "InternalIP", "address": kubelet_node.node_ip} in [a.to_dict() for a in node.status.addresses]


async def test_busybox_pod_runs_and_logs_reach_the_api(kubelet_node: KubeletNode, kube: ApiClient) -> None:
    core = CoreV1Api(kube)
    namespace = f"node-{uuid.uuid4().hex[:8]}"
    await core.create_namespace(V1Namespace(metadata=V1ObjectMeta(name=namespace)))
    # Pods are rejected until the namespace's default ServiceAccount exists.
    await wait_for("default ServiceAccount", lambda: core.read_namespaced_service_account("default", namespace), bool)
    try:
        applied = time.monotonic()
        await core.create_namespaced_pod(namespace, busybox_pod("busybox", kubelet_node))
        pod: V1Pod = await wait_for(
            "busybox pod Succeeded",
            lambda: core.read_namespaced_pod("busybox", namespace),
            lambda p: p.status.phase in ("Succeeded", "Failed"),
        )
        elapsed = time.monotonic() - applied
        print(f"pod finished {elapsed:.2f}s after apply; node ready in {kubelet_node.ready_seconds:.2f}s")
        assert pod.status.phase == "Succeeded", pod.status
        assert pod.spec.node_name == kubelet_node.name

        # pods/log: API server -> kubelet (InternalIP) -> container log file.
        logs: str = await wait_for(
            "busybox logs",
            lambda: core.read_namespaced_pod_log("busybox", namespace, container="main"),
            lambda text: MESSAGE in text,
        )
        assert "uid=0" in logs
    finally:
        await core.delete_namespace(namespace)
