"""Talking to /dev/mockN from a check: open, the ioctl structs (docs/abi.md), errno of a refused call."""

from __future__ import annotations

import fcntl
import os
import struct
from collections.abc import Iterator
from contextlib import contextmanager

from mockaccel_common import regmap

INFO = struct.Struct("<16sQIIiI")
NO_VF = 0xFFFFFFFF


@contextmanager
def opened(name: str, flags: int = os.O_RDONLY) -> Iterator[int]:
    fd = os.open(f"/dev/{name}", flags)
    try:
        yield fd
    finally:
        os.close(fd)


def ioctl_errno(fd: int, request: int, arg: bytes | bytearray) -> int:
    try:
        fcntl.ioctl(fd, request, bytearray(arg))
    except OSError as exc:
        return exc.errno or 0
    return 0


# struct mock_accel_passphrase: word_count, reserved0[3], flags, reserved[2], then the text
PASSPHRASE = struct.Struct("<B3sIQQ")


def passphrase_request(words: int, *, flags: int = 0, reserved0: bytes = bytes(3), reserved: int = 0) -> bytearray:
    buf = bytearray(regmap.PASSPHRASE_IOCTL_SIZE)
    PASSPHRASE.pack_into(buf, 0, words, reserved0, flags, reserved, reserved)
    return buf


def passphrase(fd: int, words: int) -> str:
    buf = passphrase_request(words)
    fcntl.ioctl(fd, regmap.IOC_PASSPHRASE, buf)
    assert buf[: PASSPHRASE.size] == passphrase_request(words)[: PASSPHRASE.size], "the request fields come back"
    return buf[PASSPHRASE.size :].split(b"\0", 1)[0].decode()
