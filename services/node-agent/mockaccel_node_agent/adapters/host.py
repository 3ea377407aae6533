"""What preparing touches on the host: device state in sysfs and spec files in the CDI directory.

Each operation has a synchronous form (``*_sync``, for callers already in a
worker thread: the preparer runs a whole batch of claims in one) and an
async one that runs it in a worker thread; errors arrive as the node
agent's error tree (a device that cannot be read or written is
DeviceUnavailableError for the claim that wanted it).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import aiofiles

from mockaccel_common.cdi import write_spec
from mockaccel_common.errors import SysfsError
from mockaccel_common.model import Device
from mockaccel_common.sysfs import abi
from mockaccel_common.sysfs.reader import ScanResult, read_device, scan_devices
from mockaccel_common.sysfs.writer import SysfsWriter
from mockaccel_node_agent.domain.cdi_building import (
    CdiLayout,
    DeviceSource,
    claim_spec,
    is_our_spec,
    spec_file_name,
)
from mockaccel_node_agent.errors import DeviceUnavailableError, PermanentError


class Host:
    def __init__(self, sysfs_root: Path, cdi_dir: Path, layout: CdiLayout | None = None) -> None:
        self.sysfs_root = sysfs_root
        self.cdi_dir = cdi_dir
        self.layout = layout or CdiLayout()
        self._writer = SysfsWriter(sysfs_root)
        self._class_dir = os.fspath(sysfs_root / abi.CLASS_DIR)
        # device name -> (its class link's target, the resolved directory)
        self._real_dirs: dict[str, tuple[str, str]] = {}

    # --- sysfs ---------------------------------------------------------------

    def read_sync(self, name: str) -> DeviceSource:
        try:
            device = read_device(self.sysfs_root, name)
            real_dir = self._real_dir(name)
        except (SysfsError, OSError) as exc:
            raise DeviceUnavailableError(f"device {name} is not usable on this node: {exc}") from exc
        # The container sees host paths: on a simulated tree keep the path under
        # the simulated root (it is the host path of that tree).
        return DeviceSource(device=device, sysfs_dir=real_dir)

    def _real_dir(self, name: str) -> str:
        """The device's directory with every link resolved.

        Resolving walks every component of the path (an lstat each); a class
        entry is a link whose target names the whole path below the class
        directory, so the answer is kept for as long as the target is the same.
        """
        link = os.path.join(self._class_dir, name)
        try:
            target = os.readlink(link)
        except OSError:  # not a link (or gone): resolve, or fail, the long way
            return os.path.realpath(link, strict=True)
        cached = self._real_dirs.get(name)
        if cached is not None and cached[0] == target:
            return cached[1]
        real = os.path.realpath(link, strict=True)
        self._real_dirs[name] = (target, real)
        return real

    async def read(self, name: str) -> DeviceSource:
        return await asyncio.to_thread(self.read_sync, name)

    async def scan(self) -> tuple[Device, ...]:
        return (await scan_devices(self.sysfs_root)).devices

    async def scan_all(self) -> ScanResult:
        """Every readable device, and the listed ones that could not be read (yet)."""
        return await scan_devices(self.sysfs_root)

    def set_allocated_sync(self, name: str, allocated: bool) -> None:
        try:
            self._writer.set_allocated_sync(name, allocated)
        except SysfsError as exc:
            verb = "allocate" if allocated else "free"
            raise DeviceUnavailableError(f"cannot {verb} device {name}: {exc}") from exc

    async def set_allocated(self, name: str, allocated: bool) -> None:
        await asyncio.to_thread(self.set_allocated_sync, name, allocated)

    def mark_allocated_sync(self, names: Sequence[str], done: list[str], after_first: Callable[[], None]) -> None:
        """Set ALLOCATED on each device in order; ``done`` lists those marked so far (also when one
        fails with DeviceUnavailableError); ``after_first`` runs after the first."""
        for name in names:
            self.set_allocated_sync(name, True)
            done.append(name)
            if len(done) == 1:
                after_first()

    def free_sync(self, names: Sequence[str], after_first: Callable[[], None]) -> list[str]:
        """Clear ALLOCATED on each device; returns the devices that are gone (unplugged)."""
        gone = []
        for index, name in enumerate(names):
            try:
                self.set_allocated_sync(name, False)
            except DeviceUnavailableError:
                if self.device_exists(name):
                    raise
                gone.append(name)  # unplugged: nothing left to free
            if index == 0:
                after_first()
        return gone

    # --- CDI -----------------------------------------------------------------

    def write_spec_sync(self, claim_uid: str, sources: list[DeviceSource]) -> str:
        name = spec_file_name(claim_uid)
        try:
            # Not fsynced: the spec is transient (the CDI dir is a tmpfs on a node), and start-up
            # reconciliation rewrites any spec the checkpoint names from sysfs (docs/node-agent.md).
            write_spec(self.cdi_dir, name, claim_spec(claim_uid, sources, self.layout), durable=False)
        except OSError as exc:
            raise PermanentError(f"cannot write CDI spec {name}: {exc.strerror}") from exc
        return name

    async def write_spec(self, claim_uid: str, sources: list[DeviceSource]) -> str:
        return await asyncio.to_thread(self.write_spec_sync, claim_uid, sources)

    def delete_spec_sync(self, file_name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.cdi_dir / file_name).unlink()

    async def delete_spec(self, file_name: str) -> None:
        await asyncio.to_thread(self.delete_spec_sync, file_name)

    def _our_specs_sync(self) -> set[str]:
        try:
            return {name for name in os.listdir(self.cdi_dir) if is_our_spec(name)}
        except FileNotFoundError:
            return set()

    async def our_specs(self) -> set[str]:
        return await asyncio.to_thread(self._our_specs_sync)

    async def read_spec(self, file_name: str) -> bytes | None:
        """A spec file's bytes (None when it is missing or unreadable), read without blocking the loop."""
        try:
            async with aiofiles.open(self.cdi_dir / file_name, "rb") as file:
                return await file.read()
        except OSError:
            return None

    def device_exists(self, name: str) -> bool:
        return (self.sysfs_root / abi.CLASS_DIR / name).is_dir()
