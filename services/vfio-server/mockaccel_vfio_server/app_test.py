from __future__ import annotations

import signal
from pathlib import Path

from mockaccel_testing.service_process import service_process


def test_process_starts_and_exits_cleanly_on_sigterm(tmp_path: Path) -> None:
    with service_process("mockaccel_vfio_server", ["--socket-path", str(tmp_path / "dev.sock")]) as service:
        service.wait_for_event("service_started")
        code, elapsed = service.stop(signal.SIGTERM)
    assert code == 0
    assert elapsed < 5
    assert service.events[-1]["event"] == "service_stopped"
