"""/dev/mockN and /dev/mockNvM: read(), write(), the ioctls, and ENODEV after removal (kernel only)."""

from __future__ import annotations

import errno
import fcntl
import os
import struct
import uuid

import pytest

from mockaccel_common import regmap
from mockaccel_conformance.chardev import INFO, NO_VF, ioctl_errno, opened, passphrase, passphrase_request
from mockaccel_conformance.target import GuestTarget


def test_nodes_and_modes(kernel: GuestTarget) -> None:
    for pf in kernel.node.pfs:
        st = os.stat(f"/dev/{pf.name}")
        assert st.st_mode & 0o777 == 0o600
        major, minor = kernel.read(pf.name, "dev").strip().split(":")
        assert (os.major(st.st_rdev), os.minor(st.st_rdev)) == (int(major), int(minor))
        assert int(minor) == 8 * pf.index


def test_status_and_info_ioctls(kernel: GuestTarget) -> None:
    for pf in kernel.node.pfs:
        with opened(pf.name) as fd:
            buf = bytearray(4)
            fcntl.ioctl(fd, regmap.IOC_STATUS, buf)
            assert struct.unpack("<I", buf)[0] == int(kernel.read(pf.name, "status"), 16)
            info = bytearray(INFO.size)
            fcntl.ioctl(fd, regmap.IOC_INFO, info)
            raw_uuid, memory, caps, status, numa, vf_index = INFO.unpack(info)
            assert uuid.UUID(bytes=raw_uuid) == pf.uuid
            assert (memory, caps, status, numa, vf_index) == (16 << 30, 0xF, 0x2, pf.numa_node, NO_VF)


def test_passphrase_ioctl(kernel: GuestTarget) -> None:
    name = kernel.node.pfs[0].name
    kernel.write(name, "load_wordlist", "1")
    wordlist = kernel.wordlist()
    with opened(name) as fd:
        for asked, expected in ((0, 6), (4, 4), (12, 12)):
            words = passphrase(fd, asked).split("-")
            assert len(words) == expected
            assert set(words) <= wordlist
        for bad in (1, 3, 13, 255):
            buf = bytearray(regmap.PASSPHRASE_IOCTL_SIZE)
            buf[0] = bad
            assert ioctl_errno(fd, regmap.IOC_PASSPHRASE, buf) == errno.EINVAL
        assert ioctl_errno(fd, regmap._ioc(0, 99, 0), b"") == errno.ENOTTY
        # Room to grow: unknown flags and non-zero reserved fields are refused, not ignored.
        for request in (
            passphrase_request(6, flags=1),
            passphrase_request(6, flags=1 << 31),
            passphrase_request(6, reserved0=b"\0\0\1"),
            passphrase_request(6, reserved=1),
        ):
            assert ioctl_errno(fd, regmap.IOC_PASSPHRASE, request) == errno.EINVAL
        kernel.hide_firmware()
        try:
            kernel.write_errno(name, "load_wordlist", "1")
            assert ioctl_errno(fd, regmap.IOC_PASSPHRASE, bytearray(regmap.PASSPHRASE_IOCTL_SIZE)) == errno.ENOENT
        finally:
            kernel.restore_firmware()
            kernel.write(name, "load_wordlist", "1")


def test_read_block_and_short_reads(kernel: GuestTarget) -> None:
    pf = kernel.node.pfs[1]
    with opened(pf.name) as fd:
        block = os.read(fd, 4096).decode()
        assert os.read(fd, 4096) == b"", "the block is read once, then EOF"
    assert f"UUID: {pf.uuid}\n" in block
    assert "Memory: 17179869184 bytes\n" in block
    assert f"NUMA Node: {pf.numa_node}\n" in block
    with opened(pf.name) as fd:
        pieces = []
        while chunk := os.read(fd, 7):
            pieces.append(chunk)
    short = b"".join(pieces).decode()
    assert len(pieces) > 10
    assert short.splitlines()[:4] == block.splitlines()[:4]
    with opened(pf.name, os.O_RDWR) as fd, pytest.raises(OSError, match=r"\[Errno 22\]"):
        os.write(fd, b"1")


def test_open_vf_file_survives_vf_disable(kernel: GuestTarget) -> None:
    pf = kernel.node.pfs[2]
    kernel.write(pf.name, "sriov_numvfs", "2")
    with opened(f"{pf.name}v1") as fd:
        info = bytearray(INFO.size)
        fcntl.ioctl(fd, regmap.IOC_INFO, info)
        assert INFO.unpack(info)[5] == 1
        assert os.minor(os.fstat(fd).st_rdev) == 8 * pf.index + 2
        kernel.write(pf.name, "sriov_numvfs", "0")
        assert ioctl_errno(fd, regmap.IOC_STATUS, bytearray(4)) == errno.ENODEV
        assert ioctl_errno(fd, regmap.IOC_INFO, info) == errno.ENODEV
        with pytest.raises(OSError, match=rf"\[Errno {errno.ENODEV}\]"):
            os.read(fd, 100)
    assert not os.path.exists(f"/dev/{pf.name}v1")
