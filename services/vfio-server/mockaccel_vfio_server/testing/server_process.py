"""Run the vfio-server as a real process on short temporary socket paths, and read its JSON log.

Why not ``mockaccel_testing.service_process``: its reader drops the lines
that follow a matching event in the same read chunk (reported to the lead),
and these tests wait for several events in a row. Here a thread reads stdout
continuously into a list, so no event is lost and the pipe never fills.

Why /tmp and not pytest's tmp_path: a Unix socket path must fit in 108 bytes,
and pytest's (or the Pants sandbox's) temporary folders can be longer.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mockaccel_vfio_server.cli import ControlClient
from mockaccel_vfio_server.testing.prereqs import require, server_env

MODULE = "mockaccel_vfio_server"
TEST_UUID = "6d6f636b-2d61-4363-8565-6c2d30303031"
# The first start in a fresh cache compiles the cffi binding (about a second, more on a busy machine).
START_TIMEOUT_S = 90.0


@dataclass
class ServerProcess:
    process: subprocess.Popen[bytes]
    events: list[dict[str, Any]] = field(default_factory=list)
    _changed: threading.Condition = field(default_factory=threading.Condition)

    def __post_init__(self) -> None:
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            try:
                event = dict(json.loads(line))
            except json.JSONDecodeError:
                event = {"event": "non_json_output", "line": line.decode(errors="replace")}
            with self._changed:
                self.events.append(event)
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait_for_event(self, name: str, timeout: float = 20.0) -> dict[str, Any]:
        """The first event called ``name`` (already logged or still to come)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for event in self.events:
                    if event.get("event") == name:
                        return event
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.process.poll() is not None and not self._reader.is_alive()):
                    break
                self._changed.wait(min(remaining, 0.2))
        raise AssertionError(f"no {name!r} event within {timeout} s; last events: {self.events[-10:]}\n{self.stderr()}")

    def stderr(self) -> str:
        if self.process.poll() is None or self.process.stderr is None:
            return "(stderr: still running)"
        return self.process.stderr.read().decode(errors="replace")[-3000:]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> tuple[int, float]:
        """Send ``sig``; the exit code and the seconds the process took to exit."""
        started = time.monotonic()
        self.process.send_signal(sig)
        code = self.process.wait(timeout=timeout)
        elapsed = time.monotonic() - started
        self._reader.join(5)
        return code, elapsed


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    env.update(extra or {})
    return env


@contextmanager
def server_process(args: Sequence[str]) -> Iterator[ServerProcess]:
    process = subprocess.Popen(
        [sys.executable, "-m", MODULE, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=child_env(server_env()),
    )
    try:
        yield ServerProcess(process)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for stream in (process.stdout, process.stderr):
            if stream:
                stream.close()


@dataclass
class RunningServer:
    process: ServerProcess
    socket: Path
    control_socket: Path
    folder: Path

    def control(self, op: str, **fields: object) -> dict[str, Any]:
        with ControlClient(self.control_socket) as client:
            reply = client.request(op, **fields)
        assert reply["ok"], reply
        return reply


@contextmanager
def short_folder() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="mas-", dir="/tmp"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def server_args(folder: Path, extra: Sequence[str] = (), *, wordlist: bool = True) -> list[str]:
    args = ["-u", TEST_UUID, "--control-socket", str(folder / "ctl.sock"), *extra]
    if wordlist:
        args += ["--wordlist", str(require("MOCKACCEL_WORDLIST"))]
    return [*args, str(folder / "pf.sock")]


@contextmanager
def vfio_server(extra: Sequence[str] = (), *, wordlist: bool = True) -> Iterator[RunningServer]:
    """A started server, listening on its vfio-user and control sockets."""
    with short_folder() as folder, server_process(server_args(folder, extra, wordlist=wordlist)) as proc:
        proc.wait_for_event("server_listening", timeout=START_TIMEOUT_S)
        yield RunningServer(proc, folder / "pf.sock", folder / "ctl.sock", folder)
