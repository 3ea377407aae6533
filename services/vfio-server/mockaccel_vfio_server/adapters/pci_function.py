"""Describe the mock-accel PF to libvfio-user: PCI identity, capabilities, BAR0, reset, interrupts.

Why here and not in the device model: these are libvfio-user calls. The values
all come from ``mockaccel_common.regmap`` (docs/abi.md §1). ``vfu_pci_init``
ignores its revision argument, so the revision byte is written into the config
space directly.

Why the MSI capability is written by hand: ``vfu_pci_add_capability`` knows
only PM, PCI Express, MSI-X and vendor capabilities (ENOTSUP for MSI), while
QEMU's vfio client emulates an MSI capability it finds in config space and
hands the vectors to the server with SET_IRQS, which libvfio-user stores for
``vfu_irq_trigger``. So the capability is placed after the Express capability
and linked from it, and the config-space callback (which libvfio-user calls for
everything outside the header and the capabilities it knows) keeps the guest's
writes to its writable fields. Interrupts behind a ``pxb-pcie`` expander need
MSI: QEMU routes no INTx from there (docs/abi.md §2.3).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from mockaccel_common import regmap as rm
from mockaccel_vfio_server.adapters.libvfio_user import (
    AccessRefused,
    IrqKind,
    IrqStateHandler,
    PciType,
    Region,
    RegionHandler,
    ResetHandler,
    VfuContext,
)

PCI_REVISION_ID_OFFSET = 0x08  # standard header: Revision ID byte
PCI_CAP_ID_MSI = 0x05
MSI_CAP_SIZE = 0x10  # 64-bit address, no per-vector masking: header, control, address, upper, data (+2 spare)
MSI_FLAGS_ENABLE = 0x0001
MSI_FLAGS_64BIT = 0x0080
# Bytes the guest may change, relative to the capability: Message Control (enable and
# Multiple Message Enable; one vector is offered), address (dword aligned), upper address, data.
_MSI_WRITABLE = bytes([0x00, 0x00, 0x71, 0x00, 0xFC, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x00])


@dataclass(frozen=True)
class PfLayout:
    """Where the hand-placed parts of the config space are."""

    msi_offset: int


class ConfigSpace:
    """The config-space callback: reads from the live image, writes only to the MSI capability."""

    def __init__(self, vfu: VfuContext, msi_offset: int) -> None:
        self._vfu = vfu
        self._msi = msi_offset

    def access(self, offset: int, data: memoryview, is_write: bool) -> None:
        space = self._vfu.config_space()
        if not is_write:
            data[:] = space[offset : offset + len(data)]
            return
        if offset < self._msi or offset + len(data) > self._msi + MSI_CAP_SIZE:
            raise AccessRefused()  # as before the callback existed: no writable config space outside caps
        for i, byte in enumerate(data):
            at = offset + i
            mask = _MSI_WRITABLE[at - self._msi]
            space[at] = (space[at] & ~mask & 0xFF) | (byte & mask)

    def msi_enabled(self) -> bool:
        if self._vfu.closed:
            return False
        space = self._vfu.config_space()
        return bool(int.from_bytes(space[self._msi + 2 : self._msi + 4], "little") & MSI_FLAGS_ENABLE)


def _add_msi_capability(vfu: VfuContext, express_offset: int) -> int:
    """Place a 1-vector 64-bit MSI capability after the Express one and link it."""
    space = vfu.config_space()
    offset = (express_offset + vfu.express_capability_size + 3) & ~3
    if space[express_offset + 1] != 0 or offset + MSI_CAP_SIZE > len(space):
        raise RuntimeError(f"cannot place the MSI capability at {offset:#x}")
    space[offset : offset + MSI_CAP_SIZE] = struct.pack("<BBH", PCI_CAP_ID_MSI, 0, MSI_FLAGS_64BIT).ljust(
        MSI_CAP_SIZE, b"\0"
    )
    space[express_offset + 1] = offset  # the Express capability's next pointer
    return offset


def describe_pf(
    vfu: VfuContext,
    bar0: RegionHandler,
    reset: ResetHandler,
    intx_state: IrqStateHandler,
    *,
    bar0_image: memoryview | None = None,
    intx: bool = True,
) -> ConfigSpace:
    """Declare the PF on ``vfu`` and realize it (the context can then attach clients).

    With ``bar0_image`` plain BAR0 reads are served from it in C and only the
    other accesses reach ``bar0`` (see ``VfuContext.setup_region``).

    Without ``intx`` the function has MSI only: Interrupt Pin stays 0, so no guest
    driver waits on a line the platform does not route.
    """
    vfu.pci_init(PciType.EXPRESS, revision=rm.PCI_REVISION_ID)
    vfu.set_id(rm.PCI_VENDOR_ID, rm.PCI_DEVICE_ID_PF, rm.PCI_SUBSYSTEM_VENDOR_ID, rm.PCI_SUBSYSTEM_ID)
    base, sub, prog_if = (rm.PCI_CLASS_CODE >> 16) & 0xFF, (rm.PCI_CLASS_CODE >> 8) & 0xFF, rm.PCI_CLASS_CODE & 0xFF
    vfu.set_class(base, sub, prog_if)
    vfu.config_space()[PCI_REVISION_ID_OFFSET] = rm.PCI_REVISION_ID
    express = vfu.add_express_capability(flr=True)
    config = ConfigSpace(vfu, _add_msi_capability(vfu, express))
    vfu.setup_region(Region.CONFIG, len(vfu.config_space()), config.access, mem=False)
    # A 32-bit non-prefetchable memory BAR: without the MEM flag it would be an I/O BAR.
    vfu.setup_region(Region.BAR0, rm.BAR0_SIZE, bar0, mem=True, read_image=bar0_image)
    vfu.setup_reset(reset)
    if intx:
        vfu.setup_intx()  # realize then sets Interrupt Pin = INTA#
    vfu.setup_irqs(IrqKind.MSI, 1)
    if intx:
        vfu.setup_irq_state(IrqKind.INTX, intx_state)
    vfu.realize()
    return config
