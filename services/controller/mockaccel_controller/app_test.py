from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from mockaccel_common.simulator.engine import SimulatedNode
from mockaccel_common.simulator.topology import loads_topology
from mockaccel_controller import app
from mockaccel_controller.settings import Settings
from mockaccel_testing.service_process import service_process

TOPOLOGY = '[[node]]\nname = "n1"\n[[node.pf]]\nnuma_node = 0\n[[node.pf]]\nnuma_node = 1\n'


@pytest.fixture
def sysfs(tmp_path: Path) -> Path:
    return SimulatedNode.create(tmp_path / "sys", loads_topology(TOPOLOGY).node("n1")).root


@pytest.mark.asyncio
async def test_discovers_devices_and_stops_on_request(sysfs: Path) -> None:
    stop = asyncio.Event()
    settings = Settings.load(["--node-name", "n1", "--sysfs-root", str(sysfs)], {})
    with capture_logs() as logs:
        task = asyncio.create_task(app.run(settings, stop))
        while not any(e["event"] == "devices_discovered" for e in logs):
            await asyncio.sleep(0.01)
        stop.set()
        await asyncio.wait_for(task, 5)
    discovered = next(e for e in logs if e["event"] == "devices_discovered")
    assert discovered["devices"] == 2


def test_process_exits_cleanly_on_sigterm(sysfs: Path) -> None:
    with service_process("mockaccel_controller", ["--sysfs-root", str(sysfs)], {"NODE_NAME": "n1"}) as service:
        assert service.wait_for_event("devices_discovered")["devices"] == 2
        code, elapsed = service.stop(signal.SIGTERM)
    assert code == 0
    assert elapsed < 5
    assert service.events[-1]["event"] == "service_stopped"


def test_missing_node_name_is_a_clear_error() -> None:
    with service_process("mockaccel_controller") as service:
        code = service.process.wait(timeout=20)
        stderr = service.read_stderr()
    assert code != 0
    assert "node_name is required" in stderr
