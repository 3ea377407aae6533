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
