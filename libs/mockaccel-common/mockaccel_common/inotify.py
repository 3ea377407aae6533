"""inotify through ctypes, for a file descriptor the event loop watches.

Why ctypes: three libc calls do not justify a dependency. Why inotify: the
simulator replaces attribute files by rename and changes class-directory
symlinks, so inotify reports every change within milliseconds. On the
kernel's sysfs inotify reports no device add/remove and no attribute change
made by the driver; callers pair it with ``poll(POLLPRI)`` (sysfs_notify) or
a periodic rescan there.
"""

from __future__ import annotations

import ctypes
import os
import struct
from dataclasses import dataclass

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
        # The interpreter's own symbols, libc among them: ctypes.util.find_library runs ldconfig in a
        # subprocess and imports tempfile, shutil, random, bz2 and lzma, for a library already loaded.
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._libc.inotify_add_watch.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32)
        self._libc.inotify_rm_watch.argtypes = (ctypes.c_int, ctypes.c_int)
        fd = self._libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            code = ctypes.get_errno()
            raise OSError(code, f"inotify_init1: {os.strerror(code)}")
        self.fd: int = fd

    def add_watch(self, path: str | os.PathLike[str], mask: int) -> int:
        wd = int(self._libc.inotify_add_watch(self.fd, os.fsencode(path), mask))
        if wd < 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code), str(path))
        return wd

    def rm_watch(self, wd: int) -> None:
        self._libc.inotify_rm_watch(self.fd, wd)  # EINVAL when the kernel already dropped it: fine

    def read(self) -> list[InotifyEvent]:
        """Every pending event; an empty list when there is none."""
        events: list[InotifyEvent] = []
        while True:
            try:
                data = os.read(self.fd, _READ_SIZE)
            except BlockingIOError:
                return events
            offset = 0
            while offset + _HEADER.size <= len(data):
                wd, mask, _cookie, length = _HEADER.unpack_from(data, offset)
                start = offset + _HEADER.size
                name = data[start : start + length].rstrip(b"\0").decode(errors="replace")
                events.append(InotifyEvent(wd, mask, name))
                offset = start + length

    def close(self) -> None:
        os.close(self.fd)
