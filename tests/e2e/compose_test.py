"""Local emulation as docs/local-emulation.md describes it: `docker compose up --wait`,
the documented examples, a health fault, `docker compose down -v`.

The stack (deploy/compose/compose.yaml) runs through the engine's Docker API (podman
here) from a clean state: a project, network, port and kubeconfig directory of its own
(mockaccel_testing.compose), so it shares nothing with the real node of helm_node_test.
Every example of deploy/examples is applied as it is; each pod's log must name the
UUID that the node's simulated sysfs holds for the device it got. Then a device of a
running pod is made unhealthy with the simulator inside its node container and kubelet
must report it in the pod's status. Teardown must leave no container, volume, network
or kubeconfig behind. Each step's time is printed and recorded in the JUnit report
(record_testsuite_property); nothing is asserted about durations.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio.client import ApiClient, CoreV1Api, ResourceV1Api, V1Namespace, V1ObjectMeta

from mockaccel_common.sysfs import abi
from mockaccel_testing.client import admin_client
from mockaccel_testing.compose import SIM_ROOT, ComposeStack
from mockaccel_testing.examples import (
    EXAMPLES,
    device_health,
    load_example,
    long_running,
    parse_log,
    wait_device_healthy,
)
from mockaccel_testing.polling import wait_for, wait_until

pytestmark = pytest.mark.asyncio

NODES = ("node-1", "node-2")  # compose.yaml's node services, which are also the Node names
# What each example asks for (deploy/examples/*): the TYPE of each device it must get.
EXPECTED_KINDS = {"pf": ["pf"], "numa-pair": ["pf", "pf"], "vfs-of-one-pf": ["vf", "vf"], "mixed": ["pf", "vf"]}
POD_WITHIN = 120.0
HEALTH_WITHIN = 90.0


class Steps:
    """Times each step; prints it at once and records it in the JUnit report."""

    def __init__(self, record: Callable[[str, object], None]) -> None:
        self.record = record
        self.seconds: dict[str, float] = {}

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        finally:
            self.add(name, time.monotonic() - started)

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] = seconds
        self.record(f"seconds: {name}", round(seconds, 1))
        print(f"compose step {name}: {seconds:.1f}s", flush=True)


@pytest.mark.timeout(1500)
async def test_compose_stack_up_examples_fault_down(
    tmp_path: Path, record_testsuite_property: Callable[[str, object], None]
) -> None:
    steps = Steps(record_testsuite_property)
    stack = ComposeStack.for_test(tmp_path / "out")
    if reaped := await asyncio.to_thread(stack.reap_orphans):
        print(f"removed stacks of killed earlier runs: {', '.join(reaped)}")
    print(f"compose project {stack.project}: network {stack.network_prefix}.0/24, API port {stack.api_port}")
    try:
        steps.add("up --wait", await asyncio.to_thread(stack.up))
        print("\n".join(["where up --wait spent its time:", *await asyncio.to_thread(stack.milestones)]))
        assert stack.kubeconfig.is_file(), "up --wait returned before the kubeconfig was written"
        async with admin_client(stack.kubeconfig) as kube:
            await _check_installed(kube)
            for example in EXAMPLES:
                with steps.step(f"example {example}: apply -> log with its UUIDs"):
                    await _run_example(stack, kube, example)
            with steps.step("health fault -> pod status Unhealthy"):
                await _health_fault_reaches_pod_status(stack, kube)
    except BaseException:
        print(stack.diagnostics())
        raise
    finally:
        with steps.step("down -v"):
            await asyncio.to_thread(stack.down)
    assert stack.leftovers() == {"containers": [], "volumes": [], "networks": []}
    assert not stack.kubeconfig.exists(), "the kubeconfig outlived the stack"
    print("compose steps: " + ", ".join(f"{k} {v:.1f}s" for k, v in steps.seconds.items()))


async def _check_installed(kube: ApiClient) -> None:
    """`up --wait` returned: both nodes Ready, mock-accel's DaemonSets and slices there."""
    core, resource = CoreV1Api(kube), ResourceV1Api(kube)
    nodes = {n.metadata.name: n for n in (await core.list_node()).items}
    assert set(nodes) == set(NODES)
    for node in nodes.values():
        assert {c.type: c.status for c in node.status.conditions}["Ready"] == "True", node.status.conditions
    slices = (await resource.list_resource_slice()).items
    assert {s.spec.node_name for s in slices} == set(NODES)
    devices = {d.name for s in slices for d in s.spec.devices or []}
    # Four PFs per node (topology-two-numa.toml), four VFs enabled on mock0 and mock2.
    assert devices == {f"mock{i}" for i in range(4)} | {f"mock{pf}v{vf}" for pf in (0, 2) for vf in range(4)}


async def _namespace(core: CoreV1Api, prefix: str) -> str:
    namespace = f"{prefix}-{uuid.uuid4().hex[:6]}"
    await core.create_namespace(V1Namespace(metadata=V1ObjectMeta(name=namespace)))
    await wait_for("default ServiceAccount", lambda: core.read_namespaced_service_account("default", namespace), bool)
    return namespace


async def _run_example(stack: ComposeStack, kube: ApiClient, example: str) -> None:
    core, resource = CoreV1Api(kube), ResourceV1Api(kube)
    namespace = await _namespace(core, f"ex-{example}")
    objects = load_example(example)
    template: Any = objects["ResourceClaimTemplate"]
    pod: Any = objects["Pod"]
    name = pod["metadata"]["name"]
    await resource.create_namespaced_resource_claim_template(namespace, template)
    await core.create_namespaced_pod(namespace, pod)
    done = await wait_for(
        f"pod {example} finished",
        lambda: core.read_namespaced_pod(name, namespace),
        lambda p: p.status.phase in ("Succeeded", "Failed"),
        within=POD_WITHIN,
    )
    log = await wait_for(
        f"pod {example} log", lambda: core.read_namespaced_pod_log(name, namespace), lambda t: "mock-accel ready" in t
    )
    assert done.status.phase == "Succeeded", (done.status, log)
    seen = parse_log(log)
    devices = set(seen["uuids"])
    kinds = sorted(seen["env"].get(f"MOCK_ACCEL_{dev.upper()}_TYPE", "?") for dev in devices)
    assert kinds == EXPECTED_KINDS[example], log
    assert devices == seen["present"] == seen["mine"] == seen["visible"], log
    node = done.spec.node_name
    for dev in devices:
        real = (await asyncio.to_thread(stack.exec, node, "cat", f"{SIM_ROOT}/{abi.CLASS_DIR}/{dev}/uuid")).strip()
        assert seen["uuids"][dev] == real, (node, dev, log)
        assert seen["env"][f"MOCK_ACCEL_{dev.upper()}_UUID"] == real, (node, dev, log)
    await core.delete_namespace(namespace)


async def _health_fault_reaches_pod_status(stack: ComposeStack, kube: ApiClient) -> None:
    """The documented fault: `mockaccel-sim health … unhealthy` in the pod's node container."""
    core, resource = CoreV1Api(kube), ResourceV1Api(kube)
    namespace = await _namespace(core, "health")
    objects = load_example("pf")
    template: Any = objects["ResourceClaimTemplate"]
    pod: Any = long_running(objects["Pod"])
    name = pod["metadata"]["name"]
    await resource.create_namespaced_resource_claim_template(namespace, template)
    await core.create_namespaced_pod(namespace, pod)
    healthy, resource_id, device = await wait_device_healthy(core, name, namespace, within=HEALTH_WITHIN)
    node = healthy.spec.node_name
    await asyncio.to_thread(stack.exec, node, "mockaccel-sim", "health", "--root", SIM_ROOT, device, "unhealthy")

    async def unhealthy() -> bool:
        return device_health(await core.read_namespaced_pod(name, namespace)) == {resource_id: "Unhealthy"}

    await wait_until(f"{device} on {node} reported Unhealthy in the pod's status", unhealthy, within=HEALTH_WITHIN)
