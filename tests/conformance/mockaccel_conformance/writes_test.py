"""Writes: status reaches the device; bad writes fail with the driver's errno and change nothing."""

from __future__ import annotations

import errno

import pytest

from mockaccel_common.regmap import Status
from mockaccel_conformance.target import Target

BAD_STATUS_WRITES = [
    ("2", errno.EINVAL),
    ("3", errno.EINVAL),
    ("0x4", errno.EINVAL),
    ("abc", errno.EINVAL),
    ("-1", errno.EINVAL),
    ("1 1", errno.EINVAL),
    ("0x", errno.EINVAL),
    ("1\n\n", errno.EINVAL),  # kstrtoul takes one trailing newline, not two
    ("+-1", errno.EINVAL),
    (" 1", errno.EINVAL),
    ("4294967296", errno.ERANGE),
    ("0x100000000", errno.ERANGE),
]


@pytest.mark.parametrize(
    "text", ["1", "1\n", "0x1", "01", "+1", "+0x1\n"], ids=["dec", "dec-nl", "hex", "octal", "plus", "plus-hex-nl"]
)
def test_status_write_allocates_on_the_device(target: Target, text: str) -> None:
    pf = target.node.pfs[1].name
    target.write(pf, "status", text)
    assert target.read(pf, "status") == "0x00000003\n"
    assert target.device_status(pf) == Status.READY | Status.ALLOCATED
    target.write(pf, "status", "0")
    assert target.read(pf, "status") == "0x00000002\n"
    assert target.device_status(pf) == Status.READY


def test_vf_status_write_reaches_the_vf_register(target: Target) -> None:
    pf = target.node.pfs[3].name
    target.write(pf, "sriov_numvfs", "2")
    target.write(f"{pf}v1", "status", "1")
    assert target.device_status(f"{pf}v1") == Status.READY | Status.ALLOCATED
    assert target.device_status(f"{pf}v0") == Status.READY
    assert target.device_status(pf) == Status.READY


@pytest.mark.parametrize(("text", "expected"), BAD_STATUS_WRITES, ids=[t for t, _ in BAD_STATUS_WRITES])
def test_bad_status_writes_are_rejected(target: Target, text: str, expected: int) -> None:
    pf = target.node.pfs[0].name
    target.write(pf, "status", "1")
    assert target.write_errno(pf, "status", text) == expected
    assert target.read(pf, "status") == "0x00000003\n"


BAD_WRITES = [
    ("uuid", "1", errno.EACCES),
    ("memory_size", "1", errno.EACCES),
    ("health", "healthy", errno.EACCES),
    ("sriov_totalvfs", "1", errno.EACCES),
    ("no_such_attribute", "1", errno.ENOENT),
    ("passphrase_length", "3", errno.EINVAL),
    ("passphrase_length", "13", errno.EINVAL),
    ("passphrase_length", "x", errno.EINVAL),
    ("passphrase_length", "4294967296", errno.ERANGE),
    ("passphrase_generate", "2", errno.EINVAL),
    ("passphrase_generate", "0", errno.EINVAL),
    ("load_wordlist", "0", errno.EINVAL),
    ("load_wordlist", "yes", errno.EINVAL),
    ("sriov_numvfs", "5", errno.ERANGE),
    ("sriov_numvfs", "65536", errno.ERANGE),
    ("sriov_numvfs", "-1", errno.EINVAL),
]


@pytest.mark.parametrize(("attribute", "text", "expected"), BAD_WRITES, ids=[f"{a}={t}" for a, t, _ in BAD_WRITES])
def test_bad_writes_fail_with_the_same_errno(target: Target, attribute: str, text: str, expected: int) -> None:
    pf = target.node.pfs[0].name
    assert target.write_errno(pf, attribute, text) == expected
    assert target.read(pf, "passphrase_length") == "6\n"
    assert target.read(pf, "sriov_numvfs") == "0\n"


def test_vf_has_no_sriov_files(target: Target) -> None:
    pf = target.node.pfs[0].name
    target.write(pf, "sriov_numvfs", "1")
    assert target.write_errno(f"{pf}v0", "sriov_numvfs", "1") == errno.ENOENT
    assert not (target.dev_dir(f"{pf}v0") / "sriov_totalvfs").exists()
