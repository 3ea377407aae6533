"""Function-level reset through sysfs: the driver follows what the device dropped (kernel only).

``echo 1 > /sys/bus/pci/devices/…/reset`` makes the PCI core save the
function's state, run the driver's ``reset_prepare``, reset the function (FLR:
the vfio-server resets the device, docs/abi.md §3.3) and run ``reset_done``.
The device has no VFs afterwards, so neither may user space; and the health
interrupt works again.
"""

from __future__ import annotations

import errno
from pathlib import Path

from mockaccel_common import regmap
from mockaccel_common.regmap import Status
from mockaccel_common.simulator.topology import pci_layout
from mockaccel_conformance.interrupts_kernel_test import irq_line
from mockaccel_conformance.target import GuestTarget

OFF = {name: regmap.register(name).offset for name in ("SRIOV_NUM_VFS", "IRQ_ENABLE")}


def test_flr_drops_the_vfs_and_keeps_the_driver_consistent(kernel: GuestTarget) -> None:
    pf = kernel.node.pfs[2]
    name = pf.name
    kernel.write(name, "sriov_numvfs", "2")
    kernel.write(name, "status", "1")
    kernel.write(f"{name}v0", "status", "1")

    reset = Path("/sys/bus/pci/devices") / str(pci_layout(pf).address) / "reset"
    reset.write_text("1\n")

    assert kernel.device_register(name, OFF["SRIOV_NUM_VFS"]) == 0, "the device dropped its VFs"
    assert [d for d in kernel.devices() if d.startswith(name + "v")] == [], "VF class devices outlived the reset"
    assert kernel.read(name, "sriov_numvfs") == "0\n"
    assert kernel.read(name, "status") == f"{int(Status.READY):#010x}\n"
    assert kernel.device_register(name, OFF["IRQ_ENABLE"]) == regmap.IrqCause.HEALTH, "interrupt re-enabled"

    # The PF works as before: VFs come back, and a health fault still interrupts.
    kernel.write(name, "sriov_numvfs", "2")
    assert kernel.read(f"{name}v1", "status") == f"{int(Status.READY):#010x}\n"
    before, _ = irq_line(name)
    kernel.set_health(name, False)
    try:
        kernel.eventually(lambda: irq_line(name)[0] > before, f"an interrupt for {name} after the reset")
    finally:
        kernel.set_health(name, True)


def test_status_write_the_device_drops_fails(kernel: GuestTarget) -> None:
    name = kernel.node.pfs[1].name
    kernel.fault(name, "fail_writes", True)
    try:
        assert kernel.write_errno(name, "status", "1") == errno.EIO
    finally:
        kernel.fault(name, "fail_writes", False)
    assert kernel.device_status(name) & Status.ALLOCATED == 0
    assert kernel.write_errno(name, "status", "1") == 0
