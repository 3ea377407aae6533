"""Unfriendly vfio-user clients: raw byte sequences, passed fds, abrupt closes, silence.

Why a module of its own: the protocol fuzz suite and the targeted regression
tests share the wire helpers and the liveness check ("the control API answers
and a fresh client negotiates and reads ID"). Everything here talks to a Unix
socket path the test created; nothing touches a network.

A *case* is a small, deterministic plan (``FuzzCase``) built from a seeded
``random.Random``, so a failure names a seed and an index that replay it.
"""

from __future__ import annotations

import json
import os
import random
import socket
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from mockaccel_common import regmap as rm
from mockaccel_testing.vfio_user_client import (
    BAR0,
    DEVICE_GET_INFO,
    DEVICE_GET_REGION_INFO,
    DEVICE_RESET,
    DEVICE_SET_IRQS,
    REGION_READ,
    REGION_WRITE,
    VERSION,
    VfioUserClient,
    connect_unix,
)
from mockaccel_vfio_server.adapters.control_client import ControlClient

HEADER = struct.Struct("<HHIII")
# libvfio-user's SERVER_MAX_MSG_SIZE is max_data_xfer_size (1 MiB) plus a header's worth.
SERVER_MAX_MSG_SIZE = (1 << 20) + 64
INTERESTING_SIZES = (0, 1, 8, 15, 16, 17, 24, 40, 0x1000, 0xFFFF, SERVER_MAX_MSG_SIZE - 1, SERVER_MAX_MSG_SIZE + 1,
                     0x7FFF_FFFF, 0xFFFF_FFF0, 0xFFFF_FFFF)
COMMANDS = (*range(24), 0xFFFF)


def header(msg_id: int, command: int, size: int, flags: int = 0, error: int = 0) -> bytes:
    return HEADER.pack(msg_id & 0xFFFF, command & 0xFFFF, size & 0xFFFF_FFFF, flags & 0xFFFF_FFFF, error & 0xFFFF_FFFF)


def message(msg_id: int, command: int, payload: bytes) -> bytes:
    return header(msg_id, command, HEADER.size + len(payload)) + payload


def version_message(msg_id: int = 0) -> bytes:
    caps = json.dumps({"capabilities": {"max_msg_fds": 8, "max_data_xfer_size": 1048576}}).encode() + b"\0"
    return message(msg_id, VERSION, struct.pack("<HH", 0, 1) + caps)


def valid_exchange() -> list[bytes]:
    """The requests of a short, valid session: negotiate, look, read, write, reset."""
    return [
        version_message(0),
        message(1, DEVICE_GET_INFO, struct.pack("<IIII", 16, 0, 0, 0)),
        message(2, DEVICE_GET_REGION_INFO, struct.pack("<IIIIQQ", 32, 0, BAR0, 0, 0, 0)),
        message(3, REGION_READ, struct.pack("<QII", 0, BAR0, 4)),
        message(4, REGION_WRITE, struct.pack("<QII", 0x2C, BAR0, 4) + struct.pack("<I", 1)),
        message(5, DEVICE_RESET, b""),
    ]


@dataclass
class FuzzCase:
    """What one unfriendly client does: send ``chunks`` (with ``fds`` on the first), then close or linger."""

    kind: str
    chunks: list[bytes]
    negotiate: bool = True
    fds: int = 0
    linger_s: float = 0.0
    read_replies: bool = False
    notes: dict[str, int] = field(default_factory=dict)


def connect(path: Path, timeout: float = 5.0) -> socket.socket:
    return connect_unix(path, timeout)


def negotiate(sock: socket.socket) -> None:
    sock.sendall(version_message())
    raw = _recv_exactly(sock, HEADER.size)
    _, _, size, flags, _ = HEADER.unpack(raw)
    if flags & 0x20:
        raise ConnectionError("negotiation refused")
    _recv_exactly(sock, size - HEADER.size)


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = bytearray()
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return bytes(data)


def run_case(path: Path, case: FuzzCase) -> None:
    """Play ``case`` against the server at ``path``; the server's reaction is not judged here."""
    with connect(path) as sock:
        try:
            if case.negotiate:
                negotiate(sock)
            fds = [os.eventfd(0) for _ in range(case.fds)]
            try:
                for i, chunk in enumerate(case.chunks):
                    if i == 0 and fds:
                        socket.send_fds(sock, [chunk], fds)
                    else:
                        sock.sendall(chunk)
            finally:
                for fd in fds:
                    os.close(fd)
            if case.read_replies:
                sock.settimeout(0.01)
                try:
                    while sock.recv(65536):
                        pass
                except OSError:
                    pass
            if case.linger_s:
                deadline = time.monotonic() + case.linger_s
                while (left := deadline - time.monotonic()) > 0:
                    sock.settimeout(left)
                    try:
                        if not sock.recv(65536):
                            break  # the server ended us
                    except TimeoutError:
                        break
        except OSError:
            pass  # the server may end an unfriendly client at any point: that is allowed


def assert_alive(socket_path: Path, control_socket: Path, *, timeout: float = 5.0) -> None:
    """The control API answers, and a fresh client negotiates and reads ID."""
    with ControlClient(control_socket, timeout=timeout) as control:
        reply = control.request("state")
    assert reply.get("ok"), reply
    with VfioUserClient(socket_path, timeout=timeout) as client:
        value = client.read_int(BAR0, 0, 4)
    assert value == rm.DEVICE_MAGIC, hex(value)


# -- case generators (each bounded, each deterministic for its rng) ----------


def random_bytes_cases(rng: random.Random, n: int) -> Iterator[FuzzCase]:
    for _ in range(n):
        size = rng.choice((1, 2, 15, 16, 17, 64, 200, 4096))
        yield FuzzCase("random-bytes", [rng.randbytes(size)], negotiate=rng.random() < 0.8)


def malformed_header_cases(rng: random.Random, n: int) -> Iterator[FuzzCase]:
    for i in range(n):
        command = rng.choice(COMMANDS)
        size = rng.choice(INTERESTING_SIZES) if rng.random() < 0.7 else rng.randrange(0, 1 << 32)
        flags = rng.choice((0, 1, 0x10, 0x20, 0x30, 0xF, rng.randrange(1 << 32)))
        body = rng.randbytes(rng.choice((0, 4, 16, 24, 100)))
        case = FuzzCase("malformed-header", [header(i, command, size, flags, rng.randrange(4)) + body])
        case.read_replies = rng.random() < 0.5
        yield case


def structured_cases(rng: random.Random, n: int) -> Iterator[FuzzCase]:
    """Well-framed messages with hostile payloads: odd regions, offsets, counts, irq sets."""
    for i in range(n):
        command = rng.choice((DEVICE_GET_INFO, DEVICE_GET_REGION_INFO, REGION_READ, REGION_WRITE, DEVICE_SET_IRQS,
                              DEVICE_RESET, VERSION, 2, 3, 6, 7, 11, 12, 14, 15, 16))
        choice = rng.random()
        if command in (REGION_READ, REGION_WRITE):
            offset = rng.choice((0, 1, 0x2C, 0xFFC, 0x1000, 0xFFFF_FFFF_FFFF_FFFF, rng.randrange(1 << 64)))
            count = rng.choice((0, 1, 3, 4, 8, 9, 4096, 0xFFFF_FFFF))
            region = rng.choice((0, 1, 6, 7, 8, 9, 0xFFFF_FFFF))
            payload = struct.pack("<QII", offset, region, count)
            if command == REGION_WRITE:
                payload += rng.randbytes(min(count, 64) if choice < 0.7 else rng.randrange(0, 64))
        elif command == DEVICE_SET_IRQS:
            flags = rng.randrange(1 << 8) << 2 if choice < 0.5 else rng.randrange(1 << 32)
            payload = struct.pack("<IIIII", rng.choice((0, 20, 24, 0xFFFF)), flags, rng.randrange(6),
                                  rng.choice((0, 1, 0xFFFF_FFFF)), rng.choice((0, 1, 2, 0xFFFF_FFFF)))
        else:
            payload = rng.randbytes(rng.choice((0, 4, 8, 16, 32)))
        fds = rng.choice((0, 0, 0, 1, 2, 8)) if command == DEVICE_SET_IRQS else 0
        yield FuzzCase("structured", [message(i, command, payload)], fds=fds, read_replies=True)


def fd_cases(rng: random.Random, n: int) -> Iterator[FuzzCase]:
    """Passed file descriptors, up to the kernel's SCM_MAX_FD (253), on any command."""
    for i in range(n):
        command = rng.choice((REGION_READ, DEVICE_SET_IRQS, DEVICE_GET_INFO, 2, 0xFFFF))
        payload = rng.randbytes(rng.choice((0, 20, 24)))
        count = rng.choice((1, 2, 9, 64, 253))
        yield FuzzCase("fds", [message(i, command, payload)], fds=count, read_replies=rng.random() < 0.5,
                       negotiate=rng.random() < 0.9)


def truncated_header_cases() -> Iterator[FuzzCase]:
    full = message(7, REGION_READ, struct.pack("<QII", 0, BAR0, 4))
    for cut in range(1, HEADER.size):
        yield FuzzCase("truncated-header", [full[:cut]])
        yield FuzzCase("truncated-header-pre-negotiation", [version_message()[:cut]], negotiate=False)


def abrupt_close_cases() -> Iterator[FuzzCase]:
    """A valid session cut at every byte offset, before and after negotiation."""
    stream = b"".join(valid_exchange())
    for cut in range(len(stream)):
        yield FuzzCase("abrupt-close", [stream[:cut]], negotiate=False, notes={"cut": cut})


def slow_body_cases(n: int, linger_s: float) -> Iterator[FuzzCase]:
    """A header announcing a body that never (fully) comes: the server must end us, not wait."""
    for i in range(n):
        body = struct.pack("<QII", 0, BAR0, 4)
        yield FuzzCase("slow-body", [header(i, REGION_READ, HEADER.size + 1000) + body[: i % len(body)]],
                       linger_s=linger_s)
