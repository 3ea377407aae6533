"""Kernel uevents of one subsystem, read from netlink (NETLINK_KOBJECT_UEVENT) on the event loop.

On the kernel's sysfs, inotify reports attribute notifications but not class
devices that the kernel creates or removes (``/sys/class/mock-accel/mock0v1``
appearing when a VF is enabled): without uevents such a change is seen only at
the next periodic resync. The kernel multicasts each uevent to group 1 of the
netlink family; a message is ``ACTION@DEVPATH`` then ``KEY=VALUE`` fields, all
NUL-terminated. No library is needed (pyudev would add a dependency for four
lines of parsing), and no udev daemon is involved.

A uevent only *requests* a re-read of the device it names (the last part of
its DEVPATH, ``/devices/…/mock-accel/mock0v1``), so a spoofed one (only root
in the same network namespace can send to the group) costs one device read.
When the socket buffer overflows (ENOBUFS) events were lost, and a full
rescan is requested (``devices`` None).
"""

from __future__ import annotations

import asyncio
import errno
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field

from mockaccel_common.sysfs.watcher import OnChange

NETLINK_KOBJECT_UEVENT = 15
KERNEL_GROUP = 1
_RECEIVE_BUFFER = 1 << 20
_MAX_MESSAGE = 1 << 16


@dataclass(frozen=True)
class Uevent:
    action: str
    devpath: str
    fields: Mapping[str, str] = field(default_factory=dict)

    @property
    def subsystem(self) -> str:
        return self.fields.get("SUBSYSTEM", "")

    @property
    def device(self) -> str:
        """The kernel name of the device (the last DEVPATH component), ``mock0v1``."""
        return self.devpath.rstrip("/").rpartition("/")[2]


def parse_uevent(data: bytes) -> Uevent | None:
    """A kernel uevent, or None for anything else (udev's ``libudev`` messages, garbage)."""
    parts = data.split(b"\0")
    head = parts[0].decode("ascii", "replace")
    if "@" not in head:
        return None
    action, devpath = head.split("@", 1)
    fields: dict[str, str] = {}
    for part in parts[1:]:
        key, sep, value = part.decode("utf-8", "replace").partition("=")
        if sep:
            fields[key] = value
    return Uevent(fields.get("ACTION", action), fields.get("DEVPATH", devpath), fields)


class UeventListener:
    """Calls ``on_event(reason, devices)`` for each uevent of ``subsystem`` (``devices`` None after lost events)."""

    def __init__(self, on_event: OnChange, subsystem: str = "mock-accel") -> None:
        self._on_event = on_event
        self._subsystem = subsystem
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        """Subscribe; raises OSError where netlink uevents are unavailable (the caller logs and goes on)."""
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC, NETLINK_KOBJECT_UEVENT)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RECEIVE_BUFFER)
            sock.bind((0, KERNEL_GROUP))
            loop = asyncio.get_running_loop()
            loop.add_reader(sock.fileno(), self._ready)
        except BaseException:
            sock.close()
            raise
        self._sock, self._loop = sock, loop

    def _ready(self) -> None:
        assert self._sock is not None
        while True:
            try:
                data = self._sock.recv(_MAX_MESSAGE)
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:  # the kernel dropped events: rescan to be sure
                    self._on_event("uevent_overflow", None)
                    continue
                raise
            event = parse_uevent(data)
            if event is not None and event.subsystem == self._subsystem and event.device:
                self._on_event(f"uevent_{event.action}", frozenset({event.device}))

    def close(self) -> None:
        if self._sock is not None:
            if self._loop is not None and not self._loop.is_closed():
                self._loop.remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None
