"""Read mock-accel devices from a sysfs tree (the kernel's, or the simulator's).

The root is always configurable: ``/sys`` in production, a temporary tree in
tests. A scan never raises for one bad device: it skips the device and reports
why, so a garbled attribute or a device that vanishes mid-scan cannot stop
the callers' loops. The scan is synchronous file work; ``scan_devices`` runs
it in one worker thread rather than hopping to a thread per file.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from mockaccel_common.errors import SysfsError
from mockaccel_common.model import Device, DeviceKind, DeviceName, PciAddress
from mockaccel_common.sysfs import abi

T = TypeVar("T")


@dataclass(frozen=True)
class SkippedDevice:
    """A device the scan could not read; ``transient`` when an attribute failed to read (EIO, EBUSY …)
    rather than being missing or malformed, so the reader may keep its last good value."""

    name: str
    reason: str
    transient: bool = False


@dataclass(frozen=True)
class ScanResult:
    devices: tuple[Device, ...]
    skipped: tuple[SkippedDevice, ...] = field(default=())

    def by_name(self) -> dict[str, Device]:
        return {d.name: d for d in self.devices}


class _Skip(SysfsError):
    """One device cannot be read; the message says why."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


def class_dir(root: Path) -> Path:
    return root / abi.CLASS_DIR


def _read(path: str) -> str:
    """One attribute, with plain os calls: a scan reads thousands of them."""
    name = os.path.basename(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError as exc:
        raise _Skip(f"missing attribute {name}") from exc
    except OSError as exc:
        raise _Skip(f"cannot read {name}: {exc.strerror}", transient=True) from exc
    try:
        data = os.read(fd, 4096)
    except OSError as exc:
        raise _Skip(f"cannot read {name}: {exc.strerror}", transient=True) from exc
    finally:
        os.close(fd)
    try:
        return data.decode("ascii")
    except UnicodeDecodeError as exc:
        raise _Skip(f"attribute {name} is not ASCII") from exc


def _parse(path: str, parser: Callable[[str], T]) -> T:
    text = _read(path)
    try:
        return parser(text)
    except ValueError as exc:
        raise _Skip(str(exc)) from exc


def _follow(link: str) -> str:
    """Where a sysfs link points, resolved lexically (sysfs links are relative, and
    their targets under /sys/devices are real directories)."""
    return os.path.normpath(os.path.join(os.path.dirname(link), os.readlink(link)))


def pcie_root_of(resolved_pci_dir: str) -> str | None:
    """``pci0000:10`` for ``…/devices/pci0000:10/0000:10:00.0/0000:11:00.0``."""
    parts = resolved_pci_dir.split(os.sep)
    for index, part in enumerate(parts[:-1]):
        if part == "devices" and parts[index + 1].startswith("pci"):
            return parts[index + 1]
    return None


def read_device(root: Path, name: str) -> Device:
    """Read one device; raises ``_Skip`` with a reason when it cannot."""
    try:
        parsed_name = DeviceName.parse(name)
    except ValueError as exc:
        raise _Skip(str(exc)) from exc
    entry = os.path.join(root, abi.CLASS_DIR, name)
    try:
        dev_dir = _follow(entry) if os.path.islink(entry) else entry
    except OSError as exc:
        raise _Skip("device directory vanished") from exc
    if not os.path.isdir(dev_dir):
        raise _Skip("device directory vanished")
    try:
        pci_dir = _follow(os.path.join(dev_dir, "device"))
    except OSError as exc:
        raise _Skip("device link missing or dangling") from exc
    if not os.path.isdir(pci_dir):
        raise _Skip("device link missing or dangling")

    def attribute(attr: str) -> str:
        return os.path.join(dev_dir, attr)

    numa = _parse(os.path.join(pci_dir, "numa_node"), lambda t: abi.parse_signed(t, "numa_node"))
    kind = parsed_name.kind
    physfn: str | None = None
    vf_index: int | None = None
    total = num = 0
    if kind is DeviceKind.VF:
        try:
            physfn = os.path.basename(os.readlink(attribute("physfn")))
        except OSError as exc:
            raise _Skip("VF without a physfn link") from exc
        if physfn != parsed_name.physfn:
            raise _Skip(f"physfn link names {physfn}, expected {parsed_name.physfn}")
        vf_index = parsed_name.vf_index
        address = _parse(attribute("pci_address"), PciAddress.parse)
    else:
        pci_name = os.path.basename(pci_dir)
        try:
            address = PciAddress.parse(pci_name)
        except ValueError as exc:
            raise _Skip(f"device link does not name a PCI function: {pci_name}") from exc
        total = _parse(attribute("sriov_totalvfs"), lambda t: abi.parse_u64(t, "sriov_totalvfs"))
        num = _parse(attribute("sriov_numvfs"), lambda t: abi.parse_u64(t, "sriov_numvfs"))
    return Device(
        name=name,
        kind=kind,
        uuid=_parse(attribute("uuid"), abi.parse_uuid),
        memory_size=_parse(attribute("memory_size"), lambda t: abi.parse_u64(t, "memory_size")),
        capabilities=_parse(attribute("capabilities"), abi.parse_capabilities),
        status=_parse(attribute("status"), abi.parse_status),
        numa_node=numa if numa >= 0 else None,
        pci_address=address,
        pcie_root=pcie_root_of(pci_dir),
        fw_version=_parse(attribute("fw_version"), abi.parse_version),
        physfn=physfn,
        vf_index=vf_index,
        sriov_totalvfs=total,
        sriov_numvfs=num,
    )


def scan_devices_sync(root: Path) -> ScanResult:
    """Read every device under ``<root>/class/mock-accel``; a missing class dir is an empty node."""
    try:
        names = sorted(os.listdir(class_dir(root)))
    except FileNotFoundError:
        return ScanResult(devices=())
    return _read_all(root, names)


def read_devices_sync(root: Path, names: Iterable[str]) -> ScanResult:
    """Read only the named devices (an event named them); a name with no class entry is gone, not skipped."""
    base = class_dir(root)
    return _read_all(root, sorted(n for n in set(names) if os.path.lexists(os.path.join(base, n))))


def _read_all(root: Path, names: Iterable[str]) -> ScanResult:
    devices: list[Device] = []
    skipped: list[SkippedDevice] = []
    for name in names:
        try:
            devices.append(read_device(root, name))
        except _Skip as exc:
            skipped.append(SkippedDevice(name, str(exc), exc.transient))
    return ScanResult(tuple(devices), tuple(skipped))


async def scan_devices(root: Path) -> ScanResult:
    return await asyncio.to_thread(scan_devices_sync, root)


async def read_devices(root: Path, names: Iterable[str]) -> ScanResult:
    return await asyncio.to_thread(read_devices_sync, root, tuple(names))


__all__ = [
    "ScanResult",
    "SkippedDevice",
    "read_device",
    "read_devices",
    "read_devices_sync",
    "scan_devices",
    "scan_devices_sync",
]
