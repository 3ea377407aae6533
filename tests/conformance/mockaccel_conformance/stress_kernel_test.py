"""Concurrent readers and writers of every attribute and of /dev/mockN during VF teardown,
unbind and module unload (kernel only). The kernel log is checked for BUG/WARN/Oops by the
host after the run (tests/conformance/e2e); here every failure must be an expected errno.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from mockaccel_common import regmap
from mockaccel_common.simulator.topology import pci_layout
from mockaccel_conformance.racing import CLASS, Workers, read_everything, write
from mockaccel_conformance.target import GuestTarget

STRESS_S = 8.0


def toggler(path: Path, first: str, second: str, value: str | None = None) -> Callable[[], None]:
    """Write ``first`` then ``second`` to ``path`` (with ``value``: to ``path/first`` then ``path/second``)."""

    def body() -> None:
        if value is None:
            write(path, first)
            write(path, second)
        else:
            write(path / first, value)
            write(path / second, value)

    return body


def chardev_user(name: str) -> Callable[[], None]:
    def body() -> None:
        fd = os.open(f"/dev/{name}", os.O_RDONLY)
        try:
            for _ in range(3):
                fcntl.ioctl(fd, regmap.IOC_STATUS, bytearray(4))
                fcntl.ioctl(fd, regmap.IOC_INFO, bytearray(40))
                fcntl.ioctl(fd, regmap.IOC_PASSPHRASE, bytearray(regmap.PASSPHRASE_IOCTL_SIZE))
                os.read(fd, 64)
        finally:
            os.close(fd)

    return body


def test_concurrent_users_during_teardown_and_unload(kernel: GuestTarget) -> None:
    pfs = [pf.name for pf in kernel.node.pfs]
    unbound = pci_layout(kernel.node.pfs[3]).address
    workers = Workers()
    users = Workers()  # open /dev files hold the module: they stop before the unload
    for i in range(2):
        workers.spawn(f"reader{i}", read_everything)
    for name in pfs[:3]:
        workers.spawn(f"status-{name}", toggler(CLASS / name / "status", "1", "0"))
        workers.spawn(f"vf-status-{name}", toggler(CLASS / f"{name}v0" / "status", "1", "0"))
        workers.spawn(f"sriov-{name}", toggler(CLASS / name / "sriov_numvfs", "4", "0"))
        users.spawn(f"dev-{name}", chardev_user(name))
        users.spawn(f"dev-{name}v1", chardev_user(f"{name}v1"))
    workers.spawn("passphrase", lambda: write(CLASS / pfs[0] / "passphrase_generate", "1"))
    workers.spawn("vf-passphrase", lambda: write(CLASS / f"{pfs[1]}v2" / "passphrase_generate", "1"))
    workers.spawn("reload", lambda: write(CLASS / pfs[1] / "load_wordlist", "1"))
    workers.spawn("unbind", toggler(Path("/sys/bus/pci/drivers/mock-accel"), "unbind", "bind", str(unbound)))
    try:
        time.sleep(STRESS_S)
        users.join()
        # Module unload while sysfs readers and writers keep going.
        deadline = time.monotonic() + 60
        while subprocess.run(["rmmod", "mock_accel"], capture_output=True).returncode != 0:
            assert time.monotonic() < deadline, "rmmod kept failing for 60 s"
            time.sleep(0.2)
        time.sleep(1.0)
        subprocess.run(["insmod", str(kernel.module)], check=True)
        time.sleep(1.0)
    finally:
        users.join()
        workers.join()
    if pfs[3] not in kernel.devices():  # the unbind worker may have stopped between its two writes
        write(Path("/sys/bus/pci/drivers/mock-accel/bind"), str(unbound))
    assert not workers.errors + users.errors, (workers.errors + users.errors)[:20]
    assert workers.ops > 100, f"only {workers.ops} sysfs operations ran"
    assert users.ops > 10, f"only {users.ops} /dev operations ran"
    # The node is whole again for whatever runs next.
    kernel.eventually(lambda: set(pfs) <= set(kernel.devices()), "every PF back after the stress run", timeout=60)
