"""Describe the mock-accel PF to libvfio-user: PCI identity, capabilities, BAR0, reset, INTx.

Why here and not in the device model: these are libvfio-user calls. The values
all come from ``mockaccel_common.regmap`` (docs/abi.md §1). ``vfu_pci_init``
ignores its revision argument, so the revision byte is written into the config
space directly.
"""

from __future__ import annotations

from mockaccel_common import regmap as rm
from mockaccel_vfio_server.adapters.libvfio_user import PciType, Region, RegionHandler, ResetHandler, VfuContext

PCI_REVISION_ID_OFFSET = 0x08  # standard header: Revision ID byte


def describe_pf(vfu: VfuContext, bar0: RegionHandler, reset: ResetHandler) -> None:
    """Declare the PF on ``vfu`` and realize it (the context can then attach clients)."""
    vfu.pci_init(PciType.EXPRESS, revision=rm.PCI_REVISION_ID)
    vfu.set_id(rm.PCI_VENDOR_ID, rm.PCI_DEVICE_ID_PF, rm.PCI_SUBSYSTEM_VENDOR_ID, rm.PCI_SUBSYSTEM_ID)
    base, sub, prog_if = (rm.PCI_CLASS_CODE >> 16) & 0xFF, (rm.PCI_CLASS_CODE >> 8) & 0xFF, rm.PCI_CLASS_CODE & 0xFF
    vfu.set_class(base, sub, prog_if)
    vfu.config_space()[PCI_REVISION_ID_OFFSET] = rm.PCI_REVISION_ID
    vfu.add_express_capability(flr=True)
    # A 32-bit non-prefetchable memory BAR: without the MEM flag it would be an I/O BAR.
    vfu.setup_region(Region.BAR0, rm.BAR0_SIZE, bar0, mem=True)
    vfu.setup_reset(reset)
    vfu.setup_intx()  # realize then sets Interrupt Pin = INTA#
    vfu.realize()
