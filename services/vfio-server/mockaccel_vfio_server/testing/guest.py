"""Boot the test guest (Debian kernel, busybox initramfs, QEMU TCG) against vfio-user sockets.

This is the Python form of tools/guest/mkinitramfs.sh + tools/guest/boot.sh
for tests that run inside the Pants sandbox, where the shell tools (and the
tools/lib/common.sh they source) are not available. It keeps their contract:
the same /init (run /test.sh, print ``MOCKACCEL_EXIT=<status>``, power off),
the same QEMU machine (q35, shared memfd RAM, TCG, serial to a file, one
vfio-user-pci device per socket behind a PCIe root port). Keep both in step.

The guest script runs while the host watches the serial log, so a test can
react to what the guest printed (``wait_for``) and change the device through
the control API while the guest polls for the effect.
"""

from __future__ import annotations

import gzip
import re
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from mockaccel_node.cpio import Cpio
from mockaccel_vfio_server.testing.prereqs import PrerequisiteMissingError, require

BUSYBOX = Path("/bin/busybox")
_ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]|\x1bc|\r")

INIT = """#!/bin/sh
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
[ -t 1 ] || exec </dev/console >/dev/console 2>&1
echo "mockaccel-init: running /test.sh"
sh /test.sh
echo "MOCKACCEL_EXIT=$?"
sync
poweroff -f
"""


def build_initramfs(out: Path, test_script: str) -> Path:
    """A gzip'd cpio with static busybox, its applet links, /init and ``/test.sh``."""
    if not BUSYBOX.is_file():
        raise PrerequisiteMissingError(f"{BUSYBOX} is missing: apt-get install busybox-static")
    applets = subprocess.run([str(BUSYBOX), "--list-full"], capture_output=True, text=True, check=True).stdout.split()
    cpio = Cpio()
    for directory in ("bin", "sbin", "usr", "usr/bin", "usr/sbin", "proc", "sys", "dev", "tmp", "run"):
        cpio.add(directory, 0o040755)
    cpio.add("dev/console", 0o020600, rdev=(5, 1))
    cpio.add("bin/busybox", 0o100755, BUSYBOX.read_bytes())
    for applet in applets:
        if applet != "bin/busybox":
            cpio.add(applet, 0o120777, b"/bin/busybox")
    cpio.add("init", 0o100755, INIT.encode())
    cpio.add("test.sh", 0o100755, test_script.encode())
    out.write_bytes(gzip.compress(cpio.finish(), compresslevel=1))
    return out


def qemu_command(
    qemu: Path, kernel: Path, initrd: Path, log: Path, sockets: Sequence[Path], mem_mb: int = 512
) -> list[str]:
    """The QEMU command line of tools/guest/boot.sh for devices on root ports of pcie.0."""
    args = [
        str(qemu), "-accel", "tcg", "-nographic", "-no-reboot", "-nic", "none", "-vga", "none", "-monitor", "none",
        "-serial", f"file:{log}", "-m", f"{mem_mb}M", "-kernel", str(kernel), "-initrd", str(initrd),
        "-append", "console=ttyS0 panic=-1 quiet",
        "-machine", "q35,memory-backend=mem", "-object", f"memory-backend-memfd,id=mem,size={mem_mb}M,share=on",
    ]  # fmt: skip
    for i, sock in enumerate(sockets):
        args += [
            "-device", f"pcie-root-port,id=rp{i},bus=pcie.0,chassis={i + 1},slot={i}",
            "-device", f'{{"driver":"vfio-user-pci","bus":"rp{i}","socket":{{"path":"{sock}","type":"unix"}}}}',
        ]  # fmt: skip
    return args


class GuestRun:
    """One QEMU run in the background; read its serial log while it runs."""

    def __init__(self, workdir: Path, sockets: Sequence[Path], test_script: str, timeout: float = 240.0) -> None:
        self.workdir = workdir
        self.log = workdir / "serial.log"
        self.timeout = timeout
        initrd = build_initramfs(workdir / "initrd.cpio.gz", test_script)
        self.command = qemu_command(
            require("MOCKACCEL_QEMU"), require("MOCKACCEL_GUEST_KERNEL"), initrd, self.log, sockets
        )
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
        return _ANSI.sub(b"", self.log.read_bytes()).decode(errors="replace")

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
        match = self.wait_for(r"^MOCKACCEL_EXIT=(\d+)")
        assert self._process is not None
        self._process.wait(timeout=30)
        return int(match.group(1))

    def _check_alive(self, doing: str) -> None:
        assert self._process is not None
        elapsed = time.monotonic() - self._started
        if self._process.poll() is not None and "MOCKACCEL_EXIT=" not in self.text():
            output = self._process.stdout.read().decode(errors="replace") if self._process.stdout else ""
            raise AssertionError(f"QEMU exited {self._process.returncode} {doing}: {output[-2000:]}\n{self.tail()}")
        if elapsed > self.timeout:
            raise AssertionError(f"guest timed out after {elapsed:.0f} s {doing}\n{self.tail()}")

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.text().splitlines()[-lines:])
