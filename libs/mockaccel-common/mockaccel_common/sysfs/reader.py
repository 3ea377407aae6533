"""Read mock-accel devices from a sysfs tree (the kernel's, or the simulator's).

The root is always configurable: ``/sys`` in production, a temporary tree in
tests. A scan never raises for one bad device: it skips the device and reports
why, so a garbled attribute or a device that vanishes mid-scan cannot stop
the callers' loops. The scan is synchronous file work; ``scan_devices`` runs
it in one worker thread rather than hopping to a thread per file.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import os
import sys
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


_O_FILE = os.O_RDONLY | os.O_CLOEXEC
_O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


def _read(name: str, dir_fd: int) -> str:
    """One attribute of an open directory, with plain os calls: a scan reads tens of thousands of them."""
    try:
        fd = os.open(name, _O_FILE, dir_fd=dir_fd)
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


def _parse(name: str, dir_fd: int, parser: Callable[[str], T]) -> T:
    text = _read(name, dir_fd)
    try:
        return parser(text)
    except ValueError as exc:
        raise _Skip(str(exc)) from exc


def _open_dir(path: str, problem: str) -> int:
    try:
        return os.open(path, _O_DIR)
    except OSError as exc:  # gone, not a directory, dangling
        raise _Skip(problem) from exc


def pcie_root_of(resolved_pci_dir: str) -> str | None:
    """``pci0000:10`` for ``…/devices/pci0000:10/0000:10:00.0/0000:11:00.0``."""
    parts = resolved_pci_dir.split(os.sep)
    for index, part in enumerate(parts[:-1]):
        if part == "devices" and parts[index + 1].startswith("pci"):
            return sys.intern(parts[index + 1])  # one string per root complex, shared by its devices
    return None


_parse_numa = functools.partial(abi.parse_signed, what="numa_node")
_parse_totalvfs = functools.partial(abi.parse_u64, what="sriov_totalvfs")
_parse_numvfs = functools.partial(abi.parse_u64, what="sriov_numvfs")
# Values most devices of a node share (their memory size, firmware version) are parsed once per
# distinct text, so the devices share one object: a 10,000-device node kept ~0.9 MiB of copies.
# The memo is bounded and holds only values parsed from valid text; a ValueError is not cached.
_parse_memory = functools.lru_cache(maxsize=256)(functools.partial(abi.parse_u64, what="memory_size"))
_parse_version = functools.lru_cache(maxsize=256)(abi.parse_version)


NumaMemo = dict[str, "int | _Skip"]
"""One scan's ``numa_node`` readings by PCI function directory, or why one could not be read: the
functions behind one PCI function share it (a PF's VFs sit behind it on the simulator)."""


def _locate(base: str, name: str, numa_of: NumaMemo) -> tuple[DeviceName, str, str, int]:
    """A device's parsed name, its directory, its PCI function's directory and its NUMA node."""
    try:
        parsed_name = DeviceName.parse(name)
    except ValueError as exc:
        raise _Skip(str(exc)) from exc
    entry = os.path.join(base, name)
    try:
        # sysfs class entries are relative links to real directories under /sys/devices: resolved lexically
        dev_dir = os.path.normpath(os.path.join(base, os.readlink(entry)))
    except OSError as exc:
        if exc.errno != errno.EINVAL:  # EINVAL: not a link, the directory itself
            raise _Skip("device directory vanished") from exc
        dev_dir = entry
    try:
        pci_dir = os.path.normpath(os.path.join(dev_dir, os.readlink(os.path.join(dev_dir, "device"))))
    except OSError as exc:
        raise _Skip(
            "device link missing or dangling" if os.path.isdir(dev_dir) else "device directory vanished"
        ) from exc
    numa = numa_of.get(pci_dir)
    if numa is None:
        numa_of[pci_dir] = numa = _read_numa(pci_dir)
    if isinstance(numa, _Skip):
        raise _Skip(str(numa), transient=numa.transient)
    return parsed_name, dev_dir, pci_dir, numa


def _read_numa(pci_dir: str) -> int | _Skip:
    try:
        pci_fd = _open_dir(pci_dir, "device link missing or dangling")
        try:
            return _parse("numa_node", pci_fd, _parse_numa)
        finally:
            os.close(pci_fd)
    except _Skip as exc:
        return exc


def _read_device(base: str, name: str, numa_of: NumaMemo) -> Device:
    """Read one device; its attributes are opened relative to its directory's fd, so the kernel
    resolves the directory once per device, not once per attribute."""
    parsed_name, dev_dir, pci_dir, numa = _locate(base, name, numa_of)
    dev_fd = _open_dir(dev_dir, "device directory vanished")
    try:
        return _read_functions(dev_fd, name, parsed_name, pci_dir, numa)
    finally:
        os.close(dev_fd)


def read_device(root: Path, name: str) -> Device:
    """Read one device; raises ``_Skip`` with a reason when it cannot."""
    return _read_device(os.path.join(root, abi.CLASS_DIR), name, {})


def _read_functions(dev_fd: int, name: str, parsed_name: DeviceName, pci_dir: str, numa: int) -> Device:
    kind = parsed_name.kind
    physfn: str | None = None
    vf_index: int | None = None
    total = num = 0
    if kind is DeviceKind.VF:
        try:
            # interned: the VFs of a PF share its name (8,960 copies on a 10,240-function node)
            physfn = sys.intern(os.path.basename(os.readlink("physfn", dir_fd=dev_fd)))
        except OSError as exc:
            raise _Skip("VF without a physfn link") from exc
        if physfn != parsed_name.physfn:
            raise _Skip(f"physfn link names {physfn}, expected {parsed_name.physfn}")
        vf_index = parsed_name.vf_index
        address = _parse("pci_address", dev_fd, PciAddress.parse)
    else:
        pci_name = os.path.basename(pci_dir)
        try:
            address = PciAddress.parse(pci_name)
        except ValueError as exc:
            raise _Skip(f"device link does not name a PCI function: {pci_name}") from exc
        total = _parse("sriov_totalvfs", dev_fd, _parse_totalvfs)
        num = _parse("sriov_numvfs", dev_fd, _parse_numvfs)
    return Device(
        name=name,
        kind=kind,
        uuid=_parse("uuid", dev_fd, abi.parse_uuid),
        memory_size=_parse("memory_size", dev_fd, _parse_memory),
        capabilities=_parse("capabilities", dev_fd, abi.parse_capabilities),
        status=_parse("status", dev_fd, abi.parse_status),
        numa_node=numa if numa >= 0 else None,
        pci_address=address,
        pcie_root=pcie_root_of(pci_dir),
        fw_version=_parse("fw_version", dev_fd, _parse_version),
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
    base = os.path.join(root, abi.CLASS_DIR)
    numa_of: NumaMemo = {}
    devices: list[Device] = []
    skipped: list[SkippedDevice] = []
    for name in names:
        try:
            devices.append(_read_device(base, name, numa_of))
        except _Skip as exc:
            skipped.append(SkippedDevice(name, str(exc), exc.transient))
    return ScanResult(tuple(devices), tuple(skipped))


def group_by_numa_sync(root: Path) -> tuple[dict[int, list[str]], tuple[SkippedDevice, ...]]:
    """Every device's name by its NUMA node (-1: none), without reading the devices; and the ones
    that cannot be located.

    Two link reads per device and one ``numa_node`` read per PCI function:
    a caller learns which devices share a NUMA node before reading any of
    them (``read_devices``), as the controller does to publish one NUMA
    node's pool while it reads the next. Only names are kept, which the
    devices share later: a 10,000-device node's locations grew the
    controller's resident memory by more than 1 MiB for good.
    """
    try:
        names = sorted(os.listdir(class_dir(root)))
    except FileNotFoundError:
        return {}, ()
    base = os.path.join(root, abi.CLASS_DIR)
    numa_of: NumaMemo = {}
    groups: dict[int, list[str]] = {}
    skipped: list[SkippedDevice] = []
    for name in names:
        try:
            numa = _locate(base, name, numa_of)[3]
        except _Skip as exc:
            skipped.append(SkippedDevice(name, str(exc), exc.transient))
            continue
        groups.setdefault(numa, []).append(name)
    return groups, tuple(skipped)


async def group_by_numa(root: Path) -> tuple[dict[int, list[str]], tuple[SkippedDevice, ...]]:
    return await asyncio.to_thread(group_by_numa_sync, root)


async def scan_devices(root: Path) -> ScanResult:
    return await asyncio.to_thread(scan_devices_sync, root)


async def read_devices(root: Path, names: Iterable[str]) -> ScanResult:
    return await asyncio.to_thread(read_devices_sync, root, tuple(names))


__all__ = [
    "ScanResult",
    "SkippedDevice",
    "group_by_numa",
    "group_by_numa_sync",
    "read_device",
    "read_devices",
    "read_devices_sync",
    "scan_devices",
    "scan_devices_sync",
]
