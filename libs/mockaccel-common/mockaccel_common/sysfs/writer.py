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
from typing import TYPE_CHECKING

from mockaccel_common.errors import SysfsError
from mockaccel_common.sysfs import abi

if TYPE_CHECKING:
    from mockaccel_common.simulator.engine import SimulatedNode


class SysfsWriter:
    def __init__(self, root: Path) -> None:
        self.root = root
        # A simulated tree's topology never changes after it is created: open (read and
        # parse) it once, not per write. A tree not simulated yet is looked at again.
        self._simulated: SimulatedNode | None = None

    def _simulator(self) -> SimulatedNode | None:
        if self._simulated is None and (self.root / abi.SIM_MARKER).is_file():
            # Imported here: a production agent on the kernel's tree never loads the simulator.
            from mockaccel_common.simulator.engine import SimulatedNode

            self._simulated = SimulatedNode.open(self.root)
        return self._simulated

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
        simulated = self._simulator()
        if simulated is not None:
            simulated.write(device, attribute, text)
        else:
            self._write_kernel(device, attribute, text)

    def set_allocated_sync(self, device: str, allocated: bool) -> None:
        self.write_sync(device, "status", "1" if allocated else "0")

    async def write(self, device: str, attribute: str, text: str) -> None:
        await asyncio.to_thread(self.write_sync, device, attribute, text)

    async def set_allocated(self, device: str, allocated: bool) -> None:
        await self.write(device, "status", "1" if allocated else "0")

    async def set_num_vfs(self, pf: str, count: int) -> None:
        await self.write(pf, "sriov_numvfs", str(count))
