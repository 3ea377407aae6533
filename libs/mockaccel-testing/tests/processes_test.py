"""Components never outlive the process that started them, even when it is killed."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

STARTER = """
import sys, time
from pathlib import Path
from mockaccel_testing.processes import ManagedProcess
component = ManagedProcess("sleeper", ["sleep", "300"], Path(sys.argv[1]))
component.start()
print(component.pid, flush=True)
time.sleep(300)
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"  # a zombie has exited; only its reaper is missing


def test_a_killed_starter_takes_its_components_along(tmp_path: Path) -> None:
    env = {"PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    with subprocess.Popen(
        [sys.executable, "-c", STARTER, str(tmp_path / "sleeper.log")], stdout=subprocess.PIPE, env=env
    ) as starter:
        assert starter.stdout is not None
        component = int(starter.stdout.readline())
        assert _alive(component)
        starter.kill()  # no teardown runs: only the kernel can clean up now
    deadline = time.monotonic() + 10
    while _alive(component) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(component), "the component outlived the process that started it"
