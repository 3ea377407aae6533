"""Child processes that always go away.

Each component runs in its own session (process group), with stdout and stderr in a log
file that is kept after the run. Stopping sends SIGTERM to the whole group and SIGKILL
after a deadline, so no etcd or kube-* process outlives a test session. A session that
is itself killed (SIGKILL, or a test runner cancelling it) runs no teardown, so every
component is also started under ``setpriv --pdeathsig KILL``: the kernel kills it when
the process that started it dies.
"""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Self


class ManagedProcess:
    """One component process and its log file."""

    def __init__(self, name: str, argv: Sequence[str], log_path: Path) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self._log: IO[bytes] | None = None
        self._popen: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._popen.pid if self._popen else None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        self._log.write(f"# {' '.join(self.argv)}\n".encode())
        self._log.flush()
        self._popen = subprocess.Popen(
            ["setpriv", "--pdeathsig", "KILL", "--", *self.argv],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def exit_code(self) -> int | None:
        """None while running (or never started)."""
        return self._popen.poll() if self._popen else None

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM the process group, SIGKILL it after `grace` seconds."""
        popen = self._popen
        if popen is not None:
            _signal_group(popen.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                popen.wait(timeout=grace)
            # The leader may be gone while children of its group are not: kill the group.
            _signal_group(popen.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                popen.wait(timeout=grace)
            _wait_group_gone(popen.pid, grace)
        if self._log is not None:
            self._log.close()
            self._log = None

    def tail(self, lines: int = 40) -> str:
        """The last lines of the log, for error messages."""
        try:
            with self.log_path.open("rb") as f:
                last = collections.deque(f, maxlen=lines)
        except FileNotFoundError:
            return "(no log)"
        return b"".join(last).decode(errors="replace").rstrip()


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours also counts as gone.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][:1] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def stop_group(pgid: int, grace: float = 10.0) -> None:
    """Stop a process group this process did not spawn (e.g. after a CLI restart)."""
    _signal_group(pgid, signal.SIGTERM)
    _wait_group_gone(pgid, grace)
    _signal_group(pgid, signal.SIGKILL)
    _wait_group_gone(pgid, grace)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _wait_group_gone(pgid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)


class ProcessGroupOwner:
    """A test-bed part made of managed processes: ``start()``/``stop()``, usable as a context manager."""

    _processes: list[ManagedProcess]

    @property
    def processes(self) -> tuple[ManagedProcess, ...]:
        return tuple(self._processes)

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
