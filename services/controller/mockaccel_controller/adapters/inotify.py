"""inotify through ctypes, driven by the event loop (``loop.add_reader``).

Why ctypes: three libc calls do not justify a new dependency. Why inotify at
all: on the simulator every attribute write is a file replacement (temp file +
rename) and every device add/remove is a symlink change in the class
directory, so events arrive within milliseconds. On real sysfs the kernel
sends no inotify events for device add/remove (kernfs does not), only
IN_MODIFY for ``sysfs_notify`` on ``status``/``health``; the periodic resync
covers the rest.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import errno
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

IN_MODIFY = 0x00000002
IN_ATTRIB = 0x00000004
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC

CLASS_DIR_MASK = IN_CREATE | IN_DELETE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR
DEVICE_DIR_MASK = IN_CREATE | IN_DELETE | IN_MOVED_TO | IN_CLOSE_WRITE | IN_MODIFY | IN_DELETE_SELF | IN_ONLYDIR
ANCESTOR_MASK = IN_CREATE | IN_MOVED_TO | IN_ONLYDIR
_HEADER = struct.Struct("iIII")
_READ_SIZE = 64 * 1024


@dataclass(frozen=True)
class InotifyEvent:
    wd: int
    mask: int
    name: str


class Inotify:
    """An inotify instance; ``read()`` never blocks (the fd is O_NONBLOCK)."""

    def __init__(self) -> None:
        self._libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        self._libc.inotify_add_watch.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32)
        self._libc.inotify_rm_watch.argtypes = (ctypes.c_int, ctypes.c_int)
        fd = self._libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            code = ctypes.get_errno()
            raise OSError(code, f"inotify_init1: {os.strerror(code)}")
        self.fd: int = fd

    def add_watch(self, path: Path, mask: int) -> int:
        wd = int(self._libc.inotify_add_watch(self.fd, os.fsencode(path), mask))
        if wd < 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code), str(path))
        return wd

    def rm_watch(self, wd: int) -> None:
        self._libc.inotify_rm_watch(self.fd, wd)  # EINVAL when the kernel already dropped it: fine

    def read(self) -> list[InotifyEvent]:
        try:
            data = os.read(self.fd, _READ_SIZE)
        except BlockingIOError:
            return []
        events: list[InotifyEvent] = []
        offset = 0
        while offset + _HEADER.size <= len(data):
            wd, mask, _cookie, length = _HEADER.unpack_from(data, offset)
            start = offset + _HEADER.size
            name = data[start : start + length].rstrip(b"\0").decode(errors="replace")
            events.append(InotifyEvent(wd, mask, name))
            offset = start + length
        return events

    def close(self) -> None:
        os.close(self.fd)


class SysfsWatcher:
    """Calls ``on_change(reason)`` when the mock-accel class directory or a device directory changes.

    Watches ``<root>/class/mock-accel`` (devices added/removed) and each device
    directory it lists (attribute files replaced or notified). While the class
    directory does not exist (module not loaded), the nearest existing ancestor
    under ``root`` is watched instead, and the watch moves down as it appears.
    Dot-files are the simulator's temp files and are ignored.
    """

    def __init__(self, root: Path, class_dir: Path, on_change: Callable[[str], None]) -> None:
        self._root = root
        self._class_dir = class_dir
        self._on_change = on_change
        self._inotify = Inotify()
        self._class_wd: int | None = None
        self._ancestor_wd: int | None = None
        self._devices: dict[str, int] = {}
        self._wd_device: dict[int, str] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._arm()
        self._loop.add_reader(self._inotify.fd, self._on_readable)

    def close(self) -> None:
        if self._loop is not None:
            self._loop.remove_reader(self._inotify.fd)
        self._inotify.close()

    @property
    def watched_devices(self) -> frozenset[str]:
        return frozenset(self._devices)

    def _arm(self) -> None:
        if self._class_wd is None:
            try:
                self._class_wd = self._inotify.add_watch(self._class_dir, CLASS_DIR_MASK)
            except OSError as exc:
                if exc.errno not in (errno.ENOENT, errno.ENOTDIR):
                    raise
                self._watch_ancestor()
                return
            if self._ancestor_wd is not None:
                self._inotify.rm_watch(self._ancestor_wd)
                self._ancestor_wd = None
        self._sync_devices()

    def _watch_ancestor(self) -> None:
        path = self._class_dir.parent
        while path != self._root and not path.is_dir():
            path = path.parent
        if self._ancestor_wd is not None:
            self._inotify.rm_watch(self._ancestor_wd)
        try:
            self._ancestor_wd = self._inotify.add_watch(path, ANCESTOR_MASK)
        except OSError:
            self._ancestor_wd = None  # the resync still covers this node

    def _sync_devices(self) -> None:
        """Watch every listed device directory and forget the ones that went away."""
        try:
            names = {n for n in os.listdir(self._class_dir) if not n.startswith(".")}
        except OSError:
            names = set()
        for name in set(self._devices) - names:
            wd = self._devices.pop(name)
            self._wd_device.pop(wd, None)
            self._inotify.rm_watch(wd)
        for name in names - set(self._devices):
            try:
                wd = self._inotify.add_watch(self._class_dir / name, DEVICE_DIR_MASK)
            except OSError:
                continue  # vanished or dangling: the scan reports it
            self._devices[name] = wd
            self._wd_device[wd] = name

    def _on_readable(self) -> None:
        reasons: set[str] = set()
        for event in self._inotify.read():
            if event.mask & IN_Q_OVERFLOW:
                reasons.add("inotify_overflow")
            elif event.wd == self._ancestor_wd:
                reasons.add("class_dir_appeared")
            elif event.wd == self._class_wd:
                if event.mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED):
                    self._class_wd = None
                    reasons.add("class_dir_removed")
                elif not event.name.startswith("."):
                    reasons.add("device_set_changed")
            elif event.wd in self._wd_device:
                if event.mask & IN_IGNORED:
                    name = self._wd_device.pop(event.wd)
                    self._devices.pop(name, None)
                    reasons.add("device_set_changed")
                elif not event.name.startswith("."):
                    reasons.add("device_changed")
        if reasons & {"class_dir_appeared", "class_dir_removed", "device_set_changed", "inotify_overflow"}:
            self._arm()
        for reason in sorted(reasons):
            self._on_change(reason)
