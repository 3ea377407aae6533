"""Boot a test guest (Debian kernel, busybox initramfs, QEMU TCG) against vfio-user sockets.

``flavor`` picks the stock Debian kernel or the debug kernel built with KASAN and
lockdep (mockaccel_node.settings.KernelFlavor); everything else is the same.

The image and the QEMU command line come from the one guest builder,
mockaccel_node (initramfs.py, plan.py): the same /init, the same machine and
PCI placement as the emulated node, here without the driver and with the
devices on root ports of the root bus. The test's script runs while the host
watches the serial log, so a test can react to what the guest printed
(``wait_for``) and change the device through the control API while the guest
polls for the effect.
"""

from __future__ import annotations

import re
import subprocess
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

from mockaccel_common.provisioned import require
from mockaccel_common.regmap import DEFAULT_PF_MEMORY, DEFAULT_VF_MEMORY
from mockaccel_common.simulator.topology import NodeSpec, PfSpec, pci_layout
from mockaccel_node.initramfs import EXIT_MARKER, InitramfsSpec, build_initramfs
from mockaccel_node.node import serial_text
from mockaccel_node.plan import NodePlan, PfPlan, qemu_args
from mockaccel_node.settings import KernelFlavor, guest_kernel


def root_bus_plan(sockets: Sequence[Path]) -> NodePlan:
    """Devices on root ports of pcie.0 (no NUMA affinity), one per vfio-user socket, in order."""
    pfs = []
    for slot, socket in enumerate(sockets):
        spec = PfSpec(slot, -1, slot, DEFAULT_PF_MEMORY, 0, DEFAULT_VF_MEMORY, uuid.UUID(int=slot))
        pfs.append(PfPlan(spec, pci_layout(spec), socket, socket.with_suffix(".ctl")))
    return NodePlan(NodeSpec("guest", tuple(p.spec for p in pfs)), tuple(pfs))


class GuestRun:
    """One QEMU run in the background; read its serial log while it runs."""

    def __init__(
        self,
        workdir: Path,
        sockets: Sequence[Path],
        test_script: str,
        timeout: float = 240.0,
        files: Mapping[str, tuple[int, bytes]] | None = None,
        flavor: KernelFlavor = KernelFlavor.STOCK,
    ) -> None:
        self.workdir = workdir
        self.log = workdir / "serial.log"
        self.timeout = timeout
        initrd = build_initramfs(
            workdir / "initrd.cpio.gz", InitramfsSpec(0, run_script=test_script, files=dict(files or {}))
        )
        args = qemu_args(root_bus_plan(sockets), kernel=guest_kernel(flavor), initrd=initrd, serial_log=self.log)
        self.command = [str(require("MOCKACCEL_QEMU")), *args]
        self._process: subprocess.Popen[bytes] | None = None
        self._started = 0.0

    def __enter__(self) -> GuestRun:
        self.log.write_bytes(b"")
        self._started = time.monotonic()
        self._process = subprocess.Popen(
            self.command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        if self._process.stdout is not None:
            self._process.stdout.close()

    def text(self) -> str:
        return serial_text(self.log)

    def wait_for(self, pattern: str) -> re.Match[str]:
        """The first serial-log line matching ``pattern``, polling until the run's deadline."""
        regex = re.compile(pattern, re.MULTILINE)
        while True:
            if match := regex.search(self.text()):
                return match
            self._check_alive(f"waiting for {pattern!r}")
            time.sleep(0.1)

    def finish(self) -> int:
        """Wait for the guest to power off; its ``MOCKACCEL_EXIT`` status."""
        match = self.wait_for(rf"^{EXIT_MARKER}(\d+)")
        assert self._process is not None
        self._process.wait(timeout=30)
        return int(match.group(1))

    def _check_alive(self, doing: str) -> None:
        assert self._process is not None
        elapsed = time.monotonic() - self._started
        if self._process.poll() is not None and EXIT_MARKER not in self.text():
            output = self._process.stdout.read().decode(errors="replace") if self._process.stdout else ""
            raise AssertionError(f"QEMU exited {self._process.returncode} {doing}: {output[-2000:]}\n{self.tail()}")
        if elapsed > self.timeout:
            raise AssertionError(f"guest timed out after {elapsed:.0f} s {doing}\n{self.tail()}")

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.text().splitlines()[-lines:])
