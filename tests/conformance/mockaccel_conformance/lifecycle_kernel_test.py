"""Load/unload loops, VF enable/disable loops under sysfs readers and health faults, and
/dev nodes held open while their device is removed (kernel only).

These are the lifecycle paths where a use-after-free or a lock inversion hides: they
run on the stock guest kernel with the rest of the suite and again on the debug
kernel (KASAN, lockdep, DEBUG_SHIRQ, DEBUG_KOBJECT_RELEASE; see
tests/conformance/mockaccel_guest_run/debug_kernel_test.py), where the host fails
the run on any report in the kernel log.
"""

from __future__ import annotations

import errno
import fcntl
import itertools
import os
import subprocess
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest

from mockaccel_common import regmap
from mockaccel_conformance.racing import CLASS, Workers, read_everything, write
from mockaccel_conformance.target import GuestTarget

DRIVER = Path("/sys/bus/pci/drivers/mock-accel")
LOAD_CYCLES = 4
VF_CYCLES = 12


def _rmmod() -> subprocess.CompletedProcess[str]:
    return subprocess.run(["rmmod", "mock_accel"], capture_output=True, text=True)


def _reloaded(kernel: GuestTarget) -> None:
    subprocess.run(["insmod", str(kernel.module)], check=True)
    names = [pf.name for pf in kernel.node.pfs]
    kernel.eventually(lambda: kernel.devices() == names, "every PF back after insmod", timeout=60)
    for name in names:
        kernel.eventually(partial(_reads, kernel, name, "wordlist_loaded", "1\n"), f"{name} firmware loaded")


def _reads(kernel: GuestTarget, device: str, attribute: str, text: str) -> bool:
    return kernel.read(device, attribute) == text


def _health_flipper(kernel: GuestTarget, device: str) -> Callable[[], None]:
    """A worker body that makes ``device`` faulty, then healthy again, on alternate calls."""
    states = itertools.cycle([False, True])
    return lambda: kernel.set_health(device, next(states))


def test_load_unload_loop_with_vfs_enabled(kernel: GuestTarget) -> None:
    pf = kernel.node.pfs[0].name
    for cycle in range(LOAD_CYCLES):
        kernel.write(pf, "sriov_numvfs", str(1 + cycle % 4))
        kernel.write(f"{pf}v0", "status", "1")
        result = _rmmod()
        assert result.returncode == 0, f"cycle {cycle}: rmmod failed: {result.stderr}"
        assert not CLASS.exists(), f"cycle {cycle}: the class outlived the module"
        assert not [d for d in os.listdir("/dev") if d.startswith("mock")]
        _reloaded(kernel)
        assert kernel.read(pf, "sriov_numvfs") == "0\n"


def test_open_dev_node_holds_the_module(kernel: GuestTarget) -> None:
    name = kernel.node.pfs[1].name
    fd = os.open(f"/dev/{name}", os.O_RDONLY)
    try:
        result = _rmmod()
        assert result.returncode != 0, "rmmod succeeded while /dev was open"
        status = bytearray(4)
        fcntl.ioctl(fd, regmap.IOC_STATUS, status)
        assert int.from_bytes(status, "little") == kernel.device_status(name)
    finally:
        os.close(fd)
    assert _rmmod().returncode == 0
    _reloaded(kernel)


@pytest.mark.parametrize("remove", ["sriov_numvfs", "unbind"])
def test_open_vf_node_while_its_vf_is_removed(kernel: GuestTarget, remove: str) -> None:
    pf = kernel.node.pfs[2]
    kernel.write(pf.name, "sriov_numvfs", "2")
    vf = f"{pf.name}v1"
    fd = os.open(f"/dev/{vf}", os.O_RDONLY)
    attr = os.open(kernel.dev_dir(vf) / "health", os.O_RDONLY)
    address = (kernel.dev_dir(pf.name) / "pci_address").read_text().strip()
    try:
        if remove == "unbind":
            write(DRIVER / "unbind", address)
        else:
            kernel.write(pf.name, "sriov_numvfs", "0")
        assert vf not in kernel.devices()
        for call in (
            lambda: fcntl.ioctl(fd, regmap.IOC_STATUS, bytearray(4)),
            lambda: fcntl.ioctl(fd, regmap.IOC_PASSPHRASE, bytearray(regmap.PASSPHRASE_IOCTL_SIZE)),
            lambda: os.read(fd, 64),
            lambda: os.pread(attr, 64, 0),
        ):
            with pytest.raises(OSError, match=rf"\[Errno {errno.ENODEV}\]"):
                call()
    finally:
        os.close(fd)
        os.close(attr)
        if remove == "unbind":
            write(DRIVER / "bind", address)
    kernel.eventually(lambda: pf.name in kernel.devices(), f"{pf.name} back")
    kernel.write(pf.name, "sriov_numvfs", "2")
    status = bytearray(4)
    with open(f"/dev/{vf}", "rb", buffering=0) as handle:
        fcntl.ioctl(handle.fileno(), regmap.IOC_STATUS, status)
    assert int.from_bytes(status, "little") & regmap.Status.READY


def test_vf_enable_disable_loop_with_readers_and_health_faults(kernel: GuestTarget) -> None:
    pfs = [pf.name for pf in kernel.node.pfs[:2]]
    workers = Workers()
    for i in range(2):
        workers.spawn(f"reader{i}", read_everything)
    for name in pfs:
        workers.spawn(f"health-{name}", _health_flipper(kernel, name))
        workers.spawn(f"vf-health-{name}", _health_flipper(kernel, f"{name}v1"))
    try:
        for _ in range(VF_CYCLES):
            for name in pfs:
                kernel.write(name, "sriov_numvfs", "4")
                kernel.write(f"{name}v1", "status", "1")
            for name in pfs:
                kernel.write(f"{name}v1", "status", "0")  # an allocated VF keeps VFs enabled (EBUSY)
                kernel.write(name, "sriov_numvfs", "0")
    finally:
        workers.join()
        for name in pfs:
            kernel.set_health(name, True)
    # A VF's health fault may have hit a disabled VF: the device keeps it; clear it for the next test.
    for name in pfs:
        kernel.write(name, "sriov_numvfs", "4")
        for vf in range(4):
            kernel.set_health(f"{name}v{vf}", True)
        kernel.write(name, "sriov_numvfs", "0")
    assert not workers.errors, workers.errors[:20]
    assert workers.ops > 20, f"only {workers.ops} concurrent operations ran"
    for name in pfs:
        kernel.eventually(partial(_reads, kernel, name, "health", "healthy\n"), f"{name} healthy again")
