from __future__ import annotations

import signal
from pathlib import Path

from mockaccel_node_agent.conftest import NODE
from mockaccel_node_agent.domain import checkpoint as codec
from mockaccel_node_agent.domain.checkpoint import Checkpoint
from mockaccel_testing.node_agent import AgentDirs, kubeconfig_for
from mockaccel_testing.service_process import service_process


def _env(dirs: AgentDirs) -> dict[str, str]:
    # The agent reads no claim at start, so a server that is not there is fine.
    return dirs.env(NODE, kubeconfig_for(dirs.root / "kubeconfig", server="http://127.0.0.1:9"))


def test_process_starts_and_exits_cleanly_on_sigterm(dirs: AgentDirs) -> None:
    with service_process("mockaccel_node_agent", env=_env(dirs)) as service:
        service.wait_for_event("agent_ready")
        assert dirs.registration_socket.exists()
        code, elapsed = service.stop(signal.SIGTERM)
    assert code == 0
    assert elapsed < 5
    assert not dirs.registration_socket.exists()
    assert not (dirs.plugin / "dra.sock").exists()
    assert service.events[-1]["event"] == "service_stopped"


def test_sigint_stops_it_too(dirs: AgentDirs) -> None:
    with service_process("mockaccel_node_agent", env=_env(dirs)) as service:
        service.wait_for_event("service_started")
        code, _ = service.stop(signal.SIGINT)
    assert code == 0


def test_a_corrupt_checkpoint_stops_the_agent_loudly(dirs: AgentDirs) -> None:
    raw = codec.encode(Checkpoint())
    (dirs.plugin / "checkpoint.json").write_bytes(raw[:-10])
    with service_process("mockaccel_node_agent", env=_env(dirs)) as service:
        failure = service.wait_for_event("service_failed")
        assert service.process.wait(timeout=10) == 1
    assert "CheckpointCorruptError" in failure["error"]
    assert not dirs.registration_socket.exists()  # never registered with kubelet


def test_unknown_fault_point_is_a_settings_error(dirs: AgentDirs, tmp_path: Path) -> None:
    env = _env(dirs) | {"MOCKACCEL_FAULT_POINT": "prepare:nowhere"}
    with service_process("mockaccel_node_agent", env=env) as service:
        assert service.process.wait(timeout=20) != 0
        assert "fault_point" in service.read_stderr()
