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
  libc through ctypes; no extra dependency.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import errno
import os
import select
import struct
from collections.abc import AsyncIterator
from pathlib import Path

from mockaccel_common.logging import get_logger
from mockaccel_common.simulator.engine import SimulatedNode
from mockaccel_common.sysfs import abi

log = get_logger("mockaccel_node_agent.watching")

WATCHED_ATTRIBUTES = ("health", "status")

IN_MODIFY = 0x00000002
IN_ATTRIB = 0x00000004
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC
_EVENT = struct.Struct("iIII")

_DEVICE_MASK = IN_MOVED_TO | IN_CLOSE_WRITE | IN_MODIFY | IN_ATTRIB | IN_DELETE_SELF
_CLASS_MASK = IN_CREATE | IN_DELETE | IN_MOVED_TO | IN_MOVED_FROM


class _Inotify:
    """A minimal inotify binding: init, add_watch, rm_watch, and reading event names."""

    def __init__(self) -> None:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        self._add = libc.inotify_add_watch
        self._add.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32)
        self._rm = libc.inotify_rm_watch
        self._rm.argtypes = (ctypes.c_int, ctypes.c_int)
        init = libc.inotify_init1
        init.argtypes = (ctypes.c_int,)
        fd = init(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code))
        self.fd: int = fd

    def add_watch(self, path: Path, mask: int) -> int:
        wd = int(self._add(self.fd, os.fsencode(path), mask))
        if wd < 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code), str(path))
        return wd

    def rm_watch(self, wd: int) -> None:
        self._rm(self.fd, wd)

    def drain(self) -> list[tuple[int, int, str]]:
        """(wd, mask, name) of every pending event."""
        events: list[tuple[int, int, str]] = []
        while True:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                return events
            offset = 0
            while offset + _EVENT.size <= len(data):
                wd, mask, _cookie, length = _EVENT.unpack_from(data, offset)
                raw = data[offset + _EVENT.size : offset + _EVENT.size + length]
                events.append((wd, mask, raw.rstrip(b"\0").decode(errors="replace")))
                offset += _EVENT.size + length

    def close(self) -> None:
        os.close(self.fd)


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
        inotify = _Inotify()
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
            for _wd, mask, name in inotify.drain():
                overflow_or_gone = mask & (IN_Q_OVERFLOW | IN_DELETE_SELF | IN_IGNORED)
                device_set_changed = mask & _CLASS_MASK and not name.startswith(".")
                if overflow_or_gone or name in WATCHED_ATTRIBUTES or device_set_changed:
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
