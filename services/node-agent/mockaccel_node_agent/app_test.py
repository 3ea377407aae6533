from __future__ import annotations

import signal
from pathlib import Path

from mockaccel_testing.service_process import service_process


def test_process_starts_and_exits_cleanly_on_sigterm(tmp_path: Path) -> None:
    env = {
        "NODE_NAME": "n1",
        "MOCKACCEL_PLUGIN_DIR": str(tmp_path / "plugin"),
        "MOCKACCEL_REGISTRY_DIR": str(tmp_path / "registry"),
        "MOCKACCEL_CDI_DIR": str(tmp_path / "cdi"),
        "MOCKACCEL_SYSFS_ROOT": str(tmp_path / "sys"),
    }
    with service_process("mockaccel_node_agent", env=env) as service:
        service.wait_for_event("service_started")
        code, elapsed = service.stop(signal.SIGTERM)
    assert code == 0
    assert elapsed < 5
    assert (tmp_path / "plugin").is_dir()
    assert (tmp_path / "cdi").is_dir()
    assert service.events[-1]["event"] == "service_stopped"


def test_sigint_stops_it_too(tmp_path: Path) -> None:
    env = {"NODE_NAME": "n1", "MOCKACCEL_PLUGIN_DIR": str(tmp_path / "p"), "MOCKACCEL_CDI_DIR": str(tmp_path / "c")}
    with service_process("mockaccel_node_agent", env=env) as service:
        service.wait_for_event("service_started")
        code, _ = service.stop(signal.SIGINT)
    assert code == 0
