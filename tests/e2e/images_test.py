"""The service images built by tools/images start, answer their health checks, run as the
intended user and carry the OCI labels (podman, through testcontainers over its Docker API).

Prerequisites (tools/test provides them): the images (`tools/images` prints the
MOCKACCEL_IMAGE_* names), podman's Docker API service and DOCKER_HOST pointing at it.
testcontainers runs with TESTCONTAINERS_RYUK_DISABLED=true and
TESTCONTAINERS_CONNECTION_MODE=docker_host (pants.toml passes both): there is no registry
to pull Ryuk from, and /.dockerenv would make it look for a container network otherwise.

Each container uses host networking and bind mounts at the same path as on the host, so
the paths and ports the test hands the service are the ones it sees.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from kubernetes_asyncio.client import ApiClient, CoreV1Api
from kubernetes_asyncio.client.exceptions import ApiException
from testcontainers.core.container import DockerContainer

from mockaccel_common.simulator.engine import SimulatedNode
from mockaccel_common.simulator.topology import loads_topology
from mockaccel_node_agent.adapters.kubelet_grpc import check_liveness
from mockaccel_testing import ControlPlane, create_node
from mockaccel_testing.controller import device_names, list_slices
from mockaccel_testing.net import LOOPBACK, free_ports
from mockaccel_testing.node_agent import AgentDirs, kubeconfig_for, simulated_node
from mockaccel_testing.polling import wait_until, wait_until_sync
from mockaccel_testing.topologies import SMALL_NODE
from mockaccel_vfio_server.adapters.control_client import ControlClient

NONROOT = 65532
STOP_WITHIN_S = 5.0
HEALTHY_WITHIN_S = 60.0
TOPOLOGY = SMALL_NODE


def image(service: str) -> str:
    """The image tools/images built for `service` (a missing one is a setup error, not a skip)."""
    key = "MOCKACCEL_IMAGE_" + service.upper().replace("-", "_")
    name = os.environ.get(key)
    assert name, f"{key} is not set: run `set -a; eval \"$(tools/images)\"; set +a` (tools/test does)"
    return name


@contextlib.contextmanager
def short_dir(prefix: str, owner: int | None = None) -> Iterator[Path]:
    """A folder under /tmp (Unix socket paths must fit in 107 bytes), optionally owned by `owner`."""
    root = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    root.chmod(0o755)
    if owner is not None:
        os.chown(root, owner, owner)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def container(name: str, **env: str) -> DockerContainer:
    assert os.environ.get("DOCKER_HOST"), "DOCKER_HOST is not set: tools/test starts podman's Docker API and sets it"
    box = DockerContainer(name, network_mode="host")
    for key, value in env.items():
        box.with_env(key, value)
    return box


def pid1_uid(box: DockerContainer) -> int:
    """The real uid of the container's PID 1 (the pex), from /proc."""
    code, out = box.get_wrapped_container().exec_run(["cat", "/proc/1/status"])
    assert code == 0, out
    (line,) = (x for x in out.decode().splitlines() if x.startswith("Uid:"))
    return int(line.split()[1])


def labels(box: DockerContainer) -> dict[str, str]:
    wrapped = box.get_wrapped_container()
    wrapped.reload()
    found: dict[str, str] = wrapped.image.labels
    return found


def assert_labelled(box: DockerContainer) -> None:
    found = labels(box)
    assert found.get("org.opencontainers.image.version"), found
    assert len(found.get("org.opencontainers.image.revision", "").split("-")[0]) == 40, found


def json_events(box: DockerContainer) -> list[dict[str, Any]]:
    """The service's JSON log events; pex warnings (e.g. an unwritable PEX_ROOT) fail the test."""
    stdout, stderr = box.get_logs()
    assert b"PEXWarning" not in stderr, stderr.decode()
    return [json.loads(line) for line in stdout.decode().splitlines() if line.startswith("{")]


def stop_cleanly(box: DockerContainer) -> float:
    """`docker stop` (SIGTERM, then SIGKILL after 10 s): exit 0 with service_stopped, in time; the seconds."""
    wrapped = box.get_wrapped_container()
    started = time.monotonic()
    wrapped.stop(timeout=10)
    code = int(wrapped.wait(timeout=20)["StatusCode"])
    took = time.monotonic() - started
    events = [e["event"] for e in json_events(box)]
    assert code == 0, events
    assert took < STOP_WITHIN_S
    assert "service_stopped" in events
    return took


def report(service: str, healthy_s: float, stop_s: float) -> None:
    print(f"image {service}: healthy {healthy_s:.2f} s after start, stopped in {stop_s:.2f} s")


def test_vfio_server_answers_its_control_api_as_non_root() -> None:
    with short_dir("vfio-img-", owner=NONROOT) as run:
        control = run / "control.sock"
        box = container(image("vfio-server")).with_volume_mapping(str(run), str(run), "rw")
        box.with_command(["--control-socket", str(control), str(run / "vfio.sock")])
        started = time.monotonic()
        with box:

            def state() -> dict[str, Any] | None:
                if not control.exists():
                    return None
                with ControlClient(control, timeout=2) as client:
                    reply = client.request("state")
                return reply if reply.get("ok") else None

            reply = wait_until_sync("the vfio-server's control API", state, HEALTHY_WITHIN_S)
            healthy = time.monotonic() - started
            assert (run / "vfio.sock").exists(), reply
            assert pid1_uid(box) == NONROOT
            assert_labelled(box)
            took = stop_cleanly(box)
        report("vfio-server", healthy, took)


def test_node_agent_answers_grpc_liveness_as_root() -> None:
    with short_dir("na-img-") as root:
        dirs = AgentDirs(root)
        for d in (dirs.plugin, dirs.registry, dirs.cdi):
            d.mkdir()
        simulated_node(dirs, "img-node", pfs=2)
        (port,) = free_ports(1)
        kubeconfig = kubeconfig_for(root / "kubeconfig", server="http://127.0.0.1:9")  # read no claim at start
        env = dirs.env(
            "img-node", kubeconfig, MOCKACCEL_HEALTH_PORT=str(port), MOCKACCEL_LISTEN_HOST=LOOPBACK
        )
        box = container(image("node-agent"), **env).with_volume_mapping(str(root), str(root), "rw")
        started = time.monotonic()
        with box:
            wait_until_sync(
                "SERVING from the node agent's grpc liveness",
                lambda: asyncio.run(check_liveness(LOOPBACK, port, 2)),
                HEALTHY_WITHIN_S,
            )
            healthy = time.monotonic() - started
            assert dirs.registration_socket.exists()
            assert pid1_uid(box) == 0
            assert_labelled(box)
            took = stop_cleanly(box)
        assert not dirs.registration_socket.exists()
        report("node-agent", healthy, took)


@pytest_asyncio.fixture
async def node(kube: ApiClient) -> AsyncIterator[str]:
    name = f"img-ctl-{uuid.uuid4().hex[:6]}"
    await create_node(kube, name)
    yield name
    with contextlib.suppress(ApiException):
        await CoreV1Api(kube).delete_node(name)


@pytest.mark.asyncio
async def test_controller_publishes_slices_as_non_root(
    kube: ApiClient, control_plane: ControlPlane, node: str
) -> None:
    with short_dir("ctl-img-") as root:
        sim = SimulatedNode.create(root / "sys", loads_topology(TOPOLOGY).node("n"))
        kubeconfig = root / "kubeconfig"
        shutil.copyfile(control_plane.kubeconfig, kubeconfig)
        os.chown(kubeconfig, NONROOT, NONROOT)
        box = container(
            image("controller"),
            NODE_NAME=node,
            KUBECONFIG=str(kubeconfig),
            MOCKACCEL_SYSFS_ROOT=str(sim.root),
            MOCKACCEL_REQUIRE_AGENT="false",
        )
        box.with_volume_mapping(str(kubeconfig), str(kubeconfig), "ro")
        box.with_volume_mapping(str(sim.root), str(sim.root), "ro")
        expected = {f"{node}/numa0": ["mock1", "mock2"], f"{node}/numa-none": ["mock0"]}
        started = time.monotonic()
        with box:

            async def published() -> bool:
                return device_names(await list_slices(kube, node)) == expected

            await wait_until(f"slices of {node} == {expected}", published, HEALTHY_WITHIN_S)
            healthy = time.monotonic() - started
            assert pid1_uid(box) == NONROOT
            assert_labelled(box)
            took = await asyncio.to_thread(stop_cleanly, box)
            events = [e["event"] for e in json_events(box)]
        assert "service_failed" not in events
        assert "service_started" in events
        report("controller", healthy, took)
