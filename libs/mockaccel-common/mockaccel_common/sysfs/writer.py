"""Write mock-accel sysfs attributes, on the kernel's tree or the simulator's.

On a real tree a write is a plain ``write(2)`` whose errno comes from the
driver; on a simulated tree (marked by ``.mockaccel-sim``) the simulator
engine applies the write and raises the same errno. Callers see one API and
one error type either way.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from mockaccel_common.errors import SysfsError
from mockaccel_common.sysfs import abi


class SysfsWriter:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _write_kernel(self, device: str, attribute: str, text: str) -> None:
        path = self.root / abi.CLASS_DIR / device / attribute
        try:
            fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
        except OSError as exc:
            message = f"cannot open {device}/{attribute}: {exc.strerror}"
            raise SysfsError(message, path=str(path), errno=exc.errno) from exc
        try:
            os.write(fd, text.encode("ascii"))
        except OSError as exc:
            raise SysfsError(
                f"{device}/{attribute} rejected {text!r}: {exc.strerror}", path=str(path), errno=exc.errno
            ) from exc
        finally:
            os.close(fd)

    def write_sync(self, device: str, attribute: str, text: str) -> None:
        from mockaccel_common.simulator.engine import SimulatedNode

        if SimulatedNode.is_simulated(self.root):
            SimulatedNode.open(self.root).write(device, attribute, text)
        else:
            self._write_kernel(device, attribute, text)

    async def write(self, device: str, attribute: str, text: str) -> None:
        await asyncio.to_thread(self.write_sync, device, attribute, text)

    async def set_allocated(self, device: str, allocated: bool) -> None:
        await self.write(device, "status", "1" if allocated else "0")

    async def set_num_vfs(self, pf: str, count: int) -> None:
        await self.write(pf, "sriov_numvfs", str(count))
