"""Event-driven watching of the devices' ``health`` and ``status`` attributes.

Two sources of change events, one interface:

* the kernel's sysfs (docs/abi.md §5.4): ``status`` and ``health`` are
  pollable; after reading an attribute once, ``poll(POLLPRI)`` wakes when the
  driver calls ``sysfs_notify``. inotify does not work on sysfs. Plain
  ``loop.add_reader`` cannot be used on the attribute itself (a sysfs file is
  always "readable"), so the attributes go into a private epoll set waiting
  for EPOLLPRI only, and that epoll descriptor goes to the event loop.
  Devices appearing or disappearing (VFs enabled, hot-unplug) raise no such
  event, so the device list is re-read every ``rescan_interval`` seconds.
* the simulator: every attribute write is a file replacement by rename, so
  inotify on each device directory (IN_MOVED_TO) and on the class directory
  (devices appearing or vanishing) reports every change. inotify comes from
  libc through ctypes (mockaccel_common.inotify); no extra dependency.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import select
from collections.abc import AsyncIterator
from pathlib import Path

from mockaccel_common.inotify import (
    IN_ATTRIB,
    IN_CLOSE_WRITE,
    IN_CREATE,
    IN_DELETE,
    IN_DELETE_SELF,
    IN_IGNORED,
    IN_MODIFY,
    IN_MOVED_FROM,
    IN_MOVED_TO,
    IN_Q_OVERFLOW,
    Inotify,
)
from mockaccel_common.logging import get_logger
from mockaccel_common.simulator.engine import SimulatedNode
from mockaccel_common.sysfs import abi

log = get_logger("mockaccel_node_agent.watching")

WATCHED_ATTRIBUTES = ("health", "status")

_DEVICE_MASK = IN_MOVED_TO | IN_CLOSE_WRITE | IN_MODIFY | IN_ATTRIB | IN_DELETE_SELF
_CLASS_MASK = IN_CREATE | IN_DELETE | IN_MOVED_TO | IN_MOVED_FROM


def _device_dirs(root: Path) -> dict[str, Path]:
    class_dir = root / abi.CLASS_DIR
    try:
        names = sorted(os.listdir(class_dir))
    except FileNotFoundError:
        return {}
    dirs = {}
    for name in names:
        try:
            dirs[name] = Path(os.path.realpath(class_dir / name, strict=True))
        except OSError:
            continue
    return dirs


class AttributeWatcher:
    """An async iterator of "something changed" ticks; the consumer re-reads what it needs."""

    def __init__(self, sysfs_root: Path, *, rescan_interval: float = 30.0) -> None:
        self.root = sysfs_root
        self.rescan_interval = rescan_interval

    def changes(self) -> AsyncIterator[None]:
        if SimulatedNode.is_simulated(self.root):
            return self._inotify_changes()
        return self._pollpri_changes()

    async def _inotify_changes(self) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        inotify = Inotify()
        woken = asyncio.Event()
        watches: dict[Path, int] = {}

        def rewatch() -> None:
            wanted = set(_device_dirs(self.root).values())
            class_dir = self.root / abi.CLASS_DIR
            if class_dir.is_dir():
                wanted.add(class_dir)
            for path in set(watches) - wanted:
                inotify.rm_watch(watches.pop(path))
            for path in wanted - set(watches):
                try:
                    watches[path] = inotify.add_watch(path, _CLASS_MASK if path == class_dir else _DEVICE_MASK)
                except OSError as exc:
                    if exc.errno != errno.ENOENT:
                        raise

        def on_readable() -> None:
            relevant = False
            for event in inotify.read():
                overflow_or_gone = event.mask & (IN_Q_OVERFLOW | IN_DELETE_SELF | IN_IGNORED)
                device_set_changed = event.mask & _CLASS_MASK and not event.name.startswith(".")
                if overflow_or_gone or event.name in WATCHED_ATTRIBUTES or device_set_changed:
                    relevant = True
            if relevant:
                woken.set()

        loop.add_reader(inotify.fd, on_readable)
        try:
            rewatch()
            log.info("watching_attributes", mode="inotify", directories=len(watches))
            while True:
                if not (self.root / abi.CLASS_DIR).is_dir():
                    # Nothing to watch yet (no device on the node): look again later.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(woken.wait(), self.rescan_interval)
                else:
                    await woken.wait()
                woken.clear()
                rewatch()
                yield
        finally:
            loop.remove_reader(inotify.fd)
            inotify.close()

    async def _pollpri_changes(self) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        epoll = select.epoll()
        woken = asyncio.Event()
        opened: dict[Path, int] = {}

        def arm(fd: int) -> None:
            os.lseek(fd, 0, os.SEEK_SET)
            os.read(fd, 4096)  # a read re-arms sysfs_notify

        def reopen() -> None:
            directories = _device_dirs(self.root).values()
            wanted = {directory / attribute for directory in directories for attribute in WATCHED_ATTRIBUTES}
            for path in set(opened) - wanted:
                fd = opened.pop(path)
                epoll.unregister(fd)
                os.close(fd)
            for path in sorted(wanted - set(opened)):
                try:
                    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                except OSError:
                    continue
                try:
                    arm(fd)
                except OSError:
                    os.close(fd)
                    continue
                epoll.register(fd, select.EPOLLPRI | select.EPOLLERR)
                opened[path] = fd

        def on_readable() -> None:
            for fd, _events in epoll.poll(0):
                with contextlib.suppress(OSError):  # the device went away; the next rescan drops it
                    arm(fd)
            woken.set()

        loop.add_reader(epoll.fileno(), on_readable)
        try:
            reopen()
            log.info("watching_attributes", mode="pollpri", attributes=len(opened))
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(woken.wait(), self.rescan_interval)
                woken.clear()
                reopen()
                yield
        finally:
            loop.remove_reader(epoll.fileno())
            for fd in opened.values():
                os.close(fd)
            epoll.close()
