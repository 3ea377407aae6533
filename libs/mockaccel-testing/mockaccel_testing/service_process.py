"""Run a service as a real process (``python -m <package>``) and read its JSON log.

Service tests use it to prove the whole entry point: settings, logging,
uvloop, signal handling and the exit code, exactly as Kubernetes runs it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any


@dataclass
class ServiceProcess:
    process: subprocess.Popen[bytes]
    events: list[dict[str, Any]] = field(default_factory=list)
    _buffer: bytes = b""

    def _pump_until(self, predicate: Callable[[dict[str, Any]], bool], timeout: float) -> dict[str, Any] | None:
        deadline = time.monotonic() + timeout
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        os.set_blocking(fd, False)
        while time.monotonic() < deadline:
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                chunk = None
            if chunk:
                self._buffer += chunk
                *lines, rest = self._buffer.split(b"\n")
                self._buffer = rest
                matched: dict[str, Any] | None = None
                for line in lines:  # keep every line, even those after a match
                    event: dict[str, Any]
                    try:
                        event = dict(json.loads(line))
                    except json.JSONDecodeError:
                        event = {"event": "non_json_output", "line": line.decode(errors="replace")}
                    self.events.append(event)
                    if matched is None and predicate(event):
                        matched = event
                if matched is not None:
                    return matched
            elif chunk == b"":  # end of output: the process has exited
                return None
            time.sleep(0.02)
        return None

    def wait_for_event(self, name: str, timeout: float = 20.0) -> dict[str, Any]:
        for event in self.events:
            if event.get("event") == name:
                return event
        found = self._pump_until(lambda e: e.get("event") == name, timeout)
        if found is None:
            stderr = self.read_stderr() if self.process.poll() is not None else "(still running)"
            raise AssertionError(f"no {name!r} event; events={self.events[-10:]} stderr={stderr[-2000:]}")
        return found

    def read_stderr(self) -> str:
        assert self.process.stderr is not None
        return self.process.stderr.read().decode(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 5.0) -> tuple[int, float]:
        """Send ``sig``; return the exit code and the seconds it took to exit."""
        started = time.monotonic()
        self.process.send_signal(sig)
        code = self.process.wait(timeout=timeout)
        elapsed = time.monotonic() - started
        self._pump_until(lambda e: False, 0.1)
        return code, elapsed


@contextmanager
def service_process(
    module: str, args: Sequence[str] = (), env: Mapping[str, str] | None = None
) -> Iterator[ServiceProcess]:
    # The child sees only what the test passes, plus our own import path.
    child_env = {"PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    child_env.update(env or {})
    process = subprocess.Popen(
        [sys.executable, "-m", module, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=child_env,
    )
    try:
        yield ServiceProcess(process)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for stream in (process.stdout, process.stderr):
            if stream:
                stream.close()
