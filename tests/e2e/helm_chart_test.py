"""The Helm chart: renders, agrees with the services' Settings, installs, and its RBAC is minimal.

Installed on the loopback control plane (no kubelet runs there, so the
DaemonSets schedule no pods); the service accounts are then impersonated to
prove they can do exactly what the services need.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes_asyncio.client import CoreV1Api, ResourceV1Api
from kubernetes_asyncio.client.exceptions import ApiException

from mockaccel_controller.settings import Settings as ControllerSettings
from mockaccel_node_agent.settings import Settings as NodeAgentSettings
from mockaccel_testing import ControlPlane, service_account_client
from mockaccel_testing.client import impersonate
from mockaccel_testing.polling import wait_until

CHART = Path("deploy/helm/mock-accel")
KUBE_VERSION = "1.36.3"
NAMESPACE = "mock-accel"


def helm(control_plane: ControlPlane, *args: str) -> str:
    result = subprocess.run([str(control_plane.binaries.helm), *args], capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"helm {args[0]} failed: {result.stderr}"
    return result.stdout


def render(control_plane: ControlPlane, *values: str) -> list[dict[str, Any]]:
    sets = [arg for value in values for arg in ("--set", value)]
    text = helm(
        control_plane, "template", "t", str(CHART), "--namespace", NAMESPACE, "--kube-version", KUBE_VERSION, *sets
    )
    return [doc for doc in yaml.safe_load_all(text) if doc]


def container(objects: list[dict[str, Any]], component: str) -> dict[str, Any]:
    (daemonset,) = (
        o for o in objects if o["kind"] == "DaemonSet" and o["metadata"]["name"].endswith(f"-{component}")
    )
    (found,) = daemonset["spec"]["template"]["spec"]["containers"]
    result: dict[str, Any] = found
    return result


def container_env(objects: list[dict[str, Any]], component: str) -> dict[str, dict[str, Any]]:
    return {entry["name"]: entry for entry in container(objects, component)["env"]}


def app_version() -> str:
    version: str = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    return version


@pytest.mark.parametrize("component", ["controller", "node-agent"])
def test_each_service_runs_its_own_image_entry_point(control_plane: ControlPlane, component: str) -> None:
    """tools/images builds localhost/mock-accel-<component>:<appVersion>; its ENTRYPOINT is the pex."""
    default = container(render(control_plane), component)
    assert default["image"] == f"localhost/mock-accel-{component}:{app_version()}"
    assert "command" not in default
    assert "args" not in default
    retagged = container(render(control_plane, "image.tag=dev"), component)
    assert retagged["image"] == f"localhost/mock-accel-{component}:dev"


@pytest.mark.parametrize(
    ("component", "settings"),
    [("controller", ControllerSettings), ("node-agent", NodeAgentSettings)],
    ids=["controller", "node-agent"],
)
def test_chart_env_names_are_settings(control_plane: ControlPlane, component: str, settings: Any) -> None:
    env = container_env(render(control_plane), component)
    known = {env_name for _, env_name, _, _, _ in settings.describe()}
    assert set(env) <= known, f"chart sets env the service does not read: {sorted(set(env) - known)}"
    assert env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    if component == "node-agent":
        assert env["POD_UID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.uid"


def pod_spec(objects: list[dict[str, Any]], component: str) -> dict[str, Any]:
    (daemonset,) = (
        o for o in objects if o["kind"] == "DaemonSet" and o["metadata"]["name"].endswith(f"-{component}")
    )
    return dict(daemonset["spec"]["template"]["spec"])


def host_path(spec: dict[str, Any], container_path: Path) -> Path:
    """Where ``container_path`` inside the pod's container lives on the node (via its hostPath mounts)."""
    volumes = {v["name"]: v for v in spec["volumes"]}
    (container,) = spec["containers"]
    best: tuple[int, Path] | None = None
    for mount in container["volumeMounts"]:
        mounted = Path(mount["mountPath"])
        if container_path == mounted or mounted in container_path.parents:
            source = Path(volumes[mount["name"]]["hostPath"]["path"]) / container_path.relative_to(mounted)
            if best is None or len(mounted.parts) > best[0]:
                best = (len(mounted.parts), source)
    assert best is not None, f"{container_path} is not on any hostPath mount of {container['name']}"
    return best[1]


def settings_from(spec: dict[str, Any], settings: Any, **field_refs: str) -> Any:
    """The Settings the container will load from its rendered env (fieldRefs filled in)."""
    (container,) = spec["containers"]
    environ = {}
    for entry in container["env"]:
        if "value" in entry:
            environ[entry["name"]] = str(entry["value"])
        else:
            environ[entry["name"]] = field_refs[entry["valueFrom"]["fieldRef"]["fieldPath"]]
    return settings.load([], environ)


@pytest.mark.parametrize("values", [[], ["driverName=gpu.acme.example", "nodeAgent.kubeletDir=/data/kubelet"]],
                         ids=["defaults", "custom-driver-and-kubelet-dir"])
def test_the_controller_sees_the_sockets_the_agent_serves(control_plane: ControlPlane, values: list[str]) -> None:
    """The node-side contract (docs/architecture.md): same plugin directory on the node for both pods."""
    objects = render(control_plane, *values)
    agent_spec, controller_spec = pod_spec(objects, "node-agent"), pod_spec(objects, "controller")
    refs = {"spec.nodeName": "node-a", "metadata.uid": "0f1e2d3c-aaaa-bbbb-cccc-000000000001"}
    agent = settings_from(agent_spec, NodeAgentSettings, **refs)
    controller = settings_from(controller_spec, ControllerSettings, **refs)
    kubelet_dir = Path(next((v.split("=", 1)[1] for v in values if v.startswith("nodeAgent.kubeletDir=")),
                            "/var/lib/kubelet"))
    # kubelet finds the registration socket and dials the DRA socket at these node paths.
    assert host_path(agent_spec, agent.registration_socket).parent == kubelet_dir / "plugins_registry"
    served = host_path(agent_spec, agent.dra_socket)
    assert served.parent == kubelet_dir / "plugins" / agent.driver_name
    assert served.name == f"dra-{refs['metadata.uid']}.sock"
    # The controller looks for dra*.sock in its plugin_dir: the same node directory.
    assert host_path(controller_spec, controller.plugin_dir) == served.parent
    assert controller.require_agent
    # Both read the node's sysfs; the agent writes CDI specs where the runtime reads them.
    assert host_path(controller_spec, controller.sysfs_root) == Path("/sys")
    # A privileged container's /sys is the node's own (CDI mounts name node paths, so they must agree).
    assert agent.sysfs_root == Path("/sys")
    assert agent_spec["containers"][0]["securityContext"]["privileged"]
    assert host_path(agent_spec, agent.cdi_dir) == Path("/var/run/cdi")


def test_custom_driver_name_reaches_services_and_classes(control_plane: ControlPlane) -> None:
    objects = render(control_plane, "driverName=gpu.acme.example")
    assert container_env(objects, "controller")["MOCKACCEL_DRIVER_NAME"]["value"] == "gpu.acme.example"
    classes = [o for o in objects if o["kind"] == "DeviceClass"]
    assert len(classes) == 4
    for device_class in classes:
        expression = device_class["spec"]["selectors"][0]["cel"]["expression"]
        assert 'device.driver == "gpu.acme.example"' in expression
        assert "mock-accel.example.com" not in expression


@pytest.fixture
def _installed(control_plane: ControlPlane) -> Iterator[None]:
    kubeconfig = str(control_plane.kubeconfig)
    # DeviceClasses are cluster-wide and other e2e files install the same ones
    # from deploy/deviceclasses (which equal the chart's, see below).
    helm(control_plane, "install", "ma", str(CHART), "--kubeconfig", kubeconfig, "--namespace", NAMESPACE,
         "--create-namespace", "--wait=false", "--set", "deviceClasses.enabled=false")
    try:
        yield
    finally:
        helm(control_plane, "uninstall", "ma", "--kubeconfig", kubeconfig, "--namespace", NAMESPACE)


async def _status(call: Any) -> int:
    try:
        await call
    except ApiException as exc:
        return int(exc.status)
    return 200


@pytest.mark.asyncio
@pytest.mark.usefixtures("_installed")
async def test_installed_rbac_is_what_the_services_need(control_plane: ControlPlane) -> None:
    agent = await service_account_client(control_plane.kubeconfig, NAMESPACE, "ma-node-agent")
    controller = await service_account_client(control_plane.kubeconfig, NAMESPACE, "ma-controller")
    try:
        agent_api, controller_api = ResourceV1Api(agent), ResourceV1Api(controller)
        # The agent may read a claim (404: allowed, absent) but not list claims or touch slices.
        assert await _status(agent_api.read_namespaced_resource_claim("none", "default")) == 404
        assert await _status(agent_api.list_namespaced_resource_claim("default")) == 403
        assert await _status(agent_api.list_resource_slice()) == 403
        # The controller manages slices and reads Nodes, and nothing else.
        assert await _status(controller_api.list_resource_slice()) == 200
        assert await _status(CoreV1Api(controller).read_node("none")) == 404
        assert await _status(controller_api.read_namespaced_resource_claim("none", "default")) == 403
        assert await _status(CoreV1Api(controller).list_namespaced_secret("default")) == 403
    finally:
        await agent.close()
        await controller.close()


def test_chart_classes_equal_the_static_manifests(control_plane: ControlPlane) -> None:
    """deploy/deviceclasses/*.yaml (for kubectl users) and the chart never drift apart."""
    rendered = {
        o["metadata"]["name"]: o["spec"] for o in render(control_plane) if o["kind"] == "DeviceClass"
    }
    static = {}
    for path in sorted(Path("deploy/deviceclasses").glob("*.yaml")):
        document = yaml.safe_load(path.read_text())
        static[document["metadata"]["name"]] = document["spec"]
    assert rendered == static


def _node_slice(node: str, name: str) -> dict[str, Any]:
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceSlice",
        "metadata": {"name": name},
        "spec": {
            "driver": "mock-accel.example.com",
            "nodeName": node,
            "pool": {"name": f"{node}/numa0", "generation": 1, "resourceSliceCount": 1},
            "devices": [],
        },
    }


@pytest.mark.asyncio
@pytest.mark.usefixtures("_installed")
async def test_a_nodes_controller_writes_only_its_own_nodes_slices(control_plane: ControlPlane) -> None:
    """The chart's ValidatingAdmissionPolicy, on the real API server (#13 item 9).

    Each controller acts as the chart's service account with the node name a bound
    token carries (authentication.kubernetes.io/node-name), through impersonation.
    """
    suffix = uuid.uuid4().hex[:6]
    node_a, node_b = f"vap-a-{suffix}", f"vap-b-{suffix}"
    user = f"system:serviceaccount:{NAMESPACE}:ma-controller"
    key = "authentication.kubernetes.io/node-name"
    as_a = await impersonate(control_plane.kubeconfig, user, extra={key: node_a})
    as_b = await impersonate(control_plane.kubeconfig, user, extra={key: node_b})
    nodeless = await impersonate(control_plane.kubeconfig, user)
    api_a, api_b = ResourceV1Api(as_a), ResourceV1Api(as_b)
    own_a, own_b = f"vap-{suffix}-a", f"vap-{suffix}-b"
    try:

        async def policy_active() -> bool:
            # Policies take effect asynchronously; poll with a slice the policy must refuse
            # (a fresh name each time, so an early attempt that got through cannot mask it).
            probe: Any = _node_slice(node_b, f"vap-{suffix}-probe-{uuid.uuid4().hex[:6]}")
            status = await _status(api_a.create_resource_slice(probe))
            if status == 200:
                await ResourceV1Api(as_b).delete_resource_slice(probe["metadata"]["name"])
            return status == 422

        await wait_until("the ValidatingAdmissionPolicy to be enforced", policy_active, 30)
        body: Any = _node_slice(node_a, own_a)
        assert await _status(api_a.create_resource_slice(body)) == 200
        body = _node_slice(node_b, own_b)
        assert await _status(api_b.create_resource_slice(body)) == 200
        # A cannot create, update or delete B's slice ...
        body = _node_slice(node_b, f"vap-{suffix}-a-on-b")
        assert await _status(api_a.create_resource_slice(body)) == 422
        theirs = await api_b.read_resource_slice(own_b)
        theirs.metadata.labels = {"touched": "by-a"}
        assert await _status(api_a.replace_resource_slice(own_b, theirs)) == 422
        assert await _status(api_a.delete_resource_slice(own_b)) == 422
        # ... nor move its own slice to B, nor write without a node identity ...
        mine = await api_a.read_resource_slice(own_a)
        mine.metadata.labels = {"touched": "by-a"}
        assert await _status(api_a.replace_resource_slice(own_a, mine)) == 200
        body = _node_slice(node_a, f"vap-{suffix}-nodeless")
        assert await _status(ResourceV1Api(nodeless).create_resource_slice(body)) == 422
        # ... and can delete its own; B's slice is intact.
        assert await _status(api_a.delete_resource_slice(own_a)) == 200
        assert (await api_b.read_resource_slice(own_b)).metadata.labels is None
        assert await _status(api_b.delete_resource_slice(own_b)) == 200
    finally:
        for client in (as_a, as_b, nodeless):
            await client.close()


def test_the_policy_is_behind_a_value(control_plane: ControlPlane) -> None:
    kinds = {o["kind"] for o in render(control_plane)}
    assert {"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"} <= kinds
    kinds = {o["kind"] for o in render(control_plane, "controller.restrictSlicesToOwnNode=false")}
    assert not kinds & {"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"}


def test_a_simulated_node_is_seen_at_its_host_path(control_plane: ControlPlane) -> None:
    """Simulated devices (docs/abi.md §8.5): the agent sees the tree where runc resolves the CDI host paths."""
    root = "/srv/sim/sys"
    objects = render(
        control_plane,
        f"controller.sysfsRoot={root}",
        f"nodeAgent.sysfsRoot={root}",
        f"nodeAgent.deviceDir={root}/dev",
        "nodeAgent.containerSysfsDir=/run/mock-accel",
    )
    agent_spec, controller_spec = pod_spec(objects, "node-agent"), pod_spec(objects, "controller")
    refs = {"spec.nodeName": "node-a", "metadata.uid": "0f1e2d3c-aaaa-bbbb-cccc-000000000001"}
    agent = settings_from(agent_spec, NodeAgentSettings, **refs)
    controller = settings_from(controller_spec, ControllerSettings, **refs)
    assert agent.sysfs_root == Path(root)
    assert host_path(agent_spec, agent.sysfs_root) == Path(root)
    assert host_path(controller_spec, controller.sysfs_root) == Path(root)
    assert agent.device_dir == Path(f"{root}/dev")
    assert agent.cdi_sysfs_dir == Path("/run/mock-accel")
