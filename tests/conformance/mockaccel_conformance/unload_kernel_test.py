"""Unbind and module unload leave nothing behind; open files see ENODEV (kernel only)."""

from __future__ import annotations

import errno
import fcntl
import os
import subprocess
from pathlib import Path

import pytest

from mockaccel_common import regmap
from mockaccel_common.simulator.topology import pci_layout
from mockaccel_conformance.target import GuestTarget, Target

DRIVER = Path("/sys/bus/pci/drivers/mock-accel")


def _pci(target: Target, index: int) -> Path:
    return Path("/sys/bus/pci/devices") / str(pci_layout(target.node.pfs[index]).address)


def test_unbind_with_open_file_then_rebind(kernel: GuestTarget) -> None:
    pf = kernel.node.pfs[3]
    address = str(pci_layout(pf).address)
    kernel.write(pf.name, "sriov_numvfs", "1")
    fd = os.open(f"/dev/{pf.name}", os.O_RDONLY)
    attr = os.open(kernel.dev_dir(pf.name) / "status", os.O_RDONLY)
    try:
        (DRIVER / "unbind").write_text(address)
        assert pf.name not in kernel.devices()
        assert f"{pf.name}v0" not in kernel.devices()
        assert not (_pci(kernel, 3) / "sriov_numvfs").exists()
        with pytest.raises(OSError, match=rf"\[Errno {errno.ENODEV}\]"):
            fcntl.ioctl(fd, regmap.IOC_STATUS, bytearray(4))
        with pytest.raises(OSError, match=rf"\[Errno {errno.ENODEV}\]"):
            os.pread(attr, 100, 0)
    finally:
        os.close(fd)
        os.close(attr)
        (DRIVER / "bind").write_text(address)
    kernel.eventually(lambda: pf.name in kernel.devices(), f"{pf.name} back after bind")
    assert kernel.read(pf.name, "pci_address") == f"{address}\n"
    assert kernel.read(pf.name, "sriov_numvfs") == "0\n"


def test_module_unload_leaves_nothing_and_reload_restores(kernel: GuestTarget) -> None:
    kernel.write(kernel.node.pfs[0].name, "sriov_numvfs", "2")
    subprocess.run(["rmmod", "mock_accel"], check=True)
    assert not kernel.class_dir.exists()
    assert not DRIVER.exists()
    assert not Path("/sys/module/mock_accel").exists()
    assert not [d for d in os.listdir("/dev") if d.startswith("mock")]
    for index in range(len(kernel.node.pfs)):
        assert not (_pci(kernel, index) / "driver").exists()
        assert not (_pci(kernel, index) / "sriov_numvfs").exists()
    subprocess.run(["insmod", str(kernel.module)], check=True)
    kernel.eventually(lambda: kernel.devices() == [pf.name for pf in kernel.node.pfs], "PFs back after insmod")
    name = kernel.node.pfs[0].name
    kernel.eventually(lambda: kernel.read(name, "wordlist_loaded") == "1\n", "firmware loaded again")
    assert kernel.read(name, "sriov_numvfs") == "0\n"
