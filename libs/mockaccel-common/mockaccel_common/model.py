"""The device model: what a mock-accel function is, independent of where it was read.

Pure data and parsing rules; no I/O. The sysfs reader, the simulator, the
controller and the node agent all speak in these types.
"""

from __future__ import annotations

import enum
import re
import uuid
from dataclasses import dataclass

from mockaccel_common.regmap import Capability, Status

PF_NAME_RE = re.compile(r"^mock(0|[1-9][0-9]{0,3})$")
VF_NAME_RE = re.compile(r"^mock(0|[1-9][0-9]{0,3})v([0-6])$")
PCI_ADDRESS_RE = re.compile(r"^([0-9a-f]{4}):([0-9a-f]{2}):([0-1][0-9a-f])\.([0-7])$")
UUID_VF_NAMESPACE_FORMAT = "vf{index}"


class DeviceKind(enum.StrEnum):
    PF = "pf"
    VF = "vf"


@dataclass(frozen=True, order=True, slots=True)
class PciAddress:
    """A PCI function address ``dddd:bb:dd.f`` (lower-case hex, as sysfs prints it).

    Slotted, as ``Device`` is: a 10,000-device node keeps one of each per device.
    """

    domain: int
    bus: int
    device: int
    function: int

    @classmethod
    def parse(cls, text: str) -> PciAddress:
        match = PCI_ADDRESS_RE.match(text.strip())
        if not match:
            raise ValueError(f"not a PCI address: {text!r}")
        domain, bus, dev, fn = match.groups()
        return cls(int(domain, 16), int(bus, 16), int(dev, 16), int(fn, 16))

    def __str__(self) -> str:
        return f"{self.domain:04x}:{self.bus:02x}:{self.device:02x}.{self.function:x}"

    def with_function(self, function: int) -> PciAddress:
        if not 0 <= function <= 7:
            raise ValueError(f"PCI function out of range: {function}")
        return PciAddress(self.domain, self.bus, self.device, function)


@dataclass(frozen=True)
class DeviceName:
    """A class-device name: ``mockN`` for a PF, ``mockNvM`` for VF M of PF N."""

    pf_index: int
    vf_index: int | None = None

    @classmethod
    def parse(cls, text: str) -> DeviceName:
        if match := PF_NAME_RE.match(text):
            return cls(int(match.group(1)))
        if match := VF_NAME_RE.match(text):
            return cls(int(match.group(1)), int(match.group(2)))
        raise ValueError(f"not a mock-accel device name: {text!r}")

    @property
    def kind(self) -> DeviceKind:
        return DeviceKind.PF if self.vf_index is None else DeviceKind.VF

    @property
    def physfn(self) -> str:
        return f"mock{self.pf_index}"

    def __str__(self) -> str:
        if self.vf_index is None:
            return f"mock{self.pf_index}"
        return f"mock{self.pf_index}v{self.vf_index}"


def vf_uuid(pf_uuid: uuid.UUID, vf_index: int) -> uuid.UUID:
    """The UUID of VF ``vf_index``: UUIDv5 in the PF's UUID as namespace.

    The device computes it and exposes it in VF_UUID; the simulator computes
    the same value, so both report identical VF identities.
    """
    return uuid.uuid5(pf_uuid, UUID_VF_NAMESPACE_FORMAT.format(index=vf_index))


def vf_pci_address(pf_address: PciAddress, vf_index: int, offset: int = 1, stride: int = 1) -> PciAddress:
    """Routing ID of a VF, as SR-IOV computes it (no ARI: functions 1..7)."""
    return pf_address.with_function(pf_address.function + offset + vf_index * stride)


def format_version(value: int) -> str:
    return f"{(value >> 16) & 0xFF}.{(value >> 8) & 0xFF}.{value & 0xFF}"


@dataclass(frozen=True, slots=True)
class Device:
    """One mock-accel function as user space sees it (slotted: a third of the size with a ``__dict__``)."""

    name: str
    kind: DeviceKind
    uuid: uuid.UUID
    memory_size: int
    capabilities: Capability
    status: Status
    numa_node: int | None
    pci_address: PciAddress
    pcie_root: str | None
    fw_version: str
    physfn: str | None = None
    vf_index: int | None = None
    sriov_totalvfs: int = 0
    sriov_numvfs: int = 0

    @property
    def allocated(self) -> bool:
        return Status.ALLOCATED in self.status

    @property
    def healthy(self) -> bool:
        return Status.UNHEALTHY not in self.status

    @property
    def ready(self) -> bool:
        return Status.READY in self.status


NO_NUMA_POOL = "numa-none"


def pool_label(numa_node: int | None) -> str:
    """The per-node part of a pool name: ``numa<n>``, or ``numa-none`` (docs/abi.md §8.1)."""
    return NO_NUMA_POOL if numa_node is None else f"numa{numa_node}"


def pool_name(node: str, numa_node: int | None) -> str:
    """``<node>/numa<n>``: unique cluster-wide, so the scheduler never mixes up two nodes' devices."""
    return f"{node}/{pool_label(numa_node)}"
