"""The one sysfs watcher: inotify driven by the event loop (``loop.add_reader``).

Used by the controller (any device change → republish) and by the node
agent's health feed (``health``/``status`` changes → new health list).

What inotify sees, on each kind of tree:

* the simulator: every attribute write is a file replacement (temp file +
  rename, IN_MOVED_TO) and every device add/remove a symlink change in the
  class directory, so every change is reported within milliseconds.
* the kernel's sysfs (kernfs): ``sysfs_notify()`` on an attribute, which the
  driver calls for ``status`` and ``health``, is delivered to inotify as
  IN_MODIFY on that file (kernfs forwards its notifications to fsnotify), so
  those changes are reported too. kernfs sends no inotify event for a class
  device being added or removed, so on real sysfs a device appearing or
  vanishing is found only by the owner's periodic rescan, or by kernel
  uevents (``sysfs/uevents.py``, which the controller listens to as well).

Each report names the devices it concerns, so that an owner can re-read just
those: ``on_change(reason, devices)``, where ``devices`` is ``None`` when
anything may have changed (the class directory came or went, the event queue
overflowed) and a full rescan is due.

Why ctypes (mockaccel_common.inotify) and no dependency: three libc calls.
"""

from __future__ import annotations

import asyncio
import errno
import os
from collections.abc import Callable, Collection
from pathlib import Path

from mockaccel_common.inotify import (
    IN_CLOSE_WRITE,
    IN_CREATE,
    IN_DELETE,
    IN_DELETE_SELF,
    IN_IGNORED,
    IN_MODIFY,
    IN_MOVE_SELF,
    IN_MOVED_FROM,
    IN_MOVED_TO,
    IN_ONLYDIR,
    IN_Q_OVERFLOW,
    Inotify,
)
from mockaccel_common.sysfs import abi

CLASS_DIR_MASK = IN_CREATE | IN_DELETE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR
DEVICE_DIR_MASK = IN_CREATE | IN_DELETE | IN_MOVED_TO | IN_CLOSE_WRITE | IN_MODIFY | IN_DELETE_SELF | IN_ONLYDIR
ANCESTOR_MASK = IN_CREATE | IN_MOVED_TO | IN_ONLYDIR

OnChange = Callable[[str, frozenset[str] | None], None]
"""``on_change(reason, devices)``: the devices an event names, or None for "rescan everything"."""


class SysfsWatcher:
    """Calls ``on_change(reason, devices)`` when the mock-accel class directory or a device directory changes.

    Watches ``<root>/class/mock-accel`` (devices added/removed) and each device
    directory it lists (attribute files replaced or notified). While the class
    directory does not exist (module not loaded), the nearest existing ancestor
    under ``root`` is watched instead, and the watch moves down as it appears.
    Dot-files are the simulator's temp files and are ignored. With
    ``attributes``, a change inside a device directory is reported only for
    those attribute names (the node agent watches ``health`` and ``status``
    and must not wake up for its own unrelated writes).
    """

    def __init__(
        self, root: Path, on_change: OnChange, *, attributes: Collection[str] | None = None
    ) -> None:
        self._root = root
        self._class_dir = root / abi.CLASS_DIR
        self._on_change = on_change
        self._attributes = frozenset(attributes) if attributes is not None else None
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
                # a str path, not a Path: pathlib interns each part, and 10,000 device names grew
                # the interpreter's intern table by ~0.9 MiB for good
                wd = self._inotify.add_watch(os.path.join(self._class_dir, name), DEVICE_DIR_MASK)
            except OSError:
                continue  # vanished or dangling: the scan reports it
            self._devices[name] = wd
            self._wd_device[wd] = name

    def _on_readable(self) -> None:
        # reason -> the devices it names; None: everything (rescan)
        reasons: dict[str, set[str] | None] = {}

        def note(reason: str, device: str | None) -> None:
            if device is None:
                reasons[reason] = None
                return
            named = reasons.setdefault(reason, set())
            if named is not None:
                named.add(device)

        for event in self._inotify.read():
            if event.mask & IN_Q_OVERFLOW:
                note("inotify_overflow", None)
            elif event.wd == self._ancestor_wd:
                note("class_dir_appeared", None)
            elif event.wd == self._class_wd:
                if event.mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED):
                    self._class_wd = None
                    note("class_dir_removed", None)
                elif not event.name.startswith("."):
                    note("device_set_changed", event.name)
            elif event.wd in self._wd_device:
                if event.mask & IN_IGNORED:
                    name = self._wd_device.pop(event.wd)
                    self._devices.pop(name, None)
                    note("device_set_changed", name)
                elif not event.name.startswith(".") and (
                    self._attributes is None or event.name in self._attributes
                ):
                    note("device_changed", self._wd_device[event.wd])
        if reasons.keys() & {"class_dir_appeared", "class_dir_removed", "device_set_changed", "inotify_overflow"}:
            self._arm()
        for reason in sorted(reasons):
            named = reasons[reason]
            self._on_change(reason, None if named is None else frozenset(named))
