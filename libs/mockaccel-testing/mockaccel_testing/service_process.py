"""Run a service as a real process (``python -m <package>``) and read its JSON log.

Service tests use it to prove the whole entry point: settings, logging,
uvloop, signal handling and the exit code, exactly as Kubernetes runs it.
A background thread drains stdout as it comes, so a chatty service never
blocks on a full pipe, and no line is lost between two waits.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

Event = dict[str, Any]
_EOF: Event = {"event": "_eof"}
# The settings of a service image that shape the interpreter (not the image's own paths,
# such as PEX_ROOT): a benchmark of the service as deployed runs it with them.
IMAGE_ENV = ("SSL_CERT_FILE",)


def image_env(containerfile: Path, keys: Sequence[str] = IMAGE_ENV) -> dict[str, str]:
    """The ``ENV KEY=VALUE`` lines of ``containerfile`` whose key is in ``keys``."""
    found = {}
    for line in containerfile.read_text().splitlines():
        if line.startswith("ENV ") and "=" in line:
            key, value = line[4:].strip().split("=", 1)
            if key in keys:
                found[key] = value
    return found


def _parse(line: bytes) -> Event:
    try:
        parsed = json.loads(line)
    except json.JSONDecodeError:
        parsed = None
    if isinstance(parsed, dict):
        return parsed
    return {"event": "non_json_output", "line": line.decode(errors="replace").rstrip("\n")}


def _drain(stream: IO[bytes], sink: queue.Queue[Event]) -> None:
    for line in stream:
        sink.put(_parse(line))
    sink.put(_EOF)


class ServiceProcess:
    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.process = process
        self.events: list[Event] = []
        self._incoming: queue.Queue[Event] = queue.Queue()
        self._eof = False
        assert process.stdout is not None
        self._reader = threading.Thread(target=_drain, args=(process.stdout, self._incoming), daemon=True)
        self._reader.start()

    def _take(self, timeout: float) -> Event | None:
        try:
            event = self._incoming.get(timeout=timeout)
        except queue.Empty:
            return None
        if event is _EOF:
            self._eof = True
            return None
        self.events.append(event)
        return event

    def wait_until(self, predicate: Callable[[Event], bool], timeout: float = 20.0) -> Event | None:
        """The first event (seen or new) that satisfies ``predicate``, or None at the deadline or exit."""
        for event in self.events:
            if predicate(event):
                return event
        deadline = time.monotonic() + timeout
        while not self._eof and (remaining := deadline - time.monotonic()) > 0:
            new = self._take(min(remaining, 0.1))
            if new is not None and predicate(new):
                return new
        return None

    def wait_for_event(self, name: str, timeout: float = 20.0) -> Event:
        found = self.wait_until(lambda e: e.get("event") == name, timeout)
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
        self._reader.join(timeout=5)
        while self._take(0) is not None:
            pass
        return code, elapsed


def python_env(extra: Mapping[str, str] | None = None, *, inherit: bool = False) -> dict[str, str]:
    """Environment of a child interpreter that imports our packages.

    A pex or Pants sandbox puts them on sys.path, not in site-packages, so the
    child gets our import path as PYTHONPATH. Without ``inherit`` it sees only
    PATH, that and ``extra``, so a test states everything the service reads.
    """
    env = dict(os.environ) if inherit else {"PATH": os.environ.get("PATH", "")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    env.update(extra or {})
    return env


@contextmanager
def service_process(
    module: str, args: Sequence[str] = (), env: Mapping[str, str] | None = None, *, pex: Path | None = None
) -> Iterator[ServiceProcess]:
    """``python -m module args`` with ``env`` (and our import path) as its whole environment.

    With ``pex`` the service's packaged pex runs instead (its entry point is
    ``module``), with ``env`` alone: what the container image runs, without
    the packages of this interpreter's environment (benchmarks of RSS and
    start-up measure that).
    """
    if pex is not None:
        command = [str(pex), *args]
        child_env = dict(env or {})
    else:
        command = [sys.executable, "-m", module, *args]
        child_env = {"PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        child_env.update(env or {})
    process = subprocess.Popen(
        command,
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
