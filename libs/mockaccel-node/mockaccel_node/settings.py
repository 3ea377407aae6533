"""Settings of the emulated node: the provisioned parts and the run's choices.

The provisioned parts are found by mockaccel_common.provisioned, the one
lookup every tool and test uses (the environment, then the env file that
tools/provision/all.sh writes), and a missing one fails with the script that
provides it.
"""

from __future__ import annotations

import enum
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mockaccel_common.provisioned import cache_root, require
from mockaccel_common.simulator.topology import NodeSpec


class KernelFlavor(enum.Enum):
    """Which provisioned guest kernel a run boots; the module is built against the same one."""

    STOCK = "stock"
    """Debian's image (tools/provision/guest-kernel.sh); virtio-pci and 9p are modules."""
    DEBUG = "debug"
    """Built here with KASAN, lockdep, DEBUG_SHIRQ (tools/provision/guest-debug-kernel.sh); all built in."""


# MOCKACCEL_* names of (kernel image, kbuild tree) per flavor.
KERNEL_VARIABLES = {
    KernelFlavor.STOCK: ("MOCKACCEL_GUEST_KERNEL", "MOCKACCEL_GUEST_KDIR"),
    KernelFlavor.DEBUG: ("MOCKACCEL_GUEST_DEBUG_KERNEL", "MOCKACCEL_GUEST_DEBUG_KDIR"),
}


def guest_kernel(flavor: KernelFlavor = KernelFlavor.STOCK, environ: Mapping[str, str] | None = None) -> Path:
    """The provisioned kernel image of ``flavor``."""
    return require(KERNEL_VARIABLES[flavor][0], os.environ if environ is None else environ)


@dataclass(frozen=True)
class Provisioned:
    """Paths of the provisioned parts a node needs."""

    kernel: Path
    kdir: Path
    qemu: Path
    wordlist: Path
    libvfio_user_prefix: Path
    rootfs: Path
    modules_9p: tuple[Path, ...]
    """Loaded before mock-accel.ko; empty for the debug kernel, which has 9p built in."""
    cache: str
    flavor: KernelFlavor = KernelFlavor.STOCK

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, flavor: KernelFlavor = KernelFlavor.STOCK
    ) -> Provisioned:
        env = os.environ if environ is None else environ
        modules_9p: tuple[Path, ...] = ()
        if flavor is KernelFlavor.STOCK:
            mod_dir = require("MOCKACCEL_GUEST_9P_MODULES", env)
            modules_9p = tuple(mod_dir / name for name in (mod_dir / "order").read_text().split())
        kernel_var, kdir_var = KERNEL_VARIABLES[flavor]
        return cls(
            kernel=require(kernel_var, env),
            kdir=require(kdir_var, env),
            qemu=require("MOCKACCEL_QEMU", env),
            wordlist=require("MOCKACCEL_WORDLIST", env),
            libvfio_user_prefix=require("MOCKACCEL_LIBVFIO_USER_PREFIX", env),
            rootfs=require("MOCKACCEL_GUEST_ROOTFS", env),
            modules_9p=modules_9p,
            cache=str(cache_root(env)),
            flavor=flavor,
        )


@dataclass(frozen=True)
class NodeSettings:
    """One emulated node run."""

    node: NodeSpec
    run_dir: Path
    """Serial log, server logs, initramfs and QEMU command line of the run."""
    module: Path
    """The built mock-accel.ko."""
    provisioned: Provisioned
    share: Path | None = None
    """Host folder shared read-write into the guest (/mnt/share); enables the control bridge."""
    with_rootfs: bool = True
    """Share the Python root file system (chroot with ``in-rootfs``) into the guest."""
    run_script: Path | None = None
    """Shell script the guest runs after "devices ready"; without one the guest idles."""
    network: bool = False
    """A virtio NIC on QEMU user networking: the guest reaches the host's loopback at 10.0.2.2."""
    kernel_args: str = ""
    """Added to the guest kernel's command line (e.g. ``pci=nomsi`` to test the INTx fallback)."""
    vfio_server_command: Sequence[str] = field(default_factory=lambda: [sys.executable, "-m", "mockaccel_vfio_server"])

    @property
    def kernel(self) -> Path:
        return self.provisioned.kernel

    @property
    def qemu(self) -> Path:
        return self.provisioned.qemu

    @property
    def wordlist(self) -> Path:
        return self.provisioned.wordlist

    @property
    def firmware(self) -> Path:
        return self.provisioned.wordlist

    @property
    def rootfs(self) -> Path | None:
        return self.provisioned.rootfs if self.with_rootfs else None

    @property
    def extra_modules(self) -> tuple[Path, ...]:
        return self.provisioned.modules_9p

    @property
    def server_env(self) -> dict[str, str]:
        """The vfio-servers run with this interpreter's import path and the provisioned library."""
        env = {
            "MOCKACCEL_LIBVFIO_USER_PREFIX": str(self.provisioned.libvfio_user_prefix),
            "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
        }
        if self.provisioned.cache:
            env["MOCKACCEL_CACHE"] = self.provisioned.cache
        return env
