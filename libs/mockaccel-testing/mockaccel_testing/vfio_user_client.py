"""A small vfio-user protocol client, written from the specification (docs/vfio-user.rst).

Why our own: the tests must prove the server speaks the protocol as a client
other than libvfio-user's own sample sees it, with nothing shared with the
server's implementation. It covers what a PCI device needs: VERSION
negotiation, DEVICE_GET_INFO, DEVICE_GET_REGION_INFO, REGION_READ/WRITE,
DEVICE_SET_IRQS (an eventfd per interrupt, passed with SCM_RIGHTS) and
DEVICE_RESET. Blocking sockets: it is a test client, one request at a time.

Wire format (little-endian): a 16-byte header ``msg_id u16, command u16,
msg_size u32 (header included), flags u32 (bits 0-3 type: 0 command,
1 reply; bit 4 no_reply; bit 5 error), error u32``, then the payload.
"""

from __future__ import annotations

import json
import socket
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

VERSION = 1
DEVICE_GET_INFO = 4
DEVICE_GET_REGION_INFO = 5
DEVICE_SET_IRQS = 8
REGION_READ = 9
REGION_WRITE = 10
DEVICE_RESET = 13

FLAG_TYPE_REPLY = 0x1
FLAG_ERROR = 0x20

BAR0 = 0
CONFIG = 7
INTX = 0  # IRQ index of INTx (VFIO_PCI_INTX_IRQ_INDEX)
MSI = 1  # VFIO_PCI_MSI_IRQ_INDEX
IRQ_SET_DATA_NONE = 1 << 0
IRQ_SET_DATA_EVENTFD = 1 << 2
IRQ_SET_ACTION_MASK = 1 << 3
IRQ_SET_ACTION_UNMASK = 1 << 4
IRQ_SET_ACTION_TRIGGER = 1 << 5

_HEADER = struct.Struct("<HHIII")
_REGION_ACCESS = struct.Struct("<QII")  # offset, region, count
_REGION_INFO = struct.Struct("<IIIIQQ")  # argsz, flags, index, cap_offset, size, offset
_DEVICE_INFO = struct.Struct("<IIII")  # argsz, flags, num_regions, num_irqs
_IRQ_SET = struct.Struct("<IIIII")  # argsz, flags, index, start, count


def connect_unix(path: Path, timeout: float) -> socket.socket:
    """Connect, retrying while the listen backlog is full, until ``timeout``.

    libvfio-user listens with a backlog of 0 and serves one client at a time:
    while it is busy, a connect on a socket with a timeout (non-blocking inside
    Python) fails with EAGAIN instead of waiting, so we wait here.
    """
    deadline = time.monotonic() + timeout
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
            return sock
        except BlockingIOError:
            sock.close()
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.005)  # poll interval of the retry loop, bounded by the deadline above
        except BaseException:
            sock.close()
            raise


class VfioUserError(OSError):
    """The server answered a command with the error flag; ``errno`` is its error."""


@dataclass(frozen=True)
class RegionInfo:
    index: int
    flags: int
    size: int
    offset: int


@dataclass(frozen=True)
class DeviceInfo:
    flags: int
    num_regions: int
    num_irqs: int


class VfioUserClient:
    """One connection to a vfio-user server; negotiates on ``connect``."""

    def __init__(self, path: Path, *, timeout: float = 10.0) -> None:
        self._path = path
        self._timeout = timeout
        self._sock: socket.socket | None = None
        self._next_id = 0
        self.server_version: tuple[int, int] | None = None
        self.server_caps: dict[str, object] = {}

    def __enter__(self) -> VfioUserClient:
        self.connect()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def connect(self) -> None:
        self._sock = connect_unix(self._path, self._timeout)
        caps = json.dumps({"capabilities": {"max_msg_fds": 8, "max_data_xfer_size": 1048576}}).encode() + b"\0"
        reply = self._call(VERSION, struct.pack("<HH", 0, 1) + caps)
        major, minor = struct.unpack_from("<HH", reply)
        self.server_version = (major, minor)
        text = reply[4:].rstrip(b"\0")
        self.server_caps = json.loads(text) if text else {}

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    # -- commands ------------------------------------------------------------

    def device_info(self) -> DeviceInfo:
        reply = self._call(DEVICE_GET_INFO, _DEVICE_INFO.pack(_DEVICE_INFO.size, 0, 0, 0))
        _, flags, num_regions, num_irqs = _DEVICE_INFO.unpack_from(reply)
        return DeviceInfo(flags, num_regions, num_irqs)

    def region_info(self, index: int) -> RegionInfo:
        reply = self._call(DEVICE_GET_REGION_INFO, _REGION_INFO.pack(_REGION_INFO.size, 0, index, 0, 0, 0))
        _, flags, got_index, _, size, offset = _REGION_INFO.unpack_from(reply)
        return RegionInfo(got_index, flags, size, offset)

    def read(self, region: int, offset: int, count: int) -> bytes:
        reply = self._call(REGION_READ, _REGION_ACCESS.pack(offset, region, count))
        _, _, got = _REGION_ACCESS.unpack_from(reply)
        data = reply[_REGION_ACCESS.size :]
        if got != count or len(data) != count:
            raise AssertionError(f"short read: asked {count}, reply says {got}, carries {len(data)}")
        return data

    def read_int(self, region: int, offset: int, width: int) -> int:
        return int.from_bytes(self.read(region, offset, width), "little")

    def write(self, region: int, offset: int, data: bytes) -> None:
        self._call(REGION_WRITE, _REGION_ACCESS.pack(offset, region, len(data)) + data)

    def write_int(self, region: int, offset: int, value: int, width: int = 4) -> None:
        self.write(region, offset, value.to_bytes(width, "little"))

    def set_irq_eventfds(self, index: int, fds: list[int]) -> None:
        """Ask the server to signal ``fds`` (eventfds) for interrupts ``0..len(fds)-1`` of ``index``."""
        flags = IRQ_SET_DATA_EVENTFD | IRQ_SET_ACTION_TRIGGER
        self._call(DEVICE_SET_IRQS, _IRQ_SET.pack(_IRQ_SET.size, flags, index, 0, len(fds)), fds)

    def mask_irq(self, index: int, masked: bool = True) -> None:
        """Mask (or unmask) interrupt 0 of ``index``, as QEMU unmasks INTx after an end of interrupt."""
        flags = IRQ_SET_DATA_NONE | (IRQ_SET_ACTION_MASK if masked else IRQ_SET_ACTION_UNMASK)
        self._call(DEVICE_SET_IRQS, _IRQ_SET.pack(_IRQ_SET.size, flags, index, 0, 1))

    def reset(self) -> None:
        self._call(DEVICE_RESET, b"")

    # -- framing -------------------------------------------------------------

    def _call(self, command: int, payload: bytes, fds: list[int] | None = None) -> bytes:
        if self._sock is None:
            raise ConnectionError("not connected")
        msg_id = self._next_id
        self._next_id = (self._next_id + 1) & 0xFFFF
        message = _HEADER.pack(msg_id, command, _HEADER.size + len(payload), 0, 0) + payload
        if fds:
            socket.send_fds(self._sock, [message], fds)
        else:
            self._sock.sendall(message)
        got_id, got_cmd, size, flags, error = _HEADER.unpack(self._recv_exactly(_HEADER.size))
        body = self._recv_exactly(size - _HEADER.size)
        if (got_id, got_cmd) != (msg_id, command) or flags & 0xF != FLAG_TYPE_REPLY:
            raise AssertionError(f"unexpected reply id={got_id} cmd={got_cmd} flags={flags:#x} to {msg_id}/{command}")
        if flags & FLAG_ERROR:
            raise VfioUserError(error, f"command {command} failed with errno {error}")
        return body

    def _recv_exactly(self, n: int) -> bytes:
        assert self._sock is not None
        chunks = bytearray()
        while len(chunks) < n:
            chunk = self._sock.recv(n - len(chunks))
            if not chunk:
                raise ConnectionError("server closed the connection")
            chunks += chunk
        return bytes(chunks)
