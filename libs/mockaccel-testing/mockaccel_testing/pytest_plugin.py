"""pytest plugin: `control_plane` and `kubelet_node` (one per session), `kube` (an admin
ApiClient per test), and diagnostics: a failing test that used the control plane gets the
cluster's state and the components' log tails attached to its report (mockaccel_testing.diagnostics).

Enable it with `pytest_plugins = ["mockaccel_testing.pytest_plugin"]` in a conftest.py.
The session fixture is synchronous on purpose, so it works whatever event-loop scope the
async tests use.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Generator, Iterator
from typing import Any

import pytest
import pytest_asyncio
from kubernetes_asyncio.client import ApiClient

from mockaccel_testing.client import admin_client
from mockaccel_testing.control_plane import ControlPlane
from mockaccel_testing.diagnostics import dump_cluster
from mockaccel_testing.kubelet_node import REAL_NODE_TAINT, KubeletNode
from mockaccel_testing.settings import Settings


@pytest.fixture(scope="session")
def mockaccel_settings() -> Settings:
    """The environment, read once; override this fixture to configure by hand."""
    return Settings.from_env()


@pytest.fixture(scope="session")
def control_plane(mockaccel_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """A running control plane; its logs stay in `work_dir/logs` after the session."""
    work_dir = mockaccel_settings.work_dir or tmp_path_factory.mktemp("control-plane")
    plane = ControlPlane.from_settings(mockaccel_settings, work_dir)
    plane.start()
    try:
        yield plane
    finally:
        plane.stop()


@pytest.fixture(scope="session")
def kubelet_node(
    mockaccel_settings: Settings, control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[KubeletNode]:
    """A real node (containerd + kubelet) joined to `control_plane`, Ready and untainted.

    Its plugin dirs, CDI spec dir and logs are under its work dir (see KubeletNode). It is
    tainted with REAL_NODE_TAINT so pods of tests written for fake Nodes stay off it: a pod
    meant for it tolerates that taint and selects `kubernetes.io/hostname: <node.name>`.
    """
    work_dir = tmp_path_factory.mktemp("kubelet-node")
    node = KubeletNode.from_settings(mockaccel_settings, control_plane, work_dir, taints=[REAL_NODE_TAINT])
    node.start()
    try:
        yield node
    finally:
        node.stop()


@pytest_asyncio.fixture
async def kube(control_plane: ControlPlane) -> AsyncIterator[ApiClient]:
    """An admin ApiClient bound to the test's event loop."""
    async with admin_client(control_plane.kubeconfig) as api:
        yield api


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    """Attach the cluster's state to the report of a failing test that used the control plane."""
    report = yield
    if report.failed and "control_plane" in getattr(item, "fixturenames", ()):
        funcargs = getattr(item, "funcargs", {})
        plane = funcargs.get("control_plane")
        if isinstance(plane, ControlPlane) and plane.processes:
            node = funcargs.get("kubelet_node")
            # A real node's kubelet and containerd logs, and every container's log on it.
            extra = (
                [*sorted(node.log_dir.glob("*.log")), *sorted(node.pod_logs_dir.glob("*/*/*.log"))]
                if isinstance(node, KubeletNode)
                else []
            )
            report.sections.append(("mock-accel cluster diagnostics", dump_cluster(plane, extra)))
    return report
