"""Smoke test of the test-bed: the real kube-scheduler allocates mock-accel devices.

A fake Node publishes two devices in a ResourceSlice; pods that each claim one device
(through a ResourceClaimTemplate) get them one by one, and a third pod stays unschedulable
because the pool is exhausted. This proves the control plane runs DRA end to end
(resourceclaim controller + scheduler's DynamicResources plugin) before any driver code.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from kubernetes_asyncio.client import ApiClient, CoreV1Api, ResourceV1Api, V1Namespace, V1ObjectMeta, V1Pod

from mockaccel_testing import create_node
from mockaccel_testing.polling import wait_for

DRIVER = "mock-accel.example.com"

pytestmark = pytest.mark.asyncio


def manifest(obj: dict[str, Any]) -> Any:
    """kubernetes_asyncio accepts plain dicts as bodies; its stubs only declare model classes."""
    return obj


def device_slice(node: str) -> Any:
    def device(name: str) -> dict[str, Any]:
        return {
            "name": name,
            "attributes": {
                f"{DRIVER}/deviceType": {"string": "pf"},
                f"{DRIVER}/numaNode": {"int": 0},
            },
            "capacity": {"memory": {"value": "16Gi"}},
        }

    return manifest(
        {
            "apiVersion": "resource.k8s.io/v1",
            "kind": "ResourceSlice",
            "metadata": {"name": f"{node}-{DRIVER}-numa0"},
            "spec": {
                "driver": DRIVER,
                "nodeName": node,
                "pool": {"name": f"{node}/numa0", "generation": 1, "resourceSliceCount": 1},
                "devices": [device("mock0"), device("mock1")],
            },
        }
    )


def pod(name: str, template: str) -> Any:
    return manifest(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name},
            "spec": {
                "containers": [{"name": "main", "image": "pause", "resources": {"claims": [{"name": "accel"}]}}],
                "resourceClaims": [{"name": "accel", "resourceClaimTemplateName": template}],
            },
        }
    )


def is_unschedulable(p: V1Pod) -> bool:
    conditions = (p.status.conditions if p.status else None) or []
    return any(c.type == "PodScheduled" and c.status == "False" and c.reason == "Unschedulable" for c in conditions)


def claim_name(p: V1Pod) -> str | None:
    statuses = (p.status.resource_claim_statuses if p.status else None) or []
    return statuses[0].resource_claim_name if statuses else None


async def test_scheduler_allocates_each_device_once(kube: ApiClient) -> None:
    core = CoreV1Api(kube)
    resource = ResourceV1Api(kube)
    suffix = uuid.uuid4().hex[:8]
    node, ns, device_class = f"node-{suffix}", f"dra-smoke-{suffix}", f"mock-accel-pf-{suffix}"

    await create_node(kube, node)
    await core.create_namespace(V1Namespace(metadata=V1ObjectMeta(name=ns)))
    await resource.create_device_class(
        manifest(
            {
                "apiVersion": "resource.k8s.io/v1",
                "kind": "DeviceClass",
                "metadata": {"name": device_class},
                "spec": {
                    "selectors": [
                        {
                            "cel": {
                                "expression": f'device.driver == "{DRIVER}" && '
                                f'device.attributes["{DRIVER}"].deviceType == "pf"'
                            }
                        }
                    ]
                },
            }
        )
    )
    await resource.create_resource_slice(device_slice(node))
    await resource.create_namespaced_resource_claim_template(
        ns,
        manifest(
            {
                "apiVersion": "resource.k8s.io/v1",
                "kind": "ResourceClaimTemplate",
                "metadata": {"name": "one-pf"},
                "spec": {
                    "spec": {
                        "devices": {
                            "requests": [
                                {
                                    "name": "accel",
                                    "exactly": {
                                        "deviceClassName": device_class,
                                        "allocationMode": "ExactCount",
                                        "count": 1,
                                        "selectors": [
                                            {
                                                "cel": {
                                                    "expression": f'device.capacity["{DRIVER}"].memory'
                                                    '.compareTo(quantity("8Gi")) >= 0'
                                                }
                                            }
                                        ],
                                    },
                                }
                            ]
                        }
                    }
                },
            }
        ),
    )
    # ServiceAccount admission rejects pods until the namespace's default SA exists.
    await wait_for(
        f"ServiceAccount {ns}/default",
        lambda: core.read_namespaced_service_account("default", ns),
        lambda sa: True,
    )

    allocated: set[str] = set()
    for i in range(2):
        name = f"pod-{i}"
        await core.create_namespaced_pod(ns, pod(name, "one-pf"))
        bound = await wait_for(
            f"pod {name} to be bound",
            lambda name=name: core.read_namespaced_pod(name, ns),  # type: ignore[misc]
            lambda p: bool(p.spec.node_name) and claim_name(p) is not None,
        )
        assert bound.spec.node_name == node
        bound_claim = claim_name(bound)
        assert bound_claim is not None
        claim = await resource.read_namespaced_resource_claim(bound_claim, ns)
        results = claim.status.allocation.devices.results
        assert len(results) == 1
        assert (results[0].driver, results[0].pool) == (DRIVER, f"{node}/numa0")
        assert results[0].device in {"mock0", "mock1"}
        allocated.add(results[0].device)
        assert [r.name for r in claim.status.reserved_for] == [name]
    assert allocated == {"mock0", "mock1"}

    await core.create_namespaced_pod(ns, pod("pod-2", "one-pf"))
    pending = await wait_for(
        "pod-2 to be reported unschedulable",
        lambda: core.read_namespaced_pod("pod-2", ns),
        is_unschedulable,
    )
    assert not pending.spec.node_name
    leftover = claim_name(pending)
    if leftover is not None:
        claim = await resource.read_namespaced_resource_claim(leftover, ns)
        assert claim.status is None or claim.status.allocation is None

    await core.delete_namespace(ns)
    await resource.delete_resource_slice(f"{node}-{DRIVER}-numa0")
    await resource.delete_device_class(device_class)
    await core.delete_node(node)
