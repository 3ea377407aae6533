"""Threads that hammer the driver while devices come and go (kernel-only stress checks).

A worker repeats its body until stopped; an errno a racing caller may
legitimately see (the device vanished, is busy, or the value is refused) is
counted as normal, anything else is recorded as a finding. The kernel log is
checked for BUG/WARN/KASAN/lockdep reports by the host after the run.
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Callable
from pathlib import Path

# What a racing caller may legitimately see while devices come and go.
EXPECTED = {errno.ENOENT, errno.ENODEV, errno.EBUSY, errno.EACCES, errno.EINVAL, errno.ENXIO}
CLASS = Path("/sys/class/mock-accel")


class Workers:
    def __init__(self) -> None:
        self.stop = threading.Event()
        self.errors: list[str] = []
        self.ops = 0
        self._threads: list[threading.Thread] = []

    def spawn(self, name: str, body: Callable[[], None]) -> None:
        def loop() -> None:
            while not self.stop.is_set():
                try:
                    body()
                    self.ops += 1
                except OSError as exc:
                    if exc.errno not in EXPECTED:
                        self.errors.append(f"{name}: {exc!r}")
                except Exception as exc:  # any other failure is a finding
                    self.errors.append(f"{name}: {exc!r}")

        thread = threading.Thread(target=loop, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def join(self) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(30)
            assert not thread.is_alive(), f"{thread.name} hangs"


def read_everything() -> None:
    """Read every readable attribute of every device the class lists right now."""
    for dev in os.listdir(CLASS):
        for attr in os.listdir(CLASS / dev):
            path = CLASS / dev / attr
            if path.is_file() and os.stat(path).st_mode & 0o444:
                path.read_bytes()


def write(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)
