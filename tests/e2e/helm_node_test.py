"""The product as users run it: `helm install` on a real kubelet node, and the documented workloads.

The chart's images (tools/images) are imported into the node's containerd, a
simulated node's sysfs tree (with its ``dev/mockN`` device nodes, docs/abi.md
§8.5) is created on the host, and the chart is installed with values pointing
both services at it. The node agent registers with the real kubelet through
``plugins_registry``; the examples of deploy/examples run as they are (only a
namespace, a toleration and a node selector are added) and print what their
container received through CDI.
"""

from __future__ import annotations

import asyncio
import copy
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from kubernetes_asyncio.client import ApiClient, AppsV1Api, CoreV1Api, ResourceV1Api, V1Namespace, V1ObjectMeta
from kubernetes_asyncio.client.exceptions import ApiException

from mockaccel_common.regmap import Status
from mockaccel_common.simulator.engine import SimulatedNode
from mockaccel_common.simulator.topology import load_topology
from mockaccel_common.sysfs import abi
from mockaccel_node_agent.adapters.state import CheckpointStore
from mockaccel_node_agent.domain.cdi_building import is_our_spec
from mockaccel_testing import net
from mockaccel_testing.control_plane import ControlPlane
from mockaccel_testing.examples import (
    EXAMPLES,
    device_health,
    load_example,
    long_running,
    parse_log,
    wait_device_healthy,
)
from mockaccel_testing.kubelet_node import REAL_NODE_TAINT, KubeletNode
from mockaccel_testing.polling import wait_for, wait_until

pytestmark = pytest.mark.asyncio

CHART = Path("deploy/helm/mock-accel")
TOPOLOGY = Path("deploy/examples/topology-two-numa.toml")
DRIVER = "mock-accel.example.com"
RELEASE = "mock-accel"
NAMESPACE = "mock-accel-node"
# A container's /sys is a fresh sysfs without the simulated class: mount function directories here.
CONTAINER_SYSFS_DIR = "/run/mock-accel"
CLASSES = {"mock-accel-pf", "mock-accel-vf", "mock-accel-numa-aware-pf", "mock-accel-numa-aware-vf"}
SERVICES = ("controller", "node-agent")
# Images are big and the machine is shared: starting the DaemonSets may take a while.
START_WITHIN = 180.0
POD_WITHIN = 120.0
# What each example asks for (deploy/examples/*): the TYPE of each device it must get.
EXPECTED_KINDS = {"pf": ["pf"], "numa-pair": ["pf", "pf"], "vfs-of-one-pf": ["vf", "vf"], "mixed": ["pf", "vf"]}


def image(service: str) -> tuple[str, Path]:
    """The image tools/images built for ``service`` and its OCI archive (missing: a setup error, not a skip)."""
    key = service.upper().replace("-", "_")
    name, archive = os.environ.get(f"MOCKACCEL_IMAGE_{key}"), os.environ.get(f"MOCKACCEL_IMAGE_ARCHIVE_{key}")
    hint = 'run `set -a; eval "$(tools/images)"; set +a` (tools/test does it)'
    assert name, f"MOCKACCEL_IMAGE_{key} is not set: {hint}"
    assert archive, f"MOCKACCEL_IMAGE_ARCHIVE_{key} is not set: {hint}"
    return name, Path(archive)


def placement(node: KubeletNode) -> dict[str, Any]:
    """Tolerate the real node's taint and select it by hostname."""
    return {
        "nodeSelector": {"kubernetes.io/hostname": node.name},
        "tolerations": [{"key": REAL_NODE_TAINT["key"], "operator": "Exists", "effect": "NoSchedule"}],
    }


def chart_values(node: KubeletNode, sim_root: Path) -> dict[str, Any]:
    # The test-bed has no kube-proxy: pods reach the loopback API server from the node's network.
    api = urlsplit(node.plane.server)
    values: dict[str, Any] = {
        "image": {"pullPolicy": "Never"},
        "logLevel": "info",
        "hostNetwork": True,
        "apiServer": {"host": api.hostname, "port": api.port},
    }
    for service, key in (("controller", "controller"), ("node-agent", "nodeAgent")):
        repository, _, tag = image(service)[0].rpartition(":")
        values[key] = {"image": {"repository": repository, "tag": tag}, "sysfsRoot": str(sim_root), **placement(node)}
    health_port, metrics_port = net.free_ports(2)
    values["nodeAgent"].update(
        kubeletDir=str(node.root_dir),
        cdiDir=str(node.cdi_spec_dir),
        deviceDir=str(sim_root / "dev"),
        containerSysfsDir=CONTAINER_SYSFS_DIR,
        # Node ports now: free ones, so concurrent test runs on one machine never collide.
        healthPort=health_port,
        metricsPort=metrics_port,
        terminationGracePeriodSeconds=10,
    )
    return values


@dataclass(frozen=True)
class Installed:
    node: KubeletNode
    sim: SimulatedNode
    installed_at: float

    @property
    def plugin_dir(self) -> Path:
        return self.node.plugins_dir / DRIVER


def helm(plane: ControlPlane, *args: str) -> None:
    result = subprocess.run(
        [str(plane.binaries.helm), *args, "--kubeconfig", str(plane.kubeconfig)],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, f"helm {args[0]} failed: {result.stderr}"


@pytest.fixture(scope="module")
def installed(
    kubelet_node: KubeletNode, control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Installed]:
    """The chart installed on the real node, against a simulated node with VFs on mock0 and mock2."""
    for service in SERVICES:
        kubelet_node.import_image(image(service)[1])
    work = tmp_path_factory.mktemp("helm-node")
    sim = SimulatedNode.create(work / "sys", load_topology(TOPOLOGY).node("node-a"))
    for pf in ("mock0", "mock2"):
        sim.write(pf, "sriov_numvfs", "4")
    values = work / "values.yaml"
    values.write_text(yaml.safe_dump(chart_values(kubelet_node, sim.root)))
    started = time.monotonic()
    # The DeviceClasses may already exist (tests apply deploy/deviceclasses): the chart adopts them.
    helm(control_plane, "install", RELEASE, str(CHART), "--namespace", NAMESPACE, "--create-namespace",
         "--take-ownership", "--values", str(values))
    try:
        yield Installed(kubelet_node, sim, started)
    finally:
        helm(control_plane, "uninstall", RELEASE, "--namespace", NAMESPACE, "--wait", "--timeout", "120s")


async def test_chart_runs_on_the_real_node_and_publishes(installed: Installed, kube: ApiClient) -> None:
    core, apps, resource = CoreV1Api(kube), AppsV1Api(kube), ResourceV1Api(kube)
    for service in SERVICES:
        await wait_for(
            f"{service} DaemonSet ready on {installed.node.name}",
            lambda s=service: apps.read_namespaced_daemon_set(f"{RELEASE}-{s}", NAMESPACE),  # type: ignore[misc]
            lambda ds: (ds.status.number_ready or 0) >= 1,
            within=START_WITHIN,
        )
    pods = (await core.list_namespaced_pod(NAMESPACE)).items
    assert {p.metadata.labels["app.kubernetes.io/component"] for p in pods} == set(SERVICES)
    for pod in pods:
        assert pod.spec.node_name == installed.node.name
        assert pod.status.phase == "Running", pod.status

    expected = {f"mock{i}" for i in range(4)} | {f"mock{pf}v{vf}" for pf in (0, 2) for vf in range(4)}
    await wait_for(
        f"ResourceSlices of {installed.node.name} with every device",
        lambda: resource.list_resource_slice(field_selector=f"spec.nodeName={installed.node.name}"),
        lambda found: {d.name for s in found.items for d in s.spec.devices or []} == expected,
        within=START_WITHIN,
    )
    published = time.monotonic() - installed.installed_at
    print(f"helm install -> slices published: {published:.1f}s")

    # kubelet registered the agent through plugins_registry and opened its health stream.
    (agent,) = (p for p in pods if p.metadata.labels["app.kubernetes.io/component"] == "node-agent")
    assert (installed.node.plugins_registry_dir / f"{DRIVER}-{agent.metadata.uid}-reg.sock").is_socket()
    kubelet_log = installed.node.log_dir / "kubelet.log"

    async def registered() -> bool:
        return "Successfully started WatchResources health stream" in kubelet_log.read_text(errors="replace")

    await wait_until("kubelet to open the agent's health stream", registered, within=START_WITHIN)

    classes = {c.metadata.name for c in (await resource.list_device_class()).items}
    assert classes >= CLASSES


def example_pod(name: str, node: KubeletNode) -> tuple[Any, Any]:
    """The example's template and pod, placed on the real node (nothing else changed)."""
    objects = load_example(name)
    pod = copy.deepcopy(objects["Pod"])
    pod["spec"].update(placement(node))
    return objects["ResourceClaimTemplate"], pod


@pytest.mark.parametrize("example", EXAMPLES)
async def test_example_gets_its_devices_and_unprepares(installed: Installed, kube: ApiClient, example: str) -> None:
    core, resource = CoreV1Api(kube), ResourceV1Api(kube)
    await wait_until(
        "slices of the real node",
        lambda: _has_slices(resource, installed.node.name),
        within=START_WITHIN,
    )
    namespace = f"ex-{example}-{uuid.uuid4().hex[:6]}"
    await core.create_namespace(V1Namespace(metadata=V1ObjectMeta(name=namespace)))
    try:
        await wait_for(
            "default ServiceAccount", lambda: core.read_namespaced_service_account("default", namespace), bool
        )
        template, pod = example_pod(example, installed.node)
        name = pod["metadata"]["name"]
        await resource.create_namespaced_resource_claim_template(namespace, template)
        applied = time.monotonic()
        await core.create_namespaced_pod(namespace, pod)
        done = await wait_for(
            f"pod {example} finished",
            lambda: core.read_namespaced_pod(name, namespace),
            lambda p: p.status.phase in ("Succeeded", "Failed"),
            within=POD_WITHIN,
        )
        log = await wait_for(
            f"pod {example} log",
            lambda: core.read_namespaced_pod_log(name, namespace),
            lambda text: "mock-accel ready" in text,
        )
        print(f"{example}: pod apply -> log line {time.monotonic() - applied:.1f}s")
        assert done.status.phase == "Succeeded", (done.status, log)

        seen = parse_log(log)
        devices = set(seen["uuids"])
        kinds = sorted(seen["env"].get(f"MOCK_ACCEL_{dev.upper()}_TYPE", "?") for dev in devices)
        assert kinds == EXPECTED_KINDS[example], log
        assert devices == seen["present"] == seen["mine"], log
        # Only its own functions' sysfs directories are visible.
        assert seen["visible"] == devices, log
        for dev in devices:
            prefix = f"MOCK_ACCEL_{dev.upper()}_"
            real_uuid = (installed.sim.root / abi.CLASS_DIR / dev / "uuid").read_text().strip()
            assert seen["uuids"][dev] == real_uuid
            assert seen["env"][f"{prefix}UUID"] == real_uuid
            assert seen["env"][f"{prefix}SYSFS"] == f"{CONTAINER_SYSFS_DIR}/{dev}"

        # A finished pod's claim is unprepared, and deleting the pod leaves nothing behind:
        # no CDI spec of ours, ALLOCATED clear, an empty checkpoint.
        async def unprepared() -> bool:
            return (
                not _our_specs(installed)
                and not any(_allocated(installed, dev) for dev in devices)
                and not CheckpointStore(installed.plugin_dir).load_sync().claims
            )

        await wait_until(f"claim of {example} unprepared", unprepared, within=POD_WITHIN)
        await core.delete_namespaced_pod(name, namespace, grace_period_seconds=0)
        await wait_until(
            f"pod {example} gone", lambda: _gone(core.read_namespaced_pod(name, namespace)), within=POD_WITHIN
        )
        assert await unprepared()
    finally:
        await core.delete_namespace(namespace)


async def _gone(read: Any) -> bool:
    try:
        await read
    except ApiException as exc:
        return exc.status == 404
    return False


def _our_specs(installed: Installed) -> list[str]:
    return [p.name for p in installed.node.cdi_spec_dir.iterdir() if is_our_spec(p.name)]


async def _has_slices(resource: ResourceV1Api, node: str) -> bool:
    return bool((await resource.list_resource_slice(field_selector=f"spec.nodeName={node}")).items)


def _allocated(installed: Installed, dev: str) -> bool:
    text = (installed.sim.root / abi.CLASS_DIR / dev / "status").read_text()
    return bool(abi.parse_status(text) & Status.ALLOCATED)


async def _namespace(core: CoreV1Api, prefix: str) -> str:
    namespace = f"{prefix}-{uuid.uuid4().hex[:6]}"
    await core.create_namespace(V1Namespace(metadata=V1ObjectMeta(name=namespace)))
    await wait_for("default ServiceAccount", lambda: core.read_namespaced_service_account("default", namespace), bool)
    return namespace


async def _agent_pod(core: CoreV1Api) -> Any:
    """The node agent's pod once it is Running and Ready."""

    async def ready() -> Any:
        selector = "app.kubernetes.io/component=node-agent"
        pods = (await core.list_namespaced_pod(NAMESPACE, label_selector=selector)).items
        live = [p for p in pods if not p.metadata.deletion_timestamp and p.status.phase == "Running"]
        conditions = {c.type: c.status for c in (live[0].status.conditions or [])} if len(live) == 1 else {}
        return live[0] if conditions.get("Ready") == "True" else None

    return await wait_until("the node agent's pod ready", ready, within=START_WITHIN)


async def test_a_workload_starting_while_the_agent_is_replaced_still_starts(
    installed: Installed, kube: ApiClient
) -> None:
    core, resource = CoreV1Api(kube), ResourceV1Api(kube)
    old = await _agent_pod(core)
    await wait_until("slices of the real node", lambda: _has_slices(resource, installed.node.name), within=START_WITHIN)
    namespace = await _namespace(core, "replace")
    try:
        template, pod = example_pod("pf", installed.node)
        await resource.create_namespaced_resource_claim_template(namespace, template)
        # The agent goes away (kubelet sends SIGTERM) while the workload is being started:
        # kubelet retries NodePrepareResources until the DaemonSet's new agent registers.
        await core.delete_namespaced_pod(old.metadata.name, NAMESPACE)
        await core.create_namespaced_pod(namespace, pod)
        done = await wait_for(
            "pod pf finished",
            lambda: core.read_namespaced_pod(pod["metadata"]["name"], namespace),
            lambda p: p.status.phase in ("Succeeded", "Failed"),
            within=START_WITHIN + POD_WITHIN,
        )
        log = await core.read_namespaced_pod_log(pod["metadata"]["name"], namespace)
        assert done.status.phase == "Succeeded", (done.status, log)
        assert "mock-accel ready" in log
        new = await _agent_pod(core)
        assert new.metadata.uid != old.metadata.uid
    finally:
        await core.delete_namespace(namespace)


async def test_device_health_reaches_the_pod_status(installed: Installed, kube: ApiClient) -> None:
    core, resource = CoreV1Api(kube), ResourceV1Api(kube)
    await _agent_pod(core)
    await wait_until("slices of the real node", lambda: _has_slices(resource, installed.node.name), within=START_WITHIN)
    namespace = await _namespace(core, "health")
    template, example = example_pod("pf", installed.node)
    pod: Any = long_running(example)
    name = pod["metadata"]["name"]
    device = ""
    try:
        await resource.create_namespaced_resource_claim_template(namespace, template)
        await core.create_namespaced_pod(namespace, pod)
        _, resource_id, device = await wait_device_healthy(core, name, namespace, within=START_WITHIN)
        assert (installed.sim.root / abi.CLASS_DIR / device).is_dir(), resource_id
        # kubelet marks a device Unknown when no health list arrived for 30 s; the agent
        # resends its list, so a healthy device stays Healthy past that timeout.
        until = time.monotonic() + 35
        while time.monotonic() < until:
            assert device_health(await core.read_namespaced_pod(name, namespace)) == {resource_id: "Healthy"}
            await asyncio.sleep(2.5)
        installed.sim.set_health(device, healthy=False)
        await wait_for(
            "the pod's device reported Unhealthy in its status",
            lambda: core.read_namespaced_pod(name, namespace),
            lambda p: device_health(p) == {resource_id: "Unhealthy"},
            within=60,
        )
    finally:
        if device:
            installed.sim.set_health(device, healthy=True)
        await core.delete_namespace(namespace)
