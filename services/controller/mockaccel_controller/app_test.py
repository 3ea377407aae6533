"""The controller as a process: entry point, settings, signals, exit codes.

No API server here: the kubeconfig points at a closed port, so these tests also
prove that an unreachable API server is ridden out (logged, retried) and never
blocks a clean shutdown.
"""

from __future__ import annotations

import signal
import socket
from pathlib import Path

import pytest

from mockaccel_common.simulator.engine import SimulatedNode
from mockaccel_common.simulator.topology import loads_topology
from mockaccel_testing.service_process import service_process

TOPOLOGY = '[[node]]\nname = "n1"\n[[node.pf]]\nnuma_node = 0\n[[node.pf]]\nnuma_node = 1\n'


@pytest.fixture
def sysfs(tmp_path: Path) -> Path:
    return SimulatedNode.create(tmp_path / "sys", loads_topology(TOPOLOGY).node("n1")).root


@pytest.fixture
def dead_kubeconfig(tmp_path: Path) -> Path:
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    path = tmp_path / "kubeconfig"
    path.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        f"clusters: [{{name: k, cluster: {{server: 'https://127.0.0.1:{port}', insecure-skip-tls-verify: true}}}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: c, context: {cluster: k, user: u}}]\n"
    )
    return path


def test_unreachable_api_is_retried_and_sigterm_still_exits_cleanly(sysfs: Path, dead_kubeconfig: Path) -> None:
    args = ["--sysfs-root", str(sysfs), "--kubeconfig", str(dead_kubeconfig), "--require-agent", "false"]
    with service_process("mockaccel_controller", args, {"NODE_NAME": "n1", "MOCKACCEL_RETRY_MAX_DELAY": "0.5"}) as svc:
        first = svc.wait_for_event("api_unavailable")
        assert first["node"] == "n1"
        assert first["retry_in_s"] <= 0.5
        svc.wait_until(lambda e: e.get("event") == "api_unavailable" and e.get("attempt", 0) >= 3, 20)
        code, elapsed = svc.stop(signal.SIGTERM)
    assert code == 0
    assert elapsed < 5
    assert max(e.get("attempt", 0) for e in svc.events if e.get("event") == "api_unavailable") >= 3
    assert svc.events[-1]["event"] == "service_stopped"
    assert not any(e.get("event") == "ready" for e in svc.events)


def test_missing_node_name_is_a_clear_error() -> None:
    with service_process("mockaccel_controller") as service:
        code = service.process.wait(timeout=20)
        stderr = service.read_stderr()
    assert code != 0
    assert "node_name is required" in stderr


def test_a_bad_kubeconfig_is_fatal_with_a_non_zero_exit(sysfs: Path, tmp_path: Path) -> None:
    missing = tmp_path / "absent.kubeconfig"
    with service_process("mockaccel_controller", ["--sysfs-root", str(sysfs), "--kubeconfig", str(missing)], {
        "NODE_NAME": "n1"
    }) as service:
        code = service.process.wait(timeout=20)
        failed = service.wait_for_event("service_failed")
    assert code == 1
    assert "cannot configure the Kubernetes client" in failed["error"]  # KubeconfigError, mockaccel_common.kube
