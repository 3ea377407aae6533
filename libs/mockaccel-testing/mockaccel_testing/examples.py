"""The documented workloads of deploy/examples, applied as they are.

The e2e tests run the same manifests a user applies (style habit 15): each
example is one ResourceClaimTemplate and one Pod. Only what a test must change
to share the cluster with other tests is changed: the namespace, and
optionally a node affinity that keeps the pod on the test's own nodes.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from kubernetes_asyncio.client import ApiClient, CoreV1Api, ResourceV1Api

from mockaccel_testing.polling import wait_for

EXAMPLES_DIR = Path("deploy/examples")
EXAMPLES = ("pf", "numa-pair", "vfs-of-one-pf", "mixed")


def load_example(name: str) -> dict[str, dict[str, Any]]:
    """The example's objects by kind (``ResourceClaimTemplate``, ``Pod``)."""
    documents = yaml.safe_load_all((EXAMPLES_DIR / name / f"{name}.yaml").read_text())
    return {doc["kind"]: doc for doc in documents if doc}


def pinned(pod: dict[str, Any], nodes: list[str]) -> dict[str, Any]:
    """``pod`` restricted to ``nodes`` (other tests' nodes share the cluster)."""
    pod = copy.deepcopy(pod)
    term = {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": nodes}]}
    pod["spec"]["affinity"] = {
        "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]}}
    }
    return pod


async def apply_example(kube: ApiClient, namespace: str, name: str, nodes: list[str] | None = None) -> str:
    """Create the example's template and pod in ``namespace``; the pod's name."""
    objects = load_example(name)
    # kubernetes_asyncio takes plain dicts as bodies; its stubs only declare the model classes.
    template: Any = objects["ResourceClaimTemplate"]
    pod = objects["Pod"]
    await ResourceV1Api(kube).create_namespaced_resource_claim_template(namespace, template)
    body: Any = pinned(pod, nodes) if nodes else pod
    await CoreV1Api(kube).create_namespaced_pod(namespace, body)
    return str(pod["metadata"]["name"])


def claim_of(pod: Any) -> str | None:
    """The name of the claim generated for a pod's first template claim, once the controller made it."""
    statuses = (pod.status.resource_claim_statuses if pod.status else None) or []
    return statuses[0].resource_claim_name if statuses else None


def parse_log(text: str) -> dict[str, Any]:
    """What an example pod printed about the devices it received (deploy/examples/*: the script).

    ``env``: its MOCK_ACCEL_* variables; ``present``: devices whose /dev node exists;
    ``uuids``: device -> the UUID read from its sysfs directory; ``visible``: the sysfs
    directories it can see; ``mine``: the devices its environment names.
    """
    env: dict[str, str] = {}
    present: set[str] = set()
    uuids: dict[str, str] = {}
    visible: set[str] = set()
    mine: set[str] = set()
    for line in text.splitlines():
        words = line.split()
        if line.startswith("env "):
            key, _, value = line[4:].partition("=")
            env[key] = value
        elif len(words) == 3 and words[0] == "device" and words[2] == "present":
            present.add(words[1].removeprefix("/dev/"))
        elif len(words) == 4 and words[0] == "device" and words[2] == "uuid":
            uuids[words[1]] = words[3]
        elif line.startswith("sysfs visible:"):
            visible = set(words[2:])
        elif line.startswith("sysfs mine:"):
            mine = set(words[2:])
    return {"env": env, "present": present, "uuids": uuids, "visible": visible, "mine": mine}


def device_health(pod: Any) -> dict[str, str]:
    """resourceID -> health of the devices kubelet reports in the pod's status
    (``allocatedResourcesStatus``; the ID is the CDI device ``…/device=<claim UID>-<device>``)."""
    return {
        health.resource_id: health.health
        for status in (pod.status.container_statuses or [])
        for allocated in (status.allocated_resources_status or [])
        for health in (allocated.resources or [])
    }


def long_running(pod: dict[str, Any]) -> dict[str, Any]:
    """``pod`` as a workload that stays up (for health tests): it prints a line, then sleeps,
    is restarted if it ends, and stops within a second."""
    pod = copy.deepcopy(pod)
    pod["spec"]["restartPolicy"] = "Always"
    pod["spec"]["terminationGracePeriodSeconds"] = 1
    pod["spec"]["containers"][0]["command"] = ["sh", "-c", "echo mock-accel ready; exec sleep 3600"]
    return pod


async def wait_device_healthy(core: CoreV1Api, name: str, namespace: str, within: float) -> tuple[Any, str, str]:
    """Wait until kubelet reports the pod's one device Healthy in its status; the pod as read
    then, the device's resourceID (its CDI ID ``…/device=<claim UID>-<device>``) and the device."""
    healthy = await wait_for(
        "the pod's device reported Healthy in its status",
        lambda: core.read_namespaced_pod(name, namespace),
        lambda p: bool(device_health(p)) and set(device_health(p).values()) == {"Healthy"},
        within=within,
    )
    (resource_id,) = device_health(healthy)
    return healthy, resource_id, resource_id.rsplit("-", 1)[-1]
